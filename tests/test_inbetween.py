"""In-between class samples: seeded pairs, the two kinds of samples, the shared sweep against a
one-sample-at-a-time loop, the rates, and the `inbetween` command."""

import json
import subprocess

import numpy as np
import pytest
import torch

from cutmix_eval.cli import main
from cutmix_eval.data.base import dataset_labels
from cutmix_eval.errors import UserError
from cutmix_eval.metrics.inbetween import PREDICTS_A, PREDICTS_B, PREDICTS_NEITHER
from cutmix_eval.evaluate.inbetween import (DEFAULT_GRID, cut,
                                            equal_share_point, evaluate_inbetween, inbetween_examples,
                                            inbetween_sweep, make_pairs, mix, partner_share)
from cutmix_eval.evaluate.occlusion import centre_window
from cutmix_eval.models.checkpoint import save_checkpoint
from cutmix_eval.report.figures import inbetween_figure
from cutmix_eval.settings import RunSettings

from conftest import CLI, cli_env, tiny_checkpoint


def test_pairs_are_seeded_and_of_different_classes():
    labels = np.random.default_rng(0).integers(0, 5, 300)
    a, b = make_pairs(labels, seed=3)
    np.testing.assert_array_equal(a, np.arange(300))  # every image once as A
    assert (labels[a] != labels[b]).all()
    again = make_pairs(labels, seed=3)
    assert np.array_equal(again[0], a) and np.array_equal(again[1], b)
    assert not np.array_equal(make_pairs(labels, seed=4)[1], b)
    same = make_pairs(labels, num_pairs=300, seed=3)
    assert np.array_equal(same[0], a) and np.array_equal(same[1], b)
    few = make_pairs(labels, num_pairs=50, seed=3)
    assert len(few[0]) == 50 and len(set(few[0])) == 50 and (np.diff(few[0]) >= 0).all()
    with pytest.raises(UserError, match="1 class"):
        make_pairs([2, 2, 2])
    for wrong in (0, 2.5, True):
        with pytest.raises(UserError, match="at least 1"):
            make_pairs(labels, num_pairs=wrong)
    with pytest.raises(UserError, match="301 pairs asked for, but there are 300 images"):  # each image is A once
        make_pairs(labels, num_pairs=301)


def test_partners_are_uniform_over_the_images_of_other_classes():
    labels = np.array([0] * 2000 + [1] * 6000 + [2] * 12_000)
    a, b = make_pairs(labels, seed=0)
    for cls in range(3):
        partners = labels[b[labels[a] == cls]]
        others = [c for c in range(3) if c != cls]
        expected = np.array([np.sum(labels == c) for c in others], dtype=float)
        observed = np.array([np.sum(partners == c) for c in others], dtype=float)
        assert observed.sum() == (labels[a] == cls).sum()
        np.testing.assert_allclose(observed / observed.sum(), expected / expected.sum(), atol=0.03)


def test_mix_and_cut_against_a_pixel_loop():
    rng = np.random.default_rng(1)
    a, b = (torch.from_numpy(rng.random((2, 3, 9, 12), dtype=np.float32)) for _ in range(2))
    assert torch.equal(mix(a, b, 0.0), a) and torch.equal(mix(a, b, 1.0), b)
    assert torch.allclose(mix(a, b, 0.3), 0.7 * a + 0.3 * b)
    for s in (0.0, 0.3, 0.5, 1.0):
        top, left, h, w = centre_window(9, 12, s)
        expected = a.numpy().copy()
        for i in range(9):
            for j in range(12):
                if top <= i < top + h and left <= j < left + w:
                    expected[..., i, j] = b.numpy()[..., i, j]
        np.testing.assert_array_equal(cut(a, b, s).numpy(), expected)
    assert partner_share("cutmix", [0, 0.5, 1], 10, 10) == [0.0, 0.25, 1.0]
    assert partner_share("mixup", [0, 0.5], 10, 10) == [0.0, 0.5]
    assert equal_share_point(partner_share("mixup", DEFAULT_GRID, 64, 64)) == 5
    assert DEFAULT_GRID[equal_share_point(partner_share("cutmix", DEFAULT_GRID, 64, 64))] == 0.7  # 45^2/64^2 = 0.49


def test_sweep_equals_one_sample_at_a_time(small_labelled):
    dataset, model = small_labelled
    labels = dataset_labels(dataset)
    a_idx, b_idx = make_pairs(labels, num_pairs=16, seed=0)
    a = torch.stack([dataset[int(i)]["image"].as_subclass(torch.Tensor) for i in a_idx])
    b = torch.stack([dataset[int(i)]["image"].as_subclass(torch.Tensor) for i in b_idx])
    label_a, label_b = torch.as_tensor(labels[a_idx]), torch.as_tensor(labels[b_idx])
    grids = {"mixup": list(DEFAULT_GRID), "cutmix": list(DEFAULT_GRID)}
    codes, nonfinite = inbetween_sweep(model, a, b, label_a, label_b, grids)
    assert not nonfinite.any()
    for kind, fn in (("mixup", mix), ("cutmix", cut)):
        for j, value in enumerate(DEFAULT_GRID):
            with torch.no_grad():
                predicted = model(fn(a, b, value)).argmax(1)
            expected = torch.full((16,), PREDICTS_NEITHER, dtype=torch.int8)
            expected[predicted == label_b] = PREDICTS_B
            expected[predicted == label_a] = PREDICTS_A
            assert torch.equal(codes[kind][:, j], expected), (kind, value)


