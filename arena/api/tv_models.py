"""Standard architectures by name: ``architecture = "torchvision:resnet18"``.

A torchvision classifier, built with random weights (``weights=None``: nothing
is downloaded) and split into the arena's model contract
(``arena.api.models.ArenaModel``): normalization inside, ``conv_features``
(the last convolutional map, under ``feature_mask``), ``features`` (the
penultimate vector) and ``head`` (the last linear layer). Every attacker and
defender that works on the arena's own models then works on these, Fine-Pruning
and ABS (channel maps) included.

Small inputs. The ImageNet stems shrink a 224x224 input 32-fold; on 32x32
images that leaves a 1x1 map before the last stage. For images of 64 pixels
or fewer the usual CIFAR recipes are applied:

- ResNet: 3x3 stride-1 first convolution, no max-pool (as in the paper's
  CIFAR-10 ResNet-18 and TrojanZoo's);
- DenseNet: 3x3 stride-1 ``conv0``, no ``pool0``;
- MobileNet-V2/V3 and EfficientNet: the stem convolution at stride 1;
- VGG: the 7x7 adaptive pool and the 4096-wide classifier replaced by a
  global average pool and one linear layer (512 -> classes), as CIFAR VGGs do.

A first convolution is rebuilt for 1-channel inputs. Vision transformers
(ViT) are not offered yet: their last layer is a token sequence, not a
channel map, so the channel-based defenders (Fine-Pruning, ABS) have nothing
to stand on; say ``torchvision:vit_b_16`` and the error says so.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from arena.config.scenario import TORCHVISION_NAMES

PREFIX = "torchvision:"
SMALL = 64  # pixels: at or below, the stems are adapted (module docstring)

# Family of each offered name: how it is split and how its stem is adapted.
FAMILIES: dict[str, str] = {
    **{n: "resnet" for n in ("resnet18", "resnet34", "resnet50")},
    **{n: "vgg" for n in ("vgg11_bn", "vgg13_bn", "vgg16_bn")},
    "densenet121": "densenet",
    "mobilenet_v2": "mobilenet_v2",
    "mobilenet_v3_small": "mobilenet_v3",
    "mobilenet_v3_large": "mobilenet_v3",
    "efficientnet_b0": "efficientnet",
}


def offered() -> list[str]:
    return [PREFIX + n for n in TORCHVISION_NAMES]


def _conv_like(conv: nn.Conv2d, in_channels: int, kernel: int | None = None, stride: int | None = None) -> nn.Conv2d:
    k = kernel or conv.kernel_size[0]
    return nn.Conv2d(in_channels, conv.out_channels, k, stride or conv.stride[0], padding=k // 2,
                     bias=conv.bias is not None)


def _split(name: str, net: nn.Module, in_channels: int, small: bool) -> tuple[nn.Module, nn.Module, nn.Linear]:
    """(backbone to the last channel map, map -> penultimate vector, last linear layer)."""
    family = FAMILIES[name]
    if family == "resnet":
        net.conv1 = _conv_like(net.conv1, in_channels, 3, 1) if small else _conv_like(net.conv1, in_channels)
        stem = [net.conv1, net.bn1, net.relu] + ([] if small else [net.maxpool])
        backbone = nn.Sequential(*stem, net.layer1, net.layer2, net.layer3, net.layer4)
        return backbone, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), net.fc
    if family == "vgg":
        net.features[0] = _conv_like(net.features[0], in_channels)
        if small:
            head = nn.Linear(512, net.classifier[-1].out_features)
            return net.features, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), head
        return net.features, nn.Sequential(net.avgpool, nn.Flatten(), *net.classifier[:-1]), net.classifier[-1]
    if family == "densenet":
        f = net.features
        f.conv0 = _conv_like(f.conv0, in_channels, 3, 1) if small else _conv_like(f.conv0, in_channels)
        if small:
            f.pool0 = nn.Identity()
        backbone = nn.Sequential(f, nn.ReLU(inplace=False))  # torchvision applies the ReLU in forward()
        return backbone, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), net.classifier
    # MobileNet-V2/V3, EfficientNet: features[0] is the stem (Conv2dNormActivation), features[0][0] its conv.
    stem = net.features[0][0]
    net.features[0][0] = _conv_like(stem, in_channels, stride=1 if small else None)
    pool: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return net.features, nn.Sequential(*pool, *net.classifier[:-1]), net.classifier[-1]


def torchvision_parts(spec: Any) -> tuple[nn.Module, nn.Module, nn.Linear, int]:
    """torchvision's ``spec.arch`` (``torchvision:NAME``) as (backbone, pool, head, channels of the
    last map), for ``arena.api.models.TorchvisionModel``."""
    from torchvision.models import get_model

    name = spec.arch[len(PREFIX):]
    if name not in FAMILIES or name not in TORCHVISION_NAMES:
        why = (" (vision transformers have no channel map for the channel-based defenders)"
               if name.startswith("vit") else "")
        raise ValueError(f"architecture '{spec.arch}' is not offered{why}; offered: {', '.join(offered())}")
    net = get_model(name, weights=None, num_classes=spec.num_classes)
    backbone, pool, head = _split(name, net, spec.in_channels, spec.image_size <= SMALL)
    with torch.no_grad():  # the last map's channel count, for feature_mask
        backbone.eval()
        channels = int(backbone(torch.zeros(1, spec.in_channels, spec.image_size, spec.image_size)).shape[1])
        backbone.train()
    return backbone, pool, head, channels
