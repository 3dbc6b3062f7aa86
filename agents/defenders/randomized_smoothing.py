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
- Cost: ``samples`` forward passes per input (100 at the default), so on the
  CPU scenario RS is by far the slowest reformer per input (ART). The
  deployment declares them (``passes_per_input``), and the referee scores it
  on as many test inputs as the scenario's ``scoring.passes`` budget allows
  (fmnist-cnn: 2000 clean and 2000 trigger inputs instead of ~19k): scoring
  the whole test split took 30 of the 67 minutes of the seed-0 tournament.
- At the paper's defaults (100 samples, std 0.01: about 2.5 grey levels) the
  smoothing does not move the tiny test scenario's predictions: BadNet's ASR
  0.972 -> 0.973 (ARD -0.0006), CAD 0.000, at 24 ms per input on one CPU
  thread. Larger stds cost clean accuracy (the model was not trained under
  noise) much faster than they weaken an opaque 3x3 checkerboard: std 0.1
  (8 samples) lowers the ASR by 0.7 points at 1.4 points of accuracy; std 0.15
  by about 2 points at 4.5. This matches the paper's Table 8 (RS: -0.5 ASR
  against BadNet).

Tuning: the paper's 100 samples and std 0.01 (Table 21), kept although they
change nothing here (tiny test scenario, seed 0, above). Nothing was tuned;
fmnist-cnn's ``scoring.passes``, set for time after the seed-0 tournament,
decides how many inputs RS is scored on, not its rule.

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
    """log E[softmax(model(x + std * e))] over ``samples`` fixed-seed Gaussian draws e."""

    def __init__(self, model: nn.Module, samples: int, std: float, seed: int, chunk: int) -> None:
        super().__init__()
        self.model = model
        self.samples = samples
        self.std = std
        self.seed = seed
        self.chunk = chunk
        if hasattr(model, "spec"):
            self.spec = model.spec  # arena code reads ``spec`` (e.g. the number of classes)

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """The N noise images of this call: the same for every call and every input."""
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        return torch.randn((self.samples, *x.shape[1:]), generator=gen, device=x.device, dtype=x.dtype) * self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = self.noise(x)
        per = max(1, self.chunk // self.samples)  # inputs per chunk of B*N noisy images
        outs = []
        for i in range(0, len(x), per):
            xb = x[i : i + per]
            noisy = (xb.unsqueeze(1) + eps.unsqueeze(0)).flatten(0, 1)
            p = self.model(noisy).float().softmax(1).view(len(xb), self.samples, -1).mean(1)
            outs.append(p.clamp_min(1e-12).log())
        return torch.cat(outs)


class RandomizedSmoothing(InputReformer):
    name = "randomized-smoothing"
    version = "1"

    def __init__(self, samples: int = 100, std: float = 0.01, chunk: int = 4096) -> None:
        if samples < 1 or std < 0:
            raise ValueError(f"need samples >= 1 and std >= 0, got samples={samples}, std={std}")
        self.samples = samples
        self.std = std
        self.chunk = chunk

    def prepare(self, model: nn.Module, ctx: DefenseContext) -> dict[str, Any]:
        # The noise seed of this deployment, drawn from the match's generator (reproducible).
        self.noise_seed = seed_from(ctx.generator)
        return {"samples": self.samples, "std": self.std}

    def passes_per_input(self) -> int:
        return self.samples

    def wrap(self, model: nn.Module) -> tuple[nn.Module, Any]:
        """The smoothed classifier and no input transform (RS changes how the model predicts)."""
        seed = getattr(self, "noise_seed", 0)  # 0 when wrapped without ``prepare`` (tests, attackers)
        return SmoothedClassifier(model, self.samples, self.std, seed, self.chunk), None
