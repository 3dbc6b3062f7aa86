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
