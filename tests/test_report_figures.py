"""Every figure the project draws, at 1 model and at 8, from synthetic records.

Run as a script to look at them: ``python tests/test_report_figures.py OUT_DIR`` writes
``OUT_DIR/<models>-<name>.png`` for 1 and 8 models (the way the commands save them).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from cutmix_eval.corruptions.registry import ALL, GROUPS
from cutmix_eval.report.store import Record, example_arrays
from cutmix_eval.results import Result

#: 8 method labels: the paper's four, then others (their colours come from the fallback palette)
LABELS = ["baseline", "mixup", "cutout", "cutmix", "augmix", "resizemix", "puzzlemix", "saliencymix"]
#: CUB-200-2011 class names as its classes.txt spells them (the longest ones)
CUB_CLASSES = ["001.Black_footed_Albatross", "047.American_Goldfinch", "096.Hooded_Oriole",
               "127.Savannah_Sparrow", "124.Le_Conte_Sparrow", "162.Canada_Warbler",
               "184.Louisiana_Waterthrush", "049.Boat_tailed_Grackle"]
OOD_SETS = {"lsun-crop": 1000, "lsun-resize": 1000, "tinyimagenet-crop": 1000, "tinyimagenet-resize": 1000,
            "isun": 8925, "uniform": 1000, "gaussian": 1000}
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
        per_sample = {"id/score": rng.normal(2, 1, 500)}
        per_sample |= {f"{name}/score": rng.normal(rng.uniform(-1, 1.5), 1, 300) for name in OOD_SETS}
        sets = {name: {"num_images": n, "description": name} for name, n in OOD_SETS.items()}
        ood.append(_result("ood", label, config={"score": score}, per_sample=per_sample,
                           dataset=DATASET | {"ood_sets": sets},
                           metrics={f"{n}/auroc": rng.uniform(0.5, 1) for n in OOD_SETS}))
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
    images = np.stack([np.stack([x, y, rng.uniform(0, 1) * np.ones_like(x)]) for _ in range(8)])
    blob = np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.05)
    boxes = [np.array([[8.0, 10.0, 40.0, 38.0]]) for _ in images]
    examples = {"image": list(images), "map": [np.roll(blob, rng.integers(-6, 6)) for _ in images], "boxes": boxes,
                "pred_boxes": [b + rng.integers(-4, 4, 4) for b in boxes], "title": CUB_CLASSES, "threshold": 0.2}
    localization = _result("localization", label)
    records = [(_job("classification", label), [classification, calibration], {}),
               (_job("localization", label), [localization], example_arrays(examples)),
               (_job("ood", label), ood, {}), (_job("occlusion", label), [occlusion], {}),
               (_job("inbetween", label), [inbetween], {}), (_job("adversarial", label), [adversarial], {}),
               (_job("corruption", label), [corruption], {})]
    return [Record(Path(f"{job['analysis']}-{label}.json"), job, label, results, artifacts)
            for job, results, artifacts in records]


def report_figures(count: int) -> dict[str, object]:
    """The report's comparison figures for the first ``count`` of :data:`LABELS`."""
    from cutmix_eval.report.build import comparison_figures

    records = [r for i, label in enumerate(LABELS[:count]) for r in model_records(label, i)]
    return {f"report-{name}": figure for name, _, figure in comparison_figures(records)}


def command_figures() -> dict[str, object]:
    """The figures the per-analysis commands draw for one model, from the same records."""
    from cutmix_eval.cli.calibration import reliability_figure
    from cutmix_eval.cli.ood import ood_figure
    from cutmix_eval.evaluate.localization import examples_figure
    from cutmix_eval.report.figures import adversarial_figure, corruption_heatmap, inbetween_figure, occlusion_figure
    from cutmix_eval.report.store import examples_from_arrays

    records = {r.analysis: r for r in model_records("cutmix", 3)}
    calibrated = records["classification"].results[1]
    calibrated.metrics |= {"temperature": 1.3, "ece_calibrated": 0.012}
    calibrated.curves["reliability_calibrated"] = _reliability(np.random.default_rng(0), 0.02)
    title = "cutmix on cub/test"
    corruption = records["corruption"].results[0].curves
    return {
        "calibration-reliability": reliability_figure(calibrated),
        **{f"ood-{r.config['score']}-scores": ood_figure(r) for r in records["ood"].results},
        "localize-examples": examples_figure(examples_from_arrays(records["localization"].artifacts)),
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
