"""Training-time augmentation as torchvision v2 transforms (boxes and masks follow).

``cifar``: RandomCrop(size, padding=4, zero fill) + horizontal flip, as the official
CIFAR loader. ``imagenet``: RandomResizedCrop(size) + flip + ColorJitter(brightness,
contrast, saturation 0.4) + AlexNet-style PCA lighting (std 0.1), as the official
ImageNet loader (whose jitter is its own re-implementation; torchvision's is used
here). ``flip``: horizontal flip only. ``none``: nothing.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

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


def train_transform(kind: str, size: int) -> v2.Transform | None:
    """The augmentation ``kind`` for ``size x size`` training images."""
    if kind == "cifar":
        return v2.Compose([v2.RandomCrop(size, padding=4), v2.RandomHorizontalFlip()])
    if kind == "imagenet":
        return v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(),
                           v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4), Lighting(0.1)])
    if kind == "flip":
        return v2.RandomHorizontalFlip()
    if kind == "none":
        return None
    raise ValueError(f"unknown augmentation {kind!r}")
