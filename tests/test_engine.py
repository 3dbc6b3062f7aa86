"""Engine pieces without training: scenarios, data loading, models, triggers, outcome rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arena.config.datasets import load_dataset
from arena.config.splits import make_splits
from arena.core.errors import ScenarioError
from arena.engine.metrics import AttackMetrics, DefenseMetrics
from arena.api.models import ArchSpec, build_model
from arena.engine.outcome import decide
from arena.config.scenario import Budgets, TriggerSpec, load_scenario, scenario_from_dict
from arena.api.triggers import make_trigger, mask_jaccard

from conftest import SHARED_DATA


def test_shipped_scenarios_validate():
    for name in ("fmnist-cnn", "cifar10-resnet18", "cifar10-cnn"):
        s = load_scenario(name)
        assert s.name == name
    assert load_scenario("fmnist-cnn").digest != load_scenario("cifar10-resnet18").digest


def test_scenario_digest_tracks_settings():
    a = scenario_from_dict({"name": "x"})
    b = scenario_from_dict({"name": "x", "trigger": {"alpha": 0.5}})
    assert a.digest != b.digest
    assert a.digest == scenario_from_dict({"name": "x"}).digest
    # Development seeds change no match: the matches stored for the test seeds keep their key.
    assert scenario_from_dict({"name": "x", "seeds": [10], "development_seeds": [0, 1]}).digest == \
        scenario_from_dict({"name": "x", "seeds": [10]}).digest


@pytest.mark.parametrize("raw,needle", [
    ({"name": "x", "bogus": 1}, "unknown key 'bogus'"),
    ({"name": "x", "trigger": {"colour": 1}}, "trigger.colour"),
    ({"name": "x", "threat": {"reveal": "maybe"}}, "full, category, none"),
    ({"name": "x", "budgets": {"fpr": 2.0}}, "must lie in [0, 1]"),
    ({"name": "x", "training": {"epochs": "four"}}, "training.epochs"),
    ({"dataset": "mnist"}, "missing key 'name'"),
    ({"name": "x", "seeds": [0, 1], "development_seeds": [1]}, "in both 'seeds'"),
    ({"name": "x", "development_seeds": ["zero"]}, "development_seeds"),
])
def test_bad_scenarios_name_the_key(raw, needle):
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(raw, where="bad.toml")
    assert "bad.toml" in str(err.value) and needle in str(err.value)


def test_npz_layout_loads(tmp_path, monkeypatch):
    d = tmp_path / "mnist"
    d.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 200), ("test", 50)):
        np.savez(d / f"{split}.npz", x=rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                 y=rng.integers(0, 10, n))
    load_dataset.cache_clear()
    monkeypatch.setenv("ARENA_DATA_DIR", str(tmp_path))
    s = scenario_from_dict({"name": "m", "dataset": "mnist"})
    sp = make_splits(s, seed=0)
    assert sp.attacker.x.shape[1:] == (1, 28, 28)
    assert 0.0 <= sp.attacker.x.min() and sp.attacker.x.max() <= 1.0
    assert len(sp.attacker) + len(sp.defender) + len(sp.validation) == 200
    assert len(sp.test) == 50
    # splits are disjoint and depend on the seed
    other = make_splits(s, seed=1)
    assert not torch.equal(sp.defender.x, other.defender.x)
    load_dataset.cache_clear()


@pytest.mark.skipif(not (SHARED_DATA / "cifar10" / "test.npz").is_file(), reason="offline CIFAR-10 copy absent")
def test_shared_cifar10_npz(monkeypatch):
    load_dataset.cache_clear()
    monkeypatch.setenv("ARENA_DATA_DIR", str(SHARED_DATA))
    t = load_dataset("cifar10", "test", str(SHARED_DATA))
    assert t.x.shape == (10000, 3, 32, 32) and int(t.y.max()) == 9
    load_dataset.cache_clear()


def test_resnet18_for_32x32_runs():
    spec = ArchSpec("resnet18", 3, 32, 10, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    m = build_model(spec).eval()
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert m.features(torch.rand(2, 3, 32, 32)).shape == (2, 512)
    assert m.stem[0].kernel_size == (3, 3)


def test_trigger_transparency_convention():
    t = make_trigger(TriggerSpec(size=3, pattern="white", alpha=0.0), channels=1, side=28)
    x = torch.zeros(4, 1, 28, 28)
    assert t.stamp(x)[:, :, 24:27, 24:27].eq(1).all()  # opaque
    assert t.stamp(x).sum() == 4 * 9  # nothing outside the mask changes
    assert torch.allclose(t.stamp(x, alpha=1.0), x)  # invisible
    assert torch.allclose(t.stamp(x, alpha=0.3)[:, :, 25, 25], torch.full((4, 1), 0.7))
    assert mask_jaccard(t.mask, t.mask) == 1.0
    assert mask_jaccard(t.mask, 1 - t.mask) == 0.0


def _am(cad=0.0, asr=0.9):
    return AttackMetrics(0.9, 0.9 - cad, cad, asr, 0.9, 0.8, 0.5, 0.01)


def _dm(**kw):
    base = dict(category="input_filtering", clean_acc=0.9, cad=0.0, ccc=0.8, asr=0.9, ard=0.0, tmc=0.9,
                effective_asr=0.4, tpr=0.5, fpr=0.05)
    return DefenseMetrics(**{**base, **kw})


def test_outcome_attacker_gate():
    o = decide(_am(cad=0.05), _dm(), Budgets())
    assert (o.score, o.gate) == (0.0, "attacker")


@pytest.mark.parametrize("dm", [_dm(cad=0.06), _dm(fpr=0.08)])  # too costly; rejects too many clean inputs
def test_outcome_defender_gate(dm):
    o = decide(_am(), dm, Budgets())
    assert (o.score, o.gate) == (1.0, "defender")


def test_outcome_play_is_effective_asr_above_the_base_rate():
    # effective ASR 0.4, base rate 0.01: (0.4 - 0.01) / (1 - 0.01)
    assert decide(_am(), _dm(), Budgets()).score == pytest.approx(0.39 / 0.99)
    # FPR within tolerance is allowed
    assert decide(_am(), _dm(fpr=0.069), Budgets()).gate == "play"
    flagged = decide(_am(), _dm(flagged=True, effective_asr=0.0, aiv=3.0, suspected_target=0), Budgets())
    assert flagged.score == 0.0 and "rejects" in flagged.reason


def test_outcome_attacker_gate_for_non_finite_and_over_budget_triggers():
    import dataclasses

    nan = dataclasses.replace(_am(), finite=False)
    assert decide(nan, _dm(), Budgets()).gate == "attacker"
    # a blend over the whole image, above the L-inf budget: over budget
    blend = dataclasses.replace(_am(), trigger_area=1.0, trigger_linf=0.7, over_budget=1.0)
    o = decide(blend, _dm(), Budgets())
    assert (o.score, o.gate) == (0.0, "attacker") and "perturbation budget" in o.reason


def test_perturbation_counts_changed_pixels_and_their_largest_change():
    from arena.engine.metrics import perturbation

    x = torch.zeros(2, 3, 10, 10)
    stamped = x.clone()
    stamped[0, :, :2, :2] = 1.0  # a 2x2 opaque patch: 4 of 100 positions
    stamped[1] += 0.2  # a faint change everywhere
    area, linf = perturbation(x, stamped)
    assert area.tolist() == pytest.approx([0.04, 1.0]) and linf.tolist() == pytest.approx([1.0, 0.2])


def test_batch_augment_draws_on_the_cpu_generator_for_any_device():
    # Regression (CUDA crash): a seeded CPU generator with a batch on another device. The meta
    # device stands in for CUDA here; the draws must come from the CPU generator either way.
    from arena.api.training import batch_augment

    x = torch.rand(8, 3, 32, 32)
    out_meta = batch_augment(x.to("meta"), torch.Generator().manual_seed(3))
    assert out_meta.device.type == "meta" and out_meta.shape == x.shape
    a = batch_augment(x, torch.Generator().manual_seed(3))
    b = batch_augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
