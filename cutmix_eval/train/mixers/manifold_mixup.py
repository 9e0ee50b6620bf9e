"""Manifold Mixup: Mixup of the hidden states at a randomly chosen layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np
import torch

from cutmix_eval.errors import UserError
from cutmix_eval.train.hidden import forward_mixed
from cutmix_eval.train.mixing import HiddenStateMixer, as_index, mix_targets, pair_indices, sample_lambda


class ManifoldDraws(NamedTuple):
    """One batch's random draws: the layer mixed at, ``lam`` and the partners."""

    layer: int
    lam: float
    perm: np.ndarray


def draw_manifold(rng: np.random.Generator, layers: tuple[int, ...], alpha: float, batch: int) -> ManifoldDraws:
    """In the official order: the layer (uniform over ``layers``), ``lam ~ Beta(alpha,
    alpha)``, one permutation of the batch."""
    layer = layers[int(rng.integers(len(layers)))]
    lam = float(sample_lambda(rng, alpha))
    return ManifoldDraws(layer, lam, pair_indices(rng, batch))


def interpolate(h: torch.Tensor, lam: float, perm: torch.Tensor) -> torch.Tensor:
    """``h * lam + h[perm] * (1 - lam)``, ``lam`` rounded to ``h``'s dtype first (the
    official code's float32 ``lam`` tensor), any ``B x ...`` hidden state."""
    weight = torch.tensor(lam, dtype=h.dtype, device=h.device)
    return h * weight + h[perm] * (1 - weight)


@dataclass
class ManifoldMixup(HiddenStateMixer):
    """Manifold Mixup (Verma et al., "Manifold Mixup: Better Representations by
    Interpolating Hidden States", ICML 2019; official code
    github.com/vikasverma1077/manifold_mixup, ``supervised/``).

    Per batch: a layer ``k`` uniform over ``layers``, ``lam ~ Beta(alpha, alpha)`` and
    one random permutation (self-pairs allowed); the forward runs with the hidden state
    ``h`` at layer ``k`` replaced by ``h * lam + h[perm] * (1 - lam)``, and the targets
    are ``lam * onehot(y) + (1 - lam) * onehot(y[perm])``. Layer 0 is the input (the
    pixels, before the classifier's normalization, which is affine, so this is Mixup of
    the normalized input up to rounding), layer ``k >= 1`` the output of stage ``k``
    (:func:`cutmix_eval.train.hidden.mixing_stages`: a PreActResNet's ``layer1``, ...;
    the official PreActResNet and WRN forwards mix after ``conv1 + layer1`` and after
    ``layer2``, the same places).

    Mixing happens inside the forward, so the method overrides ``training_step``;
    ``mixer(x, y)`` alone is refused. The loss is ``cross_entropy(logits, targets)``;
    the official ``main.py`` trains with ``BCELoss(softmax(logits), targets)`` instead,
    which is not a cross-entropy of soft targets and is not reproduced.
    """

    #: Beta(alpha, alpha) for lam; 2.0 in the official README's CIFAR-10/100 commands
    #: (``--train mixup_hidden --mixup_alpha 2.0``, PreActResNet-18/34 and WRN-28-10)
    alpha: float = 2.0
    #: the layers mixed at, one chosen uniformly per batch: official
    #: ``random.randint(0, 2)`` in models/preresnet.py and models/wide_resnet.py
    layers: tuple[int, ...] = (0, 1, 2)

    name: ClassVar[str] = "manifold-mixup"

    def __post_init__(self):
        super().__post_init__()
        if not self.alpha > 0:
            raise UserError(f"manifold-mixup alpha must be > 0, got {self.alpha}")
        self.layers = tuple(self.layers)
        if not self.layers or any(not isinstance(k, (int, np.integer)) or k < 0 for k in self.layers):
            raise UserError(f"manifold-mixup layers must be a non-empty list of integers >= 0 "
                            f"(0 = the input, k = after stage k), got {list(self.layers)}")

    def training_step(self, net, model, x, y):
        draws = draw_manifold(self.rng, self.layers, self.alpha, x.shape[0])
        return manifold_step(net, model, x, y, draws, self.num_classes)


def manifold_step(net: torch.nn.Module, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                  draws: ManifoldDraws, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, targets)`` of one Manifold Mixup step given its draws: ``net`` called
    once, the hidden state at ``draws.layer`` interpolated."""
    perm = as_index(draws.perm, x.device)
    logits = forward_mixed(net, model, x, draws.layer, lambda h: interpolate(h, draws.lam, perm))
    return logits, mix_targets(y, perm, draws.lam, num_classes, x.dtype)
