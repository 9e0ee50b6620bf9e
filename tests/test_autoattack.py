"""AutoAttack in the `adversarial` analysis against the authors' package called directly (as
RobustBench and the package's README call it) on the same model, images and seed: identical
per-image robust flags; plus the checks' flags in the record and the one-line mistakes.

The package's full settings (100 iterations, 9 targets, 5,000 Square queries) take minutes per
handful of images on a CPU, so both sides run a reduced configuration set through the package's
own attributes (:func:`reduce`): 4 iterations, 2 target classes, 40 Square queries, 2 EOT
samples. Which attacks run, their order and everything else stay the version's own."""

import json

import numpy as np
import pytest
import torch

pyautoattack = pytest.importorskip("pyautoattack")

from cutmix_eval.cli import main  # noqa: E402
from cutmix_eval.errors import UserError  # noqa: E402
from cutmix_eval.evaluate import adversarial  # noqa: E402
from cutmix_eval.evaluate.adversarial import evaluate_adversarial  # noqa: E402
from cutmix_eval.evaluate.autoattack import autoattack_adversary, check_logits, run_autoattack, stage_key  # noqa: E402
from cutmix_eval.fileio import PartFolder  # noqa: E402
from cutmix_eval.models import create_model  # noqa: E402
from cutmix_eval.models.checkpoint import save_checkpoint  # noqa: E402
from cutmix_eval.settings import RunSettings  # noqa: E402


def reduce(adversary):
    """The package's attacks, cut down through their own attributes (see the module docstring)."""
    adversary.apgd.n_iter = adversary.apgd_targeted.n_iter = adversary.fab.n_iter = 4
    adversary.apgd_targeted.n_target_classes = adversary.fab.n_target_classes = 2
    adversary.square.n_queries = 40
    adversary.apgd.eot_iter = min(adversary.apgd.eot_iter, 2)
    return adversary


@pytest.fixture
def reduced(monkeypatch):
    monkeypatch.setattr(adversarial, "autoattack_adversary", lambda *a, **k: reduce(autoattack_adversary(*a, **k)))


@pytest.fixture(scope="module")
def data(small_labelled):
    dataset, model = small_labelled
    images = torch.stack([dataset[i]["image"].as_subclass(torch.Tensor) for i in range(len(dataset))])
    labels = torch.as_tensor([int(dataset[i]["label"]) for i in range(len(dataset))])
    return dataset, model, images, labels


def reference_flags(model, images, labels, norm, eps, version, batch_size):
    """The package called directly: robust = the top-1 class it returns is the label."""
    adversary = reduce(pyautoattack.AutoAttack(model.eval(), norm=norm, eps=eps, version=version, seed=0,
                                               device="cpu"))
    _, predicted = adversary.run_standard_evaluation(images, labels, batch_size=batch_size)
    return (predicted == labels).numpy()


@pytest.mark.parametrize("norm, eps, version", [("Linf", (2 / 255, 6 / 255), "standard"), ("L2", (2.5,), "standard"),
                                                ("Linf", (6 / 255,), "rand")])
def test_robust_flags_equal_the_package_called_directly(data, reduced, norm, eps, version):
    dataset, model, images, labels = data
    result = evaluate_adversarial(model, dataset, attacks=("autoattack",), eps=eps, norm=norm,
                                  autoattack_version=version, settings=RunSettings(batch_size=16, progress=False))
    ours = result.per_sample["autoattack/correct"]
    assert ours.shape == (len(labels), len(eps))
    for j, e in enumerate(eps):
        theirs = reference_flags(model, images, labels, norm, e, version, batch_size=16)
        np.testing.assert_array_equal(ours[:, j], theirs)
    assert 0 < ours[:, -1].sum() < result.per_sample["clean_correct"].sum()  # some images fooled, some not
    assert result.config["norm"] == norm and result.config["autoattack_version"] == version
    assert set(result.curves["autoattack"]["checks"]) == {k.split("@")[1] for k in result.metrics
                                                          if k.startswith("autoattack/accuracy@")}
    assert result.versions["pyautoattack"] == pyautoattack.__version__


def test_checks_flags_are_kept_not_printed(data, capsys):
    _, model, images, labels = data

    class Noisy(torch.nn.Module):  # a randomized model: the package's check_randomized flags it
        def forward(self, x):
            return model(x) + torch.randn(len(x), 10)

    adversary = reduce(autoattack_adversary(Noisy(), norm="Linf", eps=1 / 255, version="standard", seed=0,
                                            device="cpu"))
    adversary.attacks_to_run = ["apgd-ce"]
    _, flags = run_autoattack(adversary, images[:8], labels[:8], batch_size=8)
    assert "check_randomized" in flags and "rand" in flags["check_randomized"]
    assert "randomized" not in capsys.readouterr().err


