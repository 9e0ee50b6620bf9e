"""The clean pass that several analyses of one model on one dataset share.

:func:`shared_pass` streams the images ONCE (:func:`~cutmix_eval.passes.predict`): each batch goes through
``model.forward_all`` (logits, pooled features, last feature map); logits, labels,
indices and pooled features are kept as a :class:`~cutmix_eval.passes.Predictions`,
and each *consumer* (an object with ``update(batch, images, logits, pooled, fmap)``)
sees the batch's outputs before they are dropped, so feature maps never outlive their
batch. Classification, calibration and the ID side of OOD detection read the
Predictions; native-CAM localization is a consumer
(:class:`~cutmix_eval.evaluate.localization.NativeCAMInPass`). Which analyses join and
how they turn the pass into Results is each analysis's own business
(:class:`cutmix_eval.analyses.base.PassUse`); this module writes no file.

Under ``torchrun`` the loader shards the images and every per-sample array is gathered
in rank order, as in the individual evaluators.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cutmix_eval.data.base import ImageDataset
from cutmix_eval.evaluate.classification import check_compatible
from cutmix_eval.models.classifier import Classifier
from cutmix_eval.passes import Predictions, head, predict
from cutmix_eval.settings import RunSettings


@dataclass
class SharedPass:
    """What one pass over the images gives: the Predictions (with pooled features) and the
    dataset's description for the records."""

    predictions: Predictions
    dataset_info: dict[str, Any]


def shared_pass(model: Classifier, dataset: ImageDataset, consumers: Sequence[Any] = (), *,
                settings: RunSettings = RunSettings()) -> SharedPass:
    """One streamed pass of ``model`` (eval mode) over ``dataset`` (its first ``settings.limit``
    images): ``forward_all`` once per batch, each of ``consumers`` updated with the batch and
    its outputs (on the device); pooled features kept."""
    check_compatible(model, dataset)
    data = head(dataset, settings.limit)
    predictions = predict(model, data, settings, keep_features=True, consumers=consumers,
                          desc=f"evaluate {dataset.name} (shared pass)")
    dataset_info = {"name": dataset.name, "split": dataset.split, "num_images": len(data),
                    "num_classes": dataset.num_classes}
    return SharedPass(predictions, dataset_info)
