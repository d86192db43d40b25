"""Per-query results, kept: what one query run returned for every query, and the metrics computed from it.

Modelled on ann-benchmarks' result files: a run stores its raw answers (ids), the *true* distances of those ids
and the per-query times in one HDF5 file together with the run's attributes, and every metric is computed
afterwards from the stored arrays and the dataset's ground truth. Nothing is pickled.

File layout (schema tag ``ruvector-lab/perquery@1`` in the root attribute ``schema``):

``neighbors``  ``(m, k)`` int64, the ids the index returned per query, in its order (-1 for a missing slot)
``distances``  ``(m, k)`` float32/float64, the exact distances of those ids (inf for a missing slot)
``times``      ``(m,)`` float64 seconds per query (optional)
attributes     scalar run attributes (str, int, float, bool) as they are; every other value (dicts, lists,
               None) goes, JSON-encoded, into the one string attribute ``run``

Metrics:

- :func:`strict_recall`: plain id overlap with the first k ground-truth ids; ties are *not* tolerated.
- tie-tolerant recall is the project's single definition, :func:`ruvector_lab.bench.metrics.recall_at_k`.
- :func:`recall_distribution`: mean, low percentiles and the share of badly served queries.
- per-query difficulty after VIBE (Jääsaari et al. 2025) and Aumüller & Ceccarello (2019): local intrinsic
  dimensionality (:func:`lid_mle`, higher = harder) and relative contrast (:func:`relative_contrast`, lower =
  harder), and :func:`recall_by_difficulty` to show recall per difficulty quintile.
- :func:`summarize_run`: the JSON-able summary the runner puts into its query record next to the HDF5 path.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..distances import check_metric, pairwise_float64
from ..errors import DatasetError, InvalidParameterError
from ..validation import check_positive_int
from .metrics import recall_at_k

SCHEMA_PERQUERY = "ruvector-lab/perquery@1"

#: attribute names the file format itself uses; a run's attributes may not take them
RESERVED_ATTRS = frozenset({"schema", "run"})

#: which end of each difficulty measure is the hard one
DIFFICULTY_DIRECTION: dict[str, str] = {"lid": "higher is harder", "rc": "lower is harder"}

#: default neighbourhood size of the LID estimate (VIBE reports LID at k=10 and k=100; ann-benchmarks' LID work
#: by Aumüller & Ceccarello uses the 100 stored neighbours)
LID_K = 100

#: a ground-truth distance at most this share of the k-th distance counts as zero (a duplicate point): float
#: rounding leaves duplicates at ~1e-8 of the scale instead of exactly 0, which would wreck the log-ratios
ZERO_REL = 1e-6

#: the estimate needs at least this many positive distances below the k-th one, else it is NaN
LID_MIN_TERMS = 2

#: percentile method used throughout (numpy's default: linear interpolation between order statistics)
PERCENTILE_METHOD = "linear"


# ---------------------------------------------------------------------------------------------------------------
# the file


@dataclass
class QueryResults:
    """One query run read back: returned ids, their true distances, per-query times and the run's attributes."""

    ids: np.ndarray
    distances: np.ndarray
    times: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n_queries(self) -> int:
        """Number of queries (rows)."""
        return int(self.ids.shape[0])

    @property
    def k(self) -> int:
        """Number of results kept per query (columns)."""
        return int(self.ids.shape[1])


def _is_scalar_attr(value: Any) -> bool:
    """True for values stored as native HDF5 attributes (str, bool, int, float and their numpy kinds)."""
    return isinstance(value, str | bool | int | float | np.bool_ | np.integer | np.floating)


def _check_arrays(ids: np.ndarray, distances: np.ndarray, times: np.ndarray | None) -> str | None:
    """The first shape problem of a run's arrays, or None."""
    if ids.ndim != 2:
        return f"neighbors must be 2-D (queries, k), got shape {ids.shape}"
    if distances.shape != ids.shape:
        return f"distances {distances.shape} do not match neighbors {ids.shape}"
    if times is not None and times.shape != (ids.shape[0],):
        return f"times {times.shape} do not match {ids.shape[0]} queries"
    return None


