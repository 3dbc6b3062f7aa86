"""Classifiers the arena trains, described by plain data so no code is pickled.

Every model takes images in [0, 1] pixel space and normalizes inside
(triggers are stamped in pixel space, as TrojanZoo does). Every model exposes

- ``features(x)``: the penultimate representation (for NSR, latent attacks,
  activation-based defenses);
- ``conv_features(x)``, ``pool_features(fmap)``, ``classify(feats)`` and
  ``head``: the same forward pass in three steps (last channel map, penultimate
  vector, logits), for the layer-wise agents (ABS, Fine-Pruning);
- ``feature_mask``: a per-channel buffer on the last convolutional feature
  map, all ones by default; Fine-Pruning zeroes entries to prune channels, and
  since it is a buffer it travels in the state dict;
- ``spec``: an ``ArchSpec`` from which ``build_model`` rebuilds it.

A trojan whose architecture differs from the benign one (e.g. TrojanNet)
ships its own ``ArchSpec`` with a different ``arch`` name. Standard
torchvision classifiers (``torchvision:resnet18`` ...) are split into the
same contract by ``arena.api.tv_models``.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
import torch.nn.functional as F

from arena.api.exported import EXPORTED
from arena.api.generic import with_contract
from arena.api.pooling import max_pool2
from arena.api.tv_models import offered, torchvision_parts


@dataclass(frozen=True)
class ArchSpec:
    arch: str
    in_channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # JSON-able settings of architectures that need more than the above, e.g. a
    # wrapper's inner network: {"base": <ArchSpec dict>, "hidden": 8}.
    options: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "ArchSpec":
        return ArchSpec(
            arch=d["arch"], in_channels=int(d["in_channels"]), image_size=int(d["image_size"]),
            num_classes=int(d["num_classes"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
            options=dict(d.get("options", {})),
        )


class ArenaModel(nn.Module):
    """Shared plumbing: normalization, channel mask, features/logits split."""

    def __init__(self, spec: ArchSpec, mask_channels: int) -> None:
        super().__init__()
        self.spec = spec
        c = spec.in_channels
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, c, 1, 1))
        self.register_buffer("feature_mask", torch.ones(mask_channels))

    def conv_features(self, x: torch.Tensor) -> torch.Tensor:
        """Last convolutional feature map, after the channel mask."""
        fmap = self._conv((x - self.mean) / self.std)
        return fmap * self.feature_mask.view(1, -1, 1, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._pool(self.conv_features(x))

    def pool_features(self, fmap: torch.Tensor) -> torch.Tensor:
        """From a ``conv_features`` map to the penultimate vector (ABS stimulates the map and reads on)."""
        return self._pool(fmap)

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))

    def _conv(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _pool(self, fmap: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class SmallCNN(ArenaModel):
    """Two conv blocks (16 and 32 channels) and a dense layer of 128 (~0.2M parameters on 28x28).

    Sized for a 2-core CPU: a Fashion-MNIST epoch takes seconds and a short
    training reaches a useful test accuracy (the figures are in
    docs/measurements.md; benchmarks/bench_match.py re-measures them).
    """

    def __init__(self, spec: ArchSpec, width: int = 16, hidden: int = 128) -> None:
        super().__init__(spec, mask_channels=2 * width)
        self.conv1 = nn.Conv2d(spec.in_channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        side = spec.image_size // 4
        self.fc = nn.Linear(2 * width * side * side, hidden)
        self.head = nn.Linear(hidden, spec.num_classes)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        # Pool, then ReLU: the same function (ReLU is monotone, so it commutes with max), with the
        # ReLU on a quarter of the elements, so inference is faster on the CPU (docs/measurements.md).
        # max_pool2 is F.max_pool2d(x, 2) bit for bit, faster on the CPU (arena.api.pooling).
        x = F.relu(max_pool2(self.conv1(x)))
        return F.relu(max_pool2(self.conv2(x)))

    def _pool(self, fmap: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(fmap.flatten(1)))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.short(x))


class ResNet18(ArenaModel):
    """ResNet-18 for 32x32 inputs: 3x3 stem, no max-pool (the CIFAR variant)."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__(spec, mask_channels=512)
        self.stem = nn.Sequential(
            nn.Conv2d(spec.in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()
        )
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [_Block(cin, cout, stride), _Block(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(512, spec.num_classes)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))

    def _pool(self, fmap: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(fmap, 1).flatten(1)


class SmallResNet(ArenaModel):
    """A ResNet-8-style network for a CPU: a 3x3 stem and two residual blocks, then a global average pool.

    The parts of ``ResNet18`` (BatchNorm, shortcut blocks, ``feature_mask`` on the
    last block's channels, average-pooled features into ``head``) at a 2-core
    CPU's size, so agents that find their way around a ResNet find it here.
    Stem of 16 channels at full resolution, then blocks of 32 and 64 channels
    at stride 2 (32x32 -> 16 -> 8): ~73k parameters, ~8M multiply-adds per
    32x32 image (ResNet-18: 11M and 0.56G). A full-resolution block before
    them made training much slower for no gain in accuracy within cifar10-cnn's
    epoch budget (docs/measurements.md), hence none.
    """

    def __init__(self, spec: ArchSpec, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__(spec, mask_channels=widths[-1])
        self.stem = nn.Sequential(
            nn.Conv2d(spec.in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        self.layers = nn.Sequential(_Block(widths[0], widths[1], 2), _Block(widths[1], widths[2], 2))
        self.head = nn.Linear(widths[-1], spec.num_classes)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))

    def _pool(self, fmap: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(fmap, 1).flatten(1)


class TorchvisionModel(ArenaModel):
    """A torchvision classifier (``torchvision:NAME``) in the arena's contract: ``arena.api.tv_models``
    splits it into backbone (to the last channel map), pool (to the penultimate vector) and head."""

    def __init__(self, spec: ArchSpec) -> None:
        backbone, pool, head, channels = torchvision_parts(spec)
        super().__init__(spec, mask_channels=channels)
        self.backbone, self.pool, self.head = backbone, pool, head

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def _pool(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.pool(fmap)


_BUILDERS = {"small-cnn": SmallCNN, "small-resnet": SmallResNet, "resnet18": ResNet18,
             **{name: TorchvisionModel for name in offered()}}


def register_architecture(name: str, builder) -> None:
    """Let a plugin add an architecture (e.g. a trojan with an extra module) at run time."""
    _BUILDERS[name] = builder


def known_architectures() -> list[str]:
    """Names ``build_model`` can build now (built-ins and run-time registrations)."""
    return sorted(_BUILDERS)


def build_model(spec: ArchSpec) -> nn.Module:
    """A fresh model of ``spec``'s architecture. Installed plugins' architectures (the
    ``arena.architectures`` entry points) are found by ``arena.plugins.build_architecture``."""
    if spec.arch.startswith("torchvision:") and spec.arch not in _BUILDERS:
        return TorchvisionModel(spec)  # raises, saying which names are offered and why not this one
    if spec.arch == EXPORTED:  # the graph is in the model's state (the file's bytes), not behind a name
        raise ValueError("an exported program is rebuilt from its bytes, not its name: "
                         "arena.plugins.rebuild_model(arch, state) or arena.api.exported.exported_model")
    if spec.arch not in _BUILDERS:
        raise ValueError(f"unknown architecture '{spec.arch}'; known: {', '.join(known_architectures())} "
                         "(plugins add architectures through the 'arena.architectures' entry-point group)")
    # An architecture of one's own that does not expose the contract is split by its graph (arena.api.generic).
    return with_contract(_BUILDERS[spec.arch](spec), spec)


def clone(model: nn.Module) -> nn.Module:
    """An independent copy an agent may change freely."""
    return copy.deepcopy(model)
