"""Which countermeasure adaptive IMC picks for what the threat model reveals (no training here)."""

from __future__ import annotations

import pytest

import torch
from torch import nn

from arena.config.datasets import DatasetInfo, Tensors
from arena.api.defenses import InputFilter, InputReformer, ModelInspector, ModelSanitizer
from arena.api.models import ArchSpec, build_model
from arena.api.protocol import AttackContext, RoundRecord
from arena.api.triggers import make_trigger
from arena_agents.attackers.imc_adaptive import AdaptiveIMC

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)


class Blur(InputReformer):
    name = "blur"

    def reform(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(x, 3, 1, 1)


class Robustify(ModelSanitizer):
    name = "robustify"

    def __init__(self, eps: float = 4 / 255) -> None:
        self.eps = eps


class SoftFilter(InputFilter):
    """A filter whose score is differentiable: the mean logit margin of the target class."""

    name = "soft-filter"

    def fit(self, model, reference, ctx):
        return None

    def score_inputs(self, model, state, x, generator):
        return model(x)[:, 0] - model(x).mean(1)


class HardFilter(SoftFilter):
    name = "hard-filter"

    def score_inputs(self, model, state, x, generator):
        with torch.no_grad():
            return super().score_inputs(model, state, x, generator)


class Inspector(ModelInspector):
    name = "abs"  # ABS is recognized by name; its cost term needs no surrogate


class OtherInspector(ModelInspector):
    name = "some-inspector"


def _ctx(tiny, defender=None, category=None, history=()) -> AttackContext:
    info = DatasetInfo("fashion-mnist", 1, 28, 10, (0.5,), (0.5,), "FashionMNIST")
    model = build_model(ArchSpec("small-cnn", 1, 28, 10, (0.5,), (0.5,)))
    g = torch.Generator().manual_seed(0)
    data = Tensors(torch.rand(400, 1, 28, 28, generator=g), torch.randint(0, 10, (400,), generator=g))
    return AttackContext(scenario=tiny, data=data, validation=data, benign=model,
                         trigger=make_trigger(tiny.trigger, 1, 28), info=info, device=torch.device("cpu"),
                         generator=g, defender=defender,
                         defender_category=category or (defender.category if defender else None),
                         history=list(history))


def test_reformer_is_trained_through_via_a_surrogate(tiny):
    name, adapt, why = AdaptiveIMC().plan(_ctx(tiny, Blur()))
    assert name == "train-through-reformer" and adapt.through is not None
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(adapt.through(x), Blur().reform(x))
    assert "surrogate" in why


def test_sanitizer_with_eps_gets_adversarial_training_at_its_eps(tiny):
    name, adapt, why = AdaptiveIMC(ar_iters=2).plan(_ctx(tiny, Robustify(eps=4 / 255)))
    assert name == "adversarial-training"
    model = build_model(ArchSpec("small-cnn", 1, 28, 10, (0.5,), (0.5,)))
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    adv = adapt.clean(model, x, y)
    assert 0 < (adv - x).abs().max() <= 4 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1


def test_differentiable_score_is_evaded_and_a_hard_one_is_not(tiny):
    name, adapt, _ = AdaptiveIMC().plan(_ctx(tiny, SoftFilter()))
    assert name == "evade-differentiable-score" and adapt.loss is not None
    name, adapt, why = AdaptiveIMC().plan(_ctx(tiny, HardFilter()))
    assert name is None and adapt is None and "not differentiable" in why


def test_abs_cost_term_and_unknown_inspector(tiny):
    ctx = _ctx(tiny, Inspector())
    name, adapt, _ = AdaptiveIMC().plan(ctx)
    assert name == "abs-cost-term"
    loss = adapt.loss(ctx.benign, ctx.trigger, ctx.data.x[:16], ctx.data.y[:16])
    assert loss.requires_grad and loss.item() >= 0
    name, adapt, why = AdaptiveIMC().plan(_ctx(tiny, OtherInspector()))
    assert name is None and "no countermeasure" in why


def test_category_only_and_lost_rounds_strengthen(tiny):
    name, _, _ = AdaptiveIMC().plan(_ctx(tiny, None, "model_sanitization"))
    assert name == "adversarial-training"
    name, _, why = AdaptiveIMC().plan(_ctx(tiny, None, None))
    assert name is None and "nothing revealed" in why
    lost = [RoundRecord(1, 0.1, "caught", {})]
    _, _, why0 = AdaptiveIMC().plan(_ctx(tiny, Inspector()))
    _, _, why1 = AdaptiveIMC().plan(_ctx(tiny, Inspector(), history=lost))
    assert "weight 1" in why0 and "weight 2" in why1
