"""One base class per defense category (paper Table 3), holding what each category shares.

- ``InputReformer``: reforms every input before the model (RS, DU, MagNet).
  Subclasses implement ``reform``; models that must change how they predict
  (randomized smoothing averages over noise) override ``wrap`` instead.
  ``reform`` should be written with differentiable torch ops, so that an
  adaptive attacker that sees the deployment can train through it.
- ``InputFilter``: scores inputs and rejects those above a threshold (STRIP,
  AC, SS, NEO). The base splits the defender's clean set into a *reference*
  part (what the filter learns from: overlay pool, feature statistics) and a
  disjoint *calibration* part, and sets the threshold on the calibration
  scores at the scenario's FPR budget, so the threshold is never fit on the
  inputs it is checked on, nor on test data.
- ``ModelSanitizer``: returns a repaired model (AR, FP). The base holds back a
  part of the clean set to measure the repair's clean cost and records it.
- ``ModelInspector``: decides whether the model is a trojan and which class
  is the target (NC, TABOR, DI, NI, ABS). Subclasses implement ``inspect``
  (per-class trigger sizes, lower = more suspicious, and the recovered
  triggers); the base freezes the model, draws the clean samples, computes
  the MAD anomaly index of NC and builds the ``Verdict``. Inspectors whose
  decision rule is not the MAD index (ABS's REASR) override ``decide``.

Scoring convention for filters (what the referee passes to ``score``): one
batch that holds the scoring window of the stream, clean and trigger inputs
interleaved in a fixed random order (``arena.engine.metrics``). Per-input filters
(STRIP, NEO) score each input alone; batch-aware filters (AC, SS), designed
for a poisoned training set, may use the whole window, as if they inspected
a window of deployment traffic. In the control run the window is all clean.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from arena.config.datasets import Tensors
from arena.api.protocol import DefenseContext, Defender, Deployment, Verdict, calibrate_threshold
from arena.api.training import accuracy

MAD_CONSISTENCY = 1.4826


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients for the duration; restores both."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.train(was_training)


def inference_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """The model for a filter's many scoring passes: a channels-last copy on the CPU (faster per input
    than the small CNN's slow NCHW max-pooling; docs/measurements.md), the model itself elsewhere."""
    if device.type != "cpu":
        return model
    try:
        return copy.deepcopy(model).to(memory_format=torch.channels_last)
    except Exception:  # a model that cannot be copied (a plugin's) is used as it is: slower, same answers
        return model


def seed_from(generator: torch.Generator) -> int:
    """A fresh seed drawn from the context's generator (to seed per-call generators)."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def split_clean(clean: Tensors, fraction: float, generator: torch.Generator) -> tuple[Tensors, Tensors]:
    """A random split of the defender's clean set: (the first ``1 - fraction``, the last ``fraction``)."""
    perm = torch.randperm(len(clean), generator=generator).to(clean.x.device)
    k = max(1, int(round(len(clean) * fraction)))
    return clean.subset(perm[:-k]), clean.subset(perm[-k:])


