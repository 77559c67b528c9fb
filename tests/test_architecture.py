"""The package's shape: no import circles among its modules, no module past 400 lines, and no
function-level import without a comment saying why it must be lazy. Read from the source with
``ast``; nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "realtime"
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every Python module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if "migrations" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import run at some point (so not under ``if TYPE_CHECKING``), with whether it
    sits inside a function."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other, in_function)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append((child, in_function))
            nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            visit(child, in_function or nested)

    visit(tree, False)
    return found


def targets(node: ast.Import | ast.ImportFrom, module: str, known: set[str]) -> set[str]:
    """The package modules an import loads, with the packages (below ``realtime`` itself,
    whose ``__init__`` loads nothing) that Python runs first to reach them."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = module.split(".")
            if modules()[module].name != "__init__.py":
                anchor = anchor[:-1]
            anchor = anchor[: len(anchor) - node.level + 1]
            base = ".".join([*anchor, *([base] if base else [])])
        names = [f"{base}.{alias.name}" for alias in node.names]
        names = [name if name in known else base for name in names]
    loaded = set()
    for name in names:
        parts = name.split(".")
        for end in range(2, len(parts) + 1):
            prefix = ".".join(parts[:end])
            # a module inside a package is run by that package, not the other way round
            if prefix in known and (prefix == name or not module.startswith(prefix + ".")):
                loaded.add(prefix)
    return loaded


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        edges = graph.setdefault(module, set())
        for node, _ in runtime_imports(tree):
            edges |= targets(node, module, set(known)) - {module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycles():
    """Imports run at some point, at module level or in a function, form no circle: each
    module can be read knowing only what it imports. Type-only imports are not counted."""
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_over_400_lines():
    over = {
        str(path.relative_to(PACKAGE)): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert over == {}


def test_function_level_imports_say_why_they_are_lazy():
    """An import inside a function is there for a reason (the app registry is not ready at
    import time, an optional or heavy dependency, a lazy public name), which a comment on the
    line or just above says; never to get around an import circle."""
    unexplained = []
    for module, path in modules().items():
        lines = path.read_text().splitlines()
        found = runtime_imports(ast.parse("\n".join(lines), str(path)))
        lazy = sorted((node.lineno, node.end_lineno or node.lineno) for node, f in found if f)
        start = 0
        for number, (first, last) in enumerate(lazy):
            if number == 0 or lazy[number - 1][1] < first - 2:  # not one block with the last
                start = first
            # the comment sits on the block's lines or on the two lines above it
            if not any("#" in line for line in lines[max(0, start - 3) : last]):
                unexplained.append(f"{module}:{first}")
    assert unexplained == []
