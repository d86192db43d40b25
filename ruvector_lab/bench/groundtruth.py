"""Exact k-nearest-neighbour ground truth, computed block by block so 100k x 1k fits in a few hundred MB.

Ranking uses float32 matrix products (fast, :func:`~ruvector_lab.distances.ranking_scores`), over-fetching a margin
of candidates; the winners' distances are then recomputed in float64
(:func:`~ruvector_lab.distances.pairwise_float64`) and re-sorted, so the stored distances are exact and float32
ranking noise cannot swap the boundary. Ties are broken by the lower train index.

The work is three block functions that both ways of running it share: :func:`block_candidates` (one query block
against one train block), :func:`merge_candidates` (a query block's candidates over the train blocks, in train-block
order) and :func:`exact_top_k` (the float64 re-sort). :func:`knn_ground_truth` runs them in this process;
:func:`knn_ground_truth_on` sends the (query block, train block) pairs to an executor's workers and merges and re-sorts
here, so both return the same arrays, ties included.

A file that brings its own ground truth is checked by :func:`verify_ground_truth` before it is kept: every id in
range, every distance finite, and a seeded sample of queries recomputed exactly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

from ..distances import check_metric, normalize_rows, pairwise_float64, ranking_scores, squared_norms
from ..errors import DatasetError, InvalidParameterError
from ..validation import check_positive_int

if TYPE_CHECKING:
    from .executor import DatasetRef, Executor
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


def _checked_inputs(queries: np.ndarray, train: np.ndarray, k: int, metric: str, query_block: int,
                    train_block: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Queries and train as contiguous float32, and ``keep`` (candidates per query); refuses bad shapes and sizes."""
    check_metric(metric)
    k = check_positive_int("k", k)
    check_positive_int("query_block", query_block)
    check_positive_int("train_block", train_block)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    train = np.ascontiguousarray(train, dtype=np.float32)
    if queries.ndim != 2 or train.ndim != 2 or queries.shape[1] != train.shape[1]:
        raise InvalidParameterError(f"queries {queries.shape} and train {train.shape} must be 2-D of equal width")
    if k > len(train):
        raise InvalidParameterError(f"k={k} exceeds the {len(train)} train rows")
    return queries, train, min(k + MARGIN, len(train))


