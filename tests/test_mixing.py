"""Mixing methods: exact lambda correction, distributions, shapes, labels."""

import numpy as np
import pytest
import torch
from scipy import stats

from conftest import pixel_sources, source_coded
from cutmix_eval.errors import UserError
from cutmix_eval.train.methods import create_mixer
from cutmix_eval.train.mixing import CutMix, Cutout, Mixup, cutmix_boxes, kept_fraction, mix_targets, soft_cross_entropy




@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("batch", [1, 2, 7, 32])
def test_cutmix_targets_equal_the_pixel_composition_exactly(per_sample, batch):
    """The lambda correction: the label weight of each source is exactly its share of pixels."""
    mixer = CutMix(batch, np.random.default_rng(batch), prob=1.0, per_sample=per_sample)
    for _ in range(20):
        x, y = source_coded(batch)
        mixed, targets = mixer(x, y)
        torch.testing.assert_close(targets.double(), pixel_sources(mixed, batch), rtol=0, atol=1e-6)


def test_without_the_correction_lambda_is_the_drawn_value():
    x, y = source_coded(16, 32, 32)
    drawn = np.random.default_rng(5)
    mixer = CutMix(16, np.random.default_rng(5), prob=1.0, lambda_correction=False)
    _, targets = mixer(x, y)
    drawn.random()  # the probability coin
    lam = drawn.beta(1.0, 1.0)
    perm = drawn.permutation(16)
    expected = mix_targets(y, torch.as_tensor(perm), lam, 16)
    torch.testing.assert_close(targets, expected)


def test_cutmix_probability_and_unmixed_batches():
    x, y = source_coded(8)
    mixer = CutMix(8, np.random.default_rng(0), prob=0.5)
    mixed_count = 0
    for _ in range(400):
        mixed, targets = mixer(x, y)
        if not torch.equal(mixed, x):
            mixed_count += 1
        else:
            torch.testing.assert_close(targets, torch.eye(8))
    assert stats.binomtest(mixed_count, 400, 0.5).pvalue > 0.001  # small boxes can also leave x unchanged
    never = CutMix(8, np.random.default_rng(0), prob=0.0)
    assert all(torch.equal(never(x, y)[0], x) for _ in range(20))


def test_drawn_lambda_follows_beta():
    """With the correction off, the batch lambda is exactly the Beta(beta, beta) draw."""
    mixer = CutMix(2, np.random.default_rng(2), beta=2.0, prob=1.0, lambda_correction=False)
    x, y = torch.zeros(2, 1, 8, 8), torch.tensor([0, 1])
    lams = []
    for _ in range(3000):
        _, targets = mixer(x, y)
        if targets[0, 0] < 1:  # partners swapped (self-pairs put all weight on the own label)
            lams.append(targets[0, 0].item())
    assert stats.kstest(lams, stats.beta(2.0, 2.0).cdf).pvalue > 0.001


def _brute_force_pasted_pixels(rng, side, beta):
    """Independent route: draw lam, a centre, and count pasted pixels one by one."""
    lam = rng.beta(beta, beta)
    cut = int(side * np.sqrt(1 - lam))
    cy, cx = rng.integers(side), rng.integers(side)
    pasted = 0
    for r in range(side):
        for c in range(side):
            if cy - cut // 2 <= r < cy + cut // 2 and cx - cut // 2 <= c < cx + cut // 2:
                pasted += 1
    return pasted


@pytest.mark.parametrize("side", [32, 15])
def test_pasted_area_distribution_matches_brute_force(side):
    """Clipped-box area over many draws: two-sample KS against a pixel loop (compared as
    integer pixel counts, so float rounding cannot split equal values)."""
    rng = np.random.default_rng(11)
    ours = np.rint((1 - kept_fraction(cutmix_boxes(rng, side, side, rng.beta(1.0, 1.0, size=4000)), side, side))
                   * side ** 2)
    brute = np.array([_brute_force_pasted_pixels(np.random.default_rng(10_000 + i), side, 1.0) for i in range(1500)])
    assert stats.ks_2samp(ours, brute).pvalue > 0.001
    # clipping only ever shrinks the box below (1 - lam), never grows it
    lam = rng.beta(1.0, 1.0, size=4000)
    boxes = cutmix_boxes(rng, side, side, lam)
    assert np.all(1 - kept_fraction(boxes, side, side) <= 1 - lam + 1e-12)
    assert boxes.min() >= 0 and boxes[..., [1, 3]].max() <= side


