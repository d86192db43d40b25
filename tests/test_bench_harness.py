"""The harness on small real data: build + query sweep, result files and skipping, the codec sweep, the ADR suite,
the report, params, thread pinning and the environment record."""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ruvector_lab import HnswConfig, HnswIndex
from ruvector_lab.bench import adr, datasets, env, groundtruth, params, quant, report, results, runner, threads, timer
from ruvector_lab.bench.hdf5 import write_hdf5
from ruvector_lab.bench.targets import variant_case
from ruvector_lab.errors import InvalidParameterError

FAST = runner.RunSettings(n_queries=60, repeats=2, warmup=5, threads=(1, 2), build_threads=1, insert_chunk=200,
                          memory=False)


@pytest.fixture(scope="module")
def small():
    ds = datasets.clustered(n=800, n_queries=60, dimensions=16, clusters=8, seed=5, name="small")
    ds.neighbors, ds.distances = groundtruth.knn_ground_truth(ds.test, ds.train, 100, ds.metric)
    return ds


def test_run_build_writes_build_and_query_records(small, tmp_path):
    out = runner.run_build(small, "hnswlib", runner.BuildParams(8, 40), [10, 80], FAST, tmp_path)
    assert out.unavailable is None and len(out.written) == 3
    d = results.run_dir(tmp_path, "small", "hnswlib", "M8-efc40-none")
    build = json.loads((d / "build.json").read_text())
    assert build["schema"] == results.SCHEMA_BUILD and build["status"] == "ok" and build["graph"] == "hnsw"
    assert build["serialized_bytes"] > 800 * 16 * 4
    assert build["bytes_per_vector"]["serialized"] == build["serialized_bytes"] / 800
    assert build["environment"]["cores_usable"] >= 1 and build["environment"]["libraries"]["numpy"]
    assert build["dataset"]["content_hash"] == small.content_hash()
    low, high = (json.loads(results.query_file(d, ef, 10).read_text()) for ef in (10, 80))
    for rec in (low, high):
        assert set(rec["recall"]) == {"1", "10", "100"}
        assert 0 <= rec["recall"]["10"] <= 1 and rec["latency_ms"]["count"] == 60
        assert rec["latency_ms"]["p50"] <= rec["latency_ms"]["p99"]
        assert set(rec["qps"]) == {"1", "2"} and rec["qps"]["1"]["median"] > 0
        assert set(rec["qps_pool"]) == {"2"}  # one caller with the library's pool at 2 threads
        # strict recall counts ids only, so it never exceeds the tie-tolerant one
        assert rec["recall_strict"]["10"] <= rec["recall"]["10"] + 1e-12
        assert (d / rec["perquery_file"]).is_file()
    # a graph search needs ef >= k: the record shows what really ran
    assert low["query"]["ef_effective"] == 10 and low["query"]["ef_effective_big"] == 100
    assert high["query"]["ef_effective"] == 80 and high["query"]["ef_effective_big"] == 100
    assert high["recall"]["10"] >= low["recall"]["10"] and high["recall"]["10"] > 0.9
    # the library called directly, measured with the facade on the same median build
    for rec in (low, high):
        direct = rec["direct"]
        assert direct["latency_ms"]["direct"]["count"] == direct["latency_ms"]["facade"]["count"] == 60
        assert direct["overhead"]["latency_p50"] == pytest.approx(
            direct["latency_ms"]["facade"]["p50"] / direct["latency_ms"]["direct"]["p50"])
        assert direct["overhead"]["qps"] == pytest.approx(
            direct["qps"]["direct"]["median"] / direct["qps"]["facade"]["median"])
        assert len(direct["qps"]["direct"]["values"]) == FAST.repeats
        assert direct["latency_ms"]["facade"] == rec["latency_ms"]  # one paired run, each query timed once a side
        assert direct["qps"]["facade"]["median"] in rec["qps"]["1"]["values"]  # the median build's own figure
    flat = runner.run_build(small, "numpy", runner.BuildParams(8, 40), [10], FAST, tmp_path)
    assert flat.unavailable is None
    rec = json.loads(results.query_file(results.run_dir(tmp_path, "small", "numpy", "M8-efc40-none"), 10,
                                        10).read_text())
    assert rec["direct"] is None  # no library underneath the NumPy fallback: nothing to compare


