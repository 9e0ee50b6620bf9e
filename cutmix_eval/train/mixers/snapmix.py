"""SnapMix: a box of the partner pasted, resized, into a box of the image, the labels
weighted by the class activation mass each box moves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cutmix_eval.errors import UserError
from cutmix_eval.train.mixing import Mixer, as_index, cutmix_boxes, one_hot_targets, pair_indices, sample_lambda


class SnapMixDraws(NamedTuple):
    """One batch's draws: the two Beta values, the partners, the image's box (from
    ``lam``) and the partner's box (from ``lam1``), each ``(y0, y1, x0, x1)``."""

    lam: float
    lam1: float
    perm: np.ndarray
    box: np.ndarray
    box1: np.ndarray


def draw_snapmix(rng: np.random.Generator, beta: float, prob: float, batch: int, height: int,
                 width: int) -> SnapMixDraws | None:
    """In the official order: the coin (None: the batch is not mixed), ``lam`` and
    ``lam1 ~ Beta(beta, beta)``, the permutation, the box for ``lam`` and the box for
    ``lam1`` (:func:`cutmix_boxes`: row centre first, then column centre)."""
    if not rng.random() < prob:
        return None
    lam = float(sample_lambda(rng, beta))
    lam1 = float(sample_lambda(rng, beta))
    perm = pair_indices(rng, batch)
    box = cutmix_boxes(rng, height, width, lam)
    return SnapMixDraws(lam, lam1, perm, box, cutmix_boxes(rng, height, width, lam1))


def semantic_percentage_maps(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SnapMix's semantic percentage maps, ``B x H x W``, each summing to 1.

    The class activation map of the label class with the head's bias, as the official
    ``get_spm``: ``relu`` of the last feature map, a 1 x 1 convolution with the head's
    weight and bias, the label's channel, bilinear upsampling to the image size
    (``align_corners=False``), minus its minimum, divided by its sum (a constant map
    gives NaN, which the mixing replaces). One forward of ``model.features`` under
    ``no_grad``, in the model's current mode (the official code calls the training
    model, so batch-norm layers in training mode update their running statistics);
    the map arithmetic runs in at least float32, outside autocast.
    """
    head = model.head
    if not isinstance(head, nn.Linear):
        raise UserError(f"snapmix needs a linear classifier head for its class activation maps, but model "
                        f"{getattr(model, 'arch', '')} has a {type(head).__name__}")
    layout = getattr(model, "token_layout", None)
    if layout is not None and (reason := layout.native_cam_refusal(model.net)):
        raise UserError(f"snapmix needs class activation maps, but model {model.arch} {reason}")
    with torch.no_grad():
        fmap = model.features(x)
        with torch.autocast(fmap.device.type, enabled=False):
            dtype = torch.promote_types(fmap.dtype, torch.float32)
            weight = head.weight.to(dtype).view(*head.weight.shape, 1, 1)
            bias = None if head.bias is None else head.bias.to(dtype)
            cams = F.conv2d(F.relu(fmap.to(dtype)), weight, bias)[torch.arange(len(y), device=y.device), y]
            maps = F.interpolate(cams[:, None], size=tuple(x.shape[-2:]), mode="bilinear",
                                 align_corners=False)[:, 0]
            maps = maps - maps.amin(dim=(1, 2), keepdim=True)
            return maps / maps.sum(dim=(1, 2), keepdim=True)


def snapmix_compose(x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor, draws: SnapMixDraws,
                    num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The official ``snapmix`` given its draws and the maps: ``(x_mixed, targets)``.

    The partner's ``box1`` region, resized bilinearly (``align_corners=True``) to the
    size of ``box``, replaces ``box`` in every image. ``lam_a = 1 - mass(maps, box) /
    (mass(maps) + 1e-8)``, ``lam_b = mass(maps[perm], box1) / (mass(maps[perm]) + 1e-8)``;
    where the partner has the same label both become ``lam_a + lam_b``; a NaN ``lam_a``
    (``lam_b``) becomes the kept area ``1 - |box| / (H W)`` (its complement). Targets
    ``lam_a * onehot(y) + lam_b * onehot(y[perm])``. When either box is empty nothing
    is pasted and the targets are one-hot.
    """
    batch, _, height, width = x.shape
    if maps.shape != (batch, height, width):
        raise ValueError(f"expected maps of shape {(batch, height, width)}, got {tuple(maps.shape)}")
    y0, y1, x0, x1 = (int(v) for v in draws.box)
    u0, u1, v0, v1 = (int(v) for v in draws.box1)
    if (y1 - y0) * (x1 - x0) == 0 or (u1 - u0) * (v1 - v0) == 0:
        return x, one_hot_targets(y, num_classes, x.dtype)
    perm = as_index(draws.perm, x.device)
    mixed = x.clone()
    mixed[:, :, y0:y1, x0:x1] = F.interpolate(x[perm, :, u0:u1, v0:v1], size=(y1 - y0, x1 - x0),
                                              mode="bilinear", align_corners=True)
    maps_b = maps[perm]
    lam_a = 1 - maps[:, y0:y1, x0:x1].sum(2).sum(1) / (maps.sum(2).sum(1) + 1e-8)
    lam_b = maps_b[:, u0:u1, v0:v1].sum(2).sum(1) / (maps_b.sum(2).sum(1) + 1e-8)
    same = (y == y[perm]).to(maps.device)
    lam_a, lam_b = torch.where(same, lam_a + lam_b, lam_a), torch.where(same, lam_b + lam_a, lam_b)
    kept = 1 - (y1 - y0) * (x1 - x0) / (height * width)
    lam_a = torch.where(torch.isnan(lam_a), torch.tensor(kept, dtype=lam_a.dtype, device=lam_a.device), lam_a)
    lam_b = torch.where(torch.isnan(lam_b), torch.tensor(1 - kept, dtype=lam_b.dtype, device=lam_b.device), lam_b)
    one_hot = one_hot_targets(y, num_classes, x.dtype)
    lam_a, lam_b = lam_a.to(x.device, x.dtype)[:, None], lam_b.to(x.device, x.dtype)[:, None]
    return mixed, lam_a * one_hot + lam_b * one_hot[perm]


