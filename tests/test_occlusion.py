"""Occlusion: window geometry, fills, the shared sweep against a one-variant-at-a-time loop,
the evaluator's bookkeeping, and the `occlusion` command."""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from cutmix_eval.cli import main
from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.occlusion import (DEFAULT_FRACTIONS, centre_window, check_fractions, check_modes,
                                            evaluate_occlusion, fill_pixels, occlude, occlusion_examples,
                                            occlusion_sweep, parse_fill, parse_grid, table_points, trapezoid_mean)
from cutmix_eval.models.checkpoint import save_checkpoint
from cutmix_eval.report.figures import occlusion_figure
from cutmix_eval.settings import RunSettings


@pytest.mark.parametrize("height, width, fraction, expected", [
    (32, 32, 0.5, (8, 8, 16, 16)),
    (32, 32, 0.0, (16, 16, 0, 0)),
    (32, 32, 1.0, (0, 0, 32, 32)),
    (10, 10, 0.35, (3, 3, 4, 4)),     # 3.5 rounds up, despite 0.35 * 10 = 3.4999... in floats
    (10, 10, 0.3, (3, 3, 3, 3)),      # odd margin 7: 3 on top, 4 below
    (7, 12, 0.5, (1, 3, 4, 6)),       # each side on its own; 3.5 -> 4, margin 3 = 1 above + 2 below
])
def test_centre_window(height, width, fraction, expected):
    assert centre_window(height, width, fraction) == expected
    with pytest.raises(ValueError):
        centre_window(height, width, 1.5)


def test_occlude_against_a_pixel_loop():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.random((2, 3, 7, 10), dtype=np.float32))
    fill = torch.from_numpy(rng.random((2, 3, 7, 10), dtype=np.float32))
    for fraction in (0.0, 0.2, 0.5, 0.75, 1.0):
        top, left, h, w = centre_window(7, 10, fraction)
        for mode in ("centre", "boundary"):
            expected = images.numpy().copy()
            for i in range(7):
                for j in range(10):
                    inside = top <= i < top + h and left <= j < left + w
                    if inside == (mode == "centre"):
                        expected[..., i, j] = fill.numpy()[..., i, j]
            before = images.clone()
            np.testing.assert_array_equal(occlude(images, fraction, mode, fill).numpy(), expected)
            assert torch.equal(images, before)  # inputs untouched


def test_fills():
    images = torch.rand(3, 3, 4, 4)
    assert torch.equal(fill_pixels("black", images), torch.zeros_like(images))
    assert torch.equal(fill_pixels(0.5, images), torch.full_like(images, 0.5))
    mean = fill_pixels("mean", images, mean=[0.1, 0.2, 0.3])
    assert torch.allclose(mean[2, :, 1, 1], torch.tensor([0.1, 0.2, 0.3]))
    noise = fill_pixels("noise", images, [5, 6, 7], seed=3)
    assert noise.min() >= 0 and noise.max() < 1 and not torch.equal(noise[0], noise[1])
    # image 6's noise depends on (seed, index) only, not on its place in the batch
    assert torch.equal(fill_pixels("noise", images[:1], [6], seed=3)[0], noise[1])
    assert not torch.equal(fill_pixels("noise", images[:1], [6], seed=4)[0], noise[1])
    assert parse_fill(" Mean ") == "mean" and parse_fill("0.25") == 0.25
    for bad in ("grey", "1.5", "nan", -0.1):
        with pytest.raises(UserError, match="unknown fill"):
            parse_fill(bad)
    with pytest.raises(ValueError, match="indices"):
        fill_pixels("noise", images)


def test_grids_and_checks():
    assert parse_grid("0:0.1:1") == pytest.approx(list(DEFAULT_FRACTIONS)) and len(parse_grid("0:0.1:1")) == 11
    assert parse_grid("0,0.25, 1") == [0.0, 0.25, 1.0]
    assert parse_grid("0.2:0.2:0.9") == pytest.approx([0.2, 0.4, 0.6, 0.8])
    for bad, match in (("a,b", "cannot read"), ("0:0:1", "cannot read"), ("0.5", "at least 2"),
                       ("0,1.5", r"in \[0, 1\]"), ("0.5,0.2", "sorted")):
        with pytest.raises(UserError, match=match):
            parse_grid(bad)
    with pytest.raises(UserError, match="unknown occlusion mode"):
        check_modes(["centre", "edge"])
    assert check_fractions((0, 1)) == [0.0, 1.0]
    assert [DEFAULT_FRACTIONS[i] for i in table_points(DEFAULT_FRACTIONS)] == [0.3, 0.5, 0.7]
    assert table_points([0, 0.25, 0.5, 0.75, 1]) == [1, 2, 3]
    x, y = [0, 0.1, 0.4, 1.0], [1.0, 0.8, 0.5, 0.0]
    assert trapezoid_mean(x, y) == pytest.approx(np.trapezoid(y, x))
    assert trapezoid_mean([0.2, 0.6], [1, 0]) == pytest.approx(0.5)


class CountingModel(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x):
        self.calls += 1
        return self.model(x)


def test_sweep_equals_one_variant_at_a_time_and_runs_each_distinct_image_once(small_labelled):
    dataset, model = small_labelled
    images = torch.stack([dataset[i]["image"].as_subclass(torch.Tensor) for i in range(16)])
    labels = torch.as_tensor([int(dataset[i]["label"]) for i in range(16)])
    for fill_name in ("black", "noise"):
        fill = fill_pixels(fill_name, images, list(range(16)), seed=1)
        counting = CountingModel(model)
        sweep = occlusion_sweep(counting, images, labels, fill, DEFAULT_FRACTIONS)
        for mode in ("centre", "boundary"):
            with torch.no_grad():
                naive = torch.stack([model(occlude(images, f, mode, fill)).argmax(1) == labels
                                     for f in DEFAULT_FRACTIONS], dim=1)
            assert torch.equal(sweep.correct[mode], naive)
        # 22 variants, 20 distinct images: centre 0 = boundary 1 = clean, centre 1 = boundary 0 = fill
        assert counting.calls == 20
        assert torch.equal(sweep.clean, model(images).argmax(1) == labels)


