"""Recalibration maps against scikit-learn (logistic regression, CalibratedClassifierCV), torch
optimizers of the same objectives written here, and loops; and their place in the calibration record."""

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.calibration import calibration_result, reliability_key
from cutmix_eval.evaluate.recalibration import HISTOGRAM_BINS, RECALIBRATIONS, fit_dirichlet, fit_recalibration
from cutmix_eval.metrics.calibration import fit_temperature, log_softmax, probability_metrics, softmax
from cutmix_eval.passes import Predictions


def logits(seed=0, n=600, k=4, scale=2.5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = (rng.normal(size=(n, k)) + 2 * np.eye(k)[y] * rng.uniform(0, 2, (n, 1))) * scale
    return z, y


@pytest.mark.parametrize("name", list(RECALIBRATIONS))
def test_every_map_gives_probability_rows(name):
    z, y = logits()
    p = fit_recalibration(name, z[:300], y[:300])(z[300:])
    assert p.shape == (300, 4) and np.all(p >= 0)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)


def test_temperature_map_is_the_fitted_temperature():
    z, y = logits()
    fitted = fit_recalibration("temperature", z, y)
    assert fitted.params["temperature"] == fit_temperature(z, y)
    np.testing.assert_array_equal(fitted(z), softmax(z, fit_temperature(z, y)))


def sklearn_multinomial(features, y):
    return LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(features, y)


def test_matrix_scaling_equals_unpenalized_multinomial_logistic_regression():
    z, y = logits(1)
    ours = fit_recalibration("matrix", z, y)(z)
    theirs = sklearn_multinomial(z, y).predict_proba(z)
    np.testing.assert_allclose(ours, theirs, atol=2e-5)


def test_dirichlet_without_penalty_equals_logistic_regression_on_log_probabilities():
    z, y = logits(2)
    ours = fit_dirichlet(z, y, reg_lambda=0.0, reg_mu=0.0)(z)
    theirs = sklearn_multinomial(log_softmax(z), y).predict_proba(log_softmax(z))
    np.testing.assert_allclose(ours, theirs, atol=2e-5)


