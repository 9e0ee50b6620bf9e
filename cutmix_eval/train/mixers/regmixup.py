"""RegMixup: Mixup as a regularizer added to the clean cross-entropy.

Pinto, Yang, Lim, Torr & Dokania, "Using Mixup as a Regularizer Can Surprisingly Improve
Accuracy and Out-of-Distribution Robustness", NeurIPS 2022; official code
https://github.com/FrancescoPinto/RegMixup (``models/regmixup.py``,
``models/regularizers/mixup.py``).

The official training step concatenates the clean batch and one Mixup batch and takes
one forward over the ``2B`` images: ``lam ~ Beta(alpha, alpha)`` once per batch,
partners by a uniform random permutation (self-pairs allowed), ``mixed = lam * x +
(1 - lam) * x[perm]``, and the loss ``lam * CE([y; y]) + (1 - lam) * CE([y; y[perm]])``,
each ``CE`` the mean over the ``2B`` rows. That is the mean over ``2B`` rows of the
clean cross-entropy (first ``B``) and of the Mixup cross-entropy (last ``B``):
``(CE(x, y) + CE_mixup(mixed)) / 2``, half the paper's ``CE + eta * CE_mixup`` at
``eta = 1`` (the code has no ``eta``).

Here the mixer returns the ``2B`` batch ``[x; mixed]`` with targets
``[onehot(y); eta * (lam * onehot(y) + (1 - lam) * onehot(y[perm]))]``; the loop's loss,
the mean over rows of the soft cross-entropy, is then ``(CE + eta * CE_mixup) / 2``:
the official loss exactly at ``eta = 1``, and the paper's weighting (halved) otherwise.
The rows of the Mixup half sum to ``eta``. There is no per-sample mode and no
probability of applying: the official code has neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from cutmix_eval.errors import UserError
from cutmix_eval.train.mixing import Mixer, as_index, mix_targets, one_hot_targets, pair_indices, sample_lambda


def regmixup_batch(x: torch.Tensor, y: torch.Tensor, lam: float, perm: np.ndarray, num_classes: int,
                   eta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``([x; mixed], [onehot(y); eta * mixup targets])``, ``2B`` rows, for a drawn
    ``lam`` (a float) and partner permutation ``perm``; ``mixed`` is computed as the
    official ``lam * x + (1 - lam) * x[perm]``."""
    index = as_index(perm, x.device)
    mixed = lam * x + (1 - lam) * x[index]
    targets = torch.cat([one_hot_targets(y, num_classes, x.dtype),
                         eta * mix_targets(y, index, lam, num_classes, x.dtype)])
    return torch.cat([x, mixed]), targets


@dataclass
class RegMixup(Mixer):
    """RegMixup (Pinto et al., NeurIPS 2022): the clean batch plus one Mixup batch with a
    large ``alpha`` (``lam`` near 0.5), trained together; see the module docstring for the
    loss and how the targets carry it. Returns ``2B`` rows."""

    alpha: float = 20.0  # Beta(alpha, alpha) of the Mixup term: 20 for CIFAR-10, 10 for CIFAR-100 (commands.sh)
    eta: float = 1.0  # weight of the Mixup cross-entropy against the clean one (official code: 1)

    name: ClassVar[str] = "regmixup"

    def __post_init__(self):
        super().__post_init__()
        if self.alpha <= 0:
            raise UserError(f"regmixup alpha must be > 0 (lam ~ Beta(alpha, alpha)), got {self.alpha}")
        if self.eta < 0:
            raise UserError(f"regmixup eta must be >= 0, got {self.eta}")

    def mix(self, x, y):
        lam = float(sample_lambda(self.rng, self.alpha))
        return regmixup_batch(x, y, lam, pair_indices(self.rng, x.shape[0]), self.num_classes, self.eta)
