"""The layer map of :mod:`ctsurv._layers` holds for every module under ``src/ctsurv``.

Every ``import`` / ``from ... import`` is read with :mod:`ast` (module-level, function-local
and ``if TYPE_CHECKING`` ones alike; relative imports resolved), giving a graph of ctsurv
modules. ``from ctsurv.pkg import name`` is an edge to ``ctsurv.pkg.name`` when that is a
module and to ``ctsurv.pkg`` otherwise; ``import ctsurv.a.b`` is an edge to ``ctsurv.a.b``
(the parent packages it also runs are not counted). The checker is tested on a small synthetic
tree too, so these tests cannot pass vacuously.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from ctsurv._layers import EXACT, LAYERS, MAX_LINES, layer_of

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "ctsurv"


# ----------------------------------------------------------------------------- the checker
@dataclass(frozen=True)
class Edge:
    src: str  # importing module
    dst: str  # imported module
    line: int
    local: bool  # inside a function (or method)


def module_files(root: Path, package: str) -> dict[str, Path]:
    """``{dotted module name: path}`` of every ``.py`` file of ``root/package``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve_base(module: str, path: Path, level: int, name: str | None) -> str:
    """The absolute module a ``from <dots><name> import`` refers to."""
    if level == 0:
        return name or ""
    pkg = module.split(".") if _is_package(path) else module.split(".")[:-1]
    if level - 1 > len(pkg):
        raise ValueError(f"{path}: relative import beyond the top-level package")
    pkg = pkg[: len(pkg) - (level - 1)]
    return ".".join(pkg + ([name] if name else []))


