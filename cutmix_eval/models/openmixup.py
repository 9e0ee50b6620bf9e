"""OpenMixup's CIFAR ResNets (``ResNet_CIFAR`` / ``ResNet_Mix_CIFAR``, from mmclassification).

OpenMixup trains most mixing methods of the CutMix family (Mixup, CutMix, ResizeMix,
PuzzleMix, AutoMix, SAMix...) and publishes CIFAR checkpoints of them. Its CIFAR ResNet is
torchvision's ResNet (block and key names ``conv1``, ``bn1``, ``layer1.0.downsample.0``...)
with a 3x3 stride-1 stem and no max-pool; its classifier is ``head.fc``. The checkpoint
reader maps ``backbone.*`` / ``head.fc.*`` to the plain net's keys
(:func:`cutmix_eval.models.checkpoint.parse_checkpoint`), so these files load unchanged,
ImageNet ones as the torchvision ResNets they are. The pooling is global average pooling,
as OpenMixup's neck.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from cutmix_eval.errors import UserError
from cutmix_eval.models.external import TorchvisionNet
from cutmix_eval.models.registry import count_blocks, format_arch, register_model

#: blocks per stage -> depth, for each block type (mmclassification's ResNet.arch_settings)
DEPTHS = {(False, (2, 2, 2, 2)): 18, (False, (3, 4, 6, 3)): 34, (True, (3, 4, 6, 3)): 50,
          (True, (3, 4, 23, 3)): 101, (True, (3, 8, 36, 3)): 152}


def detect_openmixup_resnet(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str | None:
    """A torchvision-layout ResNet (``downsample`` shortcuts, four stages) with a 3x3 stem."""
    conv1 = state.get("conv1.weight")
    if conv1 is None or tuple(conv1.shape[1:]) != (3, 3, 3) or "layer4.0.conv1.weight" not in state \
            or "layer2.0.downsample.0.weight" not in state or conv1.shape[0] != 64:
        return None
    bottleneck = "layer1.0.conv3.weight" in state
    depth = DEPTHS.get((bottleneck, tuple(count_blocks(state, f"layer{i}") for i in (1, 2, 3, 4))))
    return format_arch("openmixup_resnet", {"depth": depth}) if depth else None


@register_model("openmixup_resnet", description="OpenMixup / mmclassification CIFAR ResNet (ResNet_CIFAR): "
                "torchvision's ResNet-18/34/50/101/152 with a 3x3 stride-1 stem, no max-pool",
                mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.201),
                normalization="OpenMixup's CIFAR configs normalize in the data pipeline with mean "
                              "(0.4914, 0.4822, 0.4465) / std (0.2023, 0.1994, 0.201)",
                depth=18, detect=detect_openmixup_resnet)
def openmixup_resnet(num_classes: int, depth: int) -> TorchvisionNet:
    import torchvision

    if depth not in DEPTHS.values():
        raise UserError(f"openmixup_resnet has no depth {depth}; choose from {', '.join(map(str, DEPTHS.values()))}")
    net = torchvision.models.get_model(f"resnet{depth}", weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return TorchvisionNet(net)
