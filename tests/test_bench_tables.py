"""The results reader (ruvector_lab/bench/tables.py): a small synthetic results tree (tests/result_records.py, written
with results.write_json) read into polars frames, the figures derived from them once (effective ef, Pareto,
operating points, noise flags, the ADR view, the parameters' grid), refusals of files of an unknown schema, and the
per-query files read back against a dataset's ground truth."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from result_records import DATASET, SWEEP, build_record, quant_record, query_record, write_tree

from ruvector_lab.backends import names
from ruvector_lab.bench import groundtruth, perquery, results, tables
from ruvector_lab.bench.hdf5 import Dataset, write_hdf5
from ruvector_lab.errors import InvalidParameterError, ResultSchemaError

NAME = DATASET["name"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("tree") / "results")


@pytest.fixture(scope="module")
def t(root):
    return tables.load(root)


def _one(frame: pl.DataFrame, **where) -> dict:
    sel = frame.filter(*[pl.col(k) == v for k, v in where.items()])
    assert len(sel) == 1, sel
    return sel.row(0, named=True)


# ------------------------------------------------------------------------------------------------------ reading
def test_every_readable_file_is_a_row_and_a_cut_short_one_counts_as_absent(root, t):
    assert len(tables.result_paths(root, "query")) == 6  # five readable, one interrupted
    counts = {(r["kind"], r["status"]): r["len"] for r in t.files.group_by("kind", "status").len().to_dicts()}
    assert counts == {("build", "ok"): 3, ("build", "skipped"): 1, ("query", "ok"): 5, ("quant", "ok"): 1,
                      ("quant", "not available"): 1, ("adr", "ok"): 2, ("adr", "not available"): 1}
    assert list(t.files.columns) == list(tables.FILE_COLUMNS)
    assert t.files["kind"].to_list() == sorted(t.files["kind"].to_list(), key=tables.KINDS.index)


def test_absent_records_keep_what_is_absent_and_why(t):
    absent = t.absent
    assert absent.equals(tables.absent(t))
    assert {(r["kind"], r["backend"], r["spec"]) for r in absent.to_dicts()} == {
        ("build", "wasm", None), ("quant", None, "binary"), ("adr", "wasm", None)}
    skipped = _one(absent, kind="build")
    assert skipped["status"] == "skipped" and "budget" in skipped["reason"] and skipped["build"] == "M8-efc40-none"
    assert "not installed" in _one(absent, kind="adr")["reason"]


def test_builds_are_flattened_with_their_spread_and_memory(t):
    builds = t.builds
    assert list(builds.columns) == list(tables.BUILD_COLUMNS) and len(builds) == 4
    rec = build_record("hnswlib")
    row = _one(builds, backend="hnswlib")
    assert (row["build_time_s"], row["build_time_min"], row["build_time_max"]) == (1.1, 1.0, 1.3)
    assert row["n_builds"] == 3 and row["median_build"] == rec["median_build"] and row["threads"] == 2
    assert (row["bytes_serialized"], row["bytes_analytic"], row["bytes_rss"]) == (64.0, 61.0, 70.5)
    assert (row["analytic_status"], row["rss_status"], row["float_bytes"]) == ("ok", "measured", 32)
    assert row["cpu_utilization"] == rec["builds"][0]["cpu_utilization"] and row["noisy"] == ["build_time_s"]
    assert (row["subtree"], row["label"], row["drift"]) == ("runs", "M8-efc40-none", 0.06)
    flat = _one(builds, backend="numpy")
    assert flat["label"] == "exact" and flat["n_builds"] == 1
    skipped = _one(builds, backend="wasm")
    assert skipped["status"] == "skipped" and skipped["n_builds"] == 0 and skipped["build_time_s"] is None
    quantized = _one(builds, backend="faiss")
    assert (quantized["subtree"], quantized["build"]) == ("qhnsw", "M8-efc40-scalar-r40")


def test_queries_are_one_row_per_setting_with_every_figure(t):
    q = t.queries
    assert list(q.columns)[: len(tables.QUERY_COLUMNS)] == list(tables.QUERY_COLUMNS) and len(q) == 5
    per_thread = {c for c in q.columns if c not in tables.QUERY_COLUMNS}
    assert {"qps_1", "qps_1_min", "qps_1_max", "qps_1_rel_spread", "cpu_1", "qps_2", "cpu_2", "qps_pool_2",
            "cpu_pool_2"} <= per_thread
    assert tables.thread_counts(q) == [1, 2] and tables.thread_counts(q, "qps_pool") == [2]
    rec = query_record("hnswlib", 40, 0.92, (1500.0, 1400.0, 1450.0))
    row = _one(q, backend="hnswlib", ef_search=40)
    assert (row["recall_at_10"], row["recall_at_1"], row["recall_at_100"]) == (0.92, rec["recall"]["1"], None)
    assert (row["recall_at_10_min"], row["recall_at_10_median"], row["recall_at_10_max"]) == \
        pytest.approx((0.91, 0.92, 0.93))
    assert row["recall_at_10_median_build"] == 0.92 and row["recall_strict_at_10"] == pytest.approx(0.915)
    assert (row["qps_1"], row["qps_1_min"], row["qps_1_max"]) == (1450.0, 1400.0, 1500.0)
    assert (row["qps_2"], row["qps_pool_2"], row["cpu_pool_2"]) == (1900.0, 1800.0, 1.95)
    assert (row["p50_ms"], row["p99_ms"], row["recall_p5"]) == (0.5, 1.0, pytest.approx(0.72))
    assert row["series"] == "hnswlib M8-efc40-none" and row["perquery_file"] == "perquery/query-ef40-k10-b1.h5"
    flat = _one(q, backend="numpy")
    assert flat["ef_effective"] is None and flat["qps_pool_2"] is None and flat["series"] == "numpy exact"


def test_the_effective_ef_includes_the_re_rank_depth(t):
    assert _one(t.queries, backend="hnswlib", ef_search=10)["ef_effective"] == 10
    assert _one(t.queries, backend="faiss")["ef_effective"] == 40  # scalar-r40: the graph returns 40 candidates
    assert tables.effective_ef(10, "scalar-r40") == 40 and tables.effective_ef(80, "product-m4-r40") == 80
    assert tables.effective_ef(None, "scalar-r40") is None and tables.effective_ef(16, "none") == 16


def test_query_builds_difficulty_and_scaling(t):
    qb = t.query_builds.filter((pl.col("backend") == "hnswlib") & (pl.col("ef_search") == 160))
    assert qb["build_index"].to_list() == [0, 1, 2] and qb["median_build"].to_list() == [False, True, False]
    assert qb["file"].to_list()[0].endswith("M8-efc40-none/perquery/query-ef160-k10-b0.h5")
    d = t.difficulty.filter((pl.col("backend") == "hnswlib") & (pl.col("ef_search") == 40))
    assert len(d) == 10 and d.filter(pl.col("measure") == "lid")["hardness"].to_list() == [1, 2, 3, 4, 5]
    assert d.filter(pl.col("measure") == "rc")["hardness"].to_list() == [5, 4, 3, 2, 1]
    s = t.scaling.filter((pl.col("backend") == "hnswlib") & (pl.col("ef_search") == 40))
    assert s.select("mode", "threads").rows() == [("caller threads", 1), ("caller threads", 2),
                                                   ("library pool", 1), ("library pool", 2)]
    assert s["pinned"].all() and s.filter(pl.col("baseline"))["speedup"].to_list() == [1.0, 1.0]
    assert _one(s, mode="library pool", threads=2)["speedup"] == pytest.approx(1800.0 / 1450.0)


def test_codecs_explode_the_rerank_list(t):
    c = t.codecs
    assert list(c.columns) == list(tables.CODEC_COLUMNS)
    assert c.select("codec", "factor", "candidates", "recall_at_10").rows() == [("scalar", 1, 10, 0.9),
                                                                                ("scalar", 4, 40, 0.99)]
    live = tables.codec_frame([quant_record("int4"), quant_record("binary", status="not available")])
    assert live["codec"].to_list() == ["int4", "int4"] and live["path"].is_null().all()


def test_codec_diagnostics_are_read_and_unknown_when_a_record_predates_them(t):
    old = _one(t.codecs, factor=1)  # written before the diagnostics: unknown, never zero
    assert [old[c] for c in ("neighbourhood_order", "neighbourhood_spread", "spread_share", "error_to_spread",
                             "rabitq_alignment")] == [None] * 5
    assert old["rotation"] == "none"  # scalar's only rotation, from before rotations were recorded
    rabitq = quant_record("rabitq-b4-norot", "rabitq") | {
        "neighbourhood_order": 0.8, "rabitq_alignment": 0.9,
        "neighbourhood_error": {"spread": 0.3, "spread_share": 0.05, "error_to_spread": 1.2}}
    rabitq["codec"] |= {"bits": 4, "rotation": "none"}
    row = tables.codec_frame([rabitq]).row(0, named=True)
    assert (row["rotation"], row["neighbourhood_order"], row["rabitq_alignment"]) == ("none", 0.8, 0.9)
    assert (row["neighbourhood_spread"], row["spread_share"], row["error_to_spread"]) == (0.3, 0.05, 1.2)
    assert tables.codec_frame([quant_record("rabitq")])["rotation"][0] == "random"  # RaBitQ's default
    assert tables.codec_frame([quant_record("product-opq", "product")])["rotation"][0] == "opq"  # the spec's


def test_codec_summary_and_rabitq_by_bit_width():
    def rabitq(spec: str, bits: int, rotation: str, recall: float) -> dict:
        rec = quant_record(spec, "rabitq", rerank=((1, recall, 900.0), (4, round(recall + 0.1, 3), 500.0),
                                                   (10, round(recall + 0.15, 3), 300.0)))
        rec["codec"] |= {"bits": bits, "rotation": rotation}
        return rec | {"rabitq_alignment": 0.5 + bits / 20}

    pq = quant_record("product-w4-b4", "product", rerank=((4, 0.9, 100.0),))  # no factor 1 in this sweep
    pq["codec"] |= {"m": 2, "bits": 4}
    codecs = tables.codec_frame([rabitq("rabitq-b4", 4, "random", 0.7), rabitq("rabitq", 1, "random", 0.4),
                                 rabitq("rabitq-norot", 1, "none", 0.6), pq])
    summary = tables.codec_summary(codecs)
    assert list(summary.columns) == list(tables.CODEC_SUMMARY_COLUMNS) and len(summary) == 4
    b4 = _one(summary, codec="rabitq-b4")
    assert (b4["recall_at_10"], b4["qps"], b4["rerank_factor"], b4["recall_at_10_rerank"]) == (0.7, 900.0, 4, 0.8)
    product = _one(summary, codec="product-w4-b4")
    assert (product["width"], product["bits"], product["recall_at_10"], product["rerank_factor"]) == (4, 4, None, 4)
    assert b4["width"] is None
    bits = tables.rabitq_bits(codecs)
    assert list(bits.columns) == list(tables.RABITQ_BITS_COLUMNS)
    assert bits.select("codec", "bits", "recall_at_10", "recall_at_10_rerank").rows() == [
        ("rabitq", 1, 0.4, 0.5), ("rabitq-b4", 4, 0.7, 0.8)]  # the rotation-off variant is not a bit width
    assert tables.rabitq_bits(codecs.clear()).is_empty()


def test_a_quantized_builds_index_stats_are_found_wherever_the_record_keeps_them():
    stats = {"code_bytes_per_vector": 8, "graph_bytes_per_vector": 130.5, "rerank_float_bytes_per_vector": 32,
             "build_float_bytes_per_vector": 0, "fixed_bytes": 100}
    rec = build_record("faiss", quantization="scalar-r40")
    assert tables.index_stats(rec) == {}
    other = dict(stats, code_bytes_per_vector=99)
    for i, build in enumerate(rec["builds"]):
        build["index"] = stats if i == rec["median_build"] else other
    assert tables.index_stats(rec) == stats  # the median build's, ahead of the others
    rec["index_stats"] = other
    assert tables.index_stats(rec) == other  # nearer the top: found first
    row = tables._build_row(rec)
    assert (row["code_bytes_per_vector"], row["fixed_bytes"]) == (99.0, 100)


def test_the_quantized_build_is_set_beside_the_flat_scan_of_its_codec(t):
    frame = tables.qhnsw_vs_scan(t)
    assert list(frame.columns) == list(tables.QHNSW_COLUMNS) and len(frame) == 1
    row = frame.row(0, named=True)
    # scalar-r40 at k = 10 re-ranks like the sweep's factor 4 of the scalar codec
    assert (row["spec"], row["codec"], row["graph"], row["rerank"], row["factor"]) == ("scalar-r40", "scalar",
                                                                                       "codes", 40, 4)
    assert (row["ef_best"], row["recall_at_10"], row["flat_recall_at_10"]) == (10, 0.95, 0.99)
    assert row["gap"] == pytest.approx(0.04) and row["flat_note"] is None
    assert row["code_bytes_per_vector"] is None and row["bytes_serialized"] == 64.0  # no stats: unknown
    assert tables.qhnsw_vs_scan(t.select({"quantization": {"hnsw": ["product-r40"]}})).is_empty()
    # params may name the specs per dataset: only that dataset's builds of those specs are kept
    dataset = row["dataset"]
    assert len(tables.qhnsw_vs_scan(t.select({"quantization": {"hnsw": {dataset: ["scalar-r40"]}}}))) == 1
    assert tables.qhnsw_vs_scan(t.select({"quantization": {"hnsw": {"other-set": ["scalar-r40"]}}})).is_empty()


def test_adr_rows_are_case_by_protocol_and_each_backend_sees_the_common_cases(t):
    a = t.adr
    assert list(a.columns) == list(tables.ADR_COLUMNS)
    assert set(a["backend"]) == {"common", "faiss"}  # the backend not available has no cases
    na = _one(a, backend="common", case="embed_single")
    assert (na["status"], na["protocol"], na["reason"]) == ("not available", None, "no model files")
    search = _one(a, backend="faiss", case="hnsw_search_k10", protocol="honest")
    assert (search["judged_ms"], search["verdict"], search["recall_at_10"]) == (2.5, "fail", 0.42)
    assert search["target_ms"] is not None and json.loads(search["info"])["graph"] == "hnsw"
    view = tables.adr_view(a).filter(pl.col("protocol").ne_missing("adr"))
    assert set(view["backend"]) == {"faiss"}
    order = view.unique("case", maintain_order=True).select("case", "measured_on").rows()
    assert order == [("distance", "common"), ("embed_single", "common"), ("pattern_match", "faiss"),
                     ("quantize", "common"), ("hnsw_insert", "faiss"), ("hnsw_search_k10", "faiss")]


def test_the_environment_is_the_first_records(t):
    assert t.environment()["cpu_model"] == "Synthetic CPU"


def test_a_missing_root_gives_empty_frames_with_their_columns(tmp_path):
    empty = tables.load(tmp_path / "nothing")
    for name, columns in (("files", tables.FILE_COLUMNS), ("builds", tables.BUILD_COLUMNS),
                          ("codecs", tables.CODEC_COLUMNS), ("adr", tables.ADR_COLUMNS),
                          ("difficulty", tables.DIFFICULTY_COLUMNS), ("scaling", tables.SCALING_COLUMNS)):
        assert empty[name].is_empty() and list(empty[name].columns) == list(columns), name
    assert "qps_1" in empty.queries.columns and empty.environment() is None
    assert tables.operating_points(empty.queries).is_empty() and tables.pareto(empty.queries).is_empty()
    assert empty["quant"] is empty.codecs
    with pytest.raises(KeyError):
        empty["root"]


# ---------------------------------------------------------------------------------------------------- refusals
def test_a_file_of_an_unknown_schema_is_refused_naming_it(tmp_path):
    path = tmp_path / "runs" / NAME / "hnswlib" / "M8-efc40-none" / "build.json"
    results.write_json(path, build_record() | {"schema": "ruvector-lab/build@1"})
    with pytest.raises(ResultSchemaError, match="unknown schema tag 'ruvector-lab/build@1'") as info:
        tables.builds(tmp_path)
    assert str(path) in str(info.value) and info.value.tag == "ruvector-lab/build@1"


def test_a_record_of_another_kind_or_malformed_is_refused(tmp_path):
    folder = tmp_path / "runs" / NAME / "hnswlib" / "M8-efc40-none"
    results.write_json(folder / "build.json", query_record())
    with pytest.raises(ResultSchemaError, match="build@2 is expected"):
        tables.load(tmp_path)
    bad = query_record()
    del bad["latency_ms"]
    results.write_json(folder / "build.json", build_record())
    results.write_json(folder / "query-ef40-k10.json", bad)
    with pytest.raises(ResultSchemaError, match="'latency_ms' is a required property"):
        tables.queries(tmp_path)
    assert len(tables.builds(tmp_path)) == 1  # only what is read is judged


# ---------------------------------------------------------------------------------------------- derived figures
def test_operating_points_are_the_cheapest_ef_reaching_each_target(t):
    ops = tables.operating_points(t.queries, by=("dataset", "backend", "build"), targets=(0.9, 0.95, 0.995))
    graph = ops.filter(pl.col("backend") == "hnswlib")
    assert graph.select("target", "reached", "ef_search").rows() == [(0.9, True, 40), (0.95, True, 160),
                                                                     (0.995, False, None)]
    assert _one(graph, target=0.95)["qps_1"] == 600.0 and _one(graph, target=0.995)["recall_at_10"] is None
    exact = ops.filter(pl.col("backend") == "numpy")
    assert exact["reached"].all() and exact["ef_search"].to_list() == [10, 10, 10]
    assert ops["backend"].unique(maintain_order=True).to_list() == ["hnswlib", "numpy", "faiss"]


def test_pareto_frontier_and_its_marks(t):
    graph = t.queries.filter(pl.col("backend") == "hnswlib")
    front = tables.pareto(graph)
    assert front["ef_search"].to_list() == [10, 40, 160]  # each setting trades QPS for recall: all on the front
    dominated = graph.with_columns(pl.when(pl.col("ef_search") == 40).then(100.0).otherwise(pl.col("qps_1"))
                                   .alias("qps_1"))
    marked = tables.mark_pareto(dominated)
    assert dict(marked.select("ef_search", "pareto").rows()) == {10: True, 40: False, 160: True}
    assert marked.drop("pareto").equals(dominated)


def test_noise_flags_at_a_threshold_or_each_records_own(t):
    q = t.queries.sort("backend", "ef_search")
    assert tables.noise_figures(q) == {"qps_1t": "qps_1_rel_spread", "qps_2t": "qps_2_rel_spread",
                                       "qps_pool_2t": "qps_pool_2_rel_spread", "latency_p50": "p50_rel_spread"}
    own = tables.flag_noise(q)
    # the runner's (sorted) flags are the figures over its threshold; flag_noise keeps the figures' order
    assert [sorted(flags) for flags in own.to_list()] == q["noisy"].to_list()
    assert _one(q.with_columns(own.alias("flags")), backend="hnswlib", ef_search=10)["flags"] == \
        ["qps_1t", "latency_p50"]
    assert all(flags == [] for flags in tables.flag_noise(q, 10.0).to_list())
    builds = t.builds.filter(pl.col("status") == "ok")
    assert tables.noise_figures(builds) == {"build_time_s": "build_time_rel_spread", "reference_drift": "drift"}
    # build times spread 0.27 (hnswlib), 0 (numpy, built once), 0.18 (faiss); every drift is 0.06
    assert tables.flag_noise(builds, 0.05).to_list() == [["build_time_s", "reference_drift"], ["reference_drift"],
                                                         ["build_time_s", "reference_drift"]]
    assert tables.flag_noise(builds).to_list() == builds["noisy"].to_list() == [["build_time_s"], [], []]


def test_backends_in_the_registrys_order_and_build_labels(t):
    ranked = tables.sort_backends(t.builds, "build")
    expected = sorted(t.builds["backend"].to_list(), key=names().index)
    assert ranked["backend"].to_list() == expected
    assert tables.backend_rank("no-such-backend") == len(names())
    assert tables.build_label("M16-efc100-none", "flat") == "exact"
    assert tables.build_label("M16-efc100-scalar", "flat") == "M16-efc100-scalar (flat code scan)"
    assert tables.build_label("M16-efc100-scalar", "hnsw") == "M16-efc100-scalar"


def test_the_parameters_grid_selects_files_and_every_frame(t):
    params = {"bench": {"datasets": [NAME], "backends": ["hnswlib", "faiss"]},
              "build": {"m": [8], "ef_construction": [40], "quantization": ["none"]},
              "query": {"k": 10, "ef_search": [10, 40]},
              "quantization": {"datasets": [NAME], "codecs": ["int4"], "hnsw": ["scalar-r40"],
                               "hnsw_datasets": [NAME]}}
    sel = t.select(params)
    assert sorted(sel.queries.select("backend", "ef_search").rows()) == [("faiss", 10), ("hnswlib", 10),
                                                                         ("hnswlib", 40)]
    assert set(sel.builds["backend"]) == {"hnswlib", "faiss"} and sel.codecs.is_empty()
    assert set(sel.query_builds["ef_search"]) == {10, 40} and set(sel.scaling["ef_search"]) == {10, 40}
    assert len(sel.adr) == len(t.adr)  # the ADR suite is not a grid
    other_m = t.select(params | {"build": {"m": [16], "ef_construction": [40], "quantization": ["none"]}})
    assert other_m.queries.is_empty()  # the quantize stage builds with the first m: 16 here
    assert t.select(None) is t and t.select({}) is t
    assert len(t.select({"query": {"k": 100}}).queries) == 0


# ------------------------------------------------------------------------------------------- per-query results
@pytest.fixture(scope="module")
def perquery_root(tmp_path_factory):
    """A results root with one exact-search query setting whose per-query file holds the true neighbours, and the
    dataset's HDF5 beside it (data/datasets next to data/results)."""
    base = tmp_path_factory.mktemp("pq")
    rng = np.random.default_rng(5)
    ds = Dataset(NAME, rng.standard_normal((200, 8)).astype(np.float32),
                 rng.standard_normal((12, 8)).astype(np.float32), "cosine")
    ds.neighbors, ds.distances = groundtruth.knn_ground_truth(ds.test, ds.train, 20, ds.metric)
    write_hdf5(base / "datasets" / f"{NAME}.hdf5", ds)
    root = base / "results"
    folder = root / "runs" / NAME / "numpy" / "M8-efc40-none"
    results.write_json(folder / "build.json", build_record("numpy", graph="flat", times=(0.02,)))
    results.write_json(folder / "query-ef10-k10.json", query_record("numpy", 10, 1.0, (200.0,), graph="flat"))
    perquery.write_query_results(folder / "perquery" / "query-ef10-k10-b0.h5", ds.neighbors[:, :10],
                                 ds.distances[:, :10], None, {"k": 10})
    return root, ds


