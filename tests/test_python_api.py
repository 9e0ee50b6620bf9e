"""The Python API as a notebook user reaches for it, and the CLI points that share its names:
one return type for every evaluator, timm's names on the model wrapper, torch's argument
order for saving, a short ``Result`` repr, and checkpoint paths that are folders."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from conftest import CLI, cli_env, tiny_checkpoint

from cutmix_eval.data import create_dataset
from cutmix_eval.errors import UserError
from cutmix_eval.evaluate import evaluate_classification
from cutmix_eval.evaluate.localization import evaluate_localization
from cutmix_eval.results import examples_from_arrays
from cutmix_eval.evaluate.ood import create_ood_sets, evaluate_ood
from cutmix_eval.models import create_model
from cutmix_eval.models.checkpoint import load_checkpoint, save_checkpoint
from cutmix_eval.report.store import ResultStore
from cutmix_eval.results import Result
from cutmix_eval.settings import RunSettings

QUIET = {"settings": RunSettings(batch_size=16, progress=False)}


@pytest.fixture(scope="module")
def test_set():
    return create_dataset("synthetic", "test", num_samples=24)


def test_every_evaluator_returns_results_and_ood_one_per_score_in_the_order_asked(model, test_set):
    classification = evaluate_classification(model, test_set, **QUIET)
    localization = evaluate_localization(model, test_set, keep_examples=3, **QUIET)
    sets = create_ood_sets(test_set, ["uniform", "gaussian"], num_noise=24)
    ood = evaluate_ood(model, test_set, sets, scores=["energy", "msp", "energy"], **QUIET)
    assert isinstance(classification, Result) and isinstance(localization, Result)
    assert [r.config["score"] for r in ood] == ["energy", "msp"] and all(isinstance(r, Result) for r in ood)
    assert ood[1].metrics["uniform/auroc"] == evaluate_ood(model, test_set, sets, **QUIET)[0].metrics["uniform/auroc"]
    examples = examples_from_arrays(localization.artifacts)  # the CAM examples travel in the Result
    assert len(examples["image"]) == 3 and examples["map"][0].shape == (64, 64)
    assert "artifacts" not in localization.to_dict() and "artifacts" not in localization.summary()


def test_the_store_keeps_a_results_artifacts(model, test_set, tmp_path):
    result = evaluate_localization(model, test_set, keep_examples=2, **QUIET)
    job = {"analysis": "localization", "model": {"checkpoint_sha256": "x", "method": "m"},
           "dataset": {"name": "synthetic", "split": "test", "limit": None}, "options": {}}
    ResultStore(tmp_path).save(job, [result])
    [loaded] = ResultStore(tmp_path).load(job).results
    assert loaded.artifacts.keys() == result.artifacts.keys() and loaded.per_sample.keys() == result.per_sample.keys()
    for key, value in result.artifacts.items():
        np.testing.assert_array_equal(loaded.artifacts[key], value)


def test_result_repr_is_a_short_summary_without_array_values(model, test_set):
    sets = create_ood_sets(test_set, ["uniform", "gaussian"], num_noise=24)
    [result] = evaluate_ood(model, test_set, sets, **QUIET)
    text = repr(result)
    assert len(str(result.per_sample)) > 1000 and len(text) < 400, text
    assert text.startswith("Result(ood on synthetic/test; 24 images; metrics: uniform/tnr_at_tpr95=")
    assert "(+15 more); per_sample: id/index(24,), id/score(24,)" in text and "(+2 more)" in text
    assert "array" not in text
    localization = evaluate_localization(model, test_set, keep_examples=2, **QUIET)
    assert "artifacts: examples/image(2, 3, 64, 64)" in repr(localization) and len(repr(localization)) < 400


def test_the_wrapper_speaks_timms_protocol_as_a_timm_model_does():
    torch.manual_seed(0)
    wrapped = create_model("timm/resnet10t", 5).eval()
    plain = timm.create_model("resnet10t", num_classes=5).eval()
    plain.load_state_dict(wrapped.net.state_dict())
    pixels = torch.rand(2, 3, 64, 64)
    x = wrapped.normalize(pixels)  # timm models take normalized input
    with torch.no_grad():
        fmap = wrapped.forward_features(x)
        torch.testing.assert_close(fmap, plain.forward_features(x), rtol=0, atol=0)
        torch.testing.assert_close(wrapped.forward_head(fmap), plain.forward_head(fmap), rtol=0, atol=0)
        torch.testing.assert_close(wrapped.forward_head(fmap, pre_logits=True),
                                   plain.forward_head(fmap, pre_logits=True), rtol=0, atol=0)
        torch.testing.assert_close(wrapped.features(pixels), fmap, rtol=0, atol=0)  # pixel space
        torch.testing.assert_close(wrapped(pixels), plain(x), rtol=0, atol=0)
    assert torch.equal(wrapped.get_classifier().weight, plain.get_classifier().weight)
    assert wrapped.get_classifier() is wrapped.head and wrapped.num_classes == plain.num_classes == 5


def test_save_takes_torchs_order_and_load_takes_ema(tmp_path):
    model = create_model("gapnet:width=4", 3)
    path = save_checkpoint(model, tmp_path / "m.pth", method="cutmix")
    loaded, info = load_checkpoint(path)
    assert info.method == "cutmix" and torch.equal(loaded.net.fc.weight, model.net.fc.weight)
    with pytest.raises(TypeError, match=r"save_checkpoint\(model, path\): the model comes first"):
        save_checkpoint(tmp_path / "n.pth", model)
    net = model.net.state_dict()
    ema = {k: v + 1 if k == "fc.bias" else v for k, v in net.items()}
    torch.save({"state_dict": net, "state_dict_ema": ema, "epoch": 2}, tmp_path / "train.pth.tar")
    plain, plain_info = load_checkpoint(tmp_path / "train.pth.tar", arch="gapnet:width=4")
    averaged, averaged_info = load_checkpoint(tmp_path / "train.pth.tar", arch="gapnet:width=4", ema=True)
    assert (plain_info.training["weights_key"], averaged_info.training["weights_key"]) == ("state_dict",
                                                                                          "state_dict_ema")
    torch.testing.assert_close(averaged.net.fc.bias, plain.net.fc.bias + 1)


def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, env=cli_env())


def test_a_folder_given_as_checkpoint_names_the_files_inside(tmp_path):
    run = tmp_path / "runs" / "cutmix"
    tiny_checkpoint(run / "last.pth")
    tiny_checkpoint(run / "best.pth")
    (run / "log.csv").write_text("epoch\n")
    (tmp_path / "empty").mkdir()
    done = cli("evaluate", "--ckpt", str(run), "--data", "synthetic", "--limit", "4")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (f"cutmix-eval: error: checkpoint {run} is a folder, not a file; pass one of "
                                   f"its checkpoint files, e.g. --ckpt {run / 'best.pth'} (it holds best.pth, "
                                   "last.pth)")
    done = cli("inspect", "--ckpt", str(tmp_path / "empty"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "is a folder, not a file, and holds no checkpoint file" in done.stderr


def test_localize_has_no_out_option(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "m.pth")
    common = ["localize", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "4", "--results",
              str(tmp_path / "results")]
    done = cli(*common, "--out", str(tmp_path / "figures"))  # no longer an abbreviation of --output-dir either
    assert done.returncode == 2 and "unrecognized arguments: --out" in done.stderr
    assert not (tmp_path / "figures").exists() and not (tmp_path / "results").exists()


def test_the_readme_api_block_runs_as_written(tmp_path, monkeypatch, capsys):
    """The README's first Python block under "From Python" is executed as written."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## From Python", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "'occlusion'" in out and "Result(occlusion on synthetic/test; 64 images" in out


def test_the_top_level_api_is_lazy_and_complete():
    code = ("import sys, cutmix_eval as ce; heavy = [m for m in ('torch', 'torchvision', 'timm') if m in sys.modules];"
            "print(heavy); missing = [n for n in ce.__all__ if not hasattr(ce, n)]; print(missing)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.splitlines() == ["[]", "[]"], done.stderr
    import cutmix_eval as ce

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ce.nope  # noqa: B018 (the attribute access is the test)
    with pytest.raises(UserError, match="fractions need at least 2 values"):
        ce.run_analysis("occlusion", ce.create_model("gapnet", num_classes=10),
                        ce.create_dataset("synthetic", "test"), fractions="0:2:1")
