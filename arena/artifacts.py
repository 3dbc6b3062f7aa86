"""Image artifacts of a match: the trigger an inspection defender recovered, beside the true one.

An inspector's verdict carries the mask and pattern it reverse-engineered for
its suspected target class (Neural Cleanse, TABOR, DeepInspect, ABS). The
referee computes MLN and MJS from them; this module keeps them so a reader
can *see* what was recovered:

- ``<home>/artifacts/triggers/<key>.pt``: the recovered mask and pattern and
  the true trigger's mask and pattern (tensors, loadable with
  ``torch.load(..., weights_only=True)``);
- ``<home>/artifacts/triggers/<key>-labelled.png``: labelled panels, left to
  right: the true trigger (mask x pattern), the recovered mask, the recovered
  pattern and the recovered trigger (mask x pattern), drawn by
  ``arena.gallery.recovered_trigger_figure`` (matplotlib). Earlier versions
  wrote ``<key>.png``, three unlabelled panels; the new name lets a match
  stored now point at the labelled picture while old records keep theirs.

The key is the hash of the tensors, so a replayed match writes nothing new.
The match record stores the paths relative to the arena home under
``metrics["artifacts"]``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from arena.protocol import Verdict
from arena.triggers import Trigger


def save_recovered_trigger(home: Path, true: Trigger | None, verdict: Verdict) -> dict[str, str]:
    """Write the .pt and .png of a verdict's recovered trigger; returns their paths relative to ``home``.

    Returns ``{}`` when the verdict has no mask (an inspector that only ranks classes, e.g. NeuronInspect).
    """
    if verdict.mask is None:
        return {}
    from arena.gallery import save_recovered_trigger_png  # matplotlib: imported only when there is a picture

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
    pt, png = folder / f"{key}.pt", folder / f"{key}-labelled.png"
    if not (pt.is_file() and png.is_file()):
        # Write under a temporary name and rename, as the cache does: a killed run leaves no half file.
        tmp_pt = folder / f"{key}.tmp{os.getpid()}.pt"
        torch.save(tensors, tmp_pt)
        save_recovered_trigger_png(tensors, png)  # itself written through a temporary file
        os.replace(tmp_pt, pt)
    return {"recovered_trigger_pt": str(rel / pt.name), "recovered_trigger_png": str(rel / png.name)}
