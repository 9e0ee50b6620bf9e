"""The quick start: the whole pipeline on the embedded dataset, on a CPU, in minutes.

It trains the four methods (baseline, Mixup, Cutout, CutMix) with the ``quick``
recipe on the embedded ``synthetic`` dataset, reloads each final checkpoint,
measures top-1/top-5 error on the test split and writes
``reports/quickstart/report.md``. Finished training runs are reused and
interrupted ones resumed, so running it again costs only the evaluation. As the
other analyses land (localization, robustness, OOD), each becomes a stage here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cutmix_eval.data import create_dataset
from cutmix_eval.evaluate import evaluate_classification
from cutmix_eval.fileio import atomic_write, atomic_write_text
from cutmix_eval.models.checkpoint import load_checkpoint
from cutmix_eval.train import METHODS, Recipe, get_recipe, train
from cutmix_eval.train.loop import LAST


def run_quickstart(out_dir: str | Path = "reports/quickstart", ckpt_dir: str | Path = "checkpoints/quickstart",
                   recipe: Recipe | None = None, methods: Sequence[str] = tuple(METHODS), device: str = "auto",
                   progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every stage; returns a summary dict (paths, metrics per method, timings)."""
    recipe = recipe or get_recipe("quick")
    out_dir, ckpt_dir = Path(out_dir), Path(ckpt_dir)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    test_set = create_dataset(recipe.dataset, "test")
    timings["data"] = time.perf_counter() - start
    log(f"[1/3] data: {recipe.dataset}, {test_set.num_classes} classes ({timings['data']:.1f} s)")

    log(f"[2/3] train: {', '.join(methods)} with recipe {recipe.name} ({recipe.arch}, {recipe.epochs} epochs)")
    outcomes = {}
    for method in methods:
        start = time.perf_counter()
        run_dir = ckpt_dir / method
        outcomes[method] = train(method, recipe, run_dir, device=device, resume=(run_dir / LAST).exists(),
                                 progress=progress, log=log)
        timings[f"train_{method}"] = time.perf_counter() - start

    start = time.perf_counter()
    rows, metrics = [], {}
    for method, outcome in outcomes.items():
        model, info = load_checkpoint(outcome.last)
        result = evaluate_classification(
            model, test_set, device=device, progress=progress,
            model_info={"checkpoint": str(outcome.last), "checkpoint_sha256": info.file_sha256,
                        "arch": info.arch, "method": method, "training_data": recipe.dataset})
        atomic_write_text(out_dir / "results" / f"{method}-classification.json", result.to_json(indent=1))
        metrics[method] = result.metrics
        rows.append({"method": method, "top-1 error (%) ↓": 100 * result.metrics["top1_error"],
                     "top-5 error (%) ↓": 100 * result.metrics["top5_error"],
                     "best top-1 during training (%) ↓": 100 * outcome.best_top1_error,
                     "training (s)": sum(h["seconds"] for h in outcome.history)})
    timings["evaluate"] = time.perf_counter() - start
    table = pd.DataFrame(rows)
    log("[3/3] evaluate:\n" + table.to_markdown(index=False, floatfmt=".2f"))

    grid = _write_sample_grid(test_set, out_dir / "samples.png")
    report = out_dir / "report.md"
    atomic_write_text(report, _report_markdown(table, recipe, grid, timings, test_set, ckpt_dir))
    log(f"report: {report}")
    return {"report": str(report), "checkpoints": {m: str(o.last) for m, o in outcomes.items()},
            "metrics": metrics, "timings": timings}


def _write_sample_grid(dataset, path: Path) -> Path:
    import numpy as np
    import torch

    from cutmix_eval.report.figures import sample_grid

    per_class = 2
    labels = np.asarray(dataset.labels)  # in memory: no sample is decoded to choose
    chosen = [int(i) for label in range(dataset.num_classes) for i in np.flatnonzero(labels == label)[:per_class]]
    samples = [dataset[i] for i in chosen]
    figure = sample_grid(torch.stack([s["image"] for s in samples]).numpy(),
                         boxes=[s["boxes"].numpy() for s in samples],
                         masks=[s["mask"].numpy() for s in samples],
                         titles=[dataset.classes[s["label"]] for s in samples], ncols=min(10, len(samples)))
    atomic_write(path, lambda fh: figure.savefig(fh, format="png", dpi=110, bbox_inches="tight"))
    return path


def _report_markdown(table: pd.DataFrame, recipe: Recipe, grid: Path, timings: dict[str, float], test_set,
                     ckpt_dir: Path) -> str:
    chance = 100 * (1 - 1 / test_set.num_classes)
    training = sum(v for k, v in timings.items() if k.startswith("train_"))
    return f"""# cutmix-eval quick start

Embedded dataset `{test_set.name}`: {test_set.num_classes} classes, {len(test_set)} test images, generated
from a seed (no download). Each class is told apart by a small part on a larger, less distinctive
body, on cluttered backgrounds; boxes in green, object masks dashed.

![samples]({grid.name})

## Classification

{table.to_markdown(index=False, floatfmt=".2f")}

Errors on the {len(test_set)} test images with the final weights (chance: {chance:.1f}% top-1); the paper
reports the best test error seen during training, shown in its own column. Top-1 error: fraction of images
whose label is not the highest logit (ties go to the lower class index); top-5: not among the 5 highest.
One seed each: differences of a point or two are within noise at this test-set size.

All four models share the recipe `{recipe.name}`, seed {recipe.seed}, initial weights and data order:
`{recipe.arch}`, {recipe.epochs} epochs, batch {recipe.batch_size}, SGD lr {recipe.lr} ({recipe.schedule}),
momentum {recipe.momentum} (Nesterov), weight decay {recipe.weight_decay}, random crop (4 px padding) and
flip. Mixup alpha {recipe.mixup_alpha}; Cutout {recipe.cutout_size} x {recipe.cutout_size} px filled with
the normalization mean; CutMix beta {recipe.cutmix_beta}, probability {recipe.cutmix_prob}, lambda corrected
to the pasted area. Checkpoints: `{ckpt_dir}/<method>/`.

Time: data {timings['data']:.0f} s, training {training:.0f} s in all, evaluation {timings['evaluate']:.0f} s.

Localization, occlusion, corruption, adversarial and OOD analyses join this report as they are added.
"""
