"""ArrayPool: reuse, zeroing, limits, stats and thread safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import ruvector_lab as rl


def test_acquire_release_reuses_and_zeroes():
    pool = rl.ArrayPool(max_pool_size=2)
    a = pool.acquire(384)
    assert a.shape == (384,) and a.dtype == np.float32 and not a.any()
    a[:] = 7.0
    assert pool.release(a)
    stats = pool.stats()
    assert (stats.total_arrays, stats.total_bytes, stats.pools) == (1, 384 * 4, {384: 1})
    b = pool.acquire(384)
    assert b is a and not b.any(), "a released array comes back zeroed"
    assert pool.stats().hits == 1 and pool.stats().misses == 1


def test_max_pool_size_drops_extras():
    pool = rl.ArrayPool(max_pool_size=2)
    arrays = [pool.acquire(16) for _ in range(3)]
    assert [pool.release(a) for a in arrays] == [True, True, False]
    assert pool.stats().pools == {16: 2}
    pool.clear()
    assert pool.stats().total_arrays == 0 and pool.stats().total_bytes == 0


def test_bad_releases_are_refused():
    pool = rl.ArrayPool()
    a = pool.acquire(8)
    pool.release(a)
    with pytest.raises(rl.PoolError, match="already released"):
        pool.release(a)
    with pytest.raises(rl.PoolError):
        pool.release(np.zeros(8, dtype=np.float64))
    with pytest.raises(rl.PoolError, match="views"):
        pool.release(np.zeros(16, dtype=np.float32)[:8])
    with pytest.raises(rl.PoolError):
        pool.release([0.0] * 8)
    with pytest.raises(rl.InvalidParameterError):
        pool.acquire(-1)
    with pytest.raises(rl.InvalidParameterError):
        rl.ArrayPool(max_pool_size=-3)


def test_threads_never_share_an_array():
    pool = rl.ArrayPool(max_pool_size=8)
    errors: list[str] = []

    def worker(tag: float) -> None:
        for _ in range(2000):
            a = pool.acquire(32)
            if a.any():
                errors.append("got a dirty array")
            a[:] = tag
            if not np.all(a == tag):
                errors.append("array changed under us")
            pool.release(a)

    threads = [threading.Thread(target=worker, args=(float(t + 1),)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert pool.stats().total_arrays <= 8
