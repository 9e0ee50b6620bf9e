"""FMix: a binary mask thresholded from low-frequency Fourier noise.

Harris, Marcu, Painter, Niranjan, Prügel-Bennett & Hare, "FMix: Enhancing Mixed Sample
Data Augmentation", arXiv 2002.12047, 2020; official code https://github.com/ecs-vlc/FMix
(``fmix.py``: ``fftfreqnd``, ``get_spectrum``, ``make_low_freq_image``, ``binarise_mask``,
``sample_mask``; the training hook ``implementations/torchbearer_implementation.py``).
OpenMixup's ``fmix`` is the same code.

One mask per batch (the official code has no per-sample mode), with probability ``prob``
(the official code mixes every batch). In the official order of draws:

1. ``lam ~ Beta(alpha, alpha)`` (``Beta(alpha + 1, alpha)`` with ``reformulate``);
2. standard normal noise of shape ``H x W' x 2``, ``W' = W // 2 + 1`` (``+ 1`` more for
   odd ``W``), scaled by ``1 / max(f, 1 / max(H, W)) ** decay_power`` with ``f`` the
   frequency magnitude of the (row, half-spectrum column) bin;
3. a fair coin: the mask has ``ceil(lam * H * W)`` ones on heads, ``floor`` on tails.

The low-frequency image is the inverse real FFT of that spectrum, shifted and scaled to
``[0, 1]``; the ``num`` largest pixels (``argsort``, descending) become 1, the rest 0; with
``max_soft > 0`` the ``2 * int(H * W * min(max_soft, lam, 1 - lam))`` pixels around the
threshold get a linear ramp from 1 to 0 instead. Then ``mixed = mask * x + (1 - mask) *
x[perm]``, partners by a uniform random permutation (self-pairs allowed).

**Which spectrum.** The official ``make_low_freq_image`` takes rows 0 and 1 of the scaled
``H x W' x 2`` noise as the real and imaginary parts of a ``W' x 2`` array, which
``irfftn`` zero-pads to the ``H x (W // 2 + 1)`` half-spectrum: its nonzero coefficients
are the vertical frequencies ``0 .. W' - 1`` and the horizontal frequencies 0 and 1 only,
with the scales of the first two rows of the frequency grid. That is what the published
results were trained with, and it is the default here. ``full_spectrum=True`` uses the
whole ``H x W'`` complex spectrum, as the paper describes the method.

**Targets.** The official loss weights the image's own label by the drawn ``lam``, which
differs from the mask's mean by less than one pixel's share (``ceil``/``floor``). With
``lambda_correction`` (the default, as this project's CutMix) the own label's weight is
the mask's mean, so the targets equal the pixel composition exactly (soft masks
included); ``lambda_correction=False`` gives the official drawn ``lam``. With
``reformulate`` the official loss is the cross-entropy of the own label alone: one-hot
targets.

The official code takes the mask size from its ``size`` argument; here it is the batch's
``H x W``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from cutmix_eval.errors import UserError
from cutmix_eval.train.mixing import Mixer, as_index, mix_targets, pair_indices


def spectrum_width(width: int) -> int:
    """``W'``, the official code's number of frequency columns: ``W // 2 + 1``, plus one
    for odd ``W``."""
    return width // 2 + 1 + width % 2


def fourier_frequencies(height: int, width: int) -> np.ndarray:
    """``H x W'`` magnitudes ``sqrt(fx ** 2 + fy ** 2)`` of ``numpy.fft.fftfreq`` rows and the
    first ``W'`` ``fftfreq`` columns (the official ``fftfreqnd``)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[:spectrum_width(width)]
    return np.sqrt(fx * fx + fy * fy)


def draw_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """The standard normal ``H x W' x 2`` noise of the spectrum (the official ``param``,
    without its channel axis)."""
    return rng.standard_normal((height, spectrum_width(width), 2))


def low_frequency_image(noise: np.ndarray, height: int, width: int, decay_power: float,
                        full_spectrum: bool = False) -> np.ndarray:
    """``H x W`` image in ``[0, 1]`` (float64): the inverse real FFT of ``noise`` scaled by
    ``1 / max(f, 1 / max(H, W)) ** decay_power``, minus its minimum, over its maximum.
    The official layout unless ``full_spectrum`` (see the module docstring)."""
    scale = 1.0 / np.maximum(fourier_frequencies(height, width), 1.0 / max(height, width)) ** decay_power
    spectrum = scale[..., None] * noise
    if full_spectrum:
        coefficients = spectrum[..., 0] + 1j * spectrum[..., 1]
    else:
        coefficients = spectrum[0] + 1j * spectrum[1]
    image = np.fft.irfftn(coefficients, s=(height, width), axes=(0, 1))
    image = image - image.min()
    return image / image.max()


