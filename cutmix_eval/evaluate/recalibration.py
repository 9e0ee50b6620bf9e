"""Recalibration maps fitted on a held-out split: logits in, class probabilities out.

Every map has one interface: ``fit_recalibration(name, logits, labels) -> Recalibration``
fits it on ``N x K`` logits and ``N`` integer labels (the caller records which images
those were), and the fitted ``Recalibration(logits) -> probabilities`` maps ``M x K``
logits to ``M x K`` float64 rows summing to 1. The maps (``RECALIBRATIONS``):

- ``temperature``: ``softmax(z / T)`` with ``T`` from
  :func:`cutmix_eval.metrics.calibration.fit_temperature` (Guo et al. 2017).
- ``vector``: ``softmax(w * z + b)``, ``w`` and ``b`` in R^K (Guo et al. 2017).
- ``matrix``: ``softmax(W z + b)``, ``W`` in R^{KxK} (Guo et al. 2017), unregularized.
- ``dirichlet``: ``softmax(W log softmax(z) + b)`` (Kull et al. 2019) with their
  off-diagonal and intercept regularization (ODIR): the mean NLL plus
  ``lambda / (K (K - 1)) * sum_{i != j} W_ij^2 + mu / K * sum_j b_j^2``. ``lambda`` and
  ``mu`` are chosen as the authors choose them, by cross-validation on the fit set: every
  pair of :data:`DIRICHLET_GRID` x :data:`DIRICHLET_GRID` (up to
  :data:`DIRICHLET_PAIRS_MAX_CLASSES` classes; above, ``mu = lambda`` along the grid, since one
  fit has ``K^2`` parameters), :data:`DIRICHLET_FOLDS` stratified folds (shuffled, seed 0), at
  most :data:`DIRICHLET_CV_MAXITER` iterations per fit, the lowest mean held-out NLL (the first
  in grid order on a tie), then one fit on the whole fit set. Their experiments search a wider
  grid (up to 1e6) with 5 folds; this one covers the range where their choices fell.
- ``histogram``: one-vs-rest histogram binning: for each class k, 15 equal-mass bins of
  ``p_k = softmax(z)_k`` on the fit set (:func:`~cutmix_eval.metrics.calibration.equal_mass_bins`,
  right-closed) map ``p_k`` to the bin's share of images of class k; a bin left empty by
  ties keeps its midpoint. Rows are then divided by their sum.
- ``isotonic``: one-vs-rest isotonic regression (scikit-learn's ``IsotonicRegression``,
  increasing, clipped to [0, 1] and to the fitted range) of ``1[label == k]`` on ``p_k``,
  then rows divided by their sum, as scikit-learn's ``CalibratedClassifierCV(method="isotonic")``
  does for several classes.

The parametric maps (vector, matrix, Dirichlet) minimize their objective with L-BFGS-B
from the identity map (``W = I``, ``b = 0``) in float64. Only temperature scaling always keeps
the argmax; the other maps can change the prediction, so the top-1 error is recomputed after
each. One-vs-rest
rows whose calibrated probabilities are all 0 become uniform (``1 / K``), as in
scikit-learn. Mistakes (shapes, NaN, a class count other than the fit's) are one-line
``UserError``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize

from cutmix_eval.errors import UserError
from cutmix_eval.metrics.calibration import checked_logits, checked_logits_labels, equal_mass_bins, fit_temperature, log_softmax, \
    probability_nll, softmax

__all__ = ["CONVENTIONS", "DIRICHLET_CV_MAXITER", "DIRICHLET_FOLDS", "DIRICHLET_GRID", "DIRICHLET_PAIRS_MAX_CLASSES",
           "HISTOGRAM_BINS", "RECALIBRATIONS", "Recalibration", "cross_validate_odir", "fit_recalibration"]

DIRICHLET_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
"""The values of ``lambda`` and of ``mu`` that the Dirichlet map's cross-validation tries."""

DIRICHLET_FOLDS = 3
"""Stratified folds of the Dirichlet map's cross-validation."""

DIRICHLET_PAIRS_MAX_CLASSES = 20
"""Up to this many classes the cross-validation tries every (lambda, mu) pair; above, mu = lambda."""

