"""The whole DVC pipeline end to end on the tiny params profile, in a scratch copy of the repository.

Runs `dvc repro` (data, ground truth, the build matrix, the codec sweep, the ADR suite, native vs WASM, the
report), checks that the metrics and the report exist and are sane, that a second `dvc repro` has nothing to do,
and that `dvc metrics show` reads the metrics.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _dvc(*args: str, cwd: Path, timeout: float = 170, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1",
           **(env or {})}
    return subprocess.run([str(BIN / "dvc"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


#: where `make test` asks for the tiny run to be kept, so `make test-notebooks` reads it instead of running it again
KEEP_ENV = "RUVECTOR_LAB_TINY_REPO"


def _tiny_copy(repo: Path, extra_env: dict[str, str] | None = None) -> Path:
    """A scratch copy of the project with the tiny profile as params.yaml, after `dvc repro` there."""
    repo.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(ROOT / ".dvcignore", repo / ".dvcignore")
    shutil.copy(ROOT / "pipelines" / "params-tiny.yaml", repo / "params.yaml")
    shutil.copytree(ROOT / "ruvector_lab", repo / "ruvector_lab", ignore=shutil.ignore_patterns("__pycache__"))
    # the node-peers stage's other dependencies (its JavaScript and the npm lock; node_modules is the checkout's)
    shutil.copytree(ROOT / "peers", repo / "peers")
    shutil.copy(ROOT / "package-lock.json", repo / "package-lock.json")
    init = _dvc("init", "--no-scm", "-q", cwd=repo)
    assert init.returncode == 0, init.stderr
    for key in ("core.analytics", "core.check_update"):  # no network: no usage reports, no version checks
        _dvc("config", key, "false", cwd=repo)
    run = _dvc("repro", cwd=repo, timeout=400, env=extra_env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return repo


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory):
    if not (BIN / "dvc").exists() or not (BIN / "ruvector-lab").exists():
        pytest.skip("dvc and the ruvector-lab script come with the bench extra (pip install -e '.[bench]')")
    keep = os.environ.get(KEEP_ENV)
    return _tiny_copy(Path(keep) if keep else tmp_path_factory.mktemp("pipeline"))


@pytest.mark.slow
def test_repro_writes_report_and_sane_metrics(tiny_repo):
    report = (tiny_repo / "results" / "report.md").read_text()
    for heading in ("## ADR-006 targets", "## Native vs WASM, same algorithm", "## Operating points", "## Builds",
                    "## Quantization trade-offs", "## Autotuner"):
        assert heading in report
    metrics = json.loads((tiny_repo / "results" / "metrics.json").read_text())
    # the headline (the long tables are CSV files); tune: the tiny profile's autotuner study; peers: node-peers
    assert set(metrics) == {"qps", "config", "codec", "verdicts", "tune", "peers"}
    # the node-peers stage: one record per pair of the profile, each either measured or saying why not
    pairs = yaml.safe_load((tiny_repo / "params.yaml").read_text())["peers"]["pairs"]
    assert set(metrics["peers"]["adr-random-10k-384"]) == set(pairs)
    records = sorted((tiny_repo / "data" / "results" / "peers" / "adr-random-10k-384").glob("*.json"))
    assert sorted(p.stem for p in records) == sorted(pairs)
    with open(tiny_repo / "results" / "plots" / "peers.csv", newline="") as f:
        assert {r["pair"] for r in csv.DictReader(f)} == set(pairs)
    tuned = metrics["tune"]["clustered-100k-384"]["r90"]
    assert tuned["config"].startswith("hnswlib M") and tuned["median_recall"] >= 0.9 and tuned["builds"] == 1
    assert set(metrics["qps"]) == {"adr-random-10k-384", "clustered-100k-384"}
    assert metrics["qps"]["clustered-100k-384"]["r99"] > 0  # the exact scan reaches every target
    assert metrics["codec"]["clustered-100k-384"]["bytes_per_vector"] <= 64 * 4
    verdicts = metrics["verdicts"]["numpy"]
    assert verdicts["adr_pass"] + verdicts["adr_fail"] == verdicts["honest_pass"] + verdicts["honest_fail"] > 0
    plots = tiny_repo / "results" / "plots"
    with open(plots / "adr.csv", newline="") as f:
        search = [r for r in csv.DictReader(f) if r["backend"] == "numpy" and r["case"] == "hnsw_search_k10"]
    assert {r["protocol"] for r in search} == {"adr", "honest"}
    assert all(float(r["recall_at_10"]) == 1.0 and float(r["judged_ms"]) > 0 for r in search)
    with open(plots / "builds.csv", newline="") as f:
        flat = next(r for r in csv.DictReader(f) if r["dataset"] == "clustered-100k-384" and r["backend"] == "numpy")
    assert float(flat["bytes_serialized"]) >= 64 * 4
    rows = (plots / "recall_qps.csv").read_text().splitlines()
    assert len(rows) > 4
    runs = list((tiny_repo / "data" / "results" / "runs").glob("*/*/*/query-*.json"))
    assert runs
    for path in runs:
        rec = json.loads(path.read_text())
        assert all(0.0 <= v <= 1.0 for v in rec["recall"].values())
        if rec["graph"] == "flat":
            assert rec["recall"]["10"] == 1.0
    for png in ("recall_qps.png", "quant_bytes_recall.png"):  # one file per kind, a panel per dataset
        assert (plots / png).stat().st_size > 1000


@pytest.mark.slow
def test_second_repro_has_nothing_to_do_and_metrics_show_works(tiny_repo):
    again = _dvc("repro", cwd=tiny_repo, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "Running stage" not in again.stdout
    shown = _dvc("metrics", "show", "--json", cwd=tiny_repo, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "verdicts" in shown.stdout and "r95" in shown.stdout


# ----------------------------------------------------------------------------------- the same run on a cluster
#: files whose contents are not results (DVC's own state, the tuner's study database, logs)
_NOT_RESULTS = (".db", ".log", ".lock", ".sqlite")


def _result_files(repo: Path) -> set[str]:
    root = repo / "data" / "results"
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.suffix not in _NOT_RESULTS
            and not p.name.startswith(".")}


def _recalls(repo: Path) -> dict[str, object]:
    """Every host-independent figure: recall of each query record (and of each build), each codec's recall."""
    root = repo / "data" / "results"
    out: dict[str, object] = {}
    for path in sorted(root.glob("**/query-*.json")):
        rec = json.loads(path.read_text())
        out[path.relative_to(root).as_posix()] = (rec.get("recall"), [b["recall"] for b in rec.get("builds", [])])
    for path in sorted(root.glob("quant/*/*.json")):
        rec = json.loads(path.read_text())
        out[path.relative_to(root).as_posix()] = [(r["factor"], r["recall_at_10"]) for r in rec.get("rerank", [])]
    return out


