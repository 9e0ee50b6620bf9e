"""Classification: top-1 and top-5 error on a labelled dataset."""

from __future__ import annotations

from typing import Any

from cutmix_eval.data.base import ImageDataset
from cutmix_eval.errors import UserError
from cutmix_eval.metrics.classification import topk_correct
from cutmix_eval.models.classifier import Classifier
from cutmix_eval.passes import Predictions, head, predict
from cutmix_eval.results import Result
from cutmix_eval.settings import RunSettings

CONVENTIONS = {
    "top1_error": "fraction of images whose label is not the highest logit (ties -> lower class index; "
                  "non-finite logits count as wrong)",
    "top5_error": "fraction of images whose label is not among the 5 highest logits (same tie rule)",
}


def check_compatible(model: Classifier, dataset: ImageDataset) -> None:
    """A labelled dataset must have exactly the model's number of classes."""
    if not dataset.num_classes:
        raise UserError(f"{dataset.name} has no class labels (an OOD set); classification error needs a "
                        "labelled dataset such as the one the model was trained on")
    if dataset.num_classes != model.num_classes:
        raise UserError(f"the model predicts {model.num_classes} classes but {dataset.name} has "
                        f"{dataset.num_classes}; evaluate it on the dataset it was trained for")


def classification_result(predictions: Predictions, *, model_info: dict[str, Any],
                          dataset_info: dict[str, Any], config: dict[str, Any] | None = None) -> Result:
    """Top-1/top-5 error from a (possibly shared) prediction pass."""
    top1 = topk_correct(predictions.logits, predictions.labels, 1)
    top5 = topk_correct(predictions.logits, predictions.labels, 5)
    nonfinite = predictions.nonfinite_rows()
    return Result(
        evaluator="classification",
        metrics={"top1_error": float(1 - top1.mean()), "top5_error": float(1 - top5.mean()),
                 "num_images": int(len(top1)), "num_nonfinite_logits": nonfinite},
        conventions=CONVENTIONS, model=model_info, dataset=dataset_info, config=config or {},
        per_sample={"index": predictions.indices, "top1_correct": top1, "top5_correct": top5},
    )


def labelled_pass(model: Classifier, dataset: ImageDataset, *,
                  settings: RunSettings = RunSettings()) -> tuple[Predictions, dict[str, Any]]:
    """The prediction pass over a labelled dataset (its first ``settings.limit`` images) that
    classification and calibration share, and the dataset's description for their records."""
    check_compatible(model, dataset)
    data = head(dataset, settings.limit)
    predictions = predict(model, data, settings, desc=f"evaluate {dataset.name}")
    return predictions, {"name": dataset.name, "split": dataset.split, "num_images": len(data),
                         "num_classes": dataset.num_classes}


def evaluate_classification(model: Classifier, dataset: ImageDataset, *,
                            settings: RunSettings = RunSettings()) -> Result:
    """Top-1 / top-5 error of ``model`` on ``dataset`` (the first ``settings.limit`` images)."""
    predictions, dataset_info = labelled_pass(model, dataset, settings=settings)
    return classification_result(predictions, model_info=settings.model_record(model), dataset_info=dataset_info,
                                 config=settings.config())
