"""Out-of-distribution detection: an ID test set against OOD sets, with any registered score.

The protocol of the CutMix paper (Table 12, after Hendrycks & Gimpel and ODIN): the
ID test images are the positive class; each OOD set is scored against them with
TNR at TPR 95%, AUROC, detection accuracy, AUPR-In and AUPR-Out (exact
definitions in :mod:`cutmix_eval.metrics.ood`), and the mean over OOD sets is
reported too. OOD images are brought to the ID image size the way the paper's
sets were made: ODIN's crop sets are centre-cropped, its resize sets, iSUN, any
folder of images and the embedded companions are resized, and noise is generated
at that size.

Passes are shared: the ID set, each OOD set and each validation set are run through
the model once, the fitting set once, and every post-hoc score reads those logits and
features under every setting it tries. ODIN makes its own passes (it perturbs the input).
Hyper-parameters are chosen by one protocol for every score
(:mod:`cutmix_eval.evaluate.ood_tuning`): OpenOOD v1.5's search on validation sets,
the scores' defaults, or, only when asked, ODIN's tuning on held-out test images.

OpenOOD v1.5's full-spectrum mode (``csid_sets``): covariate-shifted ID sets join the ID
test images on the positive side, and ID accuracy counts them too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import ConcatDataset, Dataset, Subset

from cutmix_eval.data import create_dataset, dataset_spec
from cutmix_eval.data.base import ImageDataset
from cutmix_eval.data.ood import folder_set_names
from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.classification import check_compatible
from cutmix_eval.evaluate.ood_scores import OODScore, create_score, fits
from cutmix_eval.evaluate.ood_tuning import LEAK_WARNING, VALIDATION_ID, Part, Tuned, Tuning, sweep_grid, \
    tune_and_score, validation_key
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
    order; also ``-far``, ``-val``, ``-csid``), or itself."""
    if name == "all":
        return SYNTHETIC_SETS if id_name.startswith("synthetic") else PAPER_SETS
    benchmark, _, group = name.removeprefix("openood-").rpartition("-")
    if name.startswith("openood-") and group in ("near", "far", "val", "csid"):
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


@dataclass(frozen=True)
class Validation:
    """What hyper-parameters are tuned on (protocol ``ood-validation``): ID validation images
    (``id``, labelled, never the evaluated split) and OOD validation sets by name (``ood``;
    several are pooled, OpenOOD has one per benchmark)."""

    id: ImageDataset
    ood: Mapping[str, ImageDataset]


@dataclass
class OODInputs:
    """Every dataset an OOD evaluation reads besides the ID test set: ``sets`` (OOD test sets by
    name), ``fit`` (the fitting set, None unless a score fits), ``validation`` (None unless
    tuning on validation sets) and ``csid`` (full-spectrum covariate-shifted ID sets)."""

    sets: dict[str, ImageDataset]
    fit: ImageDataset | None = None
    validation: Validation | None = None
    csid: dict[str, ImageDataset] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """Each input by :attr:`~cutmix_eval.data.base.ImageDataset.identity` (part of a job's key)."""
        found: dict[str, Any] = {"ood_sets": {name: ood.identity for name, ood in self.sets.items()}}
        if self.fit is not None:
            found["fit_set"] = self.fit.identity
        if self.validation is not None:
            found["validation"] = {"id": self.validation.id.identity,
                                   **{n: d.identity for n, d in self.validation.ood.items()}}
        if self.csid:
            found["csid_sets"] = {name: data.identity for name, data in self.csid.items()}
        return found


def openood_benchmark_of(dataset_name: str) -> str | None:
    """The OpenOOD benchmark whose ID list ``dataset_name`` is (``openood-cifar10`` -> ``cifar10``), else None."""
    from cutmix_eval.data.openood import BENCHMARKS

    name = dataset_name.removeprefix("openood-")
    return name if dataset_name.startswith("openood-") and name in BENCHMARKS else None


