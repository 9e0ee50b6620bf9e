"""Wide ResNets (Zagoruyko & Komodakis 2016) for CIFAR, with the parameter names of
xternalz/WideResNet-pytorch, which RobustBench's model zoo (``architectures/wide_resnet.py``)
and the adversarial-training repositories it collects share, so their checkpoints load as
they are.

``wideresnet`` with ``depth`` = 6n + 4 and ``widen_factor`` k: a 3x3 stem of 16 channels
(``conv1``), three stages ``block1``..``block3`` of n pre-activation blocks at 16k/32k/64k
channels (``blockS.layer.I.bn1/conv1/bn2/conv2``, a 1x1 ``convShortcut`` where a block changes
width), a final ``bn1`` + ReLU, global average pooling and ``fc``. As in the original, a block
that changes width feeds its pre-activated input to both paths, and a block that keeps it adds
its raw input.

Detected from a state dict: depth, widen factor (WRN-16-8, 28-10, 34-10, 40-2...), class count,
and two RobustBench variants: ``sub_block1=true`` (a second first-stage block stack that
RobustBench's ``WideResNet(sub_block1=True)`` holds weights for but never runs, kept so such
files load) and ``fc_bias=false`` (``bias_last=False``). ``dropout`` (the original's
``dropRate``, between the two convolutions) has no weights and cannot be detected; it only acts
in training mode, so the default 0 gives the same evaluation. The pooling is the global mean,
which equals the original ``F.avg_pool2d(out, 8)`` at 32 px and keeps working at other sizes.

Aliases: ``wrn16_8``, ``wrn28_10``, ``wrn34_10``, ``wrn40_2``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cutmix_eval.errors import UserError
from cutmix_eval.models.cifar_resnet import init_like_official
from cutmix_eval.models.classifier import GAPHeadMixin
from cutmix_eval.models.registry import count_blocks, format_arch, register_model

NORMALIZATION = (
    "RobustBench's model zoo feeds its Wide ResNets [0, 1] pixels (mean 0, std 1); those that normalize "
    "do it inside the model (buffers mu/sigma, used when a file carries them); xternalz/WideResNet-pytorch "
    "normalizes in its data loader with (125.3, 123.0, 113.9)/255 / (63.0, 62.1, 66.7)/255")


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


class _WideBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = _conv3x3(in_planes, out_planes, stride)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = _conv3x3(out_planes, out_planes)
        self.dropout = dropout
        self.same_width = in_planes == out_planes
        if not self.same_width:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x):
        activated = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(activated)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        return out + (x if self.same_width else self.convShortcut(activated))


class _Stage(nn.Module):
    """The original's ``NetworkBlock``: its blocks under ``layer``."""

    def __init__(self, blocks: int, in_planes: int, out_planes: int, stride: int, dropout: float):
        super().__init__()
        self.layer = nn.Sequential(*[_WideBlock(in_planes if i == 0 else out_planes, out_planes,
                                                stride if i == 0 else 1, dropout) for i in range(blocks)])

    def forward(self, x):
        return self.layer(x)


def blocks_per_stage(depth: int) -> int:
    if depth < 10 or (depth - 4) % 6:
        raise UserError(f"Wide ResNet depth must be 6n + 4 (16, 22, 28, 34, 40...), not {depth}")
    return (depth - 4) // 6


class WideResNet(GAPHeadMixin, nn.Module):
    def __init__(self, depth: int = 28, widen_factor: int = 10, num_classes: int = 10, *, dropout: float = 0.0,
                 sub_block1: bool = False, fc_bias: bool = True):
        super().__init__()
        n = blocks_per_stage(depth)
        if widen_factor < 1:
            raise UserError(f"Wide ResNet widen_factor must be a positive integer, not {widen_factor}")
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = _conv3x3(3, widths[0])
        self.block1 = _Stage(n, widths[0], widths[1], 1, dropout)
        if sub_block1:  # RobustBench: weights in the file, unused by the forward pass
            self.sub_block1 = _Stage(n, widths[0], widths[1], 1, dropout)
        self.block2 = _Stage(n, widths[1], widths[2], 2, dropout)
        self.block3 = _Stage(n, widths[2], widths[3], 2, dropout)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes, bias=fc_bias)
        init_like_official(self)  # as the original: conv ~ N(0, 2 / (k * k * out)), BN 1 / 0
        if fc_bias:
            nn.init.zeros_(self.fc.bias)

    def forward_features(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return F.relu(self.bn1(out))


_KEY = re.compile(r"^(conv1\.|bn1\.|fc\.|(block[123]|sub_block1)\.layer\.\d+\.(bn1|conv1|bn2|conv2|convShortcut)\.)")


def depth_and_width(state: Mapping[str, torch.Tensor], stage: str) -> tuple[int, int] | None:
    """``(depth 6n + 4, widen factor)`` of a CIFAR Wide ResNet state dict whose three stages are
    ``stage.format(1..3)`` (``"block{}.layer"``, ``"layer{}"``): n blocks in each, 16 k channels
    in the first and 64 k in the last; None when the shapes are not a Wide ResNet's."""
    widen, rest = divmod(state[f"{stage.format(1)}.0.conv1.weight"].shape[0], 16)
    n = count_blocks(state, stage.format(1))
    if rest or widen < 1 or any(count_blocks(state, stage.format(s)) != n for s in (2, 3)) \
            or state[f"{stage.format(3)}.0.conv1.weight"].shape[0] != 64 * widen:
        return None
    return 6 * n + 4, widen


def detect_wideresnet(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str | None:
    """A Wide ResNet of xternalz's/RobustBench's layout: a 16-channel 3x3 stem, stages
    ``block1``..``block3`` of ``layer.I`` blocks, a final ``bn1`` and ``fc``, and nothing else."""
    conv1, first = state.get("conv1.weight"), state.get("block1.layer.0.conv1.weight")
    if conv1 is None or first is None or tuple(conv1.shape) != (16, 3, 3, 3) or "fc.weight" not in state \
            or "bn1.weight" not in state or "block3.layer.0.conv1.weight" not in state \
            or not all(_KEY.match(k) for k in state):
        return None
    shape = depth_and_width(state, "block{}.layer")
    if shape is None:
        return None
    return format_arch("wideresnet", {"depth": shape[0], "widen_factor": shape[1],
                                      "sub_block1": "sub_block1.layer.0.conv1.weight" in state,
                                      "fc_bias": "fc.bias" in state})


@register_model("wideresnet", description="Wide ResNet for CIFAR (xternalz / RobustBench names): depth 6n+4, "
                "widen_factor, dropout", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), normalization=NORMALIZATION,
                detect=detect_wideresnet, depth=28, widen_factor=10, dropout=0.0, sub_block1=False, fc_bias=True)
def wideresnet(num_classes: int, depth: int, widen_factor: int, dropout: float, sub_block1: bool,
               fc_bias: bool) -> WideResNet:
    return WideResNet(depth, widen_factor, num_classes, dropout=dropout, sub_block1=sub_block1, fc_bias=fc_bias)


for _depth, _widen in ((16, 8), (28, 10), (34, 10), (40, 2)):
    register_model(f"wrn{_depth}_{_widen}", description=f"WRN-{_depth}-{_widen} for CIFAR",
                   mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), normalization=NORMALIZATION, depth=_depth,
                   widen_factor=_widen, dropout=0.0, sub_block1=False, fc_bias=True)(wideresnet)