def test_per_query_rows_recompute_recall_and_difficulty(perquery_root):
    root, ds = perquery_root
    found = tables.find_per_query(root, dataset=NAME, backend="numpy", ef_search=10)
    assert (found.build, found.file, found.k) == (0, "perquery/query-ef10-k10-b0.h5", 10) and found.path.is_file()
    for datasets in (None, {NAME: ds}):  # the HDF5 beside the results, or the Dataset itself
        q = tables.per_query(root, dataset=NAME, backend="numpy", ef_search=10, datasets=datasets)
        assert q.columns == ["query", "recall", "recall_strict", "returned", "lid", "rc", "lid_hardness",
                             "rc_hardness"]
        assert len(q) == 12 and q["recall"].min() == 1.0 and (q["returned"] == 10).all()
        assert set(q["lid_hardness"].drop_nulls()) <= {1, 2, 3, 4, 5}
    with pytest.raises(LookupError):
        tables.per_query(root, dataset=NAME, backend="hnswlib", ef_search=10)
    with pytest.raises(FileNotFoundError):
        tables.per_query(root, dataset=NAME, backend="numpy", ef_search=10, datasets={})


def test_perquery_check_recomputes_each_files_mean_recall(perquery_root):
    root, _ = perquery_root
    check = tables.perquery_check(root)
    assert list(check.columns) == [*tables.QUERY_BUILD_COLUMNS, *tables.PERQUERY_CHECK_COLUMNS]
    row = check.row(0, named=True)
    assert row["exists"] and row["ground_truth"] == "found" and row["n_queries"] == 12
    assert row["recall_file"] == 1.0 and row["recall_strict_file"] == 1.0 and row["recall_at_10"] == 1.0
    missing = tables.perquery_check(root, datasets={})
    assert missing["recall_file"].is_null().all() and "not among" in missing["ground_truth"][0]


