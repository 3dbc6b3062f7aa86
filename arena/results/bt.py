"""The Bradley-Terry fit itself: penalised maximum likelihood by Newton's method, many fits at once.

Each game is a design row with +1 in the attacker's column and -1 in the
defender's, and its fractional score ``s`` in [0, 1] enters the likelihood as
``s log p + (1 - s) log(1 - p)`` with ``p = sigmoid(row . beta)``. Maximised
with a ridge ``-ridge/2 ||beta||^2``, the objective is strictly concave, so
Newton's method converges to its one maximum in a handful of steps (steps are
clipped, so a player who wins or loses everything cannot overshoot).

``fit_logodds`` fits a batch of problems that share one design and differ in
their scores and game weights (seeds: weight 0 for the games of other seeds;
bootstrap rounds: how often each game was drawn), so a leaderboard's per-seed
fits, and the coverage simulation's thousands of them, are a few array
operations each step instead of one solver call per fit.
"""

from __future__ import annotations

import numpy as np

MAX_STEP = 4.0  # natural log-odds per Newton step: a safeguard far from the maximum, never binding near it


def fit_logodds(x: np.ndarray, scores: np.ndarray, weights: np.ndarray, ridge: float, tol: float = 1e-10,
                max_iter: int = 200) -> np.ndarray:
    """Penalised BT fits in natural log-odds: ``x`` (games, players) design; ``scores`` and ``weights``
    (fits, games), or (games,) for one fit. Returns (fits, players), or (players,) for one fit.

    A player with no weighted game in a fit gets 0 there (the ridge alone): callers mark it missing."""
    if ridge <= 0:
        raise ValueError("ridge must be positive (it keeps unbeaten and winless players finite)")
    single = scores.ndim == 1
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    n_players = x.shape[1]
    beta = np.zeros((s.shape[0], n_players))
    eye = ridge * np.eye(n_players)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(beta @ x.T)))
        grad = ((s - p) * w) @ x - ridge * beta
        hess = np.einsum("fg,gi,gj->fij", w * p * (1.0 - p), x, x) + eye
        step = np.clip(np.linalg.solve(hess, grad[..., None])[..., 0], -MAX_STEP, MAX_STEP)
        beta += step
        if np.abs(step).max() < tol:
            break
    return beta[0] if single else beta
