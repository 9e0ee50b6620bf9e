"""The "kuangliu" CIFAR ResNets: ResNet-18/34/50/101/152 and their pre-activation forms, with
the parameter names of kuangliu/pytorch-cifar, so its checkpoints and those of the many
repositories built on it load as they are.

Four stages at 64/128/256/512 planes (x4 for bottlenecks) after a 3x3 stem at 32 x 32
resolution, a 1x1 convolution shortcut (``shortcut.0``, plus its BN ``shortcut.1`` in
post-activation blocks) where a block changes shape, and a linear head. The original pools with
``F.avg_pool2d(out, 4)`` on the 4 x 4 map of 32 px inputs; here pooling is the global mean
over h x w, which equals it at 32 px and keeps working at other sizes.

Registered names (``NAME:key=value`` spells the keyword arguments):

``kuangliu_resnet`` (``depth``, ``head``)
    post-activation ResNet (``models/resnet.py``: BasicBlock for 18/34, Bottleneck for
    50/101/152), stem conv + ``bn1`` + ReLU. The same layout and names are used by
    facebookresearch/mixup-cifar10's ResNet-34/50/101/152, the Mahalanobis OOD detector's
    ResNet-34 (pokaxpoka/deep_Mahalanobis_detector) and RobustBench's ``ResNet``.
    Aliases ``resnet18_cifar``, ``resnet34_cifar``, ``resnet50_cifar`` (depth 101 and 152:
    ``kuangliu_resnet:depth=101``).
``kuangliu_preactresnet`` (``depth``, ``head``, ``stem_bn``, ``final_bn``, ``shortcut_input``)
    pre-activation ResNet (``models/preact_resnet.py``: PreActBlock for 18/34,
    PreActBottleneck for 50/101/152); kuangliu's has a bare conv stem and no BN after the last
    block (``stem_bn=false,final_bn=false``), as do Manifold Mixup's and PuzzleMix's
    ``preactresnet18``. Variants: ``stem_bn=true`` (stem conv + ``bn1`` + ReLU before
    pre-activation blocks: facebookresearch/mixup-cifar10's and the Mahalanobis detector's
    ``ResNet18``); ``final_bn=true`` (a last ``bn`` + ReLU before pooling: RobustBench's
    ``PreActResNet(bn_before_fc=True)``); ``shortcut_input=raw`` (the projection shortcut reads
    the block's input rather than its pre-activated input: RobustBench's ``PreActBlock``, e.g.
    Wong2020Fast; no weights show this, so it is never detected).
    Aliases ``preactresnet18``, ``preactresnet34``, ``preactresnet50`` (kuangliu's form; depth
    101 and 152: ``kuangliu_preactresnet:depth=101``).

``head`` names the classifier as the file does: ``linear`` (kuangliu), ``fc`` or
``classifier``. Detected from a state dict: block type, depth (blocks per stage), head name,
stem and final BN, class count.

The feature map (``forward_features``) is the last stage's output, after the final
activation where there is one: post-activation blocks end in ReLU, ``final_bn=true`` ends in
ReLU(bn); kuangliu's pre-activation net has no activation after its last block, and its
feature map is the un-activated residual sum that the original pools.
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
from cutmix_eval.models.registry import count_blocks, format_arch, register_model

#: kuangliu/pytorch-cifar's data loader normalization (main.py)
KUANGLIU_MEAN = (0.4914, 0.4822, 0.4465)
KUANGLIU_STD = (0.2023, 0.1994, 0.2010)
NORMALIZATION = (
    "kuangliu/pytorch-cifar normalizes in its data loader with the CIFAR-10 mean (0.4914, 0.4822, 0.4465) / "
    "std (0.2023, 0.1994, 0.2010), as facebookresearch/mixup-cifar10 and the Mahalanobis detector do; "
    "Manifold Mixup and PuzzleMix use (125.3, 123.0, 113.9)/255 / (63.0, 62.1, 66.7)/255 on CIFAR-10 and "
    "(129.3, 124.1, 112.4)/255 / (68.2, 65.4, 70.4)/255 on CIFAR-100; RobustBench models take [0, 1] "
    "pixels (mean 0, std 1) or normalize inside the model")

#: depth -> (bottleneck blocks, blocks per stage), as kuangliu's ResNet18()...ResNet152()
DEPTHS: dict[int, tuple[bool, tuple[int, int, int, int]]] = {
    18: (False, (2, 2, 2, 2)), 34: (False, (3, 4, 6, 3)), 50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)), 152: (True, (3, 8, 36, 3)),
}
HEADS = ("linear", "fc", "classifier")
SHORTCUT_INPUTS = ("activated", "raw")


def _conv(in_planes: int, out_planes: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel, stride=stride, padding=kernel // 2, bias=False)


class _PostActBlock(nn.Module):
    """conv-BN-ReLU (x2 basic, x3 bottleneck, no ReLU before the sum), ReLU after the sum."""

    def __init__(self, in_planes: int, planes: int, stride: int, bottleneck: bool):
        super().__init__()
        self.bottleneck = bottleneck
        out_planes = planes * (4 if bottleneck else 1)
        if bottleneck:
            self.conv1, self.bn1 = _conv(in_planes, planes, 1), nn.BatchNorm2d(planes)
            self.conv2, self.bn2 = _conv(planes, planes, 3, stride), nn.BatchNorm2d(planes)
            self.conv3, self.bn3 = _conv(planes, out_planes, 1), nn.BatchNorm2d(out_planes)
        else:
            self.conv1, self.bn1 = _conv(in_planes, planes, 3, stride), nn.BatchNorm2d(planes)
            self.conv2, self.bn2 = _conv(planes, planes, 3), nn.BatchNorm2d(planes)
        # an empty Sequential is the identity and has no parameters, as in the original
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(_conv(in_planes, out_planes, 1, stride), nn.BatchNorm2d(out_planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        if self.bottleneck:
            out = F.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
        else:
            out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _PreActBlock(nn.Module):
    """BN-ReLU-conv (x2 basic, x3 bottleneck); nothing after the sum. The projection shortcut
    (a bare 1x1 conv) reads the pre-activated input, or the raw input with ``raw_shortcut``."""

    def __init__(self, in_planes: int, planes: int, stride: int, bottleneck: bool, raw_shortcut: bool):
        super().__init__()
        self.bottleneck = bottleneck
        self.raw_shortcut = raw_shortcut
        out_planes = planes * (4 if bottleneck else 1)
        self.bn1 = nn.BatchNorm2d(in_planes)
        if bottleneck:
            self.conv1 = _conv(in_planes, planes, 1)
            self.bn2, self.conv2 = nn.BatchNorm2d(planes), _conv(planes, planes, 3, stride)
            self.bn3, self.conv3 = nn.BatchNorm2d(planes), _conv(planes, out_planes, 1)
        else:
            self.conv1 = _conv(in_planes, planes, 3, stride)
            self.bn2, self.conv2 = nn.BatchNorm2d(planes), _conv(planes, planes, 3)
        self.has_projection = stride != 1 or in_planes != out_planes
        if self.has_projection:
            self.shortcut = nn.Sequential(_conv(in_planes, out_planes, 1, stride))

    def forward(self, x):
        activated = F.relu(self.bn1(x))
        if self.has_projection:
            shortcut = self.shortcut(x if self.raw_shortcut else activated)
        else:
            shortcut = x
        out = self.conv1(activated)
        out = self.conv2(F.relu(self.bn2(out)))
        if self.bottleneck:
            out = self.conv3(F.relu(self.bn3(out)))
        return out + shortcut


class KuangliuResNet(GAPHeadMixin, nn.Module):
    """Both block types; ``stem_bn``/``final_bn`` add ``bn1`` after the stem conv and ``bn``
    after the last stage (each followed by ReLU); ``head`` is the classifier's attribute name."""

    def __init__(self, depth: int = 18, num_classes: int = 10, *, preact: bool = False, stem_bn: bool = True,
                 final_bn: bool = False, head: str = "linear", shortcut_input: str = "activated"):
        super().__init__()
        if depth not in DEPTHS:
            raise UserError(f"kuangliu ResNet depth must be one of {sorted(DEPTHS)}, not {depth}")
        if head not in HEADS:
            raise UserError(f"kuangliu ResNet head must be one of {', '.join(HEADS)}, not {head!r}")
        if shortcut_input not in SHORTCUT_INPUTS:
            raise UserError(f"shortcut_input must be one of {', '.join(SHORTCUT_INPUTS)}, not {shortcut_input!r}")
        if not preact and (not stem_bn or final_bn):
            raise UserError("a post-activation kuangliu ResNet always has its stem BN and no final BN "
                            "(stem_bn/final_bn are for kuangliu_preactresnet)")
        bottleneck, blocks = DEPTHS[depth]
        expansion = 4 if bottleneck else 1
        self.stem_bn, self.final_bn, self.head_attr = stem_bn, final_bn, head
        self.conv1 = _conv(3, 64, 3)
        if stem_bn:
            self.bn1 = nn.BatchNorm2d(64)
        in_planes = 64
        for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
            layers = []
            for i in range(count):
                stride = 2 if stage > 1 and i == 0 else 1
                if preact:
                    layers.append(_PreActBlock(in_planes, planes, stride, bottleneck, shortcut_input == "raw"))
                else:
                    layers.append(_PostActBlock(in_planes, planes, stride, bottleneck))
                in_planes = planes * expansion
            self.add_module(f"layer{stage}", nn.Sequential(*layers))
        if final_bn:
            self.bn = nn.BatchNorm2d(in_planes)
        self.add_module(head, nn.Linear(in_planes, num_classes))

    def forward_features(self, x):
        out = self.conv1(x)
        if self.stem_bn:
            out = F.relu(self.bn1(out))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        if self.final_bn:
            out = F.relu(self.bn(out))
        return out


