"""Any classifier in the arena's model contract (arena.api.generic): an architecture of one's own that
is a plain nn.Module plays with every defender, Fine-Pruning and ABS included."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from arena.api.generic import ContractError, GenericModel, with_contract
from arena.api.models import ArchSpec, build_model, register_architecture

SPEC = ArchSpec("plain-seq", 1, 28, 10, (0.5,), (0.5,))


def plain(spec: ArchSpec) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(spec.in_channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * (spec.image_size // 4) ** 2, 32), nn.ReLU(), nn.Linear(32, spec.num_classes))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        h = torch.relu(h + self.block(h))  # a skip connection inside the part before the map
        return self.fc(h.mean(dim=(2, 3)))


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        if h.mean() > 0:  # data-dependent control flow: torch.fx cannot trace it
            h = h * 2
        return self.fc(h.mean(dim=(2, 3)))


def test_a_plain_sequential_gets_the_contract_and_computes_the_same():
    net = plain(SPEC).eval()
    bare = {k: v.clone() for k, v in net.state_dict().items()}
    m = with_contract(net, SPEC).eval()
    assert isinstance(m, GenericModel) and m.feature_mask.numel() == 16
    x = torch.rand(3, 1, 28, 28)
    assert m.conv_features(x).shape == (3, 16, 7, 7) and m.features(x).shape == (3, 32)
    assert torch.equal(m(x), net(x)) and torch.equal(m.classify(m.features(x)), m(x))
    # The network's own parameter names: a state dict saved from the bare network loads, but for the mask.
    missing, unexpected = m.load_state_dict(bare, strict=False)
    assert missing == ["feature_mask"] and unexpected == []
    m.feature_mask.zero_()  # Fine-Pruning's lever silences the map
    out = m(x)
    assert torch.allclose(out[0], out[1])


def test_a_residual_network_and_an_untraceable_one():
    spec = dataclasses.replace(SPEC, arch="residual")
    m = with_contract(Residual().eval(), spec)
    x = torch.rand(2, 1, 28, 28)
    assert m.conv_features(x).shape == (2, 8, 28, 28) and m(x).shape == (2, 10)
    with pytest.raises(ContractError, match="torch.fx cannot trace it.*subclass arena.api.ArenaModel"):
        GenericModel(Branchy(), dataclasses.replace(SPEC, arch="branchy"))
    # Built anyway: outputs work, agents that read outputs only play, and one that needs the layers
    # learns why (hasattr reads the contract as absent, as Fine-Pruning's check does).
    net = Branchy().eval()
    opaque = with_contract(net, dataclasses.replace(SPEC, arch="branchy"))
    assert torch.equal(opaque(x), net(x)) and not hasattr(opaque, "conv_features")
    with pytest.raises(ContractError, match="needs the model's layers .conv_features.*cannot trace"):
        opaque.conv_features(x)
    assert set(opaque.state_dict()) == set(net.state_dict())


def test_a_registered_plain_architecture_is_built_with_the_contract():
    register_architecture("plain-seq", plain)
    m = build_model(SPEC)
    again = build_model(SPEC)
    again.load_state_dict(m.state_dict())  # spec + weights rebuild it, as the wire does
    m.eval(), again.eval()
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(m(x), again(x))


@pytest.mark.slow
def test_fine_pruning_and_abs_play_on_a_plain_architecture(tiny):
    """The failure a user met: ABS on an nn.Sequential ('Sequential' object has no attribute
    'conv_features'). In-process, since the architecture is registered in this process only."""
    from conftest import have_fashion_mnist
    from arena.engine.referee import Referee

    if not have_fashion_mnist():
        pytest.skip("Fashion-MNIST not installed")
    register_architecture("plain-seq", plain)
    sc = dataclasses.replace(tiny, name="tiny-plain", architecture="plain-seq",
                             defenders={"fine-pruning": {"epochs": 1},
                                        "abs": {"seeds_per_class": 1, "top_neurons": 1, "iterations": 5,
                                                "samples": 64}})
    referee = Referee(sc, isolation="inprocess")
    for defender in ("fine-pruning", "abs"):
        rec = referee.play("badnet", defender, seed=0).record
        assert rec.status == "ok" and "forfeit" not in rec.metrics, (defender, rec.reason)


class Shifted(nn.Module):
    """State on the top module itself: a buffer and a parameter outside any child."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.full((1, 1, 1, 1), 0.5))
        self.gain = nn.Parameter(torch.ones(1))
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv((x - self.mean) * self.gain))
        return self.fc(h.mean(dim=(2, 3)))


class ShiftedBranchy(Shifted):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) * self.gain
        if x.mean() > 0:  # untraceable: an OpaqueModel
            x = x * 2
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("net", [Shifted, ShiftedBranchy])
def test_state_on_the_top_module_follows_to_and_deepcopy(net):
    """``.to()`` (another device or dtype) reaches a buffer or parameter registered on the network's top
    module in the split parts too, not only in the wrapper (on CUDA the parts would mix devices)."""
    import copy

    torch.manual_seed(0)
    model = with_contract(net(), SPEC)
    x = torch.rand(2, 1, 28, 28)
    before = model(x)
    moved = copy.deepcopy(model).to(torch.float64)
    assert moved(x.double()).dtype == torch.float64
    assert torch.allclose(moved(x.double()).float(), before, atol=1e-5)
    with torch.no_grad():  # the wrapper's buffer is the one the parts compute with
        moved.mean.fill_(0.0)
        model.mean.fill_(0.0)
    assert torch.allclose(moved(x.double()).float(), model(x), atol=1e-5)
    assert not torch.allclose(model(x), before)
    if net is Shifted:  # another device: the parts would mix devices (the branchy one reads .item())
        meta = copy.deepcopy(model).to("meta")
        assert meta.conv_features(torch.zeros(2, 1, 28, 28, device="meta")).device.type == "meta"
        assert meta(torch.zeros(2, 1, 28, 28, device="meta")).shape == (2, 10)
