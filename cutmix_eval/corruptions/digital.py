"""Digital corruptions, batched in torch (see :mod:`cutmix_eval.corruptions.registry`): contrast,
elastic_transform, pixelate and jpeg_compression, and the extra saturate.

They compute what the reference code of Hendrycks & Dietterich computes (ImageNet-C through
the ``imagecorruptions`` package, CIFAR-10-C through the original CIFAR script) on float images
without quantizing in between. Images are ``B x 3 x H x W`` float in [0, 1]; pixel coordinates
are ``(row, column)`` with pixel centres at integers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.io import decode_jpeg, encode_jpeg

from cutmix_eval.corruptions.colour import rescale_saturation
from cutmix_eval.corruptions.filters import gaussian_blur
from cutmix_eval.corruptions.registry import per_image_draws, register_corruption


@register_corruption("contrast", cifar=(.75, .5, .4, .3, .15), imagenet=(.4, .3, .2, .1, .05), stochastic=False,
                     description="pixels pulled towards each channel's image mean by a factor")
def contrast(images: torch.Tensor, factor: float, seeds: torch.Tensor) -> torch.Tensor:
    """``(x - m) * factor + m`` with ``m`` the mean of each image's channel."""
    means = images.mean(dim=(-2, -1), keepdim=True)
    return (images - means) * factor + means


@register_corruption("saturate", cifar=((.3, 0), (.1, 0), (1.5, 0), (2, .1), (2.5, .2)),
                     imagenet=((.3, 0), (.1, 0), (2, 0), (5, .1), (20, .2)), stochastic=False,
                     description="HSV saturation scaled and offset")
def saturate(images: torch.Tensor, param: tuple[float, float], seeds: torch.Tensor) -> torch.Tensor:
    """``param = (factor, offset)``: saturation ``S -> clip(S * factor + offset, 0, 1)`` in
    scikit-image's HSV."""
    return rescale_saturation(images, *param)


def box_reduction(size_in: int, size_out: int) -> torch.Tensor:
    """``size_out x size_in`` matrix of Pillow's ``Image.BOX`` reduction of an axis: output
    pixel ``j`` averages the input pixels ``x`` with ``((x - c) + 1/2) / s`` in (-1/2, 1/2] and
    within ``floor(c -+ s / 2 + 1/2)``, ``c = (j + 1/2) s`` its centre and ``s = size_in /
    size_out``, in Pillow's double-precision arithmetic (so a pixel on a window boundary may
    count in two windows or in none, as in Pillow)."""
    scale = size_in / size_out
    centres = (torch.arange(size_out, dtype=torch.float64) + 0.5)[:, None] * scale
    pixels = torch.arange(size_in, dtype=torch.float64)[None, :]
    offsets = ((pixels - centres) + 0.5) * (1.0 / scale)
    inside = ((offsets > -0.5) & (offsets <= 0.5) & (pixels >= (centres - scale / 2 + 0.5).floor())
              & (pixels < (centres + scale / 2 + 0.5).floor())).double()
    return inside / inside.sum(dim=1, keepdim=True)


def enlargement_sources(size_in: int, size_out: int, kind: str) -> torch.Tensor:
    """Source pixel of each output pixel when Pillow enlarges an axis from ``size_in`` to
    ``size_out`` pixels: ``floor(x_i)`` with ``x_i = (i + 0.5) * size_in / size_out``. With
    ``kind="box"`` (``Image.BOX``, whose filter then picks one pixel) ``x_i`` is that product;
    with ``kind="nearest"`` (``Image.NEAREST``, an affine transform) it is accumulated step by
    step from ``x_0`` in double precision as Pillow does, which moves a few exact ties down."""
    step = size_in / size_out
    if kind == "box":
        positions = (torch.arange(size_out, dtype=torch.float64) + 0.5) * step
    else:
        positions = torch.full((size_out,), step, dtype=torch.float64)
        positions[0] = 0.5 * step
        positions = positions.cumsum(0)
    return positions.floor().long().clamp_(max=size_in - 1)


@register_corruption("pixelate", cifar=tuple((scale, "box") for scale in (.95, .9, .85, .75, .65)),
                     imagenet=tuple((scale, "nearest") for scale in (.6, .5, .4, .3, .25)), stochastic=False,
                     description="box-downsampled, then enlarged back")
def pixelate(images: torch.Tensor, param: tuple[float, str], seeds: torch.Tensor) -> torch.Tensor:
    """``param = (scale, enlarge)``: Pillow's box reduction to ``int(side * scale)`` pixels per
    side (two matrix products), then enlarged back to the original size by copying pixels as
    Pillow's ``enlarge`` filter does (``"nearest"`` for ImageNet-C, ``"box"`` for CIFAR-10-C;
    see :func:`enlargement_sources`)."""
    scale, enlarge = param
    height, width = images.shape[-2:]
    rows = box_reduction(height, int(height * scale)).to(images.device, images.dtype)
    cols = box_reduction(width, int(width * scale)).to(images.device, images.dtype)
    small = rows @ images @ cols.T
    across = enlargement_sources(len(cols), width, enlarge).to(images.device)
    down = enlargement_sources(len(rows), height, enlarge).to(images.device)
    return small.index_select(3, across).index_select(2, down)  # columns first: the cheaper order


