"""Batch mixing for the four training methods, built from small pure functions.

Every method is an object with one call shape, ``mixer(x, y) -> (x_mixed, targets)``:
``x`` is a ``B x C x H x W`` batch in pixel space, ``y`` the ``B`` integer labels,
``targets`` a ``B x K`` float matrix of soft labels. Training minimizes
``cross_entropy(logits, targets)``, which for ``targets = lam * onehot(y_a) +
(1 - lam) * onehot(y_b)`` equals the official ``lam * CE(y_a) + (1 - lam) * CE(y_b)``
exactly (cross-entropy is linear in the target), so the loop has no
method-specific branch.

All randomness comes from the ``numpy.random.Generator`` the mixer is given, so a
run is reproducible from its seed. Any batch size works, odd sizes and 1 included:
partners come from a random permutation, so an image may be paired with itself
(as in the official code).

Box convention (CutMix, Cutout): ``(y0, y1, x0, x1)`` half-open pixel ranges, the
box covering rows ``y0 <= r < y1`` and columns ``x0 <= c < x1``.

Targets are loss weights: ``cross_entropy`` is linear in them, so a method whose
official loss weights its two terms by numbers that do not sum to one (SnapMix's
semantic weights) or adds a clean term (RegMixup) gives rows that do not sum to one,
and the loop's loss is still the official one.

**The model hook.** Most methods mix pixels and need nothing else. A method that
needs the model has two places to say so, both called by the training step and
nowhere else:

``guide(model, x, y) -> tensor``
    what the mixing needs from the current model, computed before mixing (SnapMix's
    class activation maps, PuzzleMix's input-gradient saliency); it is the optional
    third argument of ``mixer(x, y, guide)``, so the mixing itself stays a function of
    its inputs and can be called and tested without a model;
``training_step(net, model, x, y) -> (logits, targets)``
    the step's forward, by default ``net(mixer(x, y, guide))``; methods that mix
    inside the forward (Manifold Mixup, feature-level CutMix) override it.

``net`` is what the gradient pass must go through (the DistributedDataParallel
wrapper under torchrun), ``model`` the :class:`~cutmix_eval.models.Classifier`
inside it. ``start_epoch(rng, epoch, epochs)`` hands the mixer the epoch's generator
and position, from which alone a method's schedule is computed, so a resumed run
mixes as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from cutmix_eval.errors import UserError

# ----------------------------------------------------------------------------- pure helpers


def sample_lambda(rng: np.random.Generator, alpha: float, size: int | None = None) -> np.ndarray | float:
    """``lam ~ Beta(alpha, alpha)``: one float, or ``size`` of them."""
    if alpha <= 0:
        raise UserError(f"the Beta parameter must be > 0, got {alpha}")
    return rng.beta(alpha, alpha, size)


def pair_indices(rng: np.random.Generator, batch: int) -> np.ndarray:
    """Partner of each image: a uniform random permutation (self-pairs allowed)."""
    return rng.permutation(batch)


def cutmix_boxes(rng: np.random.Generator, height: int, width: int, lam: np.ndarray | float) -> np.ndarray:
    """Boxes to paste, as the official ``rand_bbox`` draws them, for each ``lam``.

    Side lengths ``cut = int(side * sqrt(1 - lam))``, a centre uniform over the
    pixel grid, ``[centre - cut // 2, centre + cut // 2)`` clipped at the border
    (the box is not kept inside the image, so clipping makes it smaller).
    Returns an integer array ``... x 4`` of ``(y0, y1, x0, x1)``.
    """
    shape = np.shape(lam)
    return boxes_at(lam, rng.integers(0, height, size=shape), rng.integers(0, width, size=shape), height, width)


def boxes_at(lam: np.ndarray | float, cy: np.ndarray, cx: np.ndarray, height: int, width: int) -> np.ndarray:
    """The official CutMix box for given centres: sides ``int(side * sqrt(1 - lam))``, rows
    ``[cy - cut_h // 2, cy + cut_h // 2)`` (columns alike) clipped at the border."""
    ratio = np.sqrt(1.0 - np.asarray(lam, dtype=np.float64))
    return centred_boxes(cy, cx, (height * ratio).astype(np.int64), (width * ratio).astype(np.int64), height, width)


def cutout_boxes(rng: np.random.Generator, height: int, width: int, size: int, count: int) -> np.ndarray:
    """``count`` Cutout holes of side ``size``: centre uniform over the image,
    ``[centre - size // 2, centre + size // 2)`` clipped at the border (DeVries &
    Taylor's code). Returns ``count x 4`` ``(y0, y1, x0, x1)``."""
    cy = rng.integers(0, height, size=count)
    cx = rng.integers(0, width, size=count)
    side = np.full(count, size, dtype=np.int64)
    return centred_boxes(cy, cx, side, side, height, width)


def centred_boxes(cy, cx, cut_h, cut_w, height: int, width: int) -> np.ndarray:
    """Boxes ``[c - cut // 2, c + cut // 2)`` per axis around centres ``(cy, cx)``, clipped
    at the border (the official CutMix and Cutout convention), ``... x 4``."""
    return np.stack([np.clip(cy - cut_h // 2, 0, height), np.clip(cy + cut_h // 2, 0, height),
                     np.clip(cx - cut_w // 2, 0, width), np.clip(cx + cut_w // 2, 0, width)], axis=-1)


def kept_fraction(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """The lambda correction: the fraction of the image *outside* each box,
    ``1 - box_area / image_area``, i.e. the exact share of the original image kept."""
    boxes = np.asarray(boxes)
    area = (boxes[..., 1] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 2])
    return 1.0 - area / float(height * width)


def box_masks(boxes: np.ndarray, height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``B x 1 x H x W`` bool masks, True inside each ``(y0, y1, x0, x1)`` box."""
    b = torch.as_tensor(np.asarray(boxes), device=device)
    rows = torch.arange(height, device=device).view(1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, width)
    inside = ((rows >= b[:, 0, None, None]) & (rows < b[:, 1, None, None])
              & (cols >= b[:, 2, None, None]) & (cols < b[:, 3, None, None]))
    return inside[:, None]


def paste_boxes(x: torch.Tensor, perm: np.ndarray | torch.Tensor, boxes: np.ndarray) -> torch.Tensor:
    """``x`` (``B x C x H x W``) with each image's box replaced by the same box of its
    partner ``x[perm]``: one ``(y0, y1, x0, x1)`` for the batch, or ``B x 4``."""
    perm = perm if isinstance(perm, torch.Tensor) else as_index(perm, x.device)
    boxes = np.asarray(boxes)
    if boxes.ndim == 2:
        return torch.where(box_masks(boxes, x.shape[-2], x.shape[-1], x.device), x[perm], x)
    y0, y1, x0, x1 = (int(v) for v in boxes)
    mixed = x.clone()
    mixed[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    return mixed


def mix_targets(y: torch.Tensor, partner: torch.Tensor, lam: np.ndarray | float, num_classes: int,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Soft labels ``lam * onehot(y) + (1 - lam) * onehot(y[partner])``, ``B x K``;
    ``lam`` a float or one value per sample."""
    weight = torch.as_tensor(np.asarray(lam, dtype=np.float64), dtype=dtype, device=y.device)
    weight = weight.reshape(-1, 1) if weight.ndim else weight
    one_hot = F.one_hot(y, num_classes).to(dtype)
    return weight * one_hot + (1 - weight) * one_hot[partner]


def one_hot_targets(y: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``B x K`` one-hot targets in ``dtype`` (float32 when ``dtype`` is not floating)."""
    return F.one_hot(y, num_classes).to(dtype if dtype.is_floating_point else torch.float32)


def as_index(perm: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(perm, dtype=torch.long, device=device)


# ----------------------------------------------------------------------------- mixers


@dataclass
class Mixer:
    """Base: ``mixer(x, y[, guide]) -> (x_mixed, soft targets)``; subclasses set ``name``
    and ``mix`` (and, if they need the model, ``needs_guide`` with ``guide``, or
    ``training_step``: see the module's docstring)."""

    num_classes: int
    rng: np.random.Generator

    name: ClassVar[str] = ""
    #: what ``guide`` computes, for the error when it is missing ("" = the method needs none)
    needs_guide: ClassVar[str] = ""

    def __post_init__(self):
        """Checks shared by every method (subclasses call it first): a probability of
        mixing ``prob``, where the method has one, is in [0, 1]."""
        prob = getattr(self, "prob", None)
        if prob is not None and not 0 <= prob <= 1:
            raise UserError(f"{self.name} prob must be in [0, 1], got {prob}")

    def __call__(self, x: torch.Tensor, y: torch.Tensor,
                 guide: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or y.shape != (x.shape[0],):
            raise ValueError(f"expected x B x C x H x W and y B, got {tuple(x.shape)} and {tuple(y.shape)}")
        if not self.needs_guide:
            return self.mix(x, y)
        if guide is None:
            raise UserError(f"{self.name} mixes with {self.needs_guide} of the model: pass them as "
                            f"mixer(x, y, mixer.guide(model, x, y)), or train through training_step")
        return self.mix(x, y, guide)

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, one_hot_targets(y, self.num_classes, x.dtype)

    def guide(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """What the mixing needs from the current model (None for methods that need nothing)."""
        return None

    def training_step(self, net: torch.nn.Module, model: torch.nn.Module, x: torch.Tensor,
                      y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training step's forward: ``(logits, targets)`` of the mixed batch."""
        mixed, targets = self(x, y, self.guide(model, x, y))
        return net(mixed), targets

    def start_epoch(self, rng: np.random.Generator, epoch: int, epochs: int) -> None:
        """Called before each epoch (1-based) of ``epochs``: the epoch's generator."""
        self.rng = rng

    def describe(self) -> dict[str, Any]:
        """Plain-type description of the method and its parameters."""
        return {"method": self.name} | {k: v for k, v in vars(self).items() if k not in ("rng", "num_classes")}


@dataclass
class HiddenStateMixer(Mixer):
    """Base of the methods that mix inside the forward pass (Manifold Mixup, feature-level
    CutMix): they override ``training_step``; ``mixer(x, y)`` alone cannot mix."""

    def mix(self, x, y):
        raise UserError(f"{self.name} mixes hidden states inside the forward pass: train through "
                        "mixer.training_step(net, model, x, y)")


@dataclass
class Baseline(Mixer):
    """No mixing: one-hot targets."""

    name: ClassVar[str] = "baseline"


@dataclass
class Mixup(Mixer):
    """Mixup (Zhang et al. 2018): ``lam * x + (1 - lam) * x[perm]``, ``lam ~ Beta(alpha, alpha)``,
    one ``lam`` per batch (or per sample with ``per_sample``)."""

    alpha: float = 1.0
    per_sample: bool = False

    name: ClassVar[str] = "mixup"

    def mix(self, x, y):
        batch = x.shape[0]
        lam = sample_lambda(self.rng, self.alpha, batch if self.per_sample else None)
        perm = as_index(pair_indices(self.rng, batch), x.device)
        weight = torch.as_tensor(np.asarray(lam, dtype=np.float64), dtype=x.dtype, device=x.device)
        weight = weight.view(-1, 1, 1, 1) if self.per_sample else weight
        return weight * x + (1 - weight) * x[perm], mix_targets(y, perm, lam, self.num_classes, x.dtype)


@dataclass
class Cutout(Mixer):
    """Cutout (DeVries & Taylor 2017): one ``size x size`` hole per image, centre
    uniform, clipped at the border; labels unchanged.

    ``fill`` says what goes in the hole, in pixel space: ``"mean"`` (the default)
    fills with the per-channel ``mean`` the model normalizes with, which is exactly
    the original code's zero *after* normalization; a number fills with that pixel
    value (0.0 = black).
    """

    size: int = 16
    fill: str | float = "mean"
    mean: tuple[float, float, float] | None = None

    name: ClassVar[str] = "cutout"

    def __post_init__(self):
        super().__post_init__()
        if self.fill == "mean" and self.mean is None:
            raise UserError("Cutout with fill='mean' needs the model's normalization mean")
        if self.size < 1:
            raise UserError(f"Cutout hole size must be at least 1 pixel, got {self.size}")

    def mix(self, x, y):
        batch, channels, height, width = x.shape
        holes = box_masks(cutout_boxes(self.rng, height, width, self.size, batch), height, width, x.device)
        value = (torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, channels, 1, 1)
                 if self.fill == "mean" else torch.tensor(float(self.fill), dtype=x.dtype, device=x.device))
        return torch.where(holes, value, x), super().mix(x, y)[1]


@dataclass
class CutMix(Mixer):
    """CutMix exactly as the official train.py, plus the options users ask for.

    With probability ``prob`` (otherwise the batch passes unmixed): one
    ``lam ~ Beta(beta, beta)`` per batch, partners by random permutation, a box of
    side ``side * sqrt(1 - lam)`` at a uniform centre clipped at the border, pasted
    from the partner; ``lam`` is then recomputed from the clipped box as the kept
    area (``lambda_correction=False`` keeps the drawn ``lam``, as code written
    before the correction did). ``per_sample=True`` draws a ``lam`` and a box for
    every image.
    """

    beta: float = 1.0
    prob: float = 0.5
    per_sample: bool = False
    lambda_correction: bool = True

    name: ClassVar[str] = "cutmix"

    def mix(self, x, y):
        if not self.applies():
            return super().mix(x, y)
        batch, _, height, width = x.shape
        lam = self.draw_lambda(batch if self.per_sample else None, height, width)
        perm = pair_indices(self.rng, batch)
        boxes = self.draw_boxes(lam, height, width)
        kept = kept_fraction(boxes, height, width) if self.lambda_correction else lam
        return paste_boxes(x, perm, boxes), self.targets(y, perm, kept, x.dtype)

    # the four steps, in the official order of draws; the paper's variants change one each
    # (train/mixers/cutmix_ablations.py)

    def applies(self) -> bool:
        """The official coin: mix with probability ``prob`` (never when ``beta <= 0``)."""
        return self.beta > 0 and self.rng.random() < self.prob

    def draw_lambda(self, count: int | None, height: int, width: int) -> np.ndarray | float:
        """``lam ~ Beta(beta, beta)``: one, or ``count``."""
        return sample_lambda(self.rng, self.beta, count)

    def draw_boxes(self, lam: np.ndarray | float, height: int, width: int) -> np.ndarray:
        """A box per ``lam`` at the official uniform centre."""
        return cutmix_boxes(self.rng, height, width, lam)

    def targets(self, y: torch.Tensor, perm: np.ndarray, kept: np.ndarray | float,
                dtype: torch.dtype) -> torch.Tensor:
        """The official area-weighted labels ``kept * y + (1 - kept) * y[perm]``."""
        return mix_targets(y, as_index(perm, y.device), kept, self.num_classes, dtype)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_k targets_k * log_softmax(logits)_k`` (in float32)."""
    return F.cross_entropy(logits.float(), targets.float())
