"""The layering contract: a module imports only from its own layer or lower ones, and no modules import in a circle.

Every ``import`` counts, also those inside functions and under ``if TYPE_CHECKING``. The layers
(lowest first) follow DESIGN.md, with two placements the code needs: ``export`` (the ExecuTorch
exporter and profiler) sits below ``hardware``, which measures latency with it, and ``results``
(the history store) sits beside ``evaluators``, below the strategies and the loop that write it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import lightning_nas

ROOT = Path(lightning_nas.__file__).parent

LAYERS: list[list[str]] = [
    ["arch", "registry", "config", "conf", "__init__", "safe_load", "executors.lifetime"],
    ["nn"],
    ["spaces", "data", "objectives"],
    ["export"],
    ["hardware"],
    ["evaluators", "results"],
    ["strategies"],
    ["search", "executors", "planner", "preflight"],
    ["callbacks", "report", "baselines", "results.failures"],
    ["run", "cli", "__main__", "export.cli", "export.__main__", "report.__main__", "cli_errors"],
]
"""Layers by top-level module or package (a dotted entry places one module apart from its package)."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def layer(module: str) -> int:
    """The layer of ``module``: that of the most specific entry naming it or a package above it."""
    matches = [(len(entry), number) for number, row in enumerate(LAYERS) for entry in row
               if module == entry or module.startswith(f"{entry}.")]
    if not matches:
        raise AssertionError(f"lightning_nas.{module} is in no layer: add it to LAYERS in {__file__}")
    return max(matches)[1]


def imports(path: Path) -> set[str]:
    """The ``lightning_nas`` modules ``path`` imports anywhere in it (without the package prefix)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(n.removeprefix("lightning_nas.") for n in names if n.startswith("lightning_nas."))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in ROOT.rglob("*.py")}
    return {name: {t for t in imports(path) if t in modules or t.split(".")[0] in modules}
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [f"lightning_nas.{source} (layer {layer(source)}) imports lightning_nas.{target} (layer {layer(target)})"
            for source, targets in sorted(graph.items()) for target in sorted(targets)
            if layer(target) > layer(source)]


def test_no_module_imports_a_higher_layer() -> None:
    upward = upward_imports(import_graph())
    assert not upward, "\n".join(upward)


def test_no_import_circles() -> None:
    found = cycles(import_graph())
    assert not found, "\n".join(" <-> ".join(component) for component in found)


def test_the_contract_catches_an_upward_import_and_a_circle() -> None:
    assert layer("strategies.base") > layer("evaluators.base") > layer("hardware.targets") > layer("arch")
    assert layer("export.cli") == layer("run") and layer("export.exporter") < layer("hardware.base")
    assert upward_imports({"spaces.nb201": {"strategies.darts_utils", "arch"}}) == [
        "lightning_nas.spaces.nb201 (layer 2) imports lightning_nas.strategies.darts_utils (layer 6)"]
    graph = defaultdict(set, {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert cycles(graph) == [["a", "b", "c"]]
