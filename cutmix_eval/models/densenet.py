"""CIFAR DenseNets (Huang et al. 2017) in the two key layouts their public CIFAR checkpoints use.

Both layouts build the same network: a 3x3 stem of ``2 * growth`` channels, three dense
blocks of ``n`` layers joined by two transitions, a final BatchNorm + ReLU, global
average pooling and ``fc``. A dense layer is pre-activation; with ``bottleneck`` (the
"B" of DenseNet-BC) it is BN-ReLU-conv1x1 (``4 * growth`` channels) then BN-ReLU-conv3x3
(``growth`` channels), else one BN-ReLU-conv3x3; its output is concatenated to its input.
A transition is BN-ReLU-conv1x1 down to ``floor(channels * reduction)`` channels (the "C",
compression, at ``reduction=0.5``) and 2x2 average pooling. ``depth`` counts
``6n + 4`` layers with bottlenecks, ``3n + 4`` without.

``densenet_bc``
    the layout of ``DenseNet3`` in the ODIN (facebookresearch/odin ``code/densenet.py``)
    and Mahalanobis (pokaxpoka/deep_Mahalanobis_detector ``models/densenet.py``) OOD
    releases: ``conv1``, ``block1.layer.0.bn1`` ... ``trans1.conv1``, ``bn1``, ``fc``. Their
    released models are DenseNet-BC-100, growth 12. The ODIN ones (and Mahalanobis's CIFAR
    ones) are pickled whole modules: they load with ``--trust-checkpoint`` when their class
    is importable (the release's ``densenet.py`` on ``PYTHONPATH``: a pickle names its class,
    it does not carry it); their state dicts carry these keys.
``densenet_augmix``
    the layout of AugMix's ``third_party/ResNeXt_DenseNet/models/densenet.py`` (and of
    bamos/densenet.pytorch, which it derives from): ``conv1``, ``dense1.0.bn1`` ...
    ``trans1.conv1``, ``bn1``, ``fc``. AugMix's ``cifar.py`` builds ``densenet()``: depth 40,
    growth 12, no bottleneck, ``reduction=1`` (no compression).

Depth, growth rate, bottleneck, reduction and class count are read from tensor shapes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cutmix_eval.errors import CheckpointError, UserError
from cutmix_eval.models.cifar_resnet import init_like_official
from cutmix_eval.models.classifier import GAPHeadMixin
from cutmix_eval.models.registry import CIFAR_MEAN, CIFAR_STD, format_arch, register_model

#: the layouts: (block prefix, whether a block's layers sit under ``.layer``)
_LAYOUTS = {"odin": ("block", True), "augmix": ("dense", False)}


def _conv(in_ch: int, out_ch: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False)


class DenseLayer(nn.Module):
    """Pre-activation dense layer; returns its input with ``growth`` new channels appended."""

    def __init__(self, in_ch: int, growth: int, bottleneck: bool):
        super().__init__()
        self.bottleneck = bottleneck
        self.bn1 = nn.BatchNorm2d(in_ch)
        if bottleneck:
            self.conv1 = _conv(in_ch, 4 * growth, 1)
            self.bn2 = nn.BatchNorm2d(4 * growth)
            self.conv2 = _conv(4 * growth, growth, 3)
        else:
            self.conv1 = _conv(in_ch, growth, 3)

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        if self.bottleneck:
            out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], 1)


class Transition(nn.Module):
    """BN-ReLU-conv1x1, then 2x2 average pooling."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = _conv(in_ch, out_ch, 1)

    def forward(self, x):
        return F.avg_pool2d(self.conv1(F.relu(self.bn1(x))), 2)


