"""What the notebooks read: the pipeline's result JSON turned into tables, in one place.

The notebooks never open a result file themselves; they call the functions here, so a change of the result schema
(documented in :mod:`ruvector_lab.bench.results`) is one edit in this module. Every reader returns an empty table
when the pipeline has not produced that part yet, and :func:`source` says in words what was found, so a notebook can
say "no pipeline results yet: run make repro" and carry on with what it can check live.

Where results are read from: ``$RUVECTOR_LAB_RESULTS`` if set (``make test-notebooks`` points it at the tiny
profile's outputs), else ``data/results`` under the repository (the full pipeline's outputs, ``make repro``).

Index results (schemas ``build@2``, ``query@2``): :func:`query_runs` and :func:`build_runs` give one row per query
setting and per build configuration; beside them :func:`build_spread` (recall and QPS over the builds of one
configuration), :func:`recall_tail` (the per-query recall distribution), :func:`difficulty_bins` (recall per LID
and RC quintile), :func:`memory_table` (bytes per vector three ways, build time), :func:`thread_scaling` (both
thread modes), :func:`noise_table` (reference drift, noisy flags), and from the per-query HDF5 files
:func:`perquery_files` (each file, with its mean recall recomputed) and :func:`per_query` (one setting's queries).
A figure the runner stores as a Spread (median, min, max over builds or repeats) is read by :func:`spread_of`, so
files written before build@2 (a bare number) still read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ruvector_lab.bench.metrics import operating_points, pareto_frontier
from ruvector_lab.bench.targets import TARGETS

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
#: the ADR's claim: native bindings are 2-5x faster than WASM
ADR_NATIVE_SPEEDUP = (2.0, 5.0)
#: where the pipeline writes index builds and their query sweeps (plain graphs; quantized graphs under qhnsw/)
BUILD_GLOBS = ("runs/*/*/*/build.json", "qhnsw/*/runs/*/*/*/build.json")
QUERY_GLOBS = ("runs/*/*/*/query-*.json", "qhnsw/*/runs/*/*/*/query-*.json")
ADR_GLOB = "adr/*.json"
QUANT_GLOB = "quant/*/*.json"
#: the recall floors the operating points are chosen for
RECALL_FLOORS = (0.90, 0.95, 0.99)
#: the ADR's own benchmark data (10,000 x 384 uniform in [-1, 1]): the ADR suite's dataset unless params name another
ADR_DATASET = "adr-random-10k-384"


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


def _read(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):  # missing, or cut short by an interrupted run: counts as not there
        return None
    return record if isinstance(record, dict) else None


def _paths(root: Path, patterns: str | Sequence[str]) -> list[Path]:
    patterns = (patterns,) if isinstance(patterns, str) else patterns
    return sorted({p for pattern in patterns for p in root.glob(pattern)})


def _records(root: Path, patterns: str | Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for path in _paths(root, patterns):
        record = _read(path)
        if record is not None:
            record["_path"] = path
            out.append(record)
    return out


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
    r = Path(root) if root is not None else results_root()
    return Source(r, len(_paths(r, ADR_GLOB)), len(_paths(r, BUILD_GLOBS)), len(_paths(r, QUERY_GLOBS)),
                  len(_paths(r, QUANT_GLOB)))


def report_path() -> Path | None:
    """The pipeline's report (results/report.md) if it exists."""
    path = REPO / REPORT
    return path if path.is_file() else None


def _root(root: str | os.PathLike[str] | None) -> Path:
    return Path(root) if root is not None else results_root()


# ------------------------------------------------------------------------------------------------ ADR-006 suite
ADR_COLUMNS = ["backend", "tier", "case", "target_ms", "protocol", "iterations", "p50_ms", "p95_ms", "p99_ms",
               "mean_ms", "judged_ms", "verdict", "recall_at_10", "info"]