def test_a_per_query_file_of_another_layout_is_refused(perquery_root, tmp_path):
    import shutil

    import h5py

    root, ds = perquery_root
    copy = tmp_path / "results"
    shutil.copytree(root, copy)
    h5 = next(copy.rglob("*.h5"))
    with h5py.File(h5, "r+") as f:
        f.attrs["schema"] = "ruvector-lab/perquery@2"
    with pytest.raises(ResultSchemaError, match="perquery@2"):
        tables.per_query(copy, dataset=NAME, backend="numpy", ef_search=10, datasets={NAME: ds})


def test_the_sweep_written_is_the_sweep_read(t):
    graph = t.queries.filter(pl.col("backend") == "hnswlib").sort("ef_search")
    assert graph.select("ef_search", "recall_at_10").rows() == [(ef, r) for ef, r, _ in SWEEP[("hnswlib",
                                                                                                  "M8-efc40-none")]]


def test_embedding_variants_are_reported_apart_and_never_counted_as_a_backends_verdict(tmp_path):
    """The ADR suite's embedding matrix (variants such as embed_batch_32:int8:2t:mixed) is judged against its base
    case's target, shown in its own report table with the mixed batch's cost over its parts, and left out of the
    per-backend case view that the verdict counts come from."""
    from result_records import adr_record

    from ruvector_lab.bench import report
    from ruvector_lab.bench.targets import base_case, is_variant, variant_case, verdict

    root = write_tree(tmp_path / "results")
    common = adr_record("common")
    mixed = variant_case("embed_batch_32", "int8", "2t", "mixed")
    common["cases"][mixed] = {
        "status": "ok", "scope": "common", "protocols": {
            p: {"iterations": 20, "latency_ms": {"p50": ms, "p95": ms * 1.1, "p99": ms * 1.2, "mean": ms},
                "judged_ms": ms * 1.1 if p == "honest" else ms, "verdict": verdict(mixed, ms * 1.1)}
            for p, ms in (("adr", 90.0), ("honest", 120.0))},
        "info": {"precision": "int8", "threads": 2, "texts": "mixed", "graph": "fused", "parts_ms": {"p50": 100.0}}}
    results.write_json(root / "adr" / "common.json", common)
    t = tables.load(root)
    assert base_case(mixed) == "embed_batch_32" and verdict(mixed, 132.0) == "fail"
    assert is_variant(mixed) and not is_variant("embed_batch_32") and base_case("quantize") == "quantize"
    row = _one(t.adr, case=mixed, protocol="honest")
    assert row["target_ms"] == 100.0 and row["verdict"] == "fail"
    assert mixed not in set(tables.adr_view(t.adr)["case"])
    before = report.adr_verdicts(tables.load(write_tree(tmp_path / "plain")))
    assert report.adr_verdicts(t) == before
    matrix = tables.embedding_matrix(t.adr)
    assert list(matrix.columns) == list(tables.EMBEDDING_COLUMNS) and matrix.height == 2  # two protocols
    honest = _one(matrix, protocol="honest")
    assert (honest["case"], honest["precision"], honest["threads"], honest["texts"]) == ("embed_batch_32", "int8", 2,
                                                                                         "mixed")
    assert honest["mixed_over_apart"] == pytest.approx(1.2) and _one(matrix, protocol="adr")["mixed_over_apart"] is None
    lines = "\n".join(report.embedding_matrix_lines(t))
    assert "Embedding: precision x threads x texts" in lines
    assert "| embed_batch_32 | int8 | 2 | mixed | fused |" in lines and "| 1.20 |" in lines
    with pytest.raises(InvalidParameterError, match="unknown ADR case"):
        variant_case("embed_triple", "fp32")


