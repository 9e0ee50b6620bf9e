"""The kuangliu/pytorch-cifar ResNets: files saved from a reference written here (the original
repositories' module structure and key names, not our module) load with no flags, with the
right architecture, class count and logits."""

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

KUANGLIU_MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
KUANGLIU_STD = torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)


# --------------------------------------------------------------------------- reference modules
# The structure of kuangliu/pytorch-cifar models/resnet.py and models/preact_resnet.py, with the
# variants other repositories made of them (facebookresearch/mixup-cifar10: pre-activation blocks
# behind a conv-BN-ReLU stem; RobustBench: a final `bn`, a shortcut reading the raw input).

class RefBasic(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, **_):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        out += self.shortcut(x)
        return F.relu(out)


class RefBottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, **_):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != 4 * planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, 4 * planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(4 * planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += self.shortcut(x)
        return F.relu(out)


class RefPreActBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, raw_shortcut=False):
        super().__init__()
        self.raw_shortcut = raw_shortcut
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(x if self.raw_shortcut else out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out += shortcut
        return out


class RefPreActBottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, **_):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        if stride != 1 or cin != 4 * planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, 4 * planes, 1, stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        out += shortcut
        return out


class RefNet(nn.Module):
    """kuangliu's ResNet (stem_bn) / PreActResNet (no stem_bn); ``final_bn``: RobustBench's
    ``bn_before_fc``; ``head``: the classifier's attribute name."""

    def __init__(self, block, num_blocks, num_classes, *, stem_bn, final_bn=False, head="linear",
                 raw_shortcut=False):
        super().__init__()
        self.in_planes, self.stem_bn, self.final_bn, self.head = 64, stem_bn, final_bn, head
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        if stem_bn:
            self.bn1 = nn.BatchNorm2d(64)
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), num_blocks)):
            layers = []
            for stride in [1 if i == 0 else 2] + [1] * (n - 1):
                layers.append(block(self.in_planes, planes, stride, raw_shortcut=raw_shortcut))
                self.in_planes = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        if final_bn:
            self.bn = nn.BatchNorm2d(512 * block.expansion)
        setattr(self, head, nn.Linear(512 * block.expansion, num_classes))

    def fmap(self, x):
        out = self.conv1(x)
        if self.stem_bn:
            out = F.relu(self.bn1(out))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        if self.final_bn:
            out = F.relu(self.bn(out))
        return out

    def forward(self, x):
        out = F.avg_pool2d(self.fmap(x), 4)
        return getattr(self, self.head)(out.view(out.size(0), -1))


BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3]}


def reference(depth, num_classes, *, preact, seed=0, **kwargs):
    torch.manual_seed(seed)
    if preact:
        block = RefPreActBottleneck if depth >= 50 else RefPreActBlock
        kwargs.setdefault("stem_bn", False)
    else:
        block = RefBottleneck if depth >= 50 else RefBasic
        kwargs.setdefault("stem_bn", True)
    net = RefNet(block, BLOCKS[depth], num_classes, **kwargs)
    randomize_batchnorm(net)
    return net.eval()


