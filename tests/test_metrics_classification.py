"""Top-k metrics against scikit-learn and a brute-force loop."""

import numpy as np
import pytest
from sklearn.metrics import top_k_accuracy_score

from cutmix_eval.metrics.classification import topk_correct, topk_error


@pytest.mark.parametrize("k", [1, 2, 5])
def test_topk_matches_sklearn_and_brute_force(k):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 500)
    brute = np.array([labels[i] in sorted(range(10), key=lambda c: -logits[i, c])[:k] for i in range(500)])
    np.testing.assert_array_equal(topk_correct(logits, labels, k), brute)
    assert topk_error(logits, labels, k) == pytest.approx(1 - top_k_accuracy_score(labels, logits, k=k, labels=range(10)))


def test_ties_go_to_the_lower_class_and_nonfinite_rows_are_wrong():
    logits = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [np.nan, 5.0, 0.0], [0.0, np.inf, 0.0]])
    labels = np.array([0, 2, 1, 1])
    np.testing.assert_array_equal(topk_correct(logits, labels, 1), [True, False, False, False])
    np.testing.assert_array_equal(topk_correct(logits, labels, 2), [True, True, False, False])


def test_k_larger_than_classes_and_bad_shapes():
    assert topk_error(np.eye(3), np.array([0, 1, 2]), k=5) == 0.0
    with pytest.raises(ValueError):
        topk_correct(np.zeros((3, 2)), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="empty"):
        topk_error(np.zeros((0, 2)), np.zeros(0, dtype=int))
