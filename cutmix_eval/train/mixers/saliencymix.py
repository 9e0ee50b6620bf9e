"""SaliencyMix: CutMix whose box is centred on the partner image's most salient pixel.

Uddin, Monira, Shin, Chung & Bae, "SaliencyMix: A Saliency Guided Data Augmentation
Strategy for Better Regularization", ICLR 2021. Official code:
afm-shahab-uddin/SaliencyMix (``SaliencyMix_CIFAR/saliencymix.py``: ``saliency_bbox`` and
the training loop; the ImageNet ``train.py`` is the same algorithm). OpenMixup's
``saliencymix`` (Westlake-AI/openmixup) copies it.

Per batch, exactly as the official code, with probability ``prob`` (a uniform draw below
``prob``; otherwise the batch passes unmixed with one-hot targets):

1. ``lam ~ Beta(beta, beta)``, then partners by a uniform random permutation ``perm``
   (self-pairs allowed);
2. the saliency map of ONE image, the first of the permuted batch ``x[perm[0]]``, by
   OpenCV's static fine-grained detector (:mod:`cutmix_eval.train.saliency`, bit-exact
   with ``cv2.saliency.StaticSaliencyFineGrained``), quantized as the official
   ``(map * 255).astype("uint8")`` (which gives OpenCV's 8-bit map back unchanged);
3. the peak: the first maximum of the map in row-major order (``np.argmax``);
4. one box around it: sides ``int(H * sqrt(1 - lam))`` and ``int(W * sqrt(1 - lam))``,
   ``[peak - side // 2, peak + side // 2)`` clipped at the border (not shifted inside, so
   clipping makes it smaller) -- CutMix's box with the saliency peak as centre;
5. the same box pasted from each image's partner into every image of the batch;
6. ``lam`` corrected to the kept area, ``1 - box_area / (H * W)``: targets
   ``lam * onehot(y) + (1 - lam) * onehot(y[perm])``, which under cross-entropy is the
   official ``lam * CE(y) + (1 - lam) * CE(y[perm])``.

What the detector sees (``detector_input``):

``"normalized"`` (the official code)
    the image after the model's normalization, ``(x - mean) / std`` in float32 (the
    official code feeds the normalized training tensor, ``img.cpu().numpy().transpose(1, 2,
    0)``; float64 batches are cast to float32 first, as OpenMixup does), channels in RGB
    order handed to OpenCV, which reads them as B, G, R. OpenCV's detector is written for
    8-bit images: on float32 ones it takes the raw bytes of the float grey image as the
    pixels' centre values (see :mod:`cutmix_eval.train.saliency`, step 4). That is what
    the official code computed, and it is reproduced exactly; the peak then follows the
    bytes of the normalized float values more than the image's contrast;
``"uint8"``
    the detector as its authors meant it: ``round(255 * x)`` as 8 bits, channels flipped
    to B, G, R (what ``cv2.imread`` gives).

``per_sample=True`` (not in the official code) draws a ``lam`` per image and centres each
image's box on the saliency peak of its own partner ``x[perm[i]]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from cutmix_eval.errors import UserError
from cutmix_eval.train.mixing import Mixer, centred_boxes, as_index, box_masks, kept_fraction, mix_targets
from cutmix_eval.train.saliency import fine_grained_saliency, saliency_peaks

#: what the saliency detector can be shown
DETECTOR_INPUTS = ("normalized", "uint8")


def draw_saliencymix(rng: np.random.Generator, batch: int, beta: float, prob: float,
                     per_sample: bool = False) -> tuple[np.ndarray | float, np.ndarray] | None:
    """The official draws in their order: the probability coin (None: leave the batch
    unmixed), ``lam ~ Beta(beta, beta)`` (one, or one per image), the partner permutation."""
    if not rng.random() < prob:
        return None
    lam = rng.beta(beta, beta, batch if per_sample else None)
    return lam, rng.permutation(batch)


def detector_images(x: torch.Tensor, detector_input: str, mean: tuple[float, ...] | None = None,
                    std: tuple[float, ...] | None = None) -> torch.Tensor:
    """The batch as the saliency detector is shown it (see the module docstring):
    float32 ``(x - mean) / std`` in RGB order, or uint8 ``round(255 * x)`` in BGR order."""
    if detector_input == "uint8":
        return (x * 255).round().clamp(0, 255).to(torch.uint8).flip(1)
    x = x.float()
    mean = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def saliency_boxes(rows: np.ndarray, cols: np.ndarray, height: int, width: int, lam: np.ndarray | float) -> np.ndarray:
    """``... x 4`` boxes ``(y0, y1, x0, x1)``: sides ``int(side * sqrt(1 - lam))`` centred on
    the peaks ``(rows, cols)``, clipped at the border (the official ``saliency_bbox``)."""
    ratio = np.sqrt(1.0 - np.asarray(lam, dtype=np.float64))
    cut_h = (height * ratio).astype(np.int64)
    cut_w = (width * ratio).astype(np.int64)
    return centred_boxes(np.asarray(rows), np.asarray(cols), cut_h, cut_w, height, width)


def saliencymix(x: torch.Tensor, y: torch.Tensor, lam: np.ndarray | float, perm: np.ndarray, num_classes: int,
                detector: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mixed, targets)`` from the draws: ``detector`` is the batch as the saliency
    detector sees it (:func:`detector_images`). A scalar ``lam`` is the official per-batch
    mix (one box, from the saliency of ``x[perm[0]]``); one ``lam`` per image mixes per
    sample (each box from the saliency of the image's partner)."""
    _, _, height, width = x.shape
    per_sample = np.ndim(lam) > 0
    sources = np.asarray(perm) if per_sample else np.asarray(perm)[:1]
    rows, cols = saliency_peaks(fine_grained_saliency(detector[as_index(sources, x.device)]))
    index = as_index(perm, x.device)
    if per_sample:
        boxes = saliency_boxes(rows, cols, height, width, lam)
        mixed = torch.where(box_masks(boxes, height, width, x.device), x[index], x)
    else:
        boxes = saliency_boxes(rows[0], cols[0], height, width, lam)
        y0, y1, x0, x1 = (int(v) for v in boxes)
        mixed = x.clone()
        mixed[:, :, y0:y1, x0:x1] = x[index, :, y0:y1, x0:x1]
    return mixed, mix_targets(y, index, kept_fraction(boxes, height, width), num_classes, x.dtype)


