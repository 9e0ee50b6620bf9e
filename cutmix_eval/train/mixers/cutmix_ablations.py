"""The CutMix variants the CutMix paper ablates (Yun et al., ICCV 2019, Table 8, CIFAR-100).

Yun, Han, Oh, Chun, Choe & Yoo, "CutMix: Regularization Strategy to Train Strong
Classifiers with Localizable Features", ICCV 2019, section 4.1.3; official code
https://github.com/clovaai/CutMix-PyTorch (``train.py``: the CutMix block of ``train``
and ``rand_bbox``). The authors released no code for the variants; each is the official
CutMix (:class:`~cutmix_eval.train.mixing.CutMix`: a coin with probability ``prob``,
``lam ~ Beta(beta, beta)``, partners by random permutation, a box of side
``side * sqrt(1 - lam)`` clipped at the border, ``lam`` corrected to the kept area)
with the one change the paper describes:

- ``cutmix-center-gaussian``: the box centre ``(r_x, r_y)`` is Gaussian around the image
  centre instead of uniform (the paper gives no spread; see :class:`CenterGaussianCutMix`);
- ``cutmix-fixed-size``: the box is a fixed ``16 x 16`` on 32 x 32 CIFAR (``lam = 0.75``);
- ``cutmix-scheduled``: the probability of applying CutMix grows linearly over training,
  "from 0 to 1" (citing DropBlock and stochastic depth for the linear schedule);
- ``cutmix-one-hot``: the target is the one-hot label of the image with the larger area;
- ``cutmix-complete-label``: the target is ``0.5 y_A + 0.5 y_B`` whatever the areas.

The paper has no random-label variant; its feature-level CutMix (Figure 3) is elsewhere.
Every variant keeps :class:`CutMix`'s fields (``per_sample`` draws a ``lam`` and a box per
image; ``lambda_correction=False`` keeps the drawn ``lam``) and its order of draws: coin,
``lam``, permutation, boxes: each overrides one of CutMix's steps (``applies``,
``draw_lambda``, ``draw_boxes``, ``targets``). The mixing is pure given the draws:
:func:`~cutmix_eval.train.mixing.paste_boxes` for the images, the target rules below for
the labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from cutmix_eval.errors import UserError
from cutmix_eval.train.mixing import CutMix, as_index, boxes_at, centred_boxes, mix_targets

# ----------------------------------------------------------------------------- pure helpers


def gaussian_centres(rng: np.random.Generator, side: int, std: float, shape: tuple[int, ...]) -> np.ndarray:
    """Box centres along a side: ``side / 2 + std * side * N(0, 1)`` as :func:`nearest_pixel`."""
    return nearest_pixel(side / 2 + std * side * rng.standard_normal(shape), side)


def nearest_pixel(position: np.ndarray, side: int) -> np.ndarray:
    """``position`` rounded to the nearest pixel (half to even) and clipped to
    ``[0, side - 1]``, the range of the official uniform centre."""
    return np.clip(np.rint(position), 0, side - 1).astype(np.int64)


def larger_area_targets(y: torch.Tensor, perm: np.ndarray, kept: np.ndarray | float, num_classes: int,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot CutMix: the one-hot label of the image covering more of the mix, the own
    image's when ``kept >= 0.5`` (ties included), the partner's otherwise."""
    own = (np.asarray(kept) >= 0.5).astype(np.float64)
    return mix_targets(y, as_index(perm, y.device), own, num_classes, dtype)


