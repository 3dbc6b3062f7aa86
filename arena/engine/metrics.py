"""The paper's metrics (TrojanZoo sections 4.2 and 4.4), computed by the referee.

All accuracies and rates are fractions in [0, 1]; CAD is in fractions too
(0.03 = 3 accuracy points). Trigger inputs are test inputs whose true class
is not the target, stamped by the trojan's own trigger.

Accuracies, CAD and ASR use the whole test split (a forward pass each is
cheap, and a 3-point budget needs more than a few hundred inputs to gate on),
except for a deployment that runs many forward passes per input (randomized
smoothing): it is scored on a prefix of each set sized by the scenario's
``scoring.passes`` budget, and its ARD and CAD are taken against the
trojan's own accuracy and ASR on that same prefix (paired, so the prefix's
sampling error largely cancels).
Input filters score the first ``scoring.inputs`` clean and trigger inputs
(the paper scores 100 pairs), since each filter query can cost many forward
passes; TPR, FPR, AUROC and the effective ASR of filtered deployments come
from that prefix.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from arena.core.progress import Eta
from arena.api.training import features, predict_proba
from arena.api.triggers import Trigger, mask_jaccard


@dataclass
class AttackMetrics:
    benign_acc: float
    trojan_acc: float
    cad: float  # benign_acc - trojan_acc
    asr: float
    tmc: float  # mean target confidence over successful trigger inputs
    ccc: float  # mean true-class confidence over clean inputs (trojan model)
    nsr: float  # neuron separation ratio, penultimate layer
    base_rate: float  # benign model's ASR: how often the trigger "works" without a backdoor
    # The trigger's perturbation on the stamped test inputs (checked against the scenario's budget):
    trigger_area: float = 0.0  # largest share of pixel positions an input has changed (> 1/255 in a channel)
    trigger_linf: float = 0.0  # largest change of any pixel value
    over_budget: float = 0.0  # share of stamped inputs over both the area and the L-inf budget
    finite: bool = True  # the trojan's weights, outputs and stamped inputs are all finite (inputs in [0, 1])
    cad_se: float = 0.0  # standard error of the CAD (paired over the same test inputs)


def _asr_tmc(probs: torch.Tensor, target: int) -> tuple[float, float]:
    hit = probs.argmax(1) == target
    asr = hit.float().mean().item() if len(hit) else float("nan")
    tmc = probs[hit, target].mean().item() if hit.any() else 0.0
    return asr, tmc


def neuron_separation_ratio(model: nn.Module, clean: torch.Tensor, trigger: torch.Tensor, k: int | None = None) -> float:
    """NSR (Eq. 4): 1 - Jaccard of the top-k mean-activated penultimate neurons of clean and trigger inputs."""
    if not hasattr(model, "features"):
        return float("nan")
    fc, ft = features(model, clean).mean(0), features(model, trigger).mean(0)
    k = k or max(1, fc.numel() // 10)
    nc = set(fc.topk(k).indices.tolist())
    nt = set(ft.topk(k).indices.tolist())
    return 1.0 - len(nc & nt) / len(nc | nt)


def paired_se(a_correct: torch.Tensor, b_correct: torch.Tensor) -> float:
    """Standard error of mean(a) - mean(b) for two classifiers scored on the same inputs (paired:
    only the inputs where they disagree add variance)."""
    d = a_correct.float() - b_correct.float()
    n = len(d)
    return float(d.std(unbiased=True) / n**0.5) if n > 1 else 0.0


def rate_se(rate: float, n: int) -> float:
    """Binomial standard error of a rate measured on n inputs (the rate clipped to [1/n, 1 - 1/n], so
    that 0 of n does not claim zero error)."""
    if n < 1:
        return 0.0
    p = min(max(rate, 1.0 / n), 1.0 - 1.0 / n) if n > 1 else 0.5
    return (p * (1 - p) / n) ** 0.5


PIXEL_TOLERANCE = 1 / 255  # a change below one grey level is no change (blending round-off)


def perturbation(x: torch.Tensor, stamped: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per input: the share of pixel positions changed (any channel above one grey level), and the
    largest absolute change (L-inf)."""
    d = (stamped - x).abs().flatten(2)  # N x C x HW
    area = (d.amax(1) > PIXEL_TOLERANCE).float().mean(1)
    return area, d.flatten(1).amax(1)


