"""Hosts in the results reader and the report (GitHub issue 13: runs spread over a Dask cluster of several machines).

Records made by tests/result_records.py, each placed on a host (``environment.host``) with a host load
(``host_load.max_concurrent``), written to a temporary results root: two hosts with different timings never share a
Pareto frontier, an operating point or a ratio (asserted on the rows the readers return), the report's "Hosts"
section names both and counts the co-scheduled records, a one-host run gets a one-line section, records written
before hosts were recorded still read as one host, "unrecorded", with an unknown load, and an autotuner study whose
trials ran on two hosts says so."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from result_records import DATASET, adr_record, build_record, quant_record, query_record, write_tree

from ruvector_lab.bench import report, results, tables

NAME = DATASET["name"]
FAST = {"name": "fast-box", "fingerprint": "aaaaaaaaaaaa"}
SLOW = {"name": "slow-box", "fingerprint": "bbbbbbbbbbbb"}
ENV = {"cpu_model": "Synthetic CPU", "cores_usable": 2, "cores_total": 4, "memory_bytes": 8 * 2**30,
       "python": "3.11.0", "libraries": {"numpy": "2.0"}}
#: (ef_search, recall@10, 1-thread QPS) per host: the slow host's M16 graph recalls more per ef but is slower, so
#: a frontier over both hosts would drop two of its three points (each dominated by a fast-host point)
FAST_SWEEP = ((10, 0.70, 3000.0), (40, 0.92, 1500.0), (160, 0.99, 600.0))
SLOW_SWEEP = ((10, 0.80, 1000.0), (40, 0.95, 500.0), (160, 0.995, 200.0))


def on(record: dict[str, Any], host: dict[str, str], concurrent: int | None = 1) -> dict[str, Any]:
    """``record`` as measured on ``host`` by a measuring task that had ``concurrent`` tasks at once on it (None:
    no host load recorded)."""
    out = copy.deepcopy(record)
    out["environment"] = {**(out.get("environment") or ENV), "host": dict(host)}
    if concurrent is not None:
        out["host_load"] = {"max_concurrent": concurrent, "overlapping": concurrent - 1, "seconds": 1.5,
                            "others": [f"task-{i}" for i in range(concurrent - 1)], "worker_threads": 1}
    return out


def _sweep(root: Path, host: dict[str, str], m: int, sweep: tuple[tuple[int, float, float], ...],
           direct: tuple[float, float], co_scheduled_ef: int | None = None) -> None:
    folder = root / "runs" / NAME / "hnswlib" / f"M{m}-efc40-none"
    results.write_json(folder / "build.json", on(build_record("hnswlib", m=m), host))
    for ef, recall, qps in sweep:
        rec = query_record("hnswlib", ef, recall, (qps,), m=m, direct=direct)
        results.write_json(folder / f"query-ef{ef}-k10.json", on(rec, host, 2 if ef == co_scheduled_ef else 1))


def two_hosts(root: Path) -> Path:
    """hnswlib M8 on the fast host, M16 on the slow one (its ef 40 query co-scheduled beside another task), a codec
    sweep on the slow host, the ADR suite's common cases and faiss on the fast host, wasm on the slow one."""
    _sweep(root, FAST, 8, FAST_SWEEP, (0.45, 1100.0))
    _sweep(root, SLOW, 16, SLOW_SWEEP, (0.25, 900.0), co_scheduled_ef=40)
    results.write_json(root / "quant" / NAME / "scalar.json", on(quant_record("scalar"), SLOW))
    for backend, host in (("common", FAST), ("faiss", FAST), ("wasm", SLOW)):
        results.write_json(root / "adr" / f"{backend}.json", on(adr_record(backend), host))
    return root


def _section(text: str, title: str) -> list[str]:
    """The non-empty lines of a report section, up to the next section."""
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return [line for line in text[start:end if end >= 0 else None].splitlines()[1:] if line.strip()]


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> Path:
    return two_hosts(tmp_path_factory.mktemp("hosts") / "results")