@dataclass
class SnapMix(Mixer):
    """SnapMix (Huang, Wang & Tao, "SnapMix: Semantically Proportional Mixing for
    Augmenting Fine-grained Data", AAAI 2021; official code
    github.com/Shaoli-Huang/SnapMix, ``utils/mixmethod.py``: ``get_spm``, ``snapmix``).

    With probability ``prob`` per batch: the current model's semantic percentage maps
    of the labels (:func:`semantic_percentage_maps`, the ``guide``), ``lam`` and ``lam1 ~
    Beta(beta, beta)``, one random permutation (self-pairs allowed), a CutMix box for
    each (side ``side * sqrt(1 - lam)``, uniform centre, clipped at the border, so boxes
    of different sizes and places); the partner's ``lam1`` box, resized, is pasted into
    the image's ``lam`` box, and the label weights are the map mass each box moves
    (:func:`snapmix_compose`). Everything but the weights is per batch; the weights are
    per sample and need not sum to one: the official loss is ``lam_a * CE(y) + lam_b *
    CE(y[perm])``, which ``cross_entropy`` of the returned targets equals.

    The official ``rand_bbox`` names the size of dimension 2 (rows) ``W`` and of
    dimension 3 ``H``, draws ``cx`` over ``W`` first and indexes ``input[:, :, bbx1:bbx2,
    bby1:bby2]``: its "x" is the row. Reproduced exactly: the first centre drawn is
    the row's, each side is cut from its own dimension's size. The maps are computed
    only for a batch the coin mixes, as in the official code. Where the official code
    fails (a batch of one: its ``squeeze`` drops the batch axis) this one works.
    """

    #: Beta(beta, beta) for both boxes; official README: "prob=1., beta=5 ... in most of
    #: the experiments" (``--beta 5``; fine-grained datasets, the paper has no CIFAR setting)
    beta: float = 5.0
    #: probability of mixing a batch; official ``--prob`` default 1.0 (utils/conf.py)
    prob: float = 1.0

    name: ClassVar[str] = "snapmix"
    needs_guide: ClassVar[str] = "class activation maps"

    def __post_init__(self):
        super().__post_init__()
        if not self.beta > 0:
            raise UserError(f"snapmix beta must be > 0, got {self.beta}")

    def guide(self, model, x, y):
        return semantic_percentage_maps(model, x, y)

    def mix(self, x, y, guide):
        draws = draw_snapmix(self.rng, self.beta, self.prob, x.shape[0], x.shape[-2], x.shape[-1])
        if draws is None:
            return x, one_hot_targets(y, self.num_classes, x.dtype)
        return snapmix_compose(x, y, guide, draws, self.num_classes)

    def training_step(self, net, model, x, y):
        draws = draw_snapmix(self.rng, self.beta, self.prob, x.shape[0], x.shape[-2], x.shape[-1])
        if draws is None:
            return net(x), one_hot_targets(y, self.num_classes, x.dtype)
        mixed, targets = snapmix_compose(x, y, self.guide(model, x, y), draws, self.num_classes)
        return net(mixed), targets
