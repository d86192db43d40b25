"""The autotuner: ef_search bisection, the search space and its candidates, tune()'s refusals of bad input, a real
small study (recommendation checked with another seed, grid reference, result files, resume without rebuilding),
an infeasible target, the Pareto filter, the params section and the command line."""

from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from ruvector_lab import HnswConfig, cli
from ruvector_lab.bench import datasets, groundtruth
from ruvector_lab.bench import tune as tuner
from ruvector_lab.bench.hdf5 import Dataset
from ruvector_lab.bench.trial import TrialSettings, find_ef
from ruvector_lab.bench.tune_space import Candidate, TuneSpace, candidates, spec_key
from ruvector_lab.errors import InvalidParameterError

K = 10
SETTINGS = TrialSettings(k=K, n_queries=100, ef_max=128, repeats=1, warmup=5, build_threads=1, insert_chunk=1000)
TARGET = 0.9
SPACE = TuneSpace(backends=("hnswlib",), m=(8, 16), ef_construction=(32,))
STUDY = "real-study"


def with_truth(ds: Dataset) -> Dataset:
    ds.neighbors, ds.distances = groundtruth.knn_ground_truth(ds.test, ds.train, K, ds.metric)
    return ds


@pytest.fixture(scope="module")
def easy() -> Dataset:
    """1,500 x 16 Gaussian vectors and 100 queries (euclidean): recall 0.9 is within ef_search 128, but above k, so
    the child's bisection really runs."""
    rng = np.random.default_rng(1)
    return with_truth(Dataset("tune-easy", rng.standard_normal((1500, 16)).astype(np.float32),
                              rng.standard_normal((100, 16)).astype(np.float32), "euclidean"))


@pytest.fixture
def no_build(monkeypatch: pytest.MonkeyPatch):
    """Fail the test if the tuner starts any child build."""

    def refuse(*args, **kwargs):
        raise AssertionError("the tuner started a build")

    monkeypatch.setattr(tuner, "evaluate", refuse)


# --------------------------------------------------------------------------------------------------- find_ef
def monotone_recall(rng: np.random.Generator, hi: int) -> np.ndarray:
    """A random non-decreasing step function on 0..hi with values in [0, 1]: flat runs and jumps."""
    steps = rng.random(hi + 1) * (rng.random(hi + 1) < rng.uniform(0.02, 0.5))
    curve = np.cumsum(steps)
    return curve / max(curve[-1], 1e-9) * rng.uniform(0.5, 1.0)


def test_find_ef_is_the_smallest_reaching_ef_in_log_probes():
    rng = np.random.default_rng(2024)
    reached = missed = 0
    for _ in range(200):
        lo = int(rng.integers(1, 40))
        hi = int(rng.integers(lo, 1500))
        curve = monotone_recall(rng, hi)
        target = float(rng.uniform(0.05, 1.0))
        calls: list[int] = []

        def recall_at(ef: int, curve=curve, calls=calls) -> float:
            calls.append(ef)
            return float(curve[ef])

        ef, probes = find_ef(recall_at, target, lo, hi)
        brute = next((e for e in range(lo, hi + 1) if curve[e] >= target), None)
        assert ef == brute, (lo, hi, target)
        assert len(calls) == len(set(calls)) == len(probes), "an ef was probed twice"
        assert all(lo <= e <= hi for e in probes)
        assert all(probes[e] == curve[e] for e in probes)
        assert len(probes) <= 2 * math.log2(max(hi, 2)) + 3
        if ef is None:
            missed += 1
            assert hi in probes and probes[hi] < target
        else:
            reached += 1
            assert ef in probes and probes[ef] >= target
            assert ef == lo or (ef - 1 in probes and probes[ef - 1] < target)
    assert reached > 20 and missed > 20  # both outcomes were exercised


def test_find_ef_misses_when_hi_misses():
    ef, probes = find_ef(lambda e: e / 1000, 0.5, 10, 128)
    assert ef is None and max(probes) == 128 and probes[128] == pytest.approx(0.128)
    assert sorted(probes) == [10, 20, 40, 80, 128]  # doubling, capped at hi


def test_find_ef_start_searches_upward_from_start():
    rng = np.random.default_rng(7)
    for _ in range(100):
        lo, hi = 10, int(rng.integers(50, 600))
        start = int(rng.integers(lo + 1, hi))
        curve = monotone_recall(rng, hi)
        target = float(rng.uniform(0.05, 1.0))
        ef, probes = find_ef(lambda e, c=curve: float(c[e]), target, lo, hi, start=start)
        assert ef == next((e for e in range(start, hi + 1) if curve[e] >= target), None)
        assert min(probes) >= start  # start - 1 is taken as a known miss: nothing below start is probed
        assert len(probes) <= 2 * math.log2(hi) + 3
    ef, probes = find_ef(lambda e: 1.0 if e >= 37 else 0.0, 0.9, 10, 128, start=30)
    assert ef == 37 and min(probes) == 30


