"""Exact k-nearest-neighbour ground truth, computed block by block so 100k x 1k fits in a few hundred MB.

Ranking uses float32 matrix products (fast, :func:`~ruvector_lab.distances.ranking_scores`), over-fetching a margin
of candidates; the winners' distances are then recomputed in float64
(:func:`~ruvector_lab.distances.pairwise_float64`) and re-sorted, so the stored distances are exact and float32
ranking noise cannot swap the boundary. Ties are broken by the lower train index.

A file that brings its own ground truth is checked by :func:`verify_ground_truth` before it is kept: every id in
range, every distance finite, and a seeded sample of queries recomputed exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..distances import check_metric, normalize_rows, pairwise_float64, ranking_scores, squared_norms
from ..errors import DatasetError, InvalidParameterError
from ..validation import check_positive_int

if TYPE_CHECKING:
    from .hdf5 import Dataset

log = logging.getLogger(__name__)

#: extra candidates kept per query beyond k, to absorb float32 ranking error before the exact re-sort
MARGIN = 16

#: supplied distances are often computed and always stored in float32: they may differ from the exact ones by this
#: fraction of their size ...
VERIFY_RTOL = 1e-3
#: ... plus this fraction of the query's distance scale (cosine 1; euclidean sqrt(|q|^2 + max|x|^2), the size at
#: which float32 cancellation hurts distances near zero; dot product |q| max|x|)
VERIFY_ATOL = 1e-3


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
    ranked_train = normalize_rows(train) if metric == "cosine" else train  # cosine ranks as a dot product
    sq = squared_norms(ranked_train)
    neighbors = np.empty((len(queries), k), dtype=np.int32)
    distances = np.empty((len(queries), k), dtype=np.float32)
    for qs in range(0, len(queries), query_block):
        q = queries[qs : qs + query_block]
        if metric == "cosine":
            q = normalize_rows(q)
        best_s = np.full((len(q), 0), np.inf, dtype=np.float32)
        best_i = np.empty((len(q), 0), dtype=np.int64)
        for ts in range(0, len(train), train_block):
            block = ranked_train[ts : ts + train_block]
            scores = ranking_scores(q, block, metric, sq[ts : ts + train_block])
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
            exact[row] = pairwise_float64(q_raw[row : row + 1], train[best_i[row]], metric)[0]
        order = np.lexsort((best_i, exact), axis=1)[:, :k]
        neighbors[qs : qs + len(q)] = np.take_along_axis(best_i, order, axis=1)
        distances[qs : qs + len(q)] = np.take_along_axis(exact, order, axis=1)
        if progress is not None:
            progress(len(q))
    return neighbors, distances


def brute_force(queries: np.ndarray, train: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Reference top-``k`` in float64 in one piece (small inputs only): the check for :func:`knn_ground_truth`."""
    check_metric(metric)
    d = pairwise_float64(np.asarray(queries, np.float32), np.asarray(train, np.float32), metric)
    idx = np.broadcast_to(np.arange(d.shape[1]), d.shape)
    order = np.lexsort((idx, d), axis=1)[:, :k]
    return order.astype(np.int32), np.take_along_axis(d, order, axis=1).astype(np.float32)


def _distance_scale(q_norm: float, max_train_norm: float, metric: str) -> float:
    """The magnitude a float32 computation of this query's distances is accurate relative to."""
    if metric == "cosine":
        return 1.0
    if metric == "euclidean":
        return float(np.hypot(q_norm, max_train_norm))
    return q_norm * max_train_norm