def attack_metrics(benign: nn.Module, model: nn.Module, trig_x: torch.Tensor, stamped: torch.Tensor,
                   clean_x: torch.Tensor, clean_y: torch.Tensor, target: int,
                   area_budget: float = 1.0, linf_budget: float = 1.0) -> AttackMetrics:
    """The trojan ``model`` and its stamped non-target inputs ``stamped`` (of ``trig_x``), against the benign model."""
    return measure_attack(benign, model, trig_x, stamped, clean_x, clean_y, target, area_budget, linf_budget)[0]


def measure_attack(benign: nn.Module, model: nn.Module, trig_x: torch.Tensor, stamped: torch.Tensor,
                   clean_x: torch.Tensor, clean_y: torch.Tensor, target: int,
                   area_budget: float = 1.0, linf_budget: float = 1.0
                   ) -> tuple[AttackMetrics, torch.Tensor | None, torch.Tensor | None]:
    """``attack_metrics``, which clean inputs the trojan classifies correctly, and its softmax outputs on
    the clean inputs followed by the stamped ones (both None when it is not finite).

    The second is what ``defense_metrics`` compares a deployment with (``ref_clean_ok``), the third what
    a deployment that predicts with the untouched trojan answers: handing them over spares passes of the
    trojan over the whole test set in every match."""
    finite = bool(torch.isfinite(stamped).all()) and bool(((stamped >= 0) & (stamped <= 1)).all())
    finite = finite and all(bool(torch.isfinite(p).all()) for p in model.state_dict().values()
                            if p.is_floating_point())
    area, linf = perturbation(trig_x, stamped) if finite else (torch.ones(len(stamped)), torch.ones(len(stamped)))
    over = ((area > area_budget) & (linf > linf_budget)).float().mean().item() if len(area) else 0.0
    if not finite:  # nothing below would mean anything
        nan = float("nan")
        return AttackMetrics(nan, nan, nan, nan, nan, nan, nan, nan, float(area.max()), float(linf.max()),
                             over, False), None, None
    pb = predict_proba(benign, clean_x)
    pt = predict_proba(model, clean_x)
    pts = predict_proba(model, stamped)
    if not (torch.isfinite(pt).all() and torch.isfinite(pts).all()):
        nan = float("nan")
        return AttackMetrics(nan, nan, nan, nan, nan, nan, nan, nan, float(area.max()), float(linf.max()),
                             over, False), None, None
    b_ok, t_ok = pb.argmax(1) == clean_y, pt.argmax(1) == clean_y
    benign_acc, trojan_acc = b_ok.float().mean().item(), t_ok.float().mean().item()
    asr, tmc = _asr_tmc(pts, target)
    base, _ = _asr_tmc(predict_proba(benign, stamped), target)
    ccc = pt.gather(1, clean_y.view(-1, 1)).mean().item()
    return AttackMetrics(
        benign_acc=benign_acc, trojan_acc=trojan_acc, cad=benign_acc - trojan_acc, asr=asr, tmc=tmc,
        ccc=ccc, nsr=neuron_separation_ratio(model, clean_x, stamped), base_rate=base,
        trigger_area=float(area.max()) if len(area) else 0.0, trigger_linf=float(linf.max()) if len(linf) else 0.0,
        over_budget=over, finite=True, cad_se=paired_se(b_ok, t_ok),
    ), t_ok, torch.cat([pt, pts])


@dataclass
class DefenseMetrics:
    category: str
    clean_acc: float  # deployment's accuracy on clean inputs (transform + model; filter not applied)
    cad: float  # trojan model's clean accuracy minus the deployment's
    ccc: float
    asr: float  # ASR through transform + model, filter not applied
    ard: float  # attack ASR minus ``asr``
    tmc: float
    effective_asr: float  # trigger inputs that pass the whole deployment and hit the target
    tpr: float | None = None
    fpr: float | None = None
    auroc: float | None = None
    threshold: float | None = None  # the filter's threshold, as deployed
    cad_se: float = 0.0  # standard error of ``cad`` (paired: trojan and deployment on the same inputs)
    fpr_se: float | None = None  # binomial standard error of ``fpr``
    trigger_share: float | None = None  # share of trigger inputs in a batch-aware filter's windows
    flagged: bool | None = None
    suspected_target: int | None = None
    aiv: float | None = None  # anomaly index of the suspected target (or the true one)
    aiv_per_class: list[float] | None = None
    mln: float | None = None
    mjs: float | None = None
    art_model_s: float = 0.0  # deploy() wall time (per model: sanitization, inspection, calibration)
    art_input_ms: float = 0.0  # per-input cost of transform + score (online defenses)
    scored_inputs: int | None = None  # clean inputs the accuracy was measured on (trigger: at most as many)


