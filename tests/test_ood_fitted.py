"""The fitted post-hoc OOD scores (RMDS, KNN, ViM, SHE, NNGuide) against brute-force loops,
and end to end through the OOD evaluator with one shared fit pass."""

import numpy as np
import pytest
import torch
from sklearn.covariance import EmpiricalCovariance
from sklearn.neighbors import NearestNeighbors
from torch.utils.data import Subset

from cutmix_eval.data import create_dataset
from cutmix_eval.errors import UserError
from cutmix_eval.evaluate import ood as ood_eval
from cutmix_eval.evaluate.ood import create_ood_sets, evaluate_ood
from cutmix_eval.evaluate.ood_fitted import blocked_topk, vim_dim
from cutmix_eval.evaluate.ood_scores import create_score
from cutmix_eval.models import create_model
from cutmix_eval.passes import Predictions, predict
from cutmix_eval.settings import RunSettings

N, D, K = 60, 16, 5
FITTED = ["rmds", "knn", "vim", "she", "nnguide"]


def sample(seed, n=N, labels=True):
    """Non-negative (post-ReLU-like) features, logits from a fixed linear head, labels."""
    rng = np.random.default_rng(seed)
    features = np.maximum(rng.normal(0.5, 1.0, (n, D)), 0).astype(np.float32)
    head = np.random.default_rng(99)
    weight, bias = head.normal(size=(K, D)), head.normal(size=K)
    logits = (features.astype(np.float64) @ weight.T + bias).astype(np.float32)
    y = np.arange(n) % K if labels else np.full(n, -1)
    return Predictions(logits, y, np.arange(n), features), weight, bias


@pytest.fixture(scope="module")
def data():
    train, weight, bias = sample(0)
    test, _, _ = sample(1, n=40, labels=False)
    return train, test, weight, bias


def unit(x):
    return x / np.linalg.norm(x)


def test_rmds_is_a_relative_mahalanobis_distance(data):
    train, test, _, _ = data
    score = create_score("rmds")
    score.fit(train)
    x, y = train.pooled.astype(np.float64), train.labels
    means = [x[y == c].mean(0) for c in range(K)]
    precision = EmpiricalCovariance().fit(x - np.array(means)[y]).precision_
    whole = EmpiricalCovariance().fit(x)
    brute = []
    for f in test.pooled.astype(np.float64):
        background = (f - whole.location_) @ whole.precision_ @ (f - whole.location_)
        brute.append(max(-(f - m) @ precision @ (f - m) + background for m in means))
    np.testing.assert_allclose(score(test), brute, rtol=1e-7, atol=1e-7)
    with pytest.raises(UserError, match="RMDS fitting images have no example of class"):
        score.fit(Predictions(train.logits, np.zeros(N, int), train.indices, train.pooled))


@pytest.mark.parametrize("block", [None, 7, N, 1000])
def test_knn_is_minus_the_squared_distance_to_the_kth_normalized_neighbour(data, block):
    train, test, _, _ = data
    score = create_score("knn", k=9, block=block)
    score.fit(train)
    normed = train.pooled / np.linalg.norm(train.pooled, axis=1, keepdims=True)
    queries = test.pooled / np.linalg.norm(test.pooled, axis=1, keepdims=True)
    distances, _ = NearestNeighbors(n_neighbors=9).fit(normed).kneighbors(queries)
    np.testing.assert_allclose(score(test), -distances[:, -1] ** 2, rtol=1e-5, atol=1e-6)
    assert create_score("knn").params() == {"k": 50, "fraction": 1.0, "seed": 0}
    with pytest.raises(UserError, match="knn with k=50 needs at least 50 training features"):
        create_score("knn").fit(Predictions(train.logits[:40], train.labels[:40], train.indices[:40],
                                            train.pooled[:40]))