def block_candidates(queries: np.ndarray, rows: np.ndarray, start: int, keep: int,
                     metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The float32-ranked candidates of one block of queries among one block of train rows.

    ``rows`` are train rows ``start, start + 1, ...`` as stored (under cosine both sides are normalised here). Returns
    ``(scores (m, c) float32, ids (m, c) int64)`` with ``c = min(keep, len(rows))``: each query's ``keep`` best
    ranking scores (:func:`~ruvector_lab.distances.ranking_scores`, smaller is closer) chosen by ``argpartition``
    (unordered), with global train ids. A pure function of its arguments, so a worker and this process given the same
    block return the same candidates.
    """
    # own float32 copies: the same contiguous layout whether the block is a view of a client array or a worker's
    q = np.array(queries, dtype=np.float32)
    x = np.array(rows, dtype=np.float32)
    if metric == "cosine":  # cosine ranks as a dot product of unit rows; normalising is row by row, so per block
        q, x = normalize_rows(q), normalize_rows(x)
    scores = ranking_scores(q, x, metric, squared_norms(x) if metric == "euclidean" else None)
    ids = np.broadcast_to(np.arange(start, start + len(x), dtype=np.int64), scores.shape)
    if scores.shape[1] > keep:
        part = np.argpartition(scores, keep - 1, axis=1)[:, :keep]
        return np.take_along_axis(scores, part, axis=1), np.take_along_axis(ids, part, axis=1)
    return np.ascontiguousarray(scores), np.ascontiguousarray(ids)


def merge_candidates(parts: Iterable[tuple[np.ndarray, np.ndarray]], keep: int) -> np.ndarray:
    """One query block's candidates over all train blocks: ``parts`` are :func:`block_candidates` of each train block
    **in train-block order**, folded in that order (each step keeps the ``keep`` best by ``argpartition``, so the
    same parts in the same order always give the same set).

    Returns the candidate ids ``(m, <= keep)`` int64, ascending along each row: the exact re-sort
    (:func:`exact_top_k`) then sees the candidates in an order that depends only on which they are.
    """
    best_s: np.ndarray | None = None
    best_i: np.ndarray | None = None
    for scores, ids in parts:
        if best_s is None or best_i is None:
            best_s, best_i = scores, ids
        else:
            best_s = np.concatenate([best_s, scores], axis=1)
            best_i = np.concatenate([best_i, ids], axis=1)
        if best_s.shape[1] > keep:
            part = np.argpartition(best_s, keep - 1, axis=1)[:, :keep]
            best_s = np.take_along_axis(best_s, part, axis=1)
            best_i = np.take_along_axis(best_i, part, axis=1)
    if best_i is None:
        raise InvalidParameterError("no train block to merge candidates from")
    return np.sort(best_i, axis=1)


def exact_top_k(queries: np.ndarray, train: np.ndarray, candidates: np.ndarray, k: int,
                metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-``k`` of each query among its candidate train ids (:func:`merge_candidates`).

    Distances are recomputed in float64 (:func:`~ruvector_lab.distances.pairwise_float64`) from the train rows and
    sorted by (distance, train id), so ties go to the lower id. Returns ``(neighbors (m, k) int32,
    distances (m, k) float32)``.
    """
    q_raw = np.asarray(queries, dtype=np.float32).astype(np.float64)
    exact = np.empty(candidates.shape, dtype=np.float64)
    for row in range(len(q_raw)):
        exact[row] = pairwise_float64(q_raw[row : row + 1], train[candidates[row]], metric)[0]
    order = np.lexsort((candidates, exact), axis=1)[:, :k]
    return (np.take_along_axis(candidates, order, axis=1).astype(np.int32),
            np.take_along_axis(exact, order, axis=1).astype(np.float32))


def knn_ground_truth(
    queries: np.ndarray,
    train: np.ndarray,
    k: int = 100,
    metric: str = "cosine",
    query_block: int = 256,
    train_block: int = 32768,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` neighbours of every query among the train rows, in this process.

    Returns ``(neighbors (m, k) int32, distances (m, k) float32)`` sorted ascending by distance (ties by index).
    ``progress`` is called with the number of queries finished after each query block. The same block functions
    as :func:`knn_ground_truth_on` (an executor's fan-out), so both give the same arrays for the same block sizes.
    """
    queries, train, keep = _checked_inputs(queries, train, k, metric, query_block, train_block)
    neighbors = np.empty((len(queries), k), dtype=np.int32)
    distances = np.empty((len(queries), k), dtype=np.float32)
    for qs in range(0, len(queries), query_block):
        q = queries[qs : qs + query_block]
        neighbors[qs : qs + len(q)], distances[qs : qs + len(q)] = query_block_top_k(q, train, k, keep, metric,
                                                                                     train_block)
        if progress is not None:
            progress(len(q))
    return neighbors, distances


def query_block_top_k(queries: np.ndarray, train: np.ndarray, k: int, keep: int, metric: str,
                      train_block: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-``k`` of one block of queries: :func:`block_candidates` of every train block in order, merged
    (:func:`merge_candidates`) and re-sorted exactly (:func:`exact_top_k`). The unit of work of both paths."""
    # a generator: one train block's scores are held at a time
    parts = (block_candidates(queries, train[ts : ts + train_block], ts, keep, metric)
             for ts in range(0, len(train), train_block))
    return exact_top_k(queries, train, merge_candidates(parts, keep), k, metric)


def knn_ground_truth_on(executor: Executor, ref: DatasetRef, ds: Dataset, k: int = 100, query_block: int = 256,
                        train_block: int = 32768) -> tuple[np.ndarray, np.ndarray]:
    """:func:`knn_ground_truth` of ``ds`` (its test rows among its train rows, in its metric) on an executor.

    One task per query block: the task loads the dataset from ``ref`` where it runs and does what the local loop
    does for that block (:func:`query_block_top_k`: every train block's candidates in train-block order, merged,
    re-sorted exactly in float64), so the arrays equal :func:`knn_ground_truth`'s with the same block sizes, ties
    included. The exact re-sort runs on the workers too, beside the products, rather than here after them. The
    executor draws the progress bar over the tasks.

    ``ref`` must name ``ds`` (same content hash), else :class:`DatasetError`; a task that fails (a worker's copy
    that does not match ``ref``) raises :class:`~ruvector_lab.bench.executor.ExecutorError` naming it.
    """
    from .executor import Task, raise_failures

    queries, _, keep = _checked_inputs(ds.test, ds.train, k, ds.metric, query_block, train_block)
    found = ds.content_hash()
    if found != ref.content_hash:
        raise DatasetError(f"dataset {ds.name!r} has content hash {found}, but its reference names "
                           f"{ref.content_hash}: the data changed after the reference was made")
    q_starts = range(0, len(queries), query_block)
    tasks = [Task(f"groundtruth {ds.name} q{qs}", _query_block_task, (ref, qs, qs + query_block, k, keep, train_block))
             for qs in q_starts]
    outcomes = executor.run(tasks, f"ground truth {ds.name}")
    raise_failures(outcomes, f"ground truth blocks of {ds.name}")
    neighbors = np.concatenate([o.value[0] for o in outcomes]) if outcomes else np.empty((0, k), np.int32)
    distances = np.concatenate([o.value[1] for o in outcomes]) if outcomes else np.empty((0, k), np.float32)
    return neighbors, distances


#: the dataset a worker process loaded last, by content hash: every block task of a run needs the same one, and
#: reading and hashing the whole file per block would cost more than the block's product (one dataset is kept)
_LOADED: dict[str, Dataset] = {}
_LOADED_LOCK = threading.Lock()


def _loaded(ref: DatasetRef) -> Dataset:
    """The dataset ``ref`` names, loaded once per worker process (a ref holding it in memory is used as is)."""
    if ref.inline is not None:
        return ref.load()
    with _LOADED_LOCK:
        ds = _LOADED.get(ref.content_hash)
    if ds is not None:
        return ds
    # loaded outside the lock: a task fetching the payload secedes from the worker's pool and must rejoin it, which
    # a second task blocked on this lock in the pool's only slot would prevent (a deadlock seen on 1-thread workers)
    ds = ref.load()  # checked against the content hash: a changed copy raises DatasetError
    with _LOADED_LOCK:
        _LOADED.clear()
        _LOADED[ref.content_hash] = ds
    return ds


def _query_block_task(ref: DatasetRef, q_start: int, q_stop: int, k: int, keep: int,
                      train_block: int) -> tuple[np.ndarray, np.ndarray]:
    """One query block's exact top-``k``, on the dataset ``ref`` names."""
    ds = _loaded(ref)
    return query_block_top_k(ds.test[q_start:q_stop], ds.train, k, keep, ds.metric, train_block)


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
