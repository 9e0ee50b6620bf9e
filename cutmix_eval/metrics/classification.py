"""Top-k classification outcomes and error rates."""

from __future__ import annotations

import numpy as np


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> np.ndarray:
    """Per-sample top-k correctness, ``N`` bools, for ``logits`` ``N x K`` and ``labels`` ``N``.

    A sample is correct when its label is among the ``k`` highest scores. Ties at
    the k-th score are broken towards the lower class index (as ``torch.topk`` and
    a stable descending sort do). A row with any NaN or infinite logit counts as
    wrong: a model that produces no number gets no credit.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"expected logits N x K and labels N, got {logits.shape} and {labels.shape}")
    k = min(k, logits.shape[1])
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    correct = (order == labels[:, None]).any(axis=1)
    return correct & np.isfinite(logits).all(axis=1)


def topk_error(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Top-k error as a fraction in [0, 1] (the paper prints it as a percentage)."""
    if len(labels) == 0:
        raise ValueError("top-k error of an empty set is undefined")
    return float(1.0 - topk_correct(logits, labels, k).mean())
