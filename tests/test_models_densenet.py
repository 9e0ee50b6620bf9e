"""CIFAR DenseNets in the ODIN/Mahalanobis and AugMix key layouts load with no flags and
reproduce the originals' logits.

The reference networks below are written from the original sources' structure (module
tree, key names, forward pass), independently of :mod:`cutmix_eval.models.densenet`:
facebookresearch/odin ``code/densenet.py`` and pokaxpoka/deep_Mahalanobis_detector
``models/densenet.py`` (``DenseNet3``, identical key layout), and google-research/augmix
``third_party/ResNeXt_DenseNet/models/densenet.py`` (``DenseNet``).
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
from cutmix_eval.models.densenet import detect_densenet_augmix, detect_densenet_bc
from conftest import randomized_reference

ODIN_MEAN, ODIN_STD = (125.3 / 255, 123.0 / 255, 113.9 / 255), (63.0 / 255, 62.1 / 255, 66.7 / 255)
AUGMIX_MEAN, AUGMIX_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


# --------------------------------------------------------------------------- references

class _RefLayer(nn.Module):
    """Both originals' dense layers: bn1-relu-conv1 (1x1 to 4k, then bn2-relu-conv2 3x3 to k
    with a bottleneck; 3x3 to k without), output concatenated to the input."""

    def __init__(self, cin, k, bottleneck):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        if bottleneck:
            self.conv1 = nn.Conv2d(cin, 4 * k, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(4 * k)
            self.conv2 = nn.Conv2d(4 * k, k, 3, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(cin, k, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv1(self.relu(self.bn1(x)))
        if hasattr(self, "conv2"):
            y = self.conv2(self.relu(self.bn2(y)))
        return torch.cat([x, y], 1)


class _RefTrans(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return F.avg_pool2d(self.conv1(self.relu(self.bn1(x))), 2)


class _RefOdinBlock(nn.Module):  # ODIN's DenseBlock: its layers under ``.layer``
    def __init__(self, layers):
        super().__init__()
        self.layer = nn.Sequential(*layers)

    def forward(self, x):
        return self.layer(x)


class RefDenseNet(nn.Module):
    """``DenseNet3(depth, num_classes, growth_rate, reduction, bottleneck)`` (ODIN layout,
    ``block1``) or AugMix's ``DenseNet(growth_rate, depth, reduction, n_classes, bottleneck)``
    (``dense1``): conv1, three blocks, trans1/trans2, bn1 + relu, avg_pool2d(8), fc."""

    def __init__(self, layout, depth, num_classes, k, reduction, bottleneck):
        super().__init__()
        n = (depth - 4) // (6 if bottleneck else 3)
        self.names = ["block1", "block2", "block3"] if layout == "odin" else ["dense1", "dense2", "dense3"]
        ch = 2 * k
        self.conv1 = nn.Conv2d(3, ch, 3, padding=1, bias=False)
        for i, name in enumerate(self.names):
            layers = [_RefLayer(ch + j * k, k, bottleneck) for j in range(n)]
            setattr(self, name, _RefOdinBlock(layers) if layout == "odin" else nn.Sequential(*layers))
            ch += n * k
            if i < 2:
                out = int(math.floor(ch * reduction))
                setattr(self, f"trans{i + 1}", _RefTrans(ch, out))
                ch = out
        self.bn1 = nn.BatchNorm2d(ch)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(ch, num_classes)
        self.in_planes = ch

    def forward(self, x):
        b1, b2, b3 = (getattr(self, n) for n in self.names)
        out = self.trans2(b2(self.trans1(b1(self.conv1(x)))))
        out = self.relu(self.bn1(b3(out)))
        out = F.avg_pool2d(out, 8).view(-1, self.in_planes)
        return self.fc(out)



def normalized(x, mean, std):
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


# --------------------------------------------------------------------------- loading

CASES = [
    # layout, depth, growth, reduction, bottleneck, expected arch, (mean, std), note
    ("odin", 100, 12, 0.5, True, "densenet_bc:depth=100,growth=12,bottleneck=true,reduction=0.5",
     (ODIN_MEAN, ODIN_STD), "ODIN"),
    ("augmix", 40, 12, 1.0, False, "densenet_augmix:depth=40,growth=12,bottleneck=false,reduction=1.0",
     (AUGMIX_MEAN, AUGMIX_STD), "AugMix"),
]


def _save(ref, path, wrap):
    state = ref.state_dict()
    if wrap == "raw":
        torch.save(state, path)
    else:  # a training script's dict of a DataParallel model, as AugMix's cifar.py saves it
        opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
        torch.save({"epoch": 99, "dataset": "cifar10", "model": "densenet", "best_acc": 0.9,
                    "state_dict": {"module." + k: v for k, v in state.items()}, "optimizer": opt.state_dict()}, path)


@pytest.mark.parametrize("wrap", ["raw", "state_dict"])
@pytest.mark.parametrize("classes", [10, 100])
@pytest.mark.parametrize("layout,depth,growth,reduction,bottleneck,arch,norm,note", CASES)
def test_loads_without_flags_and_matches_reference(tmp_path, layout, depth, growth, reduction, bottleneck, arch,
                                                   norm, note, classes, wrap):
    torch.manual_seed(classes)
    ref = randomized_reference(RefDenseNet(layout, depth, classes, growth, reduction, bottleneck), seed=depth + classes)
    _save(ref, tmp_path / "d.pth", wrap)
    model, info = load_checkpoint(tmp_path / "d.pth")
    assert info.arch == arch and info.num_classes == model.num_classes == classes
    assert note in info.normalization_source and "--mean/--std" in info.normalization_source
    torch.testing.assert_close(model.mean.flatten(), torch.tensor(norm[0]))
    torch.testing.assert_close(model.std.flatten(), torch.tensor(norm[1]))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, expected = model(x), ref(normalized(x, *norm))
        fmap = model.features(x)
    assert (ours - expected).abs().max().item() < 1e-5
    assert expected.abs().max().item() > 0.1  # not a trivial comparison of near-zero logits
    assert fmap.shape == (2, ref.in_planes, 8, 8) and model.pool(fmap).shape == (2, ref.in_planes)
    assert model.get_classifier() is model.net.fc


@pytest.mark.parametrize("layout,depth,growth,reduction,bottleneck,arch", [
    ("odin", 40, 12, 1.0, False, "densenet_bc:depth=40,growth=12,bottleneck=false,reduction=1.0"),
    ("odin", 28, 24, 0.5, True, "densenet_bc:depth=28,growth=24,bottleneck=true,reduction=0.5"),
    ("augmix", 100, 12, 0.5, True, "densenet_augmix:depth=100,growth=12,bottleneck=true,reduction=0.5"),  # bamos
    ("augmix", 22, 8, 0.7, True, "densenet_augmix:depth=22,growth=8,bottleneck=true,reduction=0.7"),
])
def test_depth_growth_and_compression_are_read_from_shapes(layout, depth, growth, reduction, bottleneck, arch):
    ref = randomized_reference(RefDenseNet(layout, depth, 7, growth, reduction, bottleneck), seed=1)
    assert infer_arch(ref.state_dict(), {}) == (arch, INFERRED)
    model = create_model(arch, 7).eval()
    model.net.load_state_dict(ref.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert (model.forward_head(model.forward_features(x)) - ref(x)).abs().max().item() < 1e-5


def test_pickled_odin_module_loads_with_trust(tmp_path):
    """The ODIN release pickles whole modules (torch.save(model)): refused unless trusted, then
    its state dict is read."""
    ref = randomized_reference(RefDenseNet("odin", 100, 10, 12, 0.5, True), seed=3)
    torch.save(ref, tmp_path / "densenet10.pth")
    with pytest.raises(Exception, match="trust"):
        load_checkpoint(tmp_path / "densenet10.pth")
    with pytest.warns(UserWarning, match="trust"):
        model, info = load_checkpoint(tmp_path / "densenet10.pth", trust=True)
    assert info.format == "pickled-module" and info.arch.startswith("densenet_bc:depth=100,growth=12")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert (model(x) - ref(normalized(x, ODIN_MEAN, ODIN_STD))).abs().max().item() < 1e-5


def test_feature_map_runs_at_other_sizes():
    model = create_model("densenet_bc", 10).eval()
    with torch.no_grad():
        assert model.features(torch.rand(1, 3, 64, 64)).shape == (1, 342, 16, 16)


# --------------------------------------------------------------------------- not ours

def _cifar_resnet_state():
    return create_model("cifar_resnet20", 10).net.state_dict()


@pytest.mark.parametrize("make", [
    lambda: torchvision.models.densenet121(weights=None).state_dict(),
    lambda: torchvision.models.resnext50_32x4d(weights=None).state_dict(),
    lambda: timm.create_model("densenet121", pretrained=False).state_dict(),
    _cifar_resnet_state,
    lambda: create_model("pyramidnet:depth=20,alpha=12,bottleneck=false", 10).net.state_dict(),
    lambda: create_model("resnext_augmix:depth=11,cardinality=2,base_width=4", 10).net.state_dict(),
], ids=["torchvision-densenet121", "torchvision-resnext50", "timm-densenet121", "cifar_resnet20", "pyramidnet",
        "resnext_augmix"])
def test_detectors_leave_other_families_alone(make):
    state = make()
    assert detect_densenet_bc(state, {}) is None
    assert detect_densenet_augmix(state, {}) is None


def test_the_two_layouts_do_not_claim_each_other():
    odin = RefDenseNet("odin", 40, 10, 12, 0.5, True).state_dict()
    augmix = RefDenseNet("augmix", 40, 10, 12, 0.5, True).state_dict()
    assert detect_densenet_bc(augmix, {}) is None and detect_densenet_augmix(odin, {}) is None
