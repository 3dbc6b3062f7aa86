"""Parallel tournaments: worker processes share the store and the artifact cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from arena.run import tournament
from arena.results.store import Store

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)


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


SLEEPER = '''
import sys, time
from arena.api import Attacker


class Sleeper(Attacker):
    name = "sleeper"

    def craft(self, ctx):
        # Said on stderr (the sandbox lets an agent write nothing outside its scratch folder).
        print("sleeper: crafting", file=sys.stderr, flush=True)
        time.sleep(300)
'''


def _session_processes(sid: int) -> list[int]:
    """Live processes of session ``sid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # session id; zombies are already dead
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_stops_a_pooled_tournament_at_once_and_leaves_no_process(tiny_path, referee, tmp_path):
    """A scheduler's SIGTERM (or `kill`) to the tournament alone: it says how to resume and exits
    in seconds, not after the matches in flight, and no worker or agent process computes on."""
    referee.benign(0)  # the workers find it in the shared cache
    plugin = tmp_path / "sleeper.py"
    plugin.write_text(SLEEPER)
    env = {**os.environ, "ARENA_HOME": os.environ["ARENA_HOME"]}
    proc = subprocess.Popen([sys.executable, "-m", "arena.cli", "tournament", "-s", str(tiny_path),
                             "-a", f"{plugin}:Sleeper", "-d", "none,strip", "--workers", "2"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own session: the signal reaches the driver only
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while not any("sleeper: crafting" in line for line in lines) and time.monotonic() < deadline \
                and proc.poll() is None:
            time.sleep(0.5)
        assert any("sleeper: crafting" in line for line in lines), "".join(lines)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=30)
        err = "".join(lines)
        assert time.monotonic() - start < 30
        assert proc.returncode == 130 and "interrupted" in err and "run the same command again" in err
        assert "Traceback" not in err, err  # agent processes whose referee is gone exit without a word
        deadline = time.monotonic() + 15
        while _session_processes(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _session_processes(proc.pid) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _session_processes(proc.pid):
            os.kill(pid, signal.SIGKILL)