# ------------------------------------------------------------------------------------------- TuneSpace, candidates
@pytest.mark.parametrize("kwargs", [
    {"backends": ("nope",)},
    {"quantization": ("none", "zstd")},
    {"m": (1,)},
    {"m": (8, 0)},
    {"backends": ()},
    {"m": ()},
    {"ef_construction": []},
    {"quantization": ()},
    {"backends": "hnswlib"},
    {"m": "8"},
    {"m": 8},
    {"ef_construction": (0,)},
    {"rerank": (-1,)},
    {"pq_m": (0,)},
], ids=lambda kw: repr(kw))
def test_tune_space_refuses_bad_input(kwargs):
    with pytest.raises(InvalidParameterError):
        TuneSpace(**kwargs)


def test_tune_space_from_dict():
    space = TuneSpace.from_dict({"backends": ["hnswlib"], "m": [4, 8]})
    assert space.backends == ("hnswlib",) and space.m == (4, 8)
    assert space.ef_construction == TuneSpace().ef_construction  # a missing key takes the default
    assert TuneSpace.from_dict(space.to_dict()) == space
    with pytest.raises(InvalidParameterError, match=r"unknown tune\.space keys"):
        TuneSpace.from_dict({"mm": [8]})
    with pytest.raises(InvalidParameterError):
        TuneSpace.from_dict(["hnswlib"])  # type: ignore[arg-type]


def test_candidates_offer_each_backend_only_the_codecs_it_serves():
    space = TuneSpace(backends=("faiss", "hnswlib"), m=(8, 16), ef_construction=(32,),
                      quantization=("none", "scalar", "product", "binary"), pq_m=(4, 5), rerank=(40,))
    found, excluded = candidates(space, 16, "euclidean")
    codecs: dict[str, set[str]] = {}
    for cand in found:
        codecs.setdefault(cand.backend, set()).add(cand.quantization)
        assert cand.m in space.m and cand.ef_construction in space.ef_construction
        assert cand.rerank == (0 if cand.quantization == "none" else 40)
    assert codecs["hnswlib"] == {"none"}  # hnswlib serves no codec in search
    assert codecs["faiss"] == {"none", "scalar", "product-m4"}
    assert "faiss/product-m5" in excluded and "divide" in excluded["faiss/product-m5"]  # 5 does not divide 16
    assert "faiss/binary" in excluded and "euclidean" in excluded["faiss/binary"]
    assert len(found) == len(set(found)) == 2 * (3 + 1)  # every (codec, M) of faiss, every M of hnswlib
    # under cosine binary codes are served, so they are offered and not excluded
    found, excluded = candidates(space, 16, "cosine")
    assert any(c.backend == "faiss" and c.quantization == "binary" for c in found)
    assert "faiss/binary" not in excluded


def test_float_only_grid_is_the_product_of_the_lists():
    space = TuneSpace(backends=("faiss", "hnswlib"), m=(4, 8, 16), ef_construction=(16, 32))
    found, excluded = candidates(space, 16, "euclidean")
    assert excluded == {}
    expected = {(b, m, e) for b in space.backends for m in space.m for e in space.ef_construction}
    assert len(found) == len(expected) == 2 * 3 * 2
    assert {(c.backend, c.m, c.ef_construction) for c in found} == expected
    assert all(c.quantization == "none" and c.rerank == 0 for c in found)


def test_candidate_round_trip_and_spec():
    for cand in (Candidate("hnswlib", 16, 64), Candidate("faiss", 8, 128, "scalar", 40),
                 Candidate("faiss", 32, 256, "product-m4", 0)):
        assert Candidate.from_dict(cand.to_dict()) == cand
        assert Candidate.from_dict(json.loads(json.dumps(cand.to_dict()))) == cand
    assert Candidate("hnswlib", 16, 64).spec == "none"
    assert Candidate("faiss", 16, 64, "scalar", 40).spec == "scalar-r40"
    assert Candidate("faiss", 16, 64, "scalar", 0).spec == "scalar"
    assert Candidate("faiss", 16, 64, "scalar", 40).label == "faiss M16 efc64 scalar-r40"
    with pytest.raises(InvalidParameterError):
        Candidate.from_dict({"backend": "faiss", "m": 8})
    with pytest.raises(InvalidParameterError):
        Candidate.from_dict({"backend": "faiss", "m": "many", "ef_construction": 8})
    config = Candidate("faiss", 16, 64, "scalar", 40).config(16, "euclidean", ef_search=33)
    assert (config.m, config.ef_construction, config.ef_search, config.rerank) == (16, 64, 33, 40)
    assert config.quantization is not None


