"""The floors of the design, kept by a test (DESIGN.md "Floors, and who owns what").

The import graph is read with grimp (the graph under import-linter); the AST covers what
an import graph cannot say (where an import sits, what a class needs of its host).  Each
check fails on a circle, on an import that goes up a floor, on an impure import in
``_core/``, on a function-level or ``TYPE_CHECKING`` import of gwclient used to dodge a
circle, and on a class that only works mixed into another.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gwclient"

#: Bottom to top.  A module may import its own floor and the floors below it, never above.
#: ``None`` entries are matched by prefix; ``facade`` is every other private top-level module.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("errors", ("gwclient._errors", "gwclient._version", "gwclient._extras")),
    ("core", ("gwclient._core",)),
    ("config", ("gwclient._config",)),
    ("engine", ("gwclient._engine", "gwclient.share._attach", "gwclient.share._client", "gwclient.share._wire",
                "gwclient.share._control")),
    ("remote", ("gwclient.remote",)),
    ("facade", ("gwclient._connection", "gwclient._runs", "gwclient._pairing", "gwclient._scopes")),
    ("share", ("gwclient.share",)),
    ("faces", ("gwclient", "gwclient.runs", "gwclient.payloads", "gwclient.device")),
    ("cli", ("gwclient.cli", "gwclient.__main__")),
]

#: What ``_core/`` may never import: it is the pure floor (no threads, sockets, clocks, I/O).
IMPURE = ("threading", "socket", "select", "selectors", "ssl", "time", "os", "queue", "concurrent",
          "pykka", "websocket", "websockets", "subprocess", "asyncio", "signal")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("gwclient", include_external_packages=False)


def floor_of(module: str) -> int | None:
    """The floor index of a gwclient module, None for gwclient.testing (checked apart)."""
    if module == "gwclient.testing" or module.startswith("gwclient.testing."):
        return None
    best: tuple[int, int] | None = None  # (prefix length, floor)
    for index, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), index)
    assert best is not None, f"{module} belongs to no floor: add it to FLOORS in tests/test_layers.py"
    return best[1]


def edges(graph: grimp.ImportGraph) -> Iterator[tuple[str, str]]:
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            yield module, imported


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.find_modules_directly_imported_by(node)):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def source_files() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    parts = package.split(".")
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


# ----------------------------------------------------------------------------- the graph


def test_there_are_no_import_circles(graph: grimp.ImportGraph) -> None:
    assert cycles(graph) == []


def test_no_import_goes_up_a_floor(graph: grimp.ImportGraph) -> None:
    upward = []
    for importer, imported in edges(graph):
        low, high = floor_of(importer), floor_of(imported)
        if low is None or high is None:
            continue
        if high > low:
            upward.append(f"{importer} ({FLOORS[low][0]}) imports {imported} ({FLOORS[high][0]})")
    assert upward == []


def test_errors_import_nothing_of_gwclient(graph: grimp.ImportGraph) -> None:
    assert graph.find_modules_directly_imported_by("gwclient._errors") == set()
    assert graph.find_modules_directly_imported_by("gwclient._version") == set()


def test_testing_imports_nothing_of_the_client(graph: grimp.ImportGraph) -> None:
    wrong = [f"{a} imports {b}" for a, b in edges(graph)
             if a.startswith("gwclient.testing") and not b.startswith("gwclient.testing")]
    assert wrong == []


def test_the_cli_uses_only_public_modules(graph: grimp.ImportGraph) -> None:
    private = [f"{a} imports {b}" for a, b in edges(graph)
               if a.startswith("gwclient.cli") and not b.startswith("gwclient.cli")
               and any(part.startswith("_") for part in b.split(".")[1:])]
    assert private == []


# ------------------------------------------------------------------------------- the AST


def test_core_imports_nothing_impure() -> None:
    wrong = []
    for module, path in source_files():
        if not module.startswith("gwclient._core"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in IMPURE:
                    wrong.append(f"{module}:{getattr(node, 'lineno', '?')} imports {name}")
    assert wrong == []


def _type_checking_block(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def deferred_imports() -> Iterator[tuple[str, int, str]]:
    """(module, line, imported module) for every import of gwclient inside a function or a
    ``TYPE_CHECKING`` block."""
    for module, path in source_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    or (isinstance(node, ast.If) and _type_checking_block(node))):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom):
                    target = absolute(module, path, inner)
                elif isinstance(inner, ast.Import):
                    target = inner.names[0].name
                else:
                    continue
                if target == "gwclient" or target.startswith("gwclient."):
                    yield module, inner.lineno, target


def test_no_deferred_or_type_checking_import_dodges_a_circle(graph: grimp.ImportGraph) -> None:
    """A deferred import is fine for laziness (an optional dependency, the CLI's start-up
    time, the public face's PEP 562 re-exports) but never to hide a circle: the module it
    imports must not lead back to the importer."""
    dodges = []
    for module, line, target in deferred_imports():
        imported = target
        while imported not in graph.modules and "." in imported:
            imported = imported.rpartition(".")[0]  # ``from pkg import name``: the package
        if imported != module and graph.chain_exists(importer=imported, imported=module):
            dodges.append(f"{module}:{line} imports {target}, which imports {module} back")
    assert dodges == []


_NOT_MIXINS = ("Protocol", "TypedDict", "NamedTuple", "Enum", "Exception", "BaseException")


def _mixin_reasons(cls: ast.ClassDef, library: frozenset[str] = frozenset()) -> list[str]:
    """Why ``cls`` looks like a class that only works mixed into a host (``library``: the
    names its module imports from outside gwclient)."""
    reasons = []
    if cls.name.endswith("Mixin"):
        reasons.append("named *Mixin")
    bases = {b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else "" for b in cls.bases}
    decorated = any("dataclass" in ast.unparse(d) for d in cls.decorator_list)
    if bases & set(_NOT_MIXINS) or decorated or any(b.endswith("Error") for b in bases):
        return reasons
    stubs = [n for n in cls.body if isinstance(n, ast.AnnAssign) and n.value is None
             and isinstance(n.target, ast.Name)]
    if stubs and bases & library:  # narrowing a library base class's attribute (e.g. ``server``)
        stubs = []
    has_init = any(isinstance(n, ast.FunctionDef) and n.name == "__init__" for n in cls.body)
    if stubs and not has_init:
        reasons.append(f"declares host attributes it never sets ({', '.join(ast.unparse(s.target) for s in stubs)})")
    for fn in cls.body:
        if isinstance(fn, ast.FunctionDef) and len(fn.body) == 1 and isinstance(fn.body[0], ast.Raise):
            raised = fn.body[0].exc
            if raised is not None and "NotImplementedError" in ast.unparse(raised) and not bases:
                reasons.append(f"stubs {fn.name}() for a host")
    return reasons


def _library_names(tree: ast.Module) -> frozenset[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and not (node.module or "").startswith("gwclient"):
            names.update(alias.asname or alias.name for alias in node.names)
    return frozenset(names)


def test_no_class_only_works_mixed_into_another() -> None:
    found = []
    for module, path in source_files():
        tree = ast.parse(path.read_text())
        library = _library_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                reasons = _mixin_reasons(node, library)
                if reasons:
                    found.append(f"{module}.{node.name}: {'; '.join(reasons)}")
    assert found == []


# ------------------------------------------------------------------- the checks can fail


def test_the_checks_see_what_they_forbid() -> None:
    """Each check above fails on the thing it forbids (so a green run means something)."""
    g = grimp.ImportGraph()
    for name in ("gwclient._core.a", "gwclient._engine.b", "gwclient._errors"):
        g.add_module(name)
    g.add_import(importer="gwclient._core.a", imported="gwclient._engine.b")
    g.add_import(importer="gwclient._engine.b", imported="gwclient._core.a")
    assert cycles(g) == [["gwclient._core.a", "gwclient._engine.b"]]
    up = [(a, b) for a, b in edges(g) if (floor_of(b) or 0) > (floor_of(a) or 0)]
    assert up == [("gwclient._core.a", "gwclient._engine.b")]
    mixin = ast.parse("class Host:\n    _x: int\n    def f(self) -> int:\n        return self._x\n").body[0]
    stub = ast.parse("class RunsMixin:\n    def request(self):\n        raise NotImplementedError\n").body[0]
    fine = ast.parse("class Part:\n    _x: int\n    def __init__(self) -> None:\n        self._x = 1\n").body[0]
    assert isinstance(mixin, ast.ClassDef) and isinstance(stub, ast.ClassDef) and isinstance(fine, ast.ClassDef)
    assert _mixin_reasons(mixin) and len(_mixin_reasons(stub)) == 2 and not _mixin_reasons(fine)
