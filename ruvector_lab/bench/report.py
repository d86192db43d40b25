"""The report stage: gather the result JSON of the parameters' grid into results/report.md, results/metrics.json
(the headline figures compared between experiments), the long tables as CSV (also the data of ``dvc plots show``)
and PNG plots (recall vs QPS; bytes per vector vs recall for the codec sweep and for the quantized HNSW builds),
one file per kind with a panel per dataset, so every experiment writes the same files whatever datasets it runs
(dvc.yaml declares each one, see :data:`OUTPUTS`).

Results are read only through :mod:`ruvector_lab.bench.tables` (validated against
:mod:`ruvector_lab.bench.schemas`, as polars frames); the figures derived from them (effective ef, Pareto
frontiers, operating points, noise flags, the ADR cases each backend sees, the quantized builds against the flat
scan) come from there too, and why a codec loses to a smaller one from :mod:`ruvector_lab.bench.quant_findings`.
This module formats: it turns the frames into rows, Markdown, CSV and plots.

Hosts: a run may spread over several machines. Every flat row carries the host that measured it (``host``,
``host_name``, ``max_concurrent``); frontiers, operating points, the facade's overhead summary and the plots' curves
are per host, a table whose rows come from several hosts shows a host column, and the "Hosts" section lists the
hosts and the records measured beside another measuring task on the same host (co-scheduled)."""

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
import polars as pl

from . import quant_findings, results, tables
from .metrics import pareto_frontier
from .targets import TARGETS

log = logging.getLogger(__name__)

RECALL_TARGETS = tables.RECALL_TARGETS
#: the recall@10 a codec must reach (with its best re-ranking) to be a dataset's headline codec in metrics.json
CODEC_RECALL = 0.95
#: every file write_report writes under its output folder, whatever the results: dvc.yaml declares each one as an
#: output of the report stage (tests/test_dvc_views.py keeps the two in step), so an experiment on fewer datasets
#: rewrites the same files instead of leaving some of the committed ones deleted
OUTPUTS = ("report.md", "metrics.json", "plots/recall_qps.csv", "plots/operating_points.csv",
           "plots/quantization.csv", "plots/builds.csv", "plots/adr.csv", "plots/recall_qps.png",
           "plots/quant_bytes_recall.png", "plots/qhnsw_bytes_recall.png", "plots/peers.csv")


# ------------------------------------------------------------------------------------------------------ loading
def load_results(root: str | os.PathLike[str]) -> tables.Tables:
    """Every build, query, quantization and ADR record under ``root``, validated, as :class:`tables.Tables`."""
    return tables.load(root)


def select_results(data: tables.Tables, params: dict[str, Any] | None,
                   root: str | os.PathLike[str] | None = None) -> tables.Tables:
    """The results of the parameters' own grid (datasets, backends, builds, ef_search and k, codecs):
    :meth:`tables.Tables.select`. data/results outlives experiments, so without this an experiment's report and
    metrics would mix in runs an earlier experiment made for a grid ``params`` no longer lists, and
    ``dvc exp show`` could not tell two experiments apart. ``root`` is unused (kept for callers)."""
    del root
    return data.select(params)


def _noise_label(name: str) -> str:
    """A runner noise flag ('qps_1t', 'qps_pool_2t', 'latency_p50') as the report names the figure."""
    if name == "latency_p50":
        return "p50"
    if name.startswith("qps_pool_"):
        return f"QPS pool {name[len('qps_pool_'):]}"
    return f"QPS {name[len('qps_'):]}" if name.startswith("qps_") else name


def query_rows(queries: pl.DataFrame, noise_threshold: float = 0.2) -> list[dict[str, Any]]:
    """One flat row per finished query run (rows of :attr:`tables.Tables.queries`): dataset, backend, build key,
    ef_search (and the ef that really ran), recall (median build, min-max over builds, strict, the per-query tail),
    QPS in both thread modes, latency, whether a figure's spread exceeds ``noise_threshold``, whether the run
    is on its series' Pareto frontier (recall vs QPS; per host: :func:`tables.mark_pareto`) and the host that
    measured it (``host``, ``host_name``, ``max_concurrent``: :data:`tables.HOST_COLUMNS`)."""
    noisy = tables.flag_noise(queries, noise_threshold).to_list()
    frame = tables.mark_pareto(queries.with_columns(pl.Series("noisy", noisy, dtype=pl.List(pl.String))),
                               by=("dataset", "series"), x="recall_at_10", y="qps_1")
    frame = frame.sort(["dataset", "backend", "build", "ef_search"], maintain_order=True)
    rows = []
    for q in frame.to_dicts():
        rows.append({
            "path": q["path"], "dataset": q["dataset"], "backend": q["backend"], "build": q["build"],
            "graph": q["graph"], "series": q["series"], "ef_search": q["ef_search"], "ef_effective": q["ef_effective"],
            "ef_effective_big": q["ef_effective_big"], "builds": q["n_builds"], "recall_at_1": q["recall_at_1"],
            "recall_at_10": q["recall_at_10"], "recall_at_100": q["recall_at_100"],
            "recall_at_10_min": q["recall_at_10_min"], "recall_at_10_max": q["recall_at_10_max"],
            "recall_strict_10": q["recall_strict_at_10"], "recall_p1": q["recall_p1"], "recall_p5": q["recall_p5"],
            "share_below_half": q["share_below_0.5"], "qps": q["qps_1"], "qps_min": q["qps_1_min"],
            "qps_max": q["qps_1_max"], "qps_spread": q["qps_1_rel_spread"], "qps_2t": q.get("qps_2"),
            "qps_pool_2t": q.get("qps_pool_2"), "p50_ms": q["p50_ms"], "p99_ms": q["p99_ms"],
            "cpu_1t": q.get("cpu_1"), "noisy": ", ".join(_noise_label(n) for n in q["noisy"]),
            "pareto": q["pareto"], "direct_p50_ms": q["direct_p50_ms"], "direct_p99_ms": q["direct_p99_ms"],
            "facade_paired_p50_ms": q["facade_paired_p50_ms"], "direct_qps": q["direct_qps_1"],
            "facade_paired_qps": q["facade_paired_qps_1"], "latency_ratio": q["facade_latency_ratio"],
            "qps_ratio": q["facade_qps_ratio"], **_host_of(q)})
    return rows


def _host_of(row: dict[str, Any]) -> dict[str, Any]:
    """The host columns of a frame row (:data:`tables.HOST_COLUMNS`; None where the frame has none)."""
    return {c: row.get(c) for c in tables.HOST_COLUMNS}


def multi_host(rows: Sequence[dict[str, Any]]) -> bool:
    """Whether ``rows`` (flat rows carrying ``host``) come from more than one host: a table of them then shows
    the host, and a curve or ratio over them is drawn or computed per host."""
    return len({r.get("host") for r in rows}) > 1


def host_suffix(row: dict[str, Any], show: bool) -> str:
    """`` on <host name>`` when ``show`` (the rows beside this one come from several hosts), else empty."""
    return f" on {row.get('host_name') or tables.UNRECORDED_HOST}" if show else ""


def _host_cell(row: dict[str, Any], show: bool) -> list[Any]:
    """The host cell of a table row: ``[host name]`` when the table shows hosts (``show``), else nothing."""
    return [row.get("host_name") or tables.UNRECORDED_HOST] if show else []


def co_scheduled_note(row: dict[str, Any]) -> str:
    """``co-scheduled (N at once)`` for a row measured while other measuring tasks ran on its host, else empty."""
    n = row.get("max_concurrent")
    return f"co-scheduled ({n} at once)" if n is not None and n > 1 else ""


def build_label(key: str, graph: str) -> str:
    """How a build is named in tables (:func:`tables.build_label`): its key for graphs; 'exact' for a flat float
    scan; the key and 'flat code scan' for a flat quantized one."""
    return tables.build_label(key, graph)


