"""Find RuVector's WebAssembly modules, prove they are the pinned builds, and compile each once per process.

The ``.wasm`` files come from the npm packages that ``package.json`` pins (``make setup-npm`` runs ``npm ci``).
They are looked up under ``$RUVECTOR_LAB_WASM_DIR`` when it is set (a folder holding the ``.wasm`` files
themselves, or an npm ``node_modules`` folder, or a folder that holds one), otherwise under the
``node_modules`` folder beside the project's ``package.json`` and then under the working directory's.

A file is used only if its sha256 is the one pinned below; under ``node_modules`` the installed package's
version must also be the one ``package-lock.json`` pins, and npm's record of the installed tarball
(``node_modules/.package-lock.json``) must carry the same integrity hash as the committed lock, so a stale
``node_modules`` is reported instead of silently run. Every failure raises
:class:`~ruvector_lab.errors.BackendUnavailableError` saying what is missing and how to get it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import wasmtime

from ..errors import BackendUnavailableError

log = logging.getLogger(__name__)

#: environment variable naming a folder that holds the .wasm files (or a node_modules folder)
ENV_WASM_DIR = "RUVECTOR_LAB_WASM_DIR"

SETUP_HINT = "run `make setup-npm` (npm ci) to install it, or point RUVECTOR_LAB_WASM_DIR at a folder holding it"


@dataclass(frozen=True)
class WasmArtifact:
    """One pinned WebAssembly file of an npm package."""

    package: str
    version: str
    path_in_package: str
    sha256: str

    @property
    def filename(self) -> str:
        """The file's base name (what a flat RUVECTOR_LAB_WASM_DIR holds)."""
        return Path(self.path_in_package).name

    def __str__(self) -> str:
        return f"{self.package}@{self.version} ({self.path_in_package})"


#: the control plane and kernels: C ABI, no imports (MIT)
RVF_WASM = WasmArtifact(
    package="@ruvector/rvf-wasm",
    version="0.1.9",
    path_in_package="pkg/rvf_wasm_bg.wasm",
    sha256="3df581554a6e9cb4721b9e4174d5f3d739dff4569b5ce5f985d517d5c3bbb0fa",
)

#: MicroLoRA and friends: wasm-bindgen ABI, one import (MIT OR Apache-2.0)
LEARNING_WASM = WasmArtifact(
    package="@ruvector/learning-wasm",
    version="0.1.29",
    path_in_package="ruvector_learning_wasm_bg.wasm",
    sha256="f5347ea6c157879a008f28957e540ce7174e516df37bba45183dfc44b6fa61b7",
)

ARTIFACTS: tuple[WasmArtifact, ...] = (RVF_WASM, LEARNING_WASM)

_lock = threading.Lock()
_engine: wasmtime.Engine | None = None
_compiled: dict[WasmArtifact, tuple[Path, wasmtime.Module]] = {}


def project_root() -> Path:
    """The folder holding the project's ``package.json`` (the source checkout this package lives in)."""
    return Path(__file__).resolve().parents[2]


def _candidates(artifact: WasmArtifact) -> list[Path]:
    """Where to look, in order; the env var, when set, is the only place looked at."""
    env = os.environ.get(ENV_WASM_DIR)
    if env:
        base = Path(env).expanduser()
        return [
            base / artifact.filename,
            base / artifact.package / artifact.path_in_package,
            base / "node_modules" / artifact.package / artifact.path_in_package,
        ]
    roots = [project_root(), Path.cwd()]
    seen: list[Path] = []
    for root in roots:
        path = root / "node_modules" / artifact.package / artifact.path_in_package
        if path not in seen:
            seen.append(path)
    return seen


def locate(artifact: WasmArtifact) -> Path:
    """The path of ``artifact``'s file, or :class:`BackendUnavailableError` listing where it was looked for."""
    candidates = _candidates(artifact)
    for path in candidates:
        if path.is_file():
            return path
    where = ", ".join(str(p) for p in candidates)
    origin = f"${ENV_WASM_DIR}" if os.environ.get(ENV_WASM_DIR) else "node_modules"
    raise BackendUnavailableError(f"{artifact} not found in {origin} (looked at {where}); {SETUP_HINT}")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackendUnavailableError(f"cannot read {path}: {exc}; {SETUP_HINT}") from None
    if not isinstance(data, dict):
        raise BackendUnavailableError(f"{path} is not a JSON object; {SETUP_HINT}")
    return data


