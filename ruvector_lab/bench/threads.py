"""Pin the thread pools a measurement may use (BLAS/OpenMP through threadpoolctl, faiss' OpenMP) and report them.

Benchmarks on a shared 2-core machine are only comparable when every library is told how many threads to use;
the pinned counts are recorded beside each result.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from ..types import check_positive_int

log = logging.getLogger(__name__)


def _faiss() -> Any | None:
    try:
        import faiss
    except ImportError:
        return None
    return faiss


@contextlib.contextmanager
def pinned_threads(n: int) -> Iterator[dict[str, Any]]:
    """Limit BLAS/OpenMP pools and faiss to ``n`` threads inside the block; yields what was pinned."""
    n = check_positive_int("threads", n)
    faiss = _faiss()
    previous = faiss.omp_get_max_threads() if faiss is not None else None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without threadpoolctl only faiss is pinned; say so in the record
        limiter: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        pools = "not pinned (threadpoolctl missing)"
    else:
        limiter = threadpool_limits(limits=n)
        pools = n
    with limiter:
        if faiss is not None:
            faiss.omp_set_num_threads(n)
        try:
            yield {"threads": n, "blas_openmp_pools": pools, "faiss_omp": n if faiss is not None else None}
        finally:
            if faiss is not None and previous is not None:
                faiss.omp_set_num_threads(previous)


def thread_pools() -> list[dict[str, Any]]:
    """The native thread pools loaded in this process (library, API, threads), from threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{"api": p.get("internal_api"), "prefix": p.get("prefix"), "num_threads": p.get("num_threads"),
             "version": p.get("version")} for p in threadpool_info()]
