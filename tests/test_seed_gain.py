"""`arena leaderboard --baseline-seeds`: what the seeds beyond a baseline added, computed by the board's own rules.

Synthetic matches from a known Bradley-Terry truth (no training): each seed's outcomes are the
truth's win probabilities with a little per-seed jitter, so which orders the t-test can carry at
3 and at 12 seeds is known in advance.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from arena.cli import main
from arena.core.errors import ArenaError
from arena.results.record import ControlRecord, MatchRecord
from arena.results.seed_gain import parse_seeds, render_seed_gain, seed_gain
from arena.results.store import Store

DEFENDERS = {"none": 1000.0, "strip": 1150.0, "nc": 1300.0}


def p_win(ra: float, rd: float) -> float:
    return 1.0 / (1.0 + 10 ** ((rd - ra) / 400))


def matches(attackers: dict[int, dict[str, float]], jitter: float = 40.0, draw: int = 0) -> list[MatchRecord]:
    """Per seed, every attacker against every defender; ``attackers[seed]`` the true attacker ratings there."""
    rng = np.random.default_rng(draw)
    out = []
    for seed, truth in attackers.items():
        for a, ra in truth.items():
            shift = rng.normal(0.0, jitter)  # the seed's draw of this attacker (its trojan, say)
            for d, rd in DEFENDERS.items():
                out.append(MatchRecord(scenario="s", scenario_digest="d" * 16, attacker=a, attacker_version="1",
                                       defender=d, defender_version="1", seed=seed, rounds=1, status="ok",
                                       outcome=p_win(ra + shift, rd), id=len(out) + 1))
    return out


def benign(seeds: range, flagged_seeds: set[int]) -> list[ControlRecord]:
    """Two benign models a seed for `nc`, one of them flagged in ``flagged_seeds``."""
    return [ControlRecord(scenario="s", scenario_digest="d" * 16, defender="nc", defender_version="1", seed=s,
                          member=m, result={"flagged": m == 0 and s in flagged_seeds, "verdict": True})
            for s in seeds for m in range(2)]


STEADY = {"strong": 1500.0, "close": 1440.0, "weak": 900.0}


def test_more_seeds_order_a_close_pair_and_keep_the_clear_ones():
    # A fixed draw (2). Over draws 0-19, 3 seeds order the close pair by chance in about a quarter of
    # them (draw 0 is one), which is why the pair is chosen on a draw where they do not.
    recs = matches({s: STEADY for s in range(12)}, draw=2)
    g = seed_gain(recs, range(3), model_fpr=0.05)
    assert g.baseline == (0, 1, 2) and g.seeds == tuple(range(12))
    pairs = lambda orders: {(o.upper, o.lower) for o in orders if o.role == "attacker"}
    # 500+ points apart: ordered on 3 seeds already; 60 apart with 40-point jitter: only on 12.
    assert {("strong", "weak"), ("close", "weak")} <= pairs(g.kept)
    assert ("strong", "close") in pairs(g.gained)
    assert not g.lost and not g.reversed
    assert ("attacker", "strong", "close") not in g.open_adjacent
    before, after = g.width["attacker"]
    assert after < before  # 12 seeds narrow the t-intervals (t quantile and sqrt(n) both shrink)
    text = "\n".join(render_seed_gain(g))
    assert "## What seeds 3-11 added to seeds 0-2" in text
    gained = next(o for o in g.gained if (o.upper, o.lower) == ("strong", "close"))
    assert f"`strong` > `close` [{gained.ci_low:.0f}, {gained.ci_high:.0f}]" in text  # never without its interval


def test_an_order_the_later_seeds_overturn_is_reported_reversed():
    early = {"a": 1500.0, "b": 1200.0, "weak": 800.0}
    late = {"a": 1200.0, "b": 1500.0, "weak": 800.0}
    recs = matches({s: early if s < 3 else late for s in range(18)}, jitter=20.0)
    g = seed_gain(recs, [0, 1, 2], model_fpr=0.05)
    rev = [o for o in g.reversed if o.role == "attacker"]
    assert [(o.upper, o.lower) for o in rev] == [("b", "a")]
    assert rev[0].ci_low > 0  # the whole board's claim, with its own interval
    assert "Reversed: `b` > `a`" in "\n".join(render_seed_gain(g))


def test_a_usability_verdict_that_moves_with_the_pooled_population():
    recs = matches({s: STEADY for s in range(12)})
    # 2 flags in 6 models (seeds 0-2): p = 0.033, unusable at 5%; the same 2 in 24 models: p = 0.34.
    g = seed_gain(recs, range(3), model_fpr=0.05, controls=benign(range(12), {0, 1}))
    [v] = g.verdicts
    assert v.defender == "nc" and not v.before.usable and v.after.usable
    assert (v.before.flagged, v.before.models, v.after.flagged, v.after.models) == (2, 6, 2, 24)
    assert "`nc` 2/6 unusable -> 2/24 usable" in "\n".join(render_seed_gain(g))
    assert not seed_gain(recs, range(3), 0.05, benign(range(12), set())).verdicts


def test_seed_lists_and_bad_baselines_get_clear_errors():
    assert parse_seeds("10-12,15") == (10, 11, 12, 15)
    assert parse_seeds(" 3 , 1 ") == (1, 3)
    for bad in ("ten", "5-2", "", "1-"):
        with pytest.raises(ArenaError):
            parse_seeds(bad)
    recs = matches({s: STEADY for s in range(4)})
    with pytest.raises(ArenaError, match="no stored match"):
        seed_gain(recs, [0, 9], 0.05)
    with pytest.raises(ArenaError, match="fewer than all"):
        seed_gain(recs, range(4), 0.05)
    with pytest.raises(ArenaError, match="at least two"):
        seed_gain(recs, [0], 0.05)


def test_the_cli_prints_the_section_and_its_json(tmp_path, monkeypatch):
    monkeypatch.setenv("ARENA_HOME", str(tmp_path / "home"))
    store = Store()
    for r in matches({s: STEADY for s in range(6)}):
        store.save(r)
    store.close()
    run = lambda *a: CliRunner().invoke(main, ["leaderboard", "s", *a], catch_exceptions=False)
    out = run("--baseline-seeds", "0-2")
    assert out.exit_code == 0, out.output
    assert "## What seeds 3-5 added to seeds 0-2" in out.output
    data = json.loads(run("--baseline-seeds", "0-2", "--json").stdout)
    assert data["seed_gain"]["baseline"] == [0, 1, 2]
    bad = run("--baseline-seeds", "0-9")
    assert bad.exit_code != 0 and "no stored match" in bad.output
