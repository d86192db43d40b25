"""What the notebooks read: the pipeline's results as pandas tables, for display and matplotlib.

The notebooks never open a result file themselves; they call the functions here, and these read through the
project's one results reader, :mod:`ruvector_lab.bench.tables` (polars frames, every record validated against its
schema in :mod:`ruvector_lab.bench.schemas`; the report reads the same frames). This module only picks, renames and
converts columns to pandas; the figures derived from results (effective ef, Pareto frontiers, operating points,
noise flags) come from ``tables``. Every reader returns an empty table when the pipeline has not produced that part
yet, and :func:`source` says in words what was found, so a notebook can say "no pipeline results yet: run make
repro" and carry on with what it can check live.

Where results are read from: ``$RUVECTOR_LAB_RESULTS`` if set (``make test-notebooks`` points it at the tiny
profile's outputs), else ``data/results`` under the repository (the full pipeline's outputs, ``make repro``).

Index results (schemas ``build@2``, ``query@3``): :func:`query_runs` and :func:`build_runs` give one row per query
setting and per build configuration; beside them :func:`build_spread` (recall and QPS over the builds of one
configuration), :func:`recall_tail` (the per-query recall distribution), :func:`difficulty_bins` (recall per LID
and RC quintile), :func:`memory_table` (bytes per vector three ways, build time), :func:`thread_scaling` (both
thread modes), :func:`noise_table` (reference drift, noisy flags), and from the per-query HDF5 files
:func:`perquery_files` (each file, with its mean recall recomputed) and :func:`per_query` (one setting's queries).

The codec sweep (schema ``quant@1``): :func:`quant_runs` (one row per codec and re-rank factor),
:func:`codec_summary` (one row per codec with its diagnostics), :func:`quant_findings` (why a codec loses to a
smaller one), :func:`rabitq_bits`, :func:`rabitq_rotation` and :func:`pq_variants` (the codecs' variants side by
side), and the quantized HNSW builds against the flat scan of their codes, :func:`qhnsw_vs_scan`.

Native vs WASM builds of one library (schema ``peers@1``, stage ``node-peers``): :func:`peer_comparison` (one row
per pair and dataset at equal recall, with the ratios and the verdict sentence), :func:`peer_sides` (every side's
sweep as it ran) and :func:`peer_verdict` (the ADR's "2-5x" judged in one sentence).

The autotuner (schema ``tune@1``): :func:`tune_results` (one row per study), :func:`tune_trials` (one row per
trial) and :func:`tune_pareto` (the tuner's Pareto front beside the grid's).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from ruvector_lab.bench import quant_findings as quant_findings_module
from ruvector_lab.bench import tables
from ruvector_lab.bench.tables import backend_rank
from ruvector_lab.bench.targets import NATIVE_SPEEDUP, TARGETS, VARIANT_SEP

#: the environment variable naming the results root (the folder holding runs/, quant/, adr/)
RESULTS_ENV = "RUVECTOR_LAB_RESULTS"
#: the repository (this file lives in <repo>/notebooks/)
REPO = Path(__file__).resolve().parents[1]
#: where the full pipeline writes its results, relative to the repository
DEFAULT_RESULTS = Path("data") / "results"
#: the pipeline's human-readable report (written by its report stage)
REPORT = Path("results") / "report.md"
#: the message every notebook shows when a part of the results is missing
NO_RESULTS = "no pipeline results yet: run make repro"
#: the backend the ADR calls the WASM tier, and the tier names of the others
WASM_BACKEND = "wasm"
NATIVE_TIER = "native"
#: the ADR's claim: native bindings are 2-5x faster than WASM (its one home: ruvector_lab.bench.targets)
ADR_NATIVE_SPEEDUP = NATIVE_SPEEDUP
#: the recall floors the operating points are chosen for
RECALL_FLOORS = tables.RECALL_TARGETS
#: the ADR's own benchmark data (10,000 x 384 uniform in [-1, 1]): the ADR suite's dataset unless params name another
ADR_DATASET = "adr-random-10k-384"
#: one build configuration, and one query setting of it
BUILD_KEY = list(tables.BUILD_KEY)
SETTING_KEY = list(tables.SETTING_KEY)
#: the names the runner gives its two thread-scaling modes (query@3 ``qps`` and ``qps_pool``), as shown here
MODES = tables.MODES
#: where ground truth comes from (see :func:`ruvector_lab.bench.tables.ground_truth`)
Datasets = tables.Datasets


# ------------------------------------------------------------------------------------------------ locating files
def results_root() -> Path:
    """The results root: ``$RUVECTOR_LAB_RESULTS`` if set, else ``<repo>/data/results``."""
    env = os.environ.get(RESULTS_ENV)
    return Path(env) if env else REPO / DEFAULT_RESULTS


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the repository when it is inside it, else only its last two parts: notebook outputs
    never carry a machine's absolute paths."""
    p = Path(path).resolve()
    try:
        return p.relative_to(REPO).as_posix()
    except ValueError:
        return "<outside the repo>/" + "/".join(p.parts[-2:])


def _root(root: str | os.PathLike[str] | None) -> Path:
    return Path(root) if root is not None else results_root()