def torch_fit(features, y, diagonal, lam=0.0, mu=0.0):
    """The same objectives written in torch, minimized by torch's L-BFGS."""
    x, t = torch.from_numpy(features), torch.from_numpy(y)
    k = x.shape[1]
    w = torch.ones(k, dtype=torch.float64) if diagonal else torch.eye(k, dtype=torch.float64)
    w.requires_grad_(True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=5000, tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def scores():
        return x * w + b if diagonal else x @ w.T + b

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(scores(), t)
        if not diagonal:
            loss = loss + lam / (k * (k - 1)) * (w - torch.diag(torch.diag(w))).pow(2).sum()
        loss = loss + mu / k * b.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return torch.softmax(scores(), 1).detach().numpy()


def test_vector_scaling_matches_a_torch_fit():
    z, y = logits(3)
    np.testing.assert_allclose(fit_recalibration("vector", z, y)(z), torch_fit(z, y, diagonal=True), atol=1e-5)


def test_dirichlet_odir_matches_a_torch_fit_of_kull_et_al_objective():
    z, y = logits(4, n=400, k=5)
    ours = fit_dirichlet(z, y, reg_lambda=0.5, reg_mu=0.3)(z)
    np.testing.assert_allclose(ours, torch_fit(log_softmax(z), y, diagonal=False, lam=0.5, mu=0.3), atol=1e-5)


def test_dirichlet_chooses_lambda_and_mu_by_cross_validation_as_a_brute_force_loop_does():
    """Every (lambda, mu) of the grid: 3 stratified folds, fits on the training parts, sklearn's
    log_loss on the held-out parts; the lowest mean is chosen and refitted on everything."""
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    from cutmix_eval.evaluate.recalibration import DIRICHLET_GRID, cross_validate_odir

    z, y = logits(5, n=150, k=3)
    folds = list(StratifiedKFold(3, shuffle=True, random_state=0).split(z, y))
    expected = {(lam, mu): np.mean([log_loss(y[held], fit_dirichlet(z[fit], y[fit], lam, mu)(z[held]),
                                             labels=range(3)) for fit, held in folds])
                for lam in DIRICHLET_GRID for mu in DIRICHLET_GRID}
    best, scores = cross_validate_odir(z, y)
    assert scores.keys() == expected.keys()
    # ours starts each fit at the previous pair's solution, the loop at the identity: the same convex
    # optimum up to L-BFGS-B's tolerance
    np.testing.assert_allclose([scores[key] for key in expected], list(expected.values()), rtol=1e-5)
    assert best == min(expected, key=expected.__getitem__)
    fitted = fit_recalibration("dirichlet", z, y)
    assert fitted.params == {"reg_lambda": best[0], "reg_mu": best[1], "cv_nll": scores[best]}
    np.testing.assert_array_equal(fitted(z), fit_dirichlet(z, y, *best)(z))
    with pytest.raises(UserError, match="at least 2 images of a class"):
        cross_validate_odir(z[:3], np.array([0, 1, 2]))
    many = np.tile(z[:60], (1, 8))  # 24 classes: mu = lambda along the grid
    _, tied = cross_validate_odir(many, np.arange(60) % 24)
    assert list(tied) == [(v, v) for v in DIRICHLET_GRID]


class SoftmaxOfInput(ClassifierMixin, BaseEstimator):
    """A 'classifier' whose probabilities are the softmax of its input rows (the logits)."""

    def fit(self, x, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, x):
        return softmax(x)

    def predict(self, x):
        return self.classes_[np.argmax(x, axis=1)]


def test_isotonic_equals_sklearn_calibrated_classifier():
    z, y = logits(5)
    ours = fit_recalibration("isotonic", z[:400], y[:400])(z[400:])
    frozen = FrozenEstimator(SoftmaxOfInput().fit(z, y))
    # ensemble=False: one calibrator per class fitted on all 400 (the frozen model's folds change nothing)
    calibrated = CalibratedClassifierCV(frozen, method="isotonic", ensemble=False).fit(z[:400], y[:400])
    theirs = calibrated.predict_proba(z[400:])
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_histogram_binning_matches_a_loop():
    z, y = logits(6, n=500)
    fit, test = softmax(z[:300]), softmax(z[300:])
    expected = np.zeros_like(test)
    for k in range(4):
        values = sorted(fit[:, k])
        n_bins, n = HISTOGRAM_BINS, len(values)
        sizes = [n // n_bins + (i < n % n_bins) for i in range(n_bins)]
        cuts = np.cumsum(sizes)[:-1]
        upper = sorted({(values[c - 1] + values[c]) / 2 for c in cuts} | {1.0})
        lower = [0.0, *upper[:-1]]

        def bin_of(p, upper=upper):
            return next(i for i, e in enumerate(upper) if p <= e)

        members = [[y[j] == k for j in range(300) if bin_of(fit[j, k]) == i] for i in range(len(upper))]
        value = [np.mean(m) if m else (lower[i] + upper[i]) / 2 for i, m in enumerate(members)]
        for j in range(200):
            expected[j, k] = value[bin_of(test[j, k])]
    total = expected.sum(1, keepdims=True)
    expected = np.where(total > 0, expected / np.where(total > 0, total, 1), 0.25)
    np.testing.assert_allclose(fit_recalibration("histogram", z[:300], y[:300])(z[300:]), expected, atol=1e-12)


def test_one_vs_rest_rows_of_zeros_become_uniform():
    # Class k is never the label on the fit set -> its isotonic map is 0 everywhere.
    z = np.array([[3.0, 0.0], [2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    fitted = fit_recalibration("isotonic", z, np.array([0, 0, 0, 0]))
    np.testing.assert_allclose(fitted(z), [[1.0, 0.0]] * 4)
    fitted = fit_recalibration("histogram", z, np.array([1, 1, 1, 1]))
    np.testing.assert_allclose(fitted(z), [[0.0, 1.0]] * 4)


def test_bad_input_is_one_user_error_line():
    z, y = logits()
    with pytest.raises(UserError, match="unknown recalibration 'platt'"):
        fit_recalibration("platt", z, y)
    bad = z.copy()
    bad[0, 0] = np.nan
    with pytest.raises(UserError, match="recalibration: logits contain 1 NaN"):
        fit_recalibration("vector", bad, y)
    with pytest.raises(UserError, match="labels must have shape"):
        fit_recalibration("isotonic", z, y[:-1])
    fitted = fit_recalibration("temperature", z, y)
    with pytest.raises(UserError, match="fitted on 4 classes, got logits with 3"):
        fitted(z[:, :3])
    with pytest.raises(UserError, match="at least 2 classes"):
        fit_recalibration("matrix", z[:, :1], np.zeros(len(z), int))


def test_calibration_record_has_every_metric_after_each_map_on_the_remaining_images():
    z, y = logits(7, n=500)
    pred = Predictions(z.astype(np.float32), y, np.arange(500))
    info = {"model_info": {}, "dataset_info": {}}
    result = calibration_result(pred, holdout=200, recalibrate=("vector", "isotonic"), **info)
    z64 = z.astype(np.float32).astype(np.float64)
    for name in ("vector", "isotonic"):
        probs = fit_recalibration(name, z64[:200], y[:200])(z64[200:])
        for key, value in probability_metrics(probs, y[200:]).items():
            assert result.metrics[f"{key}_{name}"] == value
        assert result.curves[reliability_key(name)]["count"].sum() == 300
    before = probability_metrics(softmax(z64[200:]), y[200:])
    assert result.metrics["augrc"] == before["augrc"] and result.metrics["classwise_ece"] == before["classwise_ece"]
    assert "temperature" not in result.metrics and result.config["recalibrate"] == ["vector", "isotonic"]
    assert "first 200 images" in result.conventions["recalibration"]
    with pytest.raises(UserError, match="needs held-out images"):
        calibration_result(pred, recalibrate=("isotonic",), **info)
    with pytest.raises(UserError, match="unknown recalibration platt"):
        calibration_result(pred, holdout=100, recalibrate=("platt",), **info)
