"""The report stage: gather the result JSON of the parameters' grid into results/report.md, results/metrics.json
(the headline figures compared between experiments), the long tables as CSV (also the data of ``dvc plots show``)
and PNG plots (recall vs QPS; bytes per vector vs recall), one file per kind with a panel per dataset, so every
experiment writes the same files whatever datasets it runs (dvc.yaml declares each one, see :data:`OUTPUTS`)."""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import results
from .metrics import operating_points, pareto_frontier
from .targets import TARGETS

log = logging.getLogger(__name__)

RECALL_TARGETS = (0.90, 0.95, 0.99)
#: the runtime's detection order, for tables
BACKEND_ORDER = {"faiss": 0, "hnswlib": 1, "ruvector": 2, "wasm": 3, "numpy": 4}
#: the recall@10 a codec must reach (with its best re-ranking) to be a dataset's headline codec in metrics.json
CODEC_RECALL = 0.95
#: every file write_report writes under its output folder, whatever the results: dvc.yaml declares each one as an
#: output of the report stage (tests/test_dvc_views.py keeps the two in step), so an experiment on fewer datasets
#: rewrites the same files instead of leaving some of the committed ones deleted
OUTPUTS = ("report.md", "metrics.json", "plots/recall_qps.csv", "plots/operating_points.csv",
           "plots/quantization.csv", "plots/builds.csv", "plots/adr.csv", "plots/recall_qps.png",
           "plots/quant_bytes_recall.png")


# ------------------------------------------------------------------------------------------------------ loading
def load_results(root: str | os.PathLike[str]) -> dict[str, list[dict[str, Any]]]:
    """Every build, query, quantization and ADR record under ``root``."""
    return {
        "builds": results.collect(root, "runs/*/*/*/build.json")
        + results.collect(root, "qhnsw/*/runs/*/*/*/build.json"),
        "queries": results.collect(root, "runs/*/*/*/query-*.json")
        + results.collect(root, "qhnsw/*/runs/*/*/*/query-*.json"),
        "quant": results.collect(root, "quant/*/*.json"),
        "adr": results.collect(root, "adr/*.json"),
    }


def select_results(data: dict[str, list[dict[str, Any]]], params: dict[str, Any] | None,
                   root: str | os.PathLike[str]) -> dict[str, list[dict[str, Any]]]:
    """The records of the parameters' own grid (datasets, backends, builds, ef_search and k, codecs).

    data/results outlives experiments (the build and quantize stages' outputs are ``persist: true``, so DVC keeps
    them), and runs that an earlier experiment made for a dataset, backend, build, ef_search or codec that
    ``params`` no longer lists stay on disk; without this selection an experiment's report and metrics would mix
    them in, and ``dvc exp show`` could not tell two experiments apart. A section or key that ``params`` lacks
    selects nothing away, so a partial ``params`` (tests, notebooks) reports everything under ``root``.
    """
    if not params:
        return data

    def allowed(section: str, key: str) -> set[Any] | None:
        values = (params.get(section) or {}).get(key)
        return set(values) if isinstance(values, list) else None

    def within(value: Any, values: set[Any] | None) -> bool:
        return values is None or value in values

    datasets, backends = allowed("bench", "datasets"), allowed("bench", "backends")
    ms, efcs = allowed("build", "m"), allowed("build", "ef_construction")
    quants, efs = allowed("build", "quantization"), allowed("query", "ef_search")
    k = (params.get("query") or {}).get("k")
    qdatasets, codecs = allowed("quantization", "datasets"), allowed("quantization", "codecs")
    hnsw_specs, hnsw_datasets = allowed("quantization", "hnsw"), allowed("quantization", "hnsw_datasets")
    build_params = params.get("build") or {}
    # the quantize stage builds its quantized HNSW indexes with the first build.m and build.ef_construction only
    first_m, first_efc = (next(iter(v), None) if isinstance(v, list) else None
                          for v in (build_params.get("m"), build_params.get("ef_construction")))
    base = Path(root)

    def in_grid(r: dict[str, Any]) -> bool:
        dataset, build = (r.get("dataset") or {}).get("name"), r.get("build") or {}
        if not within(r.get("backend"), backends):
            return False
        try:
            quantized = Path(r["_path"]).relative_to(base).parts[0] == "qhnsw"
        except (KeyError, ValueError):
            quantized = False
        if quantized:
            return (within(dataset, qdatasets) and within(dataset, hnsw_datasets)
                    and within(build.get("quantization"), hnsw_specs)
                    and first_m in (None, build.get("m")) and first_efc in (None, build.get("ef_construction")))
        return (within(dataset, datasets) and within(build.get("m"), ms)
                and within(build.get("ef_construction"), efcs) and within(build.get("quantization"), quants))

    def query_in_grid(q: dict[str, Any]) -> bool:
        query = q.get("query") or {}
        return in_grid(q) and within(query.get("ef_search"), efs) and (k is None or query.get("k") in (None, k))

    return {
        "builds": [b for b in data["builds"] if in_grid(b)],
        "queries": [q for q in data["queries"] if query_in_grid(q)],
        "quant": [q for q in data["quant"] if within((q.get("dataset") or {}).get("name"), qdatasets)
                  and within(q.get("spec"), codecs)],
        "adr": list(data["adr"]),  # the adr stage's output is not persistent: DVC clears it before each run
    }