def test_library_direct_runs_the_same_search_as_the_facade(small):
    index = HnswIndex(HnswConfig(dimensions=16, m=8, ef_construction=40, metric=small.metric), backend="faiss")
    index.insert_batch([str(i) for i in range(len(small.train))], small.train)
    raw = index.raw_backend
    one, batch = raw.direct_search(10, 30), raw.direct_search_batch(10, 30)
    facade_ids = index.search_batch(small.test[:20], 10, 30).ids.astype(np.int64)
    _, labels = batch(small.test[:20])
    assert (labels == facade_ids).all() and (one(small.test[0])[1][0] == facade_ids[0]).all()
    figures = runner.library_direct(index, small.test[:20], 10, 30, repeats=2, warmup=2)
    assert set(figures) == {"latency_ms", "qps", "overhead"} and figures["overhead"]["latency_p50"] > 0
    index.close()


def test_build_repeats_give_spread_and_the_median_build(small, tmp_path):
    settings = runner.RunSettings(n_queries=60, repeats=1, warmup=2, threads=(1,), build_threads=1,
                                  insert_chunk=300, build_repeats=3, memory=False)
    runner.run_build(small, "hnswlib", runner.BuildParams(4, 16), [10], settings, tmp_path)
    d = results.run_dir(tmp_path, "small", "hnswlib", "M4-efc16-none")
    build = json.loads((d / "build.json").read_text())
    assert [b["seed"] for b in build["builds"]] == [0, 1, 2] and len(build["build_time_s"]["values"]) == 3
    rec = json.loads(results.query_file(d, 10, 10).read_text())
    per_build = [b["recall"]["10"] for b in rec["builds"]]
    # different insertion orders give different graphs: a weak graph (M 4, ef 10) shows it in recall
    assert len(set(per_build)) > 1
    assert rec["recall"]["10"] == sorted(per_build)[1] == per_build[rec["median_build"]]
    assert rec["recall_builds"]["10"]["min"] == min(per_build) and rec["recall_builds"]["10"]["max"] == max(per_build)
    assert len(rec["qps"]["1"]["values"]) == 3 and len({b["perquery_file"] for b in rec["builds"]}) == 3
    # flat indexes build once whatever build_repeats says; big sets too when capped
    runner.run_build(small, "numpy", runner.BuildParams(4, 16), [10], settings, tmp_path)
    flat = json.loads((results.run_dir(tmp_path, "small", "numpy", "M4-efc16-none") / "build.json").read_text())
    assert len(flat["builds"]) == 1
    assert dataclasses.replace(settings, build_repeats_max_train=500).builds_for(800, "hnsw") == 1


def test_results_are_repeated_when_the_dataset_contents_change(small, tmp_path):
    settings = runner.RunSettings(n_queries=30, repeats=1, warmup=2, threads=(1,), memory=False)
    first = runner.run_build(small, "numpy", runner.BuildParams(), [10], settings, tmp_path)
    assert len(first.written) == 2
    assert runner.run_build(small, "numpy", runner.BuildParams(), [10], settings, tmp_path).written == []
    changed = dataclasses.replace(small, train=small.train.copy())
    changed.train[0, 0] += 0.5  # same name, shape and metric; other vectors
    again = runner.run_build(changed, "numpy", runner.BuildParams(), [10], settings, tmp_path)
    assert len(again.written) == 2 and again.skipped == []


def test_fewer_queries_than_asked_are_recorded(small, tmp_path):
    settings = runner.RunSettings(n_queries=500, repeats=1, warmup=2, threads=(1,), memory=False)
    out = runner.run_build(small, "numpy", runner.BuildParams(), [10], settings, tmp_path)
    rec = json.loads(out.written[1].read_text())
    assert rec["query"]["n_queries"] == 60 and rec["query"]["n_queries_requested"] == 500


