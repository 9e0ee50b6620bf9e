"""A full evaluation of one model on one labelled dataset from one shared clean pass.

``cutmix-eval evaluate --all`` runs classification (with calibration), OOD
detection and native-CAM localization: the analyses whose work on the ID images is
their clean forward pass. :func:`shared_pass` makes that pass ONCE: each batch goes
through ``model.forward_all`` (logits, pooled features, last feature map); the
batch's native CAM maps of the labels' classes are computed from that feature map
and the classifier weights by :class:`~cutmix_eval.cam.native.NativeCAM` itself
(handed the pass's outputs, so there is no second forward) and reduced at once by a
:class:`~cutmix_eval.evaluate.localization.LocalizationAccumulator`; logits,
labels, indices and pooled features are kept as a
:class:`~cutmix_eval.passes.Predictions`. Feature maps never outlive their
batch.

:func:`evaluate_all` turns the pass into the analyses' Results: classification and
calibration from the Predictions, OOD detection with the Predictions as the ID side
of every post-hoc score (each OOD set still needs its own pass), localization from
the accumulator. They are the Results the registry's analyses
(:mod:`cutmix_eval.analyses`) produce with the same options, computed the same way
(same functions, same configs), so their records are interchangeable; the
command's layer (``cli/evaluate.py``) keys them by the registry's jobs, stores them
and reuses recorded ones. This module writes no file.

Under ``torchrun`` the loader shards the ID set and every per-sample array is
gathered in rank order, as in the individual evaluators.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from cutmix_eval.cam.native import NativeCAM
from cutmix_eval.data.base import ImageDataset
from cutmix_eval.distributed import gather_objects, gather_rows
from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.calibration import N_BINS, calibration_result
from cutmix_eval.evaluate.classification import check_compatible, classification_result
from cutmix_eval.evaluate.localization import LocalizationAccumulator, evaluate_localization
from cutmix_eval.evaluate.ood import INPUT_OPTIONS, evaluate_ood, ood_inputs
from cutmix_eval.models.classifier import Classifier
from cutmix_eval.passes import Predictions, head, make_loader
from cutmix_eval.progress import progress_bar
from cutmix_eval.results import Result
from cutmix_eval.runtime import resolve_device

#: the analyses one shared pass serves (registry names), in the order they are reported
SHARED_ANALYSES = ("classification", "ood", "localization")
#: the options each of them takes (the registry's names; defaults as in the registry)
OPTION_NAMES = {"classification": ("holdout", "n_bins"),
                "ood": ("scores", "sets", "num_noise", "energy_temperature", "odin_holdout", "fit_data",
                        "fit_limit"),
                "localization": ("cam", "protocol", "examples")}


class _PassOutputs:
    """Stands in for the model inside :class:`NativeCAM`: ``forward_all`` returns the
    outputs the shared pass already computed, so NativeCAM's maps (``sum_k W[c, k] A_k``)
    and its checks are reused as they are, without a second forward pass. Every other
    attribute is the model's."""

    def __init__(self, model: Classifier):
        self._model = model
        self.outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def forward_all(self, images: torch.Tensor):
        return self.outputs

    def __getattr__(self, name: str):
        return getattr(self._model, name)


@dataclass
class SharedPass:
    """What one pass over the ID images gives: the Predictions (with pooled features),
    the dataset's description for the records, and the localization accumulator (None
    when localization was not asked for or could not run; ``note`` says why)."""

    predictions: Predictions
    dataset_info: dict[str, Any]
    localization: LocalizationAccumulator | None = None
    note: str | None = None


