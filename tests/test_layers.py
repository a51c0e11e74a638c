"""The package's architecture: layers that import only downwards, no import cycle, no source file (Python module,
or C++ file of the kernels) over 400 lines.

Every module is parsed (``ast``) and every ``import`` / ``from ... import`` in it counts, at the top or
inside a function. A module's layer is its sub-package (``pruning/<layer>/``); ``pruning/__main__.py``
(the command line) is above them all.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pruning"

# The declared layer order, bottom first: a module may import its own layer and the layers below it.
LAYERS = ("core", "nets", "population", "store", "execution", "analysis", "reporting", "__main__")
MAX_LINES = 400
SOURCE_SUFFIXES = (".py", ".cpp", ".h")  # the files the line limit covers


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("pruning",) + path.relative_to(PACKAGE).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The pruning modules ``name`` imports: a package's ``__init__`` where a name is not a module of it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import pruning.store.runs as x`, names inside modules
                target = target.rpartition(".")[0]
            if target.startswith("pruning") and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the package itself (pruning/__init__.py)


def test_every_module_has_a_layer():
    unknown = sorted(n for n in _graph() if _layer(n) not in LAYERS + (None,))
    assert not unknown, f"modules outside the declared layers {LAYERS}: {unknown}"


def test_imports_point_down():
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    upward = [f"{a} -> {b}" for a, targets in _graph().items() for b in sorted(targets)
              if _layer(a) in rank and _layer(b) in rank and rank[_layer(b)] > rank[_layer(a)]]
    assert not upward, "upward imports (layers, bottom first: " + " < ".join(LAYERS) + "):\n" + "\n".join(upward)


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [node, nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_every_layer_says_what_it_holds():
    for layer in LAYERS[:-1]:
        init = PACKAGE / layer / "__init__.py"
        assert init.exists() and ast.get_docstring(ast.parse(init.read_text())), f"{init} needs a docstring"


def test_no_source_file_over_400_lines():
    files = [p for p in PACKAGE.rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file()]
    assert {p.suffix for p in files} == set(SOURCE_SUFFIXES)  # the C++ files are seen too
    long = {str(p.relative_to(PACKAGE)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"source files over {MAX_LINES} lines: {long}"


def test_the_checks_see_cycles_and_upward_imports(tmp_path, monkeypatch):
    """The checks above are not vacuous: a lazy upward import and a cycle in a small package are found."""
    pkg = tmp_path / "pruning"
    (pkg / "core").mkdir(parents=True)
    (pkg / "nets").mkdir()
    (pkg / "core" / "__init__.py").write_text('"""core"""\n')
    (pkg / "nets" / "__init__.py").write_text('"""nets"""\n')
    (pkg / "core" / "a.py").write_text("def f():\n    from ..nets import b\n")
    (pkg / "nets" / "b.py").write_text("from ..core import a\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    graph = _graph()
    assert graph["pruning.core.a"] == {"pruning.nets.b"} and graph["pruning.nets.b"] == {"pruning.core.a"}
    for check in (test_imports_point_down, test_no_import_cycle):
        try:
            check()
        except AssertionError:
            continue
        raise AssertionError(f"{check.__name__} missed the planted problem")
