"""The package's layers, lowest first, and a checker that no import climbs one.

Each layer may import itself and the layers below it, never one above: the
referee (engine) never reaches into tournaments (run), an agent's API never
reaches into plugin loading. Every import counts, including those inside
functions, since a late import is how a cycle hides. ``tests/test_layers.py``
runs the checker on the installed tree, so CI fails when an import climbs.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

LAYERS: tuple[str, ...] = (
    "arena.core",      # errors, progress, the arena home and its content-addressed cache
    "arena.config",    # scenario schema and lookup, datasets, micro settings
    "arena.api",       # what agents import: protocol, views, defense bases, triggers, training, models
    "arena.plugins",   # entry points and file plugins
    "arena.results",   # match records, the store, ratings, detection, leaderboards, the paper page
    "arena.engine",    # agent hosts, the referee, metrics, the outcome rule, artifacts
    "arena.run",       # jobs, backends, tournaments, sweeps, replays
    "arena.present",   # match text, charts, galleries, the HTML report
    "arena.cli",       # the command line
)


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    imported: str
    why: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported}: {self.why}"


def layer_of(module: str) -> int | None:
    """Index of ``module``'s layer in ``LAYERS`` (None for ``arena`` itself and foreign modules)."""
    for i, layer in enumerate(LAYERS):
        if module == layer or module.startswith(layer + "."):
            return i
    return None


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, is_package: bool, tree: ast.AST) -> list[tuple[int, str]]:
    """(line, imported module) for every ``arena`` import in ``tree``, relative ones resolved."""
    found: list[tuple[int, str]] = []
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
                   for stmt in node.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:  # ``if TYPE_CHECKING:`` imports never run
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_package else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            # ``from arena.api import protocol`` imports the module arena.api.protocol
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return [(line, name) for line, name in found if name == "arena" or name.startswith("arena.")]


def import_graph(root: Path) -> dict[str, list[tuple[int, str]]]:
    """Every module of the package at ``root`` (the ``arena`` folder) -> the arena modules it imports."""
    modules = {_module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, list[tuple[int, str]]] = {}
    for name, path in modules.items():
        edges = []
        for line, target in _imports(name, path.name == "__init__.py", ast.parse(path.read_text(), str(path))):
            # ``from arena.api import Trigger`` names a symbol, not a module: keep the longest module prefix
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != name and target not in {t for _, t in edges}:
                edges.append((line, target))
        graph[name] = edges
    return graph


def check(root: Path) -> list[Violation]:
    """Imports that climb a layer, and import cycles between modules."""
    graph = import_graph(root)
    found: list[Violation] = []
    for module, edges in graph.items():
        mine = layer_of(module)
        for line, target in edges:
            theirs = layer_of(target)
            if mine is None or theirs is None:
                continue
            if theirs > mine:
                found.append(Violation(module, line, target, f"{LAYERS[theirs]} sits above {LAYERS[mine]}"))
    # Cycles: depth-first search over module -> module edges (packages' __init__ included).
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for line, t in graph.get(m, []):
            if t not in graph:
                continue
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                found.append(Violation(m, line, t, "closes the cycle " + " -> ".join(cycle)))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return found