def _package_dir(artifact: WasmArtifact, wasm_path: Path) -> Path | None:
    """The npm package folder that holds ``wasm_path``, if it sits in an npm layout."""
    depth = len(Path(artifact.path_in_package).parts)
    package_dir = wasm_path.parents[depth - 1]
    if package_dir.parent.parent.name == "node_modules" and (package_dir / "package.json").is_file():
        return package_dir
    return None


def check_npm_install(artifact: WasmArtifact, wasm_path: Path) -> None:
    """Under ``node_modules``: the installed version and tarball must be the ones the project's lock pins."""
    package_dir = _package_dir(artifact, wasm_path)
    if package_dir is None:
        return  # a flat RUVECTOR_LAB_WASM_DIR: the sha256 pin alone vouches for the file
    installed = _read_json(package_dir / "package.json").get("version")
    if installed != artifact.version:
        raise BackendUnavailableError(
            f"{artifact.package} {installed} is installed but ruvector-lab needs {artifact.version}; {SETUP_HINT}"
        )
    node_modules = package_dir.parent.parent
    lock_path = node_modules.parent / "package-lock.json"
    hidden_path = node_modules / ".package-lock.json"
    if not lock_path.is_file():
        return
    key = f"node_modules/{artifact.package}"
    locked = _read_json(lock_path).get("packages", {}).get(key, {})
    if locked.get("version") != artifact.version:
        raise BackendUnavailableError(
            f"{lock_path} pins {artifact.package} {locked.get('version')!r}, ruvector-lab needs {artifact.version}"
        )
    if hidden_path.is_file():
        recorded = _read_json(hidden_path).get("packages", {}).get(key, {})
        if recorded.get("integrity") != locked.get("integrity"):
            raise BackendUnavailableError(
                f"node_modules holds a different {artifact.package} tarball than package-lock.json pins "
                f"(integrity {recorded.get('integrity')!r} vs {locked.get('integrity')!r}); {SETUP_HINT}"
            )


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(artifact: WasmArtifact, path: Path) -> None:
    """Refuse a file that is not the pinned build (sha256) or an npm install that disagrees with the lock."""
    check_npm_install(artifact, path)
    actual = sha256_of(path)
    if actual != artifact.sha256:
        raise BackendUnavailableError(
            f"{path} has sha256 {actual}, not the pinned {artifact.sha256} of {artifact}; "
            f"the file is damaged or another build; {SETUP_HINT}"
        )


def engine() -> wasmtime.Engine:
    """The process-wide wasmtime engine (compiled modules are tied to it)."""
    global _engine
    with _lock:
        if _engine is None:
            _engine = wasmtime.Engine()
        return _engine


def compiled(artifact: WasmArtifact) -> wasmtime.Module:
    """``artifact`` located, verified and compiled, once per process (later calls reuse the module).

    Raises :class:`BackendUnavailableError` when the file is missing, is not the pinned build, or does not
    compile.
    """
    with _lock:
        hit = _compiled.get(artifact)
    if hit is not None:
        return hit[1]
    path = locate(artifact)
    verify(artifact, path)
    eng = engine()
    try:
        module = wasmtime.Module.from_file(eng, str(path))
    except wasmtime.WasmtimeError as exc:
        raise BackendUnavailableError(f"wasmtime cannot compile {path}: {exc}") from None
    with _lock:
        # two threads may compile at once; keep the first so every instance shares one module
        _compiled.setdefault(artifact, (path, module))
        log.debug("compiled %s from %s", artifact, path)
        return _compiled[artifact][1]


def compiled_path(artifact: WasmArtifact) -> Path | None:
    """The file ``artifact`` was compiled from in this process, or None if it has not been compiled yet."""
    with _lock:
        hit = _compiled.get(artifact)
    return hit[0] if hit else None


def forget_compiled() -> None:
    """Drop the compiled modules so the next use locates and verifies the files again (tests, set-up)."""
    with _lock:
        _compiled.clear()