def write_query_results(
    path: str | os.PathLike[str],
    ids: np.ndarray,
    distances: np.ndarray,
    times_s: np.ndarray | None,
    attrs: Mapping[str, Any],
) -> Path:
    """Store one query run in HDF5, atomically (a temporary file in the same folder, then :func:`os.replace`).

    ``ids`` is ``(m, k)`` integers (-1 for a missing result), ``distances`` the ``(m, k)`` *true* distances of
    those ids (see :func:`ruvector_lab.bench.metrics.true_distances`; float32 is kept, anything else is stored as
    float64), ``times_s`` the ``(m,)`` seconds per query or None. ``attrs`` are the run's attributes: scalars
    become HDF5 attributes, every other value is JSON-encoded into the one attribute ``run`` (so tuples come
    back as lists). The names ``schema`` and ``run`` are reserved. Returns the path written.
    """
    import h5py

    ids_arr = np.asarray(ids)
    if ids_arr.size and not np.issubdtype(ids_arr.dtype, np.integer):
        raise InvalidParameterError(f"ids must be integers, got dtype {ids_arr.dtype}")
    ids_arr = ids_arr.astype(np.int64, copy=False)
    dist_arr = np.asarray(distances)
    dist_arr = dist_arr.astype(np.float32 if dist_arr.dtype == np.float32 else np.float64, copy=False)
    times_arr = None if times_s is None else np.asarray(times_s, dtype=np.float64)
    problem = _check_arrays(ids_arr, dist_arr, times_arr)
    if problem:
        raise InvalidParameterError(problem)
    clash = RESERVED_ATTRS.intersection(attrs)
    if clash:
        raise InvalidParameterError(f"run attributes may not use the reserved name(s) {sorted(clash)}")
    scalars = {str(key): value for key, value in attrs.items() if _is_scalar_attr(value)}
    others = {str(key): value for key, value in attrs.items() if not _is_scalar_attr(value)}
    try:
        run_json = json.dumps(others, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"run attributes cannot be stored as JSON: {exc}") from None

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["schema"] = SCHEMA_PERQUERY
            f.attrs["run"] = run_json
            for key, value in scalars.items():
                f.attrs[key] = value
            f.create_dataset("neighbors", data=ids_arr)
            f.create_dataset("distances", data=dist_arr)
            if times_arr is not None:
                f.create_dataset("times", data=times_arr)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # results are for reading by notebooks and other users
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _json_default(value: Any) -> Any:
    """numpy values inside run attributes, as plain Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in run attributes")


def _plain(value: Any) -> Any:
    """An HDF5 attribute value as a plain Python value."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_query_results(path: str | os.PathLike[str]) -> QueryResults:
    """Read a file written by :func:`write_query_results`.

    Raises :class:`~ruvector_lab.errors.DatasetError`, naming the file and the problem, for a missing file, a
    file that is not (readable) HDF5 or is truncated, a missing or unknown ``schema`` tag, missing datasets,
    arrays whose shapes do not agree, or a ``run`` attribute that is not a JSON object.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no per-query result file at {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"{path} is not a readable HDF5 file: {exc}") from None
    try:
        with f:
            schema = _plain(f.attrs.get("schema"))
            if schema != SCHEMA_PERQUERY:
                found = "no schema tag" if schema is None else f"schema tag {schema!r}"
                raise DatasetError(f"{path} has {found}; expected {SCHEMA_PERQUERY!r}")
            missing = [name for name in ("neighbors", "distances") if name not in f]
            if missing:
                raise DatasetError(f"{path} lacks the dataset(s) {missing}")
            ids = np.asarray(f["neighbors"][()], dtype=np.int64)
            raw_dist = np.asarray(f["distances"][()])
            distances = raw_dist.astype(np.float32 if raw_dist.dtype == np.float32 else np.float64, copy=False)
            times = np.asarray(f["times"][()], dtype=np.float64) if "times" in f else None
            raw_attrs = {key: _plain(value) for key, value in f.attrs.items()}
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise DatasetError(f"{path} cannot be read (truncated or damaged?): {exc}") from None
    problem = _check_arrays(ids, distances, times)
    if problem:
        raise DatasetError(f"{path}: {problem}")
    raw_attrs.pop("schema", None)
    run_json = raw_attrs.pop("run", "{}")
    try:
        run = json.loads(run_json)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: attribute 'run' is not valid JSON: {exc}") from None
    if not isinstance(run, dict):
        raise DatasetError(f"{path}: attribute 'run' must hold a JSON object, got {type(run).__name__}")
    return QueryResults(ids, distances, times, {**raw_attrs, **run})


# ---------------------------------------------------------------------------------------------------------------
# recall


def strict_recall(gt_ids: np.ndarray, run_ids: np.ndarray, k: int) -> np.ndarray:
    """Per-query strict recall@k: the share of the run's first ``k`` ids found among the first ``k``
    ground-truth ids. Ties at the k-th distance are *not* tolerated: returning an equidistant point that the
    ground truth happened to rank k+1-th is a miss (compare :func:`ruvector_lab.bench.metrics.recall_at_k`).

    ``gt_ids`` is ``(m, >=k)``, ``run_ids`` ``(m, >=k)``; negative ids (missing results) never count and an id
    returned twice counts once. Returns an ``(m,)`` float array in [0, 1].
    """
    k = check_positive_int("k", k)
    gt = np.asarray(gt_ids)
    run = np.asarray(run_ids)
    if gt.ndim != 2 or run.ndim != 2 or gt.shape[1] < k or run.shape[1] < k or len(gt) != len(run):
        raise InvalidParameterError(f"strict recall@{k} needs (m, >={k}) id arrays of equal m, got {gt.shape} "
                                    f"and {run.shape}")
    m = len(gt)
    if m == 0:
        return np.zeros(0, dtype=np.float64)
    gt = gt[:, :k].astype(np.int64)
    run = run[:, :k].astype(np.int64)
    # one key per (query, id) so a single vectorised membership test covers every row
    width = int(max(gt.max(), run.max(), 0)) + 2
    rows = np.arange(m, dtype=np.int64)[:, None] * width
    gt_keys = (rows + gt + 1)[gt >= 0]
    run_keys = np.unique((rows + run + 1)[run >= 0])
    hit_rows = run_keys[np.isin(run_keys, gt_keys)] // width
    hits = np.bincount(hit_rows, minlength=m)
    return hits / float(k)


def recall_distribution(per_query_recall: np.ndarray) -> dict[str, float]:
    """How recall is spread over queries, not just its mean.

    Keys: ``n`` (queries), ``mean``, ``min``, ``p1``, ``p5``, ``p50`` (percentiles over queries, numpy's
    default *linear* interpolation between order statistics) and ``share_below_0.5`` (the share of queries
    with recall < 0.5: the badly served ones a mean hides).
    """
    r = np.asarray(per_query_recall, dtype=np.float64).ravel()
    if r.size == 0:
        raise InvalidParameterError("no per-query recall values to summarise")
    if not np.all(np.isfinite(r)):
        raise InvalidParameterError("per-query recall holds NaN or inf")
    p1, p5, p50 = np.percentile(r, [1, 5, 50], method=PERCENTILE_METHOD)
    return {"n": int(r.size), "mean": float(r.mean()), "min": float(r.min()), "p1": float(p1), "p5": float(p5),
            "p50": float(p50), "share_below_0.5": float((r < 0.5).mean())}


# ---------------------------------------------------------------------------------------------------------------
# per-query difficulty


def lid_mle(gt_distances: np.ndarray, k: int | None = None, metric: str | None = None) -> np.ndarray:
    """Local intrinsic dimensionality of each query by maximum likelihood (Levina & Bickel 2004; Amsaleg et al.
    2015), from its exact ground-truth distances: ``LID = -1 / mean_{i<k} log(d_i / d_k)``, the mean taken over
    the neighbours closer in rank than the k-th (``k - 1`` terms, Levina–Bickel's normalisation; VIBE divides by
    ``k`` instead, which reads ``k / (k-1)`` higher). Higher LID = harder query.

    ``gt_distances`` is ``(m, K)`` sorted ascending; ``k`` defaults to ``min(100, K)`` (:data:`LID_K`).
    Distances that are zero (duplicates of the query; in practice at most :data:`ZERO_REL` of ``d_k``) are
    skipped; a query left with fewer than :data:`LID_MIN_TERMS` positive distances below ``d_k``, a zero ``d_k``,
    or all neighbours tied with ``d_k`` gives NaN.

    The estimator needs non-negative distances (it models how the neighbour count grows with the radius): for
    ``metric='dot_product'``, whose "distance" ``-dot`` can be negative, every value is NaN, and so is any query
    whose first k distances hold a negative value whatever the metric.
    """
    d = np.asarray(gt_distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] < 2:
        raise InvalidParameterError(f"LID needs (m, K>=2) distances, got {d.shape}")
    k = min(LID_K, d.shape[1]) if k is None else check_positive_int("k", k, minimum=2)
    if k > d.shape[1]:
        raise InvalidParameterError(f"LID at k={k} needs at least {k} ground-truth distances, got {d.shape[1]}")
    if metric is not None and check_metric(metric) == "dot_product":
        return np.full(len(d), np.nan)
    d = d[:, :k]
    dk = d[:, k - 1 : k]
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = d[:, : k - 1]
        positive = inner > ZERO_REL * dk
        logs = np.where(positive, np.log(np.where(positive, inner, 1.0) / dk), 0.0)
        n_terms = positive.sum(axis=1)
        total = logs.sum(axis=1)
        lid = -n_terms / total
    bad = (n_terms < LID_MIN_TERMS) | ~(total < 0) | ~(dk[:, 0] > 0) | (d.min(axis=1) < 0) | ~np.isfinite(lid)
    lid[bad] = np.nan
    return lid


def relative_contrast(
    queries: np.ndarray,
    train: np.ndarray,
    gt_distances: np.ndarray,
    metric: str,
    k: int = 10,
    sample: int = 1000,
    seed: int = 0,
    block: int = 1024,
) -> np.ndarray:
    """Relative contrast of each query (He, Kumar & Chang 2012): the mean distance from the query to the data
    over its distance to the k-th nearest neighbour. Lower RC = harder query (the neighbours barely stand out).

    He et al. define RC with the 1st neighbour (``D_mean / D_min``) and generalise it to the k-th; VIBE reports
    it with the k-th (rc1, rc10, rc100) and the whole base set as the mean. Here the numerator is the mean exact
    (float64, :func:`~ruvector_lab.distances.pairwise_float64`) distance to one seeded random sample of
    ``sample`` train rows (without replacement; all rows if fewer), the same sample for every query; the
    denominator is ``gt_distances[:, k-1]``. A non-positive denominator or mean gives NaN (with
    ``dot_product``, whose ``-dot`` can be negative, many or all values are NaN: the ratio means nothing there).
    """
    check_metric(metric)
    k = check_positive_int("k", k)
    sample = check_positive_int("sample", sample)
    block = check_positive_int("block", block)
    q = np.asarray(queries)
    x = np.asarray(train)
    gt = np.asarray(gt_distances, dtype=np.float64)
    if q.ndim != 2 or x.ndim != 2 or q.shape[1] != x.shape[1]:
        raise InvalidParameterError(f"queries {q.shape} and train {x.shape} must be 2-D of equal width")
    if gt.ndim != 2 or len(gt) != len(q) or gt.shape[1] < k:
        raise InvalidParameterError(f"RC at k={k} needs ({len(q)}, >={k}) ground-truth distances, got {gt.shape}")
    if len(x) == 0:
        raise InvalidParameterError("RC needs at least one train row")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(x), size=min(sample, len(x)), replace=False))
    picked = x[rows]
    mean = np.empty(len(q), dtype=np.float64)
    for start in range(0, len(q), block):
        mean[start : start + block] = pairwise_float64(q[start : start + block], picked, metric).mean(axis=1)
    denom = gt[:, k - 1]
    ok = (denom > 0) & (mean > 0) & np.isfinite(denom)
    out = np.full(len(q), np.nan)
    out[ok] = mean[ok] / denom[ok]
    return out


def query_difficulty(
    queries: np.ndarray,
    train: np.ndarray,
    gt_distances: np.ndarray,
    metric: str,
    lid_k: int | None = None,
    rc_k: int = 10,
    rc_sample: int = 1000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Both difficulty measures of every query, computed once per dataset: ``{'lid': (m,), 'rc': (m,)}``.

    LID by :func:`lid_mle` at ``lid_k`` (default ``min(100, K)``; NaN for dot_product), RC by
    :func:`relative_contrast` at ``rc_k`` over ``rc_sample`` seeded train rows. See
    :data:`DIFFICULTY_DIRECTION` for which end is hard.
    """
    return {
        "lid": lid_mle(gt_distances, k=lid_k, metric=metric),
        "rc": relative_contrast(queries, train, gt_distances, metric, k=rc_k, sample=rc_sample, seed=seed),
    }


