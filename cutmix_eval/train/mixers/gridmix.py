"""GridMix: a regular grid of holes, inside a random crop, filled from the partner image.

Baek, Bang & Shim, "GridMix: Strong regularization through local context mapping",
Pattern Recognition 109 (2021). The reference implementation is OpenMixup's ``gridmix``
(Westlake-AI/openmixup, ``openmixup/models/augments/gridmix.py``), which follows
https://github.com/IlyaDobrynin/GridMixup and which this module reproduces. The paper also
trains a patch-level classifier ("local context mapping"); that auxiliary loss is not part
of OpenMixup's ``gridmix`` and not part of this mixer.

One mask for the whole batch (the reference has no per-sample mode), with probability
``prob`` (the reference mixes every batch). Draws: ``lam ~ Beta(alpha, alpha)``; the hole
count across ``n_holes`` uniform over ``[n_holes_min, n_holes_max]``; the crop's area ratio
``a ~ U(cut_area_min, cut_area_max)`` and aspect ratio ``r ~ U(cut_aspect_min,
cut_aspect_max)``; the crop's position ``u, v ~ U[0, 1)``; partners by a uniform random
permutation (self-pairs allowed). Then, with ``int`` truncating toward zero as Python's:

- the crop: width ``cw = int(sqrt(int(H * W * a) / r))``, height ``ch = int(cw * r)``,
  left ``int((W - cw) * u)``, top ``int((H - ch) * v)``;
- the grid: patch width ``pw = ceil(cw / n)``, patch height ``ph = int(pw *
  hole_aspect_ratio)``, ``ceil(ch / ph)`` patch rows;
- the holes: ``int(pw * sqrt(1 - lam))`` x ``int(ph * sqrt(1 - lam))`` pixels (at least 1,
  at most the patch side minus 1) at the top-left corner of each patch, for ``n + 1``
  patch columns and ``ceil(ch / ph) + 1`` patch rows, cut at the crop's edge.

The crop can be larger than the image (``a / r > 1`` or ``a * r > 1``, frequent with the
default ranges); its left or top is then negative, and the reference indexes with Python
slices, which count negative positions from the image's end: a hole ``[a, b)`` with
``-n <= a < 0`` along an axis of ``n`` pixels is placed at ``[a + n, b + n)`` when ``b < 0``
and dropped when ``b >= 0``. The holes here are placed by the same slices, so exactly as
the reference.

Holes take the partner's pixels, ``mixed = x * (1 - mask) + x[perm] * mask``; targets by
the exact area, ``lam = 1 - mask.mean()`` for the image's own label (as the reference).

The reference takes the crop's width and left from the image's third dimension; on
non-square images we use columns for widths (identical on square images). Its ``assert 1
<= n <= cw // 2`` fails on some draws of small images; here the image size is checked
against the smallest possible crop before drawing, so a too-small image is refused every
time, not by chance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from cutmix_eval.errors import UserError
from cutmix_eval.train.mixing import Mixer, as_index, mix_targets, pair_indices


def _covered(offset: int, extent: int, period: int, hole: int, count: int, size: int) -> np.ndarray:
    """Pixels of one image axis inside some hole: holes ``[offset + period * k, ... + hole)``
    cut at ``offset + extent``, ``k < count``, placed by Python slice rules as the reference."""
    starts = np.minimum(period * np.arange(count), extent)
    stops = np.minimum(starts + hole, extent)
    covered = np.zeros(size, dtype=bool)
    for start, stop in zip(offset + starts, offset + stops):
        covered[start:stop] = True
    return covered


def grid_mask(height: int, width: int, lam: float, n_holes: int, hole_aspect_ratio: float, cut_area_ratio: float,
              cut_aspect_ratio: float, u: float, v: float) -> np.ndarray:
    """``H x W`` bool mask, True in the holes (the module docstring gives every step).

    The holes are the product of hole columns and hole rows, so the mask is the outer
    product of the columns and rows any hole covers."""
    crop_w = int(np.sqrt(int(height * width * cut_area_ratio) / cut_aspect_ratio))
    crop_h = int(crop_w * cut_aspect_ratio)
    left = int((width - crop_w) * u)
    top = int((height - crop_h) * v)
    patch_w = math.ceil(crop_w / n_holes)
    patch_h = int(patch_w * hole_aspect_ratio)
    ratio = np.sqrt(1 - lam)
    hole_w = min(max(int(patch_w * ratio), 1), patch_w - 1)
    hole_h = min(max(int(patch_h * ratio), 1), patch_h - 1)
    cols = _covered(left, crop_w, patch_w, hole_w, n_holes + 1, width)
    rows = _covered(top, crop_h, patch_h, hole_h, math.ceil(crop_h / patch_h) + 1, height)
    return rows[:, None] & cols[None, :]


def smallest_crop_width(height: int, width: int, cut_area_min: float, cut_aspect_max: float) -> int:
    """The narrowest crop the ranges can draw (the crop width grows with the area ratio and
    shrinks with the aspect ratio)."""
    return int(np.sqrt(int(height * width * cut_area_min) / cut_aspect_max))


def gridmix_batch(x: torch.Tensor, y: torch.Tensor, mask: np.ndarray, perm: np.ndarray,
                  num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mixed, targets)``: ``x[perm]`` in the ``H x W`` bool ``mask``'s holes, ``x``
    elsewhere; the own label weighted by the share of pixels outside the holes."""
    index = as_index(perm, x.device)
    holes = torch.as_tensor(mask, device=x.device)
    mixed = torch.where(holes, x[index], x)
    return mixed, mix_targets(y, index, 1.0 - mask.sum() / mask.size, num_classes, x.dtype)


