"""Weather corruptions, batched in torch (see :mod:`cutmix_eval.corruptions.registry`): snow,
frost, fog and brightness, and the extra spatter.

They compute what the reference code of Hendrycks & Dietterich computes (ImageNet-C through
the ``imagecorruptions`` package, CIFAR-10-C through the original CIFAR script) with our own
random draws, one stream per image seed, so they match it in distribution. Images are
``B x 3 x H x W`` float in [0, 1]. Frost blends with procedural textures instead of the
reference's photographs (:mod:`cutmix_eval.corruptions.frost_texture`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cutmix_eval.corruptions.colour import shift_value
from cutmix_eval.corruptions.filters import gaussian_blur, motion_blur
from cutmix_eval.corruptions.frost_texture import frost_textures
from cutmix_eval.corruptions.registry import per_image_draws, per_image_rand, register_corruption

#: ITU-R BT.601 luma weights (OpenCV's RGB2GRAY)
LUMA = (0.299, 0.587, 0.114)
#: pale turquoise water and mud brown, RGB in [0, 1]
WATER = (175 / 255, 238 / 255, 238 / 255)
MUD = (63 / 255, 42 / 255, 20 / 255)


def _rgb(colour: tuple[float, float, float], like: torch.Tensor) -> torch.Tensor:
    """``1 x 3 x 1 x 1`` colour on ``like``'s device and dtype."""
    return torch.tensor(colour, device=like.device, dtype=like.dtype).view(1, 3, 1, 1)


@register_corruption("brightness", cifar=(.05, .1, .15, .2, .3), imagenet=(.1, .2, .3, .4, .5), stochastic=False,
                     description="HSV value raised")
def brightness(images: torch.Tensor, shift: float, seeds: torch.Tensor) -> torch.Tensor:
    """HSV value ``V -> clip(V + shift, 0, 1)`` in scikit-image's HSV."""
    return shift_value(images, shift)


def plasma_fractal(seeds: torch.Tensor, size: int, decay: float, device: torch.device | str) -> torch.Tensor:
    """``B x size x size`` diamond-square height maps in [0, 1] (``size`` a power of two, the
    map periodic), one per seed: corner value 0, then at each halving of the step every square
    centre and diamond centre gets the mean of its four neighbours plus uniform noise of
    amplitude ``wibble^2``, with ``wibble`` starting at 100 and divided by ``decay`` per level.
    Each level's grid interleaves the previous corners with the new centres and diamonds."""
    noise = per_image_rand(seeds, (size * size - 1,), device) * 2 - 1
    corners = torch.zeros(len(seeds), 1, 1, device=device)
    used, wibble = 0, 100.0

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        nonlocal used
        count = total[0].numel()
        jitter = noise[:, used:used + count].view_as(total)
        used += count
        return total / 4 + wibble * wibble * jitter

    while corners.shape[-1] < size:
        around = corners + corners.roll(-1, 1)
        centres = wibbled_mean(around + around.roll(-1, 2))
        right = wibbled_mean(centres + centres.roll(1, 1) + corners + corners.roll(-1, 2))  # between corners in a row
        below = wibbled_mean(centres + centres.roll(1, 2) + corners + corners.roll(-1, 1))  # between rows of corners
        even, odd = torch.stack((corners, right), dim=-1), torch.stack((below, centres), dim=-1)
        corners = torch.stack((even, odd), dim=2).reshape(len(seeds), 2 * corners.shape[1], -1)
        wibble /= decay
    low = corners.amin(dim=(1, 2), keepdim=True)
    return (corners - low) / (corners.amax(dim=(1, 2), keepdim=True) - low)


@register_corruption("fog", cifar=((.2, 3), (.5, 3), (.75, 2.5), (1, 2), (1.5, 1.75)),
                     imagenet=((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)), stochastic=True,
                     description="plasma-fractal haze added, contrast renormalized")
def fog(images: torch.Tensor, param: tuple[float, float], seeds: torch.Tensor) -> torch.Tensor:
    """``param = (strength, decay)``: ``(x + strength * plasma) * m / (m + strength)`` with ``m``
    the image's maximum and ``plasma`` a :func:`plasma_fractal` of the next power-of-two size
    (``decay`` its roughness decay) cropped to the image's top left, the same on all channels."""
    strength, decay = param
    height, width = images.shape[-2:]
    size = 1 << (max(height, width) - 1).bit_length()
    plasma = plasma_fractal(seeds, size, decay, images.device)[:, None, :height, :width]
    peak = images.amax(dim=(1, 2, 3), keepdim=True)
    return torch.add(images, plasma, alpha=strength).mul_(peak / (peak + strength))


