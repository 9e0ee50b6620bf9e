"""SmoothMix: blend the partner in through a soft Gaussian mask.

Lee, Zaheer, Astrid & Lee, "SmoothMix: a Simple Yet Effective Data Augmentation to Train
Robust Classifiers", CVPR Workshops 2020. We found no code from the authors; the reference
is OpenMixup's ``smoothmix`` (Westlake-AI/openmixup,
``openmixup/models/augments/smoothmix.py``), which has the Gaussian mask only. The paper's
square mask with soft edges is not implemented: we had no code to match it against.

One mask for the whole batch (the reference has no per-sample mode), with probability
``prob`` (the reference mixes every batch). Draws: partners by a uniform random permutation
(self-pairs allowed); a centre column ``j`` uniform over ``0 .. W - 1``, then a centre row
``i`` over ``0 .. H - 1``; ``sigma = (sigma_min + (sigma_max - sigma_min) * u) * H`` with
``u ~ U[0, 1)``. The mask is

    ``G[r, c] = exp(-((r - (i - 1/2)) ** 2 + (c - (j - 1/2)) ** 2) / (2 * sigma ** 2))``,

computed in ``x``'s dtype: the reference's roll-and-crop of a doubled coordinate grid puts
the peak at ``(i - 1/2, j - 1/2)``. Then ``mixed = x * (1 - G) + x[perm] * G``.

**Targets.** Every pixel is a per-pixel blend, so the partner's share of the image is
``mean(G)`` and the image's own ``1 - mean(G)``: the targets are exactly those weights
(computed in float64). The reference computes ``lam = mean(G)`` but returns it as the
weight of the image's *own* label, whose pixels carry ``1 - G``; the paper (``x = G * x_a
+ (1 - G) * x_b``, ``lam = mean(G)`` for ``y_a``) pairs them as we do. The reference also
draws ``lam ~ Beta(alpha, alpha)`` and never uses it, so its ``alpha`` has no effect and
there is no ``alpha`` here.

The reference builds a square ``h x h`` mask, so it only runs on square images; here the
mask is ``H x W`` with ``sigma`` relative to the height (identical on square images).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from cutmix_eval.errors import UserError
from cutmix_eval.train.mixing import Mixer, as_index, mix_targets, pair_indices


def gaussian_mask(height: int, width: int, i: int, j: int, sigma: float,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``H x W`` mask ``exp(-((r - i + 1/2) ** 2 + (c - j + 1/2) ** 2) / (2 * sigma ** 2))`` on the
    CPU in ``dtype`` (``sigma ** 2`` rounded to ``dtype`` first, as the reference)."""
    rows = torch.arange(height, dtype=dtype).view(height, 1) - (i - 0.5)
    cols = torch.arange(width, dtype=dtype).view(1, width) - (j - 0.5)
    variance = torch.tensor(sigma, dtype=dtype) ** 2
    return torch.exp(-(cols ** 2 + rows ** 2) / (2 * variance))


def draw_gaussian_mask(rng: np.random.Generator, height: int, width: int, sigma_min: float, sigma_max: float,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One mask: the centre's column, its row, then ``sigma``."""
    j = int(rng.integers(width))
    i = int(rng.integers(height))
    sigma = (sigma_min + (sigma_max - sigma_min) * rng.random()) * height
    return gaussian_mask(height, width, i, j, sigma, dtype)


def smoothmix_batch(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, perm: np.ndarray,
                    num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x * (1 - mask) + x[perm] * mask, (1 - mean) * onehot(y) + mean * onehot(y[perm]))``
    with ``mean`` the ``H x W`` mask's mean in float64."""
    index = as_index(perm, x.device)
    g = mask.to(device=x.device, dtype=x.dtype)
    share = float(mask.double().mean())
    return x * (1 - g) + x[index] * g, mix_targets(y, index, 1.0 - share, num_classes, x.dtype)


@dataclass
class SmoothMix(Mixer):
    """SmoothMix (Lee et al., CVPRW 2020) with the Gaussian mask, as OpenMixup: the partner
    blended in through ``G``, targets by ``mean(G)``. One mask per batch; see the module
    docstring for every convention."""

    sigma_min: float = 0.25  # smallest Gaussian sigma, as a fraction of the image height (OpenMixup: 0.25)
    sigma_max: float = 0.5  # largest sigma, fraction of the height (OpenMixup: sigma = (U[0,1) / 4 + 0.25) * h)
    prob: float = 1.0  # probability that a batch is mixed (the reference mixes every batch)

    name: ClassVar[str] = "smoothmix"

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.sigma_min <= self.sigma_max:
            raise UserError(f"smoothmix needs 0 < sigma_min <= sigma_max, got {self.sigma_min} and {self.sigma_max}")

    def mix(self, x, y):
        if not self.rng.random() < self.prob:
            return super().mix(x, y)
        _, _, height, width = x.shape
        perm = pair_indices(self.rng, x.shape[0])
        mask = draw_gaussian_mask(self.rng, height, width, self.sigma_min, self.sigma_max, x.dtype)
        return smoothmix_batch(x, y, mask, perm, self.num_classes)
