"""A small readers-writer lock: searches share it, mutations take it alone."""

from __future__ import annotations

import threading


class ReadWriteLock:
    """Many readers or one writer; a waiting writer blocks new readers so it cannot starve.

    ``with lock.read:`` / ``with lock.write:`` (plain attributes, not calls: the read side sits on every
    search, so it avoids a generator-based context manager).
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self.read = _ReadSide(self)
        self.write = _WriteSide(self)

    def acquire_read(self) -> None:
        """Wait until no writer holds or waits for the lock, then count one more reader."""
        # the raw mutex, not the Condition's context manager: this sits on every search
        mutex = self._mutex
        mutex.acquire()
        try:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        finally:
            mutex.release()

    def release_read(self) -> None:
        """Count one reader less; wake writers when the last one leaves."""
        mutex = self._mutex
        mutex.acquire()
        try:
            self._readers -= 1
            if not self._readers and self._writers_waiting:
                self._cond.notify_all()
        finally:
            mutex.release()

    def acquire_write(self) -> None:
        """Wait until no reader or writer holds the lock, then hold it alone."""
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True

    def release_write(self) -> None:
        """Release the exclusive hold and wake everyone waiting."""
        with self._cond:
            self._writer = False
            self._cond.notify_all()


class _ReadSide:
    __slots__ = ("_lock",)

    def __init__(self, lock: ReadWriteLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire_read()

    def __exit__(self, *exc: object) -> None:
        self._lock.release_read()


class _WriteSide:
    __slots__ = ("_lock",)

    def __init__(self, lock: ReadWriteLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire_write()

    def __exit__(self, *exc: object) -> None:
        self._lock.release_write()
