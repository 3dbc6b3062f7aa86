"""Randomized smoothing's sequential scoring: the same decisions as the fixed count, for fewer passes."""

from __future__ import annotations

import torch
from torch import nn

from arena_agents.defenders.randomized_smoothing import SmoothedClassifier


class Counting(nn.Module):
    """A fixed random classifier that counts the images it is asked about."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += len(x)
        return self.net(x) * 4.0


def _smoothers(std: float) -> tuple[SmoothedClassifier, SmoothedClassifier, Counting, Counting]:
    fixed_model, seq_model = Counting(), Counting()
    seq_model.load_state_dict(fixed_model.state_dict())
    return (SmoothedClassifier(fixed_model, 100, std, seed=7, chunk=4096),
            SmoothedClassifier(seq_model, 100, std, seed=7, chunk=4096, first=16, z=4.0), fixed_model, seq_model)


def test_sequential_smoothing_decides_as_the_fixed_count_for_a_fraction_of_the_passes():
    x = torch.rand(400, 1, 8, 8)
    fixed, seq, fixed_model, seq_model = _smoothers(std=0.05)  # noisy enough that some inputs are close calls
    with torch.no_grad():
        a, b = fixed(x), seq(x)
    assert torch.equal(a.argmax(1), b.argmax(1))
    assert seq_model.images < 0.5 * fixed_model.images  # most inputs settle on their first 16 draws
    assert seq_model.images > 16 * len(x)  # and some did not, and were asked all 100
    # An input that did not settle gets exactly the fixed-count answer (the same draws, all of them).
    eps = seq.noise(x)
    p = seq._probs(x, eps[:16])
    unsettled = ~seq.settled(p, p.mean(1))
    assert unsettled.any() and torch.allclose(a[unsettled], b[unsettled], atol=1e-6)
    # A settled one is a 16-draw average: close in probability, not equal.
    assert torch.allclose(a.exp(), b.exp(), atol=0.1)


def test_with_gradients_every_draw_is_used():
    x = torch.rand(10, 1, 8, 8, requires_grad=True)
    fixed, seq, fixed_model, seq_model = _smoothers(std=0.05)
    out = seq(x)
    out[:, 0].sum().backward()
    assert x.grad is not None and seq_model.images == 100 * len(x)
    assert torch.allclose(out, fixed(x))