@dataclass
class SaliencyMix(Mixer):
    """SaliencyMix (Uddin et al., ICLR 2021; afm-shahab-uddin/SaliencyMix): CutMix's box
    centred on the saliency peak (OpenCV's fine-grained detector) of the first image of the
    permuted batch, one box per batch, targets by the exact kept area. See the module
    docstring for every convention."""

    beta: float = 1.0  # lam ~ Beta(beta, beta) (official --beta, CIFAR and ImageNet 1.0)
    prob: float = 0.5  # probability that a batch is mixed (official --salmix_prob: CIFAR 0.5; ImageNet 1.0)
    per_sample: bool = False  # a lam and a box per image, each from its partner's saliency (not official)
    detector_input: str = "normalized"  # what the detector sees: normalized float32 (official) or uint8 pixels
    mean: tuple[float, ...] | None = None  # the model's normalization mean ("normalized" only)
    std: tuple[float, ...] | None = None  # the model's normalization std ("normalized" only)

    name: ClassVar[str] = "saliencymix"

    def __post_init__(self):
        super().__post_init__()
        if not self.beta > 0:
            raise UserError(f"saliencymix beta must be > 0 (lam ~ Beta(beta, beta)), got {self.beta}")
        if self.detector_input not in DETECTOR_INPUTS:
            raise UserError(f"saliencymix detector_input must be one of {', '.join(DETECTOR_INPUTS)}, "
                            f"got {self.detector_input!r}")
        if self.detector_input == "normalized":
            if self.mean is None or self.std is None:
                raise UserError("saliencymix with detector_input='normalized' (the official code) needs the model's "
                                "normalization mean and std; pass both, or detector_input='uint8'")
            if len(self.mean) != len(self.std) or min(self.std) <= 0:
                raise UserError(f"saliencymix mean and std must have one value per channel and std > 0, got "
                                f"{list(self.mean)} and {list(self.std)}")

    def mix(self, x, y):
        if x.shape[1] not in (1, 3) or (self.detector_input == "normalized" and x.shape[1] != len(self.mean)):
            raise UserError(f"saliencymix's detector takes 3-channel (or 1-channel) images, one channel per "
                            f"mean/std value; got {x.shape[1]} channels")
        draws = draw_saliencymix(self.rng, x.shape[0], self.beta, self.prob, self.per_sample)
        if draws is None:
            return super().mix(x, y)
        lam, perm = draws
        detector = detector_images(x, self.detector_input, self.mean, self.std)
        return saliencymix(x, y, lam, perm, self.num_classes, detector)
