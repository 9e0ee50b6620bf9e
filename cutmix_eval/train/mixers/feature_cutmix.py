"""Feature-level CutMix: CutMix's box pasted on the feature map after a chosen stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np
import torch

from cutmix_eval.errors import UserError
from cutmix_eval.train.hidden import forward_mixed
from cutmix_eval.train.mixing import (HiddenStateMixer, as_index, cutmix_boxes, kept_fraction, mix_targets, one_hot_targets,
                                      pair_indices, paste_boxes, sample_lambda)


class CutMixDraws(NamedTuple):
    """The draws made before the forward: ``lam`` (a float, or one per sample) and the
    partners; the box is drawn when the map's size is known (:func:`cutmix_boxes`)."""

    lam: np.ndarray | float
    perm: np.ndarray


def draw_cutmix(rng: np.random.Generator, beta: float, prob: float, batch: int,
                per_sample: bool) -> CutMixDraws | None:
    """CutMix's draws in its order: the coin (None: this batch is not mixed), ``lam ~
    Beta(beta, beta)`` (per batch, or per sample), the permutation."""
    if not rng.random() < prob:
        return None
    lam = sample_lambda(rng, beta, batch if per_sample else None)
    return CutMixDraws(lam, pair_indices(rng, batch))


@dataclass
class FeatureCutMix(HiddenStateMixer):
    """Feature-level CutMix, the ablation of the CutMix paper (Yun et al., "CutMix:
    Regularization Strategy to Train Strong Classifiers with Localizable Features", ICCV
    2019, Sec. "Ablation studies": CutMix applied to the feature maps after a given
    layer; official repository github.com/clovaai/CutMix-PyTorch, whose ``train.py`` has
    image-level CutMix only).

    CutMix exactly as :class:`~cutmix_eval.train.mixing.CutMix`, on the output of stage
    ``layer`` (:func:`cutmix_eval.train.hidden.mixing_stages`) instead of the image: with
    probability ``prob`` one ``lam ~ Beta(beta, beta)`` per batch (per sample with
    ``per_sample``) and a random permutation; the box (side ``side * sqrt(1 - lam)``,
    uniform centre, clipped at the border) is drawn on the feature map's own ``h x w``,
    and ``lam`` is corrected to the kept fraction of that map. ``layer = 0`` is the
    input and is CutMix itself, draw for draw. A batch the coin leaves alone is trained
    with one-hot targets. The mixing happens inside the forward, so the method overrides
    ``training_step``; ``mixer(x, y)`` alone is refused.
    """

    #: where the box is pasted: 0 = the image (= CutMix), k = the output of stage k;
    #: the paper's ablation compares layers 0-3, the default mixes after the first stage
    layer: int = 1
    #: Beta(beta, beta) for lam; official train.py CIFAR setting (``--beta 1.0``)
    beta: float = 1.0
    #: probability of mixing a batch; official CIFAR ``--cutmix_prob 0.5`` (1.0 on ImageNet)
    prob: float = 0.5
    #: one lam and box per image instead of per batch (not in the paper; as CutMix here)
    per_sample: bool = False

    name: ClassVar[str] = "cutmix-feature"

    def __post_init__(self):
        super().__post_init__()
        if not self.beta > 0:
            raise UserError(f"cutmix-feature beta must be > 0, got {self.beta}")
        if not isinstance(self.layer, (int, np.integer)) or self.layer < 0:
            raise UserError(f"cutmix-feature layer must be an integer >= 0 (0 = the image, k = after stage k), "
                            f"got {self.layer!r}")

    def training_step(self, net, model, x, y):
        draws = draw_cutmix(self.rng, self.beta, self.prob, x.shape[0], self.per_sample)
        if draws is None:
            return net(x), one_hot_targets(y, self.num_classes, x.dtype)
        perm = as_index(draws.perm, x.device)
        kept = []

        def mix(h: torch.Tensor) -> torch.Tensor:
            if h.ndim != 4:
                raise UserError(f"cutmix-feature needs a B x C x h x w map at layer {self.layer}, got shape "
                                f"{tuple(h.shape)}; choose a layer whose output is a feature map")
            boxes = cutmix_boxes(self.rng, h.shape[-2], h.shape[-1], draws.lam)
            kept.append(kept_fraction(boxes, h.shape[-2], h.shape[-1]))
            return paste_boxes(h, perm, boxes)

        logits = forward_mixed(net, model, x, self.layer, mix)
        return logits, mix_targets(y, perm, kept[0], self.num_classes, x.dtype)