def resolve_tuning(dataset: ImageDataset, protocol: str, tune_on: Sequence[str] | None) -> tuple[str, list[str]]:
    """The tuning protocol and OOD validation set names an OOD evaluation of ``dataset`` uses.

    ``auto``: ``ood-validation`` when there are validation sets (``tune_on``, or the OpenOOD
    benchmark's own when ``dataset`` is an OpenOOD ID list), else ``defaults``. Validation sets
    with another protocol are a UserError, and so is ``ood-validation`` without them."""
    benchmark = openood_benchmark_of(dataset.name)
    names = list(tune_on or ())
    if not names and benchmark and protocol in ("auto", "ood-validation"):
        names = [f"openood-{benchmark}-val"]
    sets = ood_set_names(dataset.name, names) if names else []
    if protocol == "auto":
        protocol = "ood-validation" if sets else "defaults"
    if protocol == "ood-validation" and not sets:
        raise UserError("tuning on OOD validation sets needs some: pass --tune-on NAME (e.g. an OpenOOD val set), "
                        "evaluate an OpenOOD ID list (--in openood-cifar10...), or choose --tuning defaults")
    if sets and protocol != "ood-validation":
        raise UserError(f"--tune-on names validation sets, but tuning protocol {protocol} does not use them; "
                        "drop --tune-on or choose --tuning ood-validation")
    return protocol, sets


def _id_validation(dataset: ImageDataset, data_root: str | None) -> ImageDataset:
    """The ID validation images: ``dataset``'s ``val`` split, which must not be the split evaluated."""
    spec = dataset_spec(dataset.name)
    if "val" not in spec.splits or dataset.split == "val":
        raise UserError(f"tuning on OOD validation sets also needs ID validation images, a val split of {dataset.name} "
                        f"other than the one evaluated ({dataset.split}); {dataset.name} has splits "
                        f"{', '.join(spec.splits)}. Evaluate an OpenOOD ID list (--in openood-cifar10...), whose val "
                        "split serves, or choose --tuning defaults")
    return create_dataset(dataset.name, "val", root=data_root)


def ood_inputs(dataset: ImageDataset, limit: int | None = None, data_root: str | None = None, *,
               sets: Sequence[str] = ("all",), scores: Sequence[str] = ("msp",), num_noise: int | None = None,
               fit_data: str | None = None, tuning: str = "auto", tune_on: Sequence[str] | None = None,
               csid: Sequence[str] | None = None, cache: dict[Any, Any] | None = None) -> OODInputs:
    """What an OOD evaluation of ``dataset``'s first ``limit`` images reads besides them: the OOD
    sets (noise sets of ``num_noise`` images, default as many as the ID images used, at most
    10,000); the fitting set if a score of ``scores`` fits on training images (the train split
    of ``fit_data``, default the ID dataset); the validation data when tuning on validation
    sets (:func:`resolve_tuning`); the csid sets (``csid``: names or an OpenOOD ``-csid``
    group). With ``cache`` (a dict), each is built once per cache, so a job's identity and
    its evaluation read the same sets."""
    cache = {} if cache is None else cache

    def cached(key, build):
        if key not in cache:
            cache[key] = build()
        return cache[key]

    count = num_noise or min(len(dataset) if limit is None else min(limit, len(dataset)), 10_000)
    inputs = OODInputs(cached(("ood sets", tuple(sets), count),
                              lambda: create_ood_sets(dataset, list(sets), data_root, num_noise=count)))
    if fits(scores):
        name = fit_data or dataset.name
        inputs.fit = cached(("fit set", name), lambda: create_dataset(name, "train", root=data_root))
    protocol, val_names = resolve_tuning(dataset, tuning, tune_on)
    if protocol == "ood-validation":
        inputs.validation = cached(("validation", tuple(val_names)), lambda: Validation(
            _id_validation(dataset, data_root), create_ood_sets(dataset, val_names, data_root, num_noise=count)))
    if csid:
        inputs.csid = cached(("csid", tuple(csid)), lambda: _csid_sets(dataset, csid, data_root))
    return inputs


