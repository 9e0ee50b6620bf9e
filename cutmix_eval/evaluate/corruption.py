"""Common-corruption robustness: top-1 error per (corruption, severity) and its summaries.

Two sources of corrupted images, one result:

on the fly (:func:`evaluate_corruption`)
    any labelled dataset; each batch is decoded once and every (corruption, severity) is
    applied to it in a batch (:func:`cutmix_eval.data.corrupted.corrupt_indexed`), image
    ``i`` seeded by ``(seed, i)``, so every model (and the reference model, which runs in
    the same sweep on the same corrupted batches) sees the same corrupted images. The
    severity table is the CIFAR-C one for images of at most 84 pixels a side and the
    ImageNet-C one above, unless ``table`` says otherwise.
released files (:func:`evaluate_released_corruption`)
    the CIFAR-10-C / CIFAR-100-C arrays and ImageNet-C folders, one pass per slice on disk;
    the clean error comes from the matching clean test set when it is given.

Summaries (:mod:`cutmix_eval.metrics.corruption`), all over the severities evaluated (all 5
by default, or any subset: then every convention names them): mean error per corruption and
per group, the CIFAR-C mean corruption error (unnormalized mean over the 15 benchmark
corruptions and the severities), and, against a reference, CE / mCE and relative mCE. The
reference is a reference model of the study evaluated in the same sweep (any severities), or
AlexNet's published ImageNet-C errors (the default on ImageNet data), which are means over all
5 severities only: with fewer, the record leaves mCE out and says why (asked for explicitly,
``reference="alexnet"`` is refused before any work).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from cutmix_eval.corruptions import BENCHMARK, GROUPS, SEVERITIES, list_corruptions, resolve_table
from cutmix_eval.data.base import ImageDataset
from cutmix_eval.data.corrupted import corrupt_indexed
from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.accumulate import Accumulator, feed
from cutmix_eval.evaluate.classification import check_compatible
from cutmix_eval.metrics import corruption as summaries
from cutmix_eval.models.classifier import Classifier
from cutmix_eval.passes import head, make_loader
from cutmix_eval.progress import progress_bar
from cutmix_eval.results import Result
from cutmix_eval.runtime import on_device, resolve_device
from cutmix_eval.settings import RunSettings

MODEL, REFERENCE = "model", "reference"
ECE_BINS = 15  # calibration under corruption: the bins of the classification analysis's ECE


def check_selection(corruptions: str | Sequence[str], severities: Iterable[int]) -> tuple[list[str], list[int]]:
    """Corruption names (a selection string such as ``all``, ``noise,blur`` or a list of
    names) and severities (1-5, sorted, unique), checked."""
    names = list_corruptions(corruptions) if isinstance(corruptions, str) else list_corruptions(",".join(corruptions))
    levels = sorted({int(s) for s in severities})
    if not levels or any(s not in SEVERITIES for s in levels):
        raise UserError(f"severities must be among 1-5, not {list(severities)}")
    return names, levels


def _check_reference(reference: Classifier | str | None, levels: Sequence[int]) -> None:
    """Refuse, before any work, a reference that is unknown or cannot normalize ``levels``."""
    if reference is None or isinstance(reference, Classifier):
        return
    if reference != "alexnet":
        raise UserError(f"unknown reference {reference!r}; give a model or 'alexnet'")
    if tuple(levels) != SEVERITIES:
        raise UserError(f"AlexNet's published ImageNet-C errors are means over all 5 severities, so they cannot "
                        f"normalize CE over {summaries.describe_severities(levels)}; evaluate severities 1-5 or give "
                        f"a reference model")


def parse_severities(text: str) -> list[int]:
    """``"1-5"``, ``"3"`` or ``"1,3,5"`` -> sorted severities (checked)."""
    try:
        if "-" in text:
            low, high = (int(v) for v in text.split("-"))
            values = list(range(low, high + 1))
        else:
            values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"cannot read severities {text!r}; write 1-5, 3 or 1,3,5") from None
    return check_selection("all", values)[1]


@torch.inference_mode()
def _outcomes(model: Classifier, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B bool: top-1 right, B float32: max softmax probability)``; a row with a NaN or
    infinite logit counts as wrong and gets confidence NaN (left out of ECE)."""
    logits = model(images)
    finite = torch.isfinite(logits).all(dim=1)
    confidence = torch.softmax(logits.double(), dim=1).amax(dim=1).float()
    return (logits.argmax(dim=1) == labels) & finite, torch.where(finite, confidence, torch.nan)