def binarise(image: np.ndarray, lam: float, round_up: bool, max_soft: float = 0.0) -> np.ndarray:
    """The mask (float64, ``image``'s shape): 1 on the ``ceil(lam * n)`` (``round_up``) or
    ``floor(lam * n)`` largest pixels, 0 elsewhere, with a linear 1-to-0 ramp over the
    ``2 * int(n * min(max_soft, lam, 1 - lam))`` pixels around that rank."""
    order = image.reshape(-1).argsort()[::-1]
    size = image.size
    num = math.ceil(lam * size) if round_up else math.floor(lam * size)
    soft = int(size * min(max_soft, lam, 1 - lam))
    mask = np.zeros(size)
    mask[order[:num + soft]] = 1
    mask[order[num - soft:num + soft]] = np.linspace(1, 0, 2 * soft)
    return mask.reshape(image.shape)


def draw_fmix_mask(rng: np.random.Generator, height: int, width: int, alpha: float, decay_power: float,
                   max_soft: float = 0.0, reformulate: bool = False,
                   full_spectrum: bool = False) -> tuple[float, np.ndarray]:
    """``(lam, mask)`` in the official order of draws: ``lam``, the noise, the rounding coin."""
    lam = float(rng.beta(alpha + 1 if reformulate else alpha, alpha))
    noise = draw_noise(rng, height, width)
    round_up = bool(rng.random() > 0.5)
    return lam, binarise(low_frequency_image(noise, height, width, decay_power, full_spectrum), lam, round_up,
                         max_soft)


def fmix_batch(x: torch.Tensor, y: torch.Tensor, mask: np.ndarray, perm: np.ndarray, weight: float,
               num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask * x + (1 - mask) * x[perm], weight * onehot(y) + (1 - weight) * onehot(y[perm]))``
    for an ``H x W`` ``mask`` (cast to ``x``'s dtype and device)."""
    m = torch.as_tensor(mask, dtype=x.dtype, device=x.device)
    index = as_index(perm, x.device)
    return m * x + (1 - m) * x[index], mix_targets(y, index, weight, num_classes, x.dtype)


@dataclass
class FMix(Mixer):
    """FMix (Harris et al., arXiv 2020): a low-frequency Fourier mask with mean ``lam ~
    Beta(alpha, alpha)``, one per batch; see the module docstring for every convention."""

    alpha: float = 1.0  # lam ~ Beta(alpha, alpha) (official FMix default, used for CIFAR in the paper)
    decay_power: float = 3.0  # spectrum decays as 1 / f ** decay_power (official default)
    max_soft: float = 0.0  # soft ramp around the threshold, in [0, 0.5] (official default 0: binary)
    reformulate: bool = False  # the paper's reformulation: lam ~ Beta(alpha + 1, alpha), own-label loss only
    lambda_correction: bool = True  # own label weight = the mask's mean (off: the drawn lam, as the official loss)
    full_spectrum: bool = False  # the paper's full 2-D spectrum instead of the official code's layout
    prob: float = 1.0  # probability that a batch is mixed (the official code mixes every batch)

    name: ClassVar[str] = "fmix"

    def __post_init__(self):
        super().__post_init__()
        if self.alpha <= 0:
            raise UserError(f"fmix alpha must be > 0 (lam ~ Beta(alpha, alpha)), got {self.alpha}")
        if self.decay_power < 0:
            raise UserError(f"fmix decay_power must be >= 0, got {self.decay_power}")
        if not 0 <= self.max_soft <= 0.5:
            raise UserError(f"fmix max_soft must be in [0, 0.5], got {self.max_soft}")

    def mix(self, x, y):
        if not self.rng.random() < self.prob:
            return super().mix(x, y)
        _, _, height, width = x.shape
        lam, mask = draw_fmix_mask(self.rng, height, width, self.alpha, self.decay_power, self.max_soft,
                                   self.reformulate, self.full_spectrum)
        perm = pair_indices(self.rng, x.shape[0])
        if self.reformulate:
            lam = 1.0
        elif self.lambda_correction:
            lam = float(mask.mean())
        return fmix_batch(x, y, mask, perm, lam, self.num_classes)
