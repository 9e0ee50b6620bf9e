"""Natural distribution shift: accuracy, calibration and a confidence score on each shift set
against the ID test set.

For each shift set (CIFAR-10.1/10.2, ImageNetV2, ImageNet-A/-R/-Sketch, a folder with a class
map: :mod:`cutmix_eval.data.shift`) and for the ID test set: top-1 accuracy, ECE (equal-width,
right-closed bins), NLL, Brier score and mean confidence (:func:`~cutmix_eval.metrics.calibration.calibration_metrics`),
the mean of a post-hoc confidence score (``msp`` by default; any score reading only the logits),
and the AUROC of that score between the ID test images (positive) and the shift set's: how
far the score itself moves under the shift (0.5: it cannot tell them apart). The accuracy gap
(shift minus ID) is the raw robustness; effective robustness (Taori et al. 2020) is the
shift accuracy above what a line fitted over many models' (ID, shift) accuracies predicts,
so it needs several models: the report computes it over its columns.

Label spaces: a set with a ``class_mask`` (ImageNet-A and -R, 200 classes of ImageNet-1k) is
scored on the model's logits restricted to those classes, ``logits[:, class_mask]``, as the
sets' authors evaluate; every other set must have the model's classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cutmix_eval.data.base import ImageDataset
from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.classification import check_compatible
from cutmix_eval.evaluate.ood_scores import create_score
from cutmix_eval.metrics.calibration import calibration_metrics, softmax
from cutmix_eval.metrics.ood import ood_metrics
from cutmix_eval.models.classifier import Classifier
from cutmix_eval.passes import Predictions, head, predict
from cutmix_eval.results import Result
from cutmix_eval.settings import RunSettings

METRICS = ("accuracy", "ece", "nll", "brier", "mean_confidence", "mean_score")
CONVENTIONS = {
    "accuracy": "top-1 accuracy by argmax (ties to the lower class index), over the model's logits restricted to the "
                "set's classes where the set has a class_mask (ImageNet-A/-R)",
    "ece": "expected calibration error, equal-width confidence bins right-closed (i/B, (i+1)/B]",
    "nll": "mean negative log-likelihood, nats",
    "brier": "Brier score summed over classes, range [0, 2]",
    "accuracy_gap": "shift-set accuracy minus ID test accuracy (negative: accuracy lost under the shift)",
    "score_auroc_vs_id": "AUROC of the confidence score with the ID test images positive against the shift set's; 0.5: "
                         "the score does not move under the shift",
}


def restricted(predictions: Predictions, dataset: ImageDataset, model: Classifier) -> Predictions:
    """``predictions`` in ``dataset``'s label space: logits restricted to its ``class_mask`` when
    it has one (ImageNet-A/-R), else unchanged once the set is checked to have the model's
    classes. A mismatch is a one-line UserError saying how to fix it."""
    mask = getattr(dataset, "class_mask", None)
    if mask is None:
        try:
            check_compatible(model, dataset)
        except UserError:
            raise UserError(f"shift set {dataset.name} has {dataset.num_classes} classes but the model predicts "
                            f"{model.num_classes}; a shift set must share the model's classes (ImageNet-A/-R are "
                            "restricted to their 200 classes for a 1000-class model; for a folder of your own, map "
                            "its folders to the model's class indices with classmap-folder)") from None
        return predictions
    if int(np.max(mask)) >= model.num_classes:
        raise UserError(f"shift set {dataset.name} keeps ImageNet-1k classes up to {int(np.max(mask))} "
                        f"(its class_mask), but the model predicts {model.num_classes} classes; it needs a "
                        "1000-class ImageNet model")
    return Predictions(predictions.logits[:, np.asarray(mask)], predictions.labels, predictions.indices)


def set_metrics(predictions: Predictions, score: str, n_bins: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The per-set metrics (:data:`METRICS`) and per-image arrays (``correct``, ``confidence``,
    ``score``) of one set's predictions."""
    metrics = calibration_metrics(predictions.logits, predictions.labels, n_bins)
    scores = create_score(score)(predictions)
    confidence = softmax(predictions.logits).max(axis=1)
    correct = np.argmax(predictions.logits, axis=1) == predictions.labels
    return metrics | {"mean_score": float(np.mean(scores))}, {"correct": correct, "confidence": confidence,
                                                                "score": scores, "index": predictions.indices}