@contextlib.contextmanager
def _on_device(model: Classifier, reference: Classifier | None,
               device: torch.device) -> Iterator[dict[str, Classifier]]:
    """The model and a reference model, if given as one, on ``device`` for the block (:func:`on_device`)."""
    models = {MODEL: model} | ({REFERENCE: reference} if isinstance(reference, Classifier) else {})
    with contextlib.ExitStack() as stack:
        yield {key: stack.enter_context(on_device(m, device)) for key, m in models.items()}


def evaluate_corruption(model: Classifier, dataset: ImageDataset, *, corruptions: str | Sequence[str] = "all",
                        severities: Iterable[int] = SEVERITIES, table: str = "auto", seed: int = 0,
                        reference: Classifier | str | None = None, reference_label: str = "reference model",
                        settings: RunSettings = RunSettings()) -> Result:
    """Top-1 error of ``model`` on ``dataset`` (its first ``settings.limit`` images) corrupted on the
    fly by every selected corruption at every selected severity; see the module docstring.

    ``reference``: a model evaluated in the same sweep and used to normalize CE / mCE,
    ``"alexnet"`` for AlexNet's published ImageNet-C errors, or None (the default: AlexNet
    for ImageNet data at the ImageNet table, no normalization otherwise).
    """
    names, levels = check_selection(corruptions, severities)
    _check_reference(reference, levels)
    check_compatible(model, dataset)
    data = head(dataset, settings.limit)
    device = resolve_device(settings.device)
    with _on_device(model, reference, device) as models:
        loader = make_loader(data, settings.batch_size, settings.num_workers)
        bar = progress_bar(total=len(loader) * (1 + len(names) * len(levels)), desc=f"corruptions {dataset.name}",
                           unit="pass", enabled=settings.progress)
        accumulator = CorruptionAccumulator(models, names, levels, table=table, seed=seed, device=device,
                                            tick=bar.update)
        feed(accumulator, loader, desc="", progress=False)  # the bar above counts passes, not batches
        bar.close()
        rows, size = accumulator.reduced(), accumulator.size
        source = {"source": "on the fly", "table": resolve_table(table, *size), "seed": seed,
                  "image_size": list(size)}
        return _result(model, dataset, len(data), names, levels, rows["index"],
                       {k: rows[f"{k}/clean"] for k in models}, {k: rows[f"{k}/corrupted"] for k in models},
                       reference, reference_label, source, settings, (rows["clean_confidence"], rows["confidence"]))


class CorruptionAccumulator(Accumulator):
    """The per-batch work of :func:`evaluate_corruption`: each model's correctness on the clean
    batch, then on the batch corrupted on the fly by every selected corruption at every
    severity (``N x C x S`` per model; per-image seeds, so a batch's split does not matter).
    ``tick()`` is called after each pass over the batch."""

    def __init__(self, models: dict[str, Classifier], names: list[str], levels: list[int], *, table: str, seed: int,
                 device: torch.device, tick=lambda: None):
        super().__init__()
        self.models, self.names, self.levels, self.table, self.seed = models, names, levels, table, seed
        self.device, self.tick, self.size = device, tick, None

    def update(self, batch: dict) -> None:
        images, labels = batch["image"].to(self.device, non_blocking=True), batch["label"].to(self.device)
        self.size = self.size or tuple(images.shape[-2:])
        used_table = resolve_table(self.table, *self.size)
        clean = {key: _outcomes(m, images, labels) for key, m in self.models.items()}
        self.tick()
        shape = (len(images), len(self.names), len(self.levels))
        grid = {key: torch.zeros(shape, dtype=torch.bool) for key in self.models}
        confidence = torch.zeros(shape, dtype=torch.float32)
        for i, name in enumerate(self.names):
            for j, severity in enumerate(self.levels):
                corrupted = corrupt_indexed(images, batch["index"], name, severity, seed=self.seed, table=used_table)
                for key, m in self.models.items():
                    correct, confident = _outcomes(m, corrupted, labels)
                    grid[key][:, i, j] = correct.cpu()
                    if key == MODEL:
                        confidence[:, i, j] = confident.cpu()
                self.tick()
        self.add(index=batch["index"], **{f"{key}/clean": c for key, (c, _) in clean.items()},
                 **{f"{key}/corrupted": g for key, g in grid.items()}, clean_confidence=clean[MODEL][1],
                 confidence=confidence)


