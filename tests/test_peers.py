"""Native vs WASM builds of one library (ruvector_lab.bench.peers, peers/*.mjs): the runner on a tiny dataset in
Node.js, headless Chromium and Python's wasmtime, its records against the schema, recall against the Python
hnswlib backend, and how a missing runtime, a drifted package and a crashed process are recorded."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from helpers import clustered

from ruvector_lab import HnswConfig, HnswIndex
from ruvector_lab.bench import peers, schemas, tables
from ruvector_lab.bench.groundtruth import brute_force
from ruvector_lab.bench.hdf5 import Dataset
from ruvector_lab.errors import InvalidParameterError

ROOT = Path(__file__).resolve().parents[1]
TOOLS = peers.Tools.find()
SETTINGS = peers.PeerSettings(runs=2, m=12, ef_construction=60, ef_search=(10, 40), n_queries=200, exact_queries=60,
                              warmup=5, repeats=1, timeout_s=240)


def _dataset(metric: str = "cosine", n: int = 1500, d: int = 48, seed: int = 3) -> Dataset:
    x = clustered(n + 200, d, clusters=30, seed=seed)
    train, test = x[:n], x[n:]
    ids, dist = brute_force(test, train, 100, metric)
    return Dataset(f"peers-{metric}", train, test, metric, ids, dist)


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    return _dataset()


@pytest.fixture(scope="module")
def measured(tiny, tmp_path_factory) -> Path:
    """Every pair on the tiny set, written under a results root (the tests below read it)."""
    root = tmp_path_factory.mktemp("peers")
    peers.run_dataset(tiny, SETTINGS, root, tools=TOOLS)
    return root


def _side(root: Path, pair: str, backend: str) -> dict:
    rec = json.loads(peers.pair_path(root, "peers-cosine", pair).read_text())
    return next(s for s in rec["sides"] if s["backend"] == backend)


def _require(side: dict) -> dict:
    """A side that could not run here (no Node.js, Chromium or package) is skipped with its own reason."""
    if side["status"] == "not available":
        pytest.skip(f"{side['backend']}: {side['reason']}")
    assert side["status"] == "ok", f"{side['backend']}: {side.get('reason')}"
    return side


# --------------------------------------------------------------------------------------------------- registry
def test_every_pair_names_two_known_sides_and_says_what_they_implement():
    for pair in peers.PAIRS.values():
        assert pair.first.backend in peers.SIDES and pair.second.backend in peers.SIDES
        assert pair.first != pair.second and pair.same_algorithm
        if pair.comparison == "native vs wasm":
            assert (pair.first.tier, pair.second.tier) == ("native", "wasm")
    assert peers.PAIRS["hnswlib"].same and not peers.PAIRS["rvf"].same and not peers.PAIRS["ruvector"].same
    engines = peers.PAIRS["rvf-engines"]
    assert engines.first.package == engines.second.package and engines.first.runtime != engines.second.runtime


def test_settings_reject_unknown_pairs_keys_and_empty_sweeps():
    with pytest.raises(InvalidParameterError, match="unknown pair"):
        peers.PeerSettings(pairs=("hnswlib", "faiss-wasm"))
    with pytest.raises(InvalidParameterError, match="runs"):
        peers.PeerSettings(runs=0)
    with pytest.raises(InvalidParameterError, match="ef_search"):
        peers.PeerSettings(ef_search=())
    with pytest.raises(InvalidParameterError, match=r"peers\.runs must be an integer"):
        peers.PeerSettings(runs="two")  # a params typo is a named error, not a ValueError from int()
    with pytest.raises(InvalidParameterError, match="unknown key"):
        peers.peer_settings({"peers": {"datasets": [], "run": 2}})
    assert peers.peer_settings({"peers": {"runs": 3}}).runs == 3


@pytest.mark.parametrize("profile", ["params.yaml", "pipelines/params-tiny.yaml", "pipelines/params-full.yaml"])
def test_every_params_profile_runs_the_stage_on_datasets_it_makes(profile):
    params = yaml.safe_load((ROOT / profile).read_text())
    settings = peers.peer_settings(params)
    assert settings.datasets and set(settings.datasets) <= set(params["bench"]["datasets"])
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["node-peers"]
    assert stage["foreach"] == "${peers.datasets}" and stage["do"]["cmd"] == "ruvector-lab peers ${item}"
    assert {"peers", "package-lock.json", "data/datasets/${item}.hdf5"} <= set(stage["do"]["deps"])


def test_settings_need_k_of_at_least_ten_for_recall_at_ten():
    with pytest.raises(InvalidParameterError, match="recall@10"):
        peers.PeerSettings(k=5)


def _raw(ids: list[int], n_queries: int = 2, k: int = 10) -> dict:
    point = {"ef_search": 10, "ids": ids, "qps": [100.0], "cpu_utilization": [1.0],
             "latency_ms": {"p50": 0.1, "p95": 0.2, "p99": 0.3, "mean": 0.1}}
    return {"status": "ok", "package": "some-package", "version": "1.2.3",
            "measured": {"k": k, "n_queries": n_queries, "build_time_s": 1.0, "sweep": [point], "memory": {}}}


def test_a_result_that_breaks_the_protocol_is_a_failed_run_not_a_figure(tiny):
    good = peers.score_run(_raw(tiny.neighbors[:2, :10].reshape(-1).tolist()), tiny)
    assert good["status"] == "ok" and good["points"][0]["recall_at_10"] == 1.0
    for ids, why in ([[0] * 19, "ValueError"], [[len(tiny.train)] * 20, "stored vectors"], [[-7] * 20, "ids from"]):
        bad = peers.score_run(_raw(ids), tiny)
        assert bad["status"] == "failed" and "some-package 1.2.3" in bad["reason"] and why in bad["reason"]
    assert peers.score_run({"status": "not available", "reason": "no node"}, tiny) == {
        "status": "not available", "reason": "no node"}


def test_export_is_little_endian_float32_rows(tiny, tmp_path):
    meta = peers.export_dataset(tiny, tmp_path)
    assert meta == {"n_train": 1500, "n_test": 200, "dimensions": 48, "metric": "cosine"}
    back = np.fromfile(tmp_path / "train.f32", dtype="<f4").reshape(1500, 48)
    assert np.array_equal(back, tiny.train)


# ------------------------------------------------------------------------------------------ the real runner
def test_records_validate_and_every_pair_has_two_sides(measured):
    records = tables.peer_records(measured)
    assert sorted(r["pair"]["name"] for r in records) == sorted(SETTINGS.pairs)
    for rec in records:
        schemas.validate(rec, expect=schemas.SCHEMA_PEERS)
        assert [s["backend"] for s in rec["sides"]] == [rec["pair"]["first"], rec["pair"]["second"]]
        assert rec["dataset"]["content_hash"]


@pytest.mark.parametrize("pair, backend", [("rvf", "node:rvf-wasm"), ("ruvector", "node:ruvector-wasm"),
                                           ("rvf-engines", "python:rvf-wasm")])
def test_exact_sides_find_every_neighbour(measured, pair, backend):
    side = _require(_side(measured, pair, backend))
    assert side["algorithm"] == "exact"
    assert [p["recall_at_10"] for p in side["sweep"]] == [1.0]
    assert all(run["n_queries"] == SETTINGS.exact_queries for run in side["runs"])


def _python_hnswlib_recall(ds: Dataset, ef: int, n_queries: int) -> float:
    from ruvector_lab.bench.metrics import mean_recall, true_distances

    try:
        index = HnswIndex(HnswConfig(dimensions=ds.dimensions, m=SETTINGS.m, ef_construction=SETTINGS.ef_construction,
                                     ef_search=ef, metric=ds.metric), backend="hnswlib")
    except Exception as exc:  # the backend itself missing is a skip, as the runner's sides are
        pytest.skip(f"Python hnswlib backend: {exc}")
    index.insert_batch([str(i) for i in range(len(ds.train))], ds.train)
    found = index.search_batch(ds.test[:n_queries], k=10, ef_search=ef).ids
    ids = np.array([[int(v) if v is not None else -1 for v in row] for row in found])
    return mean_recall(ds.distances[:n_queries], true_distances(ds.test[:n_queries], ds.train, ids, ds.metric), 10)


@pytest.mark.parametrize("backend", ["node:hnswlib-native", "browser:hnswlib-wasm"])
def test_hnswlib_sides_reach_the_python_backends_recall(measured, tiny, backend):
    side = _require(_side(measured, "hnswlib", backend))
    assert side["algorithm"] == "hnsw"
    for point in side["sweep"]:
        ref = _python_hnswlib_recall(tiny, point["ef_search"], SETTINGS.n_queries)
        assert abs(point["recall_at_10"] - ref) <= 0.02, (backend, point["ef_search"], point["recall_at_10"], ref)


def test_sides_record_pinned_pools_one_busy_core_and_the_engine(measured):
    for pair, backend in [("hnswlib", "node:hnswlib-native"), ("rvf-engines", "python:rvf-wasm")]:
        side = _require(_side(measured, pair, backend))
        assert side["threads"]["env"] == peers.PINNED_ENV
        assert side["engine"]["name"] in ("node", "wasmtime") and side["engine"]["version"]
        for point in side["sweep"]:
            assert 0.5 < point["cpu_utilization"] < 1.5, (backend, point)


def test_browser_side_ran_in_chromium_cross_origin_isolated(measured):
    side = _require(_side(measured, "hnswlib", "browser:hnswlib-wasm"))
    assert side["engine"]["name"] == "chromium" and side["info"]["cross_origin_isolated"] is True
    assert side["threads"] == {"web_workers": 0}
    assert all(0 < run["clock_resolution_ms"] <= 0.1 for run in side["runs"])


def test_comparison_is_at_equal_recall_with_spreads(measured):
    frame = tables.peer_comparison(measured)
    assert frame.height == len(SETTINGS.pairs)
    for row in frame.filter(pl.col("status") == "ok").to_dicts():
        for side in ("first", "second"):
            assert row[f"{side}_recall"] >= row["target_recall"] - tables.PEER_RECALL_TOLERANCE
        assert row["qps_ratio_min"] <= row["qps_ratio"] <= row["qps_ratio_max"]
        assert row["run_pairs"] == SETTINGS.runs
        for side in ("first", "second"):
            if row[f"{side}_bytes"] is not None:  # None: the runtime's memory did not grow (a WASM module's pages)
                assert 0 < row[f"{side}_bytes_min"] <= row[f"{side}_bytes"] <= row[f"{side}_bytes_max"]
        assert row["pair"] in row["verdict"] and row["dataset"] in row["verdict"]
    assert "ADR-006" in tables.peer_verdict(frame)


def test_a_pair_measured_with_the_same_fingerprint_is_kept_and_new_vectors_rerun_it(tiny, measured):
    path = peers.pair_path(measured, tiny.name, "rvf-engines")
    before = path.stat().st_mtime_ns
    only = peers.PeerSettings(**{**SETTINGS.__dict__, "pairs": ("rvf-engines",)})  # the pair list is not measured
    peers.run_dataset(tiny, only, measured, tools=TOOLS)
    assert path.stat().st_mtime_ns == before
    changed = Dataset(tiny.name, tiny.train[::-1].copy(), tiny.test, tiny.metric, tiny.neighbors, tiny.distances)
    peers.run_dataset(changed, peers.PeerSettings(**{**only.__dict__, "runs": 1}), measured, tools=TOOLS)
    assert path.stat().st_mtime_ns != before
    assert json.loads(path.read_text())["dataset"]["content_hash"] == changed.content_hash()


# ----------------------------------------------------------------------------------------------- failure
def test_without_node_or_chromium_every_side_is_not_available_with_the_reason(tiny, tmp_path):
    tools = peers.Tools(TOOLS.root, node=None, chromium=None)
    settings = peers.PeerSettings(**{**SETTINGS.__dict__, "pairs": ("hnswlib", "rvf"), "runs": 1})
    paths = peers.run_dataset(tiny, settings, tmp_path, tools=tools)
    for path in paths:
        rec = json.loads(path.read_text())
        schemas.validate(rec)
        assert rec["status"] == "not available" and "Node.js not found" in rec["reason"]
    frame = tables.peer_comparison(tmp_path)
    assert set(frame["status"]) == {"not available"}
    assert "not measured here" in tables.peer_verdict(frame)


def test_a_missing_package_is_not_available_naming_it(tiny, tmp_path):
    tools = peers.Tools(tmp_path, node=TOOLS.node, chromium=TOOLS.chromium)  # a root without node_modules
    assert "hnswlib-wasm is not installed" in tools.missing(peers.SIDES["browser:hnswlib-wasm"])
    if TOOLS.chromium:
        assert tools.missing(peers.SIDES["browser:hnswlib-wasm"]).endswith("(make setup-npm)")
    no_chromium = peers.Tools(TOOLS.root, node=TOOLS.node, chromium=None)
    assert "Chromium not found" in no_chromium.missing(peers.SIDES["browser:hnswlib-wasm"])


def _fake_package(root: Path, name: str, version: str, index_js: str) -> None:
    folder = root / "node_modules" / name
    folder.mkdir(parents=True)
    (folder / "package.json").write_text(json.dumps({"name": name, "version": version, "main": "index.js"}))
    (folder / "index.js").write_text(index_js)
    (root / "package.json").write_text("{}")


def _run_side(side: peers.Side, tools: peers.Tools, ds: Dataset, workdir: Path) -> dict:
    meta = peers.export_dataset(ds, workdir)
    spec = peers.side_spec(side, SETTINGS, meta, workdir, workdir / "out.json", tools, 50)
    return peers.run_process(side, spec, tools, workdir)


@pytest.mark.skipif(TOOLS.node is None, reason="Node.js not found")
def test_version_drift_fails_the_side_naming_package_and_version(tiny, tmp_path):
    """A package whose class lacks a function the runner calls fails before anything is measured."""
    _fake_package(tmp_path, "hnswlib-node", "9.9.9",
                  "class HierarchicalNSW { initIndex() {} addPoint() {} setEf() {} getCurrentCount() { return 0; } }\n"
                  "module.exports = { HierarchicalNSW };\n")
    work = tmp_path / "work"
    work.mkdir()
    raw = _run_side(peers.SIDES["node:hnswlib-native"], peers.Tools(tmp_path, TOOLS.node, None), tiny, work)
    assert raw["status"] == "failed" and raw["drift"] is True
    assert "hnswlib-node 9.9.9" in raw["reason"] and "searchKnn" in raw["reason"]


@pytest.mark.skipif(TOOLS.node is None, reason="Node.js not found")
def test_a_package_whose_answers_changed_meaning_fails_the_identity_check(tiny, tmp_path):
    """Same function names, other meaning (here: ids shifted by one): the stored-vector check catches it, so no
    recall of ~0 is ever reported as a measurement."""
    _fake_package(tmp_path, "hnswlib-node", "9.9.8", """
