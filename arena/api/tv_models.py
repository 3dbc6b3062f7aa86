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

- ViT-B/16: patches of 4 pixels instead of 16 (2 or 1 where 4 does not divide
  the image size), as CIFAR ViT recipes do, so a 32x32 image is 64 tokens
  rather than four; the B model's depth and widths are kept (12 layers, 768
  wide). Above 64 pixels the image size must be a multiple of 16.

A first convolution is rebuilt for 1-channel inputs.

A vision transformer has no channel map: its last layer is a token sequence.
The contract's map is then the encoder's output (after its final layer norm)
with the hidden dimensions as channels and the tokens along the height,
``(B, 768, tokens + 1, 1)``, and the pool takes the class token. So
``feature_mask`` masks hidden units (in every token, hence in the class
token the head reads): Fine-Pruning prunes the last layer's hidden units
and ABS stimulates one of them, the nearest analogue of a channel; nothing
else of the agents changes.
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
    "vit_b_16": "vit",
}


class _ViTTokens(nn.Module):
    """A torchvision ``VisionTransformer`` up to its encoder's output, as a map (B, hidden, tokens, 1)."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.vit._process_input(x)  # patches to (B, T, D); checks the image size
        cls = self.vit.class_token.expand(len(tokens), -1, -1)
        out = self.vit.encoder(torch.cat([cls, tokens], dim=1))  # (B, T + 1, D), layer-normed
        return out.transpose(1, 2).unsqueeze(-1)


class _ClassToken(nn.Module):
    """The class token's hidden vector from the (B, hidden, tokens, 1) map: what ViT's head reads."""

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return fmap[:, :, 0, 0]


def _vit(spec: Any, small: bool) -> nn.Module:
    """ViT-B/16 for ``spec``: torchvision's, with 4-pixel patches on small images (module docstring)."""
    from torchvision.models import get_model
    from torchvision.models.vision_transformer import VisionTransformer

    size = spec.image_size
    if not small:
        if size % 16:
            raise ValueError(f"torchvision:vit_b_16 needs an image size that is a multiple of 16 above {SMALL} "
                             f"pixels, not {size}; resize the dataset ([dataset] size)")
        return get_model("vit_b_16", weights=None, num_classes=spec.num_classes, image_size=size)
    patch = next(p for p in (4, 2, 1) if size % p == 0)
    return VisionTransformer(image_size=size, patch_size=patch, num_layers=12, num_heads=12, hidden_dim=768,
                             mlp_dim=3072, num_classes=spec.num_classes)


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
    if family == "vit":
        proj = net.conv_proj
        net.conv_proj = nn.Conv2d(in_channels, proj.out_channels, proj.kernel_size, proj.stride)
        return _ViTTokens(net), _ClassToken(), net.heads.head
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
        raise ValueError(f"architecture '{spec.arch}' is not offered; offered: {', '.join(offered())}")
    small = spec.image_size <= SMALL
    net = _vit(spec, small) if FAMILIES[name] == "vit" else get_model(name, weights=None,
                                                                        num_classes=spec.num_classes)
    backbone, pool, head = _split(name, net, spec.in_channels, small)
    with torch.no_grad():  # the last map's channel count, for feature_mask
        backbone.eval()
        channels = int(backbone(torch.zeros(1, spec.in_channels, spec.image_size, spec.image_size)).shape[1])
        backbone.train()
    return backbone, pool, head, channels