class CorrectnessAccumulator(Accumulator):
    """Each model's top-1 correctness per image (``key`` -> ``N`` bool) and the model's
    confidence (``confidence``), for released slices."""

    def __init__(self, models: dict[str, Classifier], device: torch.device):
        super().__init__()
        self.models, self.device = models, device

    def update(self, batch: dict) -> None:
        images, labels = batch["image"].to(self.device, non_blocking=True), batch["label"].to(self.device)
        outcomes = {key: _outcomes(m, images, labels) for key, m in self.models.items()}
        self.add(**{key: correct for key, (correct, _) in outcomes.items()}, confidence=outcomes[MODEL][1])


def evaluate_released_corruption(model: Classifier, name: str, *, root: str | None = None, split: str = "test",
                                 clean: ImageDataset | None = None, corruptions: str | Sequence[str] = "all",
                                 severities: Iterable[int] = SEVERITIES, reference: Classifier | str | None = None,
                                 reference_label: str = "reference model",
                                 settings: RunSettings = RunSettings()) -> Result:
    """Top-1 error of ``model`` on the released corrupted set ``name`` (``cifar10-c``,
    ``cifar100-c``, ``imagenet-c``) under the data root: every selected slice found on disk,
    one pass each (selected corruptions with no file are left out and listed in the record;
    a corruption with only some of the selected severities is an error). ``clean``, the
    matching clean test set, gives the clean error (needed for the relative mCE).
    ``reference`` as in :func:`evaluate_corruption`."""
    from cutmix_eval.data import corrupted_slices, create_dataset

    names, levels = check_selection(corruptions, severities)
    _check_reference(reference, levels)
    present = set(corrupted_slices(name, root))
    absent = [c for c in names if not any((c, s) in present for s in levels)]  # left out, and said so
    names = [c for c in names if c not in absent]
    if not names:
        raise UserError(f"no slice of {name} for the selected corruptions and severities {levels} under the data "
                        "root; check --data-root and the folder layout (`cutmix-eval datasets`)")
    missing = [(c, s) for c in names for s in levels if (c, s) not in present]
    if missing:
        raise UserError(f"{name} lacks {len(missing)} selected slices (e.g. {missing[0][0]} severity "
                        f"{missing[0][1]}); select what is on disk with --corruptions / --severities")
    device = resolve_device(settings.device)
    with _on_device(model, reference, device) as models:
        first = create_dataset(name, split, root=root, corruption=names[0], severity=levels[0])
        check_compatible(model, first)
        count = len(head(first, settings.limit))
        correct = {key: np.zeros((count, len(names), len(levels)), dtype=bool) for key in models}
        confidence = np.zeros((count, len(names), len(levels)), dtype=np.float32)
        bar = progress_bar(total=len(names) * len(levels) + (clean is not None), desc=f"{name} slices", unit="slice",
                           enabled=settings.progress)
        for i, corruption in enumerate(names):
            for j, severity in enumerate(levels):
                part = create_dataset(name, split, root=root, corruption=corruption, severity=severity)
                if len(part) < count:
                    raise UserError(f"{name}/{corruption}/{severity} has {len(part)} images, fewer than the {count} of "
                                    f"{names[0]}/{levels[0]}; the release has the same images in every slice")
                outcome = _pass(models, Subset(part, range(count)), settings, device)
                for key in models:
                    correct[key][:, i, j] = outcome[key]
                confidence[:, i, j] = outcome["confidence"]
                bar.update()
        clean_correct, clean_confidence = None, None
        if clean is not None:
            if len(clean) < count:
                raise UserError(f"the clean set {clean.name} has {len(clean)} images, fewer than the {count} of {name}")
            clean_correct = _pass(models, Subset(clean, range(count)), settings, device)
            clean_confidence = clean_correct.pop("confidence")
            bar.update()
        bar.close()
        left_out = f"; not on disk, left out: {', '.join(absent)}" if absent else ""
        source = {"source": f"released files ({name}){left_out}",
                  "table": "released", "seed": None, "clean_data": getattr(clean, "name", None), "absent": absent}
        return _result(model, first, count, names, levels, np.arange(count), clean_correct, correct, reference,
                       reference_label, source, settings, (clean_confidence, confidence), dataset_name=name)


def _pass(models: dict[str, Classifier], data, settings: RunSettings, device: torch.device) -> dict[str, np.ndarray]:
    """Per-model ``N`` bool correctness over ``data`` in one loader pass, and the model's ``confidence``."""
    accumulator = CorrectnessAccumulator(models, device)
    feed(accumulator, make_loader(data, settings.batch_size, settings.num_workers), desc="", progress=False)
    return accumulator.reduced()


