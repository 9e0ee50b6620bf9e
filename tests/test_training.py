"""The training loop: files, recipes, resume after SIGKILL, torchrun with gloo, errors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from cutmix_eval.cli import main
from cutmix_eval.errors import UserError
from cutmix_eval.models import create_model
from cutmix_eval.models.checkpoint import load_checkpoint, save_checkpoint
from cutmix_eval.train import RECIPES, get_recipe, train

TINY = dict(arch="gapnet:width=4", train_samples=96, test_samples=64, batch_size=32, workers=0)


def tiny(**overrides):
    return get_recipe("quick", **{**TINY, "epochs": 2, **overrides})


def test_every_named_recipe_is_valid_and_overridable():
    for name, recipe in RECIPES.items():
        assert get_recipe(name) == recipe and recipe.description
    assert get_recipe("cifar100-pyramidnet200", epochs=5).epochs == 5
    paper = RECIPES["cifar100-pyramidnet200"]
    assert (paper.arch, paper.batch_size, paper.lr, paper.milestones, paper.cutmix_prob, paper.weight_decay) == \
        ("pyramidnet200", 64, 0.25, (150, 225), 0.5, 1e-4)
    imagenet = RECIPES["imagenet-resnet50"]
    assert (imagenet.batch_size, imagenet.lr, imagenet.milestones, imagenet.cutmix_prob) == (256, 0.1, (75, 150, 225), 1.0)
    with pytest.raises(UserError, match="no field"):
        get_recipe("quick", learning_rate=0.1)
    with pytest.raises(UserError, match="schedule"):
        get_recipe("quick", schedule="linear")
    with pytest.raises(UserError, match="unknown recipe"):
        get_recipe("imagenet-vit")


@pytest.mark.parametrize("method", ["baseline", "mixup", "cutout", "cutmix"])
def test_training_writes_checkpoints_and_log(tmp_path, method):
    outcome = train(method, tiny(), tmp_path / method, progress=False, log=lambda _: None)
    lines = [json.loads(line) for line in (tmp_path / method / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2] and lines == outcome.history
    assert {"lr", "train_loss", "test_top1_error", "test_top5_error", "images_per_second"} <= set(lines[0])
    model, info = load_checkpoint(outcome.last)
    assert info.method == method and info.dataset == "synthetic" and info.arch == "gapnet:width=4,norm=batch"
    assert info.training["train_config"]["epochs"] == 2
    best, best_info = load_checkpoint(outcome.best)
    assert best_info.training["extra"]["best_top1_error"] == outcome.best_top1_error
    raw = torch.load(outcome.last, weights_only=True)  # optimizer state and all: still weights_only
    assert raw["train_state"]["epoch"] == 2


def test_methods_share_initial_weights_and_data_order(tmp_path):
    recipe = tiny(epochs=1, lr=1e-9, weight_decay=0.0, momentum=0.0, nesterov=False)
    a = train("baseline", recipe, tmp_path / "a", progress=False, log=lambda _: None)
    b = train("cutout", recipe, tmp_path / "b", progress=False, log=lambda _: None)
    wa, wb = load_checkpoint(a.last)[0].net.state_dict(), load_checkpoint(b.last)[0].net.state_dict()
    for key in wa:  # lr ~ 0: weights stay at the shared initialization
        if "running" not in key and "num_batches" not in key:
            torch.testing.assert_close(wa[key], wb[key], atol=1e-6, rtol=0)


def test_same_seed_same_weights_and_existing_run_is_not_overwritten(tmp_path):
    a = train("cutmix", tiny(), tmp_path / "a", progress=False, log=lambda _: None)
    b = train("cutmix", tiny(), tmp_path / "b", progress=False, log=lambda _: None)
    for (ka, va), (_, vb) in zip(load_checkpoint(a.last)[0].net.state_dict().items(),
                                  load_checkpoint(b.last)[0].net.state_dict().items()):
        assert torch.equal(va, vb), ka
    with pytest.raises(UserError, match="already holds a run"):
        train("cutmix", tiny(), tmp_path / "a", progress=False, log=lambda _: None)
    done = train("cutmix", tiny(), tmp_path / "a", resume=True, progress=False, log=lambda _: None)
    assert len(done.history) == 2  # already complete: nothing more to do


def test_resume_errors(tmp_path):
    with pytest.raises(UserError, match="nothing to resume"):
        train("cutmix", tiny(), tmp_path / "none", resume=True, progress=False)
    train("cutmix", tiny(epochs=1), tmp_path / "run", progress=False, log=lambda _: None)
    with pytest.raises(UserError, match="method 'cutmix', not 'mixup'"):
        train("mixup", tiny(epochs=1), tmp_path / "run", resume=True, progress=False)
    with pytest.raises(UserError, match="other settings .*epochs 1 -> 3"):
        train("cutmix", tiny(epochs=3), tmp_path / "run", resume=True, progress=False)
    # a run of another class count in the folder
    other = tmp_path / "other"
    save_checkpoint(create_model("gapnet:width=4", 5), other / "last.pth", method="cutmix", dataset="synthetic",
                    train_config=tiny().to_dict(), train_state={"epoch": 1})
    (other / "log.jsonl").write_text("")
    with pytest.raises(UserError, match="has 5 classes but synthetic has 10"):
        train("cutmix", tiny(), other, resume=True, progress=False)


def test_user_errors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write .*choose another --out"):
        train("baseline", tiny(), blocker / "out", progress=False)
    with pytest.raises(UserError, match="unknown method"):
        train("manifold", tiny(), tmp_path / "m", progress=False)
    with pytest.raises(UserError, match="no labelled train split"):
        train("baseline", tiny(dataset="uniform"), tmp_path / "u", progress=False)
    with pytest.raises(UserError, match="not found"):
        train("baseline", tiny(dataset="cifar10"), tmp_path / "c", data_root=str(tmp_path), progress=False)
    for empty in ("a", "b"):  # class folders without a single image
        (tmp_path / "empty" / empty).mkdir(parents=True)
    with pytest.raises(UserError):
        train("baseline", tiny(dataset="imagefolder"), tmp_path / "e", data_root=str(tmp_path / "empty"),
              progress=False)
    with pytest.raises(UserError, match="train_samples must be >= 1"):
        tiny(train_samples=0)


def _cli(*argv):
    return [sys.executable, "-m", "cutmix_eval", "train", "--recipe", "quick", "--arch", "gapnet:width=4",
            "--train-samples", "256", "--test-samples", "32", "--batch-size", "16", "--workers", "0", *argv]


# puzzlemix: a model hook, an eval-mode saliency pass, gco (35 s: slow; every method's resume is tested
# in the default run by stopping after a checkpoint, test_training_methods.py)
@pytest.mark.parametrize("method", ["cutmix", pytest.param("puzzlemix", marks=pytest.mark.slow)])
def test_sigkill_then_resume_reaches_the_same_weights(tmp_path, method):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    epochs = ["--epochs", "5", "--method", method]
    subprocess.run(_cli(*epochs, "--out", str(tmp_path / "straight")), check=True, env=env, capture_output=True)
    log = tmp_path / "killed" / "log.jsonl"
    proc = subprocess.Popen(_cli(*epochs, "--out", str(tmp_path / "killed")), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 2):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before_kill = log.read_text().count("\n")
    assert 2 <= done_before_kill < 5, "the run finished before it could be killed"
    assert not list((tmp_path / "killed").glob(".*.tmp"))  # no half-written file left by the kill...
    load_checkpoint(tmp_path / "killed" / "last.pth")  # ...and the last checkpoint is whole
    resumed = subprocess.run(_cli(*epochs, "--out", str(tmp_path / "killed"), "--resume"), env=env,
                             capture_output=True, text=True, check=True)
    assert f"resuming {method} from epoch" in resumed.stdout + resumed.stderr
    straight = load_checkpoint(tmp_path / "straight" / "last.pth")[0].net.state_dict()
    killed = load_checkpoint(tmp_path / "killed" / "last.pth")[0].net.state_dict()
    for key in straight:
        assert torch.equal(straight[key], killed[key]), key
    lines = (tmp_path / "killed" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4, 5]


def test_torchrun_two_processes_match_one_process(tmp_path):
    """gloo, 2 CPU processes, same global batch: same weights as one process (GroupNorm
    net: BatchNorm would see half batches, and PyTorch has no CPU SyncBatchNorm)."""
    # 8 SGD steps: float reduction order differs (1e-8 after a step), and long runs amplify it
    args = ["--method", "baseline", "--arch", "gapnet:width=4,norm=group", "--augment", "none", "--epochs", "2",
            "--train-samples", "64"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # CPU processes on a GPU machine too
    subprocess.run(_cli(*args, "--out", str(tmp_path / "one")), check=True, env=env, capture_output=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(torchrun + ["-m", "cutmix_eval"] + _cli(*args, "--out", str(tmp_path / "two"))[3:],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    one = load_checkpoint(tmp_path / "one" / "last.pth")[0].net.state_dict()
    two = load_checkpoint(tmp_path / "two" / "last.pth")[0].net.state_dict()
    for key in one:
        torch.testing.assert_close(one[key], two[key], atol=1e-5, rtol=1e-4)
    log_one = [json.loads(x) for x in (tmp_path / "one" / "log.jsonl").read_text().splitlines()]
    log_two = [json.loads(x) for x in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert [round(r["train_loss"], 4) for r in log_one] == [round(r["train_loss"], 4) for r in log_two]


def test_cli_train_and_train_all(tmp_path, capsys):
    code = main(["train-all", "--recipe", "quick", "--arch", "gapnet:width=4", "--train-samples", "64",
                 "--test-samples", "32", "--epochs", "1", "--batch-size", "32", "--workers", "0",
                 "--methods", "baseline,cutmix", "--out", str(tmp_path), "--json"])
    out = capsys.readouterr().out
    runs = json.loads(out.strip().splitlines()[-1])["runs"]
    assert code == 0 and [r["method"] for r in runs] == ["baseline", "cutmix"]
    assert (tmp_path / "cutmix" / "last.pth").exists() and "best top-1 error (%)" in out
    assert main(["train-all", "--methods", "baseline,nope", "--recipe", "quick"]) == 2
    assert "unknown method nope" in capsys.readouterr().err


def test_batched_crop_flip_equals_the_per_image_loop():
    from cutmix_eval.train.augment import crop_flip_batch

    x = torch.rand(6, 3, 10, 12)
    out = crop_flip_batch(x, 4, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    offsets = torch.randint(0, 9, (2, 6), generator=generator)
    flips = torch.rand(6, generator=generator) < 0.5
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(6):
        crop = padded[i, :, offsets[0, i]:offsets[0, i] + 10, offsets[1, i]:offsets[1, i] + 12]
        assert torch.equal(out[i], crop.flip(-1) if flips[i] else crop)
    assert flips.any() and not flips.all()
