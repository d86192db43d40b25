"""A small readers-writer lock: searches share it, mutations take it alone."""

from __future__ import annotations

import threading
import time

# a writer waiting for readers already inside polls at most this often (readers leave without signalling)
_DRAIN_POLL_MAX_S = 0.001


class ReadWriteLock:
    """Many readers or one writer; a waiting writer blocks new readers so it cannot starve.

    ``with lock.read:`` / ``with lock.write:`` (plain attributes, not calls). The read side sits on every search,
    so a reader that meets no writer takes no mutex: it appends to :attr:`readers` and checks :attr:`gate`, both
    single C-level operations (atomic under the GIL, and sequentially consistent with the writer's store of
    ``gate`` before it reads ``readers``), and leaves with ``readers.pop()``. A hot path may inline exactly that::

        readers = lock.readers
        readers.append(None)
        if lock.gate:              # a writer holds or waits: step back and queue behind it
            readers.pop()
            lock.acquire_read()    # returns once admitted, counted in ``readers`` again
        try: ...
        finally: readers.pop()

    A writer closes the gate (new readers queue on a condition), waits its turn among writers, then waits for the
    readers already inside to leave (polling: leaving costs them nothing), and reopens the gate when no writer
    is left.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self.readers: list[None] = []  # one entry per reader inside
        self.gate = False  # True while a writer holds the lock or waits for it
        self._writer = False
        self._writers_waiting = 0
        self.read = _ReadSide(self)
        self.write = _WriteSide(self)

    def acquire_read(self) -> None:
        """Enter as a reader, waiting while a writer holds or waits for the lock."""
        readers = self.readers
        readers.append(None)
        if not self.gate:
            return
        readers.pop()
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            readers.append(None)  # under the mutex, so no writer can be between its gate and its drain

    def release_read(self) -> None:
        """Leave as a reader (a writer waiting for readers to drain sees it at its next poll)."""
        self.readers.pop()

    def acquire_write(self) -> None:
        """Wait until no writer holds the lock and every reader has left, then hold it alone."""
        with self._cond:
            self._writers_waiting += 1
            self.gate = True
            while self._writer:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        delay = 0.0
        while self.readers:  # readers inside finish their call; new ones saw the gate and queue
            time.sleep(delay)
            delay = min(_DRAIN_POLL_MAX_S, delay * 2 or 1e-5)

    def release_write(self) -> None:
        """Release the exclusive hold, reopen the gate when no writer waits, and wake everyone waiting."""
        with self._cond:
            self._writer = False
            if not self._writers_waiting:
                self.gate = False
            self._cond.notify_all()


class _ReadSide:
    __slots__ = ("_lock",)

    def __init__(self, lock: ReadWriteLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire_read()

    def __exit__(self, *exc: object) -> None:
        self._lock.readers.pop()


class _WriteSide:
    __slots__ = ("_lock",)

    def __init__(self, lock: ReadWriteLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire_write()

    def __exit__(self, *exc: object) -> None:
        self._lock.release_write()