def randomize_batchnorm(net):
    """Non-trivial BN parameters and running statistics, so a BN applied in the wrong place shows."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)


def scale_head(net, x):
    """Divide the head so the reference's logits are O(1): a fixed tolerance then means the same
    at every depth (random deep nets otherwise reach logits of 1e3 and more)."""
    head = getattr(net, net.head)
    with torch.no_grad():
        scale = float(net(x).abs().max())
        head.weight /= scale
        head.bias /= scale


def save(net, path, wrap):
    state = net.state_dict()
    if wrap == "raw":
        obj = state
    elif wrap == "net":  # kuangliu main.py under DataParallel: {"net": module.*, "acc", "epoch"}
        obj = {"net": {f"module.{k}": v for k, v in state.items()}, "acc": 95.1, "epoch": 199}
    else:  # {"state_dict": module.*}, as PuzzleMix and Manifold Mixup save
        obj = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 300}
    torch.save(obj, path)
    return path


def check_loaded(tmp_path, ref, wrap, expected_arch, classes, **load_kwargs):
    torch.manual_seed(1)
    pixels = torch.rand(2, 3, 32, 32)
    normalized = (pixels - KUANGLIU_MEAN) / KUANGLIU_STD
    scale_head(ref, normalized)
    model, info = load_checkpoint(save(ref, tmp_path / "ckpt.pth", wrap), **load_kwargs)
    assert info.arch == expected_arch
    assert info.num_classes == classes
    with torch.no_grad():
        expected, expected_map = ref(normalized), ref.fmap(normalized)
        logits = model(pixels)
        all_logits, pooled, fmap = model.forward_all(pixels)
        features = model.features(pixels)
    assert (logits - expected).abs().max() < 1e-5
    assert features.shape == expected_map.shape == (2, ref.in_planes, 4, 4)
    assert (features - expected_map).abs().max() < 1e-4 * max(1.0, float(expected_map.abs().max()))
    torch.testing.assert_close(all_logits, logits)
    torch.testing.assert_close(fmap, features)
    torch.testing.assert_close(pooled, features.mean(dim=(2, 3)))
    assert model.head is model.get_classifier() and model.head.out_features == classes
    return model, info


# --------------------------------------------------------------------------- loading

CASES = [  # depth, preact, reference kwargs, classes, wrapper, expected arch
    (18, False, {}, 10, "raw", "kuangliu_resnet:depth=18,head=linear"),
    (34, False, {}, 100, "net", "kuangliu_resnet:depth=34,head=linear"),
    (18, True, {}, 100, "net", "kuangliu_preactresnet:depth=18,head=linear,stem_bn=false,final_bn=false,"
                               "shortcut_input=activated"),
    (34, True, {}, 10, "raw", "kuangliu_preactresnet:depth=34,head=linear,stem_bn=false,final_bn=false,"
                              "shortcut_input=activated"),
    # heads named as other repositories name them
    (18, False, {"head": "fc"}, 10, "state_dict", "kuangliu_resnet:depth=18,head=fc"),
    (18, True, {"head": "classifier"}, 100, "raw", "kuangliu_preactresnet:depth=18,head=classifier,stem_bn=false,"
                                                   "final_bn=false,shortcut_input=activated"),
    # RobustBench PreActResNet(bn_before_fc=True): a final `bn` + ReLU before pooling
    (18, True, {"final_bn": True}, 10, "state_dict", "kuangliu_preactresnet:depth=18,head=linear,stem_bn=false,"
                                                     "final_bn=true,shortcut_input=activated"),
    # facebookresearch/mixup-cifar10 and the Mahalanobis detector's ResNet18: ResNet(PreActBlock, ...)
    (18, True, {"stem_bn": True}, 10, "raw", "kuangliu_preactresnet:depth=18,head=linear,stem_bn=true,"
                                             "final_bn=false,shortcut_input=activated"),
    # bottleneck blocks (about a second each on one CPU core)
    (50, False, {}, 100, "raw", "kuangliu_resnet:depth=50,head=linear"),
    (50, True, {}, 10, "net", "kuangliu_preactresnet:depth=50,head=linear,stem_bn=false,final_bn=false,"
                              "shortcut_input=activated"),
]


@pytest.mark.parametrize("depth,preact,kwargs,classes,wrap,expected", CASES)
def test_reference_files_load_without_flags(tmp_path, depth, preact, kwargs, classes, wrap, expected):
    ref = reference(depth, classes, preact=preact, **kwargs)
    model, info = check_loaded(tmp_path, ref, wrap, expected, classes)
    assert info.format == {"raw": "state-dict", "net": "training-dict", "state_dict": "timm"}[wrap]
    assert "kuangliu/pytorch-cifar" in info.normalization_source
    torch.testing.assert_close(torch.tensor(info.mean), KUANGLIU_MEAN.flatten())
    torch.testing.assert_close(torch.tensor(info.std), KUANGLIU_STD.flatten())
    assert info.num_parameters == sum(p.numel() for p in ref.parameters())


def test_mahalanobis_resnet34_raw_state_dict(tmp_path):
    """pokaxpoka/deep_Mahalanobis_detector saves ResNet34(num_c) (kuangliu's BasicBlock layout,
    `linear` head) as a bare state dict and normalizes with kuangliu's mean/std."""
    ref = reference(34, 100, preact=False, seed=3)
    check_loaded(tmp_path, ref, "raw", "kuangliu_resnet:depth=34,head=linear", 100)


def test_shortcut_from_raw_input_is_an_explicit_choice(tmp_path):
    """RobustBench's PreActBlock feeds its projection shortcut the raw block input; no weight
    shows it, so detection keeps kuangliu's form and the arch argument selects the other."""
    ref = reference(18, 10, preact=True, raw_shortcut=True, seed=4)
    arch = "kuangliu_preactresnet:depth=18,shortcut_input=raw"
    check_loaded(tmp_path, ref, "raw", "kuangliu_preactresnet:depth=18,head=linear,stem_bn=false,"
                 "final_bn=false,shortcut_input=raw", 10, arch=arch)
    detected, _ = load_checkpoint(tmp_path / "ckpt.pth")
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert (detected(pixels) - ref((pixels - KUANGLIU_MEAN) / KUANGLIU_STD)).abs().max() > 1e-3