def adr_cases(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Every ADR-suite measurement as one row per (backend, case, protocol).

    ``backend`` is 'common' for the cases that do not depend on the index backend (embedding, quantize, exact
    pattern match). ``judged_ms`` is what the verdict was taken on (the ADR protocol's mean, the honest protocol's
    p95); ``recall_at_10`` is filled for the search case. Cases or backends not available here are rows with
    verdict 'not available' and the reason in ``info``.
    """
    rows = []
    for rec in _records(_root(root), ADR_GLOB):
        backend = rec.get("backend", rec["_path"].stem)
        tier = rec.get("tier", "" if backend != "common" else "any")
        if rec.get("status") != "ok":
            rows.append({"backend": backend, "tier": tier, "case": "(all)", "verdict": "not available",
                         "info": rec.get("reason", "")})
            continue
        for case, body in rec.get("cases", {}).items():
            target = TARGETS[case].max_ms if case in TARGETS else None
            if body.get("status") != "ok":
                rows.append({"backend": backend, "tier": tier, "case": case, "target_ms": target,
                             "verdict": "not available", "info": body.get("reason", "")})
                continue
            info = body.get("info", {})
            for protocol, p in body.get("protocols", {}).items():
                lat = p.get("latency_ms", {})
                rows.append({"backend": backend, "tier": tier, "case": case, "target_ms": target,
                             "protocol": protocol, "iterations": p.get("iterations"), "p50_ms": lat.get("p50"),
                             "p95_ms": lat.get("p95"), "p99_ms": lat.get("p99"), "mean_ms": lat.get("mean"),
                             "judged_ms": p.get("judged_ms"), "verdict": p.get("verdict"),
                             "recall_at_10": body.get("recall_at_10"),
                             "info": ", ".join(f"{k}={v}" for k, v in info.items() if k != "config")})
    return pd.DataFrame(rows, columns=ADR_COLUMNS)


def adr_scorecard(cases: pd.DataFrame, protocol: str = "honest") -> pd.DataFrame:
    """One row per (case, backend) for one protocol: target, measured (judged) ms, verdict, recall@10 beside it.

    Cases in ADR order; the 'common' cases apply to every backend and are listed once under 'common'.
    """
    cols = ["case", "backend", "tier", "target_ms", "judged_ms", "verdict", "recall_at_10"]
    if cases.empty:
        return pd.DataFrame(columns=cols)
    sel = cases[(cases["protocol"] == protocol) | cases["protocol"].isna()][cols].copy()
    order = {c: i for i, c in enumerate(TARGETS)}
    sel["_o"] = sel["case"].map(lambda c: order.get(c, len(order)))
    return sel.sort_values(["_o", "backend"]).drop(columns="_o").reset_index(drop=True)


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
    band. Latencies compared are the protocol's judged values (honest: p95; adr: mean).
    """
    cols = ["case", "native", "native_ms", "wasm_ms", "ratio", "in_claim"]
    if cases.empty:
        return pd.DataFrame(columns=cols)
    sel = cases[(cases["protocol"] == protocol) & cases["judged_ms"].notna()]
    wasm = sel[sel["backend"] == WASM_BACKEND].set_index("case")["judged_ms"]
    rows = []
    for _, r in sel[sel["tier"] == NATIVE_TIER].iterrows():
        if r["case"] in wasm.index and r["judged_ms"] > 0:
            ratio = float(wasm[r["case"]]) / float(r["judged_ms"])
            lo, hi = ADR_NATIVE_SPEEDUP
            rows.append({"case": r["case"], "native": r["backend"], "native_ms": float(r["judged_ms"]),
                         "wasm_ms": float(wasm[r["case"]]), "ratio": ratio, "in_claim": lo <= ratio <= hi})
    return pd.DataFrame(rows, columns=cols)


# ---------------------------------------------------------------------------------------- index builds and queries
#: one build configuration, and one query setting of it
BUILD_KEY = ["dataset", "backend", "m", "ef_construction", "quantization"]
SETTING_KEY = [*BUILD_KEY, "ef_search"]
#: the names the runner gives its two thread-scaling modes (query@2 ``qps`` and ``qps_pool``), as shown here
MODES = {"qps": "caller threads", "qps_pool": "library pool"}


def spread_of(value: Any) -> dict[str, Any]:
    """A Spread of the result files ({median, min, max, rel_spread, values}: a figure over builds or repeats) as
    ``{median, min, max, rel_spread, n}``. A bare number (files written before build@2/query@2) is a spread of
    one value; anything else gives Nones and n = 0."""
    if isinstance(value, dict) and value.get("median") is not None:
        med = float(value["median"])
        values = value.get("values") or [med]
        return {"median": med, "min": float(value.get("min", med)), "max": float(value.get("max", med)),
                "rel_spread": value.get("rel_spread"), "n": len(values)}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"median": float(value), "min": float(value), "max": float(value), "rel_spread": 0.0, "n": 1}
    return {"median": None, "min": None, "max": None, "rel_spread": None, "n": 0}


