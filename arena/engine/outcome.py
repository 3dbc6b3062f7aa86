"""The outcome rule (docs/match.md): the attacker's score s in [0, 1] and why.

1. Attacker gate: a trojan that costs more clean accuracy than the attack
   budget is caught by any user who tests it: s = 0.
2. Defender gate: a deployment that costs more clean accuracy than the
   defense budget, or rejects clean inputs beyond the FPR budget plus
   tolerance, is unusable on this model: s = 1. Whether an inspector flags
   too many benign models is not decided per match: its control runs are
   pooled over every seed of the scenario and judged once
   (``arena.results.usability``), and a defender that fails is reported as
   unusable instead of handing every attacker of a seed a win.
3. Otherwise s = the effective ASR above the trigger's base rate:

       s = max(0, (e - b) / (1 - b))      (s = 0 when b = 1)

   where e, the effective ASR, is the share of trigger inputs that pass the
   whole deployment unflagged and land in the target class (0 if inspection
   rejects the model), and b, the base rate, is the share of the same
   stamped inputs that the *benign* model already puts in the target class.
   s is the share of the inputs the trigger could still move that the
   backdoor moved: a "trigger" that pastes a target-class image (b = 1)
   scores 0, a patch that does nothing on the benign model (b = 0) scores e.

Gates allow for measurement error. A CAD or FPR is measured on a finite
set of test inputs, so each carries a standard error (paired over the same
inputs for a CAD, binomial for an FPR). A gate fires only when the measured
value exceeds its budget by more than ``budgets.gate_z`` (1.645) standard
errors: a one-sided test at the 5% level that the true value is over budget.
A value within that margin of the budget does not flip a match from 0 to 1
(or back); ``gate_z = 0`` gives plain thresholds.

The attacker gate also rejects a trojan whose weights, outputs or stamped
inputs are not finite (or leave [0, 1]), and a trigger over the scenario's
perturbation budget on any stamped test input (``Budgets``). An agent that
crashes, overruns its time or memory limit, is killed or returns garbage
forfeits (``forfeit``): an attacker's forfeit scores 0, a defender's 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from arena.engine.metrics import AttackMetrics, DefenseMetrics
from arena.config.scenario import Budgets


@dataclass(frozen=True)
class Control:
    """The defender run on the benign model (cached per defender, scenario, seed)."""

    flagged: bool
    fpr: float | None
    cad: float
    # what the defender saw on the clean model: its suspected class and anomaly index (inspection)
    suspected_target: int | None = None
    aiv: float | None = None
    fault: str | None = None  # the defender's agent failed on the benign model (it then loses)
    population: int = 1  # benign models the defender was run on (scenario ``controls.population``)
    flagged_models: int | None = None  # how many of them it flagged (None: one model, see ``flagged``)
    members: list[dict] | None = None  # per benign model: flagged, suspected target, anomaly index, fpr, cad

    @property
    def model_fpr(self) -> float:
        """The share of benign models flagged."""
        k = self.flagged_models if self.flagged_models is not None else int(self.flagged)
        return k / max(1, self.population)


@dataclass(frozen=True)
class Outcome:
    score: float
    reason: str
    gate: str  # "attacker", "defender" or "play"


def forfeit(side: str, why: str) -> Outcome:
    """The outcome when one side's agent fails (crash, limit, garbage): that side loses."""
    if side == "attacker":
        return Outcome(0.0, f"attacker forfeits: {why}", "attacker")
    return Outcome(1.0, f"defender forfeits: {why}", "defender")


def above_base_rate(effective_asr: float, base_rate: float) -> float:
    """The attacker's score from the effective ASR e and the benign base rate b: max(0, (e - b) / (1 - b))."""
    if base_rate >= 1.0:
        return 0.0
    return max(0.0, (effective_asr - base_rate) / (1.0 - base_rate))


def attack_gate(attack: AttackMetrics, budgets: Budgets) -> Outcome | None:
    """The attacker gate alone (decided before the defender plays): None when the trojan passes."""
    pts = lambda v: f"{100 * v:.1f} points"  # noqa: E731 - local formatter
    if not attack.finite:
        return Outcome(0.0, "attacker gate: the trojan's weights, outputs or stamped inputs are not finite "
                            "or leave [0, 1]", "attacker")
    if attack.over_budget > 0:
        return Outcome(0.0, f"attacker gate: the trigger is over the perturbation budget on "
                            f"{attack.over_budget:.1%} of stamped inputs (changes up to {attack.trigger_area:.1%} "
                            f"of pixels, L-inf {attack.trigger_linf:.2f}; budget {budgets.trigger_area:.1%} of "
                            f"pixels or L-inf {budgets.trigger_linf:.2f})", "attacker")
    if over(attack.cad, attack.cad_se, budgets.attack_cad, budgets.gate_z):
        return Outcome(0.0, f"attacker gate: the trojan loses {pts(attack.cad)} (standard error "
                            f"{pts(attack.cad_se)}) of clean accuracy (budget {pts(budgets.attack_cad)})", "attacker")
    return None


def over(value: float, se: float | None, budget: float, z: float) -> bool:
    """Is ``value`` over ``budget`` by more than ``z`` standard errors (one-sided test)?"""
    return value > budget + z * (se or 0.0)


def decide(attack: AttackMetrics, defense: DefenseMetrics, budgets: Budgets) -> Outcome:
    pts = lambda v: f"{100 * v:.1f} points"  # noqa: E731 - local formatter
    gate = attack_gate(attack, budgets)
    if gate is not None:
        return gate
    if over(defense.cad, defense.cad_se, budgets.defense_cad, budgets.gate_z):
        return Outcome(1.0, f"defender gate: the deployment loses {pts(defense.cad)} (standard error "
                            f"{pts(defense.cad_se)}) of clean accuracy (budget {pts(budgets.defense_cad)})",
                       "defender")
    limit = budgets.fpr + budgets.fpr_tolerance
    if defense.fpr is not None and over(defense.fpr, defense.fpr_se, limit, budgets.gate_z):
        return Outcome(1.0, f"defender gate: the filter rejects {defense.fpr:.1%} (standard error "
                            f"{defense.fpr_se or 0:.1%}) of clean inputs (budget {budgets.fpr:.0%} + tolerance "
                            f"{budgets.fpr_tolerance:.0%})", "defender")
    if defense.flagged:
        return Outcome(0.0, f"inspection rejects the model (suspected target {defense.suspected_target}, "
                            f"anomaly index {defense.aiv:.2f})" if defense.aiv is not None
                       else "inspection rejects the model", "play")
    s = above_base_rate(defense.effective_asr, attack.base_rate)
    parts = [f"{defense.effective_asr:.1%} of trigger inputs pass the deployment and hit the target"]
    if attack.base_rate > 0:
        parts.append(f"{attack.base_rate:.1%} would without a backdoor (base rate): score {s:.3f}")
    if defense.tpr is not None:
        parts.append(f"filter caught {defense.tpr:.1%} at FPR {defense.fpr:.1%}")
    if defense.ard:
        parts.append(f"ASR {attack.asr:.1%} -> {defense.asr:.1%} through the deployment")
    return Outcome(s, "; ".join(parts), "play")
