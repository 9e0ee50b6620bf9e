"""timm's Mixup/CutMix switch, RegMixup and the CutMix paper's ablated variants: exact
targets, distributions against the official sampling, bit-equal replays of the official
draws, shapes and mistakes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from timm.data import Mixup as TimmMixup

from conftest import pixel_sources, source_coded
from cutmix_eval.errors import UserError
from cutmix_eval.train.mixers.cutmix_ablations import (CenterGaussianCutMix, CompleteLabelCutMix, FixedSizeCutMix,
                                                       OneHotCutMix, ScheduledCutMix, nearest_pixel, scheduled_prob)
from cutmix_eval.train.mixers.regmixup import RegMixup, regmixup_batch
from cutmix_eval.train.mixers.timm_switch import (SwitchDraws, TimmMixupCutMix, draw_lambdas, minmax_boxes,
                                                  switch_mix, timm_boxes)
from cutmix_eval.train.mixing import CutMix, boxes_at, centred_boxes, kept_fraction, paste_boxes, soft_cross_entropy

ABLATIONS = (CenterGaussianCutMix, FixedSizeCutMix, ScheduledCutMix, OneHotCutMix, CompleteLabelCutMix)
METHODS = {cls.name: cls for cls in (TimmMixupCutMix, RegMixup, *ABLATIONS)}




def _scheduled_at_end(num_classes, rng, **params):
    mixer = ScheduledCutMix(num_classes, rng, **params)
    mixer.start_epoch(rng, 4, 4)
    return mixer


# ============================================================================ timm's Mixup/CutMix switch


def _recording(draw, values):
    def recorded(*args, **kwargs):
        values.append(draw(*args, **kwargs))
        return values[-1]
    return recorded


def _record_timm(params, x, y, seed, monkeypatch):
    """timm's Mixup on a copy of (x, y) with np.random seeded; returns its output and the
    values its np.random.rand / beta / randint calls returned, by function, in order."""
    log = {"rand": [], "beta": [], "randint": []}
    for fn in log:
        monkeypatch.setattr(np.random, fn, _recording(getattr(np.random, fn), log[fn]))
    np.random.seed(seed)
    mixed, targets = TimmMixup(**params)(x.clone(), y.clone())
    monkeypatch.undo()
    return mixed, targets, log


def _timm_draws(log, params, batch, height, width):
    """timm's draws as SwitchDraws, read off its call log as its code makes them."""
    mode, prob, switch = params["mode"], params.get("prob", 1.0), params.get("switch_prob", 0.5)
    minmax = params.get("cutmix_minmax")
    mixup_alpha = params.get("mixup_alpha", 1.0)
    cutmix_alpha = 1.0 if minmax is not None else params.get("cutmix_alpha", 0.0)
    rand, beta = log["rand"], log["beta"]
    if mode == "batch":
        applied = rand[0] < prob
        cut = applied and (rand[1] < switch if mixup_alpha > 0 and cutmix_alpha > 0 else cutmix_alpha > 0)
        lam, cut = np.asarray(float(beta[0]) if applied else 1.0), np.asarray(cut)
    else:
        count = batch // 2 if mode == "pair" else batch
        if mixup_alpha > 0 and cutmix_alpha > 0:
            cut, lam_mix, coin = rand[0] < switch, np.where(rand[0] < switch, beta[0], beta[1]), rand[1]
        else:
            cut, lam_mix, coin = np.full(count, cutmix_alpha > 0), beta[0], rand[0]
        lam = np.where(coin < prob, lam_mix.astype(np.float32), np.ones(count, np.float32))
    ints = iter(log["randint"])  # per unit that pastes a box: cy, cx (or cut_h, cut_w, yl, xl)
    boxes = np.zeros(lam.shape + (4,), dtype=np.int64)
    for unit in np.ndindex(lam.shape):
        if cut[unit] and lam[unit] != 1:
            if minmax is None:
                boxes[unit] = timm_boxes(lam[unit], np.asarray(next(ints)), np.asarray(next(ints)), height, width)
            else:
                boxes[unit] = minmax_boxes(*(np.asarray(next(ints)) for _ in range(4)))
    assert next(ints, None) is None
    return SwitchDraws(lam, cut, boxes)