def test_batch_qps_workers_run_with_every_pool_pinned(small):
    # the defect: OpenMP's count is per thread, so a pin taken in the calling thread does not reach a worker
    faiss = pytest.importorskip("faiss")
    if env.usable_cores() > 1:
        with threads.pinned_threads(1), ThreadPoolExecutor(1) as plain:
            assert plain.submit(faiss.omp_get_max_threads).result() > 1
    with threads.pinned_threads(1), runner.caller_pool(2) as pool:
        reports = [pool.submit(threads.pool_threads).result() for _ in range(4)]
    for report_ in reports:
        assert report_["faiss_omp"] == 1 and report_["library_pools"] == 1 and threads.all_pinned_to(report_, 1)
    # and the measurement records what its workers read back, with the parallelism that really ran
    index = HnswIndex(HnswConfig(dimensions=16, m=8, ef_construction=40), backend="faiss")
    index.insert_batch([str(i) for i in range(len(small.train))], small.train)
    rec = runner.qps_caller_threads(index, small.test, 10, 40, 1, 2)
    assert threads.all_pinned_to(rec["pools"], 1) and rec["cpu_utilization"] > 0
    pooled = runner.qps_library_pool(index, small.test, 10, 40, 2, 1)
    assert pooled["pools"]["faiss_omp"] == 2 and pooled["pools"]["library_pools"] == 2
    index.close()


def test_auto_threads_reach_the_core_count():
    assert runner.auto_threads(1) == (1,)
    assert runner.auto_threads(2) == (1, 2)
    assert runner.auto_threads(6) == (1, 2, 4, 6)
    assert runner.thread_counts("auto") == runner.auto_threads()
    assert runner.thread_counts([2, 1, 2]) == (1, 2)
    with pytest.raises(InvalidParameterError):
        runner.thread_counts([0])
    with pytest.raises(InvalidParameterError):
        runner.thread_counts("many")


def test_memory_of_the_index_is_measured_in_a_child(small, tmp_path):
    settings = runner.RunSettings(n_queries=30, repeats=1, warmup=2, threads=(1,), memory=True)
    out = runner.run_build(small, "hnswlib", runner.BuildParams(8, 40), [10], settings, tmp_path)
    build = json.loads(out.written[0].read_text())
    per_vector = build["bytes_per_vector"]
    assert per_vector["analytic"]["total"] > 16 * 4 and per_vector["serialized"] > 16 * 4
    assert per_vector["child"]["backend"] == "hnswlib" and per_vector["rss_growth"] is not None


def test_noise_is_flagged_and_the_reference_recorded():
    assert runner._flag_noise({"a": {"rel_spread": 0.5}, "b": {"rel_spread": 0.1}, "c": {}}, 0.2) == ["a"]
    assert timer.reference_seconds(repeats=2, size=10_000) > 0


def test_finished_runs_are_skipped_unless_forced(small, tmp_path):
    runner.run_build(small, "numpy", runner.BuildParams(8, 40), [10, 20], FAST, tmp_path)
    again = runner.run_build(small, "numpy", runner.BuildParams(8, 40), [10, 20], FAST, tmp_path)
    assert again.written == [] and len(again.skipped) == 1  # exact backend: one ef only
    forced = runner.run_build(small, "numpy", runner.BuildParams(8, 40), [10], runner.RunSettings(
        n_queries=60, repeats=1, warmup=2, threads=(1,), force=True, memory=False), tmp_path)
    assert len(forced.written) == 2
    rec = json.loads(forced.written[1].read_text())
    assert rec["recall"]["10"] == 1.0 and rec["graph"] == "flat"
    flat = runner.RunSettings(n_queries=60, repeats=3, flat_repeats=1, warmup=2, threads=(1,), force=True,
                              memory=False)
    rec = json.loads(runner.run_build(small, "numpy", runner.BuildParams(8, 40), [10], flat, tmp_path).written[1]
                     .read_text())
    assert rec["repeats"] == 1 and len(rec["qps"]["1"]["values"]) == 1


def test_unavailable_capabilities_are_recorded_not_faked(small, tmp_path):
    with pytest.raises(InvalidParameterError, match="unknown backend"):
        runner.run_build(small, "no-such-backend", runner.BuildParams(), [10], FAST, tmp_path)
    # a codec this version does not have is absent from the grid: recorded with its reason, no numbers
    out = runner.run_build(small, "hnswlib", runner.BuildParams(quantization="bogus"), [10], FAST, tmp_path)
    assert out.unavailable
    rec = json.loads(out.written[0].read_text())
    assert rec["status"] == "not available" and rec["reason"]
    assert "recall" not in rec and "build_time_s" not in rec
    capped = runner.RunSettings(n_queries=60, repeats=1, warmup=2, threads=(1,), max_train={"numpy": 100},
                                memory=False)
    skip = runner.run_build(small, "numpy", runner.BuildParams(), [10], capped, tmp_path)
    rec = json.loads(skip.written[0].read_text())
    assert rec["status"] == "skipped" and "max_train" in rec["reason"] and len(skip.written) == 1
    rec = runner.unavailable_record(small, "wasm", runner.BuildParams(), "wasmtime missing")
    assert rec["status"] == "not available" and rec["reason"] == "wasmtime missing" and rec["tier"] == "wasm"


