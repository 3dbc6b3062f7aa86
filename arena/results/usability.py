"""Is a defender usable at the model-level false-positive budget? Judged on its pooled benign population.

An inspector that flags benign models is unusable however well it finds
trojans: a model owner would throw away good models. Each control run puts the
defender on the seed's population of benign models (``controls.population``),
and this module pools every benign model of every seed into one exact test:

- ``k`` of ``n`` benign models flagged, the rate ``k / n`` with its exact
  (Clopper-Pearson) 95% interval;
- the one-sided exact binomial test of "true rate <= budget": the defender is
  unusable when ``P(X >= k | n, budget) < level`` (5%);
- the test's power: the chance that a defender whose true rate is twice the
  budget fails it with this ``n`` (``power``), and how many benign models 80%
  power would take (``models_needed``; at a 5% budget and level: 191, for
  example 10 per seed over 20 seeds; the 25 of five seeds of five give 24%).

Why pooled, not per seed: with 5 benign models a seed, a defender whose true
rate is 20% (four times the budget) still passes a seed with probability 0.74,
while one unlucky seed failed a defender's whole column (every match of that
seed scored as an attacker win, the ``none`` attacker's included). The verdict
now rests on all the evidence, and it is reported apart from the matches: a
match's outcome is what the trigger achieved through the deployment, and an
unusable defender is listed as such (with its rate and interval) instead of
being rated on wins it was handed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from arena.results.record import ControlRecord, MatchRecord

LEVEL = 0.05
POWER = 0.8


def _tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    from scipy.stats import binom  # scipy comes with scikit-learn, a base dependency

    return 1.0 if k <= 0 else float(binom.sf(k - 1, n, p))


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact two-sided ``level`` interval of a binomial rate with ``k`` of ``n``."""
    from scipy.stats import beta

    a = (1.0 - level) / 2.0
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1.0 - a, k + 1, n - k))
    return lo, hi


def critical_count(n: int, budget: float, level: float = LEVEL) -> int:
    """The fewest flags among ``n`` benign models that fail the test (n + 1: none can)."""
    return next((k for k in range(n + 1) if _tail(k, n, budget) < level), n + 1)


def power(n: int, budget: float, level: float = LEVEL, factor: float = 2.0) -> float:
    """The chance that a defender whose true rate is ``factor`` x ``budget`` fails the test with ``n`` models."""
    c = critical_count(n, budget, level)
    return 0.0 if c > n else _tail(c, n, min(1.0, factor * budget))


def models_needed(budget: float, level: float = LEVEL, target: float = POWER, factor: float = 2.0,
                  limit: int = 10_000) -> int:
    """The fewest benign models whose test has ``target`` power at ``factor`` x ``budget`` (the binomial
    test's power is not monotone in n, so: the first n from which it stays at or above the target over
    the next 20)."""
    for n in range(1, limit):
        if all(power(m, budget, level, factor) >= target for m in range(n, n + 20)):
            return n
    return limit


@dataclass(frozen=True)
class Usability:
    """One defender's pooled control population and the verdict on it."""

    defender: str
    flagged: int
    models: int
    budget: float
    ci_low: float
    ci_high: float
    p_value: float  # one-sided: P(at least ``flagged`` flags | rate = budget)
    power: float  # of this test against a true rate of twice the budget

    @property
    def rate(self) -> float:
        return self.flagged / self.models if self.models else math.nan

    @property
    def usable(self) -> bool:
        return self.p_value >= LEVEL


def judge(defender: str, flagged: int, models: int, budget: float) -> Usability:
    lo, hi = clopper_pearson(flagged, models)
    return Usability(defender, flagged, models, budget, lo, hi, _tail(flagged, models, budget),
                     power(models, budget))


def benign_runs(records: Iterable[MatchRecord], controls: Iterable[ControlRecord] = ()
                ) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(defender, seed, member result) for every control run on a benign model: those inside match
    records (the scenario's population, repeated by every match of a seed) and the extra ones of
    ``arena controls``."""
    for r in records:
        control = r.metrics.get("control") if isinstance(r.metrics, dict) else None
        for m in (control or {}).get("members") or []:
            yield r.defender, int(r.seed), m
    for c in controls:
        yield c.defender, int(c.seed), {**c.result, "member": c.member}


def benign_flags(records: Iterable[MatchRecord], controls: Iterable[ControlRecord] = ()
                 ) -> dict[str, dict[tuple[int, int], bool]]:
    """Per defender, every benign model of its control populations, once: (seed, member) -> flagged.

    A defender's control population is the same in every match of a seed (cached), so the matches
    of a seed repeat it, and ``arena controls`` may run members a match also ran; a model seen with
    two verdicts (another version of the defender) counts as flagged."""
    seen: dict[str, dict[tuple[int, int], bool]] = {}
    for defender, seed, m in benign_runs(records, controls):
        if m.get("fault") or not m.get("verdict", True):
            continue
        key = (seed, int(m.get("member", 0)))
        models = seen.setdefault(defender, {})
        models[key] = models.get(key, False) or bool(m.get("flagged"))
    return seen


def usability(records: Iterable[MatchRecord], budget: float, controls: Iterable[ControlRecord] = ()
              ) -> list[Usability]:
    """Every defender with a control population, judged on all of it, extra runs included (sorted by name)."""
    return [judge(d, sum(models.values()), len(models), budget)
            for d, models in sorted(benign_flags(records, controls).items()) if models]
