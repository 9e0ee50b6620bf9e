"""OOD detection metrics against scikit-learn, a brute-force threshold loop and hand-worked numbers."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from cutmix_eval.metrics.ood import CONVENTIONS, OODMetrics, ood_metrics, roc_points

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # NumPy < 2.0 only has trapz

METRIC_NAMES = ["tnr_at_tpr95", "auroc", "detection_accuracy", "aupr_in", "aupr_out", "fpr95_ood_pos"]


def brute_force(id_scores, ood_scores, level=0.95):
    """Every candidate threshold (each distinct score and +inf) with plain Python comparisons."""
    ids = [float(v) for v in id_scores]
    oods = [float(v) for v in ood_scores]
    candidates = sorted(set(ids) | set(oods)) + [math.inf]

    def tpr(t):  # ID accepted: score >= t
        return sum(s >= t for s in ids) / len(ids)

    def tnr(t):  # OOD rejected: score < t
        return sum(s < t for s in oods) / len(oods)

    t_star = max(t for t in candidates if tpr(t) >= level)
    t_ood = min(t for t in candidates if sum(s <= t for s in oods) / len(oods) >= level)
    return {
        "tnr_at_tpr95": tnr(t_star),
        "threshold_tpr95": t_star,
        "fpr95_ood_pos": sum(s <= t_ood for s in ids) / len(ids),
        "detection_accuracy": max(0.5 * tpr(t) + 0.5 * tnr(t) for t in candidates),
        "auroc": sum((a > b) + 0.5 * (a == b) for a in ids for b in oods) / (len(ids) * len(oods)),
    }


def sklearn_reference(id_scores, ood_scores):
    y = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    s = np.r_[np.asarray(id_scores, dtype=np.float64), np.asarray(ood_scores, dtype=np.float64)]
    return {
        "auroc": roc_auc_score(y, s),
        "aupr_in": average_precision_score(y, s),
        "aupr_out": average_precision_score(1 - y, -s),
    }


def assert_matches_references(id_scores, ood_scores, level=0.95, with_sklearn=True):
    got = ood_metrics(id_scores, ood_scores, tpr_level=level)
    brute = brute_force(id_scores, ood_scores, level)
    for name in ("tnr_at_tpr95", "threshold_tpr95", "fpr95_ood_pos"):
        assert getattr(got, name) == brute[name], name  # exact: same counts, same division
    assert got.detection_accuracy == pytest.approx(brute["detection_accuracy"], abs=1e-12)
    assert got.auroc == pytest.approx(brute["auroc"], abs=1e-12)
    if with_sklearn:
        for name, value in sklearn_reference(id_scores, ood_scores).items():
            assert getattr(got, name) == pytest.approx(value, abs=1e-12), name
    fpr, tpr = roc_points(id_scores, ood_scores)
    assert _trapezoid(tpr, fpr) == pytest.approx(got.auroc, abs=1e-12)
    return got


def test_hand_computed_tiny_example():
    # ID = [3, 2, 2, 1], OOD = [2, 1, 0]; accept as ID when score >= t.
    #   t     : 0    1    2    3    +inf
    #   TPR   : 4/4  4/4  3/4  1/4  0
    #   TNR   : 0/3  1/3  2/3  3/3  1
    # tnr_at_tpr95: largest t with TPR >= 0.95 is t = 1 -> TNR = 1/3.
    # detection accuracy: (TPR + TNR) / 2 = 1/2, 2/3, 17/24, 5/8, 1/2 -> 17/24.
    # AUROC: ID 3 beats 3 OOD; each ID 2 beats 2 and ties 1 (2.5, twice); ID 1 beats 1 and ties 1 (1.5)
    #   -> (3 + 5 + 1.5) / 12 = 19/24.
    # fpr95_ood_pos: OOD flagged (score <= t) at t = 0, 1, 2: 1/3, 2/3, 3/3 -> t = 2; ID <= 2: 3 of 4 -> 3/4
    #   (whereas 1 - tnr_at_tpr95 = 2/3).
    # AUPR-In, thresholds descending: t=3: P=1/1, dR=1/4; t=2: P=3/4, dR=2/4; t=1: P=4/6, dR=1/4
    #   -> 1/4 + 3/8 + 1/6 = 19/24.
    # AUPR-Out (score <= t), ascending: t=0: P=1/1, dR=1/3; t=1: P=2/3, dR=1/3; t=2: P=3/6, dR=1/3
    #   -> 1/3 + 2/9 + 1/6 = 13/18.
    ids, oods = [3, 2, 2, 1], [2, 1, 0]
    m = ood_metrics(ids, oods)
    assert m.tnr_at_tpr95 == pytest.approx(1 / 3)
    assert m.threshold_tpr95 == 1.0
    assert m.detection_accuracy == pytest.approx(17 / 24)
    assert m.auroc == pytest.approx(19 / 24)
    assert m.fpr95_ood_pos == pytest.approx(3 / 4)
    assert m.aupr_in == pytest.approx(19 / 24)
    assert m.aupr_out == pytest.approx(13 / 18)
    # ROC, thresholds +inf, 3, 2, 1, 0: fpr = fraction of OOD >= t, tpr = fraction of ID >= t.
    fpr, tpr = roc_points(ids, oods)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 4, 3 / 4, 1, 1])
    assert_matches_references(ids, oods)


def test_random_continuous_scores():
    rng = np.random.default_rng(0)
    ids, oods = rng.normal(1.0, 1.0, 400), rng.normal(0.0, 1.5, 300)
    m = assert_matches_references(ids, oods)
    assert 0.6 < m.auroc < 0.8


def test_heavy_ties_integer_scores():
    rng = np.random.default_rng(1)
    assert_matches_references(rng.integers(0, 5, 200), rng.integers(0, 5, 150))
    assert_matches_references(rng.integers(1, 5, 60), rng.integers(0, 4, 90))


def test_identical_distributions():
    scores = np.random.default_rng(2).normal(size=300)
    m = assert_matches_references(scores, scores.copy())
    assert m.auroc == 0.5
    assert m.detection_accuracy == 0.5
    # Same scores: the OOD set passes exactly where the ID set does.
    assert m.tnr_at_tpr95 == pytest.approx(1 - 285 / 300)


def test_perfectly_separated():
    rng = np.random.default_rng(3)
    m = assert_matches_references(rng.uniform(10, 11, 50), rng.uniform(0, 1, 80))
    assert (m.auroc, m.tnr_at_tpr95, m.detection_accuracy, m.aupr_in, m.aupr_out) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert m.fpr95_ood_pos == 0.0


def test_reversed():
    rng = np.random.default_rng(4)
    m = assert_matches_references(rng.uniform(0, 1, 50), rng.uniform(10, 11, 80))
    assert m.auroc == 0.0
    assert m.tnr_at_tpr95 == 0.0
    assert m.detection_accuracy == 0.5  # the trivial accept-all / reject-all thresholds
    assert m.fpr95_ood_pos == 1.0


def test_unequal_sizes():
    rng = np.random.default_rng(5)
    assert_matches_references(rng.normal(1, 1, 7), rng.normal(0, 1, 1000))
    assert_matches_references(rng.normal(1, 1, 1000), rng.normal(0, 1, 7))
    assert_matches_references(rng.integers(0, 3, 7), rng.integers(0, 3, 1000))


def test_single_element_sets():
    m = assert_matches_references([1.0], [0.0])
    assert m.as_dict() == {
        "tnr_at_tpr95": 1.0,
        "auroc": 1.0,
        "detection_accuracy": 1.0,
        "aupr_in": 1.0,
        "aupr_out": 1.0,
        "fpr95_ood_pos": 0.0,
        "threshold_tpr95": 1.0,
    }
    m = assert_matches_references([0.0], [0.0])
    assert (m.auroc, m.tnr_at_tpr95, m.detection_accuracy, m.fpr95_ood_pos) == (0.5, 0.0, 0.5, 1.0)
    assert (m.aupr_in, m.aupr_out) == (0.5, 0.5)
    assert_matches_references([0.0], [1.0, 2.0, 0.0])


def test_tpr_level_parameter():
    rng = np.random.default_rng(6)
    ids, oods = rng.normal(1, 1, 100), rng.normal(0, 1, 100)
    for level in (0.5, 0.9, 0.95, 0.99, 1.0):
        assert_matches_references(ids, oods, level, with_sklearn=False)
    # Exactly 95% of 20 ID images: TPR = 19/20 qualifies.
    m = ood_metrics(np.arange(20), np.array([0.5, 1.5, 100.0]))
    assert m.threshold_tpr95 == 1.0
    assert m.tnr_at_tpr95 == pytest.approx(1 / 3)


@settings(max_examples=150, deadline=None)
@given(
    ids=st.lists(st.integers(0, 6), min_size=1, max_size=25),
    oods=st.lists(st.integers(0, 6), min_size=1, max_size=25),
    level=st.sampled_from([0.5, 0.8, 0.95, 1.0]),
    scale=st.sampled_from([1.0, 0.1, -2.5]),
)
def test_property_matches_brute_force(ids, oods, level, scale):
    ids = np.asarray(ids) * scale
    oods = np.asarray(oods) * scale
    assert_matches_references(ids, oods, level, with_sklearn=level == 0.95)


@pytest.mark.parametrize(
    "ids, oods",
    [
        (np.array([3, 1, 2], dtype=np.int64), np.array([0, 2], dtype=np.int32)),
        (np.array([0.3, 0.9, 0.1], dtype=np.float32), np.array([0.2, 0.4], dtype=np.float32)),
        (np.array([0.3, 0.9, 0.1], dtype=np.float32), np.array([0, 1], dtype=np.int64)),
        (np.array([3, 1, 2], dtype=np.uint8), np.array([0.5, 2.0])),
    ],
)
def test_accepts_int_float32_float64(ids, oods):
    assert_matches_references(ids, oods)


def test_roc_points_shape_and_monotone():
    rng = np.random.default_rng(7)
    ids, oods = rng.integers(0, 20, 300), rng.normal(5, 5, 200).round(1)
    fpr, tpr = roc_points(ids, oods)
    n_distinct = np.unique(np.r_[ids, oods]).size
    assert fpr.shape == tpr.shape == (n_distinct + 1,)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.all(np.diff(fpr) + np.diff(tpr) > 0)  # one point per distinct threshold, no repeats
    assert _trapezoid(tpr, fpr) == pytest.approx(ood_metrics(ids, oods).auroc, abs=1e-12)


def test_result_object_and_conventions():
    m = ood_metrics([1, 2, 3], [0, 2])
    assert isinstance(m, OODMetrics)
    d = m.as_dict()
    assert list(d) == METRIC_NAMES + ["threshold_tpr95"]
    assert all(type(v) is float for v in d.values())
    with pytest.raises(AttributeError):
        m.auroc = 0.0  # frozen
    assert set(CONVENTIONS) == set(METRIC_NAMES)
    assert all(isinstance(v, str) and v for v in CONVENTIONS.values())
    assert "not ODIN" in CONVENTIONS["tnr_at_tpr95"] and "not interpolated" in CONVENTIONS["tnr_at_tpr95"]


@pytest.mark.parametrize(
    "ids, oods, match",
    [
        ([], [1.0], "id_scores is empty"),
        ([1.0], np.array([]), "ood_scores is empty"),
        (np.zeros((2, 2)), [1.0], "id_scores must be a 1-D"),
        ([1.0], 0.5, "ood_scores must be a 1-D"),
        ([1.0, np.nan, np.nan, np.inf], [0.0], "id_scores contains 3 NaN/infinite values; scores must be finite"),
        ([1.0], np.array([-np.inf], dtype=np.float32), "ood_scores contains 1 NaN/infinite"),
        (["a", "b"], [1.0], "real numbers"),
        ([True, False], [1.0], "real numbers"),
    ],
)
def test_bad_input(ids, oods, match):
    with pytest.raises(ValueError, match=match):
        ood_metrics(ids, oods)
    with pytest.raises(ValueError, match=match):
        roc_points(ids, oods)


@pytest.mark.parametrize("level", [0.0, -0.1, 1.5, float("nan")])
def test_bad_tpr_level(level):
    with pytest.raises(ValueError, match="tpr_level"):
        ood_metrics([1.0], [0.0], tpr_level=level)
