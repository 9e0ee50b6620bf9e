"""Calibration metrics: ECE with reliability bins, NLL, Brier score, temperature scaling.

Inputs are ``logits`` (``N x K``, finite real numbers) and integer ``labels``
(``N``, values in ``0..K-1``), or, for the binned metrics, per-image
``confidences`` (``N``, in [0, 1]) and ``correct`` (``N`` bools). Softmax
probabilities are computed in float64 from ``logits / temperature``. The
prediction is the argmax with ties going to the lower class index, and the
confidence is the maximum softmax probability. All metrics are fractions or
plain numbers (never percentages); ``CONVENTIONS`` has the one-line forms.

ECE bins: ``n_bins`` (default 15) equal-width bins over (0, 1], RIGHT-closed:
bin ``i`` is ``(e_i, e_{i+1}]`` with float64 edges ``e_i = i / n_bins``, and a
confidence of exactly 0 goes into the first bin. torchmetrics'
``binary_calibration_error`` / ``MulticlassCalibrationError`` bins LEFT-closed
(``torch.bucketize(..., right=True) - 1``: bin ``i`` is ``[e_i, e_{i+1})``, and a
confidence of exactly 1 gets a bin of its own), and it casts confidences to
float32; the two agree whenever no confidence lies on an edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from cutmix_eval.metrics._checks import check_finite_real, check_real

__all__ = [
    "CONVENTIONS",
    "TEMPERATURE_BOUNDS",
    "ReliabilityBins",
    "brier_per_image",
    "brier_score",
    "calibration_metrics",
    "expected_calibration_error",
    "fit_temperature",
    "log_softmax",
    "negative_log_likelihood",
    "nll_per_image",
    "reliability_bins",
    "softmax",
]

TEMPERATURE_BOUNDS: tuple[float, float] = (0.05, 20.0)
"""Search interval of :func:`fit_temperature` (the optimum is clipped to it)."""

CONVENTIONS: dict[str, str] = {
    "ece": (
        "ECE: 15 equal-width bins over (0, 1], right-closed (bin i = (i/15, (i+1)/15], confidence 0 in the first bin), "
        "confidence = max softmax probability, correct = argmax (ties to the lower class) == label; "
        "ECE = sum over bins of |accuracy - mean confidence| * count / N (torchmetrics bins left-closed)."
    ),
    "nll": "NLL: mean over images of -log softmax(logits / T)[label], natural log (nats), T = 1 unless stated.",
    "brier": (
        "Brier score: mean over images of sum over the K classes of (p_k - onehot_k)^2 with p = softmax(logits / T), "
        "range [0, 2] (not divided by K)."
    ),
    "temperature": (
        "Temperature: the T > 0 minimizing the NLL of softmax(logits / T) on the given set, found by bounded Brent "
        "search over log T with T in [0.05, 20] (clipped to the bounds)."
    ),
}


# --------------------------------------------------------------------------- input checks


def _check_logits(logits) -> np.ndarray:
    arr = np.asarray(logits)
    if arr.ndim != 2:
        raise ValueError(f"logits must be an N x K array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"logits are empty (shape {arr.shape}); need at least one image and one class")
    return check_finite_real(arr, "logits", "logits", verb="contain").astype(np.float64, copy=False)


def _check_temperature(temperature: float) -> float:
    t = float(temperature)
    if not (np.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    return t


def _check_labels(labels, n: int, k: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match logits N x K = {n} x {k}, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {arr.dtype}")
    out = int(np.count_nonzero((arr < 0) | (arr >= k)))
    if out:
        raise ValueError(f"{out} labels are outside 0..{k - 1} (K = {k} classes)")
    return arr.astype(np.intp, copy=False)


def _check_logits_labels(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    z = _check_logits(logits)
    return z, _check_labels(labels, *z.shape)


def _check_binned(confidences, correct, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidences)
    corr = np.asarray(correct)
    if conf.ndim != 1 or corr.shape != conf.shape:
        raise ValueError(f"expected confidences N and correct N, got shapes {conf.shape} and {corr.shape}")
    if conf.size == 0:
        raise ValueError("confidences are empty; calibration of an empty set is undefined")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    return checked_outcomes(conf, corr)


def checked_outcomes(confidences: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confidences as float64 in [0, 1] and correctness as booleans (any shape, checked by the
    caller); ``ValueError`` for NaN, values outside [0, 1] or correctness other than 0/1."""
    conf = check_real(confidences, "confidences").astype(np.float64, copy=False)
    bad = int(np.count_nonzero(~((conf >= 0) & (conf <= 1))))  # also catches NaN
    if bad:
        raise ValueError(f"{bad} confidences are NaN or outside [0, 1]")
    corr = correct
    if corr.dtype != bool:
        if not np.issubdtype(corr.dtype, np.number) or not np.isin(corr, (0, 1)).all():
            raise ValueError("correct must be booleans (or 0/1)")
        corr = corr.astype(bool)
    return conf, corr


