"""Patch triggers, stamped on whole batches in [0, 1] pixel space.

Convention (ARENA.md): ``alpha`` is transparency, 0 opaque and 1 invisible.
Inside the mask ``x' = (1 - alpha) * p + alpha * x``; outside it ``x' = x``.
The mask may be soft (values in [0, 1]), which the blend handles the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from arena.scenario import TriggerSpec


@dataclass
class Trigger:
    mask: torch.Tensor  # 1 x H x W, values in [0, 1]
    pattern: torch.Tensor  # C x H x W, values in [0, 1]
    alpha: float = 0.0

    def stamp(self, x: torch.Tensor, alpha: float | torch.Tensor | None = None) -> torch.Tensor:
        """Stamp a batch. ``alpha`` may override the transparency (scalar or per-input N x 1 x 1 x 1)."""
        a = self.alpha if alpha is None else alpha
        m = self.mask.to(x.device, x.dtype)
        p = self.pattern.to(x.device, x.dtype)
        blended = (1 - a) * p + a * x
        return x + m * (blended - x)

    def to(self, device: torch.device | str) -> "Trigger":
        return Trigger(self.mask.to(device), self.pattern.to(device), self.alpha)

    def state(self) -> dict[str, torch.Tensor]:
        return {"mask": self.mask.detach().cpu(), "pattern": self.pattern.detach().cpu(),
                "alpha": torch.tensor(float(self.alpha))}

    @staticmethod
    def from_state(d: dict[str, torch.Tensor]) -> "Trigger":
        return Trigger(d["mask"], d["pattern"], float(d["alpha"]))


def _corner(position: str, size: int, side: int, margin: int = 1) -> tuple[int, int]:
    far = side - size - margin
    return {
        "bottom-right": (far, far),
        "bottom-left": (far, margin),
        "top-right": (margin, far),
        "top-left": (margin, margin),
        "center": ((side - size) // 2, (side - size) // 2),
    }[position]


def make_trigger(spec: TriggerSpec, channels: int, side: int, generator: torch.Generator | None = None) -> Trigger:
    """The scenario's trigger: a ``size`` x ``size`` patch at ``position``."""
    if spec.size + 2 > side:
        raise ValueError(f"trigger size {spec.size} does not fit a {side}x{side} image")
    mask = torch.zeros(1, side, side)
    r, c = _corner(spec.position, spec.size, side)
    mask[:, r : r + spec.size, c : c + spec.size] = 1.0
    pattern = torch.zeros(channels, side, side)
    s = spec.size
    if spec.pattern == "checkerboard":
        ii, jj = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
        patch = ((ii + jj) % 2 == 0).float().expand(channels, s, s)
    elif spec.pattern == "white":
        patch = torch.ones(channels, s, s)
    elif spec.pattern == "black":
        patch = torch.zeros(channels, s, s)
    else:  # random
        patch = torch.rand(channels, s, s, generator=generator)
    pattern[:, r : r + s, c : c + s] = patch
    return Trigger(mask, pattern, spec.alpha)


def mask_jaccard(true_mask: torch.Tensor, recovered: torch.Tensor, rel_threshold: float = 0.5) -> float:
    """MJS (paper Eq. 6). A soft recovered mask counts where it exceeds half its maximum."""
    t = true_mask.flatten() > 0
    r = recovered.flatten().float()
    r = r > rel_threshold * r.max().clamp_min(1e-12)
    union = (t | r).sum().item()
    return float((t & r).sum().item() / union) if union else 0.0
