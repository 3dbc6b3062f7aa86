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
    is above 0. ``size`` is the paper's size of effect on the statistic's own
    scale (before ``scale``), counted on the paper's side: the least the
    paper's words or numbers claim (``size_note`` says where it comes from);
    None where the claim is about a sign or an order only. ``scale``/``unit``
    only change how it is printed (ASR fractions as percentage points).
    ``missing`` names the matches it needed and did not find. A statistic with
    ``judged`` False is reported beside the others (e.g. the same number
    counted the lenient way) and does not enter the verdict.
    """

    label: str
    per_seed: Mapping[int, float]
    direction: int = 1
    scale: float = 1.0
    unit: str = ""
    missing: tuple[str, ...] = ()
    size: float | None = None
    size_note: str = ""
    judged: bool = True

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

    def oriented(self) -> tuple[float, float] | None:
        """The interval turned to the paper's side (the paper's claim is then 'above 0')."""
        ci = self.interval
        if ci is None:
            return None
        return (ci[0], ci[1]) if self.direction > 0 else (-ci[1], -ci[0])

    def too_small(self) -> bool:
        """Whether the interval excludes the paper's size of effect (its upper end falls short of it)."""
        side = self.oriented()
        return side is not None and self.size is not None and side[1] < self.size

    def verdict(self) -> str:
        """The module docstring's rule: agrees only when the interval excludes 0 *and* still reaches the
        paper's size of effect; contradicts when it lies on the opposite side of 0; else inconclusive."""
        if self.n == 0:
            return "untested"
        side = self.oriented()
        if side is None:
            return "inconclusive"
        if side[1] < 0:
            return "contradicts"
        if side[0] > 0 and not self.too_small():
            return "agrees"
        return "inconclusive"

    def fmt(self, v: float) -> str:
        """A value of this statistic as the page prints it (points for scaled statistics)."""
        return f"{v * self.scale:+.1f}" if self.scale != 1.0 else f"{v:+.2f}"

    def text(self) -> str:
        if self.n == 0:
            return f"{self.label}: no data"
        unit = f" {self.unit}" if self.unit else ""
        ci = self.interval
        side = sum(1 for v in self.per_seed.values() if v * self.direction > 0)
        where = "above" if self.direction > 0 else "below"
        lenient = "" if self.judged else " [reported, not judged]"
        if ci is None:
            return f"{self.label}: {self.fmt(self.mean)}{unit} (1 seed, no interval){lenient}"
        size = ""
        if self.size is not None:
            size = f"; paper's size {self.fmt(self.size * self.direction)}{unit}"
        return (f"{self.label}: {self.fmt(self.mean)}{unit}, 95% CI [{self.fmt(ci[0])}, {self.fmt(ci[1])}], "
                f"n={self.n} seeds ({side}/{self.n} {where} 0{size}){lenient}")


@dataclass(frozen=True)
class Evidence:
    """Our side of one claim: the matched condition, the numbers, the verdict and why."""

    verdict: str
    condition: str
    number: str
    why: str
    stats: tuple[SeedStat, ...] = ()


def judge(stats: Sequence[SeedStat], condition: str, notes: str = "", confounded: str = "") -> Evidence:
    """The verdict of a claim from its statistics (module docstring: the verdict rule).

    ``confounded`` names a difference between the compared conditions other
    than the one the claim is about: the statistics are still shown, but the
    verdict can be no more than inconclusive, since either way the difference
    could come from the confound.
    """
    number = "; ".join(s.text() for s in stats if s.n) or "-"
    judged = [s for s in stats if s.judged]
    missing = [m for s in judged for m in s.missing]
    untested = [s for s in judged if s.n == 0]
    tail = f" {notes}" if notes else ""
    if untested:
        need = "; ".join(dict.fromkeys(missing)) or "the matches it needs"
        return Evidence("untested", condition, number, f"missing: {need}.{tail}", tuple(stats))
    verdicts = [s.verdict() for s in judged]
    partial = f" Left out where absent: {'; '.join(dict.fromkeys(missing))}." if missing else ""
    reasons = []
    bad = [s.label for s, v in zip(judged, verdicts) if v == "contradicts"]
    if bad:
        reasons.append(f"the 95% interval lies on the opposite side of 0 from the paper's for: {'; '.join(bad)}.")
    one = [s.label for s in judged if s.n < 2]
    if one:
        reasons.append(f"one seed only for {'; '.join(one)}: no interval.")
    covers = [s.label for s, v in zip(judged, verdicts)
              if v == "inconclusive" and s.n >= 2 and s.oriented()[0] <= 0]
    if covers:
        reasons.append(f"the 95% interval covers 0 for: {'; '.join(covers)}.")
    small = [f"{s.label} (the paper's: {s.size_note or s.fmt(s.size * s.direction) + ' ' + s.unit})"
             for s, v in zip(judged, verdicts) if v == "inconclusive" and s.too_small()]
    if small:
        reasons.append(f"the 95% interval stops short of the paper's size of effect for: {'; '.join(small)}.")
    if bad:
        verdict = "contradicts"
    elif all(v == "agrees" for v in verdicts):
        verdict = "agrees"
        reasons.append("the 95% interval of every statistic lies on the paper's side of 0 and reaches the "
                       "paper's size of effect where it states one.")
    else:
        verdict = "inconclusive"
    if confounded and verdict in ("agrees", "contradicts"):
        reasons.append(f"But the compared settings also differ in {confounded}, so the verdict is held at "
                       f"inconclusive (it would be '{verdict}' on the numbers alone).")
        verdict = "inconclusive"
    why = " ".join(r[:1].upper() + r[1:] for r in reasons)
    return Evidence(verdict, condition, number, why + partial + tail, tuple(stats))


def not_comparable(stats: Sequence[SeedStat], condition: str, why: str) -> Evidence:
    """Evidence shown for what it is, but on a question other than the paper's claim: no verdict."""
    number = "; ".join(s.text() for s in stats if s.n) or "-"
    return Evidence("not comparable", condition, number, why, tuple(stats))