def test_run_build_needs_ground_truth():
    bare = datasets.adr_random(n=50, n_queries=5, dimensions=4)
    with pytest.raises(InvalidParameterError, match="ground truth"):
        runner.run_build(bare, "numpy", runner.BuildParams(), [10], FAST, "/tmp/unused")


def test_parse_quantization_specs():
    pytest.importorskip("ruvector_lab.quantization")
    assert runner.parse_quantization("product", 384).m == 48
    assert runner.parse_quantization("product-m12", 384).m == 12
    assert runner.parse_quantization("scalar", 8).kind == "scalar"
    with pytest.raises(InvalidParameterError):
        runner.parse_quantization("scalar-m4", 8)
    assert results.split_spec("product-m48-r40") == ("product", 48, 40)
    assert results.split_spec("scalar") == ("scalar", None, 0)
    with pytest.raises(InvalidParameterError):
        results.split_spec("scalar-x1")
    tiny = datasets.adr_random(n=10, n_queries=2, dimensions=8)
    cfg = runner.make_config(tiny, runner.BuildParams(8, 40, "scalar-r5"))
    assert cfg.rerank == 5 and cfg.quantization.kind == "scalar"


def test_quant_sweep_trades_bytes_for_recall(small, tmp_path):
    pytest.importorskip("ruvector_lab.quantization")
    written = quant.run_quant_sweep(small, ["scalar", "binary", "product-m4", "bogus"], tmp_path, factors=(1, 4),
                                    n_queries=40)
    recs = {json.loads(p.read_text())["spec"]: json.loads(p.read_text()) for p in written}
    assert recs["bogus"]["status"] == "not available"
    scalar, binary = recs["scalar"], recs["binary"]
    assert scalar["code_bytes"] < 16 * 4 and binary["bytes_per_vector"] < scalar["bytes_per_vector"]
    no_rr, rr = scalar["rerank"]
    assert no_rr["factor"] == 1 and rr["recall_at_10"] >= no_rr["recall_at_10"] - 1e-9
    assert scalar["rerank"][0]["recall_at_10"] > binary["rerank"][0]["recall_at_10"]
    assert recs["product-m4"]["codebook_bytes"] > 0
    again = quant.run_quant_sweep(small, ["scalar"], tmp_path, factors=(1, 4), n_queries=40)
    assert again == []  # finished and unchanged: skipped


def test_adr_suite_records_both_protocols(small):
    settings = adr.AdrSettings(search_iterations=40, embed_iterations=3, batch_iterations=1, op_iterations=40,
                               n_patterns=200, m=8, ef_construction=40)
    rec = adr.run_backend(small, "numpy", settings)
    assert rec["status"] == "ok" and rec["schema"] == results.SCHEMA_ADR
    search = rec["cases"]["hnsw_search_k10"]
    assert search["recall_at_10"] == 1.0
    assert set(search["protocols"]) == {"adr", "honest"}
    assert search["protocols"]["honest"]["iterations"] == 40
    assert search["protocols"]["adr"]["verdict"] in {"pass", "fail"}
    assert rec["cases"]["hnsw_insert"]["protocols"]["adr"]["verdict"] == "no target"
    with pytest.raises(InvalidParameterError):
        adr.run_backend(small, "no-such-backend", settings)
    assert len(set(adr.distinct_sentences(50))) == 50


