"""AugMix's CIFAR ResNeXt-29 loads with no flags and reproduces the original's logits.

The reference network below is written from the structure of google-research/augmix
``third_party/ResNeXt_DenseNet/models/resnext.py`` (``CifarResNeXt`` with
``ResNeXtBottleneck``; module tree, key names, forward pass), independently of
:mod:`cutmix_eval.models.resnext`.
"""

import math

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cutmix_eval.models import create_model
from cutmix_eval.models.checkpoint import INFERRED, infer_arch, load_checkpoint
from cutmix_eval.models.resnext import detect_resnext_augmix
from conftest import randomized_reference

AUGMIX_MEAN, AUGMIX_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)



def normalized(x, mean, std):
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


class _RefBottleneck(nn.Module):
    def __init__(self, inplanes, planes, cardinality, base_width, stride=1, downsample=None):
        super().__init__()
        d = int(math.floor(planes * (base_width / 64.0))) * cardinality
        self.conv_reduce = nn.Conv2d(inplanes, d, 1, bias=False)
        self.bn_reduce = nn.BatchNorm2d(d)
        self.conv_conv = nn.Conv2d(d, d, 3, stride, 1, groups=cardinality, bias=False)
        self.bn = nn.BatchNorm2d(d)
        self.conv_expand = nn.Conv2d(d, planes * 4, 1, bias=False)
        self.bn_expand = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        y = F.relu(self.bn_reduce(self.conv_reduce(x)), inplace=True)
        y = F.relu(self.bn(self.conv_conv(y)), inplace=True)
        y = self.bn_expand(self.conv_expand(y))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(residual + y, inplace=True)


class RefResNeXt(nn.Module):
    """``CifarResNeXt(ResNeXtBottleneck, depth, cardinality, base_width, num_classes)``."""

    def __init__(self, depth, cardinality, base_width, num_classes):
        super().__init__()
        n = (depth - 2) // 9
        self.conv_1_3x3 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn_1 = nn.BatchNorm2d(64)
        inplanes = 64
        for s, (planes, stride) in enumerate([(64, 1), (128, 2), (256, 2)], start=1):
            blocks = []
            for b in range(n):
                down = None
                if b == 0 and (stride != 1 or inplanes != planes * 4):
                    down = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                                         nn.BatchNorm2d(planes * 4))
                blocks.append(_RefBottleneck(inplanes, planes, cardinality, base_width, stride if b == 0 else 1,
                                             down))
                inplanes = planes * 4
            setattr(self, f"stage_{s}", nn.Sequential(*blocks))
        self.avgpool = nn.AvgPool2d(8)
        self.classifier = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = F.relu(self.bn_1(self.conv_1_3x3(x)), inplace=True)
        x = self.stage_3(self.stage_2(self.stage_1(x)))
        return self.classifier(self.avgpool(x).view(x.size(0), -1))


def _save(ref, path, wrap):
    state = ref.state_dict()
    if wrap == "raw":
        torch.save(state, path)
    else:  # as AugMix's cifar.py saves its DataParallel model
        torch.save({"epoch": 199, "dataset": "cifar100", "model": "resnext", "best_acc": 0.8,
                    "state_dict": {"module." + k: v for k, v in state.items()},
                    "optimizer": torch.optim.SGD(ref.parameters(), lr=0.1).state_dict()}, path)


@pytest.mark.parametrize("depth,classes,wrap", [(29, 10, "raw"), (29, 100, "state_dict"), (29, 10, "state_dict"),
                                                 (29, 100, "raw"), (11, 100, "raw")])
def test_augmix_resnext_loads_without_flags_and_matches_reference(tmp_path, depth, classes, wrap):
    ref = randomized_reference(RefResNeXt(depth, 4, 32, classes), seed=classes)  # AugMix's resnext29() at depth 29
    with torch.no_grad():  # keep logits O(1), where 1e-5 is a tight bound on float rounding
        ref.classifier.weight.mul_(0.02)
    _save(ref, tmp_path / "r.pth", wrap)
    model, info = load_checkpoint(tmp_path / "r.pth")
    assert info.arch == f"resnext_augmix:depth={depth},cardinality=4,base_width=32"
    assert info.num_classes == model.num_classes == classes
    assert "AugMix" in info.normalization_source and "--mean/--std" in info.normalization_source
    assert model.mean.flatten().tolist() == list(AUGMIX_MEAN) and model.std.flatten().tolist() == list(AUGMIX_STD)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, expected = model(x), ref(normalized(x, AUGMIX_MEAN, AUGMIX_STD))
        fmap = model.features(x)
    assert (ours - expected).abs().max().item() < 1e-5
    assert expected.abs().max().item() > 0.1
    assert fmap.shape == (2, 1024, 8, 8)
    assert model.get_classifier() is model.net.classifier and model.head is model.net.classifier


@pytest.mark.parametrize("depth,cardinality,base_width", [(11, 4, 32), (11, 32, 4), (20, 8, 16), (11, 3, 6)])
def test_depth_cardinality_and_width_are_read_from_shapes(depth, cardinality, base_width):
    ref = randomized_reference(RefResNeXt(depth, cardinality, base_width, 10), seed=depth)
    with torch.no_grad():
        ref.classifier.weight.mul_(0.02)
    arch = f"resnext_augmix:depth={depth},cardinality={cardinality},base_width={base_width}"
    assert infer_arch(ref.state_dict(), {}) == (arch, INFERRED)
    model = create_model(arch, 10).eval()
    model.net.load_state_dict(ref.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert (model.forward_head(model.forward_features(x)) - ref(x)).abs().max().item() < 1e-5
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
    assert pooled.shape == (2, 1024)


@pytest.mark.parametrize("make", [
    lambda: torchvision.models.resnext50_32x4d(weights=None).state_dict(),
    lambda: torchvision.models.densenet121(weights=None).state_dict(),
    lambda: timm.create_model("resnext26ts", pretrained=False).state_dict(),
    lambda: create_model("cifar_resnet20", 10).net.state_dict(),
    lambda: create_model("cifar_resnet:depth=29,bottleneck=true", 10).net.state_dict(),
    lambda: create_model("pyramidnet:depth=20,alpha=12,bottleneck=false", 10).net.state_dict(),
    lambda: create_model("densenet_augmix", 10).net.state_dict(),
    lambda: create_model("densenet_bc:depth=40", 10).net.state_dict(),
], ids=["torchvision-resnext50", "torchvision-densenet121", "timm-resnext26ts", "cifar_resnet20",
        "cifar_resnet29-bottleneck", "pyramidnet", "densenet_augmix", "densenet_bc"])
def test_detector_leaves_other_families_alone(make):
    assert detect_resnext_augmix(make(), {}) is None