@pytest.mark.slow
def test_tiny_profile_on_a_dask_cluster_gives_the_same_results(tiny_repo, dask_scheduler, tmp_path_factory):
    """bench.executor dask (here through RUVECTOR_LAB_DASK_SCHEDULER, a LocalCluster of 2 worker processes): the
    same set of result files and the same recall figures as the local executor's run."""
    import h5py
    import numpy as np

    cluster = _tiny_copy(tmp_path_factory.mktemp("pipeline-dask"), {"RUVECTOR_LAB_DASK_SCHEDULER": dask_scheduler})
    assert _result_files(cluster) == _result_files(tiny_repo)
    assert _recalls(cluster) == _recalls(tiny_repo)
    for gt in (tiny_repo / "data" / "datasets").glob("*.hdf5"):
        with h5py.File(gt) as local, h5py.File(cluster / "data" / "datasets" / gt.name) as there:
            assert np.array_equal(local["neighbors"][:], there["neighbors"][:])
            assert np.array_equal(local["distances"][:], there["distances"][:])
    measured = [json.loads(p.read_text()) for p in (cluster / "data" / "results").glob("runs/*/*/*/build.json")]
    ran = [rec for rec in measured if rec["status"] == "ok"]
    assert ran and all(rec["host_load"]["worker_threads"] == 1 for rec in ran)  # measured on a worker
