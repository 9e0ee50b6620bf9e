"""timm's Mixup/CutMix switch (``timm.data.Mixup``, timm 1.0), reproduced draw for draw.

Ross Wightman's ``pytorch-image-models`` (https://github.com/huggingface/pytorch-image-models,
``timm/data/mixup.py``) mixes with Mixup (Zhang et al., ICLR 2018) or CutMix (Yun et al.,
ICCV 2019), chosen at random, and smooths the labels. It is what DeiT and most timm
recipes train with. Its conventions, all kept here:

- **Partners are the flipped batch**: image ``i`` mixes with image ``B - 1 - i``
  (``x.flip(0)``), not with a random permutation. timm asserts an even batch size; here
  an odd batch's last image passes unmixed, with its smoothed one-hot target, and the rest
  is mixed as timm mixes an even batch (the loop keeps incomplete last batches, and a
  process's share of one may be odd).
- **Modes.** ``"batch"``: one draw for the whole batch. ``"pair"``: one draw per pair
  ``(i, B - 1 - i)``, applied to both images of the pair (each gets the other's pixels in
  the same box). ``"elem"``: one draw per image.
- **The draw.** With probability ``prob`` the unit is mixed (else ``lam = 1``); if both
  ``mixup_alpha`` and ``cutmix_alpha`` are positive, CutMix is chosen with probability
  ``switch_prob`` and ``lam ~ Beta(cutmix_alpha, cutmix_alpha)``, otherwise Mixup with
  ``lam ~ Beta(mixup_alpha, mixup_alpha)``; with one of them positive, only that one. A
  unit whose ``lam`` is exactly 1 is left unmixed.
- **The box** (``rand_bbox``): sides ``int(side * sqrt(1 - lam))``, a centre uniform over
  the pixel grid, rows ``[cy - cut_h // 2, cy + (cut_h + 1) // 2)`` (the upper half is
  rounded *up*, unlike the CutMix paper's code) clipped at the border, pasted from the
  partner. With ``cutmix_minmax = (lo, hi)`` (``rand_bbox_minmax``) the sides are uniform
  integers in ``[int(side * lo), int(side * hi))`` and the box lies inside the image;
  ``lam`` from the Beta draw then only decides whether to mix, and timm forces
  ``cutmix_alpha = 1``.
- **Lambda correction** (``correct_lam``, always on with ``cutmix_minmax``): ``lam``
  becomes the kept area ``1 - box_area / (H * W)``.
- **Targets**: smoothed one-hots ``on = 1 - s + s / K``, ``off = s / K``
  (``s = label_smoothing``), mixed as ``lam * y + (1 - lam) * y.flip(0)``.
- **Precision, as timm has it**: the batch ``lam`` is a float64 number, the per-pair and
  per-image ``lam`` float32 (so the box side and ``1 - lam`` of the pixel blend are
  computed in float32 there); the targets are float32 in batch mode and ``x``'s dtype
  otherwise. Here they are then cast to ``x``'s dtype, which changes no value.

The draws (:func:`draw_lambdas`, :func:`draw_boxes`) take the generator; the mixing
(:func:`switch_mix`) is a pure function of the batch and the draws, so feeding it timm's
own ``np.random`` draws gives timm's images and targets bit for bit.
Not carried over: timm's ``multi_label`` targets, ``FastCollateMixup`` (mixing in the
collate function on uint8 images) and the ``mixup_enabled`` switch (timm's
``--mixup-off-epoch``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from cutmix_eval.errors import UserError
from cutmix_eval.train.mixing import Mixer, box_masks, kept_fraction

#: how draws are shared: one for the batch, one per pair (i, B - 1 - i), one per image
MODES = ("batch", "pair", "elem")


@dataclass(frozen=True)
class SwitchDraws:
    """One call's draws, one entry per mixed unit (``()`` for the batch, ``(n,)`` per
    pair or image): ``lam`` the drawn lambda (1 = unmixed; float64 for the batch,
    float32 per unit, as in timm), ``cutmix`` whether the unit uses CutMix, ``boxes``
    ``... x 4`` ``(y0, y1, x0, x1)`` (read only where ``cutmix`` and ``lam != 1``)."""

    lam: np.ndarray
    cutmix: np.ndarray
    boxes: np.ndarray


# ----------------------------------------------------------------------------- draws


def draw_lambdas(rng: np.random.Generator, count: int | None, mixup_alpha: float, cutmix_alpha: float,
                 prob: float, switch_prob: float) -> tuple[np.ndarray, np.ndarray]:
    """``(lam, cutmix)`` for the batch (``count`` None: float64 ``lam``) or for ``count``
    units (float32 ``lam``), as timm's ``_params_per_batch`` / ``_params_per_elem``."""
    if mixup_alpha > 0 and cutmix_alpha > 0:
        cutmix = rng.random(count) < switch_prob
        lam = np.where(cutmix, rng.beta(cutmix_alpha, cutmix_alpha, count), rng.beta(mixup_alpha, mixup_alpha, count))
    elif mixup_alpha > 0:
        cutmix = np.zeros(() if count is None else count, dtype=bool)
        lam = rng.beta(mixup_alpha, mixup_alpha, count)
    else:
        cutmix = np.ones(() if count is None else count, dtype=bool)
        lam = rng.beta(cutmix_alpha, cutmix_alpha, count)
    dtype = np.float64 if count is None else np.float32
    lam = np.where(rng.random(count) < prob, np.asarray(lam).astype(dtype), dtype(1.0))
    return lam.astype(dtype), np.asarray(cutmix)


