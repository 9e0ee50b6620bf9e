"""Bootstrap intervals against SciPy and the normal approximation; batched metrics against the scalar ones."""

import numpy as np
import pytest
from scipy import stats

from cutmix_eval.evaluate.occlusion import trapezoid_mean
from cutmix_eval.metrics import bootstrap as bt
from cutmix_eval.metrics.bootstrap import (
    auroc_rows,
    bootstrap_interval,
    detection_accuracy_rows,
    ece_rows,
    mean_rows,
    tnr_at_tpr95_rows,
    trapezoid_rows,
)
from cutmix_eval.metrics.calibration import expected_calibration_error
from cutmix_eval.metrics.ood import ood_metrics

# (B, n, m): tiny sizes, n != m both ways, and a larger case.
SCORE_SHAPES = [(6, 1, 1), (6, 1, 2), (6, 2, 1), (6, 2, 2), (5, 3, 17), (4, 20, 7), (3, 60, 45)]


def tied_scores(rng, shape, kind):
    """Scores with many ties: small integers, rounded floats, or floats (few ties)."""
    if kind == "int":
        return rng.integers(0, 4, size=shape)
    if kind == "rounded":
        return np.round(rng.normal(size=shape), 1)
    return rng.normal(size=shape)


# --------------------------------------------------------------------------- the interval


def test_mean_interval_matches_scipy_percentile_bootstrap():
    x = np.random.default_rng(3).exponential(size=150)  # skewed: the percentile interval is asymmetric
    lo, hi = bootstrap_interval(mean_rows, [x], n_resamples=4000)
    ref = stats.bootstrap((x,), np.mean, method="percentile", n_resamples=4000, confidence_level=0.95,
                          rng=np.random.default_rng(11)).confidence_interval
    width = ref.high - ref.low
    assert lo < x.mean() < hi
    assert abs(lo - ref.low) < 0.2 * width
    assert abs(hi - ref.high) < 0.2 * width


def test_mean_interval_matches_the_normal_approximation_for_a_large_sample():
    x = np.random.default_rng(4).normal(2.0, 3.0, size=10_000)
    lo, hi = bootstrap_interval(mean_rows, [x], n_resamples=1000, level=0.9)
    half = stats.norm.ppf(0.95) * x.std() / np.sqrt(x.size)
    assert abs(lo - (x.mean() - half)) < 0.1 * 2 * half
    assert abs(hi - (x.mean() + half)) < 0.1 * 2 * half


def test_accuracy_interval_is_near_the_binomial_one():
    correct = np.random.default_rng(5).random(4000) < 0.7
    lo, hi = bootstrap_interval(mean_rows, [correct])
    p = correct.mean()
    half = 1.959964 * np.sqrt(p * (1 - p) / correct.size)
    assert abs((hi - lo) - 2 * half) < 0.15 * 2 * half


def test_a_constant_sample_gives_a_zero_width_interval():
    lo, hi = bootstrap_interval(mean_rows, [np.full(37, 0.1)])
    assert lo == hi == pytest.approx(0.1, abs=1e-15)
    lo, hi = bootstrap_interval(auroc_rows, [np.ones(5), np.zeros(9)])
    assert (lo, hi) == (1.0, 1.0)


def test_groups_are_resampled_separately_keeping_their_sizes():
    a, b = np.zeros(3), np.ones((5, 2))
    seen = []

    def statistic(ra, rb):
        seen.append((ra.shape, rb.shape))
        return rb.mean(axis=(1, 2)) - ra.mean(axis=1)

    # Pooled resampling would mix zeros and ones; stratified resampling keeps every difference at 1.
    assert bootstrap_interval(statistic, [a, b], n_resamples=50) == (1.0, 1.0)
    assert sum(s[0][0] for s in seen) == 50
    assert all(sa[1:] == (3,) and sb[1:] == (5, 2) and sa[0] == sb[0] for sa, sb in seen)


def record_resamples(groups, **kwargs):
    """The resampled arrays every chunk received, concatenated per group."""
    chunks = []

    def statistic(*resampled):
        chunks.append([r.copy() for r in resampled])
        return np.zeros(resampled[0].shape[0])

    bootstrap_interval(statistic, groups, **kwargs)
    return [np.concatenate(parts) for parts in zip(*chunks)]


def test_resamples_are_draws_of_whole_images_from_their_own_group():
    a = np.arange(40)
    paired = np.stack([a, 10 * a], axis=1)  # trailing axis travels with the image
    ra, rp = record_resamples([a, paired], n_resamples=200)
    assert ra.shape == (200, 40) and rp.shape == (200, 40, 2)
    assert np.array_equal(rp[..., 1], 10 * rp[..., 0])
    assert set(np.unique(ra)) <= set(a)
    # The two groups hold the same images but are drawn independently.
    assert not np.array_equal(ra, rp[..., 0])
    # With replacement: some images repeat within a resample.
    assert all(len(np.unique(row)) < 40 for row in ra[:20])
    # Roughly uniform over images.
    counts = np.bincount(ra.ravel(), minlength=40)
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean()


