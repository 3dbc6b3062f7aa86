"""Spectral Signature (SS): Tran, Li and Madry, "Spectral Signatures in Backdoor
Attacks", NeurIPS 2018.

Input filtering (paper Table 3). SS was designed to purge a poisoned training
set: for every label, the learned representations (here the penultimate layer,
``model.features``) of that label's examples are centered, the top right
singular vector of the centered matrix is taken, and each example's outlier
score is its squared projection on that vector. Poisoned examples shift the
representation in one direction, so the top singular vector points along the
shift and the poison gets the largest scores (SS removes the top 1.5 x eps of
each label).

In the arena SS inspects deployment traffic instead (``arena.api.defenses``): the
scoring window is one batch, and per *predicted* class c it takes the
representations of the defender's reference clean inputs predicted as c
together with the window's inputs predicted as c, finds the top singular
vector and scores each window input by its squared projection. Trigger inputs
all land in the target class with a shared shift, which is what SS's spectral
signature is.

Defaults: the paper has no tunable setting beyond the representation layer
and the removal rate (Table 21 lists none for SS); the removal rate is
replaced by the arena's threshold, calibrated at the FPR budget on at most
``calibration_inputs`` = 1000 held-out clean inputs.

Implementation notes and departures:
- Centering on the *reference clean mean* of the class, not on the mean of
  all the class's examples. SS assumes poison is a small fraction eps of a
  label; in a scoring window trigger inputs can outnumber the target class's
  clean inputs (600 trigger inputs against ~60 clean ones in the test
  scenario), and centering on the joint mean would put the center inside the
  trigger cluster and make the *clean* inputs the outliers. The reference
  inputs are known clean, so their mean is a clean center whatever the window.
- Per-class normalization: one threshold serves all classes, so a class's
  scores are divided by the mean squared projection of its reference clean
  inputs on the same vector (about 1 for a clean input of any class; trigger
  inputs, far along the vector, score far above).
- Reference inputs are grouped by the model's prediction, like the window,
  so that a clean window input and a reference input of the same predicted
  class come from the same distribution. A window input of a class that no
  reference input is predicted as is compared with all reference inputs.
- The window is what ``score`` receives: the base's calibration scores the
  clean calibration split as one all-clean window, the control run scores an
  all-clean window of test inputs, and a match scores the interleaved clean
  and trigger window. On an all-clean window the top vector is the clean
  class's main direction of variance and scores are ~chi-square(1) values.
- Deterministic: an eigendecomposition, no sampling.

Tuning: SS has no parameter of its own; the reference-mean centering and
per-class normalization were designed on the tiny test scenario, seed 0. The
record shows no default here chosen on fmnist-cnn matches.

Assumes: the data of any scenario (``arena_agents``); reads the penultimate
layer (``features``).
"""

from __future__ import annotations


import torch
from torch import nn

from arena.api import Tensors
from arena.api import features_and_predictions, inference_copy, InputFilter
from arena.api import DefenseContext


def spectral_scores(ref: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """SS outlier scores of ``window`` rows: squared projection on the top singular vector of
    ``[ref; window]`` centered on ``ref``'s mean, divided by the reference rows' mean square."""
    center = ref.mean(0, keepdim=True)
    joint = torch.cat([ref, window]) - center
    # Top right singular vector = top eigenvector of the D x D scatter matrix (eigh sorts ascending);
    # float64 keeps it stable on small, nearly rank-deficient sets, and eigh of D x D is cheaper than an SVD.
    v = torch.linalg.eigh(joint.double().T @ joint.double())[1][:, -1].to(joint.dtype)
    proj_ref = (ref - center) @ v
    proj_win = (window - center) @ v
    return proj_win.square() / proj_ref.square().mean().clamp_min(1e-12)


class SpectralSignature(InputFilter):
    name = "spectral-signature"
    version = "2"  # 2: scored on windows at the scenario's trigger share
    batch_aware = True

    def __init__(self, calibration_inputs: int = 1000) -> None:
        self.calibration_inputs = calibration_inputs

    def fit(self, model: nn.Module, reference: Tensors, ctx: DefenseContext) -> dict:
        scorer = inference_copy(model, ctx.device)
        feats, preds = features_and_predictions(scorer, reference.x)
        return {"scorer": scorer, "ref_feats": feats, "ref_preds": preds}

    def score_inputs(self, model: nn.Module, state: dict, x: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
        feats, preds = features_and_predictions(state["scorer"], x)
        ref_feats, ref_preds = state["ref_feats"], state["ref_preds"]
        scores = torch.zeros(len(x), device=x.device)
        for c in preds.unique().tolist():  # a loop over classes: one eigendecomposition each
            sel = preds == c
            ref = ref_feats[ref_preds == c]
            if len(ref) < 2:  # no clean picture of this class: compare with the whole reference set
                ref = ref_feats
            scores[sel] = spectral_scores(ref, feats[sel])
        return scores

    def notes(self, state: dict) -> dict:
        counts = torch.bincount(state["ref_preds"]).tolist() if len(state["ref_preds"]) else []
        return {"reference_per_class": counts}