@torch.inference_mode()
def shared_pass(model: Classifier, dataset: ImageDataset, *, localization: LocalizationAccumulator | None = None,
                batch_size: int = 256, device: str = "auto", num_workers: int = 0, limit: int | None = None,
                progress: bool = True) -> SharedPass:
    """One streamed pass of ``model`` (eval mode) over ``dataset`` (its first ``limit``
    images): ``forward_all`` once per batch; with ``localization``, the batch's native CAM
    maps of the labels' classes, from that same forward, go to the accumulator. A model
    native CAM cannot explain (no linear head on average-pooled features) leaves
    localization out with a note; everything else still comes from the pass."""
    check_compatible(model, dataset)
    device = resolve_device(device)
    model = model.to(device).eval()
    data = head(dataset, limit)
    note, outputs, cam = None, None, None
    if localization is not None:
        outputs = _PassOutputs(model)
        try:
            cam = NativeCAM(outputs)
        except UserError as error:
            localization, note = None, f"localization skipped: {error}"
    logits, labels, indices, pooled = [], [], [], []
    for batch in progress_bar(make_loader(data, batch_size, num_workers), desc=f"evaluate {dataset.name} (shared pass)",
                              unit="batch", enabled=progress):
        images = batch["image"].to(device, non_blocking=True)
        out, features, fmap = model.forward_all(images)
        if cam is not None:
            outputs.outputs = (out, features, fmap)
            try:
                maps = cam(images, batch["label"].to(device)).maps
            except UserError as error:  # e.g. features not average-pooled: found on the first batch
                cam, localization, note = None, None, f"localization skipped: {error}"
            else:
                localization.update(batch, out, maps)
        logits.append(out.float().cpu())
        pooled.append(features.float().cpu())
        labels.append(batch["label"])
        indices.append(batch["index"])
    if notes := [n for n in gather_objects(note) if n]:  # every rank leaves localization out if one had to
        localization, note = None, notes[0]
    predictions = Predictions(gather_rows(torch.cat(logits).numpy()), gather_rows(torch.cat(labels).numpy()),
                              gather_rows(torch.cat(indices).numpy()), gather_rows(torch.cat(pooled).numpy()))
    dataset_info = {"name": dataset.name, "split": dataset.split, "num_images": len(data),
                    "num_classes": dataset.num_classes}
    return SharedPass(predictions, dataset_info, localization, note)


