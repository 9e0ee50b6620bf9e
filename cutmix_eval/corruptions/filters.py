"""Filtering primitives shared by the corruptions, batched in torch on CPU or CUDA.

Images are ``B x C x H x W`` float tensors; filters act on H and W of every image and
channel. Boundary modes follow ``scipy.ndimage`` (for an axis ``a b c d``):

* ``reflect``: half-sample symmetric, ``d c b a | a b c d | d c b a``
* ``mirror``: whole-sample symmetric, ``d c b | a b c d | c b a`` (OpenCV's default
  ``BORDER_REFLECT_101``)
* ``nearest``: edge replicated, ``a a a | a b c d | d d d``
* ``constant``: zeros, ``0 0 0 | a b c d | 0 0 0``
* ``wrap``: periodic, ``b c d | a b c d | a b c``

Separable filters run as two matrix products (the boundary mode folded into an ``n x n``
matrix per axis); 2-D kernels as an FFT correlation of the padded images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MODES = ("reflect", "mirror", "nearest", "constant", "wrap")


def extend_indices(n: int, before: int, after: int, mode: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """Source index along an axis of length ``n`` for each of the positions ``-before ..
    n + after - 1`` under ``mode`` (int64, length ``n + before + after``); ``-1`` marks
    the zeros of ``constant``."""
    i = torch.arange(-before, n + after, device=device)
    if mode == "nearest":
        return i.clamp(0, n - 1)
    if mode == "wrap":
        return i.remainder(n)
    if mode == "constant":
        return torch.where((i >= 0) & (i < n), i, -1)
    if mode == "reflect":
        j = i.remainder(2 * n)
        return torch.where(j < n, j, 2 * n - 1 - j)
    if mode == "mirror":
        if n == 1:
            return torch.zeros_like(i)
        j = i.remainder(2 * n - 2)
        return torch.where(j < n, j, 2 * n - 2 - j)
    raise ValueError(f"unknown boundary mode {mode!r}; choose from {', '.join(MODES)}")


#: scipy's boundary modes that ``F.pad`` implements (for pads smaller than the image)
_TORCH_PAD = {"mirror": "reflect", "nearest": "replicate", "wrap": "circular", "constant": "constant"}


def pad(images: torch.Tensor, height: tuple[int, int], width: tuple[int, int], mode: str) -> torch.Tensor:
    """``images`` (``B x C x H x W``) extended by ``height = (top, bottom)`` rows and
    ``width = (left, right)`` columns under ``mode``; any amount, also beyond the image size."""
    if mode in _TORCH_PAD and max(height) < images.shape[-2] and max(width) < images.shape[-1]:
        return F.pad(images, (*width, *height), mode=_TORCH_PAD[mode])
    for dim, (before, after) in ((-2, height), (-1, width)):
        index = extend_indices(images.shape[dim], before, after, mode, images.device)
        if mode == "constant":
            zeros = torch.zeros_like(images.narrow(dim, 0, 1))
            images = torch.cat([images, zeros], dim)
            index = torch.where(index < 0, images.shape[dim] - 1, index)
        images = images.index_select(dim, index)
    return images


def filter_matrix(kernels: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """The ``n x n`` matrix ``A`` with ``A @ v`` the 1-D correlation of ``v`` (length ``n``)
    with the centred, odd-length ``kernels`` (``K`` or ``B x K``; one matrix per row, giving
    ``B x n x n``) under the boundary ``mode``, as ``scipy.ndimage.correlate1d`` computes it."""
    size = kernels.shape[-1]
    if size % 2 != 1:
        raise ValueError(f"kernel length must be odd, not {size}")
    taps = extend_indices(n, size // 2, size // 2, mode, kernels.device).unfold(0, size, 1)  # n x K
    taps = torch.where(taps < 0, n, taps).expand(*kernels.shape[:-1], n, size)  # column n collects the zeros
    weights = kernels.unsqueeze(-2).expand(*kernels.shape[:-1], n, size)
    matrix = kernels.new_zeros(*kernels.shape[:-1], n, n + 1).scatter_add_(-1, taps, weights)
    return matrix[..., :n]


def separable_filter(images: torch.Tensor, kernels: torch.Tensor, mode: str) -> torch.Tensor:
    """``images`` (``B x C x H x W``) correlated with the odd-length 1-D ``kernels`` (``K``
    shared, or ``B x K`` per image) along H and then W under the boundary ``mode``."""
    kernels = kernels.to(images.dtype)
    if kernels.ndim == 2:
        kernels = kernels[:, None]  # B x 1 x K: one matrix per image, broadcast over channels
    rows = filter_matrix(kernels, images.shape[-2], mode)
    cols = filter_matrix(kernels, images.shape[-1], mode)
    return rows @ images @ cols.transpose(-1, -2)


def gaussian_kernel1d(sigma: torch.Tensor, truncate: float = 4.0) -> torch.Tensor:
    """Normalized Gaussian kernels (``B x (2R + 1)``, float64) for the standard deviations
    ``sigma`` (``B``), each of radius ``int(truncate * sigma + 0.5)`` (scipy's rule) inside
    the common radius ``R``, zero beyond; a zero ``sigma`` gives the identity ``[1]``."""
    sigma = sigma.to(torch.float64)
    radii = (truncate * sigma + 0.5).floor()
    x = torch.arange(-int(radii.max()), int(radii.max()) + 1, device=sigma.device, dtype=torch.float64)
    inside = x.abs() <= radii[:, None]
    phi = torch.exp(-0.5 * (x / sigma.clamp_min(1e-15)[:, None]) ** 2) * inside
    phi = torch.where(sigma[:, None] > 1e-15, phi, (x == 0).to(phi.dtype))
    return phi / phi.sum(-1, keepdim=True)


def gaussian_blur(images: torch.Tensor, sigma: float | torch.Tensor, mode: str = "reflect",
                  truncate: float = 4.0) -> torch.Tensor:
    """``scipy.ndimage.gaussian_filter(image, (sigma, sigma), mode=mode, truncate=truncate)``
    for every image and channel of ``images`` (``B x C x H x W``); ``sigma`` is one value or
    one per image (``B``)."""
    per_image = torch.is_tensor(sigma) and sigma.ndim == 1
    sigma = torch.as_tensor(sigma, dtype=torch.float64, device=images.device).reshape(-1)
    kernels = gaussian_kernel1d(sigma, truncate)
    return separable_filter(images, kernels if per_image else kernels[0], mode)


def _fast_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c at least ``n`` (a size the FFT handles quickly)."""
    size = max(n, 1)
    while True:
        rest = size
        for prime in (2, 3, 5):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return size
        size += 1


def correlate2d(images: torch.Tensor, kernels: torch.Tensor, mode: str) -> torch.Tensor:
    """``images`` (``B x C x H x W``) correlated with the centred 2-D ``kernels`` (``kh x kw``
    shared, or ``B x kh x kw`` per image; odd sizes) under the boundary ``mode``, as
    ``scipy.ndimage.correlate`` / ``cv2.filter2D`` compute it."""
    kh, kw = kernels.shape[-2:]
    if kh % 2 != 1 or kw % 2 != 1:
        raise ValueError(f"kernel sizes must be odd, not {kh} x {kw}")
    return correlate_valid(pad(images, (kh // 2, kh // 2), (kw // 2, kw // 2), mode), kernels)


def correlate_valid(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """The valid part of the correlation of ``images`` (``B x C x H x W``) with ``kernels``
    (``kh x kw``, or ``B x kh x kw`` per image): ``out[i, j] = sum_ab kernels[a, b] *
    images[i + a, j + b]``, ``(H - kh + 1) x (W - kw + 1)``, through an FFT."""
    kh, kw = kernels.shape[-2:]
    height, width = images.shape[-2:]
    size = (_fast_length(height), _fast_length(width))
    kernels = kernels.to(images.dtype).reshape(-1, 1, kh, kw)  # 1 or B kernels, broadcast over channels
    spectrum = torch.fft.rfft2(images, s=size) * torch.fft.rfft2(kernels, s=size).conj_physical()
    return torch.fft.irfft2(spectrum, s=size)[..., :height - kh + 1, :width - kw + 1]


def motion_blur(images: torch.Tensor, radius: int | float, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """The motion blur of the ``imagecorruptions`` package (its replacement for ImageMagick's
    ``-motion-blur radius x sigma + angle``) on ``images`` (``B x C x H x W``), ``angles``
    in degrees (``B``, one per image).

    Tap ``i`` of ``2 * radius + 1`` weighs ``exp(-i^2 / (2 sigma^2))`` (normalized over the
    taps) and reads the image ``i`` pixels along the angle, at the row and column offsets
    ``ceil(i sin(angle) - 1/2)`` and ``ceil(i cos(angle) - 1/2)``, edges replicated. As in
    the reference, the taps stop at the first whose offset reaches the image size, and the
    remaining weights are not renormalized."""
    width = int(2 * radius + 1)
    device = images.device
    steps = torch.arange(width, device=device, dtype=torch.float64)
    weights = torch.exp(-steps ** 2 / (2 * sigma ** 2))
    weights = weights / weights.sum()
    theta = torch.deg2rad(angles.to(device=device, dtype=torch.float64))
    rise, run = width * torch.sin(theta), width * torch.cos(theta)
    length = torch.hypot(rise, run)
    dy = torch.ceil(steps * (rise / length)[:, None] - 0.5).long()  # B x taps
    dx = torch.ceil(steps * (run / length)[:, None] - 0.5).long()
    inside = ((dy.abs() < images.shape[-2]) & (dx.abs() < images.shape[-1])).long().cummin(-1).values
    dy, dx = dy * inside, dx * inside  # the dropped taps (weight 0) moved to the origin
    (top, left), (bottom, right) = (-dy.min().item(), -dx.min().item()), (dy.max().item(), dx.max().item())
    kernels = weights.new_zeros(len(angles), (top + bottom + 1) * (left + right + 1))
    kernels.scatter_add_(1, (dy + top) * (left + right + 1) + dx + left, weights * inside)
    padded = pad(images, (top, bottom), (left, right), "nearest")
    return correlate_valid(padded, kernels.view(-1, top + bottom + 1, left + right + 1))
