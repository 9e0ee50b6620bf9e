"""Occlusion: top-1 accuracy as a centred square of the image is hidden (paper Fig. 5a).

Two modes, over a grid of hole-size fractions ``s`` in [0, 1]:

``centre``
    the centred window of sides ``round(s * H) x round(s * W)`` (see
    :func:`centre_window`) is replaced by fill pixels;
``boundary``
    everything *outside* that window is replaced by fill pixels.

The paper zeroes the pixels without saying whether before or after normalization;
the default fill here is pixel-space zero (black), and the fill is stated in every
record. Each batch is decoded once and every (mode, fraction) variant is evaluated
from it; variants that are the same image (the clean image, the all-fill image, or
two fractions whose windows round to the same pixels) go through the model once.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from cutmix_eval.data.base import ImageDataset
from cutmix_eval.errors import UserError
from cutmix_eval.catalog import OCCLUSION_FRACTIONS as DEFAULT_FRACTIONS
from cutmix_eval.catalog import OCCLUSION_MODES as MODES
from cutmix_eval.evaluate.accumulate import Accumulator, feed
from cutmix_eval.evaluate.classification import check_compatible
from cutmix_eval.models.classifier import Classifier
from cutmix_eval.passes import DistinctPasses, head, make_loader
from cutmix_eval.results import Result
from cutmix_eval.settings import RunSettings
from cutmix_eval.runtime import on_device, per_image_uniform, resolve_device

FILLS = ("black", "mean", "noise")
#: the table cells: accuracy at these fractions of the side (or the nearest grid points)
TABLE_FRACTIONS = (0.25, 0.5, 0.75)
_EPS = 1e-9


def window_side(side: int, fraction: float) -> int:
    """``round(fraction * side)`` with halves rounded up (``floor(fraction * side + 0.5)``,
    with a 1e-9 tolerance so that float grids such as 0.35 * 10 give 4, not 3)."""
    return int(math.floor(fraction * side + 0.5 + _EPS))


def centre_window(height: int, width: int, fraction: float) -> tuple[int, int, int, int]:
    """The centred window ``(top, left, h, w)`` of sides ``h = round(fraction * height)``
    and ``w = round(fraction * width)`` (each side separately, halves rounded up; see
    :func:`window_side`) for ``fraction`` in [0, 1].

    ``top = (height - h) // 2`` and ``left = (width - w) // 2``: when a margin cannot
    be split evenly, the extra pixel goes to the bottom / right margin. The window covers
    rows ``top .. top + h - 1`` and columns ``left .. left + w - 1``.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], not {fraction}")
    h, w = window_side(height, fraction), window_side(width, fraction)
    return (height - h) // 2, (width - w) // 2, h, w


def check_fractions(fractions: Sequence[float], what: str = "fractions") -> list[float]:
    """The grid as floats: at least 2 values, strictly increasing, within [0, 1]."""
    values = [float(f) for f in fractions]
    if len(values) < 2:
        raise UserError(f"{what} need at least 2 values in [0, 1] to draw a curve, got {values}; "
                        "e.g. 0,0.1,0.2,...,1")
    if any(not 0.0 <= f <= 1.0 for f in values):
        raise UserError(f"{what} must lie in [0, 1] (fractions of the image side), got {values}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise UserError(f"{what} must be sorted and without repeats, got {values}")
    return values


def parse_grid(text: str, what: str = "fractions") -> list[float]:
    """A grid from the command line, checked by :func:`check_fractions`: comma-separated
    values (``0,0.25,0.5,0.75,1``) or ``start:step:stop`` with the stop included
    (``0:0.1:1`` gives the 11 points 0, 0.1, ..., 1)."""
    try:
        if text.count(":") == 2:
            start, step, stop = (float(v) for v in text.split(":"))
            if step <= 0:
                raise ValueError
            count = int(math.floor((stop - start) / step + 1e-6)) + 1
            values = [round(start + i * step, 10) for i in range(count)]
        else:
            values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"cannot read {what} {text!r}; write comma-separated values such as 0,0.25,0.5,0.75,1 or "
                        "start:step:stop such as 0:0.1:1") from None
    return check_fractions(values, what)


def check_modes(modes: Sequence[str]) -> list[str]:
    values = list(dict.fromkeys(modes))
    unknown = [m for m in values if m not in MODES]
    if unknown or not values:
        raise UserError(f"unknown occlusion mode {', '.join(unknown) or '(none)'}; choose from {', '.join(MODES)}")
    return values