def _reference(reference: Classifier | str | None, label: str, dataset_name: str, table: str,
               errors: dict[str, dict[str, np.ndarray]], clean: dict[str, float], levels: list[int]):
    """The :class:`~cutmix_eval.metrics.corruption.CorruptionReference` to normalize by, or
    None (``reference`` was checked by :func:`_check_reference`)."""
    if isinstance(reference, Classifier):
        return summaries.CorruptionReference.from_table(errors[REFERENCE], clean.get(REFERENCE), name=label,
                                                        severities=levels)
    if reference == "alexnet" or (reference is None and dataset_name.startswith("imagenet")
                                  and table in ("imagenet", "released")):
        return summaries.ALEXNET_ERRORS
    return None


def _metric_name(key: str) -> str:
    """:func:`~cutmix_eval.metrics.corruption.corruption_summary`'s keys as this Result's."""
    head, _, tail = key.partition("/")
    return {"mean_error": "mean_corruption_error", "group": f"{tail}/error", "ce": f"{tail}/ce",
            "relative_ce": f"{tail}/relative_ce"}.get(head, key)


def _summary(errors: dict[str, np.ndarray], clean_error: float | None, ref,
             levels: list[int]) -> tuple[dict[str, float], dict[str, str]]:
    """Mean corruption error, group means and, with a reference, CE / mCE / relative mCE of an
    error table at ``levels`` (one error per severity evaluated), with their conventions."""
    chosen = None if any(c in BENCHMARK for c in errors) else list(errors)  # None: the benchmark ones present
    if ref is not None and not all(c in ref.mean_errors for c in chosen or BENCHMARK if c in errors):
        ref = None  # AlexNet's table has no extra corruptions
    over = summaries.describe_severities(levels)
    conventions = {}
    if ref is summaries.ALEXNET_ERRORS and tuple(levels) != SEVERITIES:
        conventions["mce"] = conventions["relative_mce"] = (
            f"not reported: AlexNet's published ImageNet-C errors are means over all 5 severities, so they cannot "
            f"normalize CE over {over}; evaluate severities 1-5 or give a reference model (--reference-ckpt)")
        ref = None
    # a reference error of 0 leaves CE undefined, one not above the reference's clean error relative CE:
    # report what is defined and say why the rest is missing
    attempts = [ref, dataclasses.replace(ref, clean_error=None), None] if ref is not None else [None]
    for attempt in attempts:
        try:
            summary = summaries.corruption_summary(errors, clean_error, attempt, corruptions=chosen, severities=levels)
            break
        except ValueError as err:
            conventions.setdefault("relative_mce" if "relative" in str(err) else "mce", f"not reported: {err}")
    ref = attempt
    metrics = {_metric_name(k): v for k, v in summary.metrics.items()}
    conventions |= {
        "mean_corruption_error": f"CIFAR-C convention: unnormalized mean of the error over corruptions and {over}; "
                                 f"{summary.note}",
        "group_error": f"{{group}}/error: mean error over the group's corruptions evaluated and {over}",
    }
    if ref is not None:
        origin = (" (its published ImageNet-C per-corruption means x 5)" if ref is summaries.ALEXNET_ERRORS
                  else ", evaluated on the same corrupted images")
        conventions["mce"] = (f"mean over corruptions of CE_c = sum_s E(c, s) / sum_s E_ref(c, s), s over {over}, "
                              f"reference {ref.name}{origin}")
        conventions.setdefault("relative_mce", "mean over corruptions of sum_s (E(c, s) - E_clean) / "
                                               f"sum_s (E_ref(c, s) - E_ref_clean), s over {over}, reference "
                                               f"{ref.name}")
    return metrics, conventions


