"""What crosses the pipe between the referee and an agent process, and the checks on it.

The agent's answers are plain dataclasses (``AgentCard``, ``TrojanPayload``,
``DeploymentSummary`` with its ``VerdictData``), sent as ``arena.engine.wire``
frames: JSON plus raw tensor bytes, never pickle. The decoder builds only the
types of a table (``AGENT_TYPES`` one way, ``referee_types()`` the other), and
``check_answer`` checks each field's type, so an answer of the wrong kind is a
lost match for its sender, not code running in the referee.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class AgentCard:
    """Plain facts about an agent, read in its own process (the referee never imports plugin code)."""

    role: str
    name: str
    version: str
    params: dict[str, Any]
    category: str | None = None  # defenders
    adaptive: bool = False  # attackers
    code_digest: str | None = None  # file plugins: hash of the source, part of every cache key
    sandbox: str = "process"  # the level its process is locked in at (arena.engine.sandbox.LEVELS)
    names_crafts: bool = False  # attackers: it defines craft_key (crafts with one name are shared)

    def identity(self) -> dict[str, Any]:
        """What a cache key needs of the agent."""
        d = {"name": self.name, "version": self.version, "params": self.params}
        if self.code_digest:
            d["code"] = self.code_digest
        return d


@dataclass
class TrojanPayload:
    arch: dict[str, Any]
    state: dict[str, torch.Tensor]
    trigger: dict[str, torch.Tensor] | None
    has_stamp_fn: bool
    notes: dict[str, Any] = field(default_factory=dict)
    gpu_peak_mb: float | None = None  # the agent process's peak CUDA memory while crafting (None on the CPU)


@dataclass
class VerdictData:
    is_trojan: bool
    target: int | None
    anomaly_index: list[float] | None
    mask: torch.Tensor | None
    pattern: torch.Tensor | None


@dataclass
class DeploymentSummary:
    threshold: float | None
    has_transform: bool
    has_score: bool
    passes_per_input: int
    verdict: VerdictData | None
    notes: dict[str, Any] = field(default_factory=dict)
    batch_aware: bool = False
    gpu_peak_mb: float | None = None  # the agent process's peak CUDA memory while deploying (None on the CPU)
    # The deployment predicts with the very model it was given: the same object, the same weights and
    # buffers, the same modules, no hooks, no transform. The referee then computes those predictions
    # itself instead of asking for them. Claiming it falsely can only cost the defender: the referee
    # would score the untouched trojan's predictions.
    model_unchanged: bool = False


def _is(v: Any, *types: type) -> bool:
    return any((v is None) if t is type(None) else (type(v) is t) for t in types)


def _tensor_map(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in v.items())


def check_answer(cmd: str, value: Any) -> str | None:
    """Why an agent's answer to ``cmd`` has the wrong shape of data (None when it is right).

    The decoder only builds allowed types; this checks each field's type, so no later step of the
    referee meets, say, a list where it expects a number."""
    if cmd in ("predict", "score", "stamp"):
        return None if isinstance(value, torch.Tensor) else f"a {type(value).__name__}, not a tensor"
    if cmd == "craft_key":
        if value is None:
            return None
        if not (isinstance(value, dict) and set(value) == {"name", "notes"} and isinstance(value["notes"], dict)):
            return "not (name, notes) or None"
        name = value["name"]
        if not (isinstance(name, str) and 1 <= len(name) <= 200 and name.isprintable()):
            return "a craft name must be 1-200 printable characters"
        return _notes_problem(value["notes"])
    if cmd == "start":
        value, cmd = value, "card"
    want = {"card": AgentCard, "craft": TrojanPayload, "deploy": DeploymentSummary}.get(cmd)
    if want is None:
        return None
    if type(value) is not want:
        return f"a {type(value).__name__}, not a {want.__name__}"
    if isinstance(value, AgentCard):
        ok = (_is(value.role, str) and _is(value.name, str) and _is(value.version, str)
              and isinstance(value.params, dict) and _is(value.category, str, type(None))
              and _is(value.adaptive, bool) and _is(value.code_digest, str, type(None))
              and _is(value.names_crafts, bool)
              and value.sandbox in ("full", "landlock", "process"))
    elif isinstance(value, TrojanPayload):
        ok = (isinstance(value.arch, dict) and _tensor_map(value.state)
              and (value.trigger is None or _tensor_map(value.trigger)) and _is(value.has_stamp_fn, bool)
              and isinstance(value.notes, dict) and _is(value.gpu_peak_mb, float, int, type(None)))
    else:
        v = value.verdict
        ok = (_is(value.threshold, float, int, type(None)) and _is(value.has_transform, bool)
              and _is(value.has_score, bool) and _is(value.passes_per_input, int)
              and isinstance(value.notes, dict) and _is(value.batch_aware, bool)
              and _is(value.gpu_peak_mb, float, int, type(None)) and _is(value.model_unchanged, bool)
              and (v is None or (type(v) is VerdictData and _is(v.is_trojan, bool) and _is(v.target, int, type(None))
                                 and (v.anomaly_index is None or (isinstance(v.anomaly_index, list) and all(
                                     _is(a, float, int) for a in v.anomaly_index)))
                                 and all(m is None or isinstance(m, torch.Tensor) for m in (v.mask, v.pattern)))))
    if not ok:
        return f"a {want.__name__} with fields of the wrong types"
    return _notes_problem(getattr(value, "notes", None))


NOTES_LIMIT = 64 * 2**10  # bytes of JSON: an agent's notes are stored with every match and published


def _notes_problem(notes: Any) -> str | None:
    """Why an agent's notes are too large to store (the built-in agents' are under 1 KB)."""
    if notes is None:
        return None
    size = len(json.dumps(notes, default=str))
    return f"notes of {size} bytes of JSON, over the {NOTES_LIMIT}-byte limit" if size > NOTES_LIMIT else None


def _types(*classes: type) -> dict[str, type]:
    return {c.__name__: c for c in classes}


# From an agent to the referee: its card and the plain summaries of its work; nothing else is built.
def _agent_types() -> dict[str, type]:
    """From an agent to the referee: its answers, and (an adaptive attacker's questions about the
    revealed defender) the clean data it deploys a surrogate on."""
    from arena.config.datasets import Tensors

    return _types(AgentCard, TrojanPayload, VerdictData, DeploymentSummary, Tensors)


AGENT_TYPES = _agent_types()


def referee_types() -> dict[str, type]:
    """From the referee to an agent: the views (``arena.api.views``) and what they hold."""
    from arena.api.protocol import AttackContext, DefenseContext, RoundRecord
    from arena.api.triggers import Trigger
    from arena.api.views import AttackerScenario, DefenderScenario, RevealedDefender
    from arena.config.datasets import DatasetInfo, Tensors
    from arena.config.scenario import AttackSpec, Budgets, DataSpec, Training, TriggerSpec

    return _types(AttackContext, DefenseContext, RoundRecord, Trigger, AttackerScenario, DefenderScenario,
                  RevealedDefender, DatasetInfo, Tensors, AttackSpec, Budgets, DataSpec, Training, TriggerSpec,
                  DeploymentSummary, VerdictData)  # the last two: the revealed defender's answers
