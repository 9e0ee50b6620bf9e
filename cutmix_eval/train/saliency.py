"""OpenCV's static fine-grained saliency, bit for bit, batched in torch.

Montabone & Soto, "Human detection using a mobile platform and novel features derived
from a visual saliency mechanism", Image and Vision Computing 28(3), 2010, as OpenCV
implements it (``cv2.saliency.StaticSaliencyFineGrained``, opencv_contrib
``modules/saliency/src/staticSaliencyFineGrained.cpp``). SaliencyMix locates its box with
it; opencv-contrib cannot be installed beside the ``opencv-python`` this project uses
(both are the ``cv2`` package), so the detector is restated here, on the batch's device.

:func:`fine_grained_saliency` returns the 8-bit map OpenCV computes internally
(``computeSaliency`` hands it out divided by 255 as float32; ``(map * 255).astype(uint8)``,
the SaliencyMix code's quantization, gives these bytes back exactly). The steps, with
OpenCV's arithmetic:

1. grey: a 3-channel image is read as B, G, R (channel 0 is "blue"), 1 channel is taken as
   it is. 8-bit: ``(3735 B + 19235 G + 9798 R + 2**14) >> 15``. float32: the products and
   sums are fused (one rounding per multiply-add) in the order of OpenCV 5.1's IPP kernel
   (AVX2 dispatch), which differs by pixel position: ``fma(R, .299, fma(B, .114, G * .587))``,
   except ``fma(R, .299, fma(G, .587, B * .114))`` at columns ``n`` and ``n + 2`` of each row,
   ``n = 8 * (W // 8)``, when at least 4 columns follow ``n``;
2. two 3 x 3 Gaussian blurs (kernel ``[1, 2, 1] / 4``, borders reflected without repeating
   the edge): 8-bit in integers, ``(sum + 8) >> 4``; float32 as ``(left + right) * 0.25 +
   centre * 0.5``, rows first;
3. the integral image in float32. 8-bit: exact sums (exact in float32 while ``255 * H * W <
   2**24``, i.e. up to 65,793 pixels; larger images get the exactly rounded sums, which
   OpenCV's running float32 sums may miss by an ulp). float32: IPP's order: within each run
   of 8 columns two 4-wide Hillis-Steele prefix sums, the second half plus the first half's
   total, then the running total of the row so far; leftover columns one at a time; each
   row then added to the row above;
4. the centre value of each pixel is ``gray.at<uchar>(y, x)``. For an 8-bit grey image that
   is the pixel. For a float32 one (a float image, as SaliencyMix passes) OpenCV reads byte
   ``x`` of row ``y``'s float32 data (little-endian), not the pixel: we read the same byte;
5. for each neighbourhood ``n`` in 12, 24, 48, 28, 56, 112: the window ``[p - n + 1,
   p + n + 1)`` clipped to the image in each axis, ``mean = (window sum - centre) /
   (window area - 1)`` in float32, ``on = centre - mean`` and ``off = mean - centre``
   converted to 8 bits where positive. The conversion truncates and keeps the low byte, as
   the compiled code does (a value of 256.5 becomes 0; an infinite one, only on a 1 x 1
   image, 0);
6. on and off are summed over the six scales, each sum scaled to ``trunc(255 * (sum /
   max))`` (the ratio in float32, the product in float64; an all-zero sum stays zero);
7. the map is ``trunc(255 * (on + off) / max(on.max(), off.max()))`` in float64, low byte
   kept (both 0 everywhere: 0).

Checked against ``opencv-contrib-python-headless==5.1.0.95`` (IPP AVX2 dispatch) in
``tests/test_mixers_saliencymix.py``. The float32 path reproduces that build's order of
rounding, which is not part of OpenCV's contract: another build or an AVX-512 machine may
round a float32 grey value or integral-image sum differently, and the byte read in step 4
then differs.
"""

from __future__ import annotations

import numpy as np
import torch

#: the half-widths of the six centre-surround windows, in OpenCV's order
NEIGHBOURHOODS = (12, 24, 48, 28, 56, 112)

_R, _G, _B = (float(np.float32(c)) for c in (0.299, 0.587, 0.114))  # OpenCV's float coefficients
_R15, _G15, _B15 = 9798, 19235, 3735  # its 15-bit fixed-point ones


