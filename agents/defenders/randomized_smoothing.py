"""Randomized Smoothing (RS): Cohen, Rosenfeld and Kolter, "Certified
Adversarial Robustness via Randomized Smoothing", ICML 2019.

Input reformation. The deployed classifier is the smoothed classifier
g(x) = E[f(x + e)], e ~ N(0, std^2 I): each input is classified by averaging
the model's softmax over ``samples`` Gaussian-noised copies of it, so the
decision reflects the class boundaries around x rather than at x; a trigger
that only works at one precise point of input space is washed out.

Defaults (paper Table 21): Gaussian noise, 100 samples, std 0.01 (pixel
space, [0, 1] scale).

Implementation notes and departures:
- ``wrap`` returns a ``SmoothedClassifier`` module and no input transform. It
  returns the log of the averaged probabilities, so that ``softmax`` of its
  output (``arena.api.training.predict_proba``) is the averaged softmax. Cohen et
  al. predict by a majority vote over the noisy copies (and abstain when the
  vote is not significant); averaging soft predictions is TrojanZoo's
  description ("averaging the predictions within its vicinity"), is
  differentiable, and never abstains (the arena has no abstention).
- Vectorized: a chunk of B inputs and their N noisy copies is one B*N-image
  batch (``chunk`` images at most, for memory).
- Deterministic: ``prepare`` draws a noise seed from ``ctx.generator``; every
  forward creates a generator with that seed on the input's device and draws
  one block of N noise images, shared by all inputs of the call. An input's
  prediction therefore depends neither on the call nor on its position in the
  batch (the same input always gets the same prediction). Each input's
  estimate is still an average over N i.i.d. Gaussian draws; only the draws
  of different inputs are correlated, which a per-input prediction does not
  see. ``wrap`` without ``prepare`` uses seed 0.
- Noisy copies are not clipped to [0, 1], as in Cohen et al.
- No ``reform``: RS changes how the model predicts, not the input.
- Sequential (``first`` = 16, ``z`` = 4; ``first = 0`` restores the fixed
  count): when no gradient is wanted (the referee's scoring), an input is
  first classified on the first 16 of its 100 draws; if its top class leads
  the runner-up by more than z = 4 standard errors of the per-draw lead, the
  16-draw average is its answer, and otherwise it is classified on all 100
  (the same draws, so the answer is then exactly the fixed-count one). For
  the 16-draw answer, the chance that 100 draws would pick another class is
  about the normal tail beyond 4 standard errors (3e-5 per input, by the
  central limit theorem over the draws; 16 draws make that approximate); its
  probabilities are a 16-draw average, so confidences (TMC, CCC) differ from
  the 100-draw ones in the third decimal. With gradients (an adaptive
  attacker differentiating through the defence) all 100 draws are used.
  Version 2 brought this in; the development-seed comparison with version 1
  is in docs/benchmarks.md.
- Cost: at most ``samples`` forward passes per input (100 at the default), so on the
  CPU scenario RS is by far the slowest reformer per input (ART). The
  deployment declares them (``passes_per_input``), and the referee scores it
  on as many test inputs as the scenario's ``scoring.passes`` budget allows
  (fmnist-cnn: 2000 clean and 2000 trigger inputs instead of ~19k): scoring
  the whole test split took a large share of the seed-0 tournament's time
  (docs/measurements.md).
- At the paper's defaults (100 samples, std 0.01: about 2.5 grey levels) the
  smoothing does not move the tiny test scenario's predictions: BadNet's ASR
  and the clean accuracy stay where they were. Larger stds cost clean
  accuracy (the model was not trained under noise) much faster than they
  weaken an opaque 3x3 checkerboard. The figures, and the cost per input,
  are in docs/measurements.md. This matches the paper's Table 8 (RS: -0.5 ASR
  against BadNet).

Tuning: the paper's 100 samples and std 0.01 (Table 21), kept although they
change nothing here (tiny test scenario, seed 0, above; docs/measurements.md).
Nothing was tuned; fmnist-cnn's ``scoring.passes``, set for time after the
seed-0 tournament, decides how many inputs RS is scored on, not its rule.
``first`` (16) and ``z`` (4) were set before any run, for speed and a small
error bound, and checked once on fmnist-cnn's development seed 0 (no change in
any outcome); not adjusted after.

Assumes: the data of any scenario (``arena_agents``); reads outputs and
gradients only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from arena.api import InputReformer, seed_from
from arena.api import DefenseContext


class SmoothedClassifier(nn.Module):
    """log E[softmax(model(x + std * e))] over ``samples`` fixed-seed Gaussian draws e.

    With ``first`` (0 < first < samples) and no gradient wanted, each input
    is first classified on the first ``first`` draws; an input whose decision
    those draws already settle (the module docstring's rule) keeps that
    estimate, and only the others are classified on all ``samples`` draws.
    """

    def __init__(self, model: nn.Module, samples: int, std: float, seed: int, chunk: int, first: int = 0,
                 z: float = 4.0) -> None:
        super().__init__()
        self.model = model
        self.samples = samples
        self.std = std
        self.seed = seed
        self.chunk = chunk
        self.first = first
        self.z = z
        if hasattr(model, "spec"):
            self.spec = model.spec  # arena code reads ``spec`` (e.g. the number of classes)

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """The N noise images of this call: the same for every call and every input."""
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        return torch.randn((self.samples, *x.shape[1:]), generator=gen, device=x.device, dtype=x.dtype) * self.std

    def _probs(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """(B, len(eps), K) softmax of every input under every draw, in chunks of at most ``chunk`` images."""
        per = max(1, self.chunk // len(eps))  # inputs per chunk of B*N noisy images
        outs = []
        for i in range(0, len(x), per):
            xb = x[i : i + per]
            noisy = (xb.unsqueeze(1) + eps.unsqueeze(0)).flatten(0, 1)
            outs.append(self.model(noisy).float().softmax(1).view(len(xb), len(eps), -1))
        return torch.cat(outs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = self.noise(x)
        if not (0 < self.first < self.samples) or torch.is_grad_enabled() or len(x) == 0:
            return self._probs(x, eps).mean(1).clamp_min(1e-12).log()
        p = self._probs(x, eps[: self.first])
        mean = p.mean(1)
        settled = self.settled(p, mean)
        if not bool(settled.all()):
            open_ = (~settled).nonzero().squeeze(1)
            mean[open_] = self._probs(x[open_], eps).mean(1)  # the same draws, all N of them
        return mean.clamp_min(1e-12).log()

    def settled(self, p: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """Per input: whether the first draws' top class leads the runner-up by more than ``z`` standard
        errors of the per-draw margin, so all N draws would (almost surely) pick the same class."""
        if mean.shape[1] < 2:
            return torch.ones(len(mean), dtype=torch.bool, device=mean.device)
        top2 = mean.topk(2, dim=1).indices
        margin = p.gather(2, top2[:, None, :].expand(-1, p.shape[1], -1))
        d = margin[:, :, 0] - margin[:, :, 1]  # (B, first): the lead under each draw
        se = d.std(1) / (d.shape[1] ** 0.5)
        return d.mean(1) > self.z * se


class RandomizedSmoothing(InputReformer):
    name = "randomized-smoothing"
    version = "2"

    def __init__(self, samples: int = 100, std: float = 0.01, chunk: int = 4096, first: int = 16,
                 z: float = 4.0) -> None:
        if samples < 1 or std < 0:
            raise ValueError(f"need samples >= 1 and std >= 0, got samples={samples}, std={std}")
        if first < 0 or z <= 0:
            raise ValueError(f"need first >= 0 (0: always all samples) and z > 0, got first={first}, z={z}")
        self.samples = samples
        self.std = std
        self.chunk = chunk
        self.first = first
        self.z = z

    def prepare(self, model: nn.Module, ctx: DefenseContext) -> dict[str, Any]:
        # The noise seed of this deployment, drawn from the match's generator (reproducible).
        self.noise_seed = seed_from(ctx.generator)
        return {"samples": self.samples, "std": self.std, "first": self.first, "z": self.z}

    def passes_per_input(self) -> int:
        return self.samples  # the most an input costs: the referee sizes the scored prefix by it

    def wrap(self, model: nn.Module) -> tuple[nn.Module, Any]:
        """The smoothed classifier and no input transform (RS changes how the model predicts)."""
        seed = getattr(self, "noise_seed", 0)  # 0 when wrapped without ``prepare`` (tests, attackers)
        return SmoothedClassifier(model, self.samples, self.std, seed, self.chunk, self.first, self.z), None
