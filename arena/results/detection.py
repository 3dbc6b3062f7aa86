"""Model-level detection: how well a defender tells trojaned models from benign ones, over many models.

A match judges an inspector on one trojan and its control population; this
module pools a scenario's stored matches into one detection problem per
defender, as NIST's TrojAI rounds score detectors:

- positives: every trojan the defender met (one per attacker, seed and round;
  the ``none`` attacker's "trojan" is the benign model and is left out), counted
  only where the trojan passed the attacker gate (a working backdoor within its
  budgets: a failed attack is not a trojan to find);
- negatives: every benign model of its control populations (one per seed and
  member, ``controls.population`` of them per seed);
- the score of a model: the defender's largest per-class anomaly index when its
  verdict has one (the detector's own statistic, never the true target's), else
  its verdict (1 flagged, 0 not).

Reported per defender: AUROC (ties count a half), the TPR at the largest
threshold whose model-level FPR is at most ``max_fpr`` (5%), and the
cross-entropy of its verdicts read as probabilities clipped to [0.01, 0.99]
(no built-in defender states a probability; TrojAI's cross-entropy asks for
one, and a flat 0.99/0.01 reading charges each wrong verdict -ln 0.01 = 4.6
nats). Defenders that never gave a verdict (filters, reformers, sanitizers)
have no row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from arena.results.intervals import t_interval
from arena.results.record import ControlRecord, MatchRecord
from arena.results.usability import benign_runs

MAX_MODEL_FPR = 0.05
VERDICT_CLIP = 0.01


@dataclass(frozen=True)
class ModelScore:
    """One model as a detector saw it."""

    trojan: bool
    score: float
    flagged: bool
    seed: int
    source: str  # the attacker's name, or "benign/<member>"


@dataclass(frozen=True)
class DetectionROC:
    defender: str
    trojans: int
    benign: int
    flagged_trojans: int
    flagged_benign: int
    auroc: float | None  # None when one of the two classes is empty
    tpr_at_max_fpr: float | None
    cross_entropy: float | None
    max_fpr: float = MAX_MODEL_FPR
    # 95% interval of the AUROC over seeds (the seed is the independent unit: one seed's trojans and control
    # models share its benign training): mean and Student-t interval of the per-seed AUROCs. None with
    # fewer than two seeds holding both trojans and benign models.
    auroc_seeds: tuple[float, float, float] | None = None


def _model_score(per_class: list[float] | None, flagged: bool) -> float:
    finite = [a for a in per_class or [] if a is not None and math.isfinite(a)]
    return max(finite) if finite else float(flagged)


def model_scores(records: Iterable[MatchRecord], controls: Iterable[ControlRecord] = ()
                 ) -> dict[str, list[ModelScore]]:
    """Each defender's scored models: its trojans and its benign control members (the matches' and the
    extra ones of ``arena controls``), deduplicated."""
    records = [r for r in records if r.status == "ok" and isinstance(r.metrics, dict)]
    out: dict[str, dict[tuple, ModelScore]] = {}
    for defender, seed, member in benign_runs(records, controls):
        if member.get("fault") or not member.get("verdict"):
            continue  # a failed control, a defender without verdicts, or a control stored before this
        key = ("benign", seed, member.get("member", 0))
        out.setdefault(defender, {})[key] = ModelScore(
            False, _model_score([member["aiv_max"]], bool(member["flagged"])), bool(member["flagged"]), seed,
            f"benign/{member.get('member', 0)}")
    for r in records:
        m = r.metrics
        defense = m.get("defense") or {}
        seen = out.setdefault(r.defender, {})
        if r.attacker == "none" or m.get("gate") == "attacker" or defense.get("flagged") is None:
            continue
        key = ("trojan", r.attacker, r.seed, r.rounds)
        seen[key] = ModelScore(True, _model_score(defense.get("aiv_per_class"), bool(defense["flagged"])),
                               bool(defense["flagged"]), r.seed, r.attacker)
    return {d: [s[k] for k in sorted(s, key=str)] for d, s in sorted(out.items()) if s}


def roc(defender: str, models: list[ModelScore], max_fpr: float = MAX_MODEL_FPR) -> DetectionROC:
    y = np.array([m.trojan for m in models], dtype=int)
    s = np.array([m.score for m in models], dtype=float)
    flags = np.array([m.flagged for m in models], dtype=bool)
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    auroc = tpr = ce = None
    if pos and neg:
        auroc = float(roc_auc_score(y, s))
        fpr_curve, tpr_curve, _ = roc_curve(y, s)
        tpr = float(tpr_curve[fpr_curve <= max_fpr + 1e-12].max())
    if len(y):
        p = np.where(flags, 1 - VERDICT_CLIP, VERDICT_CLIP)
        ce = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return DetectionROC(defender, pos, neg, int((flags & (y == 1)).sum()), int((flags & (y == 0)).sum()),
                        auroc, tpr, ce, max_fpr, _auroc_over_seeds(models))


def _auroc_over_seeds(models: list[ModelScore]) -> tuple[float, float, float] | None:
    """(mean, low, high) of the per-seed AUROCs, Student-t over the seeds with both classes."""
    per_seed = []
    for seed in sorted({m.seed for m in models}):
        mine = [m for m in models if m.seed == seed]
        y = [m.trojan for m in mine]
        if any(y) and not all(y):
            per_seed.append(float(roc_auc_score(y, [m.score for m in mine])))
    if len(per_seed) < 2:
        return None
    mean, low, high = t_interval(np.array(per_seed))
    return mean, low, high


def detection_rocs(records: Iterable[MatchRecord], max_fpr: float = MAX_MODEL_FPR,
                   controls: Iterable[ControlRecord] = ()) -> list[DetectionROC]:
    """One ``DetectionROC`` per defender that gave verdicts, sorted by name."""
    return [roc(d, models, max_fpr) for d, models in model_scores(records, controls).items()]