def parse_fill(fill: str | float) -> str | float:
    """A fill spec checked: ``"black"``, ``"mean"``, ``"noise"`` or a grey level in [0, 1]
    (a number or its text)."""
    if isinstance(fill, str) and fill.strip().lower() in FILLS:
        return fill.strip().lower()
    try:
        value = float(fill)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise UserError(f"unknown fill {fill!r}; use black, mean, noise or a grey level in [0, 1] such as 0.5")
    return value


def describe_fill(fill: str | float, seed: int = 0) -> str:
    """One phrase saying what the hidden pixels become."""
    fill = parse_fill(fill)
    if fill == "black":
        return "black (pixel value 0 in [0, 1] pixel space, before the model's normalization)"
    if fill == "mean":
        return "the model's per-channel normalization mean (zero after normalization)"
    if fill == "noise":
        return (f"uniform [0, 1] noise per pixel and channel, drawn per image from numpy's default_rng(({seed}, "
                "dataset index)), so every model sees the same occluded images")
    return f"grey level {fill:g} in every channel (pixel space)"


def fill_pixels(fill: str | float, images: torch.Tensor, indices: torch.Tensor | Sequence[int] | None = None, *,
                mean: torch.Tensor | Sequence[float] | None = None, seed: int = 0) -> torch.Tensor:
    """The ``B x 3 x H x W`` fill for a batch (same dtype and device as ``images``).

    ``"black"``: zeros; a number: that grey level; ``"mean"``: ``mean`` (3 values, the
    model's normalization mean) per channel; ``"noise"``: uniform [0, 1) noise, image
    ``i`` drawn from ``numpy.random.default_rng((seed, indices[i]))``, so the noise
    depends only on (seed, dataset index), not on the batch or the model.
    """
    fill = parse_fill(fill)
    b, c, h, w = images.shape
    if fill == "noise":
        if indices is None:
            raise ValueError("the noise fill needs the images' dataset indices")
        keys = [(int(seed), int(i)) for i in (indices.tolist() if torch.is_tensor(indices) else indices)]
        return per_image_uniform(keys, (c, h, w), like=images)
    if fill == "mean":
        if mean is None:
            raise ValueError("the mean fill needs the model's normalization mean")
        level = torch.as_tensor(mean).to(dtype=images.dtype, device=images.device).reshape(1, c, 1, 1)
    else:
        level = torch.full((1, c, 1, 1), 0.0 if fill == "black" else float(fill), dtype=images.dtype,
                           device=images.device)
    return level.expand(b, c, h, w)


def occlude(images: torch.Tensor, fraction: float, mode: str, fill: torch.Tensor) -> torch.Tensor:
    """A new tensor: ``images`` (``B x 3 x H x W``) with the centred window of side fraction
    ``fraction`` (``"centre"``) or everything outside it (``"boundary"``) taken from ``fill``
    (same shape). The inputs are not modified."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    top, left, h, w = centre_window(images.shape[-2], images.shape[-1], fraction)
    inside = (..., slice(top, top + h), slice(left, left + w))
    out = (images if mode == "centre" else fill).clone(memory_format=torch.contiguous_format)
    out[inside] = (fill if mode == "centre" else images)[inside]
    return out


def _variant_key(mode: str, fraction: float, height: int, width: int) -> tuple:
    """What image a (mode, fraction) produces: ``("clean",)``, ``("fill",)`` or the window.
    Variants with equal keys are the same pixels, so their logits are computed once."""
    top, left, h, w = centre_window(height, width, fraction)
    empty, full = h * w == 0, (h, w) == (height, width)
    if (mode == "centre" and empty) or (mode == "boundary" and full):
        return ("clean",)
    if (mode == "centre" and full) or (mode == "boundary" and empty):
        return ("fill",)
    return (mode, top, left, h, w)


def occlusion_examples(images: torch.Tensor, fill: torch.Tensor, fractions: Sequence[float],
                       modes: Sequence[str] = MODES) -> torch.Tensor:
    """Every occluded variant of a few images for a figure: ``images`` and ``fill``
    ``K x 3 x H x W`` give ``(K * len(modes) * F) x 3 x H x W``, one row of ``F`` per
    (image, mode) in that order."""
    return torch.cat([occlude(images[k:k + 1], f, mode, fill[k:k + 1])
                      for k in range(len(images)) for mode in modes for f in fractions])


class Sweep(NamedTuple):
    """One batch's outcomes: ``correct`` ``{mode: B x F bool}`` (top-1 right), ``clean``
    (``B`` bool, top-1 right on the unoccluded image) and ``nonfinite`` (``B`` bool, a NaN or
    infinite logit in any variant of the image)."""

    correct: dict[str, torch.Tensor]
    clean: torch.Tensor
    nonfinite: torch.Tensor


def occlusion_sweep(model: Classifier, images: torch.Tensor, labels: torch.Tensor, fill: torch.Tensor,
                    fractions: Sequence[float], modes: Sequence[str] = MODES) -> Sweep:
    """Every (mode, fraction) variant of one batch, and the clean batch, through ``model``.

    The model sees each distinct image once (:class:`~cutmix_eval.passes.DistinctPasses`):
    centre at 0 and boundary at 1 *are* the clean image, and centre at 1 and boundary at 0
    the all-fill image (the same for noise too, as it is seeded per image), and fractions
    whose windows round to the same pixels give the same image; such variants reuse one
    pass's outcome, which is exact. A row with a NaN or infinite logit counts as wrong.
    """
    height, width = images.shape[-2:]
    passes = DistinctPasses(model, len(images), images.device)

    def correct(key: tuple, mode: str, fraction: float) -> torch.Tensor:
        return passes.predicted(key, lambda: images if key == ("clean",) else fill if key == ("fill",) else
                                occlude(images, fraction, mode, fill)) == labels

    clean = correct(("clean",), "centre", 0.0)
    per_mode = {mode: torch.stack([correct(_variant_key(mode, f, height, width), mode, f) for f in fractions], dim=1)
                for mode in modes}
    return Sweep(per_mode, clean, passes.nonfinite)


def trapezoid_mean(x: Sequence[float], y: Sequence[float]) -> float:
    """Area under ``y(x)`` by the trapezoid rule divided by the span of ``x``: the mean of
    the piecewise-linear curve (over [0, 1] the area itself)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))


