"""How much a leaderboard owes to its roster: leave-one-agent-out ranks, and the payoff matrix as a game.

Bradley-Terry ratings depend on who else plays: adding a defender that every
attacker beats lifts every attacker a little, and removing an attacker that
only one defender stops can swap two defenders. Two views that say how much:

- ``leave_one_out``: every agent removed in turn and the ratings refitted;
  each remaining agent's rank within its role over all those rosters (its
  range is the roster sensitivity of its rank).
- ``nash``: the attacker x defender matrix of mean attacker scores read as a
  zero-sum game (Balduzzi et al., "Re-evaluating evaluation", NeurIPS 2018).
  Its value is what the best defence mixture concedes to the best attack;
  the maximum-entropy equilibrium says which mixture of defences a model owner
  should deploy (and which attacks are the best response to it), and is
  invariant to adding copies of an agent, which a rating is not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from arena.results.ratings import ATTACKER, DEFENDER, Game, rate


@dataclass(frozen=True)
class RankRange:
    player: str
    role: str
    name: str
    rank: int  # within its role, on the full roster
    best: int  # best (lowest) rank over the leave-one-out rosters
    worst: int
    moved_most_by: str | None  # the removed agent that moved it furthest


def _role_ranks(games: Sequence[Game], unit: str) -> dict[str, int]:
    table = rate(games, bootstrap_rounds=0, unit=unit)
    ranks: dict[str, int] = {}
    for role in (ATTACKER, DEFENDER):
        for i, r in enumerate((r for r in table if r.role == role), start=1):
            ranks[r.player] = i
    return ranks


def leave_one_out(games: Sequence[Game], unit: str = "seed") -> list[RankRange]:
    """Each agent's rank within its role on the full roster and over every roster missing one other agent
    (ranks among the remaining agents of the role: an agent ranked below the removed one moves up one by
    construction, so that shift is taken out)."""
    games = list(games)
    full = _role_ranks(games, unit)
    seen: dict[str, list[tuple[int, str]]] = {k: [] for k in full}
    for removed in sorted(full):
        kept = [g for g in games if removed not in (g.attacker_key, g.defender_key)]
        ranks = _role_ranks(kept, unit)
        for player, r in ranks.items():
            same_role = player.split(":")[0] == removed.split(":")[0]
            shift = 1 if same_role and full[removed] < full[player] else 0
            seen[player].append((r + shift, removed))
    out = []
    for player, rank in sorted(full.items(), key=lambda kv: (kv[0].split(":")[0], kv[1])):
        rs = seen[player] or [(rank, "")]
        far = max(rs, key=lambda rr: (abs(rr[0] - rank), rr[1]))
        role, _, name = player.partition(":")
        out.append(RankRange(player, role, name, rank, min(r for r, _ in rs), max(r for r, _ in rs),
                             far[1] if far[0] != rank else None))
    return out


@dataclass(frozen=True)
class Equilibrium:
    value: float  # the attacker's expected score when both sides play their equilibrium mixtures
    attackers: dict[str, float]  # maximum-entropy equilibrium mixture over attackers
    defenders: dict[str, float]


def _solve(m: np.ndarray) -> tuple[float, np.ndarray]:
    """Value and an optimal mixture of the column player (who minimises) of the zero-sum game ``m``."""
    from scipy.optimize import linprog  # scipy comes with scikit-learn, a base dependency

    rows, cols = m.shape
    # variables: y (cols), v; minimise v subject to m y <= v, sum y = 1, y >= 0
    c = np.r_[np.zeros(cols), 1.0]
    a_ub = np.c_[m, -np.ones(rows)]
    res = linprog(c, A_ub=a_ub, b_ub=np.zeros(rows), A_eq=np.r_[np.ones(cols), 0.0][None, :], b_eq=[1.0],
                  bounds=[(0, None)] * cols + [(None, None)], method="highs")
    if not res.success:
        raise ValueError(f"the equilibrium linear program failed: {res.message}")
    return float(res.x[-1]), res.x[:cols]


def _max_entropy(m: np.ndarray, value: float, start: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Among the column player's mixtures that hold every row to at most ``value``, the one of largest
    entropy (the equilibrium set is convex; entropy makes the choice unique)."""
    from scipy.optimize import minimize

    cols = m.shape[1]

    def neg_entropy(y: np.ndarray) -> float:
        y = np.clip(y, 1e-12, 1.0)
        return float(np.sum(y * np.log(y)))

    res = minimize(neg_entropy, np.clip(start, 1e-6, 1.0) / np.clip(start, 1e-6, 1.0).sum(), method="SLSQP",
                   bounds=[(0.0, 1.0)] * cols,
                   constraints=[{"type": "eq", "fun": lambda y: np.sum(y) - 1.0},
                                {"type": "ineq", "fun": lambda y: value + tol - m @ y}],
                   options={"ftol": 1e-12, "maxiter": 500})
    y = np.clip(res.x, 0.0, None) if res.success else start
    y = y / y.sum()
    return y if np.max(m @ y) <= value + 1e-4 else start  # fall back to the LP's equilibrium


def nash(matrix: pd.DataFrame) -> Equilibrium:
    """The maximum-entropy Nash equilibrium of the attacker (rows, maximise) x defender (columns, minimise)
    mean-score matrix. Pairs that never met (NaN) are left out by dropping agents with any."""
    m = matrix.dropna(axis=0, how="any").dropna(axis=1, how="any")
    if m.empty:
        return Equilibrium(math.nan, {}, {})
    a = m.to_numpy(dtype=float)
    value, y = _solve(a)
    _, x = _solve(-a.T)  # the attacker's mixture: the defender's problem of the negated transpose
    y = _max_entropy(a, value, y)
    x = _max_entropy(-a.T, -value, x)
    clean = lambda w: {str(k): round(float(v), 4) for k, v in zip(w[0], w[1]) if v > 5e-4}  # noqa: E731
    return Equilibrium(value, clean((m.index, x)), clean((m.columns, y)))
