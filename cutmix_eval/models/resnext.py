"""CIFAR ResNeXt (Xie et al. 2017) with the key names of AugMix's
``third_party/ResNeXt_DenseNet/models/resnext.py`` (taken from D-X-Y/ResNeXt-DenseNet), so
AugMix's ResNeXt-29 checkpoints load after stripping ``module.``.

A 3x3 stem of 64 channels (``conv_1_3x3``, ``bn_1``, ReLU), three stages (``stage_1``...
``stage_3``, ``(depth - 2) / 9`` blocks each, 64/128/256 planes, strides 1/2/2), global
average pooling and ``classifier``. A block (type C) is conv1x1 ``conv_reduce`` to
``cardinality * floor(planes * base_width / 64)`` channels, the grouped conv3x3
``conv_conv`` (``cardinality`` groups, the stage's stride), conv1x1 ``conv_expand`` to
``4 * planes``, each followed by BatchNorm (``bn_reduce``, ``bn``, ``bn_expand``) and ReLU
(the last one after adding the shortcut, a 1x1 conv + BN ``downsample`` where the shape
changes). There is no BatchNorm after the last stage: the feature map is the last block's
output.

AugMix's ``cifar.py`` builds ``resnext29()``: depth 29, ``cardinality=4``,
``base_width=32`` (4 groups of 32 channels in the first stage, 6.9M parameters at 10
classes). Depth, cardinality, base width and class count are read from tensor shapes, so
other widths (e.g. 32 groups of 4, or the paper's 8 x 64d) load too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cutmix_eval.errors import UserError
from cutmix_eval.models.cifar_resnet import init_like_official
from cutmix_eval.models.registry import count_blocks, format_arch, register_model

_STAGE_PLANES = (64, 128, 256)


class ResNeXtBlock(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, cardinality: int, base_width: int, stride: int = 1):
        super().__init__()
        width = cardinality * int(math.floor(planes * base_width / 64))
        out = planes * self.expansion
        self.conv_reduce = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn_reduce = nn.BatchNorm2d(width)
        self.conv_conv = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=cardinality, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.conv_expand = nn.Conv2d(width, out, 1, bias=False)
        self.bn_expand = nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x):
        y = F.relu(self.bn_reduce(self.conv_reduce(x)))
        y = F.relu(self.bn(self.conv_conv(y)))
        y = self.bn_expand(self.conv_expand(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + y)


class CifarResNeXt(nn.Module):
    """ResNeXt for 32 x 32 inputs in timm's net protocol. Its head is named ``classifier``
    (the original's key), so it carries its own ``forward_head``/``get_classifier``."""

    def __init__(self, depth: int = 29, cardinality: int = 4, base_width: int = 32, num_classes: int = 10):
        super().__init__()
        if depth < 11 or (depth - 2) % 9:
            raise UserError(f"ResNeXt depth {depth} is not valid: it must be 9n + 2 (e.g. 29, 38, 47, 56, 101)")
        if cardinality < 1 or base_width < 1:
            raise UserError(f"ResNeXt cardinality and base_width must be positive, got {cardinality}, {base_width}")
        blocks = (depth - 2) // 9
        self.conv_1_3x3 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.bn_1 = nn.BatchNorm2d(64)
        inplanes = 64
        for index, planes in enumerate(_STAGE_PLANES, start=1):
            stage = []
            for b in range(blocks):
                stride = 2 if index > 1 and b == 0 else 1
                stage.append(ResNeXtBlock(inplanes, planes, cardinality, base_width, stride))
                inplanes = planes * ResNeXtBlock.expansion
            self.add_module(f"stage_{index}", nn.Sequential(*stage))
        self.classifier = nn.Linear(inplanes, num_classes)
        init_like_official(self)  # the original's initialization, the classifier He-normal with zero bias
        nn.init.kaiming_normal_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def forward_features(self, x):
        x = F.relu(self.bn_1(self.conv_1_3x3(x)))
        return self.stage_3(self.stage_2(self.stage_1(x)))

    def forward_head(self, fmap: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # the mean over h x w: the original's nn.AvgPool2d(8) on the 8 x 8 map of a 32 x 32
        # input is the same global mean, and this keeps working at other input sizes
        pooled = fmap.mean(dim=(2, 3))
        return pooled if pre_logits else self.classifier(pooled)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def detect_resnext_augmix(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str | None:
    """AugMix's ResNeXt: ``conv_1_3x3``, ``stage_1.0.conv_reduce`` ..., ``classifier``; depth from
    the blocks per stage, cardinality and base width from the first grouped convolution."""
    required = ("conv_1_3x3.weight", "stage_1.0.conv_conv.weight", "stage_3.0.conv_expand.weight",
                "classifier.weight")
    if any(k not in state for k in required) or "stage_4.0.conv_conv.weight" in state:
        return None
    grouped = state["stage_1.0.conv_conv.weight"]
    if grouped.ndim != 4 or grouped.shape[1] == 0 or grouped.shape[0] % grouped.shape[1]:
        return None
    cardinality = int(grouped.shape[0] // grouped.shape[1])
    # planes are 64 in the first stage, so its per-group width floor(64 * base_width / 64) is base_width
    base_width = int(grouped.shape[1])
    depth = count_blocks(state, "stage_1") * 9 + 2
    return format_arch("resnext_augmix", {"depth": depth, "cardinality": cardinality, "base_width": base_width})


@register_model("resnext_augmix", description="CIFAR ResNeXt with AugMix's key layout (stage_1.N.conv_reduce): "
                "depth, cardinality, base_width (AugMix trains ResNeXt-29, cardinality 4, base width 32)",
                mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), detect=detect_resnext_augmix,
                normalization="AugMix's CIFAR code (google-research/augmix cifar.py) normalizes with "
                "Normalize([0.5] * 3, [0.5] * 3)",
                depth=29, cardinality=4, base_width=32)
def resnext_augmix(num_classes: int, depth: int, cardinality: int, base_width: int) -> CifarResNeXt:
    return CifarResNeXt(depth, cardinality, base_width, num_classes)