def _csid_sets(dataset: ImageDataset, requested: Sequence[str], data_root: str | None) -> dict[str, ImageDataset]:
    size = int(dataset[0]["image"].shape[-2])
    found = {}
    for name in ood_set_names(dataset.name, requested):
        if dataset_spec(name).kind == "ood":
            raise UserError(f"{name} is an OOD set, not a covariate-shifted ID set; pass it with --out")
        found[name] = create_dataset(name, "test", root=data_root, image_size=size)
    return found


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


def _rows(predictions: Predictions, part: Part) -> Predictions:
    """The predictions of ``part``'s images (all of them for the whole set)."""
    if part.start == 0 and part.stop is None:
        return predictions
    cut = slice(part.start, part.stop)
    pooled = None if predictions.pooled is None else predictions.pooled[cut]
    return Predictions(predictions.logits[cut], predictions.labels[cut], predictions.indices[cut], pooled)


def _concat(parts: Sequence[Predictions]) -> Predictions:
    """Predictions of several sets one after the other."""
    if len(parts) == 1:
        return parts[0]
    pooled = None if any(p.pooled is None for p in parts) else np.concatenate([p.pooled for p in parts])
    return Predictions(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("logits", "labels", "indices")),
                       pooled)


class _PassScorer:
    """A post-hoc score's :data:`~cutmix_eval.evaluate.ood_tuning.Scorer` over predictions
    already made: per setting, the score is built once (its head given, fitted on ``fits[its
    fit_split]``), then scores each part. A setting the data cannot take (ViM's dim above the
    feature size, KNN's k above the bank) gives its reason instead of scores."""

    def __init__(self, name: str, options: Mapping[str, Any], head_weights, fits: Mapping[str, Predictions],
                 predictions: Mapping[str, Predictions]):
        self.name, self.options, self.head_weights = name, dict(options), head_weights
        self.fits, self.predictions = fits, predictions
        self.params: dict[str, dict] = {}

    def build(self, setting: Mapping[str, Any]) -> OODScore:
        detector = create_score(self.name, **(self.options | dict(setting)))
        if detector.needs_head:
            detector.use_head(*self.head_weights)
        if detector.needs_fit:
            detector.fit(self.fits[detector.fit_split])
        self.params[_setting_key(setting)] = detector.params()
        return detector

    def __call__(self, parts, grid):
        out: dict[Part, list] = {part: [] for part in parts}
        for setting in grid:
            try:
                detector = self.build(setting)
            except UserError as err:
                if len(grid) == 1:
                    raise
                for part in parts:
                    out[part].append(f"{self.name} {setting}: {err}")
                continue
            for part in parts:
                out[part].append(detector(_rows(self.predictions[part.key], part)))
        return out


def _setting_key(setting: Mapping[str, Any]) -> str:
    return repr(sorted(dict(setting).items()))


