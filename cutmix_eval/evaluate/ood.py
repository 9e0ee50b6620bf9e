"""Out-of-distribution detection: an ID test set against OOD sets, with any registered score.

The protocol of the CutMix paper (Table 12, after Hendrycks & Gimpel and ODIN): the
ID test images are the positive class; each OOD set is scored against them with
TNR at TPR 95%, AUROC, detection accuracy, AUPR-In and AUPR-Out (exact
definitions in :mod:`cutmix_eval.metrics.ood`), and the mean over OOD sets is
reported too. OOD images are brought to the ID image size the way the paper's
sets were made: ODIN's crop sets are centre-cropped, its resize sets, iSUN, any
folder of images and the embedded companions are resized, and noise is generated
at that size.

Passes are shared: the ID set and each OOD set are run through the model once,
and every post-hoc score (MSP, max logit, energy, Mahalanobis) reads those
logits and features. ODIN makes its own passes (it perturbs the input) and holds
out the first images of every set to tune its settings on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from cutmix_eval.data import create_dataset, dataset_spec
from cutmix_eval.data.base import ImageDataset
from cutmix_eval.data.ood import folder_set_names
from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.classification import check_compatible
from cutmix_eval.evaluate.ood_scores import OODScore, create_score, fits
from cutmix_eval.metrics.ood import CONVENTIONS as METRIC_CONVENTIONS
from cutmix_eval.metrics.ood import ood_metrics
from cutmix_eval.models.classifier import Classifier
from cutmix_eval.passes import Predictions, head, predict
from cutmix_eval.results import Result
from cutmix_eval.runtime import resolve_device
from cutmix_eval.settings import RunSettings

#: the OOD sets of the CutMix paper's Table 12 / appendix Table A2, in its order
PAPER_SETS = ("tinyimagenet-crop", "tinyimagenet-resize", "lsun-crop", "lsun-resize", "isun", "uniform", "gaussian")
#: the embedded dataset's companions, from near to far, plus noise
SYNTHETIC_SETS = ("synthetic-unseen", "synthetic-background", "photos", "uniform", "gaussian")
ALIASES = {"lsun": ("lsun-crop", "lsun-resize"), "tinyimagenet": ("tinyimagenet-crop", "tinyimagenet-resize"),
           "noise": ("uniform", "gaussian")}
MEANINGLESS = "OOD scores from them mean nothing"
#: the records' key prefixes besides the sets' (``mean/{metric}``, ``id/score``): no set is named so
RESERVED = ("id", "mean", "near", "far")
METRICS = ("tnr_at_tpr95", "auroc", "detection_accuracy", "aupr_in", "aupr_out", "fpr95_ood_pos")


def _expand(id_name: str, name: str) -> tuple[str, ...]:
    """One requested name as the sets it stands for: ``all``, an alias, an OpenOOD v1.5
    group (``openood-cifar10-near``: every near-OOD set of that benchmark, in OpenOOD's
    order; also ``-far``, ``-val``), or itself."""
    if name == "all":
        return SYNTHETIC_SETS if id_name.startswith("synthetic") else PAPER_SETS
    benchmark, _, group = name.removeprefix("openood-").rpartition("-")
    if name.startswith("openood-") and group in ("near", "far", "val"):
        from cutmix_eval.data.openood import openood_set_names

        return tuple(openood_set_names(benchmark, group))
    return ALIASES.get(name, (name,))


def ood_set_names(id_name: str, requested: Sequence[str]) -> list[str]:
    """Expand ``all`` (the paper's seven sets, or the embedded companions for the embedded
    dataset), the aliases ``lsun``, ``tinyimagenet``, ``noise`` and the OpenOOD v1.5 groups
    (``openood-cifar10-near``, ``openood-imagenet-far``...); a set named twice (directly, or
    also through ``all``, an alias or a group) is a :class:`UserError`."""
    names: list[str] = []
    for name in requested:
        expanded = _expand(id_name, name)
        twice = [n for n in expanded if n in names]
        if twice:
            raise UserError(f"OOD set {twice[0]} is named twice in {', '.join(requested)} ('all', "
                            f"{', '.join(ALIASES)} name several sets); name each set once")
        names += expanded
    return names


def _is_folder(name: str) -> bool:
    return os.sep in name or Path(name).is_dir()


def name_ood_sets(id_name: str, requested: Sequence[str]) -> dict[str, str | Path]:
    """``{set name: registry name, or resolved folder of images}`` for the OOD sets of
    ``requested`` (see :func:`ood_set_names`). Folders are named by
    :func:`~cutmix_eval.data.ood.folder_set_names` (a unique path suffix, ``LSUN-test``);
    a folder given twice (the same folder once resolved) is a :class:`UserError`."""
    names = ood_set_names(id_name, requested)
    folders: dict[str, Path] = {}
    for name in filter(_is_folder, names):
        folder = Path(name).expanduser().resolve()
        if not folder.is_dir():
            raise UserError(f"OOD folder {name} does not exist; pass a folder of images or a set name "
                            "(see `cutmix-eval datasets`)")
        same = [given for given, seen in folders.items() if seen == folder]
        if same:
            raise UserError(f"OOD folders {same[0]} and {name} are the same folder ({folder}); give each set once")
        folders[name] = folder
    taken = {*(name for name in names if name not in folders), *RESERVED}
    renamed = dict(zip(folders, folder_set_names(list(folders.values()), taken)))
    return {renamed.get(name, name): folders.get(name, name) for name in names}


def create_ood_sets(id_dataset: ImageDataset, requested: Sequence[str], root: str | None = None,
                    num_noise: int = 10_000) -> dict[str, ImageDataset]:
    """The OOD sets named in ``requested`` (registry names, aliases, ``all`` or folders of
    images), at the ID images' size (their height), under the names of
    :func:`name_ood_sets`: see the module docstring."""
    size = int(id_dataset[0]["image"].shape[-2])
    sets = {}
    for name, source in name_ood_sets(id_dataset.name, requested).items():
        if isinstance(source, Path):
            sets[name] = create_dataset("images", root=source, image_size=size)
            continue
        spec = dataset_spec(source)
        if spec.kind != "ood":
            raise UserError(f"{source} is not an OOD set; choose from the sets of kind 'ood' in "
                            "`cutmix-eval datasets`, a folder of images, or 'all'")
        extra = {"num_samples": num_noise} if source in ("uniform", "gaussian") else {}
        sets[name] = create_dataset(source, "test", root=root, image_size=size, **extra)
    if not sets:
        raise UserError("no OOD set given; pass --out NAME (or 'all')")
    return sets


def ood_group(set_name: str) -> str | None:
    """``near`` or ``far`` for an OpenOOD v1.5 set (``openood-cifar10-near-tin``), else None."""
    parts = set_name.split("-")
    return parts[2] if set_name.startswith("openood-") and len(parts) > 3 and parts[2] in ("near", "far") else None


def _set_metrics(pairs: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """``{set}/{metric}`` for each (ID scores, OOD scores) pair, ``mean/{metric}`` over sets,
    and for OpenOOD v1.5 sets ``near/{metric}`` and ``far/{metric}``, the means over each
    group's sets (OpenOOD's near-OOD and far-OOD rows)."""
    metrics: dict[str, float] = {}
    for name, (id_scores, ood_scores) in pairs.items():
        values = ood_metrics(id_scores, ood_scores).as_dict()
        metrics |= {f"{name}/{m}": values[m] for m in METRICS}
    groups = {"mean": list(pairs)}
    for name in pairs:
        if (group := ood_group(name)) is not None:
            groups.setdefault(group, []).append(name)
    for group, members in groups.items():
        for m in METRICS:
            metrics[f"{group}/{m}"] = float(np.mean([metrics[f"{name}/{m}"] for name in members]))
    return metrics


#: the options of an OOD evaluation that decide which images it reads
INPUT_OPTIONS = ("sets", "scores", "num_noise", "fit_data")


def ood_inputs(dataset: ImageDataset, limit: int | None = None, data_root: str | None = None, *,
               sets: Sequence[str] = ("all",), scores: Sequence[str] = ("msp",), num_noise: int | None = None,
               fit_data: str | None = None, cache: dict[Any, Any] | None = None
               ) -> tuple[dict[str, ImageDataset], ImageDataset | None]:
    """The OOD sets and the fitting set (None unless a score of ``scores`` fits on training images)
    of an OOD evaluation of ``dataset``'s first ``limit`` images: noise sets of ``num_noise``
    images (default as many as the ID images used, at most 10,000); the fitting set is the
    train split of ``fit_data`` (default: the ID dataset). With ``cache`` (a dict), each is
    built once per cache, so a job's identity and its evaluation read the same sets."""
    cache = {} if cache is None else cache
    count = num_noise or min(len(dataset) if limit is None else min(limit, len(dataset)), 10_000)
    key = ("ood sets", tuple(sets), count)
    if key not in cache:
        cache[key] = create_ood_sets(dataset, list(sets), data_root, num_noise=count)
    if not fits(scores):
        return cache[key], None
    name = fit_data or dataset.name
    if ("fit set", name) not in cache:
        cache["fit set", name] = create_dataset(name, "train", root=data_root)
    return cache[key], cache["fit set", name]