# ------------------------------------------------------------------------------------------- autotuner studies
@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A results root holding one real autotuner study on tiny data (1 trial over a 2-configuration hnswlib space,
    the grid, 1 verification seed, 2 replay seeds), beside its evaluation caches and Optuna storage."""
    from ruvector_lab.bench import datasets
    from ruvector_lab.bench.trial import TrialSettings
    from ruvector_lab.bench.tune import tune
    from ruvector_lab.bench.tune_space import TuneSpace

    root = tmp_path_factory.mktemp("tune") / "results"
    ds = datasets.clustered(n=1000, n_queries=100, dimensions=16, clusters=10, seed=3, name="tune-tiny")
    ds.neighbors, ds.distances = groundtruth.knn_ground_truth(ds.test, ds.train, 10, ds.metric)
    result = tune(ds, 0.9, space=TuneSpace(backends=("hnswlib",), m=(8, 16), ef_construction=(32,)), trials=1,
                  grid=True, verify_seeds=1, replay_seeds=2, results_root=root,
                  settings=TrialSettings(n_queries=100, ef_max=128, repeats=1, warmup=5, build_threads=1,
                                         insert_chunk=1000))
    return root, result


def test_tune_results_are_one_row_per_study_with_the_recommendation_per_objective(tuned):
    root, result = tuned
    assert list((root / "tune" / "tune-tiny" / "evals").glob("*.json"))  # caches beside it, not read as results
    assert tables.result_paths(root, "tune") == [root / "tune" / "tune-tiny" / "recall-0.9.json"]
    frame = tables.tune_results(root)
    assert list(frame.columns) == list(tables.TUNE_COLUMNS) and len(frame) == 1
    row = frame.row(0, named=True)
    assert (row["dataset"], row["target"], row["objective"]) == ("tune-tiny", 0.9, "qps")
    assert row["answer"] == result.answer and row["builds"] == result.builds == 1
    rec = result.recommended["qps"]
    assert rec is not None and row["rec_qps_label"] == rec["label"] and row["rec_qps_ef_search"] == rec["ef_search"]
    assert row["rec_qps_meets_target"] and row["rec_qps_recall"] >= 0.9 and row["rec_qps_verify_builds"] == 2
    assert row["rec_qps_median_recall"] == rec["verification"]["median_recall"]
    assert row["rec_build_time_label"] == result.recommended["build-time"]["label"]  # '-' becomes '_'
    grid = result.grid
    assert (row["grid_builds"], row["tuner_builds"]) == (grid["builds"], 1) == (2, 1)
    assert row["grid_best_label"] == grid["best"]["label"] and row["qps_ratio"] == grid["qps_ratio"]
    assert row["within_tolerance"] == grid["within_tolerance"] and row["builds_ratio"] == 0.5
    assert row["replay_seeds"] == 2 and row["replay_within"] == grid["replay"]["within_tolerance"]
    assert row["replay_fraction_within"] == grid["replay"]["fraction_within_tolerance"]
    assert tables.tune_results(tables.load(root, ())).equals(frame)  # a Tables' root reads the same


def test_tune_trials_and_the_two_pareto_fronts(tuned):
    root, result = tuned
    trials = tables.tune_trials(root)
    assert list(trials.columns) == list(tables.TUNE_TRIAL_COLUMNS)
    mine = trials.filter(~pl.col("in_grid_only"))
    assert mine["number"].to_list() == [t["number"] for t in result.trials]
    first = mine.row(0, named=True)
    assert first["backend"] == "hnswlib" and first["feasible"] and first["on_pareto"]
    assert first["recall"] >= 0.9 and first["qps"] > 0 and first["bytes_per_vector"] > 0
    assert "qps" in first["recommended_for"]
    # the grid's other configuration (never tried by the tuner) is there when the grid stored it
    others = trials.filter(pl.col("in_grid_only"))
    assert others["number"].null_count() == len(others) and not others["on_pareto"].any()
    assert set(others["label"].to_list()).isdisjoint(mine["label"].to_list())
    fronts = tables.tune_pareto(root)
    assert list(fronts.columns) == list(tables.TUNE_PARETO_COLUMNS)
    assert set(fronts["front"].to_list()) == {"tuner", "grid"}
    grid_best = _one(fronts, front="grid", best=True)
    assert grid_best["label"] == result.grid["best"]["label"]


def test_no_tune_results_and_a_broken_study_file(tmp_path):
    assert tables.tune_results(tmp_path).is_empty() and tables.tune_trials(tmp_path).is_empty()
    assert list(tables.tune_pareto(tmp_path).columns) == list(tables.TUNE_PARETO_COLUMNS)
    folder = tmp_path / "tune" / "d"
    folder.mkdir(parents=True)
    (folder / "evals").mkdir()
    (folder / "evals" / "x.json").write_text('{"status": "ok"}')  # an evaluation cache: no schema, not read
    assert tables.tune_results(tmp_path).is_empty()
    (folder / "recall-0.9.json").write_text(json.dumps({"schema": "ruvector-lab/tune@1", "status": "ok"}))
    with pytest.raises(ResultSchemaError, match=r"recall-0\.9\.json"):
        tables.tune_results(tmp_path)