def test_mixup_is_a_convex_combination_and_targets_sum_to_one():
    x = torch.rand(9, 3, 8, 8)
    y = torch.randint(0, 5, (9,))
    for per_sample in (False, True):
        mixed, targets = Mixup(5, np.random.default_rng(3), alpha=1.0, per_sample=per_sample)(x, y)
        torch.testing.assert_close(targets.sum(1), torch.ones(9))
        assert mixed.min() >= x.min() - 1e-6 and mixed.max() <= x.max() + 1e-6
    # with alpha small, lam is near 0 or 1: mixed images are nearly one of the two sources
    x1, _ = Mixup(5, np.random.default_rng(4), alpha=0.01)(x, y)
    assert min((x1 - x).abs().max(), min((x1 - x[i]).abs().max() for i in range(9))) < 0.05


def test_cutout_never_changes_labels_and_fills_in_the_stated_space():
    x = torch.rand(6, 3, 32, 32)
    y = torch.arange(6)
    mean = (0.2, 0.4, 0.6)
    mixed, targets = Cutout(6, np.random.default_rng(0), size=16, fill="mean", mean=mean)(x, y)
    torch.testing.assert_close(targets, torch.eye(6))
    changed = (mixed != x).any(1)
    for i in range(6):
        holes = mixed[i][:, changed[i]]
        if holes.numel():
            torch.testing.assert_close(holes, torch.tensor(mean).view(3, 1).expand_as(holes))
            # the hole, normalized with that mean, is zero: the original code's convention
            assert torch.allclose((holes - torch.tensor(mean).view(3, 1)), torch.zeros_like(holes))
        assert changed[i].sum() <= 16 * 16
    black, _ = Cutout(6, np.random.default_rng(0), size=16, fill=0.0)(x, y)
    assert (black == 0).sum() > 0


@pytest.mark.parametrize("method", ["baseline", "mixup", "cutout", "cutmix"])
@pytest.mark.parametrize("batch", [1, 3, 8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_method_keeps_shapes_and_dtypes(method, batch, dtype):
    params = {"cutout": {"mean": (0.5, 0.5, 0.5)}, "cutmix": {"prob": 1.0}}.get(method, {})
    mixer = create_mixer(method, 4, np.random.default_rng(0), **params)
    x = torch.rand(batch, 3, 10, 12, dtype=dtype)
    y = torch.randint(0, 4, (batch,))
    mixed, targets = mixer(x, y)
    assert mixed.shape == x.shape and mixed.dtype == dtype and targets.shape == (batch, 4)
    torch.testing.assert_close(targets.sum(1), torch.ones(batch, dtype=targets.dtype))
    assert torch.isfinite(soft_cross_entropy(torch.randn(batch, 4), targets))


def test_soft_targets_reproduce_the_official_two_term_loss():
    logits = torch.randn(5, 7)
    y_a, y_b, lam = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([6, 5, 2, 1, 0]), 0.3
    official = lam * torch.nn.functional.cross_entropy(logits, y_a) + (1 - lam) * torch.nn.functional.cross_entropy(logits, y_b)
    soft = lam * torch.nn.functional.one_hot(y_a, 7) + (1 - lam) * torch.nn.functional.one_hot(y_b, 7)
    torch.testing.assert_close(soft_cross_entropy(logits, soft.float()), official)


def test_same_seed_same_mixing():
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 3, (8,))
    a = CutMix(3, np.random.default_rng(42), prob=1.0)(x, y)
    b = CutMix(3, np.random.default_rng(42), prob=1.0)(x, y)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_bad_methods_and_parameters():
    with pytest.raises(UserError, match="unknown method"):
        create_mixer("manifold_mixup", 3, np.random.default_rng(0))
    with pytest.raises(UserError, match="does not take"):
        create_mixer("mixup", 3, np.random.default_rng(0), beta=1.0)
    with pytest.raises(UserError, match="mean"):
        create_mixer("cutout", 3, np.random.default_rng(0))
    with pytest.raises(UserError, match="Beta"):
        create_mixer("mixup", 3, np.random.default_rng(0), alpha=0)(torch.rand(2, 3, 4, 4), torch.tensor([0, 1]))
