"""Do the leaderboard's 95% intervals cover 95%? A simulation with a known Bradley-Terry truth (numpy only).

Each replicate draws true ratings for 6 attackers and 8 defenders (the first
defender the anchor, as `none` is), then S seeds: every player gets a
seed-level shock (its trojan or its control run that seed), and every pair
plays one game whose fractional score is drawn from a Beta distribution with
mean sigmoid(R_a - R_d + shocks), as the arena's effective ASRs are fractions.
The leaderboard's own code fits every seed (``seed_fit_values``) and builds
t-intervals (``intervals.t_interval``); the test counts how often they hold
the truth (anchored ratings, and paired differences).
"""

from __future__ import annotations

import numpy as np
import pytest

from arena.results.intervals import holm, t_interval
from arena.results.ratings import BASE_RATING, SCALE, seed_fit_values

ATTACKERS, DEFENDERS = 6, 8


def simulate(seeds: int, replicates: int, shock: float, rng: np.random.Generator) -> tuple[float, float]:
    players = ATTACKERS + DEFENDERS
    pairs = [(a, ATTACKERS + d) for a in range(ATTACKERS) for d in range(DEFENDERS)]
    x = np.zeros((len(pairs), players))
    for g, (a, d) in enumerate(pairs):
        x[g, a], x[g, d] = 1.0, -1.0
    anchor = ATTACKERS  # the first defender
    hits, diff_hits = [], []
    for _ in range(replicates):
        truth = np.concatenate([rng.normal(0.0, 1.0, ATTACKERS), rng.normal(0.5, 1.0, DEFENDERS)])
        truth -= truth[anchor]
        eta = (truth + rng.normal(0.0, shock, (seeds, players))) @ x.T
        mean = 1.0 / (1.0 + np.exp(-eta))
        scores = rng.beta(30.0 * mean, 30.0 * (1.0 - mean))
        values = (seed_fit_values(x, scores, anchor) - BASE_RATING) / SCALE  # (seeds, players), log-odds
        for j in range(players):
            if j == anchor:
                continue
            _, lo, hi = t_interval(values[:, j])
            hits.append(lo <= truth[j] <= hi)
        _, lo, hi = t_interval(values[:, 0] - values[:, 1])  # a paired difference of two attackers
        diff_hits.append(lo <= truth[0] - truth[1] <= hi)
    return float(np.mean(hits)), float(np.mean(diff_hits))


@pytest.mark.parametrize("seeds", [5, 20])
@pytest.mark.parametrize("shock", [0.4, 0.8])
def test_t_intervals_over_seed_fits_cover_95_percent(seeds, shock):
    rating, difference = simulate(seeds, replicates=300, shock=shock, rng=np.random.default_rng(seeds))
    # 300 replicates x 13 ratings: the binomial standard error of the coverage is about 0.005 (ratings of
    # one replicate share its shocks, so a little more); the differences, one per replicate, about 0.013.
    assert 0.93 <= rating <= 0.97, rating
    assert 0.91 <= difference <= 0.99, difference


def test_a_percentile_bootstrap_of_five_seeds_would_not():
    # What the old leaderboard did, on the same kind of data: resample 5 per-seed values with replacement and
    # take percentiles. It undercovers, which is why the t-interval replaced it.
    rng = np.random.default_rng(0)
    hits = []
    for _ in range(2000):
        v = rng.normal(0.0, 1.0, 5)
        boot = rng.choice(v, size=(200, 5)).mean(1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        hits.append(lo <= 0.0 <= hi)
    assert np.mean(hits) < 0.9
    _, lo, hi = t_interval(np.array([1.0, 2.0, 3.0]))
    assert (lo, hi) == pytest.approx((2 - 4.303 * 1 / np.sqrt(3), 2 + 4.303 / np.sqrt(3)), abs=1e-3)


def test_holm_adjusts_step_down_and_keeps_order():
    assert holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(holm([0.01, float("nan")])[1])
