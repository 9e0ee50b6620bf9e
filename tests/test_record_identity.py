"""A record is reused only for the same model, the same images and the same options (issue 24):
jobs carry the dataset's identity (where its files are and a fingerprint of them), the
identities of the other data an analysis reads (OOD sets, a reference model), the loading
overrides given on top of the checkpoint, and the limit as it applies to the data."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from conftest import CLI, cli_env, tiny_checkpoint
from cutmix_eval.data import create_dataset
from cutmix_eval.data.base import files_identity


def image_tree(root: Path, per_class: int, shade: int) -> Path:
    """An ImageFolder tree of 2 classes with ``per_class`` 40 x 40 PNGs each, coloured by ``shade``."""
    rng = np.random.default_rng(shade)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
    return root


def two_class_checkpoint(path: Path) -> Path:
    from cutmix_eval.models import create_model
    from cutmix_eval.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(create_model("gapnet:width=4", 2), path, method="baseline")


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *argv], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300)


def summary(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_another_tree_under_the_same_dataset_name_is_evaluated_not_reused(tmp_path):
    ckpt = two_class_checkpoint(tmp_path / "m.pth")
    a, b = image_tree(tmp_path / "A", 3, shade=1), image_tree(tmp_path / "B", 5, shade=2)
    argv = ["evaluate", "--ckpt", str(ckpt), "--data", "imagefolder", "--results", str(tmp_path / "R"), "--json"]
    first = run(*argv, "--data-root", str(a), cwd=tmp_path)
    second = run(*argv, "--data-root", str(b), cwd=tmp_path)
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    assert "recorded in" in first.stdout and "recorded in" in second.stdout and "reused" not in second.stdout
    assert summary(first.stdout)["metrics"]["num_images"] == 6 and summary(second.stdout)["metrics"]["num_images"] == 10
    again = run(*argv, "--data-root", str(a), cwd=tmp_path)  # A again: its record, saying what matched
    assert again.returncode == 0 and summary(again.stdout)["metrics"] == summary(first.stdout)["metrics"]
    line = next(line for line in again.stdout.splitlines() if line.startswith("reused the recorded"))
    assert f"6 files in {a.resolve()}" in line and "fingerprint" in line and "reused" not in again.stderr
    # a file of A rewritten in place: same names, other pixels -> evaluated again
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(a / "a" / "0.png")
    os.utime(a / "a" / "0.png", ns=(1, 1))
    changed = run(*argv, "--data-root", str(a), cwd=tmp_path)
    assert changed.returncode == 0 and "recorded in" in changed.stdout
    assert len(list((tmp_path / "R").glob("*.json"))) == 3


def test_files_identity_follows_names_sizes_times_and_place(tmp_path):
    tree = image_tree(tmp_path / "t", 2, shade=3)
    files = sorted(tree.rglob("*.png"))
    base = files_identity(files)
    assert base["files"] == 4 and base["folder"] == str(tree.resolve())
    assert files_identity(files) == base and files_identity(files[::-1]) != base
    assert files_identity(files[:3]) != base
    os.utime(files[0], ns=(5, 5))
    assert files_identity(files) != base
    moved = tmp_path / "elsewhere"
    tree.rename(moved)
    assert files_identity(sorted(moved.rglob("*.png")))["sha256"] != base["sha256"]  # mtime of file 0 changed
    assert files_identity(sorted(moved.rglob("*.png")))["folder"] == str(moved.resolve())


def test_every_registered_dataset_kind_has_an_identity():
    """Generated sets are identified by their settings (no files to fingerprint)."""
    test = create_dataset("synthetic", "test", num_samples=8)
    assert test.identity["generated"] == "synthetic" and test.identity["num_samples"] == 8
    assert create_dataset("synthetic", "test", num_samples=8, seed=1).identity != test.identity
    assert create_dataset("uniform", num_samples=3).identity != create_dataset("gaussian", num_samples=3).identity


def test_limit_beyond_the_data_is_said_and_keyed_as_no_limit(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "m.pth")
    argv = ["evaluate", "--ckpt", str(ckpt), "--data", "synthetic", "--results", str(tmp_path / "R"), "--json"]
    limited = run(*argv, "--limit", "3000", cwd=tmp_path)
    assert limited.returncode == 0, limited.stderr
    assert "--limit 3000 is more than the 2000 images of synthetic/test: evaluating all 2000" in limited.stdout
    assert summary(limited.stdout)["metrics"]["num_images"] == 2000
    whole = run(*argv, cwd=tmp_path)
    assert whole.returncode == 0 and "reused the recorded" in whole.stdout


def test_loading_overrides_and_ood_folders_are_part_of_the_job(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "m.pth")
    argv = ["ood", "--ckpt", str(ckpt), "--in", "synthetic", "--limit", "16", "--results", str(tmp_path / "R"),
            "--output-dir", str(tmp_path / "out"), "--json"]
    folder = tmp_path / "ood"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    first = run(*argv, "--out", str(folder), cwd=tmp_path)
    assert first.returncode == 0 and "recorded in" in first.stdout, first.stderr
    assert "reused the recorded" in run(*argv, "--out", str(folder), cwd=tmp_path).stdout
    Image.fromarray(np.full((64, 64, 3), 255, np.uint8)).save(folder / "9.png")  # one more OOD image
    grown = run(*argv, "--out", str(folder), cwd=tmp_path)
    assert grown.returncode == 0 and "recorded in" in grown.stdout
    other_mean = run(*argv, "--out", str(folder), "--mean", "0.4,0.4,0.4", cwd=tmp_path)
    assert other_mean.returncode == 0 and "recorded in" in other_mean.stdout


def test_command_outputs_of_two_checkpoints_with_the_same_file_name_never_share_a_folder(tmp_path):
    """runs/s0/cutmix/last.pth and runs/s1/cutmix/last.pth used to overwrite each other's
    reports/calibration/cutmix-last-synthetic/."""
    folders = []
    for seed in (0, 1):
        ckpt = tiny_checkpoint(tmp_path / "runs" / f"s{seed}" / "cutmix" / "last.pth", seed=seed)
        done = run("calibration", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "8", "--json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        record = Path(summary(done.stdout)["record"])
        folders.append(record.parent)
        assert record.parent.name.startswith("cutmix-last-") and record.parent.name.endswith("-synthetic")
    assert folders[0] != folders[1] and all((tmp_path / f / "calibration.json").is_file() for f in folders)