def stream_scores(dep: "DeploymentHandle", clean: torch.Tensor, stamped: torch.Tensor, batch_aware: bool = False,
                  trigger_share: float = 0.1, window: int = 100,
                  progress: Callable[[str], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Filter scores of clean and trigger inputs as deployment traffic: (clean scores, trigger scores).

    A per-input filter (STRIP, NEO) scores all of them in one call; the order does not matter to
    it. A batch-aware filter (AC, SS) scores windows of ``window`` inputs in a fixed random order,
    each holding ``round(trigger_share * window)`` trigger inputs and clean inputs for the rest:
    every trigger input is scored once, and the clean inputs are reused cyclically to fill the
    windows, so the clean scores (one per appearance) give the FPR under that traffic mix.
    ``progress`` hears how far the windows are (about every tenth, with an ETA).
    """
    # The referee's deployments carry a secret order (a deployment cannot predict where trigger inputs
    # sit in a window); one queried in this process (tests, notebooks) gets a fixed one.
    g = getattr(dep, "order", None) or torch.Generator().manual_seed(0)
    if not batch_aware or len(stamped) == 0 or len(clean) == 0:
        # One call over the mix: the deployment orders and sizes the questions (ServedDeployment).
        scores = dep.score(torch.cat([clean, stamped])).float().cpu()
        return scores[: len(clean)], scores[len(clean) :]
    t = min(window - 1, max(1, round(trigger_share * window)))
    c = window - t
    clean_scores, trig_scores = [], []
    n_windows = math.ceil(len(stamped) / t)
    eta, every = Eta(n_windows), max(1, n_windows // 10)
    for i, start in enumerate(range(0, len(stamped), t)):
        if progress and i and i % every == 0:
            progress(f"  scoring windows of {window} ({t} trigger inputs each): {eta.status(i)}")
        trig = stamped[start : start + t]
        idx = torch.arange(i * c, (i + 1) * c) % len(clean)
        x = torch.cat([clean[idx.to(clean.device)], trig])
        order = torch.randperm(len(x), generator=g)
        scores = torch.empty(len(x))
        scores[order] = dep.score(x[order.to(x.device)]).float().cpu()
        clean_scores.append(scores[:c])
        trig_scores.append(scores[c:])
    return torch.cat(clean_scores), torch.cat(trig_scores)


def scored_prefix(available: int, passes_per_input: int, max_passes: int | None) -> int:
    """How many inputs of a test set a deployment is scored on: all of them, unless its passes per
    input times their number exceed the budget ``max_passes`` (then at least one)."""
    if max_passes is None or passes_per_input <= 1:
        return available
    return max(1, min(available, max_passes // passes_per_input))


class DeploymentHandle(Protocol):
    """A deployment as the referee queries it (``arena.engine.referee.ServedDeployment``): predictions through
    transform + model, the filter's scores, and the deploy-time facts."""

    threshold: float | None
    passes_per_input: int
    verdict: Any  # arena.engine.messages.VerdictData or None
    score: Callable[[torch.Tensor], torch.Tensor] | None

    def predict(self, x: torch.Tensor) -> torch.Tensor: ...


@dataclass
class LocalDeployment:
    """A ``protocol.Deployment`` queried in this process (tests, notebooks): the ``DeploymentHandle``
    the referee otherwise gets from the defender's host."""

    dep: Any

    @property
    def threshold(self) -> float | None:
        return self.dep.threshold

    @property
    def passes_per_input(self) -> int:
        return self.dep.passes_per_input

    @property
    def verdict(self) -> Any:
        return self.dep.verdict

    @property
    def score(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        return self.dep.score

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        xin = self.dep.transform(x) if self.dep.transform is not None else x
        return predict_proba(self.dep.model, xin)


def defense_metrics(dep: DeploymentHandle, category: str, model: nn.Module, trigger: Trigger | None,
                    attack: AttackMetrics, clean_x: torch.Tensor, clean_y: torch.Tensor,
                    stamped_all: torch.Tensor, target: int, deploy_seconds: float, filter_inputs: int = 1000,
                    max_passes: int | None = None, batch_aware: bool = False, trigger_share: float = 0.1,
                    window: int = 100, progress: Callable[[str], None] | None = None,
                    ref_clean_ok: torch.Tensor | None = None) -> DefenseMetrics:
    """The deployment of a defender on the trojan ``model``, scored on clean inputs and the trojan's
    stamped inputs ``stamped_all``; ``trigger`` (the true one, when it is a mask) gives MJS.
    ``ref_clean_ok``: which of all of ``clean_x`` the trojan classifies correctly, when the caller has
    it (``measure_attack``); otherwise the trojan is run on them here.

    The effective ASR (the outcome) of every defender is taken on the same inputs: the first
    ``filter_inputs`` trigger inputs, which filters score (fewer only for a costly deployment's
    prefix), so defenders are compared on identical traffic."""
    k = scored_prefix(len(clean_x), dep.passes_per_input, max_passes)
    paired = k < len(clean_x) or k < len(stamped_all)
    stamped = stamped_all
    if paired:  # a costly deployment: scored on prefixes, and the undefended trojan on the same ones
        clean_x, clean_y, stamped = clean_x[:k], clean_y[:k], stamped_all[:k]
    # The undefended trojan on the same clean inputs: the reference of the CAD and of its paired error.
    if ref_clean_ok is not None and not paired and len(ref_clean_ok) == len(clean_x):
        ref_ok = ref_clean_ok.to(clean_y.device)
    else:
        ref_ok = predict_proba(model, clean_x).argmax(1) == clean_y
    ref_acc, ref_asr = ref_ok.float().mean().item(), attack.asr
    if paired:
        ref_asr, _ = _asr_tmc(predict_proba(model, stamped), target)
    n = filter_inputs
    t0 = time.perf_counter()
    both = dep.predict(torch.cat([clean_x, stamped]))  # one question, clean and stamped mixed (ServedDeployment)
    pc, pt = both[: len(clean_x)], both[len(clean_x):]
    sc, st = (stream_scores(dep, clean_x[:n], stamped[:n], batch_aware, trigger_share, window, progress)
              if dep.score is not None else (None, None))
    queried = len(clean_x) + len(stamped) if dep.score is None else min(n, len(clean_x)) + min(n, len(stamped))
    per_input_ms = 1000 * (time.perf_counter() - t0) / max(1, queried)
    d_ok = pc.argmax(1) == clean_y
    clean_acc = d_ok.float().mean().item()
    asr, tmc = _asr_tmc(pt, target)
    hit = pt.argmax(1) == target
    m = DefenseMetrics(
        category=category, clean_acc=clean_acc, cad=ref_acc - clean_acc,
        ccc=pc.gather(1, clean_y.view(-1, 1)).mean().item(), asr=asr, ard=ref_asr - asr, tmc=tmc,
        effective_asr=hit[:n].float().mean().item(), art_model_s=deploy_seconds, art_input_ms=per_input_ms,
        scored_inputs=len(clean_x), cad_se=paired_se(ref_ok, d_ok),
    )
    if sc is not None and st is not None:
        thr = dep.threshold if dep.threshold is not None else float("inf")
        flag_c, flag_t = sc > thr, st > thr
        m.threshold = dep.threshold
        m.tpr = flag_t.float().mean().item()
        m.fpr = flag_c.float().mean().item()
        m.fpr_se = rate_se(m.fpr, len(flag_c))
        m.trigger_share = (min(window - 1, max(1, round(trigger_share * window))) / window
                           if batch_aware else None)
        labels = torch.cat([torch.zeros(len(sc)), torch.ones(len(st))]).numpy()
        from sklearn.metrics import roc_auc_score  # imported here: sklearn would slow every CLI start

        m.auroc = float(roc_auc_score(labels, torch.cat([sc, st]).float().cpu().numpy()))
        # Filter scores live on the CPU (stream_scores); predictions on the referee's device.
        m.effective_asr = (hit[: len(flag_t)].cpu() & ~flag_t).float().mean().item()
    v = dep.verdict
    if v is not None:
        m.flagged = bool(v.is_trojan)
        m.suspected_target = v.target
        if v.anomaly_index is not None:
            m.aiv_per_class = [float(a) for a in v.anomaly_index]
            cls = v.target if v.target is not None else target
            m.aiv = m.aiv_per_class[cls]
        if v.mask is not None:
            m.mln = float(v.mask.abs().sum().item())
            if trigger is not None:
                m.mjs = mask_jaccard(trigger.mask.cpu(), v.mask.detach().cpu())
        if v.is_trojan:
            m.effective_asr = 0.0  # the model is rejected before deployment
    return m