# --------------------------------------------------------------------------- detection

_TOP = re.compile(r"^(conv1|bn1|bn|layer[1-4]\.\d+|linear|fc|classifier)\.")
_IN_BLOCK = re.compile(r"^layer[1-4]\.\d+\.(conv[123]|bn[123]|shortcut\.[01])\.")


def _only_known_keys(state: Mapping[str, torch.Tensor]) -> bool:
    """Every key belongs to a module this family has (another family's extra layers -- SE
    units, a DenseNet's transitions -- make the state dict not ours)."""
    return all(_TOP.match(k) and (not k.startswith("layer") or _IN_BLOCK.match(k)) for k in state)


def detect_kuangliu(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str | None:
    """A kuangliu-layout ResNet: a 3x3 stem of 64 channels, four stages ``layer1``..``layer4``
    whose first projection shortcuts are named ``shortcut`` (not ``downsample``: the CIFAR
    ResNets of the CutMix repository and torchvision's have that), and a linear head named
    ``linear``, ``fc`` or ``classifier``. A block's ``bn1`` normalizing its *input* channels
    tells pre-activation blocks."""
    conv1 = state.get("conv1.weight")
    if conv1 is None or tuple(conv1.shape) != (64, 3, 3, 3):
        return None
    if "layer4.0.conv1.weight" not in state or "layer2.0.shortcut.0.weight" not in state \
            or not _only_known_keys(state):
        return None
    heads = [h for h in HEADS if f"{h}.weight" in state]
    if len(heads) != 1:
        return None
    bottleneck = "layer1.0.conv3.weight" in state
    blocks = tuple(count_blocks(state, f"layer{i}") for i in (1, 2, 3, 4))
    depth = next((d for d, layout in DEPTHS.items() if layout == (bottleneck, blocks)), None)
    if depth is None or state[f"{heads[0]}.weight"].shape[1] != 512 * (4 if bottleneck else 1):
        return None
    first_bn, first_conv = state.get("layer2.0.bn1.weight"), state["layer2.0.conv1.weight"]
    if first_bn is None:
        return None
    preact = first_bn.shape[0] == first_conv.shape[1]  # normalizes the block input: pre-activation
    projection_bn = "layer2.0.shortcut.1.weight" in state
    stem_bn, final_bn = "bn1.weight" in state, "bn.weight" in state
    if preact == projection_bn:  # post-activation projections have a BN, pre-activation ones none
        return None
    if not preact:
        if not stem_bn or final_bn:
            return None
        return format_arch("kuangliu_resnet", {"depth": depth, "head": heads[0]})
    return format_arch("kuangliu_preactresnet", {"depth": depth, "head": heads[0], "stem_bn": stem_bn,
                                                 "final_bn": final_bn})


# --------------------------------------------------------------------------- registration

@register_model("kuangliu_resnet", description="kuangliu/pytorch-cifar ResNet-18/34/50/101/152 (post-activation)",
                mean=KUANGLIU_MEAN, std=KUANGLIU_STD, normalization=NORMALIZATION, detect=detect_kuangliu,
                depth=18, head="linear")
def kuangliu_resnet(num_classes: int, depth: int, head: str) -> KuangliuResNet:
    return KuangliuResNet(depth, num_classes, preact=False, head=head)


@register_model("kuangliu_preactresnet",
                description="kuangliu/pytorch-cifar PreActResNet-18/34/50/101/152 (and stem/final-BN variants)",
                mean=KUANGLIU_MEAN, std=KUANGLIU_STD, normalization=NORMALIZATION,
                depth=18, head="linear", stem_bn=False, final_bn=False, shortcut_input="activated")
def kuangliu_preactresnet(num_classes: int, depth: int, head: str, stem_bn: bool, final_bn: bool,
                          shortcut_input: str) -> KuangliuResNet:
    return KuangliuResNet(depth, num_classes, preact=True, stem_bn=stem_bn, final_bn=final_bn, head=head,
                          shortcut_input=shortcut_input)


for _depth in (18, 34, 50):  # the other depths: kuangliu_resnet:depth=101 and so on
    register_model(f"resnet{_depth}_cifar", description=f"kuangliu/pytorch-cifar ResNet-{_depth}",
                   mean=KUANGLIU_MEAN, std=KUANGLIU_STD, normalization=NORMALIZATION,
                   depth=_depth, head="linear")(kuangliu_resnet)
    register_model(f"preactresnet{_depth}", description=f"kuangliu/pytorch-cifar PreActResNet-{_depth}",
                   mean=KUANGLIU_MEAN, std=KUANGLIU_STD, normalization=NORMALIZATION, depth=_depth,
                   head="linear", stem_bn=False, final_bn=False, shortcut_input="activated")(kuangliu_preactresnet)
