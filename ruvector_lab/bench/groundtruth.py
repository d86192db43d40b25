"""Exact k-nearest-neighbour ground truth, computed block by block so 100k x 1k fits in a few hundred MB.

Ranking uses float32 matrix products (fast), over-fetching a margin of candidates; the winners' distances are then
recomputed in float64 and re-sorted, so the stored distances are exact and float32 ranking noise cannot swap the
boundary. Ties are broken by the lower train index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from ..errors import InvalidParameterError
from ..types import check_metric, check_positive_int

log = logging.getLogger(__name__)

#: extra candidates kept per query beyond k, to absorb float32 ranking error before the exact re-sort
MARGIN = 16


def _rank_scores(q: np.ndarray, block: np.ndarray, block_sq: np.ndarray, metric: str) -> np.ndarray:
    """Scores whose order is the distance order (smaller is closer), float32."""
    dots = q @ block.T
    if metric == "euclidean":
        return block_sq[None, :] - 2.0 * dots
    return -dots  # cosine on unit rows, dot_product as is


def exact_distances(q: np.ndarray, x: np.ndarray, metric: str) -> np.ndarray:
    """float64 distances between each query row and each row of ``x`` (both 2-D), library convention."""
    q64, x64 = q.astype(np.float64), x.astype(np.float64)
    if metric == "euclidean":
        sq = (q64**2).sum(1)[:, None] + (x64**2).sum(1)[None, :] - 2.0 * q64 @ x64.T
        return np.sqrt(np.maximum(sq, 0.0))
    dots = q64 @ x64.T
    if metric == "dot_product":
        return -dots
    norms = np.linalg.norm(q64, axis=1)[:, None] * np.linalg.norm(x64, axis=1)[None, :]
    return 1.0 - dots / np.where(norms == 0, 1.0, norms)


def knn_ground_truth(
    queries: np.ndarray,
    train: np.ndarray,
    k: int = 100,
    metric: str = "cosine",
    query_block: int = 256,
    train_block: int = 32768,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` neighbours of every query among the train rows.

    Returns ``(neighbors (m, k) int32, distances (m, k) float32)`` sorted ascending by distance (ties by index).
    ``progress`` is called with the number of queries finished after each query block.
    """
    check_metric(metric)
    k = check_positive_int("k", k)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    train = np.ascontiguousarray(train, dtype=np.float32)
    if queries.ndim != 2 or train.ndim != 2 or queries.shape[1] != train.shape[1]:
        raise InvalidParameterError(f"queries {queries.shape} and train {train.shape} must be 2-D of equal width")
    if k > len(train):
        raise InvalidParameterError(f"k={k} exceeds the {len(train)} train rows")
    keep = min(k + MARGIN, len(train))
    ranked_train = train
    if metric == "cosine":
        norms = np.linalg.norm(train, axis=1, keepdims=True)
        ranked_train = train / np.where(norms == 0, 1.0, norms)
    sq = np.einsum("ij,ij->i", ranked_train, ranked_train)
    neighbors = np.empty((len(queries), k), dtype=np.int32)
    distances = np.empty((len(queries), k), dtype=np.float32)
    for qs in range(0, len(queries), query_block):
        q = queries[qs : qs + query_block]
        if metric == "cosine":
            qn = np.linalg.norm(q, axis=1, keepdims=True)
            q = q / np.where(qn == 0, 1.0, qn)
        best_s = np.full((len(q), 0), np.inf, dtype=np.float32)
        best_i = np.empty((len(q), 0), dtype=np.int64)
        for ts in range(0, len(train), train_block):
            block = ranked_train[ts : ts + train_block]
            scores = _rank_scores(q, block, sq[ts : ts + train_block], metric)
            cand_s = np.concatenate([best_s, scores], axis=1)
            cand_i = np.concatenate([best_i, np.broadcast_to(np.arange(ts, ts + len(block)), scores.shape)], axis=1)
            if cand_s.shape[1] > keep:
                part = np.argpartition(cand_s, keep - 1, axis=1)[:, :keep]
                cand_s = np.take_along_axis(cand_s, part, axis=1)
                cand_i = np.take_along_axis(cand_i, part, axis=1)
            best_s, best_i = cand_s, cand_i
        # exact float64 distances of the candidates, then sort by (distance, index)
        q_raw = queries[qs : qs + query_block].astype(np.float64)
        exact = np.empty(best_i.shape, dtype=np.float64)
        for row in range(len(q_raw)):
            exact[row] = exact_distances(q_raw[row : row + 1], train[best_i[row]], metric)[0]
        order = np.lexsort((best_i, exact), axis=1)[:, :k]
        neighbors[qs : qs + len(q)] = np.take_along_axis(best_i, order, axis=1)
        distances[qs : qs + len(q)] = np.take_along_axis(exact, order, axis=1)
        if progress is not None:
            progress(len(q))
    return neighbors, distances


def brute_force(queries: np.ndarray, train: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Reference top-``k`` in float64 in one piece (small inputs only): the check for :func:`knn_ground_truth`."""
    check_metric(metric)
    d = exact_distances(np.asarray(queries, np.float32), np.asarray(train, np.float32), metric)
    idx = np.broadcast_to(np.arange(d.shape[1]), d.shape)
    order = np.lexsort((idx, d), axis=1)[:, :k]
    return order.astype(np.int32), np.take_along_axis(d, order, axis=1).astype(np.float32)