class CountingDataset(Dataset):
    def __init__(self, base):
        self.base, self.loads = base, 0
        self.name, self.split, self.num_classes, self.classes = base.name, base.split, base.num_classes, base.classes

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.loads += 1
        return self.base[i]


def test_evaluator_bookkeeping(small_labelled):
    dataset, model = small_labelled
    counting = CountingDataset(dataset)
    result = evaluate_occlusion(model, counting, settings=RunSettings(batch_size=20, progress=False))
    assert counting.loads == len(dataset)  # every hole size from one decoded batch
    m, curves = result.metrics, result.curves
    for mode in ("centre", "boundary"):
        correct = result.per_sample[f"{mode}/correct"]
        assert correct.shape == (48, 11)
        np.testing.assert_allclose(curves[mode]["accuracy"], correct.mean(axis=0))
        assert m[f"{mode}/auc"] == pytest.approx(np.trapezoid(correct.mean(axis=0), DEFAULT_FRACTIONS))
        assert m[f"{mode}/accuracy@0.5"] == pytest.approx(correct[:, 5].mean())
    assert m["clean_accuracy"] == curves["centre"]["accuracy"][0] == curves["boundary"]["accuracy"][-1] == 1.0
    assert curves["centre"]["accuracy"][-1] == curves["boundary"]["accuracy"][0]  # both the all-black image
    assert curves["centre"]["accuracy"][5] < 0.5 < m["clean_accuracy"]  # the fitted model does degrade
    assert curves["centre"]["hole_pixels"][5] == 32 * 32 and curves["boundary"]["hole_pixels"][5] == 64 * 64 - 1024
    assert "black" in result.conventions["fill"] and result.config["fill"] == "black"
    np.testing.assert_array_equal(result.per_sample["index"], np.arange(48))
    json.loads(result.to_json())
    # batch size changes nothing, noise included (seeded per image)
    for fill in ("black", "noise"):
        a = evaluate_occlusion(model, dataset, fill=fill, fractions=(0, 0.4, 0.8),
                               settings=RunSettings(batch_size=48, progress=False))
        b = evaluate_occlusion(model, dataset, fill=fill, fractions=(0, 0.4, 0.8),
                               settings=RunSettings(batch_size=7, progress=False))
        for mode in ("centre", "boundary"):
            np.testing.assert_array_equal(a.per_sample[f"{mode}/correct"], b.per_sample[f"{mode}/correct"])
    single = evaluate_occlusion(model, dataset, modes=["boundary"], settings=RunSettings(limit=10, progress=False))
    assert list(single.curves) == ["boundary"] and single.metrics["num_images"] == 10


def test_nonfinite_logits_count_as_wrong(small_labelled):
    dataset, model = small_labelled

    class Broken(torch.nn.Module):
        num_classes, arch, mean = model.num_classes, "broken", model.mean

        def forward(self, x):
            logits = model(x)
            logits[0, 0] = float("nan")
            return logits

    with pytest.warns(UserWarning, match="NaN or infinite"):
        result = evaluate_occlusion(Broken(), dataset, settings=RunSettings(limit=8, progress=False))
    assert result.metrics["num_nonfinite_logits"] == 1
    assert not result.per_sample["centre/correct"][0].any()


def test_figures(small_labelled):
    dataset, model = small_labelled
    result = evaluate_occlusion(model, dataset, settings=RunSettings(limit=12, progress=False))
    figure = occlusion_figure({"baseline": result.curves, "cutmix": result.curves}, fill="black")
    axes = figure.get_axes()
    assert len(axes) == 2 and all(len(ax.get_lines()) == 2 for ax in axes)
    assert "centre" in axes[0].get_title() and "boundary" in axes[1].get_title()
    images = torch.rand(2, 3, 8, 8)
    examples = occlusion_examples(images, torch.zeros_like(images), [0, 0.5, 1])
    assert examples.shape == (12, 3, 8, 8)
    assert torch.equal(examples[0], images[0]) and torch.equal(examples[5], images[0])  # centre 0, boundary 1
    assert not examples[2].any() and not examples[3].any()  # centre 1, boundary 0


def test_occlusion_command(tmp_path, capsys):
    from cutmix_eval.models import create_model

    torch.manual_seed(0)
    ckpt = save_checkpoint(create_model("gapnet:width=4", 10), tmp_path / "m.pth", method="cutmix")
    out_dir = tmp_path / "out"
    code = main(["occlusion", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "12", "--fractions", "0,0.5,1",
                 "--fill", "mean", "--output-dir", str(out_dir), "--json"])
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and summary["config"]["fill"] == "mean" and "per_sample" not in summary
    assert "| area" in out and "normalization mean" in out
    record = json.loads((out_dir / "occlusion.json").read_text())
    assert np.asarray(record["per_sample"]["centre/correct"]).shape == (12, 3)
    assert record["model"]["method"] == "cutmix"
    for name in ("curves", "examples"):
        assert (out_dir / f"occlusion-{name}.png").stat().st_size > 5_000
    assert main(["occlusion", "--ckpt", str(ckpt), "--data", "synthetic", "--fill", "grey"]) == 2
    assert "unknown fill" in capsys.readouterr().err
    assert main(["occlusion", "--ckpt", str(ckpt), "--data", "synthetic", "--fractions", "0.5"]) == 2
    assert "at least 2" in capsys.readouterr().err
