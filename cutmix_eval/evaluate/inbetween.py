"""In-between class samples: how often a model predicts neither source class (paper Fig. 5b).

Images are paired with a partner of a different class (:func:`make_pairs`: fixed and
seeded, so every model of a study sees the same pairs). From each pair (A, B):

``mixup``
    ``(1 - t) * A + t * B`` for each ``t`` of a grid in [0, 1] (``t`` = B's share);
``cutmix``
    A with its centred window of side fraction ``s`` (the occlusion window,
    :func:`~cutmix_eval.evaluate.occlusion.centre_window`) replaced by B's pixels at the
    same place, for each ``s`` of a grid in [0, 1]; B's area share is ``s^2`` for square
    images (up to the window's rounding to whole pixels).

The top-1 prediction on each sample is classed as A's label, B's label, or neither
(lower is better). At ``t = 0`` / ``s = 0`` the sample is A itself and at ``t = 1`` /
``s = 1`` it is B, for both kinds, so those go through the model once per pair.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from cutmix_eval.data.base import ImageDataset, dataset_labels
from cutmix_eval.catalog import INBETWEEN_GRID as DEFAULT_GRID
from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.accumulate import Accumulator, feed
from cutmix_eval.evaluate.classification import check_compatible
from cutmix_eval.evaluate.occlusion import centre_window, check_fractions, trapezoid_mean, window_side
from cutmix_eval.metrics.inbetween import PREDICTS_A, PREDICTS_B, PREDICTS_NEITHER, outcome_rates
from cutmix_eval.models.classifier import Classifier
from cutmix_eval.passes import DistinctPasses, head, make_loader
from cutmix_eval.results import Result
from cutmix_eval.settings import RunSettings
from cutmix_eval.runtime import on_device, resolve_device



def check_num_pairs(num_pairs: int | None, num_images: int) -> None:
    """A number of pairs that ``num_images`` images allow: ``None`` (every image once as A) or
    a whole number from 1 to ``num_images`` (each image is A of at most one pair, so more
    pairs would repeat images); else a :class:`UserError` saying how many are possible."""
    if num_pairs is None:
        return
    if isinstance(num_pairs, bool) or not isinstance(num_pairs, int) or num_pairs < 1:
        raise UserError(f"the number of pairs must be a whole number of at least 1, not {num_pairs!r}")
    if num_pairs > num_images:
        raise UserError(f"{num_pairs} pairs asked for, but there are {num_images} images and each image is A of at "
                        f"most one pair: ask for at most {num_images} (more images give more pairs), or leave the "
                        "number out to pair every image once")


def make_pairs(labels: Sequence[int] | np.ndarray, num_pairs: int | None = None,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded pairs ``(a_indices, b_indices)`` of positions in ``labels`` whose labels differ.

    A pure function of ``(labels, num_pairs, seed)``, so every model of a study sees the same
    pairs. The A side: with ``num_pairs=None`` every image once, in order (the paper's 50,000
    pairs on the 50,000 ImageNet validation images); otherwise ``num_pairs`` images drawn
    without replacement, sorted, from ``numpy.random.default_rng((seed, 0))``: each image is
    A of at most one pair, so ``num_pairs`` may not exceed the number of images
    (:func:`check_num_pairs`). Each B is uniform among the images of another class than its
    A, from ``default_rng((seed, 1))``; the two streams are separate, so
    ``num_pairs=len(labels)`` gives the same pairs as ``None``.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    n = len(labels)
    check_num_pairs(num_pairs, n)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise UserError(f"in-between samples pair images of different classes, but the {n} images here have "
                        f"{len(classes)} class; use more images (a larger --limit) or a labelled dataset")
    if num_pairs is None:
        a = np.arange(n, dtype=np.int64)
    else:
        a = np.sort(np.random.default_rng((seed, 0)).permutation(n)[:num_pairs]).astype(np.int64)
    # images sorted by class: class c's block is order[start[c] : start[c] + count[c]]; the r-th
    # image of another class is order[r] before the block and order[r + count[c]] after it
    order = np.argsort(labels, kind="stable")
    slot = np.searchsorted(classes, labels[a])
    start, count = np.concatenate([[0], np.cumsum(counts)[:-1]])[slot], counts[slot]
    r = np.random.default_rng((seed, 1)).integers(0, n - count)
    b = order[np.where(r < start, r, r + count)].astype(np.int64)
    return a, b


class PairDataset(Dataset):
    """Pairs ``(a[k], b[k])`` of ``dataset`` as one sample: ``image_a``, ``image_b``,
    ``label_a``, ``label_b``, ``index_a``, ``index_b``, so one DataLoader decodes both."""

    def __init__(self, dataset: Dataset, a_indices: Sequence[int], b_indices: Sequence[int]):
        self.dataset, self.a, self.b = dataset, np.asarray(a_indices), np.asarray(b_indices)

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, k: int) -> dict[str, Any]:
        first, second = self.dataset[int(self.a[k])], self.dataset[int(self.b[k])]
        return {"image_a": first["image"], "image_b": second["image"], "label_a": int(first["label"]),
                "label_b": int(second["label"]), "index_a": int(self.a[k]), "index_b": int(self.b[k])}


def collate_pairs(samples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    batch = {key: torch.stack([s[key].as_subclass(torch.Tensor) for s in samples])
             for key in ("image_a", "image_b")}
    return batch | {key: torch.as_tensor([s[key] for s in samples], dtype=torch.long)
                    for key in ("label_a", "label_b", "index_a", "index_b")}


def mix(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Mixup-style sample ``(1 - t) * a + t * b`` (exactly ``a`` at 0 and ``b`` at 1)."""
    return (1.0 - t) * a + t * b


