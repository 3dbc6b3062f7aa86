"""The no-attack baseline.

Hands back the benign model untouched, with the scenario's trigger, so every
defender also plays a match in which there is nothing to find: a deployment
that costs too much clean accuracy loses it (the defender gate), and a trigger
that does nothing earns the attacker nothing, flagged or not (a flag on a
benign model is judged on the scenario's pooled benign population, the
usability test). This is what rates the defender side on the same scale as
the attackers.

Tuning: nothing to tune.

Assumes: the data of any scenario (``arena_agents``); reads outputs and
gradients only.
"""

from __future__ import annotations

from arena.api import AttackContext, Attacker, Trojan


class NoAttack(Attacker):
    name = "none"
    version = "1"

    def craft(self, ctx: AttackContext) -> Trojan:
        return Trojan(model=ctx.benign, trigger=ctx.trigger, notes={"attack": "none"})
