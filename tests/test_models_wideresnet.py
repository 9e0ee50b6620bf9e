"""Wide ResNets: files saved from a reference written here (xternalz/WideResNet-pytorch's module
structure and key names, with RobustBench's variants; not our module) load with no flags, with
the right depth, width, class count and logits."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cutmix_eval.models import create_model
from cutmix_eval.models.checkpoint import infer_arch, load_checkpoint
from cutmix_eval.models.cifar_resnet import detect_cifar_resnet
from cutmix_eval.models.external import detect_torchvision
from cutmix_eval.models.kuangliu import detect_kuangliu
from cutmix_eval.models.pyramidnet import detect_pyramidnet
from cutmix_eval.models.wideresnet import detect_wideresnet


# --------------------------------------------------------------------------- reference modules
# xternalz/WideResNet-pytorch wideresnet.py; RobustBench's copy adds `sub_block1` (weights that
# forward never uses) and `bias_last`.

class RefBlock(nn.Module):
    def __init__(self, cin, cout, stride, drop=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.drop = drop
        self.equal = cin == cout
        self.convShortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        if self.equal:
            out = self.relu1(self.bn1(x))
        else:
            x = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(out if self.equal else x)))
        if self.drop > 0:
            out = F.dropout(out, p=self.drop, training=self.training)
        out = self.conv2(out)
        return torch.add(x if self.equal else self.convShortcut(x), out)


class RefNetworkBlock(nn.Module):
    def __init__(self, n, cin, cout, stride, drop):
        super().__init__()
        self.layer = nn.Sequential(*[RefBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1, drop)
                                     for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class RefWRN(nn.Module):
    def __init__(self, depth, num_classes, widen, drop=0.0, sub_block1=False, bias_last=True):
        super().__init__()
        ch = [16, 16 * widen, 32 * widen, 64 * widen]
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        self.block1 = RefNetworkBlock(n, ch[0], ch[1], 1, drop)
        if sub_block1:
            self.sub_block1 = RefNetworkBlock(n, ch[0], ch[1], 1, drop)
        self.block2 = RefNetworkBlock(n, ch[1], ch[2], 2, drop)
        self.block3 = RefNetworkBlock(n, ch[2], ch[3], 2, drop)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(ch[3], num_classes, bias=bias_last)
        self.nChannels = ch[3]

    def fmap(self, x):
        return self.relu(self.bn1(self.block3(self.block2(self.block1(self.conv1(x))))))

    def forward(self, x):
        out = F.avg_pool2d(self.fmap(x), 8)
        return self.fc(out.view(-1, self.nChannels))


def reference(depth, widen, num_classes, seed=0, **kwargs):
    torch.manual_seed(seed)
    net = RefWRN(depth, num_classes, widen, **kwargs)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):  # the original's init, so activations stay O(1)
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):  # non-trivial BN, so a misplaced BN shows
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def scale_head(net, x):
    """Divide ``fc`` so the reference's logits are O(1) and a fixed tolerance means the same for every net."""
    with torch.no_grad():
        logits = net(x)
        scale = float(logits.abs().max())
        net.fc.weight /= scale
        if net.fc.bias is not None:
            net.fc.bias /= scale
        return logits / scale


def save(state, path, wrap):
    if wrap == "raw":
        obj = state
    elif wrap == "xternalz":  # train.py: {"epoch", "state_dict", "best_prec1"}, DataParallel commented out
        obj = {"epoch": 200, "state_dict": state, "best_prec1": 96.1}
    else:  # RobustBench-style downloads: {"state_dict": module.*}
        obj = {"state_dict": {f"module.{k}": v for k, v in state.items()}}
    torch.save(obj, path)
    return path


def check_loaded(tmp_path, ref, wrap, expected_arch, classes, pixels_to_input=lambda x: x, extra=None, **kwargs):
    torch.manual_seed(1)
    pixels = torch.rand(2, 3, 32, 32)
    ref_input = pixels_to_input(pixels)
    expected = scale_head(ref, ref_input)
    model, info = load_checkpoint(save({**ref.state_dict(), **(extra or {})}, tmp_path / "wrn.pth", wrap),
                                  **kwargs)
    assert info.arch == expected_arch
    assert info.num_classes == classes
    with torch.no_grad():
        logits, pooled, fmap = model.forward_all(pixels)
        features = model.features(pixels)
        expected_map = ref.fmap(ref_input)
    assert (logits - expected).abs().max() < 1e-5
    assert features.shape == expected_map.shape == (2, ref.nChannels, 8, 8)
    assert (features - expected_map).abs().max() < 1e-4 * max(1.0, float(expected_map.abs().max()))
    torch.testing.assert_close(fmap, features)
    torch.testing.assert_close(pooled, features.mean(dim=(2, 3)))
    with torch.no_grad():
        torch.testing.assert_close(model(pixels), logits)
    assert model.head is model.get_classifier() and model.head.out_features == classes
    return model, info


