"""The no-attack baseline.

Hands back the benign model untouched, with the scenario's trigger, so every
defender also plays a match in which there is nothing to find: a defender that
flags the benign model, or costs too much clean accuracy, loses it. This is
what rates the defender side on the same scale as the attackers.

Tuning: nothing to tune.

Assumes: Any number of classes (2 or more) and any square image size the arena
loads (8 pixels or more); played on 3 to 12 classes and 10 to 32 pixels in the
tests (tests/test_own_data.py). It reads the model's outputs (and gradients)
only, so it plays on any architecture.
"""

from __future__ import annotations

from arena.api import AttackContext, Attacker, Trojan


class NoAttack(Attacker):
    name = "none"
    version = "1"

    def craft(self, ctx: AttackContext) -> Trojan:
        return Trojan(model=ctx.benign, trigger=ctx.trigger, notes={"attack": "none"})
