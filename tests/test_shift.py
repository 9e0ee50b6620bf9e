"""The natural-shift analysis: label spaces, metrics against a brute-force route, effective
robustness against a hand-made testbed, the command and its mistakes."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cutmix_eval.analyses.shift import effective_robustness
from cutmix_eval.cli import main
from cutmix_eval.data import create_dataset
from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.shift import evaluate_shift, restricted
from cutmix_eval.passes import Predictions, predict
from cutmix_eval.settings import RunSettings

from conftest import tiny_checkpoint
from test_analysis_contract import class_map_folder

QUIET = RunSettings(batch_size=16, progress=False)


def test_a_200_class_set_reads_the_models_logits_at_its_class_mask():
    rng = np.random.default_rng(0)
    mask = np.sort(rng.choice(1000, 200, replace=False))
    logits = rng.normal(size=(6, 1000)).astype(np.float32)
    pred = Predictions(logits, rng.integers(0, 200, 6), np.arange(6))
    imagenet_a = SimpleNamespace(name="imagenet-a", num_classes=200, class_mask=mask)
    out = restricted(pred, imagenet_a, SimpleNamespace(num_classes=1000))
    np.testing.assert_array_equal(out.logits, logits[:, mask])
    with pytest.raises(UserError, match="needs a 1000-class ImageNet model"):
        restricted(pred, imagenet_a, SimpleNamespace(num_classes=100))
    other = SimpleNamespace(name="cifar10.1-v6", num_classes=10)
    with pytest.raises(UserError, match="has 10 classes but the model predicts 100") as err:
        restricted(pred, other, SimpleNamespace(num_classes=100))
    assert "\n" not in str(err.value)


def test_shift_metrics_against_a_brute_force_route(model, tmp_path):
    test = create_dataset("synthetic", "test", num_samples=32)
    folder = class_map_folder(tmp_path / "mine", {"x": 2, "y": 7}, per_class=5)
    mine = create_dataset("classmap-folder", "test", root=folder, num_classes=10, image_size=64)
    result = evaluate_shift(model, test, {"mine": mine}, settings=QUIET)
    for key, data in (("id", test), ("mine", mine)):
        pred = predict(model, data, QUIET)
        z = pred.logits.astype(np.float64)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        correct = [int(np.argmax(row)) == label for row, label in zip(z, pred.labels)]
        assert result.metrics[f"{key}/accuracy"] == pytest.approx(np.mean(correct))
        assert result.metrics[f"{key}/nll"] == pytest.approx(-np.mean(np.log(p[np.arange(len(p)), pred.labels])))
        assert result.metrics[f"{key}/mean_score"] == pytest.approx(p.max(1).mean())
        ece = 0.0
        for b in range(15):
            inside = [(c, ok) for c, ok in zip(p.max(1), correct) if b / 15 < c <= (b + 1) / 15]
            if inside:
                ece += len(inside) / len(p) * abs(np.mean([ok for _, ok in inside]) - np.mean([c for c, _ in inside]))
        assert result.metrics[f"{key}/ece"] == pytest.approx(ece)
    assert result.metrics["mine/accuracy_gap"] == pytest.approx(result.metrics["mine/accuracy"]
                                                                 - result.metrics["id/accuracy"])
    ids, shifted = result.per_sample["id/score"], result.per_sample["mine/score"]
    labels = np.r_[np.ones(len(ids)), np.zeros(len(shifted))]
    assert result.metrics["mine/score_auroc_vs_id"] == pytest.approx(roc_auc_score(labels, np.r_[ids, shifted]))
    assert result.dataset["shift_sets"]["mine"]["num_images"] == 10
    with pytest.raises(UserError, match="reads only logits"):
        evaluate_shift(model, test, {"mine": mine}, score="knn", settings=QUIET)


def test_effective_robustness_is_the_distance_above_the_logit_line():
    def logit(p):
        return np.log(p / (1 - p))

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    ids = np.array([0.6, 0.7, 0.8, 0.9])
    on_line = sigmoid(0.8 * logit(ids) - 0.5)
    found = effective_robustness({f"m{i}": (a, b) for i, (a, b) in enumerate(zip(ids, on_line))})
    assert found == pytest.approx({f"m{i}": 0.0 for i in range(4)}, abs=1e-9)
    # least squares in logit space, by the normal equations written out
    shifts = np.array([0.45, 0.52, 0.66, 0.70])
    x, y = logit(ids), logit(shifts)
    design = np.stack([x, np.ones_like(x)], axis=1)
    slope, intercept = np.linalg.solve(design.T @ design, design.T @ y)
    found = effective_robustness({f"m{i}": (a, b) for i, (a, b) in enumerate(zip(ids, shifts))})
    assert list(found.values()) == pytest.approx(list(shifts - sigmoid(slope * x + intercept)))
    assert effective_robustness({"a": (0.5, 0.4), "b": (0.7, 0.5)}) is None


def test_the_shift_analysis_from_the_command_line(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "m.pth")
    folder = class_map_folder(tmp_path / "my-shift", {"a": 0, "b": 3})
    code = main(["analyze", "shift", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "12", "--sets",
                 str(folder), "--results", str(tmp_path / "R"), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads(out.strip().splitlines()[-1])
    assert "my-shift/accuracy" in json.dumps(summary)
    assert main(["analyze", "shift", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "12", "--sets",
                 "synthetic-unseen", "--results", str(tmp_path / "R1")]) == 2
    assert "shift set synthetic-unseen has 0 classes but the model predicts 10" in capsys.readouterr().err
    (folder / "class_map.json").write_text(json.dumps({"a": 0}))
    assert main(["analyze", "shift", "--ckpt", str(ckpt), "--data", "synthetic", "--sets", str(folder),
                 "--results", str(tmp_path / "R2")]) == 2
    assert "not in the class map" in capsys.readouterr().err