def test_report_from_results(small, tmp_path):
    root = tmp_path / "res"
    runner.run_build(small, "hnswlib", runner.BuildParams(8, 40), [10, 40, 160], FAST, root)
    runner.run_build(small, "numpy", runner.BuildParams(8, 40), [10], FAST, root)
    runner.run_build(small, "hnswlib", runner.BuildParams(8, 40, "bogus"), [10], FAST, root)
    rows = report.query_rows(report.load_results(root)["queries"])
    assert {r["backend"] for r in rows} == {"hnswlib", "numpy"}
    ops = report.operating_table(rows)
    numpy_ops = [o for o in ops if o["backend"] == "numpy"]
    assert len(numpy_ops) == 3 and all(o["recall_at_10"] == 1.0 for o in numpy_ops)
    path = report.write_report(root, tmp_path / "out", None, {"bench": {"n_queries": 60}})
    text = path.read_text()
    assert "## Operating points" in text and "M8-efc40-bogus" in text  # absent builds are listed as such
    assert "small: fastest at recall@10 >= 0.95" in text
    assert (tmp_path / "out" / "plots" / "recall_qps.png").stat().st_size > 1000  # one file, a panel per dataset
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    # the headline only: the exact scan reaches every recall target, so each has a best QPS and its configuration
    assert set(metrics) == {"qps", "config", "codec", "verdicts"}
    assert set(metrics["qps"]["small"]) == {"r90", "r95", "r99"} and metrics["qps"]["small"]["r99"] > 0
    assert metrics["config"]["small"]["r99"].startswith(("numpy exact", "hnswlib M8-efc40-none ef "))
    ops_head = (tmp_path / "out" / "plots" / "operating_points.csv").read_text().splitlines()[0]
    assert ops_head.startswith("dataset,backend,build,graph,target,ef_search")
    csv_head = (tmp_path / "out" / "plots" / "recall_qps.csv").read_text().splitlines()[0]
    assert "recall_at_10" in csv_head and "qps" in csv_head



def test_report_shows_the_autotuner_and_says_when_it_has_not_run(tmp_path):
    """The "Autotuner" section: per study the answer, the recommendation per objective with its verification, the
    grid comparison in one sentence (plainly 'not within 5%' when it is not) and the study; metrics.json gets the
    headline recommendation. Without studies the section says so and metrics.json keeps its keys."""
    bare = report.write_report(tmp_path / "none", tmp_path / "bare", None, {}).read_text()
    assert "## Autotuner" in bare and "No tune results" in bare
    assert "tune" not in json.loads((tmp_path / "bare" / "metrics.json").read_text())
    example = Path(__file__).resolve().parent / "fixtures" / "tune-recall-0.95.json"
    folder = tmp_path / "res" / "tune" / "wordnet-minilm-384"
    (folder / "evals").mkdir(parents=True)
    (folder / "recall-0.95.json").write_text(example.read_text())
    (folder / "evals" / "cache.json").write_text('{"status": "ok"}')  # the tuner's cache: not a result
    text = report.write_report(tmp_path / "res", tmp_path / "out", None, {}).read_text()
    section = text[text.index("## Autotuner"):]
    assert text.index("## Quantization trade-offs") < text.index("## Autotuner")
    assert "### wordnet-minilm-384, recall@10 >= 0.95" in section
    assert "**Answer** (objective qps): hnswlib M16 efc128 none at ef_search 32" in section
    assert "| QPS | hnswlib M16 efc128 none | 32 | 0.953 | 8,697 | 2179 | 3.26 | median recall 0.954 over 2" in section
    assert "| memory (bytes/vector) | faiss M8 efc64 none | 62 |" in section and "ef raised 61 → 62" in section
    assert "the tuner built 3 of the 12 configurations" in section
    assert "is 71% of the grid's best, faiss M16 efc128 none at 12,164 QPS: **not within 5%**" in section
    assert "within 5% of the grid's best with 0 of 5 seeds" in section
    assert "Study `wordnet-minilm-384-recall0.95-efdc6a6d`" in section
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    headline = metrics["tune"]["wordnet-minilm-384"]["r95"]
    assert headline["config"] == "hnswlib M16 efc128 none" and headline["ef_search"] == 32
    assert (headline["builds"], headline["grid_builds"], headline["within_tolerance"]) == (3, 12, False)
    # params select the studies of their own tune section
    other = report.write_report(tmp_path / "res", tmp_path / "other", None, {"tune": {"targets": [0.9]}}).read_text()
    assert "No tune results" in other

def test_results_helpers(tmp_path):
    assert results.build_key(16, 100, "none") == "M16-efc100-none"
    with pytest.raises(InvalidParameterError):
        results.build_key(16, 100, "../x")
    with pytest.raises(InvalidParameterError):
        results.check_component("a/b", "dataset")
    path = results.write_json(tmp_path / "r.json", {"status": "ok", "fingerprint": "f", "x": np.float32(1.5)})
    assert results.read_json(path)["x"] == 1.5
    assert results.is_done(path, "f") and not results.is_done(path, "g")
    (tmp_path / "broken.json").write_text("{")
    assert results.read_json(tmp_path / "broken.json") is None
    assert results.fingerprint({"a": 1}) != results.fingerprint({"a": 2})
    assert len(results.code_hash()) == 16
    assert results.measured_code_hash("hnswlib") != results.measured_code_hash("faiss")
    assert results.measured_code_hash("wasm") != results.measured_code_hash("wasm", quantized=True)
    assert results.fingerprint({"a": 1}, "x") != results.fingerprint({"a": 1}, "y")
    assert [r["x"] for r in results.collect(tmp_path, "*.json")] == [1.5]