def timm_boxes(lam: np.ndarray, cy: np.ndarray, cx: np.ndarray, height: int, width: int) -> np.ndarray:
    """timm's ``rand_bbox`` for centres ``(cy, cx)``: sides ``int(side * sqrt(1 - lam))``
    computed in ``lam``'s dtype, rows ``[cy - cut_h // 2, cy + (cut_h + 1) // 2)`` and the
    same for columns, clipped at the border. Returns ``... x 4`` ``(y0, y1, x0, x1)``."""
    ratio = np.sqrt(1 - np.asarray(lam))
    cut_h = (height * ratio).astype(np.int64)
    cut_w = (width * ratio).astype(np.int64)
    return np.stack([np.clip(cy - cut_h // 2, 0, height), np.clip(cy + (cut_h + 1) // 2, 0, height),
                     np.clip(cx - cut_w // 2, 0, width), np.clip(cx + (cut_w + 1) // 2, 0, width)], axis=-1)


def minmax_boxes(cut_h: np.ndarray, cut_w: np.ndarray, y0: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """timm's ``rand_bbox_minmax`` for drawn sides and top-left corners: ``... x 4``."""
    return np.stack([y0, y0 + cut_h, x0, x0 + cut_w], axis=-1)


def draw_boxes(rng: np.random.Generator, shape: tuple[int, ...], height: int, width: int, lam: np.ndarray,
               minmax: tuple[float, float] | None) -> np.ndarray:
    """A box per unit: a uniform centre (:func:`timm_boxes`), or with ``minmax`` uniform
    integer sides in ``[int(side * lo), int(side * hi))`` at a uniform position inside the
    image (:func:`minmax_boxes`)."""
    if minmax is None:
        return timm_boxes(lam, rng.integers(0, height, shape), rng.integers(0, width, shape), height, width)
    low_h, high_h = int(height * minmax[0]), int(height * minmax[1])
    low_w, high_w = int(width * minmax[0]), int(width * minmax[1])
    if low_h >= high_h or low_w >= high_w:
        raise UserError(f"cutmix_minmax {tuple(minmax)} leaves no box side to draw on {height} x {width} images: "
                        f"int(side * min) must be below int(side * max)")
    cut_h = rng.integers(low_h, high_h, shape)
    cut_w = rng.integers(low_w, high_w, shape)
    return minmax_boxes(cut_h, cut_w, rng.integers(0, height - cut_h + 1), rng.integers(0, width - cut_w + 1))


# ----------------------------------------------------------------------------- the mixing


def smoothed_one_hot(y: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """timm's float32 ``one_hot``: ``1 - s + s / K`` at the label, ``s / K`` elsewhere."""
    off = smoothing / num_classes
    return torch.full((y.shape[0], num_classes), off, dtype=torch.float32, device=y.device).scatter_(
        1, y.long().view(-1, 1), 1.0 - smoothing + off)


def switch_mix(x: torch.Tensor, y: torch.Tensor, draws: SwitchDraws, num_classes: int, label_smoothing: float,
               correct_lam: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's ``Mixup.__call__`` given its draws: ``(x_mixed, targets)``, ``x`` untouched.

    ``draws`` holds one unit (batch mode), ``B / 2`` (pair mode: unit ``i`` is the pair
    ``(i, B - 1 - i)``) or ``B`` (elem mode); ``correct_lam`` is timm's
    ``correct_lam or cutmix_minmax is not None``.
    """
    y1 = smoothed_one_hot(y, num_classes, label_smoothing)
    if draws.lam.ndim == 0:
        mixed, lam = _mix_whole_batch(x, draws, correct_lam)
    else:
        mixed, lam = _mix_rows(x, _per_row(draws, x.shape[0]), correct_lam)
    return mixed, (y1 * lam + y1.flip(0) * (1.0 - lam)).to(x.dtype)


def _mix_whole_batch(x: torch.Tensor, draws: SwitchDraws, correct_lam: bool) -> tuple[torch.Tensor, float]:
    lam = float(draws.lam)
    if lam == 1.0:
        return x.clone(), lam
    if not draws.cutmix:
        return x * lam + x.flip(0) * (1.0 - lam), lam
    y0, y1, x0, x1 = (int(v) for v in draws.boxes)
    mixed = x.clone()
    mixed[:, :, y0:y1, x0:x1] = x.flip(0)[:, :, y0:y1, x0:x1]
    return mixed, (float(kept_fraction(draws.boxes, *x.shape[-2:])) if correct_lam else lam)


def _per_row(draws: SwitchDraws, batch: int) -> SwitchDraws:
    """Pair mode's ``B / 2`` draws as ``B`` rows: row ``B - 1 - i`` shares pair ``i``'s."""
    if draws.lam.shape[0] == batch:
        return draws
    return SwitchDraws(*(np.concatenate([a, a[::-1]]) for a in (draws.lam, draws.cutmix, draws.boxes)))


def _mix_rows(x: torch.Tensor, rows: SwitchDraws, correct_lam: bool) -> tuple[torch.Tensor, torch.Tensor]:
    height, width = x.shape[-2:]
    mixed_rows = rows.lam != 1
    pasted = mixed_rows & rows.cutmix
    blended = mixed_rows & ~rows.cutmix
    lam = rows.lam.copy()
    if correct_lam and pasted.any():
        lam[pasted] = kept_fraction(rows.boxes[pasted], height, width)  # float64 stored as float32, as timm
    boxes = np.where(pasted[:, None], rows.boxes, 0)
    partner = x.flip(0)
    mixed = torch.where(box_masks(boxes, height, width, x.device), partner, x)
    if blended.any():
        keep = torch.as_tensor(rows.lam[blended], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        give = torch.as_tensor(1 - rows.lam[blended], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        index = torch.as_tensor(np.flatnonzero(blended), device=x.device)
        mixed[index] = x[index] * keep + partner[index] * give
    return mixed, torch.as_tensor(lam, dtype=x.dtype, device=x.device).unsqueeze(1)


# ----------------------------------------------------------------------------- the mixer


@dataclass
class TimmMixupCutMix(Mixer):
    """timm's ``Mixup``: Mixup or CutMix at random, on the flipped batch, with label
    smoothing (see the module docstring for every convention). The defaults are the
    ``timm.data.Mixup`` class's own (timm 1.0.31, ``timm/data/mixup.py``): Mixup only,
    ``alpha 1``, smoothing 0.1. The DeiT recipe is ``mixup_alpha=0.8, cutmix_alpha=1.0``
    with the other defaults."""

    mixup_alpha: float = 1.0  # Beta parameter of Mixup; Mixup is active if > 0 (timm: 1.0)
    cutmix_alpha: float = 0.0  # Beta parameter of CutMix; CutMix is active if > 0 (timm: 0.0)
    cutmix_minmax: tuple[float, float] | None = None  # box sides uniform in these fractions of the side (timm: None)
    prob: float = 1.0  # probability of mixing each unit (batch, pair or image) (timm: 1.0)
    switch_prob: float = 0.5  # probability of CutMix rather than Mixup when both are active (timm: 0.5)
    mode: str = "batch"  # one draw per "batch", per "pair" (i, B - 1 - i) or per "elem" (image) (timm: "batch")
    correct_lam: bool = True  # lambda = kept area of the clipped box (timm: True)
    label_smoothing: float = 0.1  # smoothing s of the targets: 1 - s + s / K and s / K (timm: 0.1)

    name: ClassVar[str] = "mixup-cutmix"

    def __post_init__(self):
        super().__post_init__()
        if self.mode not in MODES:
            raise UserError(f"mixup-cutmix mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.cutmix_minmax is not None:
            lo, hi = (float(v) for v in self.cutmix_minmax)
            if not 0 <= lo < hi <= 1:
                raise UserError(f"cutmix_minmax must be (min, max) with 0 <= min < max <= 1, got {self.cutmix_minmax}")
            self.cutmix_minmax = (lo, hi)
            self.cutmix_alpha = 1.0  # as timm: the minmax box is CutMix, with alpha forced to 1
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise UserError(f"mixup_alpha and cutmix_alpha must be >= 0, got {self.mixup_alpha}, {self.cutmix_alpha}")
        if not (self.mixup_alpha > 0 or self.cutmix_alpha > 0):
            raise UserError("mixup-cutmix needs mixup_alpha > 0, cutmix_alpha > 0 or cutmix_minmax")
        for field, value in (("switch_prob", self.switch_prob),
                             ("label_smoothing", self.label_smoothing)):
            if not 0 <= value <= 1:
                raise UserError(f"mixup-cutmix {field} must be in [0, 1], got {value}")

    def mix(self, x, y):
        batch, _, height, width = x.shape
        if batch % 2:  # timm refuses it; the loop's last batch (or a process's share) may be odd
            mixed, targets = self.mix(x[:-1], y[:-1]) if batch > 1 else (x[:0], x.new_zeros(0, self.num_classes))
            last = smoothed_one_hot(y[-1:], self.num_classes, self.label_smoothing).to(targets.dtype)
            return torch.cat([mixed, x[-1:]]), torch.cat([targets, last])
        return switch_mix(x, y, self.draw(batch, height, width), self.num_classes, self.label_smoothing,
                          self.correct_lam or self.cutmix_minmax is not None)

    def draw(self, batch: int, height: int, width: int) -> SwitchDraws:
        """This call's draws from ``self.rng``: one unit, ``batch / 2`` or ``batch``."""
        count = {"batch": None, "pair": batch // 2, "elem": batch}[self.mode]
        lam, cutmix = draw_lambdas(self.rng, count, self.mixup_alpha, self.cutmix_alpha, self.prob, self.switch_prob)
        return SwitchDraws(lam, cutmix, draw_boxes(self.rng, lam.shape, height, width, lam, self.cutmix_minmax))
