"""Feature maps of timm's token models: ViT (DeiT, distilled DeiT, hybrid ViTs) and Swin.

A CNN's ``forward_features`` is the map ``B x C x h x w`` that CAM needs; a token
model's is not. :class:`~cutmix_eval.models.Classifier` asks :func:`token_layout`
whether its net is one of the token families below and, if so, turns the tokens
into a map on the way out of ``forward_features`` and back on the way into
``forward_head``. The net itself stays timm's, untouched (same modules, state dict
and train/eval flags).

**ViT family** (timm ``VisionTransformer`` and its subclasses).
``forward_features`` returns ``B x N x C`` tokens after the final ``norm``: first
``net.num_prefix_tokens`` prefix tokens (class token, DeiT's distillation token,
register tokens), then the patch tokens in row-major order. The map is the patch
tokens as ``B x C x h x w``, with ``(h, w)`` the patch grid of the actual input
(``patch_embed.grid_size``; ``patch_embed.dynamic_feat_size(H, W)`` for a net built
with ``dynamic_img_size``). The prefix tokens are not part of the map: they travel
with it as its attribute ``prefix_tokens`` (``B x P x C``), and pooling puts them
back in front of the patch tokens and runs timm's own pooling (``forward_head(...,
pre_logits=True)``: class token, mean of the patch tokens, attention pooling,
``fc_norm``...), so the logits are timm's. Pool the map ``features`` returned (or
one given the same attribute, :func:`carry_prefix_tokens`); a map without it is
refused when the net has prefix tokens.

Distilled DeiT classifies with two heads, one on the class token and one on the
distillation token, and averages their logits at inference. Its pooled vector is
both tokens side by side (``B x 2C``) and its head (:class:`DistilledHeads`) is that
average, so ``head(pool(fmap))`` is again timm's output.

**Swin** (timm ``SwinTransformer``). ``forward_features`` is ``B x H x W x C`` after
the final norm; the map is it permuted to ``B x C x H x W``, and pooling is timm's
head pooling (the mean over positions).

**CAM.** Native CAM (class weights over the map) is exact when the logits are a
linear head on the spatial mean of the map: Swin, and ViTs that pool the mean of
their patch tokens after the per-token final ``norm`` (``global_pool="avg",
fc_norm=False``). :meth:`TokenLayout.native_cam_refusal` says why not otherwise (a
class token is not a function of the patch map; timm's default ``fc_norm`` for
``global_pool="avg"`` normalizes the mean, which is not linear in the map).
The gradient methods target the map itself, as for CNNs, when the pooled vector is
a function of the patch map alone; a ViT whose pooled vector reads prefix tokens
gets a zero gradient there (the final norm is per token), so its target is inside
the trunk (:meth:`TokenLayout.gradient_target`): the last block's ``norm1``, the
input of the last attention (pytorch-grad-cam's ViT tutorial), or the input of the
last block for blocks that do not normalize first.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch
from torch import nn

#: the attribute of a ViT feature map holding its prefix tokens (``B x P x C``)
PREFIX_TOKENS = "prefix_tokens"


def carry_prefix_tokens(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``target`` with the prefix tokens of ``source``'s map, if it has any (for a map
    derived from another, e.g. detached: the attribute does not follow tensor operations)."""
    prefix = getattr(source, PREFIX_TOKENS, None)
    if prefix is not None:
        setattr(target, PREFIX_TOKENS, prefix)
    return target


class DistilledHeads(nn.Module):
    """Distilled DeiT's two heads as one: pooled ``[class token, distillation token]``
    (``B x 2C``) -> the mean of the two heads' logits, timm's output at inference."""

    def __init__(self, head: nn.Module, head_dist: nn.Module):
        super().__init__()
        self.head = head
        self.head_dist = head_dist

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        cls_token, dist_token = pooled.chunk(2, dim=1)
        return (self.head(cls_token) + self.head_dist(dist_token)) / 2


class TokenLayout:
    """How one family of token models turns its tokens into a map and pools it back.
    Stateless: every method takes the net."""

    family: str

    def to_map(self, net: nn.Module, tokens: torch.Tensor, image_size: Sequence[int]) -> torch.Tensor:
        """The net's tokens (``forward_features``, or a block's output) for an input of
        ``image_size`` ``(H, W)`` -> the map ``B x C x h x w``."""
        raise NotImplementedError

    def pool(self, net: nn.Module, fmap: torch.Tensor) -> torch.Tensor:
        """Map -> the head's input ``B x D``, as the net pools its tokens."""
        raise NotImplementedError

    def head(self, net: nn.Module) -> nn.Module:
        """The module that turns ``pool``'s output into logits."""
        return net.get_classifier()

    def native_cam_refusal(self, net: nn.Module) -> str | None:
        """Why the logits are not a linear head on the map's spatial mean, or None."""
        raise NotImplementedError

    def gradient_target(self, net: nn.Module) -> nn.Module | None:
        """The layer whose tokens the gradient methods use (reshaped by ``to_map``), or None
        for the map itself."""
        return None


