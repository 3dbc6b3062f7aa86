"""The outcome rule (ARENA.md): the attacker's score s in [0, 1] and why.

1. Attacker gate: a trojan that costs more clean accuracy than the attack
   budget is caught by any user who tests it: s = 0.
2. Defender gate: a deployment that costs more clean accuracy than the
   defense budget, rejects clean inputs beyond the FPR budget plus tolerance,
   or flags the benign model in its control run is unusable: s = 1.
3. Otherwise s = effective ASR: trigger inputs that pass the whole deployment
   unflagged and land in the target class (0 if inspection rejects the model).
"""

from __future__ import annotations

from dataclasses import dataclass

from arena.metrics import AttackMetrics, DefenseMetrics
from arena.scenario import Budgets


@dataclass(frozen=True)
class Control:
    """The defender run on the benign model (cached per defender, scenario, seed)."""

    flagged: bool
    fpr: float | None
    cad: float
    # what the defender saw on the clean model: its suspected class and anomaly index (inspection)
    suspected_target: int | None = None
    aiv: float | None = None


@dataclass(frozen=True)
class Outcome:
    score: float
    reason: str
    gate: str  # "attacker", "defender" or "play"


def decide(attack: AttackMetrics, defense: DefenseMetrics, control: Control, budgets: Budgets) -> Outcome:
    pts = lambda v: f"{100 * v:.1f} points"  # noqa: E731 - local formatter
    if attack.cad > budgets.attack_cad:
        return Outcome(0.0, f"attacker gate: the trojan loses {pts(attack.cad)} of clean accuracy "
                            f"(budget {pts(budgets.attack_cad)})", "attacker")
    if defense.cad > budgets.defense_cad:
        return Outcome(1.0, f"defender gate: the deployment loses {pts(defense.cad)} of clean accuracy "
                            f"(budget {pts(budgets.defense_cad)})", "defender")
    limit = budgets.fpr + budgets.fpr_tolerance
    if defense.fpr is not None and defense.fpr > limit:
        return Outcome(1.0, f"defender gate: the filter rejects {defense.fpr:.1%} of clean inputs "
                            f"(budget {budgets.fpr:.0%} + tolerance {budgets.fpr_tolerance:.0%})", "defender")
    if control.flagged:
        why = (f" (class {control.suspected_target}, anomaly index {control.aiv:.2f})"
               if control.aiv is not None else "")
        return Outcome(1.0, f"defender gate: the defender flags the benign model as a trojan (control run){why}",
                       "defender")
    if defense.flagged:
        return Outcome(0.0, f"inspection rejects the model (suspected target {defense.suspected_target}, "
                            f"anomaly index {defense.aiv:.2f})" if defense.aiv is not None
                       else "inspection rejects the model", "play")
    s = defense.effective_asr
    parts = [f"{s:.1%} of trigger inputs pass the deployment and hit the target"]
    if defense.tpr is not None:
        parts.append(f"filter caught {defense.tpr:.1%} at FPR {defense.fpr:.1%}")
    if defense.ard:
        parts.append(f"ASR {attack.asr:.1%} -> {defense.asr:.1%} through the deployment")
    return Outcome(s, "; ".join(parts), "play")
