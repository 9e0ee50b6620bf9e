"""Evaluation under torchrun (gloo, two CPU processes): the records equal one process's."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from cutmix_eval.distributed import gather_rows, shard_range
from cutmix_eval.models import create_model
from cutmix_eval.models.checkpoint import save_checkpoint
from cutmix_eval.report.store import ResultStore

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "cutmix_eval"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # CPU processes (gloo) on a GPU machine too

STUDY = """
[study]
name = "{name}"
output = "{name}"
formats = ["md"]
batch_size = 8

[[checkpoints]]
path = "model.pth"
method = "cutmix"

[[datasets]]
name = "synthetic"
limit = 21          # odd: the two shards differ in size

[analyses.classification]
[analyses.localization]
examples = 4
[analyses.ood]
num_noise = 15
[analyses.occlusion]
fractions = [0.0, 0.5, 1.0]
[analyses.inbetween]
num_pairs = 13
mix_grid = [0.0, 0.5, 1.0]
cut_grid = [0.0, 0.5, 1.0]
[analyses.adversarial]
eps = [0.00784313725490196, 0.03137254901960784]
[analyses.corruption]
corruptions = "noise"
limit = 7
"""


def test_one_process_helpers_are_identities():
    assert shard_range(5) == range(5)
    array = np.arange(6).reshape(3, 2)
    assert gather_rows(array) is array


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    torch.manual_seed(3)
    save_checkpoint(create_model("gapnet:width=4", 10, input_size=(3, 64, 64)), root / "model.pth", method="cutmix",
                    dataset="synthetic")
    return root


@pytest.mark.slow  # about 30-55 s: `make test-all`
def test_a_study_under_torchrun_writes_the_records_of_one_process(checkpoint):
    for name in ("one", "two"):
        (checkpoint / f"{name}.toml").write_text(STUDY.format(name=name))
    one = subprocess.run([sys.executable, "-m", "cutmix_eval", "study", str(checkpoint / "one.toml")], env=ENV,
                         capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(TORCHRUN + ["study", str(checkpoint / "two.toml")], env=ENV, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("[7/7]") == 1 and two.stdout.count("report (written)") == 1  # rank 0 alone speaks
    assert_same_records(checkpoint / "one" / "results", checkpoint / "two" / "results", 7)


def assert_same_records(one, two, count: int) -> None:
    """The records of two results folders pair up by file name (job key) and agree within float
    tolerance (sums over ranks add in another order): metrics and per-sample arrays within 1e-5
    (absolute or relative), CAM examples (float16) within 2e-3."""
    records = [{r.path.name: r for r in ResultStore(folder).records()} for folder in (one, two)]
    assert sorted(records[0]) == sorted(records[1]) and len(records[0]) == count
    for file, single in records[0].items():
        double = records[1][file]
        assert double.job == single.job
        for a, b in zip(single.results, double.results):
            assert a.metrics.keys() == b.metrics.keys(), file
            for key, value in a.metrics.items():
                assert b.metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-5), (file, key)
            assert a.per_sample.keys() == b.per_sample.keys()
            for key, value in a.per_sample.items():
                np.testing.assert_allclose(b.per_sample[key], value, rtol=1e-5, atol=1e-5, err_msg=f"{file} {key}")
            for key, value in a.artifacts.items():  # CAM examples: float16 images and maps, titles
                if value.dtype.kind == "f":
                    np.testing.assert_allclose(b.artifacts[key], value, atol=2e-3, err_msg=key)
                else:
                    np.testing.assert_array_equal(b.artifacts[key], value, err_msg=key)


@pytest.mark.slow  # about 30-55 s: `make test-all`
def test_gradient_scores_fitted_scores_and_released_corruptions_under_torchrun(checkpoint, tmp_path):
    """ODIN (input gradients, temperature and noise chosen on a held-out part), Mahalanobis
    (fitted on a labelled set) and a released corrupted set (CIFAR-10-C files) give the
    records of one process."""
    from test_data_corrupted import make_cifar_c

    make_cifar_c(tmp_path / "data", corruptions=("gaussian_noise", "fog"), labels=(3, 0, 9, 1, 5, 7, 2))
    model = str(checkpoint / "model.pth")
    commands = [["ood", "--ckpt", model, "--in", "synthetic", "--limit", "21", "--out", "gaussian",
                 "--out", "synthetic-unseen", "--num-noise", "15", "--score", "msp,odin,mahalanobis",
                 "--tuning", "test-ood-holdout", "--holdout", "6", "--fit-data", "synthetic", "--fit-limit", "60"],
                ["corruption", "--ckpt", model, "--data", "cifar10-c", "--data-root", str(tmp_path / "data"),
                 "--corruptions", "gaussian_noise,fog"]]
    for name, launcher in (("one", [sys.executable, "-m", "cutmix_eval"]), ("two", TORCHRUN)):
        for argv in commands:
            done = subprocess.run(launcher + argv + ["--results", str(tmp_path / name), "--output-dir",
                                                     str(tmp_path / f"{name}-out"), "--batch-size", "4"],
                                  env=ENV, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr[-3000:]
    assert_same_records(tmp_path / "one", tmp_path / "two", 2)


@pytest.mark.slow  # about 30-55 s: `make test-all`
def test_a_command_under_torchrun_prints_and_records_once(checkpoint):
    results = checkpoint / "cli-results"
    argv = ["occlusion", "--ckpt", str(checkpoint / "model.pth"), "--data", "synthetic", "--limit", "9",
            "--fractions", "0,1", "--examples", "0", "--results", str(results), "--output-dir",
            str(checkpoint / "cli-out"), "--json"]
    done = subprocess.run(TORCHRUN + argv, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("recorded in") == 1
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["metrics"]["num_images"] == 9 and len(list(results.glob("*.json"))) == 1
    again = subprocess.run(TORCHRUN + argv, env=ENV, capture_output=True, text=True)
    assert again.returncode == 0 and "reused the recorded" in again.stdout


@pytest.mark.slow
def test_autoattack_under_torchrun(checkpoint, tmp_path):
    """AutoAttack (rand version: about 30 s on 2 CPU cores) under torchrun: each process attacks its
    own images; the record equals one process's, flags included."""
    argv = ["adversarial", "--ckpt", str(checkpoint / "model.pth"), "--data", "synthetic", "--limit", "16",
            "--attack", "autoattack", "--autoattack-version", "rand", "--eps", "2/255", "--batch-size", "4"]
    for name, launcher in (("one", [sys.executable, "-m", "cutmix_eval"]), ("two", TORCHRUN)):
        done = subprocess.run(launcher + argv + ["--results", str(tmp_path / name), "--output-dir",
                                                 str(tmp_path / f"{name}-out")], env=ENV, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    assert_same_records(tmp_path / "one", tmp_path / "two", 1)
    checks = [json.loads((tmp_path / f"{name}-out" / "adversarial.json").read_text())["curves"]["autoattack"]["checks"]
              for name in ("one", "two")]
    assert checks[0] == checks[1]
