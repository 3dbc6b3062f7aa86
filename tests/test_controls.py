"""`arena controls`: defenders on more benign models, counted by the usability gate, no match replayed."""

from __future__ import annotations

import dataclasses
import re

import pytest
from click.testing import CliRunner

from arena.config.scenario import Controls
from arena.engine.referee import Referee
from arena.results.io import read_controls_gz, write_controls_gz
from arena.results.leaderboard import leaderboard_data
from arena.results.store import Store
from arena.results.usability import usability
from arena.run import controls
from arena.run.controls import extend
from conftest import requires_fmnist, share_key

pytestmark = pytest.mark.slow  # trains benign models: not in the fast lane (README)


@requires_fmnist
def test_extra_members_enlarge_the_gate_and_resume(tiny, tmp_path):
    # The session's home and its cache of the tiny scenario's benign models; a store of this test's own.
    sc = dataclasses.replace(tiny, controls=Controls(population=2))
    store = Store(tmp_path / "arena.db")
    rec = Referee(sc, device="cpu").play("badnet", "neuron-inspect", seed=0).record
    store.save(rec)
    assert [m["member"] for m in rec.metrics["control"]["members"]] == [0, 1]

    report = extend(sc, 4, defenders=["neuron-inspect", "strip"], seeds=[0], device="cpu", store=store)
    # STRIP filters inputs and judges no model: run once, then left out; the inspector runs on members 0-3.
    assert (report.played, report.skipped, report.judged_no_model, report.faults) == (5, 0, ["strip"], [])
    rows = store.controls(sc.digest)
    assert sorted((c.defender, c.member) for c in rows) == [("neuron-inspect", m) for m in range(4)] + [("strip", 0)]
    # Members 0 and 1 are the match's own control runs (the same cached run, the same answer).
    by_member = {c.member: c.result for c in rows if c.defender == "neuron-inspect"}
    for m in rec.metrics["control"]["members"]:
        assert by_member[m["member"]]["flagged"] == m["flagged"] and by_member[m["member"]]["aiv"] == m["aiv"]
    assert {c.result["key_id"] for c in rows} == {rec.metrics["key_id"]}  # which key drew each benign model

    (alone,) = usability([rec], budget=0.05)
    (pooled,) = usability([rec], budget=0.05, controls=rows)
    assert (alone.models, pooled.models) == (2, 4)  # members 0 and 1 counted once
    data = leaderboard_data(sc.name, [rec], bootstrap_rounds=10, controls=rows)
    assert [u["models"] for u in data["usability"]] == [4]

    again = extend(sc, 4, defenders=["neuron-inspect", "strip"], seeds=[0], device="cpu", store=store)
    assert (again.played, again.skipped, again.judged_no_model) == (0, 5, ["strip"])
    store.close()

    # Published beside the leaderboard, and read back as they were.
    f = write_controls_gz(rows, tmp_path / "x.controls.jsonl.gz")
    assert [(c.defender, c.member, c.result) for c in read_controls_gz(f)] == \
        sorted([(c.defender, c.member, c.result) for c in rows])