@pytest.fixture(scope="module")
def written(two, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    report.write_report(two, out, None, {"bench": {"n_queries": 12}})
    return out


# --------------------------------------------------------------------------------------------------- the tables
def test_every_records_rows_carry_its_host_and_load(two):
    t = tables.load(two)
    for name in ("files", "builds", "queries", "query_builds", "difficulty", "scaling", "codecs", "adr"):
        frame = t[name]
        assert {"host", "host_name", "max_concurrent"} <= set(frame.columns), name
        assert set(frame["host"]) <= {FAST["fingerprint"], SLOW["fingerprint"]}, name
    q = t.queries
    assert dict(q.select("m", "host").unique().rows()) == {8: FAST["fingerprint"], 16: SLOW["fingerprint"]}
    assert dict(q.filter(pl.col("m") == 16).select("ef_search", "max_concurrent").rows()) == {10: 1, 40: 2, 160: 1}
    assert set(t.codecs["host_name"]) == {"slow-box"}
    assert dict(t.adr.select("backend", "host_name").unique().rows()) == {"common": "fast-box", "faiss": "fast-box",
                                                                          "wasm": "slow-box"}


def test_a_frontier_never_mixes_two_hosts(two):
    q = tables.queries(two)
    front = tables.pareto(q)  # by dataset and backend: both hosts' hnswlib builds are one backend
    assert len(front) == 6  # each host's sweep trades QPS for recall: all its points are on its own frontier
    for host, sweep in ((FAST, FAST_SWEEP), (SLOW, SLOW_SWEEP)):
        mine = front.filter(pl.col("host") == host["fingerprint"])
        assert mine.select("recall_at_10", "qps_1").rows() == [(r, q) for _, r, q in sweep]
    # the same rows over both hosts at once would drop the slow host's first two points: the grouping matters
    mixed = tables.pareto(q, per_host=False)
    assert len(mixed) == 4
    rows = report.query_rows(q)
    assert all(r["pareto"] for r in rows)
    assert {(r["host_name"], r["max_concurrent"]) for r in rows if r["ef_search"] == 40} == {("fast-box", 1),
                                                                                            ("slow-box", 2)}


def test_operating_points_and_their_ties_stay_within_a_host(two):
    q = tables.queries(two)
    ops = tables.operating_points(q, by=("dataset", "backend"), targets=(0.9,))
    # both hosts reach 0.9 first at ef 40; over both, the tie would go to the fast host's QPS and drop the slow one
    assert ops.columns[0] == "host"
    assert sorted(ops.select("host", "ef_search", "qps_1").rows()) == [
        (FAST["fingerprint"], 40, 1500.0), (SLOW["fingerprint"], 40, 500.0)]
    assert len(tables.operating_points(q, by=("dataset", "backend"), targets=(0.9,), per_host=False)) == 1
    table = report.operating_table(report.query_rows(q))
    at_95 = {(o["build"], o["host_name"]): o["ef_search"] for o in table if o["target"] == "0.95"}
    assert at_95 == {("M8-efc40-none", "fast-box"): 160, ("M16-efc40-none", "slow-box"): 40}


def test_ratios_are_each_one_hosts(two, written):
    q = tables.queries(two)
    # the facade's overhead and the thread speed-ups are within one record, so within its host
    for row in q.to_dicts():
        assert row["facade_qps_ratio"] == pytest.approx(row["direct_qps_1"] / row["qps_1"])
    scaling = tables.load(two).scaling.filter(pl.col("mode") == "library pool")
    for row in scaling.filter(pl.col("threads") == 2).to_dicts():
        own = q.filter(pl.col("path") == row["path"]).row(0, named=True)
        assert row["host"] == own["host"] and row["speedup"] == pytest.approx(1800.0 / own["qps_1"])
    # the report's overhead summary is one row per (backend, host), never a median over both hosts' ratios
    summary = _section((written / "report.md").read_text(), "The libraries called directly")
    table = [line for line in summary if line.startswith("| hnswlib |")]
    assert [line.split(" | ")[1] for line in table] == ["slow-box", "fast-box"]
    # the fast host's QPS overheads are 1100 / (3000, 1500, 600): median 0.733, range 0.367-1.83, its own alone
    assert table[1] == "| hnswlib | fast-box | 3 | 1.11 | 0.733 (0.367–1.83) |"


def test_the_quantized_graph_beside_its_scan_is_per_host(tmp_path):
    root = write_tree(tmp_path / "results")
    folder = root / "qhnsw" / NAME / "runs" / NAME / "faiss" / "M8-efc40-scalar-r40"
    rec = query_record("faiss", 40, 0.97, (700.0,), quantization="scalar-r40")
    results.write_json(folder / "query-ef40-k10.json", on(rec, SLOW))  # the other ef's query is unrecorded
    frame = tables.qhnsw_vs_scan(tables.load(root))
    assert sorted(frame.select("host_name", "ef_best", "qps_1").rows()) == [("slow-box", 40, 700.0),
                                                                            ("unrecorded", 10, 800.0)]


# --------------------------------------------------------------------------------------------------- the report
def test_the_hosts_section_names_both_and_counts_the_co_scheduled(written):
    text = (written / "report.md").read_text()
    section = _section(text, "Hosts")
    assert section[0].startswith("The records were measured on 2 hosts")
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in section if line.startswith("| ")
            and "-box" in line}
    assert set(rows) == {"fast-box", "slow-box"}
    # host, fingerprint, CPU, cores, records, co-scheduled, load unknown
    assert rows["fast-box"][1:7] == ["aaaaaaaaaaaa", "Synthetic CPU", "2 of 4", "6", "0", "0 |"]
    assert rows["slow-box"][1:7] == ["bbbbbbbbbbbb", "Synthetic CPU", "2 of 4", "6", "1", "0 |"]
    shared = [line for line in section if "co-scheduled" in line and "cores and caches" in line]
    assert len(shared) == 1 and shared[0].startswith("1 record was co-scheduled")
    assert f"- {NAME}/hnswlib/M16-efc40-none ef_search 40 (slow-box, 2 at once)" in section
    assert "co-scheduled (2 at once)" in text  # the sweep row itself says so too
    summary = _section(text, "Summary")
    assert any(line.startswith(f"- {NAME} on slow-box: fastest") for line in summary)
    assert any(line.startswith(f"- {NAME} on fast-box: fastest") for line in summary)


