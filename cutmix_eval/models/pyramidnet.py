"""PyramidNet (Han et al. 2017) for CIFAR, parameter names as in the official CutMix
repository, so its checkpoints load after stripping ``module.``.

Widths grow by ``alpha / (3n)`` per block from 16 and are rounded with Python's
``round`` after accumulating in floating point, exactly as the official code does,
so every (depth, alpha) builds the same tensor shapes. Blocks are pre-activation
(no ReLU after the addition); downsampling shortcuts are parameter-free 2x2 average
pooling, and extra channels of the shortcut are zero-padded (the official code does
this with a CUDA tensor, which is why it cannot run on CPU; this one can). The head
is ``bn_final -> ReLU -> global average pooling -> fc``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cutmix_eval.errors import CheckpointError
from cutmix_eval.models.cifar_resnet import blocks_per_stage, init_like_official
from cutmix_eval.models.classifier import GAPHeadMixin
from cutmix_eval.models.registry import count_blocks, format_arch, register_model


def _add_padded_shortcut(out: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
    """``out + shortcut`` with the shortcut's missing channels taken as zeros."""
    extra = out.shape[1] - shortcut.shape[1]
    if extra:
        shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, extra))
    return out + shortcut


torch.fx.wrap("_add_padded_shortcut")  # one opaque call in torch.fx traces (it branches on shapes)


class PyramidBasicBlock(nn.Module):
    outchannel_ratio = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.conv1(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.bn3(out)
        return _add_padded_shortcut(out, x if self.downsample is None else self.downsample(x))


class PyramidBottleneck(nn.Module):
    outchannel_ratio = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.outchannel_ratio, 1, bias=False)
        self.bn4 = nn.BatchNorm2d(planes * self.outchannel_ratio)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.conv1(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        out = self.bn4(out)
        return _add_padded_shortcut(out, x if self.downsample is None else self.downsample(x))


def pyramid_widths(depth: int, alpha: float, bottleneck: bool) -> list[list[int]]:
    """Planes of every block, per stage, as the official constructor computes them."""
    n = blocks_per_stage(depth, bottleneck)
    addrate = alpha / (3 * n * 1.0)
    featuremap_dim = 16
    stages = []
    for _ in range(3):
        planes = []
        for _ in range(n):
            featuremap_dim = featuremap_dim + addrate
            planes.append(int(round(featuremap_dim)))
        stages.append(planes)
    return stages


class PyramidNet(GAPHeadMixin, nn.Module):
    def __init__(self, depth: int = 200, alpha: float = 240, num_classes: int = 100, bottleneck: bool = True):
        super().__init__()
        block = PyramidBottleneck if bottleneck else PyramidBasicBlock
        ratio = block.outchannel_ratio
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        inplanes = 16
        for stage, planes in enumerate(pyramid_widths(depth, alpha, bottleneck), start=1):
            stride = 1 if stage == 1 else 2
            downsample = nn.AvgPool2d(2, stride=2, ceil_mode=True) if stride != 1 else None
            blocks = []
            for i, width in enumerate(planes):
                blocks.append(block(inplanes, width, stride if i == 0 else 1, downsample if i == 0 else None))
                inplanes = width * ratio
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.bn_final = nn.BatchNorm2d(inplanes)
        self.relu_final = nn.ReLU(inplace=True)
        self.fc = nn.Linear(inplanes, num_classes)
        init_like_official(self)

    def forward_features(self, x):
        x = self.bn1(self.conv1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.relu_final(self.bn_final(x))


def _infer_pyramidnet(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Depth, alpha and block type of a PyramidNet state dict, from its tensor shapes."""
    bottleneck = "layer1.0.conv3.weight" in state
    n = count_blocks(state, "layer1")
    depth = n * (9 if bottleneck else 6) + 2
    widths = [[state[f"layer{s}.{b}.conv1.weight"].shape[0] for b in range(n)] for s in (1, 2, 3)]
    # alpha enters the network only through the rounded widths; any alpha that reproduces
    # them builds the same network. Prefer whole numbers, then the coarsest decimal.
    base = widths[-1][-1] - 16
    for step in (1.0, 0.5, 0.1, 0.01):
        for k in range(int(2 / step) + 1):
            for alpha in (base + k * step, base - k * step):
                if alpha > 0 and pyramid_widths(depth, alpha, bottleneck) == widths:
                    return {"depth": depth, "alpha": float(alpha), "bottleneck": bottleneck}
    raise CheckpointError("the PyramidNet widths in this checkpoint match no alpha; pass "
                          "--arch pyramidnet:depth=D,alpha=A,bottleneck=true|false")


def detect_pyramidnet(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str | None:
    """A PyramidNet state dict has ``bn_final`` (the pre-pooling BN) and per-block ``bn1``."""
    if "bn_final.weight" in state and "layer1.0.bn1.weight" in state:
        return format_arch("pyramidnet", _infer_pyramidnet(state))
    return None


@register_model("pyramidnet", description="PyramidNet for CIFAR: depth, alpha (widening), bottleneck",
                depth=200, alpha=240, bottleneck=True, detect=detect_pyramidnet)
def pyramidnet(num_classes: int, depth: int, alpha: float, bottleneck: bool) -> PyramidNet:
    return PyramidNet(depth, alpha, num_classes, bottleneck)


register_model("pyramidnet200", description="PyramidNet-200, alpha 240, bottleneck (the paper's CIFAR model, 26.8M params)",
               depth=200, alpha=240, bottleneck=True)(pyramidnet)
register_model("pyramidnet110", description="PyramidNet-110, alpha 64, basic blocks",
               depth=110, alpha=64, bottleneck=False)(pyramidnet)
