"""Noise and blur corruptions and the shared filters, against scipy and the reference package.

The reference is ``imagecorruptions`` (the ``imagecorruptions-imaug`` fork; ImageNet-C table):
it takes an H x W x 3 uint8 image and returns uint8, truncating (not rounding) its float
result. Deterministic corruptions are compared pixel by pixel on natural images, both raw
(``255 * ours`` vs the reference: about 0.5 from the truncation) and after truncating ours
the same way (the tolerances below, in 0..255 units). Glass blur is compared exactly with the
reference's own random offsets; the stochastic corruptions in distribution. The filters
match scipy / the reference to float64 precision on random arrays.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.stats
import torch
import torch.nn.functional as F

pytest.importorskip("imagecorruptions")
import imagecorruptions.corruptions  # noqa: E402
from imagecorruptions import corrupt as reference  # noqa: E402
from imagecorruptions.corruptions import _motion_blur as reference_motion_blur  # noqa: E402
from imagecorruptions.corruptions import disk as reference_disk  # noqa: E402
from skimage import data as photos  # noqa: E402

from cutmix_eval.corruptions import corrupt, filters, get_corruption  # noqa: E402
from cutmix_eval.corruptions.blur import disk_kernel, glass_blur_offsets, glass_sources  # noqa: E402
from cutmix_eval.corruptions.noise import poisson_cdf_bound, poisson_quantile  # noqa: E402
from cutmix_eval.corruptions.registry import per_image_rand  # noqa: E402

NOISE = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")
BLUR = ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur")
SEVERITIES = (1, 2, 3, 4, 5)

#: per deterministic corruption: (raw, truncated) mean absolute difference tolerated, 0..255 units
TOLERANCE = {"defocus_blur": (0.55, 0.05), "zoom_blur": (0.55, 0.01), "gaussian_blur": (0.55, 0.01),
             "motion_blur": (0.55, 0.01), "glass_blur": (0.55, 0.01)}


@functools.cache
def photo(name: str, height: int, width: int) -> np.ndarray:
    """scikit-image's photograph ``name``, resized (antialiased) to ``height x width x 3`` uint8."""
    image = torch.from_numpy(getattr(photos, name)()).permute(2, 0, 1)[None].float() / 255
    image = F.interpolate(image, size=(height, width), mode="bilinear", antialias=True)[0]
    return (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def batch(*images: np.ndarray) -> torch.Tensor:
    """uint8 H x W x 3 images as a ``B x 3 x H x W`` float batch in [0, 1]."""
    return torch.stack([torch.from_numpy(image).permute(2, 0, 1) for image in images]).float() / 255


def pixels(images: torch.Tensor) -> np.ndarray:
    """The first image of a batch in the reference's layout and units (H x W x 3, 0..255 floats)."""
    return images[0].clamp(0, 1).permute(1, 2, 0).double().numpy() * 255


def differences(ours: torch.Tensor, ref: np.ndarray) -> tuple[float, float]:
    """Mean absolute difference to the reference, raw and with ours truncated like the reference."""
    ours = pixels(ours)
    return float(np.abs(ours - ref).mean()), float(np.abs(np.floor(ours + 1e-4) - ref).mean())


def reference_seeded(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """The reference's corruption with numpy's global generator seeded first (as float)."""
    np.random.seed(seed)
    return reference(image, severity, name).astype(np.float64)


def imagenet(name: str, severity: int):
    """The ImageNet-table parameter of ``name`` at ``severity``."""
    return get_corruption(name).params["imagenet"][severity - 1]


# ---------------------------------------------------------------- filters


@pytest.mark.parametrize("mode", filters.MODES)
def test_gaussian_blur_matches_scipy(mode):
    rng = np.random.default_rng(0)
    images = rng.random((2, 2, 17, 23))
    for sigma, truncate in ((0.3, 4.0), (1.0, 4.0), (2.5, 3.0), (6.0, 4.0)):
        expected = np.stack([[ndi.gaussian_filter(c, sigma, mode=mode, truncate=truncate) for c in image]
                             for image in images])
        ours = filters.gaussian_blur(torch.from_numpy(images), sigma, mode=mode, truncate=truncate)
        np.testing.assert_allclose(ours.numpy(), expected, atol=1e-12)
    tiny = rng.random((1, 1, 5, 7))  # kernel radius 12 reaches beyond the image on both sides
    np.testing.assert_allclose(filters.gaussian_blur(torch.from_numpy(tiny), 3.0, mode=mode)[0, 0].numpy(),
                               ndi.gaussian_filter(tiny[0, 0], 3.0, mode=mode), atol=1e-12)


def test_gaussian_blur_per_image_sigma():
    images = np.random.default_rng(1).random((3, 2, 19, 16))
    sigmas = (0.0, 1.5, 4.0)
    ours = filters.gaussian_blur(torch.from_numpy(images), torch.tensor(sigmas), mode="nearest")
    expected = np.stack([[ndi.gaussian_filter(c, s, mode="nearest") for c in image]
                         for image, s in zip(images, sigmas)])
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("mode", filters.MODES)
@pytest.mark.parametrize("shape, kernel", [((17, 23), (5, 7)), ((4, 5), (9, 11))])
def test_correlate2d_matches_scipy(mode, shape, kernel):
    rng = np.random.default_rng(2)
    images, weights = rng.random((2, 3, *shape)), rng.random(kernel)
    expected = np.stack([[ndi.correlate(c, weights, mode=mode) for c in image] for image in images])
    ours = filters.correlate2d(torch.from_numpy(images), torch.from_numpy(weights), mode)
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-10)


@pytest.mark.parametrize("shape", [(32, 32), (40, 57)])
@pytest.mark.parametrize("radius, sigma", [(6, 1), (10, 3), (20, 15)])
def test_motion_blur_filter_matches_reference(shape, radius, sigma):
    """Any angle (snow blurs at -135..-45 degrees); radius 20 on 32 pixels stops at the border."""
    image = np.random.default_rng(3).random((*shape, 3))
    angles = (-44.3, 12.7, 37.1, -134.7, -60.2, 100.9)
    ours = filters.motion_blur(torch.from_numpy(image).permute(2, 0, 1)[None].expand(len(angles), -1, -1, -1),
                               radius, sigma, torch.tensor(angles))
    for angle, blurred in zip(angles, ours):
        expected = reference_motion_blur(image, radius=radius, sigma=sigma, angle=angle)
        np.testing.assert_allclose(blurred.permute(1, 2, 0).numpy(), expected, atol=1e-12)


# ---------------------------------------------------------------- deterministic blurs vs the reference


@pytest.mark.parametrize("name", ["defocus_blur", "zoom_blur", "gaussian_blur", "motion_blur"])
@pytest.mark.parametrize("size, severities", [((224, 224), (1, 3, 5)), ((160, 224), (5,)), ((32, 32), SEVERITIES)])
def test_deterministic_blurs_match_reference(name, size, severities):
    """Motion blur at the reference's own random angle (numpy's generator seeded alike); at 160
    rows zoom blur meets scipy's zero row, at 32 pixels motion blur's taps stop at the border."""
    image = photo("chelsea" if size == (160, 224) else "astronaut", *size)
    raw_tolerance, truncated_tolerance = TOLERANCE[name]
    for severity in severities:
        expected = reference_seeded(image, name, severity, seed=severity)
        if name == "motion_blur":
            np.random.seed(severity)
            angle = torch.tensor([np.random.uniform(-45, 45)])
            ours = filters.motion_blur(batch(image), *imagenet(name, severity), angle)
        else:
            ours = corrupt(batch(image), name, severity, table="imagenet")
        raw, truncated = differences(ours, expected)
        assert raw <= raw_tolerance and truncated <= truncated_tolerance, (severity, raw, truncated)


@pytest.mark.parametrize("table", ["cifar", "imagenet"])
def test_disk_kernel_matches_reference(table):
    for radius, alias_blur in get_corruption("defocus_blur").params[table]:
        np.testing.assert_allclose(disk_kernel(radius, alias_blur).numpy(), reference_disk(radius, alias_blur),
                                   atol=1e-7)


# ---------------------------------------------------------------- glass blur


def sequential_copies(offsets: np.ndarray, height: int, width: int, delta: int) -> np.ndarray:
    """What the reference's loop does to an H x W x 3 image, on pixel indices (written out)."""
    source = np.arange(height * width).reshape(height, width)
    for h in range(height - delta, delta, -1):
        for w in range(width - delta, delta, -1):
            dy, dx = offsets[:, h - delta - 1, w - delta - 1]
            source[h, w] = source[h + dy, w + dx]
    return source.ravel()


@pytest.mark.parametrize("delta", [1, 2, 3, 4])
def test_glass_sources_replay_the_sequential_loop(delta):
    generator = torch.Generator().manual_seed(delta)
    for height, width in ((12, 12), (15, 19)):
        offsets = torch.randint(-delta, delta, (4, 2, height - 2 * delta, width - 2 * delta), generator=generator)
        ours = glass_sources(offsets, height, width)
        for image in range(4):
            expected = sequential_copies(offsets[image].numpy(), height, width, delta)
            np.testing.assert_array_equal(ours[image].numpy(), expected)


def reference_offsets(seed: int, height: int, width: int, delta: int, passes: int) -> torch.Tensor:
    """The offsets the reference draws with ``seed`` (numpy's legacy generator, ``(dx, dy)``
    per visited pixel in visiting order), as ``1 x passes x 2 x rows x cols`` for ours."""
    draws = np.random.RandomState(seed).randint(-delta, delta, size=(passes, height - 2 * delta,
                                                                      width - 2 * delta, 2))
    draws = draws[:, ::-1, ::-1]  # visiting order runs from the bottom-right corner
    return torch.from_numpy(np.stack([draws[..., 1], draws[..., 0]], 1).copy())[None]


@pytest.fixture
def reference_glass_uncompiled(monkeypatch):
    """The reference's glass blur with its pixel loop run as plain Python (the numba-compiled
    loop draws the same numbers and gives the same result, but compiling it takes about 5 s)."""
    loop = imagecorruptions.corruptions._shuffle_pixels_njit_glass_blur
    monkeypatch.setattr(imagecorruptions.corruptions, "_shuffle_pixels_njit_glass_blur", loop.py_func)


@pytest.mark.usefixtures("reference_glass_uncompiled")
def test_glass_blur_matches_reference_given_its_offsets():
    image = photo("astronaut", 48, 48)
    for severity in SEVERITIES:
        sigma, delta, passes = imagenet("glass_blur", severity)
        expected = reference(image, severity, "glass_blur", seed=severity).astype(np.float64)
        offsets = reference_offsets(severity, 48, 48, delta, passes)
        raw, truncated = differences(glass_blur_offsets(batch(image).double(), sigma, offsets), expected)
        assert raw <= TOLERANCE["glass_blur"][0] and truncated <= TOLERANCE["glass_blur"][1], (severity, raw)


@pytest.mark.usefixtures("reference_glass_uncompiled")
def test_glass_blur_in_distribution():
    """Mean change of the image over 8 random draws, ours vs the reference's."""
    image = photo("chelsea", 48, 48)
    for severity in (1, 5):
        ours = corrupt(batch(*[image] * 8), "glass_blur", severity, seeds=range(8), table="imagenet")
        ours_change = float((ours - batch(image)).abs().mean()) * 255
        ref_change = np.mean([np.abs(reference(image, severity, "glass_blur", seed=s) + 0.5 - image).mean()
                              for s in range(8)])
        assert ours_change == pytest.approx(ref_change, rel=0.05)


# ---------------------------------------------------------------- motion blur's random angle


def test_motion_blur_angle_per_image_and_distribution():
    image = photo("coffee", 64, 64)
    images, seeds = batch(*[image] * 12), torch.arange(12)
    angles = 90 * per_image_rand(seeds, ()) - 45
    ours = corrupt(images, "motion_blur", 3, seeds=seeds, table="imagenet")
    torch.testing.assert_close(ours, filters.motion_blur(images, *imagenet("motion_blur", 3), angles).clamp(0, 1))
    ours_change = float((ours - images).abs().mean()) * 255
    ref_change = np.mean([np.abs(reference_seeded(image, "motion_blur", 3, seed) + 0.5 - image).mean()
                          for seed in range(12)])
    assert ours_change == pytest.approx(ref_change, rel=0.1)
    many = 90 * per_image_rand(torch.arange(400), ()) - 45
    assert scipy.stats.kstest(many.numpy(), scipy.stats.uniform(-45, 90).cdf).pvalue > 0.01


# ---------------------------------------------------------------- noise in distribution


def noisy_pair(name: str, severity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clean astronaut (224 x 224), ours truncated like the reference, and the reference (0..255)."""
    image = photo("astronaut", 224, 224)
    ours = np.floor(pixels(corrupt(batch(image), name, severity, seeds=[severity], table="imagenet")) + 1e-4)
    if name == "impulse_noise":
        expected = reference(image, severity, name, seed=severity).astype(np.float64)
    else:
        expected = reference_seeded(image, name, severity, severity)
    return image.astype(np.float64), ours, expected


@pytest.mark.parametrize("name", NOISE)
@pytest.mark.parametrize("severity", [1, 3, 5])
def test_noise_change_distribution_matches_reference(name, severity):
    """Two-sample KS distance of the per-value changes (150528 each; 0.007 is the 0.1% level)."""
    clean, ours, expected = noisy_pair(name, severity)
    distance = scipy.stats.ks_2samp((ours - clean).ravel(), (expected - clean).ravel()).statistic
    assert distance < 0.01
    assert np.abs(ours - clean).mean() == pytest.approx(np.abs(expected - clean).mean(), rel=0.02)


def test_gaussian_and_speckle_noise_moments():
    x = batch(photo("astronaut", 224, 224))
    middle = (x > 0.35) & (x < 0.65)  # far from clipping at severity 1
    change = corrupt(x, "gaussian_noise", 1, table="imagenet") - x
    assert float(change[middle].mean()) == pytest.approx(0, abs=0.002)
    assert float(change[middle].std()) == pytest.approx(imagenet("gaussian_noise", 1), rel=0.02)
    relative = (corrupt(x, "speckle_noise", 1, table="imagenet") - x) / x
    assert float(relative[middle].mean()) == pytest.approx(0, abs=0.003)
    assert float(relative[middle].std()) == pytest.approx(imagenet("speckle_noise", 1), rel=0.02)


def test_shot_noise_moments():
    x = batch(photo("astronaut", 224, 224))
    scale = imagenet("shot_noise", 1)
    band = (x > 0.1) & (x < 0.5)  # Poisson(<= 30) stays below 60: no clipping
    change = corrupt(x, "shot_noise", 1, table="imagenet") - x
    assert float(change[band].mean()) == pytest.approx(0, abs=0.002)
    assert float((change[band] ** 2 / (x[band] / scale)).mean()) == pytest.approx(1, rel=0.03)


def test_poisson_quantile_is_exact():
    rng = np.random.default_rng(4)
    rates = np.concatenate([rng.random(10000) * 5, rng.random(10000) * 600, [0.0, 0.0]])
    u = np.concatenate([rng.random(20000), [1e-9, 0.999]])
    ours = poisson_quantile(torch.from_numpy(rates), torch.from_numpy(u)).numpy()
    np.testing.assert_array_equal(ours, scipy.stats.poisson.ppf(u, rates))


def test_poisson_cdf_bound_holds():
    """The Wilson-Hilferty error bound that certifies most Poisson samples without the exact CDF."""
    for k in np.unique(np.geomspace(1, 1200, 40).astype(int)) - 1:
        rates = np.linspace(0, 3 * k + 60, 10001)
        approximation, bound = poisson_cdf_bound(torch.full((len(rates),), float(k), dtype=torch.float64),
                                                 torch.from_numpy(rates))
        error = np.abs(approximation.numpy() - scipy.stats.poisson.cdf(k, rates))
        assert (error <= bound.numpy() - 1e-5).all(), k


def test_impulse_noise_fractions():
    x = batch(photo("astronaut", 224, 224))
    amount = imagenet("impulse_noise", 4)
    ours = corrupt(x, "impulse_noise", 4, table="imagenet")
    inside = (x > 0) & (x < 1)
    salt, pepper = float((ours[inside] == 1).float().mean()), float((ours[inside] == 0).float().mean())
    spread = 4 * np.sqrt(amount / 2 / inside.sum().item())
    assert salt == pytest.approx(amount / 2, abs=spread) and pepper == pytest.approx(amount / 2, abs=spread)
    untouched = (ours != 0) & (ours != 1)
    torch.testing.assert_close(ours[untouched], x[untouched], rtol=0, atol=0)


# ---------------------------------------------------------------- registry behaviour


@pytest.mark.parametrize("name", NOISE + BLUR)
@pytest.mark.parametrize("table", ["cifar", "imagenet"])
def test_per_image_seeding_shape_and_range(name, table):
    images = batch(photo("astronaut", 40, 56), photo("chelsea", 40, 56), photo("coffee", 40, 56))
    together = corrupt(images, name, 5, seeds=[10, 11, 12], table=table)
    alone = corrupt(images[1:2], name, 5, seeds=[11], table=table)
    assert together.shape == images.shape and together.dtype == torch.float32
    assert together.min() >= 0 and together.max() <= 1 and torch.isfinite(together).all()
    torch.testing.assert_close(together[1:2], alone, rtol=0, atol=1e-5)
    reseeded = corrupt(images[1:2], name, 5, seeds=[13], table=table)
    assert (reseeded - alone).abs().max() > 0.01 if get_corruption(name).stochastic else torch.equal(reseeded, alone)


@pytest.mark.parametrize("name", NOISE + BLUR)
def test_tables_differ_and_error_grows_with_severity(name):
    images = batch(*(photo(p, 32, 32) for p in ("astronaut", "chelsea", "coffee", "rocket")))
    outputs = {table: [corrupt(images, name, s, seeds=range(4), table=table) for s in SEVERITIES]
               for table in ("cifar", "imagenet")}
    assert all((a - b).abs().max() > 1e-3 for a, b in zip(outputs["cifar"], outputs["imagenet"]))
    for table, corrupted in outputs.items():
        error = [float((out - images).abs().mean()) for out in corrupted]
        assert error[0] < error[4], table
        # glass blur is not monotone in the reference either (ImageNet-C: severity 4 below 3);
        # CIFAR-C motion blur 3 and 4 differ by a tap of weight 1e-8 (radius 6 vs 8 at sigma 2)
        if name != "glass_blur":
            assert all(a <= b + 1e-7 for a, b in zip(error, error[1:])), (table, error)


def test_zoom_factors_follow_numpy_arange():
    """``np.arange(1, 1.06, 0.01)`` has 7 values (its floating-point length includes 1.06)."""
    factors = get_corruption("zoom_blur").params
    assert len(factors["cifar"][0]) == 7 and factors["cifar"][0][-1] == pytest.approx(1.06)
    assert len(factors["imagenet"][0]) == 12 and len(factors["imagenet"][4]) == 11


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NOISE + BLUR)
def test_cuda_matches_cpu(name):
    images = batch(photo("astronaut", 64, 64), photo("chelsea", 64, 64))
    for severity in (1, 5):
        cpu = corrupt(images, name, severity, table="imagenet")
        cuda = corrupt(images.cuda(), name, severity, table="imagenet").cpu()
        assert (cpu - cuda).abs().mean() < 1e-4
