"""What each side may see: the capability contract, in one place.

The referee never hands an agent its own objects (the scenario, the splits,
the live opponent, the cache, the store). Each side gets a *view* built here,
holding copies and plain data only:

=====================  ================================  =================================
                       attacker (``AttackContext``)      defender (``DefenseContext``)
=====================  ================================  =================================
data                   its training split, validation    its small clean set (5% of train)
                       split (never the defender's set)  (never the attacker's, never test)
model                  a copy of the benign weights      the model to defend (a copy)
scenario               ``AttackerScenario``: training    ``DefenderScenario``: budgets,
                       budget, attack setting, trigger   dataset name; nothing about the
                       spec, split fractions, budgets    attack (no target, no trigger)
trigger                the scenario's trigger (a copy)   -
opponent               ``reveal = "full"``: the          -
                       defender's name, category and
                       parameters as plain data, and
                       for an adaptive attacker a
                       ``RevealedProxy`` the referee
                       answers from the defender's own
                       sandboxed process
                       (``arena.engine.revealed``);
                       ``"category"``: its category;
                       ``"none"``: nothing
history                every earlier round's record      earlier rounds' outcome and reason
seed                   never (a generator drawn from     never (likewise)
                       it instead)
test split             never                             never (only the inputs a deployed
                                                         filter or transform is asked to
                                                         score, after ``deploy`` returned)
=====================  ================================  =================================

No view holds a handle that loads data (no ``Scenario``, no seed, no data
spec limits), so ``make_splits`` cannot be replayed from a view. Under process
isolation (``arena.engine.hosts``) the view is all the agent's process holds,
and that process locks itself in the Landlock and seccomp sandbox of
``arena.engine.sandbox`` (where the kernel offers it; each match records the
level it got): the arena home, the data and the cache are then out of its
reach, so a plugin cannot read them behind the arena's back.

The referee builds every context through ``attack_view`` and ``defense_view``
below, so the rules of the table (what is copied, what is revealed, what of
earlier rounds each side learns) live here and nowhere else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import copy
import json
from typing import Any

import torch
from torch import nn

from arena.api.protocol import AttackContext, DefenseContext, RoundRecord
from arena.api.triggers import Trigger
from arena.config.scenario import AttackSpec, Budgets, DataSpec, Scenario, Training, TriggerSpec
from arena.config.splits import Splits


@dataclass(frozen=True)
class AttackerScenario:
    """The scenario as the attacker may know it (``ctx.scenario``)."""

    training: Training
    attack: AttackSpec
    trigger: TriggerSpec
    data: DataSpec  # split fractions only; the test and train limits are withheld
    budgets: Budgets
    reveal: str


@dataclass(frozen=True)
class DefenderScenario:
    """The scenario as the defender may know it (``ctx.scenario``): budgets and the data's name."""

    budgets: Budgets
    dataset: str


@dataclass(frozen=True)
class RevealedDefender:
    """The defender as the threat model reveals it: plain data, never the referee's instance."""

    name: str
    category: str
    version: str
    params: dict[str, Any]


def attacker_scenario(s: Scenario) -> AttackerScenario:
    data = dataclasses.replace(s.data, train_limit=None, test_limit=None)
    return AttackerScenario(training=s.training, attack=s.attack, trigger=s.trigger, data=data,
                            budgets=s.budgets, reveal=s.threat.reveal)


def defender_scenario(s: Scenario) -> DefenderScenario:
    return DefenderScenario(budgets=s.budgets, dataset=s.dataset)


def plain(obj: Any) -> Any:
    """A JSON round trip: plain data with no references back into the referee."""
    return json.loads(json.dumps(obj, default=str))


def revealed_defender(s: Scenario, name: str, category: str | None, version: str,
                      params: dict[str, Any]) -> tuple[RevealedDefender | None, str | None]:
    """What the threat model (``threat.reveal``) lets the attacker know of its opponent:
    ``"full"``: its name, category, version and parameters; ``"category"``: the category; ``"none"``: nothing."""
    if s.threat.reveal == "none":
        return None, None
    if s.threat.reveal == "category":
        return None, category
    return RevealedDefender(name, category or "none", version, plain(params)), category


def attack_view(s: Scenario, splits: Splits, benign: nn.Module, trigger: Trigger, device: torch.device,
                generator: torch.Generator, revealed: RevealedDefender | None, category: str | None,
                history: list[RoundRecord]) -> AttackContext:
    """The attacker's context: its splits, a copy of the benign model, the trigger, what is revealed,
    and every earlier round's full record."""
    return AttackContext(
        scenario=attacker_scenario(s), data=splits.attacker, validation=splits.validation,
        benign=copy.deepcopy(benign), trigger=trigger.to(device), info=splits.info, device=device,
        generator=generator, revealed=revealed, defender_category=category,
        history=[RoundRecord(**plain(dataclasses.asdict(h))) for h in history],
    )


def defense_view(s: Scenario, splits: Splits, device: torch.device, generator: torch.Generator,
                 history: list[RoundRecord]) -> DefenseContext:
    """The defender's context: its small clean set and the budgets. Of earlier rounds it learns how
    they ended, not what the attacker did or aimed at."""
    seen = [RoundRecord(h.round, h.outcome, h.reason, {}) for h in history]
    return DefenseContext(scenario=defender_scenario(s), clean=splits.defender, info=splits.info, device=device,
                          generator=generator, history=seen)