def _identity(rec: dict[str, Any]) -> dict[str, Any]:
    """The columns naming a record's build configuration (and its query setting, for a query record)."""
    ds, build, query = rec.get("dataset", {}), rec.get("build", {}), rec.get("query", {})
    out = {"dataset": ds.get("name", rec["_path"].parts[-4]), "backend": rec.get("backend"), "tier": rec.get("tier"),
           "graph": rec.get("graph"), "m": build.get("m"), "ef_construction": build.get("ef_construction"),
           "quantization": build.get("quantization", "none")}
    if query:
        out["ef_search"] = query.get("ef_search")
    return out


def _ok(root: str | os.PathLike[str] | None, patterns: Sequence[str]) -> list[dict[str, Any]]:
    return [rec for rec in _records(_root(root), patterns) if rec.get("status") == "ok"]


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


QUERY_COLUMNS = ["dataset", "metric", "n_train", "dimensions", "backend", "tier", "graph", "m", "ef_construction",
                 "quantization", "ef_search", "ef_effective", "k", "n_queries", "n_builds", "recall_at_1",
                 "recall_at_10", "recall_at_100", "recall_at_10_median", "recall_at_10_min", "recall_at_10_max",
                 "recall_at_10_median_build", "recall_strict_at_10", "recall_min", "recall_p1", "recall_p5",
                 "recall_p50", "share_below_0.5", "p50_ms", "p95_ms", "p99_ms", "qps_1", "qps_1_min", "qps_1_max",
                 "cpu_1", "qps_2", "noisy", "drift"]