TIMM_CONFIGS = [{}, {"mixup_alpha": 0.0, "cutmix_alpha": 1.0},
                {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "prob": 0.7},
                {"mixup_alpha": 0.0, "cutmix_minmax": (0.2, 0.8)},
                {"mixup_alpha": 0.5, "cutmix_minmax": (0.3, 0.9), "switch_prob": 0.3},
                {"mixup_alpha": 0.8, "cutmix_alpha": 2.0, "correct_lam": False, "label_smoothing": 0.0}]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("config", range(len(TIMM_CONFIGS)))
def test_timm_replay_is_bit_equal(config, mode, dtype, monkeypatch):
    """timm's own np.random draws, fed to switch_mix, give timm's images and targets bit for bit."""
    params = dict(TIMM_CONFIGS[config], mode=mode, num_classes=5)
    for seed in range(6):
        batch, height, width = (2, 8)[seed % 2], 9, 11
        gen = torch.Generator().manual_seed(seed)
        x = torch.rand(batch, 3, height, width, generator=gen, dtype=dtype)
        y = torch.randint(0, 5, (batch,), generator=gen)
        timm_x, timm_targets, log = _record_timm(params, x, y, seed, monkeypatch)
        ours = switch_mix(x, y, _timm_draws(log, params, batch, height, width), 5, params.get("label_smoothing", 0.1),
                          params.get("correct_lam", True) or "cutmix_minmax" in params)
        assert torch.equal(ours[0], timm_x) and ours[0].dtype == dtype
        assert torch.equal(ours[1], timm_targets.to(dtype)) and ours[1].dtype == dtype


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("batch", [2, 8])
def test_timm_cutmix_targets_equal_the_pixel_composition(mode, batch):
    mixer = TimmMixupCutMix(batch, np.random.default_rng(batch), mixup_alpha=0.0, cutmix_alpha=1.0, mode=mode,
                            label_smoothing=0.0)
    minmax = TimmMixupCutMix(batch, np.random.default_rng(7), mixup_alpha=0.0, cutmix_minmax=(0.2, 0.9), mode=mode,
                             label_smoothing=0.0)
    for _ in range(20):
        for m in (mixer, minmax):
            x, y = source_coded(batch)
            mixed, targets = m(x, y)
            torch.testing.assert_close(targets.double(), pixel_sources(mixed, batch), rtol=0, atol=1e-6)


def test_timm_mixup_rows_are_the_flipped_blend_and_targets_are_smoothed():
    """Brute force: every row is lam * x_i + (1 - lam) * x_{B-1-i} with lam read off its
    target, and the targets are smoothed: 1 - s + s / K on the label, s / K off it."""
    x, y = torch.rand(6, 3, 5, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 4, 5])
    mixer = TimmMixupCutMix(8, np.random.default_rng(0), mode="elem", label_smoothing=0.2)
    mixed, targets = mixer(x, y)
    off, on = 0.2 / 8, 1 - 0.2 + 0.2 / 8
    for i in range(6):
        j = 5 - i
        lam = (targets[i, y[i]] - off) / (on - off)
        torch.testing.assert_close(mixed[i], lam * x[i] + (1 - lam) * x[j])
        assert torch.allclose(targets[i, 6:], torch.tensor(off, dtype=torch.float64))
    torch.testing.assert_close(targets.sum(1), torch.ones(6, dtype=torch.float64))


