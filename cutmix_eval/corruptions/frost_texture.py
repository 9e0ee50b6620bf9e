"""Procedural frost textures for the frost corruption.

The reference frost corruption blends each image with a random crop of one of six photographs
of frost on glass shipped with its code. We do not ship those photographs; instead we grow our
own textures from fixed seeds (texture ``k`` from seed ``k``), in "photograph pixels" (the
scale of the reference pictures), once per process:

* fern-like ice crystals: straight stems (log-normal lengths) with side branches on both sides
  at 35-60 degrees, shortening towards the tip, and a third level of needles on the branches,
  rasterized as thin bright lines with a faint glow, their overlaps saturating;
* crystals grow where the glass is cold: stems start with a probability that follows a smooth
  random field, so they cluster;
* a frosted-glass background: noise with a power spectrum falling as ``1 / f^2.2`` tinted by
  the style's colour, and a relief (surface bumps and the crystals' ridges lit from the upper
  left) that gives the photographs' sharp light-dark detail;
* six styles (tint, brightness, density, branch angle, crystal size) spanning the reference
  set, from blue-green frosted glass and bright white needles to dark blue fern frost.

The textures are periodic (seamless when tiled). Their statistics were tuned against the
reference photographs, both measured on 224 px crops of the 1.1 x enlarged pictures (the
ImageNet-C scale): channel means (126, 148, 162) against (132, 153, 164); within-crop standard
deviation (24, 27, 28) against (25, 24, 25); grey-level 5 / 50 / 95 % quantiles (61, 146,
228) against (54, 150, 226); log-log slope of the radially averaged power spectrum -2.21
against -2.16; power per octave of frequency within a factor 1.5 (more at 1-4 cycles per crop,
less at 8-32); mean horizontal gradient 10.6 against 10.4 (0..255 units). At the CIFAR-10-C
scale (0.2 x, 32 px crops) the reference's reduction without antialiasing folds the
photographs' finest detail in: spectral slope -1.45 against -1.06. Other differences: ours are
synthetic (no photographic grain, depth of field or JPEG artefacts), the crystals are
straight-line ferns, and each of the six textures is chosen with equal probability (two of
the reference's six files are identical; its CIFAR script draws from the first five).

:func:`frost_textures` returns the textures scaled by the corruption's zoom (1.1 for
ImageNet-C: 704 px; 0.2 for CIFAR-10-C: 128 px; as the reference resizes its photographs),
cached per zoom and device; crops wrap around, so images larger than the textures see them
repeated (the reference enlarges its photographs for such images instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

#: side of the generated textures in photograph pixels (the reference photographs are 315-600 px high)
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
    FrostStyle((.33, .63, .69), (.80, .94, .97), .35, 1.5, 42, 60, .5),  # blue-green frosted glass
    FrostStyle((.71, .73, .76), (.96, .97, .99), .25, 10, 33, 35, .85),  # dense white needles
    FrostStyle((.73, .75, .79), (.96, .97, .99), .25, 10, 27, 60, .8),  # white window frost
    FrostStyle((.48, .53, .59), (.91, .94, .97), .35, 7.5, 36, 55, .8),  # grey window, feathery
    FrostStyle((.31, .36, .43), (.85, .91, .96), .45, 6.0, 42, 50, .8),  # dark glass, white ferns
    FrostStyle((.19, .27, .33), (.62, .76, .86), .45, 2.0, 84, 60, .75),  # dark blue, large ferns
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


@lru_cache(maxsize=1)
def base_textures() -> torch.Tensor:
    """The ``len(STYLES) x 3 x BASE_SIDE x BASE_SIDE`` textures (CPU), texture ``k`` grown from
    seed ``k``; each is periodic (it tiles without seams)."""
    return torch.stack([frost_texture(style, seed) for seed, style in enumerate(STYLES)])


def zoom_periodic(textures: torch.Tensor, zoom: float) -> torch.Tensor:
    """One period (``round(n * zoom)`` pixels a side) of periodic ``K x 3 x n x n`` textures
    enlarged by ``zoom``: output pixel ``u`` samples ``(u + 0.5) / zoom - 0.5`` (modulo ``n``)
    bicubically (a = -0.75, no antialiasing, as OpenCV's ``INTER_CUBIC`` resize of the
    reference), so the result is periodic too."""
    side, margin = textures.shape[-1], 2
    padded = F.pad(textures, (margin,) * 4, mode="circular")
    size = round(side * zoom)
    source = torch.remainder((torch.arange(size, dtype=torch.float64) + 0.5) / zoom - 0.5, side) + margin
    coords = ((2 * source + 1) / (side + 2 * margin) - 1).float()
    grid = torch.stack(torch.meshgrid(coords, coords, indexing="xy"), dim=-1).expand(len(textures), -1, -1, -1)
    return F.grid_sample(padded, grid, mode="bicubic", padding_mode="border", align_corners=False)


@lru_cache(maxsize=8)
def frost_textures(zoom: float, device: str = "cpu") -> torch.Tensor:
    """``K x 3 x P x P`` periodic frost textures in [0, 1] on ``device``: the base textures
    enlarged by ``zoom`` (``P = round(BASE_SIDE * zoom)``, see :func:`zoom_periodic`); a crop
    larger than ``P`` wraps around."""
    return zoom_periodic(base_textures(), zoom).clamp_(0.0, 1.0).to(device)