def _spread_of(record: dict[str, Any], *path: str) -> dict[str, Any]:
    node: Any = record
    for part in path:
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def _effective_ef(q: dict[str, Any]) -> int | None:
    """The ef a graph search really ran: the record's max(ef_search, k), raised to the re-rank depth R of a
    quantized build ('scalar-r40'), whose graph search must return R candidates (so ef >= R as well)."""
    ef = q["query"].get("ef_effective")
    quantization = (q.get("build") or {}).get("quantization", "none")
    if ef is None or quantization == "none":
        return ef
    from .runner import split_spec

    return max(int(ef), split_spec(quantization)[2])


def query_rows(queries: Sequence[dict[str, Any]], noise_threshold: float = 0.2) -> list[dict[str, Any]]:
    """One flat row per finished query run: dataset, backend, build key, ef_search (and the ef that really ran),
    recall (median build, min-max over builds, strict, the per-query tail), QPS in both thread modes, latency,
    and whether a figure's spread exceeds ``noise_threshold``."""
    rows = []
    for q in queries:
        if q.get("status") != "ok":
            continue
        build = q["build"]
        key = results.build_key(build["m"], build["ef_construction"], build["quantization"])
        qps, pool = q.get("qps", {}), q.get("qps_pool", {})
        tail = _spread_of(q, "perquery", "recall_tolerant")
        recall_builds = _spread_of(q, "recall_builds", "10")
        row = {
            "dataset": q["dataset"]["name"], "backend": q["backend"], "build": key, "graph": q.get("graph", "hnsw"),
            "series": f"{q['backend']} {build_label(key, q.get('graph', 'hnsw'))}",
            "ef_search": q["query"]["ef_search"], "ef_effective": _effective_ef(q),
            "ef_effective_big": q["query"].get("ef_effective_big"), "builds": len(q.get("builds", [])) or 1,
            "recall_at_1": q["recall"].get("1"), "recall_at_10": q["recall"].get("10"),
            "recall_at_100": q["recall"].get("100"),
            "recall_at_10_min": recall_builds.get("min"), "recall_at_10_max": recall_builds.get("max"),
            "recall_strict_10": q.get("recall_strict", {}).get("10"),
            "recall_p1": tail.get("p1"), "recall_p5": tail.get("p5"), "share_below_half": tail.get("share_below_0.5"),
            "qps": qps.get("1", {}).get("median"), "qps_min": qps.get("1", {}).get("min"),
            "qps_max": qps.get("1", {}).get("max"), "qps_spread": qps.get("1", {}).get("rel_spread"),
            "qps_2t": qps.get("2", {}).get("median"), "qps_pool_2t": pool.get("2", {}).get("median"),
            "p50_ms": q["latency_ms"]["p50"], "p99_ms": q["latency_ms"]["p99"],
            "cpu_1t": qps.get("1", {}).get("cpu_utilization"),
        }
        figures = {f"QPS {t}t": s_ for t, s_ in qps.items()} | {f"QPS pool {t}t": s_ for t, s_ in pool.items()}
        figures["p50"] = _spread_of(q, "latency_ms", "spread", "p50")
        row["noisy"] = ", ".join(name for name, s_ in figures.items() if (s_.get("rel_spread") or 0) > noise_threshold)
        rows.append(row)
    for runs in group(rows, "dataset", "series").values():  # mark each series' Pareto frontier (recall vs QPS)
        front = {id(p) for p in pareto_frontier([r for r in runs if r["qps"]], "recall_at_10", "qps")}
        for r in runs:
            r["pareto"] = id(r) in front
    return sorted(rows, key=lambda r: (r["dataset"], r["backend"], r["build"], r["ef_search"]))


def build_label(key: str, graph: str) -> str:
    """How a build is named in tables: its key for graphs; 'exact' for a flat float scan; the key and 'flat code
    scan' for a flat quantized one."""
    if graph == "hnsw":
        return key
    return "exact" if key.endswith("-none") else f"{key} (flat code scan)"


