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

import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from arena.protocol import Deployment, Trojan
from arena.training import features, predict_proba
from arena.triggers import mask_jaccard


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


def attack_metrics(benign: nn.Module, trojan: Trojan, clean_x: torch.Tensor, clean_y: torch.Tensor,
                   trig_x: torch.Tensor, target: int) -> AttackMetrics:
    stamped = trojan.stamp(trig_x)
    pb = predict_proba(benign, clean_x)
    pt = predict_proba(trojan.model, clean_x)
    benign_acc = (pb.argmax(1) == clean_y).float().mean().item()
    trojan_acc = (pt.argmax(1) == clean_y).float().mean().item()
    asr, tmc = _asr_tmc(predict_proba(trojan.model, stamped), target)
    base, _ = _asr_tmc(predict_proba(benign, stamped), target)
    ccc = pt.gather(1, clean_y.view(-1, 1)).mean().item()
    return AttackMetrics(
        benign_acc=benign_acc, trojan_acc=trojan_acc, cad=benign_acc - trojan_acc, asr=asr, tmc=tmc,
        ccc=ccc, nsr=neuron_separation_ratio(trojan.model, clean_x, stamped), base_rate=base,
    )


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
    flagged: bool | None = None
    suspected_target: int | None = None
    aiv: float | None = None  # anomaly index of the suspected target (or the true one)
    aiv_per_class: list[float] | None = None
    mln: float | None = None
    mjs: float | None = None
    art_model_s: float = 0.0  # deploy() wall time (per model: sanitization, inspection, calibration)
    art_input_ms: float = 0.0  # per-input cost of transform + score (online defenses)
    scored_inputs: int | None = None  # clean inputs the accuracy was measured on (trigger: at most as many)


def _predict(dep: Deployment, x: torch.Tensor) -> torch.Tensor:
    """Predictions through transform + model."""
    xin = dep.transform(x) if dep.transform is not None else x
    return predict_proba(dep.model, xin)


def stream_scores(dep: Deployment, clean: torch.Tensor, stamped: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Filter scores of a scoring window: clean and trigger inputs interleaved in a fixed random order.

    One call, as deployment traffic would arrive: batch-aware filters (AC, SS)
    see a mixed window, per-input filters are unaffected by the order.
    """
    x = torch.cat([clean, stamped])
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0)).to(x.device)
    scores = torch.empty(len(x))
    scores[order.cpu()] = dep.score(x[order]).float().cpu()
    return scores[: len(clean)], scores[len(clean) :]


def scored_prefix(available: int, passes_per_input: int, max_passes: int | None) -> int:
    """How many inputs of a test set a deployment is scored on: all of them, unless its passes per
    input times their number exceed the budget ``max_passes`` (then at least one)."""
    if max_passes is None or passes_per_input <= 1:
        return available
    return max(1, min(available, max_passes // passes_per_input))


def defense_metrics(dep: Deployment, category: str, trojan: Trojan, attack: AttackMetrics,
                    clean_x: torch.Tensor, clean_y: torch.Tensor, trig_x: torch.Tensor, target: int,
                    deploy_seconds: float, filter_inputs: int = 1000,
                    max_passes: int | None = None) -> DefenseMetrics:
    k = scored_prefix(len(clean_x), dep.passes_per_input, max_passes)
    paired = k < len(clean_x) or k < len(trig_x)
    if paired:  # a costly deployment: scored on prefixes, and the undefended trojan on the same ones
        clean_x, clean_y, trig_x = clean_x[:k], clean_y[:k], trig_x[:k]
    stamped = trojan.stamp(trig_x)
    ref_acc, ref_asr = attack.trojan_acc, attack.asr
    if paired:
        ref_acc = (predict_proba(trojan.model, clean_x).argmax(1) == clean_y).float().mean().item()
        ref_asr, _ = _asr_tmc(predict_proba(trojan.model, stamped), target)
    n = filter_inputs
    t0 = time.perf_counter()
    pc, pt = _predict(dep, clean_x), _predict(dep, stamped)
    sc, st = stream_scores(dep, clean_x[:n], stamped[:n]) if dep.score is not None else (None, None)
    queried = len(clean_x) + len(stamped) if dep.score is None else min(n, len(clean_x)) + min(n, len(stamped))
    per_input_ms = 1000 * (time.perf_counter() - t0) / max(1, queried)
    clean_acc = (pc.argmax(1) == clean_y).float().mean().item()
    asr, tmc = _asr_tmc(pt, target)
    hit = pt.argmax(1) == target
    m = DefenseMetrics(
        category=category, clean_acc=clean_acc, cad=ref_acc - clean_acc,
        ccc=pc.gather(1, clean_y.view(-1, 1)).mean().item(), asr=asr, ard=ref_asr - asr, tmc=tmc,
        effective_asr=hit.float().mean().item(), art_model_s=deploy_seconds, art_input_ms=per_input_ms,
        scored_inputs=len(clean_x),
    )
    if sc is not None and st is not None:
        thr = dep.threshold if dep.threshold is not None else float("inf")
        flag_c, flag_t = sc > thr, st > thr
        m.tpr = flag_t.float().mean().item()
        m.fpr = flag_c.float().mean().item()
        labels = torch.cat([torch.zeros(len(sc)), torch.ones(len(st))]).numpy()
        from sklearn.metrics import roc_auc_score  # imported here: sklearn adds ~1.5 s to every CLI start

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
            if trojan.trigger is not None:
                m.mjs = mask_jaccard(trojan.trigger.mask.cpu(), v.mask.detach().cpu())
        if v.is_trojan:
            m.effective_asr = 0.0  # the model is rejected before deployment
    return m


def as_dict(x) -> dict:
    return asdict(x)
