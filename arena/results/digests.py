"""Scenario digests written before the seed lists left the digest (2026-12-06), mapped to today's.

Until then a scenario's digest hashed its ``seeds`` list, so adding a test seed
re-keyed every match already played. The digest now leaves the seed lists out
(``Scenario.digest``); a store or match file written before carries the old
value, computed with the seed list of the time. ``Scenario.legacy_digests``
recomputes it for every prefix of today's list, which covers a list that has
only grown at its end (fmnist-cnn's seeds 10-14 became 10-29). So the old
digest is recognised while the scenario can be loaded (found by name with
``load_scenario``, or a variant the caller loaded by path and hands in) and its
seeds were only appended to. Matches of any other scenario keep the digest they carry: like the
matches of an edited scenario, a tournament then plays them again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from arena.config.scenario import Scenario, load_scenario
from arena.core.errors import ArenaError
from arena.results.record import MatchRecord


def _resolvable(name: str) -> Scenario | None:
    try:
        return load_scenario(name)
    except (ArenaError, OSError, ValueError):  # not a shipped or local scenario: nothing to compare with
        return None


def legacy_map(names: Iterable[str], known: Iterable[Scenario] = ()) -> dict[tuple[str, str], str]:
    """``{(scenario name, legacy digest): current digest}`` for the scenarios named (found with
    ``load_scenario``) and those ``known``."""
    scenarios = {sc.name: sc for sc in known}
    for name in set(names) - set(scenarios):
        sc = _resolvable(name)
        if sc is not None and sc.name == name:
            scenarios[name] = sc
    return {(sc.name, old): sc.digest for sc in scenarios.values() for old in sc.legacy_digests}


def upgrade_records(records: list[MatchRecord], known: Iterable[Scenario] = ()) -> list[MatchRecord]:
    """``records`` with each legacy scenario digest replaced by the scenario's current one."""
    mapping = legacy_map({r.scenario for r in records}, known)
    if not mapping:
        return records
    return [dataclasses.replace(r, scenario_digest=mapping[(r.scenario, r.scenario_digest)])
            if (r.scenario, r.scenario_digest) in mapping else r for r in records]