def group(rows: Sequence[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Rows grouped by the values of ``keys`` (insertion order kept)."""
    out: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        out[tuple(row[k] for k in keys)].append(row)
    return dict(out)


def operating_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each dataset, backend and build, the cheapest ef_search reaching recall@10 of 0.90, 0.95 and 0.99."""
    table = []
    for (dataset, backend, build), runs in group(rows, "dataset", "backend", "build").items():
        points = operating_points(runs, RECALL_TARGETS)
        for target, best in points.items():
            table.append({"dataset": dataset, "backend": backend, "build": build, "target": target,
                          "ef_search": best["ef_search"] if best else None,
                          "recall_at_10": best["recall_at_10"] if best else None,
                          "qps": best["qps"] if best else None, "qps_2t": best["qps_2t"] if best else None,
                          "p50_ms": best["p50_ms"] if best else None,
                          "graph": runs[0]["graph"]})
    return table


def quant_rows(quant: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per (dataset, codec, re-rank factor) of the quantization sweep."""
    rows = []
    for q in quant:
        if q.get("status") != "ok":
            continue
        for rr in q["rerank"]:
            rows.append({"dataset": q["dataset"]["name"], "codec": q["spec"], "rerank": rr["factor"],
                         "bytes_per_vector": q["bytes_per_vector"], "compression": q["compression"],
                         "recall_at_10": rr["recall_at_10"], "recall_at_1": rr["recall_at_1"], "qps": rr["qps"],
                         "encode_per_s": q["encode_per_s"], "quantize_p50_ms": q["quantize_single_ms"]["p50"]})
    return rows


# -------------------------------------------------------------------------------------------------- formatting
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


def _case_cell(case: dict[str, Any] | None, protocol: str) -> str:
    if not case:
        return "—"
    if case.get("status") != "ok":
        return "not available"
    p = case["protocols"][protocol]
    mark = {"pass": "pass", "fail": "**FAIL**", "no target": ""}.get(p["verdict"], p["verdict"])
    cell = f"{p['judged_ms']:.3g} ms {mark}".strip()
    if "recall_at_10" in case:
        cell += f" (recall@10 {case['recall_at_10']:.3f})"
    return cell


def adr_tables(adr: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown tables of the ADR suite, one per protocol: cases down, backends across."""
    common = next((r for r in adr if r.get("backend") == "common"), None)
    backends = [r for r in adr if r.get("backend") != "common"]
    backends.sort(key=lambda r: BACKEND_ORDER.get(r["backend"], 9))
    lines: list[str] = []
    for protocol, title in (("adr", "ADR protocol (one input repeated; judged on the mean, as the ADR's avgMs)"),
                            ("honest", "Honest protocol (distinct inputs; judged on p95)")):
        header = ["case (ADR target)", *[f"{r['backend']} ({r.get('tier', '')})" for r in backends]]
        rows = []
        for case, target in TARGETS.items():
            row: list[Any] = [target.adr_text]
            for r in backends:
                if r.get("status") != "ok":
                    row.append("not available")
                    continue
                got = r["cases"].get(case)
                if got is None and common is not None:
                    got = common["cases"].get(case)
                row.append(_case_cell(got, protocol))
            rows.append(row)
        lines += [f"### {title}", "", *_table(header, rows), ""]
    if common is not None:
        lines.append("Embedding, distance and quantize do not depend on the index backend: they are measured once "
                     "and shown under every backend. Pattern match under a backend is a PatternStore (HNSW, k=10) on "
                     "that backend; the exact list scan measured "
                     f"{_case_cell(common['cases'].get('pattern_match'), 'honest')} (honest).")
        emb = common["cases"].get("embed_single", {})
        if emb.get("status") == "ok":
            lines.append(f"Embedder: {emb.get('info', {})}.")
    missing = [f"{r['backend']}: {r.get('reason')}" for r in backends if r.get("status") != "ok"]
    if missing:
        lines += ["", "Backends not available here: " + "; ".join(missing)]
    return lines


def backend_cases(adr: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each measured backend's ADR record (in detection order) with its cases merged over the cases measured once
    for all backends (embedding, distance, quantize): the view both the summary and the verdict counts take."""
    common = next((r for r in adr if r.get("backend") == "common"), {"cases": {}})
    return [(r, {**common["cases"], **r["cases"]})
            for r in sorted(adr, key=lambda r: BACKEND_ORDER.get(r.get("backend"), 9))
            if r.get("backend") != "common" and r.get("status") == "ok"]


def summary_lines(adr: Sequence[dict[str, Any]], ops: Sequence[dict[str, Any]]) -> list[str]:
    """Bullet points: ADR verdicts per backend and protocol, the recall the ADR's own search setting reaches, and
    per dataset the fastest build (1 thread) reaching recall@10 0.95."""
    out = []
    for r, cases in backend_cases(adr):
        verdicts = {}
        for protocol in ("adr", "honest"):
            got = {k: c["protocols"][protocol]["verdict"] for k, c in cases.items() if c.get("status") == "ok"}
            failed = [k for k, v in got.items() if v == "fail"]
            verdicts[protocol] = f"{list(got.values()).count('pass')} pass / {len(failed)} fail" + (
                f" ({', '.join(failed)})" if failed else "")
        absent = sorted(k for k, c in cases.items() if c.get("status") != "ok")
        search = r["cases"].get("hnsw_search_k10", {})
        recall = f"; search recall@10 at the ADR's setting {search['recall_at_10']:.3f}" if "recall_at_10" in search \
            else ""
        out.append(f"- ADR targets on **{r['backend']}**: ADR protocol {verdicts['adr']}, honest protocol "
                   f"{verdicts['honest']}{recall}" + (f"; not available: {', '.join(absent)}" if absent else ""))
    for (dataset,), rows in group([o for o in ops if o["target"] == "0.95" and o["qps"]], "dataset").items():
        best = max(rows, key=lambda o: o["qps"])
        where = f"ef_search {best['ef_search']}" if best["graph"] == "hnsw" else "exact scan"
        out.append(f"- {dataset}: fastest at recall@10 >= 0.95 is {best['backend']} "
                   f"{build_label(best['build'], best['graph'])} ({where}, {_fmt(best['qps'])} QPS on 1 thread)")
    missing = sorted({o["dataset"] for o in ops} - {o["dataset"] for o in ops if o["target"] == "0.95" and o["qps"]
                                                     and o["graph"] == "hnsw"})
    for dataset in missing:
        out.append(f"- {dataset}: no HNSW build reaches recall@10 0.95 within the ef_search sweep")
    return out


# ------------------------------------------------------------------------------------------------------- plots
def _empty_figure(path: Path, what: str) -> Path:
    """A small PNG saying there is nothing to plot: the file is declared in dvc.yaml, so it always exists."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 1.5), dpi=100)
    ax.axis("off")
    ax.text(0.5, 0.5, f"no {what} in this run's parameters", ha="center", va="center", fontsize=10)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_recall_qps(rows: Sequence[dict[str, Any]], out_dir: Path) -> Path:
    """One PNG, ``recall_qps.png``, one panel per dataset: recall@10 against single-thread batch QPS (log), one
    line per backend and build, with each series' Pareto frontier."""
    path = out_dir / "recall_qps.png"
    by_dataset = group([r for r in rows if r["qps"]], "dataset")
    if not by_dataset:
        return _empty_figure(path, "recall vs QPS results")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(2, len(by_dataset))
    nrows = (len(by_dataset) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(7 * cols, 4.5 * nrows), dpi=100, squeeze=False)
    for ax, ((dataset,), runs) in zip(axes.flat, by_dataset.items(), strict=False):
        for (series,), pts in group(runs, "series").items():
            front = pareto_frontier(pts, "recall_at_10", "qps")
            line = ax.plot([p["recall_at_10"] for p in front], [p["qps"] for p in front], marker="o", label=series)
            # min-max over builds as error bars; a hollow ring marks a point over the noise threshold
            for p in front:
                r_lo, r_hi = p.get("recall_at_10_min"), p.get("recall_at_10_max")
                q_lo, q_hi = p.get("qps_min"), p.get("qps_max")
                if None not in (r_lo, r_hi, q_lo, q_hi):
                    x, y = p["recall_at_10"], p["qps"]
                    ax.errorbar(x, y, xerr=[[x - r_lo], [r_hi - x]], yerr=[[y - q_lo], [q_hi - y]],
                                color=line[0].get_color(), lw=0.8, capsize=2)
                if p.get("noisy"):
                    ax.plot(p["recall_at_10"], p["qps"], marker="o", ms=11, mfc="none", color="red", lw=0)
        ax.set_yscale("log")
        ax.set_xlabel("recall@10", fontsize=8)
        ax.set_ylabel("queries per second (1 thread, batch)", fontsize=8)
        ax.set_title(dataset, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(by_dataset):]:
        ax.axis("off")
    fig.suptitle("recall vs QPS (up and right is better; bars: min-max over builds; red ring: noisy)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_quant(rows: Sequence[dict[str, Any]], out_dir: Path) -> Path:
    """One PNG, ``quant_bytes_recall.png``, one panel per dataset: bytes per vector (log) against recall@10 for
    each codec, one line per re-rank factor."""
    if not rows:
        return _empty_figure(out_dir / "quant_bytes_recall.png", "quantization results")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_dataset = group(rows, "dataset")
    cols = min(2, len(by_dataset))
    nrows = (len(by_dataset) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(5.5 * cols, 3.8 * nrows), dpi=100, squeeze=False)
    for ax, ((dataset,), pts_all) in zip(axes.flat, by_dataset.items(), strict=False):
        for (factor,), pts in group(pts_all, "rerank").items():
            pts = sorted(pts, key=lambda p: p["bytes_per_vector"])
            ax.plot([p["bytes_per_vector"] for p in pts], [p["recall_at_10"] for p in pts], marker="o",
                    label=f"rerank x{factor}" if factor > 1 else "codes only")
            if factor == 1:
                for p in pts:
                    ax.annotate(p["codec"], (p["bytes_per_vector"], p["recall_at_10"]), fontsize=7,
                                xytext=(3, -9), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.05)
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel("bytes per vector (codes + shared codebooks)", fontsize=8)
        ax.set_ylabel("recall@10", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(by_dataset):]:
        ax.axis("off")
    fig.suptitle("quantization: memory vs recall (brute force over codes, then exact re-ranking)", fontsize=10)
    path = out_dir / "quant_bytes_recall.png"
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _write_csv(path: Path, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def build_rows(builds: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per finished build configuration: build time (median, min-max over builds), inserts/s,
    bytes per vector three ways (serialized, analytic, resident-memory growth in a fresh process), threads."""
    rows = []
    for b in builds:
        if b.get("status") != "ok":
            continue
        key = results.build_key(b["build"]["m"], b["build"]["ef_construction"], b["build"]["quantization"])
        times = b["build_time_s"]
        per_vector = b.get("bytes_per_vector") or {}
        analytic = per_vector.get("analytic") or {}
        first = (b.get("builds") or [{}])[0]
        rows.append({"dataset": b["dataset"]["name"], "backend": b["backend"], "build": key,
                     "graph": b.get("graph", "hnsw"), "builds": len(b.get("builds", [])) or 1,
                     "build_s": times["median"], "build_s_min": times["min"], "build_s_max": times["max"],
                     "inserts_per_s": b.get("inserts_per_s"), "bytes_serialized": per_vector.get("serialized"),
                     "bytes_analytic": analytic.get("total"), "bytes_rss": per_vector.get("rss_growth"),
                     "memory_note": (per_vector.get("child") or {}).get("reason"),
                     "threads": (b.get("threads") or {}).get("threads"), "cpu": first.get("cpu_utilization"),
                     "drift": (b.get("reference") or {}).get("drift")})
    return sorted(rows, key=lambda r: (r["dataset"], BACKEND_ORDER.get(r["backend"], 9), r["build"]))


def _range(median: Any, low: Any, high: Any) -> str:
    """``median (min–max)``, or the median alone when there is one value."""
    if median is None:
        return "—"
    if low is None or high is None or low == high:
        return _fmt(median)
    return f"{_fmt(median)} ({_fmt(low)}–{_fmt(high)})"


def focus_rows(rows: Sequence[dict[str, Any]], target: float = 0.95) -> list[dict[str, Any]]:
    """Per dataset and series, the row a reader looks at first: the cheapest ef_search reaching ``target``
    recall@10 (median build), else the series' most accurate one."""
    out = []
    for _key, runs in group(rows, "dataset", "series").items():
        reaching = [r for r in runs if (r["recall_at_10"] or 0) >= target]
        out.append(min(reaching, key=lambda r: r["ef_search"]) if reaching
                   else max(runs, key=lambda r: (r["recall_at_10"] or 0, -r["ef_search"])))
    return out


def _record_of(queries: Sequence[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any]:
    for q in queries:
        b = q.get("build", {})
        if (q.get("status") == "ok" and q["dataset"]["name"] == row["dataset"] and q["backend"] == row["backend"]
                and results.build_key(b["m"], b["ef_construction"], b["quantization"]) == row["build"]
                and q["query"]["ef_search"] == row["ef_search"]):
            return q
    return {}


def noise_lines(builds: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]) -> list[str]:
    """The run's noise: drift of the fixed reference workload timed before and after each build configuration,
    and how many sweep rows carry a figure over the noise threshold."""
    drifts = [b["reference"]["drift"] for b in builds if b.get("status") == "ok" and (b.get("reference") or {}).get(
        "drift") is not None]
    if not drifts:
        return []
    noisy = sum(1 for r in rows if r.get("noisy"))
    return [f"Noise of this run: a fixed single-threaded workload timed before and after each of {len(drifts)} build "
            f"configurations drifted by {100 * float(np.median(drifts)):.1f}% (median), "
            f"{100 * max(drifts):.1f}% at most; {noisy} of {len(rows)} sweep rows have a figure over the noise "
            "threshold (column 'noisy').", ""]


def tail_lines(rows: Sequence[dict[str, Any]], queries: Sequence[dict[str, Any]]) -> list[str]:
    """The worst-query tail at each series' focus point (recall@10 0.95 or its best): the per-query recall
    distribution and recall@10 per difficulty quintile (LID: higher is harder; RC: lower is harder)."""
    body = []
    for row in focus_rows([r for r in rows if r["graph"] == "hnsw"]):
        pq = _record_of(queries, row).get("perquery") or {}
        dist = pq.get("recall_tolerant") or {}
        cells = [row["dataset"], row["series"], row["ef_search"], dist.get("mean"), pq.get("recall_strict_mean"),
                 dist.get("p1"), dist.get("p5"), dist.get("share_below_0.5")]
        for name, hardest in (("lid", -1), ("rc", 0)):
            bins = ((pq.get("difficulty") or {}).get(name) or {}).get("bins") or []
            cells.append(f"{_fmt(bins[hardest]['mean_recall'])} / {_fmt(bins[-1 - hardest]['mean_recall'])}"
                         if len(bins) > 1 else "—")
        body.append(cells)
    if not body:
        return []
    return ["## Per-query recall: the worst queries", "",
            "At each graph series' cheapest ef reaching recall@10 0.95 (else its most accurate), from the per-query "
            "results kept in HDF5 (`perquery/` beside each query JSON): mean and strict recall@10, the 1st and 5th "
            "percentile over queries, the share of queries below 0.5, and recall@10 in the hardest / easiest "
            "quintile of queries by local intrinsic dimensionality (LID, MLE over the 100 nearest) and by relative "
            "contrast (RC, mean distance / 10th-neighbour distance).", "",
            *_table(["dataset", "series", "ef", "R@10", "strict", "p1", "p5", "share < 0.5",
                     "LID hardest / easiest", "RC hardest / easiest"], body), ""]


def scaling_lines(rows: Sequence[dict[str, Any]], queries: Sequence[dict[str, Any]]) -> list[str]:
    """Batch QPS against thread count in both modes at each series' focus point, with the CPU utilisation that
    shows the parallelism that really ran."""
    body, counts = [], set()
    for row in focus_rows(rows):
        q = _record_of(queries, row)
        callers, pool = q.get("qps") or {}, q.get("qps_pool") or {}
        counts |= {int(t) for t in callers}
        body.append((row, callers, pool))
    if not body:
        return []
    ts = sorted(counts)
    header = ["dataset", "series", "ef"] + [f"callers {t}t (CPU)" for t in ts] + [f"pool {t}t (CPU)" for t in ts
                                                                                   if t > 1]
    table = []
    for row, callers, pool in body:
        cells: list[Any] = [row["dataset"], row["series"], row["ef_search"]]
        for mode, ts_ in ((callers, ts), (pool, [t for t in ts if t > 1])):
            for t in ts_:
                fig = mode.get(str(t))
                cells.append(f"{_fmt(fig['median'])} ({_fmt(fig.get('cpu_utilization'), 2)})" if fig else "—")
        table.append(cells)
    return ["## Thread scaling", "",
            "Batch QPS (median over builds) in two modes: **callers**: the batch split across N caller threads, "
            "every library pool pinned to 1 thread inside each worker; **pool**: one caller, the library's own "
            "pool (faiss OpenMP, BLAS, hnswlib num_threads) at N threads. In brackets the process CPU time over "
            "wall time: about N when N threads really ran, about 1 for a backend without a pool.", "",
            *_table(header, table), ""]


# ------------------------------------------------------------------------------------------------------ metrics
def adr_rows(adr: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per ADR result: backend ('common' for the cases measured once), case, protocol, the judged
    latency, the ADR's bound, the verdict and the search recall where there is one (``plots/adr.csv``)."""
    rows = []
    for r in sorted(adr, key=lambda r: -1 if r.get("backend") == "common" else BACKEND_ORDER.get(r.get("backend"), 9)):
        if r.get("status") != "ok":
            continue
        for case, c in r["cases"].items():
            if c.get("status") != "ok":
                continue
            target = TARGETS.get(case)
            for protocol, p in c["protocols"].items():
                rows.append({"backend": r["backend"], "tier": r.get("tier", ""), "case": case, "protocol": protocol,
                             "judged_ms": p["judged_ms"], "target_ms": target.max_ms if target else None,
                             "verdict": p["verdict"], "recall_at_10": c.get("recall_at_10")})
    return rows


def adr_verdicts(adr: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per backend, how many ADR targets pass and fail under each protocol (``adr_pass``, ``adr_fail``,
    ``honest_pass``, ``honest_fail``); the cases measured once (embedding, distance, quantize) count for every
    backend, as in the report's summary. Cases without a target or not available count in neither."""
    out: dict[str, dict[str, int]] = {}
    for r, cases in backend_cases(adr):
        counts = {}
        for protocol in ("adr", "honest"):
            got = [c["protocols"][protocol]["verdict"] for c in cases.values() if c.get("status") == "ok"]
            counts[f"{protocol}_pass"], counts[f"{protocol}_fail"] = got.count("pass"), got.count("fail")
        out[r["backend"]] = counts
    return out


def best_codec(qrows: Sequence[dict[str, Any]], target: float = CODEC_RECALL) -> dict[str, Any] | None:
    """The headline codec of one dataset's quantization rows: the fewest bytes per vector whose recall@10 reaches
    ``target`` at any re-rank factor of the sweep (x1 is the codes alone), ties broken by the smaller factor, then
    the higher recall; None when no codec reaches it. Re-ranking reads the float vectors (from disk, not counted in
    bytes per vector) for ``factor x k`` candidates per query."""
    reaching = [q for q in qrows if q["recall_at_10"] is not None and q["recall_at_10"] >= target]
    return min(reaching, key=lambda q: (q["bytes_per_vector"], q["rerank"], -q["recall_at_10"]), default=None)


def _config(row: dict[str, Any]) -> str:
    """A sweep row's configuration in one metrics cell: backend, build and ef_search ('numpy exact' for a flat
    scan, which has no ef)."""
    where = f" ef {row['ef_search']}" if row["graph"] == "hnsw" else ""
    return f"{row['backend']} {build_label(row['build'], row['graph'])}{where}"


def metrics_summary(data: dict[str, list[dict[str, Any]]], rows: Sequence[dict[str, Any]],
                    qrows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The headline figures ``dvc metrics show`` / ``dvc exp show`` compare between experiments (the long tables
    are CSV files beside the plots):

    - ``qps.<dataset>.r90|r95|r99``: the best single-thread batch QPS over every backend, build and ef_search whose
      recall@10 (median build) reaches 0.90 / 0.95 / 0.99, and ``config.<dataset>.r90|...`` the run that made it
      (backend, build, ef_search); a target nothing reaches is null and 'not reached';
    - ``codec.<dataset>``: ``bytes_per_vector`` and ``spec`` (codec and re-rank factor) of :func:`best_codec`;
    - ``verdicts.<backend>``: ADR targets passed and failed under each protocol (:func:`adr_verdicts`).
    """
    out: dict[str, Any] = {"qps": {}, "config": {}, "codec": {}, "verdicts": adr_verdicts(data["adr"])}
    for (dataset,), runs in group(rows, "dataset").items():
        timed = [r for r in runs if r["qps"] and r["recall_at_10"] is not None]
        for target in RECALL_TARGETS:
            best = max((r for r in timed if r["recall_at_10"] >= target), key=lambda r: r["qps"], default=None)
            key = f"r{round(target * 100)}"  # no '.' in keys: DVC joins nested keys with '.'
            out["qps"].setdefault(dataset, {})[key] = round(best["qps"], 1) if best else None
            out["config"].setdefault(dataset, {})[key] = _config(best) if best else "not reached"
    for (dataset,), runs in group(qrows, "dataset").items():
        best = best_codec(runs)
        out["codec"][dataset] = {
            "bytes_per_vector": best["bytes_per_vector"] if best else None,
            "spec": (f"{best['codec']}, " + (f"rerank x{best['rerank']}" if best["rerank"] > 1 else "codes only"))
            if best else f"none reaches recall@10 {CODEC_RECALL:.2f}"}
    return out


# ------------------------------------------------------------------------------------------------------- report
def write_report(root: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                 datasets_dir: str | os.PathLike[str] | None = None, params: dict[str, Any] | None = None) -> Path:
    """Write every file of :data:`OUTPUTS` under ``out_dir`` (report.md, metrics.json, plots/*.csv and
    plots/*.png) from the results of ``params``' grid (:func:`select_results`); return the report's path."""
    out = Path(out_dir)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    data = select_results(load_results(root), params, root)
    bench = (params or {}).get("bench", {}) or {}
    threshold = float(bench.get("noise_threshold", 0.2))
    rows = query_rows(data["queries"], threshold)
    brows = build_rows(data["builds"])
    ops = operating_table(rows)
    qrows = quant_rows(data["quant"])
    _write_csv(plots / "recall_qps.csv", rows, ["dataset", "series", "backend", "build", "ef_search", "ef_effective",
                                                "recall_at_1", "recall_at_10", "recall_at_10_min", "recall_at_10_max",
                                                "recall_strict_10", "recall_at_100", "recall_p5", "qps", "qps_min",
                                                "qps_max", "qps_2t", "qps_pool_2t", "qps_spread", "p50_ms", "p99_ms",
                                                "noisy", "pareto"])
    _write_csv(plots / "quantization.csv", qrows, ["dataset", "codec", "rerank", "bytes_per_vector", "compression",
                                                   "recall_at_10", "recall_at_1", "qps"])
    _write_csv(plots / "builds.csv", brows, ["dataset", "backend", "build", "builds", "build_s", "build_s_min",
                                             "build_s_max", "inserts_per_s", "bytes_serialized", "bytes_analytic",
                                             "bytes_rss", "threads", "cpu"])
    _write_csv(plots / "operating_points.csv", ops, ["dataset", "backend", "build", "graph", "target", "ef_search",
                                                     "recall_at_10", "qps", "qps_2t", "p50_ms"])
    _write_csv(plots / "adr.csv", adr_rows(data["adr"]), ["backend", "tier", "case", "protocol", "judged_ms",
                                                          "target_ms", "verdict", "recall_at_10"])
    png = plot_recall_qps(rows, plots)
    qpng = plot_quant(qrows, plots)
    metrics = metrics_summary(data, rows, qrows)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    lines = ["# ruvector-lab benchmark report", "",
             "Generated by `ruvector-lab report` from the result JSON under `data/results` (schemas: "
             "`ruvector_lab/bench/results.py`). Timings come from one run on a shared machine: compare ratios "
             "and medians, not absolute times.", ""]
    env_rec = next((r.get("environment") for group_ in data.values() for r in group_ if r.get("environment")), None)
    if env_rec:
        libs = ", ".join(f"{k} {v}" for k, v in env_rec["libraries"].items() if v)
        lines += [f"Machine: {env_rec['cpu_model']}, {env_rec['cores_usable']} usable cores of "
                  f"{env_rec['cores_total']}, {env_rec['memory_bytes'] / 2**30:.0f} GiB; Python {env_rec['python']}.",
                  f"Libraries: {libs}.", ""]
    if params:
        lines += [f"Measurement: {bench.get('n_queries')} queries per setting; every graph configuration built "
                  f"{bench.get('build_repeats', 1)} times in seeded insertion orders (base sets over "
                  f"{bench.get('build_repeats_max_train')} vectors once; flat indexes once), {bench.get('repeats')} "
                  "timing pass(es) per build; figures are the median build's (recall) or the median over builds "
                  "(QPS, build time) with min–max over builds in brackets. Single-query latency after "
                  f"{bench.get('warmup')} warm-up queries, one caller, every pool pinned to 1. Thread scaling in two "
                  "modes: the batch split across N caller threads with every library pool pinned to 1 *inside each "
                  "worker thread* (OpenMP counts are per thread), and one caller with the library's own pool at N. "
                  f"Figures whose (max − min) / median exceeds {threshold:.0%} are flagged noisy.", ""]
    lines += noise_lines(data["builds"], rows)
    lines += ["## Summary", "", *summary_lines(data["adr"], ops), ""]

    # datasets
    lines += ["## Datasets", ""]
    ds_rows = []
    for path in sorted(Path(datasets_dir).glob("*.json")) if datasets_dir else []:
        d = results.read_json(path) or {}
        attrs = d.get("attrs", {})
        note = ""
        if attrs.get("texts_total"):
            note = (f"{attrs['texts_kept']:,} of {attrs['texts_total']:,} WordNet texts embedded "
                    f"(subsampled so the pipeline fits its time budget; {attrs.get('precision')} MiniLM); "
                    "WordNet 3.0 license notice kept in the HDF5 attribute `license`")
        ds_rows.append([d.get("name"), d.get("n_train"), d.get("n_test"), d.get("dimensions"), d.get("metric"),
                        d.get("gt_k"), f"{d.get('gt_seconds', 0):.1f}", note or attrs.get("source", "")])
    lines += [*_table(["dataset", "base", "queries", "dim", "metric", "GT k", "GT s", "notes"], ds_rows), ""]

    lines += ["## ADR-006 targets", "", *adr_tables(data["adr"]), ""]

    lines += ["## Operating points", "",
              "Per dataset, backend and build: the cheapest ef_search (the smallest in the sweep) whose recall@10 "
              "reaches 0.90, 0.95 and 0.99, shown as `ef_search: QPS at 1 thread / 2 threads`; — means no "
              "ef_search in the sweep reached it. Exact (flat) backends ignore ef_search and have recall 1.", ""]
    op_rows = []
    for (dataset, backend, build), targets in group(ops, "dataset", "backend", "build").items():
        cells = []
        for t in targets:
            if t["qps"] is None:
                cells.append("—")
            else:
                ef = t["ef_search"] if t["graph"] == "hnsw" else "any ef"
                cells.append(f"{ef}: {_fmt(t['qps'])} / {_fmt(t['qps_2t'])} (R {t['recall_at_10']:.3f})")
        op_rows.append([dataset, backend, build_label(build, targets[0]["graph"]), *cells])
    lines += [*_table(["dataset", "backend", "build", *[f"recall@10 >= {t:.2f}" for t in RECALL_TARGETS]],
                      op_rows), ""]

    lines += ["## Recall vs QPS", ""]
    lines += [f"![recall vs QPS, one panel per dataset](plots/{png.name})", ""]
    lines += ["Full sweep (every ef_search). R@10 is the median build's, with min–max over builds; 'strict' counts "
              "ids only (no distance ties); p5 is the 5th percentile of per-query recall@10. QPS 1t is the median over "
              "builds with min–max; 2t splits the batch over 2 caller threads (pools pinned to 1 in each), pool 2t "
              "runs one caller with the library's pool at 2. ef is the effective ef (a graph search needs ef >= k; "
              "R@100 runs at ef = max(ef_search, 100)). 'noisy' names figures over the noise threshold.", ""]
    for r in rows:
        r["label"] = build_label(r["build"], r["graph"])
        r["ef_cell"] = ("—" if r["ef_effective"] is None else str(r["ef_effective"]) if r["ef_effective"] ==
                        r["ef_search"] else f"{r['ef_search']} → {r['ef_effective']}")
        r["r10_cell"] = _range(r["recall_at_10"], r["recall_at_10_min"], r["recall_at_10_max"])
        r["qps_cell"] = _range(r["qps"], r["qps_min"], r["qps_max"])
        r["frontier"] = "yes" if r["pareto"] else ""
    sweep_cols = ["dataset", "backend", "label", "ef_cell", "recall_at_1", "r10_cell", "recall_strict_10",
                  "recall_p5", "recall_at_100", "qps_cell", "qps_2t", "qps_pool_2t", "p50_ms", "p99_ms", "noisy",
                  "frontier"]
    lines += [*_table(["dataset", "backend", "build", "ef", "R@1", "R@10", "strict", "p5", "R@100", "QPS 1t",
                       "QPS 2t", "pool 2t", "p50 ms", "p99 ms", "noisy", "Pareto"],
                      [[r[c] for c in sweep_cols] for r in rows]), ""]

    lines += tail_lines(rows, data["queries"])
    lines += scaling_lines(rows, data["queries"])

    lines += ["## Builds and memory", "",
              "Build time is the median over builds (min–max). Bytes per vector three ways: the serialized index, "
              "the analytic size of the structure (vectors or codes + graph links + id maps), and the growth of "
              "resident memory while the index is built in a fresh child process (the index's own memory, not "
              "the benchmark's). CPU is process CPU time over wall time while building.", ""]
    absent = [f"{b['dataset']['name']}/{b['backend']}/"
              f"{results.build_key(b['build']['m'], b['build']['ef_construction'], b['build']['quantization'])}: "
              f"{b.get('reason')}" for b in data["builds"] if b.get("status") != "ok"]
    lines += [*_table(["dataset", "backend", "build", "builds", "build s", "inserts/s", "B/vec serialized",
                       "B/vec analytic", "B/vec RSS", "threads", "CPU"],
                      [[b["dataset"], b["backend"], b["build"], b["builds"],
                        _range(b["build_s"], b["build_s_min"], b["build_s_max"]), b["inserts_per_s"],
                        b["bytes_serialized"], b["bytes_analytic"], b["bytes_rss"], b["threads"], b["cpu"]]
                       for b in brows]), ""]
    notes = [f"- {b['dataset']}/{b['backend']}/{b['build']}: {b['memory_note']}" for b in brows if b["memory_note"]]
    if notes:
        lines += ["Memory not measured in a child process:", "", *notes, ""]
    if absent:
        lines += ["Not measured (absent from the grid, not faked; the reason says whether the capability is missing "
                  "or the params' time budget left it out):", "", *[f"- {a}" for a in absent], ""]

    lines += ["## Quantization trade-offs", "",
              "Brute force over the codes, then the best `rerank x k` candidates re-scored with the float vectors "
              "(x1: no re-ranking). bytes/vector counts the codes plus the codebooks shared over the base set.", ""]
    lines += _table(["dataset", "codec", "bytes/vector", "compression", "rerank", "recall@10", "recall@1",
                     "encode/s", "quantize p50 ms"],
                    [[q["dataset"], q["codec"], q["bytes_per_vector"], q["compression"], f"x{q['rerank']}",
                      q["recall_at_10"], q["recall_at_1"], q["encode_per_s"], q["quantize_p50_ms"]] for q in qrows])
    qabsent = [f"{q['dataset']['name']}/{q['spec']}: {q.get('reason')}" for q in data["quant"]
               if q.get("status") != "ok"]
    if qabsent:
        lines += ["", "Codecs not available:", "", *[f"- {a}" for a in qabsent]]
    if qrows:
        lines += ["", f"![quantization, one panel per dataset](plots/{qpng.name})"]
    lines.append("")
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    log.info("report written to %s", path)
    return path
