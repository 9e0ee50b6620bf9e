"""PuzzleMix's Wide ResNet (snu-mllab/PuzzleMix ``models/wide_resnet.py``, its ``wrn28_10`` and
``wrn28_2``), with that file's parameter names, so PuzzleMix's CIFAR checkpoints load as they are.

It is a Wide ResNet in the kuangliu naming rather than xternalz's, and it differs from
:mod:`cutmix_eval.models.wideresnet` in more than names: every convolution has a bias, a block
strides in its *second* convolution, and its 1x1 projection shortcut (``shortcut.0``, with
bias) reads the block's raw input, not the pre-activated one.

``wideresnet_puzzlemix`` with ``depth`` = 6n + 4 and ``widen_factor`` k: a 3x3 stem ``conv1``
of 16 channels, stages ``layer1``..``layer3`` of n blocks at 16k/32k/64k channels
(``layerS.I.bn1``, ``conv1``, ``bn2``, ``conv2``, ``shortcut.0``), a final ``bn1`` + ReLU,
pooling and ``linear``. The file's own comment says dropout was removed; it has none. The
original pools with ``F.avg_pool2d(out, 8)`` on the 8 x 8 map of 32 px inputs; here pooling is
the global mean, equal at 32 px. ``stem_stride`` is the stride PuzzleMix's ``main.py`` passes
to the stem: 1 for CIFAR (the default), 2 for Tiny-ImageNet; weights do not show it, so it is
never detected.

Detected from a state dict: depth, widen factor, class count.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cutmix_eval.errors import UserError
from cutmix_eval.models.classifier import GAPHeadMixin
from cutmix_eval.models.registry import format_arch, register_model
from cutmix_eval.models.wideresnet import depth_and_width

#: PuzzleMix's CIFAR-100 normalization (load_data.py and main.py), the default: its WRN-28-10
#: results are on CIFAR-100
PUZZLEMIX_CIFAR100_MEAN = tuple(x / 255 for x in (129.3, 124.1, 112.4))
PUZZLEMIX_CIFAR100_STD = tuple(x / 255 for x in (68.2, 65.4, 70.4))
NORMALIZATION = (
    "snu-mllab/PuzzleMix normalizes in its data loader (load_data.py) with the CIFAR-100 mean/std "
    "(129.3, 124.1, 112.4)/255 / (68.2, 65.4, 70.4)/255, the default here; for its CIFAR-10 files pass "
    "--mean 0.4914,0.4824,0.4467 --std 0.2471,0.2435,0.2616 ((125.3, 123.0, 113.9)/255 / (63.0, 62.1, 66.7)/255), "
    "for Tiny-ImageNet 0.5 / 0.5")


class _Block(nn.Module):
    """Pre-activation block: BN-ReLU-conv (stride 1), BN-ReLU-conv (the block's stride), plus
    the raw input, projected by a 1x1 convolution where the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=True)
        projects = stride != 1 or in_planes != planes
        self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=True)) if projects \
            else nn.Sequential()

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + self.shortcut(x)


def blocks_per_stage(depth: int) -> int:
    if depth < 10 or (depth - 4) % 6:
        raise UserError(f"PuzzleMix Wide ResNet depth must be 6n + 4 (16, 22, 28...), not {depth}")
    return (depth - 4) // 6


class PuzzleMixWideResNet(GAPHeadMixin, nn.Module):
    head_attr = "linear"

    def __init__(self, depth: int = 28, widen_factor: int = 10, num_classes: int = 100, *, stem_stride: int = 1):
        super().__init__()
        n = blocks_per_stage(depth)
        if widen_factor < 1:
            raise UserError(f"Wide ResNet widen_factor must be a positive integer, not {widen_factor}")
        if stem_stride not in (1, 2):
            raise UserError(f"stem_stride must be 1 (CIFAR) or 2 (Tiny-ImageNet), not {stem_stride}")
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=stem_stride, padding=1, bias=True)
        in_planes = widths[0]
        for stage, (planes, stride) in enumerate(zip(widths[1:], (1, 2, 2)), start=1):
            blocks = [_Block(in_planes if i == 0 else planes, planes, stride if i == 0 else 1) for i in range(n)]
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            in_planes = planes
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.linear = nn.Linear(widths[3], num_classes)

    def forward_features(self, x):
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return F.relu(self.bn1(out))


_KEY = re.compile(r"^(conv1|bn1|linear)\.|^layer[123]\.\d+\.(bn1|conv1|bn2|conv2|shortcut\.0)\.")


def detect_puzzlemix_wideresnet(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str | None:
    """PuzzleMix's Wide ResNet: a 16-channel 3x3 stem with a bias, three stages ``layer1``..``layer3``
    of blocks whose convolutions have biases, a final ``bn1`` and ``linear``, and nothing else."""
    conv1, first = state.get("conv1.weight"), state.get("layer1.0.conv1.weight")
    if conv1 is None or first is None or tuple(conv1.shape) != (16, 3, 3, 3) or "conv1.bias" not in state \
            or "layer1.0.conv1.bias" not in state or "linear.weight" not in state or "bn1.weight" not in state \
            or "layer3.0.conv1.weight" not in state or not all(_KEY.match(k) for k in state):
        return None
    shape = depth_and_width(state, "layer{}")
    if shape is None:
        return None
    return format_arch("wideresnet_puzzlemix", {"depth": shape[0], "widen_factor": shape[1]})


@register_model("wideresnet_puzzlemix",
                description="PuzzleMix's Wide ResNet (wrn28_10, wrn28_2): depth 6n+4, widen_factor, conv biases, "
                "stem_stride (2 for Tiny-ImageNet)",
                mean=PUZZLEMIX_CIFAR100_MEAN, std=PUZZLEMIX_CIFAR100_STD, normalization=NORMALIZATION,
                detect=detect_puzzlemix_wideresnet, depth=28, widen_factor=10, stem_stride=1)
def wideresnet_puzzlemix(num_classes: int, depth: int, widen_factor: int, stem_stride: int) -> PuzzleMixWideResNet:
    return PuzzleMixWideResNet(depth, widen_factor, num_classes, stem_stride=stem_stride)
