"""The results reader: every result file under a results root as polars DataFrames, read and derived in one place.

The pipeline writes JSON records (build@2, query@3, quant@1, adr@1) and per-query HDF5 files (perquery@1) under a
results root (where each lives: :mod:`ruvector_lab.bench.results`; their schemas: :mod:`ruvector_lab.bench.schemas`).
The report (:mod:`ruvector_lab.bench.report`) and the notebooks (``notebooks/_nbdata.py``) read them only through
this module, and the figures both derive from them are computed here, once: the effective ef of a search
(:func:`effective_ef`), Pareto frontiers (:func:`pareto`, :func:`mark_pareto`), operating points at recall targets
(:func:`operating_points`), noise flags at a threshold (:func:`flag_noise`), the ADR cases as each backend sees them
(:func:`adr_view`) and the selection of a parameters' grid (:meth:`Tables.select`).

Reading rules:

- every readable record is validated against its schema (:func:`ruvector_lab.bench.schemas.validate`) before it is
  used: an unknown or missing schema tag, a tag of another kind (a query record where a build record belongs), or a
  record that does not match its schema raises :class:`~ruvector_lab.errors.ResultSchemaError` naming the file;
- a file that is missing, unreadable or cut short (an interrupted run) counts as absent, as
  :func:`ruvector_lab.bench.results.read_json` has it (logged at INFO);
- records with status 'not available' or 'skipped' are rows of :attr:`Tables.files` (and :attr:`Tables.absent`)
  with their reason; :attr:`Tables.builds` keeps them too (status column), the other frames hold measurements only.

Frames (:func:`load` reads them all; :func:`builds`, :func:`queries`, :func:`codecs`, :func:`adr`, :func:`files`
and :func:`absent` one kind each). Every frame has ``path`` (the record's file); the index frames also ``subtree``
('runs' for the build stage's indexes, 'qhnsw' for the quantize stage's quantized HNSW indexes) and the build's
identity: ``dataset``, ``backend``, ``tier``, ``graph``, ``m``, ``ef_construction``, ``quantization``, ``build``
(the build key ``M16-efc100-none``) and ``label`` (:func:`build_label`). Every frame read from build, query, quant
and ADR records also has the host that measured the record (:data:`HOST_COLUMNS`: ``host``, a fingerprint;
``host_name``; ``max_concurrent``, how many measuring tasks ran on that host at once, null when unknown).

Hosts: a run may spread over several machines (a Dask cluster), and two hosts' timings are not comparable. Every
frontier and operating point here is computed per host (:func:`host_keys`: a frame with a ``host`` column is
grouped by it first); the ratios computed here (thread speed-ups, the facade's overhead, a mixed batch over the
same texts apart) are within one record, so within one host. :func:`hosts` lists the hosts with what they measured,
:func:`co_scheduled` the records measured beside another measuring task on the same host. The autotuner's frames
carry each trial's host too; its fronts and grid ratio are the study's own (computed by the tuner), so
:func:`tune_results` counts the trials' hosts (``n_hosts``) and names the hosts behind the grid comparison.

- ``files``: one row per readable record of any kind and status: ``kind``, ``schema``, ``status``, ``reason``,
  what it is about (the identity above, ``ef_search``, ``k``, ``spec``) and ``environment`` (JSON text);
- ``builds``: one row per build@2 record (:data:`BUILD_COLUMNS`);
- ``queries``: one row per status-'ok' query@3 record (:data:`QUERY_COLUMNS`, then per thread count t found:
  ``qps_<t>``, ``qps_<t>_min``, ``qps_<t>_max``, ``qps_<t>_rel_spread``, ``cpu_<t>`` for the batch split across
  t caller threads, and the same with ``qps_pool_``/``cpu_pool_`` for one caller with the library's pools at t);
- ``query_builds``: one row per (query setting, build) with that build's recall and per-query file;
- ``difficulty``: recall per difficulty quintile, one row per (query setting, measure, bin);
- ``scaling``: batch QPS per (query setting, thread mode, thread count), with speed-up and the pools read back;
- ``codecs``: one row per (status-'ok' quant@1 record, re-rank factor);
- ``adr``: one row per (ADR record, case, protocol); a case not available is one row with its reason.

The quantization figures: :func:`codec_summary` (one row per swept codec: the codes alone beside the first
re-ranking, with the diagnostics), :func:`rabitq_bits` (RaBitQ by bit width) and :func:`qhnsw_vs_scan` (each
quantized HNSW build against the flat scan of the same codes and re-ranking, its memory split into codes, graph
and float vectors). Why a codec loses to a smaller one is :mod:`ruvector_lab.bench.quant_findings`'.

The per-query files: :func:`per_query` (one setting's queries: recall, strict recall and difficulty, recomputed
from the dataset's ground truth) and :func:`perquery_check` (every file, with its mean recall recomputed).

The autotuner's studies (tune@1, ``tune/<dataset>/recall-<target>.json``; not part of :class:`Tables`, whose
frames are the pipeline's sweep): :func:`tune_results` (one row per study: the answer, the recommendation per
objective, the grid comparison), :func:`tune_trials` (one row per trial, and the grid's stored points the tuner
never tried) and :func:`tune_pareto` (the tuner's Pareto front beside the grid's). Only the study files are read:
the evaluation caches under ``tune/<dataset>/evals/`` and the Optuna storage beside them are not results.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ..errors import InvalidParameterError
from . import results, schemas
from .metrics import operating_points as _cheapest
from .metrics import pareto_frontier
from .schemas import SCHEMA_PEERS, SCHEMA_TUNE
from .targets import NATIVE_SPEEDUP, NATIVE_SPEEDUP_TEXT, TARGETS, VARIANT_SEP, base_case

log = logging.getLogger(__name__)

#: the kinds of JSON record, in reading order
KINDS = ("build", "query", "quant", "adr")
#: where each kind lives under a results root: the build stage's runs, then the quantize stage's quantized HNSW
#: builds under qhnsw/ (same schemas); files are read in this order, each pattern's matches sorted
GLOBS: dict[str, tuple[str, ...]] = {
    "build": ("runs/*/*/*/build.json", "qhnsw/*/runs/*/*/*/build.json"),
    "query": ("runs/*/*/*/query-*.json", "qhnsw/*/runs/*/*/*/query-*.json"),
    "quant": ("quant/*/*.json",),
    "adr": ("adr/*.json",),
    # the autotuner's studies (read by tune_results and friends, not by load): never evals/*.json nor optuna.db
    "tune": ("tune/*/recall-*.json",),
    # native vs WASM builds of one library (read by peer_sides and peer_comparison, not by load)
    "peers": ("peers/*/*.json",),
}
#: the schema tag each kind must carry
TAGS: dict[str, str] = {"build": results.SCHEMA_BUILD, "query": results.SCHEMA_QUERY, "quant": results.SCHEMA_QUANT,
                        "adr": results.SCHEMA_ADR, "tune": SCHEMA_TUNE, "peers": SCHEMA_PEERS}
#: the autotuner's objectives (:data:`ruvector_lab.bench.tune.OBJECTIVES`, in its order; not imported, so the
#: readers do not depend on the tuner's measurement code)
TUNE_OBJECTIVES = ("qps", "memory", "build-time")
#: the recall@10 targets operating points are chosen for
RECALL_TARGETS = (0.90, 0.95, 0.99)
#: the two thread-scaling modes of a query record (``qps``, ``qps_pool``) as :attr:`Tables.scaling` names them
MODES = {"qps": "caller threads", "qps_pool": "library pool"}
#: one build configuration, and one query setting of it
BUILD_KEY = ("dataset", "backend", "m", "ef_construction", "quantization")
SETTING_KEY = (*BUILD_KEY, "ef_search")

_S, _I, _F, _B = pl.String, pl.Int64, pl.Float64, pl.Boolean
#: the host of a record that names none (written before hosts were recorded): all such records count as one
#: unnamed host, so their timings are never put beside a named host's without the report saying so
UNRECORDED_HOST = "unrecorded"
#: the host columns of every row read from a build, query, quant or ADR record (:func:`host_columns`): ``host`` the
#: fingerprint of the machine that measured it (:func:`ruvector_lab.bench.env.host`; :data:`UNRECORDED_HOST` when
#: the record names none), ``host_name`` its name, ``max_concurrent`` the most measuring tasks that ran on that host
#: at once during the record's task (1: alone; null: unknown, the record predates host loads or no task measured it)
HOST_COLUMNS: dict[str, Any] = {"host": _S, "host_name": _S, "max_concurrent": _I}
_IDENTITY = {"path": _S, "subtree": _S, "dataset": _S, "backend": _S, "tier": _S, "graph": _S, "m": _I,
             "ef_construction": _I, "quantization": _S, "build": _S, "label": _S, **HOST_COLUMNS}

#: :attr:`Tables.files`
FILE_COLUMNS: dict[str, Any] = {
    "path": _S, "kind": _S, "schema": _S, "status": _S, "reason": _S, "subtree": _S, "dataset": _S, "backend": _S,
    "tier": _S, "graph": _S, "m": _I, "ef_construction": _I, "quantization": _S, "build": _S, "ef_search": _I,
    "k": _I, "spec": _S, "environment": _S, **HOST_COLUMNS}

#: the stats of a quantized index (``IndexStats.extra``: :func:`ruvector_lab.quantization.rerank.memory_stats`)
#: that :attr:`Tables.builds` reads from a build record (:func:`index_stats`), bytes per vector but ``fixed_bytes``
INDEX_STAT_COLUMNS: dict[str, Any] = {
    "code_bytes_per_vector": _F, "graph_bytes_per_vector": _F, "rerank_float_bytes_per_vector": _F,
    "build_float_bytes_per_vector": _F, "fixed_bytes": _I}

#: :attr:`Tables.builds`. Build time over the ``n_builds`` builds (seconds); ``cpu_utilization`` is the first
#: build's process CPU over wall time; ``threads`` the pinned count read back. Bytes per stored vector three ways:
#: ``bytes_serialized`` (serialize() / n), ``bytes_analytic`` (the layout's estimate, split into ``analytic_*``;
#: null with ``analytic_status`` and ``analytic_reason`` when the estimate does not know the layout) and
#: ``bytes_rss`` (resident-memory growth of a build in a fresh child process; null with ``rss_status`` and
#: ``rss_reason`` when not measured); ``float_bytes`` is 4 x dimensions. ``drift`` is the reference workload's
#: relative change over the configuration, ``noisy`` the record's own noise flags. A quantized index's own stats
#: (:data:`INDEX_STAT_COLUMNS`; null for float indexes and for records that do not carry them) split its memory
#: per vector into codes, graph, float vectors kept for re-ranking and float vectors kept only to build the graph
#: from them, with ``fixed_bytes`` that do not grow with n. ``code_scan_recall`` is recall@k of the median build's
#: code scan (every code, no graph, the same scoring and re-ranking; null where the backend has none).
BUILD_COLUMNS: dict[str, Any] = {
    **_IDENTITY, "status": _S, "reason": _S, "metric": _S, "n_train": _I, "n_test": _I, "dimensions": _I,
    "n_builds": _I, "median_build": _I, "build_time_s": _F, "build_time_min": _F, "build_time_max": _F,
    "build_time_rel_spread": _F, "inserts_per_s": _F, "cpu_utilization": _F, "threads": _I,
    "serialized_bytes": _I, "peak_rss_bytes": _I, "bytes_serialized": _F, "bytes_analytic": _F,
    "analytic_vectors": _F, "analytic_graph": _F, "analytic_ids": _F, "analytic_other": _F, "analytic_status": _S,
    "analytic_reason": _S, "bytes_rss": _F, "rss_status": _S, "rss_reason": _S, "child_peak_rss_bytes": _I,
    "float_bytes": _I, "reference_before_s": _F, "reference_after_s": _F, "drift": _F, "noise_threshold": _F,
    "noisy": pl.List(_S), **INDEX_STAT_COLUMNS, "code_scan_recall": _F}

#: :attr:`Tables.queries` (before the per-thread-count QPS columns). Recall is the **median build**'s:
#: ``recall_at_1``, ``recall_at_10`` (recall@k, distance ties tolerated; the name is kept for any k),
#: ``recall_at_100``, ``recall_strict_at_10`` (ids only); over builds ``recall_at_10_median``/``_min``/``_max``,
#: and ``recall_at_10_median_build``, the median build's own entry (equal to ``recall_at_10``). The per-query tail
#: of recall@k: ``recall_min``, ``recall_p1``, ``recall_p5``, ``recall_p50``, ``share_below_0.5``. Single-query
#: latency (ms; one caller, pools pinned to 1): ``p50_ms`` .. ``mean_ms``, ``p50_rel_spread`` over timing repeats,
#: ``latency_cpu``. ``ef_effective`` is the ef the search really ran (:func:`effective_ef`), ``ef_effective_big``
#: that of recall@k_big; ``series`` names the line a plot draws (backend and :func:`build_label`). ``reference_*``
#: and ``drift``: the build configuration's reference workload; ``noisy`` the record's own noise flags. The library
#: called directly on the median build (null where the backend has no call of its own): ``direct_p50_ms`` /
#: ``direct_p99_ms`` and ``facade_paired_p50_ms`` (the facade in the same alternating run: ``p50_ms`` itself),
#: ``direct_qps_1`` and ``facade_paired_qps_1`` (the median build's own 1-thread QPS), and the overhead
#: factors ``facade_latency_ratio`` (facade p50 / direct p50) and ``facade_qps_ratio`` (direct QPS / facade QPS).
QUERY_COLUMNS: dict[str, Any] = {
    **_IDENTITY, "series": _S, "metric": _S, "n_train": _I, "dimensions": _I, "ef_search": _I, "k": _I,
    "k_big": _I, "n_queries": _I, "ef_effective": _I, "ef_effective_big": _I, "n_builds": _I, "median_build": _I,
    "recall_at_1": _F, "recall_at_10": _F, "recall_at_100": _F, "recall_at_10_median": _F,
    "recall_at_10_min": _F, "recall_at_10_max": _F, "recall_at_10_median_build": _F, "recall_strict_at_10": _F,
    "recall_min": _F, "recall_p1": _F, "recall_p5": _F, "recall_p50": _F, "share_below_0.5": _F, "p50_ms": _F,
    "p95_ms": _F, "p99_ms": _F, "mean_ms": _F, "p50_rel_spread": _F, "latency_cpu": _F, "noisy": pl.List(_S),
    "noise_threshold": _F, "reference_before_s": _F, "reference_after_s": _F, "drift": _F, "perquery_file": _S,
    "direct_p50_ms": _F, "direct_p99_ms": _F, "facade_paired_p50_ms": _F, "direct_qps_1": _F,
    "facade_paired_qps_1": _F, "facade_latency_ratio": _F, "facade_qps_ratio": _F}

#: :attr:`Tables.query_builds`: one row per build of a query setting (``build_index`` into the record's builds;
#: ``median_build`` marks the one the record's recall comes from), ``perquery_file`` relative to the build's folder
#: and ``file`` the full path
QUERY_BUILD_COLUMNS: dict[str, Any] = {
    **_IDENTITY, "ef_search": _I, "k": _I, "build_index": _I, "seed": _I, "median_build": _B, "recall_at_1": _F,
    "recall_at_10": _F, "recall_at_100": _F, "recall_strict_at_10": _F, "qps_1t": _F, "perquery_file": _S,
    "file": _S}

#: :attr:`Tables.difficulty`: the queries sorted by a difficulty ``measure`` ('lid': local intrinsic
#: dimensionality, higher is harder; 'rc': relative contrast, lower is harder) and cut into bins of equal count;
#: ``bin`` ascends with the value, ``hardness`` runs 1 (easiest) .. the bin count (hardest) for either measure;
#: ``n_nan_excluded`` queries had no finite value; ``recall_at_10`` is the setting's
DIFFICULTY_COLUMNS: dict[str, Any] = {
    **_IDENTITY, "ef_search": _I, "measure": _S, "direction": _S, "bin": _I, "hardness": _I, "difficulty_min": _F,
    "difficulty_max": _F, "n_queries": _I, "mean_recall": _F, "p5_recall": _F, "n_nan_excluded": _I,
    "n_queries_total": _I, "recall_at_10": _F}

#: :attr:`Tables.scaling`: ``mode`` 'caller threads' (the batch split across t caller threads, every library pool
#: pinned to 1 in each) or 'library pool' (one caller, the library's pools at t); QPS median over builds with min,
#: max and rel_spread; ``speedup`` over the 1-thread QPS, ``efficiency`` = speedup / t; ``pools`` what a worker
#: read back, ``pinned`` whether every per-thread pool ran at the count the mode means. The 1-thread point is one
#: measurement, listed in both modes with ``baseline`` True.
SCALING_COLUMNS: dict[str, Any] = {
    **_IDENTITY, "ef_search": _I, "mode": _S, "threads": _I, "qps": _F, "qps_min": _F, "qps_max": _F,
    "rel_spread": _F, "cpu_utilization": _F, "speedup": _F, "efficiency": _F, "pools": _S, "pinned": _B,
    "baseline": _B}

#: :attr:`Tables.codecs`: ``codec`` is the spec ('scalar', 'product-m48'), ``kind`` the codec kind; bytes per
#: vector counts the code plus the codebooks shared over the base set; ``factor`` is the re-rank factor (1: the codes
#: alone; f: the best f x k candidates re-scored exactly), ``candidates`` = f x k. ``rotation`` is the codec's
#: ('random' or 'none' for RaBitQ, 'none' or 'opq' for PQ; a record from before rotations were recorded held its
#: kind's default). The diagnostics (null when the record predates them, or had no ground-truth neighbours):
#: ``neighbourhood_order`` (mean Spearman correlation of the codes' distance estimates with the true distances
#: over each query's 100 true neighbours), ``neighbourhood_spread`` (mean squared distance of those neighbours to
#: their centroid), ``spread_share`` (that over the data's total variance), ``error_to_spread`` (the codec's
#: reconstruction error over that spread) and ``rabitq_alignment`` (RaBitQ's mean <x̄, y>; null for other kinds)
CODEC_COLUMNS: dict[str, Any] = {
    "path": _S, "dataset": _S, "metric": _S, "dimensions": _I, "n_train": _I, "codec": _S, "kind": _S,
    "codec_m": _I, "bits": _I, "code_bytes": _I, "codebook_bytes": _I, "bytes_per_vector": _F, "compression": _F,
    "train_time_s": _F, "encode_per_s": _F, "quantize_p50_ms": _F, "quantize_p95_ms": _F, "quantize_p99_ms": _F,
    "reconstruction_mse": _F, "factor": _I, "candidates": _I, "recall_at_1": _F, "recall_at_10": _F, "qps": _F,
    "rotation": _S, "neighbourhood_order": _F, "neighbourhood_spread": _F, "spread_share": _F,
    "error_to_spread": _F, "rabitq_alignment": _F, **HOST_COLUMNS}

#: :attr:`Tables.adr`: ``backend`` 'common' for the cases measured once for every backend; ``case_index`` the
#: case's position in its record; ``judged_ms`` what the verdict is taken on (ADR protocol: the mean; honest: p95),
#: ``target_ms`` the ADR's bound (null: no target); ``info`` the case's details as JSON text
ADR_COLUMNS: dict[str, Any] = {
    "path": _S, "backend": _S, "tier": _S, "scope": _S, "case": _S, "case_index": _I, "status": _S, "reason": _S,
    "protocol": _S, "iterations": _I, "p50_ms": _F, "p95_ms": _F, "p99_ms": _F, "mean_ms": _F, "judged_ms": _F,
    "target_ms": _F, "verdict": _S, "recall_at_10": _F, "info": _S, **HOST_COLUMNS}


# ------------------------------------------------------------------------------------------------------- helpers
def build_label(key: str, graph: str | None) -> str:
    """How a build is named in tables: its key for graphs; 'exact' for a flat float scan; the key and 'flat code
    scan' for a flat quantized one (a build without a graph, one not measured, keeps its key)."""
    if graph in ("hnsw", None):
        return key
    return "exact" if key.endswith("-none") else f"{key} (flat code scan)"


