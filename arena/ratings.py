"""Ratings for attackers and defenders: Bradley-Terry (the headline) and Elo (for comparison).

The model
---------
Every stored match is a game between one attacker and one defender, and its
outcome is the attacker's score ``s`` in [0, 1] (often fractional: the
effective attack success rate). Bradley-Terry (BT) gives each player a
rating ``R`` on the Elo scale and models

    P(attacker beats defender) = 1 / (1 + 10 ** ((R_d - R_a) / 400)),

i.e. a logistic regression of the outcome on a design row with +1 in the
attacker's column and -1 in the defender's column. Fractional outcomes are
fitted as Chatbot Arena does: each game becomes a ``y = 1`` row weighted ``s``
and a ``y = 0`` row weighted ``1 - s``, so the log-likelihood of a game is
``s log p + (1 - s) log(1 - p)`` (the cross-entropy of the observed score).

Players are keyed by role, ``"attacker:NAME"`` and ``"defender:NAME"``: an
attacker and a defender that share a name (``none`` is both) are different
players that never meet each other as the same entity.

Why these choices
-----------------
* **Maximum likelihood, not Elo, is the headline.** BT uses all games at once
  and does not depend on the order in which matches were played (games are
  sorted canonically before fitting, so even the optimiser sees the same
  input). Online Elo (``elo``) updates game by game in match-id order, so the
  same set of matches played in another order gives other numbers; it is
  shown beside BT as a familiar reference, never as the ranking.
* **A small ridge (L2) term** keeps ratings finite when a player wins or loses
  every game (a ``none`` attacker scores 0 everywhere; its unpenalised MLE is
  minus infinity) and fixes the otherwise free common shift of the ratings.
  It is small enough that ratings of players with real win/loss records move
  by a fraction of an Elo point.
* **The anchor is the ``none`` defender.** BT identifies only differences,
  so one point must be fixed. "No defence" is present in every tournament
  and means the same thing in every scenario, so pinning it at 1000 makes a
  rating read as "how this player fares relative to an undefended model".
  Without it the ratings are shifted so their mean is 1000.
* **Uncertainty by bootstrap over games** (``bootstrap_intervals``): games are
  resampled with replacement and the model is refitted; the 2.5 and 97.5
  percentiles of each player's rating give a 95% interval. The generator is
  seeded and the games are sorted first, so the intervals depend only on the
  set of games and the seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

SCALE = 400.0 / math.log(10.0)  # Elo points per unit of natural log-odds
BASE_RATING = 1000.0
DEFAULT_RIDGE = 1e-2
DEFAULT_ANCHOR = "defender:none"

ATTACKER = "attacker"
DEFENDER = "defender"


@dataclass(frozen=True)
class Game:
    """One match: the attacker's score in [0, 1] and the stored match id (``order``, used only by Elo)."""

    attacker: str
    defender: str
    score: float
    order: int

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0 or math.isnan(self.score):
            raise ValueError(f"a game's score must lie in [0, 1], got {self.score!r}")

    @property
    def attacker_key(self) -> str:
        return player_key(ATTACKER, self.attacker)

    @property
    def defender_key(self) -> str:
        return player_key(DEFENDER, self.defender)


@dataclass(frozen=True)
class Rating:
    """One leaderboard row.

    ``rating`` is the BT rating (anchored), ``ci_low``/``ci_high`` its 95%
    bootstrap interval (NaN without bootstrap rounds), ``elo`` the online Elo
    rating, ``matches`` the number of games the player took part in and
    ``mean_score`` the player's own mean score (the attacker's score for an
    attacker, one minus it for a defender).
    """

    player: str
    role: str
    name: str
    rating: float
    ci_low: float
    ci_high: float
    elo: float
    matches: int
    mean_score: float


def player_key(role: str, name: str) -> str:
    """``"attacker:NAME"`` or ``"defender:NAME"``."""
    if role not in (ATTACKER, DEFENDER):
        raise ValueError(f"role must be {ATTACKER!r} or {DEFENDER!r}, got {role!r}")
    return f"{role}:{name}"


def split_key(key: str) -> tuple[str, str]:
    """``"attacker:./my.py:MyAttack"`` -> ``("attacker", "./my.py:MyAttack")`` (only the first colon splits)."""
    role, sep, name = key.partition(":")
    if not sep or role not in (ATTACKER, DEFENDER):
        raise ValueError(f"not a player key: {key!r}")
    return role, name