def cut(a: torch.Tensor, b: torch.Tensor, s: float) -> torch.Tensor:
    """CutMix-style sample: ``a`` with its centred window of side fraction ``s`` taken from ``b``."""
    top, left, h, w = centre_window(a.shape[-2], a.shape[-1], s)
    out = a.clone(memory_format=torch.contiguous_format)
    out[..., top:top + h, left:left + w] = b[..., top:top + h, left:left + w]
    return out


def _sample_key(kind: str, value: float, height: int, width: int) -> tuple:
    """``("A",)`` / ``("B",)`` when the sample is one of the pair, else what defines it."""
    if kind == "mixup":
        return ("A",) if value == 0 else ("B",) if value == 1 else ("mixup", value)
    top, left, h, w = centre_window(height, width, value)
    return ("A",) if h * w == 0 else ("B",) if (h, w) == (height, width) else ("cutmix", top, left, h, w)


def make_sample(kind: str, a: torch.Tensor, b: torch.Tensor, value: float) -> torch.Tensor:
    return mix(a, b, value) if kind == "mixup" else cut(a, b, value)


def inbetween_sweep(model: Classifier, a: torch.Tensor, b: torch.Tensor, label_a: torch.Tensor,
                    label_b: torch.Tensor, grids: dict[str, Sequence[float]]) -> tuple[dict[str, torch.Tensor],
                                                                                      torch.Tensor]:
    """Outcomes of every in-between sample of a batch of pairs: ``({kind: B x G int8},
    nonfinite B bool)`` with codes ``PREDICTS_A`` / ``PREDICTS_B`` / ``PREDICTS_NEITHER``
    (a NaN or infinite logit counts as neither). A and B themselves (t or s at 0 and 1)
    and samples whose windows round to the same pixels go through the model once
    (:class:`~cutmix_eval.passes.DistinctPasses`)."""
    height, width = a.shape[-2:]
    passes = DistinctPasses(model, len(a), a.device)

    def outcome(kind: str, value: float) -> torch.Tensor:
        key = _sample_key(kind, value, height, width)
        predicted = passes.predicted(key, lambda: a if key == ("A",) else b if key == ("B",) else
                                     make_sample(kind, a, b, value))
        code = torch.full_like(predicted, PREDICTS_NEITHER, dtype=torch.int8)
        code[predicted == label_b] = PREDICTS_B
        code[predicted == label_a] = PREDICTS_A
        return code

    codes = {kind: torch.stack([outcome(kind, v) for v in grid], dim=1) for kind, grid in grids.items()}
    return codes, passes.nonfinite


