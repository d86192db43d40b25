"""What re-runs: the code dependencies of dvc.yaml's stages and the code hash of each run's fingerprint, both from
ruvector_lab.bench.codedeps (the package's static import graph plus the backend registry's records).

Edits are made in a copy of the package under tmp_path, never in the repository; the DVC check runs in a scratch
project with stand-in outputs and only asks `dvc status` (nothing is reproduced).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ruvector_lab.bench import codedeps, results

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _copy_package(dest: Path) -> Path:
    """A copy of the package folder at ``dest/ruvector_lab`` (byte code left out); returns it."""
    return Path(shutil.copytree(ROOT / "ruvector_lab", dest / "ruvector_lab",
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc")))


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


@pytest.fixture
def pkg(tmp_path: Path) -> Path:
    return _copy_package(tmp_path)


# ----------------------------------------------------------------------------------------------- dvc.yaml in sync
def test_dvc_yaml_code_deps_are_what_codedeps_computes(capsys):
    assert codedeps.main(["--check", str(ROOT / "dvc.yaml")]) == 0, capsys.readouterr().out


def test_check_command_runs_as_a_module_and_reports_a_stale_file(tmp_path):
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    _copy_package(tmp_path)
    assert codedeps.main(["--write", str(tmp_path / "dvc.yaml")]) == 0  # in sync whatever the repository's state
    cmd = [sys.executable, "-m", "ruvector_lab.bench.codedeps", "--check", "dvc.yaml"]
    ok = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    text = (tmp_path / "dvc.yaml").read_text()
    (tmp_path / "dvc.yaml").write_text(text.replace("      - ruvector_lab/bench/report.py\n", "", 1))
    stale = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert stale.returncode == 1
    assert "+      - ruvector_lab/bench/report.py" in stale.stdout and "--write" in stale.stderr
    assert codedeps.main(["--write", str(tmp_path / "dvc.yaml")]) == 0
    assert (tmp_path / "dvc.yaml").read_text() == text


def test_rewrite_keeps_comments_and_other_deps_and_places_the_files_where_they_were():
    text = ("# top\nstages:\n  a:\n    cmd: x\n    deps:\n      - data/in.h5\n      # why the code\n"
            "      - ruvector_lab\n      - data/other\n    outs:\n      - out\n"
            "  b:\n    foreach: [1]\n    do:\n      cmd: y\n      deps:\n        - data/b\n      params:\n        - p\n"
            "# the end\nplots: []\n")
    new = codedeps.rewrite_dvc_yaml(text, {"a": ["ruvector_lab/x.py", "ruvector_lab/y.py"], "b": ["ruvector_lab/z.py"]})
    assert new == ("# top\nstages:\n  a:\n    cmd: x\n    deps:\n      - data/in.h5\n      # why the code\n"
                   "      - ruvector_lab/x.py\n      - ruvector_lab/y.py\n      - data/other\n    outs:\n      - out\n"
                   "  b:\n    foreach: [1]\n    do:\n      cmd: y\n      deps:\n        - data/b\n"
                   "        - ruvector_lab/z.py\n      params:\n        - p\n# the end\nplots: []\n")
    assert codedeps.rewrite_dvc_yaml(new, {"a": ["ruvector_lab/x.py", "ruvector_lab/y.py"],
                                           "b": ["ruvector_lab/z.py"]}) == new
    with pytest.raises(ValueError, match="no entry"):
        codedeps.rewrite_dvc_yaml(text, {"b": []})  # stage a depends on package files nobody computes


# ------------------------------------------------------------------------------------------------- the closure
def test_closure_follows_function_local_imports_and_skips_type_checking_ones(pkg):
    (pkg / "bench" / "zz_local.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from ..learning import lora\n\n\n"
        "def f():\n    from ..wasm import rvf_format\n\n    return rvf_format\n")
    files = codedeps.module_closure(["ruvector_lab.bench.zz_local"], pkg)
    assert "ruvector_lab/wasm/rvf_format.py" in files
    assert "ruvector_lab/wasm/__init__.py" in files and "ruvector_lab/__init__.py" in files  # parents run first
    assert "ruvector_lab/learning/lora.py" not in files
    with pytest.raises(ValueError, match="not modules"):
        codedeps.module_closure(["ruvector_lab.bench.no_such_module"], pkg)


def test_data_stage_runs_the_embeddings_code_and_no_backend():
    files = codedeps.stage_dependencies("data")
    assert {"ruvector_lab/bench/sources.py", "ruvector_lab/bench/datasets.py", "ruvector_lab/bench/hdf5.py",
            "ruvector_lab/embeddings/embedder.py", "ruvector_lab/embeddings/tokenizer.py"} <= set(files)
    backends = {f"{m.replace('.', '/')}.py" for m in codedeps.registry_modules()}
    assert not backends & set(files)
    assert "ruvector_lab/cli.py" not in files and "ruvector_lab/bench/report.py" not in files


def test_every_fingerprinted_file_is_a_dependency_of_the_stage_that_makes_the_run():
    build, quantize = set(codedeps.stage_dependencies("build")), set(codedeps.stage_dependencies("quantize"))
    for spec in codedeps._specs_here():
        for quantized in (False, True):
            files = set(codedeps.measured_files(spec[0], quantized))
            assert files <= build and files <= quantize, (spec, quantized, files - build)
    assert set(codedeps.measured_files(None)) <= quantize
    assert "ruvector_lab/bench/quant.py" in codedeps.measured_files(None)
    assert results.measured_code_hash("numpy") == codedeps.measured_hash("numpy")


def test_registry_read_from_a_copy_matches_the_one_in_process(pkg):
    assert codedeps.registry_modules(root=pkg) == codedeps.registry_modules()
    assert codedeps.stage_dependencies("build", pkg) == codedeps.stage_dependencies("build")
    with pytest.raises(ValueError, match="unknown backends"):
        codedeps.registry_modules(["no-such-backend"])


# ------------------------------------------------------------------------------------------ edits, in a copy
def test_a_report_only_edit_changes_neither_the_build_deps_nor_a_measured_hash(pkg):
    build, quantize = codedeps.stage_dependencies("build", pkg), codedeps.stage_dependencies("quantize", pkg)
    hashes = {b: codedeps.measured_hash(b, True, pkg) for b in ("faiss", "numpy", None)}
    (pkg / "bench" / "report_helper.py").write_text("HELP = 1\n")
    _append(pkg / "bench" / "report.py", "\n\ndef _helper():\n    from .report_helper import HELP\n\n    return HELP\n")
    assert "ruvector_lab/bench/report_helper.py" in codedeps.stage_dependencies("report", pkg)
    assert codedeps.stage_dependencies("build", pkg) == build
    assert codedeps.stage_dependencies("quantize", pkg) == quantize
    assert {b: codedeps.measured_hash(b, True, pkg) for b in hashes} == hashes


def test_an_edit_to_the_c_hot_path_changes_every_backend_runs_hash(pkg):
    """The facade's C extension counts as its source file (fastpath imports it), so its edit re-measures every
    index run, and the stages that make them depend on it."""
    backends = ("hnswlib", "faiss", "numpy", "usearch")
    assert all("ruvector_lab/_hotpath.c" in codedeps.measured_files(b, root=pkg) for b in backends)
    assert all("ruvector_lab/_hotpath.c" in codedeps.stage_dependencies(stage, pkg) for stage in ("build", "adr"))
    before = {b: codedeps.measured_hash(b, root=pkg) for b in backends}
    _append(pkg / "_hotpath.c", "\n/* an edit */\n")
    assert all(codedeps.measured_hash(b, root=pkg) != before[b] for b in backends)


def test_a_backend_edit_changes_only_that_backends_measured_hash(pkg):
    before = {(b, q): codedeps.measured_hash(b, q, pkg) for b in ("hnswlib", "faiss", "numpy") for q in (False, True)}
    codecs = codedeps.measured_hash(None, True, pkg)
    _append(pkg / "backends" / "hnswlib_backend.py", "\n# an edit\n")
    after = {key: codedeps.measured_hash(*key, pkg) for key in before}
    assert {key for key in before if before[key] != after[key]} == {("hnswlib", False), ("hnswlib", True)}
    assert codedeps.measured_hash(None, True, pkg) == codecs
    # a quantized class's module counts only for quantized builds
    _append(pkg / "backends" / "quantized_flat.py", "\n# an edit\n")
    assert codedeps.measured_hash("numpy", False, pkg) == after[("numpy", False)]
    assert codedeps.measured_hash("numpy", True, pkg) != after[("numpy", True)]


def test_a_backend_added_to_the_registry_is_picked_up(pkg):
    (pkg / "backends" / "toy_helper.py").write_text("TOY = 1\n")
    (pkg / "backends" / "toy_backend.py").write_text(
        "from .base import IndexBackend\nfrom .toy_helper import TOY\n\n\nclass ToyBackend(IndexBackend):\n"
        "    pass\n")
    _append(pkg / "backends" / "__init__.py",
            '\nSPECS = (*SPECS, BackendSpec("toy", "native", "ruvector_lab.backends.toy_backend:ToyBackend"))\n')
    new = {"ruvector_lab/backends/toy_backend.py", "ruvector_lab/backends/toy_helper.py"}
    assert "ruvector_lab.backends.toy_backend" in codedeps.registry_modules(root=pkg)
    for stage in ("build", "quantize", "adr"):
        assert new <= set(codedeps.stage_dependencies(stage, pkg)), stage
    assert not new & set(codedeps.stage_dependencies("data", pkg))
    assert new <= set(codedeps.measured_files("toy", False, pkg))
    assert not new & set(codedeps.measured_files("hnswlib", True, pkg))


# ----------------------------------------------------------------------------------------------- real DVC status
def _dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([str(BIN / "dvc"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)


def _changed_stages(repo: Path) -> dict[str, set[str]]:
    """Stage -> the dependencies `dvc status` reports changed."""
    status = _dvc("status", "--json", cwd=repo)
    assert status.returncode == 0, status.stderr
    out: dict[str, set[str]] = {}
    for stage, entries in json.loads(status.stdout).items():
        for entry in entries:
            if isinstance(entry, dict) and "changed deps" in entry:
                out[stage] = set(entry["changed deps"])
    return out


@pytest.mark.slow
def test_dvc_status_relaunches_only_the_stages_that_run_an_edited_file(tmp_path):
    if not (BIN / "dvc").exists():
        pytest.skip("dvc comes with the bench extra (pip install -e '.[bench]')")
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", ".dvcignore", "package-lock.json"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / "peers", repo / "peers")  # the node-peers stage's JavaScript
    shutil.copy(ROOT / "pipelines" / "params-tiny.yaml", repo / "params.yaml")
    pkg = _copy_package(repo)
    assert _dvc("init", "--no-scm", "-q", cwd=repo).returncode == 0
    for key in ("core.analytics", "core.check_update"):  # no network
        _dvc("config", key, "false", cwd=repo)
    # stand-in outputs, recorded as they are: the baseline `dvc status` compares against (nothing is run)
    status = json.loads(_dvc("status", "--json", cwd=repo).stdout)
    for entries in status.values():
        for entry in entries:
            for path in (entry.get("changed outs", {}) if isinstance(entry, dict) else {}):
                target = repo / path
                if target.suffix in {".hdf5", ".json", ".md", ".csv", ".png"}:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text("stand-in\n")
                else:
                    target.mkdir(parents=True, exist_ok=True)
    commit = _dvc("commit", "-f", cwd=repo)  # fails when a listed dependency is missing (a stale dvc.yaml)
    assert commit.returncode == 0, commit.stdout + commit.stderr
    assert _changed_stages(repo) == {}

    def kinds(changed: dict[str, set[str]]) -> set[str]:
        return {stage.split("@")[0] for stage in changed}

    report = pkg / "bench" / "report.py"
    original = report.read_bytes()
    _append(report, "\n# an edit\n")
    changed = _changed_stages(repo)
    assert changed == {"report": {"ruvector_lab/bench/report.py"}}
    report.write_bytes(original)
    assert _changed_stages(repo) == {}

    _append(pkg / "backends" / "hnswlib_backend.py", "\n# an edit\n")
    changed = _changed_stages(repo)
    assert kinds(changed) == {"build", "quantize", "adr", "tune"}, changed
    assert all(deps == {"ruvector_lab/backends/hnswlib_backend.py"} for deps in changed.values())

    _append(pkg / "cli.py", "\n# an edit of a help text\n")  # cli.py is no stage's dependency
    assert kinds(_changed_stages(repo)) == {"build", "quantize", "adr", "tune"}

    _append(repo / "peers" / "sides-node.mjs", "\n// an edit\n")  # the runner's JavaScript: node-peers alone
    assert kinds(_changed_stages(repo)) == {"build", "quantize", "adr", "tune", "node-peers"}
