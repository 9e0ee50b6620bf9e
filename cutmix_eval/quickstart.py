"""The quick start: the whole pipeline on the embedded dataset, on a CPU, in minutes.

Today it trains one small baseline model (``gapnet``) on the embedded ``synthetic``
dataset, reloads it from its checkpoint, measures top-1/top-5 error on the test
split and writes ``reports/quickstart/report.md``. As the other analyses land
(training methods, localization, robustness, OOD), each becomes a stage here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from cutmix_eval.data import create_dataset
from cutmix_eval.evaluate import evaluate_classification
from cutmix_eval.fileio import atomic_write, atomic_write_text
from cutmix_eval.models import create_model
from cutmix_eval.models.checkpoint import load_checkpoint, save_checkpoint
from cutmix_eval.train import TrainConfig, channel_stats, train_classifier

ARCH = "gapnet"
DATASET = "synthetic"


def run_quickstart(out_dir: str | Path = "reports/quickstart", ckpt_dir: str | Path = "checkpoints/quickstart",
                   config: TrainConfig | None = None, device: str = "auto", progress: bool = True,
                   log: Callable[[str], None] = print, **dataset_kwargs: Any) -> dict[str, Any]:
    """Run every stage; returns a summary dict (paths, metrics, timings).

    ``dataset_kwargs`` go to the embedded dataset (e.g. ``num_samples`` for a smaller run).
    """
    config = config or TrainConfig()
    out_dir, ckpt_dir = Path(out_dir), Path(ckpt_dir)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    train_set = create_dataset(DATASET, "train", **dataset_kwargs)
    test_set = create_dataset(DATASET, "test", **dataset_kwargs)
    timings["data"] = time.perf_counter() - start
    log(f"[1/3] data: {DATASET} train {len(train_set)} / test {len(test_set)} images, "
        f"{train_set.num_classes} classes ({timings['data']:.1f} s)")

    start = time.perf_counter()
    mean, std = channel_stats(train_set)
    image_size = tuple(train_set[0]["image"].shape)
    model = create_model(ARCH, train_set.num_classes, mean=mean, std=std, input_size=image_size)
    log(f"[2/3] train: {ARCH} ({model.num_parameters:,} parameters), baseline, {config.epochs} epochs")
    history = train_classifier(model, train_set, config, device=device, progress=progress, log=log)
    ckpt = save_checkpoint(ckpt_dir / "baseline.pth", model, method="baseline", dataset=DATASET,
                           train_config=config.to_dict())
    timings["train"] = time.perf_counter() - start

    start = time.perf_counter()
    model, info = load_checkpoint(ckpt)
    result = evaluate_classification(
        model, test_set, device=device, progress=progress,
        model_info={"checkpoint": str(ckpt), "checkpoint_sha256": info.file_sha256, "arch": info.arch,
                    "method": "baseline", "training_data": DATASET})
    timings["evaluate"] = time.perf_counter() - start
    log(f"[3/3] evaluate: top-1 error {100 * result.metrics['top1_error']:.2f}%, "
        f"top-5 error {100 * result.metrics['top5_error']:.2f}% on {len(test_set)} test images")

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "classification.json", result.to_json(indent=1))
    grid = _write_sample_grid(test_set, out_dir / "samples.png")
    report = out_dir / "report.md"
    atomic_write_text(report, _report_markdown(result.metrics, history, config, info.arch, ckpt, grid,
                                               timings, train_set, test_set))
    log(f"report: {report}")
    return {"report": str(report), "checkpoint": str(ckpt), "metrics": result.metrics, "timings": timings}


def _write_sample_grid(dataset, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import torch

    from cutmix_eval.report.figures import sample_grid

    per_class = 2
    chosen: list[int] = []
    for label in range(dataset.num_classes):
        chosen += [i for i in range(len(dataset)) if dataset.load(i)["label"] == label][:per_class]
    samples = [dataset[i] for i in chosen]
    figure = sample_grid(torch.stack([s["image"] for s in samples]).numpy(),
                         boxes=[s["boxes"].numpy() for s in samples],
                         masks=[s["mask"].numpy() for s in samples],
                         titles=[dataset.classes[s["label"]] for s in samples], ncols=min(10, len(samples)))
    atomic_write(path, lambda fh: figure.savefig(fh, format="png", dpi=110, bbox_inches="tight"))
    return path


def _report_markdown(metrics, history, config, arch, ckpt, grid, timings, train_set, test_set) -> str:
    table = pd.DataFrame([{"method": "baseline", "top-1 error (%) ↓": 100 * metrics["top1_error"],
                           "top-5 error (%) ↓": 100 * metrics["top5_error"],
                           "train accuracy, last epoch (%)": 100 * history[-1]["train_accuracy"]}])
    chance = 100 * (1 - 1 / test_set.num_classes)
    return f"""# cutmix-eval quick start

Embedded dataset `{train_set.name}`: {len(train_set)} training and {len(test_set)} test images,
{train_set.num_classes} classes, generated from a seed (no download). Each class is told apart by a
small part on a larger, less distinctive body, on cluttered backgrounds.

![samples]({grid.name})

## Classification

{table.to_markdown(index=False, floatfmt=".2f")}

Chance level is {chance:.1f}% top-1 error. Errors are fractions of test images whose label is not the
highest logit (top-1) or not among the 5 highest (top-5); ties go to the lower class index.

Model `{arch}` trained with the plain baseline recipe: {config.epochs} epochs, batch {config.batch_size},
SGD lr {config.lr} (cosine), momentum {config.momentum}, weight decay {config.weight_decay},
horizontal flips, seed {config.seed}. Checkpoint: `{ckpt}`.

Time: data {timings['data']:.0f} s, training {timings['train']:.0f} s, evaluation {timings['evaluate']:.0f} s.

This is the first stage of the quick start. Mixup, Cutout and CutMix training, localization,
occlusion, corruption, adversarial and OOD analyses join this report as they are added.
"""