@pytest.mark.parametrize("bank_rows", ["any norm", "unit norm", "unit norm and a zero row"])
def test_blocked_topk_equals_a_sort_for_every_block_size(bank_rows):
    rng = np.random.default_rng(3)
    bank, queries = rng.normal(size=(N, D)).astype(np.float32), rng.normal(size=(25, D)).astype(np.float32)
    if bank_rows != "any norm":
        bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    if bank_rows.endswith("zero row"):
        bank[5] = 0
    squared = ((queries[:, None, :].astype(np.float64) - bank[None]) ** 2).sum(-1)
    inner = queries.astype(np.float64) @ bank.T.astype(np.float64)
    for block in (1, 4, 25, 100, None):
        near = np.sort(blocked_topk(queries, bank, 6, nearest=True, block=block), axis=1)
        far = np.sort(blocked_topk(queries, bank, 6, nearest=False, block=block), axis=1)
        np.testing.assert_allclose(near, np.sort(squared, axis=1)[:, :6], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(far, np.sort(inner, axis=1)[:, -6:], rtol=1e-5, atol=1e-5)


def test_vim_subtracts_the_scaled_residual_norm_from_the_energy(data):
    train, test, weight, bias = data
    score = create_score("vim")
    score.use_head(weight, bias)
    score.fit(train)
    assert vim_dim(16) == 8 and vim_dim(512) == 256 and vim_dim(768) == 512 and vim_dim(2048) == 1000
    origin = -np.linalg.pinv(weight) @ bias
    shifted = train.pooled.astype(np.float64) - origin
    _, _, vt = np.linalg.svd(shifted, full_matrices=True)  # right singular vectors: principal axes
    principal = vt[:8]

    def residual(f):
        v = f - origin
        return np.linalg.norm(v - principal.T @ (principal @ v))

    train_logits = train.pooled.astype(np.float64) @ weight.T + bias
    alpha = np.mean([row.max() for row in train_logits]) / np.mean([residual(f) for f in train.pooled])
    brute = []
    for f in test.pooled.astype(np.float64):
        logits = weight @ f + bias
        brute.append(np.log(np.sum(np.exp(logits))) - alpha * residual(f))
    np.testing.assert_allclose(score(test), brute, rtol=1e-7, atol=1e-7)
    assert score.params() == {"dim": 8, "dim_rule": True}
    wide = create_score("vim", dim=16)
    wide.use_head(weight, bias)
    with pytest.raises(UserError, match="must be below the feature size 16"):
        wide.fit(train)


def test_she_is_the_inner_product_with_the_predicted_class_pattern(data):
    train, test, _, _ = data
    score = create_score("she")
    score.fit(train)
    predicted = train.logits.argmax(1)
    patterns = {}
    for c in range(K):
        rows = [f for f, y, p in zip(train.pooled, train.labels, predicted) if y == c and p == c]
        patterns[c] = np.mean(np.array(rows, dtype=np.float64), axis=0)
    brute = [float(np.dot(f, patterns[int(np.argmax(z))])) for f, z in zip(test.pooled.astype(np.float64),
                                                                           test.logits)]
    np.testing.assert_allclose(score(test), brute, rtol=1e-9)
    wrong = Predictions(train.logits, (predicted + 1) % K, train.indices, train.pooled)
    with pytest.raises(UserError, match="no correctly classified image of class"):
        score.fit(wrong)


@pytest.mark.parametrize("block", [None, 3, 1000])
def test_nnguide_is_energy_times_the_mean_top_k_guided_similarity(data, block):
    train, test, _, _ = data
    score = create_score("nnguide", k=4, fraction=0.5, seed=2, block=block)
    score.fit(train)
    keep = np.sort(np.random.default_rng(2).permutation(N)[:30])
    bank = [unit(f.astype(np.float64)) * np.log(np.sum(np.exp(z.astype(np.float64))))
            for f, z in zip(train.pooled[keep], train.logits[keep])]
    brute = []
    for f, z in zip(test.pooled.astype(np.float64), test.logits.astype(np.float64)):
        similarities = sorted((np.dot(unit(f), b) for b in bank), reverse=True)
        brute.append(np.mean(similarities[:4]) * np.log(np.sum(np.exp(z))))
    np.testing.assert_allclose(score(test), brute, rtol=1e-5, atol=1e-6)
    assert create_score("nnguide").params() == {"k": 100, "fraction": 0.01, "seed": 0}
    with pytest.raises(UserError, match="fit on at least 10000 images"):
        create_score("nnguide").fit(train)


def test_a_zero_feature_vector_scores_finitely(data):
    train, test, weight, bias = data
    zero = Predictions(test.logits[:3], test.labels[:3], test.indices[:3], np.zeros((3, D), np.float32))
    for name in ("knn", "nnguide"):
        score = create_score(name, **({"fraction": 1.0, "k": 5} if name == "nnguide" else {"k": 5}))
        score.fit(train)
        assert np.isfinite(score(zero)).all()


def least_squares_head(model, fit_set):
    """Set ``model``'s linear head to the least-squares fit of one-hot labels on its pooled
    features of ``fit_set``: a random net then classifies some images of every class
    correctly, which SHE's stored patterns need."""
    seen = predict(model, fit_set, RunSettings(batch_size=32, progress=False), keep_features=True)
    x = torch.from_numpy(seen.pooled).double()
    design = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    target = torch.nn.functional.one_hot(torch.from_numpy(seen.labels), model.num_classes).double()
    solution = torch.linalg.lstsq(design, target).solution
    with torch.no_grad():
        model.head.weight.copy_(solution[:-1].T)
        model.head.bias.copy_(solution[-1])


def test_every_fitted_score_end_to_end_shares_one_fit_pass(monkeypatch):
    torch.manual_seed(0)
    model = create_model("gapnet:width=4", 10, input_size=(3, 64, 64)).eval()
    id_set = create_dataset("synthetic", "test", num_samples=40)
    fit = create_dataset("synthetic", "train", num_samples=120)
    least_squares_head(model, Subset(fit, range(100)))
    noise = create_ood_sets(id_set, ["uniform"], num_noise=30)["uniform"]
    calls = []
    original = ood_eval.predict
    monkeypatch.setattr(ood_eval, "predict", lambda *a, **k: calls.append(k["desc"]) or original(*a, **k))
    options = {"knn": {"k": 5}, "nnguide": {"k": 5, "fraction": 0.5}}
    results = evaluate_ood(model, id_set, {"uniform": noise}, scores=FITTED, score_options=options, fit_dataset=fit,
                           fit_limit=100, settings=RunSettings(batch_size=16, progress=False))
    assert len(calls) == 3 and sum(desc.startswith("fit ") for desc in calls) == 1  # ID, uniform, one fit pass
    assert [result.config["score"] for result in results] == FITTED
    for result in results:
        assert result.config["fit_data"]["num_images"] == 100
        assert all(np.isfinite(v) for k, v in result.metrics.items() if k.startswith(("uniform/", "mean/")))
        assert np.isfinite(result.per_sample["id/score"]).all() and len(result.per_sample["uniform/score"]) == 30
    assert results[2].config["params"] == {"dim": 8, "dim_rule": True}
