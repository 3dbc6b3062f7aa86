"""Image artifacts of a match: the trigger an inspection defender recovered, beside the true one.

An inspector's verdict carries the mask and pattern it reverse-engineered for
its suspected target class (Neural Cleanse, TABOR, DeepInspect, ABS; NeuronInspect
a mask without a pattern). The referee computes MLN and MJS from them; this
module keeps them so a reader can *see* what was recovered:

- ``<home>/artifacts/triggers/<key>.pt``: the recovered mask and pattern and
  the true trigger's mask and pattern (tensors, loadable with
  ``torch.load(..., weights_only=True)``);

Pictures are drawn from these tensors by whoever shows them (``arena report``,
``arena.present.gallery.save_recovered_trigger_png``), never during a match:
the engine keeps numbers, presentation draws.

The key is the hash of the tensors, so a replayed match writes nothing new.
The match record stores the paths relative to the arena home under
``metrics["artifacts"]``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from arena.api.protocol import Verdict
from arena.api.triggers import Trigger


def save_recovered_trigger(home: Path, true: Trigger | None, verdict: Verdict) -> dict[str, str]:
    """Write the tensors of a verdict's recovered trigger; returns their path relative to ``home``.

    Returns ``{}`` when the verdict has no mask (an inspector that only ranks classes; every built-in
    inspector returns one, NeuronInspect without a pattern).
    """
    if verdict.mask is None:
        return {}
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
    pt = folder / f"{key}.pt"
    if not pt.is_file():
        # Write under a temporary name and rename, as the cache does: a killed run leaves no half file.
        tmp_pt = folder / f"{key}.tmp{os.getpid()}.pt"
        torch.save(tensors, tmp_pt)
        os.replace(tmp_pt, pt)
    return {"recovered_trigger_pt": str(rel / pt.name)}
