"""Accuracy and trade-off metrics: recall tolerant of distance ties, spreads of repeats, Pareto sets, operating points.

Recall follows ann-benchmarks: a returned neighbour counts if its *true* distance is within the k-th ground-truth
distance (plus a small tolerance), so a result that swaps two equidistant points is not punished. The caller
passes true distances of the returned ids (see :func:`true_distances`), never the index's own approximate scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..distances import check_metric, rows_to_rows_float64
from ..errors import InvalidParameterError

#: tolerance of the tie rule: relative to the k-th distance, plus an absolute floor for distances near zero
REL_TOL = 1e-4
ABS_TOL = 1e-6


def true_distances(queries: np.ndarray, train: np.ndarray, ids: np.ndarray, metric: str) -> np.ndarray:
    """Exact distances (float64) from each query to the train rows its result row names; id -1 gives inf.

    ``ids`` is ``(m, k)`` int; the metric follows the library's convention (cosine ``1 - cos``, euclidean L2,
    dot_product ``-dot``), computed by :func:`~ruvector_lab.distances.rows_to_rows_float64`.
    """
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.shape[0] != len(queries):
        raise InvalidParameterError(f"ids must be (queries, k), got {ids.shape} for {len(queries)} queries")
    check_metric(metric)
    out = np.empty(ids.shape, dtype=np.float64)
    for start in range(0, len(ids), 64):  # blocks keep the (m, k, d) gather small
        block = ids[start : start + 64]
        missing = block < 0
        vecs = train[np.where(missing, 0, block)].astype(np.float64)  # (b, k, d)
        q = np.asarray(queries[start : start + 64], dtype=np.float64)[:, None, :]
        part = rows_to_rows_float64(q, vecs, metric)
        part[missing] = np.inf
        out[start : start + 64] = part
    return out


def recall_at_k(gt_distances: np.ndarray, run_distances: np.ndarray, k: int) -> np.ndarray:
    """Per-query recall@k: the share of the first ``k`` returned items whose true distance is no larger than the
    k-th ground-truth distance (with tolerance), so ties at the boundary count as hits.

    ``gt_distances`` is ``(m, >=k)`` sorted ascending; ``run_distances`` is ``(m, >=k)`` true distances of what
    the index returned, in its order (inf for missing). Returns an ``(m,)`` float array in [0, 1].
    """
    gt = np.asarray(gt_distances, dtype=np.float64)
    run = np.asarray(run_distances, dtype=np.float64)
    if k < 1 or gt.ndim != 2 or run.ndim != 2 or gt.shape[1] < k or len(gt) != len(run):
        raise InvalidParameterError(f"recall@{k} needs (m, >={k}) arrays of equal m, got {gt.shape} and {run.shape}")
    kth = gt[:, k - 1]
    threshold = kth + np.maximum(ABS_TOL, REL_TOL * np.abs(kth))
    hits = (run[:, :k] <= threshold[:, None]).sum(axis=1)
    return np.minimum(hits, k) / float(k)


def mean_recall(gt_distances: np.ndarray, run_distances: np.ndarray, k: int) -> float:
    """Mean over queries of :func:`recall_at_k`."""
    return float(recall_at_k(gt_distances, run_distances, k).mean())


@dataclass(frozen=True)
class Spread:
    """Median of repeated measurements with their minimum, maximum and relative spread ((max-min)/median)."""

    median: float
    min: float
    max: float
    rel_spread: float
    values: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        out = asdict(self)
        out["values"] = list(self.values)
        return out


def spread(values: Iterable[float]) -> Spread:
    """Summarise repeats: median, min, max and (max-min)/median."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        raise InvalidParameterError("no repeated values to summarise")
    med = float(np.median(arr))
    rel = float((arr.max() - arr.min()) / med) if med else 0.0
    return Spread(med, float(arr.min()), float(arr.max()), rel, tuple(float(v) for v in arr))


def percentiles_ms(samples_s: Sequence[float] | np.ndarray, qs: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
    """Percentiles of per-call times (seconds in, milliseconds out), keyed ``p50``, ``p95``, ...."""
    arr = np.asarray(samples_s, dtype=np.float64) * 1e3
    if arr.size == 0:
        raise InvalidParameterError("no samples for percentiles")
    return {f"p{q:g}": float(v) for q, v in zip(qs, np.percentile(arr, qs), strict=True)}


def pareto_frontier(points: Sequence[dict[str, Any]], x: str = "recall", y: str = "qps") -> list[dict[str, Any]]:
    """The points no other point beats on both ``x`` and ``y`` (higher is better on both), sorted by ``x``.

    Points are dicts holding at least the keys ``x`` and ``y``; the other keys ride along.
    """
    ordered = sorted(points, key=lambda p: (-float(p[x]), -float(p[y])))
    frontier: list[dict[str, Any]] = []
    best_y = -np.inf
    for p in ordered:
        if float(p[y]) > best_y:
            frontier.append(p)
            best_y = float(p[y])
    return sorted(frontier, key=lambda p: float(p[x]))


def operating_points(
    runs: Sequence[dict[str, Any]],
    targets: Sequence[float] = (0.90, 0.95, 0.99),
    recall_key: str = "recall_at_10",
    cost_key: str = "ef_search",
    speed_key: str = "qps",
) -> dict[str, dict[str, Any] | None]:
    """For each recall target, the cheapest run reaching it: the smallest ``cost_key`` (ef_search), ties broken by
    the higher ``speed_key``. A target no run reaches maps to None.

    Keys of the result are the targets formatted ``'0.90'``.
    """
    out: dict[str, dict[str, Any] | None] = {}
    for target in targets:
        reaching = [r for r in runs if float(r[recall_key]) >= target]
        best = min(reaching, key=lambda r: (float(r[cost_key]), -float(r.get(speed_key, 0.0))), default=None)
        out[f"{target:.2f}"] = best
    return out