# ------------------------------------------------------------------------------------------- tune(): bad input
@pytest.mark.parametrize("kwargs, match", [
    ({"recall": 0}, "recall target"),
    ({"recall": 1.5}, "recall target"),
    ({"recall": -0.1}, "recall target"),
    ({"recall": float("nan")}, "recall target"),
    ({"recall": True}, "recall target"),
    ({"objective": "speed"}, "objective"),
    ({"trials": 0}, "trials"),
    ({"trials": 2.5}, "trials"),
    ({"memory_budget": 0}, "memory_budget"),
    ({"memory_budget": -10.0}, "memory_budget"),
    ({"memory_budget": float("inf")}, "memory_budget"),
    ({"backends": ["nope"]}, "unknown backend"),
], ids=lambda v: repr(v) if isinstance(v, dict) else None)
def test_tune_refuses_bad_input_before_building(easy, tmp_path, no_build, kwargs, match):
    args = {"recall": TARGET, "space": SPACE, "settings": SETTINGS, "trials": 2, "results_root": tmp_path,
            "storage": f"sqlite:///{tmp_path}/x.db", **kwargs}
    with pytest.raises(InvalidParameterError, match=match):
        tuner.tune(easy, **args)
    assert not (tmp_path / "tune").exists()


def test_tune_refuses_a_memory_budget_no_layout_meets(easy, tmp_path, no_build):
    with pytest.raises(InvalidParameterError, match=r"memory budget 1 bytes per vector: no configuration") as info:
        tuner.tune(easy, TARGET, memory_budget=1.0, space=SPACE, settings=SETTINGS, results_root=tmp_path,
                   storage=f"sqlite:///{tmp_path}/x.db")
    assert "hnswlib M8 efc32 none" in str(info.value)  # the smallest layout is named
    assert not (tmp_path / "x.db").exists()


def test_tune_refuses_unknown_dataset_names_and_data_without_truth(easy, tmp_path, no_build):
    with pytest.raises(InvalidParameterError, match="unknown dataset 'no-such-set'"):
        tuner.tune("no-such-set", TARGET, datasets_dir=tmp_path, results_root=tmp_path, space=SPACE,
                   settings=SETTINGS)
    bare = Dataset("bare", easy.train, easy.test, easy.metric)
    with pytest.raises(InvalidParameterError, match="no ground truth"):
        tuner.tune(bare, TARGET, results_root=tmp_path, space=SPACE, settings=SETTINGS)
    with pytest.raises(InvalidParameterError, match="dataset must be"):
        tuner.tune(42, TARGET, results_root=tmp_path, space=SPACE, settings=SETTINGS)  # type: ignore[arg-type]


def test_tune_refuses_a_storage_file_that_is_not_sqlite(easy, tmp_path, no_build):
    bad = tmp_path / "bad.db"
    garbage = b"this is not a database at all\x00\x01\x02" * 20
    bad.write_bytes(garbage)
    with pytest.raises(InvalidParameterError, match="not a SQLite database"):
        tuner.tune(easy, TARGET, space=SPACE, settings=SETTINGS, results_root=tmp_path, storage=f"sqlite:///{bad}")
    assert bad.read_bytes() == garbage  # left as it was


# ---------------------------------------------------------------------------------------- a real small study
@pytest.fixture(scope="module")
def study(easy, tmp_path_factory):
    """One real tune on the easy set (2 trials over a 2-configuration hnswlib space, grid, 1 verification seed)."""
    root = tmp_path_factory.mktemp("tune")
    storage = f"sqlite:///{root}/x.db"
    args = {"recall": TARGET, "space": SPACE, "settings": SETTINGS, "trials": 2, "verify_seeds": 1, "grid": True,
            "replay_seeds": 2, "results_root": root, "storage": storage, "study_name": STUDY}
    steps: list[tuple[str, int, int]] = []
    result = tuner.tune(easy, progress=lambda step, done, total: steps.append((step, done, total)), **args)
    return {"root": root, "storage": storage, "args": args, "result": result, "steps": steps}


def test_real_tune_recommends_a_verified_configuration(study):
    result = study["result"]
    rec = result.recommended["qps"]
    assert rec is not None and result.best == rec
    assert set(result.recommended) == set(tuner.OBJECTIVES)
    assert rec["backend"] == "hnswlib" and rec["m"] in SPACE.m and rec["ef_construction"] == 32
    assert rec["recall"] >= TARGET
    assert isinstance(rec["ef_search"], int) and K <= rec["ef_search"] <= SETTINGS.ef_max
    assert rec["qps"] > 0 and rec["bytes_per_vector"] > 0 and rec["build_time_s"] > 0
    verification = rec["verification"]
    assert verification["meets_target"] is True
    assert [b["seed"] for b in verification["builds"]] == [0, 1]  # the trial's build and one more seed
    assert all("recall" in b for b in verification["builds"])
    assert verification["median_recall"] >= TARGET or "raised_ef_search" in verification
    assert 1 <= result.builds <= 2
    assert result.answer.startswith(rec["label"]) and f"ef_search {rec['ef_search']}" in result.answer
    assert result.excluded == {}
    assert result.study_name == STUDY and result.storage == study["storage"]
    assert any(step == "trial" for step, _, _ in study["steps"])
    assert any(step == "verify" for step, _, _ in study["steps"])