def _describe(name: str, dataset: Dataset, used: int) -> dict[str, Any]:
    registered = getattr(dataset, "name", name)
    if registered == "images":
        description = f"folder of images {dataset.folder}, resized to the ID size"
    else:
        try:
            description = dataset_spec(registered).description
        except UserError:  # a dataset of the caller's
            description = f"OOD set {name}"
    height, width = dataset[0]["image"].shape[-2:]
    return {"num_images": used, "description": f"{description}; read at {height} x {width} px"}


def evaluate_ood(model: Classifier, id_dataset: ImageDataset, ood_sets: Mapping[str, ImageDataset], *,
                 scores: Sequence[str] = ("msp",), score_options: Mapping[str, dict] | None = None,
                 fit_dataset: ImageDataset | None = None, fit_limit: int | None = None,
                 id_predictions: Predictions | None = None, settings: RunSettings = RunSettings()) -> list[Result]:
    """OOD detection of ``model`` with each score in ``scores``: a list of Results, one per
    score, in the order asked (a score named twice counts once); ``result.config["score"]``
    names each. A single score gives a one-item list (``[result] = evaluate_ood(...)``).

    ``settings.limit`` keeps the first N images of the ID set and of each OOD set.
    ``fit_dataset`` (labelled, e.g. the ID training split; ``fit_limit`` images) is
    needed by scores that fit on training data (Mahalanobis). ``score_options`` maps a
    score name to its keyword arguments (e.g. ``{"odin": {"holdout": 500}}``).

    Each Result has ``{set}/{metric}`` and ``mean/{metric}`` metrics (fractions),
    per-image scores (``id/score``, ``{set}/score`` and dataset positions
    ``id/index``, ``{set}/index``; ODIN, whose ID scores depend on the setting chosen
    for each set, stores ``id/score@{set}``) so intervals can be bootstrapped.
    ``id_predictions``: the ID set's pass if the caller already ran it (e.g. for
    classification; with pooled features if a score needs them), so it is not repeated.
    """
    if model.num_classes < 2:
        raise UserError("OOD detection from a classifier needs at least two classes; this model has one")
    check_compatible(model, id_dataset)
    if not ood_sets:
        raise UserError("no OOD set given")
    for name, data in {id_dataset.name: id_dataset, **ood_sets}.items():
        if len(data) == 0:
            raise UserError(f"{name} has no images")
    options = score_options or {}
    detectors = [create_score(name, **options.get(name, {})) for name in dict.fromkeys(scores)]
    settings = settings.replace(device=resolve_device(settings.device))
    run = partial(predict, model, settings=settings)
    id_data = head(id_dataset, settings.limit)
    ood_data = {name: head(data, settings.limit) for name, data in ood_sets.items()}
    base_config = settings.config()
    info = settings.model_record(model)

    def result(detector: OODScore, pairs, per_sample, used, config) -> Result:
        conventions = dict(METRIC_CONVENTIONS) | {"score": f"{detector.name}: {detector.description}; "
                                                            "higher = more in-distribution"}
        dataset_info = {"name": id_dataset.name, "split": id_dataset.split, "num_images": used[id_dataset.name],
                        "num_classes": id_dataset.num_classes,
                        "ood_sets": {n: _describe(n, ood_sets[n], used[n]) for n in ood_sets}}
        return Result(evaluator="ood", metrics=_set_metrics(pairs), conventions=conventions, model=info,
                      dataset=dataset_info, config=base_config | {"score": detector.name,
                                                                  "params": detector.params()} | config,
                      per_sample=per_sample)

    results: dict[str, Result] = {}
    posthoc = [d for d in detectors if d.kind == "posthoc"]
    if posthoc:
        results |= _posthoc_results(model, posthoc, id_dataset.name, id_data, id_predictions, ood_data, fit_dataset,
                                    fit_limit, run, result)
    for detector in (d for d in detectors if d.kind == "perturbation"):
        results[detector.name] = detector.evaluate_sets(model, id_dataset.name, id_data, ood_data, result, settings)
    return [results[detector.name] for detector in detectors]


