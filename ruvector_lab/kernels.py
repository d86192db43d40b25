"""NumPy distance kernels: the reference every backend's scores are held to."""

from __future__ import annotations

import numpy as np


def exact_distances(queries: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    """All ``(m, n)`` distances between query rows and vector rows, computed exactly (no norm expansion).

    Cosine expects neither side normalised. The reference kernel behind :func:`ruvector_lab.batch_distance`.
    """
    if metric == "euclidean":
        out = np.empty((queries.shape[0], vectors.shape[0]), dtype=np.float32)
        for row, q in enumerate(queries):
            diff = vectors - q
            out[row] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        return out
    dots = queries @ vectors.T
    if metric == "dot_product":
        return (-dots).astype(np.float32, copy=False)
    qn = np.linalg.norm(queries, axis=1, keepdims=True)
    vn = np.linalg.norm(vectors, axis=1)
    return (1.0 - dots / (qn * vn)).astype(np.float32, copy=False)