def nearest_grid_point(grid: Sequence[float], target: float, towards: float = 0.5) -> int:
    """Index of the grid point nearest ``target``; of two equally near (within 1e-9), the
    one nearer ``towards``."""
    distance = [abs(g - target) for g in grid]
    best = min(distance)
    tied = [i for i, d in enumerate(distance) if d <= best + _EPS]
    return min(tied, key=lambda i: abs(grid[i] - towards))


def table_points(fractions: Sequence[float]) -> list[int]:
    """Grid indices of the table cells: 0.25, 0.5 and 0.75 when in the grid, otherwise the
    nearest grid points (ties towards 0.5, so the default grid gives 0.3, 0.5, 0.7)."""
    return list(dict.fromkeys(nearest_grid_point(fractions, t) for t in TABLE_FRACTIONS))


def conventions_for(fill: str | float, seed: int, modes: Sequence[str], fractions: Sequence[float]) -> dict[str, str]:
    """What each occlusion metric means, keyed like the metrics (plus ``fill``)."""
    window = ("the centred window of round(s * H) x round(s * W) pixels (halves rounded up; top = (H - h) // 2, "
              "left = (W - w) // 2, so an odd margin leaves its extra pixel at the bottom / right)")
    filled = describe_fill(fill, seed)
    conventions = {
        "clean_accuracy": "top-1 accuracy on the unoccluded images (ties -> lower class index; NaN or infinite "
                          "logits count as wrong)",
        "num_images": "images evaluated",
        "num_nonfinite_logits": "images with a NaN or infinite logit in at least one variant (clean included); "
                                "those outcomes count as wrong",
        "fill": filled,
    }
    for mode in modes:
        what = f"{window} filled" if mode == "centre" else f"every pixel outside {window} filled"
        conventions[f"{mode}/auc"] = (f"{mode} occlusion ({what}; fill: {filled}): area under top-1 accuracy "
                                      "against the side fraction s by the trapezoid rule over the grid, divided by "
                                      "the grid's span, i.e. the mean accuracy of the piecewise-linear curve "
                                      "(the plain area when the grid runs from 0 to 1)")
        for i in table_points(fractions):
            conventions[f"{mode}/accuracy@{fractions[i]:g}"] = (
                f"{mode} occlusion top-1 accuracy at side fraction s = {fractions[i]:g} (table cells sit at "
                "s = 0.25, 0.5, 0.75, or at the nearest grid point when the grid lacks one, ties towards 0.5)")
    return conventions