def test_tables_over_two_hosts_show_the_host_and_one_host_tables_do_not(written):
    text = (written / "report.md").read_text()
    for title in ("Operating points", "Recall vs QPS", "Thread scaling", "Builds and memory"):
        headers = [line for line in _section(text, title) if line.startswith("| dataset |")]
        assert headers and all("| host |" in h for h in headers), title
    quant = [line for line in _section(text, "Quantization trade-offs") if line.startswith("| dataset |")]
    assert quant and "| host |" not in quant[0]  # the codec sweep ran on one host
    assert "| faiss (native on fast-box) | wasm (wasm on slow-box) |" in text
    head = (written / "plots" / "recall_qps.csv").read_text().splitlines()[0].split(",")
    assert head[-3:] == ["host_name", "host", "max_concurrent"]
    assert (written / "plots" / "quantization.csv").read_text().splitlines()[0].endswith(",qps")
    metrics = json.loads((written / "metrics.json").read_text())
    assert metrics["config"][NAME]["r90"] == "hnswlib M8-efc40-none ef 40 on fast-box"


def test_one_curve_per_series_and_host_labelled_with_the_host(tmp_path, monkeypatch):
    """One series (hnswlib M8) whose settings two hosts timed: two curves, each named by its host."""
    root = tmp_path / "results"
    folder = root / "runs" / NAME / "hnswlib" / "M8-efc40-none"
    results.write_json(folder / "build.json", on(build_record("hnswlib"), FAST))
    for (ef, recall, qps), host in zip(FAST_SWEEP, (FAST, FAST, SLOW), strict=True):
        results.write_json(folder / f"query-ef{ef}-k10.json", on(query_record("hnswlib", ef, recall, (qps,)), host))
    rows = report.query_rows(tables.queries(root))
    assert all(r["pareto"] for r in rows)  # the slow host's single point is its own frontier
    import matplotlib.figure

    seen: list[list[str]] = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, *a, **k: seen.append(fig.axes[0].get_legend_handles_labels()[1]))
    report.plot_recall_qps(rows, tmp_path)
    assert sorted(seen[0]) == ["hnswlib M8-efc40-none on fast-box", "hnswlib M8-efc40-none on slow-box"]
    one = [r for r in rows if r["host_name"] == "fast-box"]
    seen.clear()
    report.plot_recall_qps(one, tmp_path)
    assert seen[0] == ["hnswlib M8-efc40-none"]  # one host: the labels are as before


def test_a_single_host_run_gets_a_one_line_section(tmp_path):
    root = tmp_path / "results"
    _sweep(root, FAST, 8, FAST_SWEEP, (0.45, 1100.0))
    results.write_json(root / "adr" / "common.json", on(adr_record("common"), FAST))
    text = report.write_report(root, tmp_path / "out", None, {}).read_text()
    section = _section(text, "Hosts")
    assert len(section) == 1
    assert section[0].startswith("Every record was measured on one host, **fast-box** (`aaaaaaaaaaaa`")
    assert "none while another measuring task ran on the same host" in section[0]
    assert "| host |" not in text and " on fast-box" not in text
    assert "Timings come from one run on a shared machine" in text and "\nMachine: " in text