def complete_label_targets(y: torch.Tensor, perm: np.ndarray, num_classes: int,
                           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Complete-label CutMix: ``0.5 * onehot(y) + 0.5 * onehot(y[perm])``."""
    return mix_targets(y, as_index(perm, y.device), 0.5, num_classes, dtype)


# ----------------------------------------------------------------------------- the variants


@dataclass
class CenterGaussianCutMix(CutMix):
    """Center Gaussian CutMix: as CutMix, but the box centre is drawn per axis from a
    Gaussian with mean at the image centre, ``side / 2 + centre_std * side * N(0, 1)``,
    rounded to a pixel and clipped to ``[0, side - 1]`` (:func:`gaussian_centres`). The official box
    ``[c - cut // 2, c + cut // 2)`` is centred on ``c``, so ``c = side / 2`` is centred on
    the image.

    The paper states no spread; ``centre_std = 0.25`` (a quarter of the side) is our choice: the
    image then spans the mean plus or minus two standard deviations, so about 95% of
    centres fall on it before clipping, and the spread is close to the uniform centre's
    (``side / sqrt(12) = 0.29 side``). The variant thus changes where the centres lie
    (peaked at the middle, rare near the border) rather than how far they spread, which
    is the contrast the ablation names.
    """

    centre_std: float = 0.25  # std of the box centre as a fraction of the side (the paper gives none: our choice)

    name: ClassVar[str] = "cutmix-center-gaussian"

    def __post_init__(self):
        super().__post_init__()
        if not self.centre_std > 0:
            raise UserError(f"cutmix-center-gaussian centre_std must be > 0 (a fraction of the image side), "
                            f"got {self.centre_std}")

    def draw_boxes(self, lam, height, width):
        shape = np.shape(lam)
        return boxes_at(lam, gaussian_centres(self.rng, height, self.centre_std, shape),
                        gaussian_centres(self.rng, width, self.centre_std, shape), height, width)


@dataclass
class FixedSizeCutMix(CutMix):
    """Fixed-size CutMix: a ``size x size`` box (16 x 16 on 32 x 32 CIFAR: ``lam = 0.75``)
    at the official uniform centre, clipped at the border; no ``lam`` is drawn (``beta``
    is unused). With the correction ``lam`` is the kept area (0.75 or more on CIFAR: more
    where the border clips the box); without it, the nominal
    ``1 - min(size, H) * min(size, W) / (H * W)``, the largest such box the image holds."""

    size: int = 16  # side of the pasted square in pixels (paper: 16 on 32 x 32 CIFAR)

    name: ClassVar[str] = "cutmix-fixed-size"

    def __post_init__(self):
        super().__post_init__()
        if self.size < 1:
            raise UserError(f"cutmix-fixed-size box side must be at least 1 pixel, got {self.size}")

    def applies(self) -> bool:
        return self.rng.random() < self.prob

    def draw_lambda(self, count, height, width):
        nominal = 1.0 - min(self.size, height) * min(self.size, width) / float(height * width)
        return nominal if count is None else np.full(count, nominal)

    def draw_boxes(self, lam, height, width):
        shape = np.shape(lam)
        cy, cx = self.rng.integers(0, height, shape), self.rng.integers(0, width, shape)
        return centred_boxes(cy, cx, self.size, self.size, height, width)


@dataclass
class ScheduledCutMix(CutMix):
    """Scheduled CutMix: CutMix applied with a probability that grows linearly over
    training from 0 to ``prob`` (the paper: "from 0 to 1", so ``prob`` defaults to 1).

    The schedule is per epoch and set from the epoch alone by :meth:`start_epoch`, so a
    resumed run mixes as an uninterrupted one: in epoch ``e`` (1-based) of ``E`` the
    probability is ``prob * (e - 1) / (E - 1)``, 0 in the first epoch and ``prob`` in the
    last (``prob`` when ``E == 1``). Before any ``start_epoch`` it is 0, the first epoch's.
    """

    prob: float = 1.0  # the probability reached in the last epoch (paper: 1)

    name: ClassVar[str] = "cutmix-scheduled"

    def __post_init__(self):
        super().__post_init__()
        self.applied_prob = 0.0

    def start_epoch(self, rng: np.random.Generator, epoch: int, epochs: int) -> None:
        super().start_epoch(rng, epoch, epochs)
        self.applied_prob = scheduled_prob(self.prob, epoch, epochs)

    def applies(self) -> bool:
        return self.beta > 0 and self.rng.random() < self.applied_prob

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in super().describe().items() if k != "applied_prob"}


def scheduled_prob(prob: float, epoch: int, epochs: int) -> float:
    """Scheduled CutMix's probability in epoch ``epoch`` (1-based) of ``epochs``:
    ``prob * (epoch - 1) / (epochs - 1)``, and ``prob`` for a one-epoch run."""
    if not 1 <= epoch <= epochs:
        raise UserError(f"epoch {epoch} is outside 1..{epochs}")
    return prob if epochs == 1 else prob * (epoch - 1) / (epochs - 1)


@dataclass
class OneHotCutMix(CutMix):
    """One-hot CutMix: CutMix's images; the target is the one-hot label of the image
    covering the larger area (the own image's on a tie) instead of the area-weighted mix
    (:func:`larger_area_targets`; the area is the corrected ``lam``, or the drawn one
    without the correction)."""

    name: ClassVar[str] = "cutmix-one-hot"

    def targets(self, y, perm, kept, dtype):
        return larger_area_targets(y, perm, kept, self.num_classes, dtype)


@dataclass
class CompleteLabelCutMix(CutMix):
    """Complete-label CutMix: CutMix's images; the target is ``0.5 y_A + 0.5 y_B``
    whatever the areas (:func:`complete_label_targets`; a self-paired image keeps its
    one-hot label)."""

    name: ClassVar[str] = "cutmix-complete-label"

    def targets(self, y, perm, kept, dtype):
        return complete_label_targets(y, perm, self.num_classes, dtype)