def canonical(games: Iterable[Game]) -> list[Game]:
    """The games in a fixed order that depends only on their contents (so results never depend on input order)."""
    return sorted(games, key=lambda g: (g.attacker, g.defender, g.score, g.order))


def players(games: Iterable[Game]) -> list[str]:
    """Every player key that appears in ``games``, sorted."""
    keys: set[str] = set()
    for g in games:
        keys.add(g.attacker_key)
        keys.add(g.defender_key)
    return sorted(keys)


_CONTROLLER = None


def _one_thread():
    """Single-threaded BLAS/OpenMP: the problems are tiny, and thread hand-offs cost far more than they save
    (tenfold on a busy machine); one thread also keeps the arithmetic reproducible."""
    global _CONTROLLER
    if _CONTROLLER is None:
        import sklearn.linear_model  # noqa: F401 - load its OpenMP runtime before looking for thread pools
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1)


def _fit_sorted(games: Sequence[Game], ridge: float) -> dict[str, float]:
    """Unanchored BT ratings (natural log-odds) of already canonically sorted games."""
    from sklearn.linear_model import LogisticRegression

    keys = players(games)
    index = {k: i for i, k in enumerate(keys)}
    n = len(games)
    x = np.zeros((n, len(keys)))
    rows = np.arange(n)
    x[rows, [index[g.attacker_key] for g in games]] = 1.0
    x[rows, [index[g.defender_key] for g in games]] = -1.0
    s = np.array([g.score for g in games], dtype=float)
    # Each game twice: a win weighted s and a loss weighted 1 - s (Chatbot Arena's fractional outcomes).
    design = np.vstack([x, x])
    y = np.concatenate([np.ones(n), np.zeros(n)])
    w = np.concatenate([s, 1.0 - s])
    # sklearn minimises C * sum(w * logloss) + ||beta||^2 / 2, i.e. sum(w * logloss) + ridge/2 * ||beta||^2.
    model = LogisticRegression(C=1.0 / ridge, fit_intercept=False, solver="lbfgs", tol=1e-10, max_iter=10_000)
    model.fit(design, y, sample_weight=w)
    beta = model.coef_[0]
    return {k: float(beta[i]) for k, i in index.items()}


def _anchor(beta: dict[str, float], anchor: str | None, anchor_rating: float) -> dict[str, float]:
    """Log-odds -> Elo scale, shifted so ``anchor`` sits at ``anchor_rating`` (or the mean at BASE_RATING)."""
    if not beta:
        return {}
    if anchor is not None and anchor in beta:
        ref, target = beta[anchor], anchor_rating
    else:
        ref, target = math.fsum(beta.values()) / len(beta), BASE_RATING
    return {k: target + SCALE * (b - ref) for k, b in beta.items()}


def fit_bradley_terry(games: Iterable[Game], ridge: float = DEFAULT_RIDGE, anchor: str | None = DEFAULT_ANCHOR,
                      anchor_rating: float = BASE_RATING) -> dict[str, float]:
    """Maximum-likelihood Bradley-Terry ratings on the Elo scale, keyed by player key.

    Maximises ``sum_games [s log p + (1 - s) log(1 - p)] - ridge/2 * ||beta||^2``
    with ``p = sigmoid(beta_attacker - beta_defender)`` (``beta`` in natural
    log-odds; rating = ``SCALE * beta`` + shift). The ridge is in log-odds
    units, so 1e-2 weighs like a hundredth of a game of evidence per unit
    of log-odds: negligible next to a real record, enough to keep unbeaten
    or winless players finite.

    Ratings are shifted so ``anchor`` (default the ``none`` defender) is
    exactly ``anchor_rating``; without the anchor among the players, so the
    mean rating is 1000. Players in separate connected components (no chain
    of games between them) are compared only through the ridge: read their
    relative ratings with care. The games are sorted canonically first, so
    the result does not depend on their order.
    """
    if ridge <= 0:
        raise ValueError("ridge must be positive (it keeps unbeaten and winless players finite)")
    ordered = canonical(games)
    if not ordered:
        return {}
    with _one_thread():
        return _anchor(_fit_sorted(ordered, ridge), anchor, anchor_rating)