class _WrappedBlock(nn.Module):
    """A dense block whose layers are named ``layer.0``, ``layer.1``... (the ODIN layout)."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layer = nn.Sequential(*layers)

    def forward(self, x):
        return self.layer(x)


def layers_per_block(depth: int, bottleneck: bool) -> int:
    """n for a DenseNet depth: 6n + 4 (bottleneck layers) or 3n + 4."""
    per_layer = 6 if bottleneck else 3
    if depth < per_layer + 4 or (depth - 4) % per_layer:
        raise UserError(f"DenseNet depth {depth} is not valid {'with' if bottleneck else 'without'} bottlenecks: "
                        f"it must be {per_layer}n + 4 (e.g. {per_layer * 6 + 4}, {per_layer * 12 + 4})")
    return (depth - 4) // per_layer


def dense_widths(depth: int, growth: int, bottleneck: bool, reduction: float) -> tuple[int, list[int], int]:
    """``(layers per block, [input channels of block 1, 2, 3], final channels)``, computed as
    both original constructors do (transition outputs are ``floor(channels * reduction)``)."""
    n = layers_per_block(depth, bottleneck)
    channels, inputs = 2 * growth, []
    for index in range(3):
        inputs.append(channels)
        channels += n * growth
        if index < 2:
            channels = int(math.floor(channels * reduction))
    return n, inputs, channels


class CifarDenseNet(GAPHeadMixin, nn.Module):
    """DenseNet for 32 x 32 inputs; ``layout`` picks the key names (``"odin"`` or ``"augmix"``).

    ``forward_head`` (from :class:`GAPHeadMixin`) averages the whole feature map: the originals
    call ``avg_pool2d(out, 8)`` on the 8 x 8 map a 32 x 32 input gives, which is the same
    global mean, and the mean keeps working at other input sizes."""

    def __init__(self, depth: int = 100, growth: int = 12, num_classes: int = 10, bottleneck: bool = True,
                 reduction: float = 0.5, layout: str = "odin"):
        super().__init__()
        if layout not in _LAYOUTS:
            raise UserError(f"DenseNet layout must be one of {sorted(_LAYOUTS)}, not {layout!r}")
        prefix, wrapped = _LAYOUTS[layout]
        n, inputs, final = dense_widths(depth, growth, bottleneck, reduction)
        self._blocks = [f"{prefix}{i}" for i in (1, 2, 3)]
        self.conv1 = _conv(3, 2 * growth, 3)
        for index, in_ch in enumerate(inputs):
            layers = [DenseLayer(in_ch + j * growth, growth, bottleneck) for j in range(n)]
            self.add_module(self._blocks[index], _WrappedBlock(layers) if wrapped else nn.Sequential(*layers))
            if index < 2:
                self.add_module(f"trans{index + 1}", Transition(in_ch + n * growth, inputs[index + 1]))
        self.bn1 = nn.BatchNorm2d(final)
        self.fc = nn.Linear(final, num_classes)
        init_like_official(self)  # the originals' initialization, the linear bias zeroed
        nn.init.zeros_(self.fc.bias)

    def forward_features(self, x):
        block1, block2, block3 = (getattr(self, name) for name in self._blocks)
        x = self.trans1(block1(self.conv1(x)))
        x = self.trans2(block2(x))
        return F.relu(self.bn1(block3(x)))


# --------------------------------------------------------------------------- detection

def _block_key(layout: str, block: int, layer: int) -> str:
    prefix, wrapped = _LAYOUTS[layout]
    return f"{prefix}{block}.layer.{layer}" if wrapped else f"{prefix}{block}.{layer}"


def _count_layers(state: Mapping[str, torch.Tensor], layout: str) -> int:
    n = 0
    while f"{_block_key(layout, 1, n)}.bn1.weight" in state:
        n += 1
    return n


def _infer_reduction(name: str, depth: int, growth: int, bottleneck: bool, trans: tuple[int, int],
                     first: int) -> float:
    """The transitions' ``reduction``: the simplest value whose ``floor`` reproduces both
    transitions' output widths (0.5 for DenseNet-BC, 1 for no compression)."""
    exact = trans[0] / first
    candidates = [0.5, 1.0] + [round(exact, digits) for digits in (1, 2, 3, 4, 6)] + [exact]
    for reduction in candidates:
        if 0 < reduction <= 1:
            _, inputs, _ = dense_widths(depth, growth, bottleneck, reduction)
            if (inputs[1], inputs[2]) == trans:
                return reduction
    raise CheckpointError(f"the DenseNet transition widths in this checkpoint ({trans[0]}, {trans[1]}) match no "
                          f"compression factor; pass --arch {name}:depth=D,growth=K,bottleneck=B,reduction=R")