def test_real_tune_ef_search_is_the_childs_bisection_answer(study, easy):
    """The trial's stored evaluation: ef_search is a probed hit whose predecessor was probed as a miss."""
    result = study["result"]
    rec = result.recommended["qps"]
    cand = Candidate.from_dict(rec)
    evals = study["root"] / "tune" / easy.name / "evals"
    own = []
    for path in evals.glob(f"{spec_key(cand)}-s0-*.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        entry = record["targets"][str(TARGET)]
        if "recall_at_check" not in entry:
            own.append((record, entry))
    assert len(own) == 1
    record, entry = own[0]
    assert record["candidate"] == cand.to_dict() and record["seed"] == 0
    assert (record["n_train"], record["n_queries"], record["k"]) == (1500, 100, K)
    probes = {int(e): r for e, r in entry["probes"].items()}
    ef = entry["ef_search"]
    assert entry["feasible"] is True and probes[ef] >= TARGET and entry["recall"] == probes[ef]
    if "remeasure_moved" not in entry:
        assert ef == K or probes[ef - 1] < TARGET
    assert all(K <= e <= SETTINGS.ef_max for e in probes)
    if "raised_ef_search" not in rec["verification"]:
        assert rec["ef_search"] == ef and rec["recall"] == entry["recall"]
    else:
        assert rec["verification"]["raised_ef_search"]["to"] == rec["ef_search"] >= ef


def test_real_tune_grid_covers_the_space(study):
    result = study["result"]
    grid = result.grid
    assert grid is not None
    assert grid["builds"] == 2 and grid["tuner_builds"] == result.builds
    assert grid["best"] is not None and grid["best"]["recall"] >= TARGET
    assert grid["qps_ratio"] is not None and grid["qps_ratio"] > 0
    assert grid["replay"]["seeds"] == [1, 2] and len(grid["replay"]["qps_ratio"]) == 2
    assert all(0 < r <= 1 for r in grid["replay"]["qps_ratio"])


def test_real_tune_writes_the_record_and_the_params_fragment(study, easy):
    result, folder = study["result"], study["root"] / "tune" / easy.name
    record = json.loads((folder / "recall-0.9.json").read_text(encoding="utf-8"))
    assert record["schema"] == "ruvector-lab/tune@1" == tuner.SCHEMA_TUNE
    assert record["dataset"] == easy.name and record["target"] == TARGET
    assert record["dataset_record"]["content_hash"] == easy.content_hash()
    assert record["recommended"]["qps"]["label"] == result.recommended["qps"]["label"]
    assert len(record["trials"]) == len(result.trials)
    assert list((folder / "evals").glob("*.json")), "no stored evaluation to resume from"
    fragment = (folder / "recall-0.9.params.yaml").read_text(encoding="utf-8")
    assert fragment == result.params_fragment()
    parsed = yaml.safe_load(fragment)
    rec = result.recommended["qps"]
    assert parsed["bench"]["backends"] == [rec["backend"]]
    assert parsed["build"]["m"] == [rec["m"]]
    assert parsed["build"]["ef_construction"] == [rec["ef_construction"]]
    assert parsed["build"]["quantization"] == [rec["spec"]] == ["none"]
    assert parsed["query"]["ef_search"] == [rec["ef_search"]]


def test_real_tune_history_config_and_pareto(study, easy):
    result = study["result"]
    history = result.history()
    assert isinstance(history, pl.DataFrame)
    assert history.height == len(result.trials) >= result.builds
    assert history["number"].to_list() == [t["number"] for t in result.trials]
    assert history["number"].n_unique() == history.height
    assert set(history["backend"].drop_nulls().to_list()) <= {"hnswlib"}
    config = result.hnsw_config()
    rec = result.recommended["qps"]
    assert isinstance(config, HnswConfig)
    assert config.m == rec["m"] and config.ef_search == rec["ef_search"]
    assert config.ef_construction == rec["ef_construction"] and config.dimensions == easy.dimensions
    rows = [t for t in result.trials if t.get("feasible") and t.get("qps")]
    assert rows
    front = tuner.pareto(rows)
    assert front and all(r in rows for r in front)
    for kept in front:
        assert not any(dominates(other, kept) for other in rows)
    for row in rows:
        if row not in front:
            assert any(dominates(other, row) for other in rows)
    assert [r["label"] for r in result.pareto] == [r["label"] for r in tuner.pareto(
        list({r["label"]: r for r in reversed(rows)}.values()))]


def test_resume_rebuilds_nothing_and_recommends_the_same(study, easy, no_build):
    again = tuner.tune(easy, **study["args"])
    first = study["result"]
    assert again.builds == first.builds
    assert again.trials == first.trials
    assert again.recommended == first.recommended
    assert again.answer == first.answer
    assert again.grid["builds"] == first.grid["builds"]


def test_a_study_name_reused_for_another_question_is_refused(study, easy, no_build):
    args = {**study["args"], "recall": 0.8}
    with pytest.raises(InvalidParameterError, match=rf"study '{STUDY}'.*another question.*target"):
        tuner.tune(easy, **args)


# ------------------------------------------------------------------------------------------ an infeasible target
def test_an_unreachable_target_ends_with_no_recommendation(tmp_path):
    hard = with_truth(datasets.adr_random(n=1500, n_queries=100, dimensions=32, seed=9, name="tune-hard"))
    settings = TrialSettings(k=K, n_queries=100, ef_max=K, repeats=1, warmup=5, build_threads=1, insert_chunk=1000)
    result = tuner.tune(hard, 1.0, space=TuneSpace(backends=("hnswlib",), m=(4,), ef_construction=(10,)),
                        settings=settings, trials=1, verify_seeds=1, results_root=tmp_path,
                        storage=f"sqlite:///{tmp_path}/x.db")
    assert all(v is None for v in result.recommended.values()) and result.best is None
    assert "no configuration tried reaches recall 1" in result.answer
    assert result.builds == 1 and result.pareto == []
    assert all(t["feasible"] is False for t in result.trials if "feasible" in t and t["feasible"] is not None)
    assert any(t.get("recall") is not None and t["recall"] < 1.0 for t in result.trials)
    with pytest.raises(InvalidParameterError, match="no configuration meets recall"):
        result.hnsw_config()
    fragment = result.params_fragment()
    assert all(line.startswith("#") for line in fragment.splitlines()) and yaml.safe_load(fragment) is None
    assert (tmp_path / "tune" / "tune-hard" / "recall-1.json").is_file()


# ---------------------------------------------------------------------------------------------------- pareto
def dominates(a: dict, b: dict) -> bool:
    """a is at least as good as b on QPS (up), bytes per vector and build time (down), and better on one."""
    ge = a["qps"] >= b["qps"] and a["bytes_per_vector"] <= b["bytes_per_vector"] and \
        a["build_time_s"] <= b["build_time_s"]
    gt = a["qps"] > b["qps"] or a["bytes_per_vector"] < b["bytes_per_vector"] or a["build_time_s"] < b["build_time_s"]
    return ge and gt


def test_pareto_keeps_exactly_the_non_dominated_rows():
    rows = [
        {"name": "fast", "qps": 1000.0, "bytes_per_vector": 200.0, "build_time_s": 5.0},
        {"name": "small", "qps": 300.0, "bytes_per_vector": 50.0, "build_time_s": 5.0},
        {"name": "quick-build", "qps": 300.0, "bytes_per_vector": 200.0, "build_time_s": 1.0},
        {"name": "worse-than-fast", "qps": 900.0, "bytes_per_vector": 200.0, "build_time_s": 5.0},
        {"name": "worse-everywhere", "qps": 100.0, "bytes_per_vector": 300.0, "build_time_s": 9.0},
        {"name": "tie-of-small", "qps": 300.0, "bytes_per_vector": 50.0, "build_time_s": 5.0},
    ]
    kept = tuner.pareto(rows)
    assert sorted(r["name"] for r in kept) == ["fast", "quick-build", "small", "tie-of-small"]
    assert [r["qps"] for r in kept] == sorted((r["qps"] for r in kept), reverse=True)
    rng = np.random.default_rng(11)
    for _ in range(50):
        pts = [{"qps": float(rng.integers(1, 6)), "bytes_per_vector": float(rng.integers(1, 6)),
                "build_time_s": float(rng.integers(1, 6)), "i": i} for i in range(int(rng.integers(1, 15)))]
        expected = {p["i"] for p in pts if not any(dominates(o, p) for o in pts)}
        assert {p["i"] for p in tuner.pareto(pts)} == expected


# ------------------------------------------------------------------------------------- params fragment, params
def test_params_fragment_without_recommendation_is_only_comments():
    record = {"dataset": "some-set", "target": 0.99, "objective": "qps", "recommended": {"qps": None},
              "answer": "no configuration tried reaches recall 0.99"}
    text = tuner.params_fragment(record)
    lines = text.splitlines()
    assert lines and all(line.startswith("#") for line in lines)
    assert "some-set" in text and "no configuration tried reaches recall 0.99" in text
    assert yaml.safe_load(text) is None


def test_tune_params_reads_the_tune_section():
    params = {
        "bench": {"build_threads": 1, "insert_chunk": 500},
        "query": {"k": 5},
        "tune": {"datasets": ["a", "b"], "targets": [0.9, 0.95], "objective": "memory", "trials": 7, "grid": True,
                 "verify_seeds": 3, "replay_seeds": 4, "memory_budget": 300, "seed": 2, "ef_max": 64,
                 "n_queries": 50, "repeats": 1, "warmup": 3,
                 "space": {"backends": ["hnswlib"], "m": [8], "ef_construction": [40]}},
    }
    tp = tuner.tune_params(params)
    assert tp.datasets == ("a", "b") and tp.targets == (0.9, 0.95)
    assert (tp.objective, tp.trials, tp.grid, tp.verify_seeds, tp.replay_seeds, tp.seed) == ("memory", 7, True, 3,
                                                                                               4, 2)
    assert tp.memory_budget == 300.0 and isinstance(tp.memory_budget, float)
    assert tp.space == TuneSpace(backends=("hnswlib",), m=(8,), ef_construction=(40,))
    assert tp.settings == TrialSettings(k=5, n_queries=50, ef_max=64, build_threads=1, insert_chunk=500, repeats=1,
                                        warmup=3)
    kwargs = tp.kwargs()
    assert kwargs["measure_targets"] == (0.9, 0.95) and kwargs["space"] is tp.space
    defaults = tuner.tune_params({})
    assert defaults.targets == (0.95,) and defaults.memory_budget is None and defaults.space == TuneSpace()
    with pytest.raises(InvalidParameterError, match="unknown params tune keys"):
        tuner.tune_params({"tune": {"trails": 4}})
    with pytest.raises(InvalidParameterError):
        tuner.tune_params({"tune": {"targets": [1.5]}})
    with pytest.raises(InvalidParameterError):
        tuner.tune_params({"tune": {"space": {"m": [1]}}})


# ------------------------------------------------------------------------------------------------ command line
def invoke(*args: str):
    return CliRunner().invoke(cli.app, list(args), env={"COLUMNS": "200"})


def test_cli_tune_help_lists_the_options():
    result = invoke("tune", "--help")
    assert result.exit_code == 0, result.output
    for flag in ("--recall", "--objective", "--memory-budget", "--trials"):
        assert flag in result.stdout, flag


def test_cli_tune_unknown_dataset_exits_2(tmp_path, no_build):
    (tmp_path / "params.yaml").write_text("tune:\n  trials: 1\n  space: {backends: [hnswlib]}\n", encoding="utf-8")
    result = invoke("tune", "no-such-set", "--params", str(tmp_path / "params.yaml"), "--datasets-dir",
                    str(tmp_path / "datasets"), "--results", str(tmp_path / "results"))
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "no-such-set" in result.output


def test_storage_is_a_real_sqlite_study(study):
    """The study lives in the SQLite file the caller named (inspectable without the tuner)."""
    path = study["storage"][len("sqlite:///"):]
    with sqlite3.connect(path) as db:
        names = [row[0] for row in db.execute("SELECT study_name FROM studies")]
    assert names == [STUDY]


# ------------------------------------------------------------------------------------------- input checks
def test_empty_rerank_list_is_refused_as_bad_input():
    with pytest.raises(InvalidParameterError, match="rerank"):
        TuneSpace(backends=("faiss",), m=(8,), ef_construction=(32,), quantization=("none", "scalar"), rerank=())
    assert TuneSpace(quantization=("none",), rerank=()).rerank == ()  # float-only spaces need no depth


@pytest.mark.parametrize("key", ["replay_seeds", "verify_seeds", "seed"])
def test_negative_seed_counts_are_refused(study, easy, no_build, key):
    with pytest.raises(InvalidParameterError, match=key):
        tuner.tune(easy, **{**study["args"], key: -1})


def test_backends_as_one_string_is_refused(study, easy, no_build):
    with pytest.raises(InvalidParameterError, match="backends"):
        tuner.tune(easy, **{**study["args"], "backends": "hnswlib"})


@pytest.mark.parametrize("section", [{"trials": "many"}, {"grid": "false"}, {"n_queries": 1.7},
                                     {"objective": "speed"}, {"verify_seeds": -1}, {"trials": 0},
                                     {"memory_budget": "big"}, {"targets": 0.9}])
def test_tune_params_refuses_wrong_kinds(section):
    with pytest.raises(InvalidParameterError):
        tuner.tune_params({"tune": section})


def test_find_ef_start_above_hi_stays_within_hi():
    ef, probes = find_ef(lambda e: 1.0, 0.9, 10, 50, start=80)
    assert ef is not None and ef <= 50 and max(probes) <= 50


# ------------------------------------------------------------------------------------------ killed and resumed
KILLED_SCRIPT = """
import sys, numpy as np
from ruvector_lab.bench import tune as tuner
from ruvector_lab.bench.hdf5 import read_hdf5
from ruvector_lab.bench.trial import TrialSettings
from ruvector_lab.bench.tune_space import TuneSpace
ds = read_hdf5(sys.argv[1], name="tune-easy", require_groundtruth=True)
tuner.tune(ds, 0.9, space=TuneSpace(backends=("hnswlib",), m=(8, 16, 32), ef_construction=(32,)),
           settings=TrialSettings(k=10, n_queries=100, ef_max=128, repeats=1, warmup=5, build_threads=1,
                                  insert_chunk=1000),
           trials=3, verify_seeds=0, results_root=sys.argv[2], storage=sys.argv[3], study_name="killed",
           grace_period_s=1)
"""


def test_a_killed_tune_resumes_where_it_stopped(easy, tmp_path, monkeypatch):
    """A tune killed (SIGKILL) after its first evaluation: the resumed one fails the trial the dead process left
    running (heartbeat), reuses every finished evaluation, and builds only what is left."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from ruvector_lab.bench.hdf5 import write_hdf5

    data = write_hdf5(tmp_path / "easy.hdf5", easy)
    root, storage = tmp_path / "results", f"sqlite:///{tmp_path}/killed.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.Popen([sys.executable, "-c", KILLED_SCRIPT, str(data), str(root), storage], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    evals = root / "tune" / "tune-easy" / "evals"
    deadline = time.monotonic() + 120
    while not (evals.exists() and list(evals.glob("*.json"))):
        assert child.poll() is None, f"the tune ended before it could be killed: {child.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "no evaluation finished within 120 s"
        time.sleep(0.05)
    child.kill()
    child.wait()
    finished = {p.name for p in evals.glob("*.json")}
    assert 1 <= len(finished) < 3
    time.sleep(2.5)  # past the heartbeat grace period: the dead process's trial is stale

    built: list[str] = []
    real = tuner.evaluate

    def counting(data, cand, *args, **kwargs):
        built.append(cand.label)
        return real(data, cand, *args, **kwargs)

    monkeypatch.setattr(tuner, "evaluate", counting)
    result = tuner.tune(easy, 0.9, space=TuneSpace(backends=("hnswlib",), m=(8, 16, 32), ef_construction=(32,)),
                        settings=SETTINGS, trials=3, verify_seeds=0, results_root=root, storage=storage,
                        study_name="killed", grace_period_s=1)
    assert result.builds == 3
    assert len(built) == 3 - len(finished)  # nothing finished before the kill is built again
    states = [t["state"] for t in result.trials]
    assert "RUNNING" not in states
    assert {p.name for p in evals.glob("*.json")} >= finished


def test_a_trial_killed_before_its_first_heartbeat_goes_stale_once_a_tune_opens_the_study(tmp_path):
    """Optuna never fails a RUNNING trial that has no heartbeat (a process killed between ask and its first beat);
    a tune opening the study beats it once, so it goes stale after the grace period like any dead trial."""
    import time
    import warnings

    import optuna

    storage = tuner.open_storage(f"sqlite:///{tmp_path}/orphan.db", grace_period_s=1)
    study = optuna.create_study(storage=storage, study_name="orphan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        orphan = study.ask()  # RUNNING, no heartbeat: what a kill right after ask leaves
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)
    assert study.get_trials()[orphan.number].state == optuna.trial.TrialState.RUNNING  # Optuna alone: stuck
    tuner.beat_running_trials(study, storage)
    time.sleep(2.5)  # SQLite keeps heartbeats to the second: past the 1 s grace period by more than a tick
    optuna.storages.fail_stale_trials(study)
    assert study.get_trials()[orphan.number].state == optuna.trial.TrialState.FAIL


def _scripted_record(target: float, entry: dict, build_s: float, bytes_per_vector: float) -> dict:
    """An evaluation record as the trial child writes it, around one target's ``entry``."""
    return {"status": "ok", "targets": {str(float(target)): entry}, "build_time_s": build_s,
            "bytes_per_vector": {"rss_growth": bytes_per_vector, "serialized": 0.9 * bytes_per_vector}}


class _ScriptedBuilds:
    """The evaluation store's ``get`` as `_verify` calls it, answering from per-(seed, check) recalls: a stand-in
    for multi-threaded builds, which give a different graph (and recall) every time they are built."""

    def __init__(self, own_ef: dict[int, int], remeasures: list[tuple[float, int | None]]):
        self.own_ef = own_ef  # verification seed -> the ef its build needs
        self.remeasures = list(remeasures)  # each fresh seed-0 build: (recall at the check ef, its own cheapest ef)
        self.calls: list[tuple[int, int, bool]] = []

    def get(self, cand, seed, check, timing):
        (target, ef), = check.items()
        self.calls.append((seed, ef, timing))
        if seed:
            recall = 0.96 if ef >= self.own_ef[seed] else 0.94
            entry = {"feasible": True, "ef_search": self.own_ef[seed], "recall": 0.95,
                     "recall_at_check": {"ef_search": ef, "recall": recall}}
        else:
            recall, own = self.remeasures.pop(0)
            entry = {"feasible": own is not None, "ef_search": own, "recall": 0.95,
                     "recall_at_check": {"ef_search": ef, "recall": recall, "qps": 1000.0 + ef,
                                         "latency_ms": {"p50": 1.0, "p95": 1.0, "p99": 1.0}}}
        return _scripted_record(target, entry, build_s=1.0, bytes_per_vector=100.0), None


VERIFY_CAND = Candidate(backend="hnswlib", m=8, ef_construction=64, quantization="none", rerank=0)


def test_verify_raises_ef_again_when_the_fresh_build_falls_short():
    # the trial met 0.95 at ef 50; the other builds need 55 and 60, so the ef rises to 55; the first fresh build
    # gets 0.949 there (it needs 57), the second one meets the target at 57: the figures are that build's
    builds = _ScriptedBuilds({1: 55, 2: 60}, [(0.949, 57), (0.951, 56)])
    out = tuner._verify(builds, VERIFY_CAND, {"ef_search": 50, "recall": 0.95}, 0.95, seeds=2)
    assert out["meets_target"] is True
    assert out["raised_ef_search"] == {"from": 50, "to": 57}
    assert out["figures"]["ef_search"] == 57 and out["figures"]["recall"] >= 0.95
    assert out["figures"]["qps"] == 1057.0
    assert out["remeasured"] == [{"ef_search": 55, "recall": 0.949}, {"ef_search": 57, "recall": 0.951}]
    assert [c for c in builds.calls if c[0] == 0] == [(0, 55, True), (0, 57, True)]


def test_verify_refuses_when_fresh_builds_keep_falling_short():
    builds = _ScriptedBuilds({1: 55, 2: 60}, [(0.94, 56), (0.94, 58), (0.94, 59)])
    out = tuner._verify(builds, VERIFY_CAND, {"ef_search": 50, "recall": 0.95}, 0.95, seeds=2)
    assert out["meets_target"] is False and out["figures"] is None
    assert [m["ef_search"] for m in out["remeasured"]] == [55, 56, 58]
    assert "fell short of recall 0.95" in out["reason"] and "0.9400 at 58" in out["reason"]
    # a fresh build that cannot reach the target at any ef ends the attempts at once
    builds = _ScriptedBuilds({1: 55, 2: 60}, [(0.94, None)])
    out = tuner._verify(builds, VERIFY_CAND, {"ef_search": 50, "recall": 0.95}, 0.95, seeds=2)
    assert out["meets_target"] is False and len(out["remeasured"]) == 1


def test_verify_keeps_the_trials_ef_when_the_median_build_meets_it():
    builds = _ScriptedBuilds({1: 45, 2: 60}, [])
    out = tuner._verify(builds, VERIFY_CAND, {"ef_search": 50, "recall": 0.95}, 0.95, seeds=2)
    assert out["meets_target"] is True and out["figures"] is None and "raised_ef_search" not in out
    assert all(seed for seed, _, _ in builds.calls)  # no re-measure


class _TwoConfigurations:
    """`_recommend`'s view of the evaluation store for two configurations: ``raised`` needs a higher ef on other
    builds and is slower when re-measured there; ``steady`` meets the target at its trial's ef on every build."""

    def __init__(self, raised: Candidate, remeasured_qps: float):
        self.raised, self.remeasured_qps = raised, remeasured_qps

    def prefetch(self, jobs, step):
        pass

    def get(self, cand, seed, check, timing):
        (target, ef), = check.items()
        own = 60 if cand == self.raised and seed else 40
        entry = {"feasible": True, "ef_search": own, "recall": target,
                 "recall_at_check": {"ef_search": ef, "recall": 0.96 if ef >= own else 0.94,
                                     "qps": self.remeasured_qps, "latency_ms": {"p50": 1.0, "p95": 1.0, "p99": 1.0}}}
        return _scripted_record(target, entry, build_s=2.0, bytes_per_vector=500.0), None


def _trial_row(ef: int, qps: float, bpv: float, build_s: float) -> dict:
    return {"feasible": True, "ef_search": ef, "recall": 0.951, "qps": qps, "latency_ms": {"p50": 1.0},
            "bytes_per_vector": bpv, "bytes": {"rss_growth": bpv, "serialized": bpv}, "build_time_s": build_s}


def test_recommend_prefers_the_next_configuration_when_a_raised_ef_makes_the_first_slower():
    fast = Candidate("hnswlib", 8, 256)
    steady = Candidate("faiss", 8, 64)
    feasible = {fast: _trial_row(50, 11000.0, 2000.0, 4.0), steady: _trial_row(40, 10000.0, 1700.0, 1.2)}
    out = tuner._recommend(_TwoConfigurations(fast, remeasured_qps=7800.0), feasible, 0.95, 2, 384, "cosine")
    rec = out["qps"]
    assert rec["label"] == steady.label and rec["qps"] == 10000.0 and rec["ef_search"] == 40
    assert [r["label"] for r in rec["rejected"]] == [fast.label]
    passed_over = rec["rejected"][0]
    assert passed_over["verification"]["meets_target"] is True and "raised ef_search" in passed_over["reason"]
    assert out["memory"]["label"] == steady.label and out["memory"]["rejected"] == []
    # re-measured and still the fastest: the raised configuration stands, at its raised ef
    out = tuner._recommend(_TwoConfigurations(fast, remeasured_qps=10500.0), feasible, 0.95, 2, 384, "cosine")
    assert out["qps"]["label"] == fast.label and out["qps"]["ef_search"] == 60 and out["qps"]["qps"] == 10500.0
    assert out["qps"]["verification"]["raised_ef_search"] == {"from": 50, "to": 60} and out["qps"]["rejected"] == []
