"""Vector operations of ADR-006 (``vectorOps``): distance, batch_distance, normalize.

Scores follow the library's convention (smaller is closer, see :mod:`.distances`): cosine ``1 - cos``,
euclidean L2, dot_product ``-dot``. ``batch_distance`` runs on the active backend's kernel when it brings a
faster one (faiss' SIMD kernels, the WASM module's) and on :func:`.distances.pairwise_float32` otherwise; every
kernel agrees with that one to float32 rounding.
"""

from __future__ import annotations

import numpy as np

from .distances import check_metric, normalize_rows_float64, pairwise_float32, rows_to_rows_float32
from .errors import DimensionMismatchError
from .runtime import Runtime
from .validation import as_float32, as_matrix, check_nonzero


def distance(a: object, b: object, metric: str = "cosine") -> float | np.ndarray:
    """Distance between two vectors (a float), or row by row between two matrices of the same shape
    (a float32 array of one distance per row)."""
    check_metric(metric)
    va, vb = as_float32(a, "a"), as_float32(b, "b")
    if va.shape != vb.shape or va.ndim not in (1, 2) or va.shape[-1] == 0:
        raise DimensionMismatchError(
            f"distance needs two vectors or two matrices of the same shape, got {va.shape} and {vb.shape}; "
            "use batch_distance for one query against many vectors"
        )
    rows_a, rows_b = va.reshape(-1, va.shape[-1]), vb.reshape(-1, vb.shape[-1])
    if metric == "cosine":
        check_nonzero(rows_a, "a")
        check_nonzero(rows_b, "b")
    out = rows_to_rows_float32(rows_a, rows_b, metric)
    return float(out[0]) if va.ndim == 1 else out


def batch_distance(query: object, vectors: object, metric: str = "cosine") -> np.ndarray:
    """Distances from ``query`` (d,) to every row of ``vectors`` (n, d) as a float32 array (n,);
    a query matrix (m, d) gives an (m, n) matrix."""
    check_metric(metric)
    q = as_float32(query, "query")
    if q.ndim not in (1, 2):
        raise DimensionMismatchError(f"query must be a vector or a matrix, got shape {q.shape}")
    queries = q.reshape(1, -1) if q.ndim == 1 else q
    matrix = as_matrix(vectors, queries.shape[1], "vectors")
    if metric == "cosine":
        check_nonzero(queries, "query")
        check_nonzero(matrix, "vectors")
    kernel = Runtime.initialize().backend_class.distance_kernel or pairwise_float32
    out = np.asarray(kernel(queries, matrix, metric), dtype=np.float32)
    return out[0] if q.ndim == 1 else out


def normalize(vectors: object) -> np.ndarray:
    """L2-normalise one vector or every row of a matrix (float32). A zero vector has no direction: error."""
    arr = as_float32(vectors, "vector")
    if arr.ndim not in (1, 2) or arr.shape[-1] == 0:
        raise DimensionMismatchError(f"normalize takes a vector or a matrix, got shape {arr.shape}")
    rows = arr.reshape(-1, arr.shape[-1])
    check_nonzero(rows, "vector")
    return normalize_rows_float64(rows).reshape(arr.shape)
