"""The quick start: the whole pipeline on the embedded dataset, on a CPU, in minutes.

It trains the four methods (baseline, Mixup, Cutout, CutMix) with the ``quick``
recipe on the embedded ``synthetic`` dataset, then runs every analysis on each
final checkpoint as a study (:mod:`cutmix_eval.study`) and writes
``reports/quickstart/`` (``report.md``, ``report.tex``, ``report.csv``,
``report.html``, ``figures/``, records in ``results/``). Finished training runs
and recorded evaluations are reused and interrupted ones resumed, so a second
run costs seconds. Analyses that are slow per image run on the first images of
the test split only (:data:`QUICK_ANALYSES` names how many); the report says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cutmix_eval.data import create_dataset
from cutmix_eval.distributed import is_main_process
from cutmix_eval.fileio import atomic_save_figure
from cutmix_eval.study import Study, StudyCheckpoint, StudyDataset, run_study
from cutmix_eval.catalog import PAPER_METHODS, QUICK_SEEDS
from cutmix_eval.train import Recipe, get_recipe, train
from cutmix_eval.train.loop import LAST

#: every analysis with its options and image limit (None: the whole test split), sized so
#: that the twelve models (four methods x three seeds) are evaluated in about three minutes on a
#: 2-core CPU
QUICK_ANALYSES: dict[str, dict[str, Any]] = {
    "classification": {"options": {}, "limit": None},
    "localization": {"options": {"protocol": "wsolevaluation"}, "limit": None},
    "ood": {"options": {"scores": ["msp"], "sets": ["all"]}, "limit": None},
    "occlusion": {"options": {"fractions": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]}, "limit": 250},
    "inbetween": {"options": {"num_pairs": 250, "mix_grid": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
                              "cut_grid": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]}, "limit": None},
    "adversarial": {"options": {"attacks": ["fgsm"]}, "limit": 250},
    "corruption": {"options": {"corruptions": "all"}, "limit": 50},
}


def run_name(method: str, seed: int) -> str:
    """A run's folder under the checkpoint folder: ``<method>/seed<seed>``."""
    return f"{method}/seed{seed}"


def quickstart_study(out_dir: Path, checkpoints: Mapping[tuple[str, int], Path], recipe: Recipe, device: str,
                     test_size: int) -> Study:
    """The quick start's evaluation as a study (what ``examples/embedded.toml`` spells out):
    ``checkpoints`` maps ``(method, seed)`` to a final checkpoint; a method's seeds are pooled
    by the report (same label, architecture, data and recipe but the seed)."""
    analyses = {name: {"options": dict(e["options"]), "limit": e["limit"] if e["limit"] and e["limit"] < test_size
                       else None} for name, e in QUICK_ANALYSES.items()}
    seeds = sorted({seed for _, seed in checkpoints})
    return Study(name="quickstart",
                 checkpoints=[StudyCheckpoint(path, method) for (method, _), path in checkpoints.items()],
                 datasets=[StudyDataset(recipe.dataset, "test")], analyses=analyses, output=out_dir, device=device,
                 title="cutmix-eval quick start", intro=_intro(recipe, seeds, test_size, analyses))