def query_runs(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Every finished query setting as one row.

    Recall comes from the **median build** (the build whose mean recall over the sweep is the median; the operating
    points use it): ``recall_at_1``, ``recall_at_10`` (mean recall@k, distance ties tolerated; the column keeps its
    name for any k), ``recall_at_100`` and ``recall_strict_at_10`` (ids only, ties not tolerated), and the per-query
    tail of recall@10 over queries: ``recall_min``, ``recall_p1``, ``recall_p5``, ``recall_p50``, ``share_below_0.5``.
    Over the ``n_builds`` builds: ``recall_at_10_median``, ``_min``, ``_max``; ``recall_at_10_median_build`` is
    the median build's entry in the record's ``builds`` list (equal to ``recall_at_10``). Single-query latency
    percentiles (ms; one caller, pools pinned to 1). Batch QPS per thread count, median over builds with min and
    max: ``qps_<t>`` (the batch split across t caller threads, every library pool pinned to 1 in each) and
    ``qps_pool_<t>`` (one caller, the library's own pools at t threads), ``cpu_<t>``/``cpu_pool_<t>`` the CPU
    time over wall time that ran. ``ef_effective`` is the ef a graph search really ran (max(ef_search, k));
    ``noisy`` lists figures whose spread exceeded the noise threshold, ``drift`` the reference workload's drift.
    """
    rows = []
    for rec in _ok(root, QUERY_GLOBS):
        ds, query = rec["dataset"], rec["query"]
        k = str(query["k"])
        recall, lat = rec.get("recall", {}), rec.get("latency_ms", {})
        builds = rec.get("builds") or []
        median = rec.get("median_build")
        over = spread_of(rec.get("recall_builds", {}).get(k, recall.get(k)))
        tail = (rec.get("perquery") or {}).get("recall_tolerant") or {}
        row = _identity(rec) | {
            "metric": ds.get("metric"), "n_train": ds.get("n_train"), "dimensions": ds.get("dimensions"),
            "ef_effective": query.get("ef_effective"), "k": query["k"], "n_queries": query.get("n_queries"),
            "n_builds": len(builds) or 1, "recall_at_1": recall.get("1"), "recall_at_10": recall.get(k),
            "recall_at_100": recall.get("100"), "recall_at_10_median": over["median"],
            "recall_at_10_min": over["min"], "recall_at_10_max": over["max"],
            "recall_at_10_median_build": (builds[median].get("recall", {}).get(k)
                                          if isinstance(median, int) and 0 <= median < len(builds) else None),
            "recall_strict_at_10": (rec.get("recall_strict") or {}).get(k), "recall_min": tail.get("min"),
            "recall_p1": tail.get("p1"), "recall_p5": tail.get("p5"), "recall_p50": tail.get("p50"),
            "share_below_0.5": tail.get("share_below_0.5"), "p50_ms": lat.get("p50"), "p95_ms": lat.get("p95"),
            "p99_ms": lat.get("p99"), "noisy": ", ".join(rec.get("noisy") or []),
            "drift": (rec.get("reference") or {}).get("drift")}
        for field_name, prefix in (("qps", "qps_"), ("qps_pool", "qps_pool_")):
            cpu = "cpu_" if field_name == "qps" else "cpu_pool_"
            for threads, s in (rec.get(field_name) or {}).items():
                sp = spread_of(s)
                row |= {f"{prefix}{threads}": sp["median"], f"{prefix}{threads}_min": sp["min"],
                        f"{prefix}{threads}_max": sp["max"],
                        f"{cpu}{threads}": s.get("cpu_utilization") if isinstance(s, dict) else None}
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.reindex(columns=list(dict.fromkeys([*QUERY_COLUMNS, *frame.columns])))


BUILD_COLUMNS = ["dataset", "backend", "tier", "graph", "m", "ef_construction", "quantization", "status", "n_builds",
                 "build_time_s", "build_time_min", "build_time_max", "inserts_per_s", "bytes_per_vector",
                 "serialized_bytes", "peak_rss_bytes", "reason"]


def build_runs(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Every index build configuration as one row (status 'ok', or 'not available' / 'skipped' with the reason):
    build time over its ``n_builds`` builds (median, min, max; seconds), inserts/s at the median time, serialized
    bytes per vector (``bytes_per_vector``; the other two memory figures are in :func:`memory_table`), and the
    benchmark process's peak RSS."""
    rows = []
    for rec in _records(_root(root), BUILD_GLOBS):
        ident = _identity(rec) if rec.get("dataset") else {"dataset": rec["_path"].parts[-4]}
        build = rec.get("build", {})
        times = spread_of(rec.get("build_time_s"))
        bpv = rec.get("bytes_per_vector")
        rows.append(ident | {"backend": rec.get("backend"), "tier": rec.get("tier"), "graph": rec.get("graph"),
                             "m": build.get("m"), "ef_construction": build.get("ef_construction"),
                             "quantization": build.get("quantization"), "status": rec.get("status"),
                             "n_builds": len(rec.get("builds") or []) or (1 if times["n"] else 0),
                             "build_time_s": times["median"], "build_time_min": times["min"],
                             "build_time_max": times["max"], "inserts_per_s": rec.get("inserts_per_s"),
                             "bytes_per_vector": bpv.get("serialized") if isinstance(bpv, dict) else bpv,
                             "serialized_bytes": rec.get("serialized_bytes"),
                             "peak_rss_bytes": rec.get("peak_rss_bytes"), "reason": rec.get("reason", "")})
    return pd.DataFrame(rows, columns=BUILD_COLUMNS)


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


def _hardness(bin_index: int, n_bins: int, direction: str) -> int:
    """1 for the easiest bin .. n_bins for the hardest, whichever end of the measure is the hard one."""
    return n_bins - bin_index if direction == "lower is harder" else bin_index + 1


def difficulty_bins(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Recall@10 per difficulty quintile, one row per (query setting, measure, bin), from the median build.

    Measures (``ruvector_lab.bench.perquery``): ``lid``, local intrinsic dimensionality from the ground-truth
    distances (higher is harder), and ``rc``, relative contrast (mean distance to the data over the distance to
    the 10th neighbour; lower is harder). The queries with a finite value are sorted by it and split into bins of
    equal count; ``bin`` is in ascending value, ``hardness`` runs from 1 (easiest) to the bin count (hardest) for
    either measure. ``n_nan_excluded`` queries had no finite value (LID is NaN for dot_product) and are in no bin.
    """
    rows = []
    for rec in _ok(root, QUERY_GLOBS):
        pq = rec.get("perquery") or {}
        ident = _identity(rec)
        k = str(rec["query"]["k"])
        for measure, table in (pq.get("difficulty") or {}).items():
            bins = table.get("bins") or []
            direction = table.get("direction", "unknown")
            for b in bins:
                rows.append(ident | {"measure": measure, "direction": direction,
                                     "hardness": _hardness(b["bin"], len(bins), direction),
                                     "n_queries_total": pq.get("n_queries"),
                                     "recall_at_10": rec.get("recall", {}).get(k)} | b)
    return pd.DataFrame(rows, columns=DIFFICULTY_COLUMNS)


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
    rows = []
    for rec in _ok(root, BUILD_GLOBS):
        ds = rec.get("dataset", {})
        bpv = rec.get("bytes_per_vector")
        bpv = bpv if isinstance(bpv, dict) else {"serialized": bpv}
        analytic = bpv.get("analytic") if isinstance(bpv.get("analytic"), dict) else {}
        child = bpv.get("child") if isinstance(bpv.get("child"), dict) else {}
        measured_analytic = "total" in analytic
        rss = bpv.get("rss_growth")
        times = spread_of(rec.get("build_time_s"))
        reasons = [f"analytic: {analytic.get('reason', '')}" if analytic and not measured_analytic else "",
                   f"rss: {child.get('reason', '')}" if rss is None and child.get("reason") else ""]
        dims = ds.get("dimensions")
        rows.append(_identity(rec) | {
            "n_train": ds.get("n_train"), "dimensions": dims,
            "float_bytes": float_bytes_per_vector(dims) if dims else None, "serialized": bpv.get("serialized"),
            "analytic": analytic.get("total"), "rss_growth": rss,
            "rss_over_analytic": rss / analytic["total"] if rss and analytic.get("total") else None,
            "analytic_vectors": analytic.get("vectors"), "analytic_graph": analytic.get("graph"),
            "analytic_ids": analytic.get("ids"), "analytic_other": analytic.get("other"),
            "analytic_status": "ok" if measured_analytic else analytic.get("status", "not recorded"),
            "rss_status": "measured" if rss is not None else child.get("status", "not recorded"),
            "n_builds": len(rec.get("builds") or []) or times["n"], "build_time_s": times["median"],
            "build_time_min": times["min"], "build_time_max": times["max"], "build_rel_spread": times["rel_spread"],
            "inserts_per_s": rec.get("inserts_per_s"), "child_peak_rss_bytes": child.get("peak_rss_bytes"),
            "reason": "; ".join(r for r in reasons if r)})
    return pd.DataFrame(rows, columns=MEMORY_COLUMNS)


SCALING_COLUMNS = [*SETTING_KEY, "graph", "mode", "threads", "qps", "qps_min", "qps_max", "rel_spread",
                   "cpu_utilization", "speedup", "efficiency", "pools", "pinned", "baseline"]


def thread_scaling(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Batch QPS against thread count, in both of the runner's modes, one row per (query setting, mode, threads).

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
    from ruvector_lab.bench.threads import all_pinned_to

    rows = []
    for rec in _ok(root, QUERY_GLOBS):
        ident = _identity(rec)
        single = rec.get("qps", {}).get("1")
        base = spread_of(single)["median"]
        for field_name, mode in MODES.items():
            figures = dict(rec.get(field_name) or {})
            if field_name == "qps_pool" and single is not None and figures:
                figures = {"1": single} | figures
            for threads, s in figures.items():
                sp = spread_of(s)
                t = int(threads)
                speedup = sp["median"] / base if base and sp["median"] is not None else None
                rows.append(ident | {"mode": mode, "threads": t, "qps": sp["median"], "qps_min": sp["min"],
                                     "qps_max": sp["max"], "rel_spread": sp["rel_spread"],
                                     "cpu_utilization": s.get("cpu_utilization") if isinstance(s, dict) else None,
                                     "speedup": speedup, "efficiency": speedup / t if speedup is not None else None,
                                     "pools": _pools(s.get("pools") if isinstance(s, dict) else None),
                                     "pinned": (all_pinned_to(s["pools"], 1 if mode == MODES["qps"] else t)
                                                if isinstance(s, dict) and isinstance(s.get("pools"), dict)
                                                else None),
                                     "baseline": t == 1})
    return pd.DataFrame(rows, columns=SCALING_COLUMNS)


NOISE_COLUMNS = [*SETTING_KEY, "kind", "reference_before_s", "reference_after_s", "drift", "noise_threshold",
                 "max_rel_spread", "n_noisy", "noisy", "flags_consistent"]


def noise_table(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """How steady the machine was, one row per build record (``kind`` 'build') and query record ('query').

    ``reference_*_s`` is a fixed single-threaded workload timed before and after the whole build configuration
    (every build and query sweep), ``drift`` their relative difference: a machine that sped up or slowed down
    meanwhile (frequency scaling, neighbours) shows here. ``noisy`` lists the figures whose relative spread
    (max - min) / median over builds or repeats exceeded ``noise_threshold`` (build time; QPS per mode and
    thread count; single-query p50; for builds also the reference drift), ``max_rel_spread`` the largest such
    spread of the record, and
    ``flags_consistent`` whether ``noisy`` names exactly the figures of the record whose spread exceeds the
    threshold (a check of the record, not of the machine).
    """
    rows = []
    for kind, patterns in (("build", BUILD_GLOBS), ("query", QUERY_GLOBS)):
        for rec in _ok(root, patterns):
            ref = rec.get("reference") or {}
            if kind == "build":
                figures = {"build_time_s": rec.get("build_time_s")}
            else:  # the runner's names: qps_<t>t, qps_pool_<t>t, latency_p50
                figures = {f"{f}_{t}t": s for f in MODES for t, s in (rec.get(f) or {}).items()}
                figures["latency_p50"] = rec.get("latency_ms", {}).get("spread", {}).get("p50")
            spreads = {name: spread_of(s)["rel_spread"] for name, s in figures.items()}
            spreads = {name: s for name, s in spreads.items() if s is not None}
            if kind == "build" and ref.get("drift") is not None:  # the runner flags the reference drift too
                spreads["reference_drift"] = ref["drift"]
            threshold = rec.get("noise_threshold")
            noisy = rec.get("noisy") or []
            expected = sorted(n for n, s in spreads.items() if threshold is not None and s > threshold)
            rows.append(_identity(rec) | {"kind": kind, "reference_before_s": ref.get("before_s"),
                                          "reference_after_s": ref.get("after_s"), "drift": ref.get("drift"),
                                          "noise_threshold": threshold,
                                          "max_rel_spread": max(spreads.values()) if spreads else None,
                                          "n_noisy": len(noisy), "noisy": ", ".join(noisy),
                                          "flags_consistent": sorted(noisy) == expected})
    return pd.DataFrame(rows, columns=NOISE_COLUMNS)


# --------------------------------------------------------------------------------------------- per-query results
#: where the pipeline keeps its datasets (ann-benchmarks HDF5 with ground truth), relative to the results root
DATASETS_DIR = Path("..") / "datasets"
Datasets = str | os.PathLike[str] | Mapping[str, Any] | None
_TRUTH_CACHE: dict[tuple[str, int], dict[str, Any]] = {}


def datasets_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder of the pipeline's datasets (``data/datasets``, beside ``data/results``)."""
    return (_root(root) / DATASETS_DIR).resolve()


def _truth(name: str, n: int, root: str | os.PathLike[str] | None, datasets: Datasets) -> dict[str, Any]:
    """Ground truth (ids, distances), queries and the seeded 1,000-row train sample of relative contrast for the
    first ``n`` queries of dataset ``name``: from ``datasets`` (a mapping name -> Dataset, or a folder of
    ``<name>.hdf5``), else from :func:`datasets_root`. Raises FileNotFoundError when it is not there."""
    if isinstance(datasets, Mapping):
        if name not in datasets:
            raise FileNotFoundError(f"dataset {name!r} is not among the {len(datasets)} given")
        ds = datasets[name]
        rows = np.sort(np.random.default_rng(0).choice(len(ds.train), size=min(1000, len(ds.train)), replace=False))
        return {"neighbors": np.asarray(ds.neighbors[:n]), "distances": np.asarray(ds.distances[:n]),
                "test": np.asarray(ds.test[:n]), "sample": np.asarray(ds.train)[rows], "metric": ds.metric}
    import h5py

    from ruvector_lab.bench.hdf5 import FROM_ANN

    folder = Path(datasets) if datasets is not None else datasets_root(root)
    path = folder / f"{name}.hdf5"
    if not path.is_file():
        raise FileNotFoundError(f"no dataset file {shown(path)}")
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


PERQUERY_FILE_COLUMNS = [*SETTING_KEY, "graph", "k", "build", "seed", "median_build", "file", "exists", "n_queries",
                         "recall_record", "recall_strict_record", "recall_file", "recall_strict_file",
                         "ground_truth"]


def perquery_files(root: str | os.PathLike[str] | None = None, datasets: Datasets = None) -> pd.DataFrame:
    """Every per-query result file the query records name (one per query setting and build), whether it exists,
    and the mean recall@k recomputed from it (tolerant: ties count; strict: ids only) against the dataset's ground
    truth, beside the recall the record holds for that build. ``ground_truth`` says why a recomputation is
    missing (no dataset file). ``file`` is relative to the build's folder."""
    from ruvector_lab.bench.metrics import recall_at_k
    from ruvector_lab.bench.perquery import read_query_results, strict_recall

    rows = []
    for rec in _ok(root, QUERY_GLOBS):
        folder, k = rec["_path"].parent, int(rec["query"]["k"])
        builds = rec.get("builds") or [{"perquery_file": rec.get("perquery_file"), "recall": rec.get("recall", {}),
                                        "recall_strict": rec.get("recall_strict", {}), "seed": None}]
        median = rec.get("median_build", 0)
        for i, b in enumerate(builds):
            name = b.get("perquery_file")
            if not name:
                continue
            row = _identity(rec) | {"k": k, "build": i, "seed": b.get("seed"), "median_build": i == median,
                                    "file": name, "exists": (folder / name).is_file(),
                                    "recall_record": b.get("recall", {}).get(str(k)),
                                    "recall_strict_record": (b.get("recall_strict") or {}).get(str(k))}
            if row["exists"]:
                run = read_query_results(folder / name)
                row["n_queries"] = run.n_queries
                try:
                    truth = _truth(row["dataset"], run.n_queries, root, datasets)
                except FileNotFoundError as exc:
                    row["ground_truth"] = str(exc)
                else:
                    row["ground_truth"] = "found"
                    row["recall_file"] = float(recall_at_k(truth["distances"], run.distances, k).mean())
                    row["recall_strict_file"] = float(strict_recall(truth["neighbors"], run.ids, k).mean())
            rows.append(row)
    return pd.DataFrame(rows, columns=PERQUERY_FILE_COLUMNS)


def _quintiles(values: np.ndarray, n_bins: int = 5) -> np.ndarray:
    """The bin (0-based, ascending value) of each query as ``perquery.recall_by_difficulty`` forms them; -1 for a
    query without a finite value."""
    out = np.full(len(values), -1)
    idx = np.flatnonzero(np.isfinite(values))
    order = idx[np.argsort(values[idx], kind="stable")]
    for b, chunk in enumerate(np.array_split(order, min(n_bins, len(order))) if len(order) else []):
        out[chunk] = b
    return out


def per_query(root: str | os.PathLike[str] | None = None, *, dataset: str, backend: str, ef_search: int,
              m: int | None = None, ef_construction: int | None = None, quantization: str = "none",
              build: int | None = None, datasets: Datasets = None) -> pd.DataFrame:
    """One query setting's queries, one row each, read from its per-query file (``build``: an index into the
    record's builds; None: the median build): recall@k (tolerant) and strict recall, how many results came back,
    and the query's difficulty, LID (higher is harder) and RC (lower is harder), recomputed from the dataset as
    the runner computes them, with ``lid_hardness`` / ``rc_hardness``: the query's quintile, 1 easiest .. 5
    hardest. Raises LookupError when the setting is not (uniquely) in the results, FileNotFoundError when the
    per-query file or the dataset is missing."""
    from ruvector_lab.bench import perquery
    from ruvector_lab.bench.metrics import recall_at_k

    found = [rec for rec in _ok(root, QUERY_GLOBS)
             if rec["dataset"]["name"] == dataset and rec["backend"] == backend
             and rec["query"]["ef_search"] == ef_search and rec["build"].get("quantization", "none") == quantization
             and (m is None or rec["build"]["m"] == m)
             and (ef_construction is None or rec["build"]["ef_construction"] == ef_construction)]
    if len(found) != 1:
        raise LookupError(f"{len(found)} query records match {dataset}/{backend} ef_search={ef_search} m={m} "
                          f"ef_construction={ef_construction} quantization={quantization}; name one")
    rec = found[0]
    builds = rec.get("builds") or []
    index = rec.get("median_build", 0) if build is None else build
    name = builds[index]["perquery_file"] if builds else rec["perquery_file"]
    path = rec["_path"].parent / name
    if not path.is_file():
        raise FileNotFoundError(f"no per-query file {shown(path)}")
    run = perquery.read_query_results(path)
    k = int(rec["query"]["k"])
    truth = _truth(dataset, run.n_queries, root, datasets)
    lid = perquery.lid_mle(truth["distances"], metric=truth["metric"])
    rc = perquery.relative_contrast(truth["test"], truth["sample"], truth["distances"], truth["metric"], k=10,
                                    sample=len(truth["sample"]), seed=0)
    frame = pd.DataFrame({"query": np.arange(run.n_queries),
                          "recall": recall_at_k(truth["distances"], run.distances, k),
                          "recall_strict": perquery.strict_recall(truth["neighbors"], run.ids, k),
                          "returned": (run.ids[:, :k] >= 0).sum(axis=1), "lid": lid, "rc": rc})
    for measure, values in (("lid", lid), ("rc", rc)):
        bins = _quintiles(values)
        n_bins = int(bins.max()) + 1 if (bins >= 0).any() else 0
        direction = perquery.DIFFICULTY_DIRECTION[measure]
        frame[f"{measure}_hardness"] = [(_hardness(int(b), n_bins, direction) if b >= 0 else None) for b in bins]
    frame.attrs = {"build": index, "file": name, "k": k}
    return frame


def operating_table(runs: pd.DataFrame,
                    by: Sequence[str] = ("dataset", "backend", "m", "ef_construction", "quantization"),
                    floors: Iterable[float] = RECALL_FLOORS, speed: str = "qps_1") -> pd.DataFrame:
    """For each build configuration and recall floor, the cheapest ef_search whose recall@10 (median build)
    reaches the floor (None: not reached), with that setting's recall, p50 latency and QPS, and, where the runs
    carry them, recall@10 over builds (``recall_at_10_min``: does the worst build reach it too?), the median
    build's own entry, strict recall and the 5th-percentile query's recall."""
    extra = [c for c in ("n_builds", "recall_at_10_min", "recall_at_10_max", "recall_at_10_median_build",
                         "recall_strict_at_10", "recall_p5") if c in runs.columns]
    cols = [*by, "floor", "ef_search", "recall_at_10", "p50_ms", speed, *extra]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for key, group in runs.dropna(subset=["recall_at_10"]).groupby(list(by), sort=True):
        points = operating_points(group.to_dict("records"), tuple(floors), "recall_at_10", "ef_search", speed)
        for floor, best in points.items():
            row = dict(zip(by, key, strict=True)) | {"floor": float(floor)}
            if best is not None:
                row |= {c: best[c] for c in ("ef_search", "recall_at_10", "p50_ms", speed, *extra)}
            rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def pareto(runs: pd.DataFrame, by: Sequence[str] = ("dataset", "backend"), x: str = "recall_at_10",
           y: str = "qps_1") -> pd.DataFrame:
    """The recall-vs-QPS Pareto frontier of each group (higher is better on both), sorted by recall."""
    if runs.empty:
        return runs.copy()
    parts = []
    for _, group in runs.dropna(subset=[x, y]).groupby(list(by), sort=True):
        parts.append(pd.DataFrame(pareto_frontier(group.to_dict("records"), x=x, y=y)))
    return pd.concat(parts, ignore_index=True) if parts else runs.iloc[0:0].copy()


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
    re-ranking. ``source`` labels where the numbers come from."""
    rows = []
    for rec in records:
        if rec.get("status") != "ok":
            continue
        for rr in rec.get("rerank", []):
            rows.append({"dataset": rec["dataset"]["name"], "codec": rec.get("spec", rec["codec"]["kind"]),
                         "kind": rec["codec"]["kind"], "bytes_per_vector": rec["bytes_per_vector"],
                         "compression": rec.get("compression"), "reconstruction_mse": rec.get("reconstruction_mse"),
                         "factor": rr["factor"], "candidates": rr.get("candidates"),
                         "recall_at_1": rr.get("recall_at_1"), "recall_at_10": rr.get("recall_at_10"),
                         "qps": rr.get("qps"), "source": source_label})
    return pd.DataFrame(rows, columns=QUANT_COLUMNS)


def quant_runs(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The pipeline's codec sweeps (quant/<dataset>/<codec>.json) as :func:`quant_rows`."""
    return quant_rows(_records(_root(root), QUANT_GLOB), "pipeline")


def quant_unavailable(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The codecs the pipeline recorded as not available, with the reason."""
    rows = [{"dataset": r["_path"].parent.name, "codec": r.get("spec", r["_path"].stem), "reason": r.get("reason")}
            for r in _records(_root(root), QUANT_GLOB) if r.get("status") != "ok"]
    return pd.DataFrame(rows, columns=["dataset", "codec", "reason"])


def float_bytes_per_vector(dimensions: int) -> int:
    """Bytes of one float32 vector: the uncompressed reference for the codecs."""
    return 4 * int(dimensions)


__all__ = ["ADR_DATASET", "ADR_NATIVE_SPEEDUP", "MODES", "NO_RESULTS", "RECALL_FLOORS", "RESULTS_ENV", "Source",
           "adr_cases", "adr_dataset", "adr_scorecard", "adr_verdicts", "build_runs", "build_spread",
           "datasets_root", "difficulty_bins", "float_bytes_per_vector", "memory_table", "native_wasm_ratios",
           "noise_table", "operating_table", "pareto", "per_query", "perquery_files", "quant_rows", "quant_runs",
           "quant_unavailable", "query_runs", "recall_tail", "report_path", "results_root", "shown", "source",
           "spread_of", "thread_scaling"]


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

