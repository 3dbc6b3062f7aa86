"""The no-defense baseline: deploys the model as it is.

Its rating anchors the leaderboard at 1000 (README, "Ratings and leaderboards").

Tuning: nothing to tune.

Assumes: Any number of classes (2 or more) and any square image size the arena
loads (8 pixels or more); played on 3 to 12 classes and 10 to 32 pixels in the
tests (tests/test_own_data.py). It reads the model's outputs (and gradients)
only, so it plays on any architecture.
"""

from __future__ import annotations

from torch import nn

from arena.api import DefenseContext, Defender, Deployment


class NoDefense(Defender):
    name = "none"
    version = "1"
    category = "none"

    def deploy(self, model: nn.Module, ctx: DefenseContext) -> Deployment:
        return Deployment(model=model)
