"""Every figure the project draws, at 1 model and at 8, from synthetic records.

Run as a script to look at them: ``python tests/test_report_figures.py OUT_DIR`` writes
``OUT_DIR/<models>-<name>.png`` for 1 and 8 models (the way the commands save them).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex

from conftest import CLI, cli_env, tiny_checkpoint
from cutmix_eval.analyses import views
from cutmix_eval.corruptions.registry import ALL, GROUPS
from cutmix_eval.report.figures import METHOD_COLOURS
from cutmix_eval.report.store import Record
from cutmix_eval.results import example_arrays
from cutmix_eval.results import Result

#: 8 method labels: the paper's four, then others (their colours come from the fallback palette)
LABELS = ["baseline", "mixup", "cutout", "cutmix", "augmix", "resizemix", "puzzlemix", "saliencymix"]
#: CUB-200-2011 class names as its classes.txt spells them (the longest ones)
CUB_CLASSES = ["001.Black_footed_Albatross", "047.American_Goldfinch", "184.Louisiana_Waterthrush",
               "124.Le_Conte_Sparrow", "049.Boat_tailed_Grackle"]
#: four sets: ROC panels wrap into a second row (three per row)
OOD_SETS = {"lsun-crop": 10000, "tinyimagenet-resize": 10000, "isun": 8925, "gaussian": 10000}
DATASET = {"name": "cub", "split": "test", "num_images": 64, "num_classes": 200}


def _job(analysis: str, label: str, options: dict | None = None) -> dict:
    return {"analysis": analysis, "model": {"checkpoint_sha256": label * 4, "method": label},
            "dataset": {"name": DATASET["name"], "split": DATASET["split"], "limit": None},
            "options": options or {}}


def _result(evaluator: str, label: str, **fields) -> Result:
    return Result(evaluator=evaluator, metrics=fields.pop("metrics", {}), conventions={},
                  model={"arch": "resnet50", "method": label}, dataset=fields.pop("dataset", DATASET), **fields)


def _falling(rng: np.random.Generator, grid: np.ndarray, start: float, end: float) -> list[float]:
    """A noisy decreasing curve from about ``start`` to ``end`` over ``grid`` (fractions)."""
    curve = start + (end - start) * grid ** rng.uniform(0.6, 1.8) + rng.normal(0, 0.01, len(grid))
    return np.clip(curve, 0, 1).tolist()


def _reliability(rng: np.random.Generator, over: float) -> dict:
    edges = np.linspace(0, 1, 16)
    confidence = (edges[:-1] + edges[1:]) / 2
    count = rng.integers(0, 400, 15) * (confidence > 0.2)
    accuracy = np.where(count > 0, np.clip(confidence - over * confidence * (1 - confidence) * 2, 0, 1), np.nan)
    return {"edges": edges.tolist(), "count": count.tolist(), "accuracy": accuracy.tolist(),
            "confidence": np.where(count > 0, confidence, np.nan).tolist()}


def model_records(label: str, seed: int) -> list[Record]:
    """One synthetic record per analysis for the model ``label``, with the structure the
    evaluators write (curves, per-image arrays, CAM examples) and plausible numbers."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 1, 11)
    quality = rng.uniform(0.6, 0.95)
    calibration = _result("calibration", label, metrics={"ece": rng.uniform(0.01, 0.1)},
                          curves={"reliability": _reliability(rng, rng.uniform(0.05, 0.3))})
    classification = _result("classification", label, metrics={"top1_error": 1 - quality})
    ood = []
    for score in ("msp", "energy"):
        per_sample = {"id/score": rng.normal(2, 1, 200)}
        per_sample |= {f"{name}/score": rng.normal(rng.uniform(-1, 1.5), 1, 120) for name in OOD_SETS}
        sets = {name: {"num_images": n, "description": name} for name, n in OOD_SETS.items()}
        ood.append(_result("ood", label, config={"score": score}, per_sample=per_sample,
                           dataset=DATASET | {"ood_sets": sets},
                           metrics={f"{n}/auroc": rng.uniform(0.5, 1) for n in OOD_SETS}
                           | {"mean/auroc": rng.uniform(0.5, 1), "mean/fpr95_ood_pos": rng.uniform(0, 0.8)}))
    occlusion = _result("occlusion", label, config={"fill": "black"},
                        curves={mode: {"fraction": grid.tolist(), "accuracy": _falling(rng, grid, quality, end)}
                                for mode, end in (("centre", 0.3), ("boundary", 0.005))})
    inbetween = _result("inbetween", label, curves={
        kind: {"grid": grid.tolist(), "rate_neither": (0.1 + 0.4 * np.sin(np.pi * grid) * rng.uniform(0.4, 1)).tolist()}
        for kind in ("mixup", "cutmix")})
    eps = np.array([0, 1, 2, 4, 8]) / 255
    adversarial = _result("adversarial", label, curves={
        attack: {"eps": eps.tolist(), "accuracy": _falling(rng, eps * 255 / 8, quality, end)}
        for attack, end in (("fgsm", 0.1), ("pgd", 0.0))})
    errors = {name: np.sort(rng.uniform(1 - quality, 0.95, 5)).tolist() for name in ALL}
    corruption = _result("corruption", label, config={"reference": "baseline"}, curves={
        "severities": [1, 2, 3, 4, 5], "errors": errors, "groups": list(GROUPS),
        "group_of": {name: group for group, names in GROUPS.items() for name in names},
        "reference": {"errors": {name: np.clip(np.asarray(e) + 0.05, 0, 1).tolist() for name, e in errors.items()}}})
    y, x = np.mgrid[0:48, 0:48] / 47
    images = np.stack([np.stack([x, y, rng.uniform(0, 1) * np.ones_like(x)]) for _ in CUB_CLASSES])
    blob = np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.05)
    boxes = [np.array([[8.0, 10.0, 40.0, 38.0]]) for _ in images]
    examples = {"image": list(images), "map": [np.roll(blob, rng.integers(-6, 6)) for _ in images], "boxes": boxes,
                "pred_boxes": [b + rng.integers(-4, 4, 4) for b in boxes], "title": CUB_CLASSES, "threshold": 0.2}
    localization = _result("localization", label, artifacts=example_arrays(examples))
    records = [(_job("classification", label), [classification, calibration]),
               (_job("localization", label), [localization]),
               (_job("ood", label), ood), (_job("occlusion", label), [occlusion]),
               (_job("inbetween", label), [inbetween]), (_job("adversarial", label), [adversarial]),
               (_job("corruption", label), [corruption])]
    return [Record(Path(f"{job['analysis']}-{label}.json"), job, label, results) for job, results in records]


