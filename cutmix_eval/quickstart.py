"""The quick start: the whole pipeline on the embedded dataset, on a CPU, in minutes.

It trains the four methods (baseline, Mixup, Cutout, CutMix) with the ``quick``
recipe on the embedded ``synthetic`` dataset, reloads each final checkpoint,
measures top-1/top-5 error, calibration and MSP out-of-distribution detection
against the embedded companion sets on the test split and writes
``reports/quickstart/report.md``. Finished training runs are reused and
interrupted ones resumed, so running it again costs only the evaluation. As the
other analyses land (localization, robustness), each becomes a stage here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cutmix_eval.data import create_dataset
from cutmix_eval.evaluate.calibration import calibration_result
from cutmix_eval.evaluate.classification import classification_result, labelled_pass
from cutmix_eval.evaluate.ood import create_ood_sets, evaluate_ood
from cutmix_eval.fileio import atomic_save_figure, atomic_write_text
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
    ood_sets = create_ood_sets(test_set, ["all"], num_noise=len(test_set))
    rows, ood_rows, metrics = [], [], {}
    for method, outcome in outcomes.items():
        model, info = load_checkpoint(outcome.last)
        model_info = {"checkpoint": str(outcome.last), "checkpoint_sha256": info.file_sha256, "arch": info.arch,
                      "method": method, "training_data": recipe.dataset}
        predictions, dataset_info = labelled_pass(model, test_set, device=device, progress=progress)
        results = {"classification": classification_result(predictions, model_info=model_info,
                                                           dataset_info=dataset_info),
                   "calibration": calibration_result(predictions, model_info=model_info, dataset_info=dataset_info),
                   "ood-msp": evaluate_ood(model, test_set, ood_sets, device=device, model_info=model_info,
                                           limit=len(test_set), progress=progress,
                                           id_predictions=predictions)["msp"]}
        for name, result in results.items():
            atomic_write_text(out_dir / "results" / f"{method}-{name}.json", result.to_json(indent=1))
        metrics[method] = {name: result.metrics for name, result in results.items()}
        classification, calibration, ood = (results[k].metrics for k in ("classification", "calibration", "ood-msp"))
        rows.append({"method": method, "top-1 error (%) ↓": 100 * classification["top1_error"],
                     "top-5 error (%) ↓": 100 * classification["top5_error"],
                     "best top-1 during training (%) ↓": 100 * outcome.best_top1_error,
                     "NLL ↓": calibration["nll"], "ECE (%) ↓": 100 * calibration["ece"],
                     "training (s)": sum(h["seconds"] for h in outcome.history)})
        ood_rows.append({"method": method, **{f"AUROC {n} (%) ↑": 100 * ood[f"{n}/auroc"] for n in ood_sets},
                         "mean TNR at TPR95 (%) ↑": 100 * ood["mean/tnr_at_tpr95"],
                         "mean AUROC (%) ↑": 100 * ood["mean/auroc"],
                         "mean det. acc. (%) ↑": 100 * ood["mean/detection_accuracy"]})
    timings["evaluate"] = time.perf_counter() - start
    table, ood_table = pd.DataFrame(rows), pd.DataFrame(ood_rows)
    log("[3/3] evaluate:\n" + table.to_markdown(index=False, floatfmt=".2f") + "\n\nOOD detection (MSP):\n"
        + ood_table.to_markdown(index=False, floatfmt=".1f"))

    grid = _write_sample_grid(test_set, out_dir / "samples.png")
    report = out_dir / "report.md"
    atomic_write_text(report, _report_markdown(table, ood_table, recipe, grid, timings, test_set, ckpt_dir))
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
    return atomic_save_figure(path, figure, dpi=110)


def _report_markdown(table: pd.DataFrame, ood_table: pd.DataFrame, recipe: Recipe, grid: Path,
                     timings: dict[str, float], test_set, ckpt_dir: Path) -> str:
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
NLL: mean negative log-likelihood (nats); ECE: 15 equal-width confidence bins, right-closed, weighted by
count. One seed each: differences of a point or two are within noise at this test-set size.

All four models share the recipe `{recipe.name}`, seed {recipe.seed}, initial weights and data order:
`{recipe.arch}`, {recipe.epochs} epochs, batch {recipe.batch_size}, SGD lr {recipe.lr} ({recipe.schedule}),
momentum {recipe.momentum} (Nesterov), weight decay {recipe.weight_decay}, random crop (4 px padding) and
flip. Mixup alpha {recipe.mixup_alpha}; Cutout {recipe.cutout_size} x {recipe.cutout_size} px filled with
the normalization mean; CutMix beta {recipe.cutmix_beta}, probability {recipe.cutmix_prob}, lambda corrected
to the pasted area. Checkpoints: `{ckpt_dir}/<method>/`.

## Out-of-distribution detection

{ood_table.to_markdown(index=False, floatfmt=".1f")}

Maximum softmax probability (the paper's score), the {len(test_set)} test images as the positive class
against each companion set of the same size: `synthetic-unseen` (objects whose part designs no class
has: near OOD), `synthetic-background` (backgrounds alone), `photos` (crops of real photographs) and
uniform / Gaussian noise. TNR at TPR95: exact sweep, the largest threshold accepting at least 95% of the
test images; detection accuracy: best 0.5 TPR + 0.5 TNR; means over the five sets. Per-image scores,
AUPR-In/Out and the OOD-positive FPR@95 are in `results/<method>-ood-msp.json`.

Time: data {timings['data']:.0f} s, training {training:.0f} s in all, evaluation {timings['evaluate']:.0f} s.

Localization, occlusion, corruption and adversarial analyses join this report as they are added.
"""
