"""Where the embedded dataset's class evidence lives, for a given ``body_evidence``.

:func:`evidence_probe` trains a small CNN (``gapnet`` of width 16) on three **views**
of the same ``synthetic`` images and reports each view's test accuracy:

* ``whole``: the images as generated;
* ``part_only``: every pixel outside the part mask set to the image's mean grey (the
  mean over its pixels and channels), so only the part is left to see;
* ``no_part``: the same images rendered without the part (the same random draws, see
  :func:`cutmix_eval.data.synthetic.generate`), so only the body and the clutter are left.

``part_only`` well above ``no_part`` says the class lives in the part (``body_evidence``
0); ``no_part`` near ``whole`` says the body gives it away as well.

The loop is its own, tiny and pure torch, not :mod:`cutmix_eval.train`: the views are
not registered datasets (two of them exist only here), and the probe needs neither
mixing, checkpoints nor records, only a comparable accuracy in about a minute per view
on a CPU. It trains with SGD (momentum 0.9, weight decay 5e-4, batch 64, learning rate
0.1 decayed by a cosine over the epochs), no augmentation, and tests once at the end.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from cutmix_eval.data import synthetic as S
from cutmix_eval.models.gapnet import GAPNet

NUM_CLASSES = 10
WIDTH = 16
BATCH = 64
LEARNING_RATE = 0.1
VIEWS = ("whole", "part_only", "no_part")


def part_only(images: np.ndarray, part_masks: np.ndarray) -> np.ndarray:
    """uint8 ``N x 3 x S x S`` images with every pixel outside ``part_masks`` (``N x S x S``,
    1 = part) set to the image's mean grey (rounded)."""
    grey = np.rint(images.mean((1, 2, 3))).astype(np.uint8)[:, None, None, None]
    return np.where(part_masks[:, None].astype(bool), images, grey)


def _tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 images -> float32 normalised as ``gapnet`` expects (mean 0.5, std 0.25), channels
    last (faster convolutions on a CPU)."""
    return ((torch.from_numpy(images).float() / 255 - 0.5) / 0.25).contiguous(memory_format=torch.channels_last)


def train_and_test(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], *,
                   epochs: int, seed: int = 0) -> float:
    """Test accuracy of a ``gapnet`` of width 16 trained on ``train`` (uint8 images ``N x 3 x S x S``,
    int64 labels ``N``) for ``epochs`` epochs; deterministic given ``seed`` (the global torch
    random state is left as it was)."""
    x, y = _tensor(train[0]), torch.from_numpy(train[1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GAPNet(NUM_CLASSES, width=WIDTH).to(memory_format=torch.channels_last)
        optimiser = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=0.9, weight_decay=5e-4)
        steps = epochs * -(-len(y) // BATCH)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(y)).split(BATCH):
                optimiser.zero_grad()
                loss_fn(model(x[batch]), y[batch]).backward()
                optimiser.step()
                schedule.step()
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(chunk).argmax(1) for chunk in _tensor(test[0]).split(256)])
    return float((predictions == torch.from_numpy(test[1])).float().mean())


def evidence_probe(body_evidence: float, *, num_train: int = 4000, num_test: int = 1000, image_size: int = 64,
                   epochs: int = 8, seed: int = 0) -> dict[str, Any]:
    """Test accuracy of a small CNN on each view (see the module docstring) of ``synthetic``
    (10 classes, generator seed ``seed``, not cached) at ``body_evidence``.

    Returns ``{"body_evidence", "chance", "whole", "part_only", "no_part", "seconds"}``:
    accuracies in [0, 1], chance = 1 / 10, and ``seconds`` the training and testing time
    per view (a dict keyed like the accuracies).
    """
    params = {"image_size": image_size, "num_classes": NUM_CLASSES, "seed": seed, "body_evidence": body_evidence}
    views: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {view: [] for view in VIEWS}
    for split, count in (("train", num_train), ("test", num_test)):
        data = S.generate("synthetic", split, count, cache=False, **params)
        without = S.generate("synthetic", split, count, cache=False, draw_parts=False, **params)
        views["whole"].append((data.images, data.labels))
        views["part_only"].append((part_only(data.images, data.part_masks), data.labels))
        views["no_part"].append((without.images, data.labels))
    result: dict[str, Any] = {"body_evidence": body_evidence, "chance": 1 / NUM_CLASSES, "seconds": {}}
    for view, (train, test) in views.items():
        start = time.perf_counter()
        result[view] = train_and_test(train, test, epochs=epochs, seed=seed)
        result["seconds"][view] = time.perf_counter() - start
    return result