def recall_by_difficulty(
    per_query_recall: np.ndarray, difficulty: np.ndarray, n_bins: int = 5
) -> list[dict[str, Any]]:
    """Recall per difficulty bin: the queries with a finite difficulty, sorted by it (stable), split into
    ``n_bins`` bins of (nearly) equal count (quintiles by default). Bins are in ascending difficulty, so for LID
    the *last* bin is the hardest and for RC the *first* (see :data:`DIFFICULTY_DIRECTION`).

    Each bin: ``bin`` (0-based), ``difficulty_min``, ``difficulty_max`` (ranges ascend: a bin's min is >= the
    previous bin's max; equal values at a boundary may fall in both neighbours), ``n_queries``, ``mean_recall``,
    ``p5_recall`` (linear interpolation) and ``n_nan_excluded``: the number of queries left out of every bin
    because their difficulty is NaN or inf (the same in every bin). Fewer queries than bins give fewer bins;
    none with a finite difficulty gives an empty list.
    """
    n_bins = check_positive_int("n_bins", n_bins)
    r = np.asarray(per_query_recall, dtype=np.float64).ravel()
    diff = np.asarray(difficulty, dtype=np.float64).ravel()
    if r.shape != diff.shape:
        raise InvalidParameterError(f"{r.size} recall values but {diff.size} difficulty values")
    finite = np.isfinite(diff)
    n_excluded = int((~finite).sum())
    idx = np.flatnonzero(finite)
    order = idx[np.argsort(diff[idx], kind="stable")]
    bins: list[dict[str, Any]] = []
    for chunk in np.array_split(order, min(n_bins, len(order))) if len(order) else []:
        rec = r[chunk]
        bins.append({
            "bin": len(bins),
            "difficulty_min": float(diff[chunk[0]]),
            "difficulty_max": float(diff[chunk[-1]]),
            "n_queries": len(chunk),
            "mean_recall": float(rec.mean()),
            "p5_recall": float(np.percentile(rec, 5, method=PERCENTILE_METHOD)),
            "n_nan_excluded": n_excluded,
        })
    return bins


