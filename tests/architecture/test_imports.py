"""The import graph of the package, read from the source: layers, no cycles, what the SNMP adapter loads.

Every import statement counts, at module level or inside a function or an `if TYPE_CHECKING:` block:
an import hidden in a function is still a dependency, only a later one.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sitivmon"

CORE = {
    "aio", "config", "contracts", "engine", "exposition", "filestamp", "links", "logs", "logthrottle", "monitor",
    "normalize", "profiles", "readings", "selfmetrics", "snmp", "units", "yamlread",
}  # fmt: skip
FEATURES = {"allocation", "datacenter", "leader", "mqtt", "portal", "traps", "usage"}
TOOLS = {"agents"}  # local SNMP agents for the demo and the tests: import nothing of the daemon
ROOT = "app"  # the composition root
ENTRY = "__main__"


def _module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


MODULES = _module_names()


def _imported(module: str, path: Path) -> Iterator[str]:
    """The sitivmon modules `module` imports (a `from x import y` names `x.y` when that is a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "sitivmon")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "sitivmon":
                continue
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                yield candidate if candidate in MODULES else source


def layer_of(module: str) -> str:
    """`sitivmon.usage.store` -> `usage`; a top-level module is its own layer (`sitivmon.monitor` -> `monitor`)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "sitivmon"


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        for target in _imported(module, path):
            a, b = layer_of(module), layer_of(target)
            if a != b and b != "sitivmon":  # `from sitivmon import __version__`
                graph[a].add(b)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's components of more than one node: each is a package cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


GRAPH = package_graph()


def test_every_package_has_a_layer() -> None:
    """A new package must be placed (core, feature, tool or root) before these rules can hold for it."""
    known = CORE | FEATURES | TOOLS | {ROOT, ENTRY}
    assert {layer_of(m) for m in MODULES} - {"sitivmon"} <= known


def test_no_package_cycles() -> None:
    assert strongly_connected(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


@pytest.mark.parametrize("package", sorted(CORE))
def test_the_core_imports_no_feature_and_not_the_root(package: str) -> None:
    assert GRAPH.get(package, set()) & (FEATURES | TOOLS | {ROOT}) == set()


@pytest.mark.parametrize("package", sorted(FEATURES | TOOLS))
def test_features_do_not_import_the_composition_root(package: str) -> None:
    assert ROOT not in GRAPH.get(package, set())


def test_only_the_entry_point_imports_the_root() -> None:
    assert {p for p, targets in GRAPH.items() if ROOT in targets} <= {ENTRY}


def test_no_import_by_name_at_run_time() -> None:
    """`importlib.import_module` hides a dependency from this graph and from mypy."""
    offenders = [str(p.relative_to(PACKAGE.parent)) for p in MODULES.values() if "importlib" in p.read_text("utf-8")]
    assert offenders == []


def test_what_importing_the_snmp_adapter_loads() -> None:
    """The gufo adapter needs SNMP credentials and poll settings; it loads the core config's types
    (and the device profile types a core config refers to), never a feature or the config loader."""
    code = "import sys, sitivmon.snmp.gufo; print(' '.join(sorted(m for m in sys.modules if m.startswith('sitivmon'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    assert loaded == {
        "sitivmon", "sitivmon.config", "sitivmon.config.model", "sitivmon.config.secrets",
        "sitivmon.profiles", "sitivmon.profiles.builtin", "sitivmon.profiles.model", "sitivmon.profiles.user",
        "sitivmon.snmp", "sitivmon.snmp.ber", "sitivmon.snmp.client", "sitivmon.snmp.gufo", "sitivmon.snmp.status",
        "sitivmon.snmp.v1get", "sitivmon.snmp.walkguard", "sitivmon.units", "sitivmon.yamlread",
    }  # fmt: skip