def report_figures(count: int) -> dict[str, object]:
    """The report's comparison figures for the first ``count`` of :data:`LABELS`."""
    from cutmix_eval.report.build import comparison_figures

    records = [r for i, label in enumerate(LABELS[:count]) for r in model_records(label, i)]
    return {f"report-{name}": figure for name, _, figure in comparison_figures(records, views())}


def command_figures() -> dict[str, object]:
    """The figures the per-analysis commands draw for one model, from the same records."""
    from cutmix_eval.cli.calibration import reliability_figure
    from cutmix_eval.cli.localize import examples_figure
    from cutmix_eval.cli.ood import ood_figure
    from cutmix_eval.report.figures import adversarial_figure, corruption_heatmap, inbetween_figure, occlusion_figure
    from cutmix_eval.results import examples_from_arrays

    records = {r.analysis: r for r in model_records("cutmix", 3)}
    calibrated = records["classification"].results[1]
    calibrated.metrics |= {"temperature": 1.3, "ece_calibrated": 0.012, "ece_temperature": 0.012}
    calibrated.config["recalibrate"] = ["temperature"]
    calibrated.curves["reliability_calibrated"] = _reliability(np.random.default_rng(0), 0.02)
    title = "cutmix on cub/test"
    corruption = records["corruption"].results[0].curves
    return {
        "calibration-reliability": reliability_figure(calibrated),
        **{f"ood-{r.config['score']}-scores": ood_figure(r) for r in records["ood"].results},
        "localize-examples": examples_figure(examples_from_arrays(records["localization"].results[0].artifacts)),
        "occlusion-curves": occlusion_figure({"cutmix": records["occlusion"].results[0].curves}, fill="black",
                                             title=title),
        "inbetween-neither": inbetween_figure({"cutmix": records["inbetween"].results[0].curves}, title=title),
        "adversarial-accuracy": adversarial_figure({"cutmix": records["adversarial"].results[0].curves},
                                                   title=title),
        "corruption-heatmap": corruption_heatmap({"cutmix": corruption["errors"]}, corruption["severities"],
                                                 groups=corruption["group_of"], title=title),
        "corruption-heatmap-reference": corruption_heatmap(
            {"cutmix": corruption["errors"], "baseline": corruption["reference"]["errors"]},
            corruption["severities"], groups=corruption["group_of"], title=title),
    }


