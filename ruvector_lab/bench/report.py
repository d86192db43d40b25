"""The report stage: gather every result JSON into results/report.md, results/metrics.json, plot data (CSV, for
``dvc plots show``) and PNG plots (recall vs QPS per dataset; bytes per vector vs recall)."""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import results
from .metrics import operating_points, pareto_frontier
from .targets import TARGETS

log = logging.getLogger(__name__)

RECALL_TARGETS = (0.90, 0.95, 0.99)
#: the runtime's detection order, for tables
BACKEND_ORDER = {"faiss": 0, "hnswlib": 1, "ruvector": 2, "wasm": 3, "numpy": 4}


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


def query_rows(queries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per finished query run: dataset, backend, build key, ef_search, recalls, QPS, latency."""
    rows = []
    for q in queries:
        if q.get("status") != "ok":
            continue
        build = q["build"]
        key = results.build_key(build["m"], build["ef_construction"], build["quantization"])
        qps = q.get("qps", {})
        rows.append({
            "dataset": q["dataset"]["name"], "backend": q["backend"], "build": key, "graph": q.get("graph", "hnsw"),
            "series": f"{q['backend']} {build_label(key, q.get('graph', 'hnsw'))}",
            "ef_search": q["query"]["ef_search"],
            "recall_at_1": q["recall"].get("1"), "recall_at_10": q["recall"].get("10"),
            "recall_at_100": q["recall"].get("100"),
            "qps": qps.get("1", {}).get("median"), "qps_2t": qps.get("2", {}).get("median"),
            "qps_spread": qps.get("1", {}).get("rel_spread"),
            "p50_ms": q["latency_ms"]["p50"], "p99_ms": q["latency_ms"]["p99"],
        })
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


def summary_lines(adr: Sequence[dict[str, Any]], ops: Sequence[dict[str, Any]]) -> list[str]:
    """Bullet points: ADR verdicts per backend and protocol, the recall the ADR's own search setting reaches, and
    per dataset the fastest build (1 thread) reaching recall@10 0.95."""
    out = []
    common = next((r for r in adr if r.get("backend") == "common"), {"cases": {}})
    for r in sorted(adr, key=lambda r: BACKEND_ORDER.get(r.get("backend"), 9)):
        if r.get("backend") == "common" or r.get("status") != "ok":
            continue
        cases = {**common["cases"], **r["cases"]}
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
def plot_recall_qps(rows: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One PNG per dataset: recall@10 against single-thread batch QPS (log), one line per backend and build,
    with each series' Pareto frontier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for (dataset,), runs in group(rows, "dataset").items():
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        for (series,), pts in group(runs, "series").items():
            pts = [p for p in pts if p["qps"]]
            front = pareto_frontier(pts, "recall_at_10", "qps")
            ax.plot([p["recall_at_10"] for p in front], [p["qps"] for p in front], marker="o", label=series)
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries per second (1 thread, batch)")
        ax.set_title(f"{dataset}: recall vs QPS (up and right is better)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        path = out_dir / f"recall_qps_{dataset}.png"
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def plot_quant(rows: Sequence[dict[str, Any]], out_dir: Path) -> Path | None:
    """One PNG, one panel per dataset: bytes per vector (log) against recall@10 for each codec, one line per
    re-rank factor."""
    if not rows:
        return None
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


# ------------------------------------------------------------------------------------------------------ metrics
def metrics_summary(data: dict[str, list[dict[str, Any]]], op_table: Sequence[dict[str, Any]],
                    qrows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The numbers ``dvc metrics show`` lists: ADR latencies and verdicts, operating points, builds, codecs."""
    out: dict[str, Any] = {"adr": {}, "operating_points": {}, "builds": {}, "quantization": {}}
    for r in data["adr"]:
        if r.get("status") != "ok":
            continue
        cases = r["cases"]
        out["adr"][r["backend"]] = {
            case: {"adr_ms": c["protocols"]["adr"]["judged_ms"], "honest_ms": c["protocols"]["honest"]["judged_ms"],
                   **({"recall_at_10": c["recall_at_10"]} if "recall_at_10" in c else {})}
            for case, c in cases.items() if c.get("status") == "ok"
        }
    for row in op_table:
        slot = out["operating_points"].setdefault(row["dataset"], {}).setdefault(f"{row['backend']}/{row['build']}",
                                                                                  {})
        slot[row["target"]] = {"ef_search": row["ef_search"], "qps": row["qps"]}
    for b in data["builds"]:
        if b.get("status") == "ok":
            key = results.build_key(b["build"]["m"], b["build"]["ef_construction"], b["build"]["quantization"])
            out["builds"].setdefault(b["dataset"]["name"], {})[f"{b['backend']}/{key}"] = {
                "build_time_s": b["build_time_s"], "inserts_per_s": b["inserts_per_s"],
                "bytes_per_vector": b["bytes_per_vector"], "peak_rss_mb": b["peak_rss_bytes"] / 2**20}
    for q in qrows:
        out["quantization"].setdefault(q["dataset"], {}).setdefault(q["codec"], {})[f"rerank_x{q['rerank']}"] = {
            "bytes_per_vector": q["bytes_per_vector"], "recall_at_10": q["recall_at_10"]}
    return out


# ------------------------------------------------------------------------------------------------------- report
def write_report(root: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                 datasets_dir: str | os.PathLike[str] | None = None, params: dict[str, Any] | None = None) -> Path:
    """Write report.md, metrics.json, plots/*.csv and plots/*.png under ``out_dir``; return the report's path."""
    out = Path(out_dir)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    data = load_results(root)
    rows = query_rows(data["queries"])
    ops = operating_table(rows)
    qrows = quant_rows(data["quant"])
    _write_csv(plots / "recall_qps.csv", rows, ["dataset", "series", "backend", "build", "ef_search", "recall_at_1",
                                                "recall_at_10", "recall_at_100", "qps", "qps_2t", "qps_spread",
                                                "p50_ms", "p99_ms", "pareto"])
    _write_csv(plots / "quantization.csv", qrows, ["dataset", "codec", "rerank", "bytes_per_vector", "compression",
                                                   "recall_at_10", "recall_at_1", "qps"])
    pngs = plot_recall_qps(rows, plots)
    qpng = plot_quant(qrows, plots)
    metrics = metrics_summary(data, ops, qrows)
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
        lines += [f"Measurement: {params.get('bench', {}).get('n_queries')} queries per setting, "
                  f"{params.get('bench', {}).get('repeats')} repeats (median shown), single-query latency after "
                  f"{params.get('bench', {}).get('warmup')} warm-up queries; batch QPS with the batch split across 1 "
                  "or 2 caller threads, library thread pools (BLAS/OpenMP, faiss) pinned to 1 per caller.", ""]

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
    lines += [f"![{p.stem}](plots/{p.name})" for p in pngs] + [""]
    lines += ["Full sweep (every ef_search):", ""]
    for r in rows:
        r["label"] = build_label(r["build"], r["graph"])
    for r in rows:
        r["spread_pct"] = f"{100 * r['qps_spread']:.0f}%" if r.get("qps_spread") is not None else None
        r["frontier"] = "yes" if r["pareto"] else ""
    sweep_cols = ["dataset", "backend", "label", "ef_search", "recall_at_1", "recall_at_10", "recall_at_100", "qps",
                  "spread_pct", "qps_2t", "p50_ms", "p99_ms", "frontier"]
    lines += ["QPS spread is (max - min) / median over the repeats; 'Pareto' marks the points on the series' "
              "recall-vs-QPS frontier.", ""]
    lines += [*_table(["dataset", "backend", "build", "ef_search", "R@1", "R@10", "R@100", "QPS 1t", "spread",
                       "QPS 2t", "p50 ms", "p99 ms", "Pareto"], [[r[c] for c in sweep_cols] for r in rows]), ""]

    lines += ["## Builds", ""]
    brow, absent = [], []
    for b in data["builds"]:
        key = results.build_key(b["build"]["m"], b["build"]["ef_construction"], b["build"]["quantization"])
        if b.get("status") != "ok":
            absent.append(f"{b['dataset']['name']}/{b['backend']}/{key}: {b.get('reason')}")
            continue
        brow.append([b["dataset"]["name"], b["backend"], key, b["build_time_s"], b["inserts_per_s"],
                     b["bytes_per_vector"], b["peak_rss_bytes"] / 2**20, b["threads"].get("threads")])
    lines += [*_table(["dataset", "backend", "build", "build s", "inserts/s", "bytes/vector", "peak RSS MiB",
                       "threads"], brow), ""]
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
    if qpng:
        lines += ["", f"![quantization](plots/{qpng.name})"]
    lines.append("")
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    log.info("report written to %s", path)
    return path