def evaluate_ood(model: Classifier, id_dataset: ImageDataset, ood_sets: Mapping[str, ImageDataset], *,
                 scores: Sequence[str] = ("msp",), score_options: Mapping[str, dict] | None = None,
                 fit_dataset: ImageDataset | None = None, fit_limit: int | None = None,
                 id_predictions: Predictions | None = None, tuning: Tuning = Tuning(),
                 validation: Validation | None = None, csid_sets: Mapping[str, ImageDataset] | None = None,
                 settings: RunSettings = RunSettings()) -> list[Result]:
    """OOD detection of ``model`` with each score in ``scores``: a list of Results, one per
    score, in the order asked (a score named twice counts once); ``result.config["score"]``
    names each. A single score gives a one-item list (``[result] = evaluate_ood(...)``).

    ``settings.limit`` keeps the first N images of the ID set, of each OOD set and of each
    validation set. ``fit_dataset`` (labelled, e.g. the ID training split; ``fit_limit``
    images) is needed by scores that fit on training data (Mahalanobis, KNN...).
    ``score_options`` maps a score name to its keyword arguments (e.g. ``{"react":
    {"percentile": 95}}``); a parameter given there is not searched.

    ``tuning`` chooses the hyper-parameters of scores with a sweep (:mod:`~cutmix_eval.evaluate.ood_tuning`):
    ``ood-validation`` on ``validation`` (OpenOOD's protocol; its ID images also fit ReAct's
    percentile and KLM's templates, as OpenOOD does), ``defaults``, or ``test-ood-holdout``
    (ODIN's protocol, on held-out test images; flagged in the record). ``config["tuning"]``
    records the protocol, the setting chosen and every setting's validation metrics.

    Each Result has ``{set}/{metric}`` and ``mean/{metric}`` metrics (fractions, and
    ``near/`` ``far/`` means for OpenOOD v1.5 sets), ``id/accuracy`` (top-1 over the ID images
    used), per-image scores (``id/score``, ``{set}/score`` and dataset positions ``id/index``,
    ``{set}/index``; under ``test-ood-holdout`` the ID scores depend on the setting chosen for
    each set: ``id/score@{set}``) so intervals can be bootstrapped. ``id_predictions``: the ID
    set's pass if the caller already ran it (with pooled features if a score needs them), so
    it is not repeated.

    ``csid_sets`` (OpenOOD's full-spectrum mode): labelled covariate-shifted ID sets that join
    the ID test images on the positive side, after them (``per_sample["id/source"]``: 0 for
    the ID test set, ``i`` for the i-th csid set); ``id/accuracy`` covers them too.
    """
    if model.num_classes < 2:
        raise UserError("OOD detection from a classifier needs at least two classes; this model has one")
    check_compatible(model, id_dataset)
    if not ood_sets:
        raise UserError("no OOD set given")
    if tuning.protocol == "ood-validation" and validation is None:
        raise UserError("tuning protocol ood-validation needs validation data (ID validation images and an OOD "
                        "validation set); pass --tune-on, or choose --tuning defaults")
    val_sets = {} if validation is None or tuning.protocol != "ood-validation" else \
        {VALIDATION_ID: validation.id, **{validation_key(n): d for n, d in validation.ood.items()}}
    csid_sets = dict(csid_sets or {})
    for name, data in {id_dataset.name: id_dataset, **ood_sets, **val_sets, **csid_sets}.items():
        if len(data) == 0:
            raise UserError(f"{name} has no images")
    for data in csid_sets.values():
        check_compatible(model, data)
    options = {name: dict((score_options or {}).get(name, {})) for name in dict.fromkeys(scores)}
    detectors = {name: create_score(name, **kwargs) for name, kwargs in options.items()}
    settings = settings.replace(device=resolve_device(settings.device))
    run = partial(predict, model, settings=settings)
    data = {"id": head(id_dataset, settings.limit), **{n: head(d, settings.limit) for n, d in ood_sets.items()},
            **{key: head(d, settings.limit) for key, d in val_sets.items()}}
    val_names = [key.removeprefix("validation/") for key in val_sets if key != VALIDATION_ID]
    grids = {name: sweep_grid(type(d).sweep, options[name]) for name, d in detectors.items()}
    keep = any(d.needs_features or d.needs_head for d in detectors.values())
    if id_predictions is None or (keep and id_predictions.pooled is None):
        id_predictions = run(data["id"], keep_features=keep, desc=f"ID {id_dataset.name}")
    id_predictions = id_predictions.require_finite(MEANINGLESS, id_dataset.name)
    csid = {n: head(d, settings.limit) for n, d in csid_sets.items()}
    id_side = _concat([id_predictions, *(run(d, keep_features=keep, desc=f"csID {n}").require_finite(MEANINGLESS, n)
                                         for n, d in csid.items())])
    source = np.repeat(np.arange(len(csid) + 1), [len(data["id"]), *map(len, csid.values())])
    if csid:
        data["id"] = ConcatDataset([data["id"], *csid.values()])
    accuracy = float(np.mean(id_side.logits.argmax(axis=1) == id_side.labels))
    base_config = settings.config()
    info = settings.model_record(model)
    dataset_info = {"name": id_dataset.name, "split": id_dataset.split, "num_classes": id_dataset.num_classes}

    def result(name: str, tuned: Tuned, params: dict, config: dict) -> Result:
        conventions = dict(METRIC_CONVENTIONS) | {
            "score": f"{name}: {detectors[name].description}; higher = more in-distribution",
            "id/accuracy": "top-1 accuracy over the ID images used (before any holdout; with the csid sets in "
                           "full-spectrum mode, as OpenOOD's ACC)",
            "tuning": TUNING_CONVENTIONS[tuned.record["protocol"]]}
        described = dataset_info | {"num_images": tuned.used["id"],
                                    "ood_sets": {n: _describe(n, ood_sets[n], tuned.used[n]) for n in ood_sets}}
        if csid:
            described["csid_sets"] = {n: _describe(n, csid_sets[n], len(d)) for n, d in csid.items()}
            tuned.per_sample["id/source"] = source[len(source) - tuned.used["id"]:]
        if tuned.record.get("validation_sets"):
            described["validation"] = {"id": _describe(validation.id.name, validation.id, len(data[VALIDATION_ID])),
                                       **{n: _describe(n, validation.ood[n], len(data[validation_key(n)]))
                                          for n in val_names}}
        return Result(evaluator="ood", metrics=_set_metrics(tuned.pairs) | {"id/accuracy": accuracy},
                      conventions=conventions, model=info, dataset=described,
                      config=base_config | {"score": name, "params": params, "tuning": tuned.record} | config,
                      per_sample=tuned.per_sample)

    run_ = _Run(model, data, detectors, options, grids, tuning, val_names, run, settings, keep)
    tuned = _posthoc_tuned(run_, id_side, list(ood_sets), fit_dataset, fit_limit, validation)
    tuned |= _perturbation_tuned(run_, list(ood_sets))
    return [result(name, *tuned[name]) for name in detectors]


