"""``ArrayPool``: ADR-006's ``WasmMemoryPool`` for NumPy, thread-safe.

Reusing buffers spares the allocator on hot paths (embedding, per-query scratch). A released array is
zeroed before it can be handed out again, so one caller's data never leaks to the next.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from .errors import PoolError
from .types import check_positive_int


@dataclass(frozen=True)
class PoolStats:
    """What a pool holds now: arrays and bytes in all, and the number of arrays per length."""

    total_arrays: int
    total_bytes: int
    pools: dict[int, int] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0


class ArrayPool:
    """Pools of 1-D arrays keyed by length, at most ``max_pool_size`` arrays per length."""

    def __init__(self, max_pool_size: int = 100, dtype: np.dtype | type = np.float32) -> None:
        self.max_pool_size = check_positive_int("max_pool_size", max_pool_size, minimum=0)
        self.dtype = np.dtype(dtype)
        self._pools: dict[int, list[np.ndarray]] = {}
        self._pooled_ids: set[int] = set()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def acquire(self, length: int) -> np.ndarray:
        """A zeroed array of ``length`` elements: a pooled one if there is one, else a new one."""
        length = check_positive_int("length", length, minimum=0)
        with self._lock:
            pool = self._pools.get(length)
            if pool:
                array = pool.pop()
                self._pooled_ids.discard(id(array))
                self._hits += 1
                return array
            self._misses += 1
        return np.zeros(length, dtype=self.dtype)

    def release(self, array: np.ndarray) -> bool:
        """Zero ``array`` and keep it for reuse; return False if the pool for its length is full (dropped).

        Only whole, writable, 1-D, contiguous arrays of the pool's dtype are taken: a view could alias memory
        someone else still uses. Releasing the same array twice raises :class:`PoolError`.
        """
        if not isinstance(array, np.ndarray):
            raise PoolError(f"release takes a numpy array, got {type(array).__name__}")
        if array.dtype != self.dtype or array.ndim != 1:
            raise PoolError(f"pool holds 1-D {self.dtype} arrays, got {array.ndim}-D {array.dtype}")
        if array.base is not None or not array.flags.c_contiguous or not array.flags.writeable:
            raise PoolError("only whole, writable arrays can be pooled, not views or read-only arrays")
        with self._lock:
            if id(array) in self._pooled_ids:
                raise PoolError("this array was already released to the pool")
            pool = self._pools.setdefault(len(array), [])
            if len(pool) >= self.max_pool_size:
                return False
            array.fill(0)
            pool.append(array)
            self._pooled_ids.add(id(array))
            return True

    def clear(self) -> None:
        """Drop every pooled array (e.g. under memory pressure)."""
        with self._lock:
            self._pools.clear()
            self._pooled_ids.clear()

    def stats(self) -> PoolStats:
        """Arrays and bytes held, per length and in all, plus acquire hits and misses so far."""
        with self._lock:
            pools = {length: len(p) for length, p in self._pools.items() if p}
            total = sum(pools.values())
            nbytes = sum(length * n for length, n in pools.items()) * self.dtype.itemsize
            return PoolStats(total, nbytes, pools, self._hits, self._misses)