def test_probabilities_and_wrong_units_are_refused(data, tmp_path, capsys):
    dataset, model, images, labels = data
    with torch.no_grad():
        probabilities = model(images).softmax(dim=1)
    with pytest.raises(UserError, match="probabilities"):
        check_logits(probabilities)
    check_logits(probabilities.log())  # log-probabilities are logits up to a constant
    with pytest.raises(UserError, match="8/255"):
        evaluate_adversarial(model, dataset, attacks=("autoattack",), eps=(8,), settings=RunSettings(progress=False))
    with pytest.raises(UserError, match="untargeted"):
        evaluate_adversarial(model, dataset, attacks=("autoattack",), targeted=True,
                             settings=RunSettings(progress=False))

    torch.manual_seed(0)
    net = create_model("gapnet:width=4", 10)
    ckpt = save_checkpoint(net, tmp_path / "m.pth", method="cutmix")
    args = ["adversarial", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "4", "--attack", "autoattack",
            "--output-dir", str(tmp_path / "out")]
    assert main(args + ["--eps", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert "8/255" in err and len(err.splitlines()) == 1
    net.register_forward_hook(lambda module, inputs, output: output.softmax(dim=1))  # a softmax output
    with pytest.raises(UserError, match="not logits"):
        evaluate_adversarial(net, dataset, attacks=("autoattack",), settings=RunSettings(limit=4, progress=False))


def test_command_writes_a_robustbench_summary(tmp_path, capsys, reduced):
    torch.manual_seed(0)
    ckpt = save_checkpoint(create_model("gapnet:width=4", 10), tmp_path / "m.pth", method="cutmix")
    out = tmp_path / "out"
    assert main(["adversarial", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "8", "--attack",
                 "autoattack", "--norm", "L2", "--eps", "0.5", "--output-dir", str(out),
                 "--results", str(tmp_path / "results")]) == 0
    record = json.loads((out / "adversarial.json").read_text())
    (summary,) = json.loads((out / "autoattack.json").read_text())
    assert summary["threat_model"] == "L2" and summary["eps"] == 0.5 and summary["n_images"] == 8
    assert summary["version"] == "standard" and summary["package"] == f"pyautoattack {pyautoattack.__version__}"
    assert summary["clean_acc"] == pytest.approx(100 * record["metrics"]["clean_accuracy"])
    assert summary["autoattack_acc"] == pytest.approx(100 * record["metrics"]["autoattack/accuracy@0.5"])
    assert main(["report", str(tmp_path / "results"), "--format", "csv", "--out", str(tmp_path / "report")]) == 0
    rows = (tmp_path / "report" / "report.csv").read_text()
    assert f"AUTOATTACK eps 0.5: checks flagged,,lower,cutmix,{record['metrics']['autoattack/flags@0.5']:g}" in rows


def test_an_interrupted_run_continues_after_its_last_finished_attack(data, reduced, tmp_path, monkeypatch):
    """Ctrl-C during FAB-T: APGD-CE and APGD-T are kept in the work folder, the rerun runs FAB-T and
    Square alone, its robust flags equal the package's single call, and nothing is left behind."""
    dataset, model, images, labels = data
    work = tmp_path / "work"
    settings = RunSettings(batch_size=16, progress=False, parts=PartFolder(work))
    calls, run = [], pyautoattack.AutoAttack.run_standard_evaluation

    def spy(adversary, x, y, **kwargs):
        calls.append(list(adversary.attacks_to_run))
        if interrupt and adversary.attacks_to_run == ["fab-t"]:
            raise KeyboardInterrupt
        return run(adversary, x, y, **kwargs)

    monkeypatch.setattr(pyautoattack.AutoAttack, "run_standard_evaluation", spy)
    interrupt = True
    with pytest.raises(KeyboardInterrupt):
        evaluate_adversarial(model, dataset, attacks=("autoattack",), eps=(6 / 255,), settings=settings)
    assert calls == [["apgd-ce"], ["apgd-t"], ["fab-t"]] and len(list(work.glob("autoattack-*.pt"))) == 1
    calls.clear()
    interrupt = False
    result = evaluate_adversarial(model, dataset, attacks=("autoattack",), eps=(6 / 255,), settings=settings)
    assert calls == [["fab-t"], ["square"]]
    np.testing.assert_array_equal(result.per_sample["autoattack/correct"][:, 0],
                                  reference_flags(model, images, labels, "Linf", 6 / 255, "standard", batch_size=16))
    assert list(work.iterdir()) == []


def test_stage_keys_are_digests_of_everything_the_outcome_depends_on(data):
    _, model, images, labels = data
    adversary = autoattack_adversary(model, norm="Linf", eps=4 / 255, version="standard", seed=0, device="cpu")
    name = stage_key(adversary, images, labels, "weights", 16)
    assert stage_key(adversary, images, labels, "weights", 16) == name
    other_eps = autoattack_adversary(model, norm="Linf", eps=8 / 255, version="standard", seed=0, device="cpu")
    others = {stage_key(other_eps, images, labels, "weights", 16),
              stage_key(adversary, images[:-1], labels[:-1], "weights", 16),
              stage_key(adversary, images, labels, "other weights", 16),
              stage_key(adversary, images, labels, "weights", 8),
              stage_key(reduce(adversary), images, labels, "weights", 16)}
    assert name not in others and len(others) == 5


def test_flags_raised_on_any_process_are_the_runs():
    assert adversarial.merged_checks([{"0.0157": {"check_randomized": "a"}},
                                      {"0.0157": {"check_dynamic": "b"}, "0.0314": {}}, {}]) == {
        "0.0157": {"check_randomized": "a", "check_dynamic": "b"}, "0.0314": {}}
