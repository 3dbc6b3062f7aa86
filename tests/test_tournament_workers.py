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
