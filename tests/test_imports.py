"""Dependencies point one way: no import cycle between the package's modules (top-level or in functions)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "zero1to3"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Modules of the package that ``path`` imports anywhere (relative imports resolved)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:  # ``from pkg import module`` names a module
                if f"{base}.{alias.name}" in modules:
                    found.add(f"{base}.{alias.name}")
                elif base in modules:
                    found.add(base)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    files = [p for p in PACKAGE.rglob("*.py") if "assets" not in p.parts]
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p, modules) for p in files}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep.startswith(node + "."):  # a package importing its own submodules is not a cycle
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle() -> None:
    graph = _graph()
    assert "zero1to3.pipeline" in graph and "zero1to3.checkpoint" in graph["zero1to3.pipeline"]
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_walker_finds_a_cycle() -> None:
    """The check itself can fail: a made-up back edge is reported."""
    graph = _graph()
    graph["zero1to3.checkpoint"] = graph["zero1to3.checkpoint"] | {"zero1to3.pipeline"}
    assert _cycle(graph) is not None


def test_layers_point_one_way() -> None:
    """camera <- model <- pipeline <- features <- app/CLI: lower layers never import higher ones."""
    graph = _graph()
    lower_than = {
        "zero1to3.camera": ("zero1to3.model", "zero1to3.pipeline", "zero1to3.recon", "zero1to3.evaluation",
                            "zero1to3.cli", "zero1to3.app", "zero1to3.training", "zero1to3.data"),
        "zero1to3.model": ("zero1to3.pipeline", "zero1to3.recon", "zero1to3.evaluation", "zero1to3.cli",
                           "zero1to3.app", "zero1to3.training"),
        "zero1to3.pipeline": ("zero1to3.recon", "zero1to3.evaluation", "zero1to3.cli", "zero1to3.app",
                              "zero1to3.training", "zero1to3.benchmarking"),
        "zero1to3.fast": ("zero1to3.pipeline", "zero1to3.cli", "zero1to3.app"),
        "zero1to3.recon": ("zero1to3.pipeline", "zero1to3.cli", "zero1to3.app"),
        "zero1to3.evaluation": ("zero1to3.pipeline", "zero1to3.cli", "zero1to3.app"),
    }
    for low, highs in lower_than.items():
        for module, deps in graph.items():
            if module == low or module.startswith(low + "."):
                bad = [d for d in deps if d.startswith(highs)]
                assert not bad, f"{module} imports {bad}"