def verify_ground_truth(ds: Dataset, k: int, sample: int = 50, seed: int = 0) -> None:
    """Check the ground truth a dataset brings (``ds.neighbors``, ``ds.distances``) before it is trusted.

    Every query's first ``k`` ids must be distinct train rows in ``[0, n_train)`` and its distances finite; then the
    exact top-``k`` of a seeded random sample of ``min(sample, n_test)`` queries is recomputed
    (:func:`knn_ground_truth`) and, for each sampled query, the file's distance at every rank must match the exact
    distance at that rank, and every listed id must really lie at its listed distance (recomputed from the train
    row), which puts it within the exact k-th distance. Both comparisons allow :data:`VERIFY_RTOL` relative plus
    :data:`VERIFY_ATOL` of the query's distance scale, since files store float32 and may have been computed in
    float32. Equidistant ids listed in another order are therefore accepted, a wrong id is not.

    Raises :class:`DatasetError` naming the problem; for a disagreement, the first disagreeing query (its row in the
    file), what the file says and what is exact, and how many sampled queries disagree.
    """
    k = check_positive_int("k", k)
    sample = check_positive_int("sample", sample)
    where = f"dataset {ds.name!r}"
    if ds.neighbors is None or ds.distances is None:
        raise DatasetError(f"{where} has no ground truth (neighbors, distances) to verify")
    nb, dist = np.asarray(ds.neighbors), np.asarray(ds.distances)
    n_train, n_test = len(ds.train), len(ds.test)
    for key, arr in (("neighbors", nb), ("distances", dist)):
        if arr.ndim != 2 or len(arr) != n_test:
            raise DatasetError(f"{where}: {key} {arr.shape} must be 2-D with one row per query ({n_test} test rows)")
    if nb.shape != dist.shape:
        raise DatasetError(f"{where}: neighbors {nb.shape} and distances {dist.shape} differ in shape")
    if nb.shape[1] < k:
        raise DatasetError(f"{where} holds top-{nb.shape[1]} ground truth, fewer than the k={k} asked for")
    if k > n_train:
        raise DatasetError(f"{where}: k={k} exceeds its {n_train} train rows")
    if not np.issubdtype(nb.dtype, np.integer):
        raise DatasetError(f"{where}: neighbors must hold integer train row ids, not {nb.dtype}")
    ids, stored = nb[:, :k].astype(np.int64), dist[:, :k].astype(np.float64)

    # cheap checks on every query
    bad = (ids < 0) | (ids >= n_train)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DatasetError(f"{where}: query {row} lists neighbour id {ids[row, col]} at rank {col}, outside the "
                           f"train rows [0, {n_train}) ({int(bad.any(axis=1).sum())} queries have such ids)")
    bad = ~np.isfinite(stored)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DatasetError(f"{where}: query {row} has distance {stored[row, col]} at rank {col}; distances must be "
                           f"finite ({int(bad.any(axis=1).sum())} queries have such distances)")
    ordered = np.sort(ids, axis=1)
    repeated = ordered[:, 1:] == ordered[:, :-1]
    if repeated.any():
        row, col = np.argwhere(repeated)[0]
        raise DatasetError(f"{where}: query {row} lists train id {ordered[row, col]} more than once in its top-{k}")

    # exactness on a seeded sample, in file order so the first disagreeing query is reported
    rows = np.sort(np.random.default_rng(seed).choice(n_test, size=min(sample, n_test), replace=False))
    train = np.asarray(ds.train, dtype=np.float32)
    test = np.asarray(ds.test, dtype=np.float32)
    exact_ids, exact_d = knn_ground_truth(test[rows], train, k, ds.metric)
    max_norm = float(np.sqrt(np.einsum("ij,ij->i", train, train, dtype=np.float64).max())) if n_train else 0.0
    problems: list[str] = []
    for j, row in enumerate(rows):
        q = test[row : row + 1]
        scale = _distance_scale(float(np.linalg.norm(q.astype(np.float64))), max_norm, ds.metric)
        exact = exact_d[j].astype(np.float64)
        true = pairwise_float64(q, train[ids[row]], ds.metric)[0]  # the real distances of the file's ids
        said = stored[row]
        wrong_rank = np.abs(said - exact) > VERIFY_RTOL * np.abs(exact) + VERIFY_ATOL * scale
        wrong_id = np.abs(true - said) > VERIFY_RTOL * np.abs(true) + VERIFY_ATOL * scale
        beyond = true > exact[-1] + VERIFY_RTOL * abs(exact[-1]) + VERIFY_ATOL * scale
        wrong = wrong_rank | wrong_id | beyond
        if wrong.any():
            col = int(np.flatnonzero(wrong)[0])
            problems.append(f"query {row}, rank {col}: the file says train id {ids[row, col]} at distance "
                            f"{said[col]:.6g}; exact: that id is at {true[col]:.6g}, and rank {col} is train id "
                            f"{exact_ids[j, col]} at {exact[col]:.6g} (exact k-th distance {exact[-1]:.6g})")
    if problems:
        raise DatasetError(f"{where}: its ground truth disagrees with the exact top-{k} ({len(problems)} of "
                           f"{len(rows)} sampled queries): {problems[0]}")
    log.info("%s: supplied top-%d ground truth agrees with the exact one on %d sampled queries", ds.name, k, len(rows))