def _nearest(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` if it is a module, else its longest prefix that is one (None outside)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        cand = ".".join(parts[:n])
        if cand in modules:
            return cand
    return None


class _Visitor(ast.NodeVisitor):
    def __init__(self, module: str, path: Path, modules: dict[str, Path], package: str):
        self.module, self.path, self.modules, self.package = module, path, modules, package
        self.depth = 0
        self.edges: list[Edge] = []

    def _add(self, target: str | None, node: ast.AST) -> None:
        if target is None or target == self.module:
            return
        self.edges.append(Edge(self.module, target, node.lineno, self.depth > 0))

    def _ours(self, name: str) -> bool:
        return name == self.package or name.startswith(self.package + ".")

    def visit_FunctionDef(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_Import(self, node: ast.Import):
        for alias in node.names:
            if self._ours(alias.name):
                self._add(_nearest(alias.name, self.modules), node)

    def visit_ImportFrom(self, node: ast.ImportFrom):
        base = _resolve_base(self.module, self.path, node.level, node.module)
        if not self._ours(base):
            return
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if alias.name != "*" and sub in self.modules:
                self._add(sub, node)
            else:
                self._add(_nearest(base, self.modules), node)


def import_edges(root: Path, package: str) -> tuple[dict[str, Path], list[Edge]]:
    modules = module_files(root, package)
    edges = []
    for module, path in modules.items():
        v = _Visitor(module, path, modules, package)
        v.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        edges.extend(v.edges)
    return modules, edges


def unassigned(modules, layers, exact) -> list[str]:
    return [m for m in modules if layer_of(m, layers, exact) is None]


def upward_imports(edges, layers, exact) -> list[str]:
    out = []
    for e in edges:
        a, b = layer_of(e.src, layers, exact), layer_of(e.dst, layers, exact)
        if a is not None and b is not None and b > a:
            where = " (function-local)" if e.local else ""
            out.append(f"{e.src} (L{a}) imports {e.dst} (L{b}) at line {e.line}{where}")
    return out


def cycles(modules, edges) -> list[str]:
    """One message per strongly connected component of more than one module."""
    graph: dict[str, dict[str, int]] = {m: {} for m in modules}
    for e in edges:
        graph[e.src].setdefault(e.dst, e.line)
    index, low, stack, on, comps = {}, {}, [], set(), []
    counter = [0]

    def strong(v):  # Tarjan; the graph is small, recursion is fine
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)

    out = []
    for comp in sorted(comps):
        members = set(comp)
        start = comp[0]
        # shortest path back to start within the component (BFS), for a readable cycle
        prev, frontier, found = {start: None}, [start], None
        while frontier and found is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v]):
                    if w == start:
                        found = v
                        break
                    if w in members and w not in prev:
                        prev[w] = v
                        nxt.append(w)
                if found is not None:
                    break
            frontier = nxt
        path, v = [], found
        while v is not None:
            path.append(v)
            v = prev[v]
        path.reverse()
        hops = " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(path, path[1:] + [start]))
        out.append(f"cycle among {', '.join(comp)}: {hops} -> {start}")
    return out


def long_modules(modules, max_lines) -> list[str]:
    out = []
    for m, path in modules.items():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > max_lines:
            out.append(f"{m} ({path.name}) has {n} lines (> {max_lines}); make it a subpackage")
    return out


# ----------------------------------------------------------------------------- ctsurv itself
@pytest.fixture(scope="module")
def graph():
    return import_edges(SRC, PACKAGE)


def test_every_module_has_a_layer(graph):
    modules, _ = graph
    assert len(modules) > 20
    missing = unassigned(modules, LAYERS, EXACT)
    assert not missing, "modules without a layer in ctsurv._layers.LAYERS: " + ", ".join(missing)


def test_layer_keys_name_existing_modules(graph):
    modules, _ = graph
    stale = [k for k in LAYERS if k not in modules and k != f"{PACKAGE}.__main__"]
    assert not stale, "LAYERS keys naming no module: " + ", ".join(stale)


def test_no_upward_imports(graph):
    _, edges = graph
    assert len(edges) > 50
    bad = upward_imports(edges, LAYERS, EXACT)
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_import_cycles(graph):
    modules, edges = graph
    found = cycles(modules, edges)
    assert not found, "import cycles:\n" + "\n".join(found)


def test_no_module_over_max_lines(graph):
    modules, _ = graph
    long = long_modules(modules, MAX_LINES)
    assert not long, "\n".join(long)


# ----------------------------------------------------------------------------- the checker catches violations
def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")


def test_checker_catches_violations(tmp_path):
    _write(tmp_path, {
        "pk/__init__.py": '"""root"""\n',
        "pk/low.py": "import os\n\nfrom pk.high import thing\n",  # upward, module level
        "pk/low2.py": "def f():\n    from . import high\n    return high\n",  # upward, local
        "pk/low3.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from .sub.b import Z\n"  # upward, TYPE_CHECKING
        ),
        "pk/high.py": "thing = 1\nimport pk.low\n",
        "pk/sub/__init__.py": "from .a import X\n",  # package importing its submodule
        "pk/sub/a.py": "from .b import Y\nX = 1\n",
        "pk/sub/b.py": "def g():\n    from pk.sub import X\n    return X\nY = Z = 2\n",  # b -> sub -> a -> b
        "pk/sub/c.py": "from pk.sub import a\n",  # submodule-name import: edge to pk.sub.a only
        "pk/sub/d.py": "from .. import low\n",
        "pk/new.py": "",
    })
    layers = {"pk": 0, "pk.low": 0, "pk.low2": 0, "pk.low3": 0, "pk.high": 1, "pk.sub": 1}
    modules, edges = import_edges(tmp_path, "pk")
    assert set(modules) == {"pk", "pk.low", "pk.low2", "pk.low3", "pk.high", "pk.new", "pk.sub",
                            "pk.sub.a", "pk.sub.b", "pk.sub.c", "pk.sub.d"}
    pairs = {(e.src, e.dst) for e in edges}
    assert ("pk.sub.c", "pk.sub.a") in pairs and ("pk.sub.c", "pk.sub") not in pairs
    assert ("pk.sub.d", "pk.low") in pairs and ("pk.low2", "pk.high") in pairs

    assert unassigned(modules, layers, frozenset({"pk"})) == ["pk.new"]

    up = upward_imports(edges, layers, frozenset({"pk"}))
    assert "pk.low (L0) imports pk.high (L1) at line 3" in up
    assert "pk.low2 (L0) imports pk.high (L1) at line 2 (function-local)" in up
    assert "pk.low3 (L0) imports pk.sub.b (L1) at line 3" in up
    assert len(up) == 3

    cyc = cycles(modules, edges)
    assert len(cyc) == 2
    assert any(c.startswith("cycle among pk.high, pk.low:") for c in cyc)
    assert any(c.startswith("cycle among pk.sub, pk.sub.a, pk.sub.b:") for c in cyc)

    (tmp_path / "pk/new.py").write_text("x = 1\n" * 5)
    assert long_modules(modules, 4) == ["pk.new (new.py) has 5 lines (> 4); make it a subpackage"]


def test_layer_of_prefixes_and_exact():
    assert layer_of("ctsurv.io.dicom") == 1
    assert layer_of("ctsurv.embed.cache") == 2
    assert layer_of("ctsurv.radiomics.features") == 2
    assert layer_of("ctsurv.radiomics.track") == 4
    assert layer_of("ctsurv.radiomics") == 4
    assert layer_of("ctsurv.radiomics.newthing") is None
    assert layer_of("ctsurv.newthing") is None
    assert layer_of("ctsurv") == 0
