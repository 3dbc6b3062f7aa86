"""Decide stored matches again under the current outcome rule, from their stored metrics alone.

The outcome rule (``arena.engine.outcome.decide``) is a pure function of a
match's attack and defense metrics and the scenario's budgets, all of which
every record stores. When the rule changes (the model-level gate moved from
each match to the pooled population, ``arena.results.usability``), the
published matches can be brought under it without playing anything again;
every other number of the record stays as measured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from arena.config.scenario import Budgets
from arena.engine.metrics import AttackMetrics, DefenseMetrics
from arena.engine.outcome import Outcome, decide
from arena.results.record import MatchRecord


def redecide(record: MatchRecord, budgets: Budgets) -> Outcome | None:
    """The outcome the current rule gives the record's last round, or None where the rule does not apply
    (a forfeit, a match without defense metrics, a record that did not finish)."""
    m = record.metrics if isinstance(record.metrics, dict) else {}
    if record.status != "ok" or "forfeit" in m or "defense" not in m or "attack" not in m:
        return None
    return decide(AttackMetrics(**m["attack"]), DefenseMetrics(**m["defense"]), budgets)


def rescore(records: Iterable[MatchRecord], budgets: Budgets) -> list[MatchRecord]:
    """The records whose stored outcome differs from the current rule's, with outcome, reason and gate
    replaced (in the record and in its last round); the metrics are untouched."""
    changed = []
    for r in records:
        o = redecide(r, budgets)
        if o is None or (abs(o.score - float(r.outcome)) < 1e-12 and o.reason == r.reason):
            continue
        metrics = {**r.metrics, "gate": o.gate}
        rounds = [dict(x) for x in r.round_records]
        if rounds:
            rounds[-1] = {**rounds[-1], "outcome": o.score, "reason": o.reason,
                          "metrics": {**rounds[-1].get("metrics", {}), "gate": o.gate}}
        changed.append(dataclasses.replace(r, outcome=o.score, reason=o.reason, metrics=metrics,
                                           round_records=rounds))
    return changed
