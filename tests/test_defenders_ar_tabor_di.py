"""Adversarial Retraining (sanitization), TABOR and DeepInspect (inspection) on the tiny scenario.

Each match also runs the defender on the benign model (the referee's cached control run), which
is what the "does not flag the benign model" assertions read.
"""

from __future__ import annotations

import pytest

import torch
import torch.nn.functional as F

from arena.api.models import clone
from arena_agents.defenders.adversarial_retraining import AdversarialRetraining, pgd_attack
from arena_agents.defenders.deep_inspect import DeepInspect
from arena_agents.defenders.neural_cleanse import NeuralCleanse
from arena_agents.defenders.tabor import TABOR

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)


def test_pgd_stays_in_the_ball_and_raises_the_loss(referee):
    # A fresh copy: other tests may have left gradients on the referee's shared benign model.
    model = clone(referee.benign(0)[0]).eval()
    for p in model.parameters():
        p.grad = None
    sp = referee.splits(0)
    x, y = sp.defender.x[:64], sp.defender.y[:64]
    eps = 8 / 255
    adv = pgd_attack(model, x, y, eps, 2 / 255, 7, torch.Generator().manual_seed(0))
    assert adv.shape == x.shape and not adv.requires_grad
    assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert all(p.grad is None for p in model.parameters())  # only the inputs were differentiated
    with torch.no_grad():
        assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y) + 0.1
        assert (model(adv).argmax(1) == y).float().mean() < (model(x).argmax(1) == y).float().mean()


def test_adversarial_retraining_lowers_badnet_asr_within_budget(referee, tiny):
    result = referee.play("badnet", AdversarialRetraining(), seed=0)
    m = result.record.metrics
    a, d, notes = m["attack"], m["defense"], m["defender_notes"]
    assert a["asr"] > 0.9
    # Five epochs of PGD training weaken a BadNet a little on the tiny scenario: ARD 0.03-0.20 over five
    # referee keys, within the CAD budget.
    assert d["ard"] > 0.01
    assert d["cad"] <= tiny.budgets.defense_cad
    assert m["control"]["cad"] <= tiny.budgets.defense_cad  # on the benign model too
    assert notes["reverted"] is False and notes["holdout_acc_before"] - notes["holdout_acc_after"] <= notes["allowance"] + 1e-9
    assert result.record.outcome < a["asr"] and m["gate"] == "play"


def test_tabor_regularizer_terms():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    mask = torch.rand(3, 1, 4, 4, requires_grad=True)
    pattern = torch.rand(3, 1, 4, 4)
    classes = torch.arange(3)
    assert NeuralCleanse().regularizer(model, classes, mask, pattern, x, y) is None  # NC adds nothing
    base = TABOR().regularizer(model, classes, mask, pattern, x, y)
    assert base.shape == (3,) and (base > 0).all()
    # R4 (weight 1e-2) dominates at Table 21's weights: the lone trigger's CE to its class.
    r4 = 1e-2 * F.cross_entropy(model(mask * pattern), classes, reduction="none")
    assert torch.allclose(base, r4, rtol=0.05)
    # R3 (blocking, weight 0 in Table 21) enters when switched on and is differentiable in the mask.
    with_r3 = TABOR(lambda5=1.0).regularizer(model, classes, mask, pattern, x, y)
    assert (with_r3 > base).all()
    with_r3.sum().backward()
    assert mask.grad is not None and mask.grad.abs().sum() > 0


def test_tabor_flags_badnet_and_not_the_benign_model(referee, tiny):
    # TABOR finds the target's mask at a fraction of the other classes' (ratio 0.15-0.28 to the median
    # over five referee keys). On the raw norms the clean classes' spread keeps NC's MAD index near the
    # threshold; on log norms (``log_scale``, the default) the target stands well clear.
    result = referee.play("badnet", TABOR(), seed=0)
    m = result.record.metrics
    d = m["defense"]
    assert d["flagged"] is True
    assert d["suspected_target"] == tiny.attack.target_class == 0
    norms = torch.tensor(m["defender_notes"]["norms"])
    assert norms[0] < 0.5 * norms.median()
    assert d["mjs"] > 0 and d["mln"] < 3 * tiny.trigger.size**2
    assert m["control"]["flagged"] is False
    # The target stands out more than anything on the benign model. A margin of 1 held on the machine
    # it was written on and not on another (2026-12-07, same torch, an AVX-512 EPYC): there the
    # trojan's AIV was 2.7-9.1 and the benign model's 1.4-2.6 under five keys, the suite's 3.33 against
    # 2.64. Float kernels differ between CPUs, so a behaviour test asserts the order, not a margin.
    assert d["aiv"] > m["control"]["aiv"]
    assert d["cad"] == 0.0 and result.record.outcome == 0.0


def test_deep_inspect_flags_badnet_above_its_benign_control(referee, tiny):
    # A quarter of the 400-image clean set (the paper's ratio 0.1 would leave 40 images here).
    # Over five referee keys: target norm at 0.06-0.19 of the median, anomaly index 3.7-11.9 on log
    # norms. DeepInspect flags about one benign model in ten (23 of 200 on fmnist-cnn's population:
    # unusable at the 5% budget), so the control is asserted to read lower, not to pass.
    result = referee.play("badnet", DeepInspect(sample_ratio=0.25), seed=0)
    m = result.record.metrics
    d, notes = m["defense"], m["defender_notes"]
    assert notes["di_samples"] == 100
    assert d["flagged"] is True and d["suspected_target"] == tiny.attack.target_class == 0
    assert d["aiv"] > 2
    norms = torch.tensor(notes["norms"])
    assert norms[0] < 0.5 * norms.median()  # a trigger-sized perturbation reaches the target
    assert notes["attack_success"][0] > 0.9
    assert d["mjs"] > 0  # the perturbation sits on the bottom-right patch
    assert m["control"]["aiv"] < d["aiv"]
    assert result.record.outcome == 0.0 and d["cad"] == 0.0


def test_inspectors_do_not_flag_the_benign_model_of_the_none_attacker(referee):
    # The benign model again, with the match's own defender seed (the control run uses another):
    # a second draw of the inspectors' random initialization on a clean model.
    for defender in (TABOR(), DeepInspect(sample_ratio=0.25)):
        result = referee.play("none", defender, seed=0)
        m = result.record.metrics
        assert m["defense"]["flagged"] is False, defender.name
        # No trigger-sized shortcut: even the easiest class needs over half the median norm (BadNet's
        # target: ~0.1). The MAD index alone can exceed 2 here (DI: 2.8 at ratio 0.8, trousers), which
        # is why both inspectors also require max_norm_ratio.
        norms = torch.tensor(m["defender_notes"]["norms"])
        assert norms.min() > defender.max_norm_ratio * norms.median(), defender.name