def partner_share(kind: str, grid: Sequence[float], height: int, width: int) -> list[float]:
    """B's share of each sample: ``t`` for mixup, the window's share of the pixels for cutmix."""
    if kind == "mixup":
        return [float(t) for t in grid]
    return [window_side(height, s) * window_side(width, s) / (height * width) for s in grid]


def equal_share_point(shares: Sequence[float]) -> int:
    """Index of the grid point whose partner share is nearest 1/2 (ties: the smaller one):
    ``t`` nearest 0.5 for mixup, ``s`` nearest 1/sqrt(2) (by actual pixel area) for cutmix."""
    distance = [abs(v - 0.5) for v in shares]
    return min(range(len(shares)), key=lambda i: (round(distance[i], 9), i))


def inbetween_examples(a: torch.Tensor, b: torch.Tensor, grids: dict[str, Sequence[float]]) -> dict[str, torch.Tensor]:
    """The in-between samples of one pair (``a``, ``b``: ``3 x H x W``) for a figure:
    ``{kind: G x 3 x H x W}``, one sample per grid point."""
    return {kind: torch.stack([make_sample(kind, a[None], b[None], v)[0] for v in grid])
            for kind, grid in grids.items()}


CONVENTIONS = {
    "num_pairs": "pairs (A, B) of images of different classes, fixed by (dataset labels, number of pairs, seed) "
                 "so every model sees the same pairs; B uniform among the images of another class than A",
    "num_nonfinite_logits": "pairs with a NaN or infinite logit in at least one sample; such a prediction counts "
                            "as neither class",
    "pairs": "A is the image whose index is in index_a: the mixup sample's (1 - t) part and the cutmix sample's "
             "outside; B (index_b) is the partner: its share is t for mixup and its pixels fill A's centred "
             "window of round(s * H) x round(s * W) pixels for cutmix (the occlusion window: halves rounded up, "
             "top = (H - h) // 2, left = (W - w) // 2)",
}


def _conventions(grids: dict[str, Sequence[float]], cells: dict[str, int]) -> dict[str, str]:
    conventions = dict(CONVENTIONS)
    for kind, grid in grids.items():
        variable = "t (B's share)" if kind == "mixup" else "s (the window's side fraction; B's area ~ s^2)"
        conventions[f"{kind}/neither_auc"] = (
            f"{kind}-style samples: share of predictions that are neither A's nor B's class, averaged over "
            f"{variable} by the trapezoid rule over the grid divided by its span (lower is better)")
        point = (f"t = {grid[cells[kind]]:g}, the grid point nearest 0.5" if kind == "mixup" else
                 f"s = {grid[cells[kind]]:g}, the grid point whose window covers nearest half the pixels "
                 "(s near 1/sqrt(2))")
        conventions[f"{kind}/neither@{grid[cells[kind]]:g}"] = (
            f"{kind}-style samples: share predicted as neither class at {point}: the equal-share point")
    return conventions


