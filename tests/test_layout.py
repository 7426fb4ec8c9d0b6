"""The layout holds: no module imports a package above it, none sits in an import cycle, and the product
never imports the dev stack (the import graph is read from the sources with ast)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
ROOTS = {"dxlmispservice": CHECKOUT / "dxlmispservice", "dxlmisp_devstack": CHECKOUT / "devstack" / "dxlmisp_devstack"}

#: Layers, bottom first: a module may import its own package and the layers below its own, nothing above.
LAYERS = {
    "dxlmispservice": [
        {"errors", "compat"}, {"logsafe", "names", "settings"}, {""}, {"transport"}, {"misp"}, {"formats"}, {"events", "inbound"}, {"api"},
        {"client"}, {"roles"}, {"app"}, {"__main__"},
    ],
    "dxlmisp_devstack": [{""}, {"procs"}, {"fabric", "misp"}, {"stack"}, {"testing"}, {"pytest_plugin", "__main__"}],
}


def _modules(distribution: str) -> dict[str, Path]:
    root = ROOTS[distribution]
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join([distribution, *parts])] = path
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``name`` imports, at any depth but inside ``if TYPE_CHECKING:``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    resolved = set()
    for target in found:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def _graph() -> dict[str, set[str]]:
    modules = {**_modules("dxlmispservice"), **_modules("dxlmisp_devstack")}
    return {name: _imports(path, name, set(modules)) for name, path in modules.items()}


def _layer(module: str) -> tuple[str, int, str]:
    distribution, _, rest = module.partition(".")
    top = rest.split(".")[0]
    for rank, names in enumerate(LAYERS[distribution]):
        if top in names:
            return distribution, rank, top
    raise AssertionError(f"{module} is in no layer of tests/test_layout.py: add its package to LAYERS")


def test_no_module_imports_a_package_above_it() -> None:
    """Each import goes to the module's own package or a layer below it; the product never imports the dev stack."""
    wrong = []
    for module, targets in _graph().items():
        distribution, rank, top = _layer(module)
        for target in targets:
            target_distribution, target_rank, target_top = _layer(target)
            if target_distribution != distribution:
                if distribution == "dxlmispservice":
                    wrong.append(f"{module} imports the dev stack ({target})")
                continue
            if target_top != top and target_rank >= rank:
                wrong.append(f"{module} (layer {rank}) imports {target} (layer {target_rank})")
    assert wrong == [], "\n".join(sorted(wrong))


def test_no_import_cycle() -> None:
    """The import graph of both distributions has no cycle."""
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[str] = []

    def walk(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                walk(target, trail + [target])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            walk(start, [start])
    assert cycles == [], "\n".join(cycles)


@pytest.mark.parametrize("distribution", sorted(ROOTS))
def test_every_module_is_under_about_400_lines(distribution: str) -> None:
    """No module of either distribution grows past 460 lines (the house aim is about 400)."""
    long = {name: len(path.read_text().splitlines()) for name, path in _modules(distribution).items()}
    assert {name: n for name, n in long.items() if n > 460} == {}
