"""Training-time augmentation.

``cifar``: random crop with 4 px zero padding + horizontal flip, as the official
CIFAR loader. ``flip``: horizontal flip only. Both run on whole batches
(:func:`crop_flip_batch`, on the training device, one offset and one flip per image),
which is equivalent in distribution to the per-image torchvision transforms and
avoids decoding-time work per sample.

``imagenet``: RandomResizedCrop(size) + flip + ColorJitter(brightness, contrast,
saturation 0.4) + AlexNet-style PCA lighting (std 0.1), as the official ImageNet
loader (whose jitter is its own re-implementation; torchvision's is used here).
These run per image (:func:`sample_transform`), since the crop needs the full-size
image. ``none``: nothing.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2

AUGMENTATIONS = ("cifar", "imagenet", "flip", "none")

# ImageNet RGB eigenvalues / eigenvectors used by the official lighting noise
_EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
_EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


class Lighting(v2.Transform):
    """PCA lighting noise (Krizhevsky et al. 2012) on float images in [0, 1]:
    adds ``eigvec @ (alpha * eigval)`` per channel, ``alpha ~ N(0, alphastd)``."""

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, alphastd: float = 0.1):
        super().__init__()
        self.alphastd = alphastd

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"alpha": torch.randn(3) * self.alphastd}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        shift = (_EIGVEC * (params["alpha"] * _EIGVAL).view(1, 3)).sum(1).to(inpt.dtype)
        return tv_tensors.wrap(inpt + shift.view(3, 1, 1), like=inpt)


def sample_transform(kind: str, size: int) -> v2.Transform | None:
    """The per-image part of augmentation ``kind`` (only ``imagenet`` has one)."""
    if kind == "imagenet":
        return v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(),
                           v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4), Lighting(0.1)])
    return None


def crop_flip_batch(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Per image: a random ``H x W`` crop of the zero-padded image (offsets uniform in
    ``[0, 2 * padding]``) and a horizontal flip with probability 1/2. ``x``: ``B x C x H x W``;
    random draws come from the CPU ``generator``."""
    batch, channels, height, width = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator).to(x.device)
    flips = (torch.rand(batch, generator=generator) < 0.5).to(x.device)
    if padding:
        padded = F.pad(x, (padding, padding, padding, padding))
        rows = offsets[0, :, None] + torch.arange(height, device=x.device)  # B x H source rows
        cols = offsets[1, :, None] + torch.arange(width, device=x.device)  # B x W source columns
        x = torch.gather(padded, 2, rows[:, None, :, None].expand(batch, channels, height, padded.shape[3]))
        x = torch.gather(x, 3, cols[:, None, None, :].expand(batch, channels, height, width))
    return torch.where(flips[:, None, None, None], x.flip(-1), x)


def batch_augment(kind: str):
    """The batch part of augmentation ``kind``: ``f(x, generator) -> x`` or None."""
    if kind == "cifar":
        return lambda x, generator: crop_flip_batch(x, 4, generator)
    if kind == "flip":
        return lambda x, generator: crop_flip_batch(x, 0, generator)
    return None
