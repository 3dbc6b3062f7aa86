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
                       parameters as plain data, and a
                       fresh instance built from them;
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
isolation (``arena.execution``) the view is all the agent's process holds;
that boundary is a process, not an operating-system sandbox: a plugin that
reads files behind the arena's back is outside what this module can stop.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from arena.data import DatasetInfo, Tensors
from arena.scenario import AttackSpec, Budgets, DataSpec, Scenario, Training, TriggerSpec


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

    def build(self) -> Any:
        """A fresh instance of the revealed defender (the attacker's own: changing it changes nothing
        on the referee's side)."""
        from arena.plugins import make_agent

        return make_agent("defender", self.name, copy.deepcopy(self.params))


def attacker_scenario(s: Scenario) -> AttackerScenario:
    data = dataclasses.replace(s.data, train_limit=None, test_limit=None)
    return AttackerScenario(training=s.training, attack=s.attack, trigger=s.trigger, data=data,
                            budgets=s.budgets, reveal=s.threat.reveal)


def defender_scenario(s: Scenario) -> DefenderScenario:
    return DefenderScenario(budgets=s.budgets, dataset=s.dataset)


def copy_tensors(t: Tensors) -> Tensors:
    return Tensors(t.x.clone(), t.y.clone())


def copy_model(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


def plain(obj: Any) -> Any:
    """A JSON round trip: plain data with no references back into the referee."""
    return json.loads(json.dumps(obj, default=str))


def info_copy(info: DatasetInfo) -> DatasetInfo:
    return dataclasses.replace(info)


def generator_from(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