# ---------------------------------------------------------------------------------------------------------------
# one run's summary


def summarize_run(
    gt_ids: np.ndarray,
    gt_distances: np.ndarray,
    run_ids: np.ndarray,
    run_distances: np.ndarray,
    k: int,
    difficulty: Mapping[str, np.ndarray] | None = None,
    n_bins: int = 5,
) -> dict[str, Any]:
    """The JSON-able per-query summary of one run, for the query record next to its HDF5 path.

    ``run_distances`` are the true distances of ``run_ids`` (as stored by :func:`write_query_results`);
    ``difficulty`` is :func:`query_difficulty`'s dict (or None). Keys:

    - ``k``, ``n_queries``
    - ``recall_strict_mean``: mean of :func:`strict_recall` (ties not tolerated)
    - ``recall_tolerant_mean``: mean of :func:`~ruvector_lab.bench.metrics.recall_at_k` (ties tolerated, the
      figure the query record's ``recall`` holds)
    - ``recall_tolerant``: :func:`recall_distribution` of the tolerant recall
    - ``recall_strict``: ``{'mean': ...}`` of the strict recall
    - ``percentile_method``: ``'linear'``
    - ``difficulty``: ``{name: {'direction': 'higher is harder' | 'lower is harder' | 'unknown', 'n_nan': int,
      'bins': recall_by_difficulty(tolerant recall, values)}}`` (empty when ``difficulty`` is None)
    """
    k = check_positive_int("k", k)
    strict = strict_recall(gt_ids, run_ids, k)
    tolerant = recall_at_k(gt_distances, run_distances, k)
    if len(strict) != len(tolerant):
        raise InvalidParameterError(f"ground-truth ids ({len(strict)}) and distances ({len(tolerant)}) disagree "
                                    "on the number of queries")
    tables: dict[str, Any] = {}
    for name, values in (difficulty or {}).items():
        values = np.asarray(values, dtype=np.float64)
        if values.shape != tolerant.shape:
            raise InvalidParameterError(f"difficulty {name!r} has shape {values.shape}, expected {tolerant.shape}")
        tables[name] = {"direction": DIFFICULTY_DIRECTION.get(name, "unknown"),
                        "n_nan": int((~np.isfinite(values)).sum()),
                        "bins": recall_by_difficulty(tolerant, values, n_bins)}
    strict_mean = float(strict.mean())
    tolerant_dist = recall_distribution(tolerant)
    return {"k": k, "n_queries": len(tolerant), "recall_strict_mean": strict_mean,
            "recall_tolerant_mean": tolerant_dist["mean"], "recall_tolerant": tolerant_dist,
            "recall_strict": {"mean": strict_mean}, "percentile_method": PERCENTILE_METHOD, "difficulty": tables}
