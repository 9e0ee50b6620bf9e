"""timm and torchvision classifiers behind the common interface.

``timm/NAME`` builds ``timm.create_model(NAME, pretrained=False, num_classes=K)``;
timm models already follow the net protocol of :mod:`cutmix_eval.models.classifier`.
Normalization and input size come from the model's timm config.

``torchvision/NAME`` builds ``torchvision.models.get_model(NAME, weights=None,
num_classes=K)`` and adapts it with :class:`TorchvisionNet`, which adopts the
model's children under their own names (so torchvision state dicts, and the
official CutMix ImageNet ResNets, load as they are). Supported: the families with
``avgpool`` + ``fc`` (ResNet, ResNeXt, Wide ResNet, RegNet, GoogLeNet, Inception)
and with ``features`` + ``classifier`` (VGG, AlexNet, DenseNet, MobileNet,
EfficientNet). Others (ViT, Swin, ConvNeXt...) are available through timm.

Weights are never downloaded: load them with ``--ckpt``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cutmix_eval.errors import UserError
from cutmix_eval.models.registry import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, count_blocks, register_external


def _timm_spec(name: str) -> ModelSpec:
    import timm

    if not timm.is_model(name):
        raise UserError(f"timm has no model {name!r}; list them with `cutmix-eval models 'timm/*'`")
    cfg = timm.get_pretrained_cfg(name)
    mean = tuple(getattr(cfg, "mean", None) or IMAGENET_MEAN)
    std = tuple(getattr(cfg, "std", None) or IMAGENET_STD)
    input_size = tuple(getattr(cfg, "input_size", None) or (3, 224, 224))

    def build(num_classes: int, **kwargs) -> nn.Module:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)

    return ModelSpec(f"timm/{name}", build, f"timm {name}", mean, std, input_size, {})


def _timm_names() -> list[str]:
    import timm

    return timm.list_models()


def detect_timm(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str | None:
    """A timm model name recorded in the file (timm's train script saves ``arch``)."""
    arch = meta.get("arch")
    if isinstance(arch, str) and "/" not in arch:
        import timm

        if timm.is_model(arch):
            return f"timm/{arch}"
    return None


class TorchvisionNet(nn.Module):
    """A torchvision classifier re-exposed with the timm net protocol.

    Its children keep their names, so ``state_dict`` keys equal torchvision's.
    The trunk is every child before the pooling layer (auxiliary heads excluded).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        children = dict(model.named_children())
        for child_name, child in children.items():
            self.add_module(child_name, child)
        self._relu_after_trunk = type(model).__name__ == "DenseNet"  # DenseNet applies it in forward
        if "fc" in children and "avgpool" in children:
            order = list(children)
            self._trunk = [n for n in order[:order.index("avgpool")] if not n.lower().startswith("aux")]
            self._head = "fc"
        elif "features" in children and "classifier" in children:
            self._trunk = ["features"]
            self._head = "classifier"
        else:
            raise UserError(f"torchvision model {type(model).__name__} has no features/pooling/classifier "
                            "split this toolkit can use; use its timm version (timm/NAME)")
        self._pool = children.get("avgpool")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for child_name in self._trunk:
            x = getattr(self, child_name)(x)
        return F.relu(x) if self._relu_after_trunk else x

    def forward_head(self, fmap: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = self._pool(fmap) if self._pool is not None else F.adaptive_avg_pool2d(fmap, 1)
        pooled = torch.flatten(pooled, 1)
        return pooled if pre_logits else self.get_classifier()(pooled)

    def get_classifier(self) -> nn.Module:
        return getattr(self, self._head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _torchvision_spec(name: str) -> ModelSpec:
    import torchvision

    if name not in _torchvision_names():
        raise UserError(f"torchvision has no classification model {name!r}; "
                        "list them with `cutmix-eval models 'torchvision/*'`")

    def build(num_classes: int, **kwargs) -> nn.Module:
        if name in ("googlenet", "inception_v3"):
            kwargs.setdefault("aux_logits", False)
            kwargs.setdefault("init_weights", True)
        return TorchvisionNet(torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs))

    size = 299 if name == "inception_v3" else 224
    return ModelSpec(f"torchvision/{name}", build, f"torchvision {name}", IMAGENET_MEAN, IMAGENET_STD,
                     (3, size, size), {})


def _torchvision_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


_TORCHVISION_RESNETS = {  # (bottleneck, layers, groups, width per group) -> torchvision name
    (False, (2, 2, 2, 2), 1, 64): "resnet18", (False, (3, 4, 6, 3), 1, 64): "resnet34",
    (True, (3, 4, 6, 3), 1, 64): "resnet50", (True, (3, 4, 23, 3), 1, 64): "resnet101",
    (True, (3, 8, 36, 3), 1, 64): "resnet152", (True, (3, 4, 6, 3), 32, 4): "resnext50_32x4d",
    (True, (3, 4, 23, 3), 32, 8): "resnext101_32x8d", (True, (3, 4, 23, 3), 64, 4): "resnext101_64x4d",
    (True, (3, 4, 6, 3), 1, 128): "wide_resnet50_2", (True, (3, 4, 23, 3), 1, 128): "wide_resnet101_2",
}


_TORCHVISION_DENSENETS = {  # (layers per dense block, growth rate) -> torchvision name
    ((6, 12, 24, 16), 32): "densenet121", ((6, 12, 32, 32), 32): "densenet169",
    ((6, 12, 48, 32), 32): "densenet201", ((6, 12, 36, 24), 48): "densenet161",
}


def _detect_torchvision_densenet(state: Mapping[str, torch.Tensor]) -> str | None:
    """A torchvision DenseNet (``features.denseblockN.denselayerM.*``), named by its layers per
    block and growth rate (the output channels of a layer's 3x3 conv)."""
    first = state.get("features.denseblock1.denselayer1.conv2.weight")
    if first is None:
        return None
    layers = tuple(count_blocks({k.replace("denselayer", "", 1): v for k, v in state.items()},
                                f"features.denseblock{i}") for i in (1, 2, 3, 4))
    name = _TORCHVISION_DENSENETS.get((layers, int(first.shape[0])))
    return f"torchvision/{name}" if name else None


def detect_torchvision(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str | None:
    """A torchvision ResNet, ResNeXt or Wide ResNet (the official CutMix ImageNet models): a 7x7
    stem and four stages, named by block type, blocks per stage, groups and width per group;
    or a torchvision DenseNet (:func:`_detect_torchvision_densenet`)."""
    if (densenet := _detect_torchvision_densenet(state)) is not None:
        return densenet
    conv1 = state.get("conv1.weight")
    if conv1 is None or tuple(conv1.shape[1:]) != (3, 7, 7) or "layer4.0.conv1.weight" not in state:
        return None
    bottleneck = "layer1.0.conv3.weight" in state
    layers = tuple(count_blocks(state, f"layer{i}") for i in (1, 2, 3, 4))
    conv2 = state["layer1.0.conv2.weight"].shape
    groups, width = (conv2[0] // conv2[1], conv2[1]) if bottleneck else (1, 64)
    name = _TORCHVISION_RESNETS.get((bottleneck, layers, groups, width))
    return f"torchvision/{name}" if name else None


register_external("timm", _timm_spec, _timm_names, detect=detect_timm, by_recorded_name=True)
register_external("torchvision", _torchvision_spec, _torchvision_names, detect=detect_torchvision)
