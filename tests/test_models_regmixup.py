"""RegMixup's checkpoints: files saved from references written here (FrancescoPinto/RegMixup's
module structure and key names: its Lightning module of models/vanilla.py holding a backbone of
models/backbones/ as ``feature_extractor`` and a top-level ``fc``; not our modules), in the
container PyTorch Lightning 1.4 writes, load with no flags, with the right architecture, class
count, normalization and logits."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cutmix_eval.models.checkpoint import load_checkpoint
from conftest import kaiming_reference

# data/cifar.py: CIFARDataModule's normalization
NORM = {"cifar10": ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]),
        "cifar100": ([0.5071, 0.4867, 0.4408], [0.2675, 0.2565, 0.2761])}


# --------------------------------------------------------------------------- reference modules

class RefWideBlock(nn.Module):
    """models/backbones/wideresnet.py BasicBlock (without spectral norm / stable rank)."""

    def __init__(self, cin, cout, stride, drop=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.droprate = drop
        self.equal = cin == cout
        if not self.equal:
            self.convShortcut = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        if not self.equal:
            x = self.relu1(self.bn1(x))
        else:
            out = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(out if self.equal else x)))
        if self.droprate > 0:
            out = F.dropout(out, p=self.droprate, training=self.training)
        return torch.add(x if self.equal else self.convShortcut(x), self.conv2(out))


class RefNetworkBlock(nn.Module):
    def __init__(self, n, cin, cout, stride, drop):
        super().__init__()
        self.layer = nn.Sequential(*[RefWideBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1, drop)
                                     for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class RefWideResNetBackbone(nn.Module):
    """WideResNet(depth, num_classes, widen_factor, dropRate): features only, no classifier."""

    def __init__(self, depth, widen, drop=0.1):
        super().__init__()
        ch = [16, 16 * widen, 32 * widen, 64 * widen]
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        self.block1 = RefNetworkBlock(n, ch[0], ch[1], 1, drop)
        self.block2 = RefNetworkBlock(n, ch[1], ch[2], 2, drop)
        self.block3 = RefNetworkBlock(n, ch[2], ch[3], 2, drop)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU(inplace=True)
        self.embedding_size = ch[3]

    def forward(self, x):
        out = self.relu(self.bn1(self.block3(self.block2(self.block1(self.conv1(x))))))
        return F.avg_pool2d(out, 8).view(-1, self.embedding_size)


class RefBottleneck(nn.Module):
    """models/backbones/resnet.py Bottleneck."""

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != 4 * planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, 4 * planes, 1, stride, bias=False), nn.BatchNorm2d(4 * planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out)) + self.shortcut(x)
        return F.relu(out)


class RefResNet50Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._layer(64, 3, 1)
        self.layer2 = self._layer(128, 4, 2)
        self.layer3 = self._layer(256, 6, 2)
        self.layer4 = self._layer(512, 3, 2)
        self.embedding_size = 2048

    def _layer(self, planes, n, stride):
        blocks = []
        for s in [stride] + [1] * (n - 1):
            blocks.append(RefBottleneck(self.in_planes, planes, s))
            self.in_planes = planes * 4
        return nn.Sequential(*blocks)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return F.avg_pool2d(out, 4).view(out.size(0), -1)


class RefVanillaModule(nn.Module):
    """The parts of models/vanilla.py's LightningModule that hold weights: ``feature_extractor``
    (the backbone) and ``fc`` (the torchmetrics metrics it also holds keep no state in state_dict)."""

    def __init__(self, backbone, num_classes, bias=True):
        super().__init__()
        self.feature_extractor = backbone
        self.fc = nn.Linear(backbone.embedding_size, num_classes, bias=bias)

    def forward(self, x):
        embeddings = self.feature_extractor(x)
        return self.fc(embeddings), embeddings



def scale_head(net, x):
    with torch.no_grad():
        logits = net(x)[0]
        scale = float(logits.abs().max())
        net.fc.weight /= scale
        if net.fc.bias is not None:
            net.fc.bias /= scale
        return logits / scale


def save_like_lightning(net, path, hparams):
    """trainer.save_checkpoint of PyTorch Lightning 1.4 (RegMixup's environment.yml): the module's
    state_dict next to the loop, optimizer, scheduler and callback states and the hyperparameters."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[60, 120, 160], gamma=0.2)
    torch.save({"epoch": 199, "global_step": 78200, "pytorch-lightning_version": "1.4.4",
                "state_dict": net.state_dict(),
                "callbacks": {"ModelCheckpoint": {"monitor": "val_accuracy", "best_model_score": torch.tensor(0.8),
                                                  "best_model_path": "/runs/complete_debug_vanilla.ckpt"}},
                "optimizer_states": [optimizer.state_dict()], "lr_schedulers": [scheduler.state_dict()],
                "hparams_name": "kwargs", "hyper_parameters": hparams}, path)
    return path


def hparams(dataset, model_type="wideresnet_regmixup", backbone="wideresnet_vanilla", **extra):
    return {"model_type": model_type, "dataset": dataset, "backbone": backbone, "layers": 28, "widen_factor": 10,
            "droprate": 0.1, "without_bias": False, "mixup_alpha": 20.0, "mixup_beta": 20.0, "lr": 0.1,
            "milestones": [60, 120, 160], "class_head_name": "fc", "dm": None, "seed": 0, **extra}


# --------------------------------------------------------------------------- loading

@pytest.mark.parametrize("dataset,classes", [("cifar10", 10), ("cifar100", 100)])
def test_regmixup_wideresnet_checkpoint(tmp_path, dataset, classes):
    ref = kaiming_reference(RefVanillaModule(RefWideResNetBackbone(16, 2), classes), seed=classes)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORM[dataset])
    torch.manual_seed(1)
    pixels = torch.rand(2, 3, 32, 32)
    expected = scale_head(ref, (pixels - mean) / std)
    model, info = load_checkpoint(save_like_lightning(ref, tmp_path / "last_full_epoch.ckpt", hparams(dataset)))
    assert info.format == "lightning"
    assert info.arch == "wideresnet:depth=16,widen_factor=2,dropout=0.0,sub_block1=false,fc_bias=true"
    assert info.num_classes == classes and info.dataset == dataset
    assert info.mean == pytest.approx(NORM[dataset][0]) and info.std == pytest.approx(NORM[dataset][1])
    assert "FrancescoPinto/RegMixup" in info.normalization_source and "hyper_parameters" in info.normalization_source
    with torch.no_grad():
        assert (model(pixels) - expected).abs().max() < 1e-5