def _result(model: Classifier, dataset, count: int, names: list[str], levels: list[int], indices: np.ndarray,
            clean: dict[str, np.ndarray] | None, correct: dict[str, np.ndarray], reference, reference_label: str,
            source: dict[str, Any], settings: RunSettings, confidence: tuple[np.ndarray | None, np.ndarray],
            dataset_name: str | None = None) -> Result:
    """The Result from per-image outcomes: ``correct[key]`` is ``N x C x S`` bool per model
    key (``model``, maybe ``reference``), ``clean[key]`` ``N`` bool, or None without a clean set;
    ``confidence``: the model's max softmax probability, clean (``N``, or None) and corrupted
    (``N x C x S``), for calibration under corruption."""
    dataset_name = dataset_name or dataset.name
    errors = {key: {name: 1.0 - grid[:, i, :].mean(axis=0) for i, name in enumerate(names)}
              for key, grid in correct.items()}
    clean_error = {key: float(1.0 - c.mean()) for key, c in clean.items()} if clean is not None else {}
    seeded = (f", {source['table']} severity table, image i seeded by (seed {source['seed']}, i), unquantized "
              "float images" if source["seed"] is not None else "")
    conventions = {
        "error": "top-1 error on the corrupted images (keys {corruption}/error@{severity}; NaN or infinite logits "
                 "count as wrong); {corruption}/error is the mean over the severities evaluated",
        "source": source["source"] + seeded,
    }
    metrics: dict[str, float] = {}
    for name in names:
        metrics |= {f"{name}/error@{s}": float(e) for s, e in zip(levels, errors[MODEL][name])}
        metrics[f"{name}/error"] = float(errors[MODEL][name].mean())
    if MODEL in clean_error:
        metrics["clean_error"] = clean_error[MODEL]
        conventions["clean_error"] = "top-1 error on the uncorrupted images"
    ref = _reference(reference, reference_label, dataset_name, source["table"], errors, clean_error, levels)
    more, notes = _summary(errors[MODEL], clean_error.get(MODEL), ref, levels)
    metrics, conventions = metrics | more, conventions | notes
    ref = ref if "mce" in more else None
    metrics["num_images"] = int(count)
    more, notes = _calibration(names, levels, correct[MODEL], clean.get(MODEL) if clean else None, *confidence)
    metrics, conventions = metrics | more, conventions | notes
    curves: dict[str, Any] = {
        "severities": levels, "errors": {c: e.tolist() for c, e in errors[MODEL].items()},
        "groups": [g for g, members in GROUPS.items() if any(c in members for c in names)],
        "group_of": {c: g for g, members in GROUPS.items() for c in members if c in names},
    }
    if ref is not None:
        curves["reference"] = {"name": ref.name, "clean_error": ref.clean_error, "mean_errors": dict(ref.mean_errors),
                               "errors": ({c: e.tolist() for c, e in errors[REFERENCE].items()}
                                          if REFERENCE in errors else None)}
    per_sample: dict[str, np.ndarray] = {"index": indices}
    if clean is not None:
        per_sample["clean_correct"] = clean[MODEL]
    per_sample |= {f"{name}/correct": correct[MODEL][:, i, :] for i, name in enumerate(names)}
    if confidence[0] is not None:
        per_sample["clean_confidence"] = confidence[0]
    per_sample |= {f"{name}/confidence": confidence[1][:, i, :] for i, name in enumerate(names)}
    return Result(evaluator="corruption", metrics=metrics, conventions=conventions,
                  model=settings.model_record(model),
                  dataset={"name": dataset_name, "split": dataset.split, "num_images": int(count),
                           "num_classes": dataset.num_classes},
                  config={"corruptions": names, "severities": levels, "reference": ref.name if ref else None,
                          **source, **settings.config()},
                  curves=curves, per_sample=per_sample)


def _ece(confidence: np.ndarray, correct: np.ndarray) -> float:
    """ECE with :data:`ECE_BINS` equal-width right-closed bins over the images with a finite
    confidence (NaN when none has one)."""
    from cutmix_eval.metrics.calibration import expected_calibration_error

    finite = np.isfinite(confidence)
    return expected_calibration_error(confidence[finite], correct[finite], ECE_BINS) if finite.any() else float("nan")


def _calibration(names: Sequence[str], levels: Sequence[int], correct: np.ndarray, clean_correct: np.ndarray | None,
                 clean_confidence: np.ndarray | None, confidence: np.ndarray) -> tuple[dict[str, float], dict[str, str]]:
    """Calibration under corruption: ``{corruption}/ece@{severity}``, ``{corruption}/ece`` (mean
    over the severities), ``ece@{severity}`` (mean over the corruptions), ``mean_ece`` and, with
    a clean set, ``clean_ece``; the convention that says how."""
    grid = np.array([[_ece(confidence[:, i, j], correct[:, i, j]) for j in range(len(levels))]
                     for i in range(len(names))])
    metrics = {f"{name}/ece@{s}": float(grid[i, j]) for i, name in enumerate(names) for j, s in enumerate(levels)}
    metrics |= {f"{name}/ece": float(grid[i].mean()) for i, name in enumerate(names)}
    metrics |= {f"ece@{s}": float(grid[:, j].mean()) for j, s in enumerate(levels)}
    metrics["mean_ece"] = float(grid.mean())
    if clean_confidence is not None and clean_correct is not None:
        metrics["clean_ece"] = _ece(clean_confidence, clean_correct)
    return metrics, {"ece": f"calibration under corruption: ECE of the max softmax probability, {ECE_BINS} equal-width "
                            "right-closed bins, per (corruption, severity); ece@{severity} and mean_ece are means of "
                            "those ECEs over the corruptions (and severities); images with a non-finite logit are "
                            "left out"}

