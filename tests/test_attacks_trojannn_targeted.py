"""TrojanNN (pattern pre-optimized for selected neurons) and Targeted Backdoor (roaming trigger) on the tiny scenario."""

from __future__ import annotations

import pytest
import torch

from arena.api.training import features, predict_proba
from arena.api.triggers import Trigger
from arena_agents.attackers.badnet import BadNet
from arena_agents.attackers.targeted import TargetedBackdoor
from arena_agents.attackers.trojannn import TrojanNN, neuron_activation, optimize_pattern
from arena_agents.defenders.none import NoDefense

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)

# At the tiny scenario's budget (10% poison, 2 epochs at lr 0.03) a roaming 3x3
# patch barely takes (ASR ~7%): SmallCNN's dense layer reads the flattened map,
# so each position gets its own weights and a share of the poison. A larger
# budget plants it (ASR ~98%, CAD < 0) on the tiny scenario.
TB_BUDGET = {"poison_fraction": 0.2, "epochs": 3, "lr": 0.1}


def _trojan(referee, attacker):
    """The trojan a match played (from the referee's cache after the first call)."""
    trojan = referee.craft(attacker, 0, NoDefense())
    return trojan


def _placed(trigger: Trigger, row: int, col: int) -> Trigger:
    """The trigger's patch moved so its bounding box starts at (row, col); fixed position."""
    nz = trigger.mask[0].nonzero()
    r0, c0 = nz.min(0).values.tolist()
    shift = (row - r0, col - c0)
    return Trigger(torch.roll(trigger.mask, shift, (1, 2)), torch.roll(trigger.pattern, shift, (1, 2)),
                   trigger.alpha, roam=False)


def _asr(model, trigger: Trigger, x: torch.Tensor, target: int) -> float:
    return (predict_proba(model, trigger.stamp(x)).argmax(1) == target).float().mean().item()


@pytest.fixture(scope="module")
def victims(referee, tiny):
    """Non-target test inputs, as the referee stamps them."""
    test = referee.splits(0).test
    return test.x[test.y != tiny.attack.target_class]


def test_trojannn_plants_a_backdoor(referee, tiny):
    m = referee.play(TrojanNN(), "none", seed=0).record.metrics
    a = m["attack"]
    assert a["asr"] > 0.85 and a["asr"] > a["base_rate"] + 0.7  # measured: ASR 0.94, base rate 0.02
    assert a["cad"] <= tiny.budgets.attack_cad
    notes = m["attacker_notes"]
    assert len(notes["neurons"]) == 2 and notes["pgd_iters"] <= 20


def test_trojannn_pattern_drives_the_selected_neurons(referee, tiny, victims):
    trojan = _trojan(referee, TrojanNN())
    benign, _ = referee.benign(0)
    initial = referee.trigger(0)
    # The neurons are recomputed here: the two with the largest summed |incoming weight| (SmallCNN: fc).
    neurons = benign.fc.weight.detach().abs().sum(1).topk(2).indices.sort().values
    assert neurons.tolist() == trojan.notes["neurons"]
    before = neuron_activation(benign, initial, victims, neurons)
    after = neuron_activation(benign, trojan.trigger, victims, neurons)
    # Never lower on its own neurons. On a small model the most strongly connected neurons can be dead
    # (ReLU at 0 for every stamped input: 1 of 5 referee keys), and then PGD has no gradient to climb.
    assert after >= before
    # PGD climbs where there is a gradient: on the two neurons the stamped inputs reach most. Small (a
    # 3x3 corner patch, 20 steps of 0.015) but systematic: climbing the wrong way, or not at all, fails.
    alive = features(benign, initial.stamp(victims)).mean(0).topk(2).indices.sort().values
    climbed, _, _ = optimize_pattern(benign, initial, victims, alive, generator=torch.Generator().manual_seed(0))
    assert neuron_activation(benign, climbed, victims, alive) > neuron_activation(benign, initial, victims, alive)
    assert not torch.equal(climbed.pattern, initial.pattern)
    # Only the pattern inside the mask may change; shape, place and transparency are the scenario's.
    assert torch.equal(trojan.trigger.mask.cpu(), initial.mask) and trojan.trigger.alpha == initial.alpha
    outside = (1 - initial.mask).bool().expand_as(initial.pattern)
    for pattern in (trojan.trigger.pattern.cpu(), climbed.pattern):
        assert torch.equal(pattern[outside], initial.pattern[outside])
        assert 0 <= pattern.min() and pattern.max() <= 1


def test_targeted_backdoor_fires_anywhere(referee, tiny, victims):
    m = referee.play(TargetedBackdoor(**TB_BUDGET), "none", seed=0).record.metrics["attack"]
    assert m["asr"] > 0.85 and m["asr"] > m["base_rate"] + 0.7  # at random positions; measured 0.98, base 0.02
    assert m["cad"] <= tiny.budgets.attack_cad
    tb = _trojan(referee, TargetedBackdoor(**TB_BUDGET))
    assert tb.trigger.roam
    side = tb.trigger.mask.shape[-1]
    size = tiny.trigger.size
    corners = {"top-left": (1, 1), "center": ((side - size) // 2,) * 2, "bottom-right": (side - size - 1,) * 2}
    target = tiny.attack.target_class
    for where, (r, c) in corners.items():
        assert _asr(tb.model, _placed(tb.trigger, r, c), victims, target) > 0.8, where  # measured >= 0.996
    # BadNet learned its patch at one place: moved to the top-left, it mostly stops working.
    bn = _trojan(referee, BadNet())
    assert _asr(bn.model, bn.trigger, victims, target) > 0.9
    assert _asr(bn.model, _placed(bn.trigger, 1, 1), victims, target) < 0.3  # measured 0.03 (0.97 in place)
