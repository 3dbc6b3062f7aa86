"""Usability over benign models: the pooled exact test, its interval and its power (no training)."""

from __future__ import annotations

import numpy as np
import pytest

from arena.results.leaderboard import render_leaderboard
from arena.results.store import MatchRecord
from arena.results.usability import (benign_flags, clopper_pearson, critical_count, judge, models_needed, power,
                                     usability)


def test_the_pooled_test_fails_what_five_seeds_of_five_let_through():
    # Neural Cleanse on the published seeds: 0, 1, 2, 0, 1 flags out of 5 a seed. Each seed alone allows one
    # flag in five; pooled, 4 of 25 is over a 5% budget (p = 0.034).
    nc = judge("neural-cleanse", 4, 25, 0.05)
    assert nc.p_value == pytest.approx(0.0341, abs=1e-4) and not nc.usable
    assert judge("tabor", 3, 25, 0.05).usable  # p = 0.127
    assert critical_count(5, 0.05) == 2 and critical_count(25, 0.05) == 4


def test_clopper_pearson_matches_its_closed_forms():
    lo, hi = clopper_pearson(0, 25)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 25))
    lo, hi = clopper_pearson(25, 25)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 25))


def test_power_is_what_a_simulated_defender_meets():
    rng = np.random.default_rng(0)
    for n in (25, 191):
        flags = rng.binomial(n, 0.10, size=20_000)  # a defender at twice the budget
        failed = np.mean(flags >= critical_count(n, 0.05))
        assert failed == pytest.approx(power(n, 0.05), abs=0.01)
    need = models_needed(0.05)
    assert power(need, 0.05) >= 0.8 and all(power(m, 0.05) >= 0.8 for m in range(need, need + 20))
    assert power(need - 1, 0.05) < 0.8 or any(power(m, 0.05) < 0.8 for m in range(need - 1, need + 19))


def _rec(defender: str, seed: int, member_flags: list[bool], attacker: str, outcome: float) -> MatchRecord:
    members = [{"member": i, "flagged": f, "fault": None, "verdict": True, "aiv_max": 3.0 if f else 1.0,
                "suspected_target": 0} for i, f in enumerate(member_flags)]
    return MatchRecord(scenario="s", scenario_digest="d", attacker=attacker, attacker_version="1", defender=defender,
                       defender_version="1", seed=seed, rounds=1, status="ok", outcome=outcome, reason="",
                       metrics={"control": {"members": members, "population": len(members)},
                                "defense": {"category": "model_inspection"}})


def test_populations_are_counted_once_per_seed_and_an_unusable_defender_is_not_rated():
    recs = []
    for seed in range(3):
        for attacker, score in (("strong", 0.9), ("weak", 0.1)):
            recs.append(_rec("alarmist", seed, [True, True, False], attacker, 0.0))  # flags 2 of 3 every seed
            recs.append(_rec("careful", seed, [False, False, False], attacker, score))
            recs.append(_rec("none", seed, [], attacker, min(1.0, score + 0.05)))
    flags = benign_flags(recs)
    assert len(flags["alarmist"]) == 9 and sum(flags["alarmist"].values()) == 6  # 3 seeds x 3, not x 2 attackers
    verdicts = {u.defender: u.usable for u in usability(recs, 0.05)}
    assert verdicts == {"alarmist": False, "careful": True}
    md, csv = render_leaderboard("s", recs)
    assert "**unusable at this budget**" in md and "`alarmist`" in md
    assert "defender:alarmist" not in csv and "defender:careful" in csv  # left out of the ratings


def test_the_page_gives_each_defender_its_power_and_says_what_its_interval_excludes():
    # Three inspectors on populations of different sizes (as after `arena controls -d ...` for some of them):
    # each row's power is its own, and only an interval that ends below twice the budget is said to.
    recs = []
    for seed in range(20):
        recs.append(_rec("wide", seed, [False] * 10, "strong", 0.9))  # 0 of 200: [0, 0.018]
        recs.append(_rec("narrow", seed, [False] * 2, "strong", 0.5))  # 0 of 40: [0, 0.088]
        recs.append(_rec("few", seed, [False], "strong", 0.4))  # 0 of 20: [0, 0.168]
    judged = {u.defender: u for u in usability(recs, 0.05)}
    assert judged["wide"].power == power(200, 0.05) >= 0.8 > power(40, 0.05) == judged["narrow"].power
    assert judged["few"].ci_high > 0.10 > judged["narrow"].ci_high
    md, _ = render_leaderboard("s", recs)
    section = md[md.index("## Usability over benign models"):]
    section = section[: section.index("\n## ", 3)]
    row = next(line for line in section.splitlines() if line.startswith("| narrow"))
    assert f"{power(40, 0.05):.2f}" in row and "0/40" in row
    assert "(20 to 200)" in section and "arena controls --population N" in section  # the weakest row lacks power
    assert "the intervals of `narrow`, `wide` end below twice the budget (10%); that of `few` does not." in section


def test_rescore_brings_a_match_stored_under_the_old_gate_under_the_current_rule(tmp_path, monkeypatch):
    import dataclasses
    from pathlib import Path

    from click.testing import CliRunner

    from arena.cli import main
    from arena.results.io import read_jsonl_gz
    from arena.results.store import Store

    monkeypatch.setenv("ARENA_HOME", str(tmp_path))
    shipped = read_jsonl_gz(Path(__file__).resolve().parents[1] / "leaderboards" / "fmnist-cnn.matches.jsonl.gz")
    now = next(r for r in shipped if r.defender == "neuron-inspect" and r.outcome == 0.0)
    old = dataclasses.replace(now, outcome=1.0, reason="defender gate: the defender flags 4 of 5 benign model(s) "
                              "as trojans (control run); budget 5% of benign models")  # as 0.1 stored it
    store = Store()
    store.save(old)
    store.close()
    dry = CliRunner().invoke(main, ["matches", "rescore", "-s", "fmnist-cnn", "--dry-run"])
    assert dry.exit_code == 0 and "would change 1 of 1" in dry.output
    done = CliRunner().invoke(main, ["matches", "rescore", "-s", "fmnist-cnn"])
    assert done.exit_code == 0 and "changed 1 of 1" in done.output
    store = Store()
    (back,) = store.matches()
    store.close()
    assert (back.outcome, back.reason) == (now.outcome, now.reason) and back.metrics["gate"] == "play"
