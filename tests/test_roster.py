"""Roster sensitivity: leave-one-agent-out ranks and the payoff matrix as a zero-sum game (no training)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from arena.results.ratings import Game
from arena.results.roster import leave_one_out, nash


def test_rock_paper_scissors_has_the_uniform_equilibrium():
    m = pd.DataFrame([[0.5, 1, 0], [0, 0.5, 1], [1, 0, 0.5]], index=list("abc"), columns=list("xyz"))
    e = nash(m)
    assert e.value == pytest.approx(0.5, abs=1e-6)
    assert e.attackers == pytest.approx({k: 1 / 3 for k in "abc"}, abs=1e-3)
    assert e.defenders == pytest.approx({k: 1 / 3 for k in "xyz"}, abs=1e-3)


def test_a_dominated_defence_gets_no_weight_and_a_copy_shares_its_original_weight():
    m = pd.DataFrame([[0.2, 0.9, 0.3], [0.8, 0.9, 0.4]], index=["a", "b"], columns=["x", "weak", "y"])
    e = nash(m)
    assert "weak" not in e.defenders  # concedes more than x against every attack
    copied = m.assign(y2=m["y"])
    e2 = nash(copied)
    # Maximum entropy splits the weight of y between its two identical copies: adding a clone of an agent
    # changes nobody else's weight (a rating would shift).
    assert e2.value == pytest.approx(e.value, abs=1e-6)
    assert e2.defenders["y"] == pytest.approx(e2.defenders["y2"], abs=1e-3)
    assert e2.defenders["y"] + e2.defenders["y2"] == pytest.approx(e.defenders["y"], abs=1e-3)


def test_leaving_one_agent_out_can_swap_two_defenders():
    # d1 stops attacker A completely but concedes much to B; d2 is the other way round, milder. With both
    # attackers d1 ranks above d2; without A, d2 ranks above d1.
    rng = np.random.default_rng(0)
    means = {("A", "d1"): 0.02, ("A", "d2"): 0.95, ("B", "d1"): 0.9, ("B", "d2"): 0.5,
             ("A", "none"): 0.97, ("B", "none"): 0.97}
    games = [Game(a, d, float(np.clip(mu + rng.normal(0, 0.01), 0, 1)), i, seed)
             for seed in range(5) for i, ((a, d), mu) in enumerate(means.items())]
    ranges = {r.player: r for r in leave_one_out(games)}
    d1, d2 = ranges["defender:d1"], ranges["defender:d2"]
    assert (d1.rank, d2.rank) == (1, 2)
    assert (d1.best, d1.worst) == (1, 2) and d1.moved_most_by == "attacker:A"
    assert (d2.best, d2.worst) == (1, 2)
    assert ranges["defender:none"].best == ranges["defender:none"].worst == 3  # last whatever is removed
