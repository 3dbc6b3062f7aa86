"""Finding agents: entry points (``arena.attackers``, ``arena.defenders``) and files.

As in pytest and flake8, entry points are listed without importing them,
sorted for determinism, and loaded only when a match asks for one. Any failure
(import error, wrong interface, two distributions claiming one name) becomes
one ``PluginError`` naming the plugin and where it came from, and only the
match that uses it fails.

``path/to/file.py:ClassName`` loads a class from a file, for agents that are
not installed. Such an agent is named by its canonical spec (``canonical_spec``)
so ``./x.py:A``, ``x.py:A`` and ``/abs/x.py:A`` are one player, and
``agent_code_digest`` hashes the file it came from, so the artifact cache
tells an edited file from the one that was cached.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from arena.errors import PluginError
from arena.protocol import CATEGORIES, Agent, Attacker, Defender

GROUPS = {"attacker": "arena.attackers", "defender": "arena.defenders"}
BASES: dict[str, type] = {"attacker": Attacker, "defender": Defender}
METHODS = {"attacker": "craft", "defender": "deploy"}


@dataclass(frozen=True)
class AgentRef:
    """Where an agent comes from, without importing it."""

    role: str
    name: str
    source: str  # "distribution==version (module:attr)" or a file path
    entry_points: tuple[EntryPoint, ...] = ()
    file: str | None = None


def _dist_label(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    label = f"{dist.name}=={dist.version}" if dist is not None else "unknown distribution"
    return f"{label} ({ep.value})"


def discover(role: str) -> dict[str, AgentRef]:
    """All installed agents of a role, by name, sorted; nothing is imported."""
    grouped: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=GROUPS[role]):
        # The same distribution can be seen twice (e.g. editable + site path); keep one.
        if all(other.value != ep.value for other in grouped.get(ep.name, [])):
            grouped.setdefault(ep.name, []).append(ep)
    return {
        name: AgentRef(role, name, "; ".join(_dist_label(e) for e in eps), tuple(eps))
        for name, eps in sorted(grouped.items())
    }


def is_file_spec(spec: str) -> bool:
    return ":" in spec and spec.split(":", 1)[0].endswith(".py")


def resolve(role: str, spec: str) -> AgentRef:
    """An agent by installed name or ``file.py:Class``; unknown names list the known ones."""
    if is_file_spec(spec):
        path, _, attr = spec.partition(":")
        return AgentRef(role, attr, str(Path(path)), file=spec)
    known = discover(role)
    if spec not in known:
        raise PluginError(
            f"unknown {role} '{spec}'",
            hint=f"installed {role}s: {', '.join(known) or '(none)'}; or pass path/to/file.py:ClassName",
        )
    return known[spec]


def _load_file(spec: str, role: str) -> type:
    path_s, _, attr = spec.partition(":")
    path = Path(path_s)
    if not path.is_file():
        raise PluginError(f"{role} plugin file not found: {path}")
    mod_name = "arena_plugin_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    try:
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise PluginError(f"{role} plugin '{spec}' failed to import: {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, attr):
        raise PluginError(f"{role} plugin '{spec}': {path} defines no '{attr}'")
    return getattr(module, attr)


def load_class(ref: AgentRef) -> type:
    """Import the agent's class and check its interface."""
    if ref.file:
        cls = _load_file(ref.file, ref.role)
    else:
        if len(ref.entry_points) > 1:
            raise PluginError(
                f"{ref.role} name '{ref.name}' is claimed by more than one plugin: {ref.source}",
                hint="uninstall one of them, or rename its entry point",
            )
        try:
            cls = ref.entry_points[0].load()
        except Exception as exc:
            raise PluginError(
                f"{ref.role} plugin '{ref.name}' from {ref.source} failed to import: {type(exc).__name__}: {exc}"
            ) from exc
    check_interface(cls, ref)
    return cls


def check_interface(cls: Any, ref: AgentRef) -> None:
    role = ref.role
    where = f"{role} plugin '{ref.name}' ({ref.source})"
    if not isinstance(cls, type):
        raise PluginError(f"{where} is not a class but {type(cls).__name__}")
    method = METHODS[role]
    if not callable(getattr(cls, method, None)) or getattr(cls, method) is getattr(BASES[role], method):
        raise PluginError(
            f"{where} has no {method}() method",
            hint=f"subclass arena.protocol.{BASES[role].__name__} and implement {method}(...)",
        )
    if not issubclass(cls, BASES[role]):
        raise PluginError(f"{where} must subclass arena.protocol.{BASES[role].__name__}")
    if not getattr(cls, "name", ""):
        raise PluginError(f"{where} has no 'name' class attribute")
    if role == "defender" and getattr(cls, "category", None) not in CATEGORIES:
        raise PluginError(f"{where} has category {getattr(cls, 'category', None)!r}",
                          hint=f"use one of: {', '.join(CATEGORIES)}")


def make_agent(role: str, spec: str, params: dict[str, Any] | None = None) -> Agent:
    """Resolve, import, check and construct an agent with the scenario's parameters."""
    from arena.scenario import validate_agent_params  # late: scenario is imported by protocol

    ref = resolve(role, spec)
    validate_agent_params(role, ref.name, params or {})
    cls = load_class(ref)
    try:
        agent = cls(**(params or {}))
    except TypeError as exc:
        raise PluginError(f"{role} '{ref.name}' rejects its parameters {params}: {exc}",
                          hint="check the scenario's [attackers.NAME] / [defenders.NAME] table") from exc
    # A file-loaded agent is known by its spec, so results never mix with an installed namesake.
    agent.arena_name = canonical_spec(spec) if ref.file else ref.name  # type: ignore[attr-defined]
    if ref.file:
        source = Path(spec.partition(":")[0]).resolve()
        agent.arena_source = str(source)  # type: ignore[attr-defined]
        # Hashed now, right after the import, so the digest is of the code that runs, not of
        # whatever the file holds when a cache key is computed later.
        agent.arena_source_digest = _file_digest(source)  # type: ignore[attr-defined]
    return agent


def canonical_spec(spec: str) -> str:
    """One name per file agent: the path relative to the working directory when inside it,
    else absolute, symlinks resolved, then ``:Class``. Installed names are returned as given."""
    if not is_file_spec(spec):
        return spec
    path_s, _, attr = spec.partition(":")
    path = Path(path_s).resolve()
    cwd = Path.cwd().resolve()
    shown = path.relative_to(cwd).as_posix() if path.is_relative_to(cwd) else path.as_posix()
    return f"{shown}:{attr}"


def _file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def agent_code_digest(agent: Agent) -> str | None:
    """sha256 (16 hex) of the file a ``file.py:Class`` agent was loaded from; None for an
    installed agent (its distribution's version names its code). Only that file is hashed,
    not modules it imports."""
    if hasattr(agent, "arena_source_digest"):
        return agent.arena_source_digest
    source = getattr(agent, "arena_source", None)
    return _file_digest(Path(source)) if source else None


def agent_name(agent: Agent) -> str:
    return getattr(agent, "arena_name", type(agent).name)
