"""Checkpoint I/O: the official fixtures, our format, foreign formats and every error path."""

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision

from cutmix_eval.errors import CheckpointError
from cutmix_eval.models import create_model
from cutmix_eval.models.checkpoint import (load_checkpoint, read_checkpoint_file, save_checkpoint,
                                           weights_sha256)

OFFICIAL = {
    "resnet_cifar10_d20": ("cifar_resnet:depth=20,bottleneck=false", 10, "cifar10"),
    "pyramidnet_cifar100_d56_a48_bottleneck": ("pyramidnet:depth=56,alpha=48.0,bottleneck=true", 100, "cifar100"),
}
VARIANTS = ["", ".bnperturbed", ".cudatag", ".cudatag_legacy"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_checkpoints_reproduce_reference_logits(clovaai_dir, name, variant):
    """Acceptance: no flags, CPU, max abs logit difference < 1e-4 (also for CUDA-tagged and legacy files)."""
    model, info = load_checkpoint(clovaai_dir / f"{name}{variant}.pth.tar")
    reference = np.load(clovaai_dir / f"{name}{'.bnperturbed' if variant == '.bnperturbed' else ''}.reference.npz")
    meta = json.loads((clovaai_dir / f"{name}.json").read_text())
    arch, classes, dataset = OFFICIAL[name]
    assert (info.format, info.arch, info.num_classes, info.dataset) == ("clovaai-cutmix", arch, classes, dataset)
    assert info.num_parameters == meta["num_parameters"]
    np.testing.assert_allclose(info.mean, meta["normalize_mean"], atol=1e-6)
    np.testing.assert_allclose(info.std, meta["normalize_std"], atol=1e-6)
    with torch.no_grad():
        logits, pooled, _ = model.forward_all(torch.from_numpy(reference["pixels"]))
    assert np.abs(logits.numpy() - reference["logits"]).max() < 1e-4
    assert np.abs(pooled.numpy() - reference["pooled_features"]).max() < 1e-4
    # normalization inside the model equals the official transform
    np.testing.assert_allclose(model.normalize(torch.from_numpy(reference["pixels"])).numpy(),
                               reference["normalized"], atol=1e-5)
    if variant == "":
        assert info.file_sha256 == meta["checkpoint_sha256"]


def test_cuda_tagged_files_hash_like_the_plain_ones(clovaai_dir):
    hashes = {load_checkpoint(clovaai_dir / f"resnet_cifar10_d20{v}.pth.tar")[1].weights_sha256
              for v in ("", ".cudatag", ".cudatag_legacy")}
    assert len(hashes) == 1


def _roundtrip_logits(model, other, size=32):
    x = torch.rand(3, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), other.eval()(x))


def test_our_format_round_trip_and_weights_only(tmp_path):
    model = create_model("cifar_resnet20", 10, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4))
    path = save_checkpoint(model, tmp_path / "sub" / "m.pth", method="cutmix", dataset="cifar10",
                           train_config={"lr": 0.1, "beta": 1.0, "milestones": (150, 225)})
    raw = torch.load(path, weights_only=True)  # plain types only
    assert raw["format"] == "cutmix-eval" and raw["method"] == "cutmix"
    assert raw["train_config"]["milestones"] == [150, 225]
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary file left behind
    loaded, info = load_checkpoint(path)
    assert (info.format, info.method, info.dataset, info.normalization_source) == \
        ("cutmix-eval", "cutmix", "cifar10", "checkpoint")
    np.testing.assert_allclose(info.mean, [0.4, 0.5, 0.6], atol=1e-6)
    assert info.weights_sha256 == raw["weights_sha256"] == weights_sha256(model.net.state_dict())
    _roundtrip_logits(model, loaded)


def test_tampered_weights_are_detected(tmp_path):
    model = create_model("gapnet", 4)
    path = save_checkpoint(model, tmp_path / "m.pth")
    raw = torch.load(path, weights_only=True)
    raw["state_dict"]["fc.bias"] += 1
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)