class ViTTokens(TokenLayout):
    family = "ViT"

    @staticmethod
    def distilled(net: nn.Module) -> bool:
        from timm.models.deit import VisionTransformerDistilled

        return isinstance(net, VisionTransformerDistilled)

    @staticmethod
    def grid(net: nn.Module, image_size: Sequence[int]) -> tuple[int, int]:
        embed = net.patch_embed
        if getattr(net, "dynamic_img_size", False):
            return tuple(int(v) for v in embed.dynamic_feat_size((int(image_size[0]), int(image_size[1]))))
        return tuple(int(v) for v in embed.grid_size)

    def to_map(self, net, tokens, image_size):
        prefix = net.num_prefix_tokens
        height, width = self.grid(net, image_size)
        batch, count, channels = tokens.shape
        if count - prefix != height * width:
            raise RuntimeError(f"{count - prefix} patch tokens do not fill the {height} x {width} patch grid of a "
                               f"{image_size[0]} x {image_size[1]} input")
        fmap = tokens[:, prefix:].transpose(1, 2).reshape(batch, channels, height, width)
        setattr(fmap, PREFIX_TOKENS, tokens[:, :prefix])
        return fmap

    def tokens(self, net: nn.Module, fmap: torch.Tensor) -> torch.Tensor:
        """Inverse of ``to_map``: ``B x N x C``, prefix tokens first."""
        prefix = getattr(fmap, PREFIX_TOKENS, None)
        if prefix is None:
            if net.num_prefix_tokens:
                raise ValueError(f"this ViT's feature map lacks its {net.num_prefix_tokens} prefix token(s) "
                                 f"(attribute {PREFIX_TOKENS!r}, set by features()); pool the map features() "
                                 "returned, or carry_prefix_tokens() to a map derived from it")
            prefix = fmap.new_zeros(fmap.shape[0], 0, fmap.shape[1])
        return torch.cat([prefix, fmap.flatten(2).transpose(1, 2)], dim=1)

    def pool(self, net, fmap):
        tokens = self.tokens(net, fmap)
        if self.distilled(net):
            return torch.cat([net.head_drop(tokens[:, 0]), net.head_drop(tokens[:, 1])], dim=1)
        return net.forward_head(tokens, pre_logits=True)

    def head(self, net):
        return DistilledHeads(net.head, net.head_dist) if self.distilled(net) else net.get_classifier()

    def reads_prefix(self, net: nn.Module) -> bool:
        """Whether the pooled vector depends on prefix tokens (then it is not a function of the map)."""
        return net.num_prefix_tokens > 0 and (self.distilled(net) or net.global_pool == "token"
                                              or bool(getattr(net, "pool_include_prefix", False)))

    def native_cam_refusal(self, net):
        if self.distilled(net):
            return ("classifies its class and distillation tokens (two heads, averaged), which are not an "
                    "average of its patch map")
        if net.global_pool == "token":
            return "classifies its class token, which is not an average of its patch map"
        if getattr(net, "attn_pool", None) is not None:
            return f"pools its tokens by attention (global_pool={net.global_pool!r})"
        if net.global_pool != "avg":
            return f"pools its patch tokens by {net.global_pool!r}, not by their mean"
        if self.reads_prefix(net):
            return "averages its prefix tokens together with its patch tokens"
        if not isinstance(net.fc_norm, nn.Identity):
            return ("normalizes the mean of its patch tokens (fc_norm, timm's default for global_pool='avg'), "
                    "which is not linear in its patch map")
        return None

    def gradient_target(self, net):
        if not self.reads_prefix(net):
            return None
        from timm.models.vision_transformer import Block

        last = net.blocks[-1]
        if isinstance(last, Block):  # pre-norm: norm1 feeds the last attention
            return last.norm1
        return net.blocks[-2] if len(net.blocks) > 1 else net.norm_pre


class SwinTokens(TokenLayout):
    family = "Swin"

    def to_map(self, net, tokens, image_size):
        return tokens.permute(0, 3, 1, 2)

    def pool(self, net, fmap):
        return net.forward_head(fmap.permute(0, 2, 3, 1), pre_logits=True)

    def native_cam_refusal(self, net):
        pool_type = getattr(net.head.global_pool, "pool_type", None)
        return None if pool_type == "avg" else f"pools its tokens by {pool_type!r}, not by their mean"


VIT, SWIN = ViTTokens(), SwinTokens()


def token_layout(net: nn.Module) -> TokenLayout | None:
    """The layout of a timm ViT (DeiT, hybrid) or Swin net; None for any other net (a CNN,
    whose ``forward_features`` is already the map, or a token model not adapted here)."""
    if "timm" not in sys.modules:  # not a timm net, and no import of timm for our own nets
        return None
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(net, VisionTransformer):
        return VIT
    if isinstance(net, SwinTransformer):
        return SWIN
    return None
