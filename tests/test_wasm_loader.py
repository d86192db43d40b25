"""Locating, verifying and compiling RuVector's .wasm files; how a missing or wrong file is reported."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
from helpers import requires_wasm

import ruvector_lab as rl
from ruvector_lab import runtime
from ruvector_lab.backends import backend_class
from ruvector_lab.errors import BackendUnavailableError
from ruvector_lab.wasm import loader
from ruvector_lab.wasm.loader import ENV_WASM_DIR, LEARNING_WASM, RVF_WASM

pytestmark = requires_wasm(RVF_WASM, LEARNING_WASM)


@pytest.fixture
def fresh_loader(monkeypatch):
    """Forget compiled modules and probe results so the next use looks for the files again."""
    loader.forget_compiled()
    monkeypatch.setattr(runtime, "_probe_results", {})
    yield
    monkeypatch.delenv(ENV_WASM_DIR, raising=False)
    loader.forget_compiled()


def _npm_copy(tmp_path: Path, artifact: loader.WasmArtifact) -> Path:
    """A copy of the project's package-lock.json and the installed package, in an npm layout."""
    root = loader.project_root()
    target = tmp_path / "node_modules" / artifact.package
    shutil.copytree(root / "node_modules" / artifact.package, target)
    shutil.copy(root / "package-lock.json", tmp_path / "package-lock.json")
    shutil.copy(root / "node_modules" / ".package-lock.json", tmp_path / "node_modules" / ".package-lock.json")
    return target


def test_modules_compile_once_per_process():
    first = loader.compiled(RVF_WASM)
    assert loader.compiled(RVF_WASM) is first
    path = loader.compiled_path(RVF_WASM)
    assert path is not None and path.name == "rvf_wasm_bg.wasm"
    assert {e.name for e in first.exports} >= {"rvf_store_create", "rvf_store_query", "rvf_alloc", "memory"}


def test_pinned_hashes_match_the_installed_files():
    for artifact in (RVF_WASM, LEARNING_WASM):
        path = loader.locate(artifact)
        assert loader.sha256_of(path) == hashlib.sha256(path.read_bytes()).hexdigest() == artifact.sha256
        loader.verify(artifact, path)  # the npm lock agrees too


def test_package_json_pins_the_versions_the_loader_expects():
    manifest = json.loads((loader.project_root() / "package.json").read_text())
    pinned = {RVF_WASM.package: RVF_WASM.version, LEARNING_WASM.package: LEARNING_WASM.version}
    # the WASM modules the loader expects, each pinned exactly (the other entries serve the offline plots page)
    assert {name: manifest["dependencies"].get(name) for name in pinned} == pinned
    lock = json.loads((loader.project_root() / "package-lock.json").read_text())
    for artifact in (RVF_WASM, LEARNING_WASM):
        assert lock["packages"][f"node_modules/{artifact.package}"]["version"] == artifact.version


def test_missing_files_make_the_backend_unavailable_with_a_reason(tmp_path, monkeypatch, fresh_loader):
    monkeypatch.setenv(ENV_WASM_DIR, str(tmp_path))
    with pytest.raises(BackendUnavailableError, match="make setup-npm") as info:
        loader.compiled(RVF_WASM)
    assert ENV_WASM_DIR in str(info.value) and str(tmp_path) in str(info.value)
    reason = rl.Runtime.available()["wasm"]
    assert isinstance(reason, str) and "rvf-wasm" in reason and "not found" in reason
    assert "wasm" not in rl.Runtime.available_names()
    with pytest.raises(BackendUnavailableError, match="unavailable"):
        rl.HnswIndex(rl.HnswConfig(dimensions=4), backend="wasm")
    # detection moves on: some other backend serves
    assert rl.Runtime.initialize().backend != "wasm"


def test_flat_wasm_dir_is_accepted(tmp_path, monkeypatch, fresh_loader):
    shutil.copy(loader.locate(RVF_WASM), tmp_path / RVF_WASM.filename)
    monkeypatch.setenv(ENV_WASM_DIR, str(tmp_path))
    loader.compiled(RVF_WASM)
    assert loader.compiled_path(RVF_WASM) == tmp_path / RVF_WASM.filename
    backend_class("wasm").probe()


def test_tampered_file_is_refused(tmp_path, monkeypatch, fresh_loader):
    data = bytearray(loader.locate(RVF_WASM).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / RVF_WASM.filename).write_bytes(bytes(data))
    monkeypatch.setenv(ENV_WASM_DIR, str(tmp_path))
    with pytest.raises(BackendUnavailableError, match="sha256"):
        loader.compiled(RVF_WASM)
    assert "sha256" in str(rl.Runtime.available()["wasm"])


def test_wrong_installed_version_is_refused(tmp_path, monkeypatch, fresh_loader):
    package = _npm_copy(tmp_path, RVF_WASM)
    manifest = json.loads((package / "package.json").read_text())
    manifest["version"] = "0.1.8"
    (package / "package.json").write_text(json.dumps(manifest))
    monkeypatch.setenv(ENV_WASM_DIR, str(tmp_path))
    with pytest.raises(BackendUnavailableError, match=r"0\.1\.8 is installed but ruvector-lab needs 0\.1\.9"):
        loader.compiled(RVF_WASM)


def test_stale_node_modules_is_refused(tmp_path, monkeypatch, fresh_loader):
    _npm_copy(tmp_path, RVF_WASM)
    hidden = tmp_path / "node_modules" / ".package-lock.json"
    record = json.loads(hidden.read_text())
    record["packages"][f"node_modules/{RVF_WASM.package}"]["integrity"] = "sha512-stale"
    hidden.write_text(json.dumps(record))
    monkeypatch.setenv(ENV_WASM_DIR, str(tmp_path / "node_modules"))
    with pytest.raises(BackendUnavailableError, match=r"different .* tarball"):
        loader.compiled(RVF_WASM)


def test_npm_layout_under_wasm_dir_is_verified_and_used(tmp_path, monkeypatch, fresh_loader):
    package = _npm_copy(tmp_path, RVF_WASM)
    monkeypatch.setenv(ENV_WASM_DIR, str(tmp_path))
    loader.compiled(RVF_WASM)
    assert loader.compiled_path(RVF_WASM) == package / RVF_WASM.path_in_package


def test_wasm_backend_is_registered_and_probes():
    cls = backend_class("wasm")
    assert (cls.name, rl.Runtime.tier_of(cls.name), cls.graph) == ("wasm", "wasm", "flat")
    cls.probe()
    assert rl.Runtime.available()["wasm"] is True
    assert rl.Runtime.initialize(backend="wasm").tier == "wasm"


def test_engine_is_shared():
    assert loader.engine() is loader.engine()


def test_without_wasmtime_the_backend_names_the_missing_package(monkeypatch):
    for name in list(sys.modules):
        if name.startswith("ruvector_lab.wasm") or name == "ruvector_lab.backends.wasm_backend":
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "wasmtime", None)  # what an environment without the package looks like
    with pytest.raises(BackendUnavailableError, match="needs the Python package 'wasmtime'"):
        backend_class("wasm")