class HierarchicalNSW {
  constructor(space, d) { this.d = d; this.rows = []; }
  initIndex() {} setEf() {} getCurrentCount() { return this.rows.length; }
  addPoint(p, label) { this.rows.push([p, label]); }
  searchKnn(q, k) {
    const scored = this.rows.map(([p, label]) => [p.reduce((s, v, i) => s + (v - q[i]) ** 2, 0), label]);
    scored.sort((a, b) => a[0] - b[0]);
    return { neighbors: scored.slice(0, k).map(([, label]) => label + 1), distances: [] };
  }
}
module.exports = { HierarchicalNSW };
""")
    work = tmp_path / "work"
    work.mkdir()
    small = _dataset(n=300)
    raw = _run_side(peers.SIDES["node:hnswlib-native"], peers.Tools(tmp_path, TOOLS.node, None), small, work)
    assert raw["status"] == "failed" and raw["drift"] is True
    assert "hnswlib-node 9.9.8" in raw["reason"] and "found themselves" in raw["reason"]


def test_a_crashed_process_is_a_failed_run_with_its_stderr_and_the_other_side_still_runs(tiny, tmp_path):
    crashing = tmp_path / "node"
    crashing.write_text("#!/bin/sh\necho 'FATAL ERROR: the engine went away' >&2\nkill -SEGV $$\n")
    crashing.chmod(crashing.stat().st_mode | stat.S_IEXEC)
    tools = peers.Tools(TOOLS.root, node=str(crashing), chromium=None)
    settings = peers.PeerSettings(**{**SETTINGS.__dict__, "pairs": ("rvf-engines",), "runs": 1})
    (path,) = peers.run_dataset(tiny, settings, tmp_path / "results", tools=tools)
    rec = json.loads(path.read_text())
    schemas.validate(rec)
    node_side, python_side = rec["sides"]
    assert node_side["status"] == "failed"
    assert "signal 11" in node_side["reason"] and "the engine went away" in node_side["reason"]
    if python_side["status"] != "not available":
        assert python_side["status"] == "ok" and python_side["sweep"][0]["recall_at_10"] == 1.0
    row = tables.peer_comparison(tmp_path / "results").row(0, named=True)
    assert row["status"] == "incomplete" and "signal 11" in row["reason"]


def test_a_truncated_export_fails_the_side_with_a_clear_reason(tiny, tmp_path):
    side = peers.SIDES["python:rvf-wasm"]
    meta = peers.export_dataset(tiny, tmp_path)
    with open(tmp_path / "train.f32", "r+b") as f:
        f.truncate(1000)
    spec = peers.side_spec(side, SETTINGS, meta, tmp_path, tmp_path / "out.json", TOOLS, 20)
    raw = peers.run_process(side, spec, TOOLS, tmp_path)
    assert raw["status"] == "failed" and "train.f32" in raw["reason"]
    if TOOLS.node:
        node_spec = {**spec, "side": "rvf-wasm", "runtime": "node", "output": str(tmp_path / "node.json")}
        raw = peers.run_process(peers.SIDES["node:rvf-wasm"], node_spec, TOOLS, tmp_path)
        assert raw["status"] == "failed" and "train.f32 holds 1000 bytes" in raw["reason"]


def test_cli_writes_the_records(tiny, tmp_path):
    from typer.testing import CliRunner

    from ruvector_lab.bench.hdf5 import write_hdf5
    from ruvector_lab.cli import app

    datasets = tmp_path / "datasets"
    write_hdf5(datasets / f"{tiny.name}.hdf5", tiny)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"peers": {**{k: list(v) if isinstance(v, tuple) else v
                                                   for k, v in SETTINGS.__dict__.items()},
                                                "pairs": ["rvf-engines"], "runs": 1}}))
    result = CliRunner().invoke(app, ["peers", tiny.name, "--params", str(params), "--results",
                                      str(tmp_path / "res"), "--datasets-dir", str(datasets)])
    assert result.exit_code == 0, result.output
    assert peers.pair_path(tmp_path / "res", tiny.name, "rvf-engines").is_file()
    bad = CliRunner().invoke(app, ["peers", "no-such-set", "--params", str(params), "--datasets-dir", str(datasets)])
    assert bad.exit_code == 2 and "no-such-set" in bad.output


def test_python_side_entry_point_usage():
    assert peers.main([]) == 2


@pytest.mark.parametrize("ratios, words", [((1.2, 1.4), "below the ADR's 2-5x"), ((2.2, 3.0), "within the ADR's 2-5x"),
                                           ((5.5, 7.0), "above the ADR's 2-5x"), ((1.5, 2.5), "straddling an edge")])
def test_the_verdict_places_the_ratios_against_the_adrs_band(ratios, words):
    """One rule for a pair's sentence (its range over run pairs) and the ADR verdict (the range over pairs)."""
    low, high = ratios
    row = {"dataset": "d", "pair": "hnswlib", "comparison": "native vs wasm", "same": True, "status": "ok",
           "first": "node:a", "second": "browser:b", "target_recall": 0.95, "qps_ratio": (low + high) / 2,
           "qps_ratio_min": low, "qps_ratio_max": high, "latency_ratio": 2.0, "run_pairs": 2}
    assert words in tables.peer_sentence(row)
    frame = pl.DataFrame([{**row, "qps_ratio": low, "dataset": "d1"}, {**row, "qps_ratio": high, "dataset": "d2"}])
    assert words in tables.peer_verdict(frame)
    assert "no verdict" in tables.peer_sentence({**row, "same": False})