@pytest.mark.parametrize("config", [{"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "prob": 0.6},
                                    {"mixup_alpha": 0.0, "cutmix_alpha": 0.5}])
def test_timm_lambda_distribution_matches_timms_sampling(config):
    """Per image (``_params_per_elem``) and per batch (``_params_per_batch``): the lambdas and
    the share of CutMix match timm's own sampling (two-sample KS, binomial)."""
    np.random.seed(1)
    timm = TimmMixup(**config, num_classes=10)
    theirs_elem = timm._params_per_elem(4000)
    theirs_batch = [timm._params_per_batch() for _ in range(3000)]
    rng = np.random.default_rng(2)
    args = (config["mixup_alpha"], config["cutmix_alpha"], config.get("prob", 1.0), 0.5)
    ours_elem = draw_lambdas(rng, 4000, *args)
    ours_batch = [draw_lambdas(rng, None, *args) for _ in range(3000)]
    assert stats.ks_2samp(ours_elem[0], theirs_elem[0]).pvalue > 0.001
    assert stats.ks_2samp([float(lam) for lam, _ in ours_batch], [lam for lam, _ in theirs_batch]).pvalue > 0.001
    for ours_cut, theirs_cut in ((ours_elem[1][ours_elem[0] != 1], theirs_elem[1][theirs_elem[0] != 1]),
                                 ([bool(c) for lam, c in ours_batch if lam != 1],
                                  [c for lam, c in theirs_batch if lam != 1])):
        assert stats.binomtest(int(np.sum(ours_cut)), len(ours_cut), np.mean(theirs_cut)).pvalue > 0.001


def test_timm_corrected_area_distribution_matches_timm():
    """The lambda after box clipping and correction, per image: ours against timm's full call."""
    batch = 1000
    x, y = source_coded(batch, 12, 12)
    np.random.seed(3)
    _, theirs = TimmMixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem", label_smoothing=0.0,
                          num_classes=batch)(x.clone(), y)
    _, ours = TimmMixupCutMix(batch, np.random.default_rng(4), mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem",
                              label_smoothing=0.0)(x, y)
    rows = torch.arange(batch)  # row i mixes with B - 1 - i: its own label's weight is its lambda
    assert stats.ks_2samp(ours[rows, rows].numpy(), theirs[rows, rows].numpy()).pvalue > 0.001


def test_timm_odd_batches_mix_all_but_the_last_image_and_bad_parameters_are_refused():
    x, y = torch.rand(7, 3, 4, 4), torch.arange(7)
    odd = TimmMixupCutMix(7, np.random.default_rng(0), cutmix_alpha=1.0)(x, y)
    even = TimmMixupCutMix(7, np.random.default_rng(0), cutmix_alpha=1.0)(x[:6], y[:6])
    assert torch.equal(odd[0][:6], even[0]) and torch.equal(odd[1][:6], even[1])
    assert torch.equal(odd[0][6], x[6])
    torch.testing.assert_close(odd[1][6], torch.full((7,), 0.1 / 7) + 0.9 * torch.nn.functional.one_hot(y[6], 7))
    one = TimmMixupCutMix(3, np.random.default_rng(0))(x[:1], torch.tensor([2]))
    assert torch.equal(one[0], x[:1]) and one[1].argmax().item() == 2
    for params, match in (({"mode": "image"}, "mode must be one of batch, pair, elem"),
                           ({"mixup_alpha": 0.0}, "needs mixup_alpha > 0"),
                           ({"cutmix_alpha": -1.0}, ">= 0"),
                           ({"prob": 1.5}, "prob must be in"),
                           ({"label_smoothing": -0.1}, "label_smoothing must be in"),
                           ({"cutmix_minmax": (0.8, 0.2)}, "cutmix_minmax must be")):
        with pytest.raises(UserError, match=match):
            TimmMixupCutMix(3, np.random.default_rng(0), **params)
    tiny = TimmMixupCutMix(3, np.random.default_rng(0), mixup_alpha=0.0, cutmix_minmax=(0.5, 0.6))
    with pytest.raises(UserError, match="leaves no box side"):
        tiny(torch.rand(2, 3, 4, 4), torch.tensor([0, 1]))


def test_timm_minmax_forces_cutmix_alpha_one_as_timm():
    mixer = TimmMixupCutMix(3, np.random.default_rng(0), mixup_alpha=0.0, cutmix_alpha=0.0, cutmix_minmax=[0.2, 0.8])
    assert mixer.cutmix_alpha == 1.0 and mixer.cutmix_minmax == (0.2, 0.8)
    assert mixer.describe()["method"] == "mixup-cutmix"


# ============================================================================ RegMixup


