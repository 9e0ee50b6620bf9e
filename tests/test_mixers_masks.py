"""The mask-only CutMix successors: ResizeMix, FMix, GridMix, SmoothMix.

Each is checked four ways: the targets equal the per-pixel composition of the mixed
images exactly; the distribution of its masks matches the reference code's (KS, the
reference's sampling restated below with its own ``np.random`` / ``random`` / ``torch``
calls); fed the reference's own draws, it reproduces the reference's mixed images
bit for bit; and the usual contract (shapes, dtypes, seeds, one-line errors).

The ``_official_*`` functions restate the reference code (OpenMixup's
``openmixup/models/augments/{resizemix,gridmix,smoothmix}.py``, ecs-vlc/FMix's ``fmix.py``
and torchbearer hook) and record the draws they make.
"""

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from cutmix_eval.errors import UserError
from cutmix_eval.train.mixers.fmix import FMix, binarise, draw_fmix_mask, fmix_batch, low_frequency_image
from cutmix_eval.train.mixers.gridmix import GridMix, grid_mask, gridmix_batch
from cutmix_eval.train.mixers.resizemix import ResizeMix, draw_paste_box, paste_box, resizemix_batch
from cutmix_eval.train.mixers.smoothmix import SmoothMix, draw_gaussian_mask, gaussian_mask, smoothmix_batch

# ----------------------------------------------------------------------------- the references, restated


