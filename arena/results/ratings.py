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
* **Uncertainty from per-seed fits** (``seed_fits``, ``arena.results.intervals``):
  matches are not independent. All matches of one seed share that seed's
  trojans (one per attacker, met by every defender) and control runs (one
  per defender, met by every attacker), so a bad trojan or a lucky
  calibration moves a whole seed's games together. The independent unit is
  the seed: every seed is fitted on its own, and a player's rating is the
  mean of its per-seed ratings with a Student-t interval over them; a
  difference of two ratings is taken within each seed first (paired), which
  is what an ordering claim needs (shared opponents and seeds move two
  ratings together, so whether their own intervals overlap settles
  nothing). The coverage of these intervals is checked by simulation
  (``tests/test_coverage.py``); the percentile seed bootstrap they replace
  covered about 85% at five seeds. With a single seed there is nothing to
  fit separately: the intervals then resample single matches
  (``bootstrap_samples``), which treats the ~15 games sharing a trojan as
  independent and understates the uncertainty, and the result says so
  (``RatingTable.unit``), and no ordering is claimed from it.
* **No rating from the ridge.** A player that wins or loses every game has an
  infinite maximum-likelihood rating; the ridge makes it finite, but the
  number is the ridge's, not the data's. Such a player gets a bound instead
  (``Rating.bound``: below its weakest opponent's rating, or above its
  strongest's), and a player that does so within some seeds says in how many
  (``Rating.ridge_seeds``).
* **Deviance explained** (``deviance_explained``): ``1 - D_model / D_null``
  with the fractional-outcome deviance ``D = -2 sum [s log p + (1 - s) log(1 - p)]``
  and ``D_null`` predicting every game by the mean score. It says how much of
  the variation in outcomes the ratings account for (about 0 when who plays
  whom does not matter), not whether the ratings are right.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np

from arena.results.bt import fit_logodds
from arena.results.intervals import SeedFits, holm, t_interval, t_pvalue

SCALE = 400.0 / math.log(10.0)  # Elo points per unit of natural log-odds
BASE_RATING = 1000.0
DEFAULT_RIDGE = 1e-2
DEFAULT_ANCHOR = "defender:none"

ATTACKER = "attacker"
DEFENDER = "defender"

SEED = "seed"
MATCH = "match"
UNITS = (SEED, MATCH)


@dataclass(frozen=True)
class Game:
    """One match: the attacker's score in [0, 1], the stored match id (``order``, used only by Elo) and the
    match's seed (``cluster``: the games of one seed share trojans and control runs, so the bootstrap
    resamples seeds, not games)."""

    attacker: str
    defender: str
    score: float
    order: int
    cluster: int = 0

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
    bootstrap interval (over seeds unless the table says otherwise; NaN
    without bootstrap rounds or, over seeds, for a player seen in one seed
    only), ``elo`` the online Elo
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
    # "below"/"above" when the player lost/won every game: ``rating`` is then the ridge's, and the data
    # say only that it lies below its weakest opponent (``bound_value``) or above its strongest.
    bound: str | None = None
    bound_value: float = math.nan
    ridge_seeds: int = 0  # seeds in which it lost or won every game (its rating there is the ridge's)

    @property
    def shown(self) -> str:
        """The rating as a table shows it: a number, or a bound."""
        if self.bound == "below":
            return f"< {self.bound_value:.0f}"
        if self.bound == "above":
            return f"> {self.bound_value:.0f}"
        return f"{self.rating:.0f}"


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
    return sorted(games, key=lambda g: (g.attacker, g.defender, g.score, g.order, g.cluster))


def players(games: Iterable[Game]) -> list[str]:
    """Every player key that appears in ``games``, sorted."""
    keys: set[str] = set()
    for g in games:
        keys.add(g.attacker_key)
        keys.add(g.defender_key)
    return sorted(keys)


def _design(games: Sequence[Game], keys: Sequence[str]) -> np.ndarray:
    """The design matrix: a row per game, +1 in the attacker's column and -1 in the defender's."""
    index = {k: i for i, k in enumerate(keys)}
    x = np.zeros((len(games), len(keys)))
    rows = np.arange(len(games))
    x[rows, [index[g.attacker_key] for g in games]] = 1.0
    x[rows, [index[g.defender_key] for g in games]] = -1.0
    return x


def _fit_sorted(games: Sequence[Game], ridge: float) -> dict[str, float]:
    """Unanchored BT ratings (natural log-odds) of already canonically sorted games."""
    keys = players(games)
    s = np.array([g.score for g in games], dtype=float)
    beta = fit_logodds(_design(games, keys), s, np.ones_like(s), ridge)
    return {k: float(beta[i]) for i, k in enumerate(keys)}


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
    return _anchor(_fit_sorted(ordered, ridge), anchor, anchor_rating)


def seeds(games: Iterable[Game]) -> list[int]:
    """The distinct seeds (``Game.cluster``) of ``games``, sorted."""
    return sorted({g.cluster for g in games})


def resolve_unit(games: Iterable[Game], unit: str = SEED) -> str:
    """The bootstrap unit that will be used: ``unit``, except ``"seed"`` falls back to ``"match"`` for one seed.

    With a single seed every seed bootstrap round would redraw the same games,
    giving zero-width intervals that look like certainty; resampling matches
    at least shows the match-to-match noise (and callers must say that it
    understates the uncertainty).
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(map(repr, UNITS))}, got {unit!r}")
    if unit == SEED and len(seeds(games)) < 2:
        return MATCH
    return unit


def _percentile(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of the non-NaN ``values``; ``(nan, nan)`` when there are none."""
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return math.nan, math.nan
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(finite, [tail, 100.0 - tail])
    return float(lo), float(hi)


@dataclass(frozen=True, eq=False)  # eq=False: an array field has no single truth value
class BootstrapSamples:
    """The anchored BT ratings of every kept bootstrap round: ``values[round, j]`` is player ``keys[j]``'s
    rating in that round, NaN when the round's resample lacked the player. ``unit`` is the unit resampled.

    Keeping the rounds (not just per-player percentiles) lets a difference of two
    ratings be read in the same rounds, so its interval reflects that the two
    ratings move together (they share opponents and seeds).
    """

    keys: tuple[str, ...]
    values: np.ndarray
    unit: str

    @property
    def rounds(self) -> int:
        return int(self.values.shape[0])

    def column(self, key: str) -> np.ndarray:
        return self.values[:, self.keys.index(key)]

    def interval(self, key: str, level: float = 0.95) -> tuple[float, float]:
        """Percentile interval of one player's rating (over the rounds that contain the player)."""
        return _percentile(self.column(key), level)

    def difference_interval(self, upper: str, lower: str, level: float = 0.95) -> tuple[float, float]:
        """Percentile interval of ``R_upper - R_lower`` over the rounds that contain both players."""
        return _percentile(self.column(upper) - self.column(lower), level)  # NaN where either is missing


def bootstrap_samples(games: Iterable[Game], rounds: int = 200, seed: int = 0, ridge: float = DEFAULT_RIDGE,
                      anchor: str | None = DEFAULT_ANCHOR, anchor_rating: float = BASE_RATING,
                      unit: str = SEED) -> BootstrapSamples:
    """Refit the BT ratings on ``rounds`` bootstrap resamples and keep every round's ratings.

    ``unit="seed"`` (the default) draws the games' seeds with replacement and
    takes all games of each drawn seed together; ``unit="match"`` draws single
    games. One seed only: falls back to ``"match"`` (``resolve_unit``), and the
    result's ``unit`` says which was used. Over seeds, a player whose games all
    come from one seed gets NaN in every round (no interval). A round whose
    resample lacks the anchor (when the anchor is among the players) is
    dropped, since its ratings would sit on another scale. The games are
    sorted canonically and the generator is ``numpy.random.default_rng(seed)``,
    so the result depends only on the set of games and ``seed``.
    """
    ordered = canonical(games)
    keys = tuple(players(ordered))
    used = resolve_unit(ordered, unit)
    empty = BootstrapSamples(keys, np.empty((0, len(keys))), used)
    if not ordered or rounds <= 0:
        return empty
    index = {k: j for j, k in enumerate(keys)}
    need_anchor = anchor is not None and anchor in index
    # Positions (in canonical order) of each seed's games, seeds sorted: draw j always means the same seed.
    by_seed: dict[int, list[int]] = {}
    for i, g in enumerate(ordered):
        by_seed.setdefault(g.cluster, []).append(i)
    groups = [np.array(by_seed[c]) for c in sorted(by_seed)]
    rng = np.random.default_rng(seed)
    n = len(ordered)
    kept: list[np.ndarray] = []
    for _ in range(rounds):
        if used == SEED:
            pick = np.sort(np.concatenate([groups[j] for j in rng.integers(0, len(groups), size=len(groups))]))
        else:
            pick = np.sort(rng.integers(0, n, size=n))
        sample = [ordered[i] for i in pick]  # sorted positions: the sample is in canonical order
        present = set(players(sample))
        if need_anchor and anchor not in present:
            continue
        fitted = _anchor(_fit_sorted(sample, ridge), anchor, anchor_rating)
        row = np.full(len(keys), np.nan)
        for k in present:
            row[index[k]] = fitted[k]
        kept.append(row)
    if not kept:
        return empty
    values = np.vstack(kept)
    if used == SEED:
        # A player seen in one seed only keeps that seed in every round that has it, so its spread would miss
        # exactly the seed-to-seed noise this bootstrap is for: no interval rather than a falsely narrow one.
        seen: dict[str, set[int]] = {}
        for g in ordered:
            seen.setdefault(g.attacker_key, set()).add(g.cluster)
            seen.setdefault(g.defender_key, set()).add(g.cluster)
        for k, found in seen.items():
            if len(found) < 2:
                values[:, index[k]] = np.nan
    return BootstrapSamples(keys, values, used)


def bootstrap_intervals(games: Iterable[Game], rounds: int = 200, seed: int = 0, ridge: float = DEFAULT_RIDGE,
                        anchor: str | None = DEFAULT_ANCHOR, anchor_rating: float = BASE_RATING,
                        level: float = 0.95, unit: str = SEED) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of the BT ratings (default 95%), keyed by player key.

    Resamples seeds (``unit="seed"``, falling back to single games when there
    is only one seed) or single games (``unit="match"``); see
    ``bootstrap_samples``. A player's interval uses only the rounds whose
    resample contains the player; players with no usable round (or, over
    seeds, seen in one seed only) get ``(nan, nan)``. Same games and seed ->
    same intervals, whatever the input order.
    """
    samples = bootstrap_samples(games, rounds=rounds, seed=seed, ridge=ridge, anchor=anchor,
                                anchor_rating=anchor_rating, unit=unit)
    return {k: samples.interval(k, level) for k in samples.keys}


def seed_fit_values(x: np.ndarray, scores: np.ndarray, anchor: int | None, ridge: float = DEFAULT_RIDGE,
                    present: np.ndarray | None = None, anchor_rating: float = BASE_RATING) -> np.ndarray:
    """Each seed's own BT ratings on the Elo scale: ``x`` (games, players) the design, ``scores`` (seeds,
    games) with NaN for a game not played in that seed. Anchored on column ``anchor`` in every seed (or
    each seed's mean over the players it has, when ``anchor`` is None or missing there). A player
    without a game in a seed is NaN there."""
    played = ~np.isnan(scores)
    w = played.astype(float)
    beta = fit_logodds(x, np.where(played, scores, 0.0), w, ridge)
    has = (w @ np.abs(x)) > 0 if present is None else present
    out = np.full(beta.shape, np.nan)
    for k in range(beta.shape[0]):
        cols = has[k]
        if anchor is not None and cols[anchor]:
            out[k, cols] = anchor_rating + SCALE * (beta[k, cols] - beta[k, anchor])
        elif cols.any():
            out[k, cols] = BASE_RATING + SCALE * (beta[k, cols] - beta[k, cols].mean())
    return out


def seed_fits(games: Iterable[Game], ridge: float = DEFAULT_RIDGE, anchor: str | None = DEFAULT_ANCHOR,
              anchor_rating: float = BASE_RATING) -> SeedFits:
    """Every seed's games fitted on their own (``Game.cluster`` is the seed), as ``SeedFits``.

    The anchor must be in every seed to anchor any (otherwise each seed is centred on its mean), so
    all seeds share one scale."""
    ordered = canonical(games)
    keys = tuple(players(ordered))
    seed_list = tuple(seeds(ordered))
    if not ordered:
        return SeedFits(keys, seed_list, np.empty((0, len(keys))))
    x = _design(ordered, keys)
    row = {c: k for k, c in enumerate(seed_list)}
    scores = np.full((len(seed_list), len(ordered)), np.nan)
    for g, game in enumerate(ordered):
        scores[row[game.cluster], g] = game.score
    col = keys.index(anchor) if anchor in keys else None
    if col is not None and not all(any(g.defender_key == anchor or g.attacker_key == anchor
                                       for g in ordered if g.cluster == c) for c in seed_list):
        col = None
    return SeedFits(keys, seed_list, seed_fit_values(x, scores, col, ridge, anchor_rating=anchor_rating))


def deviance_explained(games: Iterable[Game], ratings: Mapping[str, float]) -> float:
    """``1 - D_model / D_null`` of BT ``ratings`` (Elo scale, any shift) on ``games``.

    ``D = -2 sum [s log p + (1 - s) log(1 - p)]`` over games (the fractional
    outcomes' cross-entropy), with ``p`` the BT win probability for
    ``D_model`` and the mean score, common to all games, for ``D_null``. NaN
    without games or when every score is 0 or every score is 1 (nothing to
    explain).
    """
    ordered = canonical(games)
    if not ordered:
        return math.nan
    s = np.array([g.score for g in ordered])
    x = np.array([(ratings[g.attacker_key] - ratings[g.defender_key]) / SCALE for g in ordered])
    # -log p = log(1 + e^-x) and -log(1 - p) = log(1 + e^x), computed without overflow for lopsided games.
    d_model = 2.0 * float(np.sum(s * np.logaddexp(0.0, -x) + (1.0 - s) * np.logaddexp(0.0, x)))
    mean = float(np.mean(s))
    if not 0.0 < mean < 1.0:
        return math.nan
    d_null = -2.0 * float(np.sum(s * math.log(mean) + (1.0 - s) * math.log1p(-mean)))
    return 1.0 - d_model / d_null


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


@dataclass(frozen=True, eq=False)  # eq=False: the samples hold an array
class RatingTable(Sequence[Rating]):
    """The leaderboard rows (a sequence of ``Rating``, best first) and how their uncertainty was measured.

    ``unit`` is the bootstrap unit actually used (``"seed"`` or ``"match"``),
    ``seeds`` the number of distinct seeds among the games, ``samples`` the
    bootstrap rounds behind the intervals (for ``adjacent_differences``),
    ``deviance_explained`` that of the point fit.
    """

    rows: tuple[Rating, ...]
    unit: str
    seeds: int
    deviance_explained: float
    samples: BootstrapSamples

    @overload
    def __getitem__(self, i: int) -> Rating: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[Rating, ...]: ...

    def __getitem__(self, i: int | slice) -> Rating | tuple[Rating, ...]:
        return self.rows[i]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def rounds(self) -> int:
        """Bootstrap rounds behind the intervals (rounds that lost the anchor are not counted)."""
        return self.samples.rounds


@dataclass(frozen=True)
class PairDifference:
    """``R_upper - R_lower`` of two players of one role at adjacent ranks, with its bootstrap interval."""

    role: str
    upper: Rating
    lower: Rating
    difference: float
    ci_low: float
    ci_high: float
    unit: str

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly on one side of 0 (False without an interval)."""
        return self.ci_low > 0.0 or self.ci_high < 0.0


def adjacent_differences(table: RatingTable, level: float = 0.95) -> dict[str, list[PairDifference]]:
    """Per role, each pair of adjacent ranks with the bootstrap interval of their rating difference.

    The difference is read in the same rounds as the rating intervals, so it
    accounts for the two ratings moving together; an ordering claim should
    rest on it, not on whether the two rating intervals overlap.
    """
    out: dict[str, list[PairDifference]] = {ATTACKER: [], DEFENDER: []}
    for role, pairs in out.items():
        ranked = [r for r in table.rows if r.role == role]
        for up, low in zip(ranked, ranked[1:]):
            lo, hi = table.samples.difference_interval(up.player, low.player, level)
            pairs.append(PairDifference(role=role, upper=up, lower=low, difference=up.rating - low.rating,
                                        ci_low=lo, ci_high=hi, unit=table.samples.unit))
    return out


def _bounds(ordered: Sequence[Game], rating: Mapping[str, float]) -> dict[str, tuple[str, float, int]]:
    """Players who lost or won every game: key -> ("below"/"above", the bound, seeds with such a record),
    and, for everyone, how many seeds they swept or lost whole (ridge-set ratings there)."""
    own: dict[str, dict[int, list[float]]] = {}
    foes: dict[str, set[str]] = {}
    for g in ordered:
        own.setdefault(g.attacker_key, {}).setdefault(g.cluster, []).append(g.score)
        own.setdefault(g.defender_key, {}).setdefault(g.cluster, []).append(1.0 - g.score)
        foes.setdefault(g.attacker_key, set()).add(g.defender_key)
        foes.setdefault(g.defender_key, set()).add(g.attacker_key)
    out = {}
    for key, per_seed in own.items():
        flat = [v for vs in per_seed.values() for v in vs]
        swept = sum(1 for vs in per_seed.values() if all(v == 0.0 for v in vs) or all(v == 1.0 for v in vs))
        others = [rating[f] for f in foes[key] if not math.isnan(rating.get(f, math.nan))]
        if all(v == 0.0 for v in flat) and others:
            out[key] = ("below", min(others), swept)
        elif all(v == 1.0 for v in flat) and others:
            out[key] = ("above", max(others), swept)
        else:
            out[key] = (None, math.nan, swept)
    return out


def rate(games: Iterable[Game], bootstrap_rounds: int = 200, seed: int = 0, ridge: float = DEFAULT_RIDGE,
         anchor: str | None = DEFAULT_ANCHOR, anchor_rating: float = BASE_RATING, unit: str = SEED) -> RatingTable:
    """Leaderboard rows: BT rating with its 95% interval, Elo, match count and mean score.

    Over two or more seeds (``unit="seed"``, the default) a player's rating is the mean of its per-seed
    ratings and its interval a t-interval over them (``seed_fits``); with one seed, or ``unit="match"``,
    the rating is the pooled fit and the interval a percentile bootstrap over matches
    (``RatingTable.unit`` says which). A player that lost or won every game gets a bound
    (``Rating.bound``). Rows are sorted by rating (descending), then name, then player key.
    """
    ordered = canonical(games)
    used = resolve_unit(ordered, unit)
    samples: SeedFits | BootstrapSamples
    if used == SEED:
        samples = seed_fits(ordered, ridge=ridge, anchor=anchor, anchor_rating=anchor_rating)
    else:
        samples = bootstrap_samples(ordered, rounds=bootstrap_rounds, seed=seed, ridge=ridge, anchor=anchor,
                                    anchor_rating=anchor_rating, unit=MATCH)
    if not ordered:
        return RatingTable(rows=(), unit=samples.unit, seeds=0, deviance_explained=math.nan, samples=samples)
    bt = fit_bradley_terry(ordered, ridge=ridge, anchor=anchor, anchor_rating=anchor_rating)
    point = {k: samples.rating(k) for k in bt} if isinstance(samples, SeedFits) else dict(bt)
    online = elo(ordered)
    own: dict[str, list[float]] = {key: [] for key in bt}
    for g in ordered:
        own[g.attacker_key].append(g.score)
        own[g.defender_key].append(1.0 - g.score)
    bounds = _bounds(ordered, point)
    rows = []
    for key, r in point.items():
        role, name = split_key(key)
        bound, value, swept = bounds[key]
        lo, hi = (math.nan, math.nan) if bound else samples.interval(key)
        rows.append(Rating(player=key, role=role, name=name, rating=r, ci_low=lo, ci_high=hi, elo=online[key],
                           matches=len(own[key]), mean_score=math.fsum(own[key]) / len(own[key]), bound=bound,
                           bound_value=value, ridge_seeds=swept if used == SEED else 0))
    rows.sort(key=lambda row: (-row.rating, row.name, row.player))
    return RatingTable(rows=tuple(rows), unit=samples.unit, seeds=len(seeds(ordered)),
                       deviance_explained=deviance_explained(ordered, bt), samples=samples)


@dataclass(frozen=True)
class PairClaim:
    """Two players of one role (``upper`` rated higher), the mean per-seed difference with its 95%
    t-interval, the t-test's p-value and its Holm adjustment over every pair of the role; ``ordered``:
    whether the adjusted p-value is below the family-wise level."""

    role: str
    upper: Rating
    lower: Rating
    difference: float
    ci_low: float
    ci_high: float
    p: float
    p_holm: float
    ordered: bool


def pair_claims(table: RatingTable, alpha: float = 0.05, level: float = 0.95) -> dict[str, list[PairClaim]]:
    """Per role, every pair of players with the evidence for their order (``PairClaim``), in rank order.

    Only per-seed fits support a claim: with one seed (match bootstrap) every pair has p NaN and none
    is ordered. Nor is a pair with a bounded player: its bound compares it with its opponents (the
    other role), not with players of its own role, and its per-seed ratings are the ridge's."""
    out: dict[str, list[PairClaim]] = {ATTACKER: [], DEFENDER: []}
    samples = table.samples
    for role in out:
        ranked = [r for r in table.rows if r.role == role]
        raw = []
        for i, up in enumerate(ranked):
            for low in ranked[i + 1:]:
                if isinstance(samples, SeedFits) and not up.bound and not low.bound:
                    d = samples.differences(up.player, low.player)
                    mean, lo, hi = t_interval(d, level)
                    p = t_pvalue(d)
                else:
                    mean, lo, hi, p = up.rating - low.rating, math.nan, math.nan, math.nan
                raw.append((up, low, mean, lo, hi, p))
        adjusted = holm([r[5] for r in raw])
        out[role] = [PairClaim(role, up, low, mean, lo, hi, p, q, (not math.isnan(q)) and q < alpha)
                     for (up, low, mean, lo, hi, p), q in zip(raw, adjusted)]
    return out