@pytest.mark.parametrize("wrap", ["module.", "_orig_mod.", "module._orig_mod.", ""])
def test_raw_state_dicts_with_wrapper_prefixes(tmp_path, wrap):
    model = create_model("cifar_resnet:depth=29,bottleneck=true", 100)
    torch.save({wrap + k: v for k, v in model.net.state_dict().items()}, tmp_path / "raw.pt")
    loaded, info = load_checkpoint(tmp_path / "raw.pt")
    assert info.format == "state-dict" and info.arch == "cifar_resnet:depth=29,bottleneck=true"
    assert info.num_classes == 100
    _roundtrip_logits(model, loaded)


@pytest.mark.parametrize("arch,expected", [
    ("pyramidnet:depth=20,alpha=27,bottleneck=false", "pyramidnet:depth=20,alpha=27.0,bottleneck=false"),
    ("pyramidnet:depth=29,alpha=12.5,bottleneck=true", None),  # equivalent alpha, same network
])
def test_pyramidnet_shapes_infer_depth_alpha_bottleneck(tmp_path, arch, expected):
    model = create_model(arch, 10)
    torch.save({"state_dict": {"module." + k: v for k, v in model.net.state_dict().items()}, "arch": "pyramidnet",
                "epoch": 1, "best_err1": 50.0, "best_err5": 10.0}, tmp_path / "p.pth.tar")
    loaded, info = load_checkpoint(tmp_path / "p.pth.tar")
    if expected:
        assert info.arch == expected
    _roundtrip_logits(model, loaded)


@pytest.mark.parametrize("name", ["resnet50", "resnext50_32x4d", "resnet18"])
def test_torchvision_and_official_imagenet_resnets(tmp_path, name):
    original = torchvision.models.get_model(name, weights=None, num_classes=12).eval()
    torch.save({"state_dict": {"module." + k: v for k, v in original.state_dict().items()}, "arch": "resnet",
                "epoch": 300, "best_err1": 21.4, "best_err5": 5.92}, tmp_path / "r.pth.tar")
    model, info = load_checkpoint(tmp_path / "r.pth.tar")
    assert info.arch == f"torchvision/{name}" and info.num_classes == 12
    assert info.normalization_source.startswith("ImageNet")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), original(model.normalize(x)))


def test_timm_training_checkpoint_with_namespace_and_ema(tmp_path):
    net = timm.create_model("resnet10t", num_classes=6)
    ema = {k: v.clone() + (0.5 if k == "fc.bias" else 0) for k, v in net.state_dict().items()}
    torch.save({"epoch": 3, "arch": "resnet10t", "state_dict": net.state_dict(), "state_dict_ema": ema,
                "args": argparse.Namespace(lr=0.2, model="resnet10t"), "metric": np.float64(71.5)},
               tmp_path / "timm.pth.tar")
    model, info = load_checkpoint(tmp_path / "timm.pth.tar")
    assert (info.format, info.arch, info.num_classes) == ("timm", "timm/resnet10t", 6)
    assert info.training["args"]["lr"] == 0.2 and info.training["weights_key"] == "state_dict"
    ema_model, ema_info = load_checkpoint(tmp_path / "timm.pth.tar", ema=True)
    assert ema_info.training["weights_key"] == "state_dict_ema"
    torch.testing.assert_close(ema_model.net.fc.bias, model.net.fc.bias + 0.5)


def test_flags_override_detection(clovaai_dir):
    path = clovaai_dir / "resnet_cifar10_d20.pth.tar"
    _, info = load_checkpoint(path, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), num_classes=10,
                              arch="cifar_resnet20")
    assert info.mean == [0.5, 0.5, 0.5] and info.normalization_source == "--mean/--std"


# ------------------------------------------------------------------ error paths