DIRICHLET_CV_MAXITER = 500
"""L-BFGS-B iterations of each cross-validation fit (the final fit gets the optimizer's default
2,000): weakly penalized fits of many classes on a small holdout barely converge, and the
choice needs the held-out NLL to a few digits only."""

HISTOGRAM_BINS = 15
"""Equal-mass bins per class of the histogram-binning map."""


@dataclass(frozen=True)
class Recalibration:
    """A fitted recalibration map: ``self(logits) -> probabilities`` (``M x K`` -> ``M x K``).

    ``name``: its key in :data:`RECALIBRATIONS`; ``num_classes``: K of the fit;
    ``params``: the fitted numbers worth recording (plain floats, e.g. the temperature).
    """

    name: str
    num_classes: int
    apply: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    params: dict[str, Any] = field(default_factory=dict)

    def __call__(self, logits) -> np.ndarray:
        z = _checked(logits, None)[0]
        if z.shape[1] != self.num_classes:
            raise UserError(f"the {self.name} map was fitted on {self.num_classes} classes, "
                            f"got logits with {z.shape[1]}")
        return self.apply(z)


def _checked(logits, labels) -> tuple[np.ndarray, np.ndarray | None]:
    """Checked float64 logits and labels (None: logits only), mistakes as one UserError line."""
    try:
        return (checked_logits(logits), None) if labels is None else checked_logits_labels(logits, labels)
    except ValueError as error:
        raise UserError(f"recalibration: {error}") from None


# --------------------------------------------------------------------------- parametric maps