def evaluate_shift(model: Classifier, id_dataset: ImageDataset, shift_sets: Mapping[str, ImageDataset], *,
                   score: str = "msp", n_bins: int = 15, id_predictions: Predictions | None = None,
                   settings: RunSettings = RunSettings()) -> Result:
    """Accuracy, calibration and score statistics of ``model`` on the ID test set and each
    shift set (module docstring). ``settings.limit`` keeps the first N images of every set.

    Metrics: ``id/{metric}`` and ``{set}/{metric}`` for :data:`METRICS`, ``{set}/accuracy_gap``
    and ``{set}/score_auroc_vs_id``; per-image ``{key}/correct``, ``{key}/confidence``,
    ``{key}/score``, ``{key}/index`` (``key``: ``id`` or the set) for bootstrap intervals.
    ``id_predictions``: the ID pass if the caller already ran it.
    """
    detector = create_score(score)
    if detector.kind != "posthoc" or detector.needs_features or detector.needs_fit or detector.needs_head:
        raise UserError(f"the shift analysis reads only logits; score {score} needs more (choose msp, maxlogit, energy "
                        "or gen)")
    if not shift_sets:
        raise UserError("no shift set given; pass one or more (e.g. cifar10.1, cifar10.2, imagenetv2)")
    check_compatible(model, id_dataset)
    if id_predictions is None:
        id_predictions = predict(model, head(id_dataset, settings.limit), settings, desc=f"ID {id_dataset.name}")
    sets = {"id": (id_dataset, id_predictions)}
    for name, data in shift_sets.items():
        if len(data) == 0:
            raise UserError(f"shift set {name} has no images")
        run = predict(model, head(data, settings.limit), settings, desc=f"shift {name}")
        sets[name] = (data, restricted(run, data, model))
    metrics: dict[str, float] = {}
    per_sample: dict[str, np.ndarray] = {}
    for key, (data, predictions) in sets.items():
        found, arrays = set_metrics(predictions.require_finite("shift metrics mean nothing", data.name), score,
                                    n_bins)
        metrics |= {f"{key}/{m}": found[m] for m in METRICS}
        per_sample |= {f"{key}/{a}": v for a, v in arrays.items()}
    for name in shift_sets:
        metrics[f"{name}/accuracy_gap"] = metrics[f"{name}/accuracy"] - metrics["id/accuracy"]
        metrics[f"{name}/score_auroc_vs_id"] = ood_metrics(per_sample["id/score"], per_sample[f"{name}/score"]).auroc
    dataset_info = {"name": id_dataset.name, "split": id_dataset.split, "num_images": len(id_predictions.labels),
                    "num_classes": id_dataset.num_classes,
                    "shift_sets": {n: _describe(d, len(p.labels)) for n, (d, p) in sets.items() if n != "id"}}
    return Result(evaluator="shift", metrics=metrics, conventions=CONVENTIONS | {"score": f"{score}: "
                  f"{detector.description}; higher = more in-distribution"}, model=settings.model_record(model),
                  dataset=dataset_info, config=settings.config() | {"score": score, "n_bins": n_bins},
                  per_sample=per_sample)


def _describe(dataset: ImageDataset, used: int) -> dict[str, Any]:
    from cutmix_eval.data import dataset_spec

    mask = getattr(dataset, "class_mask", None)
    return {"num_images": used, "description": dataset_spec(dataset.name).description,
            **({"classes": f"{len(mask)} of the model's (class_mask)"} if mask is not None else {})}
