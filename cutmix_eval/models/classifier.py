"""The one model interface every evaluator sees.

:class:`Classifier` takes images in **pixel space** ([0, 1], ``B x 3 x H x W``) and
normalizes them inside, so attacks, occlusion, corruptions and noise OOD sets all
work in the same space and no evaluator ever guesses a mean.

It wraps a *net* that follows timm's protocol:

``net.forward_features(x) -> B x C x h x w``
    the last feature map before global pooling (after the final activation);
``net.forward_head(fmap, pre_logits=True) -> B x D``
    everything between that map and the classifier (global average pooling for
    every CNN here);
``net.get_classifier() -> nn.Module``
    the classifier head (an ``nn.Linear`` for all GAP + linear nets).

timm CNNs follow it as they are; our own nets implement it; torchvision models
are adapted (:mod:`cutmix_eval.models.external`). timm's token models (ViT, DeiT,
hybrid ViTs, Swin) return tokens from ``forward_features``: the classifier turns
them into the patch grid ``B x C x h x w`` and pools that grid as the net pools its
tokens, so the logits stay the net's (:mod:`cutmix_eval.models.tokens`; a class-token
ViT's map carries its prefix tokens along for pooling). The net's ``state_dict`` keys
are those of its origin (official CutMix, timm, torchvision), so their checkpoints
load without renaming.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cutmix_eval.errors import UserError
from cutmix_eval.models.tokens import TokenLayout, token_layout


class Classifier(nn.Module):
    """Pixel-space classifier: ``logits = head(pool(features(x)))``.

    Attributes: ``arch`` (registry name), ``arch_kwargs`` (its constructor
    arguments), ``num_classes``, ``mean``/``std`` (per-channel, applied inside),
    ``input_size`` (``(3, H, W)`` the net was trained at).

    Two views of the same net:

    * **pixel space** (what every evaluator uses): ``forward(x)``, ``features(x)``,
      ``forward_all(x)`` take images in [0, 1] and normalize them first; ``pool(fmap)``
      and ``head`` complete the pass;
    * **timm's protocol**, as on any timm model: ``forward_features(x)`` takes the
      net's *normalized* input (``normalize(pixels)``) and returns the last feature map;
      ``forward_head(fmap, pre_logits=False)`` and ``get_classifier()`` are the net's.
      So ``forward_features(normalize(x)) == features(x)``, and code written for timm
      models' features runs on the wrapper unchanged.
    """

    def __init__(self, net: nn.Module, *, arch: str, arch_kwargs: dict[str, Any] | None = None,
                 num_classes: int, mean: Sequence[float], std: Sequence[float],
                 input_size: Sequence[int]):
        super().__init__()
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean/std must be 3 values with std > 0, got {list(mean)} / {list(std)}")
        self.net = net
        self.arch = arch
        self.arch_kwargs = dict(arch_kwargs or {})
        self.num_classes = int(num_classes)
        self.input_size = tuple(int(v) for v in input_size)
        # not persistent: the state dict keeps the net's own key names; mean/std travel
        # as checkpoint metadata
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel space -> the net's input space: ``(x - mean) / std`` per channel."""
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``B x 3 x H x W`` pixels in [0, 1] -> last feature map ``B x C x h x w``.

        Images are never resized to ``input_size``: the CNNs here run at any size (their
        pooling is global). A net that fails on images of another size than ``input_size``
        (a fixed-size ViT, or images smaller than its downsampling allows, e.g. GoogLeNet
        below 16 px) raises a one-line :class:`UserError` naming both sizes."""
        try:
            return self.forward_features(self.normalize(x))
        except (RuntimeError, AssertionError) as err:
            if isinstance(err, torch.OutOfMemoryError) or tuple(x.shape[-2:]) == self.input_size[-2:] \
                    or x.device != self.mean.device:
                raise
            raise self._size_error(x, err) from err

    def _size_error(self, x: torch.Tensor, err: BaseException) -> UserError:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return UserError(f"model {self.arch} cannot run on {x.shape[-2]} x {x.shape[-1]} images (it was built for "
                         f"{self.input_size[-2]} x {self.input_size[-1]}: {reason[:160]}); evaluate it on images of "
                         "its input size or use a model that accepts this size")

    @property
    def token_layout(self) -> TokenLayout | None:
        """How the net's tokens become the feature map (timm ViT/DeiT/Swin), or None for a
        net whose ``forward_features`` is the map."""
        return token_layout(self.net)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """timm's ``forward_features``: the net's normalized input (``normalize(pixels)``)
        -> last feature map ``B x C x h x w`` (a token model's tokens as their patch grid).
        For pixels use :meth:`features`."""
        out = self.net.forward_features(x)
        layout = token_layout(self.net)
        return out if layout is None else layout.to_map(self.net, out, x.shape[-2:])

    def forward_head(self, fmap: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """timm's ``forward_head``: feature map -> logits, or with ``pre_logits`` the
        classifier's input ``B x D``."""
        layout = token_layout(self.net)
        if layout is None:
            return self.net.forward_head(fmap, pre_logits=pre_logits)
        pooled = layout.pool(self.net, fmap)
        return pooled if pre_logits else layout.head(self.net)(pooled)

    def get_classifier(self) -> nn.Module:
        """timm's ``get_classifier``: the classifier head module (distilled DeiT's two heads
        as one module)."""
        layout = token_layout(self.net)
        return self.net.get_classifier() if layout is None else layout.head(self.net)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """Feature map -> the classifier's input ``B x D``: global average pooling for the
        CNNs here; for token models the net's own pooling of its tokens (a class-token ViT's
        class token, which rides along with the map)."""
        return self.forward_head(fmap, pre_logits=True)

    @property
    def head(self) -> nn.Module:
        """The classifier head: ``head(pool(fmap)) -> B x num_classes`` logits."""
        return self.get_classifier()

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pass returning ``(logits B x K, pooled B x D, feature map B x C x h x w)``,
        for evaluators that share a pass (classification, OOD features, CAM)."""
        fmap = self.features(x)
        pooled = self.pool(fmap)
        return self.head(pooled), pooled, fmap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, num_classes={self.num_classes}, input_size={self.input_size}"


class GAPHeadMixin:
    """timm-protocol pooling/head for nets whose head is global average pooling + a linear
    layer, the attribute named by ``head_attr`` (``fc`` unless a net's origin names it
    otherwise, e.g. ``linear``: the state dict keeps the origin's key names)."""

    head_attr: str = "fc"

    def forward_head(self, fmap: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # mean over h x w equals the official nn.AvgPool2d(8) on 8 x 8 maps, and keeps
        # working at other input sizes
        pooled = fmap.mean(dim=(2, 3))
        return pooled if pre_logits else self.get_classifier()(pooled)

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.head_attr)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