class InbetweenAccumulator(Accumulator):
    """The per-batch work of :func:`evaluate_inbetween`: each batch of pairs (A, B) swept over
    both grids, one outcome code per pair and grid point."""

    def __init__(self, model: Classifier, grids: dict[str, list[float]], device: torch.device):
        super().__init__()
        self.model, self.grids, self.device, self.size = model, grids, device, None

    def update(self, batch: dict) -> None:
        a, b = batch["image_a"].to(self.device, non_blocking=True), batch["image_b"].to(self.device, non_blocking=True)
        if a.shape != b.shape or (self.size is not None and tuple(a.shape[-2:]) != self.size):
            raise UserError(f"in-between samples need images of one size, got {tuple(a.shape[-2:])} and "
                            f"{tuple(b.shape[-2:]) if a.shape != b.shape else self.size}; give the dataset a "
                            "resize / crop transform")
        self.size = tuple(a.shape[-2:])
        codes, bad = inbetween_sweep(self.model, a, b, batch["label_a"].to(self.device),
                                     batch["label_b"].to(self.device), self.grids)
        self.add(label_a=batch["label_a"], label_b=batch["label_b"], nonfinite=bad,
                 **{f"{kind}/outcome": codes[kind] for kind in self.grids})

    def finish(self, pairs: tuple[np.ndarray, np.ndarray], model_info: dict[str, Any], dataset_info: dict[str, Any],
               config: dict[str, Any]) -> Result:
        """The Result; ``pairs``: the (A, B) indices, in the order the loader gave them."""
        rows, grids = self.reduced(), self.grids
        bad = int(rows["nonfinite"].sum())
        if bad:
            warnings.warn(f"the model produced NaN or infinite logits for {bad} in-between pairs; those predictions "
                          "count as neither class", stacklevel=2)
        height, width = self.size
        metrics: dict[str, float] = {}
        curves: dict[str, Any] = {}
        cells: dict[str, int] = {}
        for kind, grid in grids.items():
            shares = partner_share(kind, grid, height, width)
            rates = outcome_rates(rows[f"{kind}/outcome"])
            curves[kind] = {"grid": grid, "partner_share": shares, **{k: v.tolist() for k, v in rates.items()}}
            cells[kind] = equal_share_point(shares)
            metrics[f"{kind}/neither_auc"] = trapezoid_mean(grid, rates["rate_neither"])
            metrics[f"{kind}/neither@{grid[cells[kind]]:g}"] = float(rates["rate_neither"][cells[kind]])
        metrics |= {"num_pairs": int(len(pairs[0])), "num_nonfinite_logits": bad}
        per_sample = {"index_a": pairs[0], "index_b": pairs[1], "label_a": rows["label_a"], "label_b": rows["label_b"],
                      **{f"{kind}/outcome": rows[f"{kind}/outcome"] for kind in grids}}
        return Result(evaluator="inbetween", metrics=metrics, conventions=_conventions(grids, cells), model=model_info,
                      dataset=dataset_info | {"image_size": [height, width]}, config=config, curves=curves,
                      per_sample=per_sample)


def evaluate_inbetween(model: Classifier, dataset: ImageDataset, *, num_pairs: int | None = None, seed: int = 0,
                       mix_grid: Sequence[float] = DEFAULT_GRID, cut_grid: Sequence[float] = DEFAULT_GRID,
                       settings: RunSettings = RunSettings()) -> Result:
    """How often ``model`` predicts neither class of Mixup-style and CutMix-style in-between
    samples of pairs drawn by :func:`make_pairs` from ``dataset`` (its first ``settings.limit``
    images); see the module docstring.

    Metrics: ``{kind}/neither_auc``, ``{kind}/neither@{v}`` at the equal-share grid point,
    ``num_pairs``, ``num_nonfinite_logits``. Curves per kind: ``grid``, ``partner_share``,
    ``rate_a``, ``rate_b``, ``rate_neither``. Per sample (one row per pair): ``index_a``,
    ``index_b``, ``label_a``, ``label_b``, ``{kind}/outcome`` (``N x G`` int8: 0 = A,
    1 = B, 2 = neither).
    """
    grids = {"mixup": check_fractions(mix_grid, "the mixup grid"),
             "cutmix": check_fractions(cut_grid, "the cutmix grid")}
    check_compatible(model, dataset)
    data = head(dataset, settings.limit)
    if len(data) == 0:
        raise UserError(f"dataset {dataset.name} is empty; nothing to pair")
    a_indices, b_indices = make_pairs(dataset_labels(data), num_pairs, seed)
    device = resolve_device(settings.device)
    with on_device(model, device):
        accumulator = InbetweenAccumulator(model, grids, device)
        loader = make_loader(PairDataset(data, a_indices, b_indices), settings.batch_size, settings.num_workers,
                             collate_fn=collate_pairs)
        feed(accumulator, loader, desc=f"in-between {dataset.name}", progress=settings.progress)
        return accumulator.finish(
            (a_indices, b_indices), settings.model_record(model),
            {"name": dataset.name, "split": dataset.split, "num_images": len(data), "num_classes": dataset.num_classes},
            {"num_pairs": num_pairs, "seed": seed, "mix_grid": grids["mixup"], "cut_grid": grids["cutmix"]}
            | settings.config())
