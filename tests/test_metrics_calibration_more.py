"""Calibration beyond ECE and selective prediction, against brute-force loops written here, the
numbers of Kumar et al.'s ``uncertainty-calibration`` package, torchmetrics and scikit-learn."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from cutmix_eval.metrics.calibration import (
    adaptive_calibration_error,
    classwise_calibration_error,
    debiased_l2_calibration_error,
    equal_mass_bins,
    max_calibration_error,
    probability_metrics,
)
from cutmix_eval.metrics.selective import aurc, augrc, excess_aurc, risk_coverage_curve


def probabilities(seed, n=400, k=6, scale=3.0, decimals=None):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * scale
    if decimals is not None:
        z = np.round(z, decimals)  # many tied confidences
    y = rng.integers(0, k, n)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True), y


def top_label(p, y):
    return p.max(1), p.argmax(1) == y


# --------------------------------------------------------------------------- brute force, one image at a time


def bf_width_bin(c, n_bins):
    """The right-closed equal-width bin of one confidence, by scanning the bins."""
    for i in range(n_bins):
        if i / n_bins < c <= (i + 1) / n_bins or (i == 0 and c == 0):
            return i
    raise AssertionError(c)


def bf_mass_upper_edges(conf, n_bins):
    """Kumar et al.'s equal-mass upper edges written as plain Python loops."""
    values = sorted(float(c) for c in conf)
    n_bins = min(n_bins, len(values))
    sizes = [len(values) // n_bins + (1 if i < len(values) % n_bins else 0) for i in range(n_bins)]
    runs, start = [], 0
    for size in sizes:
        runs.append(values[start:start + size])
        start += size
    edges = {(runs[i][-1] + runs[i + 1][0]) / 2.0 for i in range(n_bins - 1)} | {1.0}
    return sorted(edges)


def bf_groups(conf, corr, bin_of):
    groups = {}
    for c, ok in zip(conf, corr):
        groups.setdefault(bin_of(float(c)), []).append((float(c), float(ok)))
    return groups


def bf_ece(conf, corr, bin_of):
    n, total = len(conf), 0.0
    for items in bf_groups(conf, corr, bin_of).values():
        total += len(items) / n * abs(sum(a for _, a in items) / len(items) - sum(c for c, _ in items) / len(items))
    return total


def bf_mass_bin_of(conf, n_bins):
    edges = bf_mass_upper_edges(conf, n_bins)
    return lambda c: next(i for i, e in enumerate(edges) if c <= e)


# --------------------------------------------------------------------------- binned calibration errors


@pytest.mark.parametrize("seed, n, decimals", [(0, 400, None), (1, 7, None), (2, 600, 1), (3, 31, 0)])
def test_adaptive_ece_and_bins_match_a_loop(seed, n, decimals):
    conf, corr = top_label(*probabilities(seed, n, decimals=decimals))
    bin_of = bf_mass_bin_of(conf, 15)
    assert adaptive_calibration_error(conf, corr) == pytest.approx(bf_ece(conf, corr, bin_of), abs=1e-12)
    bins = equal_mass_bins(conf, corr)
    counts = {i: len(v) for i, v in bf_groups(conf, corr, bin_of).items()}
    assert [int(c) for c in bins.count if c] == [counts[i] for i in sorted(counts)]
    assert bins.edges.size - 1 <= min(15, n)


def test_equal_mass_bins_keep_ties_together_and_put_an_edge_value_below():
    conf = np.array([0.2, 0.4, 0.4, 0.4, 0.9, 1.0])
    bins = equal_mass_bins(conf, np.ones(6, bool), n_bins=3)
    # runs [.2 .4] [.4 .4] [.9 1]: inner edges .4 (tie across the cut, merged with no split) and .65
    np.testing.assert_allclose(bins.edges, [0.0, 0.4, 0.65, 1.0])
    assert bins.count.tolist() == [4, 0, 2]  # the tied 0.4s all sit on the edge: bin (0, 0.4]


@pytest.mark.parametrize("seed", [0, 1])
def test_mce_matches_a_loop_and_torchmetrics_off_the_edges(seed):
    tm = pytest.importorskip("torchmetrics.functional.classification")
    p, y = probabilities(seed)
    conf, corr = top_label(p, y)
    groups = bf_groups(conf, corr, lambda c: bf_width_bin(c, 15))
    expected = max(abs(sum(a for _, a in v) / len(v) - sum(c for c, _ in v) / len(v)) for v in groups.values())
    assert max_calibration_error(conf, corr) == pytest.approx(expected, abs=1e-12)
    theirs = float(tm.multiclass_calibration_error(torch.from_numpy(p), torch.from_numpy(y), num_classes=6,
                                                   n_bins=15, norm="max"))
    assert max_calibration_error(conf, corr) == pytest.approx(theirs, abs=1e-6)  # float32 there


def test_mce_edge_value_empty_bins_and_all_correct():
    # Two bins: 0.5 lies on the edge and goes into (0, 0.5] (torchmetrics would put it in [0.5, 1)).
    conf, corr = np.array([0.5, 0.9, 1.0]), np.array([True, False, True])
    # bin 0 = {0.5: right}: gap 0.5; bin 1 = {0.9: wrong, 1.0: right}: acc 0.5, conf 0.95, gap 0.45
    assert max_calibration_error(conf, corr, n_bins=2) == pytest.approx(0.5)
    assert max_calibration_error(np.array([0.95, 0.95]), np.array([True, True]), n_bins=15) == pytest.approx(0.05)
    assert max_calibration_error(np.ones(4), np.ones(4, bool)) == 0.0


@pytest.mark.parametrize("seed, decimals", [(0, None), (4, 0)])
def test_classwise_ece_matches_a_loop_over_classes_and_bins(seed, decimals):
    p, y = probabilities(seed, 300, 5, decimals=decimals)
    expected = np.mean([bf_ece(p[:, k], y == k, lambda c: bf_width_bin(c, 15)) for k in range(5)])
    assert classwise_calibration_error(p, y) == pytest.approx(expected, abs=1e-12)


def test_classwise_ece_edge_values():
    # K = 2, 2 bins: p = (0.5, 0.5) is on the edge of both classes' bins -> bin (0, 0.5]
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    y = np.array([0, 0])
    # class 0: bin0 {0.5: positive} gap .5 (w 1/2); bin1 {1.0: positive} gap 0 -> .25
    # class 1: bin0 {0.5: neg, 0.0: neg} gap mean conf .25 -> .25
    assert classwise_calibration_error(p, y, n_bins=2) == pytest.approx(0.25)


# Kumar, Liang & Ma's own package (uncertainty-calibration 0.1.4,
# calibration.lower_bound_scaling_ce(probs, labels, p=2, debias=True, num_bins=15, mode="top-label")
# and p=1, debias=False for the plug-in L1 over the same bins), run on these inputs outside the suite.
KUMAR = [((11, 700, 6, 3.0, None), 0.5502303504175456, 0.5206313379242326),
         ((12, 500, 4, 2.0, 1), 0.477097824145804, 0.4422802001283856),
         ((13, 37, 3, 1.0, None), 0.39140847082561014, 0.39821810563359106)]


@pytest.mark.parametrize("args, l2, l1", KUMAR)
def test_debiased_l2_and_adaptive_ece_equal_the_authors_package(args, l2, l1):
    conf, corr = top_label(*probabilities(*args))
    assert debiased_l2_calibration_error(conf, corr) == pytest.approx(l2, abs=1e-12)
    assert adaptive_calibration_error(conf, corr) == pytest.approx(l1, abs=1e-12)


@pytest.mark.parametrize("seed, n, decimals", [(0, 400, None), (2, 600, 1), (5, 20, None)])
def test_debiased_l2_matches_a_loop(seed, n, decimals):
    conf, corr = top_label(*probabilities(seed, n, decimals=decimals))
    total = 0.0
    for items in bf_groups(conf, corr, bf_mass_bin_of(conf, 15)).values():
        if len(items) >= 2:
            acc = sum(a for _, a in items) / len(items)
            gap = sum(c for c, _ in items) / len(items) - acc
            total += len(items) / n * (gap ** 2 - acc * (1 - acc) / (len(items) - 1))
    assert debiased_l2_calibration_error(conf, corr) == pytest.approx(max(total, 0.0) ** 0.5, abs=1e-12)


def test_debiased_l2_is_clipped_at_zero_for_a_calibrated_set():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1, 20000)
    assert debiased_l2_calibration_error(conf, rng.random(20000) < conf) < 0.01
    assert debiased_l2_calibration_error(np.ones(5), np.ones(5, bool)) == 0.0