def test_a_group_resamples_the_same_images_whatever_the_other_groups_and_the_chunking(monkeypatch):
    a, b = np.arange(30.0), np.arange(7.0)
    alone = record_resamples([a], n_resamples=100, seed=3)[0]
    assert np.array_equal(record_resamples([a, b], n_resamples=100, seed=3)[0], alone)
    assert np.array_equal(record_resamples([a.astype(np.float32)[:, None]], n_resamples=100, seed=3)[0][..., 0], alone)
    monkeypatch.setattr(bt, "CHUNK_BYTES", 1)  # one resample per chunk
    assert np.array_equal(record_resamples([a, b], n_resamples=100, seed=3)[0], alone)


def test_deterministic_for_a_seed_and_different_between_seeds():
    x = np.random.default_rng(6).normal(size=80)
    first = bootstrap_interval(mean_rows, [x], n_resamples=300, seed=1)
    assert bootstrap_interval(mean_rows, [x], n_resamples=300, seed=1) == first
    assert bootstrap_interval(mean_rows, [x], n_resamples=300, seed=2) != first
    assert bootstrap_interval(mean_rows, [x], n_resamples=300) == bootstrap_interval(mean_rows, [x], n_resamples=300)


def test_interval_is_the_percentile_of_the_statistic_values():
    x = np.random.default_rng(7).normal(size=25)
    values = []

    def statistic(r):
        out = mean_rows(r)
        values.append(out)
        return out

    lo, hi = bootstrap_interval(statistic, [x], n_resamples=501, level=0.8)
    assert (lo, hi) == tuple(np.quantile(np.concatenate(values), [0.1, 0.9]))


@pytest.mark.parametrize("threshold, finite", [(3, True), (6, False)])
def test_nan_values_are_ignored_only_when_fewer_than_half(threshold, finite):
    values = []

    def statistic(r):  # NaN when the first drawn image is below the threshold (30% / 60% of resamples)
        out = np.where(r[:, 0] < threshold, np.nan, r.mean(axis=1))
        values.append(out)
        return out

    lo, hi = bootstrap_interval(statistic, [np.arange(10.0)], n_resamples=400)
    if finite:
        assert (lo, hi) == tuple(np.nanquantile(np.concatenate(values), [0.025, 0.975]))
    else:
        assert np.isnan(lo) and np.isnan(hi)


