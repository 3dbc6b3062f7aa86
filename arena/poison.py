"""Batch-level poison mixing (paper 6.2, Remark 13): stamp a fraction of each batch.

Mixing at batch level gives every batch the same poison share, which trains
faster and steadier than poisoning a fixed subset of the dataset, and never
copies the training set.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


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
