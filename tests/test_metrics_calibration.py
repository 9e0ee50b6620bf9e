"""Calibration metrics against hand-worked numbers, brute-force loops, torch, scikit-learn and torchmetrics."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import log_loss

from cutmix_eval.metrics.calibration import (
    CONVENTIONS,
    TEMPERATURE_BOUNDS,
    ReliabilityBins,
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    log_softmax,
    negative_log_likelihood,
    reliability_bins,
    softmax,
)


def tm_ece(tm, probs, labels, num_classes, n_bins):
    """torchmetrics' L1 calibration error on probabilities (it bins left-closed, in float32)."""
    preds, target = torch.from_numpy(probs), torch.from_numpy(labels)
    return float(tm.multiclass_calibration_error(preds, target, num_classes=num_classes, n_bins=n_bins, norm="l1"))


def random_logits(seed, n=600, k=10, scale=3.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, k)) * scale, rng.integers(0, k, n)


# --------------------------------------------------------------------------- softmax


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_softmax_and_log_softmax_match_torch(temperature):
    z, _ = random_logits(0, 50, 7)
    p = softmax(z.astype(np.float32), temperature)
    assert p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    zt = torch.from_numpy(z.astype(np.float32)).double() / temperature
    np.testing.assert_allclose(p, torch.softmax(zt, dim=1).numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        log_softmax(z.astype(np.float32), temperature), torch.log_softmax(zt, dim=1).numpy(), atol=1e-12
    )