# --------------------------------------------------------------------------- probabilities


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``log softmax(logits / temperature)``, ``N x K`` float64, natural log.

    Numerically stable: the row maximum is subtracted before exponentiating.
    Raises ``ValueError`` for non-2-D, empty or non-finite logits, or a temperature
    that is not a finite number > 0.
    """
    z = _check_logits(logits) / _check_temperature(temperature)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(logits / temperature)``, ``N x K`` float64, rows summing to 1.

    Numerically stable: the row maximum is subtracted before exponentiating. Same
    input checks as :func:`log_softmax`.
    """
    z = _check_logits(logits) / _check_temperature(temperature)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- binned calibration


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics of a reliability diagram (``n_bins`` bins).

    ``edges`` are the ``n_bins + 1`` float64 edges ``i / n_bins`` from 0 to 1; bin
    ``i`` is ``(edges[i], edges[i+1]]`` (right-closed; confidence 0 goes into bin 0).
    ``count`` is the number of images per bin; ``accuracy`` the fraction correct and
    ``confidence`` the mean confidence per bin, both NaN where the bin is empty.
    """

    edges: np.ndarray
    count: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray


def reliability_bins(confidences, correct, n_bins: int = 15) -> ReliabilityBins:
    """Bin ``confidences`` (``N``, in [0, 1]) with ``correct`` (``N`` bools or 0/1) into equal-width bins.

    Bins are right-closed, ``(i / n_bins, (i + 1) / n_bins]`` with the edges taken as
    the float64 values ``i / n_bins``; a confidence exactly equal to an edge goes
    into the bin BELOW it, and a confidence of exactly 0 goes into the first bin.
    (torchmetrics' calibration error uses left-closed bins ``[i/n, (i+1)/n)``.)
    Raises ``ValueError`` for mismatched shapes, an empty set, confidences outside
    [0, 1] or NaN, non-boolean ``correct``, or ``n_bins < 1``.
    """
    conf, corr = _check_binned(confidences, correct, n_bins)
    edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
    # side="left": the index i with edges[i-1] < c <= edges[i]; c == 0 gives 0 -> bin 0.
    idx = np.maximum(np.searchsorted(edges, conf, side="left") - 1, 0)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(idx, weights=corr.astype(np.float64), minlength=n_bins) / count
        confidence = np.bincount(idx, weights=conf, minlength=n_bins) / count
    return ReliabilityBins(edges=edges, count=count, accuracy=accuracy, confidence=confidence)


def expected_calibration_error(confidences, correct, n_bins: int = 15) -> float:
    """Expected calibration error, a fraction in [0, 1].

    ``ECE = sum over non-empty bins of |accuracy - mean confidence| * count / N``
    with the right-closed bins of :func:`reliability_bins` (bin ``i`` =
    ``(i/n_bins, (i+1)/n_bins]``, confidence 0 in the first bin). For a classifier,
    ``confidences`` is the max softmax probability and ``correct`` is
    ``argmax == label`` (see :func:`calibration_metrics`).

    Difference from torchmetrics (``multiclass_calibration_error`` /
    ``binary_calibration_error`` with ``norm="l1"``): torchmetrics bins LEFT-closed,
    ``[i/n, (i+1)/n)``, with a confidence of exactly 1 in a bin of its own, and
    works on float32 confidences; the results agree (up to float32 rounding) when
    no confidence lies on a bin edge, and differ when one does.
    """
    bins = reliability_bins(confidences, correct, n_bins)
    full = bins.count > 0
    gap = np.abs(bins.accuracy[full] - bins.confidence[full])
    return float(np.sum(gap * bins.count[full]) / np.sum(bins.count))


# --------------------------------------------------------------------------- proper scoring rules


def _nll_per_image(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``-log softmax(z)[y]`` per row of checked float64 ``z``, accurate also when it is tiny.

    With ``m`` the row maximum, ``logsumexp(z) = m + log1p(sum of exp(z_k - m) over k != argmax)``;
    ``log1p`` keeps the loss of a confident correct prediction (e.g. 1e-30) from rounding to 0,
    so the temperature search sees a slope instead of a flat zero.
    """
    rows = np.arange(y.size)
    top = np.argmax(z, axis=1)
    m = z[rows, top]
    e = np.exp(z - m[:, None])
    e[rows, top] = 0.0
    return np.log1p(e.sum(axis=1)) + (m - z[rows, y])


def negative_log_likelihood(logits, labels, temperature: float = 1.0) -> float:
    """Mean over images of ``-log softmax(logits / temperature)[label]`` in nats (natural log).

    Equals ``torch.nn.functional.cross_entropy(logits / T, labels)`` (mean reduction)
    and, up to its probability clipping, ``sklearn.metrics.log_loss``. Raises
    ``ValueError`` on shape mismatch, empty input, labels outside ``0..K-1``,
    non-finite logits or a bad temperature.
    """
    return float(np.mean(nll_per_image(logits, labels, temperature)))


def nll_per_image(logits, labels, temperature: float = 1.0) -> np.ndarray:
    """``-log softmax(logits / temperature)[label]`` of each image (``N``, nats); its mean is
    :func:`negative_log_likelihood`."""
    z, y = _check_logits_labels(logits, labels)
    return _nll_per_image(z / _check_temperature(temperature), y)


def brier_score(logits, labels, temperature: float = 1.0) -> float:
    """Multi-class Brier score: mean over images of ``sum_k (p_k - onehot_k)^2``.

    ``p = softmax(logits / temperature)``. The sum runs over all ``K`` classes and
    is not divided by ``K``, so the range is [0, 2] (0: all mass on the true class;
    2: all mass on one wrong class). Same input checks as
    :func:`negative_log_likelihood`.
    """
    return float(np.mean(brier_per_image(logits, labels, temperature)))


def brier_per_image(logits, labels, temperature: float = 1.0) -> np.ndarray:
    """``sum_k (p_k - onehot_k)^2`` of each image (``N``); its mean is :func:`brier_score`."""
    z, y = _check_logits_labels(logits, labels)
    diff = softmax(z, temperature)  # a fresh array: subtract the one-hot in place
    diff[np.arange(y.size), y] -= 1.0
    return np.sum(diff * diff, axis=1)


def fit_temperature(logits, labels) -> float:
    """Temperature ``T > 0`` minimizing ``negative_log_likelihood(logits, labels, T)``.

    Temperature scaling (Guo et al., 2017) fitted on the given (validation) set:
    ``scipy.optimize.minimize_scalar(method="bounded")`` (Brent) over ``u = log T``
    with ``T`` in ``TEMPERATURE_BOUNDS`` = [0.05, 20] and ``xatol`` = 1e-6 in log T.
    The NLL is convex in ``1/T``, hence unimodal in ``log T``, so the bounded search
    finds the global minimum within the interval; an optimum beyond the interval
    (e.g. an all-correct set, whose NLL keeps falling as ``T -> 0``) is clipped to
    the nearest bound. Same input checks as :func:`negative_log_likelihood`.
    """
    z, y = _check_logits_labels(logits, labels)

    def nll(u: float) -> float:
        return float(np.mean(_nll_per_image(z / np.exp(u), y)))

    lo, hi = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    res = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    best_t, best_nll = float(np.exp(res.x)), float(res.fun)
    # Bounded Brent never evaluates the end points themselves; take a bound if it is strictly better.
    for bound in TEMPERATURE_BOUNDS:
        value = nll(np.log(bound))
        if value < best_nll:
            best_t, best_nll = float(bound), value
    return best_t


def calibration_metrics(logits, labels, n_bins: int = 15) -> dict[str, float]:
    """ECE, NLL, Brier score, mean confidence and top-1 accuracy at temperature 1.

    Keys: ``ece`` (:func:`expected_calibration_error` with ``n_bins`` right-closed
    bins), ``nll`` (nats), ``brier`` (range [0, 2]), ``mean_confidence`` (mean max
    softmax probability) and ``accuracy`` (top-1 by argmax, ties to the lower class
    index). All are plain floats; fractions, not percentages.
    """
    z, y = _check_logits_labels(logits, labels)
    p = softmax(z)
    confidence = p.max(axis=1)
    correct = np.argmax(z, axis=1) == y  # first maximum: ties go to the lower class index
    return {
        "ece": expected_calibration_error(confidence, correct, n_bins),
        "nll": negative_log_likelihood(z, y),
        "brier": brier_score(z, y),
        "mean_confidence": float(np.mean(confidence)),
        "accuracy": float(np.mean(correct)),
    }
