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

import difflib
import hashlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import torch
from torch import nn

from arena.core.errors import PluginError, ScenarioError
from arena.config.scenario import Scenario, validate_agent_params
from arena.config.specs import canonical_spec, is_file_spec, is_model_spec, own_file
from arena.api.exported import EXPORTED, exported_model
from arena.api.models import ArchSpec, build_model, known_architectures, register_architecture
from arena.api.protocol import CATEGORIES, Agent, Attacker, Defender

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


SIGNATURES = {"attacker": ("ctx",), "defender": ("model", "ctx")}


def check_interface(cls: Any, ref: AgentRef) -> None:
    role = ref.role
    where = f"{role} plugin '{ref.name}' ({ref.source})"
    if not isinstance(cls, type):
        raise PluginError(f"{where} is not a class but {type(cls).__name__}")
    method = METHODS[role]
    if not callable(getattr(cls, method, None)) or getattr(cls, method) is getattr(BASES[role], method):
        raise PluginError(
            f"{where} has no {method}() method",
            hint=f"subclass arena.api.protocol.{BASES[role].__name__} and implement {method}(...)",
        )
    if not issubclass(cls, BASES[role]):
        raise PluginError(f"{where} must subclass arena.api.protocol.{BASES[role].__name__}")
    # The referee calls craft(ctx) / deploy(model, ctx): a method that cannot take those arguments
    # fails here, when the plugin is loaded (`arena agents check`), not in the middle of a match.
    args = SIGNATURES[role]
    try:
        inspect.signature(getattr(cls, method)).bind(None, *args)
    except TypeError:
        raise PluginError(f"{where}: {method}{inspect.signature(getattr(cls, method))} cannot be called as "
                          f"{method}({', '.join(args)})",
                          hint=f"define it as def {method}(self, {', '.join(args)})") from None
    except ValueError:  # no signature to read (a builtin): let the match find out
        pass
    if not getattr(cls, "name", ""):
        raise PluginError(f"{where} has no 'name' class attribute")
    if role == "defender" and getattr(cls, "category", None) not in CATEGORIES:
        raise PluginError(f"{where} has category {getattr(cls, 'category', None)!r}",
                          hint=f"use one of: {', '.join(CATEGORIES)}")


@dataclass(frozen=True)
class LoadedAgent:
    """An agent instance and what the arena knows of it, kept beside it (never written onto it)."""

    agent: Agent
    name: str  # the installed name, or a file agent's canonical spec
    code_digest: str | None = None  # file agents: sha256 (16 hex) of the source, hashed right after the import


def load_agent(role: str, spec: str, params: dict[str, Any] | None = None) -> LoadedAgent:
    """Resolve, import, check and construct an agent with the scenario's parameters."""
    if is_model_spec(spec):
        return _given_model(role, spec, params)
    ref = resolve(role, spec)
    validate_agent_params(role, ref.name, params or {})
    cls = load_class(ref)
    try:
        agent = cls(**(params or {}))
    except TypeError as exc:
        raise PluginError(f"{role} '{ref.name}' rejects its parameters {params}: {exc}",
                          hint="check the scenario's [attackers.NAME] / [defenders.NAME] table") from exc
    if not ref.file:
        return LoadedAgent(agent, ref.name)
    # A file-loaded agent is known by its spec, so results never mix with an installed namesake. Its
    # source is hashed now, right after the import, so the digest is of the code that runs, not of
    # whatever the file holds when a cache key is computed later.
    source = Path(spec.partition(":")[0]).resolve()
    return LoadedAgent(agent, canonical_spec(spec), _file_digest(source))


def _given_model(role: str, spec: str, params: dict[str, Any] | None) -> LoadedAgent:
    """``model:PATH``: the weights in PATH played as a trojan (``agents/attackers/given_model.py``),
    named by its canonical spec and cached under the hash of the file's bytes."""
    if role != "attacker":
        raise PluginError(f"'{spec}' is a model file: it plays the attacker's side",
                          hint="arena match model:PATH DEFENDER, or arena scan PATH")
    path = Path(own_file(spec) or "").resolve()
    if not path.is_file():
        raise PluginError(f"model file not found: {path}",
                          hint="model:PATH names a torch.save'd state dict or a torch.export.save'd program")
    from arena_agents.attackers.given_model import GivenModel  # the one built-in agent reached by spec, not name

    try:
        agent = GivenModel(path=str(path), **{k: v for k, v in (params or {}).items() if k != "path"})
    except TypeError as exc:
        raise PluginError(f"'{spec}' rejects its parameters {params}: {exc}",
                          hint="a model file takes one parameter, trigger = PATH.npz") from exc
    return LoadedAgent(agent, canonical_spec(spec), _file_digest(path))