def test_records_without_host_fields_still_work(tmp_path):
    root = write_tree(tmp_path / "results")
    t = tables.load(root)
    assert set(t.queries["host"]) == {tables.UNRECORDED_HOST} and t.queries["max_concurrent"].is_null().all()
    hosts = tables.hosts(t)
    assert hosts.select("host", "records", "co_scheduled", "load_unknown").rows() == [
        (tables.UNRECORDED_HOST, len(t.files.filter(pl.col("status") == "ok")), 0,
         len(t.files.filter(pl.col("status") == "ok")))]
    assert tables.co_scheduled(t).is_empty()  # unknown is neither co-scheduled nor alone
    text = report.write_report(root, tmp_path / "out", None, {}).read_text()
    section = _section(text, "Hosts")
    assert len(section) == 1 and "unrecorded" in section[0] and "predate host loads" in section[0]
    # one old record among new ones: the old ones are a host of their own, their load unknown
    results.write_json(root / "adr" / "faiss.json", on(adr_record("faiss"), FAST, concurrent=None))
    found = {h["host_name"]: h for h in tables.hosts(root).to_dicts()}
    assert set(found) == {"unrecorded", "fast-box"} and found["fast-box"]["load_unknown"] == 1
    assert found["fast-box"]["records"] == 1 and found["fast-box"]["cpu_model"] == "Synthetic CPU"


def test_host_columns_read_what_a_record_has():
    assert tables.host_columns({}) == {"host": "unrecorded", "host_name": "unrecorded", "max_concurrent": None}
    assert tables.host_columns({"environment": {"host": {"fingerprint": "abc"}}, "host_load": None}) == {
        "host": "abc", "host_name": "abc", "max_concurrent": None}
    assert tables.host_columns(on({}, SLOW, 3)) == {"host": "bbbbbbbbbbbb", "host_name": "slow-box",
                                                     "max_concurrent": 3}


# --------------------------------------------------------------------------------------------------- notebooks
def test_the_notebooks_native_over_wasm_ratio_pairs_only_one_hosts_latencies(two, tmp_path):
    pytest.importorskip("pandas", reason="pandas comes with the notebooks extra")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "notebooks"))
    import _nbdata as nd

    # faiss on the fast host, wasm on the slow one: no ratio
    assert nd.native_wasm_ratios(nd.adr_cases(two), "honest").empty
    root = tmp_path / "results"
    for backend, host in (("faiss", FAST), ("wasm", FAST), ("hnswlib", SLOW)):
        results.write_json(root / "adr" / f"{backend}.json", on(adr_record(backend), host))
    ratios = nd.native_wasm_ratios(nd.adr_cases(root), "honest")
    assert set(ratios["native"]) == {"faiss"} and set(ratios["host"]) == {FAST["fingerprint"]}
    runs = nd.query_runs(two)
    assert len(nd.pareto(runs)) == 6 and "host" in nd.operating_table(runs).columns


def test_the_autotuners_trials_carry_their_hosts_and_a_cross_host_ratio_is_named(tmp_path):
    """A study whose trials ran on two hosts: each trial and front point names its host, the study counts them, and
    the grid sentence says when the tuner's best and the grid's best were measured on different machines."""
    record = json.loads((Path(__file__).resolve().parent / "fixtures" / "tune-recall-0.95.json").read_text())
    for i, trial in enumerate(record["trials"]):
        trial["host"], trial["host_load"] = dict((FAST, SLOW)[i % 2]), {"max_concurrent": 1 + i % 2}
    record["grid"]["best"]["host"] = dict(SLOW)
    record["grid"]["tuner_best"]["host"] = dict(FAST)
    folder = tmp_path / "results" / "tune" / record["dataset"]
    folder.mkdir(parents=True)
    (folder / "recall-0.95.json").write_text(json.dumps(record))
    root = tmp_path / "results"
    row = tables.tune_results(root).row(0, named=True)
    assert (row["n_hosts"], row["tuner_best_host"], row["grid_best_host"]) == (2, "fast-box", "slow-box")
    trials = tables.tune_trials(root).filter(~pl.col("in_grid_only"))
    assert trials.select("host_name", "max_concurrent").rows()[:2] == [("fast-box", 1), ("slow-box", 2)]
    assert {"host", "host_name", "max_concurrent"} <= set(tables.tune_pareto(root).columns)
    text = "\n".join(report.tune_lines(tables.tune_results(root)))
    assert "on two hosts, fast-box and slow-box: the ratio holds the machines' difference too" in text
    assert "The trials ran on 2 hosts" in text
    # the same study from before hosts were recorded reads as before
    for trial in record["trials"]:
        del trial["host"], trial["host_load"]
    del record["grid"]["best"]["host"], record["grid"]["tuner_best"]["host"]
    (folder / "recall-0.95.json").write_text(json.dumps(record))
    row = tables.tune_results(root).row(0, named=True)
    assert (row["n_hosts"], row["tuner_best_host"]) == (1, "unrecorded")
    assert "hosts" not in "\n".join(report.tune_lines(tables.tune_results(root)))
