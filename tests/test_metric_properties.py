"""Properties every metric must have whatever its input, checked on generated inputs (hypothesis).

The conventions are those of /work/shared/reference/metrics.md and the metrics' docstrings:
OOD scores are "higher = more in-distribution", compared exactly (ties fall on the same side of
every threshold), so any strictly increasing transform of the scores leaves every OOD metric
unchanged; maps are min-max normalized per map before MaxBoxAcc, so a positive scale and an
offset per map change nothing; ECE bins are right-closed. Scores and maps are integers (or
exact functions of them) so that a transform cannot merge or reorder values by rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cutmix_eval.metrics.bootstrap import auroc_rows, detection_accuracy_rows, ece_rows, tnr_at_tpr95_rows
from cutmix_eval.metrics.calibration import expected_calibration_error
from cutmix_eval.metrics.classification import topk_error
from cutmix_eval.metrics.localization import iou_inclusive, max_box_acc, max_box_acc_v2, normalize_minmax
from cutmix_eval.metrics.ood import ood_metrics

FAST = settings(max_examples=60, deadline=None)
METRICS = ("tnr_at_tpr95", "auroc", "detection_accuracy", "aupr_in", "aupr_out", "fpr95_ood_pos")

scores = st.lists(st.integers(-40, 40), min_size=1, max_size=40).map(lambda v: np.asarray(v, dtype=np.float64))


# --------------------------------------------------------------------------- OOD detection


def pair_counting_auroc(ids: np.ndarray, oods: np.ndarray) -> float:
    """P(ID score > OOD score) + P(equal) / 2, by comparing every pair."""
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in ids for b in oods)
    return wins / (len(ids) * len(oods))


@FAST
@given(ids=scores, oods=scores)
def test_ood_metrics_are_fractions_and_auroc_counts_pairs(ids, oods):
    got = ood_metrics(ids, oods)
    for name in METRICS:
        assert 0.0 <= getattr(got, name) <= 1.0, name
    assert got.detection_accuracy >= 0.5  # accept-all is a threshold
    assert got.auroc == pytest.approx(pair_counting_auroc(ids, oods), abs=1e-12)


@FAST
@given(ids=scores, oods=scores)
def test_swapping_the_roles_of_the_sets(ids, oods):
    """AUROC does not care which class is positive; AUPR-Out is AUPR-In of the swapped,
    negated problem (OOD positive, ranked by the negated score)."""
    got, swapped, negated = ood_metrics(ids, oods), ood_metrics(oods, ids), ood_metrics(-oods, -ids)
    assert swapped.auroc == pytest.approx(1.0 - got.auroc, abs=1e-12)
    assert negated.auroc == pytest.approx(got.auroc, abs=1e-12)
    assert negated.aupr_in == pytest.approx(got.aupr_out, abs=1e-12)


increasing_maps = [lambda x: 3 * x + 1, lambda x: np.exp(x / 8), lambda x: np.cbrt(x) - 7]


@FAST
@given(ids=scores, oods=scores, steps=st.lists(st.floats(0.01, 100), min_size=81, max_size=81),
       transform=st.sampled_from(range(len(increasing_maps) + 1)))
def test_ood_metrics_are_invariant_to_strictly_increasing_transforms(ids, oods, steps, transform):
    """Exactly equal: the metrics depend on the order of the scores only, ties included."""
    if transform < len(increasing_maps):
        change = increasing_maps[transform]
    else:  # a random strictly increasing map of -40..40
        table = np.cumsum(steps)
        change = lambda x: table[(x + 40).astype(int)]  # noqa: E731
    before, after = ood_metrics(ids, oods), ood_metrics(change(ids), change(oods))
    for name in METRICS:
        assert getattr(after, name) == getattr(before, name), name


@FAST
@given(data=st.data(), rows=st.integers(1, 4), n=st.integers(1, 30), m=st.integers(1, 30))
def test_batched_ood_statistics_equal_the_metric_row_by_row(data, rows, n, m):
    def matrix(width):
        return np.asarray(data.draw(st.lists(st.lists(st.integers(0, 9), min_size=width, max_size=width),
                                             min_size=rows, max_size=rows)), dtype=np.float64)

    ids, oods = matrix(n), matrix(m)
    single = [ood_metrics(a, b) for a, b in zip(ids, oods)]
    np.testing.assert_allclose(auroc_rows(ids, oods), [s.auroc for s in single], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(tnr_at_tpr95_rows(ids, oods), [s.tnr_at_tpr95 for s in single])
    np.testing.assert_array_equal(detection_accuracy_rows(ids, oods), [s.detection_accuracy for s in single])


# --------------------------------------------------------------------------- calibration


outcomes = st.lists(st.tuples(st.integers(0, 20).map(lambda k: k / 20), st.booleans()), min_size=1, max_size=60)


@FAST
@given(groups=st.lists(st.tuples(st.integers(1, 9), st.integers(1, 10), st.integers(1, 4)), min_size=1, max_size=8),
       n_bins=st.integers(1, 20))
def test_ece_is_zero_when_every_confidence_is_its_accuracy(groups, n_bins):
    """Groups of ``10 r`` images with confidence ``p / 10`` of which ``p r`` are right: whichever
    groups share a bin, the bin's accuracy equals its mean confidence."""
    confidence, correct = [], []
    for p, _, r in groups:
        confidence += [p / 10] * (10 * r)
        correct += [True] * (p * r) + [False] * ((10 - p) * r)
    assert expected_calibration_error(confidence, correct, n_bins) == pytest.approx(0.0, abs=1e-12)


