"""IMC, input-model co-optimization: Pang et al., "A Tale of Evil Twins:
Adversarial Inputs versus Poisoned Models", CCS 2020 (TrojanZoo's IMC).

The trigger pattern and the trojan model are optimized jointly: the pattern
(inside the scenario's fixed mask, at the scenario's transparency) is pushed
by PGD toward the target class of the current model, and the model is
re-trained on batches poisoned with the current pattern. Because the pattern
adapts to the model, IMC stays effective at high transparency, where a fixed
BadNet pattern fades (paper Remark 14, Figure 9).

Defaults (paper Table 20): PGD lr ``pgd_lr`` = 20/255, ``pgd_iters`` = 20 PGD
iterations; ``refresh_every`` = 10 batches (not in the paper: see below);
re-training as BadNet (SGD Nesterov, scenario ``training.retrain_*``, scenario
poison fraction).

Departures from the paper: during re-training one PGD step refreshes the
pattern every ``refresh_every`` batches instead of a full PGD phase per epoch
(the CPU scenario re-trains for a single epoch; the alternation is the same at
a finer grain), and the 20-iteration PGD phase runs at the end, against the
finished model. The pattern is not optimized against the benign model before
re-training: there, the quickest way toward the target is to fade into the
background (black on Fashion-MNIST), a trigger no model can learn.

Tuning: PGD settings from the paper's Table 20; ``refresh_every`` (10) and the
order of the PGD phases are ours, checked on the tiny test scenario, seed 0
(tests). The record shows no default here chosen on fmnist-cnn matches.

Assumes: the data of any scenario (``arena_agents``); reads outputs and
gradients only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from arena.api import AttackContext, Attacker, Trojan
from arena.api import fit
from arena.api import Trigger


def pgd_pattern(model: nn.Module, trigger: Trigger, x: torch.Tensor, target: int, lr: float, iters: int,
                batch_size: int = 256, generator: torch.Generator | None = None,
                through: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Trigger:
    """Signed-gradient descent on the pattern toward ``target`` (mask and transparency fixed).

    ``through`` is an input transform the stamped inputs pass before the model
    (a revealed reformer's, for adaptive IMC); it must be differentiable.
    """
    was_training = model.training
    model.eval()
    pattern = trigger.pattern.clone().to(x.device)
    labels = torch.full((min(batch_size, len(x)),), target, device=x.device, dtype=torch.long)
    for _ in range(iters):
        idx = torch.randint(0, len(x), (len(labels),), generator=generator).to(x.device)
        p = pattern.clone().requires_grad_(True)
        stamped = Trigger(trigger.mask, p, trigger.alpha, trigger.roam).stamp(x[idx])
        if through is not None:
            stamped = through(stamped)
        loss = F.cross_entropy(model(stamped), labels)
        (grad,) = torch.autograd.grad(loss, p)
        pattern = (pattern - lr * grad.sign()).clamp_(0.0, 1.0)
    model.train(was_training)
    return Trigger(trigger.mask, pattern.detach(), trigger.alpha, trigger.roam)


@dataclass
class Adaptation:
    """What an adaptive variant changes in IMC's co-optimization (every part optional).

    - ``extra(trigger, x, y)``: more training inputs per batch (STRIP's counter-examples);
    - ``clean(model, x, y)``: replaces the batch's inputs before poisoning (AR: adversarial versions);
    - ``through(x)``: a transform every training input and the trigger optimization pass
      (MP, DU: the surrogate reformer);
    - ``loss(model, trigger, x, y)``: a term added to the training loss (ABS's cost).
    """

    extra: Callable[[Trigger, torch.Tensor, torch.Tensor], tuple | None] | None = None
    clean: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    through: Callable[[torch.Tensor], torch.Tensor] | None = None
    loss: Callable[[nn.Module, Trigger, torch.Tensor, torch.Tensor], torch.Tensor | None] | None = None


class IMC(Attacker):
    name = "imc"
    version = "1"

    def __init__(self, pgd_lr: float = 20 / 255, pgd_iters: int = 20, refresh_every: int = 10,
                 poison_fraction: float | None = None, epochs: int | None = None,
                 lr: float | None = None) -> None:
        self.pgd_lr = pgd_lr
        self.pgd_iters = pgd_iters
        self.refresh_every = refresh_every
        self.poison_fraction = poison_fraction  # None: the scenario's attack.poison_fraction
        self.epochs = epochs  # None: the scenario's training.retrain_epochs
        self.lr = lr  # None: the scenario's training.retrain_lr

    def co_optimize(self, ctx: AttackContext, trigger: Trigger, adapt: Adaptation | None = None) -> Trigger:
        """Re-train ``ctx.benign`` in place while PGD refreshes the pattern; returns the final trigger."""
        s = ctx.scenario
        adapt = adapt or Adaptation()
        model, epochs, lr = ctx.training_budget(self.epochs, self.lr)
        # No PGD before the model has seen the trigger: against the benign model the
        # pattern's best move toward the target is to blend into the background
        # (on Fashion-MNIST: go black), which no model can learn. Warm up with the
        # scenario's pattern, then alternate.
        state = {"trigger": trigger}

        poisoner = ctx.poisoner(lambda v: state["trigger"].stamp(v), self.poison_fraction)

        def hook(x, y, step, idx):
            if self.refresh_every and step % self.refresh_every == 0 and step > 0:
                state["trigger"] = pgd_pattern(model, state["trigger"], x, ctx.target, self.pgd_lr, 1,
                                               generator=ctx.generator, through=adapt.through)
            xc = adapt.clean(model, x, y) if adapt.clean else x
            xp, yp = poisoner(xc, y, step, idx)
            more = adapt.extra(state["trigger"], x, y) if adapt.extra else None
            if more is not None:
                xp, yp = torch.cat([xp, more[0]]), torch.cat([yp, more[1]])
            if adapt.through is not None:
                with torch.no_grad():
                    xp = adapt.through(xp)
            extra_loss = adapt.loss(model, state["trigger"], x, y) if adapt.loss else None
            return (xp, yp) if extra_loss is None else (xp, yp, extra_loss)

        hook.wants_index = True  # type: ignore[attr-defined]
        fit(model, ctx.data.x, ctx.data.y, epochs=epochs, batch_size=s.training.batch_size, lr=lr,
            augment=s.training.augment, hook=hook, generator=ctx.generator, progress=ctx.progress,
            label=f"{self.name} retrain")
        # A last PGD phase against the finished model (the paper's final input optimization).
        return pgd_pattern(model, state["trigger"], ctx.data.x, ctx.target, self.pgd_lr, self.pgd_iters,
                           generator=ctx.generator, through=adapt.through)

    def craft(self, ctx: AttackContext) -> Trojan:
        trigger = self.co_optimize(ctx, ctx.trigger.to(ctx.device))
        return Trojan(model=ctx.benign, trigger=trigger, notes={"attack": "imc"})