def test_params_profiles_load():
    root = Path(__file__).resolve().parents[1]
    for name in ("params.yaml", "pipelines/params-tiny.yaml", "pipelines/params-full.yaml"):
        p = params.load_params(root / name)
        for ds in p["bench"]["datasets"]:
            assert params.dataset_spec(p, ds)["source"]
        settings = runner.run_settings(p)
        assert settings.n_queries >= 100 and settings.threads and not settings.force
        assert params.ef_searches(p) == sorted(params.ef_searches(p))
        assert adr.adr_settings(p).ef_search > 0
    tiny = params.load_params(root / "pipelines/params-tiny.yaml")
    assert not {params.dataset_spec(tiny, d)["source"] for d in tiny["bench"]["datasets"]} & {"wordnet",
                                                                                               "fashion-mnist"}


def test_params_errors(tmp_path):
    with pytest.raises(InvalidParameterError):
        params.load_params(tmp_path / "none.yaml")
    (tmp_path / "p.yaml").write_text("- a list\n")
    with pytest.raises(InvalidParameterError):
        params.load_params(tmp_path / "p.yaml")
    with pytest.raises(InvalidParameterError):
        params.dataset_spec({"datasets": {}}, "x")
    with pytest.raises(InvalidParameterError):
        adr.adr_settings({"adr": {"speed": 3}})
    with pytest.raises(InvalidParameterError):
        params.ef_searches({"query": {"ef_search": []}})
    with pytest.raises(InvalidParameterError):
        params.section({"bench": [1]}, "bench")
    assert runner.run_settings({"bench": {"force": True}}).force
    assert runner.run_settings({"bench": {"max_train": {"wasm": 5}}}).max_train == {"wasm": 5}
    assert runner.run_settings({"bench": {"flat_repeats": 1}}).flat_repeats == 1
    tuned = runner.run_settings({"bench": {"build_repeats": 3, "build_repeats_max_train": 50_000, "memory": False,
                                           "noise_threshold": 0.3, "threads": "auto"}})
    assert (tuned.build_repeats, tuned.build_repeats_max_train, tuned.memory, tuned.noise_threshold) == (
        3, 50_000, False, 0.3)
    assert tuned.threads[-1] == env.usable_cores()


def test_pinned_threads_and_environment():
    from ruvector_lab.pools import pinned_pool_size

    with threads.pinned_threads(1) as pinned:
        assert pinned["threads"] == 1 and threads.all_pinned_to(pinned, 1)
        assert pinned_pool_size() == 1
        faiss = pytest.importorskip("faiss")
        assert faiss.omp_get_max_threads() == 1
    assert pinned_pool_size() is None  # restored on exit
    assert isinstance(threads.thread_pools(), list)
    with pytest.raises(InvalidParameterError), threads.pinned_threads(0):
        pass
    record = env.environment()
    assert record["cores_usable"] >= 1 and record["cpu_model"]
    from ruvector_lab import fastpath

    assert record["facade_hot_path"] is (fastpath.hotpath is not None)


def test_a_fingerprint_changes_with_whether_the_c_hot_path_is_built(monkeypatch):
    from ruvector_lab import fastpath
    from ruvector_lab.bench import results

    params = {"backend": "hnswlib", "m": 16}
    built = results.fingerprint(params, "code")
    assert results.fingerprint(params, "code") == built
    monkeypatch.setattr(fastpath, "hotpath", None if fastpath.hotpath is not None else fastpath)
    assert env.facade_hot_path() is (fastpath.hotpath is not None)
    assert results.fingerprint(params, "code") != built
    assert env.library_versions(("numpy", "no-such-dist")) == {"numpy": np.__version__, "no-such-dist": None}
    assert env.peak_rss_bytes() >= env.current_rss_bytes() // 2 > 0