def _fit_affine(features: np.ndarray, labels: np.ndarray, diagonal: bool, reg_lambda: float, reg_mu: float,
                start: tuple[np.ndarray, np.ndarray] | None = None, maxiter: int = 2000
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` minimizing mean NLL of ``softmax(features W^T + b)`` plus the ODIR penalty.

    ``diagonal``: ``W = diag(w)`` (vector scaling). The penalty is
    ``reg_lambda / (K (K-1)) * sum of squared off-diagonal W`` (0 when diagonal) plus
    ``reg_mu / K * sum b^2``. L-BFGS-B with the exact gradient from ``start`` (default
    ``W = I``, ``b = 0``), at most ``maxiter`` iterations.
    """
    n, k = features.shape
    onehot = np.zeros((n, k))
    onehot[np.arange(n), labels] = 1.0
    off = ~np.eye(k, dtype=bool)
    lam, mu = reg_lambda / (k * (k - 1)), reg_mu / k

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = np.diag(theta[:k]) if diagonal else theta[:k * k].reshape(k, k)
        return w, theta[-k:]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = unpack(theta)
        s = features @ w.T + b
        logp = s - s.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        g = (np.exp(logp) - onehot) / n  # d(mean NLL) / ds
        grad_w = np.einsum("ij,ij->j", g, features) if diagonal else g.T @ features
        loss = -np.sum(logp * onehot) / n + mu * np.sum(b * b)
        grad_b = g.sum(axis=0) + 2 * mu * b
        if not diagonal:
            loss += lam * np.sum(w[off] ** 2)
            grad_w = grad_w + 2 * lam * np.where(off, w, 0.0)
        return loss, np.concatenate([grad_w.ravel(), grad_b])

    if start is None:
        start = (np.eye(k), np.zeros(k))
    theta = np.concatenate([np.diag(start[0]) if diagonal else start[0].ravel(), start[1]])
    res = minimize(objective, theta, jac=True, method="L-BFGS-B",
                   options={"maxiter": maxiter, "ftol": 1e-13, "gtol": 1e-9})
    return unpack(res.x)


def _affine_map(name: str, logits, labels, diagonal: bool, on_log_probs: bool, reg_lambda: float = 0.0,
                reg_mu: float = 0.0) -> Recalibration:
    z, y = _checked(logits, labels)
    if z.shape[1] < 2:
        raise UserError(f"recalibration: the {name} map needs at least 2 classes, got {z.shape[1]}")

    def features(x: np.ndarray) -> np.ndarray:
        return log_softmax(x) if on_log_probs else x

    w, b = _fit_affine(features(z), y, diagonal, reg_lambda, reg_mu)
    params = {"reg_lambda": reg_lambda, "reg_mu": reg_mu} if name == "dirichlet" else {}
    return Recalibration(name, z.shape[1], lambda x: softmax(features(x) @ w.T + b), params)


def fit_temperature_map(logits, labels) -> Recalibration:
    """Temperature scaling, ``softmax(z / T)``; ``params["temperature"]`` is ``T``."""
    z, y = _checked(logits, labels)
    t = fit_temperature(z, y)
    return Recalibration("temperature", z.shape[1], lambda x: softmax(x, t), {"temperature": t})


def fit_vector_scaling(logits, labels) -> Recalibration:
    """Vector scaling, ``softmax(w * z + b)`` with ``w, b`` in R^K minimizing the mean NLL."""
    return _affine_map("vector", logits, labels, diagonal=True, on_log_probs=False)


def fit_matrix_scaling(logits, labels) -> Recalibration:
    """Matrix scaling, ``softmax(W z + b)`` minimizing the mean NLL (no regularization)."""
    return _affine_map("matrix", logits, labels, diagonal=False, on_log_probs=False)


def fit_dirichlet(logits, labels, reg_lambda: float | None = None, reg_mu: float | None = None
                  ) -> Recalibration:
    """Dirichlet calibration with ODIR (Kull et al. 2019): ``softmax(W log softmax(z) + b)``
    minimizing mean NLL + ``reg_lambda / (K(K-1)) sum_{i!=j} W_ij^2 + reg_mu / K sum_j b_j^2``.
    Both None (the default): chosen by cross-validation (:func:`cross_validate_odir`), and the
    map's ``params`` also hold the chosen pair's mean held-out NLL (``cv_nll``)."""
    if (reg_lambda is None) != (reg_mu is None):
        raise ValueError("give both reg_lambda and reg_mu, or neither (cross-validation)")
    chosen = {}
    if reg_lambda is None:
        (reg_lambda, reg_mu), scores = cross_validate_odir(logits, labels)
        chosen = {"cv_nll": scores[reg_lambda, reg_mu]}
    fitted = _affine_map("dirichlet", logits, labels, diagonal=False, on_log_probs=True, reg_lambda=reg_lambda,
                         reg_mu=reg_mu)
    return dataclasses.replace(fitted, params=fitted.params | chosen)


def cross_validate_odir(logits, labels, grid: tuple[float, ...] = DIRICHLET_GRID, folds: int = DIRICHLET_FOLDS
                        ) -> tuple[tuple[float, float], dict[tuple[float, float], float]]:
    """``((lambda, mu) with the lowest mean held-out NLL, {(lambda, mu): mean held-out NLL})``
    over ``grid`` x ``grid`` (``mu = lambda`` above :data:`DIRICHLET_PAIRS_MAX_CLASSES`
    classes): scikit-learn's ``StratifiedKFold(folds, shuffle=True,
    random_state=0)`` on the fit set (fewer folds when even the commonest class has fewer
    images, at least 2), a Dirichlet fit on each training part, the NLL on its held-out part
    averaged over the folds. Ties go to the first pair in grid order (``lambda`` outer). Within
    a fold the pairs are fitted from the strongest penalty down, each fit starting at the
    previous one's solution (a regularization path: the objective is convex, so the optimum is
    the same up to the optimizer's tolerance, reached in far fewer steps)."""
    from sklearn.model_selection import StratifiedKFold

    z, y = _checked(logits, labels)
    splits = min(folds, int(np.bincount(y).max(initial=0)))
    if splits < 2:
        raise UserError("recalibration: cross-validating the Dirichlet map needs at least 2 images of a class "
                        "in the fit set; hold out more images")
    features = log_softmax(z)
    pairs = ([(lam, mu) for lam in grid for mu in grid] if z.shape[1] <= DIRICHLET_PAIRS_MAX_CLASSES
             else [(lam, lam) for lam in grid])
    losses: dict[tuple[float, float], list[float]] = {pair: [] for pair in pairs}
    for fit, held in StratifiedKFold(splits, shuffle=True, random_state=0).split(z, y):
        previous = None  # from the strongest penalty down, each fit starting at the last one's solution
        for lam, mu in reversed(losses):
            previous = _fit_affine(features[fit], y[fit], False, lam, mu, start=previous,
                                   maxiter=DIRICHLET_CV_MAXITER)
            w, b = previous
            losses[lam, mu].append(probability_nll(softmax(features[held] @ w.T + b), y[held]))
    scores = {key: float(np.mean(values)) for key, values in losses.items()}
    best = min(scores, key=scores.__getitem__)  # min keeps the first of equal values
    return best, scores


# --------------------------------------------------------------------------- one-vs-rest maps


def _one_vs_rest(name: str, logits, labels, fit_class: Callable[[np.ndarray, np.ndarray], Callable]
                 ) -> Recalibration:
    """Per class k, ``fit_class(p_k, label == k) -> map of p_k``; the rows are then normalized."""
    z, y = _checked(logits, labels)
    p = softmax(z)
    maps = [fit_class(p[:, k], y == k) for k in range(p.shape[1])]

    def apply(x: np.ndarray) -> np.ndarray:
        q = softmax(x)
        out = np.stack([m(q[:, k]) for k, m in enumerate(maps)], axis=1)
        total = out.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, out / total, 1.0 / out.shape[1])

    return Recalibration(name, z.shape[1], apply)


def _histogram_class(p: np.ndarray, positive: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    bins = equal_mass_bins(p, positive, HISTOGRAM_BINS)
    value = np.where(bins.count > 0, bins.accuracy, (bins.edges[:-1] + bins.edges[1:]) / 2)
    return lambda q: value[np.minimum(np.searchsorted(bins.edges[1:], q, side="left"), value.size - 1)]


def _isotonic_class(p: np.ndarray, positive: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(p, positive.astype(np.float64))
    return iso.predict


def fit_histogram_binning(logits, labels) -> Recalibration:
    """One-vs-rest histogram binning over 15 equal-mass bins per class (see the module docstring)."""
    return _one_vs_rest("histogram", logits, labels, _histogram_class)


def fit_isotonic(logits, labels) -> Recalibration:
    """One-vs-rest isotonic regression on each class's softmax probability (see the module docstring)."""
    return _one_vs_rest("isotonic", logits, labels, _isotonic_class)


CONVENTIONS: dict[str, str] = {
    "temperature": "temperature: softmax(z / T), T minimizing the holdout NLL",
    "vector": "vector: softmax(w * z + b), w, b in R^K minimizing the holdout NLL (L-BFGS-B from w = 1, b = 0)",
    "matrix": "matrix: softmax(W z + b), unregularized, minimizing the holdout NLL (L-BFGS-B from W = I, b = 0)",
    "dirichlet": ("dirichlet: softmax(W log softmax(z) + b) minimizing the holdout NLL + ODIR "
                  "lambda/(K(K-1)) * sum of squared off-diagonal W + mu/K * sum b^2 (Kull et al. 2019), lambda and "
                  f"mu each from {', '.join(f'{v:g}' for v in DIRICHLET_GRID)} (mu = lambda above "
                  f"{DIRICHLET_PAIRS_MAX_CLASSES} classes) by {DIRICHLET_FOLDS}-fold stratified cross-validation of "
                  "the NLL on the holdout (reg_lambda, reg_mu, cv_nll in the curve)"),
    "histogram": (f"histogram: one-vs-rest binning of each softmax probability into {HISTOGRAM_BINS} equal-mass "
                  "bins (value: the bin's share of that class), rows renormalized"),
    "isotonic": ("isotonic: one-vs-rest sklearn IsotonicRegression of label == k on softmax probability k, "
                 "clipped, rows renormalized (all-zero rows uniform)"),
}
"""One line per map for a record's conventions."""

RECALIBRATIONS: dict[str, Callable[[Any, Any], Recalibration]] = {
    "temperature": fit_temperature_map,
    "vector": fit_vector_scaling,
    "matrix": fit_matrix_scaling,
    "dirichlet": fit_dirichlet,
    "histogram": fit_histogram_binning,
    "isotonic": fit_isotonic,
}


def fit_recalibration(name: str, logits, labels) -> Recalibration:
    """Fit the map ``name`` (a key of :data:`RECALIBRATIONS`) on ``N x K`` logits and ``N`` labels."""
    if name not in RECALIBRATIONS:
        raise UserError(f"unknown recalibration {name!r}; choose from {', '.join(RECALIBRATIONS)}")
    return RECALIBRATIONS[name](logits, labels)
