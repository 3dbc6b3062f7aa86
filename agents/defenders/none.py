"""The no-defense baseline: deploys the model as it is.

Its rating anchors the leaderboard at 1000 (docs/statistics.md).

Tuning: nothing to tune.

Assumes: the data of any scenario (``arena_agents``); reads outputs and
gradients only.
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