def test_cli_data_groundtruth_build_report(tmp_path, monkeypatch):
    from ruvector_lab.cli import app

    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(
        "datasets:\n  r: {source: adr-random, n: 300, n_queries: 30, dimensions: 8}\n"
        "groundtruth: {k: 20}\nbench: {n_queries: 30, repeats: 1, warmup: 2, threads: [1], backends: [numpy]}\n"
        "query: {k: 10, ef_search: [10]}\n")
    cli = CliRunner()
    for args in (["data", "r"], ["groundtruth", "r"], ["build", "r", "numpy"], ["report"]):
        res = cli.invoke(app, args)
        assert res.exit_code == 0, res.output
    assert Path("data/datasets/r.hdf5").is_file() and Path("results/report.md").is_file()
    bad = cli.invoke(app, ["data", "unknown"])
    assert bad.exit_code == 2 and "unknown" in bad.output
    ext = cli.invoke(app, ["data", "ext", "--hdf5", str(tmp_path / "data/datasets/r.hdf5")])
    assert ext.exit_code == 0 and Path("data/raw/ext.hdf5").is_file()
    assert "numpy" in cli.invoke(app, ["backends"]).output


def test_hdf5_round_trip_through_groundtruth_keeps_given_truth(tmp_path, monkeypatch):
    from ruvector_lab.cli import app

    monkeypatch.chdir(tmp_path)
    ds = datasets.adr_random(n=100, n_queries=5, dimensions=4)
    ds.neighbors, ds.distances = groundtruth.knn_ground_truth(ds.test, ds.train, 100, ds.metric)
    write_hdf5(Path("data/raw/given.hdf5"), ds)
    Path("params.yaml").write_text("groundtruth: {k: 100}\n")
    res = CliRunner().invoke(app, ["groundtruth", "given"])
    assert res.exit_code == 0, res.output
    summary = json.loads(Path("data/datasets/given.json").read_text())
    assert summary["gt_k"] == 100 and summary["n_train"] == 100


def test_adr_common_cases_are_measured_or_absent(small):
    settings = adr.AdrSettings(search_iterations=20, embed_iterations=2, batch_iterations=1, op_iterations=30,
                               n_patterns=100)
    rec = adr.run_common(small, settings)
    assert rec["backend"] == "common" and rec["schema"] == results.SCHEMA_ADR
    matrix = {variant_case(case, p, f"{t}t", texts) for p in ("fp32", "int8") for t in (1, 2)
              for case, texts in (("embed_single", "short"), ("embed_batch_32", "short"), ("embed_batch_32", "mixed"))}
    assert set(rec["cases"]) == {"embed_single", "embed_batch_32", "distance", "quantize", "pattern_match", *matrix}
    # the ADR's own setting (fp32, 1 thread, short texts) is the matrix's cell, measured once
    assert rec["cases"]["embed_batch_32"] is rec["cases"][variant_case("embed_batch_32", "fp32", "1t", "short")]
    mixed = rec["cases"][variant_case("embed_batch_32", "int8", "2t", "mixed")]
    if mixed["status"] == "ok":
        assert mixed["info"]["threads"] == 2 and mixed["info"]["texts"] == "mixed"
        assert mixed["info"]["parts_ms"]["p50"] > 0 and mixed["info"]["graph"] in ("fused", "plain")
        assert mixed["protocols"]["honest"]["verdict"] in ("pass", "fail")  # judged against embed_batch_32's target
    for case in rec["cases"].values():
        assert case["scope"] == "common"
        if case["status"] == "ok":
            assert case["protocols"]["adr"]["latency_ms"]["mean"] > 0
        else:  # e.g. no model files: recorded absent with the reason, never a number
            assert case["status"] == "not available" and case["reason"] and "protocols" not in case
    assert rec["cases"]["distance"]["protocols"]["honest"]["verdict"] == "no target"


def test_every_param_the_pipeline_declares_exists_in_both_profiles():
    import yaml

    root = Path(__file__).resolve().parents[1]
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    for name in ("params.yaml", "pipelines/params-tiny.yaml", "pipelines/params-full.yaml"):
        p = params.load_params(root / name)
        for stage in stages.values():
            body = stage.get("do", stage)
            for key in body.get("params", []):
                items = p["bench"]["datasets"] if "${item}" in key else [None]
                for item in items:
                    node: object = p
                    for part in key.replace("${item}", str(item)).split("."):
                        assert isinstance(node, dict) and part in node, f"{name} lacks {key} (at {part})"
                        node = node[part]
