"""How many threads a library's own pool may use, as pinned for the calling thread.

Thread counts of native pools are per thread (OpenMP's ``omp_set_num_threads`` binds the calling thread only), so
a benchmark that pins "1 thread" must pin it in the thread that runs the work. This module holds that pin for the
pools the library starts itself: hnswlib's ``num_threads`` in batch inserts and searches, and the onnxruntime
session an :class:`~ruvector_lab.Embedder` creates. ``ruvector_lab.bench.threads`` sets it together with faiss'
OpenMP and the BLAS pools; without a pin the library keeps its defaults.
"""

from __future__ import annotations

import threading

from .validation import check_positive_int

_local = threading.local()


def pinned_pool_size() -> int | None:
    """The thread count pinned for library pools in the calling thread, or None when nothing is pinned."""
    return getattr(_local, "size", None)


def set_pool_size(n: int | None) -> int | None:
    """Pin library pools started from the calling thread to ``n`` threads (None: unpin); returns the old pin."""
    previous = pinned_pool_size()
    _local.size = None if n is None else check_positive_int("threads", n)
    return previous
