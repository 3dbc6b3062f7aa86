"""Patch triggers, stamped on whole batches in [0, 1] pixel space.

Convention (docs/scenarios.md): ``alpha`` is transparency, 0 opaque and 1 invisible.
Inside the mask ``x' = (1 - alpha) * p + alpha * x``; outside it ``x' = x``.
The mask may be soft (values in [0, 1]), which the blend handles the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from arena.config.scenario import TriggerSpec


@dataclass
class Trigger:
    """A mask, a pattern and a transparency; ``roam`` moves the patch to a random place per input.

    A roaming trigger (TB, the targeted backdoor of TrojanZoo) is stamped at
    an offset drawn per input so that the whole patch (the mask's bounding
    box) stays inside the image. Without a generator the offsets come from a
    fixed seed, so scoring the same batch twice stamps it the same way.
    """

    mask: torch.Tensor  # 1 x H x W, values in [0, 1]
    pattern: torch.Tensor  # C x H x W, values in [0, 1]
    alpha: float = 0.0
    roam: bool = False

    def stamp(self, x: torch.Tensor, alpha: float | torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """Stamp a batch. ``alpha`` may override the transparency (scalar or per-input N x 1 x 1 x 1)."""
        a = self.alpha if alpha is None else alpha
        m = self.mask.to(x.device, x.dtype)
        p = self.pattern.to(x.device, x.dtype)
        if self.roam:
            m, p = self._roamed(m, p, len(x), generator)
        blended = (1 - a) * p + a * x
        return x + m * (blended - x)

    def _roamed(self, m: torch.Tensor, p: torch.Tensor, n: int,
                generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-input copies of mask and pattern, shifted by a random in-bounds offset (N x . x H x W)."""
        H, W = m.shape[-2:]
        nz = m[0].nonzero()
        if len(nz) == 0:
            return m, p
        (r0, c0), (r1, c1) = nz.min(0).values.tolist(), nz.max(0).values.tolist()
        g = generator or torch.Generator().manual_seed(0)
        dr = torch.randint(-r0, H - r1, (n,), generator=g).to(m.device)
        dc = torch.randint(-c0, W - c1, (n,), generator=g).to(m.device)
        # Gather from the source position: out[i, r, c] = src[r - dr_i, c - dc_i] (wrapping lands on zeros
        # of the mask, because the offsets keep the bounding box inside the image).
        rows = (torch.arange(H, device=m.device).view(1, H) - dr.view(n, 1)) % H
        cols = (torch.arange(W, device=m.device).view(1, W) - dc.view(n, 1)) % W
        mi = m[0][rows.view(n, H, 1), cols.view(n, 1, W)].unsqueeze(1)
        pi = p[:, rows.view(n, H, 1), cols.view(n, 1, W)].transpose(0, 1)
        return mi, pi

    def to(self, device: torch.device | str) -> "Trigger":
        return Trigger(self.mask.to(device), self.pattern.to(device), self.alpha, self.roam)

    def state(self) -> dict[str, torch.Tensor]:
        return {"mask": self.mask.detach().cpu(), "pattern": self.pattern.detach().cpu(),
                "alpha": torch.tensor(float(self.alpha)), "roam": torch.tensor(bool(self.roam))}

    @staticmethod
    def from_state(d: dict[str, torch.Tensor]) -> "Trigger":
        return Trigger(d["mask"], d["pattern"], float(d["alpha"]), bool(d.get("roam", torch.tensor(False))))


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
    """The scenario's trigger: a ``size`` x ``size`` patch at ``position``.

    ``shape = "random"`` scatters the same number of pixels (size squared) at
    random places in the image (paper Table 15); ``position = "random"`` makes
    a roaming trigger (stamped at a random place per input).
    """
    if spec.size + 2 > side:
        raise ValueError(f"trigger size {spec.size} does not fit a {side}x{side} image")
    s = spec.size
    mask = torch.zeros(1, side, side)
    r, c = _corner("top-left" if spec.position == "random" else spec.position, s, side)
    if spec.shape == "random":
        g = generator or torch.Generator().manual_seed(0)
        flat = torch.randperm(side * side, generator=g)[: s * s]
        mask.view(-1)[flat] = 1.0
        if spec.pattern == "random":
            pattern = torch.rand(channels, side, side, generator=g)
        else:
            value = {"white": 1.0, "black": 0.0}.get(spec.pattern)
            # checkerboard over scattered pixels: alternate white/black along the chosen pixels
            pattern = torch.zeros(channels, side * side)
            pattern[:, flat] = value if value is not None else (torch.arange(s * s) % 2 == 0).float()
            pattern = pattern.view(channels, side, side)
        return Trigger(mask * 1.0, pattern * mask, spec.alpha, roam=spec.position == "random")
    mask[:, r : r + s, c : c + s] = 1.0
    pattern = torch.zeros(channels, side, side)
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
    return Trigger(mask, pattern, spec.alpha, roam=spec.position == "random")


def mask_jaccard(true_mask: torch.Tensor, recovered: torch.Tensor, rel_threshold: float = 0.5) -> float:
    """MJS (paper Eq. 6). A soft recovered mask counts where it exceeds half its maximum."""
    t = true_mask.flatten() > 0
    r = recovered.flatten().float()
    r = r > rel_threshold * r.max().clamp_min(1e-12)
    union = (t | r).sum().item()
    return float((t & r).sum().item() / union) if union else 0.0
