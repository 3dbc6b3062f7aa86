"""Blended (BL): Chen, Liu, Li, Lu and Song, "Targeted Backdoor Attacks on Deep
Learning Systems Using Data Poisoning", 2017 (the "blended injection strategy").

The trigger is a key pattern as large as the whole image, here uniform random
noise (the paper's random-pattern key), blended into the input at low opacity
rather than stamped as a small opaque patch. The attacker blends it into a
fraction of its training inputs, relabels them to the target class and
re-trains the benign model on the mix, exactly as BadNet does with its patch.

Defaults: ``alpha = 0.8`` in the arena's convention (0 opaque, 1 invisible),
i.e. the paper's blend ratio 0.2 for poisoning, ``x' = 0.2 * k + 0.8 * x``;
a random pattern drawn once per match from ``ctx.generator`` (so it is fixed
per scenario seed and reproducible); poison fraction, re-training epochs and
learning rate are the scenario's (``attack.poison_fraction``,
``training.retrain_epochs``, ``training.retrain_lr``), as for BadNet.

It is built the way the arena's guide (docs/writing-an-agent.md) asks of every attacker: the poison is
mixed by ``ctx.poisoner(stamp)`` (so the scenario's ``attack.mixing`` level
applies) and the model and its budget come from ``ctx.training_budget()`` (so
``attack.from_scratch`` applies).

Departures from the paper: the paper poisons the victim's training set and
trains from scratch on it with a small number of poisoned inputs; by default
(``attack.mixing = "batch"``, ``attack.from_scratch = false``) the attacker
re-trains the arena's benign model with poison mixed at batch level (TrojanZoo
Remark 13), at the scenario's poison fraction. The paper may raise the blend
ratio at test time (alpha_test > alpha_train) to strengthen the trigger; here
the trigger inputs are stamped with the same ratio as the poison, so the
referee scores the trigger the model was trained on. The scenario's trigger
settings (size, position, pattern, alpha) are ignored: the Blended trigger is
full-image by definition.
"""

from __future__ import annotations

import torch

from arena.api import AttackContext, Attacker, Trojan
from arena.api import fit
from arena.api import Trigger

__version__ = "0.1.0"


class Blended(Attacker):
    name = "blended"
    # 2: poison mixed and the model chosen by the scenario (ctx.poisoner, ctx.training_budget). The
    # default scenario's trojan is the same as version 1's; the version is part of the trojan's cache
    # key, so trojans version 1 made under other mixing levels are not served for this code.
    version = "2"

    def __init__(self, alpha: float = 0.8, poison_fraction: float | None = None, epochs: int | None = None,
                 lr: float | None = None) -> None:
        # Only stored here (the arena's agents check nothing in __init__); craft() validates.
        self.alpha = alpha
        # None: take the scenario's value (attack.poison_fraction, training.retrain_*).
        self.poison_fraction = poison_fraction
        self.epochs = epochs
        self.lr = lr

    def make_trigger(self, ctx: AttackContext) -> Trigger:
        """A full mask and a uniform random key pattern, seeded by the match's generator."""
        c, side = ctx.info.channels, ctx.info.size
        pattern = torch.rand(c, side, side, generator=ctx.generator)
        return Trigger(mask=torch.ones(1, side, side), pattern=pattern, alpha=self.alpha)

    def craft(self, ctx: AttackContext) -> Trojan:
        if not 0.0 <= self.alpha < 1.0:
            raise ValueError(f"blended: alpha (transparency) must lie in [0, 1), got {self.alpha}")
        s = ctx.scenario
        # The pattern is drawn before the poisoner: both take from ctx.generator, in this order.
        trigger = self.make_trigger(ctx).to(ctx.device)
        poisoner = ctx.poisoner(trigger.stamp, self.poison_fraction)  # None: the scenario's fraction
        model, epochs, lr = ctx.training_budget(self.epochs, self.lr)
        fit(model, ctx.data.x, ctx.data.y, epochs=epochs, batch_size=s.training.batch_size, lr=lr,
            augment=s.training.augment, hook=poisoner, generator=ctx.generator, progress=ctx.progress,
            label="blended " + ("training" if s.attack.from_scratch else "retrain"))
        return Trojan(model=model, trigger=trigger,
                      notes={"alpha": self.alpha, "poison_fraction": poisoner.fraction, "mixing": poisoner.level,
                             "trigger": "full-image random"})