@requires_fmnist
def test_the_command_says_what_it_ran_and_the_power_it_buys(tiny_path, tmp_path, monkeypatch, arena_home):
    from arena.cli import main

    home = tmp_path / "home"
    share_key(arena_home, home)
    (arena_home / "cache").mkdir(exist_ok=True)
    (home / "cache").symlink_to(arena_home / "cache")  # the session's benign models: nothing trained twice
    monkeypatch.setenv("ARENA_HOME", str(home))
    res = CliRunner().invoke(main, ["controls", "-s", str(tiny_path), "--population", "2", "-d", "neuron-inspect",
                                    "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "ran 2, skipped 0 (already stored), faults 0" in res.output and "power to fail a defender" in res.output

    # The runs carry to another home as a seed's matches do: exported, then imported there.
    out = tmp_path / "runs.controls.jsonl.gz"
    res = CliRunner().invoke(main, ["matches", "export", "--controls", "-o", str(out)])
    assert res.exit_code == 0, res.output
    table = CliRunner().invoke(main, ["matches", "export", "--controls", "--format", "csv"])
    assert table.exit_code == 0 and "result.flagged" in table.output.splitlines()[0]
    misnamed = CliRunner().invoke(main, ["matches", "export", "--controls", "-o", str(tmp_path / "runs.jsonl.gz")])
    assert misnamed.exit_code != 0 and "runs.controls.jsonl.gz" in misnamed.output
    # Published beside a written leaderboard (one match is enough to write one).
    res = CliRunner().invoke(main, ["match", "none", "neuron-inspect", "-s", str(tiny_path), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["leaderboard", str(tiny_path), "--bootstrap", "10", "--write",
                                    "--out", str(tmp_path / "lb")])
    assert res.exit_code == 0, res.output
    assert [c.member for c in read_controls_gz(tmp_path / "lb" / "tiny.controls.jsonl.gz")] == [0, 1]
    assert "Usability over benign models" in res.output
    monkeypatch.setenv("ARENA_HOME", str(tmp_path / "elsewhere"))
    res = CliRunner().invoke(main, ["matches", "import", str(out)])
    assert res.exit_code == 0 and "2 extra control run(s)" in res.output, res.output
    mine, theirs = Store(home / "arena.db"), Store(tmp_path / "elsewhere" / "arena.db")
    assert [(c.seed, c.member, c.result) for c in theirs.controls()] == \
        [(c.seed, c.member, c.result) for c in mine.controls()]
    mine.close(), theirs.close()
    bad = CliRunner().invoke(main, ["controls", "-s", str(tiny_path), "--population", "2", "-d", "no-such"])
    assert bad.exit_code != 0 and "no-such" in bad.output


@requires_fmnist
def test_a_pool_of_workers_makes_the_same_runs(tiny, tmp_path, monkeypatch, arena_home):
    """Two spawned workers, each training its benign models from scratch in a home of its own, give the
    runs made in this process (the same bytes: the thread count is pinned as in a tournament)."""
    # One benign model a seed, three seeds: the inspector's first run tells it judges models (in this
    # process), then two groups, one per worker (members past 0 take the same path,
    # Referee.benign(seed, member); test_extra_members_enlarge_the_gate_and_resume runs them).
    here = Store(tmp_path / "here.db")
    extend(tiny, 1, defenders=["neuron-inspect"], seeds=[0, 1, 2], device="cpu", store=here)
    home = tmp_path / "fresh"
    share_key(arena_home, home)
    monkeypatch.setenv("ARENA_HOME", str(home))  # an empty cache: the workers make everything again
    pooled = Store(tmp_path / "pooled.db")
    monkeypatch.setattr(controls.Pulse, "quiet_s", 0.0)  # a pulse at every look at the pool
    monkeypatch.setattr(controls, "_WAIT_S", 0.2)
    said: list[str] = []
    report = extend(tiny, 1, defenders=["neuron-inspect"], seeds=[0, 1, 2], device="cpu", store=pooled, workers=2,
                    progress=said.append)
    assert (report.played, report.faults) == (3, [])
    # Never silent while a worker trains: the pulse names each group and the last line its worker sent.
    pulses = [line for line in said if line.startswith("  running: ")]
    # Each run's line counts the planned runs (the inspector's first run, which planned them, aside).
    ends = [line.rsplit(" | ", 1)[-1] for line in said if line.startswith("controls tiny: neuron-inspect seed")]
    assert re.fullmatch(r"2/2 runs, \d+:\d\d", ends[-1]) and " runs" not in ends[0], ends
    for seed in (1, 2):  # "... 0:03: training the benign small-cnn ...", "... 0:05: benign: epoch 1/3 ..."
        assert any(re.search(rf"neuron-inspect seed {seed}, benign model 0 \d+:\d\d: \S", p) for p in pulses), said

    def runs(store: Store) -> dict:
        return {(c.seed, c.member): c.result for c in store.controls(tiny.digest)}

    assert runs(pooled) == runs(here) and len(runs(here)) == 3