def test_regmixup_without_bias_and_without_hyperparameters(tmp_path):
    """``--without_bias`` drops the head's bias; a file without hyper_parameters gets the dataset
    from its class count, said to be assumed."""
    ref = kaiming_reference(RefVanillaModule(RefWideResNetBackbone(10, 1), 100, bias=False), seed=3)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORM["cifar100"])
    torch.manual_seed(1)
    pixels = torch.rand(2, 3, 32, 32)
    expected = scale_head(ref, (pixels - mean) / std)
    torch.save({"state_dict": ref.state_dict(), "pytorch-lightning_version": "1.4.4"}, tmp_path / "m.ckpt")
    model, info = load_checkpoint(tmp_path / "m.ckpt")
    assert info.arch == "wideresnet:depth=10,widen_factor=1,dropout=0.0,sub_block1=false,fc_bias=false"
    assert info.dataset == "cifar100" and info.mean == pytest.approx(NORM["cifar100"][0])
    assert "assumed from its 100 classes" in info.normalization_source
    with torch.no_grad():
        assert (model(pixels) - expected).abs().max() < 1e-5


def test_regmixup_resnet50_checkpoint(tmp_path):
    ref = kaiming_reference(RefVanillaModule(RefResNet50Backbone(), 10), seed=4)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORM["cifar10"])
    torch.manual_seed(1)
    pixels = torch.rand(2, 3, 32, 32)
    expected = scale_head(ref, (pixels - mean) / std)
    path = save_like_lightning(ref, tmp_path / "r50.ckpt", hparams("cifar10", "resnet50_regmixup", "resnet50_vanilla"))
    model, info = load_checkpoint(path)
    assert info.arch == "kuangliu_resnet:depth=50,head=fc"
    assert info.num_classes == 10 and info.mean == pytest.approx(NORM["cifar10"][0])
    with torch.no_grad():
        assert (model(pixels) - expected).abs().max() < 1e-5


def test_mean_std_flags_still_override(tmp_path):
    ref = kaiming_reference(RefVanillaModule(RefWideResNetBackbone(10, 1), 10), seed=5)
    path = save_like_lightning(ref, tmp_path / "x.ckpt", hparams("cifar10"))
    _, info = load_checkpoint(path, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    assert info.normalization_source == "--mean/--std" and info.mean == [0.5, 0.5, 0.5]
    _, info = load_checkpoint(path, normalize=False)
    assert info.mean == [0.0, 0.0, 0.0]
