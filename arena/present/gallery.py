"""Pictures of triggers: what an attack does to an input, and what an inspector recovered.

Two figures, both drawn with matplotlib on its Agg canvas (files only, no
screen, no pyplot state shared between callers):

- the *gallery* of an attacker (``arena trigger show``, the HTML report):
  for a few test inputs of different classes, the clean input, the same
  input stamped with the attacker's trigger, their difference at true scale
  and the difference magnified until its largest change fills the scale.
  Many triggers change pixels by a few levels (blends, warps, reflections),
  invisible side by side; the magnified column shows *where* they act, and
  its title says by how much it was magnified, so nothing is exaggerated
  silently. The trojan's predictions under each input show whether the
  trigger works on it.
- the *recovered trigger* of an inspection defender (Neural Cleanse, TABOR,
  DeepInspect, ABS; NeuronInspect's mask without a pattern): labelled panels, the true trigger beside the recovered
  mask, pattern and mask x pattern (``arena.engine.artifacts`` writes it after each
  inspection; the report draws it again from the stored tensors).

Inputs come straight from the referee: the trojan is ``Referee.craft`` (from
the cache when a match crafted it before) and the stamped inputs are those the
referee scored, so the pictures show what was measured, even for an attacker
whose trigger is a function of its own process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from arena.engine.referee import Referee

# Class names of the built-in datasets (index = label), for the gallery's captions.
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "fashion-mnist": ("T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                      "boot"),
    "mnist": tuple(str(i) for i in range(10)),
    "cifar10": ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}
MAX_MAGNIFICATION = 1000.0  # a difference below 1/1000 is shown as it is, not blown up from numerical noise


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib figure on an Agg canvas: no pyplot, so no global state and no display needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (its folder created), through a temporary file: no half files."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, format="png", dpi=fig.dpi)
    os.replace(tmp, path)
    return path


def _hwc(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """C x H x W -> H x W (one channel) or H x W x 3, as float numpy for imshow."""
    a = img.detach().float().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img, dtype=float)
    return a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0))


def _image(ax: Axes, img: np.ndarray, title: str | None = None, *, signed: bool = False, scale: float = 1.0) -> None:
    """One panel. ``signed`` panels show a difference: grey images on a red/blue scale of +-1/``scale``,
    colour images as 0.5 + difference (grey: no change)."""
    if signed:
        if img.ndim == 2:
            ax.imshow(img * scale, cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(np.clip(0.5 + 0.5 * img * scale, 0.0, 1.0), interpolation="nearest")
    elif img.ndim == 2:
        ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(np.clip(img, 0.0, 1.0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def _class(names: tuple[str, ...] | None, label: int) -> str:
    return f"{label} {names[label]}" if names and 0 <= label < len(names) else str(label)


@dataclass
class Gallery:
    """A few clean test inputs, the same inputs stamped by an attacker, and the trojan's predictions."""

    attacker: str
    scenario: str
    seed: int
    target: int
    clean: torch.Tensor  # N x C x H x W in [0, 1]
    stamped: torch.Tensor  # N x C x H x W in [0, 1]
    labels: list[int]
    clean_pred: list[int]
    stamped_pred: list[int]
    class_names: tuple[str, ...] | None = None

    @property
    def magnification(self) -> float:
        """The factor that makes the largest change of any shown pixel fill the scale (1 when none)."""
        largest = float((self.stamped - self.clean).abs().max()) if self.clean.numel() else 0.0
        return 1.0 if largest <= 0.0 else min(1.0 / largest, MAX_MAGNIFICATION)


def _one_per_class(labels: torch.Tensor, n: int) -> list[int]:
    """Indices of the first input of each class (in class order), then the next ones, ``n`` in all."""
    first: dict[int, int] = {}
    for i, y in enumerate(labels.tolist()):
        first.setdefault(int(y), i)
    picked = [first[c] for c in sorted(first)][:n]
    rest = [i for i in range(len(labels)) if i not in set(picked)]
    return picked + rest[: n - len(picked)]


def collect_gallery(referee: Referee, attacker: str, seed: int, inputs: int = 4) -> Gallery:
    """The gallery of ``attacker`` at ``seed``: its trojan from the cache (crafted once if it is not there).

    The stamped inputs are the ones the referee scored (the non-target test
    inputs, in order), so the inputs shown are one per class of those.
    """
    from arena.api.training import predict_proba

    trojan = referee.craft(attacker, seed)
    sc = referee.scenario
    test = referee.splits(seed).test
    keep = test.y != sc.attack.target_class
    x, y = test.x[keep], test.y[keep]
    if len(trojan.stamped) != len(x):  # the referee stamps exactly these inputs; anything else is a bug
        raise RuntimeError(f"{len(trojan.stamped)} stamped inputs for {len(x)} non-target test inputs")
    idx = torch.tensor(_one_per_class(y.cpu(), max(1, inputs)), dtype=torch.long)
    clean, stamped = x[idx.to(x.device)], trojan.stamped[idx.to(trojan.stamped.device)]
    with torch.no_grad():
        clean_pred = predict_proba(trojan.model, clean).argmax(1).tolist()
        stamped_pred = predict_proba(trojan.model, stamped.to(clean.device)).argmax(1).tolist()
    return Gallery(attacker=attacker, scenario=sc.name, seed=seed, target=sc.attack.target_class,
                   clean=clean.detach().float().cpu(), stamped=stamped.detach().float().cpu(),
                   labels=[int(v) for v in y[idx.to(y.device)].tolist()], clean_pred=clean_pred,
                   stamped_pred=stamped_pred,
                   class_names=referee.splits(seed).info.classes or CLASS_NAMES.get(sc.dataset))