@register_corruption("frost", cifar=((1, .2, .2), (1, .3, .2), (.9, .4, .2), (.85, .4, .2), (.75, .45, .2)),
                     imagenet=((1, .4, 1.1), (.8, .6, 1.1), (.7, .7, 1.1), (.65, .7, 1.1), (.6, .75, 1.1)),
                     stochastic=True, description="blended with a random crop of a frost texture")
def frost(images: torch.Tensor, param: tuple[float, float, float], seeds: torch.Tensor) -> torch.Tensor:
    """``param = (image weight, frost weight, zoom)``: ``image weight * x + frost weight * f``
    with ``f`` a crop of one of the procedural frost textures scaled by ``zoom`` (0.2 for
    CIFAR-10-C, 1.1 for ImageNet-C, the factors by which the reference resizes its frost
    photographs), the texture and the crop's offset (wrapping around the periodic texture)
    drawn per image."""
    image_weight, frost_weight, zoom = param
    height, width = images.shape[-2:]
    textures = frost_textures(zoom, str(images.device))
    count, period = textures.shape[0], textures.shape[-1]
    draw = per_image_rand(seeds, (3,), "cpu")
    index = (draw[:, 0] * count).long().tolist()
    rows = ((draw[:, 1:2] * period).long() + torch.arange(height)).remainder(period).to(images.device)
    cols = ((draw[:, 2:3] * period).long() + torch.arange(width)).remainder(period).to(images.device)
    crops = torch.stack([textures[k].index_select(1, r).index_select(2, c) for k, r, c in zip(index, rows, cols)])
    return torch.add(images * image_weight, crops.to(images.dtype), alpha=frost_weight)


@register_corruption("snow", cifar=((.1, .2, 1, .6, 8, 3, .95), (.1, .2, 1, .5, 10, 4, .9),
                                    (.15, .3, 1.75, .55, 10, 4, .9), (.25, .3, 2.25, .6, 12, 6, .85),
                                    (.3, .3, 1.25, .65, 14, 12, .8)),
                     imagenet=((.1, .3, 3, .5, 10, 4, .8), (.2, .3, 2, .5, 12, 4, .7), (.55, .3, 4, .9, 12, 8, .7),
                               (.55, .3, 4.5, .85, 12, 8, .65), (.55, .3, 2.5, .85, 12, 12, .55)),
                     stochastic=True, description="motion-blurred snowflakes over a whitened image")
def snow(images: torch.Tensor, param: tuple[float, ...], seeds: torch.Tensor) -> torch.Tensor:
    """``param = (mean, std, zoom, threshold, blur radius, blur sigma, image weight)``.

    Flakes: Gaussian noise (``mean``, ``std``) on a ``ceil(H / zoom) x ceil(W / zoom)`` grid,
    enlarged by ``zoom`` (linear, corners aligned, as ``scipy.ndimage.zoom(order=1)``), zeroed
    below ``threshold``, clipped to [0, 1], motion-blurred with an angle uniform in
    [-135, -45] degrees, rounded to 8 bits and cropped to the image's top left. The image
    becomes ``w x + (1 - w) max(x, 1.5 grey + 0.5)`` (``w`` the image weight), and the flakes
    are added, once as they are and once rotated by 180 degrees."""
    mean, std, zoom, threshold, radius, sigma, weight = param
    height, width = images.shape[-2:]
    small = (math.ceil(height / zoom), math.ceil(width / zoom))
    field, angle = per_image_draws(seeds, [(1, *small), (1,)], images.device, normal=True)
    flakes = F.interpolate(field * std + mean, size=(round(small[0] * zoom), round(small[1] * zoom)),
                           mode="bilinear", align_corners=True)
    flakes = torch.where(flakes < threshold, 0.0, flakes).clamp_(0.0, 1.0)
    angles = -135 + 90 * torch.special.ndtr(angle[:, 0])
    flakes = motion_blur(flakes, radius, sigma, angles)
    flakes = (flakes * 255).round_()[..., :height, :width] / 255
    grey = (images * _rgb(LUMA, images)).sum(dim=1, keepdim=True)
    whitened = weight * images + (1 - weight) * torch.maximum(images, grey * 1.5 + 0.5)
    return whitened + flakes + flakes.flip(-2, -1)


@register_corruption("spatter", cifar=((.62, .1, .7, .7, .5, 0), (.65, .1, .8, .7, .5, 0), (.65, .3, 1, .69, .5, 0),
                                       (.65, .1, .7, .69, .6, 1), (.65, .1, .5, .68, .6, 1)),
                     imagenet=((.65, .3, 4, .69, .6, 0), (.65, .3, 3, .68, .6, 0), (.65, .3, 2, .68, .5, 0),
                               (.65, .3, 1, .65, 1.5, 1), (.67, .4, 1, .65, 1.5, 1)),
                     stochastic=True, description="water drops (severities 1-3) or mud splashes (4-5)")