def effective_ef(ef_effective: int | None, quantization: str | None) -> int | None:
    """The ef a graph search really ran: the record's max(ef_search, k) (None for a flat scan), raised to the
    re-rank depth R of a quantized build ('scalar-r40'), whose graph search must return R candidates."""
    if ef_effective is None or not quantization or quantization == "none":
        return ef_effective
    from .results import split_spec

    return max(int(ef_effective), split_spec(quantization)[2])


def spread_of(value: Any) -> dict[str, Any]:
    """A Spread of the result files ({median, min, max, rel_spread, values}: a figure over builds or repeats) as
    ``{median, min, max, rel_spread, n}``. A bare number is a spread of one value; anything else gives Nones and
    n = 0."""
    if isinstance(value, dict) and value.get("median") is not None:
        med = float(value["median"])
        values = value.get("values") or [med]
        return {"median": med, "min": float(value.get("min", med)), "max": float(value.get("max", med)),
                "rel_spread": value.get("rel_spread"), "n": len(values)}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"median": float(value), "min": float(value), "max": float(value), "rel_spread": 0.0, "n": 1}
    return {"median": None, "min": None, "max": None, "rel_spread": None, "n": 0}


def backend_rank(backend: str | None) -> int:
    """A backend's place in the registry's order (:func:`ruvector_lab.backends.names`); unknown names last."""
    from ..backends import names

    order = names()
    return order.index(backend) if backend in order else len(order)


def sort_backends(frame: pl.DataFrame, *then: str, first: Sequence[str] = ("dataset",),
                  column: str = "backend") -> pl.DataFrame:
    """``frame`` sorted by ``first``, then the backend in registry order, then ``then`` (stable)."""
    from ..backends import names

    order = {name: i for i, name in enumerate(names())}
    ranked = frame.with_columns(pl.col(column).replace_strict(order, default=len(order), return_dtype=pl.Int64)
                                .alias("_rank"))
    keys = [c for c in first if c in frame.columns] + ["_rank", *then]
    return ranked.sort(keys, maintain_order=True).drop("_rank")


def thread_counts(frame: pl.DataFrame, mode: str = "qps") -> list[int]:
    """The thread counts a queries frame has QPS columns for, in mode ``'qps'`` (caller threads) or
    ``'qps_pool'`` (library pool), ascending."""
    prefix = f"{mode}_"
    found = set()
    for col in frame.columns:
        rest = col[len(prefix):] if col.startswith(prefix) else ""
        if rest.isdigit():
            found.add(int(rest))
    return sorted(found)


def _frame(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=dict(columns))


def _subtree(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).parts[0]
    except (ValueError, IndexError):
        return ""


def _pools(report: Any) -> str:
    """A pinned-pools report ({faiss_omp, openmp, blas, library_pools, ruvector_rayon}) in one short line."""
    if not isinstance(report, dict):
        return ""
    names = {"faiss_omp": "faiss", "openmp": "openmp", "blas": "blas", "library_pools": "library",
             "ruvector_rayon": "rayon"}
    parts = []
    for key, label in names.items():
        value = report.get(key)
        if isinstance(value, list):
            value = "/".join(str(v) for v in sorted(set(value))) if value else None
        if value is not None:
            parts.append(f"{label}={value}")
    return " ".join(parts)


def _hardness(bin_index: int, n_bins: int, direction: str) -> int:
    """1 for the easiest bin .. n_bins for the hardest, whichever end of the measure is the hard one."""
    return n_bins - bin_index if direction == "lower is harder" else bin_index + 1


# ------------------------------------------------------------------------------------------------------ reading
def result_paths(root: str | os.PathLike[str], kind: str) -> list[Path]:
    """Every file of ``kind`` ('build', 'query', 'quant', 'adr', 'tune', 'peers') under ``root``, in reading order,
    readable or not."""
    if kind not in GLOBS:
        raise InvalidParameterError(f"unknown kind of result {kind!r}; known: {', '.join(GLOBS)}")
    base = Path(root)
    return [p for pattern in GLOBS[kind] for p in sorted(base.glob(pattern))]


def read_records(root: str | os.PathLike[str], kind: str) -> list[dict[str, Any]]:
    """Every readable record of ``kind`` under ``root``, validated, each with ``_path`` (its file) and
    ``_subtree`` (the first folder under ``root``: runs, qhnsw, quant, adr). A file that is unreadable or cut
    short counts as absent; a record whose schema tag is unknown, missing or of another kind, or that does not
    match its schema, raises :class:`~ruvector_lab.errors.ResultSchemaError` naming the file."""
    base = Path(root)
    out = []
    for path in result_paths(base, kind):
        record = results.read_json(path)
        if record is None:
            log.info("%s is unreadable or cut short (an interrupted run?): counted as absent", path)
            continue
        schemas.validate(record, path, expect=TAGS[kind])
        record["_path"] = str(path)
        record["_subtree"] = _subtree(base, path)
        out.append(record)
    return out