@dataclass
class _Run:
    """What one OOD evaluation's scores share: the model, the data by key (``id``, OOD sets,
    ``validation/...``), the detectors with their options and grids, the tuning, how to run
    a pass and whether passes keep pooled features."""

    model: Classifier
    data: dict[str, Dataset]
    detectors: dict[str, OODScore]
    options: dict[str, dict]
    grids: dict[str, list[dict]]
    tuning: Tuning
    val_names: list[str]
    run: Any
    settings: RunSettings
    keep: bool


def _posthoc_tuned(ctx: _Run, id_side: Predictions, ood_names: Sequence[str], fit_dataset, fit_limit,
                   validation: Validation | None) -> dict[str, tuple[Tuned, dict, dict]]:
    """Every post-hoc score's :class:`Tuned`, settings and extra config, from one pass over each
    set (the ID side given), one fit pass shared by the scores that fit, the validation passes
    when searching, and the linear head for the scores that need it."""
    posthoc = [name for name, d in ctx.detectors.items() if d.kind == "posthoc"]
    if not posthoc:
        return {}
    searching = ctx.tuning.protocol == "ood-validation" and any(
        len(ctx.grids[n]) > 1 or ctx.detectors[n].fit_split == "val" for n in posthoc)
    predictions = {"id": id_side}
    for key in (k for k in ctx.data if k != "id" and (searching or not k.startswith("validation/"))):
        what = "ID validation" if key == VALIDATION_ID else "OOD"
        predictions[key] = ctx.run(ctx.data[key], keep_features=ctx.keep,
                                   desc=f"{what} {key.removeprefix('validation/')}").require_finite(MEANINGLESS, key)
    fits, fit_info = _fits(posthoc, ctx.detectors, predictions, fit_dataset, fit_limit, ctx.run,
                           validation if searching else None)
    head_weights = linear_head(ctx.model) if any(ctx.detectors[n].needs_head for n in posthoc) else None
    sizes = {"id": len(id_side.labels)} | {n: len(predictions[n].labels) for n in ood_names}
    indices = {key: predictions[key].indices for key in sizes}
    out = {}
    for name in posthoc:
        detector = ctx.detectors[name]
        scorer = _PassScorer(name, ctx.options[name], head_weights, fits, predictions)
        tuned = tune_and_score(ctx.tuning, ctx.grids[name], scorer, sizes, indices, ctx.val_names)
        chosen = tuned.record.get("chosen", {}) if "holdout" not in tuned.record else {}
        fitted_on = fit_info.get(detector.fit_split) if detector.needs_fit else None
        out[name] = (tuned, scorer.params.get(_setting_key(chosen), detector.params()),
                     {"fit_data": fitted_on} if fitted_on else {})
    return out


