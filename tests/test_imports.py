"""No module of tim/ imports, directly or through other modules, a module that imports it back.

Every import counts, also those inside functions (a lazy import hides a cycle from Python, not from a reader).
"""
import ast
from pathlib import Path

import tim

PACKAGE = Path(tim.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, modules: set[str]) -> set[str]:
    """The tim modules `path` imports (`from tim.x import y` counts tim.x.y when that is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported(p, modules) for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One import loop per module that can reach itself, as the chain of modules (depth-first search)."""
    found = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            module, chain = stack.pop()
            for nxt in sorted(graph[module]):
                if nxt == start:
                    found.append(chain + [start])
                    stack = []
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, chain + [nxt]))
    return found


def test_the_walk_sees_imports_inside_functions_and_relative_ones():
    graph = import_graph()
    assert "tim.predictor" in graph["tim.app"]
    assert "tim.calibration" in graph["tim.predictor"]  # imported inside Predictor.__init__
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"], ["b", "c", "a", "b"],
                                                                        ["c", "a", "b", "c"]]


def test_no_tim_module_imports_itself_back():
    loops = cycles(import_graph())
    assert not loops, "import cycles: " + "; ".join(" -> ".join(chain) for chain in loops)