def _official_regmixup_step(x, y, alpha, seed):
    """The official training step's mixing (models/regmixup.py, regularizers/mixup.py)."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    lam = np.random.beta(alpha, alpha)
    index = torch.randperm(x.size()[0])
    mixed_x = lam * x + (1 - lam) * x[index]
    return torch.cat([x, mixed_x], dim=0), torch.cat([y, y]), torch.cat([y, y[index]]), lam, index


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_regmixup_replay_is_bit_equal_and_the_loss_is_the_official_one(dtype):
    for seed, batch in enumerate((1, 2, 7, 16)):
        x, y = torch.rand(batch, 3, 6, 6, dtype=dtype), torch.randint(0, 5, (batch,))
        official_x, targets_a, targets_b, lam, index = _official_regmixup_step(x, y, 20.0, seed)
        images, targets = regmixup_batch(x, y, lam, index.numpy(), 5, 1.0)
        assert torch.equal(images, official_x) and images.dtype == dtype and targets.dtype == dtype
        logits = torch.randn(2 * batch, 5, dtype=torch.float64)
        official = lam * F.cross_entropy(logits, targets_a) + (1 - lam) * F.cross_entropy(logits, targets_b)
        rtol = 1e-12 if dtype == torch.float64 else 1e-6  # float32 targets hold lam to float32 precision
        torch.testing.assert_close(F.cross_entropy(logits, targets.double()), official, rtol=rtol, atol=0)
        torch.testing.assert_close(soft_cross_entropy(logits, targets), official.float())


def test_regmixup_eta_weights_the_mixup_term():
    """Our loss is (CE(clean) + eta * CE_mixup) / 2: the mean over the 2B rows."""
    x, y = torch.rand(6, 3, 4, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    perm, lam, eta = np.array([3, 0, 5, 1, 2, 4]), 0.37, 0.4
    _, targets = regmixup_batch(x, y, lam, perm, 3, eta)
    logits = torch.randn(12, 3, dtype=torch.float64)
    clean = F.cross_entropy(logits[:6], y)
    mix = lam * F.cross_entropy(logits[6:], y) + (1 - lam) * F.cross_entropy(logits[6:], y[perm])
    torch.testing.assert_close(F.cross_entropy(logits, targets), (clean + eta * mix) / 2, rtol=1e-12, atol=0)
    torch.testing.assert_close(targets.sum(1), torch.tensor([1.0] * 6 + [eta] * 6, dtype=torch.float64))


@pytest.mark.parametrize("batch", [1, 2, 7])
def test_regmixup_targets_match_the_pixel_blend(batch):
    """Brute force on source-coded images: mixed pixel = lam * i + (1 - lam) * j, and the
    mixed target row is lam on label i and 1 - lam on label j."""
    mixer = RegMixup(batch, np.random.default_rng(batch), alpha=2.0)
    for _ in range(10):
        x, y = source_coded(batch, dtype=torch.float64)
        images, targets = mixer(x, y)
        assert images.shape == (2 * batch, 1, 13, 17) and targets.shape == (2 * batch, batch)
        assert torch.equal(images[:batch], x) and torch.equal(targets[:batch], torch.eye(batch, dtype=torch.float64))
        for i in range(batch):
            row = targets[batch + i]
            expected = sum(w * j for j, w in enumerate(row.tolist()))
            assert torch.allclose(images[batch + i], torch.tensor(expected, dtype=torch.float64))
            assert row[i] > 0 and torch.isclose(row.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_regmixup_lambda_distribution_matches_the_official_sampling():
    mixer = RegMixup(8, np.random.default_rng(0), alpha=10.0)
    x, y = source_coded(8)
    ours = []
    while len(ours) < 1500:
        own = mixer(x, y)[1][8:].diagonal()  # lam where the partner is another image, 1 where it is itself
        if (own < 1).any():
            ours.append(own[own < 1][0].item())
    np.random.seed(1)
    theirs = [np.random.beta(10.0, 10.0) for _ in range(1500)]
    assert stats.ks_2samp(ours, theirs).pvalue > 0.001


def test_regmixup_bad_parameters():
    with pytest.raises(UserError, match="alpha must be > 0"):
        RegMixup(3, np.random.default_rng(0), alpha=0.0)
    with pytest.raises(UserError, match="eta must be >= 0"):
        RegMixup(3, np.random.default_rng(0), eta=-1.0)


# ============================================================================ the CutMix paper's variants


def _official_cutmix_step(x, seed, centre=None, fixed=None):
    """The official train.py CutMix step (coin at prob 1, with the lambda correction), with
    a variant's box (:func:`_official_rand_bbox`). Returns the mixed input and its draws:
    the Beta ``lam``, ``rand_index``, the centres (row, column), the box
    ``(y0, y1, x0, x1)`` and the corrected ``lam``."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    x = x.clone()
    assert np.random.rand(1) < 1.0
    lam = np.random.beta(1.0, 1.0)
    rand_index = torch.randperm(x.size()[0])
    (cx, cy), (bbx1, bbx2, bby1, bby2) = _official_rand_bbox(x.size(), lam, centre, fixed)
    x[:, :, bbx1:bbx2, bby1:bby2] = x[rand_index, :, bbx1:bbx2, bby1:bby2]
    kept = 1 - ((bbx2 - bbx1) * (bby2 - bby1) / (x.size()[-1] * x.size()[-2]))
    return x, (lam, rand_index.numpy(), (cx, cy), np.array([bbx1, bbx2, bby1, bby2]), kept)