def group(rows: Sequence[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """Rows grouped by the values of ``keys`` (insertion order kept; a key a row lacks counts as None)."""
    out: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        out[tuple(row.get(k) for k in keys)].append(row)
    return dict(out)


def operating_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each dataset, backend and build, the cheapest ef_search reaching recall@10 of 0.90, 0.95 and 0.99
    (:func:`tables.operating_points`, per host: a build two hosts timed has a row per host), from
    :func:`query_rows`."""
    columns = ["dataset", "backend", "build", "graph", "ef_search", "recall_at_10", "qps", "qps_2t", "p50_ms",
               "host", "host_name", "max_concurrent"]
    frame = pl.DataFrame([{c: r.get(c) for c in columns} for r in rows], schema={
        "dataset": pl.String, "backend": pl.String, "build": pl.String, "graph": pl.String, "ef_search": pl.Int64,
        "recall_at_10": pl.Float64, "qps": pl.Float64, "qps_2t": pl.Float64, "p50_ms": pl.Float64,
        **tables.HOST_COLUMNS})
    # the host's name rides along as a key, so a target no row of that host reaches still names the host
    points = tables.operating_points(frame, by=("dataset", "backend", "build", "graph", "host_name"),
                                     targets=RECALL_TARGETS, speed="qps")
    return [{"dataset": p["dataset"], "backend": p["backend"], "build": p["build"], "target": f"{p['target']:.2f}",
             "ef_search": p["ef_search"], "recall_at_10": p["recall_at_10"], "qps": p["qps"], "qps_2t": p["qps_2t"],
             "p50_ms": p["p50_ms"], "graph": p["graph"], **_host_of(p)} for p in points.to_dicts()]


def quant_rows(codecs: pl.DataFrame) -> list[dict[str, Any]]:
    """One flat row per (dataset, codec, re-rank factor) of the quantization sweep (:attr:`tables.Tables.codecs`),
    with the host that measured it."""
    return [{"dataset": q["dataset"], "codec": q["codec"], "rerank": q["factor"],
             "bytes_per_vector": q["bytes_per_vector"], "compression": q["compression"],
             "recall_at_10": q["recall_at_10"], "recall_at_1": q["recall_at_1"], "qps": q["qps"],
             "encode_per_s": q["encode_per_s"], "quantize_p50_ms": q["quantize_p50_ms"], **_host_of(q)}
            for q in codecs.to_dicts()]


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


def _adr_records(t: tables.Tables) -> list[dict[str, Any]]:
    """The ADR records (backend, tier, status, reason) of every backend but 'common', in registry order."""
    records = t.files.filter((pl.col("kind") == "adr") & (pl.col("backend") != "common")).to_dicts()
    return sorted(records, key=lambda r: tables.backend_rank(r["backend"]))


def _case_dicts(frame: pl.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """ADR case rows (of :attr:`tables.Tables.adr` or :func:`tables.adr_view`) as backend -> case -> {status,
    reason, protocols {name: {judged_ms, verdict}}, recall_at_10 (where measured), info, measured_on}, in order."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in frame.to_dicts():
        case = out.setdefault(r["backend"], {}).setdefault(r["case"], {"status": r["status"]})
        case["measured_on"] = r.get("measured_on", r["backend"])
        if r["status"] != "ok":
            case["reason"] = r["reason"]
            continue
        case.setdefault("protocols", {})[r["protocol"]] = {"judged_ms": r["judged_ms"], "verdict": r["verdict"]}
        if r["recall_at_10"] is not None:
            case["recall_at_10"] = r["recall_at_10"]
        if r["info"] is not None:
            case["info"] = json.loads(r["info"])
    return out


def adr_tables(t: tables.Tables) -> list[str]:
    """Markdown tables of the ADR suite, one per protocol: cases down, backends across (each backend's column
    naming its host when the suite's records come from several hosts)."""
    records = _adr_records(t)
    measured = t.files.filter((pl.col("kind") == "adr") & (pl.col("status") == "ok")).to_dicts()
    hosted = multi_host(measured)
    merged = _case_dicts(tables.adr_view(t.adr, [r["backend"] for r in records if r["status"] == "ok"]))
    common = _case_dicts(t.adr.filter(pl.col("backend") == "common")).get("common")
    has_common = not t.files.filter((pl.col("kind") == "adr") & (pl.col("backend") == "common")).is_empty()
    lines: list[str] = []
    for protocol, title in (("adr", "ADR protocol (one input repeated; judged on the mean, as the ADR's avgMs)"),
                            ("honest", "Honest protocol (distinct inputs; judged on p95)")):
        header = ["case (ADR target)", *[f"{r['backend']} ({r['tier'] or ''}{host_suffix(r, hosted)})"
                                         for r in records]]
        rows = []
        for case, target in TARGETS.items():
            row: list[Any] = [target.adr_text]
            for r in records:
                if r["status"] != "ok":
                    row.append("not available")
                    continue
                row.append(_case_cell(merged.get(r["backend"], {}).get(case), protocol))
            rows.append(row)
        lines += [f"### {title}", "", *_table(header, rows), ""]
    if has_common:
        common = common or {}
        where = next((host_suffix(r, hosted) for r in measured if r["backend"] == "common"), "")
        lines.append("Embedding, distance and quantize do not depend on the index backend: they are measured once"
                     f"{where} and shown under every backend. Pattern match under a backend is a PatternStore "
                     "(HNSW, k=10) on that backend; the exact list scan measured "
                     f"{_case_cell(common.get('pattern_match'), 'honest')} (honest).")
        emb = common.get("embed_single", {})
        if emb.get("status") == "ok":
            lines.append(f"Embedder: {emb.get('info', {})}.")
        lines += ["", *embedding_matrix_lines(t)]
    missing = [f"{r['backend']}: {r['reason']}" for r in records if r["status"] != "ok"]
    if missing:
        lines += ["", "Backends not available here: " + "; ".join(missing)]
    return lines


def embedding_matrix_lines(t: tables.Tables) -> list[str]:
    """The embedding variants of the ADR suite (precision x threads x short or mixed-length texts), each judged on
    both protocols against its ADR target, with a mixed batch's cost over the same texts embedded apart."""
    matrix = tables.embedding_matrix(t.adr).filter(pl.col("status") == "ok")
    if matrix.is_empty():
        return []
    mark = {"pass": "pass", "fail": "**FAIL**"}
    out = []
    keys = ["case", "precision", "threads", "texts", "graph"]
    for key, rows in matrix.group_by(keys, maintain_order=True):
        by = {r["protocol"]: r for r in rows.to_dicts()}
        adr, honest = by.get("adr", {}), by.get("honest", {})
        ratio = honest.get("mixed_over_apart")
        out.append([*key, f"{adr.get('mean_ms', float('nan')):.3g} {mark.get(adr.get('verdict'), '')}",
                    f"{honest.get('p50_ms', float('nan')):.3g}",
                    f"{honest.get('p95_ms', float('nan')):.3g} {mark.get(honest.get('verdict'), '')}",
                    f"{ratio:.2f}" if ratio is not None else ""])
    header = ["case", "precision", "threads", "texts", "graph", "ADR protocol: mean ms", "honest p50 ms",
              "honest p95 ms (judged)", "mixed / apart (p50)"]
    return ["### Embedding: precision x threads x texts", "",
            "The ADR's embed cases under every precision and thread count, on distinct short sentences (as the ADR) "
            "and on batches of 30 short sentences with 2 long paragraphs (as users send them); *mixed / apart* is "
            "a mixed batch's p50 over the same texts embedded as two batches (short, long).", "",
            *_table(header, out), ""]


def backend_cases(t: tables.Tables) -> list[tuple[str, dict[str, dict[str, Any]]]]:
    """Each measured backend (in registry order) with its ADR cases merged over the cases measured once for all
    backends (embedding, distance, quantize; :func:`tables.adr_view`): the view both the summary and the verdict
    counts take. Each case is {status, protocols, recall_at_10, measured_on, ...}."""
    backends = [r["backend"] for r in _adr_records(t) if r["status"] == "ok"]
    merged = _case_dicts(tables.adr_view(t.adr, backends))
    return [(b, merged.get(b, {})) for b in backends]


def summary_lines(t: tables.Tables, ops: Sequence[dict[str, Any]]) -> list[str]:
    """Bullet points: ADR verdicts per backend and protocol, the recall the ADR's own search setting reaches, and
    per dataset the fastest build (1 thread) reaching recall@10 0.95 (per host when the dataset's operating points
    come from several: one host's QPS is never ranked against another's)."""
    out = []
    for backend, cases in backend_cases(t):
        verdicts = {}
        for protocol in ("adr", "honest"):
            got = {k: c["protocols"][protocol]["verdict"] for k, c in cases.items() if c.get("status") == "ok"}
            failed = [k for k, v in got.items() if v == "fail"]
            verdicts[protocol] = f"{list(got.values()).count('pass')} pass / {len(failed)} fail" + (
                f" ({', '.join(failed)})" if failed else "")
        absent = sorted(k for k, c in cases.items() if c.get("status") != "ok")
        search = cases.get("hnsw_search_k10", {})
        recall = (f"; search recall@10 at the ADR's setting {search['recall_at_10']:.3f}"
                  if "recall_at_10" in search and search.get("measured_on") == backend else "")
        out.append(f"- ADR targets on **{backend}**: ADR protocol {verdicts['adr']}, honest protocol "
                   f"{verdicts['honest']}{recall}" + (f"; not available: {', '.join(absent)}" if absent else ""))
    for (dataset,), reaching in group([o for o in ops if o["target"] == "0.95" and o["qps"]], "dataset").items():
        several = multi_host([o for o in ops if o["dataset"] == dataset])
        for (_host,), rows in group(reaching, "host").items():
            best = max(rows, key=lambda o: o["qps"])
            where = f"ef_search {best['ef_search']}" if best["graph"] == "hnsw" else "exact scan"
            out.append(f"- {dataset}{host_suffix(best, several)}: fastest at recall@10 >= 0.95 is {best['backend']} "
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
    line per backend and build, with each series' Pareto frontier; when the rows come from more than one host, one
    line per (series, host), labelled with the host's name (one host's frontier never joins another's points)."""
    path = out_dir / "recall_qps.png"
    several = multi_host(rows)
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
        for (series, _host), pts in group(runs, "series", "host").items():
            front = pareto_frontier(pts, "recall_at_10", "qps")
            line = ax.plot([p["recall_at_10"] for p in front], [p["qps"] for p in front], marker="o",
                           label=f"{series}{host_suffix(pts[0], several)}")
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


#: the memory parts of a quantized HNSW build per vector (:data:`tables.INDEX_STAT_COLUMNS`), as the report and
#: its plot name them
QHNSW_PARTS = {"code_bytes_per_vector": "codes", "graph_bytes_per_vector": "graph",
               "rerank_float_bytes_per_vector": "re-rank floats", "build_float_bytes_per_vector": "build floats"}


def _parts_text(row: dict[str, Any]) -> str:
    """A quantized build's memory per vector as its parts, ``codes 48 + graph 140 + re-rank floats 1536 B``
    (parts of zero bytes left out); empty when the record carries no split."""
    known = [(name, row[col]) for col, name in QHNSW_PARTS.items() if row.get(col) is not None]
    if not known:
        return ""
    shown = [f"{name} {value:.0f}" for name, value in known if value] or [f"{known[0][0]} 0"]
    return " + ".join(shown) + " B"


def plot_qhnsw(frame: pl.DataFrame, out_dir: Path) -> Path:
    """One PNG, ``qhnsw_bytes_recall.png``, one panel per dataset: each quantized HNSW build (:func:`tables.
    qhnsw_vs_scan`) at its best ef, bytes per vector (log; the sum of its parts, each part in the label) against
    recall@10, marker area growing with 1-thread QPS, colour by what the graph was built from; a grey cross at the
    flat scan of the same codes and re-ranking (codes plus re-rank floats, its recall). A build whose record has no
    memory split is placed at its serialized bytes per vector, hollow. With builds from several hosts the marker
    area is relative to the fastest build of the same host, and each label names its host."""
    path = out_dir / "qhnsw_bytes_recall.png"
    rows = [r for r in frame.to_dicts() if r["recall_at_10"] is not None
            and (r["bytes_per_vector"] or r["bytes_serialized"])]
    if not rows:
        return _empty_figure(path, "quantized HNSW builds")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    several = multi_host(rows)
    # marker areas compare QPS, so only within a host
    top: dict[Any, float] = {}
    for r in rows:
        top[r.get("host")] = max(top.get(r.get("host"), 0.0), r["qps_1"] or 0.0)
    from matplotlib.ticker import FuncFormatter

    colours = {"codes": "C0", "float": "C1"}
    by_dataset = group(rows, "dataset")
    cols = min(2, len(by_dataset))
    nrows = (len(by_dataset) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(6.5 * cols, 4.5 * nrows), dpi=100, squeeze=False)
    for ax, ((dataset,), pts) in zip(axes.flat, by_dataset.items(), strict=False):
        for graph in colours:  # one legend entry per graph source, whichever builds the panel has
            if any(p["graph"] == graph for p in pts):
                ax.scatter([], [], color=colours[graph], s=30,
                           label=f"graph built from the {'codes' if graph == 'codes' else 'float vectors'}")
        for p in pts:
            split = p["bytes_per_vector"] is not None
            x = p["bytes_per_vector"] if split else p["bytes_serialized"]
            # area grows with QPS: the fastest build (of its host) is the largest
            size = 20 + 180 * (p["qps_1"] or 0.0) / (top[p.get("host")] or 1.0)
            colour = colours.get(p["graph"], "C2")
            ax.scatter([x], [p["recall_at_10"]], s=size, color=colour if split else "none", edgecolors=colour)
            label = f"{p['backend']} {p['spec']} ef {p['ef_best']}, {_fmt(p['qps_1'])} QPS{host_suffix(p, several)}"
            label += f"\n{_parts_text(p)}" if split else "\n(serialized size: no memory split recorded)"
            ax.annotate(label, (x, p["recall_at_10"]), fontsize=6, xytext=(4, 3), textcoords="offset points")
            flat_x = None
            if p["code_bytes_per_vector"] is not None and p["rerank_float_bytes_per_vector"] is not None:
                flat_x = p["code_bytes_per_vector"] + p["rerank_float_bytes_per_vector"]
            if p["flat_recall_at_10"] is not None and flat_x:
                ax.scatter([flat_x], [p["flat_recall_at_10"]], marker="x", color="grey", s=30)
        ax.scatter([], [], marker="x", color="grey", s=30, label="flat scan, same codes and re-ranking")
        ax.set_xscale("log")
        left, right = ax.get_xlim()
        ax.set_xlim(left, right * 3)  # room on the right for the labels of the largest builds
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        # label the minor ticks at 2x and 5x too: a panel often spans less than a decade
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
        ax.tick_params(axis="x", which="both", labelsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel("bytes per vector (codes + graph + float vectors kept; log)", fontsize=8)
        ax.set_ylabel("recall@10 at the best ef", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(by_dataset):]:
        ax.axis("off")
    fig.suptitle("quantized HNSW: memory vs recall (marker area: 1-thread QPS"
                 + (", relative within each host)" if several else ")"), fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def host_fields(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The host columns a CSV of ``rows`` adds to its own: ``host_name`` and ``host`` when the rows come from
    several hosts, ``max_concurrent`` when any was co-scheduled (none otherwise: a one-host run's files keep their
    columns)."""
    out = ["host_name", "host"] if multi_host(rows) else []
    if any(co_scheduled_note(r) for r in rows):
        out.append("max_concurrent")
    return out


def _write_csv(path: Path, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def build_rows(builds: pl.DataFrame) -> list[dict[str, Any]]:
    """One flat row per finished build configuration (:attr:`tables.Tables.builds`), by dataset, backend (registry
    order) and build: build time (median, min-max over builds), inserts/s, bytes per vector three ways (serialized,
    analytic, resident-memory growth in a fresh process), threads, the first build's CPU utilisation, and the host
    that measured it."""
    ok = tables.sort_backends(builds.filter(pl.col("status") == "ok"), "build")
    return [{"dataset": b["dataset"], "backend": b["backend"], "build": b["build"], "graph": b["graph"],
             "builds": b["n_builds"], "build_s": b["build_time_s"], "build_s_min": b["build_time_min"],
             "build_s_max": b["build_time_max"], "inserts_per_s": b["inserts_per_s"],
             "bytes_serialized": b["bytes_serialized"], "bytes_analytic": b["bytes_analytic"],
             "bytes_rss": b["bytes_rss"], "memory_note": b["rss_reason"], "threads": b["threads"],
             "cpu": b["cpu_utilization"], "drift": b["drift"], **_host_of(b)} for b in ok.to_dicts()]


def _range(median: Any, low: Any, high: Any) -> str:
    """``median (min–max)``, or the median alone when there is one value."""
    if median is None:
        return "—"
    if low is None or high is None or low == high:
        return _fmt(median)
    return f"{_fmt(median)} ({_fmt(low)}–{_fmt(high)})"


def focus_rows(rows: Sequence[dict[str, Any]], target: float = 0.95) -> list[dict[str, Any]]:
    """Per dataset and series (and host, when a series was timed on several), the row a reader looks at first: the
    cheapest ef_search reaching ``target`` recall@10 (median build), else the series' most accurate one."""
    out = []
    for _key, runs in group(rows, "dataset", "series", "host").items():
        reaching = [r for r in runs if (r["recall_at_10"] or 0) >= target]
        out.append(min(reaching, key=lambda r: r["ef_search"]) if reaching
                   else max(runs, key=lambda r: (r["recall_at_10"] or 0, -r["ef_search"])))
    return out


def noise_lines(builds: pl.DataFrame, rows: Sequence[dict[str, Any]]) -> list[str]:
    """The run's noise: drift of the fixed reference workload timed before and after each build configuration,
    and how many sweep rows carry a figure over the noise threshold."""
    drifts = builds.filter((pl.col("status") == "ok") & pl.col("drift").is_not_null())["drift"].to_list()
    if not drifts:
        return []
    noisy = sum(1 for r in rows if r.get("noisy"))
    return [f"Noise of this run: a fixed single-threaded workload timed before and after each of {len(drifts)} build "
            f"configurations drifted by {100 * float(np.median(drifts)):.1f}% (median), "
            f"{100 * max(drifts):.1f}% at most; {noisy} of {len(rows)} sweep rows have a figure over the noise "
            "threshold (column 'noisy').", ""]


def tail_lines(rows: Sequence[dict[str, Any]], difficulty: pl.DataFrame) -> list[str]:
    """The worst-query tail at each series' focus point (recall@10 0.95 or its best): the per-query recall
    distribution (the median build's, from the rows) and recall@10 per difficulty quintile (LID: higher is harder;
    RC: lower is harder; :attr:`tables.Tables.difficulty`)."""
    body = []
    focus = focus_rows([r for r in rows if r["graph"] == "hnsw"])
    hosted = multi_host(focus)  # recall does not depend on the host, but a series two hosts timed has a row each
    for row in focus:
        cells = [row["dataset"], row["series"], *_host_cell(row, hosted), row["ef_search"], row["recall_at_10"],
                 row["recall_strict_10"], row["recall_p1"], row["recall_p5"], row["share_below_half"]]
        for name, hardest in (("lid", -1), ("rc", 0)):
            bins = difficulty.filter((pl.col("path") == row["path"]) & (pl.col("measure") == name)).sort(
                "bin").to_dicts()
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
            *_table(["dataset", "series", *(["host"] if hosted else []), "ef", "R@10", "strict", "p1", "p5",
                     "share < 0.5", "LID hardest / easiest", "RC hardest / easiest"], body), ""]


def scaling_lines(rows: Sequence[dict[str, Any]], scaling: pl.DataFrame) -> list[str]:
    """Batch QPS against thread count in both modes at each series' focus point (:attr:`tables.Tables.scaling`),
    with the CPU utilisation that shows the parallelism that really ran."""
    body, counts = [], set()
    for row in focus_rows(rows):
        figures = scaling.filter(pl.col("path") == row["path"])
        callers = {r["threads"]: r for r in figures.filter(pl.col("mode") == tables.MODES["qps"]).to_dicts()}
        pool = {r["threads"]: r for r in figures.filter(pl.col("mode") == tables.MODES["qps_pool"]).to_dicts()}
        counts |= set(callers)
        body.append((row, callers, pool))
    if not body:
        return []
    ts = sorted(counts)
    several = multi_host([row for row, _, _ in body])
    header = ["dataset", "series", *(["host"] if several else []), "ef"] + [f"callers {t}t (CPU)" for t in ts] + [
        f"pool {t}t (CPU)" for t in ts if t > 1]
    table = []
    for row, callers, pool in body:
        cells: list[Any] = [row["dataset"], row["series"], *_host_cell(row, several), row["ef_search"]]
        for mode, ts_ in ((callers, ts), (pool, [t for t in ts if t > 1])):
            for t in ts_:
                fig = mode.get(t)
                cells.append(f"{_fmt(fig['qps'])} ({_fmt(fig['cpu_utilization'], 2)})" if fig else "—")
        table.append(cells)
    return ["## Thread scaling", "",
            "Batch QPS (median over builds) in two modes: **callers**: the batch split across N caller threads, "
            "every library pool pinned to 1 thread inside each worker; **pool**: one caller, the library's own "
            "pool (faiss OpenMP, BLAS, hnswlib num_threads) at N threads. In brackets the process CPU time over "
            "wall time: about N when N threads really ran, about 1 for a backend without a pool.", "",
            *_table(header, table), ""]


def direct_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The libraries' own figures beside the facade's: per backend the facade's overhead over every run (median and
    range of facade p50 / direct p50 and of direct QPS / facade QPS), then each series' focus point with both
    latencies and both 1-thread batch QPS, all from the paired measurement (runner.library_direct)."""
    paired = [r for r in rows if r["latency_ratio"] is not None]
    if not paired:
        return []
    several = multi_host(paired)
    summary = []
    # each ratio is one record's (one host's); their median and range are per host too, as any summary of timings
    for (backend, _host), runs in group(paired, "backend", "host").items():
        lat = [r["latency_ratio"] for r in runs]
        qps = [r["qps_ratio"] for r in runs]
        summary.append([backend, *_host_cell(runs[0], several), len(runs),
                        _range(float(np.median(lat)), min(lat), max(lat)),
                        _range(float(np.median(qps)), min(qps), max(qps))])
    focus = [r for r in focus_rows(rows) if r["latency_ratio"] is not None]
    body = [[r["dataset"], r["series"], *_host_cell(r, several), r["ef_search"],
             r["facade_paired_p50_ms"], r["direct_p50_ms"], r["latency_ratio"], r["direct_p99_ms"],
             r["facade_paired_qps"], r["direct_qps"], r["qps_ratio"]] for r in focus]
    host_col = ["host"] if several else []
    return ["## The libraries called directly", "",
            "Every native backend's library called directly (the backend's `direct_search` and `direct_search_batch`"
            ": the same index, parameters and thread, no facade) on the median build: single queries dealt out "
            "alternately between it and `HnswIndex.search` (the facade's half is the latency shown everywhere "
            "else), and its 1-thread batch QPS beside the build's own `search_batch` figure. Overhead: facade p50 / "
            "direct p50 and direct QPS / facade QPS (1.00 = no cost; the target is at most 1.10; one 0.2 s batch "
            "window a side, so the QPS ratio carries that window's noise). Read the direct columns to compare the "
            "libraries themselves.", "",
            *_table(["backend", *host_col, "runs", "latency overhead median (range)", "QPS overhead median (range)"],
                    summary),
            "", "At each series' focus point (the cheapest ef reaching recall@10 0.95, else its most accurate):", "",
            *_table(["dataset", "series", *host_col, "ef", "facade p50 ms", "direct p50 ms", "overhead",
                     "direct p99 ms", "facade QPS 1t", "direct QPS 1t", "overhead"], body), ""]


# -------------------------------------------------------------------------------------------------------- hosts
#: how many co-scheduled records the Hosts section names one by one (the rest are counted)
CO_SCHEDULED_SHOWN = 40


def record_name(row: dict[str, Any]) -> str:
    """A record (a row of :attr:`tables.Tables.files`) in a few words: ``syn/hnswlib/M8-efc40-none ef_search 40``,
    ``... build``, ``syn/scalar codec sweep``, ``ADR suite (faiss)``."""
    kind = row.get("kind")
    if kind == "build":
        return f"{row['dataset']}/{row['backend']}/{row['build']} build"
    if kind == "query":
        return f"{row['dataset']}/{row['backend']}/{row['build']} ef_search {row['ef_search']}"
    if kind == "quant":
        return f"{row['dataset']}/{row['spec']} codec sweep"
    return f"ADR suite ({row.get('backend')})"


def _one_host_words(host: dict[str, Any]) -> str:
    """The opening of a Hosts section whose records all come from ``host`` (a row of :func:`tables.hosts`)."""
    if host["host"] == tables.UNRECORDED_HOST:
        return (f"No record names its host (they predate host fingerprints), so they count as one host, "
                f"*{tables.UNRECORDED_HOST}*")
    return f"Every record was measured on one host, {_host_text(host)}"


def _host_text(host: dict[str, Any]) -> str:
    """One named host of :func:`tables.hosts` in words: its name, fingerprint and machine."""
    machine = ", ".join(part for part in (
        host["cpu_model"], f"{host['cores_usable']} of {host['cores_total']} cores" if host["cores_total"] else None)
        if part)
    return f"**{host['host_name']}** (`{host['host']}`" + (f"; {machine})" if machine else ")")


def _load_words(hosts: Sequence[dict[str, Any]]) -> str:
    """Whether any record ran beside another measuring task, said for a run where none is known to have."""
    records = sum(h["records"] for h in hosts)
    unknown = sum(h["load_unknown"] for h in hosts)
    if not unknown:
        return "none while another measuring task ran on the same host"
    if unknown == records:
        return "whether any ran beside another measuring task is not recorded (the records predate host loads)"
    return (f"none of the {records - unknown} records with a host load ran beside another measuring task "
            f"({unknown} predate host loads: unknown)")


def hosts_lines(t: tables.Tables) -> list[str]:
    """The report's "Hosts" section: each host that measured a record (name, fingerprint, CPU, cores) and how many
    records it measured; the records measured while another measuring task ran on the same host (co-scheduled),
    counted and named. One line when everything comes from one host and nothing was co-scheduled; nothing when
    there are no records."""
    found = tables.hosts(t).to_dicts()
    if not found:
        return []
    shared = tables.co_scheduled(t).to_dicts()
    lines = ["## Hosts", ""]
    if len(found) == 1 and not shared:
        return [*lines, f"{_one_host_words(found[0])}; {_load_words(found)}.", ""]
    if len(found) > 1:
        lines += [f"The records were measured on {len(found)} hosts. Two hosts' timings are not comparable: every "
                  "Pareto frontier, operating point, ratio and curve in this report combines one host's timings "
                  "only, and a table whose rows come from several hosts has a host column.", ""]
    else:
        lines += [f"{_one_host_words(found[0])}.", ""]
    lines += [*_table(["host", "fingerprint", "CPU", "cores", "records", "co-scheduled", "host load unknown"],
                      [[h["host_name"], h["host"], h["cpu_model"],
                        f"{h['cores_usable']} of {h['cores_total']}" if h["cores_total"] else None, h["records"],
                        h["co_scheduled"], h["load_unknown"]] for h in found]), ""]
    if shared:
        one = len(shared) == 1
        lines += [f"{_count(len(shared), 'record')} {'was' if one else 'were'} co-scheduled: measured while another "
                  "measuring task ran on the same host (max_concurrent > 1: the most measuring tasks at once during "
                  f"the record's task), so {'its' if one else 'their'} timings shared the host's cores and caches "
                  "with those tasks and may read slower and noisier than alone:", ""]
        lines += [f"- {record_name(r)} ({r['host_name']}, {r['max_concurrent']} at once)"
                  for r in shared[:CO_SCHEDULED_SHOWN]]
        if len(shared) > CO_SCHEDULED_SHOWN:
            lines.append(f"- and {len(shared) - CO_SCHEDULED_SHOWN} more")
        lines.append("")
    return lines


# ------------------------------------------------------------------------------------------------------ metrics
def adr_rows(t: tables.Tables) -> list[dict[str, Any]]:
    """One flat row per ADR result: backend ('common' for the cases measured once, first; then the backends in
    registry order), case, protocol, the judged latency, the ADR's bound, the verdict and the search recall where
    there is one (``plots/adr.csv``)."""
    rows = t.adr.filter(pl.col("status") == "ok").to_dicts()
    rows.sort(key=lambda r: -1 if r["backend"] == "common" else tables.backend_rank(r["backend"]))
    return [{"backend": r["backend"], "tier": r["tier"] or "", "case": r["case"], "protocol": r["protocol"],
             "judged_ms": r["judged_ms"], "target_ms": r["target_ms"], "verdict": r["verdict"],
             "recall_at_10": r["recall_at_10"]} for r in rows]


def adr_verdicts(t: tables.Tables) -> dict[str, dict[str, int]]:
    """Per backend, how many ADR targets pass and fail under each protocol (``adr_pass``, ``adr_fail``,
    ``honest_pass``, ``honest_fail``); the cases measured once (embedding, distance, quantize) count for every
    backend, as in the report's summary. Cases without a target or not available count in neither."""
    out: dict[str, dict[str, int]] = {}
    for backend, cases in backend_cases(t):
        counts = {}
        for protocol in ("adr", "honest"):
            got = [c["protocols"][protocol]["verdict"] for c in cases.values() if c.get("status") == "ok"]
            counts[f"{protocol}_pass"], counts[f"{protocol}_fail"] = got.count("pass"), got.count("fail")
        out[backend] = counts
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


def metrics_summary(t: tables.Tables, rows: Sequence[dict[str, Any]],
                    qrows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The headline figures ``dvc metrics show`` / ``dvc exp show`` compare between experiments (the long tables
    are CSV files beside the plots):

    - ``qps.<dataset>.r90|r95|r99``: the best single-thread batch QPS over every backend, build and ef_search whose
      recall@10 (median build) reaches 0.90 / 0.95 / 0.99, and ``config.<dataset>.r90|...`` the run that made it
      (backend, build, ef_search, and ``on <host>`` when the dataset's runs come from several hosts: the best is
      then picked over hosts, and the configuration says which one measured it); a target nothing reaches is null
      and 'not reached';
    - ``codec.<dataset>``: ``bytes_per_vector`` and ``spec`` (codec and re-rank factor) of :func:`best_codec`;
    - ``verdicts.<backend>``: ADR targets passed and failed under each protocol (:func:`adr_verdicts`);
    - ``tune.<dataset>.r<target>`` (added by :func:`write_report` only when the results hold autotuner studies):
      :func:`tune_metrics`.
    """
    out: dict[str, Any] = {"qps": {}, "config": {}, "codec": {}, "verdicts": adr_verdicts(t)}
    for (dataset,), runs in group(rows, "dataset").items():
        timed = [r for r in runs if r["qps"] and r["recall_at_10"] is not None]
        several = multi_host(timed)
        for target in RECALL_TARGETS:
            best = max((r for r in timed if r["recall_at_10"] >= target), key=lambda r: r["qps"], default=None)
            key = f"r{round(target * 100)}"  # no '.' in keys: DVC joins nested keys with '.'
            out["qps"].setdefault(dataset, {})[key] = round(best["qps"], 1) if best else None
            out["config"].setdefault(dataset, {})[key] = (_config(best) + host_suffix(best, several) if best
                                                          else "not reached")
    for (dataset,), runs in group(qrows, "dataset").items():
        best = best_codec(runs)
        out["codec"][dataset] = {
            "bytes_per_vector": best["bytes_per_vector"] if best else None,
            "spec": (f"{best['codec']}, " + (f"rerank x{best['rerank']}" if best["rerank"] > 1 else "codes only"))
            if best else f"none reaches recall@10 {CODEC_RECALL:.2f}"}
    return out


# ------------------------------------------------------------------------------------------ quantization depth
def findings_lines(codecs: pl.DataFrame) -> list[str]:
    """"Why a codec loses to a smaller one": one bullet per :func:`quant_findings.frame_findings` finding of the
    codec sweep, or a line saying there is none (or no sweep)."""
    lines = ["### Why a codec loses to a smaller one", "",
             f"A codec loses to a smaller one when it takes more bytes per vector yet recalls more than "
             f"{quant_findings.RECALL_MARGIN} less at recall@10 without re-ranking; each line names the "
             "best-recalling smaller codec and the causes the sweep measured (the random rotation, the codec's "
             "error against the spread of a query's 100 nearest neighbours, the order of those neighbours).", ""]
    if codecs.is_empty():
        return [*lines, "No codec sweep in this run's results.", ""]
    found = quant_findings.frame_findings(codecs)
    if not found:
        return [*lines, "No codec loses to a smaller one on any dataset of this sweep.", ""]
    return [*lines, *[f"- {f.text}" for f in found], ""]


def rabitq_lines(codecs: pl.DataFrame) -> list[str]:
    """"RaBitQ by bit width": per dataset, RaBitQ under its random rotation at each bit width of the sweep
    (:func:`tables.rabitq_bits`), recall@10 of the codes alone and with the first re-rank factor above 1."""
    lines = ["### RaBitQ by bit width", "",
             "RaBitQ under its random rotation, one row per bit width: recall@10 of the codes alone and with the "
             "sweep's first re-ranking; <x̄, y> is the mean alignment of a vector with its quantized direction (1 is "
             "exact), the neighbourhood order the mean Spearman correlation of the codes' distance estimates with "
             "the true ones over a query's 100 true neighbours.", ""]
    bits = tables.rabitq_bits(codecs)
    if bits.is_empty():
        return [*lines, "No RaBitQ codec under its random rotation in this run's sweep.", ""]
    return [*lines, *_table(
        ["dataset", "codec", "bits", "bytes/vector", "recall@10 codes only", "re-rank", "recall@10 re-ranked",
         "mean <x̄, y>", "neighbourhood order"],
        [[r["dataset"], r["codec"], r["bits"], r["bytes_per_vector"], r["recall_at_10"],
          f"x{r['rerank_factor']}" if r["rerank_factor"] else None, r["recall_at_10_rerank"], r["rabitq_alignment"],
          r["neighbourhood_order"]] for r in bits.to_dicts()]), ""]


#: how the report names what a quantized HNSW graph was built from
GRAPH_NAMES = {"float": "float-built graphs", "codes": "code-built graphs"}


def _gap_words(name: str, worst: dict[str, Any], column: str = "gap") -> str:
    """How close a kind of graph comes to a reference scan, from its largest gap (``worst``: that build's row;
    ``column``: ``gap`` for the codec sweep's flat scan, ``scan_gap`` for the index's own code scan)."""
    gap = worst[column]
    where = f"{worst['backend']} {worst['spec']} at ef {worst['ef_best']}"
    if gap <= 0:
        return f"{name} match or beat it (the closest call: {where}, {gap:+.3f})"
    if gap <= quant_findings.RECALL_MARGIN:
        return f"{name} come within {gap:.3f} of it ({where})"
    return f"{name} lose up to {gap:.3f} ({where})"


#: the references a quantized graph is compared with: column of the gap -> what the sentence calls it
GAP_REFERENCES = {
    "gap": "the codec sweep's flat scan of the same codec with the same re-ranking",
    "scan_gap": "the index's own code scan (its codes and scoring, no graph, same re-ranking)",
}


def gap_sentences(frame: pl.DataFrame) -> list[str]:
    """Sentences per dataset of :func:`tables.qhnsw_vs_scan`: for graphs built from floats and from codes, the
    largest recall@10 gap to each reference of :data:`GAP_REFERENCES` (builds without that reference left out)."""
    out = []
    for column, reference in GAP_REFERENCES.items():
        measured = frame.filter(pl.col(column).is_not_null()).to_dicts()
        for (dataset,), rows in group(measured, "dataset").items():
            parts = []
            for graph, name in GRAPH_NAMES.items():
                mine = [r for r in rows if r["graph"] == graph]
                if mine:
                    parts.append(_gap_words(name, max(mine, key=lambda r: r[column]), column))
            out.append(f"On {dataset}, against {reference}: {'; '.join(parts)}.")
    return out


def qhnsw_lines(frame: pl.DataFrame, png: Path | None = None) -> list[str]:
    """"Graph built from floats vs from codes": each quantized HNSW build (:func:`tables.qhnsw_vs_scan`) beside
    the flat scan of its codes with the same re-ranking, its memory per vector in parts, the sentences of
    :func:`gap_sentences` and the plot ``png``; a line saying so when the run has no such builds."""
    lines = ["### Graph built from floats vs from codes", ""]
    if frame.is_empty():
        return [*lines, "No quantized HNSW builds in this run's results (params quantization.hnsw on "
                        "quantization.hnsw_datasets).", ""]
    lines += ["Each quantized HNSW build (re-rank depth R: the graph search returns R candidates by code distance, "
              "re-scored exactly) at the ef of its highest recall@10, beside the flat scan of the same codes with "
              "the same re-ranking (factor R / k; gap = flat scan − HNSW) and beside the index's own code scan (every "
              "code scored as its graph search scores them, same re-ranking, no graph; own gap = that − HNSW: what "
              "the graph alone loses). Memory per vector from the index's "
              "stats: codes, graph links, float vectors kept to re-rank, float vectors kept only to build the "
              "graph from them.", ""]
    rows = frame.to_dicts()
    hosted = multi_host(rows)
    lines += _table(
        ["dataset", "backend", "codec", *(["host"] if hosted else []), "graph from", "R", "best ef", "HNSW R@10",
         "flat scan R@10", "gap", "own scan R@10", "own gap", "R@10 at largest ef", "QPS 1t", "B/vec codes", "graph",
         "re-rank floats", "build floats", "B/vec total"],
        [[r["dataset"], r["backend"], r["codec"], *_host_cell(r, hosted), r["graph"], r["rerank"], r["ef_best"],
          r["recall_at_10"],
          r["flat_recall_at_10"], r["gap"], r["scan_recall_at_10"], r["scan_gap"],
          f"{_fmt(r['recall_at_ef_max'])} (ef {r['ef_max']})", r["qps_1"],
          *[r[c] for c in QHNSW_PARTS], r["bytes_per_vector"]] for r in rows])
    lines.append("")
    lines += gap_sentences(frame)
    notes = [f"- {r['backend']} {r['spec']} on {r['dataset']}: {r['flat_note']}" for r in rows if r["flat_note"]]
    if notes:
        lines += ["", "No flat-scan reference:", "", *notes]
    if all(r[c] is None for r in rows for c in QHNSW_PARTS):
        lines += ["", "The build records carry no index stats, so memory is not split into codes, graph and float "
                      "vectors (the plot places them at their serialized size)."]
    if png is not None:
        lines += ["", f"![quantized HNSW, one panel per dataset](plots/{png.name})"]
    return [*lines, ""]


# ---------------------------------------------------------------------------------------------------- autotuner
#: how the report names the autotuner's objectives
TUNE_OBJECTIVE_NAMES = {"qps": "QPS", "memory": "memory (bytes/vector)", "build-time": "build time"}


def tune_results(root: str | os.PathLike[str], params: dict[str, Any] | None = None) -> pl.DataFrame:
    """The autotuner's studies under ``root`` (:func:`tables.tune_results`), those of ``params``' ``tune`` section
    only (its ``datasets`` and ``targets``, when it lists them: the results root keeps earlier experiments' studies)."""
    frame = tables.tune_results(root)
    section = (params or {}).get("tune") or {}
    datasets, targets = section.get("datasets"), section.get("targets")
    if isinstance(datasets, list):
        frame = frame.filter(pl.col("dataset").is_in([str(d) for d in datasets]))
    if isinstance(targets, list):
        frame = frame.filter(pl.col("target").round(6).is_in([round(float(t), 6) for t in targets]))
    return frame


def _target_key(target: float) -> str:
    """'r95' for 0.95, 'r97_5' for 0.975: a metrics key without '.' (DVC joins nested keys with '.')."""
    return "r" + f"{target * 100:g}".replace(".", "_")


def _verified(row: dict[str, Any], prefix: str) -> str:
    """The verification of one recommendation in one cell."""
    if row[f"{prefix}_meets_target"] is None:
        return "—"
    builds = row[f"{prefix}_verify_builds"]
    cell = (f"median recall {row[f'{prefix}_median_recall']:.3f} over {_count(builds, 'build')}"
            if builds > 1 else "not verified (one build)")
    if row[f"{prefix}_min_recall"] is not None and builds > 1:
        cell += f" (min {row[f'{prefix}_min_recall']:.3f})"
    if row[f"{prefix}_raised_from"] is not None:
        cell += f"; ef raised {row[f'{prefix}_raised_from']} → {row[f'{prefix}_ef_search']}"
    if row[f"{prefix}_rejected"]:
        cell += (f"; {row[f'{prefix}_rejected']} better-ranked set aside (failed verification, or did worse "
                 "re-measured at a raised ef)")
    return cell


def _count(n: int, noun: str) -> str:
    """``1 build``, ``3 builds``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def grid_sentence(row: dict[str, Any]) -> str:
    """The grid comparison of one study in plain words, with its numbers; says plainly when the tuner's best is not
    within the tolerance of the grid's, and when a ratio of single measurements divides two hosts' timings."""
    if row["grid_builds"] is None:
        return ("No grid reference (`tune.grid: false`): the tuner's best is not checked against the whole space.")
    tolerance = row["tolerance"]
    text = (f"Grid reference: the tuner built {row['tuner_builds']} of the {row['grid_builds']} configurations of the "
            f"space ({_pct(row['builds_ratio'])}; {row['tuner_wall_s']:.1f} s of evaluation against "
            f"{row['grid_wall_s']:.1f} s for the whole grid). ")
    if row["grid_best_qps"] is None:
        text += "No configuration of the grid reaches the target."
    elif row["tuner_best_qps"] is None:
        text += (f"The tuner found nothing reaching the target; the grid's best is {row['grid_best_label']} at "
                 f"{_fmt(row['grid_best_qps'])} QPS: **not within {tolerance:.0%}**.")
    else:
        same = " (the same configuration)" if row["same_configuration"] else ""
        verdict = (f"within {tolerance:.0%}: yes" if row["within_tolerance"] else
                   f"**not within {tolerance:.0%}** of the grid's best")
        paired = row["head_to_head"] == "ok"
        hosts = {row.get("grid_best_host"), row.get("tuner_best_host")} - {None}
        # a ratio of two single measurements taken on two machines holds the machines' difference too: say so
        apart = (f", on two hosts, {row['tuner_best_host']} and {row['grid_best_host']}: the ratio holds the "
                 "machines' difference too" if len(hosts) > 1 else "")
        several = f", taken on {row['n_hosts']} hosts" if (row.get("n_hosts") or 0) > 1 else ""
        text += (f"Its best, {row['tuner_best_label']} at {_fmt(row['tuner_best_qps'])} QPS, is "
                 f"{_pct(row['qps_ratio'])} of the grid's best, {row['grid_best_label']} at "
                 f"{_fmt(row['grid_best_qps'])} QPS{same}: {verdict}"
                 + (f" (timed head to head: the grid's leaders and the tuner's best rebuilt and measured in one "
                    f"process, alternating windows; from the trials' own single measurements{several}, "
                    f"{_pct(row['qps_ratio_single'])})." if paired and row["qps_ratio_single"] is not None
                    else f" (from the trials' own single measurements{apart})."))
    if row["replay_seeds"] and row["replay_within"] is not None:
        text += (f" Replayed on the grid's measurements with {row['replay_seeds']} other sampler seeds and the same "
                 f"budget of {_count(row['replay_builds'], 'build')}, the tuner came "
                 f"within {tolerance:.0%} of the grid's best with {row['replay_within']} of {row['replay_seeds']} "
                 f"seeds (median {_pct(row['replay_median_ratio'])} of its QPS).")
    elif row["replay_status"]:
        text += f" No replay: {row['replay_status']}."
    return text


def tune_lines(tune: pl.DataFrame) -> list[str]:
    """The report's "Autotuner" section from :func:`tune_results`: per dataset and recall target the answer, the
    recommendation per objective with its verification, the grid comparison and the study's storage."""
    lines = ["## Autotuner", ""]
    if tune.is_empty():
        return [*lines, "No tune results (stage `tune`, `ruvector-lab tune DATASET --recall 0.95`).", ""]
    lines += ["An Optuna study per dataset and recall target (`ruvector-lab tune`): every trial builds one "
              "configuration (backend, M, ef_construction, codec and re-rank depth) and finds the cheapest ef_search "
              "reaching the target; the study maximises 1-thread QPS and minimises bytes per vector (RSS growth) and "
              "build time, with recall@10 >= target as a constraint. Each objective's best is rebuilt with other "
              "seeds and recommended only if the median build still meets the target.", ""]
    for row in tune.to_dicts():
        lines += [f"### {row['dataset']}, recall@10 >= {row['target']:g}", "",
                  f"**Answer** (objective {row['objective']}): {row['answer']}", ""]
        table = []
        for objective, name in TUNE_OBJECTIVE_NAMES.items():
            prefix = tables.tune_column(objective)
            if row[f"{prefix}_label"] is None:
                table.append([name, "no configuration holds the target", "—", "—", "—", "—", "—", "—"])
                continue
            table.append([name, row[f"{prefix}_label"], row[f"{prefix}_ef_search"], f"{row[f'{prefix}_recall']:.3f}",
                          row[f"{prefix}_qps"], f"{row[f'{prefix}_bytes_per_vector']:.0f}",
                          f"{row[f'{prefix}_build_time_s']:.2f}", _verified(row, prefix)])
        lines += [*_table(["objective", "configuration", "ef_search", "recall@10", "QPS 1t", "bytes/vector",
                           "build s", "verified"], table), ""]
        lines += [grid_sentence(row), "",
                  f"{_count(row['n_trials'], 'trial')} ({_count(row['builds'], 'build')}, {row['n_feasible']} "
                  "reaching the target), "
                  f"{row['wall_s']:.0f} s. Study `{row['study_name']}` in `{row['storage']}` (resume it with the same "
                  "command; inspect it with `optuna.load_study` or `optuna trials`)."
                  + (f" The trials ran on {row['n_hosts']} hosts: the study's ranking and Pareto front compare "
                     "single measurements from different machines (each trial's host is in `tune_trials`)."
                     if (row.get("n_hosts") or 0) > 1 else ""), ""]
    return lines


def tune_metrics(tune: pl.DataFrame) -> dict[str, Any]:
    """``tune.<dataset>.r<target>`` for metrics.json: the headline recommendation (configuration, ef_search, QPS,
    bytes per vector, verified median recall), the builds it took and, with the grid reference, the grid's builds,
    the QPS ratio and whether it is within the tolerance."""
    out: dict[str, Any] = {}
    for row in tune.to_dicts():
        prefix = tables.tune_column(row["objective"])
        out.setdefault(row["dataset"], {})[_target_key(row["target"])] = {
            "config": row[f"{prefix}_label"] or "none meets the target", "ef_search": row[f"{prefix}_ef_search"],
            "qps": round(row[f"{prefix}_qps"], 1) if row[f"{prefix}_qps"] is not None else None,
            "bytes_per_vector": row[f"{prefix}_bytes_per_vector"], "median_recall": row[f"{prefix}_median_recall"],
            "builds": row["builds"], "grid_builds": row["grid_builds"], "qps_ratio": row["qps_ratio"],
            "within_tolerance": row["within_tolerance"]}
    return out


# ----------------------------------------------------------------------------------------------- native vs WASM
def peer_results(root: str | os.PathLike[str], params: dict[str, Any] | None = None) -> tuple[pl.DataFrame,
                                                                                            pl.DataFrame]:
    """The native-vs-WASM comparison and its sides (:func:`tables.peer_comparison`, :func:`tables.peer_sides`)
    under ``root``, those of ``params``' ``peers`` section only (its datasets and pairs, when it lists them)."""
    comparison, sides = tables.peer_comparison(root), tables.peer_sides(root)
    section = (params or {}).get("peers") or {}
    for key, column in (("datasets", "dataset"), ("pairs", "pair")):
        if isinstance(section.get(key), list):
            wanted = [str(v) for v in section[key]]
            comparison = comparison.filter(pl.col(column).is_in(wanted))
            sides = sides.filter(pl.col(column).is_in(wanted))
    return comparison, sides


#: the columns of results/plots/peers.csv (one row per pair and dataset)
PEER_CSV = ("dataset", "pair", "comparison", "same", "first", "second", "status", "target_recall", "first_ef",
            "second_ef", "first_p50_ms", "second_p50_ms", "latency_ratio", "latency_ratio_min", "latency_ratio_max",
            "first_qps", "second_qps", "qps_ratio", "qps_ratio_min", "qps_ratio_max", "build_ratio", "build_ratio_min",
            "build_ratio_max", "first_bytes", "first_bytes_min", "first_bytes_max", "second_bytes", "second_bytes_min",
            "second_bytes_max", "run_pairs")


def _us(ms: Any) -> str:
    return "—" if ms is None else f"{ms * 1e3:.1f}"


def _ratio_cell(row: dict[str, Any], name: str) -> str:
    if row.get(name) is None:
        return "—"
    return f"{row[name]:.2f} ({row[f'{name}_min']:.2f}–{row[f'{name}_max']:.2f})"


def _pair_cell(row: dict[str, Any], first: str, second: str, digits: int = 3) -> str:
    return f"{_fmt(row.get(first), digits)} / {_fmt(row.get(second), digits)}"


def _bytes_cell(row: dict[str, Any]) -> str:
    """Both sides' bytes per vector, each as median (min–max over runs)."""
    return " / ".join(_range(row.get(f"{role}_bytes"), row.get(f"{role}_bytes_min"), row.get(f"{role}_bytes_max"))
                      for role in ("first", "second"))


def peer_lines(comparison: pl.DataFrame, sides: pl.DataFrame) -> list[str]:
    """The report's section "Native vs WASM, same algorithm": the ADR verdict in one sentence, the equal-recall
    table (every ratio with its spread over run pairs), one sentence per pair, and every side as it ran."""
    if comparison.is_empty():
        return []
    lines = ["## Native vs WASM, same algorithm", "",
             "The published npm builds of one library, native and WASM, in the runtimes ADR-006 targets "
             "(`ruvector-lab peers`, stage `node-peers`): Node.js for the N-API addons and Node-capable WASM, a "
             "local page in headless Chromium (no network) for WASM built for the web, and the rvf module in "
             "Python's wasmtime beside V8. Each side builds the same index (M, ef_construction, metric) and runs "
             "the same queries with the Python harness' protocol, in fresh processes (runs), thread pools pinned to "
             "1. Compared at equal recall: the lower of the two sides' best recall@10, each side at its fastest "
             f"ef_search within {tables.PEER_RECALL_TOLERANCE} of it. Ratios are the second side over the first "
             "(latency, build time; QPS: first over second), so above 1 means the second side is slower; the "
             "median over run pairs with min–max. Verdicts use batch QPS: a browser's timer is coarsened (5 µs when "
             "cross-origin isolated), which blurs a single 10 µs query but not a loop over all of them. Memory is "
             "each side's own measure: process RSS growth (native) or WASM linear-memory growth (WASM, page "
             "granular), so compare it within a measure.", "",
             f"**{tables.peer_verdict(comparison)}**", ""]
    rows = comparison.to_dicts()
    table = []
    for r in rows:
        if r["status"] != "ok":
            table.append([r["dataset"], r["pair"], r["first"], r["second"], "yes" if r["same"] else "no",
                          r["status"], "—", "—", "—", "—", "—", "—", "—", "—"])
            continue
        table.append([r["dataset"], r["pair"], r["first"], r["second"], "yes" if r["same"] else "no",
                      f"{r['target_recall']:.3f}", f"{r['first_ef'] or '—'} / {r['second_ef'] or '—'}",
                      f"{_us(r['first_p50_ms'])} / {_us(r['second_p50_ms'])}", _ratio_cell(r, "latency_ratio"),
                      _pair_cell(r, "first_qps", "second_qps"), _ratio_cell(r, "qps_ratio"),
                      _ratio_cell(r, "build_ratio"), _bytes_cell(r),
                      r["run_pairs"]])
    lines += [*_table(["dataset", "pair", "first", "second", "same algorithm", "recall@10", "ef", "p50 µs",
                       "p50 ratio", "QPS 1 thread", "QPS ratio", "build ratio", "bytes/vector (min–max)",
                       "run pairs"], table), ""]
    lines += [f"- {r['verdict']}" for r in rows]
    lines += ["", "What each pair implements, as checked: "
              + " ".join(f"{name}: {text}." for name, text in
                         {r["pair"]: r["same_algorithm"] for r in rows}.items()), ""]
    side_rows = (sides.unique(subset=["dataset", "pair", "backend"], keep="first", maintain_order=True).to_dicts()
                 if not sides.is_empty() else [])
    lines += ["Sides as they ran (engine, algorithm found, memory measure; a side that gave no figures with its "
              "reason):", ""]
    lines += _table(["dataset", "pair", "side", "package", "engine", "algorithm", "runs", "queries", "build s",
                     "memory", "status"],
                    [[s["dataset"], s["pair"], s["backend"], f"{s['package']} {s['version'] or ''}".strip(),
                      s["engine"] or "—", s["algorithm"] or "—", s["runs"], s["n_queries"],
                      _range(s["build_s"], s["build_s_min"], s["build_s_max"]) if s["build_s"] is not None else "—",
                      s["memory_measure"] or "—",
                      s["status"] if s["status"] == "ok" else f"{s['status']}: {s['reason']}"] for s in side_rows])
    return [*lines, ""]


def peer_metrics(comparison: pl.DataFrame) -> dict[str, Any]:
    """``peers.<dataset>.<pair>``: the batch QPS ratio (second side over first, at equal recall) and the recall it
    was compared at, for ``dvc metrics show``."""
    out: dict[str, Any] = {}
    for r in comparison.to_dicts():
        out.setdefault(r["dataset"], {})[r["pair"]] = (
            {"qps_ratio": round(r["qps_ratio"], 3), "latency_ratio": round(r["latency_ratio"], 3),
             "recall_at_10": round(r["target_recall"], 4)} if r["status"] == "ok" else r["status"])
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
    rows = query_rows(data.queries, threshold)
    brows = build_rows(data.builds)
    ops = operating_table(rows)
    qrows = quant_rows(data.codecs)
    _write_csv(plots / "recall_qps.csv", rows, ["dataset", "series", "backend", "build", "ef_search", "ef_effective",
                                                "recall_at_1", "recall_at_10", "recall_at_10_min", "recall_at_10_max",
                                                "recall_strict_10", "recall_at_100", "recall_p5", "qps", "qps_min",
                                                "qps_max", "qps_2t", "qps_pool_2t", "qps_spread", "p50_ms", "p99_ms",
                                                "direct_p50_ms", "direct_qps", "latency_ratio", "qps_ratio", "noisy",
                                                "pareto", *host_fields(rows)])
    _write_csv(plots / "quantization.csv", qrows, ["dataset", "codec", "rerank", "bytes_per_vector", "compression",
                                                   "recall_at_10", "recall_at_1", "qps", *host_fields(qrows)])
    _write_csv(plots / "builds.csv", brows, ["dataset", "backend", "build", "builds", "build_s", "build_s_min",
                                             "build_s_max", "inserts_per_s", "bytes_serialized", "bytes_analytic",
                                             "bytes_rss", "threads", "cpu", *host_fields(brows)])
    _write_csv(plots / "operating_points.csv", ops, ["dataset", "backend", "build", "graph", "target", "ef_search",
                                                     "recall_at_10", "qps", "qps_2t", "p50_ms", *host_fields(ops)])
    _write_csv(plots / "adr.csv", adr_rows(data), ["backend", "tier", "case", "protocol", "judged_ms",
                                                          "target_ms", "verdict", "recall_at_10"])
    png = plot_recall_qps(rows, plots)
    qpng = plot_quant(qrows, plots)
    qhnsw = tables.qhnsw_vs_scan(data)
    qhpng = plot_qhnsw(qhnsw, plots)
    metrics = metrics_summary(data, rows, qrows)
    tune = tune_results(root, params)
    if not tune.is_empty():  # only with studies: an experiment without the tune stage keeps the same metrics keys
        metrics["tune"] = tune_metrics(tune)
    peers, peer_side_rows = peer_results(root, params)
    _write_csv(plots / "peers.csv", peers.to_dicts(), PEER_CSV)
    if not peers.is_empty():
        metrics["peers"] = peer_metrics(peers)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    n_hosts = len(tables.hosts(data))
    lines = ["# ruvector-lab benchmark report", "",
             "Generated by `ruvector-lab report` from the result JSON under `data/results` (schemas: "
             "`ruvector_lab/bench/schemas.py`). "
             + ("Timings come from one run on a shared machine: compare ratios and medians, not absolute times."
                if n_hosts <= 1 else
                f"Timings come from one run on {n_hosts} machines (see Hosts): compare ratios and medians within "
                "one host, not absolute times."), ""]
    env_rec = data.environment()
    if env_rec:
        libs = ", ".join(f"{k} {v}" for k, v in env_rec["libraries"].items() if v)
        lines += [("Machine" if n_hosts <= 1 else "Machine of the first record (every host is under Hosts)")
                  + f": {env_rec['cpu_model']}, {env_rec['cores_usable']} usable cores of "
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
    lines += noise_lines(data.builds, rows)
    lines += hosts_lines(data)
    lines += ["## Summary", "", *summary_lines(data, ops), ""]

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

    lines += ["## ADR-006 targets", "", *adr_tables(data), ""]
    lines += peer_lines(peers, peer_side_rows)

    lines += ["## Operating points", "",
              "Per dataset, backend and build: the cheapest ef_search (the smallest in the sweep) whose recall@10 "
              "reaches 0.90, 0.95 and 0.99, shown as `ef_search: QPS at 1 thread / 2 threads`; — means no "
              "ef_search in the sweep reached it. Exact (flat) backends ignore ef_search and have recall 1.", ""]
    op_rows = []
    ops_hosted = multi_host(ops)
    for (dataset, backend, build, _host), targets in group(ops, "dataset", "backend", "build", "host").items():
        cells = []
        for t in targets:
            if t["qps"] is None:
                cells.append("—")
            else:
                ef = t["ef_search"] if t["graph"] == "hnsw" else "any ef"
                cells.append(f"{ef}: {_fmt(t['qps'])} / {_fmt(t['qps_2t'])} (R {t['recall_at_10']:.3f})")
        op_rows.append([dataset, backend, build_label(build, targets[0]["graph"]),
                        *_host_cell(targets[0], ops_hosted), *cells])
    lines += [*_table(["dataset", "backend", "build", *(["host"] if ops_hosted else []),
                       *[f"recall@10 >= {t:.2f}" for t in RECALL_TARGETS]], op_rows), ""]

    lines += ["## Recall vs QPS", ""]
    lines += [f"![recall vs QPS, one panel per dataset](plots/{png.name})", ""]
    lines += ["Full sweep (every ef_search). R@10 is the median build's, with min–max over builds; 'strict' counts "
              "ids only (no distance ties); p5 is the 5th percentile of per-query recall@10. QPS 1t is the median over "
              "builds with min–max; 2t splits the batch over 2 caller threads (pools pinned to 1 in each), pool 2t "
              "runs one caller with the library's pool at 2. ef is the effective ef (a graph search needs ef >= k; "
              "R@100 runs at ef = max(ef_search, 100)). 'noisy' names figures over the noise threshold"
              + (", and 'co-scheduled (N at once)' a setting measured while other measuring tasks ran on its host "
                 "(see Hosts)." if any(co_scheduled_note(r) for r in rows) else "."), ""]
    sweep_hosted = multi_host(rows)
    for r in rows:
        r["label"] = build_label(r["build"], r["graph"])
        r["ef_cell"] = ("—" if r["ef_effective"] is None else str(r["ef_effective"]) if r["ef_effective"] ==
                        r["ef_search"] else f"{r['ef_search']} → {r['ef_effective']}")
        r["r10_cell"] = _range(r["recall_at_10"], r["recall_at_10_min"], r["recall_at_10_max"])
        r["qps_cell"] = _range(r["qps"], r["qps_min"], r["qps_max"])
        r["frontier"] = "yes" if r["pareto"] else ""
        r["noisy_cell"] = "; ".join(part for part in (r["noisy"], co_scheduled_note(r)) if part)
    sweep_cols = ["dataset", "backend", "label", "ef_cell", "recall_at_1", "r10_cell", "recall_strict_10",
                  "recall_p5", "recall_at_100", "qps_cell", "qps_2t", "qps_pool_2t", "p50_ms", "p99_ms", "noisy_cell",
                  "frontier"]
    lines += [*_table(["dataset", "backend", "build", *(["host"] if sweep_hosted else []), "ef", "R@1", "R@10",
                       "strict", "p5", "R@100", "QPS 1t", "QPS 2t", "pool 2t", "p50 ms", "p99 ms", "noisy", "Pareto"],
                      [[*[r[c] for c in sweep_cols[:3]], *_host_cell(r, sweep_hosted), *[r[c] for c in sweep_cols[3:]]]
                       for r in rows]), ""]

    lines += tail_lines(rows, data.difficulty)
    lines += scaling_lines(rows, data.scaling)
    lines += direct_lines(rows)

    lines += ["## Builds and memory", "",
              "Build time is the median over builds (min–max). Bytes per vector three ways: the serialized index, "
              "the analytic size of the structure (vectors or codes + graph links + id maps), and the growth of "
              "resident memory while the index is built in a fresh child process (the index's own memory, not "
              "the benchmark's). CPU is process CPU time over wall time while building.", ""]
    absent = [f"{b['dataset']}/{b['backend']}/{b['build']}: {b['reason']}"
              for b in data.builds.filter(pl.col("status") != "ok").to_dicts()]
    builds_hosted = multi_host(brows)
    lines += [*_table(["dataset", "backend", "build", *(["host"] if builds_hosted else []), "builds", "build s",
                       "inserts/s", "B/vec serialized", "B/vec analytic", "B/vec RSS", "threads", "CPU"],
                      [[b["dataset"], b["backend"], b["build"], *_host_cell(b, builds_hosted), b["builds"],
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
    quant_hosted = multi_host(qrows)
    lines += _table(["dataset", "codec", *(["host"] if quant_hosted else []), "bytes/vector", "compression", "rerank",
                     "recall@10", "recall@1", "encode/s", "quantize p50 ms"],
                    [[q["dataset"], q["codec"], *_host_cell(q, quant_hosted), q["bytes_per_vector"], q["compression"],
                      f"x{q['rerank']}", q["recall_at_10"], q["recall_at_1"], q["encode_per_s"],
                      q["quantize_p50_ms"]] for q in qrows])
    qabsent = [f"{q['dataset']}/{q['spec']}: {q['reason']}"
               for q in data.absent.filter(pl.col("kind") == "quant").to_dicts()]
    if qabsent:
        lines += ["", "Codecs not available:", "", *[f"- {a}" for a in qabsent]]
    if qrows:
        lines += ["", f"![quantization, one panel per dataset](plots/{qpng.name})"]
    lines += ["", *findings_lines(data.codecs), *rabitq_lines(data.codecs), *qhnsw_lines(qhnsw, qhpng)]
    lines += [*tune_lines(tune)]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    log.info("report written to %s", path)
    return path