def gallery_figure(g: Gallery) -> Figure:
    """The gallery as a figure: one row per input; clean, stamped, difference, magnified difference."""
    n = len(g.clean)
    fig = new_figure(8.0, 1.9 * n + 0.8)
    axes = fig.subplots(n, 4, squeeze=False)
    k = g.magnification
    grey = g.clean.shape[1] == 1
    diff_title = "difference\n(stamped - clean)" + ("\nred +, blue -" if grey else "\ngrey: none")
    magnified = (f"difference x {k:.3g}\n(magnified: largest\nchange fills the scale)" if k > 1.001
                 else "difference x 1\n(already fills the scale)")
    for i in range(n):
        clean, stamped = _hwc(g.clean[i]), _hwc(g.stamped[i])
        head = i == 0
        _image(axes[i, 0], clean, "clean input" if head else None)
        _image(axes[i, 1], stamped, "stamped input" if head else None)
        _image(axes[i, 2], stamped - clean, diff_title if head else None, signed=True)
        _image(axes[i, 3], stamped - clean, magnified if head else None, signed=True, scale=k)
        hit = g.stamped_pred[i] == g.target
        axes[i, 0].set_xlabel(f"class {_class(g.class_names, g.labels[i])}\ntrojan says "
                              f"{_class(g.class_names, g.clean_pred[i])}", fontsize=8)
        axes[i, 1].set_xlabel(f"trojan says {_class(g.class_names, g.stamped_pred[i])}\n"
                              f"({'target: backdoor works' if hit else 'not the target'})", fontsize=8,
                              color="firebrick" if hit else "black")
        largest = float((g.stamped[i] - g.clean[i]).abs().max())
        changed = float(((g.stamped[i] - g.clean[i]).abs() > 1 / 255).any(0).float().mean())
        axes[i, 2].set_xlabel(f"largest change {largest:.3f}\n{100 * changed:.1f}% of pixels", fontsize=8)
    fig.suptitle(f"{g.attacker}: clean vs stamped test inputs ({g.scenario}, seed {g.seed}, target class "
                 f"{_class(g.class_names, g.target)})", fontsize=10)
    return fig


def save_gallery(g: Gallery, path: Path) -> Path:
    """Draw ``g`` and write it as a PNG at ``path``."""
    return save_figure(gallery_figure(g), path)


def _product(mask: torch.Tensor, pattern: torch.Tensor | None) -> torch.Tensor:
    return mask if pattern is None else mask * pattern


def recovered_trigger_figure(tensors: Mapping[str, torch.Tensor], title: str | None = None) -> Figure:
    """Labelled panels of an inspector's recovered trigger beside the true one.

    ``tensors`` as ``arena.engine.artifacts`` stores them: ``mask`` (1 x H x W) and
    optionally ``pattern`` (C x H x W) recovered for the suspected target, and
    ``true_mask``/``true_pattern`` of the attack's trigger (absent when the
    trigger is a function of the attacker's process, which the panel says).
    """
    mask = tensors["mask"].detach().float().cpu()
    pattern = tensors.get("pattern")
    true_mask, true_pattern = tensors.get("true_mask"), tensors.get("true_pattern")
    true_norm = "" if true_mask is None else f" (true {float(true_mask.abs().sum()):.1f})"
    panels: list[tuple[str, np.ndarray | None]] = [
        ("true trigger\n(mask x pattern)",
         None if true_mask is None else _hwc(_product(true_mask.float().cpu(),
                                                      None if true_pattern is None else true_pattern.float().cpu()))),
        (f"recovered mask\nL1 norm {float(mask.abs().sum()):.1f}{true_norm}", _hwc(mask)),
    ]
    if pattern is not None:
        p = pattern.detach().float().cpu()
        panels += [("recovered pattern", _hwc(p)), ("recovered trigger\n(mask x pattern)", _hwc(mask * p))]
    # Square panels: the height holds one panel's width, two title lines and the figure's title.
    fig = new_figure(2.3 * len(panels), 2.75 + (0.3 if title else 0.0))
    fig.get_layout_engine().set(wspace=0.06)  # a gap between panels: black images must not run together
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, img) in zip(axes, panels):
        if img is None:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.text(0.5, 0.5, "not a mask and\npattern (stamped\nby the attacker)", ha="center", va="center",
                    fontsize=8, transform=ax.transAxes)
            ax.set_title(label, fontsize=9)
        else:
            _image(ax, np.clip(img, 0.0, 1.0), label)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def save_recovered_trigger_png(tensors: Mapping[str, torch.Tensor], path: Path, title: str | None = None) -> Path:
    """Draw ``recovered_trigger_figure`` and write it as a PNG at ``path``."""
    return save_figure(recovered_trigger_figure(tensors, title), path)


def load_trigger_tensors(path: Path) -> dict[str, Any] | None:
    """The tensors of a stored recovered trigger (``arena.engine.artifacts``), or None when the file is gone or bad."""
    try:
        loaded = torch.load(path, weights_only=True, map_location="cpu")
    except (OSError, RuntimeError, EOFError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) and isinstance(loaded.get("mask"), torch.Tensor) else None