@dataclass
class FullEvaluation:
    """What :func:`evaluate_all` returns. ``results``: per analysis (registry name) its
    Results, in the registry's order (classification: classification then calibration;
    ood: one per score, in the order asked; localization: one, its CAM examples in its
    ``artifacts``); ``notes``: analyses left out and why; ``predictions``: the shared ID pass."""

    results: dict[str, list[Result]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    predictions: Predictions | None = None


def localization_note(dataset: ImageDataset) -> str | None:
    """Why localization cannot run on ``dataset`` (None when it can)."""
    if not dataset.has_boxes:
        return f"localization skipped: {dataset.name}/{dataset.split} has no bounding boxes"
    return None


def evaluate_all(model: Classifier, dataset: ImageDataset, *, analyses: Sequence[str] = SHARED_ANALYSES,
                 options: Mapping[str, Mapping[str, Any]] | None = None, model_info: dict[str, Any] | None = None,
                 batch_size: int = 256, device: str = "auto", num_workers: int = 0, limit: int | None = None,
                 progress: bool = True, data_root: str | None = None,
                 cache: dict[Any, Any] | None = None) -> FullEvaluation:
    """Classification (+ calibration), OOD detection and native-CAM localization of
    ``model`` on ``dataset`` (its first ``limit`` images) from one shared pass over it (see
    the module docstring). ``analyses``: which of :data:`SHARED_ANALYSES` to run;
    ``options``: per analysis, its options under the registry's names (missing ones take
    the registry's defaults: classification ``holdout``, ``n_bins``; ood ``scores``,
    ``sets``, ``num_noise``, ``energy_temperature``, ``odin_holdout``, ``fit_data``,
    ``fit_limit``; localization ``cam``, ``protocol``, ``examples``). On a dataset without
    boxes localization is left out with a note; a CAM method other than native ``cam``
    (the gradient ones) makes its own pass. OOD sets are built before any pass, so a
    missing one fails at once; ``cache`` as in :func:`~cutmix_eval.evaluate.ood.ood_inputs` (a
    caller that keyed its job on the OOD sets hands them over, so they are not built twice)."""
    unknown = sorted(set(analyses) - set(SHARED_ANALYSES))
    if unknown:
        raise UserError(f"a full evaluation runs {', '.join(SHARED_ANALYSES)}, not {', '.join(unknown)}")
    options = {name: dict((options or {}).get(name, {})) for name in SHARED_ANALYSES if name in analyses}
    for name, given in options.items():
        if wrong := sorted(set(given) - set(OPTION_NAMES[name])):
            raise UserError(f"analysis {name} has no option {', '.join(wrong)}; its options: "
                            f"{', '.join(OPTION_NAMES[name])}")
    full = FullEvaluation()
    info = model_info or {"arch": model.arch, "num_classes": model.num_classes}
    batching = {"batch_size": batch_size, "device": device, "num_workers": num_workers, "limit": limit,
                "progress": progress}
    check_compatible(model, dataset)
    localize = "localization" in options
    if localize and (note := localization_note(dataset)):
        full.notes["localization"], localize = note, False
    loc_options = _localization_options(**options.get("localization", {}))
    native = localize and loc_options["cam"] == "cam"
    ood_data = None
    if "ood" in options:
        ood_data = ood_inputs(dataset, limit, data_root, cache=cache,
                              **{k: v for k, v in options["ood"].items() if k in INPUT_OPTIONS})
    if "classification" in options or "ood" in options or native:
        accumulator = (LocalizationAccumulator(dataset, cam="cam", protocol=loc_options["protocol"],
                                               keep_examples=loc_options["examples"]) if native else None)
        shared = shared_pass(model, dataset, localization=accumulator, **batching)
        full.predictions = shared.predictions
        if "classification" in options:
            full.results["classification"] = _classification(shared, info, limit, **options["classification"])
        if "ood" in options:
            full.results["ood"] = _ood(model, dataset, shared.predictions, ood_data, info, batching,
                                       **options["ood"])
        if native and shared.localization is None:
            full.notes["localization"] = shared.note
        elif native:
            full.results["localization"] = [shared.localization.finish(
                info, batch_size=batch_size, limit=limit, num_images=shared.dataset_info["num_images"])]
    if localize and not native:
        full.results["localization"] = [evaluate_localization(model, dataset, cam=loc_options["cam"],
                                                              protocol=loc_options["protocol"], model_info=info,
                                                              keep_examples=loc_options["examples"], **batching)]
    full.results = {name: full.results[name] for name in SHARED_ANALYSES if name in full.results}
    return full


def _localization_options(cam: str = "cam", protocol: str = "wsolevaluation", examples: int = 16) -> dict[str, Any]:
    return {"cam": cam, "protocol": protocol, "examples": examples}


def _classification(shared: SharedPass, model_info: dict[str, Any], limit: int | None, holdout: int = 0,
                    n_bins: int = N_BINS) -> list[Result]:
    """As the registry's ``classification`` analysis, from the shared Predictions."""
    info = {"model_info": model_info, "dataset_info": shared.dataset_info}
    results = [classification_result(shared.predictions, **info, config={"limit": limit})]
    if results[0].metrics["num_nonfinite_logits"] == 0:
        results.append(calibration_result(shared.predictions, holdout=holdout, n_bins=n_bins, **info,
                                          config={"limit": limit}))
    return results


def _ood(model: Classifier, dataset: ImageDataset, predictions: Predictions, inputs, model_info: dict[str, Any],
         batching: dict[str, Any], *, scores: Sequence[str] = ("msp",), energy_temperature: float = 1.0,
         odin_holdout: int = 1000, fit_limit: int | None = None, **_: Any) -> list[Result]:
    """As the registry's ``ood`` analysis, with the shared pass as the ID side of every
    post-hoc score (its pooled features serve the scores that need them)."""
    ood_sets, fit = inputs
    return evaluate_ood(model, dataset, ood_sets, scores=list(scores),
                        score_options={"energy": {"temperature": energy_temperature},
                                       "odin": {"holdout": odin_holdout}},
                        fit_dataset=fit, fit_limit=fit_limit, model_info=model_info,
                        id_predictions=predictions, **batching)
