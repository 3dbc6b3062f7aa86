"""A tournament is never silent for long: while matches run and none ends, a line says which run,
for how long, and the last progress line each sent from its worker."""

from __future__ import annotations

import time

import pytest

from arena.results.record import MatchRecord
from arena.run import jobs
from arena.run.backends import local
from arena.run.backends.local import LocalBackend


def _record(job: jobs.Job) -> MatchRecord:
    return MatchRecord(scenario=job.scenario.name, scenario_digest=job.scenario.digest, attacker=job.attacker,
                       attacker_version="1", defender=job.defender, defender_version="1", seed=job.seed,
                       rounds=1, status="ok", outcome=0.5, duration_s=1.0)


def test_the_pulse_names_running_matches_after_a_quiet_spell(tiny):
    now = [0.0]
    lines: list[str] = []
    tally = jobs.Tally(2, lines.append, clock=lambda: now[0])
    a, b = jobs.Job(tiny, "badnet", "strip", 3, 1, "cpu"), jobs.Job(tiny, "abe", "neo", 3, 1, "cpu")
    tally.start(2)
    tally.began("x", a.label)
    now[0] = 4.0
    tally.began("y", b.label)
    tally.heard("x", "  train:\n epoch 2/4, 0:30")
    now[0] = 9.0
    tally.pulse()
    assert lines == []  # 9 s of quiet: under quiet_s
    now[0] = 10.0
    tally.pulse()
    assert lines == ["  running: badnet vs strip seed 3 0:10: train: epoch 2/4, 0:30 | abe vs neo seed 3 0:06"]
    now[0] = 15.0
    tally.pulse()
    assert len(lines) == 1  # the pulse itself counts as a line: the next one is quiet_s later
    tally.ended("x")
    tally.finish(_record(b))  # a finished match's line also resets the quiet spell
    now[0] = 24.0
    tally.pulse()
    assert len(lines) == 2 and lines[-1].startswith("[1/2] abe vs neo")
    tally.ended("y")
    now[0] = 100.0
    tally.pulse()
    assert len(lines) == 2  # nothing running: nothing to say


def _talking_player(job: jobs.Job, progress=None) -> MatchRecord:
    """A stand-in for ``play_job`` in a worker process: two progress lines, some seconds apart."""
    progress(f"{job.defender}: epoch 1/2")
    time.sleep(1.5)
    progress(f"{job.defender}: scoring 3/5 inputs")
    time.sleep(1.5)
    return _record(job)


@pytest.mark.slow  # a spawned pool: about 10 s
def test_a_pooled_tournament_passes_its_workers_progress_on(tiny, monkeypatch):
    monkeypatch.setattr(jobs.Tally, "quiet_s", 0.5)
    monkeypatch.setattr(local, "_WAIT_S", 0.2)
    plan = [jobs.Job(tiny, "none", d, 0, 1, "cpu") for d in ("d1", "d2")]
    said: list[str] = []
    stored: list[MatchRecord] = []
    tally = jobs.Tally(len(plan), said.append)
    LocalBackend(workers=2, player=_talking_player).run(plan, 1, stored.append, said.append, tally)
    assert sorted(r.defender for r in stored) == ["d1", "d2"]
    pulses = [line for line in said if line.startswith("  running: ")]
    assert pulses, said
    # The workers' own lines reach the tournament's process, each under its match.
    assert any("none vs d1 seed 0 " in p and ": d1: scoring 3/5 inputs" in p for p in pulses), pulses
    assert any("none vs d2 seed 0 " in p and ": d2: " in p for p in pulses), pulses


def test_a_control_group_is_named_by_its_defender_seed_and_members(tiny):
    from arena.run.controls import _Group

    def label(members: tuple[int, ...]) -> str:
        return _Group(tiny, "abs", "1", 2, members, "cpu", "process").label

    assert label((5, 6, 7, 8, 9)) == "abs seed 2, benign models 5-9"
    assert label((0, 3)) == "abs seed 2, benign models 0, 3"
    assert label((4,)) == "abs seed 2, benign model 4"
