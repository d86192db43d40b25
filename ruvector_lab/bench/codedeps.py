"""Which source files a pipeline stage, and one measurement inside it, runs through: the one home of that fact.

Two layers decide what re-runs, and both read their file lists from here:

- DVC relaunches a *stage* when a file in its ``deps`` changes. The code part of every stage's deps in
  ``dvc.yaml`` is :func:`stage_dependencies` of that stage, written there by ``python -m
  ruvector_lab.bench.codedeps --write dvc.yaml`` and checked by ``--check dvc.yaml`` (and by the tests).
- Inside a relaunched stage, a finished *run* is repeated only when its fingerprint changes
  (:func:`ruvector_lab.bench.results.fingerprint`); the code part of it is :func:`measured_hash`, a hash of
  :func:`measured_files`: the same closure, narrowed to the one backend (and class) the run measures.

So every file that can change a run's fingerprint is a dependency of the stage that makes the run (the tests check
the inclusion), and an edit to one backend relaunches the build stages but re-measures only that backend's runs.

The files are the static import closure inside the package (a compiled extension counts as its C source file):
every Python module is parsed with :mod:`ast` and every
``import`` / ``from ... import`` is followed, those inside functions included (the library imports its optional
parts lazily), ``if TYPE_CHECKING:`` blocks excluded (they never run). Importing ``a.b.c`` runs ``a/__init__.py``
and ``a/b/__init__.py`` first, so those are followed too. The backend registry imports its backends' modules by
name (:attr:`ruvector_lab.backends.BackendSpec.modules`), which no import statement shows: a stage that loads index
backends declares it (:data:`STAGES`), and then every backend's modules are entries; a run's fingerprint takes the
modules of its own backend only (the float class's, plus the quantized class's for a quantized build).

What each stage runs is declared once, as data (:data:`STAGES`): the bench modules its ``ruvector-lab`` command
calls. ``ruvector_lab/cli.py`` itself is not an entry: it holds every command, so depending on it would relaunch
every stage on an edit of one help text; what a command computes lives in the bench modules it calls. (A change
to a command's own glue in cli.py therefore relaunches nothing; run the stage with ``dvc repro -f STAGE``.)

Out of scope, because no import shows them: files other than Python source that a stage reads (RuVector's WASM
modules under ``node_modules/@ruvector``, the embedding model files in the model cache, the Debian data files; the
params are DVC ``params``), modules imported only through ``importlib`` with a computed name (the package's lazy
``rl.Embedder``-style attributes; nothing in the bench uses them), and third-party libraries (their versions are
in the fingerprint, :func:`ruvector_lab.bench.env.library_versions`).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import InvalidParameterError

#: the package whose files are tracked
PACKAGE = "ruvector_lab"
#: the registry whose records name modules by string
REGISTRY = f"{PACKAGE}.backends"
#: this installation's package folder (the default root of every function here)
DEFAULT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class StageEntry:
    """What one ``dvc.yaml`` stage's command runs: the modules it calls, and whether it loads index backends."""

    #: dotted names of the modules the stage's command calls (``ruvector_lab/cli.py`` is deliberately not one)
    modules: tuple[str, ...]
    #: True: the stage loads index backends through the registry (whichever the params name), so every backend's
    #: modules are entries too
    backends: bool = False


_B = f"{PACKAGE}.bench"

#: every stage of dvc.yaml with code dependencies -> what its command (ruvector_lab/cli.py) runs
STAGES: dict[str, StageEntry] = {
    "data": StageEntry((f"{_B}.params", f"{_B}.datasets", f"{_B}.sources", f"{_B}.hdf5")),
    "groundtruth": StageEntry((f"{_B}.params", f"{_B}.groundtruth", f"{_B}.hdf5", f"{_B}.results")),
    "build": StageEntry((f"{_B}.params", f"{_B}.runner"), backends=True),
    "quantize": StageEntry((f"{_B}.params", f"{_B}.quant", f"{_B}.runner"), backends=True),
    "adr": StageEntry((f"{_B}.params", f"{_B}.adr", f"{_B}.results"), backends=True),
    "tune": StageEntry((f"{_B}.params", f"{_B}.tune", f"{_B}.trial", f"{_B}.tune_space", f"{_B}.memory",
                        f"{_B}.runner"), backends=True),
    "node-peers": StageEntry((f"{_B}.params", f"{_B}.peers")),
    "report": StageEntry((f"{_B}.params", f"{_B}.report")),
}

#: what one build configuration and its query sweep run through (plus the backend's own modules)
RUN_ENTRY = f"{_B}.runner"
#: what one codec sweep runs through (brute force over codes, no index backend)
CODEC_ENTRY = f"{_B}.quant"


