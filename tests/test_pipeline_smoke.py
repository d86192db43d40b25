"""The whole DVC pipeline end to end on the tiny params profile, in a scratch copy of the repository.

Runs `dvc repro` (data, ground truth, the build matrix, the codec sweep, the ADR suite, the report), checks that
the metrics and the report exist and are sane, that a second `dvc repro` has nothing to do, and that
`dvc metrics show` reads the metrics.
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

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _dvc(*args: str, cwd: Path, timeout: float = 170) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([str(BIN / "dvc"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory):
    if not (BIN / "dvc").exists() or not (BIN / "ruvector-lab").exists():
        pytest.skip("dvc and the ruvector-lab script come with the bench extra (pip install -e '.[bench]')")
    repo = tmp_path_factory.mktemp("pipeline")
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(ROOT / ".dvcignore", repo / ".dvcignore")
    shutil.copy(ROOT / "pipelines" / "params-tiny.yaml", repo / "params.yaml")
    shutil.copytree(ROOT / "ruvector_lab", repo / "ruvector_lab", ignore=shutil.ignore_patterns("__pycache__"))
    init = _dvc("init", "--no-scm", "-q", cwd=repo)
    assert init.returncode == 0, init.stderr
    for key in ("core.analytics", "core.check_update"):  # no network: no usage reports, no version checks
        _dvc("config", key, "false", cwd=repo)
    run = _dvc("repro", cwd=repo)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return repo


@pytest.mark.slow
def test_repro_writes_report_and_sane_metrics(tiny_repo):
    report = (tiny_repo / "results" / "report.md").read_text()
    for heading in ("## ADR-006 targets", "## Operating points", "## Builds", "## Quantization trade-offs",
                    "## Autotuner"):
        assert heading in report
    metrics = json.loads((tiny_repo / "results" / "metrics.json").read_text())
    # the headline (the long tables are CSV files); tune: the tiny profile's autotuner study
    assert set(metrics) == {"qps", "config", "codec", "verdicts", "tune"}
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