def _official_rand_bbox(size, lam, centre=None, fixed=None):
    """The official rand_bbox with a variant's change: ``centre(side)`` draws the box
    centre (uniform ``np.random.randint`` by default), ``fixed`` the box side."""
    W, H = size[2], size[3]
    cut_w = fixed if fixed else int(W * np.sqrt(1. - lam))
    cut_h = fixed if fixed else int(H * np.sqrt(1. - lam))
    draw = centre or (lambda side: np.random.randint(side))
    cx, cy = draw(W), draw(H)
    bbx1, bbx2 = np.clip(cx - cut_w // 2, 0, W), np.clip(cx + cut_w // 2, 0, W)
    bby1, bby2 = np.clip(cy - cut_h // 2, 0, H), np.clip(cy + cut_h // 2, 0, H)
    return (cx, cy), (bbx1, bbx2, bby1, bby2)


def _official_gaussian_centre(std, normals):
    """The Center Gaussian change to rand_bbox, as we read it: a normal around the centre,
    rounded and clipped to the uniform centre's range; records its normal draws."""
    def centre(side):
        z = np.random.randn()
        normals.append(z)
        return int(min(max(round(side / 2 + std * side * z), 0), side - 1))
    return centre


@pytest.mark.parametrize("variant", ["center-gaussian", "fixed-size", "one-hot", "complete-label"])
def test_ablation_replay_is_bit_equal(variant):
    """The official step's draws (its normals or centres, its permutation), fed to our pure
    functions, give its box, corrected lam and images bit for bit, and the variant's targets."""
    height, width = 12, 10
    for seed in range(12):
        batch = (2, 7, 8)[seed % 3]
        x, y = torch.rand(batch, 3, height, width), torch.randint(0, 6, (batch,))
        normals = []
        centre = _official_gaussian_centre(0.25, normals) if variant == "center-gaussian" else None
        official_x, (drawn, perm, (row, col), box, lam) = _official_cutmix_step(
            x, seed, centre=centre, fixed=5 if variant == "fixed-size" else None)
        if variant == "center-gaussian":
            row, col = (nearest_pixel(side / 2 + 0.25 * side * z, side) for side, z in zip((height, width), normals))
        if variant == "fixed-size":
            ours = centred_boxes(np.asarray(row), np.asarray(col), 5, 5, height, width)
        else:
            ours = boxes_at(drawn, np.asarray(row), np.asarray(col), height, width)
        assert np.array_equal(ours, box) and kept_fraction(ours, height, width) == lam
        assert torch.equal(paste_boxes(x, perm, ours), official_x)
        cls = {"one-hot": OneHotCutMix, "complete-label": CompleteLabelCutMix}.get(variant, FixedSizeCutMix)
        targets = cls(6, np.random.default_rng(0)).targets(y, perm, lam, torch.float64)
        one_hot = F.one_hot(y, 6).double()
        expected = {"one-hot": one_hot if lam >= 0.5 else one_hot[perm],
                    "complete-label": 0.5 * one_hot + 0.5 * one_hot[perm]}.get(
            variant, lam * one_hot + (1 - lam) * one_hot[perm])
        assert torch.equal(targets, expected)


def _ablation(cls, batch, seed, **params):
    rng = np.random.default_rng(seed)
    return _scheduled_at_end(batch, rng, **params) if cls is ScheduledCutMix else cls(batch, rng, prob=1.0, **params)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("batch", [1, 2, 7])
@pytest.mark.parametrize("cls", [CenterGaussianCutMix, FixedSizeCutMix, ScheduledCutMix])
def test_area_based_variants_targets_equal_the_pixel_composition(cls, batch, per_sample):
    mixer = _ablation(cls, batch, batch, per_sample=per_sample, **({"size": 6} if cls is FixedSizeCutMix else {}))
    for _ in range(20):
        x, y = source_coded(batch)
        mixed, targets = mixer(x, y)
        torch.testing.assert_close(targets.double(), pixel_sources(mixed, batch), rtol=0, atol=1e-6)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("batch", [1, 2, 7])
@pytest.mark.parametrize("cls", [OneHotCutMix, CompleteLabelCutMix])
def test_label_variants_follow_their_rule(cls, batch, per_sample):
    """Brute force: the partner from a replayed generator, the own share counted in pixels;
    one-hot takes the label covering more (the own on a tie), complete-label 0.5 / 0.5."""
    for seed in range(15):
        x, y = source_coded(batch, 8, 8)
        mixed, targets = cls(batch, np.random.default_rng(seed), prob=1.0, per_sample=per_sample)(x, y)
        replay = np.random.default_rng(seed)
        replay.random()
        replay.beta(1.0, 1.0, batch if per_sample else None)
        perm = replay.permutation(batch)
        sources = pixel_sources(mixed, batch)
        for i in range(batch):
            j = int(perm[i])
            assert sources[i, i] + (sources[i, j] if j != i else 0) == 1
            expected = torch.zeros(batch)
            if cls is OneHotCutMix:
                expected[i if sources[i, i] >= 0.5 else j] = 1
            else:
                expected[i] += 0.5
                expected[j] += 0.5
            assert torch.equal(targets[i], expected)


@pytest.mark.parametrize("variant", ["center-gaussian", "fixed-size", "uniform"])
def test_box_distributions_match_the_official_sampling(variant):
    """Pasted area (integer pixel counts) and box centre row against the official rand_bbox
    with the variant's change, written out with np.random: two-sample KS."""
    side, calls = 16, 3000
    cls = {"center-gaussian": CenterGaussianCutMix, "fixed-size": FixedSizeCutMix}.get(variant, OneHotCutMix)
    params = {"size": 8} if variant == "fixed-size" else {}
    rng = np.random.default_rng(11)
    mixer = cls(2, rng, prob=1.0, per_sample=True, **params)
    lam = mixer.draw_lambda(calls, side, side)
    ours = mixer.draw_boxes(lam, side, side)
    np.random.seed(5)
    centre = _official_gaussian_centre(0.25, []) if variant == "center-gaussian" else None
    theirs = np.array([_official_rand_bbox((2, 1, side, side), np.random.beta(1.0, 1.0), centre,
                                           8 if variant == "fixed-size" else None)[1] for _ in range(calls)])
    assert stats.ks_2samp(_areas(ours), _areas(theirs)).pvalue > 0.001
    assert stats.ks_2samp(ours[:, 0] + ours[:, 1], theirs[:, 0] + theirs[:, 1]).pvalue > 0.001


def _areas(boxes):
    return (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])


def test_center_gaussian_centres_concentrate_at_the_image_centre():
    rng = np.random.default_rng(0)
    mixer = CenterGaussianCutMix(2, rng, centre_std=0.25)
    boxes = mixer.draw_boxes(np.full(4000, 0.99), 32, 32)  # 3-pixel boxes: the centre is the box's
    centres = (boxes[:, 0] + boxes[:, 1]) / 2
    assert abs(centres.mean() - 16) < 0.3 and abs(centres.std() - 8) < 0.4


def test_label_variants_mix_images_as_cutmix():
    """Same seed: the same images as CutMix, only the targets differ."""
    x, y = torch.rand(6, 3, 12, 12), torch.arange(6)
    for cls in (OneHotCutMix, CompleteLabelCutMix):
        for per_sample in (False, True):
            theirs = CutMix(6, np.random.default_rng(3), prob=0.5, per_sample=per_sample)
            ours = cls(6, np.random.default_rng(3), prob=0.5, per_sample=per_sample)
            for _ in range(10):
                assert torch.equal(theirs(x, y)[0], ours(x, y)[0])


def test_scheduled_probability_is_linear_in_the_epoch_and_resumes_exactly():
    assert [scheduled_prob(1.0, e, 5) for e in range(1, 6)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert scheduled_prob(0.5, 1, 1) == 0.5 and scheduled_prob(0.5, 3, 5) == 0.25
    x, y = source_coded(8)
    uninterrupted = ScheduledCutMix(8, np.random.default_rng(0))
    assert all(torch.equal(uninterrupted(x, y)[0], x) for _ in range(10))  # before any epoch: probability 0
    outputs = []
    for epoch in (1, 2, 3):
        uninterrupted.start_epoch(np.random.default_rng(100 + epoch), epoch, 5)
        outputs.append([uninterrupted(x, y) for _ in range(5)])
    assert all(torch.equal(mixed, x) for mixed, _ in outputs[0])  # epoch 1: never
    resumed = ScheduledCutMix(8, np.random.default_rng(99))
    resumed.start_epoch(np.random.default_rng(103), 3, 5)
    for mixed, targets in outputs[2]:
        again = resumed(x, y)
        assert torch.equal(again[0], mixed) and torch.equal(again[1], targets)
    resumed.start_epoch(np.random.default_rng(7), 2, 5)
    assert stats.binomtest(sum(resumed.applies() for _ in range(2000)), 2000, 0.25).pvalue > 0.001
    assert "applied_prob" not in resumed.describe()


def test_scheduled_at_full_probability_is_cutmix():
    x, y = torch.rand(5, 3, 9, 9), torch.randint(0, 4, (5,))
    theirs = CutMix(4, np.random.default_rng(8), prob=1.0)
    ours = _scheduled_at_end(4, np.random.default_rng(8))
    ours.rng = np.random.default_rng(8)
    for _ in range(10):
        a, b = theirs(x, y), ours(x, y)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_ablation_bad_parameters():
    rng = np.random.default_rng(0)
    for make, match in ((lambda: CenterGaussianCutMix(3, rng, centre_std=0.0), "centre_std must be > 0"),
                        (lambda: FixedSizeCutMix(3, rng, size=0), "at least 1 pixel"),
                        (lambda: ScheduledCutMix(3, rng, prob=1.5), r"prob must be in \[0, 1\]"),
                        (lambda: scheduled_prob(1.0, 6, 5), "outside 1..5")):
        with pytest.raises(UserError, match=match):
            make()


# ============================================================================ all of them


def _make(name, num_classes, seed):
    cls = METHODS[name]
    rng = np.random.default_rng(seed)
    if cls is ScheduledCutMix:
        return _scheduled_at_end(num_classes, rng)
    params = {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "mode": "pair"} if cls is TimmMixupCutMix else {}
    return cls(num_classes, rng, **({"prob": 1.0} if cls in ABLATIONS else {}), **params)


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("batch", [1, 2, 7, 8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_method_keeps_shapes_dtypes_and_is_seeded(name, batch, dtype):
    x, y = torch.rand(batch, 3, 10, 12, dtype=dtype), torch.randint(0, 4, (batch,))
    mixed, targets = _make(name, 4, 0)(x, y)
    rows = 2 * batch if name == "regmixup" else batch
    assert mixed.shape == (rows, 3, 10, 12) and mixed.dtype == dtype and mixed.device == x.device
    assert targets.shape == (rows, 4) and targets.dtype == dtype
    torch.testing.assert_close(targets.sum(1), torch.ones(rows, dtype=dtype))
    again = _make(name, 4, 0)(x, y)
    assert torch.equal(again[0], mixed) and torch.equal(again[1], targets)
    assert torch.isfinite(soft_cross_entropy(torch.randn(rows, 4), targets))
