"""The match record: what one match left, as plain data (no SQLite here: analyses read records, the
store (``arena.results.store``) keeps them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class MatchRecord:
    scenario: str
    scenario_digest: str
    attacker: str
    attacker_version: str
    defender: str
    defender_version: str
    seed: int
    rounds: int
    status: str
    outcome: float | None = None
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    round_records: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    device: str = ""
    code_version: str = ""
    started_at: str = ""
    duration_s: float = 0.0
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ControlRecord:
    """One defender on one benign model of a seed, run apart from any match to enlarge the pooled
    usability gate's sample (``arena controls``). ``result`` holds what a match's control member holds:
    ``flagged``, ``verdict`` (whether the deployment judged the model at all), ``fpr``, ``cad``,
    ``suspected_target``, ``aiv``, ``aiv_max``, ``fault`` and, since 2026-12-08, ``key_id`` (the key
    that drew the benign model; ``arena.run.controls``)."""

    scenario: str
    scenario_digest: str
    defender: str
    defender_version: str
    seed: int
    member: int
    result: dict[str, Any] = field(default_factory=dict)
    code_version: str = ""
    created_at: str = ""
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
