"""Standard architectures by name (``torchvision:NAME``): built without a download, split into the
arena's model contract, small-input stems, 1-channel inputs, and a match played on one."""

from __future__ import annotations

import pytest
import torch

from arena.api.models import ArchSpec, build_model
from arena.api.tv_models import FAMILIES, offered
from arena.config.scenario import TORCHVISION_NAMES, scenario_from_dict
from arena.core.errors import ScenarioError


def _spec(name: str, channels: int = 3, size: int = 32, classes: int = 7) -> ArchSpec:
    return ArchSpec(f"torchvision:{name}", channels, size, classes, (0.5,) * channels, (0.25,) * channels)


# The fast lane builds the smallest member of the families that build in about a second; the rest
# (ViT-B/16 is 86M parameters, DenseNet-121 and EfficientNet-B0 take 8-24 s to build and run here
# under load) share their family's code path and run in the full suite.
FAST = {"resnet18", "vgg11_bn", "mobilenet_v2", "mobilenet_v3_small"}


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(FAMILIES)])
def test_every_offered_architecture_keeps_the_contract(name):
    m = build_model(_spec(name)).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        fmap = m.conv_features(x)
        assert fmap.dim() == 4 and fmap.shape[1] == m.feature_mask.numel()
        assert fmap.shape[-1] >= 1
        feats = m.features(x)
        assert feats.dim() == 2 and torch.allclose(m.classify(feats), m(x), atol=1e-5)
        assert m(x).shape == (2, 7)
        # Fine-Pruning's lever: zeroing the mask silences the channel map, and the logits no longer
        # depend on the input.
        m.feature_mask.zero_()
        out = m(x)
        assert torch.allclose(out[0], out[1], atol=1e-5)


def test_small_inputs_get_the_cifar_stem_and_large_ones_keep_imagenets():
    small = build_model(_spec("resnet18", size=32))
    assert small.backbone[0].kernel_size == (3, 3) and small.backbone[0].stride == (1, 1)
    assert small.conv_features(torch.rand(1, 3, 32, 32)).shape[-1] == 4  # 32 / 8: three stride-2 stages
    large = build_model(_spec("resnet18", size=96))
    assert large.backbone[0].kernel_size == (7, 7) and large.backbone[0].stride == (2, 2)


def test_grayscale_inputs_and_a_rebuild_from_the_spec():
    m = build_model(_spec("mobilenet_v3_small", channels=1, size=28, classes=10))
    assert m(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    again = build_model(m.spec)
    again.load_state_dict(m.state_dict())  # the wire sends spec + weights: they rebuild the same model
    m.eval(), again.eval()
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(m(x), again(x))


@pytest.mark.slow
def test_vit_on_small_images_uses_small_patches_and_the_class_token():
    m = build_model(_spec("vit_b_16", channels=1, size=28, classes=10)).eval()
    vit = m.backbone.vit
    assert vit.patch_size == 4 and vit.conv_proj.in_channels == 1
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        fmap = m.conv_features(x)
        assert fmap.shape == (2, 768, 7 * 7 + 1, 1)  # hidden units as channels, 49 patches and the class token
        assert torch.equal(m.pool_features(fmap), fmap[:, :, 0, 0])
    with pytest.raises(ValueError, match="multiple of 16"):
        build_model(_spec("vit_b_16", size=72))


def test_unoffered_names_are_clear_errors():
    with pytest.raises(ValueError, match="not offered"):
        build_model(_spec("vit_l_16"))
    with pytest.raises(ScenarioError, match="torchvision:resnet18"):
        scenario_from_dict({"name": "x", "architecture": "torchvision:resnet1800"}, where="x.toml")
    assert "torchvision:resnet18" in offered()
    assert set(FAMILIES) == set(TORCHVISION_NAMES)  # every name a scenario accepts has a split, and back
    assert scenario_from_dict({"name": "x", "architecture": "torchvision:resnet18"}).architecture == \
        "torchvision:resnet18"


@pytest.mark.slow
def test_a_match_on_a_torchvision_architecture(tmp_path):
    """badnet against Fine-Pruning and Neural Cleanse on MobileNet-V3-small at micro size: the
    channel-mask and the inspector paths run on a network the arena did not write."""
    from conftest import have_fashion_mnist
    from arena.engine.referee import Referee

    if not have_fashion_mnist():
        pytest.skip("Fashion-MNIST not installed")
    sc = scenario_from_dict({
        "name": "tv", "dataset": "fashion-mnist", "architecture": "torchvision:mobilenet_v3_small",
        "device": "cpu", "training": {"epochs": 1, "retrain_epochs": 1, "batch_size": 64},
        "data": {"train_limit": 1500, "test_limit": 200}, "attack": {"poison_fraction": 0.1},
        "scoring": {"inputs": 100}, "controls": {"population": 1},
        "defenders": {"fine-pruning": {"epochs": 1}, "neural-cleanse": {"epochs": 1, "samples": 64}},
    }, where=str(tmp_path / "tv.toml"))
    referee = Referee(sc)
    for defender in ("fine-pruning", "neural-cleanse"):
        rec = referee.play("badnet", defender, seed=0).record
        assert rec.status == "ok" and "forfeit" not in rec.metrics, (defender, rec.reason)