@dataclass
class GridMix(Mixer):
    """GridMix as OpenMixup implements it: a grid of holes from the partner image inside a
    random crop; targets by the exact hole area. One mask per batch; see the module
    docstring for every convention. Defaults: OpenMixup's CIFAR settings."""

    alpha: float = 0.2  # lam ~ Beta(alpha, alpha) (OpenMixup's CIFAR benchmarks; its function default is 1)
    n_holes_min: int = 2  # fewest holes across the crop (OpenMixup configs: n_holes=(2, 6))
    n_holes_max: int = 6  # most holes across the crop
    hole_aspect_ratio: float = 1.0  # patch height / patch width (OpenMixup configs: 1)
    cut_area_min: float = 0.5  # smallest crop area / image area (OpenMixup configs: cut_area_ratio=(0.5, 1))
    cut_area_max: float = 1.0  # largest crop area / image area
    cut_aspect_min: float = 0.5  # smallest crop height / width (OpenMixup configs: cut_aspect_ratio=(0.5, 2))
    cut_aspect_max: float = 2.0  # largest crop height / width
    prob: float = 1.0  # probability that a batch is mixed (the reference mixes every batch)

    name: ClassVar[str] = "gridmix"

    def __post_init__(self):
        super().__post_init__()
        if self.alpha <= 0:
            raise UserError(f"gridmix alpha must be > 0 (lam ~ Beta(alpha, alpha)), got {self.alpha}")
        if not 1 <= self.n_holes_min <= self.n_holes_max:
            raise UserError(f"gridmix needs 1 <= n_holes_min <= n_holes_max, got {self.n_holes_min} and "
                            f"{self.n_holes_max}")
        if self.hole_aspect_ratio < 0.5:
            raise UserError(f"gridmix hole_aspect_ratio must be >= 0.5 (a patch at least one pixel high), "
                            f"got {self.hole_aspect_ratio}")
        if not 0 < self.cut_area_min <= self.cut_area_max <= 1:
            raise UserError(f"gridmix needs 0 < cut_area_min <= cut_area_max <= 1, got {self.cut_area_min} and "
                            f"{self.cut_area_max}")
        if not 0 < self.cut_aspect_min <= self.cut_aspect_max:
            raise UserError(f"gridmix needs 0 < cut_aspect_min <= cut_aspect_max, got {self.cut_aspect_min} and "
                            f"{self.cut_aspect_max}")

    def draw_mask(self, height: int, width: int) -> np.ndarray:
        """One hole mask for ``H x W`` images, drawn in the order the module docstring gives."""
        narrowest = smallest_crop_width(height, width, self.cut_area_min, self.cut_aspect_max)
        if self.n_holes_max > narrowest // 2:
            raise UserError(f"gridmix: {height} x {width} images allow at most {narrowest // 2} holes across the "
                            f"narrowest crop, n_holes_max is {self.n_holes_max}: lower it or raise cut_area_min")
        lam = self.rng.beta(self.alpha, self.alpha)
        n_holes = int(self.rng.integers(self.n_holes_min, self.n_holes_max + 1))
        area = self.rng.uniform(self.cut_area_min, self.cut_area_max)
        aspect = self.rng.uniform(self.cut_aspect_min, self.cut_aspect_max)
        u, v = self.rng.random(), self.rng.random()
        return grid_mask(height, width, lam, n_holes, self.hole_aspect_ratio, area, aspect, u, v)

    def mix(self, x, y):
        if not self.rng.random() < self.prob:
            return super().mix(x, y)
        _, _, height, width = x.shape
        mask = self.draw_mask(height, width)
        return gridmix_batch(x, y, mask, pair_indices(self.rng, x.shape[0]), self.num_classes)
