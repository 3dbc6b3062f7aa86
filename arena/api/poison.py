"""Poison mixing (paper 6.2, RQ6 and Remark 13), applied batch by batch during training.

Three levels, chosen by the scenario's ``attack.mixing``:

- ``batch`` (default): a fresh ``fraction`` of every batch is stamped and
  relabelled. Every batch has the same poison share, which trains faster and
  steadier than a fixed poisoned subset, and nothing is copied.
- ``dataset``: a fixed ``fraction`` of the training set (drawn once) is
  poisoned, the classic poisoning setting: those inputs are stamped whenever
  they appear in a batch.
- ``loss``: the batch keeps all its clean inputs and stamped copies of a
  ``fraction`` of them are appended, i.e. the trigger term is added to the
  clean loss instead of replacing clean inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

MIXING_LEVELS = ("batch", "dataset", "loss")


def poison_batch(
    x: torch.Tensor,
    y: torch.Tensor,
    stamp: Callable[[torch.Tensor], torch.Tensor],
    target: int,
    fraction: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace about ``fraction`` of the batch (at least one input when fraction > 0) by trigger inputs labelled ``target``."""
    n = len(y)
    if fraction <= 0 or n == 0:
        return x, y
    # Expected count fraction*n, realised by stochastic rounding so small
    # fractions (1%) still poison the right share over an epoch.
    k_float = fraction * n
    k = int(k_float) + int(torch.rand(1, generator=generator).item() < (k_float - int(k_float)))
    if k == 0:
        return x, y
    idx = torch.randperm(n, generator=generator)[:k].to(x.device)
    x = x.clone()
    y = y.clone()
    x[idx] = stamp(x[idx])
    y[idx] = target
    return x, y


@dataclass
class Poisoner:
    """Applies the scenario's mixing level to training batches; use as (part of) a ``fit`` hook.

    ``fit`` passes the batch's dataset indices to hooks that set
    ``wants_index`` (the dataset level needs them).
    """

    stamp: Callable[[torch.Tensor], torch.Tensor]
    target: int
    fraction: float
    level: str = "batch"
    n_data: int = 0
    generator: torch.Generator | None = None
    chosen: torch.Tensor | None = field(default=None, init=False)
    wants_index = True

    def __post_init__(self) -> None:
        if self.level not in MIXING_LEVELS:
            raise ValueError(f"unknown poison mixing level '{self.level}'; use one of {', '.join(MIXING_LEVELS)}")
        if self.level == "dataset":
            if self.n_data <= 0:
                raise ValueError("dataset-level mixing needs the size of the training set (n_data)")
            k = int(round(self.fraction * self.n_data))
            chosen = torch.zeros(self.n_data, dtype=torch.bool)
            chosen[torch.randperm(self.n_data, generator=self.generator)[:k]] = True
            self.chosen = chosen

    def __call__(self, x: torch.Tensor, y: torch.Tensor, step: int = 0,
                 idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.level == "batch":
            return poison_batch(x, y, self.stamp, self.target, self.fraction, self.generator)
        if self.level == "dataset":
            if idx is None:
                raise ValueError("dataset-level mixing needs the batch's dataset indices")
            hit = self.chosen.to(idx.device)[idx]
            if not hit.any():
                return x, y
            x, y = x.clone(), y.clone()
            x[hit] = self.stamp(x[hit])
            y[hit] = self.target
            return x, y
        # loss level: append stamped copies of a fraction of the batch
        n = len(y)
        k = int(self.fraction * n) + int(torch.rand(1, generator=self.generator).item() < self.fraction * n % 1)
        if k == 0:
            return x, y
        pick = torch.randperm(n, generator=self.generator)[:k].to(x.device)
        return (torch.cat([x, self.stamp(x[pick])]),
                torch.cat([y, torch.full((k,), self.target, dtype=y.dtype, device=y.device)]))
