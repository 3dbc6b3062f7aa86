"""Parallel tournaments: worker processes share the store and the artifact cache."""

from __future__ import annotations

from arena import tournament
from arena.store import Store


def test_workers_play_every_pair_once(tiny, referee, tmp_path):
    referee.benign(0)  # trained (or cached) here; spawned workers read it from the shared cache
    store = Store(tmp_path / "workers.sqlite")
    report = tournament.run(tiny, attackers=["none"], defenders=["none", "neural-cleanse"], seeds=[0],
                            workers=2, store=store)
    assert report.failed == [] and report.played == 2
    rows = store.matches(status="ok")
    assert sorted(r.defender for r in rows) == ["neural-cleanse", "none"]
    again = tournament.run(tiny, attackers=["none"], defenders=["none", "neural-cleanse"], seeds=[0],
                           workers=2, store=store)
    assert again.played == 0 and again.skipped == 2


def test_the_plan_plays_seed_by_seed(tiny, tmp_path):
    """A tournament cut short leaves whole seeds: the unit the leaderboard's intervals resample."""
    store = Store(tmp_path / "plan.sqlite")
    jobs, skipped = tournament.plan(tiny, ["none", "badnet"], ["none", "strip"], [3, 1], None, "cpu", store)
    assert skipped == 0
    assert [(j.seed, j.attacker, j.defender) for j in jobs] == [
        (3, "none", "none"), (3, "none", "strip"), (3, "badnet", "none"), (3, "badnet", "strip"),
        (1, "none", "none"), (1, "none", "strip"), (1, "badnet", "none"), (1, "badnet", "strip")]
