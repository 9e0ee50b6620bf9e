"""Procedural frost textures for the frost corruption.

The reference frost corruption blends each image with a random crop of one of six photographs
of frost on glass shipped with its code. We do not ship those photographs; instead we grow our
own textures from fixed seeds, in "photograph pixels" (the scale of the reference pictures):

* fern-like ice crystals: straight stems with side branches at about +-60 degrees, shortening
  towards the tip, and a third level of needles on the branches, rasterized as thin bright lines
  (with a faint glow) whose overlaps saturate;
* crystals grow where the glass is cold: their density follows a smooth random field;
* a frosted-glass background: noise with a power spectrum falling as ``1 / f^2.2`` (measured on
  the reference photographs: -1.9 to -2.3 on 224 px crops), tinted grey-blue;
* six styles (tint, brightness, density, branch angle, crystal size) spanning the reference
  set, from bright white frost to dark blue fern frost.

The statistics of the textures are aimed at those of the reference photographs measured on
224 px crops of the 1.1 x enlarged pictures: channel means about (130, 149, 162) / 255, a
within-crop standard deviation about 25 / 255 per channel, a radially averaged power spectrum
with log-log slope about -2.1, and mean horizontal gradient about 10 / 255 (see the
fidelity tests). Differences that remain: the textures are synthetic (no photographic grain,
depth of field or JPEG artefacts), crystals are straight-line ferns, and the random crop
chooses among six generated textures with equal probability (the reference's six files
include two identical ones).

:func:`frost_textures` returns the textures scaled by the corruption's zoom (1.1 for
ImageNet-C, 0.2 for CIFAR-10-C, as the reference resizes its photographs) and is cached per
output size, zoom and device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

#: side of the generated textures in photograph pixels, at least (the reference photos are 315-600 px high)
BASE_SIDE = 640


@dataclass(frozen=True)
class FrostStyle:
    """How one texture looks: ``background`` and ``crystal`` RGB in [0, 1], the background's
    relative ``variation``, ``density`` (stems per 10^4 px^2), ``stem_length`` (median, px),
    ``branch_angle`` (degrees from the stem) and crystal ``opacity``."""

    background: tuple[float, float, float]
    crystal: tuple[float, float, float]
    variation: float
    density: float
    stem_length: float
    branch_angle: float
    opacity: float


STYLES = (
    FrostStyle((.30, .60, .66), (.78, .93, .96), .35, .6, 70, 60, .5),  # blue-green frosted glass
    FrostStyle((.68, .70, .73), (.96, .97, .99), .25, 4.0, 55, 35, .85),  # dense white needles
    FrostStyle((.60, .65, .71), (.94, .96, .99), .25, 4.0, 45, 60, .8),  # grey-white window frost
    FrostStyle((.45, .50, .56), (.90, .93, .97), .35, 3.0, 60, 55, .8),  # grey window, feathery
    FrostStyle((.28, .33, .40), (.84, .90, .95), .45, 2.5, 70, 50, .8),  # dark glass, white ferns
    FrostStyle((.16, .24, .30), (.60, .74, .84), .45, 0.8, 140, 60, .75),  # dark blue, large ferns
)


def power_law_noise(side: int, exponent: float, generator: torch.Generator) -> torch.Tensor:
    """``side x side`` Gaussian noise with power spectrum ``~ 1 / f^exponent``, zero mean, unit std."""
    white = torch.randn(side, side, generator=generator)
    fy = torch.fft.fftfreq(side)[:, None]
    fx = torch.fft.rfftfreq(side)[None, :]
    radius = torch.sqrt(fx ** 2 + fy ** 2).clamp_(min=1.0 / side)
    field = torch.fft.irfft2(torch.fft.rfft2(white) * radius ** (-exponent / 2), s=(side, side))
    return (field - field.mean()) / field.std()


def fern_segments(side: int, style: FrostStyle, cold: torch.Tensor, generator: torch.Generator) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor]:
    """Line segments of the crystals: ``(starts, ends, weights)`` with points ``N x 2`` (x, y in
    pixels) and per-segment brightness ``N``. Stems start where ``cold`` (``side x side`` in
    [0, 1]) is high; each carries side branches on both sides, and each branch needles."""
    candidates = int(style.density * side * side / 1e4 * 2)
    starts = torch.rand(candidates, 2, generator=generator) * side
    pixel = starts.long().clamp_(max=side - 1)
    keep = torch.rand(candidates, generator=generator) < cold[pixel[:, 1], pixel[:, 0]]
    starts = starts[keep]
    count = len(starts)
    angles = torch.rand(count, generator=generator) * 2 * math.pi
    lengths = style.stem_length * torch.exp(0.5 * torch.randn(count, generator=generator))
    stem = (starts, angles, lengths, torch.ones(count))
    branches = side_branches(*stem, style.branch_angle, 0.45, 7.0, generator)
    needles = side_branches(*branches, style.branch_angle, 0.35, 4.0, generator)
    parts = [stem, branches, needles]
    ends = [start + length[:, None] * torch.stack((torch.cos(angle), torch.sin(angle)), 1)
            for start, angle, length, _ in parts]
    return (torch.cat([p[0] for p in parts]), torch.cat(ends),
            torch.cat([p[3] * w for p, w in zip(parts, (1.0, 0.8, 0.6))]))


def side_branches(starts: torch.Tensor, angles: torch.Tensor, lengths: torch.Tensor, weights: torch.Tensor,
                  spread: float, relative: float, spacing: float, generator: torch.Generator) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Branches of segments ``(starts N x 2, angles N, lengths N, weights N)``: every ``spacing``
    pixels along each, one on each side at ``spread`` degrees (+- 10), ``relative`` times the
    remaining length long; returned in the same form."""
    slots = max(1, int(lengths.max().item() // spacing))
    along = (torch.arange(1, slots + 1) * spacing)[None, :].expand(len(lengths), slots)
    parent = torch.arange(len(lengths))[:, None].expand(-1, slots)
    inside = along < lengths[:, None]
    parent, along = parent[inside].repeat(2), along[inside].repeat(2)
    side = torch.cat((torch.ones(len(parent) // 2), -torch.ones(len(parent) // 2)))
    jitter = (torch.rand(len(parent), generator=generator) * 2 - 1) * math.radians(10)
    direction = torch.stack((torch.cos(angles[parent]), torch.sin(angles[parent])), 1)
    remaining = lengths[parent] - along
    scale = 0.6 + 0.8 * torch.rand(len(parent), generator=generator)
    return (starts[parent] + along[:, None] * direction, angles[parent] + side * math.radians(spread) + jitter,
            relative * remaining * scale, weights[parent])


def rasterize(starts: torch.Tensor, ends: torch.Tensor, weights: torch.Tensor, side: int) -> torch.Tensor:
    """``side x side`` line density: points every half pixel along each segment, splatted
    bilinearly with their segment's weight (wrapping around the texture's edges)."""
    lengths = (ends - starts).norm(dim=1)
    steps = (lengths * 2).ceil().long().clamp_(min=1)
    segment = torch.repeat_interleave(torch.arange(len(steps)), steps)
    first = torch.cumsum(steps, 0) - steps
    fraction = (torch.arange(len(segment)) - first[segment]).float() / steps[segment]
    points = starts[segment] + fraction[:, None] * (ends - starts)[segment]
    corner = points.floor()
    offset = points - corner
    corner = corner.long()
    density = torch.zeros(side * side)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        share = (offset[:, 0] if dx else 1 - offset[:, 0]) * (offset[:, 1] if dy else 1 - offset[:, 1])
        index = ((corner[:, 1] + dy) % side) * side + (corner[:, 0] + dx) % side
        density.index_add_(0, index, 0.5 * weights[segment] * share)
    return density.view(side, side)


def blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """``side x side`` image convolved with a Gaussian (periodic boundary), through the FFT."""
    side = image.shape[-1]
    freq = torch.sqrt(torch.fft.fftfreq(side)[:, None] ** 2 + torch.fft.rfftfreq(side)[None, :] ** 2)
    transfer = torch.exp(-2 * (math.pi * sigma * freq) ** 2)
    return torch.fft.irfft2(torch.fft.rfft2(image) * transfer, s=image.shape)


def relief(height: torch.Tensor) -> torch.Tensor:
    """Shading of a height map lit from the upper left: the slope along the light (periodic)."""
    return (height - height.roll((1, 1), dims=(0, 1))) / math.sqrt(2)


def frost_texture(style: FrostStyle, seed: int, side: int = BASE_SIDE) -> torch.Tensor:
    """One ``3 x side x side`` texture in [0, 1], deterministic for ``(style, seed, side)``."""
    generator = torch.Generator().manual_seed(seed)
    cold = torch.sigmoid(2.5 * power_law_noise(side, 4.0, generator))
    lines = rasterize(*fern_segments(side, style, cold, generator), side)
    crystals = 1 - torch.exp(-(blur(lines, 0.4) + 0.1 * blur(lines, 2.5)))
    glass = 1 + style.variation * power_law_noise(side, 2.2, generator) / 2
    bumps = power_law_noise(side, 2.0, generator)
    shade = 0.2 * relief(0.3 * bumps + 0.6 * blur(lines, 0.8))
    alpha = (style.opacity * crystals)[None]
    background = torch.tensor(style.background)[:, None, None] * glass[None]
    texture = background * (1 - alpha) + torch.tensor(style.crystal)[:, None, None] * alpha + shade[None]
    return texture.clamp_(0.0, 1.0)


@lru_cache(maxsize=4)
def base_textures(side: int) -> torch.Tensor:
    """The ``len(STYLES) x 3 x side x side`` textures (CPU), texture ``k`` grown from seed ``k``."""
    return torch.stack([frost_texture(style, seed, side) for seed, style in enumerate(STYLES)])


@lru_cache(maxsize=8)
def frost_textures(height: int, width: int, zoom: float, device: str = "cpu") -> torch.Tensor:
    """``K x 3 x h x w`` frost textures for ``height x width`` images: the base textures
    (large enough that ``h, w >= 1.5 x`` the image) resized by ``zoom`` with bicubic
    interpolation (no antialiasing, like the reference's OpenCV resize)."""
    side = max(BASE_SIDE, math.ceil(1.5 * max(height, width) / zoom))
    textures = base_textures(side)
    resized = F.interpolate(textures, scale_factor=zoom, mode="bicubic", align_corners=False)
    return resized.clamp_(0.0, 1.0).to(device)
