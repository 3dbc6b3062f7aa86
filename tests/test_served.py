"""The referee's own predictions for untouched deployments, and where a match's time goes (stages)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from arena.api.protocol import Defender, Deployment
from arena.core.progress import Ticker
from arena.core.stages import Stages
from arena.engine.agent_process import _untouched
from conftest import requires_fmnist


class InPlaceBreaker(Defender):
    """Returns the model it was given, its last layer zeroed in place: every input lands in class 0."""

    name = "in-place-breaker"
    category = "model_sanitization"

    def deploy(self, model, ctx):
        with torch.no_grad():
            last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
            last.weight.zero_()
            last.bias.zero_()
            last.bias[1] = 1.0  # every input to class 1: the trigger's target (0) is never reached
        return Deployment(model=model)


class HookBreaker(Defender):
    """Returns the model it was given with a forward hook that sends every input to class 1."""

    name = "hook-breaker"
    category = "model_sanitization"

    def deploy(self, model, ctx):
        def to_class_1(module, args, out):
            fixed = torch.full_like(out, -10.0)
            fixed[:, 1] = 10.0
            return fixed

        model.register_forward_hook(to_class_1)
        return Deployment(model=model)


def test_untouched_sees_swaps_hooks_and_weights():
    model = nn.Sequential(nn.Linear(3, 2))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modules = [(n, type(m)) for n, m in model.named_modules()]
    assert _untouched(model, model, modules, state)
    assert not _untouched(nn.Sequential(nn.Linear(3, 2)), model, modules, state)  # another object
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert not _untouched(model, model, modules, state)  # weights changed in place
    model.load_state_dict(state)
    handle = model.register_forward_pre_hook(lambda m, a: a)
    assert not _untouched(model, model, modules, state)  # a hook
    handle.remove()

    class Doubled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    model[0] = Doubled(3, 2)
    model.load_state_dict(state)
    assert not _untouched(model, model, modules, state)  # same names and weights, another module type


@pytest.mark.slow
@requires_fmnist
def test_a_deployment_that_changes_its_model_in_place_is_asked_and_scored_as_changed(referee):
    plain = referee.play("badnet", "none", seed=0).record.metrics
    assert plain["defense"]["asr"] > 0.8 and abs(plain["defense"]["cad"]) < 1e-6
    for breaker in (InPlaceBreaker(), HookBreaker()):
        m = referee.play("badnet", breaker, seed=0).record.metrics
        # Had the referee used the untouched trojan's predictions, ASR and CAD would equal none's.
        assert m["defense"]["asr"] < 0.01, breaker.name
        assert m["defense"]["cad"] > 0.5, breaker.name


def test_stages_charge_each_second_to_the_open_path():
    t = [0.0]
    st = Stages(now=lambda: t[0])
    with st("control"):
        t[0] += 1
        with st("benign"):
            t[0] += 5
        t[0] += 2
    t[0] += 100  # outside every stage: nobody's
    with st("deploy"):
        t[0] += 3
    assert st.seconds == {"control": 3.0, "control/benign": 5.0, "deploy": 3.0}
    before = dict(st.seconds)
    with st("deploy"):
        t[0] += 4
    assert st.since(before) == {"deploy": 4.0}


def test_ticker_speaks_every_interval_with_an_eta():
    t, heard = [0.0], []
    ticker = Ticker(100, heard.append, "  strip: filter scores for", now=lambda: t[0])
    ticker.tick(10, "inputs")
    assert heard == []  # under the interval: silent
    t[0] = 12.0
    ticker.tick(20, "inputs")
    assert heard == ["  strip: filter scores for 20/100 inputs, 0:12, ETA 0:48"]
    Ticker(5, None, "x", now=lambda: t[0]).tick(1)  # no listener: nothing happens
