"""Image artifacts of a match: the trigger an inspection defender recovered, beside the true one.

An inspector's verdict carries the mask and pattern it reverse-engineered for
its suspected target class (Neural Cleanse, TABOR, DeepInspect, ABS). The
referee computes MLN and MJS from them; this module keeps them so a reader
can *see* what was recovered:

- ``<home>/artifacts/triggers/<key>.pt``: the recovered mask and pattern and
  the true trigger's mask and pattern (tensors, loadable with
  ``torch.load(..., weights_only=True)``);
- ``<home>/artifacts/triggers/<key>.png``: three panels, left to right: the
  true trigger (mask x pattern), the recovered mask, the recovered trigger
  (mask x pattern), each upscaled so a 28x28 image is legible.

The key is the hash of the tensors, so a replayed match writes nothing new.
The match record stores the paths relative to the arena home under
``metrics["artifacts"]``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from arena.protocol import Verdict
from arena.triggers import Trigger

SCALE = 8  # nearest-neighbour upscaling of each panel (28x28 -> 224x224)


def _rgb(img: torch.Tensor) -> torch.Tensor:
    """C x H x W in [0, 1] -> 3 x H x W (grey images are repeated over the channels)."""
    img = img.detach().float().cpu().clamp(0, 1)
    return img.expand(3, -1, -1) if img.shape[0] == 1 else img[:3]


def trigger_panels(true: Trigger | None, verdict: Verdict) -> torch.Tensor:
    """The panels of the PNG as one N x 3 x H x W batch (true trigger, recovered mask, recovered trigger)."""
    assert verdict.mask is not None
    mask = verdict.mask.detach().float().cpu()
    panels = []
    if true is not None:
        panels.append(_rgb(true.mask.cpu() * true.pattern.cpu()))
    panels.append(_rgb(mask))
    if verdict.pattern is not None:
        panels.append(_rgb(mask * verdict.pattern.detach().float().cpu()))
    return F.interpolate(torch.stack(panels), scale_factor=SCALE, mode="nearest")


def save_recovered_trigger(home: Path, true: Trigger | None, verdict: Verdict) -> dict[str, str]:
    """Write the .pt and .png of a verdict's recovered trigger; returns their paths relative to ``home``.

    Returns ``{}`` when the verdict has no mask (an inspector that only ranks classes, e.g. NeuronInspect).
    """
    if verdict.mask is None:
        return {}
    from torchvision.utils import save_image  # torchvision writes the PNG through Pillow

    tensors = {"mask": verdict.mask.detach().float().cpu().contiguous()}
    if verdict.pattern is not None:
        tensors["pattern"] = verdict.pattern.detach().float().cpu().contiguous()
    if true is not None:
        tensors["true_mask"] = true.mask.detach().float().cpu().contiguous()
        tensors["true_pattern"] = true.pattern.detach().float().cpu().contiguous()
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].numpy().tobytes())
    key = h.hexdigest()[:24]
    rel = Path("artifacts") / "triggers"
    folder = home / rel
    folder.mkdir(parents=True, exist_ok=True)
    pt, png = folder / f"{key}.pt", folder / f"{key}.png"
    if not (pt.is_file() and png.is_file()):
        # Write under a temporary name and rename, as the cache does: a killed run leaves no half file.
        tmp_pt, tmp_png = folder / f"{key}.tmp{os.getpid()}.pt", folder / f"{key}.tmp{os.getpid()}.png"
        torch.save(tensors, tmp_pt)
        save_image(trigger_panels(true, verdict), tmp_png, nrow=3, padding=2, pad_value=0.5)
        os.replace(tmp_pt, pt)
        os.replace(tmp_png, png)
    return {"recovered_trigger_pt": str(rel / pt.name), "recovered_trigger_png": str(rel / png.name)}