class OcclusionAccumulator(Accumulator):
    """The per-batch work of :func:`evaluate_occlusion`: each batch's clean and occluded
    predictions (one forward per grid point and mode) reduced to per-image correct flags."""

    def __init__(self, model: Classifier, *, fractions: Sequence[float], modes: Sequence[str], fill: str | float,
                 seed: int, device: torch.device):
        super().__init__()
        self.model, self.fractions, self.modes, self.fill, self.seed = model, fractions, modes, fill, seed
        self.device, self.size = device, None

    def update(self, batch: dict) -> None:
        images = batch["image"].to(self.device, non_blocking=True)
        if self.size is None:
            self.size = tuple(images.shape[-2:])
        elif tuple(images.shape[-2:]) != self.size:
            raise UserError(f"occlusion needs images of one size, got {self.size} and {tuple(images.shape[-2:])}; "
                            "give the dataset a resize / crop transform")
        pixels = fill_pixels(self.fill, images, batch["index"], mean=getattr(self.model, "mean", None), seed=self.seed)
        sweep = occlusion_sweep(self.model, images, batch["label"].to(self.device), pixels, self.fractions, self.modes)
        self.add(index=batch["index"], clean=sweep.clean, nonfinite=sweep.nonfinite,
                 **{f"{mode}/correct": sweep.correct[mode] for mode in self.modes})

    def finish(self, model_info: dict[str, Any], dataset_info: dict[str, Any], config: dict[str, Any]) -> Result:
        rows, fractions = self.reduced(), self.fractions
        bad = int(rows["nonfinite"].sum())
        if bad:
            warnings.warn(f"the model produced NaN or infinite logits for {bad} images in some occlusion variant; "
                          "those outcomes count as wrong", stacklevel=2)
        height, width = self.size
        metrics: dict[str, float] = {"clean_accuracy": float(rows["clean"].mean())}
        curves: dict[str, Any] = {}
        cells = table_points(fractions)
        for mode in self.modes:
            accuracy = rows[f"{mode}/correct"].mean(axis=0)
            windows = [window_side(height, f) * window_side(width, f) for f in fractions]
            curves[mode] = {"fraction": fractions, "accuracy": accuracy.tolist(),
                            "hole_pixels": windows if mode == "centre" else [height * width - a for a in windows]}
            metrics[f"{mode}/auc"] = trapezoid_mean(fractions, accuracy)
            for i in cells:
                metrics[f"{mode}/accuracy@{fractions[i]:g}"] = float(accuracy[i])
        metrics |= {"num_images": dataset_info["num_images"], "num_nonfinite_logits": bad}
        return Result(
            evaluator="occlusion", metrics=metrics,
            conventions=conventions_for(self.fill, self.seed, self.modes, fractions), model=model_info,
            dataset=dataset_info | {"image_size": [height, width]}, config=config, curves=curves,
            per_sample={"index": rows["index"], **{f"{m}/correct": rows[f"{m}/correct"] for m in self.modes}})


def evaluate_occlusion(model: Classifier, dataset: ImageDataset, *, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                       modes: Sequence[str] = MODES, fill: str | float = "black", seed: int = 0,
                       settings: RunSettings = RunSettings()) -> Result:
    """Top-1 accuracy of ``model`` under centre and boundary occlusion over a grid of hole
    sizes, on ``dataset`` (its first ``settings.limit`` images); see the module docstring.

    Metrics: ``clean_accuracy``, per mode ``{mode}/auc`` and ``{mode}/accuracy@{s}`` at the
    table points (:func:`table_points`), ``num_images``, ``num_nonfinite_logits``. Curves per
    mode: ``fraction``, ``hole_pixels`` (pixels filled per image) and ``accuracy``.
    Per sample: ``index`` and ``{mode}/correct`` (``N x F`` bool).
    """
    fractions = check_fractions(fractions)
    modes = check_modes(modes)
    fill = parse_fill(fill)
    check_compatible(model, dataset)
    data = head(dataset, settings.limit)
    device = resolve_device(settings.device)
    with on_device(model, device):
        accumulator = OcclusionAccumulator(model, fractions=fractions, modes=modes, fill=fill, seed=seed, device=device)
        feed(accumulator, make_loader(data, settings.batch_size, settings.num_workers),
             desc=f"occlusion {dataset.name}", progress=settings.progress)
        return accumulator.finish(
            settings.model_record(model),
            {"name": dataset.name, "split": dataset.split, "num_images": len(data), "num_classes": dataset.num_classes},
            {"fractions": fractions, "modes": modes, "fill": fill, "seed": seed} | settings.config())