def _official_tao_box(size, scope=(0.1, 0.8), alpha=1.0, use_alpha=False):
    """OpenMixup ``resizemix``'s draw of ``tao`` and ``rand_bbox_tao``: ``(tao, cx, cy, box)``."""
    if use_alpha:
        tao = np.random.beta(alpha, alpha)
        if tao < scope[0] or tao > scope[1]:
            tao = np.random.uniform(scope[0], scope[1])
    else:
        tao = np.random.uniform(scope[0], scope[1])
    W, H = size[2], size[3]
    cut_w, cut_h = int(W * tao), int(H * tao)
    cx = np.random.randint(W)
    cy = np.random.randint(H)
    bbx1, bby1 = np.clip(cx - cut_w // 2, 0, W), np.clip(cy - cut_h // 2, 0, H)
    bbx2, bby2 = np.clip(cx + cut_w // 2, 0, W), np.clip(cy + cut_h // 2, 0, H)
    return tao, cx, cy, (bbx1, bby1, bbx2, bby2)


def _official_resizemix(img, gt_label, mode="nearest"):
    """OpenMixup ``resizemix`` (``dist_mode=False``, 4-D input, ``lam=None``), with its draws."""
    rand_index = torch.randperm(img.size(0))
    img_resize = img.clone()[rand_index]
    _, _, h, w = img.size()
    tao, cx, cy, (bbx1, bby1, bbx2, bby2) = _official_tao_box(img.size())
    img_resize = F.interpolate(img_resize, (bby2 - bby1, bbx2 - bbx1), mode=mode)
    img[:, :, bby1:bby2, bbx1:bbx2] = img_resize
    lam = 1 - ((bbx2 - bbx1) * (bby2 - bby1) / (w * h))
    return img, (gt_label, gt_label[rand_index], lam), dict(perm=rand_index, tao=tao, cx=cx, cy=cy)


def _official_fftfreqnd(h, w):
    fy = np.expand_dims(np.fft.fftfreq(h), -1)
    fx = np.fft.fftfreq(w)[: w // 2 + 2] if w % 2 == 1 else np.fft.fftfreq(w)[: w // 2 + 1]
    fz = 0
    return np.sqrt(fx * fx + fy * fy + fz * fz)


def _official_fmix_mask(alpha, decay_power, shape, max_soft=0.0, reformulate=False, record=None):
    """ecs-vlc/FMix ``sample_mask`` for a 2-D shape (``sample_lam``, ``make_low_freq_image``,
    ``binarise_mask``), recording ``lam``, the noise and the rounding coin."""
    lam = stats.beta.rvs(alpha + 1, alpha) if reformulate else stats.beta.rvs(alpha, alpha)
    h, w = shape
    freqs = _official_fftfreqnd(h, w)
    scale = np.ones(1) / (np.maximum(freqs, np.array([1.0 / max(w, h, 0)])) ** decay_power)
    param = np.random.randn(*([1] + list(freqs.shape) + [2]))
    spectrum = np.expand_dims(scale, -1)[None, :] * param
    spectrum = spectrum[:, 0] + 1j * spectrum[:, 1]
    mask = np.real(np.fft.irfftn(spectrum, shape, axes=(-2, -1)))[:1, :h, :w]
    mask = mask - mask.min()
    mask = mask / mask.max()
    idx = mask.reshape(-1).argsort()[::-1]
    mask = mask.reshape(-1)
    coin = random.random()
    num = math.ceil(lam * mask.size) if coin > 0.5 else math.floor(lam * mask.size)
    eff_soft = max_soft
    if max_soft > lam or max_soft > (1 - lam):
        eff_soft = min(lam, 1 - lam)
    soft = int(mask.size * eff_soft)
    num_low, num_high = num - soft, num + soft
    mask[idx[:num_high]] = 1
    mask[idx[num_low:]] = 0
    mask[idx[num_low:num_high]] = np.linspace(1, 0, (num_high - num_low))
    if record is not None:
        record.update(lam=lam, noise=param[0], coin=coin)
    return lam, mask.reshape((1, h, w))


def _official_fmix(x, alpha=1.0, decay_power=3, max_soft=0.0):
    """The torchbearer hook's ``__call__``: mask, ``torch.randperm`` partners, mix."""
    record = {}
    lam, mask = _official_fmix_mask(alpha, decay_power, x.shape[2:], max_soft, record=record)
    record["mask"] = mask[0].copy()
    index = torch.randperm(x.size(0))
    mask = torch.from_numpy(mask).float()
    x1, x2 = mask * x, x[index] * (1 - mask)
    record["perm"] = index
    return x1 + x2, lam, record


def _official_rand_grid(lam, size, cut_area_ratio, cut_aspect_ratio, n_holes, hole_aspect_ratio, record):
    """OpenMixup ``gridmix.rand_grid`` (``.cuda()`` left out), recording the crop's position."""
    W, H = size[2], size[3]
    cut_area = int(H * W * cut_area_ratio)
    cut_w = int(np.sqrt(cut_area / cut_aspect_ratio))
    cut_h = int(cut_w * cut_aspect_ratio)
    cx, cy = np.random.random(), np.random.random()
    record.update(u=cx, v=cy)
    xc1, yc1 = int((W - cut_w) * cx), int((H - cut_h) * cy)
    width, height = cut_w, cut_h
    assert 1 <= n_holes <= width // 2
    patch_width = math.ceil(width / n_holes)
    patch_height = int(patch_width * hole_aspect_ratio)
    ny = math.ceil(height / patch_height)
    ratio = np.sqrt(1 - lam)
    hole_width = min(max(int(patch_width * ratio), 1), patch_width - 1)
    hole_height = min(max(int(patch_height * ratio), 1), patch_height - 1)
    mask = torch.zeros((1, 1, W, H))
    for i in range(n_holes + 1):
        for j in range(ny + 1):
            x1, y1 = min(patch_width * i, width), min(patch_height * j, height)
            x2, y2 = min(x1 + hole_width, width), min(y1 + hole_height, height)
            mask[0, 0, yc1 + y1: yc1 + y2, xc1 + x1: xc1 + x2] = 1.0
            wrapped = (yc1 + y2 < 0 and x2 > x1) or (xc1 + x2 < 0 and y2 > y1)
            record["wrapped"] = record.get("wrapped", False) or wrapped
    return mask


def _to_2tuple(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


def _official_gridmix_draws(alpha, n_holes, hole_aspect_ratio, cut_area_ratio, cut_aspect_ratio):
    lam = np.random.beta(alpha, alpha)
    n_holes, hole_aspect_ratio = _to_2tuple(n_holes), _to_2tuple(hole_aspect_ratio)
    cut_area_ratio, cut_aspect_ratio = _to_2tuple(cut_area_ratio), _to_2tuple(cut_aspect_ratio)
    n = random.randint(n_holes[0], n_holes[1])
    hole_ar = np.random.uniform(hole_aspect_ratio[0], hole_aspect_ratio[1])
    area = np.random.uniform(cut_area_ratio[0], cut_area_ratio[1])
    aspect = np.random.uniform(cut_aspect_ratio[0], cut_aspect_ratio[1])
    return dict(lam=lam, n_holes=n, hole_ar=hole_ar, area=area, aspect=aspect)


def _official_gridmix(img, gt_label, alpha=1.0, n_holes=20, hole_aspect_ratio=1.0, cut_area_ratio=1.0,
                      cut_aspect_ratio=1.0):
    """OpenMixup ``gridmix`` (``dist_mode=False``, 4-D input), with its draws."""
    record = _official_gridmix_draws(alpha, n_holes, hole_aspect_ratio, cut_area_ratio, cut_aspect_ratio)
    rand_index = torch.randperm(img.size(0))
    img_ = img[rand_index]
    mask = _official_rand_grid(record["lam"], img.size(), record["area"], record["aspect"], record["n_holes"],
                               record["hole_ar"], record)
    img = img * (1 - mask) + img_ * mask
    lam = 1 - (mask[0, 0, ...].sum() / (img.shape[-1] * img.shape[-2]))
    record.update(perm=rand_index, mask=mask[0, 0].bool().numpy())
    return img, (gt_label, gt_label[rand_index], lam), record


def _official_gaussian_kernel(kernel_size, rand_w, rand_h, sigma):
    s = kernel_size * 2
    x_cord = torch.arange(s)
    x_grid = x_cord.repeat(s).view(s, s)
    y_grid = x_grid.t()
    xy_grid = torch.stack([x_grid, y_grid], dim=-1)
    xy_grid = torch.roll(xy_grid, rand_w, 0)
    xy_grid = torch.roll(xy_grid, rand_h, 1)
    crop_size = s // 4
    xy_grid = xy_grid[crop_size: s - crop_size, crop_size: s - crop_size]
    mean = (s - 1) / 2
    var = sigma ** 2
    g_filter = torch.exp(-torch.sum((xy_grid - mean) ** 2, dim=-1) / (2 * var))
    return g_filter.view(kernel_size, kernel_size)


def _official_smoothmix_kernel(h, w, record):
    draw_w, draw_h = torch.randint(0, w, (1,)), torch.randint(0, h, (1,))
    rand_w, rand_h = int(draw_w - w / 2), int(draw_h - h / 2)
    sigma = (torch.rand(1) / 4 + 0.25) * h
    record.update(j=int(draw_w), i=int(draw_h), sigma=float(sigma))
    return _official_gaussian_kernel(h, rand_h, rand_w, sigma)


def _official_smoothmix(img, gt_label, alpha=1.0):
    """OpenMixup ``smoothmix`` (``dist_mode=False``, 4-D input), with its draws."""
    np.random.beta(alpha, alpha)  # drawn and never used
    rand_index = torch.randperm(img.size(0))
    img_ = img[rand_index]
    _, _, h, w = img.size()
    record = {"perm": rand_index}
    kernel = _official_smoothmix_kernel(h, w, record)
    img = img * (1 - kernel) + img_ * kernel
    lam = torch.sum(kernel) / (h * w)
    record["mask"] = kernel
    return img, (gt_label, gt_label[rand_index], lam), record


def _seed_all(seed):
    np.random.seed(seed)
    random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- targets = pixel composition

MIXERS = {
    "resizemix": lambda k, rng: ResizeMix(k, rng),
    "resizemix-bilinear-beta": lambda k, rng: ResizeMix(k, rng, interpolation="bilinear", scale_beta=1.0),
    "fmix": lambda k, rng: FMix(k, rng),
    "fmix-soft": lambda k, rng: FMix(k, rng, max_soft=0.2),
    "fmix-full-spectrum": lambda k, rng: FMix(k, rng, full_spectrum=True),
    "gridmix": lambda k, rng: GridMix(k, rng),
    "smoothmix": lambda k, rng: SmoothMix(k, rng),
}


def _pixel_weights(method, batch, height, width, seed):
    """Targets, and independently the share of every source in every mixed image: with
    source ``s`` all ones and the others all zeros, a mixed image's mean is ``s``'s weight
    in it, per pixel, soft masks included. ``B x B`` each (labels = indices)."""
    shares, targets = [], None
    for source in range(batch):
        x = torch.zeros(batch, 1, height, width, dtype=torch.float64)
        x[source] = 1
        mixed, t = MIXERS[method](batch, np.random.default_rng(seed))(x, torch.arange(batch))
        assert targets is None or torch.equal(t, targets)
        targets = t
        shares.append(mixed.mean((1, 2, 3)))
    return targets, torch.stack(shares, 1)


@pytest.mark.parametrize("method", MIXERS)
@pytest.mark.parametrize("batch", [1, 2, 7])
def test_targets_equal_the_pixel_composition_exactly(method, batch):
    size = (32, 28) if method == "gridmix" else (13, 17)
    for seed in range(4):
        targets, shares = _pixel_weights(method, batch, *size, seed)
        torch.testing.assert_close(targets, shares, rtol=0, atol=1e-12)


def test_fmix_official_weights_and_the_reformulation():
    """``lambda_correction=False`` weights by the drawn lam, which misses the mask's mean by
    less than one pixel's share; ``reformulate`` gives one-hot targets whatever the mask."""
    x, y = torch.rand(6, 3, 16, 16), torch.arange(6)
    for seed in range(10):
        rng = np.random.default_rng(seed)
        rng.random()  # the prob coin
        lam, mask = draw_fmix_mask(rng, 16, 16, 1.0, 3.0)
        perm = torch.as_tensor(rng.permutation(6))
        _, official = FMix(6, np.random.default_rng(seed), lambda_correction=False)(x, y)
        _, exact = FMix(6, np.random.default_rng(seed))(x, y)
        assert torch.equal(official, _expected_targets(y, y[perm], lam, 6))
        assert torch.equal(exact, _expected_targets(y, y[perm], mask.mean(), 6))
        assert abs(lam - mask.mean()) < 1 / 256
        assert torch.equal(FMix(6, np.random.default_rng(seed), reformulate=True)(x, y)[1], torch.eye(6))


# ----------------------------------------------------------------------------- distributions (KS)


def _ks(ours, official):
    return stats.ks_2samp(np.asarray(ours), np.asarray(official)).pvalue


@pytest.mark.parametrize("scale_beta", [None, 1.0])
def test_resizemix_pasted_area_matches_openmixup(scale_beta):
    rng = np.random.default_rng(1)
    ours = [_box_pixels(draw_paste_box(rng, 32, 32, 0.1, 0.8, scale_beta)) for _ in range(2000)]
    np.random.seed(1)
    official = []
    for _ in range(2000):
        *_, (x1, y1, x2, y2) = _official_tao_box((1, 1, 32, 32), alpha=scale_beta or 1.0,
                                                 use_alpha=scale_beta is not None)
        official.append(int((x2 - x1) * (y2 - y1)))
    assert _ks(ours, official) > 0.001


def _box_pixels(box):
    return int((box[1] - box[0]) * (box[3] - box[2]))


def _transitions(mask):
    """Horizontal plus vertical neighbour pairs with different mask values (boundary length)."""
    return int((mask[:, 1:] != mask[:, :-1]).sum() + (mask[1:] != mask[:-1]).sum())


@pytest.mark.parametrize("reformulate", [False, True])
def test_fmix_masks_match_the_official_sampler(reformulate):
    """Mask means and boundary lengths against ``sample_mask``."""
    rng = np.random.default_rng(2)
    ours = [draw_fmix_mask(rng, 32, 32, 1.0, 3.0, reformulate=reformulate)[1] for _ in range(600)]
    _seed_all(2)
    official = [_official_fmix_mask(1.0, 3, (32, 32), reformulate=reformulate)[1][0] for _ in range(600)]
    assert _ks([m.sum() for m in ours], [m.sum() for m in official]) > 0.001
    assert _ks([_transitions(m) for m in ours], [_transitions(m) for m in official]) > 0.001


def _row_crossings(mask):
    """The most value changes along any one row."""
    return int((mask[:, 1:] != mask[:, :-1]).sum(1).max())


def test_fmix_official_masks_cross_each_row_at_most_twice():
    """The official spectrum layout (module docstring) has horizontal frequencies 0 and 1
    only: every row of the noise is a constant plus one sinusoid period, so a binary mask
    changes at most twice along a row, in the official sampler's masks and ours; the
    paper's full spectrum does not have that limit."""
    rng = np.random.default_rng(5)
    _seed_all(5)
    for height, width in [(32, 32), (15, 17)]:
        official = [_official_fmix_mask(1.0, 3, (height, width))[1][0] for _ in range(100)]
        ours = [draw_fmix_mask(rng, height, width, 1.0, 3.0)[1] for _ in range(100)]
        full = [draw_fmix_mask(rng, height, width, 1.0, 3.0, full_spectrum=True)[1] for _ in range(100)]
        assert max(map(_row_crossings, official)) <= 2 and max(map(_row_crossings, ours)) <= 2
        assert max(map(_row_crossings, full)) > 2
        noise = rng.standard_normal((height, width // 2 + 1 + width % 2, 2))
        spectrum = np.abs(np.fft.rfft2(low_frequency_image(noise, height, width, 3.0)))
        assert spectrum[:, 2:].max() < 1e-9 * spectrum.max()


def test_gridmix_hole_area_matches_openmixup():
    mixer = GridMix(2, np.random.default_rng(3))
    ours = [int(mixer.draw_mask(32, 32).sum()) for _ in range(1500)]
    _seed_all(3)
    official = []
    for _ in range(1000):
        d = _official_gridmix_draws(0.2, (2, 6), 1.0, (0.5, 1), (0.5, 2))
        mask = _official_rand_grid(d["lam"], (1, 1, 32, 32), d["area"], d["aspect"], d["n_holes"], d["hole_ar"], d)
        official.append(int(mask.sum()))
    assert _ks(ours, official) > 0.001


def test_smoothmix_mask_mean_matches_openmixup():
    rng = np.random.default_rng(4)
    ours = [float(draw_gaussian_mask(rng, 32, 32, 0.25, 0.5).mean()) for _ in range(1500)]
    _seed_all(4)
    official = [float(_official_smoothmix_kernel(32, 32, {}).mean()) for _ in range(1000)]
    assert _ks(ours, official) > 0.001


# ----------------------------------------------------------------------------- replay: bit-equal to the reference


def _expected_targets(y_a, y_b, lam, num_classes):
    w = torch.as_tensor(lam, dtype=torch.float32)
    return w * F.one_hot(y_a, num_classes).float() + (1 - w) * F.one_hot(y_b, num_classes).float()


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_resizemix_replays_openmixup(mode):
    for seed in range(8):
        gen = torch.Generator().manual_seed(100 + seed)
        x, y = torch.rand(5, 3, 32, 32, generator=gen), torch.randint(0, 4, (5,), generator=gen)
        _seed_all(seed)
        official, (y_a, y_b, lam), d = _official_resizemix(x.clone(), y, mode=mode)
        box = paste_box(32, 32, d["tao"], d["cy"], d["cx"])
        mixed, targets = resizemix_batch(x, y, d["perm"].numpy(), box, 4, mode)
        assert torch.equal(mixed, official)
        assert torch.equal(targets, _expected_targets(y_a, y_b, lam, 4))


@pytest.mark.parametrize("shape", [(32, 32), (15, 17)])
@pytest.mark.parametrize("max_soft", [0.0, 0.1])
def test_fmix_replays_the_official_code(shape, max_soft):
    for seed in range(4):
        gen = torch.Generator().manual_seed(200 + seed)
        x, y = torch.rand(5, 3, *shape, generator=gen), torch.randint(0, 4, (5,), generator=gen)
        _seed_all(seed)
        official, lam, d = _official_fmix(x, max_soft=max_soft)
        image = low_frequency_image(d["noise"], *shape, decay_power=3.0)
        mask = binarise(image, d["lam"], d["coin"] > 0.5, max_soft)
        assert np.array_equal(mask, d["mask"])
        mixed, targets = fmix_batch(x, y, mask, d["perm"].numpy(), lam, 4)
        assert torch.equal(mixed, official)
        assert torch.equal(targets, _expected_targets(y, y[d["perm"]], lam, 4))


@pytest.mark.parametrize("size, params", [
    (32, dict(alpha=0.2, n_holes=(2, 6), hole_aspect_ratio=1.0, cut_area_ratio=(0.5, 1), cut_aspect_ratio=(0.5, 2))),
    (64, dict(alpha=1.0)),  # the function's own defaults: 20 holes, whole-image crop
])
def test_gridmix_replays_openmixup(size, params):
    wrapped = 0
    for seed in range(30):
        gen = torch.Generator().manual_seed(300 + seed)
        x, y = torch.rand(4, 3, size, size, generator=gen), torch.randint(0, 5, (4,), generator=gen)
        _seed_all(seed)
        official, (y_a, y_b, lam), d = _official_gridmix(x, y, **params)
        mask = grid_mask(size, size, d["lam"], d["n_holes"], d["hole_ar"], d["area"], d["aspect"], d["u"], d["v"])
        assert np.array_equal(mask, d["mask"])
        mixed, targets = gridmix_batch(x, y, mask, d["perm"].numpy(), 5)
        assert torch.equal(mixed, official)
        assert torch.equal(targets, _expected_targets(y_a, y_b, lam, 5))
        wrapped += d["wrapped"]
    if size == 32:
        assert wrapped > 0  # holes placed from the image's end by a negative slice were replayed


def test_smoothmix_replays_openmixup_with_its_label_swap_fixed():
    for seed in range(8):
        gen = torch.Generator().manual_seed(400 + seed)
        x, y = torch.rand(5, 3, 32, 32, generator=gen), torch.randint(0, 4, (5,), generator=gen)
        _seed_all(seed)
        official, (y_a, y_b, lam), d = _official_smoothmix(x, y)
        mask = gaussian_mask(32, 32, d["i"], d["j"], d["sigma"])
        assert torch.equal(mask, d["mask"])
        mixed, targets = smoothmix_batch(x, y, mask, d["perm"].numpy(), 4)
        assert torch.equal(mixed, official)
        # OpenMixup gives y_a the weight lam = mean(G), but y_a's pixels carry 1 - G
        torch.testing.assert_close(targets, _expected_targets(y_a, y_b, 1 - float(lam), 4), rtol=0, atol=1e-6)


def test_gaussian_mask_peaks_half_a_pixel_before_the_drawn_centre():
    mask = gaussian_mask(9, 11, 4, 6, 2.0, torch.float64)
    assert mask[4, 6] == mask[3, 5] == mask[3, 6] == mask[4, 5] == mask.max()
    brute = torch.tensor([[math.exp(-((r - 3.5) ** 2 + (c - 5.5) ** 2) / 8) for c in range(11)] for r in range(9)],
                         dtype=torch.float64)
    torch.testing.assert_close(mask, brute, rtol=1e-14, atol=0)


# ----------------------------------------------------------------------------- contract


def _devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("method", MIXERS)
@pytest.mark.parametrize("batch", [1, 3, 8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_dtypes_devices_and_seeds(method, batch, dtype):
    for device in _devices():
        x = torch.rand(batch, 3, 32, 32, dtype=dtype, device=device)
        y = torch.randint(0, 4, (batch,), device=device)
        mixed, targets = MIXERS[method](4, np.random.default_rng(7))(x, y)
        again = MIXERS[method](4, np.random.default_rng(7))(x, y)
        assert mixed.shape == x.shape and mixed.dtype == dtype and mixed.device == x.device
        assert targets.shape == (batch, 4) and targets.dtype == dtype and targets.device == x.device
        torch.testing.assert_close(targets.sum(1), torch.ones(batch, dtype=dtype, device=device))
        assert torch.equal(again[0], mixed) and torch.equal(again[1], targets)
        assert mixed.min() >= -1e-6 and mixed.max() <= 1 + 1e-6


@pytest.mark.parametrize("cls", [ResizeMix, FMix, GridMix, SmoothMix])
def test_probability_of_mixing(cls):
    x, y = torch.rand(4, 3, 32, 32), torch.arange(4)
    never = cls(4, np.random.default_rng(0), prob=0.0)
    for _ in range(5):
        mixed, targets = never(x, y)
        assert torch.equal(mixed, x) and torch.equal(targets, torch.eye(4))
    always = cls(4, np.random.default_rng(0), prob=1.0)
    assert sum(not torch.equal(always(x, y)[0], x) for _ in range(10)) >= 5  # self-pairs only may leave x as it was


def test_resizemix_pastes_nothing_when_the_box_is_empty():
    x, y = torch.rand(3, 1, 4, 4), torch.arange(3)
    mixed, targets = ResizeMix(3, np.random.default_rng(0), scale_min=0.1, scale_max=0.2)(x, y)
    assert torch.equal(mixed, x) and torch.equal(targets, torch.eye(3))


@pytest.mark.parametrize("make, match", [
    (lambda: ResizeMix(2, np.random.default_rng(0), scale_min=0.9, scale_max=0.5), "scale_min"),
    (lambda: ResizeMix(2, np.random.default_rng(0), scale_beta=0), "scale_beta"),
    (lambda: ResizeMix(2, np.random.default_rng(0), interpolation="bicubic"), "interpolation"),
    (lambda: ResizeMix(2, np.random.default_rng(0), prob=1.5), "prob"),
    (lambda: FMix(2, np.random.default_rng(0), alpha=0), "alpha"),
    (lambda: FMix(2, np.random.default_rng(0), max_soft=0.7), "max_soft"),
    (lambda: FMix(2, np.random.default_rng(0), decay_power=-1), "decay_power"),
    (lambda: GridMix(2, np.random.default_rng(0), alpha=-1), "alpha"),
    (lambda: GridMix(2, np.random.default_rng(0), n_holes_min=0), "n_holes_min"),
    (lambda: GridMix(2, np.random.default_rng(0), hole_aspect_ratio=0.2), "hole_aspect_ratio"),
    (lambda: GridMix(2, np.random.default_rng(0), cut_area_max=1.5), "cut_area"),
    (lambda: GridMix(2, np.random.default_rng(0), cut_aspect_min=0), "cut_aspect"),
    (lambda: SmoothMix(2, np.random.default_rng(0), sigma_min=0), "sigma_min"),
    (lambda: SmoothMix(2, np.random.default_rng(0), prob=-0.1), "prob"),
    (lambda: GridMix(2, np.random.default_rng(0))(torch.rand(2, 3, 16, 16), torch.arange(2)), "at most 4 holes"),
])
def test_bad_parameters_are_one_line_errors(make, match):
    with pytest.raises(UserError, match=match) as err:
        make()
    assert "\n" not in str(err.value)