@register_corruption("jpeg_compression", cifar=(80, 65, 58, 50, 40), imagenet=(25, 18, 15, 10, 7), stochastic=False,
                     description="JPEG encoded and decoded at a quality")
def jpeg_compression(images: torch.Tensor, quality: int, seeds: torch.Tensor) -> torch.Tensor:
    """Each image rounded to 8 bits, JPEG-encoded at ``quality`` and decoded with libjpeg
    through torchvision (on the CPU whatever the device, so results do not depend on it).
    torchvision's defaults (4:2:0 chroma subsampling, standard tables) give bit-identical
    results to Pillow's ``save(..., "JPEG", quality=q)`` used by the reference."""
    pixels = (images.detach() * 255).round_().clamp_(0, 255).to("cpu", torch.uint8)
    decoded = decode_jpeg(encode_jpeg(list(pixels), quality=quality))
    return (torch.stack(decoded).float() / 255).to(images.device)


def sample_bilinear(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, *,
                    mirror_at_centres: bool) -> torch.Tensor:
    """``images`` (``B x C x H x W``) sampled bilinearly at pixel coordinates ``rows``, ``cols``
    (``B x H' x W'``). Outside the image it is mirrored about the edge pixels' centres
    (``mirror_at_centres``: OpenCV's ``BORDER_REFLECT_101``) or about the image border
    (scipy.ndimage's ``reflect``)."""
    height, width = images.shape[-2:]
    if mirror_at_centres:
        grid = torch.stack((2 * cols / (width - 1) - 1, 2 * rows / (height - 1) - 1), dim=-1)
    else:
        grid = torch.stack(((2 * cols + 1) / width - 1, (2 * rows + 1) / height - 1), dim=-1)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="reflection",
                         align_corners=mirror_at_centres)


def random_affine_sources(height: int, width: int, jitter: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Source ``(rows, cols)`` (each ``B x H x W``) of each output pixel under the affine map
    that moves three corners of the square of half-side ``min(H, W) // 3`` centred at pixel
    ``(W // 2, H // 2)`` by ``jitter`` (``B x 3 x 2`` pixel offsets in (x, y)), as OpenCV's
    ``getAffineTransform`` and ``warpAffine`` use it."""
    cx, cy, half = float(width // 2), float(height // 2), float(min(height, width) // 3)
    points = torch.tensor([[cx + half, cy + half], [cx + half, cy - half], [cx - half, cy - half]],
                          dtype=torch.float64)
    homogeneous = torch.cat((points, torch.ones(3, 1, dtype=torch.float64)), dim=1)
    forward = torch.linalg.solve(homogeneous, points + jitter.double().cpu()).transpose(1, 2)  # B x 2 x 3
    inverse = torch.linalg.inv(forward[:, :, :2])
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    targets = torch.stack((xs, ys), dim=-1)[None] - forward[:, None, None, :, 2]
    sources = torch.einsum("bij,bhwj->bhwi", inverse, targets).float().to(jitter.device)
    return sources[..., 1], sources[..., 0]


@register_corruption("elastic_transform",
                     cifar=((0, 0, .08), (.05, .2, .07), (.08, .06, .06), (.1, .04, .05), (.1, .03, .03)),
                     imagenet=tuple((1.25 * a, .01, 0) for a in (.05, .065, .085, .1, .12)), stochastic=True,
                     description="random affine jitter, then a smooth random displacement field")
def elastic_transform(images: torch.Tensor, param: tuple[float, float, float], seeds: torch.Tensor) -> torch.Tensor:
    """``param = (displacement, smoothness, affine)``, all as fractions of the image height H.

    First (when ``affine > 0``, CIFAR-10-C) an affine warp moving three points by up to
    ``affine * H`` pixels (bilinear, mirrored beyond the edge pixels); then each pixel is
    displaced by ``displacement * H`` times a uniform [-1, 1] noise field per axis smoothed by a
    Gaussian of standard deviation ``smoothness * H`` (truncated at 3 sigma, reflected border),
    sampled bilinearly with the image mirrored at its border. The ImageNet-C row is the
    ``imagecorruptions`` warp: its ``alpha * 0.005 * H`` amplitude is ``1.25 * a * H``."""
    displacement, smoothness, affine = param
    height, width = images.shape[-2:]
    jitter, noise = per_image_draws(seeds, [(3, 2), (2, height, width)], images.device)
    if affine > 0:
        rows, cols = random_affine_sources(height, width, (2 * jitter - 1) * affine * height)
        images = sample_bilinear(images, rows, cols, mirror_at_centres=True)
    if displacement == 0:
        return images
    field = gaussian_blur(2 * noise - 1, smoothness * height, mode="reflect", truncate=3.0) * displacement * height
    ys, xs = torch.meshgrid(torch.arange(height, device=images.device, dtype=torch.float32),
                            torch.arange(width, device=images.device, dtype=torch.float32), indexing="ij")
    return sample_bilinear(images, ys + field[:, 1], xs + field[:, 0], mirror_at_centres=False)
