"""The detectors of ``evaluate/ood_shaping.py`` against brute-force per-image loops written
from the reference definitions (OpenOOD v1.5 and the authors' code), and their published
limiting cases."""

import math

import numpy as np
import pytest
import torch

from cutmix_eval.evaluate.ood_scores import create_score
from cutmix_eval.passes import Predictions

N, D, K = 50, 16, 5


@pytest.fixture(scope="module")
def net():
    """Non-negative pooled features (post-ReLU, some exact zeros), a linear head, its logits."""
    rng = np.random.default_rng(0)
    features = np.maximum(rng.normal(0.8, 1.0, (N, D)), 0).astype(np.float32)
    weight, bias = rng.normal(0, 0.5, (K, D)), rng.normal(0, 0.3, K)
    train_features = np.maximum(rng.normal(0.8, 1.0, (200, D)), 0).astype(np.float32)
    return features, weight, bias, train_features


def preds(features, weight, bias, labels=None):
    logits = (features.astype(np.float64) @ weight.T + bias).astype(np.float32)
    labels = np.full(len(features), -1) if labels is None else labels
    return Predictions(logits, labels, np.arange(len(features)), features)


def energy_of(logits):
    return [math.log(sum(math.exp(z) for z in row)) for row in logits]


def test_gen_is_minus_the_generalized_entropy_of_the_top_m_probabilities(net):
    features, weight, bias, _ = net
    pred = preds(features, weight, bias)
    for gamma, M in ((0.1, 100), (0.5, 3), (2.0, 1)):
        brute = []
        for row in pred.logits.astype(np.float64):
            p = sorted(math.exp(z) / sum(math.exp(y) for y in row) for z in row)[-M:]
            brute.append(-sum(q ** gamma * (1 - q) ** gamma for q in p))
        np.testing.assert_allclose(create_score("gen", gamma=gamma, M=M)(pred), brute, rtol=1e-10)
    assert create_score("gen").params() == {"gamma": 0.1, "M": 100}


def test_klm_matches_the_nearest_template_of_predicted_classes(net):
    features, weight, bias, train_features = net
    train = preds(train_features, weight, bias)
    score = create_score("klm")
    score.fit(train)
    probs = torch.softmax(torch.tensor(train.logits, dtype=torch.float64), 1).numpy()
    predicted = probs.argmax(1)
    templates = []
    for c in range(K):
        rows = [p for p, y in zip(probs, predicted) if y == c]
        templates.append(np.mean(rows, axis=0) if rows else np.eye(K)[c])
    pred = preds(features, weight, bias)
    test_probs = torch.softmax(torch.tensor(pred.logits, dtype=torch.float64), 1).numpy()
    brute = []
    for p in test_probs:
        kls = [sum(pi * math.log(pi / qi) if qi > 0 else (math.inf if pi > 0 else 0.0) for pi, qi in zip(p, q))
               for q in templates]
        brute.append(-min(kls))
    np.testing.assert_allclose(score(pred), brute, rtol=1e-9, atol=1e-12)


def test_klm_gives_unpredicted_classes_one_hot_templates():
    """A class the fitting images never predict has the one-hot template: finite KL only for
    a one-hot softmax, so it never wins for an ordinary image."""
    logits = np.array([[5.0, 0.0, 0.0], [4.0, 1.0, 0.0], [0.0, 3.0, 0.0]], np.float32)
    score = create_score("klm")
    score.fit(Predictions(logits, np.zeros(3, int), np.arange(3)))
    np.testing.assert_array_equal(score.templates[2], [0.0, 0.0, 1.0])
    assert np.isfinite(score(Predictions(logits, np.full(3, -1), np.arange(3)))).all()


def head_energy(rows, weight, bias):
    """Energy of the head's logits for each feature vector of ``rows``, one image at a time."""
    return energy_of([[sum(w * x for w, x in zip(weight[k], row)) + bias[k] for k in range(len(bias))]
                      for row in rows])


def test_react_clips_at_the_percentile_of_the_fitting_activations(net):
    features, weight, bias, train_features = net
    score = create_score("react")
    score.use_head(weight, bias)
    score.fit(preds(train_features, weight, bias))
    values = sorted(float(v) for v in train_features.ravel())  # numpy's linear percentile, by hand
    position = 0.9 * (len(values) - 1)
    low = int(position)
    threshold = values[low] + (position - low) * (values[low + 1] - values[low])
    assert score.threshold == pytest.approx(threshold, rel=1e-6)
    assert score.params() == {"percentile": 90.0, "threshold": score.threshold}
    clipped = [[min(float(x), score.threshold) for x in row] for row in features]
    pred = preds(features, weight, bias)
    np.testing.assert_allclose(score(pred), head_energy(clipped, weight, bias), rtol=1e-10)
    score.threshold = np.inf  # nothing clipped: the energy score
    np.testing.assert_allclose(score(pred), create_score("energy")(pred), rtol=1e-6)


def test_dice_keeps_the_weights_above_the_percentile_contribution(net):
    features, weight, bias, train_features = net
    mean = train_features.astype(np.float64).mean(0)
    contributions = sorted(mean[i] * weight[k, i] for k in range(K) for i in range(D))
    for p in (90, 50):
        position = p / 100 * (len(contributions) - 1)
        low = int(position)
        cut = contributions[low] + (position - low) * (contributions[low + 1] - contributions[low])
        sparse = [[weight[k, i] if mean[i] * weight[k, i] > cut else 0.0 for i in range(D)] for k in range(K)]
        score = create_score("dice", p=p)
        score.use_head(weight, bias)
        score.fit(preds(train_features, weight, bias))
        assert score.mask.sum() == round(K * D * (1 - p / 100))
        np.testing.assert_allclose(score(preds(features, weight, bias)), head_energy(features, sparse, bias),
                                   rtol=1e-10)
    dense = create_score("dice", p=0)  # no sparsity: the energy score
    dense.use_head(weight, bias)
    dense.fit(preds(train_features, weight, bias))
    pred = preds(features, weight, bias)
    np.testing.assert_allclose(dense(pred), create_score("energy")(pred), rtol=1e-6)
