"""A model you were handed, played as an attacker: ``arena match model:PATH DEFENDER``.

No paper: this is how a user asks "how does every defence fare on *this*
model?" (and what ``arena scan`` plays against each defender). ``craft``
loads the model from PATH and hands it back as the trojan, unchanged; the
arena trains nothing.

- PATH is a state dict for the scenario's architecture, saved with
  ``torch.save(model.state_dict(), PATH)`` (a checkpoint dict holding it
  under ``state_dict`` or ``model`` works too), read with
  ``torch.load(..., weights_only=True)``; or an exported program, saved with
  ``torch.export.save(torch.export.export(model.eval(), (example,)), PATH)``
  (a ``.pt2``; any architecture), read by ``arena.api.exported``, which
  never calls ``torch.export.load`` (that unpickles and ``eval``s what the
  file holds) and runs only allowlisted aten operators of its graph. Either
  way a file cannot run code when it is loaded, and it is read only inside
  this agent's sandboxed process: the sandbox grants read access to PATH
  and the trigger's file, and nothing else of the user's files. (The referee and the defenders
  rebuild an exported model from the file's bytes, which travel in its
  state dict, by the same reader.)
- An exported program must take the scenario's images (C x H x W) and
  answer its classes; where its graph ends in a linear layer after a channel
  map, the layer-wise defenders (ABS, Fine-Pruning) read it as they read the
  arena's models, otherwise they fail with the reason.
- ``trigger``: optional path of an ``.npz`` with ``mask`` (1 x H x W, in
  [0, 1]) and ``pattern`` (C x H x W, in [0, 1]), the trigger the model is
  suspected to answer to; it is what the match's ASR is measured with
  (towards the scenario's ``attack.target_class``: ``arena scan --target``
  sets another).
  Without it, the scenario's trigger is used, and the attack metrics then
  say only whether *that* trigger works (for an unknown backdoor, about the
  benign base rate): the inspectors' verdicts are what speak about the model.
- The trojan is cached under the sha256 of PATH's bytes (the agent's code
  digest), so a file overwritten with other weights is played afresh.

Departures: not an attack, so no Table 20 defaults. A model need not be of
a registered architecture: an exported program is rebuilt from its own
graph (``arena.api.exported``). That graph was exported in one mode, so its
batch norm keeps its running statistics when a defender fine-tunes it, and
one that bakes its batch size in (``view(x.size(0), -1)`` in an export
without a dynamic batch) runs in padded batches of that size.

Tuning: nothing to tune: the agent plays the file it is given and chooses
nothing.

Assumes: a model made for the scenario's data: a state dict of the
scenario's architecture (its classes and image size), or an exported program
that takes the scenario's images and answers its classes; a ``trigger``
file, if given, of the scenario's image size and channels.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from arena.api import (AttackContext, Attacker, ProgramError, Trigger, Trojan, exported_model, exported_spec,
                       is_exported_program, read_program)


class ModelFileError(ValueError):
    """The file cannot be played: the attacker forfeits with this message, which says what to do."""


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"model file not found: {path}") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read {path} ({exc.strerror or exc})") from None


def _state_dict(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle that needs code, a truncated file, not torch at all
        raise ModelFileError(f"cannot read {path} as weights ({type(exc).__name__}: {exc}); save it with "
                             "torch.save(model.state_dict(), PATH), or export it with torch.export.save: a file "
                             "that needs code to load is refused on purpose") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelFileError(f"{path} holds no state dict (a mapping of names to tensors); save it with "
                             "torch.save(model.state_dict(), PATH)")
    return obj


def _from_state_dict(state: dict[str, torch.Tensor], path: Path, benign: nn.Module) -> nn.Module:
    model = copy.deepcopy(benign).cpu()
    # A state dict of the bare network (an architecture the arena split by its graph, or saved
    # before pruning) lacks the all-ones channel mask the arena adds: take the fresh model's.
    for key, value in model.state_dict().items():
        if key.endswith("feature_mask") and key not in state:
            state[key] = value
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        arch = getattr(getattr(benign, "spec", None), "arch", "?")
        first = str(exc).strip().splitlines()
        raise ModelFileError(f"{path} does not fit the scenario's architecture '{arch}' "
                             f"({' '.join(first[:3])[:400]}); scan it under a scenario whose "
                             "architecture, classes and image size the model was trained with, or export it "
                             "with torch.export.save") from None
    return model


def _from_program(data: bytes, path: Path, benign: nn.Module) -> nn.Module:
    try:
        return exported_model(data, exported_spec(read_program(data), benign.spec))
    except ProgramError as exc:
        raise ModelFileError(f"cannot play the exported program {path}: {exc}") from None


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
        data = _read(path)
        exported = is_exported_program(data)
        model = (_from_program(data, path, ctx.benign) if exported
                 else _from_state_dict(_state_dict(data, path), path, ctx.benign))
        trigger = _trigger(Path(self.trigger), ctx.trigger) if self.trigger else ctx.trigger
        return Trojan(model=model.to(ctx.device), trigger=trigger,
                      notes={"given_model": path.name, "format": "exported program" if exported else "state dict",
                             "trigger": "given" if self.trigger else "scenario's"})