@FAST
@given(outcomes=outcomes, n_bins=st.integers(1, 20))
def test_ece_is_a_fraction_and_known_in_the_extreme_cases(outcomes, n_bins):
    confidence = np.array([c for c, _ in outcomes])
    correct = np.array([ok for _, ok in outcomes])
    ece = expected_calibration_error(confidence, correct, n_bins)
    assert 0.0 <= ece <= 1.0
    assert expected_calibration_error(confidence, correct, 1) == pytest.approx(
        abs(correct.mean() - confidence.mean()), abs=1e-12)  # one bin: overall accuracy vs confidence
    assert expected_calibration_error(confidence, np.zeros_like(correct), n_bins) == pytest.approx(
        confidence.mean(), abs=1e-12)  # never right: every bin's gap is its confidence
    assert ece_rows(confidence[None], correct[None], n_bins)[0] == pytest.approx(ece, abs=1e-12)


@FAST
@given(data=st.data(), n=st.integers(1, 20), k=st.integers(2, 6))
def test_topk_error_is_a_fraction_falls_with_k_and_ignores_increasing_transforms(data, n, k):
    logits = np.asarray(data.draw(st.lists(st.lists(st.integers(-5, 5), min_size=k, max_size=k), min_size=n,
                                           max_size=n)), dtype=np.float64)
    labels = np.asarray(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    errors = [topk_error(logits, labels, j) for j in range(1, k + 1)]
    assert all(0.0 <= e <= 1.0 for e in errors) and errors == sorted(errors, reverse=True) and errors[-1] == 0.0
    assert [topk_error(np.exp(logits) * 2, labels, j) for j in range(1, k + 1)] == errors


# --------------------------------------------------------------------------- localization


SIDE = 12
boxes = st.tuples(st.integers(0, SIDE - 1), st.integers(0, SIDE - 1), st.integers(0, SIDE - 1),
                  st.integers(0, SIDE - 1)).map(lambda b: [min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]),
                                                           max(b[1], b[3])])


def pixels(box) -> np.ndarray:
    mask = np.zeros((SIDE, SIDE), dtype=bool)
    mask[box[1]:box[3] + 1, box[0]:box[2] + 1] = True  # inclusive corners
    return mask


@FAST
@given(a=st.lists(boxes, min_size=1, max_size=4), b=st.lists(boxes, min_size=1, max_size=4))
def test_iou_is_symmetric_one_on_itself_and_counts_pixels(a, b):
    ious = iou_inclusive(a, b)
    np.testing.assert_array_equal(iou_inclusive(b, a), ious.T)
    np.testing.assert_array_equal(np.diag(iou_inclusive(a, a)), 1.0)
    assert ((ious >= 0) & (ious <= 1)).all()
    for i, box_a in enumerate(a):
        for j, box_b in enumerate(b):
            inter, union = (pixels(box_a) & pixels(box_b)).sum(), (pixels(box_a) | pixels(box_b)).sum()
            assert ious[i, j] == pytest.approx(inter / union, abs=1e-15)


@settings(max_examples=25, deadline=None)
@given(data=st.data(), n=st.integers(1, 3))
def test_max_box_acc_ignores_a_positive_scale_and_an_offset_per_map(data, n):
    """Integer maps, integer scales and offsets: the normalized maps are the same to the last bit."""
    raw = np.asarray(data.draw(st.lists(st.lists(st.integers(0, 30), min_size=SIDE * SIDE, max_size=SIDE * SIDE),
                                        min_size=n, max_size=n)), dtype=np.float64).reshape(n, SIDE, SIDE)
    scale = np.asarray(data.draw(st.lists(st.integers(1, 1000), min_size=n, max_size=n)), dtype=np.float64)
    offset = np.asarray(data.draw(st.lists(st.integers(-10**6, 10**6), min_size=n, max_size=n)), dtype=np.float64)
    gts = [np.asarray(data.draw(st.lists(boxes, min_size=1, max_size=2))) for _ in range(n)]
    changed = raw * scale[:, None, None] + offset[:, None, None]
    for summary in (max_box_acc, max_box_acc_v2):
        before, after = summary(normalize_minmax(raw), gts), summary(normalize_minmax(changed), gts)
        assert 0.0 <= before.value <= 1.0
        assert after.value == before.value
        np.testing.assert_array_equal(after.curve.best_iou, before.curve.best_iou)
