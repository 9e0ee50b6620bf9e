"""CIFAR ResNets (He et al. 2016), parameter names as in the official CutMix repository.

``cifar_resnet`` with ``depth`` = 6n + 2 (basic blocks) or 9n + 2 (bottleneck
blocks): three stages of n blocks at 16/32/64 planes (x4 for bottlenecks), 1x1 conv
+ BN downsampling shortcuts, global average pooling, ``fc``. Official checkpoints
(``ResNet('cifar10', depth, num_classes, bottleneck)``) load after stripping the
``module.`` prefix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from cutmix_eval.errors import UserError
from cutmix_eval.models.classifier import GAPHeadMixin
from cutmix_eval.models.registry import count_blocks, format_arch, register_model


def _conv_bn(in_planes: int, out_planes: int, kernel: int, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    conv = nn.Conv2d(in_planes, out_planes, kernel, stride=stride, padding=kernel // 2, bias=False)
    return conv, nn.BatchNorm2d(out_planes)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(inplanes, planes, 3, stride)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(inplanes, planes, 1)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3, stride)
        self.conv3, self.bn3 = _conv_bn(planes, planes * self.expansion, 1)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def init_like_official(net: nn.Module) -> None:
    """The official initialization: conv weights ~ N(0, 2 / (k * k * out_channels)),
    BatchNorm weight 1 and bias 0 (linear layers keep PyTorch's default)."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def blocks_per_stage(depth: int, bottleneck: bool) -> int:
    """n for a CIFAR-style depth: 6n + 2 (basic) or 9n + 2 (bottleneck) layers."""
    per_block = 9 if bottleneck else 6
    if depth < per_block + 2 or (depth - 2) % per_block:
        kind = "bottleneck" if bottleneck else "basic"
        raise UserError(f"depth {depth} is not valid for {kind} blocks: it must be {per_block}n + 2 "
                        f"(e.g. {per_block * 2 + 2}, {per_block * 6 + 2}, {per_block * 12 + 2})")
    return (depth - 2) // per_block


class CifarResNet(GAPHeadMixin, nn.Module):
    def __init__(self, depth: int = 110, num_classes: int = 100, bottleneck: bool = False):
        super().__init__()
        n = blocks_per_stage(depth, bottleneck)
        block = Bottleneck if bottleneck else BasicBlock
        self.inplanes = 16
        self.conv1, self.bn1 = _conv_bn(3, 16, 3)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 16, n)
        self.layer2 = self._make_layer(block, 32, n, stride=2)
        self.layer3 = self._make_layer(block, 64, n, stride=2)
        self.fc = nn.Linear(64 * block.expansion, num_classes)
        init_like_official(self)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(*_conv_bn(self.inplanes, planes * block.expansion, 1, stride))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))


#: the official names: stem ``conv1``/``bn1``, blocks' ``convK``/``bnK``, ``downsample.0/1``, ``fc``
_KEY = re.compile(r"^(conv1|bn1|fc)\.|^layer[123]\.\d+\.(conv[123]|bn[123]|downsample\.[01])\.")


def detect_cifar_resnet(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str | None:
    """A CIFAR ResNet state dict as the official CutMix repository names it: a 16-channel 3x3
    stem without bias plus ``bn1``, three stages (no ``layer4``), ``downsample`` shortcuts,
    ``fc``, and nothing else (so PuzzleMix's Wide ResNet, with ``shortcut`` and conv biases,
    and PyramidNet, with ``bn_final``, are not taken for one)."""
    conv1 = state.get("conv1.weight")
    if conv1 is None or tuple(conv1.shape) != (16, 3, 3, 3) or "layer3.0.conv1.weight" not in state \
            or "bn1.weight" not in state or "fc.weight" not in state or not all(_KEY.match(k) for k in state):
        return None
    bottleneck = "layer1.0.conv3.weight" in state
    depth = count_blocks(state, "layer1") * (9 if bottleneck else 6) + 2
    return format_arch("cifar_resnet", {"depth": depth, "bottleneck": bottleneck})


@register_model("cifar_resnet", description="CIFAR ResNet, depth 6n+2 (basic) or 9n+2 (bottleneck)",
                depth=110, bottleneck=False, detect=detect_cifar_resnet)
def cifar_resnet(num_classes: int, depth: int, bottleneck: bool) -> CifarResNet:
    return CifarResNet(depth, num_classes, bottleneck)


def _register_named(depth: int, bottleneck: bool) -> None:
    name = f"cifar_resnet{depth}" + ("_bottleneck" if bottleneck else "")
    kind = "bottleneck" if bottleneck else "basic"
    register_model(name, description=f"CIFAR ResNet-{depth} ({kind} blocks)", depth=depth,
                   bottleneck=bottleneck)(cifar_resnet)


for _depth in (20, 32, 44, 56, 110):
    _register_named(_depth, False)
for _depth in (56, 110, 164):
    _register_named(_depth, True)