def test_missing_empty_html_truncated(tmp_path, clovaai_dir):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.pth")
    (tmp_path / "page.pth").write_text("<!DOCTYPE html><html><title>Google Drive - Virus scan warning</title>")
    with pytest.raises(CheckpointError, match="HTML"):
        load_checkpoint(tmp_path / "page.pth")
    data = (clovaai_dir / "resnet_cifar10_d20.pth.tar").read_bytes()
    for name, cut in [("half.pth", len(data) // 2), ("tail.pth", len(data) - 100)]:
        (tmp_path / name).write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated or corrupted"):
            load_checkpoint(tmp_path / name)
    legacy = (clovaai_dir / "resnet_cifar10_d20.cudatag_legacy.pth.tar").read_bytes()
    (tmp_path / "legacy_half.pth").write_bytes(legacy[: len(legacy) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(tmp_path / "legacy_half.pth")


class _Payload:
    """Unpickling this writes a file: the attack a checkpoint can carry."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (Path.write_text, (Path(self.target), "pwned"))


def test_code_carrying_pickle_is_refused_and_not_run(tmp_path):
    target = tmp_path / "pwned.txt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "evil": _Payload(target)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="trust-checkpoint"):
        load_checkpoint(tmp_path / "evil.pth")
    assert not target.exists()
    # plain pickle (not torch.save) with the same payload
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"state_dict": _Payload(target)}))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pkl")
    assert not target.exists()


def test_pickled_module_needs_trust(tmp_path):
    model = create_model("cifar_resnet20", 10)
    torch.save(model.net, tmp_path / "module.pth")
    with pytest.raises(CheckpointError, match="trust-checkpoint"):
        load_checkpoint(tmp_path / "module.pth")
    with pytest.warns(UserWarning, match="full unpickling"):
        loaded, info = load_checkpoint(tmp_path / "module.pth", trust=True)
    assert info.format == "pickled-module"
    _roundtrip_logits(model, loaded)


def test_state_dict_for_another_architecture(clovaai_dir):
    with pytest.raises(CheckpointError, match="does not fit architecture cifar_resnet.*missing"):
        load_checkpoint(clovaai_dir / "resnet_cifar10_d20.pth.tar", arch="cifar_resnet32")
    with pytest.raises(CheckpointError, match="does not fit architecture pyramidnet"):
        load_checkpoint(clovaai_dir / "resnet_cifar10_d20.pth.tar", arch="pyramidnet:depth=20,alpha=10")


def test_class_count_mismatch(clovaai_dir):
    with pytest.raises(CheckpointError, match="has 10 classes but 100"):
        load_checkpoint(clovaai_dir / "resnet_cifar10_d20.pth.tar", num_classes=100)


def test_unrecognized_contents(tmp_path):
    torch.save({"weights": {"a.weight": torch.zeros(1)}, "note": "x"}, tmp_path / "nowts.pth")
    with pytest.raises(CheckpointError, match="without weights"):
        load_checkpoint(tmp_path / "nowts.pth")
    torch.save({"encoder.blocks.0.w": torch.zeros(3, 3)}, tmp_path / "unknown.pth")
    with pytest.raises(CheckpointError, match="no model family recognises its keys.*nearest: .*Pass --arch"):
        load_checkpoint(tmp_path / "unknown.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a dict"):
        load_checkpoint(tmp_path / "list.pth")


def test_read_checkpoint_file_is_cpu_only(clovaai_dir):
    obj = read_checkpoint_file(clovaai_dir / "pyramidnet_cifar100_d56_a48_bottleneck.cudatag.pth.tar")
    assert all(t.device.type == "cpu" for t in obj["state_dict"].values())


@pytest.mark.parametrize("name", ["densenet121", "densenet161"])
def test_torchvision_densenets_are_named_by_their_blocks_and_growth(tmp_path, name):
    torch.manual_seed(0)
    original = torchvision.models.get_model(name, weights=None, num_classes=5).eval()
    torch.save(original.state_dict(), tmp_path / "d.pth")
    model, info = load_checkpoint(tmp_path / "d.pth")
    assert (info.arch, info.num_classes, info.arch_source) == (f"torchvision/{name}", 5, "inferred from the tensor shapes")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), original(model.normalize(x)))