def test_vectorized_statistics_give_the_interval_of_the_scalar_metric():
    rng = np.random.default_rng(8)
    ids, oods = rng.integers(0, 6, 30), rng.integers(0, 5, 45)

    def loop(metric):
        return lambda a, b: np.array([getattr(ood_metrics(a[i], b[i]), metric) for i in range(len(a))])

    for rows, metric in [(auroc_rows, "auroc"), (tnr_at_tpr95_rows, "tnr_at_tpr95"),
                         (detection_accuracy_rows, "detection_accuracy")]:
        got = bootstrap_interval(rows, [ids, oods], n_resamples=200)
        assert got == bootstrap_interval(loop(metric), [ids, oods], n_resamples=200)

    grid = np.linspace(0, 1, 6)
    correct = rng.random((50, 6)) < np.linspace(0.9, 0.1, 6)
    got = bootstrap_interval(lambda r: trapezoid_rows(grid, r.mean(axis=1)), [correct], n_resamples=200)
    ref = bootstrap_interval(lambda r: np.array([trapezoid_mean(grid, c.mean(axis=0)) for c in r]), [correct],
                             n_resamples=200)
    assert got == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    ({"groups": []}, "groups is empty"),
    ({"groups": [np.arange(3), np.array([])]}, "group 1 is empty"),
    ({"groups": [np.float64(1.0)]}, "scalar"),
    ({"groups": np.arange(3)}, "list or tuple"),
    ({"level": 0.0}, "level must be in"),
    ({"level": 1.0}, "level must be in"),
    ({"level": 95}, "level must be in"),
    ({"level": float("nan")}, "level must be in"),
    ({"n_resamples": 0}, "n_resamples"),
    ({"n_resamples": -5}, "n_resamples"),
    ({"n_resamples": 2.5}, "n_resamples"),
    ({"n_resamples": True}, "n_resamples"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    args = {"statistic": mean_rows, "groups": [np.arange(5.0)], **kwargs}
    with pytest.raises(ValueError, match=message):
        bootstrap_interval(**args)


def test_a_statistic_with_the_wrong_output_shape_is_refused():
    with pytest.raises(ValueError, match="one value per resample"):
        bootstrap_interval(lambda r: r.mean(), [np.arange(5.0)])
    with pytest.raises(ValueError, match="one value per resample"):
        bootstrap_interval(lambda r: r, [np.arange(5.0)])


# --------------------------------------------------------------------------- batched statistics


@pytest.mark.parametrize("shape", SCORE_SHAPES)
@pytest.mark.parametrize("kind", ["int", "rounded", "float"])
def test_ood_rows_equal_the_scalar_metrics(shape, kind):
    rng = np.random.default_rng([SCORE_SHAPES.index(shape), ["int", "rounded", "float"].index(kind)])
    b, n, m = shape
    ids = tied_scores(rng, (b, n), kind)
    oods = tied_scores(rng, (b, m), kind) - (0.5 if kind == "float" else 0)
    for level in (0.95, 0.5, 1.0, 0.01):
        expected = [ood_metrics(ids[i], oods[i], tpr_level=level).tnr_at_tpr95 for i in range(b)]
        np.testing.assert_allclose(tnr_at_tpr95_rows(ids, oods, tpr_level=level), expected, rtol=0, atol=1e-12)
    ref = [ood_metrics(ids[i], oods[i]) for i in range(b)]
    np.testing.assert_allclose(auroc_rows(ids, oods), [r.auroc for r in ref], rtol=0, atol=1e-12)
    np.testing.assert_allclose(tnr_at_tpr95_rows(ids, oods), [r.tnr_at_tpr95 for r in ref], rtol=0, atol=1e-12)
    np.testing.assert_allclose(detection_accuracy_rows(ids, oods), [r.detection_accuracy for r in ref],
                               rtol=0, atol=1e-12)


def test_ood_rows_on_hand_checked_cases():
    ids = np.array([[1, 1, 1], [0, 1, 2], [5, 5, 5]])
    oods = np.array([[1, 1], [0, 2], [0, 0]])
    np.testing.assert_array_equal(auroc_rows(ids, oods), [0.5, 0.5, 1.0])
    # Row 2 at t = 1: TPR = 2/3 (ID 1, 2 accepted), TNR = 1/2 (OOD 0 rejected) -> 7/12.
    np.testing.assert_allclose(detection_accuracy_rows(ids, oods), [0.5, 7 / 12, 1.0], rtol=0, atol=1e-15)
    assert detection_accuracy_rows(ids, oods)[1] == ood_metrics(ids[1], oods[1]).detection_accuracy
    # All ID images must be accepted at 95%: t* = the smallest ID score, TNR = OOD strictly below it.
    np.testing.assert_array_equal(tnr_at_tpr95_rows(ids, oods), [0.0, 0.0, 1.0])


def test_ood_rows_with_mixed_dtypes_and_a_single_row():
    rng = np.random.default_rng(9)
    ids = rng.integers(0, 5, size=(1, 40))
    oods = rng.integers(0, 5, size=(1, 33)).astype(np.float32) + np.float32(0.5) * (rng.random((1, 33)) < 0.5)
    ref = ood_metrics(ids[0], oods[0])
    assert auroc_rows(ids, oods)[0] == ref.auroc
    assert tnr_at_tpr95_rows(ids, oods)[0] == ref.tnr_at_tpr95
    assert detection_accuracy_rows(ids, oods)[0] == ref.detection_accuracy


@pytest.mark.parametrize("b, n", [(5, 1), (5, 2), (4, 15), (3, 200)])
@pytest.mark.parametrize("n_bins", [15, 1, 4])
def test_ece_rows_equal_the_scalar_ece_including_confidences_on_bin_edges(b, n, n_bins):
    rng = np.random.default_rng(b * 1000 + n + n_bins)
    edges = np.arange(n_bins + 1) / n_bins
    conf = np.where(rng.random((b, n)) < 0.4, rng.choice(edges, size=(b, n)), np.round(rng.random((b, n)), 2))
    correct = rng.random((b, n)) < conf
    expected = [expected_calibration_error(conf[i], correct[i], n_bins) for i in range(b)]
    np.testing.assert_allclose(ece_rows(conf, correct, n_bins), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ece_rows(conf, correct.astype(int), n_bins), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("grid", [np.linspace(0, 1, 11), np.array([0.2, 0.3, 0.7]), np.array([0.0, 1.0])])
def test_trapezoid_rows_equal_trapezoid_mean(grid):
    values = np.random.default_rng(10).random((6, grid.size))
    expected = [trapezoid_mean(grid, v) for v in values]
    np.testing.assert_allclose(trapezoid_rows(grid, values), expected, rtol=0, atol=1e-12)


def test_mean_rows_averages_every_entry_of_a_row():
    x = np.random.default_rng(11).random((4, 9, 3))
    np.testing.assert_allclose(mean_rows(x), [row.mean() for row in x], rtol=0, atol=1e-12)
    booleans = x[..., 0] < 0.5
    np.testing.assert_allclose(mean_rows(booleans), booleans.mean(axis=1), rtol=0, atol=1e-12)
    assert mean_rows(np.ones((2, 1))).dtype == np.float64


def test_rows_functions_refuse_bad_shapes():
    with pytest.raises(ValueError, match="same number of rows"):
        auroc_rows(np.zeros((3, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"shape \(B, n\)"):
        detection_accuracy_rows(np.zeros(4), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="NaN/infinite"):
        tnr_at_tpr95_rows(np.array([[0.0, np.nan]]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="outside"):
        ece_rows(np.array([[1.5]]), np.array([[True]]))
    with pytest.raises(ValueError, match="match the grid"):
        trapezoid_rows(np.linspace(0, 1, 3), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="n >= 1"):
        mean_rows(np.zeros((3, 0)))