def spatter(images: torch.Tensor, param: tuple[float, ...], seeds: torch.Tensor) -> torch.Tensor:
    """``param = (mean, std, sigma, threshold, strength, mud)``: a liquid layer of Gaussian
    noise (``mean``, ``std``) smoothed by a Gaussian of ``sigma`` (edges replicated) and zeroed
    below ``threshold``; then :func:`water_drops` (``mud == 0``, ``strength`` the water's
    peak opacity) or :func:`mud_splashes` (``mud == 1``, ``strength`` the splashes' blur)."""
    mean, std, sigma, threshold, strength, mud = param
    noise = per_image_rand(seeds, (1, *images.shape[-2:]), images.device, normal=True)
    liquid = gaussian_blur(noise * std + mean, sigma, mode="nearest")
    liquid = torch.where(liquid < threshold, 0.0, liquid)
    if mud:
        return mud_splashes(images, liquid > threshold, strength)
    return water_drops(images, liquid, strength)


def mud_splashes(images: torch.Tensor, wet: torch.Tensor, blur: float) -> torch.Tensor:
    """``images`` covered by mud where ``wet`` (``B x 1 x H x W`` bool) blurred by a Gaussian
    of ``blur`` (edges replicated) reaches 0.8, opacity that blurred value."""
    opacity = gaussian_blur(wet.to(images.dtype), blur, mode="nearest")
    opacity = torch.where(opacity < 0.8, 0.0, opacity)
    return images * (1 - opacity) + _rgb(MUD, images) * opacity


def water_drops(images: torch.Tensor, liquid: torch.Tensor, strength: float) -> torch.Tensor:
    """``images`` with translucent drops added where ``liquid`` (``B x 1 x H x W``, zero
    outside drops) is positive: the liquid in 8 bits times a shading that grows with the
    distance to the drops' Canny edges (truncated at 20 px, box-blurred, histogram-equalized,
    embossed and box-blurred again, in 8 bits as in OpenCV), scaled to peak ``strength``,
    times pale turquoise."""
    level = (liquid * 255).floor_().clamp_(0, 255)
    distance = chamfer_distance(canny_edges(level, 50, 150)).clamp_(max=20)
    shading = equalize_histogram(box_blur3(distance).floor_())
    shading = box_blur3(correlate3x3(shading, EMBOSS, "reflect").clamp_(0, 255)).round_()
    opacity = level * shading
    opacity = opacity / opacity.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12) * strength
    return images + opacity * _rgb(WATER, images)


#: the drops' 3 x 3 emboss kernel
EMBOSS = ((-2, -1, 0), (-1, 1, 1), (0, 1, 2))


def correlate3x3(images: torch.Tensor, kernel: tuple[tuple[float, ...], ...], mode: str) -> torch.Tensor:
    """``images`` (``B x C x H x W``) correlated with a 3 x 3 ``kernel`` (rows top to bottom),
    the border padded by ``F.pad`` ``mode`` (``"reflect"`` is OpenCV's default
    ``BORDER_REFLECT_101``), as sums of shifted slices."""
    padded = F.pad(images, (1, 1, 1, 1), mode=mode)
    height, width = images.shape[-2:]
    out = torch.zeros_like(images)
    for dy, row in enumerate(kernel):
        for dx, weight in enumerate(row):
            if weight:
                out.add_(padded[..., dy:dy + height, dx:dx + width], alpha=weight)
    return out


def box_blur3(images: torch.Tensor) -> torch.Tensor:
    """``cv2.blur(x, (3, 3))``: the 3 x 3 mean (sum, then divided by 9), border mirrored."""
    return correlate3x3(images, ((1, 1, 1),) * 3, "reflect") / 9


