"""What the notebooks read: the pipeline's result JSON turned into tables, in one place.

The notebooks never open a result file themselves; they call the functions here, so a change of the result schema
(documented in :mod:`ruvector_lab.bench.results`) is one edit in this module. Every reader returns an empty table
when the pipeline has not produced that part yet, and :func:`source` says in words what was found, so a notebook can
say "no pipeline results yet: run make repro" and carry on with what it can check live.

Where results are read from: ``$RUVECTOR_LAB_RESULTS`` if set (``make test-notebooks`` points it at the tiny
profile's outputs), else ``data/results`` under the repository (the full pipeline's outputs, ``make repro``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
QUERY_COLUMNS = ["dataset", "metric", "n_train", "backend", "tier", "graph", "m", "ef_construction", "quantization",
                 "ef_search", "k", "n_queries", "recall_at_1", "recall_at_10", "recall_at_100", "p50_ms", "p95_ms",
                 "p99_ms", "qps_1", "qps_2"]


def query_runs(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Every finished query setting as one row: build parameters, ef_search, recall@1/10/100, single-query latency
    percentiles (ms) and batch QPS per thread count (``qps_<threads>``, medians over repeats)."""
    rows = []
    for rec in _records(_root(root), QUERY_GLOBS):
        if rec.get("status") != "ok":
            continue
        ds, build, query = rec["dataset"], rec["build"], rec["query"]
        recall, lat = rec.get("recall", {}), rec.get("latency_ms", {})
        row = {"dataset": ds["name"], "metric": ds.get("metric"), "n_train": ds.get("n_train"),
               "backend": rec["backend"], "tier": rec.get("tier"), "graph": rec.get("graph"), "m": build["m"],
               "ef_construction": build["ef_construction"], "quantization": build.get("quantization", "none"),
               "ef_search": query["ef_search"], "k": query["k"], "n_queries": query.get("n_queries"),
               "recall_at_1": recall.get("1"), "recall_at_10": recall.get(str(query["k"])),
               "recall_at_100": recall.get("100"), "p50_ms": lat.get("p50"), "p95_ms": lat.get("p95"),
               "p99_ms": lat.get("p99")}
        for threads, s in rec.get("qps", {}).items():
            row[f"qps_{threads}"] = s["median"] if isinstance(s, dict) else s
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.reindex(columns=list(dict.fromkeys([*QUERY_COLUMNS, *frame.columns])))


BUILD_COLUMNS = ["dataset", "backend", "tier", "graph", "m", "ef_construction", "quantization", "status",
                 "build_time_s", "inserts_per_s", "bytes_per_vector", "serialized_bytes", "peak_rss_bytes", "reason"]


def build_runs(root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Every index build as one row (status 'ok' or 'not available' with the reason): build time, inserts/s,
    serialized bytes per vector, peak RSS."""
    rows = []
    for rec in _records(_root(root), BUILD_GLOBS):
        ds, build = rec.get("dataset", {}), rec.get("build", {})
        rows.append({"dataset": ds.get("name", rec["_path"].parts[-4]), "backend": rec.get("backend"),
                     "tier": rec.get("tier"), "graph": rec.get("graph"), "m": build.get("m"),
                     "ef_construction": build.get("ef_construction"), "quantization": build.get("quantization"),
                     "status": rec.get("status"), "build_time_s": rec.get("build_time_s"),
                     "inserts_per_s": rec.get("inserts_per_s"), "bytes_per_vector": rec.get("bytes_per_vector"),
                     "serialized_bytes": rec.get("serialized_bytes"), "peak_rss_bytes": rec.get("peak_rss_bytes"),
                     "reason": rec.get("reason", "")})
    return pd.DataFrame(rows, columns=BUILD_COLUMNS)


def pareto(runs: pd.DataFrame, by: Sequence[str] = ("dataset", "backend"), x: str = "recall_at_10",
           y: str = "qps_1") -> pd.DataFrame:
    """The recall-vs-QPS Pareto frontier of each group (higher is better on both), sorted by recall."""
    if runs.empty:
        return runs.copy()
    parts = []
    for _, group in runs.dropna(subset=[x, y]).groupby(list(by), sort=True):
        parts.append(pd.DataFrame(pareto_frontier(group.to_dict("records"), x=x, y=y)))
    return pd.concat(parts, ignore_index=True) if parts else runs.iloc[0:0].copy()


def operating_table(runs: pd.DataFrame, by: Sequence[str] = ("dataset", "backend", "m", "ef_construction"),
                    floors: Iterable[float] = RECALL_FLOORS, speed: str = "qps_1") -> pd.DataFrame:
    """For each build and recall floor, the cheapest ef_search reaching recall@10 >= floor (None: not reached),
    with that setting's recall, p50 latency and QPS."""
    cols = [*by, "floor", "ef_search", "recall_at_10", "p50_ms", speed]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for key, group in runs.dropna(subset=["recall_at_10"]).groupby(list(by), sort=True):
        points = operating_points(group.to_dict("records"), tuple(floors), "recall_at_10", "ef_search", speed)
        for floor, best in points.items():
            row = dict(zip(by, key, strict=True)) | {"floor": float(floor)}
            if best is not None:
                row |= {c: best[c] for c in ("ef_search", "recall_at_10", "p50_ms", speed)}
            rows.append(row)
    return pd.DataFrame(rows, columns=cols)


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


__all__ = ["ADR_NATIVE_SPEEDUP", "NO_RESULTS", "RECALL_FLOORS", "RESULTS_ENV", "Source", "adr_cases", "adr_scorecard",
           "adr_verdicts", "build_runs", "float_bytes_per_vector", "native_wasm_ratios", "operating_table", "pareto",
           "quant_rows", "quant_runs", "quant_unavailable", "query_runs", "report_path", "results_root", "shown",
           "source"]
