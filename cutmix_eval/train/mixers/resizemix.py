"""ResizeMix: paste the whole partner image, shrunk, instead of a crop of it.

Qin, Fang, Zhang, Liu, Wang & Wang, "ResizeMix: Mixing Data with Preserved Object
Information and True Labels", arXiv 2012.11101, 2020. We found no code from the authors;
the reference is OpenMixup's ``resizemix`` (Westlake-AI/openmixup,
``openmixup/models/augments/resizemix.py``), which this module follows.

Per batch (one draw for the whole batch, as the reference code; there is no per-sample
mode), with probability ``prob`` (the reference applies it to every batch):

1. partners by a uniform random permutation (self-pairs allowed);
2. a scale ``tau ~ U(scale_min, scale_max)`` (the paper's ``tau ~ U(alpha, beta)``,
   ``alpha = 0.1, beta = 0.8``). With ``scale_beta`` set, OpenMixup's ``use_alpha`` variant
   (the setting of its benchmark configs): ``tau ~ Beta(scale_beta, scale_beta)``, drawn
   again from ``U(scale_min, scale_max)`` when it falls outside that range;
3. a box of sides ``int(H * tau)`` x ``int(W * tau)`` around a centre uniform over the
   pixel grid (column drawn first, then row), ``[centre - side // 2, centre + side // 2)``
   clipped at the border: the same box convention as CutMix
   (:func:`cutmix_eval.train.mixing.cutmix_boxes`), so clipping makes it smaller;
4. the whole partner image resized (``interpolation``: ``"nearest"``, the reference's
   default, or ``"bilinear"``) to the clipped box and pasted into it; a box clipped at the
   border therefore squeezes the partner, as in the reference;
5. targets by the exact pasted area: ``lam = 1 - box_area / (H * W)`` for the image's own
   label, ``1 - lam`` for the partner's. A box with no pixels (tiny images) pastes
   nothing and leaves ``lam = 1``; the reference code fails there.

The reference takes the box's rows from the image's third dimension for both axes; on
non-square images we use rows for rows and columns for columns (identical on square
images).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from cutmix_eval.errors import UserError
from cutmix_eval.train.mixing import Mixer, centred_boxes, as_index, kept_fraction, mix_targets, pair_indices

#: the reference code's resize modes
INTERPOLATIONS = ("nearest", "bilinear")


def draw_scale(rng: np.random.Generator, low: float, high: float, beta: float | None = None) -> float:
    """The paste scale ``tau``: ``U(low, high)``, or with ``beta`` a ``Beta(beta, beta)``
    draw that is replaced by a ``U(low, high)`` draw when it falls outside ``[low, high]``."""
    if beta is not None:
        tau = rng.beta(beta, beta)
        if low <= tau <= high:
            return float(tau)
    return float(rng.uniform(low, high))


def paste_box(height: int, width: int, scale: float, cy: int, cx: int) -> np.ndarray:
    """``(y0, y1, x0, x1)`` of the box the partner is pasted into: sides ``int(H * scale)``
    and ``int(W * scale)`` centred on pixel ``(cy, cx)``, clipped at the border."""
    return centred_boxes(cy, cx, int(height * scale), int(width * scale), height, width)


def draw_paste_box(rng: np.random.Generator, height: int, width: int, low: float, high: float,
                   beta: float | None = None) -> np.ndarray:
    """One paste box: the scale, then the centre's column, then its row."""
    scale = draw_scale(rng, low, high, beta)
    cx = int(rng.integers(width))
    cy = int(rng.integers(height))
    return paste_box(height, width, scale, cy, cx)


def resizemix_batch(x: torch.Tensor, y: torch.Tensor, perm: np.ndarray, box: np.ndarray, num_classes: int,
                    interpolation: str = "nearest") -> tuple[torch.Tensor, torch.Tensor]:
    """``(mixed, targets)``: ``x`` with ``x[perm]`` resized into ``box`` (``y0, y1, x0, x1``),
    and the labels weighted by the exact share of pixels each image keeps."""
    _, _, height, width = x.shape
    y0, y1, x0, x1 = (int(v) for v in box)
    index = as_index(perm, x.device)
    mixed = x.clone()
    if y1 > y0 and x1 > x0:
        mixed[:, :, y0:y1, x0:x1] = F.interpolate(x[index], size=(y1 - y0, x1 - x0), mode=interpolation)
    return mixed, mix_targets(y, index, kept_fraction(box, height, width), num_classes, x.dtype)


@dataclass
class ResizeMix(Mixer):
    """ResizeMix (Qin et al., arXiv 2020): the partner image, resized by ``tau ~ U(0.1, 0.8)``,
    pasted at a random place; targets by the exact pasted area. One draw per batch; see the
    module docstring for every convention."""

    scale_min: float = 0.1  # lower end of tau (the paper's alpha; OpenMixup scope[0])
    scale_max: float = 0.8  # upper end of tau (the paper's beta; OpenMixup scope[1])
    scale_beta: float | None = None  # OpenMixup's use_alpha: tau ~ Beta(a, a), redrawn uniformly outside the range
    interpolation: str = "nearest"  # resize mode: nearest (OpenMixup default) or bilinear
    prob: float = 1.0  # probability that a batch is mixed (the reference mixes every batch)

    name: ClassVar[str] = "resizemix"

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.scale_min <= self.scale_max <= 1:
            raise UserError(f"resizemix needs 0 < scale_min <= scale_max <= 1, got {self.scale_min} and "
                            f"{self.scale_max}")
        if self.scale_beta is not None and self.scale_beta <= 0:
            raise UserError(f"resizemix scale_beta must be > 0 (tau ~ Beta(a, a)) or None, got {self.scale_beta}")
        if self.interpolation not in INTERPOLATIONS:
            raise UserError(f"resizemix interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                            f"got {self.interpolation!r}")

    def mix(self, x, y):
        if not self.rng.random() < self.prob:
            return super().mix(x, y)
        _, _, height, width = x.shape
        perm = pair_indices(self.rng, x.shape[0])
        box = draw_paste_box(self.rng, height, width, self.scale_min, self.scale_max, self.scale_beta)
        return resizemix_batch(x, y, perm, box, self.num_classes, self.interpolation)
