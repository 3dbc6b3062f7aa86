"""Efficacy-specificity AUC (paper 4.2 and 5.2.2, Figure 5): the ASR-CAD trade-off of one attack.

The attack is crafted at several poison fractions (each a variant of the
scenario that differs only in ``attack.poison_fraction``; the benign model is
shared, each trojan is cached). As in the paper, points whose CAD exceeds the
attack budget are dropped, ASR and CAD are min-max normalized to [0, 1] over
the remaining points, and the AUC is the area under the normalized CAD as a
function of normalized ASR (trapezoids). A small AUC is a strong "leverage"
effect: ASR rises at a disproportionally small cost in clean accuracy; 0.5 is
a linear trade-off.

The referee computes every number; the sweep is stored in the ``sweeps``
table of the match store, never mixed into the leaderboards.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from arena.core.cache import ArtifactCache
from arena.config.scenario import Scenario
from arena.config.splits import bind_data
from arena.api.training import Progress

DEFAULT_FRACTIONS = (0.005, 0.01, 0.02, 0.05, 0.1)


@dataclass
class SweepPoint:
    fraction: float
    asr: float
    cad: float
    within_budget: bool


@dataclass
class SweepResult:
    scenario: str
    scenario_digest: str
    attacker: str
    seed: int
    points: list[SweepPoint] = field(default_factory=list)
    auc: float | None = None  # None when fewer than two in-budget points differ in ASR


def normalized_auc(points: list[SweepPoint]) -> float | None:
    """Area under normalized CAD over normalized ASR, on the in-budget points."""
    ok = [p for p in points if p.within_budget]
    if len(ok) < 2:
        return None
    asr_lo, asr_hi = min(p.asr for p in ok), max(p.asr for p in ok)
    cad_lo, cad_hi = min(p.cad for p in ok), max(p.cad for p in ok)
    if asr_hi - asr_lo < 1e-9:
        return None
    span_cad = cad_hi - cad_lo
    xy = sorted(((p.asr - asr_lo) / (asr_hi - asr_lo), (p.cad - cad_lo) / span_cad if span_cad > 1e-9 else 0.0)
                for p in ok)
    return float(sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(xy, xy[1:])))


def run_sweep(scenario: Scenario, attacker: str, fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
              seed: int = 0, device: str = "auto", cache: ArtifactCache | None = None,
              progress: Progress | None = None) -> SweepResult:
    """Craft ``attacker`` at each poison fraction (against no defense) and compute the AUC."""
    from arena.engine.referee import Referee  # late: the referee imports the agents' machinery

    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"poison fractions must lie in (0, 1], got {list(fractions)}")
    cache = cache or ArtifactCache()
    scenario = bind_data(scenario)
    result = SweepResult(scenario.name, scenario.digest, attacker, seed)
    for f in sorted(fractions):
        variant = dataclasses.replace(scenario, attack=dataclasses.replace(scenario.attack, poison_fraction=f))
        if progress:
            progress(f"sweep {attacker}: poison fraction {f:g}")
        m = Referee(variant, device=device, cache=cache, progress=progress).play(attacker, "none", seed=seed)
        a = m.record.metrics["attack"]
        result.points.append(SweepPoint(f, a["asr"], a["cad"], a["cad"] <= scenario.budgets.attack_cad))
    result.auc = normalized_auc(result.points)
    return result
