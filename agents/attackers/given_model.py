"""A model you were handed, played as an attacker: ``arena match model:PATH DEFENDER``.

No paper: this is how a user asks "how does every defence fare on *this*
model?" (and what ``arena scan`` plays against each inspector). ``craft``
loads the weights from PATH and hands them back as the trojan, unchanged; the
arena trains nothing.

- PATH is a state dict for the scenario's architecture, saved with
  ``torch.save(model.state_dict(), PATH)`` (a checkpoint dict holding it
  under ``state_dict`` or ``model`` works too). It is read with
  ``torch.load(..., weights_only=True)``, so a file cannot run code when it
  is loaded, and only inside this agent's sandboxed process: the sandbox
  grants read access to PATH and nothing else of the user's files.
- ``trigger``: optional path of an ``.npz`` with ``mask`` (1 x H x W, in
  [0, 1]) and ``pattern`` (C x H x W, in [0, 1]), the trigger the model is
  suspected to answer to; it is what the match's ASR is measured with.
  Without it, the scenario's trigger is used, and the attack metrics then
  say only whether *that* trigger works (for an unknown backdoor, about the
  benign base rate): the inspectors' verdicts are what speak about the model.
- The trojan is cached under the sha256 of PATH's bytes (the agent's code
  digest), so a file overwritten with other weights is played afresh.

Departures: not an attack, so no Table 20 defaults. Exported programs
(``torch.export``) are not accepted yet: the referee rebuilds every model
from a registered architecture and its weights, and an exported graph has
no such name; save its state dict for the matching architecture instead.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from arena.api import AttackContext, Attacker, Trigger, Trojan


class ModelFileError(ValueError):
    """The file cannot be played: the attacker forfeits with this message, which says what to do."""


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelFileError(f"model file not found: {path}") from None
    except Exception as exc:  # a pickle that needs code, a truncated file, not torch at all
        raise ModelFileError(f"cannot read {path} as weights ({type(exc).__name__}: {exc}); save it with "
                             "torch.save(model.state_dict(), PATH): a file that needs code to load is "
                             "refused on purpose") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelFileError(f"{path} holds no state dict (a mapping of names to tensors); save it with "
                             "torch.save(model.state_dict(), PATH)")
    return obj


def _trigger(path: Path, like: Trigger) -> Trigger:
    try:
        with np.load(path, allow_pickle=False) as d:
            mask, pattern = torch.from_numpy(d["mask"]).float(), torch.from_numpy(d["pattern"]).float()
    except (OSError, KeyError, ValueError) as exc:
        raise ModelFileError(f"cannot read the trigger {path} ({exc}); save it with np.savez(PATH, "
                             "mask=1xHxW array in [0, 1], pattern=CxHxW array in [0, 1])") from None
    if mask.shape != like.mask.shape or pattern.shape != like.pattern.shape:
        raise ModelFileError(f"trigger {path}: mask {tuple(mask.shape)} and pattern {tuple(pattern.shape)}, "
                             f"but the scenario's inputs need {tuple(like.mask.shape)} and "
                             f"{tuple(like.pattern.shape)}")
    return Trigger(mask=mask.clamp(0, 1), pattern=pattern.clamp(0, 1))


class GivenModel(Attacker):
    name = "given-model"
    version = "1"

    def __init__(self, path: str, trigger: str | None = None) -> None:
        self.path = str(path)
        self.trigger = trigger

    def craft(self, ctx: AttackContext) -> Trojan:
        path = Path(self.path)
        state = _state_dict(path)
        model = copy.deepcopy(ctx.benign).cpu()
        # A state dict of the bare network (an architecture the arena split by its graph, or saved
        # before pruning) lacks the all-ones channel mask the arena adds: take the fresh model's.
        for key, value in model.state_dict().items():
            if key.endswith("feature_mask") and key not in state:
                state[key] = value
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            arch = getattr(getattr(ctx.benign, "spec", None), "arch", "?")
            first = str(exc).strip().splitlines()
            raise ModelFileError(f"{path} does not fit the scenario's architecture '{arch}' "
                                 f"({' '.join(first[:3])[:400]}); scan it under a scenario whose "
                                 "architecture, classes and image size the model was trained with") from None
        trigger = _trigger(Path(self.trigger), ctx.trigger) if self.trigger else ctx.trigger
        return Trojan(model=model.to(ctx.device), trigger=trigger,
                      notes={"given_model": path.name, "trigger": "given" if self.trigger else "scenario's"})
