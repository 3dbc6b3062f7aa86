"""NeuronInspect and ABS (model inspection) on the tiny scenario, plus their vectorized building blocks."""

from __future__ import annotations

import pytest

import torch

from arena.api.models import ArchSpec, SmallCNN
from arena_agents.defenders.abs import ABS, forward_from_conv, select_candidates, stimulate
from arena_agents.defenders.neuron_inspect import NeuronInspect, saliency_maps

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)

# Reduced ABS for the tests (defaults: 5 seeds per class, 5 candidates, 300 iterations).
ABS_TEST = dict(seeds_per_class=3, top_neurons=3, iterations=150)


def _small_model(seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN(ArchSpec("small-cnn", 1, 28, 10, (0.5,), (0.5,))).eval()


def test_saliency_maps_are_each_class_gradient():
    model = _small_model()
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    heat = saliency_maps(model, x, 10, batch_size=20)  # 2 inputs x 10 classes per pass: 3 chunks
    assert heat.shape == (10, 5, 28, 28)
    for t in (0, 7):
        xi = x.clone().requires_grad_()
        model(xi)[:, t].sum().backward()
        assert torch.allclose(heat[t], xi.grad.abs().sum(1), atol=1e-6)


def test_stimulation_elevates_one_channel_at_a_time():
    model = _small_model(1)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fmap = model.conv_features(x)
        values = torch.tensor([1.0, 5.0])
        logits = stimulate(model, fmap, values, max_images=16)  # 2 channels per chunk
        assert logits.shape == (fmap.shape[1], 2, 4, 10)
        for c, v in ((0, 1), (13, 0), (31, 1)):
            f = fmap.clone()
            f[:, c] = values[v]
            assert torch.allclose(logits[c, v], forward_from_conv(model, f), atol=1e-5)
    # A channel that sends every seed of other labels to label 3 gets a positive elevation difference.
    toy = torch.zeros(2, 1, 3, 10)
    toy[0, 0, :, 3] = 2.0
    label, diff = select_candidates(toy, torch.tensor([0, 1, 3]))
    assert int(label[0]) == 3 and float(diff[0]) == 2.0
    assert float(diff[1]) <= 0


def test_neuron_inspect_flags_badnet_and_names_its_target(referee, tiny):
    # NeuronInspect's outlier test also flags most benign models (152 of 200 on fmnist-cnn's population;
    # here the benign model on 3 of 5 referee keys, once reading higher than the trojan): the pooled
    # usability test lists it as unusable, and no test asserts that it passes or ranks a benign model.
    # What it does on every key tried: flags the trojan and names its target.
    result = referee.play("badnet", NeuronInspect(), seed=0)
    m = result.record.metrics
    d = m["defense"]
    assert m["attack"]["asr"] > 0.9
    assert d["flagged"] is True
    assert d["suspected_target"] == tiny.attack.target_class == 0
    assert d["aiv"] > 2 and len(d["aiv_per_class"]) == 10
    assert d["mjs"] > 0  # the target's persistent pixels overlap the 3x3 bottom-right patch
    assert d["cad"] == 0.0 and result.record.outcome == 0.0


def test_abs_flags_badnet_and_recovers_a_trigger(referee, tiny):
    # ABS flags the trojan on every referee key tried, but with the tests' reduced search the label its
    # best trigger reaches is not always the target (2 of 5 keys named another class; on fmnist-cnn
    # ABS names the true target less often than Neural Cleanse and TABOR, docs/paper.md Remark 6), so
    # the target is not asserted: the REASR separation from the benign control is.
    result = referee.play("badnet", ABS(**ABS_TEST), seed=0)
    m = result.record.metrics
    d = m["defense"]
    assert d["flagged"] is True
    assert d["aiv"] > 0.9  # the best REASR: the recovered trigger sends >90% of other classes to one label
    assert d["aiv"] > m["control"]["aiv"] + 0.5
    assert d["mln"] <= 1.25 * 16  # under Table 21's bound (16 pixels), with the soft mask's slack
    assert m["control"]["flagged"] is False
    assert d["cad"] == 0.0 and result.record.outcome == 0.0


def test_abs_does_not_flag_the_benign_model(referee):
    result = referee.play("none", ABS(**ABS_TEST), seed=0)
    d = result.record.metrics["defense"]
    assert d["flagged"] is False
    assert max(d["aiv_per_class"]) < 0.5  # no 16-pixel patch moves half the inputs to one label
