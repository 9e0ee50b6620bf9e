"""The calibration evaluator and the `calibration` / `evaluate` commands."""

import json

import numpy as np
import pytest

from cutmix_eval.cli import main
from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.calibration import calibration_result
from cutmix_eval.metrics import calibration as cal
from cutmix_eval.models import create_model
from cutmix_eval.models.checkpoint import save_checkpoint
from cutmix_eval.passes import Predictions


def predictions(n=400, classes=5, seed=0, scale=4.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, scale, (n, classes)).astype(np.float32)
    labels = np.where(rng.random(n) < 0.6, logits.argmax(1), rng.integers(0, classes, n))
    return Predictions(logits, labels, np.arange(n))


def test_result_equals_the_metric_functions_and_holds_out_for_the_temperature():
    pred = predictions()
    info = {"model_info": {"arch": "x"}, "dataset_info": {"name": "d"}}
    plain = calibration_result(pred, **info)
    logits = pred.logits.astype(np.float64)
    assert plain.metrics["ece"] == cal.expected_calibration_error(cal.softmax(logits).max(1),
                                                                  cal.softmax(logits).argmax(1) == pred.labels)
    assert plain.metrics["nll"] == pytest.approx(cal.negative_log_likelihood(logits, pred.labels))
    assert "temperature" not in plain.metrics and sum(plain.curves["reliability"]["count"]) == 400
    scaled = calibration_result(pred, holdout=100, **info)
    temperature = cal.fit_temperature(logits[:100], pred.labels[:100])
    assert scaled.metrics["temperature"] == temperature and scaled.metrics["num_images"] == 300
    assert scaled.metrics["nll_calibrated"] == pytest.approx(
        cal.negative_log_likelihood(logits[100:], pred.labels[100:], temperature))
    assert scaled.metrics["temperature"] > 1  # over-confident random logits are softened
    assert scaled.metrics["nll_calibrated"] < scaled.metrics["nll"]
    assert len(scaled.per_sample["confidence"]) == 300 and "first 100 images" in scaled.conventions["temperature"]


def test_bad_logits_and_holdouts_are_clear_errors():
    pred = predictions(n=10)
    info = {"model_info": {}, "dataset_info": {}}
    with pytest.raises(UserError, match="cannot hold out 10 of 10"):
        calibration_result(pred, holdout=10, **info)
    pred.logits[3, 1] = np.inf
    with pytest.raises(UserError, match="NaN or infinite logits for 1 of 10"):
        calibration_result(pred, **info)


def test_calibration_and_evaluate_commands(tmp_path, capsys):
    ckpt = save_checkpoint(create_model("gapnet:width=4", 10), tmp_path / "m.pth")
    code = main(["calibration", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "40", "--holdout", "10",
                 "--output-dir", str(tmp_path / "cal"), "--json"])
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and summary["metrics"]["num_images"] == 30 and "T = " in out and "ECE (%)" in out
    assert (tmp_path / "cal" / "calibration-reliability.png").stat().st_size > 10_000
    assert len(json.loads((tmp_path / "cal" / "calibration.json").read_text())["per_sample"]["correct"]) == 30
    code = main(["calibration", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "40", "--holdout", "10",
                 "--recalibrate", "temperature,isotonic", "--output-dir", str(tmp_path / "maps"), "--json"])
    out = capsys.readouterr().out
    metrics = json.loads(out.strip().splitlines()[-1])["metrics"]
    assert code == 0 and "| isotonic" in out and "T = " in out and "AUGRC (%)" in out
    assert metrics["ece_temperature"] == pytest.approx(metrics["ece_calibrated"]) and 0 <= metrics["aurc_isotonic"] <= 1
    assert main(["calibration", "--ckpt", str(ckpt), "--data", "synthetic", "--recalibrate", "platt"]) == 2
    assert main(["calibration", "--ckpt", str(ckpt), "--data", "synthetic", "--recalibrate", "isotonic"]) == 2
    assert "needs held-out images to fit on" in capsys.readouterr().err
    code = main(["evaluate", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "20", "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["metrics"]["num_images"] == 20 and 0 <= summary["calibration"]["metrics"]["ece"] <= 1
    assert main(["calibration", "--ckpt", str(ckpt), "--data", "synthetic", "--bins", "0"]) == 2
