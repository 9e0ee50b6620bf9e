"""RGB <-> HSV on batches of images, with scikit-image's conventions (``skimage.color``).

Images are ``... x 3 x H x W`` float tensors (channel dimension third from last), RGB in
[0, 1]; HSV has hue in [0, 1) (a sixth per sector, red at 0), saturation ``(max - min) / max``
and value ``max``, all in [0, 1]. As in scikit-image, grey pixels (``max == min``) get hue and
saturation 0, and when two channels tie for the maximum the hue formula of the later channel
(blue over green over red) is used.

:func:`shift_value` and :func:`rescale_saturation` change V or S of the HSV image and convert
back in one step, without computing hue: in HSV -> RGB every channel is
``V * (1 - S * w)`` with a weight ``w`` that depends on the hue alone, so they equal the
round trip ``hsv_to_rgb(adjust(rgb_to_hsv(x)))`` (up to float rounding) at a fraction of its
cost.
"""

from __future__ import annotations

import torch

#: for each hue sector 0-5, which of (v, q, p, t) become R, G and B
_SECTOR_CHANNELS = torch.tensor([[0, 3, 2], [1, 0, 2], [2, 0, 3], [2, 1, 0], [3, 2, 0], [0, 2, 1]])


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """``... x 3 x H x W`` RGB in [0, 1] to HSV (hue, saturation, value), each in [0, 1]."""
    red, green, blue = rgb.unbind(-3)
    value = rgb.amax(-3)
    delta = value - rgb.amin(-3)
    grey = delta == 0
    safe_delta = torch.where(grey, torch.ones_like(delta), delta)
    sextant = torch.where(blue == value, 4 + (red - green) / safe_delta,
                          torch.where(green == value, 2 + (blue - red) / safe_delta, (green - blue) / safe_delta))
    hue = torch.where(grey, torch.zeros_like(delta), torch.remainder(sextant / 6, 1.0))
    saturation = torch.where(grey, torch.zeros_like(delta), delta / torch.where(grey, torch.ones_like(value), value))
    return torch.stack((hue, saturation, value), dim=-3)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """``... x 3 x H x W`` HSV (as :func:`rgb_to_hsv` returns it) back to RGB."""
    hue, saturation, value = hsv.unbind(-3)
    sector = torch.floor(hue * 6)
    fraction = hue * 6 - sector
    candidates = torch.stack((value, value * (1 - fraction * saturation), value * (1 - saturation),
                              value * (1 - (1 - fraction) * saturation)), dim=-3)
    index = _SECTOR_CHANNELS.to(hsv.device)[sector.long().remainder(6)].movedim(-1, -3)
    return candidates.gather(-3, index)


def shift_value(rgb: torch.Tensor, amount: float) -> torch.Tensor:
    """``rgb`` with its HSV value ``V -> clip(V + amount, 0, 1)``: each pixel scaled by
    ``V' / V``; black pixels (hue and saturation 0) become grey ``V'``."""
    value = rgb.amax(-3, keepdim=True)
    new_value = (value + amount).clamp_(0.0, 1.0)
    return torch.where(value > 0, rgb * (new_value / value.clamp_min(1e-30)), new_value)


def rescale_saturation(rgb: torch.Tensor, factor: float, offset: float) -> torch.Tensor:
    """``rgb`` with its HSV saturation ``S -> clip(S * factor + offset, 0, 1)``: each channel's
    distance below the pixel's maximum ``V`` scaled by ``S' / S``; grey pixels, whose hue is 0
    (red), become ``(V, V (1 - S'), V (1 - S'))`` as in scikit-image."""
    value = rgb.amax(-3, keepdim=True)
    delta = value - rgb.amin(-3, keepdim=True)
    grey = delta == 0
    saturation = torch.where(grey, 0.0, delta / value.clamp_min(1e-30))
    new_saturation = (saturation * factor + offset).clamp_(0.0, 1.0)
    coloured = value - (value - rgb) * (new_saturation * value / delta.clamp_min(1e-30))
    red = torch.tensor([0.0, 1.0, 1.0], device=rgb.device, dtype=rgb.dtype).view(3, 1, 1)
    return torch.where(grey, value * (1 - new_saturation * red), coloured)
