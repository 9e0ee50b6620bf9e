"""What every CAM method shares: the call, the result and the choice of targets.

A method is built on a :class:`~cutmix_eval.models.Classifier` and called as
``cam(images, targets) -> CAMResult`` with

``images``
    ``B x 3 x H x W`` pixel-space images in [0, 1] (normalization is inside the model);
``targets``
    the classes to explain, one per image: a ``B`` integer tensor (ground-truth labels,
    say), a ``B x k`` tensor (k classes per image), or a *selector*
    ``logits -> targets`` such as :func:`predicted` or :func:`top_k` that picks them
    from the model's logits.

A single class for a whole batch is refused: pytorch-grad-cam pairs targets with
images by ``zip``, so one target for B images silently explains only the first.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

import torch

from cutmix_eval.errors import UserError
from cutmix_eval.models.classifier import Classifier

#: classes to explain: ``B`` or ``B x k`` integer tensor, or ``logits B x K -> that``
TargetSpec = Union[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]


@dataclass(frozen=True)
class CAMResult:
    """Maps of one batch.

    ``logits`` ``B x K`` (float32), ``targets`` ``B`` or ``B x k`` (int64) and ``maps``
    ``B x h x w`` or ``B x k x h x w`` (float32, one map per target, on the images'
    device). ``normalized`` says whether each map was already min-max scaled to
    [0, 1]; ``resolution`` is ``"features"`` (the last feature map's ``h x w``) or
    ``"input"`` (the images' ``H x W``). Native CAM returns raw maps at feature
    resolution; the pytorch-grad-cam methods return the library's normalized maps at
    input resolution. Localization resizes and min-max normalizes either kind.
    """

    method: str
    logits: torch.Tensor
    maps: torch.Tensor
    targets: torch.Tensor
    normalized: bool
    resolution: str


class CAMMethod(ABC):
    """A CAM method bound to a model: ``method(images, targets) -> CAMResult``.

    The model should be in eval mode (BatchNorm statistics of a training-mode model
    would depend on the batch); methods leave its mode as they found it.
    """

    name: str

    def __init__(self, model: Classifier):
        self.model = model

    @abstractmethod
    def __call__(self, images: torch.Tensor, targets: TargetSpec) -> CAMResult:
        """Maps of ``targets`` (see the module docstring) for ``images`` ``B x 3 x H x W``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, model={self.model.arch!r})"


def predicted(logits: torch.Tensor) -> torch.Tensor:
    """Selector: the top-1 class of each image, ``B``."""
    return logits.argmax(dim=1)


def top_k(k: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Selector: the ``k`` highest-scoring classes of each image, best first, ``B x k``."""
    if k < 1:
        raise ValueError(f"top_k needs k >= 1, got {k}")
    return lambda logits: logits.topk(k, dim=1).indices


def check_targets(chosen: torch.Tensor, batch: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """``chosen`` as ``B`` or ``B x k`` int64 on ``device``, checked against the batch and model.

    Raises ValueError unless there is one row of targets per image, and UserError
    for a class the model does not have (a dataset/model class-count mismatch).
    """
    if not isinstance(chosen, torch.Tensor) or chosen.dtype.is_floating_point or chosen.dtype == torch.bool:
        raise ValueError(f"targets must be an integer tensor of shape (B,) or (B, k), got {chosen!r}")
    if chosen.dim() not in (1, 2) or chosen.shape[0] != batch or chosen.numel() == 0:
        raise ValueError(f"targets must have shape ({batch},) or ({batch}, k): one row per image, "
                         f"got shape {tuple(chosen.shape)}")
    if chosen.min() < 0 or chosen.max() >= num_classes:
        raise UserError(f"CAM target classes must lie in [0, {num_classes}) for this model, got "
                        f"[{int(chosen.min())}, {int(chosen.max())}]; do the dataset and model have "
                        "the same classes?")
    return chosen.to(device=device, dtype=torch.int64)


def check_feature_map(fmap: torch.Tensor, model: Classifier) -> None:
    """UserError unless ``fmap`` is a spatial ``B x C x h x w`` map, which every method needs."""
    if fmap.dim() != 4:
        raise UserError(f"CAM methods need a B x C x h x w feature map, but {model.arch}'s features have "
                        f"shape {tuple(fmap.shape)} (of the token models, only timm's ViT/DeiT and Swin "
                        "families get a patch-grid map); no CAM method works on this model")