# --------------------------------------------------------------------------- loading

def test_wrn16_8_xternalz_file(tmp_path):
    ref = reference(16, 8, 10)
    model, info = check_loaded(tmp_path, ref, "xternalz",
                               "wideresnet:depth=16,widen_factor=8,dropout=0.0,sub_block1=false,fc_bias=true", 10)
    assert info.format == "timm" and info.training["weights_key"] == "state_dict" and info.training["epoch"] == 200
    # RobustBench's [0, 1] convention is the default; the note names xternalz's own normalization
    assert info.mean == [0.0, 0.0, 0.0] and info.std == [1.0, 1.0, 1.0]
    assert "RobustBench" in info.normalization_source and "xternalz/WideResNet-pytorch" in info.normalization_source
    assert info.num_parameters == sum(p.numel() for p in ref.parameters())


@pytest.mark.slow
def test_wrn28_10_robustbench_file(tmp_path):
    """36.5M parameters, about 4 s on one CPU core (its detection from shapes runs by default)."""
    ref = reference(28, 10, 100, seed=2)
    model, info = check_loaded(tmp_path, ref, "robustbench",
                               "wideresnet:depth=28,widen_factor=10,dropout=0.0,sub_block1=false,fc_bias=true", 100)
    assert info.num_parameters == 36_536_884  # WRN-28-10, 100 classes (36.5M, Zagoruyko & Komodakis)


def test_robustbench_sub_block1_no_fc_bias_and_mu_sigma(tmp_path):
    """RobustBench's WideResNet(sub_block1=True, bias_last=False) with its normalization in buffers
    mu/sigma (as Hendrycks2020AugMix_WRN: 0.5 / 0.5)."""
    ref = reference(40, 2, 10, seed=3, sub_block1=True, bias_last=False)
    half = torch.full((1, 3, 1, 1), 0.5)
    model, info = check_loaded(tmp_path, ref, "robustbench",
                               "wideresnet:depth=40,widen_factor=2,dropout=0.0,sub_block1=true,fc_bias=false", 10,
                               pixels_to_input=lambda x: (x - half) / half, extra={"mu": half, "sigma": half})
    assert "mu/sigma" in info.normalization_source and info.mean == info.std == [0.5, 0.5, 0.5]
    assert model.net.fc.bias is None and hasattr(model.net, "sub_block1")


def test_dropout_is_an_argument_that_changes_nothing_at_eval(tmp_path):
    ref = reference(16, 2, 10, seed=4, drop=0.3)
    _, info = check_loaded(tmp_path, ref, "raw",
                           "wideresnet:depth=16,widen_factor=2,dropout=0.3,sub_block1=false,fc_bias=true", 10,
                           arch="wideresnet:depth=16,widen_factor=2,dropout=0.3")
    assert info.format == "state-dict"


@pytest.mark.parametrize("depth,widen", [(16, 8), (28, 10), (34, 10), (40, 2), (22, 1)])
def test_depth_and_width_detected_from_shapes(depth, widen):
    torch.manual_seed(0)
    state = RefWRN(depth, 10, widen).state_dict()  # no forward pass: shapes only
    assert detect_wideresnet(state, {}) == \
        f"wideresnet:depth={depth},widen_factor={widen},sub_block1=false,fc_bias=true"


def test_aliases_build_the_reference_shapes():
    ours = create_model("wrn16_8", 100).net.state_dict()
    ref = RefWRN(16, 100, 8).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in ref.items()}


# --------------------------------------------------------------------------- detectors keep to their own

def test_detectors_do_not_claim_each_others_files():
    wrns = [RefWRN(16, 10, 4).state_dict(), RefWRN(16, 10, 1, sub_block1=True, bias_last=False).state_dict()]
    for state in wrns:
        assert detect_cifar_resnet(state, {}) is None
        assert detect_pyramidnet(state, {}) is None
        assert detect_torchvision(state, {}) is None
        assert detect_kuangliu(state, {}) is None
        assert infer_arch(state, {})[0].startswith("wideresnet:")
    others = [create_model("cifar_resnet20", 10).net.state_dict(),
              create_model("pyramidnet:depth=20,alpha=12,bottleneck=false", 10).net.state_dict(),
              create_model("resnet18_cifar", 10).net.state_dict(),
              create_model("preactresnet18", 10).net.state_dict(),
              torchvision.models.resnet18(num_classes=10).state_dict()]
    for state in others:
        assert detect_wideresnet(state, {}) is None


def test_wideresnet_detector_refuses_other_layouts():
    state = RefWRN(16, 10, 2).state_dict()
    assert detect_wideresnet({**state, "block4.layer.0.conv1.weight": torch.zeros(1)}, {}) is None
    assert detect_wideresnet({k: v for k, v in state.items() if not k.startswith("block3.layer.1.")}, {}) is None
    assert detect_wideresnet({k: v for k, v in state.items() if k != "fc.weight"}, {}) is None
