"""PuzzleMix's CIFAR networks: files saved from references written here (snu-mllab/PuzzleMix's
module structure and key names in models/wide_resnet.py and models/preresnet.py; not our modules),
in the container its main.py saves, load with no flags, with the right architecture, class count
and logits."""

import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cutmix_eval.errors import CheckpointError
from cutmix_eval.models import create_model
from cutmix_eval.models.checkpoint import infer_arch, load_checkpoint
from cutmix_eval.models.cifar_resnet import detect_cifar_resnet
from cutmix_eval.models.kuangliu import detect_kuangliu
from cutmix_eval.models.pyramidnet import detect_pyramidnet
from cutmix_eval.models.wideresnet import detect_wideresnet
from cutmix_eval.models.wideresnet_puzzlemix import NORMALIZATION, detect_puzzlemix_wideresnet
from conftest import kaiming_reference

# load_data.py / main.py: CIFAR-100 and CIFAR-10 mean/std in 0-255 units
C100_MEAN = torch.tensor([129.3, 124.1, 112.4]).view(1, 3, 1, 1) / 255
C100_STD = torch.tensor([68.2, 65.4, 70.4]).view(1, 3, 1, 1) / 255
C10_MEAN = torch.tensor([125.3, 123.0, 113.9]).view(1, 3, 1, 1) / 255
C10_STD = torch.tensor([63.0, 62.1, 66.7]).view(1, 3, 1, 1) / 255


# --------------------------------------------------------------------------- reference modules

class RefWideBasic(nn.Module):
    """models/wide_resnet.py ``wide_basic``: biased convs, stride in conv2, shortcut on the raw input."""

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, planes, kernel_size=3, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, planes, kernel_size=1, stride=stride, bias=True))

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + self.shortcut(x)