def run_quickstart(out_dir: str | Path = "reports/quickstart", ckpt_dir: str | Path = "checkpoints/quickstart",
                   recipe: Recipe | None = None, methods: Sequence[str] = PAPER_METHODS,
                   seeds: Sequence[int] = QUICK_SEEDS, device: str = "auto", progress: bool = True,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train every method with every seed, evaluate, report; returns a summary dict (paths,
    timings in seconds per phase). Runs go seed by seed (all methods of seed 0 first), so an
    interrupted quick start holds whole seeds; finished runs are reused, interrupted ones resumed."""
    recipe = recipe or get_recipe("quick")
    out_dir, ckpt_dir = Path(out_dir), Path(ckpt_dir)
    timings: dict[str, float] = {}
    overall = time.perf_counter()

    start = time.perf_counter()
    test_set = create_dataset(recipe.dataset, "test")
    samples = out_dir / "figures" / "samples.png"
    if not samples.exists() and is_main_process():
        _write_sample_grid(test_set, samples)
    timings["data"] = time.perf_counter() - start
    log(f"[1/3] data: {recipe.dataset}, {test_set.num_classes} classes, {len(test_set)} test images "
        f"({timings['data']:.1f} s)")

    runs = [(method, seed) for seed in seeds for method in methods]
    log(f"[2/3] train: {', '.join(methods)} x seeds {', '.join(map(str, seeds))} with recipe {recipe.name} "
        f"({recipe.arch}, {recipe.epochs} epochs)")
    checkpoints: dict[tuple[str, int], Path] = {}
    histories: dict[str, list[list[dict[str, Any]]]] = {method: [] for method in methods}
    trained: list[float] = []
    for i, (method, seed) in enumerate(runs):
        start = time.perf_counter()
        run_dir = ckpt_dir / run_name(method, seed)
        outcome = train(method, replace(recipe, seed=seed), run_dir, device=device,
                        resume=(run_dir / LAST).exists(), progress=progress, log=log)
        checkpoints[method, seed] = outcome.last
        histories[method].append(outcome.history)
        trained.append(time.perf_counter() - start)
        timings[f"train_{method}"] = timings.get(f"train_{method}", 0.0) + trained[-1]
        left = len(runs) - i - 1
        if left and max(trained) > 5:
            log(f"  {method} seed {seed} done in {trained[-1]:.0f} s; about {left * sum(trained) / len(trained) / 60:.1f}"
                " min of training left")
    curves = out_dir / "figures" / "learning-curves.png"
    if is_main_process():
        _write_learning_curves(histories, recipe, curves)

    log(f"[3/3] evaluate: {len(QUICK_ANALYSES)} analyses x {len(runs)} models")
    start = time.perf_counter()
    study = quickstart_study(out_dir, checkpoints, recipe, device, len(test_set))
    outcome = run_study(study, progress=progress, log=log,
                        extra_figures=[("Embedded test images", samples),
                                       (f"Learning curves (test top-1 error on the first {recipe.test_samples or 'all'}"
                                        " test images after each epoch, and training loss)", curves)])
    if outcome is None:  # a torchrun rank other than 0: it evaluated its shards; rank 0 reports
        return {}
    timings["evaluate"] = time.perf_counter() - start
    timings["total"] = time.perf_counter() - overall
    training = sum(v for k, v in timings.items() if k.startswith("train_"))
    log(f"report: {outcome.paths['md']} (also {', '.join(str(p) for k, p in outcome.paths.items() if k != 'md')})")
    log(f"total {timings['total'] / 60:.1f} min: data {timings['data']:.0f} s, training {training:.0f} s "
        f"({len(runs)} runs), evaluation and report {timings['evaluate']:.0f} s")
    return {"report": {k: str(p) for k, p in outcome.paths.items()}, "results": str(study.results),
            "checkpoints": {run_name(m, s): str(p) for (m, s), p in checkpoints.items()}, "timings": timings}


def _write_learning_curves(histories: dict[str, list[list[dict[str, Any]]]], recipe: Recipe, path: Path) -> Path:
    from cutmix_eval.report.figures import learning_curves

    figure = learning_curves(histories, title=f"Learning curves: {recipe.arch} on {recipe.dataset}, recipe "
                                              f"{recipe.name}")
    return atomic_save_figure(path, figure, dpi=130)


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


def _intro(recipe: Recipe, seeds: Sequence[int], test_size: int, analyses: dict[str, dict[str, Any]]) -> str:
    subsets = ", ".join(f"{name} on the first {e['limit']}" for name, e in analyses.items() if e["limit"])
    return (f"{recipe.arch} models trained with the `{recipe.name}` recipe ({recipe.epochs} epochs on "
            f"{recipe.train_samples or 'all'} training images, batch {recipe.batch_size}, SGD lr {recipe.lr} "
            f"{recipe.schedule}) on the embedded `{recipe.dataset}` dataset, once per seed ({', '.join(map(str, seeds))}"
            "; a seed fixes the initial weights and the data order, shared by all methods). Mixup alpha "
            f"{recipe.mixup_alpha}; Cutout {recipe.cutout_size} px; CutMix beta {recipe.cutmix_beta}, probability "
            f"{recipe.cutmix_prob}. Evaluated on the {test_size} test images ({subsets} images, to finish in "
            "minutes on a CPU). A cell is the mean over the seeds with its 95% t-interval over seeds; the "
            "difference tables pair each method with the baseline seed by seed, and only a difference whose "
            "interval excludes 0 is evidence. It is evidence about these small models on this generated data, "
            "not about ImageNet or CIFAR.")
