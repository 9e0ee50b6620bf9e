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


def top_units(row, percentile):
    """The kept units of one image: its k largest activations, ties to the lower index."""
    k = len(row) - round(len(row) * percentile / 100)  # Python's round is numpy's: half to even
    return k, set(sorted(range(len(row)), key=lambda i: (-float(row[i]), i))[:k])


def shaped_by_hand(variant, row, percentile):
    row = [float(x) for x in row]
    k, kept = top_units(row, percentile)
    total, kept_sum = sum(row), sum(row[i] for i in kept)
    if variant == "ash_p":
        return [x if i in kept else 0.0 for i, x in enumerate(row)]
    if variant == "ash_b":
        return [total / k if i in kept else 0.0 for i in range(len(row))]
    if variant == "ash_s":
        return [x * math.exp(total / kept_sum) if i in kept else 0.0 for i, x in enumerate(row)]
    return [x * math.exp(total / kept_sum) for x in row]  # scale: every unit, scaled


@pytest.mark.parametrize("variant", ["ash_p", "ash_b", "ash_s", "scale"])
def test_activation_shaping_per_image_against_a_loop(net, variant):
    features, weight, bias, _ = net
    assert (features == 0).any()  # ties among zeros are exercised
    pred = preds(features, weight, bias)
    for percentile in (90, 65, 15.625, 0):  # 15.625% of 16 units is 2.5: rounded to 2, k = 14
        score = create_score(variant, percentile=percentile)
        score.use_head(weight, bias)
        brute = head_energy([shaped_by_hand(variant, row, percentile) for row in features], weight, bias)
        np.testing.assert_allclose(score(pred), brute, rtol=1e-10)
    assert create_score(variant).params() == {"percentile": 85.0 if variant == "scale" else 90.0}


def test_ash_p_at_zero_pruning_is_the_energy_score(net):
    features, weight, bias, _ = net
    score = create_score("ash_p", percentile=0)
    score.use_head(weight, bias)
    pred = preds(features, weight, bias)
    np.testing.assert_allclose(score(pred), create_score("energy")(pred), rtol=1e-6)


def test_shaping_matches_the_reference_tensor_operations(net):
    """The same numbers as the reference's in-place topk/scatter on N x C x 1 x 1 tensors
    (re-derived here with torch), on features without ties."""
    features, weight, bias, _ = net
    x = torch.tensor(features, dtype=torch.float64) + torch.rand(N, D, generator=torch.Generator().manual_seed(0))
    n, p = D, 90
    k = n - int(np.round(n * p / 100.0))
    values, index = torch.topk(x, k, dim=1)
    pruned = torch.zeros_like(x).scatter(1, index, values)
    expected = {"ash_p": pruned,
                "ash_b": torch.zeros_like(x).scatter(1, index, (x.sum(1) / k)[:, None].expand(-1, k)),
                "ash_s": pruned * torch.exp(x.sum(1) / pruned.sum(1))[:, None],
                "scale": x * torch.exp(x.sum(1) / pruned.sum(1))[:, None]}
    for variant, shaped in expected.items():
        score = create_score(variant, percentile=p)
        np.testing.assert_allclose(score.shape(x.numpy()), shaped.numpy(), rtol=1e-12)


def test_gradnorm_equals_the_autograd_weight_gradient_of_the_reference_loss(net):
    """The authors' (and OpenOOD's) loss per image: sum_k -log_softmax(fc(h) / T)_k, all-ones
    targets; the score is the L1 norm of fc.weight.grad."""
    features, weight, bias, _ = net
    pred = preds(features, weight, bias)
    for temperature in (1.0, 3.0):
        brute = []
        for h in features:
            fc = torch.nn.Linear(D, K).double()
            with torch.no_grad():
                fc.weight.copy_(torch.tensor(weight))
                fc.bias.copy_(torch.tensor(bias))
            loss = torch.mean(torch.sum(-torch.ones(1, K, dtype=torch.float64)
                                        * torch.log_softmax(fc(torch.tensor(h, dtype=torch.float64)[None])
                                                            / temperature, dim=-1), dim=-1))
            loss.backward()
            brute.append(fc.weight.grad.abs().sum().item())
        np.testing.assert_allclose(create_score("gradnorm", temperature=temperature)(pred), brute, rtol=1e-6)


def test_fdbd_against_a_loop_over_decision_boundaries(net):
    features, weight, bias, train_features = net
    pred = preds(features, weight, bias)
    mean = train_features.astype(np.float64).mean(0)
    for normalize_by_distance in (True, False):
        score = create_score("fdbd", distance_as_normalizer=normalize_by_distance)
        score.use_head(weight, bias)
        score.fit(preds(train_features, weight, bias))
        brute = []
        for h, z in zip(features.astype(np.float64), pred.logits.astype(np.float64)):
            c = int(np.argmax(z))
            boundaries = sum(abs(z[c] - z[j]) / np.linalg.norm(weight[c] - weight[j]) for j in range(K) if j != c)
            brute.append(boundaries / np.linalg.norm(h - mean if normalize_by_distance else h))
        np.testing.assert_allclose(score(pred), brute, rtol=1e-10)
    assert create_score("fdbd").params() == {"distance_as_normalizer": True}


NEW_SCORES = ["gen", "klm", "react", "dice", "ash_p", "ash_b", "ash_s", "scale", "gradnorm", "fdbd"]


def test_every_new_score_runs_end_to_end_from_one_pass_per_set(monkeypatch):
    from cutmix_eval.data import create_dataset
    from cutmix_eval.evaluate import ood as ood_eval
    from cutmix_eval.evaluate.ood import create_ood_sets, evaluate_ood
    from cutmix_eval.models import create_model
    from cutmix_eval.settings import RunSettings

    torch.manual_seed(0)
    model = create_model("gapnet:width=4", 10, input_size=(3, 64, 64))
    id_set = create_dataset("synthetic", "test", num_samples=32)
    sets = create_ood_sets(id_set, ["uniform"], num_noise=24)
    fit = create_dataset("synthetic", "train", num_samples=60)
    calls, images = [], []
    original = ood_eval.predict
    monkeypatch.setattr(ood_eval, "predict", lambda *a, **k: calls.append(k["desc"]) or original(*a, **k))
    model.head.register_forward_hook(lambda module, inputs, output: images.append(len(inputs[0])))
    results = evaluate_ood(model, id_set, {"uniform": sets["uniform"]}, scores=NEW_SCORES, fit_dataset=fit,
                           settings=RunSettings(batch_size=16, progress=False))
    assert len(calls) == 3 and sum(images) == 32 + 24 + 60  # ID, uniform, the fitting set: each image once
    assert [r.config["score"] for r in results] == NEW_SCORES
    for result in results:
        assert all(np.isfinite(v) for v in result.metrics.values()), result.config["score"]
        assert len(result.per_sample["id/score"]) == 32 and len(result.per_sample["uniform/score"]) == 24
        assert np.isfinite(result.per_sample["id/score"]).all() and np.isfinite(result.per_sample["uniform/score"]).all()
        assert ("fit_data" in result.config) == (result.config["score"] in ("klm", "react", "dice", "fdbd"))
    assert results[2].config["params"]["percentile"] == 90.0 and "threshold" in results[2].config["params"]