class RefWideResNet(nn.Module):
    def __init__(self, depth, widen, num_classes):
        super().__init__()
        n = (depth - 4) // 6
        stages = [16, 16 * widen, 32 * widen, 64 * widen]
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=True)
        self.layer1 = self._layer(stages[1], n, 1)
        self.layer2 = self._layer(stages[2], n, 2)
        self.layer3 = self._layer(stages[3], n, 2)
        self.bn1 = nn.BatchNorm2d(stages[3], momentum=0.9)
        self.linear = nn.Linear(stages[3], num_classes)

    def _layer(self, planes, n, stride):
        blocks = []
        for s in [stride] + [1] * (n - 1):
            blocks.append(RefWideBasic(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def forward(self, x):
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = F.avg_pool2d(F.relu(self.bn1(out)), 8)
        return self.linear(out.reshape(out.size(0), -1))


class RefPreActBlock(nn.Module):
    """models/preresnet.py ``PreActBlock``: the shortcut (when there is one) reads the pre-activated input."""

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        return self.conv2(F.relu(self.bn2(out))) + shortcut


class RefPreActResNet18(nn.Module):
    def __init__(self, num_classes, initial_channels=64):
        super().__init__()
        self.in_planes = initial_channels
        self.conv1 = nn.Conv2d(3, initial_channels, 3, 1, 1, bias=False)
        self.layer1 = self._layer(initial_channels, 1)
        self.layer2 = self._layer(initial_channels * 2, 2)
        self.layer3 = self._layer(initial_channels * 4, 2)
        self.layer4 = self._layer(initial_channels * 8, 2)
        self.linear = nn.Linear(initial_channels * 8, num_classes)

    def _layer(self, planes, stride):
        blocks = []
        for s in (stride, 1):
            blocks.append(RefPreActBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def forward(self, x):
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        out = F.avg_pool2d(out, 4)
        return self.linear(out.reshape(out.size(0), -1))



def scale_head(net, x):
    """Divide the head so the reference's logits are O(1): a fixed tolerance means the same everywhere."""
    with torch.no_grad():
        logits = net(x)
        scale = float(logits.abs().max())
        net.linear.weight /= scale
        net.linear.bias /= scale
        return logits / scale


class _Recorder:
    """Stands in for PuzzleMix's logger.RecorderMeter (pickled whole into every checkpoint)."""

    def __init__(self, epochs):
        self.total_epoch = epochs
        self.current_epoch = 0
        self.epoch_losses = torch.zeros(epochs, 2).numpy()
        self.epoch_accuracy = torch.zeros(epochs, 2).numpy()


def save_like_main(net, path, arch, recorder=False):
    """main.py's save_checkpoint: DataParallel's ``module.`` keys and the training state next to them."""
    obj = {"epoch": 300, "arch": arch, "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()},
           "optimizer": torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9).state_dict()}
    if recorder:
        module = types.ModuleType("logger")
        _Recorder.__module__, _Recorder.__qualname__ = "logger", "RecorderMeter"
        module.RecorderMeter = _Recorder
        sys.modules["logger"] = module
        try:
            obj["recorder"] = _Recorder(300)
            torch.save(obj, path)
        finally:
            del sys.modules["logger"]
    else:
        torch.save(obj, path)
    return path


# --------------------------------------------------------------------------- Wide ResNet

@pytest.mark.parametrize("depth,widen,classes", [(16, 2, 100), (22, 1, 10)])
def test_puzzlemix_wrn_file_loads_with_no_flags(tmp_path, depth, widen, classes):
    ref = kaiming_reference(RefWideResNet(depth, widen, classes), seed=depth)
    torch.manual_seed(1)
    pixels = torch.rand(2, 3, 32, 32)
    expected = scale_head(ref, (pixels - C100_MEAN) / C100_STD)
    model, info = load_checkpoint(save_like_main(ref, tmp_path / "checkpoint.pth.tar", f"wrn{depth}_{widen}"))
    assert info.arch == f"wideresnet_puzzlemix:depth={depth},widen_factor={widen},stem_stride=1"
    assert info.arch_source == "inferred from the tensor shapes"
    assert info.num_classes == classes and info.training["epoch"] == 300
    assert info.num_parameters == sum(p.numel() for p in ref.parameters())
    assert "snu-mllab/PuzzleMix" in info.normalization_source
    torch.testing.assert_close(torch.tensor(info.mean), C100_MEAN.flatten())
    torch.testing.assert_close(torch.tensor(info.std), C100_STD.flatten())
    with torch.no_grad():
        assert (model(pixels) - expected).abs().max() < 1e-5


def test_puzzlemix_cifar10_normalization_from_the_note(tmp_path):
    """The note's CIFAR-10 values (rounded to 4 decimals) given as --mean/--std reproduce the logits."""
    ref = kaiming_reference(RefWideResNet(16, 1, 10), seed=5)
    torch.manual_seed(1)
    pixels = torch.rand(2, 3, 32, 32)
    expected = scale_head(ref, (pixels - C10_MEAN) / C10_STD)
    model, info = load_checkpoint(save_like_main(ref, tmp_path / "c10.pth.tar", "wrn16_1"),
                                  mean=[0.4914, 0.4824, 0.4467], std=[0.2471, 0.2435, 0.2616])
    assert "--mean 0.4914,0.4824,0.4467 --std 0.2471,0.2435,0.2616" in NORMALIZATION
    assert info.normalization_source == "--mean/--std"
    with torch.no_grad():
        assert (model(pixels) - expected).abs().max() < 1e-3  # the note's values are rounded


def test_puzzlemix_wrn28_10_shapes():
    ref = RefWideResNet(28, 10, 100)
    ours = create_model("wideresnet_puzzlemix", 100).net
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert detect_puzzlemix_wideresnet(ref.state_dict(), {}) == \
        "wideresnet_puzzlemix:depth=28,widen_factor=10"


def test_puzzlemix_recorder_object_is_left_out_without_trust(tmp_path):
    """main.py pickles its RecorderMeter (a training log, no weights) into every checkpoint; the
    file loads without that class and without --trust-checkpoint."""
    ref = kaiming_reference(RefWideResNet(16, 1, 10), seed=6)
    model, info = load_checkpoint(save_like_main(ref, tmp_path / "rec.pth.tar", "wrn16_1", recorder=True))
    assert info.arch.startswith("wideresnet_puzzlemix:depth=16,widen_factor=1")


# --------------------------------------------------------------------------- PreActResNet-18

def test_puzzlemix_preactresnet18_loads_as_kuangliu(tmp_path):
    ref = kaiming_reference(RefPreActResNet18(100), seed=7)
    torch.manual_seed(1)
    pixels = torch.rand(2, 3, 32, 32)
    expected = scale_head(ref, (pixels - C100_MEAN) / C100_STD)
    _, info = load_checkpoint(save_like_main(ref, tmp_path / "preact.pth.tar", "preactresnet18"))
    assert info.arch == ("kuangliu_preactresnet:depth=18,head=linear,stem_bn=false,final_bn=false,"
                         "shortcut_input=activated")
    assert info.num_classes == 100
    # kuangliu's CIFAR-10 normalization is assumed; PuzzleMix's own values are passed as --mean/--std
    model, info = load_checkpoint(tmp_path / "preact.pth.tar", mean=C100_MEAN.flatten().tolist(),
                                  std=C100_STD.flatten().tolist())
    with torch.no_grad():
        assert (model(pixels) - expected).abs().max() < 1e-5


# --------------------------------------------------------------------------- detectors keep to their own

def test_detectors_do_not_claim_each_others_files():
    for state in (RefWideResNet(16, 2, 10).state_dict(), RefWideResNet(28, 10, 100).state_dict()):
        assert detect_cifar_resnet(state, {}) is None
        assert detect_wideresnet(state, {}) is None
        assert detect_kuangliu(state, {}) is None
        assert detect_pyramidnet(state, {}) is None
        assert infer_arch(state, {})[0].startswith("wideresnet_puzzlemix:")
    others = [create_model("cifar_resnet20", 10).net.state_dict(),
              create_model("cifar_resnet56_bottleneck", 100).net.state_dict(),
              create_model("wrn16_8", 10).net.state_dict(),
              create_model("pyramidnet:depth=20,alpha=12,bottleneck=false", 10).net.state_dict(),
              create_model("preactresnet18", 10).net.state_dict()]
    for state in others:
        assert detect_puzzlemix_wideresnet(state, {}) is None
    assert infer_arch(others[0], {})[0].startswith("cifar_resnet:")
    assert infer_arch(others[1], {})[0].startswith("cifar_resnet:")


def test_puzzlemix_detector_refuses_other_layouts():
    state = RefWideResNet(16, 2, 10).state_dict()
    assert detect_puzzlemix_wideresnet({k: v for k, v in state.items() if k != "conv1.bias"}, {}) is None
    assert detect_puzzlemix_wideresnet({**state, "layer4.0.conv1.weight": torch.zeros(1)}, {}) is None
    assert detect_puzzlemix_wideresnet({k: v for k, v in state.items() if not k.startswith("layer3.1.")}, {}) is None


class _Payload:
    """Any other pickled class: still refused without trust, even next to a training log."""


def test_other_pickled_objects_next_to_a_recorder_are_still_refused(tmp_path):
    ref = RefWideResNet(16, 1, 10)
    module = types.ModuleType("evil")
    _Payload.__module__ = "evil"
    module._Payload = _Payload
    sys.modules["evil"] = module
    try:
        path = tmp_path / "mixed.pth.tar"
        saved = {"state_dict": ref.state_dict(), "payload": _Payload()}
        sys.modules["logger"] = types.ModuleType("logger")
        sys.modules["logger"].RecorderMeter = _Recorder
        saved["recorder"] = _Recorder(3)
        torch.save(saved, path)
    finally:
        sys.modules.pop("evil", None)
        sys.modules.pop("logger", None)
    with pytest.raises(CheckpointError, match="evil._Payload"):
        load_checkpoint(path)