def test_evaluator_rates(small_labelled):
    dataset, model = small_labelled
    result = evaluate_inbetween(model, dataset, settings=RunSettings(batch_size=10, progress=False))
    labels = dataset_labels(dataset)
    per_sample, curves, m = result.per_sample, result.curves, result.metrics
    np.testing.assert_array_equal(per_sample["label_a"], labels[per_sample["index_a"]])
    np.testing.assert_array_equal(per_sample["label_b"], labels[per_sample["index_b"]])
    with torch.no_grad():
        images = torch.stack([dataset[i]["image"].as_subclass(torch.Tensor) for i in range(len(dataset))])
        correct = (model(images).argmax(1).numpy() == labels)
    for kind in ("mixup", "cutmix"):
        outcome = per_sample[f"{kind}/outcome"]
        assert outcome.shape == (48, 11) and outcome.dtype == np.int8
        rates = np.array([curves[kind][k] for k in ("rate_a", "rate_b", "rate_neither")])
        np.testing.assert_allclose(rates.sum(axis=0), 1.0)
        np.testing.assert_allclose(rates[2], (outcome == PREDICTS_NEITHER).mean(axis=0))
        # the ends are A and B themselves
        assert curves[kind]["rate_a"][0] == pytest.approx(correct[per_sample["index_a"]].mean())
        assert curves[kind]["rate_b"][-1] == pytest.approx(correct[per_sample["index_b"]].mean())
        assert m[f"{kind}/neither_auc"] == pytest.approx(np.trapezoid(rates[2], DEFAULT_GRID))
    assert m["mixup/neither@0.5"] == curves["mixup"]["rate_neither"][5]
    assert m["cutmix/neither@0.7"] == curves["cutmix"]["rate_neither"][7]
    assert max(curves["mixup"]["rate_neither"]) > 0  # the fitted model is confused in between
    # the same pairs whatever the batch size and the model
    other = evaluate_inbetween(model, dataset, mix_grid=(0, 0.5, 1),
                               settings=RunSettings(batch_size=48, progress=False))
    np.testing.assert_array_equal(other.per_sample["index_b"], per_sample["index_b"])
    np.testing.assert_array_equal(other.per_sample["mixup/outcome"], per_sample["mixup/outcome"][:, [0, 5, 10]])
    json.loads(result.to_json())
    with pytest.raises(UserError, match="1 class"):
        evaluate_inbetween(model, dataset, settings=RunSettings(limit=1, progress=False))


def test_figure_and_examples(small_labelled):
    dataset, model = small_labelled
    result = evaluate_inbetween(model, dataset, num_pairs=10, settings=RunSettings(progress=False))
    figure = inbetween_figure({"mixup": result.curves, "cutmix": result.curves, "other": result.curves})
    axes = figure.get_axes()
    assert len(axes) == 2 and all(len(ax.get_lines()) == 3 for ax in axes)
    a, b = torch.zeros(3, 8, 8), torch.ones(3, 8, 8)
    examples = inbetween_examples(a, b, {"mixup": [0, 0.25, 1], "cutmix": [0, 0.5]})
    assert examples["mixup"].shape == (3, 3, 8, 8) and examples["cutmix"].shape == (2, 3, 8, 8)
    assert examples["mixup"][1].mean() == pytest.approx(0.25) and examples["cutmix"][1].mean() == pytest.approx(0.25)


def test_inbetween_command(tmp_path, capsys):
    from cutmix_eval.models import create_model

    torch.manual_seed(0)
    ckpt = save_checkpoint(create_model("gapnet:width=4", 10), tmp_path / "m.pth", method="mixup")
    out_dir = tmp_path / "out"
    code = main(["inbetween", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "20", "--pairs", "8",
                 "--mix-grid", "0:0.25:1", "--cut-grid", "0,0.5,1", "--output-dir", str(out_dir), "--json"])
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and summary["metrics"]["num_pairs"] == 8 and summary["config"]["mix_grid"] == [0, 0.25, 0.5,
                                                                                                  0.75, 1]
    assert "neither (%)" in out and "| cutmix    | area" in out
    record = json.loads((out_dir / "inbetween.json").read_text())
    assert np.asarray(record["per_sample"]["cutmix/outcome"]).shape == (8, 3)
    for name in ("neither", "examples"):
        assert (out_dir / f"inbetween-{name}.png").stat().st_size > 5_000
    assert main(["inbetween", "--ckpt", str(ckpt), "--data", "synthetic", "--mix-grid", "1,0"]) == 2
    assert "sorted" in capsys.readouterr().err


def test_more_pairs_than_images_is_refused_at_once_through_the_cli(tmp_path):
    """Each image is A of at most one pair: `--pairs 100000 --limit 5` once ran 9 minutes repeating images."""
    ckpt = tiny_checkpoint(tmp_path / "m.pth")
    done = subprocess.run(CLI + ["inbetween", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "5", "--pairs",
                                 "100000", "--results", str(tmp_path / "results")],
                          capture_output=True, text=True, env=cli_env())
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "100000 pairs asked for, but there are 5 images" in done.stderr and "at most 5" in done.stderr
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_a_study_asking_more_pairs_than_images_stops_before_any_job(tmp_path, monkeypatch):
    from cutmix_eval.study import load_study, run_study

    ckpt = tiny_checkpoint(tmp_path / "m.pth")
    (tmp_path / "s.toml").write_text(f"""
[study]
output = "out"
[[checkpoints]]
path = "{ckpt}"
method = "cutmix"
[[datasets]]
name = "synthetic"
limit = 6
[analyses.classification]
[analyses.inbetween]
num_pairs = 7
""")
    def no_job(*args, **kwargs):
        raise AssertionError("a job started")

    monkeypatch.setattr("cutmix_eval.study.run_jobs", no_job)
    with pytest.raises(UserError, match="7 pairs asked for, but there are 6 images"):
        run_study(load_study(tmp_path / "s.toml"), progress=False, log=lambda _: None)
