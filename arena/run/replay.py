"""Replaying stored matches: does a published result reproduce here?

Each match stores the environment it ran in (``environment()``: torch and
Python versions, CPU threads, processor, device). ``replay`` plays stored
matches again from scratch (their benign models and trojans re-trained in a
throw-away cache, never read from the store's cache) and reports how far
each number drifts. On the machine and settings that made a match, a replay
is bit for bit: every metric is equal. Elsewhere (another CPU, another torch,
another thread count) training is not bit-reproducible, and the drift says by
how much the published numbers move.

Published matches travel as gzip'd JSON lines beside a leaderboard
(``leaderboards/NAME.matches.jsonl.gz``, written by ``arena leaderboard
--write``), so anyone can refit the leaderboard or replay a sample of it.
"""

from __future__ import annotations

import math
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arena.core.errors import ArenaError
from arena.results.record import MatchRecord


def _numbers(d: Any, prefix: str = "") -> dict[str, float]:
    """Every number in a metrics tree, by dotted path (timings and artifacts left out: they always move)."""
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            if k in ("timing", "artifacts", "environment") or k.endswith("_s") or k.endswith("_ms"):
                continue
            out.update(_numbers(v, f"{prefix}{k}."))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out.update(_numbers(v, f"{prefix}{i}."))
    elif isinstance(d, bool):
        out[prefix[:-1]] = float(d)
    elif isinstance(d, (int, float)):
        out[prefix[:-1]] = float(d)
    return out


@dataclass
class Drift:
    """One replayed match against its stored record."""

    match_id: int | None
    attacker: str
    defender: str
    seed: int
    stored_outcome: float | None
    replayed_outcome: float | None
    max_drift: float  # largest absolute difference over every stored number (NaN where one side is NaN)
    worst: str  # the metric that drifted most
    identical: bool  # every number equal (NaN equal to NaN)
    differing: dict[str, tuple[float, float]] = field(default_factory=dict)


def compare(stored: MatchRecord, replayed: MatchRecord) -> Drift:
    a = _numbers({"outcome": stored.outcome, "metrics": stored.metrics})
    b = _numbers({"outcome": replayed.outcome, "metrics": replayed.metrics})
    differing: dict[str, tuple[float, float]] = {}
    worst, biggest = "", 0.0
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key, math.nan), b.get(key, math.nan)
        if x == y or (math.isnan(x) and math.isnan(y)):
            continue
        differing[key] = (x, y)
        d = abs(x - y) if not (math.isnan(x) or math.isnan(y)) else math.inf
        if d > biggest:
            worst, biggest = key, d
    return Drift(stored.id, stored.attacker, stored.defender, stored.seed, stored.outcome, replayed.outcome,
                 biggest, worst, not differing, differing)


def sample(records: list[MatchRecord], n: int | None, seed: int = 0) -> list[MatchRecord]:
    """A seeded sample of ``n`` records (all of them when n is None or larger)."""
    ok = sorted((r for r in records if r.status == "ok"), key=lambda r: (r.attacker, r.defender, r.seed, r.id or 0))
    if n is None or n >= len(ok):
        return ok
    return sorted(random.Random(seed).sample(ok, n), key=lambda r: (r.attacker, r.defender, r.seed))


def replay(records: list[MatchRecord], scenario_name: str | None = None, device: str = "cpu",
           isolation: str = "process", progress: Any = None) -> list[Drift]:
    """Play each record again from scratch (a fresh cache) and compare it with what was stored."""
    from arena.core.cache import ArtifactCache
    from arena.engine.referee import Referee
    from arena.config.scenario import load_scenario
    from arena.config.splits import bind_data

    drifts: list[Drift] = []
    referees: dict[str, Referee] = {}
    with tempfile.TemporaryDirectory(prefix="arena-replay-") as scratch:
        cache = ArtifactCache(Path(scratch))
        for rec in records:
            name = scenario_name or rec.scenario
            if name not in referees:
                sc = bind_data(load_scenario(name))  # the data's content is part of the digest
                if sc.digest != rec.scenario_digest:
                    raise ArenaError(
                        f"match #{rec.id} was played under scenario digest {rec.scenario_digest}, but "
                        f"'{name}' now has digest {sc.digest}: its settings or its data changed",
                        hint="replay with the scenario file (-s path/to/file.toml) and the data the match "
                             "was played with")
                referees[name] = Referee(sc, device=device, cache=cache, progress=progress, isolation=isolation)
            played = referees[name].play(rec.attacker, rec.defender, seed=rec.seed, rounds=rec.rounds).record
            drifts.append(compare(rec, played))
    return drifts
