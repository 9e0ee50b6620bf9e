"""Passes of a model over a dataset: the streaming loader, the clean forward pass (computed
once and shared by every evaluator that needs it, and by training's test error) and the
distinct-image passes of robustness sweeps. Below both ``evaluate/`` and ``train/``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from cutmix_eval.data.base import collate_samples
from cutmix_eval.distributed import gather_rows, shard_range, world
from cutmix_eval.errors import UserError
from cutmix_eval.models.classifier import Classifier
from cutmix_eval.progress import progress_bar
from cutmix_eval.runtime import Loader, on_device, resolve_device
from cutmix_eval.settings import RunSettings


@dataclass
class Predictions:
    """Outputs of one pass over a dataset, in dataset order.

    ``logits`` ``N x K`` float32, ``labels`` ``N`` int64 (-1 for OOD sets),
    ``indices`` ``N`` int64 dataset positions, ``pooled`` ``N x D`` float32
    penultimate features (the classifier's input), or None when not kept.
    """

    logits: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    pooled: np.ndarray | None = None

    def nonfinite_rows(self) -> int:
        """How many images got at least one NaN or infinite logit."""
        return int((~np.isfinite(self.logits).all(axis=1)).sum())

    def require_finite(self, consequence: str, dataset: str = "") -> Predictions:
        """``self``, or a :class:`UserError` counting the images with NaN/infinite logits and
        saying what that breaks (``consequence``)."""
        bad = self.nonfinite_rows()
        if bad:
            where = f" of {dataset}" if dataset else ""
            raise UserError(f"the model produced NaN or infinite logits for {bad} of {len(self.logits)} images"
                            f"{where}; {consequence} (check the checkpoint and its input scaling)")
        return self


def head(dataset: Dataset, count: int | None) -> Dataset:
    """The first ``count`` items of ``dataset`` (every item when ``count`` is None or covers it):
    what an evaluation's ``limit`` keeps, in dataset order."""
    return Subset(dataset, range(count)) if count and count < len(dataset) else dataset


def make_loader(dataset: Dataset, batch_size: int, num_workers: int = 0, shuffle: bool = False,
                generator: torch.Generator | None = None, drop_last: bool = False,
                collate_fn=collate_samples) -> Loader:
    """A :class:`~cutmix_eval.runtime.Loader` (Ctrl-C safe) that batches samples with
    :func:`collate_samples` (or ``collate_fn``), streaming them (``num_workers`` processes
    decode ahead; pinned memory on CUDA). Under ``torchrun`` it iterates this rank's
    contiguous block only (:func:`cutmix_eval.distributed.shard_range`); callers gather
    what they keep with :func:`cutmix_eval.distributed.gather_rows`."""
    name = getattr(dataset, "name", "") or getattr(getattr(dataset, "dataset", None), "name", "")
    if len(dataset) == 0:
        raise UserError(f"dataset {name} is empty; nothing to evaluate")
    rank, size = world()
    if size > 1:
        if len(dataset) < size:
            raise UserError(f"dataset {name} has {len(dataset)} images, fewer than the {size} processes; "
                            "run with fewer processes (torchrun --nproc_per_node)")
        dataset = Subset(dataset, shard_range(len(dataset)))
    return Loader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                  collate_fn=collate_fn, generator=generator, drop_last=drop_last,
                  pin_memory=torch.cuda.is_available(), persistent_workers=False)


@torch.inference_mode()
def predict(model: Classifier, dataset: Dataset, settings: RunSettings = RunSettings(), *,
            keep_features: bool = False, consumers: Sequence[Any] = (), desc: str = "predict") -> Predictions:
    """Run ``model`` (eval mode) over ``dataset`` once: logits, and the pooled features when
    ``keep_features``. Each of ``consumers`` (an object with ``update(batch, images, logits,
    pooled, fmap)``, everything on the device) sees every batch's outputs before they are
    dropped, so feature maps never outlive their batch; with consumers or features, each
    batch goes through ``model.forward_all`` (one forward), else ``model(images)``.
    ``settings.limit`` is the caller's business (:func:`head`)."""
    device = resolve_device(settings.device)
    with on_device(model, device):
        every_output = keep_features or bool(consumers)
        logits, labels, indices, pooled = [], [], [], []
        loader = make_loader(dataset, settings.batch_size, settings.num_workers)
        for batch in progress_bar(loader, desc=desc, unit="batch", enabled=settings.progress):
            images = batch["image"].to(device, non_blocking=True)
            if every_output:
                out, features, fmap = model.forward_all(images)
                for consumer in consumers:
                    consumer.update(batch, images, out, features, fmap)
                if keep_features:
                    pooled.append(features.float().cpu())
            else:
                out = model(images)
            logits.append(out.float().cpu())
            labels.append(batch["label"])
            indices.append(batch["index"])
    return Predictions(gather_rows(torch.cat(logits).numpy()), gather_rows(torch.cat(labels).numpy()),
                       gather_rows(torch.cat(indices).numpy()),
                       gather_rows(torch.cat(pooled).numpy()) if keep_features else None)


class DistinctPasses:
    """Top-1 predictions on variants of one batch, each distinct image through the model once.

    Sweeps (occlusion, in-between samples) build many variants of a batch, several of which
    are the same pixels (a hole of size 0 is the clean image). ``predicted(key, make)``
    returns ``B`` top-1 classes of ``model(make())``, calling ``make`` and the model only
    the first time ``key`` is seen. Rows with a NaN or infinite logit get class ``-1``,
    which matches no label, and are counted in ``nonfinite`` (``B`` bool, any variant).
    """

    def __init__(self, model: Classifier, batch_size: int, device: torch.device):
        self.model = model
        self.nonfinite = torch.zeros(batch_size, dtype=torch.bool, device=device)
        self._seen: dict[tuple, torch.Tensor] = {}

    @torch.inference_mode()
    def predicted(self, key: tuple, make) -> torch.Tensor:
        if key not in self._seen:
            logits = self.model(make())
            finite = torch.isfinite(logits).all(dim=1)
            self.nonfinite |= ~finite
            self._seen[key] = torch.where(finite, logits.argmax(dim=1), -1)
        return self._seen[key]
