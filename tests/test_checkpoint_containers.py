"""The containers other training code writes load with no flags (issue 18): PyTorch
Lightning, ``model_state_dict`` / ``net`` dicts, DataParallel ``module.`` wherever every key
has it, OpenMixup / mmclassification (``backbone.*`` + ``head.fc.*``), safetensors; and the
normalization a file does not carry is said, overridable, or switched off."""

from __future__ import annotations

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from cutmix_eval.errors import CheckpointError
from cutmix_eval.models.checkpoint import INFERRED, OVERRIDE, load_checkpoint, model_identity

OPENMIXUP_MEAN, OPENMIXUP_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.201)


def openmixup_cifar_resnet(depth: int, num_classes: int) -> nn.Module:
    """mmclassification's ResNet_CIFAR as OpenMixup builds it: torchvision's block and key names,
    a 3x3 stride-1 stem and no max-pool (``openmixup/models/backbones/resnet_mmcls.py``)."""
    torch.manual_seed(depth)
    net = torchvision.models.get_model(f"resnet{depth}", weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    for m in net.modules():  # non-trivial running statistics, so eval-mode BN matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def same_logits(model, reference, mean, std, size=32):
    x = torch.rand(2, 3, size, size)
    normalized = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert (model(x) - reference(normalized)).abs().max() < 1e-5


@pytest.fixture(scope="module")
def resnet18():
    return openmixup_cifar_resnet(18, 10)


def openmixup_file(net: nn.Module, extra: dict | None = None) -> dict:
    """OpenMixup's saved checkpoint: mmcv's ``meta`` and ``state_dict`` of the whole classifier."""
    state = {f"backbone.{k}": v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    state |= {f"head.{k}": v for k, v in net.state_dict().items() if k.startswith("fc.")}
    return {"meta": {"epoch": 800, "iter": 400000, "mmcv_version": "1.4.7"}, "state_dict": state | (extra or {})}


def test_openmixup_cifar_resnet_loads_as_the_plain_net(tmp_path, resnet18):
    torch.save(openmixup_file(resnet18), tmp_path / "epoch_800.pth")
    model, info = load_checkpoint(tmp_path / "epoch_800.pth")
    assert (info.format, info.arch, info.arch_source, info.num_classes) == (
        "openmixup", "openmixup_resnet:depth=18", INFERRED, 10)
    assert info.normalization_source.startswith("OpenMixup's CIFAR configs") and OVERRIDE in info.normalization_source
    assert info.mean == pytest.approx(OPENMIXUP_MEAN) and info.std == pytest.approx(OPENMIXUP_STD)
    same_logits(model, resnet18, OPENMIXUP_MEAN, OPENMIXUP_STD)
    assert model.features(torch.rand(1, 3, 32, 32)).shape == (1, 512, 4, 4)


def test_openmixup_weights_besides_the_classifier_are_named_not_loaded(tmp_path, resnet18):
    momentum = {f"backbone_k.{k}": v.clone() for k, v in resnet18.state_dict().items()}  # MoCo-style encoder
    torch.save(openmixup_file(resnet18, momentum | {"mix_block.conv.weight": torch.zeros(1, 1, 1, 1)}),
               tmp_path / "automix.pth")
    model, info = load_checkpoint(tmp_path / "automix.pth")
    assert info.training["left_out"] == ["backbone_k", "mix_block"]
    same_logits(model, resnet18, OPENMIXUP_MEAN, OPENMIXUP_STD)


def test_openmixup_imagenet_resnet_is_the_torchvision_resnet(tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=7).eval()
    torch.save(openmixup_file(net), tmp_path / "in1k.pth")
    model, info = load_checkpoint(tmp_path / "in1k.pth")
    assert (info.format, info.arch, info.num_classes) == ("openmixup", "torchvision/resnet18", 7)
    same_logits(model, net, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), size=64)


@pytest.mark.parametrize("container,fmt", [
    (lambda s: {"state_dict": {f"model.{k}": v for k, v in s.items()}, "pytorch-lightning_version": "2.4.0",
                "epoch": 9, "global_step": 4690, "optimizer_states": [{}], "hyper_parameters": {"lr": 0.1}},
     "lightning"),
    (lambda s: {"state_dict": {f"net.{k}": v for k, v in s.items()}, "pytorch-lightning_version": "1.9.5"},
     "lightning"),
    (lambda s: {"model_state_dict": {f"module.{k}": v for k, v in s.items()}, "optimizer_state_dict": {},
                "epoch": 200}, "training-dict"),
    (lambda s: {"net": {f"module.{k}": v for k, v in s.items()}, "acc": 95.2, "epoch": 199}, "training-dict"),
    (lambda s: {"network": s}, "training-dict"),
    (lambda s: {"state_dict": {f"model.module.{k}": v for k, v in s.items()}}, "timm"),  # DataParallel inside
    (lambda s: {f"module._orig_mod.{k}": v for k, v in s.items()}, "state-dict"),
])
def test_training_containers_load_with_no_flags(tmp_path, resnet18, container, fmt):
    torch.save(container(resnet18.state_dict()), tmp_path / "ckpt.pth")
    model, info = load_checkpoint(tmp_path / "ckpt.pth")
    assert (info.format, info.arch, info.num_classes) == (fmt, "openmixup_resnet:depth=18", 10)
    same_logits(model, resnet18, OPENMIXUP_MEAN, OPENMIXUP_STD)
    if fmt == "lightning":
        assert "optimizer_states" not in info.training


def test_a_key_named_model_is_kept_when_not_every_key_has_it(tmp_path):
    from cutmix_eval.models.checkpoint import _strip_prefixes

    state = {"model.weight": torch.zeros(1), "head.weight": torch.zeros(1)}
    assert list(_strip_prefixes(state)) == ["model.weight", "head.weight"]
    assert list(_strip_prefixes({"a.module.b.weight": torch.zeros(1), "c.module.d": torch.zeros(1)})) == [
        "a.b.weight", "c.d"]


def test_safetensors_files(tmp_path, resnet18):
    save_file({k: v.contiguous() for k, v in resnet18.state_dict().items()}, tmp_path / "model.safetensors")
    model, info = load_checkpoint(tmp_path / "model.safetensors")
    assert (info.format, info.arch) == ("safetensors", "openmixup_resnet:depth=18")
    same_logits(model, resnet18, OPENMIXUP_MEAN, OPENMIXUP_STD)
    (tmp_path / "broken.safetensors").write_bytes((tmp_path / "model.safetensors").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="broken.safetensors cannot be read as a PyTorch file"):
        load_checkpoint(tmp_path / "broken.safetensors")


def test_normalization_given_switched_off_and_recorded(tmp_path, resnet18):
    torch.save(resnet18.state_dict(), tmp_path / "raw.pth")
    model, info = load_checkpoint(tmp_path / "raw.pth", normalize=False)
    assert (info.mean, info.std) == ([0.0] * 3, [1.0] * 3) and info.normalization_source.startswith("--no-normalize")
    same_logits(model, resnet18, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    with pytest.raises(CheckpointError, match="--no-normalize and --mean/--std contradict"):
        load_checkpoint(tmp_path / "raw.pth", normalize=False, mean=(0.5, 0.5, 0.5))
    _, given = load_checkpoint(tmp_path / "raw.pth", mean=(0.5, 0.5, 0.5))
    assert given.normalization_source == "--mean/--std" and given.std == pytest.approx(OPENMIXUP_STD)
    assert model_identity(info)["normalization"] == {"mean": [0.0] * 3, "std": [1.0] * 3,
                                                     "source": info.normalization_source}


def test_inspect_says_where_architecture_and_normalization_came_from(tmp_path, resnet18, capsys):
    from cutmix_eval.cli import main

    torch.save({"net": resnet18.state_dict(), "acc": 95.2}, tmp_path / "ckpt.pth")
    assert main(["inspect", "--ckpt", str(tmp_path / "ckpt.pth")]) == 0
    out = " ".join(capsys.readouterr().out.split())  # unwrapped
    assert "openmixup_resnet:depth=18 (inferred from the tensor shapes)" in out
    assert "family OpenMixup / mmclassification CIFAR ResNet" in out
    assert "source: OpenMixup's CIFAR configs normalize in the data pipeline" in out and "--no-normalize" in out
    assert main(["inspect", "--ckpt", str(tmp_path / "ckpt.pth"), "--no-normalize", "--mean", "0,0,0"]) == 2
    assert "contradict" in capsys.readouterr().err


@pytest.mark.parametrize("flags,entry", [
    (["--no-normalize"], {"normalize": False}),
    (["--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25"], {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}),
    (["--arch", "wrn28_10"], {"arch": "wrn28_10"}),
])
def test_a_study_records_the_loading_options_as_the_command_line_does(tmp_path, flags, entry):
    """Same options, same job: a study finds the record a command stored, and vice versa."""
    from cutmix_eval.cli import build_parser
    from cutmix_eval.cli._common import loading_overrides
    from cutmix_eval.study import study_from_dict

    args = build_parser().parse_args(["inspect", "--ckpt", "m.pth", *flags])
    study = study_from_dict({"study": {"name": "s"}, "checkpoints": [{"path": "m.pth", "label": "x", **entry}],
                             "datasets": [{"name": "synthetic"}], "analyses": {"classification": {}}}, tmp_path)
    assert study.checkpoints[0].loading() == loading_overrides(args)


def test_study_normalization_entries_are_checked(tmp_path):
    from cutmix_eval.errors import UserError
    from cutmix_eval.study import study_from_dict

    with pytest.raises(UserError, match=r"checkpoints\[0\].mean: expected three numbers"):
        study_from_dict({"study": {"name": "s"}, "checkpoints": [{"path": "m.pth", "label": "x", "mean": [0.5]}],
                         "datasets": [{"name": "synthetic"}], "analyses": {"classification": {}}}, tmp_path)