def bootstrap_intervals(games: Iterable[Game], rounds: int = 200, seed: int = 0, ridge: float = DEFAULT_RIDGE,
                        anchor: str | None = DEFAULT_ANCHOR, anchor_rating: float = BASE_RATING,
                        level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of the BT ratings (default 95%), keyed by player key.

    Each round resamples the (canonically sorted) games with replacement using
    ``numpy.random.default_rng(seed)`` and refits. A player's interval uses
    only the rounds whose resample contains the player; a round whose resample
    lacks the anchor (when the anchor is among the players) is skipped, since
    its ratings would sit on another scale. Players with no usable round get
    ``(nan, nan)``. Same games and seed -> same intervals, whatever the input order.
    """
    ordered = canonical(games)
    keys = players(ordered)
    samples: dict[str, list[float]] = {k: [] for k in keys}
    if not ordered or rounds <= 0:
        return {k: (math.nan, math.nan) for k in keys}
    need_anchor = anchor is not None and anchor in samples
    rng = np.random.default_rng(seed)
    n = len(ordered)
    with _one_thread():
        for _ in range(rounds):
            pick = np.sort(rng.integers(0, n, size=n))
            sample = [ordered[i] for i in pick]
            present = set(players(sample))
            if need_anchor and anchor not in present:
                continue
            fitted = _anchor(_fit_sorted(sample, ridge), anchor, anchor_rating)  # sample is sorted already
            for k in present:
                samples[k].append(fitted[k])
    tail = 100.0 * (1.0 - level) / 2.0
    out: dict[str, tuple[float, float]] = {}
    for k in keys:
        if samples[k]:
            lo, hi = np.percentile(np.array(samples[k]), [tail, 100.0 - tail])
            out[k] = (float(lo), float(hi))
        else:
            out[k] = (math.nan, math.nan)
    return out


def elo(games: Iterable[Game], k: float = 32.0, base: float = BASE_RATING) -> dict[str, float]:
    """Online Elo ratings after playing the games in ``order`` (match id) order.

    Each game moves the attacker by ``k * (s - E)`` and the defender by the
    opposite, with ``E = 1 / (1 + 10 ** ((R_d - R_a) / 400))``. Elo depends on
    the order of play by design (recent games weigh more), so the same matches
    in another order give other ratings: it is shown beside the BT rating,
    never as the headline. Ties in ``order`` are broken canonically.
    """
    ordered = sorted(games, key=lambda g: (g.order, g.attacker, g.defender, g.score))
    ratings: dict[str, float] = {key: base for key in players(ordered)}
    for g in ordered:
        a, d = g.attacker_key, g.defender_key
        expected = 1.0 / (1.0 + 10.0 ** ((ratings[d] - ratings[a]) / 400.0))
        delta = k * (g.score - expected)
        ratings[a] += delta
        ratings[d] -= delta
    return ratings


def rate(games: Iterable[Game], bootstrap_rounds: int = 200, seed: int = 0, ridge: float = DEFAULT_RIDGE,
         anchor: str | None = DEFAULT_ANCHOR, anchor_rating: float = BASE_RATING) -> list[Rating]:
    """Leaderboard rows: BT rating with bootstrap interval, Elo, match count and mean score.

    Sorted by BT rating (descending), then name, then player key.
    """
    ordered = canonical(games)
    if not ordered:
        return []
    bt = fit_bradley_terry(ordered, ridge=ridge, anchor=anchor, anchor_rating=anchor_rating)
    ci = bootstrap_intervals(ordered, rounds=bootstrap_rounds, seed=seed, ridge=ridge, anchor=anchor,
                             anchor_rating=anchor_rating)
    online = elo(ordered)
    own: dict[str, list[float]] = {key: [] for key in bt}
    for g in ordered:
        own[g.attacker_key].append(g.score)
        own[g.defender_key].append(1.0 - g.score)
    rows = []
    for key, r in bt.items():
        role, name = split_key(key)
        lo, hi = ci[key]
        rows.append(Rating(player=key, role=role, name=name, rating=r, ci_low=lo, ci_high=hi, elo=online[key],
                           matches=len(own[key]), mean_score=math.fsum(own[key]) / len(own[key])))
    rows.sort(key=lambda row: (-row.rating, row.name, row.player))
    return rows
