"""Pin every thread pool a measurement may use, in the thread that runs the work, and report what really ran.

Thread counts are per thread for OpenMP (faiss, and the OpenMP pools threadpoolctl finds) and for the library's
own pools (hnswlib's ``num_threads``, the Embedder's onnxruntime session: :mod:`ruvector_lab.pools`), so pinning
in the calling thread says nothing about a worker thread: a ``ThreadPoolExecutor`` worker starts with OpenMP at
the core count. Worker pools are therefore pinned by :func:`pin_worker` (their initializer), and
:func:`pool_threads` reads every pool's count back *in the thread that asks*, which is what the tests check.
BLAS pools (OpenBLAS) are process-wide: :func:`pinned_threads` limits them for the whole process inside the block.
ruvector's Rust pool (rayon) is process-wide and sized once, from ``RAYON_NUM_THREADS``, at its first use.

Beside a pinned count, :class:`CpuMeter` records the process CPU time over the wall time of a measurement, so a
reader sees the parallelism that really ran (about 1.0 for one busy thread).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..pools import pinned_pool_size, set_pool_size
from ..types import check_positive_int

log = logging.getLogger(__name__)


def _faiss() -> Any | None:
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _pin_thread_local(n: int) -> None:
    """The per-thread part of a pin: faiss' OpenMP, every OpenMP pool threadpoolctl sees, the library's pools."""
    faiss = _faiss()
    if faiss is not None:
        faiss.omp_set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        # for OpenMP, threadpoolctl calls omp_set_num_threads, which binds the calling thread only
        threadpool_limits(limits=n, user_api="openmp")
    set_pool_size(n)


def pin_worker(n: int) -> None:
    """Initializer of a worker thread: pin its OpenMP pools and the library's pools to ``n`` threads.

    Use as ``ThreadPoolExecutor(max_workers, initializer=pin_worker, initargs=(n,))``; the pin lives as long as
    the worker thread. (BLAS pools are process-wide: pin them around the pool with :func:`pinned_threads`.)
    """
    _pin_thread_local(check_positive_int("threads", n))


@contextlib.contextmanager
def pinned_threads(n: int) -> Iterator[dict[str, Any]]:
    """Limit the pools used from the calling thread (faiss' OpenMP, OpenMP and BLAS pools through threadpoolctl,
    the library's own pools) to ``n`` threads inside the block; yields what was pinned, read back.

    Worker threads started inside the block are *not* pinned by this: give them :func:`pin_worker`.
    """
    n = check_positive_int("threads", n)
    faiss = _faiss()
    previous_faiss = faiss.omp_get_max_threads() if faiss is not None else None
    previous_pool = pinned_pool_size()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without threadpoolctl only faiss and the library's pools are pinned; the record says so
        limiter: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    else:
        limiter = threadpool_limits(limits=n)
    with limiter:
        _pin_thread_local(n)
        try:
            yield {"threads": n, **pool_threads()}
        finally:
            if faiss is not None and previous_faiss is not None:
                faiss.omp_set_num_threads(previous_faiss)
            set_pool_size(previous_pool)


def pool_threads() -> dict[str, Any]:
    """Every thread pool's count as the *calling thread* would use it: ``faiss_omp``, ``openmp`` and ``blas``
    (lists over the libraries threadpoolctl finds; None when threadpoolctl is missing), ``library_pools`` (hnswlib
    and onnxruntime sessions started from this thread; None: library defaults) and ``ruvector_rayon`` (process-wide)."""
    faiss = _faiss()
    out: dict[str, Any] = {"faiss_omp": faiss.omp_get_max_threads() if faiss is not None else None,
                           "library_pools": pinned_pool_size(), "ruvector_rayon": rayon_threads()}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        out["openmp"] = out["blas"] = None
        return out
    info = threadpool_info()
    out["openmp"] = [p["num_threads"] for p in info if p.get("user_api") == "openmp"]
    out["blas"] = [p["num_threads"] for p in info if p.get("user_api") == "blas"]
    return out


def rayon_threads() -> int:
    """The size of ruvector's rayon pool: ``RAYON_NUM_THREADS`` when set (at the pool's first use), else the
    core count (rayon's default)."""
    raw = os.environ.get("RAYON_NUM_THREADS", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else (os.cpu_count() or 1)


def all_pinned_to(report: dict[str, Any], n: int) -> bool:
    """True when every per-thread pool in a :func:`pool_threads` report uses ``n`` threads (ruvector's
    process-wide rayon pool is not per thread and is not judged here)."""
    counts = [report.get("faiss_omp"), report.get("library_pools"), *(report.get("openmp") or []),
              *(report.get("blas") or [])]
    return all(c == n for c in counts if c is not None)


@dataclass
class CpuMeter:
    """Process CPU seconds over wall seconds of a block: the parallelism that really ran (every thread counts)."""

    cpu_s: float = 0.0
    wall_s: float = 0.0

    def __enter__(self) -> CpuMeter:
        self._cpu0, self._wall0 = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu_s += time.process_time() - self._cpu0
        self.wall_s += time.perf_counter() - self._wall0

    @property
    def utilization(self) -> float | None:
        """CPU over wall (about 1.0 for one busy thread, 2.0 for two); None before anything was measured."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else None


def thread_pools() -> list[dict[str, Any]]:
    """The native thread pools loaded in this process (library, API, threads), from threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{"api": p.get("internal_api"), "prefix": p.get("prefix"), "num_threads": p.get("num_threads"),
             "version": p.get("version")} for p in threadpool_info()]
