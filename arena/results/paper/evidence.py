"""Per-seed statistics, their 95% intervals over seeds, and the verdict rule."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy.stats import kendalltau  # scipy comes with scikit-learn, a base dependency

from arena.results.intervals import t_quantile

VERDICTS = ("agrees", "contradicts", "inconclusive", "untested", "not comparable")


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b of two paired sequences; None under 3 pairs or when either is constant."""
    if len(x) < 3:
        return None
    tau = kendalltau(x, y, variant="b").statistic
    return None if math.isnan(tau) else float(tau)


@dataclass(frozen=True)
class SeedStat:
    """One statistic, one value per seed; its mean and 95% t-interval over seeds.

    ``direction`` is the paper's side: +1 when the paper says the statistic
    is above 0. ``scale``/``unit`` only change how it is printed (ASR
    fractions as percentage points). ``missing`` names the matches it needed
    and did not find.
    """

    label: str
    per_seed: Mapping[int, float]
    direction: int = 1
    scale: float = 1.0
    unit: str = ""
    missing: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        return len(self.per_seed)

    @property
    def mean(self) -> float:
        return sum(self.per_seed.values()) / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% Student-t interval of the mean over seeds; None with fewer than two seeds."""
        if self.n < 2:
            return None
        vals = list(self.per_seed.values())
        sd = math.sqrt(sum((v - self.mean) ** 2 for v in vals) / (self.n - 1))
        half = t_quantile(0.95, self.n - 1) * sd / math.sqrt(self.n)
        return self.mean - half, self.mean + half

    def verdict(self) -> str:
        if self.n == 0:
            return "untested"
        ci = self.interval
        if ci is None:
            return "inconclusive"
        lo, hi = (ci[0], ci[1]) if self.direction > 0 else (-ci[1], -ci[0])
        if lo > 0:
            return "agrees"
        if hi < 0:
            return "contradicts"
        return "inconclusive"

    def text(self) -> str:
        if self.n == 0:
            return f"{self.label}: no data"
        f = (lambda v: f"{v * self.scale:+.1f}") if self.scale != 1.0 else (lambda v: f"{v:+.2f}")
        unit = f" {self.unit}" if self.unit else ""
        ci = self.interval
        side = sum(1 for v in self.per_seed.values() if v * self.direction > 0)
        where = "above" if self.direction > 0 else "below"
        if ci is None:
            return f"{self.label}: {f(self.mean)}{unit} (1 seed, no interval)"
        return (f"{self.label}: {f(self.mean)}{unit}, 95% CI [{f(ci[0])}, {f(ci[1])}], n={self.n} seeds "
                f"({side}/{self.n} {where} 0)")


@dataclass(frozen=True)
class Evidence:
    """Our side of one claim: the matched condition, the numbers, the verdict and why."""

    verdict: str
    condition: str
    number: str
    why: str
    stats: tuple[SeedStat, ...] = ()


def judge(stats: Sequence[SeedStat], condition: str, notes: str = "") -> Evidence:
    """The verdict of a claim from its statistics (module docstring: the verdict rule)."""
    number = "; ".join(s.text() for s in stats if s.n) or "-"
    missing = [m for s in stats for m in s.missing]
    untested = [s for s in stats if s.n == 0]
    tail = f" {notes}" if notes else ""
    if untested:
        need = "; ".join(dict.fromkeys(missing)) or "the matches it needs"
        return Evidence("untested", condition, number, f"missing: {need}.{tail}", tuple(stats))
    verdicts = [s.verdict() for s in stats]
    partial = f" Left out where absent: {'; '.join(dict.fromkeys(missing))}." if missing else ""
    if "contradicts" in verdicts:
        bad = [s.label for s, v in zip(stats, verdicts) if v == "contradicts"]
        why = f"the 95% interval lies on the opposite side of 0 from the paper's for: {'; '.join(bad)}."
        return Evidence("contradicts", condition, number, why + partial + tail, tuple(stats))
    if all(v == "agrees" for v in verdicts):
        why = "the 95% interval of every statistic lies on the paper's side of 0."
        return Evidence("agrees", condition, number, why + partial + tail, tuple(stats))
    open_ = [s for s, v in zip(stats, verdicts) if v == "inconclusive"]
    one = [s.label for s in open_ if s.n < 2]
    why = (f"one seed only for {'; '.join(one)}: no interval." if one else
           f"the 95% interval covers 0 for: {'; '.join(s.label for s in open_)}.")
    return Evidence("inconclusive", condition, number, why + partial + tail, tuple(stats))