@pytest.mark.parametrize("fn", [adaptive_calibration_error, max_calibration_error, debiased_l2_calibration_error])
def test_binned_errors_reject_bad_input(fn):
    with pytest.raises(ValueError, match="empty"):
        fn(np.array([]), np.array([], bool))
    with pytest.raises(ValueError, match="NaN or outside"):
        fn(np.array([0.5, np.nan]), np.array([True, False]))
    with pytest.raises(ValueError, match="shapes"):
        fn(np.array([0.5, 0.6]), np.array([True]))


def test_classwise_and_probability_metrics_reject_bad_probabilities():
    with pytest.raises(ValueError, match="do not sum to 1"):
        classwise_calibration_error(np.array([[0.5, 0.6]]), np.array([0]))
    with pytest.raises(ValueError, match="N x K"):
        probability_metrics(np.array([0.5, 0.5]), np.array([0]))
    with pytest.raises(ValueError, match="outside 0..1"):
        probability_metrics(np.array([[0.5, 0.5]]), np.array([2]))


def test_probability_metrics_agree_with_the_single_metrics():
    p, y = probabilities(7)
    conf, corr = top_label(p, y)
    m = probability_metrics(p, y)
    assert m["adaptive_ece"] == adaptive_calibration_error(conf, corr) and m["aurc"] == aurc(conf, corr)
    assert m["top1_error"] == pytest.approx(1 - corr.mean())
    assert m["nll"] == pytest.approx(-np.mean(np.log(p[np.arange(len(y)), y])), abs=1e-12)
    zero = np.array([[1.0, 0.0], [0.0, 1.0]])  # a probability 0 on the label: NLL floored like sklearn's log_loss
    assert probability_metrics(zero, np.array([1, 1]))["nll"] == pytest.approx(-np.log(np.finfo(float).eps) / 2)


