"""The layout's promises: the core imports nothing from the floors above it, the RL^2 package has no import
circle, and no module of either grows past what a reader takes in at once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS_ABOVE = ("rl2bench.algorithms", "rl2bench.tasks")
MAX_LINES = 450


def imported_modules(path: Path, package: str) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included), relative names resolved."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_the_core_imports_nothing_from_the_floors_above_it():
    offenders = {
        f"{path.name}: {module}"
        for path in sorted((ROOT / "rl2bench").glob("*.py"))
        for module in imported_modules(path, "rl2bench")
        if module.startswith(FLOORS_ABOVE)
    }
    assert not offenders, f"rl2bench/ imports from algorithms/ or tasks/: {sorted(offenders)}"


def test_the_check_sees_function_level_and_relative_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from .algorithms.rl2 import agent\n    import rl2bench.tasks.mdp\n")
    modules = imported_modules(probe, "rl2bench")
    assert "rl2bench.algorithms.rl2" in modules and "rl2bench.tasks.mdp" in modules


def module_graph(folder: Path, package: str) -> dict[str, set[str]]:
    """Imports between the modules of one package, at any depth: a function-level import is a dependency
    too, and a circle of them means two modules that cannot be read, tested or moved apart."""
    names = {p.stem for p in folder.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = node.module or ""
                if node.level == 1:
                    edges.update({target} if target else {a.name for a in node.names})
                elif target.startswith(package + "."):
                    edges.add(target[len(package) + 1:].split(".")[0])
        graph[path.stem] = {e for e in edges if e in names and e != path.stem}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_rl2_package_has_no_import_circle():
    graph = module_graph(ROOT / "algorithms" / "rl2", "rl2bench.algorithms.rl2")
    assert "agent" in graph and graph  # the package was read
    assert find_cycle(graph) is None, f"import circle: {' -> '.join(find_cycle(graph) or [])}"


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("folder", ["rl2bench", "algorithms/rl2"])
def test_no_module_is_over_the_line_budget(folder):
    long = {p.name: n for p in (ROOT / folder).glob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines in {folder}/: {long}"
