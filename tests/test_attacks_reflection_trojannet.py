"""Reflection Backdoor (RB) and TrojanNet (ESB) on the tiny scenario."""

from __future__ import annotations

import pytest

import torch

from arena.api.models import ArchSpec, build_model
from arena.api.training import predict_proba
from arena.api.triggers import Trigger
from arena_agents.attackers.reflection import ReflectionBackdoor, reflect, reflection_kernels
from arena_agents.attackers.trojannet import TrojanNet, TrojanNetModel, trigger_window
from arena_agents.defenders.none import NoDefense

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)

# Reduced selection (paper: 50 candidates, 10 selected, 5 iterations, 5 inner epochs) to keep the test short.
RB_FAST = dict(candidates=20, selected=5, selection_iters=3, inner_epochs=3)


def _trojan(referee, attacker):
    trojan = referee.craft(attacker, 0, NoDefense())
    return trojan


def _target_rate(model, trigger: Trigger, x: torch.Tensor, target: int) -> float:
    return (predict_proba(model, trigger.stamp(x)).argmax(1) == target).float().mean().item()


def test_reflection_kernels_are_blurs_and_ghosts():
    g = torch.Generator().manual_seed(0)
    k = reflection_kernels(64, 4, g)
    assert k.shape == (64, 9, 9)
    assert torch.allclose(k.sum((1, 2)), torch.ones(64), atol=1e-5)
    # A delta image reflects into the kernel itself (the convolution is centred).
    delta = torch.zeros(64, 1, 21, 21)
    delta[:, :, 10, 10] = 1.0
    r = reflect(delta, k)
    assert torch.allclose(r[:, 0, 6:15, 6:15], k.flip(1, 2), atol=1e-6)
    # Blurs are centred and symmetric; ghosts add a shifted pulse, which moves the centre of mass.
    sym = torch.isclose(k, k.flip(1, 2), atol=1e-6).flatten(1).all(1)
    assert 16 <= int(sym.sum()) <= 48
    t = torch.arange(9.0) - 4
    com = torch.stack([(k.sum(2) * t).sum(1), (k.sum(1) * t).sum(1)], 1).norm(dim=1)
    assert (com[sym] < 1e-4).all() and (com[~sym] > 0.4).all()

def test_reflection_plants_a_backdoor(referee, tiny):
    m = referee.play(ReflectionBackdoor(**RB_FAST), "none", seed=0).record.metrics
    a, notes = m["attack"], m["attacker_notes"]
    assert a["asr"] > 0.7  # 0.76-0.93 over five referee keys
    assert a["asr"] > a["base_rate"] + 0.5
    assert a["cad"] <= tiny.budgets.attack_cad
    assert len(notes["selected_candidates"]) == 5 and notes["reported_candidate"] in notes["selected_candidates"]
    assert len(notes["selection_history"]) == 3
    # The trojan's single trigger: a full-image reflection at transparency 0.7, cached by the referee.
    trojan = _trojan(referee, ReflectionBackdoor(**RB_FAST))
    t = trojan.trigger
    assert t.mask.shape == (1, 28, 28) and bool((t.mask == 1).all()) and abs(t.alpha - 0.7) < 1e-6
    assert t.pattern.min() >= 0 and t.pattern.max() <= 1 and t.pattern.std() > 0.05


def test_trojannet_fires_on_the_exact_trigger_only(referee, tiny):
    m = referee.play(TrojanNet(), "none", seed=0).record.metrics
    a = m["attack"]
    assert a["asr"] > 0.95 and a["base_rate"] < 0.2
    assert a["cad"] <= tiny.budgets.attack_cad
    assert m["attacker_notes"]["mlp_fires_on_clean"] < 0.01

    trojan = _trojan(referee, TrojanNet())
    benign, _ = referee.benign(0)
    test = referee.splits(0).test
    x = test.x[test.y != 0]
    t = trojan.trigger
    w = trigger_window(t)
    top, left, h, wd = w["top"], w["left"], w["height"], w["width"]
    left_half, top_half = t.mask.clone(), t.mask.clone()
    left_half[..., :, left + (wd + 1) // 2 :] = 0
    top_half[..., top + (h + 1) // 2 :, :] = 0
    others = {
        "left half": Trigger(left_half, t.pattern, t.alpha),
        "top half": Trigger(top_half, t.pattern, t.alpha),
        "inverted": Trigger(t.mask, t.mask - t.pattern, t.alpha),
        "white": Trigger(t.mask, t.mask.expand_as(t.pattern).clone(), t.alpha),
    }
    assert _target_rate(trojan.model, t, x, 0) > 0.95
    for name, other in others.items():
        # No better than the benign model on the same inputs: the MLP stays silent.
        assert _target_rate(trojan.model, other, x, 0) <= _target_rate(benign, other, x, 0) + 0.02, name

    # The original network is untouched, bit for bit.
    mine, theirs = trojan.model.base.state_dict(), benign.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_trojannet_shows_defenses_the_original_network(referee):
    trojan = _trojan(referee, TrojanNet())
    model: TrojanNetModel = trojan.model
    x = referee.splits(0).test.x[:256]
    with torch.no_grad():
        assert torch.equal(model.features(x), model.base.features(x))
        assert model.feature_mask is model.base.feature_mask
        # On clean inputs the wrapper's head on base features agrees with its forward pass.
        assert torch.equal(model.classify(model.features(x)).argmax(1), model(x).argmax(1))
        out = model(x)
    assert out.shape == (256, 10) and torch.isfinite(out).all()
    loss = torch.nn.functional.cross_entropy(out, referee.splits(0).test.y[:256])
    assert torch.isfinite(loss)


def test_trojannet_is_cached_and_rebuilt_from_its_spec(referee):
    first = referee.play(TrojanNet(), "none", seed=0).record.metrics
    second = referee.play(TrojanNet(), "none", seed=0).record.metrics
    assert second["timing"]["trojan_cached"] is True
    assert second["attack"] == first["attack"]
    # The architecture travels as plain data: a spec naming the base's own spec.
    trojan = _trojan(referee, TrojanNet())
    spec = trojan.model.spec
    assert spec.arch == "trojannet" and spec.options["base"]["arch"] == "small-cnn"
    rebuilt = build_model(ArchSpec.from_dict(spec.to_dict()))
    rebuilt.load_state_dict(trojan.model.state_dict())
    x = referee.splits(0).test.x[:128]
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), trojan.model(x))


def test_trojannet_recognizes_a_roaming_trigger(referee, tiny):
    # A trigger stamped at a random place per input: the MLP slides over every placement.
    from arena.api.protocol import AttackContext
    from arena.api.triggers import make_trigger
    import dataclasses

    benign, _ = referee.benign(0)
    sp = referee.splits(0)
    roaming = make_trigger(dataclasses.replace(tiny.trigger, position="random"), 1, 28)
    ctx = AttackContext(scenario=tiny, data=sp.attacker, validation=sp.validation,
                        benign=build_model(benign.spec), trigger=roaming, info=sp.info, device=referee.device,
                        generator=torch.Generator().manual_seed(0))
    ctx.benign.load_state_dict(benign.state_dict())
    trojan = TrojanNet(steps=200).craft(ctx)
    x = sp.test.x[sp.test.y != 0][:500]
    assert _target_rate(trojan.model, roaming, x, 0) > 0.9
    clean = predict_proba(trojan.model, sp.test.x[:500]).argmax(1)
    assert (clean == predict_proba(benign, sp.test.x[:500]).argmax(1)).float().mean() > 0.99
