"""STRIP: Gao et al., "STRIP: A Defence Against Trojan Attacks on Deep Neural
Networks", ACSAC 2019.

Input filtering. Each incoming input is superimposed on clean images of the
defender's set; a trigger input keeps pulling the mixtures to the target class,
so their predictions have abnormally low entropy. Score = minus the mean
normalized entropy over the mixtures (higher = more suspicious).

Defaults (paper Table 21): mixing weight ``mix_weight`` = 0.5 (equal),
``samples`` = 64 samples per input.

Implementation notes and departures:
- Vectorized: a batch of B inputs is mixed with its N overlays as one
  B*N-image tensor and evaluated in chunks of at most ``chunk`` (2048)
  images, so an input is cheap to score on
  the CPU scenario (ART in the match record).
- On the CPU the mixtures run through a channels-last copy of the model:
  profiling the small CNN showed NCHW max-pooling taking most of the forward
  time, and channels-last makes STRIP faster per input. The timings are in
  docs/measurements.md.
- The threshold is calibrated on the defender's clean set at the scenario's
  FPR budget (the original paper fixes the FRR the same way), on at most
  ``calibration_inputs`` (500) inputs disjoint from the overlay pool (the
  other half of the clean set; ``arena.api.defenses.InputFilter``), so the
  calibration is not optimistic; 500 inputs put the 95th percentile within
  about one percentage point of FPR.

Tuning: the paper's mixing weight and 64 samples (Table 21);
``calibration_inputs`` (500) for the precision of the calibrated FPR. Values
checked on the tiny test scenario, seed 0; the record shows no default here
chosen on fmnist-cnn matches.

Assumes: the data of any scenario (``arena_agents``); reads outputs and
gradients only.
"""

from __future__ import annotations


import torch
from torch import nn

from arena.api import Tensors
from arena.api import inference_copy, InputFilter
from arena.api import DefenseContext
from arena.api import predict_proba


class STRIP(InputFilter):
    name = "strip"
    version = "1"

    def __init__(self, samples: int = 64, mix_weight: float = 0.5, calibration_inputs: int = 500,
                 chunk: int = 2048) -> None:
        self.samples = samples
        self.mix_weight = mix_weight
        self.calibration_inputs = calibration_inputs
        self.chunk = chunk

    def mixtures(self, x: torch.Tensor, overlays: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """B x N mixtures of each input with N random overlays (B*N x C x H x W)."""
        idx = torch.randint(0, len(overlays), (len(x), self.samples), generator=generator).to(x.device)
        mixed = self.mix_weight * x.unsqueeze(1) + (1 - self.mix_weight) * overlays[idx]
        return mixed.flatten(0, 1)

    def entropy_score(self, model: nn.Module, x: torch.Tensor, overlays: torch.Tensor,
                      generator: torch.Generator) -> torch.Tensor:
        per_batch = max(1, self.chunk // self.samples)
        scores = []
        for i in range(0, len(x), per_batch):
            xb = x[i : i + per_batch]
            p = predict_proba(model, self.mixtures(xb, overlays, generator), batch_size=self.chunk)
            ent = -(p * p.clamp_min(1e-12).log()).sum(1) / torch.log(torch.tensor(float(p.shape[1])))
            scores.append(-ent.view(len(xb), self.samples).mean(1))
        return torch.cat(scores) if scores else torch.empty(0)

    def fit(self, model: nn.Module, reference: Tensors, ctx: DefenseContext) -> dict:
        scorer = inference_copy(model, ctx.device)
        return {"scorer": scorer, "overlays": reference.x}

    def score_inputs(self, model: nn.Module, state: dict, x: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
        return self.entropy_score(state["scorer"], x, state["overlays"], generator)
