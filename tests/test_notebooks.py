"""The documentation notebooks: pairing, first cells, clean committed outputs, and the readers in notebooks/_nbdata.py.

Executing the notebooks is nbval's job (`make test-notebooks`); these tests check what nbval does not: that each
.ipynb and its py:percent twin say the same thing, that committed outputs carry no machine paths or errors, and that
the readers turn real result files (written here by the pipeline's own harness on tiny data) into the right tables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
#: the py:percent twins live in a subfolder, out of the way in JupyterLab's file browser (notebooks/jupytext.toml)
PY_DIR = NB_DIR / "py"
PAIRING = "ipynb,py//py:percent"  # "py/" + "/py:percent": the folder py/, the extension .py
NOTEBOOKS = sorted(NB_DIR.glob("[0-9]*.ipynb"))
EXPECTED = ["01-quickstart", "02-adr-targets", "03-hnsw-tuning", "04-quantization", "05-learning", "06-autotune"]

jupytext = pytest.importorskip("jupytext", reason="jupytext comes with the notebooks extra")
pd = pytest.importorskip("pandas", reason="pandas comes with the notebooks extra")
sys.path.insert(0, str(NB_DIR))
import _nbdata as nd  # noqa: E402 - lives next to the notebooks, not in the package

from ruvector_lab.bench import adr, groundtruth, perquery, quant, results, runner  # noqa: E402
from ruvector_lab.bench.hdf5 import Dataset, write_hdf5  # noqa: E402
from ruvector_lab.bench.targets import verdict  # noqa: E402
from ruvector_lab.runtime import Runtime  # noqa: E402


# ------------------------------------------------------------------------------------------------ the notebooks
def test_the_five_notebooks_exist_each_with_its_py_percent_twin():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED
    for path in NOTEBOOKS:
        assert (PY_DIR / f"{path.stem}.py").is_file(), f"{path.name} has no paired notebooks/py/{path.stem}.py"
    assert not list(NB_DIR.glob("[0-9]*.py")), "a twin beside its notebook: twins live in notebooks/py/"
    config = (NB_DIR / "jupytext.toml").read_text()
    assert f'formats = "{PAIRING}"' in config


@pytest.mark.parametrize("stem", EXPECTED)
def test_jupytext_pairs_each_notebook_with_its_twin_in_the_subfolder(stem):
    from jupytext.config import find_jupytext_configuration_file, load_jupytext_configuration_file
    from jupytext.paired_paths import paired_paths

    nb = jupytext.read(NB_DIR / f"{stem}.ipynb")
    assert nb.metadata["jupytext"]["formats"] == PAIRING
    assert jupytext.read(PY_DIR / f"{stem}.py").metadata["jupytext"]["formats"] == PAIRING
    config = load_jupytext_configuration_file(find_jupytext_configuration_file(str(NB_DIR)))
    assert config.formats == [PAIRING]  # the config pairs every notebook in notebooks/ this way
    paths = {Path(path) for path, _fmt in paired_paths(str(NB_DIR / f"{stem}.ipynb"), "ipynb", PAIRING)}
    assert paths == {NB_DIR / f"{stem}.ipynb", PY_DIR / f"{stem}.py"}


@pytest.mark.parametrize("stem", EXPECTED)
def test_ipynb_and_py_hold_the_same_cells(stem):
    ipynb = jupytext.read(NB_DIR / f"{stem}.ipynb")
    script = jupytext.read(PY_DIR / f"{stem}.py")
    assert [(c.cell_type, c.source.strip()) for c in ipynb.cells] == \
        [(c.cell_type, c.source.strip()) for c in script.cells], f"{stem}: run `jupytext --sync` (make notebooks)"
    assert ipynb.metadata["kernelspec"]["name"] == "ruvector-lab"


@pytest.mark.parametrize("stem", EXPECTED)
def test_first_cell_says_the_question_and_where_the_data_comes_from(stem):
    first = jupytext.read(PY_DIR / f"{stem}.py").cells[0]
    assert first.cell_type == "markdown"
    assert "**Question.**" in first.source and "**Data.**" in first.source


@pytest.mark.parametrize("stem", EXPECTED)
def test_committed_outputs_hold_no_errors_and_no_machine_paths(stem):
    nb = json.loads((NB_DIR / f"{stem}.ipynb").read_text())
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"{stem}: committed with an error: {out.get('evalue')}"
            text = "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
            for prefix in ("/work/", "/tmp/", "/root/", "/home/"):
                assert prefix not in text, f"{stem}: an output shows a machine path ({prefix})"


@pytest.mark.parametrize("stem", EXPECTED)
def test_every_plot_has_a_title_and_axis_labels(stem):
    source = (PY_DIR / f"{stem}.py").read_text()
    plots = source.count("plt.subplots(")
    helped = source.count("nd.plot_memory(")  # _nbdata's plot helpers set the title and both axis labels
    if plots:
        assert source.count("set_title(") + source.count("suptitle(") + helped >= plots
        assert source.count("set_xlabel(") + helped >= plots and source.count("set_ylabel(") + helped >= plots


def test_sanitize_config_masks_paths_and_timings():
    import configparser
    import re

    cfg = configparser.ConfigParser()
    cfg.read(NB_DIR / "nbval-sanitize.cfg")
    line = "read /work/main/data/results/adr/faiss.json in 12.5 ms at 3400 qps on 2026-11-29T21:41:52Z"
    for section in cfg.sections():
        line = re.sub(cfg[section]["regex"], cfg[section]["replace"], line)
    assert "/work" not in line and "12.5" not in line and "3400" not in line and "2026" not in line
    assert "PATH" in line and "TIME" in line


# ----------------------------------------------------------------------------- readers over real result files
@pytest.fixture(scope="module")
def tiny_ds():
    """The tiny dataset the results below are measured on, with exact ground truth."""
    rng = np.random.default_rng(3)
    train = rng.standard_normal((600, 16)).astype(np.float32)
    test = rng.standard_normal((40, 16)).astype(np.float32)
    ds = Dataset("tiny-600-16", train, test, "cosine")
    ds.neighbors, ds.distances = groundtruth.knn_ground_truth(ds.test, ds.train, 20, ds.metric)
    return ds


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_ds):
    """A results root written by the pipeline's harness on tiny data: two faiss configurations built twice each
    (with the memory child, at 1 and 2 threads), one exact backend, one build the backend cannot serve (hnswlib
    has no binary index), the ADR suite's backend cases, two codec sweeps; the dataset's HDF5 beside it, where the
    pipeline keeps it (``data/datasets`` next to ``data/results``)."""
    out = tmp_path_factory.mktemp("data") / "results"
    ds = tiny_ds
    write_hdf5(out.parent / "datasets" / f"{ds.name}.hdf5", ds)
    settings = runner.RunSettings(n_queries=40, repeats=1, warmup=2, threads=(1, 2), build_threads=1,
                                  build_repeats=2)
    for m in (4, 8):
        runner.run_build(ds, "faiss", runner.BuildParams(m, 20), [4, 16, 64], settings, out)
    runner.run_build(ds, "numpy", runner.BuildParams(8, 20), [4, 16, 64], settings, out)
    runner.run_build(ds, "hnswlib", runner.BuildParams(8, 20, "binary"), [4], settings, out)  # no such index
    quant.run_quant_sweep(ds, ["scalar", "binary"], out, factors=(1, 4), n_queries=40)
    small = adr.AdrSettings(search_iterations=20, op_iterations=20, n_patterns=50, m=8, ef_construction=20)
    backends = ["faiss", "numpy"] + (["wasm"] if Runtime.available().get("wasm") is True else [])
    for b in backends:
        results.write_json(out / "adr" / f"{b}.json", adr.run_backend(ds, b, small))
    (out / "adr" / "broken.json").write_text('{"schema": "ruvector-lab/adr@1", "cases": {')  # cut short
    return out


def test_empty_root_gives_empty_tables_with_their_columns_and_says_so(tmp_path):
    src = nd.source(tmp_path)
    assert src.empty and nd.NO_RESULTS in src.describe()
    assert list(nd.adr_cases(tmp_path).columns) == nd.ADR_COLUMNS and nd.adr_cases(tmp_path).empty
    assert nd.query_runs(tmp_path).empty and set(nd.QUERY_COLUMNS) <= set(nd.query_runs(tmp_path).columns)
    assert nd.build_runs(tmp_path).empty and list(nd.build_runs(tmp_path).columns) == nd.BUILD_COLUMNS
    assert nd.quant_runs(tmp_path).empty and list(nd.quant_runs(tmp_path).columns) == nd.QUANT_COLUMNS
    assert nd.native_wasm_ratios(nd.adr_cases(tmp_path)).empty
    assert nd.operating_table(nd.query_runs(tmp_path)).empty and nd.pareto(nd.query_runs(tmp_path)).empty
    empty = {nd.build_spread: nd.query_runs(tmp_path), nd.recall_tail: nd.query_runs(tmp_path)}
    for reader, runs in empty.items():
        assert reader(runs).empty
    for reader, columns in ((nd.difficulty_bins, nd.DIFFICULTY_COLUMNS), (nd.memory_table, nd.MEMORY_COLUMNS),
                            (nd.thread_scaling, nd.SCALING_COLUMNS), (nd.noise_table, nd.NOISE_COLUMNS),
                            (nd.perquery_files, nd.PERQUERY_FILE_COLUMNS)):
        frame = reader(tmp_path)
        assert frame.empty and list(frame.columns) == columns


def test_source_counts_what_the_pipeline_wrote(root):
    src = nd.source(root)
    assert not src.empty
    assert src.builds == 4 and src.quant == 2
    assert src.queries == len(list(root.glob("runs/*/*/*/query-*.json")))
    assert str(root) not in src.describe()


def test_results_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(nd.RESULTS_ENV, str(tmp_path))
    assert nd.results_root() == tmp_path
    monkeypatch.delenv(nd.RESULTS_ENV)
    assert nd.results_root() == ROOT / "data" / "results"


def test_shown_paths_are_relative_to_the_repo_or_cut_short(tmp_path):
    assert nd.shown(ROOT / "data" / "results") == "data/results"
    assert not nd.shown(tmp_path / "a" / "b").startswith("/")


def test_query_runs_carry_the_files_numbers(root):
    runs = nd.query_runs(root)
    files = list(root.glob("runs/*/*/*/query-*.json"))
    assert len(runs) == len(files)
    for path in files:
        rec = json.loads(path.read_text())
        row = runs[(runs["backend"] == rec["backend"]) & (runs["m"] == rec["build"]["m"])
                   & (runs["ef_search"] == rec["query"]["ef_search"])].iloc[0]
        assert row["recall_at_10"] == rec["recall"]["10"] and row["recall_at_1"] == rec["recall"]["1"]
        assert row["qps_1"] == rec["qps"]["1"]["median"] and row["p50_ms"] == rec["latency_ms"]["p50"]
    assert (runs[runs["graph"] == "flat"]["recall_at_10"] >= 0.999).all()


def test_build_runs_list_unavailable_builds_with_the_reason(root):
    builds = nd.build_runs(root)
    missing = builds[builds["status"] != "ok"]
    assert list(missing["backend"]) == ["hnswlib"] and "binary" in missing["reason"].iloc[0]
    assert (builds[builds["status"] == "ok"]["bytes_per_vector"] > 0).all()


def test_pareto_keeps_only_undominated_points(root):
    runs = nd.query_runs(root)
    front = nd.pareto(runs)
    for backend, f in front.groupby("backend"):
        every = runs[runs["backend"] == backend]
        for _, p in f.iterrows():
            better = every[(every["recall_at_10"] > p["recall_at_10"]) & (every["qps_1"] > p["qps_1"])]
            assert better.empty, f"{backend}: a frontier point is dominated"
        assert f["recall_at_10"].is_monotonic_increasing


def test_operating_points_are_the_cheapest_ef_reaching_each_floor(root):
    runs = nd.query_runs(root)
    ops = nd.operating_table(runs, floors=(0.5, 0.9))
    assert len(ops) == 2 * len(runs.groupby(["backend", "m"]))
    for _, o in ops.iterrows():
        sweep = runs[(runs["backend"] == o["backend"]) & (runs["m"] == o["m"])]
        reaching = sweep[sweep["recall_at_10"] >= o["floor"]]
        if reaching.empty:
            assert pd.isna(o["ef_search"])
        else:
            assert o["ef_search"] == reaching["ef_search"].min()


def test_adr_cases_verdicts_match_targets_and_broken_files_are_skipped(root):
    cases = nd.adr_cases(root)
    assert "broken" not in set(cases["backend"])
    measured = cases[cases["judged_ms"].notna()]
    assert set(measured["protocol"]) == {"adr", "honest"}
    for _, r in measured.iterrows():
        assert r["verdict"] == verdict(r["case"], r["judged_ms"])
    search = measured[measured["case"] == "hnsw_search_k10"]
    assert search["recall_at_10"].notna().all()
    card = nd.adr_scorecard(cases, "honest")
    assert set(card["case"]) == set(measured["case"])
    assert list(nd.adr_verdicts(cases).columns) == sorted(set(measured["backend"]))


def test_native_wasm_ratio_is_wasm_over_native_latency(root):
    cases = nd.adr_cases(root)
    ratios = nd.native_wasm_ratios(cases, "honest")
    if "wasm" not in set(cases["backend"]):
        assert ratios.empty
        return
    assert set(ratios["native"]) == {"faiss"}  # numpy is the fallback tier, not native
    for _, r in ratios.iterrows():
        rec = json.loads((root / "adr" / "wasm.json").read_text())
        nat = json.loads((root / "adr" / f"{r['native']}.json").read_text())
        expected = (rec["cases"][r["case"]]["protocols"]["honest"]["judged_ms"]
                    / nat["cases"][r["case"]]["protocols"]["honest"]["judged_ms"])
        assert r["ratio"] == pytest.approx(expected)
        assert r["in_claim"] == (2.0 <= expected <= 5.0)


def test_quant_rows_one_per_codec_and_factor(root):
    q = nd.quant_runs(root)
    assert sorted(set(q["codec"])) == ["binary", "scalar"] and sorted(set(q["factor"])) == [1, 4]
    assert len(q) == 4 and (q["source"] == "pipeline").all()
    assert (q["bytes_per_vector"] < nd.float_bytes_per_vector(16)).all()
    binary = q[q["codec"] == "binary"].sort_values("factor")["recall_at_10"].to_numpy()
    assert binary[1] >= binary[0] - 0.01  # re-ranking 4x the candidates does not lose recall
    assert nd.quant_unavailable(root).empty


def test_quantization_depth_readers_read_real_sweeps_and_say_nothing_without_them(root, tmp_path):
    """The codec summary, the findings and the variant tables over the sweeps the harness wrote (with their
    diagnostics), and every one empty with its columns on an empty root."""
    summary = nd.codec_summary(root)
    assert list(summary.columns) == nd.CODEC_SUMMARY_COLUMNS and sorted(summary["codec"]) == ["binary", "scalar"]
    assert summary["neighbourhood_order"].between(-1, 1).all() and (summary["error_to_spread"] > 0).all()
    assert (summary["rerank_factor"] == 4).all() and summary["rotation"].eq("none").all()
    found = nd.quant_findings(root)
    assert list(found.columns) == nd.FINDING_COLUMNS
    assert (found["loser_bytes"] > found["winner_bytes"]).all()  # binary is the smaller: scalar can only lose
    for reader, columns in ((nd.quant_findings, nd.FINDING_COLUMNS), (nd.codec_summary, nd.CODEC_SUMMARY_COLUMNS),
                            (nd.rabitq_bits, nd.RABITQ_BITS_COLUMNS), (nd.rabitq_rotation, nd.ROTATION_COLUMNS),
                            (nd.pq_variants, nd.PQ_COLUMNS), (nd.qhnsw_vs_scan, nd.QHNSW_COLUMNS)):
        frame = reader(tmp_path)
        assert frame.empty and list(frame.columns) == columns, reader.__name__
    assert nd.rabitq_bits(root).empty and nd.qhnsw_vs_scan(root).empty  # none of either in this run


# ------------------------------------------------------------------ build@2 / query@3: spread, tail, memory, noise
def _query_records(root):
    return [(path, json.loads(path.read_text())) for path in sorted(root.glob("runs/*/*/*/query-*.json"))]


def _row(frame, rec):
    sel = frame[(frame["backend"] == rec["backend"]) & (frame["m"] == rec["build"]["m"])
                & (frame["ef_search"] == rec["query"]["ef_search"])]
    assert len(sel) == 1
    return sel.iloc[0]


def test_query_runs_carry_the_spread_over_builds_the_tail_and_both_thread_modes(root):
    runs = nd.query_runs(root)
    for _, rec in _query_records(root):
        row = _row(runs, rec)
        k = str(rec["query"]["k"])
        over, tail = rec["recall_builds"][k], rec["perquery"]["recall_tolerant"]
        assert row["n_builds"] == len(rec["builds"]) == (2 if rec["graph"] == "hnsw" else 1)
        assert (row["recall_at_10_median"], row["recall_at_10_min"], row["recall_at_10_max"]) == \
            (over["median"], over["min"], over["max"])
        assert row["recall_at_10_median_build"] == row["recall_at_10"] == rec["recall"][k]
        assert row["recall_strict_at_10"] == rec["recall_strict"][k] <= row["recall_at_10"] + 1e-12
        assert (row["recall_p1"], row["recall_p5"], row["recall_p50"], row["share_below_0.5"]) == \
            (tail["p1"], tail["p5"], tail["p50"], tail["share_below_0.5"])
        assert (row["qps_1_min"], row["qps_1"], row["qps_1_max"]) == \
            (rec["qps"]["1"]["min"], rec["qps"]["1"]["median"], rec["qps"]["1"]["max"])
        assert row["qps_pool_2"] == rec["qps_pool"]["2"]["median"] and row["cpu_pool_2"] == \
            rec["qps_pool"]["2"]["cpu_utilization"]
        assert row["ef_effective"] == rec["query"]["ef_effective"] or rec["graph"] == "flat"
    spread = nd.build_spread(runs)
    assert (spread["recall_range"] >= 0).all() and (spread[spread["graph"] == "flat"]["recall_range"] == 0).all()
    tail = nd.recall_tail(runs)
    assert ((tail["recall_min"] <= tail["recall_p1"]) & (tail["recall_p1"] <= tail["recall_p5"])).all()


def test_operating_points_carry_the_worst_build_and_the_median_builds_entry(root):
    ops = nd.operating_table(nd.query_runs(root), floors=(0.5,)).dropna(subset=["ef_search"])
    assert not ops.empty
    assert (ops["recall_at_10_min"] <= ops["recall_at_10"]).all()
    assert (ops["recall_at_10_median_build"] >= ops["floor"]).all()


def test_build_runs_read_the_spread_of_build_times_and_serialized_bytes(root):
    builds = nd.build_runs(root)
    for path in root.glob("runs/*/*/*/build.json"):
        rec = json.loads(path.read_text())
        if rec["status"] != "ok":
            continue
        row = builds[(builds["backend"] == rec["backend"]) & (builds["m"] == rec["build"]["m"])].iloc[0]
        assert row["build_time_s"] == rec["build_time_s"]["median"]
        times = rec["build_time_s"]
        assert (row["build_time_min"], row["build_time_max"]) == (times["min"], times["max"])
        assert row["bytes_per_vector"] == rec["bytes_per_vector"]["serialized"]
        assert row["n_builds"] == len(rec["builds"])


def test_memory_table_three_ways_and_a_missing_figure_with_its_reason(root, tmp_path):
    memory = nd.memory_table(root)
    assert set(memory["backend"]) == {"faiss", "numpy"}
    assert (memory["serialized"] >= memory["float_bytes"]).all() and (memory["float_bytes"] == 4 * 16).all()
    assert (memory["analytic_status"] == "ok").all() and (memory["analytic"] > 0).all()
    measured = memory[memory["rss_status"] == "measured"]
    assert (measured["rss_growth"] > 0).all()
    assert (memory.loc[memory["rss_status"] != "measured", "reason"].str.len() > 0).all()
    # a layout the estimate does not know, and memory not measured: NaN figures that say why
    path = next(root.glob("runs/*/faiss/M8-*/build.json"))
    rec = json.loads(path.read_text())
    rec["bytes_per_vector"]["analytic"] = {"status": "not available", "reason": "KeyError: no layout"}
    rec["bytes_per_vector"] |= {"rss_growth": None, "child": {"status": "not measured",
                                                              "reason": "bench.memory is false"}}
    copy = tmp_path / "runs" / "tiny" / "faiss" / "M8-efc20-none" / "build.json"
    copy.parent.mkdir(parents=True)
    copy.write_text(json.dumps(rec))
    row = nd.memory_table(tmp_path).iloc[0]
    assert pd.isna(row["analytic"]) and pd.isna(row["rss_growth"]) and row["serialized"] > 0
    assert (row["analytic_status"], row["rss_status"]) == ("not available", "not measured")
    assert "no layout" in row["reason"] and "bench.memory is false" in row["reason"]


def test_old_numbers_read_as_spreads_of_one_value():
    assert nd.spread_of(1.5) == {"median": 1.5, "min": 1.5, "max": 1.5, "rel_spread": 0.0, "n": 1}
    assert nd.spread_of({"median": 2.0, "min": 1.0, "max": 3.0, "rel_spread": 1.0, "values": [1.0, 2.0, 3.0]})["n"] == 3
    assert nd.spread_of(None)["median"] is None and nd.spread_of(True)["n"] == 0


def test_difficulty_bins_partition_the_queries_and_turn_rc_around(root):
    bins = nd.difficulty_bins(root)
    assert set(bins["measure"]) == {"lid", "rc"}
    for _, b in bins.groupby([*nd.SETTING_KEY, "measure"]):
        b = b.sort_values("bin")
        assert b["n_queries"].sum() + b["n_nan_excluded"].iloc[0] == b["n_queries_total"].iloc[0] == 40
        weighted = (b["n_queries"] * b["mean_recall"]).sum() / b["n_queries"].sum()
        assert weighted == pytest.approx(b["recall_at_10"].iloc[0], abs=1e-12)
        n = len(b)
        expected = list(range(1, n + 1)) if b["measure"].iloc[0] == "lid" else list(range(n, 0, -1))
        assert list(b["hardness"]) == expected


def test_perquery_files_exist_and_give_back_the_records_recall(root, tiny_ds):
    for datasets in (None, {tiny_ds.name: tiny_ds}):  # the HDF5 beside the results, or the Dataset itself
        files = nd.perquery_files(root, datasets=datasets)
        assert len(files) == sum(len(rec["builds"]) for _, rec in _query_records(root))
        assert files["exists"].all() and (files["ground_truth"] == "found").all()
        assert np.allclose(files["recall_file"], files["recall_record"], rtol=0, atol=1e-12)
        assert np.allclose(files["recall_strict_file"], files["recall_strict_record"], rtol=0, atol=1e-12)
        assert files.groupby(["backend", "m", "ef_search"])["median_build"].sum().eq(1).all()
    missing = nd.perquery_files(root, datasets={})
    assert (missing["ground_truth"] != "found").all() and missing["recall_file"].isna().all()


def test_per_query_rows_reproduce_the_records_difficulty_quintiles(root):
    rec = next(r for _, r in _query_records(root) if r["backend"] == "faiss" and r["build"]["m"] == 8)
    q = nd.per_query(root, dataset=rec["dataset"]["name"], backend="faiss", m=8,
                     ef_search=rec["query"]["ef_search"])
    assert len(q) == 40 and q["recall"].mean() == pytest.approx(rec["recall"]["10"], abs=1e-12)
    assert (q["recall_strict"] <= q["recall"] + 1e-12).all() and (q["returned"] == 10).all()
    for measure in ("lid", "rc"):
        assert perquery.recall_by_difficulty(q["recall"].to_numpy(), q[measure].to_numpy()) == \
            rec["perquery"]["difficulty"][measure]["bins"]
        assert set(q[f"{measure}_hardness"]) == {1, 2, 3, 4, 5}
    with pytest.raises(LookupError):
        nd.per_query(root, dataset=rec["dataset"]["name"], backend="faiss", ef_search=rec["query"]["ef_search"])


def test_thread_scaling_lists_both_modes_with_the_pools_pinned(root):
    scaling = nd.thread_scaling(root)
    assert set(scaling["mode"]) == set(nd.MODES.values()) and set(scaling["threads"]) == {1, 2}
    assert scaling["pinned"].all()
    base = scaling[scaling["baseline"]]
    assert (base["speedup"] == 1).all() and (base.groupby(nd.SETTING_KEY)["qps"].nunique() == 1).all()
    pool2 = scaling[(scaling["mode"] == "library pool") & (scaling["threads"] == 2)]
    assert pool2["pools"].str.contains("library=2").all()
    caller2 = scaling[(scaling["mode"] == "caller threads") & (scaling["threads"] == 2)]
    assert caller2["pools"].str.contains("library=1").all()


def test_noise_table_flags_are_the_figures_above_the_threshold(root):
    noise = nd.noise_table(root)
    assert set(noise["kind"]) == {"build", "query"} and noise["flags_consistent"].all()
    assert (noise["drift"] >= 0).all()


def test_tune_readers_give_studies_and_trials_or_empty_tables(tmp_path):
    assert nd.tune_results(tmp_path).empty and list(nd.tune_results(tmp_path).columns) == nd.TUNE_COLUMNS
    assert nd.tune_trials(tmp_path).empty and list(nd.tune_trials(tmp_path).columns) == nd.TUNE_TRIAL_COLUMNS
    folder = tmp_path / "tune" / "wordnet-minilm-384"
    folder.mkdir(parents=True)
    (folder / "recall-0.95.json").write_text((ROOT / "tests" / "fixtures" / "tune-recall-0.95.json").read_text())
    studies = nd.tune_results(tmp_path)
    assert len(studies) == 1 and studies.loc[0, "rec_qps_label"] == "hnswlib M16 efc128 none"
    assert studies.loc[0, f"{nd.tune_column('build-time')}_ef_search"] == 62
    assert studies.loc[0, "grid_builds"] == 12 and not studies.loc[0, "within_tolerance"]
    trials = nd.tune_trials(tmp_path)
    assert list(trials.columns) == nd.TUNE_TRIAL_COLUMNS
    assert trials.loc[~trials["in_grid_only"], "number"].tolist() == [0, 1, 2, 3]
    assert trials["in_grid_only"].sum() >= 1  # the grid's best, never tried by the tuner
    fronts = nd.tune_pareto(tmp_path)
    assert set(fronts["front"]) == {"tuner", "grid"}