def _texts(figure) -> list[tuple[object, object]]:
    """``(text artist, owning axes or None)`` for every visible, non-empty text: the figure's
    title and legends, and per axes (colour bars and secondary axes included) its titles,
    axis labels, tick labels, legend and annotations."""
    found = [(t, None) for t in dict.fromkeys([figure._suptitle, *figure.texts]) if t is not None]
    found += [(t, None) for legend in figure.legends for t in [legend.get_title(), *legend.get_texts()]]

    def of_axes(ax):
        yield from (ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts)
        for axis in (ax.xaxis, ax.yaxis):  # the labels of ticks in view (others are not drawn)
            low, high = sorted(axis.get_view_interval())
            yield from (label for label, at in zip(axis.get_ticklabels(), axis.get_majorticklocs())
                        if low - 1e-9 <= at <= high + 1e-9)
        if ax.get_legend():
            yield from (ax.get_legend().get_title(), *ax.get_legend().get_texts())

    for ax in _all_axes(figure):
        found += [(t, ax) for t in of_axes(ax)]
    return [(t, ax) for t, ax in found if t.get_visible() and t.get_text().strip()]


def _all_axes(figure) -> list:
    """Visible axes with their child axes (secondary axes), less switched-off grid cells."""
    axes = [a for ax in figure.axes for a in (ax, *ax.child_axes)]
    return [ax for ax in axes if ax.get_visible() and ax.axison]