def fine_grained_saliency(images: torch.Tensor) -> torch.Tensor:
    """OpenCV's fine-grained saliency map of each image: ``B x C x H x W`` (``C`` 3, read as
    B, G, R, or 1; uint8 or float32) -> ``B x H x W`` uint8, on the images' device."""
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.dtype not in (torch.uint8, torch.float32):
        raise ValueError(f"expected B x 3 x H x W or B x 1 x H x W uint8 or float32 images, got "
                         f"{tuple(images.shape)} {images.dtype}")
    gray = blur3(blur3(to_gray(images)))
    table = integral_image(gray)
    centre = centre_values(gray)
    on, off = centre_surround(table, centre)
    return mix_on_off(scale_to_byte(on), scale_to_byte(off))


def saliency_peaks(maps: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each ``B x H x W`` map's maximum, the first one in row-major order
    (``np.unravel_index(np.argmax(map), map.shape)``)."""
    flat = maps.reshape(maps.shape[0], -1).argmax(dim=1).cpu().numpy()
    return flat // maps.shape[2], flat % maps.shape[2]


# ----------------------------------------------------------------------------- the steps


def to_gray(images: torch.Tensor) -> torch.Tensor:
    """Step 1: ``B x H x W`` grey, uint8 or float32 as the input."""
    if images.shape[1] == 1:
        return images[:, 0]
    blue, green, red = images.unbind(1)
    if images.dtype == torch.uint8:
        blue, green, red = blue.int(), green.int(), red.int()
        return ((blue * _B15 + green * _G15 + red * _R15 + (1 << 14)) >> 15).to(torch.uint8)
    gray = _fma32(red, _R, _fma32(blue, _B, green * _G))
    width = images.shape[-1]
    n = width // 8 * 8
    if width - n >= 4:
        cols = [n, n + 2]
        gray[..., cols] = _fma32(red[..., cols], _R, _fma32(green[..., cols], _G, blue[..., cols] * _B))
    return gray


def _fma32(a: torch.Tensor, b: float, c: torch.Tensor) -> torch.Tensor:
    """``a * b + c`` rounded once to float32 (a fused multiply-add), for float32 ``a``, ``c``
    and a float32-representable ``b``: the product is exact in float64, the sum's rounding
    error is recovered exactly (TwoSum) and folded in by rounding to odd, after which the
    rounding to float32 is the correct one."""
    product = a.double() * b
    addend = c.double()
    total = product + addend
    back = total - product
    error = (product - (total - back)) + (addend - back)
    bits = total.view(torch.int64)
    inexact_even = (error != 0) & (bits & 1 == 0)
    outward = (error > 0) == (total > 0)
    bits = torch.where(inexact_even, bits + torch.where(outward, 1, -1), bits)
    return bits.view(torch.float64).float()


def _reflect101(size: int, device: torch.device) -> torch.Tensor:
    """Indices ``-1 .. size`` reflected without repeating the edge (``BORDER_REFLECT_101``)."""
    index = torch.arange(-1, size + 1, device=device).abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index).clamp(0, size - 1)


def blur3(gray: torch.Tensor) -> torch.Tensor:
    """Step 2, once: the 3 x 3 Gaussian blur of ``B x H x W`` grey images."""
    height, width = gray.shape[-2:]
    padded = gray[:, _reflect101(height, gray.device)][:, :, _reflect101(width, gray.device)]
    if gray.dtype == torch.uint8:
        p = padded.int()
        rows = p[..., :-2] + 2 * p[..., 1:-1] + p[..., 2:]
        both = rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]
        return ((both + 8) >> 4).to(torch.uint8)
    rows = (padded[..., :-2] + padded[..., 2:]) * 0.25 + padded[..., 1:-1] * 0.5
    return (rows[:, :-2] + rows[:, 2:]) * 0.25 + rows[:, 1:-1] * 0.5


def integral_image(gray: torch.Tensor) -> torch.Tensor:
    """Step 3: ``B x (H + 1) x (W + 1)`` float32 sums of ``gray[:, :y, :x]``."""
    batch, height, width = gray.shape
    table = gray.new_zeros((batch, height + 1, width + 1), dtype=torch.float32)
    if gray.dtype == torch.uint8:
        table[:, 1:, 1:] = gray.long().cumsum(2).cumsum(1).float()
        return table
    rows = _row_sums32(gray)
    for y in range(height):
        table[:, y + 1, 1:] = table[:, y, 1:] + rows[:, y]
    return table


def _row_sums32(gray: torch.Tensor) -> torch.Tensor:
    """Running float32 sums along each row in IPP's order (see step 3)."""
    width = gray.shape[-1]
    blocks = width // 8
    out = torch.empty_like(gray)
    carry = gray.new_zeros(gray.shape[:-1] + (1,))
    if blocks:
        halves = gray[..., :8 * blocks].reshape(*gray.shape[:-1], blocks, 2, 4)
        halves = torch.cat([halves[..., :1], halves[..., 1:] + halves[..., :-1]], -1)
        halves = torch.cat([halves[..., :2], halves[..., 2:] + halves[..., :-2]], -1)
        low, high = halves.unbind(-2)
        prefix = torch.cat([low, high + low[..., 3:]], -1)
        for k in range(blocks):
            out[..., 8 * k:8 * k + 8] = prefix[..., k, :] + carry
            carry = out[..., 8 * k + 7:8 * k + 8]
    for x in range(8 * blocks, width):
        carry = carry + gray[..., x:x + 1]
        out[..., x:x + 1] = carry
    return out


def centre_values(gray: torch.Tensor) -> torch.Tensor:
    """Step 4: what OpenCV takes as each pixel's own value, as float32."""
    if gray.dtype == torch.uint8:
        return gray.float()
    width = gray.shape[-1]
    return gray.contiguous().view(torch.uint8)[..., :width].float()


def centre_surround(table: torch.Tensor, centre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 5: the on and off responses, each summed over the six scales (int32)."""
    batch, height, width = centre.shape
    scales = len(NEIGHBOURHOODS)
    n = torch.tensor(NEIGHBOURHOODS, device=centre.device)[:, None]
    rows = torch.arange(height, device=centre.device)
    cols = torch.arange(width, device=centre.device)
    y0, y1 = (rows - n + 1).clamp(0, height), (rows + n + 1).clamp(0, height)  # scales x H
    x0, x1 = (cols - n + 1).clamp(0, width), (cols + n + 1).clamp(0, width)  # scales x W
    top = table.index_select(1, y0.flatten()).view(batch, scales, height, width + 1)
    bottom = table.index_select(1, y1.flatten()).view(batch, scales, height, width + 1)
    left = x0[None, :, None].expand(batch, scales, height, width)
    right = x1[None, :, None].expand(batch, scales, height, width)
    window = ((bottom.gather(3, right) + top.gather(3, left)) - bottom.gather(3, left)) - top.gather(3, right)
    area = ((y1 - y0)[:, :, None] * (x1 - x0)[:, None, :] - 1).float()
    mean = (window - centre[:, None]) / area
    difference = centre[:, None] - mean  # mean - centre is exactly its negative
    return _low_byte_where_positive(difference).sum(1, dtype=torch.int32), \
        _low_byte_where_positive(-difference).sum(1, dtype=torch.int32)


def _low_byte_where_positive(value: torch.Tensor) -> torch.Tensor:
    """C's ``(uchar)value`` as compiled for x86 where ``value > 0``, else 0: the integer
    part's low byte; infinities (and magnitudes past 2**62) give 0."""
    keep = (value > 0) & (value < 2.0 ** 62)
    whole = torch.where(keep, value, 0.0).trunc().long()
    return whole & 255


def scale_to_byte(total: torch.Tensor) -> torch.Tensor:
    """Step 6: ``trunc(255 * (total / max))`` per image (0 where the maximum is 0)."""
    peak = total.amax(dim=(-2, -1), keepdim=True)
    ratio = total.float() / peak.clamp(min=1).float()
    return torch.where(peak > 0, (ratio.double() * 255.0).trunc().int(), 0)


def mix_on_off(on: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
    """Step 7: the saliency map, uint8."""
    peak = torch.maximum(on.amax(dim=(-2, -1), keepdim=True), off.amax(dim=(-2, -1), keepdim=True))
    value = (255.0 * (on + off).double()) / peak.clamp(min=1).double()
    return torch.where(peak > 0, value.trunc().long() & 255, 0).to(torch.uint8)
