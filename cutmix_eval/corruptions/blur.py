"""Blur corruptions, batched in torch (see :mod:`cutmix_eval.corruptions.registry`).

Defocus and motion blur are FFT correlations (a disk kernel; one rasterized motion kernel
per image), Gaussian blur two matrix products, zoom blur one sparse matrix product, and
glass blur replays the reference's sequential per-pixel loop exactly, in a vectorized way
(see :func:`glass_sources`). All match the reference up to its uint8 rounding.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import torch

from cutmix_eval.corruptions import filters
from cutmix_eval.corruptions.registry import per_image_rand, register_corruption


@register_corruption("gaussian_blur", cifar=(0.4, 0.6, 0.7, 0.8, 1.0), imagenet=(1, 2, 3, 4, 6), stochastic=False,
                     description="Gaussian blur of standard deviation sigma pixels")
def gaussian_blur(images: torch.Tensor, sigma: float, seeds: torch.Tensor) -> torch.Tensor:
    """``scikit-image``'s ``gaussian(x, sigma)`` (edges replicated, truncated at 4 sigma);
    ``param`` is ``sigma`` in pixels."""
    return filters.gaussian_blur(images, sigma, mode="nearest")


@register_corruption("defocus_blur", cifar=((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
                     imagenet=((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)), stochastic=False,
                     description="averaging over an antialiased disk (a defocused lens)")
def defocus_blur(images: torch.Tensor, param: tuple[float, float], seeds: torch.Tensor) -> torch.Tensor:
    """Correlation with :func:`disk_kernel` (edges mirrored, OpenCV's default);
    ``param`` is ``(radius, alias_blur)``."""
    return filters.correlate2d(images, disk_kernel(*param, device=images.device), mode="mirror")


def disk_kernel(radius: float, alias_blur: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """The reference's antialiased disk: the pixels of the grid ``-L..L`` (``L = 8``, or
    ``radius`` above 8) within ``radius`` of the centre, normalized to sum 1, then blurred
    by a 3 x 3 (5 x 5 above radius 8) Gaussian of ``sigma = alias_blur`` with mirrored
    edges, as ``cv2.GaussianBlur`` does (``(2L + 1) x (2L + 1)``, float64)."""
    half, size = (8, 3) if radius <= 8 else (int(radius), 5)
    grid = torch.arange(-half, half + 1, device=device, dtype=torch.float64)
    disk = (grid[:, None] ** 2 + grid[None, :] ** 2 <= radius ** 2).double()
    disk /= disk.sum()
    taps = torch.arange(size, device=device, dtype=torch.float64) - size // 2
    blur = torch.exp(-taps ** 2 / (2 * alias_blur ** 2))
    return filters.separable_filter(disk[None, None], blur / blur.sum(), mode="mirror")[0, 0]


@register_corruption("motion_blur", cifar=((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
                     imagenet=((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)), stochastic=True,
                     description="blur along a line at a random angle in [-45, 45] degrees")
def motion_blur(images: torch.Tensor, param: tuple[float, float], seeds: torch.Tensor) -> torch.Tensor:
    """:func:`filters.motion_blur` at an angle drawn uniformly in [-45, 45) degrees per
    image; ``param`` is ``(radius, sigma)``."""
    angles = 90 * per_image_rand(seeds, (), images.device) - 45
    return filters.motion_blur(images, *param, angles)


def _zoom_factors(stop: float, step: float) -> tuple[float, ...]:
    """The reference's ``np.arange(1, stop, step)`` (whose floating-point length includes
    ``stop`` itself for ``stop`` 1.06 and 1.11)."""
    return tuple(float(z) for z in np.arange(1, stop, step))


@register_corruption("zoom_blur",
                     cifar=tuple(_zoom_factors(stop, 0.01) for stop in (1.06, 1.11, 1.16, 1.21, 1.26)),
                     imagenet=tuple(_zoom_factors(stop, step) for stop, step in
                                    ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03))),
                     stochastic=False, description="average of the image zoomed about its centre by each factor")
def zoom_blur(images: torch.Tensor, factors: tuple[float, ...], seeds: torch.Tensor) -> torch.Tensor:
    """``(x + sum_z zoom_z(x)) / (len(factors) + 1)``, where ``zoom_z`` crops the central
    ``ceil(n / z)`` pixels of each axis (length ``n``) and scales them back by ``z`` with
    linear interpolation (``scipy.ndimage.zoom(order=1)``: output length ``round(ceil(n / z)
    * z)``, end samples aligned), keeping ``n`` central pixels; ``param`` is the factors.
    Applied as one sparse matrix on the flattened images (:func:`zoom_operator`)."""
    height, width = images.shape[-2:]
    operator = zoom_operator(height, width, tuple(factors), images.device, images.dtype)
    return (operator @ images.reshape(-1, height * width).T).T.reshape(images.shape)


@functools.lru_cache(maxsize=10)
def zoom_operator(height: int, width: int, factors: tuple[float, ...], device: torch.device,
                  dtype: torch.dtype) -> torch.Tensor:
    """``zoom_blur`` as a sparse ``(H*W) x (H*W)`` CSR matrix on row-major flattened images
    (4 entries per pixel and factor before merging duplicates: 24-37 per pixel after; the last
    10 built are kept, 10-15 MB each at 224 x 224, built in about 0.3 s there)."""
    size = height * width
    pixel = torch.arange(size)[:, None]
    columns, weights = [pixel], [torch.ones(size, 1, dtype=torch.float64)]
    for factor in factors:
        (rows, row_weights), (cols, col_weights) = _zoom_taps(height, factor), _zoom_taps(width, factor)
        columns.append((rows[:, None, :, None] * width + cols[None, :, None, :]).reshape(size, 4))
        weights.append((row_weights[:, None, :, None] * col_weights[None, :, None, :]).reshape(size, 4))
    columns, order = torch.cat(columns, 1).sort(1)
    weights = torch.cat(weights, 1).gather(1, order) / (len(factors) + 1)
    keys, entry = torch.unique_consecutive((pixel * size + columns).flatten(), return_inverse=True)
    values = torch.zeros(len(keys), dtype=torch.float64).index_add_(0, entry, weights.flatten())
    starts = torch.cat([torch.zeros(1, dtype=torch.int64), torch.bincount(keys // size, minlength=size).cumsum(0)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch calls its sparse CSR support beta
        operator = torch.sparse_csr_tensor(starts.int(), (keys % size).int(), values.to(dtype), (size, size))
        return operator.to(device)


def _zoom_taps(n: int, factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The two input pixels (``n x 2``, int64) and their linear-interpolation weights
    (``n x 2``, float64) each output pixel of an axis of length ``n`` reads under the zoom by
    ``factor``. Weights are 0 where scipy's rounding puts a sample just past the crop's last
    pixel, which ``scipy.ndimage.zoom`` (mode ``constant``) fills with 0 (e.g. the last row
    for ``n = 160``, ``factor = 1.27``)."""
    crop = math.ceil(n / factor)
    zoomed = round(crop * factor)
    spacing = (crop - 1) / (zoomed - 1) if zoomed > 1 else 0.0
    position = (torch.arange(n, dtype=torch.float64) + (zoomed - n) // 2) * spacing  # within the crop
    first = position.floor().clamp(0, max(crop - 2, 0))
    fraction = position - first
    source = first.long() + (n - crop) // 2
    weights = torch.stack([1 - fraction, fraction], 1) * (position <= crop - 1)[:, None]
    return torch.stack([source, (source + 1).clamp(max=n - 1)], 1), weights


@register_corruption("glass_blur", cifar=((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
                     imagenet=((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)), stochastic=True,
                     description="Gaussian blur, local random pixel copies, Gaussian blur again")
def glass_blur(images: torch.Tensor, param: tuple[float, int, int], seeds: torch.Tensor) -> torch.Tensor:
    """:func:`glass_blur_offsets` with offsets ``(dy, dx)`` drawn uniformly in ``[-max_delta,
    max_delta - 1]^2`` per pixel and pass (one uniform number each), per image; ``param`` is
    ``(sigma, max_delta, iterations)``."""
    sigma, delta, iterations = param
    region = (max(images.shape[-2] - 2 * delta, 0), max(images.shape[-1] - 2 * delta, 0))
    codes = (per_image_rand(seeds, (iterations, 1, *region), images.device) * (2 * delta) ** 2).long()
    return glass_blur_offsets(images, sigma, torch.cat([codes // (2 * delta), codes % (2 * delta)], 2) - delta)


def glass_blur_offsets(images: torch.Tensor, sigma: float, offsets: torch.Tensor) -> torch.Tensor:
    """The reference's glass blur with given offsets: a Gaussian blur (edges replicated),
    quantized down to 1/255 steps as the reference's uint8 cast does, one
    :func:`glass_sources` pass per entry of ``offsets`` (``B x passes x 2 x (H - 2 delta) x
    (W - 2 delta)``), then the same Gaussian blur again."""
    batch, channels, height, width = images.shape
    blurred = torch.floor(filters.gaussian_blur(images, sigma, mode="nearest") * 255) / 255
    sources = torch.arange(height * width, device=images.device).expand(batch, -1)
    for step in offsets.unbind(1):
        sources = sources.gather(1, glass_sources(step, height, width))
    shuffled = blurred.flatten(2).gather(2, sources[:, None].expand(-1, channels, -1))
    return filters.gaussian_blur(shuffled.view_as(images), sigma, mode="nearest")


def glass_sources(offsets: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Where each pixel's value comes from after one pass of the reference's pixel "swaps".

    The pass visits the pixels ``(h, w)`` of rows ``H - delta`` down to ``delta + 1`` and,
    in each row, columns ``W - delta`` down to ``delta + 1``, with offsets ``(dy, dx) =
    offsets[:, :, h - delta - 1, w - delta - 1]`` (``B x 2 x (H - 2 delta) x (W - 2
    delta)``). On H x W x 3 arrays the reference's tuple swap of two pixel views copies:
    ``x[h, w] = x[h + dy, w + dx]`` and the other pixel keeps its value (so ImageNet-C and
    CIFAR-C were made this way, and this function reproduces it). A visited pixel thus
    takes the final value of its source when that was visited before it (an offset after
    ``(0, 0)`` in row-major order, inside the visited region), else the source's original
    value; following these links gives, per image, the flat index (``B x H*W``) of the
    original pixel whose value ends at each position.
    """
    batch, _, rows, cols = offsets.shape
    delta = (height - rows) // 2
    device = offsets.device
    dy, dx = offsets.unbind(1)
    to_row = torch.arange(rows, device=device)[:, None] + dy  # the source in region coordinates
    to_col = torch.arange(cols, device=device) + dx
    later = (dy > 0) | ((dy == 0) & (dx > 0))
    chained = (later & (to_row < rows) & (to_col >= 0) & (to_col < cols)).flatten(1)
    base = torch.arange(batch, device=device)[:, None] * (rows * cols)  # flat indices over the batch
    link = torch.where(chained, (to_row * cols + to_col).flatten(1) + base, -1).flatten()
    end = torch.arange(batch * rows * cols, device=device)  # the last pixel of each chain of links
    todo = (link >= 0).nonzero().squeeze(1)
    while len(todo):
        step = link.index_select(0, end.index_select(0, todo))
        end.index_copy_(0, todo, step)
        todo = todo[link.index_select(0, step) >= 0]
    source = ((to_row + delta + 1) * width + to_col + delta + 1).flatten()[end]
    sources = torch.arange(height * width, device=device).repeat(batch, 1)
    region = sources.view(batch, height, width)[:, delta + 1:delta + 1 + rows, delta + 1:delta + 1 + cols]
    region.copy_(source.view(batch, rows, cols))
    return sources
