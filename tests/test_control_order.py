"""Two workers that reach the same control population make different members side by side.

The first matches of a tournament seed all meet the first inspector, so two workers ask for the
same population at once; each member is made under a lock, and a worker that took the members in
order would idle on the other's locks for the whole population (minutes on CIFAR)."""

from __future__ import annotations

import dataclasses
import fcntl
import types

from arena.config.scenario import Controls
from arena.core.cache import ArtifactCache
from arena.engine.referee import Referee


def test_busy_says_whether_another_holder_has_the_entrys_lock(tmp_path):
    cache = ArtifactCache(tmp_path)  # the home: entries under tmp_path/cache
    assert not cache.busy("benign", "k1")  # never locked: no lock file
    lock = cache.root / "benign" / "k1.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:  # another open file description: flock treats it as another worker
        fcntl.flock(held, fcntl.LOCK_EX)
        assert cache.busy("benign", "k1")
        assert not cache.busy("benign", "k2")
        fcntl.flock(held, fcntl.LOCK_UN)
    assert not cache.busy("benign", "k1")  # released: free again, and busy() took no lock of its own
    with open(lock) as again:
        fcntl.flock(again, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_members_another_worker_is_making_are_taken_last(tiny, monkeypatch, tmp_path):
    referee = Referee(dataclasses.replace(tiny, controls=Controls(population=5)), device="cpu",
                      cache=ArtifactCache(tmp_path))
    busy = {1, 2}  # being made by another worker while this one goes through the population
    taken: list[int] = []

    def member(defender, d_card, seed, i):
        taken.append(i)
        return {"member": i, "fault": None, "flagged": i == 3, "fpr": None, "cad": 0.01 * i,
                "suspected_target": None, "aiv": None, "cached": True}

    monkeypatch.setattr(referee, "_control_busy", lambda d_card, seed, i: i in busy)
    monkeypatch.setattr(referee, "_control_member", member)
    control = referee._control("x", types.SimpleNamespace(name="x"), 0)
    # The free members first, in order; then the busy ones, waiting for each in order.
    assert taken == [0, 3, 4, 1, 2]
    # The control itself is the same whatever the order: members in population order.
    assert [m["member"] for m in control.members] == [0, 1, 2, 3, 4]
    assert control.flagged_models == 1 and abs(control.cad - 0.02) < 1e-12


def test_arena_controls_groups_take_members_another_worker_is_making_last(tiny, monkeypatch, tmp_path):
    """`arena controls` runs (defender, seed) groups side by side, and two groups of one seed need the
    same new benign members: each takes first those the other is not making."""
    from arena.run import controls

    referee = Referee(tiny, device="cpu", cache=ArtifactCache(tmp_path))
    busy = {5, 6}
    taken: list[int] = []

    def member(defender, seed, i):
        taken.append(i)
        return {"member": i, "verdict": True, "flagged": False}

    monkeypatch.setattr(referee, "card", lambda role, agent: types.SimpleNamespace(name=agent))
    monkeypatch.setattr(referee, "_control_busy", lambda d_card, seed, i: i in busy)
    monkeypatch.setattr(referee, "control_member", member)
    monkeypatch.setattr(controls, "process_referee", lambda *args: referee)
    group = controls._Group(tiny, "x", "1", 0, (5, 6, 7, 8, 9), "cpu", "process")
    records = controls._run_group(group)
    assert taken == [7, 8, 9, 5, 6]
    assert sorted(r.member for r in records) == [5, 6, 7, 8, 9]


def test_extra_members_are_planned_in_chunks_every_defender_over_the_same_members():
    from arena.run.controls import plan

    missing = {("abs", 0): list(range(10, 22)), ("tabor", 0): list(range(10, 22)), ("abs", 1): [3],
               ("tabor", 1): []}
    groups = plan([0, 1], ["abs", "tabor"], missing, chunk=5)
    assert groups == [(0, "abs", (10, 11, 12, 13, 14)), (0, "tabor", (10, 11, 12, 13, 14)),
                      (0, "abs", (15, 16, 17, 18, 19)), (0, "tabor", (15, 16, 17, 18, 19)),
                      (0, "abs", (20, 21)), (0, "tabor", (20, 21)), (1, "abs", (3,))]
    # Every missing run is planned once, however the members fall into chunks.
    runs = [(d, seed, m) for seed, d, ms in groups for m in ms]
    assert sorted(runs) == sorted((d, seed, m) for (d, seed), ms in missing.items() for m in ms)