def _detect(state: Mapping[str, torch.Tensor], layout: str, name: str) -> str | None:
    stem = state.get("conv1.weight")
    first = f"{_block_key(layout, 1, 0)}.conv1.weight"
    required = (first, f"{_block_key(layout, 3, 0)}.bn1.weight", "trans1.conv1.weight", "trans2.conv1.weight",
                "bn1.weight", "fc.weight")
    if stem is None or stem.ndim != 4 or tuple(stem.shape[1:]) != (3, 3, 3) or any(k not in state for k in required) \
            or "trans3.conv1.weight" in state:
        return None
    bottleneck = f"{_block_key(layout, 1, 0)}.conv2.weight" in state
    last = f"{_block_key(layout, 1, 0)}.conv{2 if bottleneck else 1}.weight"
    growth = int(state[last].shape[0])
    if stem.shape[0] != 2 * growth:
        return None
    n = _count_layers(state, layout)
    depth = n * (6 if bottleneck else 3) + 4
    trans_in = int(state["trans1.conv1.weight"].shape[1])
    trans = (int(state["trans1.conv1.weight"].shape[0]), int(state["trans2.conv1.weight"].shape[0]))
    reduction = _infer_reduction(name, depth, growth, bottleneck, trans, trans_in)
    return format_arch(name, {"depth": depth, "growth": growth, "bottleneck": bottleneck, "reduction": reduction})


def detect_densenet_bc(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str | None:
    """The ODIN / Mahalanobis ``DenseNet3`` layout: ``block1.layer.0.bn1`` ... ``trans1``, ``bn1``, ``fc``."""
    return _detect(state, "odin", "densenet_bc")


def detect_densenet_augmix(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str | None:
    """AugMix's (bamos's) layout: ``dense1.0.bn1`` ... ``trans1``, ``bn1``, ``fc``."""
    return _detect(state, "augmix", "densenet_augmix")


@register_model("densenet_bc", description="CIFAR DenseNet(-BC) with the ODIN/Mahalanobis key layout "
                "(block1.layer.N): depth, growth, bottleneck, reduction",
                mean=CIFAR_MEAN, std=CIFAR_STD, detect=detect_densenet_bc,
                normalization="the ODIN and Mahalanobis DenseNet code (facebookresearch/odin code/cal.py, "
                "pokaxpoka/deep_Mahalanobis_detector OOD_Generate_Mahalanobis.py) normalizes with "
                "Normalize((125.3, 123.0, 113.9)/255, (63.0, 62.1, 66.7)/255)",
                depth=100, growth=12, bottleneck=True, reduction=0.5)
def densenet_bc(num_classes: int, depth: int, growth: int, bottleneck: bool, reduction: float) -> CifarDenseNet:
    return CifarDenseNet(depth, growth, num_classes, bottleneck, reduction, layout="odin")


@register_model("densenet_augmix", description="CIFAR DenseNet with AugMix's key layout (dense1.N): depth, "
                "growth, bottleneck, reduction (AugMix trains depth 40, growth 12, no bottleneck or compression)",
                mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), detect=detect_densenet_augmix,
                normalization="AugMix's CIFAR code (google-research/augmix cifar.py) normalizes with "
                "Normalize([0.5] * 3, [0.5] * 3); bamos/densenet.pytorch, same key layout, uses mean "
                "(0.4914, 0.4822, 0.4465) and std (0.2470, 0.2435, 0.2616) instead (and its head ends "
                "in log_softmax)",
                depth=40, growth=12, bottleneck=False, reduction=1.0)
def densenet_augmix(num_classes: int, depth: int, growth: int, bottleneck: bool, reduction: float) -> CifarDenseNet:
    return CifarDenseNet(depth, growth, num_classes, bottleneck, reduction, layout="augmix")