def _root(root: str | os.PathLike[str] | None) -> Path:
    path = Path(root).resolve() if root is not None else DEFAULT_ROOT
    if path.name != PACKAGE:
        raise InvalidParameterError(f"{path} is not a {PACKAGE} package folder")
    return path


# --------------------------------------------------------------------------------------------------- the graph
def _modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package at ``root``: its Python files, and the
    C file each compiled extension is built from (``_hotpath.c`` is ``ruvector_lab._hotpath``)."""
    out: dict[str, Path] = {}
    for path in sorted([*root.rglob("*.py"), *root.rglob("*.c")]):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if all(part.isidentifier() for part in parts):
            out[".".join((PACKAGE, *parts))] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: at any depth (functions included), outside ``if TYPE_CHECKING:``."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that module ``name`` (at ``path``) imports (none for a C extension's source)."""
    if path.suffix != ".py":
        return set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        if node.level:
            parts = package.split(".")
            if node.level - 1 >= len(parts):
                continue  # beyond the top package: not ours
            base = ".".join(parts[:len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        found.add(base)
        found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return {module for module in found if module in known}


@lru_cache(maxsize=64)
def _graph(root: Path, stamp: tuple[tuple[str, int, int], ...]) -> dict[str, frozenset[str]]:
    """Module -> modules it imports, its parent packages included (they run first). ``stamp`` (every file's
    name, size and mtime) keys the cache, so an edited file is parsed again."""
    known = _modules(root)
    graph: dict[str, frozenset[str]] = {}
    for name, path in known.items():
        edges = _imports(name, path, known)
        parts = name.split(".")
        edges.update(p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if p in known)
        edges.discard(name)
        graph[name] = frozenset(edges)
    return graph


def import_graph(root: str | os.PathLike[str] | None = None) -> dict[str, frozenset[str]]:
    """Every module of the package at ``root`` (default: this installation's) -> the package modules it imports,
    from the source alone: imports inside functions count, ``if TYPE_CHECKING:`` ones do not, and a module's
    parent packages count (Python runs their ``__init__`` first)."""
    path = _root(root)
    return _graph(path, _stamp(path))


def _stamp(root: Path) -> tuple[tuple[str, int, int], ...]:
    """Every source file's path, size and modification time: what keys the caches, so an edit is seen."""
    return tuple((str(p), (s := p.stat()).st_size, s.st_mtime_ns) for p in sorted(_modules(root).values()))


def _relative(root: Path, modules: Iterable[str]) -> list[str]:
    known = _modules(root)
    return sorted(known[m].relative_to(root.parent).as_posix() for m in modules)


def module_closure(entries: Iterable[str], root: str | os.PathLike[str] | None = None) -> list[str]:
    """The source files that importing ``entries`` (dotted module names) runs through, as sorted paths relative to
    the package's parent folder (``ruvector_lab/bench/runner.py``; the repository root, where dvc.yaml is).

    An entry that is not a module of the package raises ValueError (a typo would silently track nothing)."""
    path = _root(root)
    graph = import_graph(path)
    todo = list(entries)
    if missing := [m for m in todo if m not in graph]:
        raise InvalidParameterError(f"not modules of {path}: {', '.join(missing)}")
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph[module] - seen)
    return _relative(path, seen)


# ------------------------------------------------------------------------------------------------ the registry
_READ_SPECS = """
import json, sys
sys.path.insert(0, sys.argv[1])
import ruvector_lab.backends as registry
assert registry.__file__.startswith(sys.argv[1]), registry.__file__
print(json.dumps([[s.name, s.modules[0], list(s.modules[1:])] for s in registry.SPECS]))
"""


def _specs_here() -> list[tuple[str, str, tuple[str, ...]]]:
    from ..backends import SPECS

    return [(s.name, s.modules[0], s.modules[1:]) for s in SPECS]


@lru_cache(maxsize=16)
def _specs_at(root: Path, stamp: tuple[tuple[str, int, int], ...]) -> list[tuple[str, str, tuple[str, ...]]]:
    """The registry records of the package copy at ``root``, imported in a child Python (this process has its own
    ``ruvector_lab``); ``stamp`` keys the cache."""
    out = subprocess.run([sys.executable, "-c", _READ_SPECS, str(root.parent)], capture_output=True, text=True,
                         check=True, cwd=root.parent, timeout=120)
    return [(name, flt, tuple(rest)) for name, flt, rest in json.loads(out.stdout)]


def registry_modules(backends: Sequence[str] | None = None, quantized: bool = True,
                     root: str | os.PathLike[str] | None = None) -> list[str]:
    """Dotted names of the modules the backend registry imports by name for ``backends`` (None: every backend):
    each one's float class's module, and its quantized class's when ``quantized``. Read from the records
    (``SPECS``) of the package at ``root``: this installation's in process, another copy in a child Python.
    An unknown backend name raises ValueError."""
    path = _root(root)
    specs = _specs_here() if path == DEFAULT_ROOT else _specs_at(path, _stamp(path))
    by_name = {name: (flt, rest) for name, flt, rest in specs}
    names = list(by_name) if backends is None else list(backends)
    if unknown := [n for n in names if n not in by_name]:
        raise InvalidParameterError(f"unknown backends {', '.join(unknown)}; the registry has {', '.join(by_name)}")
    modules = [m for n in names for m in (by_name[n][0], *(by_name[n][1] if quantized else ()))]
    return list(dict.fromkeys(modules))


# ------------------------------------------------------------------------------------- stages and measurements
def stage_dependencies(stage: str, root: str | os.PathLike[str] | None = None) -> list[str]:
    """The package files dvc.yaml's ``stage`` runs through (sorted paths from the repository root): the closure of
    its command's modules (:data:`STAGES`), with every backend's modules when the stage loads backends."""
    try:
        entry = STAGES[stage]
    except KeyError:
        raise InvalidParameterError(f"no code dependencies declared for stage {stage!r} "
                                    f"(known: {', '.join(STAGES)})") from None
    modules = list(entry.modules) + (registry_modules(None, True, root) if entry.backends else [])
    return module_closure(modules, root)


def measured_files(backend: str | None, quantized: bool = False,
                   root: str | os.PathLike[str] | None = None) -> list[str]:
    """The package files one measurement runs through (sorted paths from the repository root).

    With a ``backend``: a build configuration and its query sweep (:data:`RUN_ENTRY`) on that backend's float
    class, and on its quantized class too when ``quantized``. Without one: a codec sweep (:data:`CODEC_ENTRY`),
    which runs the quantization package but no index backend. Always a subset of the files of the stage that
    makes the measurement, so whatever changes a fingerprint also relaunches its stage."""
    if backend is None:
        return module_closure([CODEC_ENTRY], root)
    return module_closure([RUN_ENTRY, *registry_modules([backend], quantized, root)], root)


def files_hash(files: Iterable[str], root: str | os.PathLike[str] | None = None) -> str:
    """sha256 (16 hex digits) over ``files`` (paths from the package's parent folder): each one's path and bytes."""
    base = _root(root).parent
    digest = hashlib.sha256()
    for rel in sorted(set(files)):
        path = base / rel
        digest.update(rel.encode())
        digest.update(path.read_bytes() if path.is_file() else b"<absent>")
    return digest.hexdigest()[:16]


def measured_hash(backend: str | None, quantized: bool = False, root: str | os.PathLike[str] | None = None) -> str:
    """The code part of a run's fingerprint: :func:`files_hash` of :func:`measured_files`. An edit to a file the
    measurement does not run through (another backend, the report) leaves it unchanged."""
    return files_hash(measured_files(backend, quantized, root), root)


# ------------------------------------------------------------------------------------------ dvc.yaml, in place
def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_code(item: str, prefix: str) -> bool:
    value = item.strip().strip("'\"")
    return value == prefix.rstrip("/") or value.startswith(prefix)


def _stage_blocks(lines: list[str]) -> dict[str, tuple[int, int]]:
    """Stage name -> (first, end) line range of its body under the top-level ``stages:`` key."""
    blocks: dict[str, tuple[int, int]] = {}
    start = next((i for i, line in enumerate(lines) if line.rstrip() == "stages:"), None)
    if start is None:
        return blocks
    names: list[tuple[str, int]] = []
    end = len(lines)
    indent = None
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if _indent(line) == 0:
            end = i
            break
        if indent is None:
            indent = _indent(line)
        if _indent(line) == indent and line.rstrip().endswith(":"):
            names.append((line.strip()[:-1], i))
    for (name, first), nxt in zip(names, [*[i for _, i in names[1:]], end], strict=True):
        blocks[name] = (first + 1, nxt)
    return blocks


def rewrite_dvc_yaml(text: str, files_for: dict[str, list[str]], prefix: str = f"{PACKAGE}/") -> str:
    """``text`` (a dvc.yaml) with the package files in each stage's ``deps`` list replaced by ``files_for[stage]``
    (placed where the first of them was, else after the list's other items). Every other line, comments
    included, is kept as it is. A stage named in ``files_for`` that is missing or has no ``deps`` list, or a stage
    with package files in its deps that ``files_for`` does not name, raises ValueError."""
    lines = text.splitlines(keepends=True)
    blocks = _stage_blocks(lines)
    if missing := sorted(set(files_for) - set(blocks)):
        raise ValueError(f"dvc.yaml has no stage {', '.join(missing)}")
    edits: list[tuple[int, int, list[str]]] = []
    for stage, (first, end) in blocks.items():
        key = next((i for i in range(first, end) if lines[i].strip() == "deps:"), None)
        if key is None:
            if stage in files_for:
                raise ValueError(f"stage {stage!r} in dvc.yaml has no deps list")
            continue
        items: list[int] = []  # the lines of the list's items; comments and blank lines in between are kept
        i = key + 1
        item_indent = None
        while i < end:
            line = lines[i]
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                if item_indent is None and stripped.startswith("- "):
                    item_indent = _indent(line)
                if item_indent is None or _indent(line) < item_indent or \
                        (_indent(line) == item_indent and not stripped.startswith("- ")):
                    break
                if _indent(line) == item_indent:
                    items.append(i)
            i += 1
        if item_indent is None:
            raise ValueError(f"stage {stage!r}: its deps list is not a block list of '- item' lines")
        code = [j for j in items if _is_code(lines[j].strip()[2:], prefix)]
        if code and stage not in files_for:
            raise ValueError(f"stage {stage!r} depends on package files but has no entry in codedeps.STAGES")
        if stage not in files_for:
            continue
        at = code[0] if code else items[-1] + 1
        new = [f"{' ' * item_indent}- {rel}\n" for rel in files_for[stage]]
        edits.append((at, at, new))
        edits.extend((j, j + 1, []) for j in code)
    for lo, hi, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        lines[lo:hi] = new
    return "".join(lines)


def expected_dvc_yaml(dvc_yaml: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> tuple[str, str]:
    """(the current text of ``dvc_yaml``, the text with every stage's code deps as :func:`stage_dependencies`
    computes them, as paths relative to dvc.yaml's folder). ``root`` defaults to the ``ruvector_lab`` folder beside
    dvc.yaml when there is one, else this installation's."""
    dvc_path = Path(dvc_yaml).resolve()
    if root is None and (dvc_path.parent / PACKAGE / "__init__.py").is_file():
        root = dvc_path.parent / PACKAGE
    base = _root(root).parent
    text = dvc_path.read_text(encoding="utf-8")
    files_for = {stage: [Path(os.path.relpath(base / rel, dvc_path.parent)).as_posix()
                         for rel in stage_dependencies(stage, root)] for stage in STAGES}
    prefix = Path(os.path.relpath(base / PACKAGE, dvc_path.parent)).as_posix() + "/"
    new = rewrite_dvc_yaml(text, files_for, prefix)
    _verify(new, files_for, prefix)
    return text, new


def _verify(text: str, files_for: dict[str, list[str]], prefix: str) -> None:
    """Parse the rewritten dvc.yaml and check each stage's code deps are exactly the computed list."""
    import yaml

    stages = yaml.safe_load(text)["stages"]
    for stage, files in files_for.items():
        body = stages[stage].get("do", stages[stage])
        deps = [d for d in body.get("deps", []) if isinstance(d, str) and _is_code(d, prefix)]
        if deps != files:
            raise RuntimeError(f"rewriting dvc.yaml went wrong for stage {stage!r}: {deps} != {files}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ruvector_lab.bench.codedeps --check|--write dvc.yaml`` (or ``--stage NAME`` to print one
    stage's files). --check exits 1 with a diff when dvc.yaml's code deps are stale; --write rewrites only them."""
    parser = argparse.ArgumentParser(prog="python -m ruvector_lab.bench.codedeps", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", metavar="DVC_YAML", help="exit 1 with a diff if its code deps are stale")
    mode.add_argument("--write", metavar="DVC_YAML", help="rewrite its code deps (nothing else)")
    mode.add_argument("--stage", choices=sorted(STAGES), help="print the files a stage runs through")
    parser.add_argument("--root", help="the ruvector_lab folder to read (default: the one beside dvc.yaml)")
    args = parser.parse_args(argv)
    if args.stage:
        print("\n".join(stage_dependencies(args.stage, args.root)))
        return 0
    path = args.check or args.write
    old, new = expected_dvc_yaml(path, args.root)
    if args.write:
        if new != old:
            Path(path).write_text(new, encoding="utf-8")
        print(f"{path}: {'rewritten' if new != old else 'already up to date'}")
        return 0
    if new == old:
        return 0
    sys.stdout.writelines(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                               f"{path} (now)", f"{path} (computed)"))
    print(f"\n{path} is stale: python -m ruvector_lab.bench.codedeps --write {path}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
