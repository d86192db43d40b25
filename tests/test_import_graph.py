"""The package's modules import each other without cycles.

Every ``import`` / ``from ... import`` statement counts, wherever it sits: at module level, inside a function (a
lazy import), or under ``if TYPE_CHECKING:``. A lazy import only hides a cycle from the interpreter; the cycle is
still there for the reader. An edge goes from the importing module to the module it names: ``from .. import
container`` names the module ``ruvector_lab.container``, ``from ..quantization import make_codec`` names the
package ``ruvector_lab.quantization`` (its ``__init__``). The implicit import of parent packages is not an edge
(every module would then depend on ``ruvector_lab/__init__.py``).
"""

from __future__ import annotations

import ast
from itertools import pairwise
from pathlib import Path

import pytest

import ruvector_lab

PACKAGE_ROOT = Path(ruvector_lab.__file__).resolve().parent

#: importing module -> {imported module: line of the first statement that imports it}
Graph = dict[str, dict[str, int]]


def _modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file of every module (and package ``__init__``) under ``root``, a compiled extension as its
    C source (it imports nothing of the package)."""
    out: dict[str, Path] = {}
    for path in sorted([*root.rglob("*.py"), *root.rglob("*.c")]):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join((package, *parts))] = path
    return out


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The module ``name`` refers to: itself, or the closest enclosing module (``a.b.func`` -> ``a.b``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path, package: str) -> Graph:
    """The intra-package import graph of the package at ``root`` (every import statement, at any depth)."""
    modules = _modules(root, package)
    graph: Graph = {}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        graph[name] = edges
        if path.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [_owner(alias.name, modules) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = here.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    targets.append(submodule if submodule in modules else _owner(base, modules))
            for target in targets:
                if target is not None and target != name:
                    edges.setdefault(target, node.lineno)
    return graph


def find_cycle(graph: Graph) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of the graph, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        state[start] = 1
        stack = [iter(sorted(graph[start]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif not state.get(nxt) and nxt in graph:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def describe(cycle: list[str], graph: Graph, root: Path, package: str) -> str:
    """The cycle as one line per import statement: ``a (a.py:12) imports b``."""
    modules = _modules(root, package)
    lines = []
    for src, dst in pairwise(cycle):
        where = modules[src].relative_to(root.parent)
        lines.append(f"  {src} ({where}:{graph[src][dst]}) imports {dst}")
    return "\n".join(lines)


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE_ROOT, "ruvector_lab")
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle) + "\n" + describe(cycle, graph, PACKAGE_ROOT,
                                                                                       "ruvector_lab")


def test_lazy_and_type_checking_imports_are_edges():
    graph = import_graph(PACKAGE_ROOT, "ruvector_lab")
    # types imports the quantization config under TYPE_CHECKING and inside HnswConfig.__post_init__
    assert "ruvector_lab.quantization.config" in graph["ruvector_lab.types"]
    # ``from .. import container`` names the submodule, not the package
    assert "ruvector_lab.container" in graph["ruvector_lab.quantization.base"]
    assert "ruvector_lab" not in graph["ruvector_lab.quantization.base"]


@pytest.mark.parametrize("where", ["top", "function", "type_checking"])
def test_a_cycle_is_found_wherever_its_import_sits(tmp_path, where):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .b import B\n")
    (pkg / "a.py").write_text("from .sub.b import B\n")
    back = {
        "top": "from ..a import A\n",
        "function": "def f():\n    from .. import a\n    return a\n",
        "type_checking": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n",
    }[where]
    (pkg / "sub" / "b.py").write_text(back + "B = 1\n")
    graph = import_graph(pkg, "pkg")
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1]
    assert set(cycle) == {"pkg.a", "pkg.sub.b"}
    text = describe(cycle, graph, pkg, "pkg")
    assert "pkg/a.py:1" in text and "imports pkg.sub.b" in text


def test_no_cycle_is_reported_for_a_tree(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from . import a, b\n")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("import os\n")
    graph = import_graph(pkg, "pkg")
    assert graph == {"pkg": {"pkg.a": 1, "pkg.b": 1}, "pkg.a": {"pkg.b": 1}, "pkg.b": {}}
    assert find_cycle(graph) is None
