"""Intervals over seeds whose coverage is checked, and ordering claims corrected for multiplicity.

Why per-seed fits and a t-interval
----------------------------------
The matches of one seed share its trojans and control runs, so the seed is
the independent unit. Earlier leaderboards resampled seeds with a percentile
bootstrap; with five seeds that covers about 85% when it says 95% (it treats
the five observed seeds as the whole population, and its percentiles of five
draws cannot reach the tails). Here each seed is fitted on its own, giving S
independent estimates of every rating, and the interval is Student's t over
them: mean +- t(S-1) * sd / sqrt(S). It assumes the per-seed estimates are
roughly normal around the truth; ``tests/test_coverage.py`` simulates known
Bradley-Terry truths with seed-level shocks and checks that 95% intervals
cover 93-97% at S = 5 and S = 20, for ratings and for differences.

The rating shown is the mean of the per-seed ratings (the interval's centre).
A pooled fit over all seeds at once estimates a population-averaged effect
that seed-to-seed shocks pull towards 0, and intervals centred on it covered
only 0.90-0.93 in the simulation with large shocks.

Differences are taken within each seed (paired: the two players met the same
trojans or control runs there) before the t-interval, so the interval of a
difference accounts for how the two ratings move together.

Claims over every pair
----------------------
An ordering "A ranks above B" is claimed only where the two-sided t-test of
the mean per-seed difference rejects 0 after Holm's step-down correction over
every pair of the same role at family-wise level 5%. Holm controls the chance
of any false ordering among all the pairs a table implies (adjacent or not),
and is never less powerful than Bonferroni.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def t_quantile(level: float, dof: int) -> float:
    """The two-sided ``level`` quantile of Student's t with ``dof`` degrees of freedom."""
    from scipy.stats import t  # scipy comes with scikit-learn, a base dependency

    return float(t.ppf(0.5 + level / 2.0, dof))


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the non-NaN ``values`` (one per seed); NaN bounds with fewer than two."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, math.nan, math.nan
    half = t_quantile(level, v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return mean, mean - half, mean + half


def t_pvalue(values: np.ndarray) -> float:
    """Two-sided p-value of the one-sample t-test that the non-NaN ``values`` have mean 0."""
    from scipy.stats import t

    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size < 2:
        return math.nan
    sd = float(v.std(ddof=1))
    if sd == 0.0:
        return 0.0 if v.mean() != 0.0 else 1.0
    stat = float(v.mean()) / (sd / math.sqrt(v.size))
    return float(2.0 * t.sf(abs(stat), v.size - 1))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (step-down, monotone, capped at 1); NaN stays NaN and is not counted."""
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    order = sorted(idx, key=lambda i: pvalues[i])
    m = len(order)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


@dataclass(frozen=True, eq=False)  # eq=False: an array field has no single truth value
class SeedFits:
    """Every seed's own ratings: ``values[k, j]`` is player ``keys[j]``'s rating fitted on seed ``seeds[k]``
    alone (NaN where the player did not play that seed). Intervals are t-intervals over the seeds."""

    keys: tuple[str, ...]
    seeds: tuple[int, ...]
    values: np.ndarray
    unit: str = "seed"

    @property
    def rounds(self) -> int:
        return len(self.seeds)

    def column(self, key: str) -> np.ndarray:
        return self.values[:, self.keys.index(key)]

    def rating(self, key: str) -> float:
        return t_interval(self.column(key))[0]

    def interval(self, key: str, level: float = 0.95) -> tuple[float, float]:
        _, lo, hi = t_interval(self.column(key), level)
        return lo, hi

    def differences(self, upper: str, lower: str) -> np.ndarray:
        """``R_upper - R_lower`` per seed (NaN where either did not play)."""
        return self.column(upper) - self.column(lower)

    def difference_interval(self, upper: str, lower: str, level: float = 0.95) -> tuple[float, float]:
        _, lo, hi = t_interval(self.differences(upper, lower), level)
        return lo, hi

    def difference_pvalue(self, upper: str, lower: str) -> float:
        return t_pvalue(self.differences(upper, lower))
