"""Replays: a stored match played again from scratch reproduces bit for bit on the same machine."""

from __future__ import annotations

import pytest

import dataclasses

from arena.engine.environment import environment
from arena.results.io import read_jsonl_gz, write_jsonl_gz
from arena.run.replay import compare, replay
from arena.results.store import MatchRecord
from conftest import requires_fmnist

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)


@requires_fmnist
def test_a_replayed_match_is_bit_for_bit_and_drift_is_reported(referee, tiny_path, tmp_path):
    rec = referee.play("badnet", "none", seed=0).record
    assert rec.metrics["environment"] == environment("cpu")
    published = write_jsonl_gz([rec], tmp_path / "tiny.matches.jsonl.gz")
    (back,) = read_jsonl_gz(published)
    (drift,) = replay([back], scenario_name=str(tiny_path))  # benign model and trojan re-trained
    assert drift.identical, drift.differing
    # A published number that moved is found and named.
    moved = dataclasses.replace(back, metrics={**back.metrics, "attack": {**back.metrics["attack"], "asr": 0.5}})
    d = compare(moved, back)
    assert not d.identical and d.worst == "metrics.attack.asr" and abs(d.max_drift - (back.metrics["attack"]["asr"] - 0.5)) < 1e-12


def test_published_matches_have_deterministic_bytes(tmp_path):
    recs = [MatchRecord("s", "d", "a", "1", "x", "1", seed, 1, "ok", outcome=0.5, id=seed) for seed in (2, 0, 1)]
    one = write_jsonl_gz(recs, tmp_path / "one.jsonl.gz").read_bytes()
    two = write_jsonl_gz(list(reversed(recs)), tmp_path / "two.jsonl.gz").read_bytes()
    assert one == two and [r.seed for r in read_jsonl_gz(tmp_path / "one.jsonl.gz")] == [0, 1, 2]