def test_robustbench_mu_sigma_buffers_become_the_normalization(tmp_path):
    """RobustBench's PreAct nets (Wong2020Fast...) normalize inside forward with buffers mu/sigma;
    a file carrying them is normalized with them."""
    ref = reference(18, 10, preact=True, final_bn=True, seed=5)
    mu, sigma = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2471, 0.2435, 0.2616])
    pixels = torch.rand(2, 3, 32, 32)
    scale_head(ref, (pixels - mu.view(1, 3, 1, 1)) / sigma.view(1, 3, 1, 1))
    state = {**ref.state_dict(), "mu": mu.view(1, 3, 1, 1), "sigma": sigma.view(1, 3, 1, 1)}
    torch.save({"state_dict": state}, tmp_path / "rb.pt")
    model, info = load_checkpoint(tmp_path / "rb.pt")
    assert info.arch.startswith("kuangliu_preactresnet:depth=18,") and "final_bn=true" in info.arch
    assert "mu/sigma" in info.normalization_source
    torch.testing.assert_close(torch.tensor(info.std), sigma)
    with torch.no_grad():
        expected = ref((pixels - mu.view(1, 3, 1, 1)) / sigma.view(1, 3, 1, 1))
        assert (model(pixels) - expected).abs().max() < 1e-5


def test_whole_network_pickled_under_net_needs_trust(tmp_path):
    """facebookresearch/mixup-cifar10 saves {"net": DataParallel(net), "acc", "epoch", "rng_state"}."""
    ref = reference(18, 10, preact=True, stem_bn=True, seed=6)
    torch.save({"net": nn.DataParallel(ref), "acc": 95.0, "epoch": 199, "rng_state": torch.get_rng_state()},
               tmp_path / "ckpt.t7")
    with pytest.warns(UserWarning, match="full unpickling"):
        model, info = load_checkpoint(tmp_path / "ckpt.t7", trust=True)
    assert info.format == "pickled-module" and info.training["epoch"] == 199
    assert info.arch.startswith("kuangliu_preactresnet:depth=18,head=linear,stem_bn=true,")
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert (model(pixels) - ref((pixels - KUANGLIU_MEAN) / KUANGLIU_STD)).abs().max() < 1e-4 * \
            max(1.0, float(ref((pixels - KUANGLIU_MEAN) / KUANGLIU_STD).abs().max()))


def test_aliases_build_the_reference_shapes():
    for name, depth, preact in (("resnet18_cifar", 18, False), ("preactresnet34", 34, True)):
        ours = create_model(name, 10).net.state_dict()
        ref = reference(depth, 10, preact=preact).state_dict()
        assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in ref.items()}


# --------------------------------------------------------------------------- detectors keep to their own

def test_detectors_do_not_claim_each_others_files():
    kuangliu = [reference(18, 10, preact=False).state_dict(), reference(18, 10, preact=True).state_dict(),
                reference(18, 10, preact=True, stem_bn=True, final_bn=True).state_dict()]
    for state in kuangliu:
        assert detect_cifar_resnet(state, {}) is None
        assert detect_pyramidnet(state, {}) is None
        assert detect_torchvision(state, {}) is None
        assert infer_arch(state, {})[0].startswith("kuangliu_")
    others = [create_model("cifar_resnet20", 10).net.state_dict(),
              create_model("cifar_resnet:depth=29,bottleneck=true", 10).net.state_dict(),
              create_model("pyramidnet:depth=20,alpha=12,bottleneck=false", 10).net.state_dict(),
              create_model("wrn16_8", 10).net.state_dict(),
              torchvision.models.resnet18(num_classes=10).state_dict()]
    for state in others:
        assert detect_kuangliu(state, {}) is None


def test_kuangliu_detector_refuses_layouts_with_extra_modules():
    state = reference(18, 10, preact=True).state_dict()
    # kuangliu's SENet18: PreActBlocks with squeeze-excitation convolutions fc1/fc2 in every block
    senet = {**state, "layer1.0.fc1.weight": torch.zeros(4, 64, 1, 1)}
    assert detect_kuangliu(senet, {}) is None
    two_heads = {**state, "fc.weight": state["linear.weight"]}
    assert detect_kuangliu(two_heads, {}) is None
    # a stage of a length no kuangliu depth has
    short = {k: v for k, v in state.items() if not k.startswith("layer4.1.")}
    assert detect_kuangliu(short, {}) is None