def _pandas(frame: pl.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """``frame`` (its ``columns``, in that order; one it lacks is all missing) as a pandas frame, built the way
    pandas builds one from rows: nulls become NaN in numbers and None elsewhere. (polars' own ``to_pandas`` needs
    pyarrow, which the notebooks do not.)"""
    cols = list(columns) if columns is not None else frame.columns
    data = {c: frame[c].to_list() if c in frame.columns else [None] * len(frame) for c in cols}
    return pd.DataFrame(data, columns=cols)


def _joined(frame: pl.DataFrame, column: str = "noisy") -> pl.DataFrame:
    """A list-of-names column as one string, ``'a, b'``."""
    return frame.with_columns(pl.col(column).list.join(", ").fill_null("")) if column in frame.columns else frame


@dataclass(frozen=True)
class Source:
    """What the results root holds: counts of ADR, build, query and codec files (any status)."""

    root: Path
    adr: int
    builds: int
    queries: int
    quant: int

    @property
    def empty(self) -> bool:
        """True when the pipeline has written nothing here."""
        return not (self.adr or self.builds or self.queries or self.quant)

    def describe(self) -> str:
        """One line for a notebook's output: where the data comes from and how much of it there is."""
        if self.empty:
            return f"{NO_RESULTS} (looked in {shown(self.root)})"
        return (f"pipeline results in {shown(self.root)}: {self.adr} ADR suite files, {self.builds} index builds, "
                f"{self.queries} query settings, {self.quant} codec sweeps")


def source(root: str | os.PathLike[str] | None = None) -> Source:
    """Count what the pipeline has written under ``root`` (default :func:`results_root`)."""
    r = _root(root)
    count = {kind: len(tables.result_paths(r, kind)) for kind in tables.KINDS}
    return Source(r, count["adr"], count["build"], count["query"], count["quant"])


def report_path() -> Path | None:
    """The pipeline's report (results/report.md) if it exists."""
    path = REPO / REPORT
    return path if path.is_file() else None


def datasets_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder of the pipeline's datasets (``data/datasets``, beside ``data/results``)."""
    return tables.datasets_root(_root(root))


# ------------------------------------------------------------------------------------------------ ADR-006 suite
ADR_COLUMNS = ["backend", "tier", "case", "target_ms", "protocol", "iterations", "p50_ms", "p95_ms", "p99_ms",
               "mean_ms", "judged_ms", "verdict", "recall_at_10", "info", "host"]


def _info(text: str | None) -> str:
    """A case's details (JSON text) in one line, ``key=value, ...``, without the index config."""
    import json

    info = json.loads(text) if text else {}
    return ", ".join(f"{k}={v}" for k, v in info.items() if k != "config")


def adr_cases(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Every ADR-suite measurement as one row per (backend, case, protocol).

    ``backend`` is 'common' for the cases that do not depend on the index backend (embedding, quantize, exact
    pattern match). ``judged_ms`` is what the verdict was taken on (the ADR protocol's mean, the honest protocol's
    p95); ``recall_at_10`` is filled for the search case. Cases or backends not available here are rows with
    verdict 'not available' and the reason in ``info``. ``host`` is the fingerprint of the machine that measured it
    (:data:`ruvector_lab.bench.tables.HOST_COLUMNS`).
    """
    t = tables.load(_root(root), ("adr",))
    rows = []
    for r in t.files.to_dicts():  # every ADR file, in order: a backend not available is one row
        backend = r["backend"]
        tier = r["tier"] if r["tier"] is not None else ("" if backend != "common" else "any")
        if r["status"] != "ok":
            rows.append({"backend": backend, "tier": tier, "case": "(all)", "verdict": "not available",
                         "info": r["reason"] or "", "host": r["host"]})
            continue
        for c in t.adr.filter(pl.col("path") == r["path"]).to_dicts():
            if c["status"] != "ok":
                rows.append({"backend": backend, "tier": tier, "case": c["case"], "target_ms": c["target_ms"],
                             "verdict": "not available", "info": c["reason"] or "", "host": c["host"]})
                continue
            rows.append({k: c[k] for k in ADR_COLUMNS if k in c} | {"tier": tier, "info": _info(c["info"])})
    return pd.DataFrame(rows, columns=ADR_COLUMNS)


def adr_scorecard(cases: pd.DataFrame, protocol: str = "honest") -> pd.DataFrame:
    """One row per (case, backend) for one protocol: target, measured (judged) ms, verdict, recall@10 beside it.

    Cases in ADR order; the 'common' cases apply to every backend and are listed once under 'common'.
    """
    cols = ["case", "backend", "tier", "target_ms", "judged_ms", "verdict", "recall_at_10"]
    if cases.empty:
        return pd.DataFrame(columns=cols)
    sel = cases[((cases["protocol"] == protocol) | cases["protocol"].isna())
                & ~cases["case"].str.contains(VARIANT_SEP, regex=False)][cols].copy()
    order = {c: i for i, c in enumerate(TARGETS)}
    sel["_o"] = sel["case"].map(lambda c: order.get(c, len(order)))
    return sel.sort_values(["_o", "backend"]).drop(columns="_o").reset_index(drop=True)


def embedding_matrix(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The ADR suite's embedding variants, one row per (case, precision, threads, texts, protocol)
    (:func:`ruvector_lab.bench.tables.embedding_matrix`): latencies, the judged value and verdict against the base
    case's ADR target, the graph that ran, and for a mixed batch its p50 over the same texts embedded apart."""
    matrix = tables.embedding_matrix(tables.load(_root(root), ("adr",)).adr)
    return pd.DataFrame(matrix.to_dicts(), columns=list(tables.EMBEDDING_COLUMNS))


def adr_verdicts(cases: pd.DataFrame, protocol: str = "honest") -> pd.DataFrame:
    """Case x backend table of verdicts ('pass', 'fail', 'no target', 'not available') for one protocol."""
    card = adr_scorecard(cases, protocol)
    if card.empty:
        return card
    table = card.pivot_table(index="case", columns="backend", values="verdict", aggfunc="first")
    return table.reindex([c for c in TARGETS if c in table.index])


def native_wasm_ratios(cases: pd.DataFrame, protocol: str = "honest") -> pd.DataFrame:
    """For every backend-scoped case both tiers ran: the WASM backend's latency divided by each native backend's.

    A ratio of 3 means native is 3x faster; the ADR claims 2-5x. ``in_claim`` says whether the ratio falls in that
    band. Latencies compared are the protocol's judged values (honest: p95; adr: mean). Only latencies measured on
    the same host (``host``) are divided: two machines' timings make no ratio.
    """
    cols = ["case", "native", "native_ms", "wasm_ms", "ratio", "in_claim", "host"]
    if cases.empty:
        return pd.DataFrame(columns=cols)
    sel = cases[(cases["protocol"] == protocol) & cases["judged_ms"].notna()]
    wasm = sel[sel["backend"] == WASM_BACKEND].set_index(["host", "case"])["judged_ms"]
    rows = []
    for _, r in sel[sel["tier"] == NATIVE_TIER].iterrows():
        if (r["host"], r["case"]) in wasm.index and r["judged_ms"] > 0:
            wasm_ms = float(wasm[(r["host"], r["case"])])
            ratio = wasm_ms / float(r["judged_ms"])
            lo, hi = ADR_NATIVE_SPEEDUP
            rows.append({"case": r["case"], "native": r["backend"], "native_ms": float(r["judged_ms"]),
                         "wasm_ms": wasm_ms, "ratio": ratio, "in_claim": lo <= ratio <= hi, "host": r["host"]})
    return pd.DataFrame(rows, columns=cols)


def peer_comparison(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Native vs WASM at equal recall, one row per pair and dataset (:func:`ruvector_lab.bench.tables.peer_comparison`:
    the ratios are the second side over the first with min and max over run pairs, and ``verdict`` one sentence)."""
    frame = tables.peer_comparison(_root(root))
    return pd.DataFrame(frame.to_dicts(), columns=list(tables.PEER_COMPARISON_COLUMNS))


def peer_sides(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Every side of the native-vs-WASM records, one row per ef_search it ran
    (:func:`ruvector_lab.bench.tables.peer_sides`)."""
    frame = tables.peer_sides(_root(root))
    return pd.DataFrame(frame.to_dicts(), columns=list(tables.PEER_SIDE_COLUMNS))


def peer_verdict(comparison: pd.DataFrame) -> str:
    """The ADR's "native 2-5x faster than WASM" judged in one sentence from :func:`peer_comparison`'s rows
    (:func:`ruvector_lab.bench.tables.peer_verdict`)."""
    return tables.peer_verdict(_polars(comparison) if not comparison.empty
                               else pl.DataFrame(schema=tables.PEER_COMPARISON_COLUMNS))


# ---------------------------------------------------------------------------------------- index builds and queries
def spread_of(value: Any) -> dict[str, Any]:
    """A Spread of the result files ({median, min, max, rel_spread, values}) as ``{median, min, max, rel_spread,
    n}`` (:func:`ruvector_lab.bench.tables.spread_of`)."""
    return tables.spread_of(value)


QUERY_COLUMNS = ["dataset", "metric", "n_train", "dimensions", "backend", "tier", "graph", "m", "ef_construction",
                 "quantization", "ef_search", "ef_effective", "k", "n_queries", "n_builds", "recall_at_1",
                 "recall_at_10", "recall_at_100", "recall_at_10_median", "recall_at_10_min", "recall_at_10_max",
                 "recall_at_10_median_build", "recall_strict_at_10", "recall_min", "recall_p1", "recall_p5",
                 "recall_p50", "share_below_0.5", "p50_ms", "p95_ms", "p99_ms", "qps_1", "qps_1_min", "qps_1_max",
                 "cpu_1", "qps_2", "noisy", "drift", "direct_p50_ms", "direct_p99_ms", "facade_paired_p50_ms",
                 "direct_qps_1", "facade_paired_qps_1", "facade_latency_ratio", "facade_qps_ratio", "host", "host_name",
                 "max_concurrent"]


def query_runs(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Every finished query setting as one row (:attr:`ruvector_lab.bench.tables.Tables.queries`).

    Recall comes from the **median build** (the build whose mean recall over the sweep is the median; the operating
    points use it): ``recall_at_1``, ``recall_at_10`` (mean recall@k, distance ties tolerated; the column keeps its
    name for any k), ``recall_at_100`` and ``recall_strict_at_10`` (ids only, ties not tolerated), and the per-query
    tail of recall@10 over queries: ``recall_min``, ``recall_p1``, ``recall_p5``, ``recall_p50``, ``share_below_0.5``.
    Over the ``n_builds`` builds: ``recall_at_10_median``, ``_min``, ``_max``; ``recall_at_10_median_build`` is
    the median build's entry in the record's ``builds`` list (equal to ``recall_at_10``). Single-query latency
    percentiles (ms; one caller, pools pinned to 1). Batch QPS per thread count, median over builds with min and
    max: ``qps_<t>`` (the batch split across t caller threads, every library pool pinned to 1 in each) and
    ``qps_pool_<t>`` (one caller, the library's own pools at t threads), ``cpu_<t>``/``cpu_pool_<t>`` the CPU
    time over wall time that ran. The library called directly on the median build, measured together with the
    facade (NaN where a backend has no library call of its own): ``direct_p50_ms``, ``direct_p99_ms``,
    ``direct_qps_1`` beside the facade's paired ``facade_paired_p50_ms`` and ``facade_paired_qps_1``, and the
    overhead factors ``facade_latency_ratio`` (facade / direct p50) and ``facade_qps_ratio`` (direct / facade QPS).
    ``ef_effective`` is the ef a graph search really ran (max(ef_search, k), and at
    least the re-rank depth of a quantized build: :func:`ruvector_lab.bench.tables.effective_ef`); ``noisy`` lists
    figures whose spread exceeded the noise threshold, ``drift`` the reference workload's drift. ``host``,
    ``host_name`` and ``max_concurrent``: the machine that measured it and how many measuring tasks ran on it at
    once (:data:`ruvector_lab.bench.tables.HOST_COLUMNS`); :func:`pareto` and :func:`operating_table` work per host.
    """
    frame = _joined(tables.queries(_root(root)))
    per_thread = [c for c in frame.columns if c.startswith(("qps_", "cpu_")) and not c.endswith("_rel_spread")]
    return _pandas(frame, list(dict.fromkeys([*QUERY_COLUMNS, *per_thread])))


BUILD_COLUMNS = ["dataset", "backend", "tier", "graph", "m", "ef_construction", "quantization", "status", "n_builds",
                 "build_time_s", "build_time_min", "build_time_max", "inserts_per_s", "bytes_per_vector",
                 "serialized_bytes", "peak_rss_bytes", "reason"]


def build_runs(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Every index build configuration as one row (status 'ok', or 'not available' / 'skipped' with the reason):
    build time over its ``n_builds`` builds (median, min, max; seconds), inserts/s at the median time, serialized
    bytes per vector (``bytes_per_vector``; the other two memory figures are in :func:`memory_table`), and the
    benchmark process's peak RSS."""
    frame = tables.builds(_root(root)).with_columns(pl.col("bytes_serialized").alias("bytes_per_vector"),
                                                    pl.col("reason").fill_null(""))
    return _pandas(frame, BUILD_COLUMNS)


def build_spread(runs: pd.DataFrame, threads: int | str = 1) -> pd.DataFrame:
    """How much a figure moves from one build of the same configuration to the next (seeded insertion orders):
    per query setting, recall@10 and batch QPS at ``threads`` caller threads as median, min and max over the
    ``n_builds`` builds, and ``recall_range`` = max - min, ``qps_rel_spread`` = (max - min) / median. Exact
    (flat) indexes are built once: their range is 0 by construction."""
    t = str(threads)
    q = f"qps_{t}"
    cols = [*SETTING_KEY, "graph", "n_builds", "recall_at_10", "recall_at_10_median", "recall_at_10_min",
            "recall_at_10_max", "recall_range", q, f"{q}_min", f"{q}_max", "qps_rel_spread"]
    if runs.empty or q not in runs.columns:
        return pd.DataFrame(columns=cols)
    out = runs.copy()
    out["recall_range"] = out["recall_at_10_max"] - out["recall_at_10_min"]
    out["qps_rel_spread"] = (out[f"{q}_max"] - out[f"{q}_min"]) / out[q]
    return out[cols].sort_values(SETTING_KEY).reset_index(drop=True)


def recall_tail(runs: pd.DataFrame) -> pd.DataFrame:
    """The per-query recall distribution of each query setting (median build): the mean hides the badly served
    queries, so beside it: the worst query (``recall_min``), the 1st, 5th and 50th percentiles over queries (linear
    interpolation), the share of queries with recall@10 < 0.5, and strict recall (ids only) beside tolerant recall
    (distance ties count as hits)."""
    cols = [*SETTING_KEY, "graph", "n_queries", "recall_at_10", "recall_strict_at_10", "recall_min", "recall_p1",
            "recall_p5", "recall_p50", "share_below_0.5"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    return runs[cols].sort_values(SETTING_KEY).reset_index(drop=True)


DIFFICULTY_COLUMNS = [*SETTING_KEY, "graph", "measure", "direction", "bin", "hardness", "difficulty_min",
                      "difficulty_max", "n_queries", "mean_recall", "p5_recall", "n_nan_excluded", "n_queries_total",
                      "recall_at_10"]


def difficulty_bins(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Recall@10 per difficulty quintile, one row per (query setting, measure, bin), from the median build
    (:attr:`ruvector_lab.bench.tables.Tables.difficulty`).

    Measures (``ruvector_lab.bench.perquery``): ``lid``, local intrinsic dimensionality from the ground-truth
    distances (higher is harder), and ``rc``, relative contrast (mean distance to the data over the distance to
    the 10th neighbour; lower is harder). The queries with a finite value are sorted by it and split into bins of
    equal count; ``bin`` is in ascending value, ``hardness`` runs from 1 (easiest) to the bin count (hardest) for
    either measure. ``n_nan_excluded`` queries had no finite value (LID is NaN for dot_product) and are in no bin.
    """
    return _pandas(tables.load(_root(root), ("query",)).difficulty, DIFFICULTY_COLUMNS)


MEMORY_COLUMNS = [*BUILD_KEY, "graph", "n_train", "dimensions", "float_bytes", "serialized", "analytic",
                  "rss_growth", "rss_over_analytic", "analytic_vectors", "analytic_graph", "analytic_ids",
                  "analytic_other", "analytic_status", "rss_status", "n_builds", "build_time_s", "build_time_min",
                  "build_time_max", "build_rel_spread", "inserts_per_s", "child_peak_rss_bytes", "reason"]


def memory_table(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Memory per index, bytes per stored vector three ways, with the build time beside it (one row per build
    configuration that ran).

    * ``serialized``: the size of ``index.serialize()`` over n (what a saved index takes on disk);
    * ``analytic``: what the data structure's layout predicts (``ruvector_lab.bench.memory``), split into
      ``analytic_vectors``, ``_graph``, ``_ids``, ``_other``; NaN with ``analytic_status`` and ``reason`` when
      the estimate does not know that layout;
    * ``rss_growth``: resident-memory growth of the build in a fresh child process, over n; NaN with
      ``rss_status`` ('not measured', 'failed', ...) and ``reason`` when it was not measured.

    ``float_bytes`` is 4 x dimensions, the raw float32 vector: a float index stores at least that much.
    ``rss_over_analytic`` is about 1 when the layout explains the memory (1-1.5 with containers grown by
    doubling). Build time: median, min and max over the builds, seconds.
    """
    b = tables.builds(_root(root)).filter(pl.col("status") == "ok")
    analytic_note = pl.when(pl.col("analytic_status") != "ok").then(
        pl.concat_str(pl.lit("analytic: "), pl.col("analytic_reason").fill_null("")))
    rss_note = pl.when(pl.col("bytes_rss").is_null() & pl.col("rss_reason").is_not_null()).then(
        pl.concat_str(pl.lit("rss: "), pl.col("rss_reason")))
    frame = b.with_columns(
        pl.col("bytes_serialized").alias("serialized"), pl.col("bytes_analytic").alias("analytic"),
        pl.col("bytes_rss").alias("rss_growth"),
        pl.when((pl.col("bytes_rss").fill_null(0) != 0) & (pl.col("bytes_analytic").fill_null(0) != 0))
        .then(pl.col("bytes_rss") / pl.col("bytes_analytic")).alias("rss_over_analytic"),
        pl.col("build_time_rel_spread").alias("build_rel_spread"),
        pl.concat_list(analytic_note, rss_note).list.drop_nulls().list.join("; ").alias("reason"))
    return _pandas(frame, MEMORY_COLUMNS)


SCALING_COLUMNS = [*SETTING_KEY, "graph", "mode", "threads", "qps", "qps_min", "qps_max", "rel_spread",
                   "cpu_utilization", "speedup", "efficiency", "pools", "pinned", "baseline"]


def thread_scaling(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Batch QPS against thread count, in both of the runner's modes, one row per (query setting, mode, threads)
    (:attr:`ruvector_lab.bench.tables.Tables.scaling`).

    * ``caller threads``: the query batch split across t caller threads, and inside each of them every library
      pool (faiss' OpenMP, BLAS, hnswlib's num_threads) pinned to 1: t threads really run;
    * ``library pool``: one caller thread, the library's own pools set to t threads: what the library does with
      t cores by itself (a backend without a pool stays at cpu_utilization about 1).

    QPS is the median over builds with min and max; ``cpu_utilization`` is CPU time over wall time (about t when t
    threads are busy); ``speedup`` is QPS over the 1-thread QPS and ``efficiency`` speedup / t. The 1-thread point
    is one measurement (one caller, everything pinned to 1): it is listed in both modes, ``baseline`` True.
    ``pools`` is what a worker read back from its pools, ``pinned`` whether every per-thread pool ran at the
    count the mode means (1 for caller threads, t for the library pool; ruvector's rayon pool is process-wide,
    sized once, and not judged).
    """
    return _pandas(tables.load(_root(root), ("query",)).scaling, SCALING_COLUMNS)


NOISE_COLUMNS = [*SETTING_KEY, "kind", "reference_before_s", "reference_after_s", "drift", "noise_threshold",
                 "max_rel_spread", "n_noisy", "noisy", "flags_consistent"]


def noise_table(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """How steady the machine was, one row per build record (``kind`` 'build') and query record ('query').

    ``reference_*_s`` is a fixed single-threaded workload timed before and after the whole build configuration
    (every build and query sweep), ``drift`` their relative difference: a machine that sped up or slowed down
    meanwhile (frequency scaling, neighbours) shows here. ``noisy`` lists the figures whose relative spread
    (max - min) / median over builds or repeats exceeded ``noise_threshold`` (build time; QPS per mode and
    thread count; single-query p50; for builds also the reference drift), ``max_rel_spread`` the largest such
    spread of the record, and ``flags_consistent`` whether ``noisy`` names exactly the figures of the record
    whose spread exceeds the threshold (:func:`ruvector_lab.bench.tables.flag_noise`; a check of the record, not
    of the machine).
    """
    t = tables.load(_root(root), ("build", "query"))
    parts = []
    for kind, frame in (("build", t.builds.filter(pl.col("status") == "ok")), ("query", t.queries)):
        spreads = list(dict.fromkeys(tables.noise_figures(frame).values()))
        expected = tables.flag_noise(frame).list.sort()
        if "ef_search" not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.Int64).alias("ef_search"))
        frame = frame.with_columns(
            pl.lit(kind).alias("kind"), pl.max_horizontal(spreads).alias("max_rel_spread"),
            pl.col("noisy").list.len().cast(pl.Int64).alias("n_noisy"),
            (pl.col("noisy").list.sort() == expected).alias("flags_consistent"),
            pl.col("noisy").list.join(", ").alias("noisy"))
        parts.append(frame.select(NOISE_COLUMNS))
    return _pandas(pl.concat(parts, how="vertical_relaxed"), NOISE_COLUMNS)


# --------------------------------------------------------------------------------------------- per-query results
PERQUERY_FILE_COLUMNS = [*SETTING_KEY, "graph", "k", "build", "seed", "median_build", "file", "exists", "n_queries",
                         "recall_record", "recall_strict_record", "recall_file", "recall_strict_file",
                         "ground_truth"]


def perquery_files(root: str | os.PathLike[str] | None = None, datasets: Datasets = None) -> pd.DataFrame:
    """Every per-query result file the query records name (one per query setting and build), whether it exists,
    and the mean recall@k recomputed from it (tolerant: ties count; strict: ids only) against the dataset's ground
    truth, beside the recall the record holds for that build (:func:`ruvector_lab.bench.tables.perquery_check`).
    ``ground_truth`` says why a recomputation is missing (no dataset file). ``file`` is relative to the build's
    folder."""
    frame = tables.perquery_check(_root(root), datasets).drop("build", "file").rename(
        {"build_index": "build", "perquery_file": "file", "recall_at_10": "recall_record",
         "recall_strict_at_10": "recall_strict_record"})
    return _pandas(frame, PERQUERY_FILE_COLUMNS)


def per_query(root: str | os.PathLike[str] | None = None, *, dataset: str, backend: str, ef_search: int,
              m: int | None = None, ef_construction: int | None = None, quantization: str = "none",
              build: int | None = None, datasets: Datasets = None) -> pd.DataFrame:
    """One query setting's queries, one row each, read from its per-query file (``build``: an index into the
    record's builds; None: the median build): recall@k (tolerant) and strict recall, how many results came back,
    and the query's difficulty, LID (higher is harder) and RC (lower is harder), recomputed from the dataset as
    the runner computes them, with ``lid_hardness`` / ``rc_hardness``: the query's quintile, 1 easiest .. 5
    hardest (:func:`ruvector_lab.bench.tables.per_query`). Raises LookupError when the setting is not (uniquely)
    in the results, FileNotFoundError when the per-query file or the dataset is missing."""
    t = tables.load(_root(root), ("query",))
    where = {"dataset": dataset, "backend": backend, "ef_search": ef_search, "m": m,
             "ef_construction": ef_construction, "quantization": quantization, "build": build}
    found = tables.find_per_query(t, **where)
    frame = _pandas(tables.per_query(t, **where, datasets=datasets))
    frame.attrs = {"build": found.build, "file": found.file, "k": found.k}
    return frame


def operating_table(runs: pd.DataFrame,
                    by: Sequence[str] = ("dataset", "backend", "m", "ef_construction", "quantization"),
                    floors: Iterable[float] = RECALL_FLOORS, speed: str = "qps_1") -> pd.DataFrame:
    """For each build configuration and recall floor, the cheapest ef_search whose recall@10 (median build)
    reaches the floor (None: not reached; :func:`ruvector_lab.bench.tables.operating_points`), with that
    setting's recall, p50 latency and QPS, and, where the runs carry them, recall@10 over builds
    (``recall_at_10_min``: does the worst build reach it too?), the median build's own entry, strict recall and
    the 5th-percentile query's recall. Groups in sorted order, per host when the runs carry one (``host`` first)."""
    if "host" in runs.columns and "host" not in by:
        by = ("host", *by)  # one host's timings per operating point (tables.host_keys)
    extra = [c for c in ("n_builds", "recall_at_10_min", "recall_at_10_max", "recall_at_10_median_build",
                         "recall_strict_at_10", "recall_p5") if c in runs.columns]
    cols = [*by, "floor", "ef_search", "recall_at_10", "p50_ms", speed, *extra]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    frame = _polars(runs[list(dict.fromkeys([*by, "ef_search", "recall_at_10", "p50_ms", speed, *extra]))])
    points = tables.operating_points(frame.sort(list(by), maintain_order=True), by=tuple(by), targets=floors,
                                     speed=speed)
    return _pandas(points.rename({"target": "floor"}), cols)


def pareto(runs: pd.DataFrame, by: Sequence[str] = ("dataset", "backend"), x: str = "recall_at_10",
           y: str = "qps_1") -> pd.DataFrame:
    """The recall-vs-QPS Pareto frontier of each group (higher is better on both), sorted by group, then recall
    (:func:`ruvector_lab.bench.tables.pareto`: per host when the runs carry one)."""
    if runs.empty:
        return runs.copy()
    return _pandas(tables.pareto(_polars(runs), by=tuple(by), x=x, y=y), list(runs.columns))


def _polars(frame: pd.DataFrame) -> pl.DataFrame:
    """A pandas frame of :func:`query_runs` (or a selection of it) back as polars (NaN in a float column is a
    missing value; whole-number float columns that pandas widened from ints with gaps stay float)."""
    data = {}
    for col in frame.columns:
        values = frame[col].tolist()
        if pd.api.types.is_float_dtype(frame[col]):
            data[col] = pl.Series(col, [None if v != v else v for v in values], dtype=pl.Float64)
        elif pd.api.types.is_integer_dtype(frame[col]):
            data[col] = pl.Series(col, values, dtype=pl.Int64)
        else:
            data[col] = pl.Series(col, [None if isinstance(v, float) and v != v else v for v in values],
                                  strict=False)
    return pl.DataFrame(data)


def adr_dataset(root: str | os.PathLike[str] | None = None) -> str:
    """The dataset of the ADR suite (params ``adr.dataset`` of the pipeline that wrote the results, read from
    the ``params.yaml`` two folders above the results root), else ADR-006's own, ``adr-random-10k-384``."""
    import yaml

    params = _root(root).resolve().parents[1] / "params.yaml"
    try:
        loaded = yaml.safe_load(params.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        loaded = None
    adr = loaded.get("adr") if isinstance(loaded, dict) else None
    name = adr.get("dataset") if isinstance(adr, dict) else None
    return name if isinstance(name, str) and name else ADR_DATASET


# ------------------------------------------------------------------------------------------------- quantization
QUANT_COLUMNS = ["dataset", "codec", "kind", "bytes_per_vector", "compression", "reconstruction_mse", "factor",
                 "candidates", "recall_at_1", "recall_at_10", "qps", "source"]


def quant_rows(records: Iterable[dict[str, Any]], source_label: str) -> pd.DataFrame:
    """quant@1 records (from files or computed live) as one row per (codec, re-rank factor); factor 1 is no
    re-ranking (:func:`ruvector_lab.bench.tables.codec_frame`). ``source`` labels where the numbers come from."""
    frame = tables.codec_frame(records).with_columns(pl.lit(source_label).alias("source"))
    return _pandas(frame, QUANT_COLUMNS)


def quant_runs(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The pipeline's codec sweeps (quant/<dataset>/<codec>.json) as :func:`quant_rows`."""
    frame = tables.codecs(_root(root)).with_columns(pl.lit("pipeline").alias("source"))
    return _pandas(frame, QUANT_COLUMNS)


def quant_unavailable(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The codecs the pipeline recorded as not available, with the reason."""
    frame = tables.absent(tables.load(_root(root), ("quant",))).rename({"spec": "codec"})
    return _pandas(frame, ["dataset", "codec", "reason"])


def float_bytes_per_vector(dimensions: int) -> int:
    """Bytes of one float32 vector: the uncompressed reference for the codecs."""
    return 4 * int(dimensions)


#: :func:`quant_findings`: one column per field of :class:`ruvector_lab.bench.quant_findings.Finding`
FINDING_COLUMNS = list(quant_findings_module.FINDING_COLUMNS)
CODEC_SUMMARY_COLUMNS = list(tables.CODEC_SUMMARY_COLUMNS)
RABITQ_BITS_COLUMNS = list(tables.RABITQ_BITS_COLUMNS)
ROTATION_COLUMNS = ["dataset", "codec", "bits", "rotation", "bytes_per_vector", "recall_at_10", "rerank_factor",
                    "recall_at_10_rerank", "rabitq_alignment", "neighbourhood_order"]
PQ_COLUMNS = ["dataset", "codec", "codec_m", "width", "bits", "rotation", "bytes_per_vector", "recall_at_10",
              "rerank_factor", "recall_at_10_rerank", "neighbourhood_order", "error_to_spread", "spread_share"]
QHNSW_COLUMNS = list(tables.QHNSW_COLUMNS)


def _codecs(root: str | os.PathLike[str] | None) -> pl.DataFrame:
    return tables.codecs(_root(root))


def quant_findings(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Every codec of the pipeline's sweep that loses to a smaller one (more bytes per vector, recall@10 without
    re-ranking more than 0.01 lower), one row each: the winner (the best-recalling smaller codec), the sentence
    naming the measured causes (``text``) and the figures it uses
    (:func:`ruvector_lab.bench.quant_findings.frame_findings`, the rule the report states too)."""
    found = quant_findings_module.frame_findings(_codecs(root))
    return _pandas(quant_findings_module.findings_frame(found), FINDING_COLUMNS)


def codec_summary(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """One row per codec of the pipeline's sweep: its settings (bits, rotation, PQ subspaces and width), bytes per
    vector, recall@10 of the codes alone and with the first re-ranking, and the diagnostics: neighbourhood
    order, reconstruction error over the neighbourhood spread, RaBitQ's mean <x̄, y>
    (:func:`ruvector_lab.bench.tables.codec_summary`)."""
    return _pandas(tables.codec_summary(_codecs(root)), CODEC_SUMMARY_COLUMNS)


def rabitq_bits(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """RaBitQ under its random rotation, one row per (dataset, bit width): recall@10 without and with the first
    re-ranking, mean <x̄, y> and neighbourhood order (:func:`ruvector_lab.bench.tables.rabitq_bits`)."""
    return _pandas(tables.rabitq_bits(_codecs(root)), RABITQ_BITS_COLUMNS)


def rabitq_rotation(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """RaBitQ with its random rotation beside the same bits without it, one row per codec, for the bit widths
    the sweep measured both ways on a dataset (empty when it measured no rotation-off variant)."""
    summary = tables.codec_summary(_codecs(root)).filter(pl.col("kind") == "rabitq")
    both = summary.group_by("dataset", "bits").agg(pl.col("rotation").n_unique().alias("_ways"))
    paired = summary.join(both.filter(pl.col("_ways") > 1), on=["dataset", "bits"], how="semi")
    return _pandas(paired.sort(["dataset", "bits", "rotation"], maintain_order=True), ROTATION_COLUMNS)


def pq_variants(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The sweep's product quantizers, one row each: subspaces (``codec_m``) and their width in dimensions, bits
    per sub-code, rotation ('opq': learned), bytes per vector, recall@10 without and with the first re-ranking,
    neighbourhood order and reconstruction error over the neighbourhood spread."""
    summary = tables.codec_summary(_codecs(root)).filter(pl.col("kind") == "product")
    return _pandas(summary.sort(["dataset", "bytes_per_vector"], maintain_order=True), PQ_COLUMNS)


def qhnsw_vs_scan(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Each quantized HNSW build of the quantize stage beside the flat scan of the same codes with the same
    re-ranking: the graph's source (codes or float vectors), best ef and its recall@10 and QPS, the flat scan's
    recall and the gap (flat - HNSW), and bytes per vector split into codes, graph and float vectors
    (:func:`ruvector_lab.bench.tables.qhnsw_vs_scan`; NaN where a record lacks the figures)."""
    return _pandas(tables.qhnsw_vs_scan(_root(root)), QHNSW_COLUMNS)


# ---------------------------------------------------------------------------------------------------- autotuner
TUNE_OBJECTIVES = tuple(tables.TUNE_OBJECTIVES)
TUNE_COLUMNS = list(tables.TUNE_COLUMNS)
TUNE_TRIAL_COLUMNS = list(tables.TUNE_TRIAL_COLUMNS)
TUNE_PARETO_COLUMNS = list(tables.TUNE_PARETO_COLUMNS)


def tune_column(objective: str) -> str:
    """The column prefix of an objective's recommendation in :func:`tune_results` (``rec_build_time`` for
    'build-time')."""
    return tables.tune_column(objective)


def tune_results(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The autotuner's studies (``tune/<dataset>/recall-<target>.json``), one row each: the answer, the
    recommendation per objective with its verification, the grid comparison and the replay
    (:func:`ruvector_lab.bench.tables.tune_results`); empty when the tune stage has not run."""
    return _pandas(tables.tune_results(_root(root)), TUNE_COLUMNS)


def tune_trials(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Every trial of every study (the three objectives, feasibility, whether it is on the study's or the grid's
    Pareto front), then the grid's stored points the tuner never tried (``in_grid_only``)
    (:func:`ruvector_lab.bench.tables.tune_trials`); empty when the tune stage has not run."""
    return _pandas(tables.tune_trials(_root(root)), TUNE_TRIAL_COLUMNS)


def tune_pareto(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Each study's Pareto front over its trials (``front`` 'tuner') beside the grid's over the whole space
    ('grid') (:func:`ruvector_lab.bench.tables.tune_pareto`); empty when the tune stage has not run."""
    return _pandas(tables.tune_pareto(_root(root)), TUNE_PARETO_COLUMNS)


__all__ = [
    "ADR_DATASET",
    "ADR_NATIVE_SPEEDUP",
    "MODES",
    "NO_RESULTS",
    "RECALL_FLOORS",
    "RESULTS_ENV",
    "Source",
    "adr_cases",
    "adr_dataset",
    "adr_scorecard",
    "adr_verdicts",
    "backend_rank",
    "build_runs",
    "build_spread",
    "codec_summary",
    "datasets_root",
    "difficulty_bins",
    "float_bytes_per_vector",
    "memory_table",
    "native_wasm_ratios",
    "noise_table",
    "operating_table",
    "pareto",
    "per_query",
    "perquery_files",
    "plot_memory",
    "pq_variants",
    "qhnsw_vs_scan",
    "quant_findings",
    "quant_rows",
    "quant_runs",
    "quant_unavailable",
    "query_runs",
    "rabitq_bits",
    "rabitq_rotation",
    "recall_tail",
    "report_path",
    "results_root",
    "shown",
    "source",
    "spread_of",
    "thread_scaling",
    "tune_column",
    "tune_pareto",
    "tune_results",
    "tune_trials",
]


def plot_memory(ax: Any, memory: pd.DataFrame, title: str) -> None:
    """Bytes per stored vector three ways (serialized, analytic layout, RSS growth of a build in a fresh child
    process), one group of bars per backend of ``memory`` (rows of :func:`memory_table` for one dataset), with the
    float32 vector's 4 x d as a line; a missing RSS figure is annotated with its status."""
    m = memory.sort_values("backend").reset_index(drop=True)
    y = np.arange(len(m))
    for j, (col, label) in enumerate([("serialized", "serialized"), ("analytic", "analytic (layout)"),
                                      ("rss_growth", "RSS growth (fresh child process)")]):
        ax.barh(y + (j - 1) * 0.27, m[col].fillna(0), height=0.27, color=f"C{j}", label=label)
    for i, r in m.iterrows():  # a missing figure says why in the memory table
        if pd.isna(r["rss_growth"]):
            ax.annotate(f"RSS: {r['rss_status']}", (0, i + 0.27), xytext=(3, 0), textcoords="offset points",
                        va="center", fontsize=7)
    ax.axvline(float(m["float_bytes"].iloc[0]), ls="--", color="black", lw=1, label="float32 vector (4 x d)")
    ax.set_yticks(y, m["backend"])
    ax.set_xlabel("bytes per stored vector")
    ax.set_ylabel("backend")
    ax.set_title(title)
    ax.legend(fontsize=7)