def layout_problems(figure) -> list[str]:
    """What a reader would see wrong, as it would be saved by a plain ``savefig``: text outside
    the figure (clipped), two texts over each other, a text over another panel or colour bar,
    a legend over a curve's points, no figure title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    figure.set_dpi(150)  # as the report saves them
    figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()
    texts = _texts(figure)
    boxes = np.array([t.get_window_extent(renderer).extents for t, _ in texts])
    problems = ["no figure title"] if not (figure._suptitle and figure._suptitle.get_text()) else []
    width, height = figure.bbox.width, figure.bbox.height
    for (text, _), (x0, y0, x1, y1) in zip(texts, boxes):
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            problems.append(f"{text.get_text()!r} is clipped")
    overlap = ((boxes[:, None, 0] < boxes[None, :, 2]) & (boxes[None, :, 0] < boxes[:, None, 2])
               & (boxes[:, None, 1] < boxes[None, :, 3]) & (boxes[None, :, 1] < boxes[:, None, 3]))
    for i, j in zip(*np.nonzero(np.triu(overlap, 1))):
        problems.append(f"{texts[i][0].get_text()!r} over {texts[j][0].get_text()!r}")
    for ax in _all_axes(figure):
        area = ax.get_window_extent(renderer).extents
        family = {ax, *ax.child_axes, getattr(ax, "_parent", None)}
        for (text, owner), (x0, y0, x1, y1) in zip(texts, boxes):
            if owner not in family and x0 < area[2] and area[0] < x1 and y0 < area[3] and area[1] < y1:
                problems.append(f"{text.get_text()!r} over another panel or colour bar")
    legends = [*figure.legends, *(ax.get_legend() for ax in figure.axes if ax.get_legend())]
    for legend in legends:
        x0, y0, x1, y1 = legend.get_window_extent(renderer).extents
        for ax in figure.axes:
            for line in ax.get_lines():
                points = ax.transData.transform(np.column_stack(line.get_data()).astype(float))
                if ((points[:, 0] > x0) & (points[:, 0] < x1) & (points[:, 1] > y0) & (points[:, 1] < y1)).any():
                    problems.append(f"legend over {line.get_label()!r}")
    return problems


@pytest.fixture(scope="module")
def every_figure() -> dict[str, object]:
    return {f"1-{k}": v for k, v in (report_figures(1) | command_figures()).items()} | \
        {f"8-{k}": v for k, v in report_figures(8).items()}


def test_every_figure_at_one_and_eight_models_is_titled_and_readable(every_figure):
    kinds = {"reliability", "cam", "roc-msp", "roc-energy", "occlusion", "inbetween", "adversarial", "corruption",
             "detectors"}
    assert {f"{n}-report-{kind}-cub-test" for n in (1, 8) for kind in kinds} <= set(every_figure)
    problems = {name: layout_problems(figure) for name, figure in every_figure.items()}
    assert {name: p for name, p in problems.items() if p} == {}


def test_figures_stay_within_a_page_width_at_eight_models(every_figure):
    widths = {name: figure.get_figwidth() for name, figure in every_figure.items()}
    assert max(widths.values()) <= 13, widths  # heat maps and reliability diagrams wrap at 4 per row


def test_each_model_has_one_distinct_colour_in_every_figure(every_figure):
    def colours(figure) -> dict[str, str]:
        legend = figure.legends[0]
        return {t.get_text(): to_hex(h.get_color()) for t, h in zip(legend.get_texts(), legend.legend_handles)}

    drawn = [colours(every_figure[f"8-report-{kind}-cub-test"])
             for kind in ("occlusion", "inbetween", "adversarial", "roc-msp")]
    # the training methods in the catalog's order, then other labels alphabetically
    assert list(drawn[0]) == [*LABELS[:4], "puzzlemix", "resizemix", "saliencymix", "augmix"]
    assert len(set(drawn[0].values())) == 8
    assert {label: drawn[0][label] for label in LABELS if label != "augmix"} == \
        {label: METHOD_COLOURS[label] for label in LABELS if label != "augmix"}  # each method its own colour
    assert all(d == drawn[0] for d in drawn)
    heat = every_figure["8-report-corruption-cub-test"]
    assert {ax.get_title(): to_hex(ax.title.get_color()) for ax in heat.axes if ax.get_title()} == drawn[0]


def test_ood_figures_name_their_score(every_figure):
    def title(name: str) -> str:
        return every_figure[name]._suptitle.get_text()

    for msp, energy in [("1-ood-msp-scores", "1-ood-energy-scores"),
                        *((f"{n}-report-roc-msp-cub-test", f"{n}-report-roc-energy-cub-test") for n in (1, 8))]:
        assert "msp score" in title(msp).lower() and "energy score" in title(energy).lower()


def test_class_names_fit_over_their_image():
    from cutmix_eval.report.figures import image_title

    assert image_title("001.Black_footed_Albatross") == "Black footed\nAlbatross"
    assert image_title("s=0.5") == "s=0.5" and image_title("0.5") == "0.5"
    assert image_title("a very long class name that goes on and on") == "a very long class\nname that goes…"


def test_report_of_two_ood_scores_through_the_cli(tmp_path):
    """ROC figures of two scores over the same sets: different file names and captions, each
    naming its score."""
    import re
    import subprocess

    ckpt = tiny_checkpoint(tmp_path / "m.pth")
    common = {"cwd": tmp_path, "env": cli_env(), "capture_output": True, "text": True, "timeout": 300}
    run = subprocess.run(CLI + ["ood", "--ckpt", str(ckpt), "--in", "synthetic", "--limit", "16", "--out", "uniform",
                                "--out", "gaussian", "--num-noise", "16", "--score", "msp,energy", "--results",
                                str(tmp_path / "R")], **common)
    assert run.returncode == 0, run.stderr
    run = subprocess.run(CLI + ["report", str(tmp_path / "R"), "--out", str(tmp_path / "O"), "--format", "md"],
                         **common)
    assert run.returncode == 0, run.stderr
    captions = {path: caption for caption, path in
                re.findall(r"!\[(ROC[^]]*)\]\((figures/[^)]*)\)", (tmp_path / "O" / "report.md").read_text())}
    assert set(captions) == {"figures/roc-energy-synthetic-test.png", "figures/roc-msp-synthetic-test.png"}
    assert "ENERGY score" in captions["figures/roc-energy-synthetic-test.png"]
    assert "MSP score" in captions["figures/roc-msp-synthetic-test.png"]
    assert "![AUROC and FPR@95 (OOD positive) of every OOD score, per method (synthetic/test)](figures/detectors-" \
           "synthetic-test.png)" in (tmp_path / "O" / "report.md").read_text()


@pytest.mark.parametrize("command", [
    ["corruption", "--corruptions", "noise", "--examples", "0"],
    ["occlusion", "--fractions", "0,0.5,1", "--examples", "1"],
])
def test_command_figures_are_titled_and_readable(tmp_path, monkeypatch, command):
    """The figures a command saves (captured on their way to disk), e.g. the single-model heat
    map that drew its two titles over each other and its group names under the colour bar."""
    import cutmix_eval.fileio as fileio
    from cutmix_eval.cli import main

    saved, save = {}, fileio.atomic_save_figure

    def keep(path, figure, **options):
        saved[path.name] = figure
        return save(path, figure, **options)

    monkeypatch.setattr(fileio, "atomic_save_figure", keep)
    ckpt = tiny_checkpoint(tmp_path / "m.pth")
    assert main([*command, "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "4", "--results",
                 str(tmp_path / "R"), "--output-dir", str(tmp_path / "out")]) == 0
    assert len(saved) == (1 if command[0] == "corruption" else 2)
    assert {name: layout_problems(figure) for name, figure in saved.items()} == {name: [] for name in saved}


def example_sheets() -> dict[str, object]:
    """The commands' example sheets of occluded, in-between and corrupted images (4 embedded
    test images; a few seconds to generate, so only drawn by the script)."""
    from cutmix_eval.cli.corruption import corruption_examples_figure
    from cutmix_eval.cli.inbetween import inbetween_example_figure
    from cutmix_eval.cli.occlusion import occlusion_example_figure
    from cutmix_eval.data import create_dataset

    dataset = create_dataset("synthetic", "test", num_samples=4)
    grid = np.linspace(0, 1, 11).tolist()
    occlusion = _result("occlusion", "cutmix", config={"fill": "black", "seed": 0, "fractions": grid,
                                                         "modes": ["centre", "boundary"]})
    inbetween = _result("inbetween", "cutmix", config={"mix_grid": grid, "cut_grid": grid[::2]},
                        per_sample={"index_a": np.array([0, 1]), "index_b": np.array([2, 3])})
    corruption = _result("corruption", "cutmix", config={"corruptions": list(ALL), "severities": [1, 2, 3, 4, 5],
                                                           "seed": 0})
    return {"occlusion-examples": occlusion_example_figure(None, dataset, occlusion, 2),
            "inbetween-examples": inbetween_example_figure(dataset, inbetween, 2),
            "corruption-examples": corruption_examples_figure(corruption, dataset, "cifar")}


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    from cutmix_eval.fileio import atomic_save_figure

    for prefix, figures in (("1", report_figures(1) | command_figures() | example_sheets()), ("8", report_figures(8))):
        for name, figure in figures.items():
            print(atomic_save_figure(out / f"{prefix}-{name}.png", figure))
        for name in ("report-occlusion-cub-test", "report-reliability-cub-test"):  # as the README saves one
            figures[name].savefig(out / f"{prefix}-{name}-plain.png", dpi=100)