def _perturbation_tuned(ctx: _Run, ood_names: Sequence[str]) -> dict[str, tuple[Tuned, dict, dict]]:
    """Every input-perturbation score's :class:`Tuned` and settings, from its own passes over
    the parts of each set the tuning protocol asks for."""
    out = {}
    sizes = {"id": len(ctx.data["id"])} | {n: len(ctx.data[n]) for n in ood_names}
    for name in (n for n, d in ctx.detectors.items() if d.kind == "perturbation"):
        detector = ctx.detectors[name]

        def scorer(parts, grid, detector=detector):
            subsets = {part.label(): Subset(ctx.data[part.key], range(part.start, part.stop or len(ctx.data[part.key])))
                       for part in parts}
            scored = detector.score_datasets(ctx.model, subsets, grid, ctx.settings)
            return {part: scored[part.label()] for part in parts}

        tuned = tune_and_score(ctx.tuning, ctx.grids[name], scorer, sizes,
                               {k: np.arange(v) for k, v in sizes.items()}, ctx.val_names)
        chosen = tuned.record.get("chosen", {}) if "holdout" not in tuned.record else {}
        out[name] = (tuned, detector.params() | chosen, {})
    return out


#: how each tuning protocol chose the settings, as the record's conventions say it
TUNING_CONVENTIONS = {
    "ood-validation": "settings searched on the ID and OOD validation sets (OpenOOD v1.5): the first setting of "
                      "largest AUROC there, then scored on the test sets",
    "defaults": "the score's settings as given (its defaults: OpenOOD v1.5's); no search",
    "test-ood-holdout": f"per OOD set, the setting of best TNR at TPR95 (then AUROC) on the first images of the ID "
                        f"set and of that set, scored on the rest: {LEAK_WARNING}",
}


def _fits(posthoc: Sequence[str], detectors: Mapping[str, OODScore], predictions: Mapping[str, Predictions],
          fit_dataset, fit_limit, run, validation: Validation | None) -> tuple[dict, dict]:
    """The predictions each ``fit_split`` fits on, and the record of each: the fitting set's
    one shared pass for ``train``; the ID validation pass for ``val`` when searching on
    validation data, else the fitting set too."""
    splits = {detectors[n].fit_split for n in posthoc if detectors[n].needs_fit}
    fits: dict[str, Predictions] = {}
    info: dict[str, dict] = {}
    if "val" in splits and validation is not None:
        fits["val"] = predictions[VALIDATION_ID]
        info["val"] = {"name": validation.id.name, "split": validation.id.split,
                       "num_images": len(fits["val"].labels)}
        splits.discard("val")
    if splits:
        if fit_dataset is None:
            fitting = ", ".join(n for n in posthoc if detectors[n].needs_fit)
            raise UserError(f"{fitting} fit on labelled training images: pass --fit-data (default: the ID "
                            "dataset's train split)")
        fitted = run(head(fit_dataset, fit_limit), keep_features=True,
                     desc=f"fit {fit_dataset.name}").require_finite(MEANINGLESS, fit_dataset.name)
        record = {"name": fit_dataset.name, "split": fit_dataset.split, "num_images": len(fitted.labels)}
        for split in splits:
            fits[split], info[split] = fitted, record
    return fits, info


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