def test_softmax_is_stable_for_huge_logits():
    z = np.array([[1000.0, 0.0, -1000.0], [1e6, 1e6, 1e6]])
    np.testing.assert_allclose(softmax(z), [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    ls = log_softmax(z)
    assert np.isfinite(ls).all()
    np.testing.assert_allclose(ls[0], [0.0, -1000.0, -2000.0])
    np.testing.assert_allclose(softmax(np.array([[1, 2, 3]]), temperature=1e-3)[0], [0, 0, 1], atol=1e-300)


# --------------------------------------------------------------------------- ECE and bins


def test_ece_by_hand():
    # 5 bins (0,.2], (.2,.4], (.4,.6], (.6,.8], (.8,1]:
    #   bin 0: {0.1 wrong}          acc 0,   conf 0.1   -> |0 - 0.1|     * 1/5 = 0.02
    #   bin 1: {0.3 right, 0.35 wrong} acc 0.5, conf 0.325 -> |0.5 - 0.325| * 2/5 = 0.07
    #   bin 4: {0.9 right, 0.95 right} acc 1,   conf 0.925 -> |1 - 0.925|   * 2/5 = 0.03
    # ECE = 0.12
    conf = np.array([0.1, 0.3, 0.35, 0.9, 0.95])
    correct = np.array([False, True, False, True, True])
    assert expected_calibration_error(conf, correct, n_bins=5) == pytest.approx(0.12)
    bins = reliability_bins(conf, correct, n_bins=5)
    np.testing.assert_array_equal(bins.count, [1, 2, 0, 0, 2])
    np.testing.assert_allclose(bins.accuracy, [0, 0.5, np.nan, np.nan, 1])
    np.testing.assert_allclose(bins.confidence, [0.1, 0.325, np.nan, np.nan, 0.925])
    np.testing.assert_allclose(bins.edges, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    # Default 15 bins: 0.5 in (7/15, 8/15], 0.55 in (8/15, 9/15], 0.97 in (14/15, 1], one image each:
    # ECE = (|1 - 0.5| + |0 - 0.55| + |1 - 0.97|) / 3 = 1.08 / 3 = 0.36.
    assert expected_calibration_error([0.5, 0.55, 0.97], [1, 0, 1]) == pytest.approx(0.36)


def test_bins_are_right_closed_on_exact_edges():
    conf = np.array([0.0, 1 / 15, np.nextafter(1 / 15, 1), 2 / 15, 14 / 15, 1.0])
    bins = reliability_bins(conf, np.ones(6, dtype=bool))
    assert isinstance(bins, ReliabilityBins)
    assert bins.edges.shape == (16,) and bins.edges[0] == 0.0 and bins.edges[-1] == 1.0
    assert bins.edges[1] == 1 / 15  # edge i is the float64 value i / 15
    expected = np.zeros(15, dtype=int)
    expected[0] = 2  # 0.0 (by the rule for exact zero) and 1/15 (the right end of bin 0)
    expected[1] = 2  # just above 1/15, and 2/15
    expected[13] = 1  # 14/15
    expected[14] = 1  # 1.0
    np.testing.assert_array_equal(bins.count, expected)
    assert np.isnan(bins.accuracy[2]) and np.isnan(bins.confidence[2])


def test_ece_matches_torchmetrics_when_no_confidence_is_on_an_edge():
    tm = pytest.importorskip("torchmetrics.functional.classification")
    z, y = random_logits(1, n=3000, k=10, scale=2.0)
    p = softmax(z)
    conf = p.max(axis=1)
    edges = np.arange(16) / 15
    assert np.min(np.abs(conf[:, None] - edges[None, :])) > 1e-5  # precondition: no confidence near an edge
    ours = calibration_metrics(z, y)["ece"]
    theirs = tm_ece(tm, p, y, num_classes=10, n_bins=15)
    assert ours == pytest.approx(theirs, abs=1e-6)  # torchmetrics works in float32
    assert ours == pytest.approx(expected_calibration_error(conf, p.argmax(axis=1) == y))


def test_ece_differs_from_torchmetrics_on_an_edge():
    tm = pytest.importorskip("torchmetrics.functional.classification")
    # Two bins, edge 0.5 (exact in binary). Image A: p = [0.5, 0.5], label 0 -> confidence 0.5, correct.
    # Image B: p = [0.9, 0.1], label 1 -> confidence 0.9, wrong.
    #   ours (right-closed, (0, .5], (.5, 1]): |1 - 0.5| / 2 + |0 - 0.9| / 2 = 0.7
    #   torchmetrics (left-closed, [0, .5), [.5, 1)): both in bin 1, |0.5 - 0.7| = 0.2
    p = np.array([[0.5, 0.5], [0.9, 0.1]])
    y = np.array([0, 1])
    assert expected_calibration_error([0.5, 0.9], [True, False], n_bins=2) == pytest.approx(0.7)
    theirs = tm_ece(tm, p, y, num_classes=2, n_bins=2)
    assert theirs == pytest.approx(0.2)
    # Confidence exactly 1 (15 bins): ours shares bin (14/15, 1] with 0.95; torchmetrics gives 1.0 its own bin.
    #   ours: A = 1.0 wrong, B = 0.95 right -> acc 0.5, conf 0.975 -> 0.475
    #   torchmetrics: |0 - 1| / 2 + |1 - 0.95| / 2 = 0.525
    p = np.array([[1.0, 0.0], [0.95, 0.05]])
    y = np.array([1, 0])
    assert expected_calibration_error([1.0, 0.95], [False, True]) == pytest.approx(0.475)
    theirs = tm_ece(tm, p, y, num_classes=2, n_bins=15)
    assert theirs == pytest.approx(0.525)


def test_ece_brute_force_loop():
    rng = np.random.default_rng(2)
    conf = rng.choice(np.r_[rng.uniform(0, 1, 200), np.arange(16) / 15], size=400)
    correct = rng.uniform(size=400) < conf
    total = 0.0
    for i in range(15):
        lo, hi = i / 15, (i + 1) / 15
        members = [j for j in range(400) if lo < conf[j] <= hi or (i == 0 and conf[j] == 0)]
        if members:
            acc = sum(correct[j] for j in members) / len(members)
            mean_conf = sum(conf[j] for j in members) / len(members)
            total += abs(acc - mean_conf) * len(members) / 400
    assert expected_calibration_error(conf, correct) == pytest.approx(total, abs=1e-12)


# --------------------------------------------------------------------------- NLL and Brier


@pytest.mark.parametrize("temperature", [1.0, 0.7, 2.5])
def test_nll_matches_torch_and_sklearn(temperature):
    z, y = random_logits(3, k=10)
    ours = negative_log_likelihood(z, y, temperature)
    ref = F.cross_entropy(torch.from_numpy(z) / temperature, torch.from_numpy(y)).item()
    assert ours == pytest.approx(ref, rel=1e-12)
    assert ours == pytest.approx(log_loss(y, softmax(z, temperature), labels=range(10)), rel=1e-9)


def test_nll_is_finite_for_confident_mistakes():
    z = np.array([[2000.0, 0.0]])
    assert negative_log_likelihood(z, np.array([1])) == pytest.approx(2000.0)


def test_brier_matches_brute_force_and_range():
    z, y = random_logits(4, n=200, k=6)
    for temperature in (1.0, 2.0):
        p = softmax(z, temperature)
        brute = 0.0
        for i in range(len(y)):
            brute += sum((p[i, c] - (1.0 if c == y[i] else 0.0)) ** 2 for c in range(6))
        assert brier_score(z, y, temperature) == pytest.approx(brute / len(y), rel=1e-12)
    assert brier_score(np.array([[50.0, 0.0, 0.0]]), np.array([0])) == pytest.approx(0.0, abs=1e-12)
    assert brier_score(np.array([[50.0, 0.0, 0.0]]), np.array([1])) == pytest.approx(2.0)
    assert brier_score(np.zeros((1, 4)), np.array([2])) == pytest.approx(0.75)  # 3 * (1/4)^2 + (3/4)^2


# --------------------------------------------------------------------------- temperature scaling


def test_fit_temperature_recovers_known_temperature():
    rng = np.random.default_rng(5)
    t_true = 2.0
    z = rng.normal(size=(20000, 10)) * 4.0
    p = softmax(z, t_true)
    u = rng.uniform(size=(len(z), 1))
    y = np.minimum((p.cumsum(axis=1) < u).sum(axis=1), 9)  # labels drawn from softmax(z / T_true)
    t = fit_temperature(z, y)
    assert t == pytest.approx(t_true, rel=0.05)
    nll = negative_log_likelihood(z, y, t)
    for other in (1.0, t * 0.99, t * 1.01, t * 0.9, t * 1.1):
        assert nll <= negative_log_likelihood(z, y, other)


def test_fit_temperature_clips_to_bounds():
    z = np.array([[5.0, 0.0], [0.0, 5.0]])
    assert fit_temperature(z, np.array([0, 1])) == TEMPERATURE_BOUNDS[0]  # all correct: NLL falls as T -> 0
    assert fit_temperature(z, np.array([1, 0])) == TEMPERATURE_BOUNDS[1]  # all wrong: NLL falls as T -> inf


# --------------------------------------------------------------------------- summary and conventions


def test_calibration_metrics_summary():
    z, y = random_logits(6)
    m = calibration_metrics(z, y)
    assert list(m) == ["ece", "nll", "brier", "mean_confidence", "accuracy"]
    assert all(type(v) is float for v in m.values())
    p = softmax(z)
    assert m["mean_confidence"] == pytest.approx(p.max(axis=1).mean())
    assert m["accuracy"] == pytest.approx(np.mean(p.argmax(axis=1) == y))
    assert m["nll"] == negative_log_likelihood(z, y) and m["brier"] == brier_score(z, y)
    # Ties go to the lower class index.
    tied = calibration_metrics(np.array([[1.0, 1.0], [0.0, 0.0]]), np.array([0, 1]))
    assert tied["accuracy"] == 0.5 and tied["mean_confidence"] == 0.5
    assert tied["ece"] == pytest.approx(0.0)  # both in bin (7/15, 8/15]: acc 0.5, conf 0.5
    assert set(CONVENTIONS) == {"ece", "nll", "brier", "temperature", "adaptive_ece", "classwise_ece", "mce",
                                "l2_ce_debiased", "aurc", "augrc"}
    assert "right-closed" in CONVENTIONS["ece"] and "[0, 2]" in CONVENTIONS["brier"]


@pytest.mark.parametrize(
    "logits, labels, match",
    [
        (np.zeros((3, 2)), np.zeros(4, dtype=int), "labels must have shape"),
        (np.zeros(3), np.zeros(3, dtype=int), "N x K"),
        (np.zeros((0, 2)), np.zeros(0, dtype=int), "empty"),
        (np.zeros((2, 3)), np.array([0, 3]), "1 labels are outside 0..2"),
        (np.zeros((2, 3)), np.array([-1, 0]), "outside"),
        (np.zeros((2, 3)), np.array([0.0, 1.0]), "integers"),
        (np.array([[0.0, np.nan], [np.inf, 0.0]]), np.array([0, 1]), "logits contain 2 NaN/infinite values"),
    ],
)
def test_bad_logits_and_labels(logits, labels, match):
    for fn in (negative_log_likelihood, brier_score, fit_temperature, calibration_metrics):
        with pytest.raises(ValueError, match=match):
            fn(logits, labels)


def test_bad_temperature_and_bins():
    z, y = np.zeros((2, 2)), np.array([0, 1])
    for t in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            negative_log_likelihood(z, y, t)
        with pytest.raises(ValueError, match="temperature"):
            softmax(z, t)
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0.5], [True], n_bins=0)
    with pytest.raises(ValueError, match="outside"):
        expected_calibration_error([1.5], [True])
    with pytest.raises(ValueError, match="NaN"):
        reliability_bins([np.nan], [True])
    with pytest.raises(ValueError, match="shapes"):
        reliability_bins([0.5, 0.6], [True])
    with pytest.raises(ValueError, match="empty"):
        reliability_bins([], [])
    with pytest.raises(ValueError, match="booleans"):
        reliability_bins([0.5], [2])
