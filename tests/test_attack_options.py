"""Trigger and poisoning options reachable from a scenario file, and the efficacy-specificity sweep."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner

from arena.api.poison import Poisoner
from arena.config.scenario import TriggerSpec, scenario_from_dict
from arena.run.sweep import SweepPoint, normalized_auc
from arena.api.triggers import make_trigger

pytestmark = pytest.mark.slow  # trains models: not in the fast lane (README)


def test_single_pixel_and_random_shape_triggers():
    one = make_trigger(TriggerSpec(size=1, pattern="white"), 1, 28)
    assert one.mask.sum() == 1 and one.pattern[one.mask.bool()].item() == 1.0
    shaped = make_trigger(TriggerSpec(size=3, shape="random"), 1, 28, torch.Generator().manual_seed(0))
    assert shaped.mask.sum() == 9  # the same pixel count as the 3x3 patch
    rows, cols = shaped.mask[0].nonzero().unbind(1)
    assert (rows.max() - rows.min()) > 2 or (cols.max() - cols.min()) > 2  # scattered, not a patch


def test_roaming_trigger_moves_the_whole_patch_inside_the_image():
    t = make_trigger(TriggerSpec(size=3, position="random", pattern="white"), 1, 28)
    assert t.roam
    x = torch.zeros(256, 1, 28, 28)
    out = t.stamp(x)
    assert torch.equal(out, t.stamp(x))  # no generator: the same placement every time
    assert torch.all(out.flatten(1).sum(1) == 9)  # every input carries the full 3x3 white patch
    corners = {tuple(o[0].nonzero().min(0).values.tolist()) for o in out}
    assert len(corners) > 50  # many different places
    moved = t.stamp(x, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(out, moved)


def test_poison_mixing_levels():
    stamp = lambda v: v + 1.0  # noqa: E731 - marks stamped inputs
    x, y = torch.zeros(100, 1, 2, 2), torch.ones(100, dtype=torch.long)
    idx = torch.arange(100)
    g = torch.Generator().manual_seed(0)
    xb, yb = Poisoner(stamp, 0, 0.1, "batch", generator=g)(x, y, 0, idx)
    assert len(xb) == 100 and (yb == 0).sum() == 10
    xl, yl = Poisoner(stamp, 0, 0.1, "loss", generator=g)(x, y, 0, idx)
    assert len(xl) == 110 and (yl[:100] == 1).all() and (yl[100:] == 0).all()  # clean batch kept whole
    ds = Poisoner(stamp, 0, 0.1, "dataset", n_data=1000, generator=g)
    assert ds.chosen.sum() == 100
    a, _ = ds(x, y, 0, idx)
    b, _ = ds(x, y, 5, idx)
    assert torch.equal(a, b)  # the same inputs are poisoned whenever they come back
    with pytest.raises(ValueError, match="mixing level"):
        Poisoner(stamp, 0, 0.1, "epoch")


def test_scenario_rejects_unknown_options():
    from arena.core.errors import ScenarioError

    with pytest.raises(ScenarioError, match="mixing"):
        scenario_from_dict({"name": "x", "attack": {"mixing": "sometimes"}})
    with pytest.raises(ScenarioError, match="shape"):
        scenario_from_dict({"name": "x", "trigger": {"shape": "star"}})


def test_normalized_auc():
    pts = lambda *xy: [SweepPoint(i, a, c, c <= 0.03) for i, (a, c) in enumerate(xy)]  # noqa: E731
    assert normalized_auc(pts((0.2, 0.0), (0.6, 0.01), (1.0, 0.02))) == pytest.approx(0.5)  # linear
    convex = normalized_auc(pts((0.2, 0.0), (0.9, 0.002), (1.0, 0.02)))
    assert convex < 0.2  # ASR bought at little CAD: strong leverage
    # a point over the attack budget is dropped before normalizing
    assert normalized_auc(pts((0.2, 0.0), (0.6, 0.01), (1.0, 0.02), (1.0, 0.2))) == pytest.approx(0.5)
    assert normalized_auc(pts((0.9, 0.0), (0.9, 0.01))) is None  # no ASR range: no curve


def test_sweep_command_stores_the_curve(tiny_path, referee):
    from arena.cli import main
    from arena.results.store import Store

    res = CliRunner().invoke(main, ["sweep", "badnet", "-s", str(tiny_path), "--fractions", "0.002,0.1",
                                    "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert [p["fraction"] for p in out["points"]] == [0.002, 0.1]
    assert out["points"][1]["asr"] > out["points"][0]["asr"]  # more poison, stronger backdoor
    rows = Store().sweeps("tiny")
    assert rows and rows[-1]["attacker"] == "badnet" and len(rows[-1]["points"]) == 2
    bad = CliRunner().invoke(main, ["sweep", "badnet", "-s", str(tiny_path), "--fractions", "0.1,2"])
    assert bad.exit_code != 0 and "fractions" in bad.output


def test_dataset_mixing_and_from_scratch_reach_the_attacker(tiny):
    from arena.config.datasets import DatasetInfo, Tensors
    from arena.api.models import ArchSpec, build_model
    from arena.api.protocol import AttackContext
    from arena.api.triggers import make_trigger as mk

    sc = dataclasses.replace(tiny, attack=dataclasses.replace(tiny.attack, mixing="dataset", from_scratch=True))
    info = DatasetInfo("fashion-mnist", 1, 28, 10, (0.5,), (0.5,), "FashionMNIST")
    model = build_model(ArchSpec("small-cnn", 1, 28, 10, (0.5,), (0.5,)))
    before = [p.detach().clone() for p in model.parameters()]
    data = Tensors(torch.rand(50, 1, 28, 28), torch.randint(0, 10, (50,)))
    ctx = AttackContext(scenario=sc, data=data, validation=data, benign=model, trigger=mk(sc.trigger, 1, 28),
                        info=info, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    assert ctx.poisoner(ctx.trigger.stamp).level == "dataset"
    m, epochs, lr = ctx.training_budget()
    assert (epochs, lr) == (sc.training.epochs, sc.training.lr)
    assert any(not torch.equal(a, b) for a, b in zip(before, m.parameters()))  # re-initialized
