"""The wasm tier's vector kernels: distances, PQ distances, int8 dequantization and CRC-32C inside rvf-wasm.

One process-wide :class:`~ruvector_lab.wasm.rvf.RvfModule` serves them (its own wasmtime store, calls
serialised by its lock). If a call ever traps, that instance is retired and the next call builds a new one.

:func:`batch_distances` is the ``distance_kernel`` of the ``wasm`` backend: the vectors go into a
temporary rvf store and each query asks it for every distance, so the numbers are the module's own float32
store kernels (squared L2, ``-dot``, ``1 - cos``), converted to the library's convention (L2 is the square
root of the module's value).
"""

from __future__ import annotations

import threading

import numpy as np

from ..distances import from_squared_l2
from ..errors import DimensionMismatchError, InvalidParameterError
from .rvf import METRIC_CODES, RvfModule, RvfStore, check_magnitude, unit_rows

_lock = threading.Lock()
_shared: RvfModule | None = None


def shared_module() -> RvfModule:
    """The process-wide rvf-wasm instance for stateless kernels (rebuilt if an earlier call trapped)."""
    global _shared
    with _lock:
        if _shared is None or _shared.poisoned is not None:
            if _shared is not None:
                _shared.close()
            _shared = RvfModule()
        return _shared


def to_library_scores(raw: np.ndarray, metric: str) -> np.ndarray:
    """The module's raw store distances (float32) in the library's convention: euclidean is the square root of
    the module's squared L2; its ``-dot`` and ``1 - cos`` are the library's already."""
    raw = raw.astype(np.float32, copy=False)
    return from_squared_l2(raw) if metric == "euclidean" else raw


def batch_distances(queries: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    """``(m, n)`` float32 distances from each query row to each vector row, computed by rvf-wasm.

    Inputs are float32 matrices of equal width (the ops layer has checked them for NaN and zero rows);
    under cosine the rows are scaled to unit length first (the distance does not change), under the other
    metrics rows whose float32 distances would overflow are refused.
    """
    if metric not in METRIC_CODES:
        raise InvalidParameterError(f"unknown metric {metric!r}; expected one of {', '.join(METRIC_CODES)}")
    q = np.ascontiguousarray(queries, dtype=np.float32)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if q.ndim != 2 or x.ndim != 2 or q.shape[1] != x.shape[1]:
        raise DimensionMismatchError(f"queries {q.shape} and vectors {x.shape} are not matrices of equal width")
    if metric == "cosine":
        q, x = unit_rows(q, "queries"), unit_rows(x, "vectors")
    else:
        check_magnitude(q, "queries")
        check_magnitude(x, "vectors")
    m, n = len(q), len(x)
    out = np.empty((m, n), dtype=np.float32)
    if m == 0 or n == 0:
        return out
    module = shared_module()
    with module.lock:
        store = RvfStore.create(module, x.shape[1], metric)
        try:
            store.ingest(np.arange(n, dtype=np.uint64), x)
            for row in range(m):
                ids, raw = store.query(q[row], n, metric)
                if len(ids) != n:
                    raise DimensionMismatchError(f"the module scored {len(ids)} of {n} vectors")
                out[row, ids.astype(np.int64)] = to_library_scores(raw, metric)
        finally:
            store.close()
    return out


def tile_distances(query: np.ndarray, block: np.ndarray, metric: str) -> np.ndarray:
    """The module's fp16/int8 tile kernel (see :meth:`RvfModule.tile_distances`), raw values: squared L2,
    ``-dot``, ``1 - cos`` or Hamming bits."""
    return shared_module().tile_distances(query, block, metric)


def pq_distances(query: np.ndarray, codebook: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The module's product-quantization distances (see :meth:`RvfModule.pq_distances`)."""
    return shared_module().pq_distances(query, codebook, codes)


def dequantize_i8(codes: np.ndarray, minimum: np.ndarray | float, maximum: np.ndarray | float) -> np.ndarray:
    """The module's int8 dequantization (see :meth:`RvfModule.dequantize_i8`), values at fp16 precision."""
    return shared_module().dequantize_i8(codes, np.asarray(minimum), np.asarray(maximum))


def dequantize_scalar_u8(codes: np.ndarray, minimum: np.ndarray, maximum: np.ndarray) -> np.ndarray:
    """Per-vector scalar (uint8) dequantization ``min + code / 255 * (max - min)`` on the module's kernel.

    ``codes`` (n, d) uint8, ``minimum``/``maximum`` (n,) per row: the layout of the library's ``scalar``
    quantization. The module's int8 code ``q`` stands for ``q + 128``, so ``code - 128`` is passed. Values
    come back at the module's fp16 precision (relative error below 2**-10).
    """
    c = np.asarray(codes)
    if c.dtype != np.uint8 or c.ndim != 2:
        raise InvalidParameterError(f"codes must be a uint8 matrix, got {c.dtype} of shape {c.shape}")
    lo = np.asarray(minimum, dtype=np.float32).reshape(-1)
    hi = np.asarray(maximum, dtype=np.float32).reshape(-1)
    if lo.shape != (len(c),) or hi.shape != (len(c),):
        raise DimensionMismatchError(f"need one minimum and maximum per row: {len(c)} rows, got {lo.shape}/{hi.shape}")
    shifted = (c.astype(np.int16) - 128).astype(np.int8)
    module = shared_module()
    out = np.empty(c.shape, dtype=np.float32)
    with module.lock:
        for row in range(len(c)):
            out[row] = module.dequantize_i8(shifted[row], lo[row : row + 1], hi[row : row + 1])
    return out


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` computed by the module (the checksum of RVF segments)."""
    return shared_module().crc32c(data)