def _posthoc_results(model: Classifier, posthoc: Sequence[OODScore], id_name: str, id_data, id_predictions,
                     ood_data: Mapping[str, Any], fit_dataset, fit_limit, run, result) -> dict[str, Result]:
    """Every post-hoc score's Result from one pass over each set (the ID pass reused when
    given), one fit pass shared by the scores that fit, and the linear head for those that
    need it."""
    keep = any(d.needs_features or d.needs_head for d in posthoc)
    if any(d.needs_head for d in posthoc):
        weight, bias = linear_head(model)
        for detector in (d for d in posthoc if d.needs_head):
            detector.use_head(weight, bias)
    if id_predictions is None or (keep and id_predictions.pooled is None):
        id_predictions = run(id_data, keep_features=keep, desc=f"ID {id_name}")
    id_pred = id_predictions.require_finite(MEANINGLESS, id_name)
    ood_pred = {n: run(d, keep_features=keep, desc=f"OOD {n}").require_finite(MEANINGLESS, n)
                for n, d in ood_data.items()}
    used = {id_name: len(id_pred.labels)} | {n: len(p.labels) for n, p in ood_pred.items()}
    fit_config: dict[str, Any] = {}
    if any(d.needs_fit for d in posthoc):
        if fit_dataset is None:
            fitting = ", ".join(d.name for d in posthoc if d.needs_fit)
            raise UserError(f"{fitting} fit on labelled training images: pass --fit-data (default: the ID "
                            "dataset's train split)")
        fitted = run(head(fit_dataset, fit_limit), keep_features=True,
                     desc=f"fit {fit_dataset.name}").require_finite(MEANINGLESS, fit_dataset.name)
        fit_config = {"fit_data": {"name": fit_dataset.name, "split": fit_dataset.split,
                                   "num_images": len(fitted.labels)}}
    results = {}
    for detector in posthoc:
        if detector.needs_fit:
            detector.fit(fitted)
        id_scores = detector(id_pred)
        set_scores = {n: detector(p) for n, p in ood_pred.items()}
        per_sample = {"id/index": id_pred.indices, "id/score": id_scores}
        for n, p in ood_pred.items():
            per_sample |= {f"{n}/index": p.indices, f"{n}/score": set_scores[n]}
        pairs = {n: (id_scores, s) for n, s in set_scores.items()}
        results[detector.name] = result(detector, pairs, per_sample, used, fit_config if detector.needs_fit else {})
    return results


def linear_head(model: Classifier) -> tuple[np.ndarray, np.ndarray]:
    """The classifier head as float64 arrays ``(weight K x D, bias K)`` (zeros without a bias),
    for scores that recompute logits from modified pooled features; a one-line error for a
    head that is not one linear layer."""
    import torch

    head = model.head
    if not isinstance(head, torch.nn.Linear):
        raise UserError(f"this score needs the model's classifier to be one linear layer over the pooled features; "
                        f"{model.arch}'s is a {type(head).__name__}")
    weight = head.weight.detach().cpu().double().numpy()
    bias = head.bias.detach().cpu().double().numpy() if head.bias is not None else np.zeros(len(weight))
    return weight, bias


def score_pairs(result: Result) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{set: (ID scores, OOD scores)}`` from an OOD Result (a record's per-image scores)."""
    samples = result.per_sample
    return {name: (np.asarray(samples.get(f"id/score@{name}", samples.get("id/score"))),
                   np.asarray(samples[f"{name}/score"])) for name in result.dataset["ood_sets"]}
