"""The autotuner on a Dask cluster (the session's 2-worker LocalCluster): trials asked and told by the client, two
evaluations at once, each record naming its host and its host load; a failing evaluation fails its trial and the
study goes on; a resumed study rebuilds nothing; the CLI's --executor/--scheduler reach the tuner.

The local path (one trial at a time, in child processes of the test) is tests/test_tune.py."""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from ruvector_lab import cli
from ruvector_lab.bench import groundtruth, schemas
from ruvector_lab.bench import tune as tuner
from ruvector_lab.bench.executor import DatasetRef, ExecutorSettings, open_executor
from ruvector_lab.bench.hdf5 import Dataset, write_hdf5
from ruvector_lab.bench.trial import TrialSettings
from ruvector_lab.bench.tune_space import TuneSpace

pytestmark = pytest.mark.slow

K = 10
SETTINGS = TrialSettings(k=K, n_queries=100, ef_max=128, repeats=1, warmup=5, build_threads=1, insert_chunk=1000)
TARGET = 0.9
#: six configurations, four trials: the two first asks are two builds at once on the two workers
SPACE = TuneSpace(backends=("hnswlib",), m=(8, 12, 16), ef_construction=(24, 32))
TRIALS = 4
NAME = "tune-dask"


@pytest.fixture(scope="module")
def easy() -> Dataset:
    """1,500 x 16 Gaussian vectors and 100 queries with their exact neighbours (as tests/test_tune.py's)."""
    rng = np.random.default_rng(1)
    ds = Dataset(NAME, rng.standard_normal((1500, 16)).astype(np.float32),
                 rng.standard_normal((100, 16)).astype(np.float32), "euclidean")
    ds.neighbors, ds.distances = groundtruth.knn_ground_truth(ds.test, ds.train, K, ds.metric)
    return ds


@pytest.fixture(scope="module")
def study(easy, dask_scheduler, tmp_path_factory):
    """One tune on the cluster (default storage and study name under the results root, so the CLI resumes it); the
    dataset is given in memory, so it reaches the workers as the file the tuner writes for the trip."""
    root = tmp_path_factory.mktemp("tune-dask")
    args = {"space": SPACE, "settings": SETTINGS, "trials": TRIALS, "verify_seeds": 1, "replay_seeds": 0,
            "results_root": root}
    with open_executor(ExecutorSettings("dask", dask_scheduler)) as pool:
        result = tuner.tune(easy, TARGET, executor=pool, **args)
    return {"root": root, "args": args, "result": result}


def _evals(root: Path) -> set[str]:
    return {p.name for p in (root / "tune" / NAME / "evals").glob("*.json")}


def test_cluster_tune_writes_a_valid_record_with_hosts(study):
    result, root = study["result"], study["root"]
    record = json.loads((root / "tune" / NAME / f"recall-{TARGET:g}.json").read_text(encoding="utf-8"))
    assert schemas.validate(record, expect=schemas.SCHEMA_TUNE) == schemas.SCHEMA_TUNE
    assert result.builds == TRIALS and result.recommended["qps"] is not None
    assert result.recommended["qps"]["verification"]["builds"][1]["seed"] == 1
    settings = record["settings"]
    assert settings["executor"].startswith("dask") and settings["sampler"]["constant_liar"] is True
    built = [t for t in record["trials"] if t["state"] == "COMPLETE"]
    assert len({t["label"] for t in built}) == TRIALS
    for t in built:
        assert t["host"]["name"] and t["host"]["fingerprint"], t
        assert t["host_load"]["max_concurrent"] >= 1 and t["host_load"]["worker_threads"] == 1, t
    # every evaluation kept on the client carries where it ran
    for name in _evals(root):
        stored = json.loads((root / "tune" / NAME / "evals" / name).read_text(encoding="utf-8"))
        assert stored["status"] == "ok" and stored["host"]["name"] and stored["host_load"] is not None


def test_cluster_tune_runs_two_trials_at_once(study):
    result = study["result"]
    assert result.settings["concurrent_trials"] == 2
    built = [t for t in result.trials if t["state"] == "COMPLETE"]
    # two measuring slots open on this host at once (more if another run measures here meanwhile)
    assert max(t["host_load"]["max_concurrent"] for t in built) >= 2
    spans = [(datetime.fromisoformat(t["datetime_start"]), datetime.fromisoformat(t["datetime_complete"]))
             for t in built]
    assert any(max(a[0], b[0]) < min(a[1], b[1]) for a, b in itertools.combinations(spans, 2))  # asked, then told


def test_cluster_tune_resumed_rebuilds_nothing(study, easy, dask_scheduler):
    before = _evals(study["root"])
    with open_executor(ExecutorSettings("dask", dask_scheduler)) as pool:
        again = tuner.tune(easy, TARGET, executor=pool, write=False, **study["args"])
    first = study["result"]
    assert again.trials == first.trials and again.recommended == first.recommended
    assert _evals(study["root"]) == before


def test_cli_tune_on_the_cluster_resumes_the_same_study(study, easy, dask_scheduler, tmp_path):
    datasets = tmp_path / "datasets"
    write_hdf5(datasets / f"{NAME}.hdf5", easy)
    params = {"query": {"k": K}, "bench": {"build_threads": 1, "insert_chunk": 1000},
              "tune": {"trials": TRIALS, "verify_seeds": 1, "replay_seeds": 0, "targets": [TARGET], "n_queries": 100,
                       "ef_max": 128, "repeats": 1, "warmup": 5,
                       "space": {"backends": ["hnswlib"], "m": list(SPACE.m),
                                 "ef_construction": list(SPACE.ef_construction)}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    before = _evals(study["root"])
    out = CliRunner().invoke(cli.app, ["tune", NAME, "--params", str(tmp_path / "params.yaml"), "--datasets-dir",
                                       str(datasets), "--results", str(study["root"]), "--executor", "dask",
                                       "--scheduler", dask_scheduler], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert study["result"].answer in out.output
    assert _evals(study["root"]) == before  # the same question: every evaluation was reused


def test_a_failing_evaluation_fails_its_trial_and_the_study_goes_on(easy, dask_scheduler, tmp_path, monkeypatch):
    """A dataset the workers cannot load: every trial's task ends in a data error, recorded, never raised."""
    with open_executor(ExecutorSettings("dask", dask_scheduler)) as pool:
        monkeypatch.setattr(pool, "dataset_ref", lambda path, ds=None: DatasetRef(
            NAME, "0" * 16, str(tmp_path / "nowhere.hdf5")))
        result = tuner.tune(easy, TARGET, executor=pool, space=SPACE, settings=SETTINGS, trials=2, verify_seeds=1,
                            replay_seeds=0, results_root=tmp_path, write=False)
    assert result.builds == 2 and result.best is None
    assert len(result.trials) >= 2 and {t["state"] for t in result.trials} == {"PRUNED"}
    assert all(t["pruned"].startswith("failed: DatasetError") and t["host"] for t in result.trials)
    assert not _evals(tmp_path)  # a failure is not kept: the next run tries again