def make_agent(role: str, spec: str, params: dict[str, Any] | None = None) -> Agent:
    """``load_agent(...).agent``: the bare instance, for code that calls it directly."""
    return load_agent(role, spec, params).agent


def _file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def check_agent_tables(scenario: Scenario) -> None:
    """Every ``[attackers.NAME]`` / ``[defenders.NAME]`` table must name an installed agent or a file spec.

    A misspelt table (``[defenders.stirp]``) would otherwise be ignored and
    the agent would play with its defaults. Not part of loading: a scenario
    must load (and hash) even where a plugin it configures is not installed.
    """
    for role, table in (("attacker", scenario.attackers), ("defender", scenario.defenders)):
        named = [n for n in table if not is_file_spec(n)]
        if not named:
            continue
        known = discover(role)
        for name in named:
            if name not in known:
                close = difflib.get_close_matches(name, list(known), n=1)
                guess = f"did you mean '{close[0]}'? " if close else ""
                raise ScenarioError(
                    f"{scenario.source}: [{role}s.{name}] names no installed {role}",
                    hint=f"{guess}installed {role}s: {', '.join(known) or '(none)'}; "
                         f'a file agent\'s table is keyed by its spec: [{role}s."my_agent.py:MyClass"]',
                )


def build_architecture(spec: ArchSpec) -> nn.Module:
    """``build_model(spec)``, first loading the installed ``arena.architectures`` entry point of that
    name if no module has registered it yet: a cached trojan with its own architecture (TrojanNet)
    must be rebuildable in a fresh process before its attacker's module was ever imported."""
    if spec.arch not in known_architectures():
        for ep in sorted(entry_points(group="arena.architectures"), key=lambda e: e.value):
            if ep.name == spec.arch:
                try:
                    register_architecture(spec.arch, ep.load())
                except Exception as exc:
                    raise PluginError(f"architecture plugin '{spec.arch}' from {_dist_label(ep)} failed to load: "
                                      f"{type(exc).__name__}: {exc}") from exc
                break
    return build_model(spec)


def rebuild_model(arch: dict[str, Any], state: dict[str, Any]) -> nn.Module:
    """A model from what crosses processes (``arena.engine.wire``) and the cache: its architecture spec
    and its state dict. An exported program (``arch`` ``exported``) is rebuilt from the file's bytes in
    its state (``state["program"]``, read by ``arena.api.exported``, which runs nothing of the file);
    any other from the architecture registry (``build_architecture``). Then the state is loaded."""
    spec = ArchSpec.from_dict(arch)
    if spec.arch == EXPORTED:
        program = state.get("program")
        if program is None:
            raise ValueError("an exported program's state holds no 'program' bytes")
        model = exported_model(program, spec)
    else:
        _check_fits(spec, state)
        model = build_architecture(spec)
    model.load_state_dict(state)
    return model


def _check_fits(spec: ArchSpec, state: dict[str, Any]) -> None:
    """Refuse a spec whose model the state does not fill exactly, before any of it is allocated.

    The spec comes from the agent (a trojan's ``model.spec``): a class count or an option sized to
    tens of gigabytes would be allocated and initialised in the referee's process before
    ``load_state_dict`` could object. Built on the meta device first, the model costs nothing, and
    once its tensors match the state's names and shapes it is no larger than what was received."""
    try:
        with torch.device("meta"):
            shape = build_architecture(spec).state_dict()
    except PluginError:
        raise
    except Exception:  # noqa: BLE001 - an architecture that cannot be built on meta: checked by loading
        return
    want = {k: tuple(v.shape) for k, v in shape.items()}
    got = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    if want != got:
        wrong = sorted(set(want) ^ set(got)) or sorted(k for k in want if want[k] != got.get(k))
        raise ValueError(f"the state does not fit a {spec.arch!r} model built from its spec "
                         f"(first mismatch: {wrong[0]!r}: spec {want.get(wrong[0])}, state {got.get(wrong[0])})")