def canny_edges(images: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``cv2.Canny(x, low, high)`` of 8-bit ``B x 1 x H x W`` images (integer-valued floats) as
    a bool mask: 3 x 3 Sobel gradients (edges replicated), L1 magnitude, OpenCV's non-maximum
    suppression (four directions split at 22.5 and 67.5 degrees in its fixed point, magnitude
    zero outside the image), then hysteresis: pixels above ``low`` connected (8-neighbours)
    to pixels above ``high``."""
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    across, down = padded[..., 2:] - padded[..., :-2], padded[..., 2:, :] - padded[..., :-2, :]
    gx = (across[..., :-2, :] + 2 * across[..., 1:-1, :] + across[..., 2:, :]).int()  # Sobel x: [1 2 1]^T [-1 0 1]
    gy = (down[..., :-2] + 2 * down[..., 1:-1] + down[..., 2:]).int()
    ax, ay = gx.abs(), gy.abs()
    magnitude = ax + ay
    around = F.pad(magnitude, (1, 1, 1, 1))
    height, width = images.shape[-2:]

    def neighbour(dy: int, dx: int) -> torch.Tensor:
        return around[..., 1 + dy:1 + dy + height, 1 + dx:1 + dx + width]

    tan22 = int(0.4142135623730950488 * (1 << 15) + 0.5)
    horizontal = (ay << 15) < ax * tan22
    vertical = (ay << 15) > ax * (tan22 + (1 << 16))
    rising = (gx < 0) != (gy < 0)
    diagonal = torch.where(rising, (magnitude > neighbour(-1, 1)) & (magnitude > neighbour(1, -1)),
                           (magnitude > neighbour(-1, -1)) & (magnitude > neighbour(1, 1)))
    maximum = torch.where(horizontal, (magnitude > neighbour(0, -1)) & (magnitude >= neighbour(0, 1)),
                          torch.where(vertical, (magnitude > neighbour(-1, 0)) & (magnitude >= neighbour(1, 0)),
                                      diagonal))
    candidate = maximum & (magnitude > int(low))
    edges = candidate & (magnitude > int(high))
    while True:
        grown = dilate3x3(edges) & candidate
        if torch.equal(grown, edges):
            return edges
        edges = grown


def dilate3x3(mask: torch.Tensor) -> torch.Tensor:
    """``B x C x H x W`` bool ``mask`` dilated by a 3 x 3 square (8-neighbours)."""
    padded = F.pad(mask, (1, 1, 1, 1))
    rows = padded[..., :-2, :] | padded[..., 1:-1, :] | padded[..., 2:, :]
    return rows[..., :-2] | rows[..., 1:-1] | rows[..., 2:]


def chamfer_distance(edges: torch.Tensor) -> torch.Tensor:
    """``cv2.distanceTransform(~edges, cv2.DIST_L2, 5)``: for ``B x 1 x H x W`` bool ``edges``,
    each pixel's 5 x 5 chamfer distance (steps 1, 1.4 and 2.1969) to the nearest edge pixel,
    by OpenCV's two raster passes (the second is the first on the image turned by 180
    degrees); about 1e4 where there is no edge."""
    dist = F.pad(torch.where(edges[:, 0], 0.0, 1e4), (2, 2, 2, 2), value=1e4)
    dist = _chamfer_pass(_chamfer_pass(dist).flip(1, 2)).flip(1, 2)
    return dist[:, None, 2:-2, 2:-2]


def _chamfer_pass(dist: torch.Tensor) -> torch.Tensor:
    """OpenCV's forward chamfer pass on ``B x (H + 4) x (W + 4)`` distances (a 2-pixel border
    of large values): top to bottom, each pixel takes the least of its own value and the
    values of its neighbours above (two rows) plus the step to them, and of its left
    neighbour plus 1. Rows are held as ``distance - column``, in which the left neighbours'
    rule is a running minimum and every step to a neighbour above a constant."""
    a, b, c = 1.0, 1.4, 2.1969
    near_steps = torch.tensor([c - 2 * a, b - a, a, b + a, c + 2 * a], device=dist.device)
    far_steps = torch.tensor([c - a, 1e4, c + a], device=dist.device)
    ramp = torch.arange(dist.shape[2], device=dist.device, dtype=dist.dtype) * a
    dist = dist - ramp
    for y in range(2, dist.shape[1] - 2):
        near = (dist[:, y - 1].unfold(1, 5, 1) + near_steps).amin(-1)
        far = (dist[:, y - 2, 1:-1].unfold(1, 3, 1) + far_steps).amin(-1)
        dist[:, y, 2:-2] = torch.cummin(torch.minimum(torch.minimum(dist[:, y, 2:-2], near), far), dim=1).values
    return dist + ramp


def equalize_histogram(images: torch.Tensor) -> torch.Tensor:
    """``cv2.equalizeHist`` of 8-bit ``B x 1 x H x W`` images (integer-valued floats): levels
    mapped through the cumulative histogram, the lowest present level to 0, the rest to
    ``round(255 * count(level' <= level excluding the lowest) / count(above the lowest))``;
    an image of one level keeps it."""
    flat = images.flatten(1).long()
    hist = torch.zeros(len(flat), 256, device=images.device)
    hist.scatter_add_(1, flat, torch.ones(flat.shape, device=images.device))
    lowest = (hist > 0).float().argmax(dim=1, keepdim=True)
    lowest_count = hist.gather(1, lowest)
    total = flat.shape[1]
    scale = 255 / (total - lowest_count).clamp_min(1)
    lut = ((hist.cumsum(1) - lowest_count) * scale).round_().clamp_(0, 255)
    lut = torch.where(lowest_count == total, lowest.float(), lut)
    return lut.gather(1, flat).view_as(images).to(images.dtype)
