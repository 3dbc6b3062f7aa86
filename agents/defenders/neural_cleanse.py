"""Neural Cleanse (NC): Wang, Yao, Shan, Li, Viswanath, Zheng and Zhao, "Neural
Cleanse: Identifying and Mitigating Backdoor Attacks in Neural Networks",
IEEE S&P 2019.

Model inspection. For every class t, NC reverse-engineers the smallest
trigger that sends clean inputs of the other classes to t: a mask m
(1 x H x W, in [0, 1]) and a pattern p (C x H x W, in [0, 1]) such that
``(1 - m) * x + m * p`` is classified as t, minimizing
``CE(f(x'), t) + lambda * |m|_1``. A backdoor is a shortcut to its target,
so the target's mask norm is abnormally small. With the per-class L1 norms
``L``, the anomaly index of class t is
``(median(L) - L_t) / (1.4826 * MAD(L))`` (MAD: median absolute deviation;
1.4826 makes it consistent with a normal's standard deviation). The model is
flagged when the class with the smallest norm has an anomaly index above
``threshold`` (2, as in the paper); only classes *below* the median count,
so ``anomaly_index`` in the verdict is signed: positive = smaller norm than
the median (suspicious), negative = larger (never flagged). The verdict
always names the smallest-norm class as ``target`` and carries its mask and
pattern (on the CPU); ``is_trojan`` says whether it is anomalous enough.

Defaults (paper Table 21): norm regularization weight (initial lambda) 1e-3,
remask lr 0.1 (Adam, betas (0.5, 0.9) as in NC's code), 10 remask epochs per
label. NC's anomaly threshold 2.

Implementation notes and departures:
- Vectorized over classes: the K masks and patterns are optimized together,
  every step stamps one batch of B clean images with all K candidate
  triggers and evaluates the K*B images in one forward/backward pass (the
  model's weights are frozen). Each class's loss only counts inputs whose
  true label is not that class. Summing the K per-class losses keeps their
  gradients independent, and Adam is per-parameter, so this is K separate
  NC runs done at once.
- Masks and patterns are parametrized as ``(tanh(w) + 1) / 2`` (NC's code),
  initialized at random from ``ctx.generator``.
- Subset: each epoch runs over at most ``samples`` (512) clean images of the
  defender's set, in batches of ``batch_size`` (32, NC's mini-batch), so an
  epoch is ~16 steps of 10 x 32 images whatever the size of the clean set.
  On the CPU scenario (3000-image clean set) the full clean set would cost
  six times more for no better norms. ``samples`` lifts the cap.
- Adaptive lambda (NC's schedule, per class, checked every epoch;
  ``adaptive`` = True, False keeps lambda at its initial value): when the
  class's attack success over the epoch is at least ``attack_succ_threshold``
  (0.99) lambda is multiplied by ``cost_multiplier`` (1.5), otherwise divided
  by ``cost_multiplier ** 1.5``; NC waits ``patience`` checks before each
  change, here ``patience`` = 1 because a run is only 10 epochs long. The
  reported mask of a class is its smallest-norm mask among the epochs whose
  attack success reached the threshold (the last one if none did), as in NC.
- Early stop (NC's, per class): once a class has a successful mask and its
  best norm has not improved by more than 1% for ``early_stop_patience`` (3)
  epochs, that class leaves the batch; the run ends when every class has
  stopped, or after ``epochs``. Progress per epoch goes to ``ctx.progress``.

- Second condition (``max_norm_ratio`` = 0.5, not in NC): the suspect's
  mask must also be smaller than half the median norm. On the full-size
  fmnist-cnn benign model the MAD index alone flags a clean class: most
  classes' norms cluster within a few units while shirts and bags need
  somewhat smaller masks, so the MAD is small and the shirt's index crosses
  the threshold, making NC lose every match at the defender gate
  (leaderboards of the first tournament). A backdoor's mask is far smaller
  than half the median, while the clean suspects sat well above half.
  ``max_norm_ratio=None`` drops the condition. The margin is not universal:
  on seed 1's fmnist-cnn benign model the bag class's mask falls just under
  half the median with raw and log indices over the threshold, so NC flags
  that clean model in its control run, under NC's own rule as well, and the
  flag counts against NC in the pooled usability test. The threshold was left where it was rather than
  tuned on the benchmark's benign models (docs/defenses.md). The figures are
  in docs/measurements.md.
- Log scale (``log_scale`` = True, not in NC): the MAD index is taken of
  ``log(L)``, not of ``L``. Mask norms are sizes whose spread across clean
  classes is multiplicative (Fashion-MNIST's sneakers need far larger masks
  than its bags); on the raw scale a few large clean norms inflate the MAD
  until a backdoor's mask barely stands out. In the seed-0 fmnist-cnn
  tournament NC recovered far smaller masks on the targets of the patch
  attacks than for clean classes, yet their raw index stayed under the
  threshold (almost nothing flagged), while the log index of the same stored
  norms cleared it and stayed under it on the benign model
  (docs/measurements.md). ``log_scale=False`` with ``max_norm_ratio=None`` is
  NC's rule exactly.

Cost and margin: the ``samples`` cap keeps the CPU scenario's epochs nearly as
short as the tiny test scenario's, so an inspection costs only a little more
there. On the tiny test scenario BadNet's target gets a mask close to the true
trigger's size and far below the other classes', yet its raw anomaly index does
not clear the threshold at every random initialization; on log norms it cleared
it with room at seed 0 and the benign model stayed well under it. The spread of the clean
classes' norms is what limits the raw index, not the optimization: a longer
optimization shrinks the norms only a little. The timings and figures are in
docs/measurements.md.

Tuning: Table 21's optimization settings; ``samples`` and ``patience`` for CPU
cost. The norm-ratio condition (``max_norm_ratio``) was added after the first
fmnist-cnn tournament (seed 0) and the log-norm MAD rule after the full seed-0
tournament, both on development seeds (0-2). After seed 1's benign model was
flagged the threshold was deliberately left as it was. fmnist-cnn's test seeds
(10-29) played no part.

Assumes: the data of any scenario (``arena_agents``); reads outputs and
gradients only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from arena.api import Inspection, ModelInspector, anomaly_indices
from arena.api import DefenseContext

__all__ = ["NeuralCleanse", "anomaly_indices"]

class NeuralCleanse(ModelInspector):
    name = "neural-cleanse"
    version = "4"  # 4: searched on a channels-last copy on the CPU (arena.api.ModelInspector)
    def __init__(self, cost: float = 1e-3, lr: float = 0.1, epochs: int = 10, batch_size: int = 32,
                 samples: int = 512, threshold: float = 2.0, adaptive: bool = True,
                 cost_multiplier: float = 1.5, patience: int = 1, attack_succ_threshold: float = 0.99,
                 early_stop: bool = True, early_stop_patience: int = 3,
                 max_norm_ratio: float | None = 0.5,
                 log_scale: bool = True) -> None:
        self.cost = cost
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.samples = samples
        self.threshold = threshold
        self.adaptive = adaptive
        self.cost_multiplier = cost_multiplier
        self.patience = patience
        self.attack_succ_threshold = attack_succ_threshold
        self.early_stop = early_stop
        self.early_stop_patience = early_stop_patience
        self.max_norm_ratio = max_norm_ratio
        self.log_scale = log_scale

    # --- reverse engineering ---------------------------------------------
    def regularizer(self, model: nn.Module, classes: torch.Tensor, mask: torch.Tensor, pattern: torch.Tensor,
                    x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """Extra loss terms per candidate class (shape ``(A,)``), added to NC's ``CE + cost * |m|_1``.

        ``classes`` (A,) are the candidate targets still optimized, ``mask`` (A,1,H,W) and ``pattern``
        (A,C,H,W) their current triggers, ``x``/``y`` the clean batch. Each entry must depend only on
        its own class's trigger, so the classes' optimizations stay independent. NC adds nothing;
        TABOR (``tabor.py``) adds its regularizers here.
        """
        return None

    def reverse_engineer(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                         generator: torch.Generator, progress=None) -> dict:
        """All classes' triggers at once; returns per-class norms, masks (K,1,H,W), patterns (K,C,H,W)."""
        device = x.device
        K, (C, H, W) = num_classes, x.shape[1:]
        eps = 1e-6

        def atanh_init(shape):
            r = torch.rand(shape, generator=generator)
            return torch.atanh((r * 2 - 1) * (1 - eps)).to(device)

        mask_w = atanh_init((K, 1, H, W)).requires_grad_()
        pattern_w = atanh_init((K, C, H, W)).requires_grad_()
        opt = torch.optim.Adam([mask_w, pattern_w], lr=self.lr, betas=(0.5, 0.9))
        classes = torch.arange(K, device=device)

        cost = torch.full((K,), float(self.cost), device=device)
        best_norm = torch.full((K,), float("inf"))
        best_mask = torch.zeros(K, 1, H, W)
        best_pattern = torch.zeros(K, C, H, W)
        best_succ = torch.zeros(K)
        up = torch.zeros(K, dtype=torch.long)
        down = torch.zeros(K, dtype=torch.long)
        stale = torch.zeros(K, dtype=torch.long)
        active = torch.ones(K, dtype=torch.bool)
        epochs_run = torch.zeros(K, dtype=torch.long)

        for epoch in range(self.epochs):
            act = classes[active.to(device)]
            if len(act) == 0:
                break
            perm = torch.randperm(len(y), generator=generator).to(device)
            hits = torch.zeros(len(act), device=device)
            counts = torch.zeros(len(act), device=device)
            for i in range(0, len(y), self.batch_size):
                idx = perm[i : i + self.batch_size]
                xb, yb = x[idx], y[idx]
                m = (torch.tanh(mask_w[act]) + 1) / 2  # A x 1 x H x W
                p = (torch.tanh(pattern_w[act]) + 1) / 2  # A x C x H x W
                stamped = (1 - m.unsqueeze(1)) * xb.unsqueeze(0) + (m * p).unsqueeze(1)  # A x B x C x H x W
                logits = model(stamped.flatten(0, 1)).float()
                target = act.repeat_interleave(len(yb))
                ce = F.cross_entropy(logits, target, reduction="none").view(len(act), len(yb))
                w = (yb.unsqueeze(0) != act.unsqueeze(1)).float()  # only other classes' inputs count
                n = w.sum(1)
                ce_t = (ce * w).sum(1) / n.clamp_min(1)
                l1 = m.flatten(1).sum(1)
                per_class = ce_t + cost[act] * l1
                extra = self.regularizer(model, act, m, p, xb, yb)
                if extra is not None:
                    per_class = per_class + extra
                loss = per_class.sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    hit = (logits.argmax(1).view(len(act), len(yb)) == act.unsqueeze(1)).float()
                    hits += (hit * w).sum(1)
                    counts += n

            with torch.no_grad():
                succ = (hits / counts.clamp_min(1)).cpu()
                m = ((torch.tanh(mask_w[act]) + 1) / 2).detach().cpu()
                p = ((torch.tanh(pattern_w[act]) + 1) / 2).detach().cpu()
                norms = m.flatten(1).sum(1)
                for j, t in enumerate(act.tolist()):
                    epochs_run[t] += 1
                    ok = succ[j] >= self.attack_succ_threshold
                    if ok and norms[j] < best_norm[t]:
                        improved = not torch.isfinite(best_norm[t]) or norms[j] < 0.99 * best_norm[t]
                        best_norm[t], best_mask[t], best_pattern[t], best_succ[t] = norms[j], m[j], p[j], succ[j]
                        stale[t] = 0 if improved else stale[t] + 1
                    elif torch.isfinite(best_norm[t]):
                        stale[t] += 1
                    if not torch.isfinite(best_norm[t]):
                        # no successful mask yet: keep the latest as the fallback
                        best_mask[t], best_pattern[t], best_succ[t] = m[j], p[j], succ[j]
                    if self.adaptive:
                        if ok:
                            up[t], down[t] = up[t] + 1, 0
                        else:
                            up[t], down[t] = 0, down[t] + 1
                        if up[t] >= self.patience:
                            up[t] = 0
                            cost[t] *= self.cost_multiplier
                        elif down[t] >= self.patience:
                            down[t] = 0
                            cost[t] /= self.cost_multiplier ** 1.5
                    if self.early_stop and torch.isfinite(best_norm[t]) and stale[t] >= self.early_stop_patience:
                        active[t] = False
                if progress:
                    progress(f"  {self.name}: epoch {epoch + 1}/{self.epochs} classes {act.tolist()} "
                             f"mask L1 {[round(float(v), 1) for v in norms]} "
                             f"success {[round(float(v), 3) for v in succ]}")

        norms = torch.where(torch.isfinite(best_norm), best_norm, best_mask.flatten(1).sum(1))
        return {"norms": norms, "masks": best_mask, "patterns": best_pattern, "success": best_succ,
                "epochs_run": epochs_run, "cost": cost.cpu()}

    # --- the defense -------------------------------------------------------
    def inspect(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: DefenseContext) -> Inspection:
        res = self.reverse_engineer(model, x, y, ctx.info.num_classes, ctx.generator, ctx.progress)
        notes = {
            "attack_success": [round(float(v), 3) for v in res["success"]],
            "epochs_run": [int(v) for v in res["epochs_run"]],
            "final_cost": [float(v) for v in res["cost"]],
        }
        return Inspection(norms=res["norms"], masks=res["masks"], patterns=res["patterns"], notes=notes)