def host_columns(rec: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`HOST_COLUMNS` of one record: the host in its ``environment.host`` ({name, fingerprint}) and
    ``host_load.max_concurrent``. A record without a host is of the one host :data:`UNRECORDED_HOST`; one without a
    host load has ``max_concurrent`` None (unknown: never read as 1, alone)."""
    env = rec.get("environment")
    host = env.get("host") if isinstance(env, Mapping) else None
    fingerprint = host.get("fingerprint") if isinstance(host, Mapping) else None
    name = host.get("name") if isinstance(host, Mapping) else None
    load = rec.get("host_load")
    concurrent = load.get("max_concurrent") if isinstance(load, Mapping) else None
    return {"host": str(fingerprint) if fingerprint else UNRECORDED_HOST,
            # a fingerprint without a name is still a host of its own: named by its fingerprint
            "host_name": str(name) if name else (str(fingerprint) if fingerprint else UNRECORDED_HOST),
            "max_concurrent": int(concurrent) if _is_number(concurrent) else None}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _identity(rec: dict[str, Any]) -> dict[str, Any]:
    """The columns naming a build or query record's build configuration, and the host that measured it."""
    build = rec.get("build") or {}
    m, efc, quantization = build.get("m"), build.get("ef_construction"), build.get("quantization", "none")
    key = results.build_key(m, efc, quantization) if m is not None and efc is not None else None
    graph = rec.get("graph")
    return {"path": rec.get("_path"), "subtree": rec.get("_subtree"), "dataset": (rec.get("dataset") or {}).get("name"),
            "backend": rec.get("backend"), "tier": rec.get("tier"), "graph": graph, "m": m, "ef_construction": efc,
            "quantization": quantization, "build": key, "label": build_label(key, graph) if key else None,
            **host_columns(rec)}


def _file_row(kind: str, rec: dict[str, Any]) -> dict[str, Any]:
    env = rec.get("environment")
    row = {"path": rec["_path"], "kind": kind, "schema": rec["schema"], "status": rec["status"],
           "reason": rec.get("reason"), "subtree": rec["_subtree"], "spec": rec.get("spec"),
           "environment": json.dumps(env) if env else None, **host_columns(rec)}
    if kind in ("build", "query"):
        row |= {k: v for k, v in _identity(rec).items() if k not in ("path", "subtree", "label")}
        query = rec.get("query") or {}
        row |= {"ef_search": query.get("ef_search"), "k": query.get("k")}
    elif kind == "quant":
        row |= {"dataset": (rec.get("dataset") or {}).get("name")}
    else:
        row |= {"backend": rec.get("backend"), "tier": rec.get("tier")}
    return row


def _build_row(rec: dict[str, Any]) -> dict[str, Any]:
    ds = rec.get("dataset") or {}
    row = _identity(rec) | {"status": rec["status"], "reason": rec.get("reason"), "metric": ds.get("metric"),
                            "n_train": ds.get("n_train"), "n_test": ds.get("n_test"),
                            "dimensions": ds.get("dimensions"),
                            "float_bytes": 4 * int(ds["dimensions"]) if ds.get("dimensions") else None}
    if rec["status"] != "ok":
        return row | {"n_builds": 0}
    times = spread_of(rec["build_time_s"])
    bpv = rec["bytes_per_vector"]
    analytic, child = bpv.get("analytic") or {}, bpv.get("child") or {}
    measured = "total" in analytic
    rss = bpv.get("rss_growth")
    reference = rec.get("reference") or {}
    return row | {
        "n_builds": len(rec["builds"]), "median_build": rec.get("median_build"), "build_time_s": times["median"],
        "build_time_min": times["min"], "build_time_max": times["max"], "build_time_rel_spread": times["rel_spread"],
        "inserts_per_s": rec.get("inserts_per_s"), "cpu_utilization": rec["builds"][0].get("cpu_utilization"),
        "threads": (rec.get("threads") or {}).get("threads"), "serialized_bytes": rec.get("serialized_bytes"),
        "peak_rss_bytes": rec.get("peak_rss_bytes"), "bytes_serialized": bpv.get("serialized"),
        "bytes_analytic": analytic.get("total"), "analytic_vectors": analytic.get("vectors"),
        "analytic_graph": analytic.get("graph"), "analytic_ids": analytic.get("ids"),
        "analytic_other": analytic.get("other"),
        "analytic_status": "ok" if measured else analytic.get("status", "not recorded"),
        "analytic_reason": None if measured else analytic.get("reason"), "bytes_rss": rss,
        "rss_status": "measured" if rss is not None else child.get("status", "not recorded"),
        "rss_reason": child.get("reason"), "child_peak_rss_bytes": child.get("peak_rss_bytes"),
        "reference_before_s": reference.get("before_s"), "reference_after_s": reference.get("after_s"),
        "drift": reference.get("drift"), "noise_threshold": rec.get("noise_threshold"),
        "noisy": list(rec.get("noisy") or []), "code_scan_recall": _code_scan_recall(rec)} | \
        _index_stat_columns(index_stats(rec))


def _code_scan_recall(rec: Mapping[str, Any]) -> float | None:
    """Recall@k of the median build's code scan (``builds[median].code_scan``), None when it was not run."""
    builds, median = rec.get("builds"), rec.get("median_build")
    if not isinstance(builds, list) or not isinstance(median, int) or not 0 <= median < len(builds):
        return None
    scan = builds[median].get("code_scan") if isinstance(builds[median], Mapping) else None
    recall = scan.get("recall") if isinstance(scan, Mapping) else None
    if not isinstance(recall, Mapping):
        return None
    k = (rec.get("build") or {}).get("k") or 10
    value = recall.get(str(k), recall.get("10"))
    return float(value) if isinstance(value, (int, float)) else None


def index_stats(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A quantized index's own stats (``IndexStats.extra``) in a build record, wherever the record keeps them:
    the first object holding ``code_bytes_per_vector``, searched breadth-first with the median build's entry
    ahead of the other builds. ``{}`` when there is none (a float index, or a record written before the runner
    kept the stats): every figure read from it is then unknown, never zero."""
    builds = rec.get("builds")
    median = rec.get("median_build")
    first: list[Any] = []
    if isinstance(builds, list) and isinstance(median, int) and 0 <= median < len(builds):
        first.append(builds[median])  # the build whose figures the record reports
    queue = [rec, *first]
    while queue:
        node = queue.pop(0)
        if isinstance(node, Mapping):
            if "code_bytes_per_vector" in node:
                return dict(node)
            queue.extend(node.values())
        elif isinstance(node, list):
            queue.extend(node)
    return {}


def _index_stat_columns(stats: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`INDEX_STAT_COLUMNS` of one build from its :func:`index_stats` (absent figures: None)."""
    out = {}
    for name, dtype in INDEX_STAT_COLUMNS.items():
        value = stats.get(name)
        out[name] = None if value is None else (int(value) if dtype == _I else float(value))
    return out


def _query_row(rec: dict[str, Any]) -> dict[str, Any]:
    ds, query = rec["dataset"], rec["query"]
    k = str(query["k"])
    recall, lat = rec["recall"], rec["latency_ms"]
    builds, median = rec["builds"], rec["median_build"]
    over = spread_of(rec["recall_builds"].get(k, recall.get(k)))
    tail = rec["perquery"]["recall_tolerant"]
    reference = rec.get("reference") or {}
    ident = _identity(rec)
    row = ident | {
        "series": f"{rec['backend']} {ident['label']}", "metric": ds.get("metric"), "n_train": ds.get("n_train"),
        "dimensions": ds.get("dimensions"), "ef_search": query["ef_search"], "k": query["k"],
        "k_big": query.get("k_big"), "n_queries": query.get("n_queries"),
        "ef_effective": effective_ef(query.get("ef_effective"), ident["quantization"]),
        "ef_effective_big": query.get("ef_effective_big"), "n_builds": len(builds), "median_build": median,
        "recall_at_1": recall.get("1"), "recall_at_10": recall.get(k), "recall_at_100": recall.get("100"),
        "recall_at_10_median": over["median"], "recall_at_10_min": over["min"], "recall_at_10_max": over["max"],
        "recall_at_10_median_build": builds[median]["recall"].get(k) if 0 <= median < len(builds) else None,
        "recall_strict_at_10": rec["recall_strict"].get(k), "recall_min": tail.get("min"),
        "recall_p1": tail.get("p1"), "recall_p5": tail.get("p5"), "recall_p50": tail.get("p50"),
        "share_below_0.5": tail.get("share_below_0.5"), "p50_ms": lat.get("p50"), "p95_ms": lat.get("p95"),
        "p99_ms": lat.get("p99"), "mean_ms": lat.get("mean"),
        "p50_rel_spread": spread_of((lat.get("spread") or {}).get("p50"))["rel_spread"],
        "latency_cpu": lat.get("cpu_utilization"), "noisy": list(rec.get("noisy") or []),
        "noise_threshold": rec.get("noise_threshold"), "reference_before_s": reference.get("before_s"),
        "reference_after_s": reference.get("after_s"), "drift": reference.get("drift"),
        "perquery_file": rec.get("perquery_file")} | _direct_columns(rec.get("direct"))
    for field, prefix, cpu in (("qps", "qps_", "cpu_"), ("qps_pool", "qps_pool_", "cpu_pool_")):
        for threads, figure in sorted((rec.get(field) or {}).items(), key=lambda item: int(item[0])):
            sp = spread_of(figure)
            row |= {f"{prefix}{threads}": sp["median"], f"{prefix}{threads}_min": sp["min"],
                    f"{prefix}{threads}_max": sp["max"], f"{prefix}{threads}_rel_spread": sp["rel_spread"],
                    f"{cpu}{threads}": figure.get("cpu_utilization") if isinstance(figure, dict) else None}
    return row


def _direct_columns(direct: dict[str, Any] | None) -> dict[str, Any]:
    """The library-direct columns of a query row (all None when the record has no direct figures)."""
    if not direct:
        return dict.fromkeys(("direct_p50_ms", "direct_p99_ms", "facade_paired_p50_ms", "direct_qps_1",
                              "facade_paired_qps_1", "facade_latency_ratio", "facade_qps_ratio"))
    lat, qps, overhead = direct["latency_ms"], direct["qps"], direct["overhead"]
    return {"direct_p50_ms": lat["direct"]["p50"], "direct_p99_ms": lat["direct"]["p99"],
            "facade_paired_p50_ms": lat["facade"]["p50"], "direct_qps_1": spread_of(qps["direct"])["median"],
            "facade_paired_qps_1": spread_of(qps["facade"])["median"],
            "facade_latency_ratio": overhead["latency_p50"], "facade_qps_ratio": overhead["qps"]}


def _qps_columns(threads: Iterable[int], pool: Iterable[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for prefix, cpu, counts in (("qps_", "cpu_", threads), ("qps_pool_", "cpu_pool_", pool)):
        for t in sorted(set(counts)):
            out |= {f"{prefix}{t}": _F, f"{prefix}{t}_min": _F, f"{prefix}{t}_max": _F, f"{prefix}{t}_rel_spread": _F,
                    f"{cpu}{t}": _F}
    return out


def _query_build_rows(rec: dict[str, Any]) -> list[dict[str, Any]]:
    ident = _identity(rec)
    k = str(rec["query"]["k"])
    folder = Path(rec["_path"]).parent
    out = []
    for i, b in enumerate(rec["builds"]):
        out.append(ident | {"ef_search": rec["query"]["ef_search"], "k": rec["query"]["k"], "build_index": i,
                            "seed": b.get("seed"), "median_build": i == rec["median_build"],
                            "recall_at_1": b["recall"].get("1"), "recall_at_10": b["recall"].get(k),
                            "recall_at_100": b["recall"].get("100"),
                            "recall_strict_at_10": b["recall_strict"].get(k), "qps_1t": b.get("qps_1t"),
                            "perquery_file": b["perquery_file"], "file": str(folder / b["perquery_file"])})
    return out


def _difficulty_rows(rec: dict[str, Any]) -> list[dict[str, Any]]:
    pq = rec["perquery"]
    ident = _identity(rec) | {"ef_search": rec["query"]["ef_search"]}
    recall = rec["recall"].get(str(rec["query"]["k"]))
    out = []
    for measure, table in (pq.get("difficulty") or {}).items():
        bins = table.get("bins") or []
        direction = table.get("direction", "unknown")
        for b in bins:
            out.append(ident | {"measure": measure, "direction": direction,
                                "hardness": _hardness(b["bin"], len(bins), direction),
                                "n_queries_total": pq.get("n_queries"), "recall_at_10": recall} | b)
    return out


def _scaling_rows(rec: dict[str, Any]) -> list[dict[str, Any]]:
    from .threads import all_pinned_to

    ident = _identity(rec) | {"ef_search": rec["query"]["ef_search"]}
    single = rec["qps"].get("1")
    base = spread_of(single)["median"]
    out = []
    for field, mode in MODES.items():
        figures = dict(rec.get(field) or {})
        if field == "qps_pool" and single is not None and figures:
            figures = {"1": single} | figures  # the 1-thread point is one measurement: the baseline of both modes
        for threads, figure in sorted(figures.items(), key=lambda item: int(item[0])):
            sp = spread_of(figure)
            t = int(threads)
            speedup = sp["median"] / base if base and sp["median"] is not None else None
            pools = figure.get("pools") if isinstance(figure, dict) else None
            out.append(ident | {"mode": mode, "threads": t, "qps": sp["median"], "qps_min": sp["min"],
                                "qps_max": sp["max"], "rel_spread": sp["rel_spread"],
                                "cpu_utilization": figure.get("cpu_utilization") if isinstance(figure, dict) else None,
                                "speedup": speedup, "efficiency": speedup / t if speedup is not None else None,
                                "pools": _pools(pools),
                                "pinned": (all_pinned_to(pools, 1 if field == "qps" else t)
                                           if isinstance(pools, dict) else None),
                                "baseline": t == 1})
    return out


def _codec_rows(rec: dict[str, Any]) -> list[dict[str, Any]]:
    if rec.get("status") != "ok":
        return []
    ds, codec, single = rec["dataset"], rec["codec"], rec["quantize_single_ms"]
    base = {"path": rec.get("_path"), "dataset": ds["name"], "metric": ds.get("metric"),
            "dimensions": ds.get("dimensions"), "n_train": ds.get("n_train"), "codec": rec["spec"],
            "kind": codec["kind"], "codec_m": codec.get("m"), "bits": codec.get("bits"),
            "code_bytes": rec["code_bytes"], "codebook_bytes": rec["codebook_bytes"],
            "bytes_per_vector": rec["bytes_per_vector"], "compression": rec["compression"],
            "train_time_s": rec["train_time_s"], "encode_per_s": rec["encode_per_s"],
            "quantize_p50_ms": single["p50"], "quantize_p95_ms": single["p95"], "quantize_p99_ms": single["p99"],
            "reconstruction_mse": rec["reconstruction_mse"], "rotation": codec_rotation(rec["spec"], codec),
            "neighbourhood_order": rec.get("neighbourhood_order"), "rabitq_alignment": rec.get("rabitq_alignment"),
            **host_columns(rec)}
    local = rec.get("neighbourhood_error") or {}
    base |= {"neighbourhood_spread": local.get("spread"), "spread_share": local.get("spread_share"),
             "error_to_spread": local.get("error_to_spread")}
    return [base | {"factor": rr["factor"], "candidates": rr["candidates"], "recall_at_1": rr["recall_at_1"],
                    "recall_at_10": rr["recall_at_10"], "qps": rr["qps"]} for rr in rec["rerank"]]


def codec_rotation(spec: str, codec: Mapping[str, Any]) -> str | None:
    """The rotation a swept codec ran with: the record's own, else the spec's (``-norot``, ``-opq``), else its
    kind's default (``QuantizationConfig.from_dict``: records from before rotations were recorded held the
    default); None when none of these is known (an unknown kind, or the quantization package absent)."""
    if codec.get("rotation"):
        return str(codec["rotation"])
    try:
        named = results.spec_fields(spec).rotation
    except InvalidParameterError:
        named = None
    if named:
        return named
    try:
        from ..quantization.config import KIND_ROTATIONS
    except ImportError:  # the readers work without the quantization package; the default is then unknown
        return None
    defaults = KIND_ROTATIONS.get(str(codec.get("kind")))
    return defaults[0] if defaults else None


def _adr_rows(rec: dict[str, Any]) -> list[dict[str, Any]]:
    if rec.get("status") != "ok":
        return []
    out = []
    base = {"path": rec.get("_path"), "backend": rec["backend"], "tier": rec.get("tier"), **host_columns(rec)}
    for index, (case, body) in enumerate(rec["cases"].items()):
        target = TARGETS[base_case(case)].max_ms if base_case(case) in TARGETS else None
        row = base | {"scope": body.get("scope"), "case": case, "case_index": index, "status": body["status"],
                      "target_ms": target}
        if body["status"] != "ok":
            out.append(row | {"reason": body.get("reason")})
            continue
        info = json.dumps(body["info"]) if "info" in body else None
        for protocol, p in body["protocols"].items():
            lat = p.get("latency_ms") or {}
            out.append(row | {"protocol": protocol, "iterations": p.get("iterations"), "p50_ms": lat.get("p50"),
                              "p95_ms": lat.get("p95"), "p99_ms": lat.get("p99"), "mean_ms": lat.get("mean"),
                              "judged_ms": p.get("judged_ms"), "verdict": p.get("verdict"),
                              "recall_at_10": body.get("recall_at_10"), "info": info})
    return out


def _queries_frame(records: Sequence[dict[str, Any]]) -> pl.DataFrame:
    rows = [_query_row(rec) for rec in records if rec.get("status") == "ok"]
    threads = {int(c[4:]) for row in rows for c in row if c.startswith("qps_") and c[4:].isdigit()} | {1}
    pool = {int(c[9:]) for row in rows for c in row if c.startswith("qps_pool_") and c[9:].isdigit()}
    return _frame(rows, QUERY_COLUMNS | _qps_columns(threads, pool))


def codec_frame(records: Iterable[dict[str, Any]]) -> pl.DataFrame:
    """quant@1 records (read from files, or computed live by :func:`ruvector_lab.bench.quant.sweep_codec`) as
    :attr:`Tables.codecs` rows, each validated first; records not 'ok' give no rows."""
    rows = []
    for rec in records:
        schemas.validate(rec, expect=results.SCHEMA_QUANT)
        rows += _codec_rows(rec)
    return _frame(rows, CODEC_COLUMNS)


# -------------------------------------------------------------------------------------------------------- tables
@dataclass(frozen=True)
class Tables:
    """Every result under one results root as polars frames (see the module's docstring for each frame)."""

    root: Path
    files: pl.DataFrame
    builds: pl.DataFrame
    queries: pl.DataFrame
    query_builds: pl.DataFrame
    difficulty: pl.DataFrame
    scaling: pl.DataFrame
    codecs: pl.DataFrame
    adr: pl.DataFrame

    def __getitem__(self, name: str) -> pl.DataFrame:
        """A frame by name (``tables['queries']``); 'quant' is :attr:`codecs`."""
        name = "codecs" if name == "quant" else name
        if name == "root" or name not in {f.name for f in fields(self)}:
            raise KeyError(name)
        return getattr(self, name)

    @property
    def absent(self) -> pl.DataFrame:
        """Every record with status 'not available' or 'skipped', with its reason (rows of :attr:`files`)."""
        return self.files.filter(pl.col("status") != "ok")

    def environment(self) -> dict[str, Any] | None:
        """The machine and libraries of the first record (in reading order: builds, queries, codecs, ADR) that
        recorded them, or None."""
        for text in self.files["environment"].to_list():
            env = json.loads(text) if text else None
            if env:
                return env
        return None

    def select(self, params: Mapping[str, Any] | None) -> Tables:
        """The results of ``params``' own grid (datasets, backends, builds, ef_search and k, codecs).

        The results root outlives experiments (the build and quantize stages' outputs persist), so runs that an
        earlier experiment made for a dataset, backend, build, ef_search or codec that ``params`` no longer lists
        stay on disk; this keeps them out. A section or key that ``params`` lacks selects nothing away, so a
        partial ``params`` (tests, notebooks) keeps everything. ADR records are all kept (the adr stage's output is
        not persistent). Quantized HNSW builds (subtree 'qhnsw') are selected by ``quantization.hnsw_datasets``,
        ``quantization.datasets``, ``quantization.hnsw`` and the first ``build.m`` and ``build.ef_construction``,
        with which the quantize stage builds them, and their queries by ``quantization.hnsw_ef_search`` (else
        ``query.ef_search``).
        """
        if not params:
            return self
        keep = set(self.files.filter(_grid(params))["path"].to_list())

        def kept(frame: pl.DataFrame) -> pl.DataFrame:
            return frame.filter(pl.col("path").is_in(list(keep)))

        return replace(self, **{f.name: kept(getattr(self, f.name)) for f in fields(self) if f.name != "root"})


def _allowed(params: Mapping[str, Any], section: str, key: str) -> list[Any] | None:
    values = (params.get(section) or {}).get(key)
    return list(values) if isinstance(values, list) else None


def _within(column: str, values: list[Any] | None) -> pl.Expr:
    if values is None:
        return pl.lit(True)
    return pl.col(column).is_in(values).fill_null(False)


def _specs_within(params: Mapping[str, Any], key: str, column: str) -> pl.Expr:
    """Rows whose ``column`` is among params ``quantization.<key>``: a list (every dataset), or a mapping dataset
    -> list (:func:`ruvector_lab.bench.quant.codec_specs`), each dataset's rows against its own list."""
    listed = (params.get("quantization") or {}).get(key)
    if not isinstance(listed, Mapping):
        return _within(column, _allowed(params, "quantization", key))
    per_dataset = [(pl.col("dataset") == name) & _within(column, list(specs or [])) for name, specs in listed.items()]
    return pl.any_horizontal(per_dataset).fill_null(False) if per_dataset else pl.lit(False)


def _grid(params: Mapping[str, Any]) -> pl.Expr:
    """Which rows of :attr:`Tables.files` are in the grid of ``params`` (see :meth:`Tables.select`)."""
    datasets, backends = _allowed(params, "bench", "datasets"), _allowed(params, "bench", "backends")
    ms, efcs = _allowed(params, "build", "m"), _allowed(params, "build", "ef_construction")
    quants, efs = _allowed(params, "build", "quantization"), _allowed(params, "query", "ef_search")
    k = (params.get("query") or {}).get("k")
    qdatasets = _allowed(params, "quantization", "datasets")
    hnsw_specs_in = _specs_within(params, "hnsw", "quantization")
    hnsw_datasets = _allowed(params, "quantization", "hnsw_datasets")
    first_m, first_efc = (values[0] if values else None for values in (ms, efcs))
    quantized = (_within("dataset", qdatasets) & _within("dataset", hnsw_datasets)
                 & hnsw_specs_in
                 & (pl.lit(True) if first_m is None else (pl.col("m") == first_m).fill_null(False))
                 & (pl.lit(True) if first_efc is None else (pl.col("ef_construction") == first_efc).fill_null(False)))
    plain = (_within("dataset", datasets) & _within("m", ms) & _within("ef_construction", efcs)
             & _within("quantization", quants))
    index = _within("backend", backends) & pl.when(pl.col("subtree") == "qhnsw").then(quantized).otherwise(plain)
    hnsw_efs = _allowed(params, "quantization", "hnsw_ef_search") or efs  # the quantize stage's own sweep
    swept = pl.when(pl.col("subtree") == "qhnsw").then(_within("ef_search", hnsw_efs)).otherwise(
        _within("ef_search", efs))
    query = index & swept & (pl.lit(True) if k is None else
                                                 (pl.col("k").is_null() | (pl.col("k") == k)))
    kind = pl.col("kind")
    return (pl.when(kind == "build").then(index).when(kind == "query").then(query)
            .when(kind == "quant").then(_within("dataset", qdatasets) & _specs_within(params, "codecs", "spec"))
            .otherwise(pl.lit(True)))


def _tables(root: Path, records: Mapping[str, Sequence[dict[str, Any]]]) -> Tables:
    queries_ok = [r for r in records.get("query", []) if r.get("status") == "ok"]
    return Tables(
        root=root,
        files=_frame([_file_row(kind, rec) for kind in KINDS for rec in records.get(kind, [])], FILE_COLUMNS),
        builds=_frame([_build_row(rec) for rec in records.get("build", [])], BUILD_COLUMNS),
        queries=_queries_frame(queries_ok),
        query_builds=_frame([row for rec in queries_ok for row in _query_build_rows(rec)], QUERY_BUILD_COLUMNS),
        difficulty=_frame([row for rec in queries_ok for row in _difficulty_rows(rec)], DIFFICULTY_COLUMNS),
        scaling=_frame([row for rec in queries_ok for row in _scaling_rows(rec)], SCALING_COLUMNS),
        codecs=_frame([row for rec in records.get("quant", []) for row in _codec_rows(rec)], CODEC_COLUMNS),
        adr=_frame([row for rec in records.get("adr", []) for row in _adr_rows(rec)], ADR_COLUMNS),
    )


def load(root: str | os.PathLike[str], kinds: Iterable[str] = KINDS) -> Tables:
    """Read and validate every result of ``kinds`` under ``root`` (a folder that does not exist holds nothing)
    into :class:`Tables`; the frames of kinds not read are empty."""
    base = Path(root)
    return _tables(base, {kind: read_records(base, kind) for kind in kinds})


Source = str | os.PathLike[str] | Tables


def _tables_of(source: Source, kind: str) -> Tables:
    return source if isinstance(source, Tables) else load(source, (kind,))


def files(source: Source) -> pl.DataFrame:
    """:attr:`Tables.files` of a results root (or of loaded :class:`Tables`)."""
    return source.files if isinstance(source, Tables) else load(source).files


def absent(source: Source) -> pl.DataFrame:
    """:attr:`Tables.absent`: every record 'not available' or 'skipped', with the reason."""
    return files(source).filter(pl.col("status") != "ok")


def builds(source: Source) -> pl.DataFrame:
    """:attr:`Tables.builds`: one row per build@2 record, any status."""
    return _tables_of(source, "build").builds


def queries(source: Source) -> pl.DataFrame:
    """:attr:`Tables.queries`: one row per finished query setting."""
    return _tables_of(source, "query").queries


def codecs(source: Source) -> pl.DataFrame:
    """:attr:`Tables.codecs`: one row per (codec sweep, re-rank factor)."""
    return _tables_of(source, "quant").codecs


def adr(source: Source) -> pl.DataFrame:
    """:attr:`Tables.adr`: one row per (ADR record, case, protocol)."""
    return _tables_of(source, "adr").adr


# ---------------------------------------------------------------------------------------------------------- hosts
#: :func:`hosts`: one row per host that measured a record (status 'ok'), in reading order: ``host`` (fingerprint)
#: and ``host_name`` (:data:`HOST_COLUMNS`), the machine as its first record describes it (``cpu_model``,
#: ``cores_usable``, ``cores_total``, ``memory_bytes``; null when that record has no environment), ``records`` it
#: measured, ``co_scheduled`` of them measured while another measuring task ran on the host (max_concurrent > 1),
#: ``load_unknown`` of them without a host load, and the highest ``max_concurrent`` seen
HOST_SUMMARY_COLUMNS: dict[str, Any] = {
    "host": _S, "host_name": _S, "cpu_model": _S, "cores_usable": _I, "cores_total": _I, "memory_bytes": _I,
    "records": _I, "co_scheduled": _I, "load_unknown": _I, "max_concurrent": _I}


def co_scheduled(source: Source) -> pl.DataFrame:
    """The records (rows of :attr:`Tables.files`, status 'ok') measured while another measuring task ran on the same
    host (``max_concurrent`` > 1): their timings shared the host's cores and caches. A record without a host load
    is not among them (unknown is not co-scheduled, nor alone)."""
    measured = files(source).filter(pl.col("status") == "ok")
    return measured.filter((pl.col("max_concurrent") > 1).fill_null(False))


def hosts(source: Source) -> pl.DataFrame:
    """Every host that measured a record of a results root (or loaded :class:`Tables`), with its machine and how
    many records it measured, co-scheduled or with an unknown load (:data:`HOST_SUMMARY_COLUMNS`)."""
    measured = files(source).filter(pl.col("status") == "ok")
    rows = []
    for (host,), group in measured.group_by(["host"], maintain_order=True):
        envs = [json.loads(text) for text in group["environment"].to_list() if text]
        env = envs[0] if envs else {}
        loads = group["max_concurrent"]
        rows.append({"host": host, "host_name": group["host_name"][0], "cpu_model": env.get("cpu_model"),
                     "cores_usable": env.get("cores_usable"), "cores_total": env.get("cores_total"),
                     "memory_bytes": env.get("memory_bytes"), "records": len(group),
                     "co_scheduled": int((loads > 1).sum() or 0), "load_unknown": int(loads.null_count()),
                     "max_concurrent": loads.max()})
    return _frame(rows, HOST_SUMMARY_COLUMNS)


# ------------------------------------------------------------------------------------------------ derived figures
#: columns of :func:`embedding_matrix`
EMBEDDING_COLUMNS: dict[str, Any] = {
    "case": _S, "precision": _S, "threads": _I, "texts": _S, "graph": _S, "protocol": _S, "status": _S,
    "p50_ms": _F, "p95_ms": _F, "mean_ms": _F, "judged_ms": _F, "target_ms": _F, "verdict": _S,
    "parts_p50_ms": _F, "mixed_over_apart": _F}


def embedding_matrix(adr_frame: pl.DataFrame) -> pl.DataFrame:
    """The ADR suite's embedding variants (``embed_batch_32:int8:2t:mixed``: :func:`.targets.variant_case`) of
    :attr:`Tables.adr`, one row per variant and protocol: the base case, precision, threads, texts, the graph that
    ran, the latencies with the judged value and verdict, and for a mixed batch the p50 of the same texts embedded
    apart with the honest p50 over it (``mixed_over_apart``). The one reader of these rows (report, notebook 02)."""
    rows = []
    for c in adr_frame.filter(pl.col("case").str.contains(VARIANT_SEP, literal=True)).to_dicts():
        info = json.loads(c["info"]) if c["info"] else {}
        base, precision, threads, texts = c["case"].split(VARIANT_SEP)  # as targets.variant_case names them
        parts = (info.get("parts_ms") or {}).get("p50")
        ratio = c["p50_ms"] / parts if parts and c["p50_ms"] and c["protocol"] == "honest" else None
        rows.append({"case": base, "precision": precision, "threads": int(threads.rstrip("t")),
                     "texts": texts, "graph": info.get("graph"), "parts_p50_ms": parts, "mixed_over_apart": ratio}
                    | {k: c[k] for k in ("protocol", "status", "p50_ms", "p95_ms", "mean_ms", "judged_ms",
                                         "target_ms", "verdict")})
    return _frame(rows, EMBEDDING_COLUMNS)


def host_keys(frame: pl.DataFrame, by: Sequence[str], per_host: bool = True) -> list[str]:
    """The group keys ``by`` with ``host`` first when ``frame`` has a host column (and ``per_host``): a frontier,
    operating point or ratio computed per group then only ever combines one host's timings. A frame without host
    columns (built by hand, or by a caller that dropped them) is grouped by ``by`` alone."""
    keys = list(by)
    if per_host and "host" in frame.columns and "host" not in keys:
        keys.insert(0, "host")
    return keys


def mark_pareto(frame: pl.DataFrame, by: Sequence[str] = ("dataset", "backend"), x: str = "recall_at_10",
                y: str = "qps_1", name: str = "pareto", per_host: bool = True) -> pl.DataFrame:
    """``frame`` with a boolean column ``name``: whether the row is on its group's Pareto frontier of ``x`` and
    ``y`` (higher is better on both; :func:`ruvector_lab.bench.metrics.pareto_frontier`). Rows without both
    figures are never on it. Groups are per host too (:func:`host_keys`): two hosts' timings never share a
    frontier."""
    by = host_keys(frame, by, per_host)
    indexed = frame.with_row_index("_row")
    keep = pl.col(x).is_not_null() & pl.col(y).is_not_null() & (pl.col(y) != 0)
    for col in (x, y):
        if frame.schema[col].is_float():
            keep &= pl.col(col).is_not_nan()
    usable = indexed.filter(keep)
    front: set[int] = set()
    for _, group in usable.group_by(list(by), maintain_order=True):
        front |= {p["_row"] for p in pareto_frontier(group.select("_row", x, y).to_dicts(), x, y)}
    return indexed.with_columns(pl.col("_row").is_in(list(front)).alias(name)).drop("_row")


def pareto(frame: pl.DataFrame, by: Sequence[str] = ("dataset", "backend"), x: str = "recall_at_10",
           y: str = "qps_1", per_host: bool = True) -> pl.DataFrame:
    """The rows on each group's Pareto frontier of ``x`` and ``y`` (higher is better on both), sorted by the
    group, then ``x``; groups are per host too (:func:`host_keys`)."""
    by = host_keys(frame, by, per_host)
    marked = mark_pareto(frame, by, x, y, "_front", per_host)
    return marked.filter(pl.col("_front")).drop("_front").sort([*by, x], maintain_order=True)


def operating_points(frame: pl.DataFrame, by: Sequence[str] = BUILD_KEY, targets: Iterable[float] = RECALL_TARGETS,
                     recall: str = "recall_at_10", cost: str = "ef_search", speed: str = "qps_1",
                     per_host: bool = True) -> pl.DataFrame:
    """For each group of ``by`` (in order of first appearance) and recall target, the cheapest row reaching it:
    the smallest ``cost`` whose ``recall`` is at least the target, ties broken by the higher ``speed``
    (:func:`ruvector_lab.bench.metrics.operating_points`). One row per (group, target): the ``by`` columns,
    ``target``, ``reached`` and the chosen row's other columns (null when no row reaches the target). Rows without
    ``recall`` are left out. Groups are per host too (:func:`host_keys`; ``host`` is then the first column), so a
    tie is never broken by another host's speed."""
    by = host_keys(frame, by, per_host)
    targets = tuple(float(t) for t in targets)
    rest = [c for c in frame.columns if c not in by]
    schema = {c: frame.schema[c] for c in by} | {"target": _F, "reached": _B} | {c: frame.schema[c] for c in rest}
    rows = []
    usable = frame.filter(pl.col(recall).is_not_null())
    for key, group in usable.group_by(list(by), maintain_order=True):
        ident = dict(zip(by, key, strict=True))
        runs = [r | {"_speed": r[speed] if r.get(speed) is not None else 0.0} for r in group.to_dicts()]
        for target in targets:
            best = next(iter(_cheapest(runs, (target,), recall, cost, "_speed").values()))
            chosen = {c: best[c] for c in rest} if best is not None else {}
            rows.append(ident | {"target": target, "reached": best is not None} | chosen)
    return _frame(rows, schema)


def noise_figures(frame: pl.DataFrame) -> dict[str, str]:
    """The figures whose spread the runner judges against its noise threshold, by the runner's name (as in a
    record's ``noisy``), each with the column of ``frame`` holding its relative spread: for a builds frame
    ``build_time_s`` and ``reference_drift``; for a queries frame ``qps_<t>t`` and ``qps_pool_<t>t`` per thread
    count (ascending) and ``latency_p50``."""
    if "build_time_rel_spread" in frame.columns:
        return {"build_time_s": "build_time_rel_spread", "reference_drift": "drift"}
    return ({f"qps_{t}t": f"qps_{t}_rel_spread" for t in thread_counts(frame, "qps")}
            | {f"qps_pool_{t}t": f"qps_pool_{t}_rel_spread" for t in thread_counts(frame, "qps_pool")}
            | {"latency_p50": "p50_rel_spread"})


def flag_noise(frame: pl.DataFrame, threshold: float | None = None) -> pl.Series:
    """Per row of a builds or queries frame, the names of the :func:`noise_figures` whose relative spread exceeds
    ``threshold`` (None: each record's own ``noise_threshold``), in the order of :func:`noise_figures`."""
    figures = noise_figures(frame)
    out = []
    for row in frame.select([*dict.fromkeys([*figures.values(), "noise_threshold"])]).to_dicts():
        limit = row["noise_threshold"] if threshold is None else threshold
        out.append([name for name, col in figures.items()
                    if limit is not None and row[col] is not None and row[col] > limit])
    return pl.Series("noisy", out, dtype=pl.List(_S))


def adr_view(adr_frame: pl.DataFrame, backends: Sequence[str] | None = None) -> pl.DataFrame:
    """The ADR cases as each backend sees them: for every backend (``backends``, else every one with cases but
    'common', in registry order) the cases measured once for all backends ('common': embedding, distance,
    quantize, exact pattern match) with its own cases over them (its own replaces a common one of the same name).
    Columns of :attr:`Tables.adr` plus ``measured_on`` (the record the case comes from) and ``view_index`` (the
    case's place in the merged list: the common cases in their order, then the backend's own)."""
    # variants (the embedding matrix) are reported on their own, never merged into a backend's cases
    adr_frame = adr_frame.filter(~pl.col("case").str.contains(VARIANT_SEP, literal=True))
    common = adr_frame.filter(pl.col("backend") == "common")
    if backends is None:
        backends = [b for b in adr_frame["backend"].unique(maintain_order=True).to_list() if b != "common"]
    parts = []
    common_cases = common["case"].unique(maintain_order=True).to_list()
    for backend in sorted(backends, key=backend_rank):
        own = adr_frame.filter(pl.col("backend") == backend)
        own_cases = own["case"].unique(maintain_order=True).to_list()
        order = {c: i for i, c in enumerate([*common_cases, *[c for c in own_cases if c not in common_cases]])}
        merged = pl.concat([common.filter(~pl.col("case").is_in(own_cases)), own], how="vertical")
        merged = merged.with_columns(pl.col("backend").alias("measured_on"), pl.lit(backend).alias("backend"),
                                     pl.col("case").replace_strict(order, return_dtype=pl.Int64).alias("view_index"))
        parts.append(merged.sort("view_index", maintain_order=True))
    empty = adr_frame.head(0).with_columns(pl.lit(None, _S).alias("measured_on"), pl.lit(None, _I).alias("view_index"))
    return pl.concat(parts, how="vertical") if parts else empty


# -------------------------------------------------------------------------------------------------- quantization
#: :func:`codec_summary`: one row per (dataset, codec) of :attr:`Tables.codecs` with its codec-level columns;
#: ``width`` is a PQ codec's subspace width (dimensions / m; null for other kinds); ``recall_at_10``,
#: ``recall_at_1`` and ``qps`` are the codes' alone (factor 1; null when the sweep had no factor 1), and
#: ``rerank_factor``, ``recall_at_10_rerank``, ``qps_rerank`` those of the sweep's first factor above 1 (null
#: without one)
CODEC_SUMMARY_COLUMNS: dict[str, Any] = {
    "path": _S, "dataset": _S, "metric": _S, "dimensions": _I, "n_train": _I, "codec": _S, "kind": _S,
    "codec_m": _I, "width": _I, "bits": _I, "rotation": _S, "code_bytes": _I, "codebook_bytes": _I,
    "bytes_per_vector": _F, "compression": _F, "reconstruction_mse": _F, "neighbourhood_order": _F,
    "neighbourhood_spread": _F, "spread_share": _F, "error_to_spread": _F, "rabitq_alignment": _F,
    "recall_at_10": _F, "recall_at_1": _F, "qps": _F, "rerank_factor": _I, "recall_at_10_rerank": _F,
    "qps_rerank": _F}

#: :func:`rabitq_bits`: RaBitQ under its random rotation, one row per (dataset, bit width)
RABITQ_BITS_COLUMNS = ("dataset", "codec", "bits", "bytes_per_vector", "recall_at_10", "rerank_factor",
                       "recall_at_10_rerank", "rabitq_alignment", "neighbourhood_order")

#: :func:`qhnsw_vs_scan`: one row per quantized HNSW build of the quantize stage (subtree 'qhnsw', graph 'hnsw')
#: and k. ``spec`` is the build's quantization ('product-gfloat-r40'), ``codec`` the codec it holds ('product':
#: the spec without its graph and re-rank parts), ``graph`` what the graph was built from ('codes' or 'float'),
#: ``rerank`` its re-rank depth R and ``factor`` the codec sweep's re-rank factor doing the same (R / k; 1 for
#: R = 0; null when R is not a multiple of k). Over the build's ef_search sweep: ``ef_best`` (the ef of the
#: highest recall@10, the smallest on ties) with its ``recall_at_10`` and 1-thread ``qps_1``, and ``ef_max`` (the
#: largest ef) with ``recall_at_ef_max`` and ``qps_at_ef_max``. The flat scan of the same codec and re-ranking
#: (:attr:`Tables.codecs`): ``flat_recall_at_10``, ``flat_qps``, and ``gap`` = flat recall - HNSW recall at
#: ``ef_best`` (what the graph loses; negative when it finds more); ``flat_note`` says why there is no flat
#: reference (null when there is one). Memory per vector from the build's index stats
#: (:data:`INDEX_STAT_COLUMNS`, null when the record lacks them), ``bytes_per_vector`` their sum with
#: ``fixed_bytes`` spread over ``n_train`` (null unless codes, graph and both float parts are known), and the
#: build's whole-index figures ``bytes_serialized``, ``bytes_analytic``, ``bytes_rss``. ``scan_recall_at_10``: the
#: index's own code scan (same codes, scoring and re-ranking as its graph search, no graph), ``scan_gap`` that minus
#: the best graph recall: what the graph alone loses (the flat sweep's ``gap`` also holds scoring differences, e.g.
#: faiss' binary HNSW compares sign bits symmetrically, the library's scan asymmetrically). ``host`` and
#: ``host_name``: the host that timed the graph's queries (a build whose queries two hosts timed is one row per host;
#: ``flat_qps`` is the codec sweep's, which may come from another host)
QHNSW_COLUMNS: dict[str, Any] = {
    "dataset": _S, "backend": _S, "spec": _S, "codec": _S, "graph": _S, "rerank": _I, "k": _I, "factor": _I,
    "ef_best": _I, "recall_at_10": _F, "qps_1": _F, "ef_max": _I, "recall_at_ef_max": _F, "qps_at_ef_max": _F,
    "flat_recall_at_10": _F, "flat_qps": _F, "gap": _F, "flat_note": _S, "scan_recall_at_10": _F, "scan_gap": _F,
    **INDEX_STAT_COLUMNS, "n_train": _I,
    "bytes_per_vector": _F, "bytes_serialized": _F, "bytes_analytic": _F, "bytes_rss": _F, "host": _S,
    "host_name": _S}


def codec_summary(codecs: pl.DataFrame) -> pl.DataFrame:
    """One row per (dataset, codec) of a codecs frame (:attr:`Tables.codecs` or :func:`codec_frame`), the codes
    alone beside the first re-ranking (:data:`CODEC_SUMMARY_COLUMNS`), in the frame's order."""
    rows = []
    for _, group in codecs.group_by(["dataset", "codec"], maintain_order=True):
        runs = sorted(group.to_dicts(), key=lambda r: r["factor"])
        head = runs[0]
        alone = next((r for r in runs if r["factor"] == 1), {})
        more = next((r for r in runs if r["factor"] > 1), {})
        m, d = head["codec_m"], head["dimensions"]
        width = d // m if head["kind"] == "product" and m and d and d % m == 0 else None
        rows.append({c: head.get(c) for c in CODEC_SUMMARY_COLUMNS} | {
            "width": width, "recall_at_10": alone.get("recall_at_10"), "recall_at_1": alone.get("recall_at_1"),
            "qps": alone.get("qps"), "rerank_factor": more.get("factor"),
            "recall_at_10_rerank": more.get("recall_at_10"), "qps_rerank": more.get("qps")})
    return _frame(rows, CODEC_SUMMARY_COLUMNS)


def rabitq_bits(codecs: pl.DataFrame) -> pl.DataFrame:
    """RaBitQ by bit width (:data:`RABITQ_BITS_COLUMNS`): per dataset, every RaBitQ codec of the sweep under its
    random rotation, by bits, with recall@10 of the codes alone and with the sweep's first re-rank factor above 1,
    its mean <x̄, y> and neighbourhood order. The rotation-off variants are left out (:func:`codec_summary`
    has them)."""
    summary = codec_summary(codecs)
    chosen = summary.filter((pl.col("kind") == "rabitq") & (pl.col("rotation") == "random").fill_null(False))
    return chosen.sort(["dataset", "bits"], maintain_order=True).select(RABITQ_BITS_COLUMNS)


def _codec_fields(spec: str) -> results.SpecFields | None:
    """What a spec says of the codec alone (graph and re-rank depth set aside), or None for a bad spec."""
    try:
        return replace(results.spec_fields(spec), graph="codes", rerank=0)
    except InvalidParameterError:
        return None


def flat_spec(spec: str) -> str:
    """The codec part of a quantized build's spec: ``'product-gfloat-r40'`` -> ``'product'``, the spec of the
    codec sweep's record of the same codes (each part is read by :func:`results.spec_fields`)."""
    kind, *parts = spec.split("-")
    kept = []
    for part in parts:
        try:
            one = results.spec_fields(f"{kind}-{part}")
        except InvalidParameterError:  # not a part of the grammar: kept, the record is named as it was written
            kept.append(part)
            continue
        if one.graph == "codes" and not one.rerank:
            kept.append(part)
    return "-".join([kind, *kept])


def _flat_reference(codecs: Sequence[dict[str, Any]], spec: str, dataset: str, rerank: int, k: int
                    ) -> tuple[str, int | None, dict[str, Any] | None, str | None]:
    """The codec sweep's row doing what a quantized build with re-rank depth ``rerank`` does at ``k``:
    (codec spec, factor, the row or None, why there is none)."""
    wanted = _codec_fields(spec)
    same = [r for r in codecs if r["dataset"] == dataset and wanted is not None
            and _codec_fields(r["codec"]) == wanted]
    codec = same[0]["codec"] if same else flat_spec(spec)
    if rerank and rerank % k:
        return codec, None, None, f"re-rank depth {rerank} is not a multiple of k = {k}"
    factor = rerank // k if rerank else 1
    if not same:
        return codec, factor, None, f"the codec sweep has no {codec} on {dataset}"
    row = next((r for r in same if r["factor"] == factor), None)
    if row is None:
        return codec, factor, None, f"the codec sweep of {codec} has no re-rank factor {factor} (R {rerank} / k {k})"
    return codec, factor, row, None


def qhnsw_vs_scan(source: Source) -> pl.DataFrame:
    """Each quantized HNSW build of the quantize stage against the flat scan of the same codes with the same
    re-ranking (:data:`QHNSW_COLUMNS`): what the graph costs in recall, what it gains in QPS, and its memory per
    vector split into codes, graph and float vectors. Sorted by dataset, backend (registry order) and spec."""
    t = source if isinstance(source, Tables) else load(source, ("build", "query", "quant"))
    # a backend that serves the codec by a flat scan has no graph to compare (older runs built those too)
    graphs = t.queries.filter((pl.col("subtree") == "qhnsw") & (pl.col("graph") == "hnsw"))
    builds = {tuple(b[c] for c in BUILD_KEY): b
              for b in t.builds.filter((pl.col("subtree") == "qhnsw") & (pl.col("status") == "ok")).to_dicts()}
    codecs = t.codecs.to_dicts()
    rows = []
    # per host: the best ef is chosen by recall, but its QPS is shown, and one host's QPS is never another's
    keys = [*BUILD_KEY, "k", "host"]
    for key, group in graphs.group_by(keys, maintain_order=True):
        ident = dict(zip(keys, key, strict=True))
        spec, k = str(ident["quantization"]), int(ident["k"])
        fields = results.spec_fields(spec)
        runs = sorted(group.to_dicts(), key=lambda r: r["ef_search"])
        best = max(runs, key=lambda r: (r["recall_at_10"] if r["recall_at_10"] is not None else -1.0,
                                        -r["ef_search"]))
        last = runs[-1]
        codec, factor, flat, note = _flat_reference(codecs, spec, ident["dataset"], fields.rerank, k)
        build = builds.get(tuple(ident[c] for c in BUILD_KEY), {})
        stats = {c: build.get(c) for c in INDEX_STAT_COLUMNS}
        parts = [stats[c] for c in ("code_bytes_per_vector", "graph_bytes_per_vector",
                                    "rerank_float_bytes_per_vector", "build_float_bytes_per_vector")]
        n = build.get("n_train")
        total = None
        if all(v is not None for v in parts):
            total = float(sum(parts)) + (stats["fixed_bytes"] / n if stats["fixed_bytes"] is not None and n else 0.0)
        flat_recall = flat["recall_at_10"] if flat else None
        rows.append({"dataset": ident["dataset"], "backend": ident["backend"], "spec": spec, "codec": codec,
                     "graph": fields.graph, "rerank": fields.rerank, "k": k, "factor": factor,
                     "ef_best": best["ef_search"], "recall_at_10": best["recall_at_10"], "qps_1": best.get("qps_1"),
                     "ef_max": last["ef_search"], "recall_at_ef_max": last["recall_at_10"],
                     "qps_at_ef_max": last.get("qps_1"), "flat_recall_at_10": flat_recall,
                     "flat_qps": flat["qps"] if flat else None,
                     "gap": flat_recall - best["recall_at_10"]
                     if flat_recall is not None and best["recall_at_10"] is not None else None,
                     "flat_note": note, "scan_recall_at_10": build.get("code_scan_recall"),
                     "scan_gap": build["code_scan_recall"] - best["recall_at_10"]
                     if build.get("code_scan_recall") is not None and best["recall_at_10"] is not None else None,
                     **stats, "n_train": n, "bytes_per_vector": total,
                     "bytes_serialized": build.get("bytes_serialized"), "bytes_analytic": build.get("bytes_analytic"),
                     "bytes_rss": build.get("bytes_rss"), "host": ident["host"], "host_name": best["host_name"]})
    return sort_backends(_frame(rows, QHNSW_COLUMNS), "spec")


# ------------------------------------------------------------------------------------------- per-query results
#: where the pipeline keeps its datasets (ann-benchmarks HDF5 with ground truth), relative to the results root
DATASETS_DIR = Path("..") / "datasets"
#: where ground truth comes from: a folder of ``<name>.hdf5``, a mapping name -> Dataset, or None (the folder
#: beside the results root)
Datasets = str | os.PathLike[str] | Mapping[str, Any] | None
_TRUTH_CACHE: dict[tuple[str, int], dict[str, Any]] = {}


def datasets_root(root: str | os.PathLike[str]) -> Path:
    """The folder of the pipeline's datasets (``data/datasets``, beside ``data/results``)."""
    return (Path(root) / DATASETS_DIR).resolve()


def ground_truth(name: str, n: int, root: str | os.PathLike[str], datasets: Datasets = None) -> dict[str, Any]:
    """Ground truth (``neighbors``, ``distances``), the queries (``test``), the seeded 1,000-row train sample of
    relative contrast (``sample``) and ``metric`` for the first ``n`` queries of dataset ``name``: from
    ``datasets``, else from :func:`datasets_root` of ``root``. Raises FileNotFoundError when it is not there."""
    if isinstance(datasets, Mapping):
        if name not in datasets:
            raise FileNotFoundError(f"dataset {name!r} is not among the {len(datasets)} given")
        ds = datasets[name]
        rows = np.sort(np.random.default_rng(0).choice(len(ds.train), size=min(1000, len(ds.train)), replace=False))
        return {"neighbors": np.asarray(ds.neighbors[:n]), "distances": np.asarray(ds.distances[:n]),
                "test": np.asarray(ds.test[:n]), "sample": np.asarray(ds.train)[rows], "metric": ds.metric}
    import h5py

    from .hdf5 import FROM_ANN

    folder = Path(datasets) if datasets is not None else datasets_root(root)
    path = folder / f"{name}.hdf5"
    if not path.is_file():
        raise FileNotFoundError(f"no dataset file {name}.hdf5 in {folder.name}/")
    key = (str(path.resolve()), int(n))
    if key not in _TRUTH_CACHE:
        with h5py.File(path, "r") as f:
            metric = f.attrs.get("distance")
            metric = FROM_ANN[metric.decode() if isinstance(metric, bytes) else metric]
            n_train = f["train"].shape[0]
            # the runner's RC sample (perquery.relative_contrast: seed 0, 1,000 rows), read without the whole set
            rows = np.sort(np.random.default_rng(0).choice(n_train, size=min(1000, n_train), replace=False))
            _TRUTH_CACHE[key] = {"neighbors": np.asarray(f["neighbors"][:n], dtype=np.int64),
                                 "distances": np.asarray(f["distances"][:n], dtype=np.float32),
                                 "test": np.asarray(f["test"][:n], dtype=np.float32),
                                 "sample": np.asarray(f["train"][rows], dtype=np.float32), "metric": metric}
    return _TRUTH_CACHE[key]


def _read_per_query(path: str | os.PathLike[str]) -> Any:
    """A per-query file, its layout checked against the perquery@1 schema first."""
    from .perquery import read_query_results

    schemas.validate_hdf5(path, schemas.PERQUERY)
    return read_query_results(path)


@dataclass(frozen=True)
class PerQueryFile:
    """One query setting's per-query file: the setting, which of its builds (``build``, an index into the
    record's builds), the file as the record names it (``file``, relative to the build's folder) and its path."""

    dataset: str
    backend: str
    ef_search: int
    k: int
    build: int
    file: str
    path: Path


def find_per_query(source: Source, *, dataset: str, backend: str, ef_search: int, m: int | None = None,
                   ef_construction: int | None = None, quantization: str = "none",
                   build: int | None = None) -> PerQueryFile:
    """The per-query file of one query setting (``build``: an index into its builds; None: the median build).
    Raises LookupError when the setting is not (uniquely) in the results."""
    qb = _tables_of(source, "query").query_builds
    sel = qb.filter((pl.col("dataset") == dataset) & (pl.col("backend") == backend)
                    & (pl.col("ef_search") == ef_search) & (pl.col("quantization") == quantization))
    if m is not None:
        sel = sel.filter(pl.col("m") == m)
    if ef_construction is not None:
        sel = sel.filter(pl.col("ef_construction") == ef_construction)
    settings = sel["path"].unique().to_list()
    if len(settings) != 1:
        raise LookupError(f"{len(settings)} query records match {dataset}/{backend} ef_search={ef_search} m={m} "
                          f"ef_construction={ef_construction} quantization={quantization}; name one")
    chosen = sel.filter(pl.col("median_build") if build is None else pl.col("build_index") == build)
    if chosen.is_empty():
        raise LookupError(f"{dataset}/{backend} ef_search={ef_search} has no build {build}")
    row = chosen.row(0, named=True)
    return PerQueryFile(dataset, backend, ef_search, int(row["k"]), int(row["build_index"]), row["perquery_file"],
                        Path(row["file"]))


def per_query(source: Source, *, dataset: str, backend: str, ef_search: int, m: int | None = None,
              ef_construction: int | None = None, quantization: str = "none", build: int | None = None,
              datasets: Datasets = None) -> pl.DataFrame:
    """One query setting's queries, one row each, read from its per-query file (:func:`find_per_query`):
    ``recall`` (recall@k, ties tolerated), ``recall_strict`` (ids only), ``returned`` (results that came back),
    and the query's difficulty recomputed from the dataset as the runner computes it: ``lid`` (local intrinsic
    dimensionality, higher is harder) and ``rc`` (relative contrast, lower is harder), with ``lid_hardness`` and
    ``rc_hardness`` the query's quintile, 1 easiest .. 5 hardest. Raises LookupError when the setting is not
    (uniquely) in the results, FileNotFoundError when the per-query file or the dataset is missing."""
    from . import perquery
    from .metrics import recall_at_k

    found = find_per_query(source, dataset=dataset, backend=backend, ef_search=ef_search, m=m,
                           ef_construction=ef_construction, quantization=quantization, build=build)
    if not found.path.is_file():
        raise FileNotFoundError(f"no per-query file {found.file} for {dataset}/{backend} ef_search={ef_search}")
    run = _read_per_query(found.path)
    root = source.root if isinstance(source, Tables) else Path(source)
    truth = ground_truth(dataset, run.n_queries, root, datasets)
    k = found.k
    lid = perquery.lid_mle(truth["distances"], metric=truth["metric"])
    rc = perquery.relative_contrast(truth["test"], truth["sample"], truth["distances"], truth["metric"], k=10,
                                    sample=len(truth["sample"]), seed=0)
    columns: dict[str, Any] = {"query": np.arange(run.n_queries),
                               "recall": recall_at_k(truth["distances"], run.distances, k),
                               "recall_strict": perquery.strict_recall(truth["neighbors"], run.ids, k),
                               "returned": (run.ids[:, :k] >= 0).sum(axis=1), "lid": lid, "rc": rc}
    for measure, values in (("lid", lid), ("rc", rc)):
        bins = _quintiles(values)
        n_bins = int(bins.max()) + 1 if (bins >= 0).any() else 0
        direction = perquery.DIFFICULTY_DIRECTION[measure]
        columns[f"{measure}_hardness"] = pl.Series([_hardness(int(b), n_bins, direction) if b >= 0 else None
                                                    for b in bins], dtype=pl.Int64)
    return pl.DataFrame(columns)


def _quintiles(values: np.ndarray, n_bins: int = 5) -> np.ndarray:
    """The bin (0-based, ascending value) of each query as ``perquery.recall_by_difficulty`` forms them; -1 for a
    query without a finite value."""
    out = np.full(len(values), -1)
    idx = np.flatnonzero(np.isfinite(values))
    order = idx[np.argsort(values[idx], kind="stable")]
    for b, chunk in enumerate(np.array_split(order, min(n_bins, len(order))) if len(order) else []):
        out[chunk] = b
    return out


#: :func:`perquery_check`'s columns beyond :data:`QUERY_BUILD_COLUMNS`
PERQUERY_CHECK_COLUMNS: dict[str, Any] = {"exists": _B, "n_queries": _I, "recall_file": _F,
                                          "recall_strict_file": _F, "ground_truth": _S}


def perquery_check(source: Source, datasets: Datasets = None) -> pl.DataFrame:
    """Every per-query file the query records name (:attr:`Tables.query_builds`), whether it exists, and the mean
    recall@k recomputed from it (``recall_file``: ties tolerated; ``recall_strict_file``: ids only) against the
    dataset's ground truth, beside the recall the record holds for that build (``recall_at_10``,
    ``recall_strict_at_10``). ``ground_truth`` is 'found', or why the recomputation is missing."""
    from .metrics import recall_at_k
    from .perquery import strict_recall

    t = _tables_of(source, "query")
    rows = []
    for row in t.query_builds.to_dicts():
        path = Path(row["file"])
        row |= {"exists": path.is_file()}
        if row["exists"]:
            run = _read_per_query(path)
            row["n_queries"] = run.n_queries
            try:
                truth = ground_truth(row["dataset"], run.n_queries, t.root, datasets)
            except FileNotFoundError as exc:
                row["ground_truth"] = str(exc)
            else:
                k = int(row["k"])
                row["ground_truth"] = "found"
                row["recall_file"] = float(recall_at_k(truth["distances"], run.distances, k).mean())
                row["recall_strict_file"] = float(strict_recall(truth["neighbors"], run.ids, k).mean())
        rows.append(row)
    return _frame(rows, QUERY_BUILD_COLUMNS | PERQUERY_CHECK_COLUMNS)



# ------------------------------------------------------------------------------------------------ autotuner studies
def tune_column(objective: str) -> str:
    """The column prefix of an objective's recommendation in :func:`tune_results`: ``rec_qps``, ``rec_memory``,
    ``rec_build_time`` ('-' becomes '_')."""
    return "rec_" + objective.replace("-", "_")


#: the figures of each objective's recommendation in :func:`tune_results`, each column ``<tune_column>_<name>``:
#: the configuration (``label``, ``backend``, ``m``, ``ef_construction``, ``spec``: the codec with its re-rank
#: depth), ``ef_search`` and its figures (recall, 1-thread QPS, bytes per vector, build seconds), and the
#: verification: ``meets_target``, ``median_recall`` and ``min_recall`` over ``verify_builds`` builds (the trial's
#: own and the extra seeds), ``raised_from`` (the trial's ef_search when the verification had to raise it, else null)
#: and ``rejected`` (configurations ranked above it that failed the verification)
TUNE_RECOMMENDATION: dict[str, Any] = {
    "label": _S, "backend": _S, "m": _I, "ef_construction": _I, "spec": _S, "ef_search": _I, "recall": _F,
    "qps": _F, "bytes_per_vector": _F, "build_time_s": _F, "meets_target": _B, "median_recall": _F,
    "min_recall": _F, "verify_builds": _I, "raised_from": _I, "rejected": _I}

#: :func:`tune_results`: one row per study (``tune/<dataset>/recall-<target>.json``): ``builds`` distinct
#: configurations built, ``wall_s`` of the whole study, ``answer`` its one line; ``n_trials``, ``n_feasible``
#: (trials reaching the target), ``n_pareto``; per objective of :data:`ruvector_lab.bench.tune.OBJECTIVES` the
#: :data:`TUNE_RECOMMENDATION` columns (null when nothing held the target); the grid reference (null without one):
#: ``grid_builds``, ``grid_wall_s``, ``grid_feasible``, its best (``grid_best_label``, ``grid_best_qps``), the
#: tuner's best (``tuner_best_label``, ``tuner_best_qps``, ``tuner_builds``, ``tuner_wall_s``: the evaluation time
#: of the tuner's builds), ``qps_ratio`` (tuner best / grid best, timed head to head in one process when
#: ``head_to_head`` is 'ok'; the QPS figures are then that run's), ``qps_ratio_single`` (the same from the
#: trials' own single measurements), ``head_to_head``, ``builds_ratio`` (tuner / grid builds),
#: ``same_configuration``, ``within_tolerance`` (qps_ratio >= 1 - ``tolerance``); the replay on the grid's
#: measurements with other sampler seeds and the tuner's build budget: ``replay_seeds``, ``replay_builds``,
#: ``replay_within`` (seeds within the tolerance), ``replay_fraction_within``, ``replay_median_ratio``,
#: ``replay_status`` (why there is no replay, when there is none); the hosts: ``n_hosts`` (distinct hosts the trials
#: ran on; trials without a host count as one, :data:`UNRECORDED_HOST`), ``grid_best_host`` and ``tuner_best_host``
#: (the names of the hosts whose single measurements found the grid's best and the tuner's best: ``qps_ratio``
#: divides those two measurements when no head-to-head ran; a head-to-head run is one process, so one host)
TUNE_COLUMNS: dict[str, Any] = {
    "path": _S, "dataset": _S, "target": _F, "objective": _S, "study_name": _S, "storage": _S, "builds": _I,
    "wall_s": _F, "answer": _S, "memory_budget": _F, "n_trials": _I, "n_feasible": _I, "n_pareto": _I,
    **{f"{tune_column(o)}_{name}": dtype for o in TUNE_OBJECTIVES for name, dtype in TUNE_RECOMMENDATION.items()},
    "grid_builds": _I, "grid_wall_s": _F, "grid_feasible": _I, "grid_best_label": _S, "grid_best_qps": _F,
    "tuner_best_label": _S, "tuner_best_qps": _F, "tuner_builds": _I, "tuner_wall_s": _F, "qps_ratio": _F,
    "qps_ratio_single": _F, "head_to_head": _S, "builds_ratio": _F, "same_configuration": _B,
    "within_tolerance": _B, "tolerance": _F, "replay_seeds": _I,
    "replay_builds": _I, "replay_within": _I, "replay_fraction_within": _F, "replay_median_ratio": _F,
    "replay_status": _S, "n_hosts": _I, "grid_best_host": _S, "tuner_best_host": _S}

#: :func:`tune_trials`: one row per trial of a study (``number``, Optuna's ``state``), then the grid's stored points
#: (its best and Pareto front) the tuner never tried, with ``in_grid_only`` True and no number or state. The
#: configuration (``backend``, ``m``, ``ef_construction``, ``quantization`` with ``rerank`` its re-rank depth;
#: ``label``); ``feasible`` (reached the target within ef_max), ``reused`` (the sampler asked for a configuration
#: already built: no new build), ``pruned`` (why a trial has no objectives); at the cheapest ``ef_search`` reaching
#: the target: ``recall``, ``qps`` (1 thread), latency; ``bytes_per_vector`` (the objective: RSS growth) and the
#: other two measures, ``build_time_s``; ``on_pareto`` (on the study's Pareto front), ``on_grid_pareto`` (on the
#: grid's), ``recommended_for`` (the objectives recommending it, comma-separated); the host that measured the trial
#: (:data:`HOST_COLUMNS`)
TUNE_TRIAL_COLUMNS: dict[str, Any] = {
    "path": _S, "dataset": _S, "target": _F, "number": _I, "state": _S, "label": _S, "backend": _S, "m": _I,
    "ef_construction": _I, "quantization": _S, "rerank": _I, "feasible": _B, "reused": _B, "pruned": _S,
    "ef_search": _I, "recall": _F, "qps": _F, "p50_ms": _F, "p99_ms": _F, "bytes_per_vector": _F,
    "bytes_serialized": _F, "bytes_analytic": _F, "build_time_s": _F, "wall_s": _F, "datetime_start": _S,
    "on_pareto": _B, "on_grid_pareto": _B, "recommended_for": _S, "in_grid_only": _B, **HOST_COLUMNS}

#: :func:`tune_pareto`: one row per point of a study's Pareto front (``front`` 'tuner': over the trials) and of
#: its grid's (``front`` 'grid': over the whole space, when the study has the grid reference); ``best`` marks each
#: front's highest QPS; the host that measured each point (:data:`HOST_COLUMNS`: the fronts are the study's own,
#: computed by the tuner over every trial, so a front over trials from several hosts mixes their timings and these
#: columns show it)
TUNE_PARETO_COLUMNS: dict[str, Any] = {
    "path": _S, "dataset": _S, "target": _F, "front": _S, "label": _S, "backend": _S, "m": _I,
    "ef_construction": _I, "quantization": _S, "rerank": _I, "ef_search": _I, "recall": _F, "qps": _F,
    "bytes_per_vector": _F, "build_time_s": _F, "best": _B, **HOST_COLUMNS}


def _root_of(source: Source) -> Path:
    """The results root a reader was given (a path, or loaded :class:`Tables`' root)."""
    return source.root if isinstance(source, Tables) else Path(source)


def tune_records(source: Source) -> list[dict[str, Any]]:
    """Every autotuner study (tune@1) under a results root (or loaded :class:`Tables`' root), validated, sorted by
    dataset and target; see :func:`read_records`."""
    records = read_records(_root_of(source), "tune")
    return sorted(records, key=lambda r: (r["dataset"], r["target"]))


def _candidate_key(candidate: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    if not candidate:
        return None
    return tuple(candidate.get(k) for k in ("backend", "m", "ef_construction", "quantization", "rerank"))


def _recommendation_columns(objective: str, rec: Mapping[str, Any] | None) -> dict[str, Any]:
    prefix = tune_column(objective)
    if rec is None:
        return {f"{prefix}_{name}": None for name in TUNE_RECOMMENDATION}
    check = rec.get("verification") or {}
    raised = check.get("raised_ef_search") or {}
    values = {"label": rec["label"], "backend": rec["backend"], "m": rec["m"],
              "ef_construction": rec["ef_construction"], "spec": rec["spec"], "ef_search": rec["ef_search"],
              "recall": rec["recall"], "qps": rec["qps"], "bytes_per_vector": rec["bytes_per_vector"],
              "build_time_s": rec["build_time_s"], "meets_target": check.get("meets_target"),
              "median_recall": check.get("median_recall", rec["recall"]), "min_recall": check.get("min_recall"),
              "verify_builds": max(1, len(check.get("builds") or [])), "raised_from": raised.get("from"),
              "rejected": len(rec.get("rejected") or [])}
    return {f"{prefix}_{name}": value for name, value in values.items()}


def _point_host(point: Mapping[str, Any] | None) -> dict[str, Any]:
    """The :data:`HOST_COLUMNS` of a tuner's trial or grid point, which keeps ``host`` and ``host_load`` at its top
    level (:func:`host_columns` reads them from a record's environment)."""
    point = point or {}
    return host_columns({"environment": {"host": point.get("host")}, "host_load": point.get("host_load")})


def _tune_row(rec: dict[str, Any]) -> dict[str, Any]:
    trials = rec["trials"]
    row = {"path": rec["_path"], "dataset": rec["dataset"], "target": rec["target"], "objective": rec["objective"],
           "study_name": rec["study_name"], "storage": rec["storage"], "builds": rec["builds"],
           "wall_s": rec["wall_s"], "answer": rec["answer"], "memory_budget": rec.get("memory_budget"),
           "n_trials": len(trials), "n_feasible": sum(bool(t.get("feasible")) for t in trials),
           "n_pareto": len(rec["pareto"]),
           "n_hosts": len({_point_host(t)["host"] for t in trials if t.get("candidate")})}
    for objective in TUNE_OBJECTIVES:
        row |= _recommendation_columns(objective, rec["recommended"].get(objective))
    grid = rec.get("grid")
    if not grid:
        return row
    best, mine, replay = grid.get("best") or {}, grid.get("tuner_best") or {}, grid.get("replay") or {}
    return row | {
        "grid_builds": grid["builds"], "grid_wall_s": grid["wall_s"], "grid_feasible": grid["feasible"],
        "grid_best_label": best.get("label"), "grid_best_qps": best.get("qps"), "tuner_best_label": mine.get("label"),
        "tuner_best_qps": mine.get("qps"), "tuner_builds": grid["tuner_builds"], "tuner_wall_s": grid["tuner_wall_s"],
        "qps_ratio": grid["qps_ratio"], "qps_ratio_single": grid.get("qps_ratio_single"),
        "head_to_head": (grid.get("head_to_head") or {}).get("status"), "builds_ratio": grid["builds_ratio"],
        "same_configuration": grid["same_configuration"], "within_tolerance": grid["within_tolerance"],
        "tolerance": grid["tolerance"], "replay_seeds": len(replay["seeds"]) if "seeds" in replay else None,
        "replay_builds": replay.get("builds"), "replay_within": replay.get("within_tolerance"),
        "replay_fraction_within": replay.get("fraction_within_tolerance"),
        "replay_median_ratio": replay.get("median_qps_ratio"),
        "replay_status": replay.get("status", "not replayed" if not replay else None),
        "grid_best_host": _point_host(best)["host_name"] if best else None,
        "tuner_best_host": _point_host(mine)["host_name"] if mine else None}


def _tune_point(rec: dict[str, Any], point: Mapping[str, Any]) -> dict[str, Any]:
    """The columns a trial row and a grid point share: the study, the configuration and its figures."""
    cand = point.get("candidate") or {}
    bytes_ = point.get("bytes") or {}
    latency = point.get("latency_ms") or {}
    return {"path": rec["_path"], "dataset": rec["dataset"], "target": rec["target"], "label": point.get("label"),
            "backend": cand.get("backend"), "m": cand.get("m"), "ef_construction": cand.get("ef_construction"),
            "quantization": cand.get("quantization"), "rerank": cand.get("rerank"), "feasible": point.get("feasible"),
            "ef_search": point.get("ef_search"), "recall": point.get("recall"), "qps": point.get("qps"),
            "p50_ms": latency.get("p50"), "p99_ms": latency.get("p99"),
            "bytes_per_vector": point.get("bytes_per_vector"), "bytes_serialized": bytes_.get("serialized"),
            "bytes_analytic": bytes_.get("analytic"), "build_time_s": point.get("build_time_s"),
            "wall_s": point.get("wall_s"), **_point_host(point)}


def _tune_trial_rows(rec: dict[str, Any]) -> list[dict[str, Any]]:
    grid = rec.get("grid") or {}
    front = {_candidate_key(p.get("candidate")) for p in rec["pareto"]}
    grid_front = {_candidate_key(p.get("candidate")) for p in grid.get("pareto") or []}
    chosen: dict[tuple[Any, ...] | None, list[str]] = defaultdict(list)
    for objective, r in rec["recommended"].items():
        if r is not None:
            chosen[_candidate_key(r)].append(objective)
    rows, tried = [], set()
    for t in rec["trials"]:
        key = _candidate_key(t.get("candidate"))
        tried.add(key)
        rows.append(_tune_point(rec, t) | {
            "number": t["number"], "state": t["state"], "reused": t.get("reused"), "pruned": t.get("pruned"),
            "datetime_start": t.get("datetime_start"), "on_pareto": key is not None and key in front,
            "on_grid_pareto": key is not None and key in grid_front,
            "recommended_for": ", ".join(chosen[key]) if key in chosen else None, "in_grid_only": False})
    for point in [grid.get("best"), *(grid.get("pareto") or [])]:
        key = _candidate_key((point or {}).get("candidate"))
        if key is None or key in tried:
            continue
        tried.add(key)
        rows.append(_tune_point(rec, point) | {"on_pareto": False, "on_grid_pareto": key in grid_front,
                                               "in_grid_only": True})
    return rows


def _tune_pareto_rows(rec: dict[str, Any]) -> list[dict[str, Any]]:
    grid = rec.get("grid") or {}
    rows = []
    # the grid's best is the head-to-head winner when there was one (not always its top single measurement)
    grid_best = _candidate_key((grid.get("best") or {}).get("candidate"))
    grid_points = list(grid.get("pareto") or [])
    if grid_best is not None and all(_candidate_key(p.get("candidate")) != grid_best for p in grid_points):
        grid_points.append(grid["best"])  # the head-to-head winner, shown beside the front its trial was not on
    for front, points in (("tuner", rec["pareto"]), ("grid", grid_points)):
        top = max((p["qps"] for p in points), default=None)
        for p in points:
            point = _tune_point(rec, p)
            best = (_candidate_key(p.get("candidate")) == grid_best) if front == "grid" and grid_best is not None \
                else p["qps"] == top
            rows.append({c: point.get(c) for c in TUNE_PARETO_COLUMNS} | {"front": front, "best": best})
    return rows


def tune_results(source: Source) -> pl.DataFrame:
    """One row per autotuner study under a results root (:data:`TUNE_COLUMNS`), sorted by dataset and target."""
    return _frame([_tune_row(rec) for rec in tune_records(source)], TUNE_COLUMNS)


def tune_trials(source: Source) -> pl.DataFrame:
    """One row per trial of every autotuner study, then the grid's stored points the tuner never tried
    (:data:`TUNE_TRIAL_COLUMNS`)."""
    return _frame([row for rec in tune_records(source) for row in _tune_trial_rows(rec)], TUNE_TRIAL_COLUMNS)


def tune_pareto(source: Source) -> pl.DataFrame:
    """Each study's Pareto front (QPS up, bytes per vector down, build time down) over its trials, beside the
    grid's over the whole space when the study has one (:data:`TUNE_PARETO_COLUMNS`), each by descending QPS."""
    return _frame([row for rec in tune_records(source) for row in _tune_pareto_rows(rec)], TUNE_PARETO_COLUMNS)


# ------------------------------------------------------------------------------------------- native vs WASM
#: sides within this much recall@10 of the pair's common target count as being at equal recall
PEER_RECALL_TOLERANCE = 0.005

#: :func:`peer_sides`: one row per (dataset, pair, side, ef_search) with figures, or per side without them
PEER_SIDE_COLUMNS: dict[str, Any] = {
    "path": _S, "dataset": _S, "pair": _S, "comparison": _S, "same": _B, "role": _S, "backend": _S, "runtime": _S,
    "tier": _S, "package": _S, "version": _S, "algorithm": _S, "engine": _S, "status": _S, "reason": _S,
    "runs": _I, "ef_search": _I, "recall_at_10": _F, "p50_ms": _F, "p50_ms_min": _F, "p50_ms_max": _F, "p95_ms": _F,
    "p99_ms": _F, "qps": _F, "qps_min": _F, "qps_max": _F, "cpu": _F, "build_s": _F, "build_s_min": _F,
    "build_s_max": _F, "bytes_per_vector": _F, "bytes_per_vector_min": _F, "bytes_per_vector_max": _F,
    "memory_measure": _S, "clock_resolution_ms": _F, "n_queries": _I, **HOST_COLUMNS}

#: :func:`peer_comparison`: one row per (dataset, pair); ``*_ratio`` are the second side over the first (latency,
#: build time, memory) or the first over the second (QPS), so above 1 means the second side is slower or bigger,
#: each the median over run pairs (run i of one side with run i of the other) with min and max
PEER_COMPARISON_COLUMNS: dict[str, Any] = {
    "dataset": _S, "pair": _S, "comparison": _S, "same": _B, "same_algorithm": _S, "first": _S, "second": _S,
    "status": _S, "reason": _S, "target_recall": _F, "first_ef": _I, "second_ef": _I, "first_recall": _F,
    "second_recall": _F, "first_p50_ms": _F, "second_p50_ms": _F, "latency_ratio": _F, "latency_ratio_min": _F,
    "latency_ratio_max": _F, "first_qps": _F, "second_qps": _F, "qps_ratio": _F, "qps_ratio_min": _F,
    "qps_ratio_max": _F, "build_ratio": _F, "build_ratio_min": _F, "build_ratio_max": _F, "first_bytes": _F,
    "first_bytes_min": _F, "first_bytes_max": _F, "second_bytes": _F, "second_bytes_min": _F, "second_bytes_max": _F,
    "first_memory": _S, "second_memory": _S, "run_pairs": _I, "clock_resolution_ms": _F,
    "verdict": _S, **HOST_COLUMNS}


def peer_records(source: Source) -> list[dict[str, Any]]:
    """Every native-vs-WASM record (peers@1) under a results root (or loaded :class:`Tables`' root), validated,
    sorted by dataset and pair; see :func:`read_records`."""
    records = read_records(_root_of(source), "peers")
    return sorted(records, key=lambda r: (r.get("dataset", {}).get("name", ""), r["pair"]["name"]))


def _engine_text(engine: Mapping[str, Any] | None) -> str | None:
    if not engine:
        return None
    return " ".join(str(part) for part in (engine.get("name"), engine.get("version")) if part)


def _peer_side_rows(rec: dict[str, Any]) -> list[dict[str, Any]]:
    pair = rec["pair"]
    base = {"path": rec["_path"], "dataset": (rec.get("dataset") or {}).get("name"), "pair": pair["name"],
            "comparison": pair["comparison"], "same": pair["same"], **host_columns(rec)}
    if rec["status"] != "ok":
        return [base | {"role": role, "backend": pair[role], "status": rec["status"], "reason": rec["reason"]}
                for role in ("first", "second")]
    rows = []
    for role, side in zip(("first", "second"), rec["sides"], strict=True):
        ok_runs = [run for run in side["runs"] if run["status"] == "ok"]
        row = base | {"role": role, "backend": side["backend"], "runtime": side["runtime"], "tier": side["tier"],
                      "package": side["package"], "version": side.get("version"), "status": side["status"],
                      "reason": side.get("reason"), "runs": len(ok_runs), "n_queries": rec["n_queries"]}
        if side["status"] != "ok":
            rows.append(row)
            continue
        build, memory = spread_of(side["build_time_s"]), spread_of(side.get("memory_bytes_per_vector"))
        resolutions = [run["clock_resolution_ms"] for run in ok_runs if run.get("clock_resolution_ms") is not None]
        row |= {"algorithm": side["algorithm"], "engine": _engine_text(side.get("engine")),
                "build_s": build["median"], "build_s_min": build["min"], "build_s_max": build["max"],
                "bytes_per_vector": memory["median"], "bytes_per_vector_min": memory["min"],
                "bytes_per_vector_max": memory["max"], "memory_measure": side.get("memory_measure"),
                "clock_resolution_ms": max(resolutions) if resolutions else None}
        for point in side["sweep"]:
            p50, qps = spread_of(point["latency_p50"]), spread_of(point["qps"])
            rows.append(row | {"ef_search": point["ef_search"], "recall_at_10": point["recall_at_10"],
                               "p50_ms": p50["median"], "p50_ms_min": p50["min"], "p50_ms_max": p50["max"],
                               "p95_ms": point["latency_ms"]["p95"], "p99_ms": point["latency_ms"]["p99"],
                               "qps": qps["median"], "qps_min": qps["min"], "qps_max": qps["max"],
                               "cpu": point.get("cpu_utilization")})
    return rows


def peer_sides(source: Source) -> pl.DataFrame:
    """Every side of every native-vs-WASM record, one row per ef_search it ran (:data:`PEER_SIDE_COLUMNS`; a side
    that gave no figures is one row with its status and reason)."""
    return _frame([row for rec in peer_records(source) for row in _peer_side_rows(rec)], PEER_SIDE_COLUMNS)


def _equal_recall(first: Sequence[Mapping[str, Any]], second: Sequence[Mapping[str, Any]]
                  ) -> tuple[float, int, int]:
    """The recall both sides reach (the lower of their best) and, for each, the index of its fastest sweep point
    (lowest median p50) within :data:`PEER_RECALL_TOLERANCE` of it."""
    target = min(max(p["recall_at_10"] for p in first), max(p["recall_at_10"] for p in second))

    def fastest(sweep: Sequence[Mapping[str, Any]]) -> int:
        reaching = [i for i, p in enumerate(sweep) if p["recall_at_10"] >= target - PEER_RECALL_TOLERANCE]
        return min(reaching, key=lambda i: sweep[i]["latency_ms"]["p50"])

    return target, fastest(first), fastest(second)


def _run_ratios(first: Mapping[str, Any], second: Mapping[str, Any], i: int, j: int) -> dict[str, list[float]]:
    """Per run pair (the n-th successful run of each side): second/first latency p50 and build time, first/second
    QPS, at sweep points ``i`` and ``j``."""
    a = [run for run in first["runs"] if run["status"] == "ok"]
    b = [run for run in second["runs"] if run["status"] == "ok"]
    out: dict[str, list[float]] = {"latency": [], "qps": [], "build": []}
    for ra, rb in zip(a, b, strict=False):
        pa, pb = ra["points"][i], rb["points"][j]
        if pa["latency_ms"]["p50"] > 0:
            out["latency"].append(pb["latency_ms"]["p50"] / pa["latency_ms"]["p50"])
        if pb["qps"] > 0:
            out["qps"].append(pa["qps"] / pb["qps"])
        if ra["build_time_s"] > 0:
            out["build"].append(rb["build_time_s"] / ra["build_time_s"])
    return out


def _ratio_columns(name: str, values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {name: None, f"{name}_min": None, f"{name}_max": None}
    return {name: float(np.median(values)), f"{name}_min": float(min(values)), f"{name}_max": float(max(values))}


def _times(ratio: float) -> str:
    return f"{ratio:.2f}x slower" if ratio >= 1 else f"{1 / ratio:.2f}x faster"


def peer_sentence(row: Mapping[str, Any]) -> str:
    """One sentence on one pair and dataset from its :func:`peer_comparison` row: the second side against the
    first at equal recall, judged on batch QPS (the single-query p50 ratio beside it) and, for a native-vs-WASM
    pair of one algorithm, where that stands against the ADR's 2-5x."""
    where = f"{row['pair']} on {row['dataset']}"
    if row["status"] != "ok":
        return f"{where}: no comparison ({row['reason']})."
    # judged on batch throughput: one clock reading around the whole query loop, so a browser's coarse timer
    # (5 us when cross-origin isolated) does not blur it as it blurs a 10 us single-query latency
    ratio, low, high = row["qps_ratio"], row["qps_ratio_min"], row["qps_ratio_max"]
    said = (f"{where}: {row['second']} is {_times(ratio)} than {row['first']} at recall@10 "
            f"{row['target_recall']:.3f} (batch QPS ratio {ratio:.2f}, {low:.2f}-{high:.2f} over {row['run_pairs']} "
            f"run pairs; single-query p50 ratio {row['latency_ratio']:.2f})")
    if row["comparison"] != "native vs wasm":
        return said + "."
    if not row["same"]:
        return said + "; not the same algorithm on both sides, so no verdict on the ADR's 2-5x."
    return f"{said}: {_against_adr(low, high)}."


def _against_adr(low: float, high: float) -> str:
    """Where ratios from ``low`` to ``high`` (native over WASM) stand against the ADR's 2-5x."""
    lo, hi = NATIVE_SPEEDUP
    if high < lo:
        return f"below the ADR's {lo:g}-{hi:g}x (native gains less than claimed)"
    if low > hi:
        return f"above the ADR's {lo:g}-{hi:g}x (native gains more than claimed)"
    if low >= lo and high <= hi:
        return f"within the ADR's {lo:g}-{hi:g}x"
    return f"straddling an edge of the ADR's {lo:g}-{hi:g}x"


def peer_verdict(comparison: pl.DataFrame) -> str:
    """The verdict on ADR-006's "native 2-5x faster than WASM" in one sentence, from the native-vs-WASM pairs of
    one algorithm in a :func:`peer_comparison` frame (the others cannot speak to it)."""
    fair = [r for r in comparison.to_dicts()
            if r["status"] == "ok" and r["same"] and r["comparison"] == "native vs wasm"]
    if not fair:
        return (f"ADR-006 \"{NATIVE_SPEEDUP_TEXT}\": not measured here (no native-vs-WASM pair of one algorithm "
                "gave figures on both sides).")
    parts = [f"{r['qps_ratio']:.2f}x ({r['qps_ratio_min']:.2f}-{r['qps_ratio_max']:.2f}; {r['pair']}, "
             f"{r['dataset']}, recall@10 {r['target_recall']:.3f})" for r in fair]
    ratios = [r["qps_ratio"] for r in fair]
    return (f"ADR-006 \"{NATIVE_SPEEDUP_TEXT}\": on the same algorithm at equal recall, native's batch QPS is "
            f"{', '.join(parts)} WASM's: {_against_adr(min(ratios), max(ratios))}.")


def _bytes_columns(role: str, side: Mapping[str, Any]) -> dict[str, Any]:
    """A side's memory per vector over its runs: median, min and max (None where its runtime's memory did not grow)."""
    memory = spread_of(side.get("memory_bytes_per_vector"))
    return {f"{role}_bytes": memory["median"], f"{role}_bytes_min": memory["min"], f"{role}_bytes_max": memory["max"]}


def _peer_comparison_row(rec: dict[str, Any]) -> dict[str, Any]:
    pair = rec["pair"]
    row: dict[str, Any] = {"dataset": (rec.get("dataset") or {}).get("name"), "pair": pair["name"],
                           "comparison": pair["comparison"], "same": pair["same"],
                           "same_algorithm": pair["same_algorithm"], "first": pair["first"],
                           "second": pair["second"], **host_columns(rec)}
    if rec["status"] != "ok":
        return row | {"status": rec["status"], "reason": rec["reason"]}
    first, second = rec["sides"]
    missing = [f"{s['backend']} {s['status']}: {s['reason']}" for s in (first, second) if s["status"] != "ok"]
    if missing:
        return row | {"status": "incomplete", "reason": "; ".join(missing)}
    target, i, j = _equal_recall(first["sweep"], second["sweep"])
    pa, pb = first["sweep"][i], second["sweep"][j]
    ratios = _run_ratios(first, second, i, j)
    resolutions = [run.get("clock_resolution_ms") for side in (first, second) for run in side["runs"]
                   if run["status"] == "ok" and run.get("clock_resolution_ms") is not None]
    row |= {"status": "ok", "reason": None, "target_recall": target, "first_ef": pa["ef_search"],
            "second_ef": pb["ef_search"], "first_recall": pa["recall_at_10"], "second_recall": pb["recall_at_10"],
            "first_p50_ms": pa["latency_ms"]["p50"], "second_p50_ms": pb["latency_ms"]["p50"],
            "first_qps": pa["qps"]["median"], "second_qps": pb["qps"]["median"],
            **_ratio_columns("latency_ratio", ratios["latency"]), **_ratio_columns("qps_ratio", ratios["qps"]),
            **_ratio_columns("build_ratio", ratios["build"]),
            **_bytes_columns("first", first), **_bytes_columns("second", second),
            "first_memory": first.get("memory_measure"), "second_memory": second.get("memory_measure"),
            "run_pairs": len(ratios["latency"]), "clock_resolution_ms": max(resolutions) if resolutions else None}
    if row["latency_ratio"] is None:
        return row | {"status": "incomplete", "reason": "no run pair with figures on both sides"}
    return row


def peer_comparison(source: Source) -> pl.DataFrame:
    """One row per native-vs-WASM record (:data:`PEER_COMPARISON_COLUMNS`): both sides at equal recall (the lower
    of the two sides' best recall@10, each side at its fastest ef_search within :data:`PEER_RECALL_TOLERANCE` of
    it), the latency, QPS and build-time ratios with their spread over run pairs, memory per vector by each side's
    own measure with its min and max over runs, and the one-sentence ``verdict`` (:func:`peer_sentence`). A record
    whose sides did not both give figures has status 'not available' or 'incomplete' and the reason."""
    rows = [_peer_comparison_row(rec) for rec in peer_records(source)]
    for row in rows:
        row.setdefault("reason", None)
        row["verdict"] = peer_sentence(row)
    return _frame(rows, PEER_COMPARISON_COLUMNS)


__all__ = [
    "ADR_COLUMNS",
    "BUILD_COLUMNS",
    "BUILD_KEY",
    "CODEC_COLUMNS",
    "CODEC_SUMMARY_COLUMNS",
    "DIFFICULTY_COLUMNS",
    "EMBEDDING_COLUMNS",
    "FILE_COLUMNS",
    "GLOBS",
    "HOST_COLUMNS",
    "HOST_SUMMARY_COLUMNS",
    "INDEX_STAT_COLUMNS",
    "KINDS",
    "MODES",
    "PEER_COMPARISON_COLUMNS",
    "PEER_RECALL_TOLERANCE",
    "PEER_SIDE_COLUMNS",
    "PERQUERY_CHECK_COLUMNS",
    "QHNSW_COLUMNS",
    "QUERY_BUILD_COLUMNS",
    "QUERY_COLUMNS",
    "RABITQ_BITS_COLUMNS",
    "RECALL_TARGETS",
    "SCALING_COLUMNS",
    "SETTING_KEY",
    "TAGS",
    "TUNE_COLUMNS",
    "TUNE_OBJECTIVES",
    "TUNE_PARETO_COLUMNS",
    "TUNE_RECOMMENDATION",
    "TUNE_TRIAL_COLUMNS",
    "UNRECORDED_HOST",
    "Datasets",
    "PerQueryFile",
    "Source",
    "Tables",
    "absent",
    "adr",
    "adr_view",
    "backend_rank",
    "build_label",
    "builds",
    "co_scheduled",
    "codec_frame",
    "codec_rotation",
    "codec_summary",
    "codecs",
    "datasets_root",
    "effective_ef",
    "embedding_matrix",
    "files",
    "find_per_query",
    "flag_noise",
    "flat_spec",
    "ground_truth",
    "host_columns",
    "host_keys",
    "hosts",
    "index_stats",
    "load",
    "mark_pareto",
    "noise_figures",
    "operating_points",
    "pareto",
    "peer_comparison",
    "peer_records",
    "peer_sentence",
    "peer_sides",
    "peer_verdict",
    "per_query",
    "perquery_check",
    "qhnsw_vs_scan",
    "queries",
    "rabitq_bits",
    "read_records",
    "result_paths",
    "sort_backends",
    "spread_of",
    "thread_counts",
    "tune_column",
    "tune_pareto",
    "tune_records",
    "tune_results",
    "tune_trials",
]