# --------------------------------------------------------------------------- selective prediction


def bf_aurc(conf, corr):
    """Mean over images of the selective risk when accepting every image at least as confident."""
    risks = []
    for c in conf:
        accepted = [ok for d, ok in zip(conf, corr) if d >= c]
        risks.append(sum(not ok for ok in accepted) / len(accepted))
    return sum(risks) / len(risks)


def bf_augrc(conf, corr):
    """Trapezoids between the distinct thresholds of (coverage, accepted errors / N), from (0, 0)."""
    n = len(conf)
    points = [(0.0, 0.0)]
    for t in sorted(set(conf), reverse=True):
        accepted = [ok for d, ok in zip(conf, corr) if d >= t]
        points.append((len(accepted) / n, sum(not ok for ok in accepted) / n))
    return sum((c1 - c0) * (g0 + g1) / 2 for (c0, g0), (c1, g1) in zip(points, points[1:]))


@pytest.mark.parametrize("seed, decimals", [(0, None), (1, 1), (2, 0)])
def test_aurc_augrc_and_curve_match_loops_with_and_without_ties(seed, decimals):
    conf, corr = top_label(*probabilities(seed, 150, decimals=decimals))
    assert aurc(conf, corr) == pytest.approx(bf_aurc(conf, corr), abs=1e-12)
    assert augrc(conf, corr) == pytest.approx(bf_augrc(conf, corr), abs=1e-12)
    rc = risk_coverage_curve(conf, corr)
    assert rc.threshold.tolist() == sorted(set(conf.tolist()), reverse=True) and rc.coverage[-1] == 1.0
    assert rc.risk[-1] == pytest.approx(1 - corr.mean())


@pytest.mark.parametrize("seed, decimals", [(0, None), (1, 1)])
def test_augrc_equals_traub_et_al_identity_with_sklearn_auroc(seed, decimals):
    conf, corr = top_label(*probabilities(seed, 300, decimals=decimals))
    r, auroc = 1 - corr.mean(), roc_auc_score(corr, conf)  # sklearn counts ties half
    assert augrc(conf, corr) == pytest.approx(r ** 2 / 2 + r * (1 - r) * (1 - auroc), abs=1e-12)


def test_ties_are_accepted_together_and_order_does_not_matter():
    conf = np.array([0.9, 0.9, 0.9, 0.5])
    corr = np.array([True, False, True, True])
    # one threshold at 0.9 (coverage 3/4, risk 1/3) and one at 0.5 (coverage 1, risk 1/4)
    assert aurc(conf, corr) == pytest.approx(0.75 * (1 / 3) + 0.25 * 0.25)
    flipped = corr[[1, 0, 2, 3]]
    assert aurc(conf, flipped) == aurc(conf, corr) and augrc(conf, flipped) == augrc(conf, corr)
    assert augrc(conf, corr) == pytest.approx(0.75 * (0 + 0.25) / 2 + 0.25 * (0.25 + 0.25) / 2)


def test_excess_aurc_subtracts_the_exact_oracle():
    conf, corr = top_label(*probabilities(3, 500))
    m, n = int(corr.sum()), len(corr)
    oracle = sum(max(0, i - m) / i for i in range(1, n + 1)) / n
    assert excess_aurc(conf, corr) == pytest.approx(bf_aurc(conf, corr) - oracle, abs=1e-12)
    r = 1 - m / n
    assert oracle == pytest.approx(r + (1 - r) * np.log(1 - r), abs=2 / n)  # Geifman et al.'s continuous form
    perfect = corr + np.random.default_rng(0).uniform(0, 0.5, n)  # distinct, every correct image above
    assert excess_aurc(perfect, corr) == pytest.approx(0.0, abs=1e-15)
    # ties cost: a 0/1 score ties the wrong images, which then share the full error rate
    assert excess_aurc(corr.astype(float), corr) > 0


def test_selective_all_correct_all_wrong_and_bad_input():
    ones = np.ones(5, bool)
    conf = np.linspace(0.2, 1, 5)
    assert aurc(conf, ones) == augrc(conf, ones) == excess_aurc(conf, ones) == 0.0
    assert aurc(conf, ~ones) == 1.0 and augrc(conf, ~ones) == 0.5 and excess_aurc(conf, ~ones) == 0.0
    with pytest.raises(ValueError, match="empty"):
        aurc(np.array([]), np.array([], bool))
    with pytest.raises(ValueError, match="NaN/infinite"):
        augrc(np.array([np.nan, 1.0]), np.array([True, False]))
    with pytest.raises(ValueError, match="booleans"):
        excess_aurc(np.array([0.1, 0.2]), np.array([2, 0]))