# --- input reformation -------------------------------------------------------
class InputReformer(Defender):
    category: ClassVar[str] = "input_reformation"

    def prepare(self, model: nn.Module, ctx: DefenseContext) -> dict[str, Any]:
        """Fit whatever the reformer needs on the clean set (MagNet's autoencoder); returns notes."""
        return {}

    def reform(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        """Reformed inputs in [0, 1] pixel space (same shape); differentiable torch ops."""
        raise NotImplementedError

    def wrap(self, model: nn.Module) -> tuple[nn.Module, Any]:
        """The deployed model and the input transform (default: the model unchanged, ``reform``)."""
        return model, self.reform

    def deploy(self, model: nn.Module, ctx: DefenseContext) -> Deployment:
        notes = self.prepare(model, ctx)
        deployed, transform = self.wrap(model)
        return Deployment(model=deployed, transform=transform, notes=notes,
                          passes_per_input=self.passes_per_input())

    def passes_per_input(self) -> int:
        """Forward passes of the model the deployment runs per input (1 unless it averages samples)."""
        return 1


# --- input filtering ---------------------------------------------------------
class InputFilter(Defender):
    category: ClassVar[str] = "input_filtering"
    calibration_fraction: ClassVar[float] = 0.5  # of the clean set, held out of ``fit`` for the threshold
    # At most this many held-out clean inputs set the threshold; an agent's own ``calibration_inputs``
    # parameter (STRIP, NEO, AC, SS) overrides it by name.
    calibration_inputs: ClassVar[int] = 1000
    batch_aware: ClassVar[bool] = False  # scores depend on the whole window (AC, SS): see Deployment

    def fit(self, model: nn.Module, reference: Tensors, ctx: DefenseContext) -> Any:  # pragma: no cover
        """Learn what scoring needs from the reference part of the clean set; returns a state."""
        raise NotImplementedError

    def score_inputs(self, model: nn.Module, state: Any, x: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:  # pragma: no cover - interface
        """Suspicion per input (higher = more suspicious), shape (len(x),)."""
        raise NotImplementedError

    def notes(self, state: Any) -> dict[str, Any]:
        return {}

    def deploy(self, model: nn.Module, ctx: DefenseContext) -> Deployment:
        reference, calib = split_clean(ctx.clean, self.calibration_fraction, ctx.generator)
        calib = calib.subset(torch.arange(min(len(calib), self.calibration_inputs), device=calib.x.device))
        state = self.fit(model, reference, ctx)
        seed = seed_from(ctx.generator)
        calib_scores = self.score_inputs(model, state, calib.x, torch.Generator().manual_seed(seed))
        threshold = calibrate_threshold(calib_scores, ctx.fpr_budget)

        def score(x: torch.Tensor) -> torch.Tensor:
            # A fixed generator per call: the same input gets the same score.
            return self.score_inputs(model, state, x, torch.Generator().manual_seed(seed + 1))

        notes = {"reference_inputs": len(reference), "calibration_inputs": len(calib), **self.notes(state)}
        return Deployment(model=model, score=score, threshold=threshold, notes=notes, batch_aware=self.batch_aware)


# --- model sanitization ------------------------------------------------------
class ModelSanitizer(Defender):
    category: ClassVar[str] = "model_sanitization"
    holdout: ClassVar[float] = 0.2  # of the clean set, never trained on: measures the repair's cost

    def sanitize(self, model: nn.Module, train: Tensors, ctx: DefenseContext,
                 hold: Tensors | None = None) -> dict[str, Any]:  # pragma: no cover - interface
        """Repair ``model`` in place, training only on ``train`` (the clean set minus the hold-out).

        ``hold`` may steer a stopping rule (Fine-Pruning's); it is never trained on. Returns notes.
        """
        raise NotImplementedError

    def deploy(self, model: nn.Module, ctx: DefenseContext) -> Deployment:
        train, hold = split_clean(ctx.clean, self.holdout, ctx.generator)
        before = accuracy(model, hold.x, hold.y)
        notes = self.sanitize(model, train, ctx, hold)
        model.eval()
        notes = {"holdout_acc_before": before, "holdout_acc_after": accuracy(model, hold.x, hold.y), **notes}
        return Deployment(model=model, notes=notes)


# --- model inspection --------------------------------------------------------
def anomaly_indices(norms: torch.Tensor) -> torch.Tensor:
    """Signed NC anomaly index per class: (median - L) / (1.4826 * MAD); positive = smaller than the median."""
    norms = norms.double()
    med = norms.median()
    mad = (norms - med).abs().median() * MAD_CONSISTENCY
    return ((med - norms) / mad.clamp_min(1e-12)).float()


@dataclass
class Inspection:
    """What an inspector found, per class: ``norms`` (lower = more suspicious, e.g. the L1 size of
    the smallest trigger to that class), and optionally the recovered masks (K x 1 x H x W) and
    patterns (K x C x H x W) on the CPU."""

    norms: torch.Tensor
    masks: torch.Tensor | None = None
    patterns: torch.Tensor | None = None
    notes: dict[str, Any] = field(default_factory=dict)


class ModelInspector(Defender):
    category: ClassVar[str] = "model_inspection"

    threshold: float = 2.0  # NC's anomaly-index threshold; subclasses take it as a hyper-parameter
    samples: int | None = 512  # clean images handed to ``inspect`` (None: all)
    # Optional second condition: the suspect's norm must also be below this fraction of the median
    # norm. The MAD index alone is scale-free: when most classes' norms cluster tightly, a class that
    # is merely somewhat easier to reach scores above 2 on a clean model (see NeuralCleanse).
    max_norm_ratio: float | None = None
    # Take the MAD index of log(norms) rather than of the norms (not in NC). Norms are positive
    # sizes whose spread across clean classes is multiplicative: the few large norms of clean
    # classes inflate the MAD on the raw scale until a backdoor's far smaller mask no longer scores
    # above the threshold. On the log scale the same targets clear it and benign models stay about
    # at it or below (the figures, from a seed-0 fmnist-cnn tournament, are in
    # docs/measurements.md; see docs/defenses.md).
    log_scale: bool = False

    def inspect(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                ctx: DefenseContext) -> Inspection:  # pragma: no cover - interface
        raise NotImplementedError

    def decide(self, found: Inspection) -> tuple[bool, int, torch.Tensor]:
        """(is_trojan, suspected target, anomaly index per class): NC's MAD rule on ``norms``
        (on ``log(norms)`` when ``log_scale``), and ``max_norm_ratio`` when set."""
        ai = anomaly_indices(found.norms.clamp_min(1e-12).log() if self.log_scale else found.norms)
        target = int(torch.argmin(found.norms))
        flagged = bool(ai[target] > self.threshold)
        if self.max_norm_ratio is not None:
            flagged = flagged and bool(found.norms[target] < self.max_norm_ratio * found.norms.median())
        return flagged, target, ai

    def deploy(self, model: nn.Module, ctx: DefenseContext) -> Deployment:
        clean = ctx.clean
        n = min(len(clean), self.samples) if self.samples else len(clean)
        idx = torch.randperm(len(clean), generator=ctx.generator)[:n].to(clean.x.device)
        # The search runs many forward and backward passes on a model whose weights it never changes:
        # on the CPU a channels-last copy runs them about 1.8x faster (docs/measurements.md). Its
        # convolutions sum in another order, so the recovered norms differ in the low bits from an
        # NCHW run's; the inspectors' versions changed with it.
        with frozen(inference_copy(model, clean.x.device)) as searched:
            found = self.inspect(searched, clean.x[idx], clean.y[idx], ctx)
        is_trojan, target, ai = self.decide(found)
        verdict = Verdict(
            is_trojan=is_trojan, target=target, anomaly_index=[float(a) for a in ai],
            mask=found.masks[target].detach().cpu().clone() if found.masks is not None else None,
            pattern=found.patterns[target].detach().cpu().clone() if found.patterns is not None else None,
        )
        notes = {"norms": [round(float(v), 3) for v in found.norms], "samples": n, **found.notes}
        return Deployment(model=model, verdict=verdict, notes=notes)
