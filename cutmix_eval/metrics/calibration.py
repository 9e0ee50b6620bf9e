"""Calibration metrics: ECE (equal-width and equal-mass bins, classwise, max, debiased L2)
with reliability bins, NLL, Brier score, temperature scaling.

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
from cutmix_eval.metrics.classification import topk_correct
from cutmix_eval.metrics.selective import aurc, augrc, excess_aurc

__all__ = [
    "CONVENTIONS",
    "PROBABILITY_EPS",
    "TEMPERATURE_BOUNDS",
    "ReliabilityBins",
    "adaptive_calibration_error",
    "brier_per_image",
    "brier_score",
    "calibration_metrics",
    "checked_logits",
    "checked_logits_labels",
    "classwise_calibration_error",
    "debiased_l2_calibration_error",
    "equal_mass_bins",
    "equal_mass_edges",
    "expected_calibration_error",
    "fit_temperature",
    "log_softmax",
    "max_calibration_error",
    "negative_log_likelihood",
    "nll_per_image",
    "probability_metrics",
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
    "adaptive_ece": (
        "Adaptive ECE: as ECE but over at most 15 equal-mass bins of the sorted confidences (numpy.array_split; "
        "edges at midpoints between runs, ties never split, right-closed)."
    ),
    "classwise_ece": (
        "Classwise ECE (Kull et al. 2019): mean over the K classes of the ECE of p_k against label == k, "
        "15 equal-width right-closed bins each."
    ),
    "mce": "MCE: max over non-empty equal-width bins (15, right-closed) of |accuracy - mean confidence|.",
    "l2_ce_debiased": (
        "Debiased L2 calibration error (Kumar et al. 2019, top-label): sqrt(max(0, sum over at most 15 equal-mass "
        "bins of n_b/N * ((conf_b - acc_b)^2 - acc_b(1 - acc_b)/(n_b - 1)))), bins of one image add 0."
    ),
    "aurc": (
        "AURC: area under the selective risk vs coverage curve (max probability as confidence), step function "
        "over the distinct confidences = mean over images of the risk at their own confidence; E-AURC subtracts "
        "the exact AURC of an oracle ranking every correct image first."
    ),
    "augrc": (
        "AUGRC (Traub et al. 2024): trapezoidal area from (0, 0) under the generalized risk (accepted and wrong / N) "
        "vs coverage over the distinct confidences."
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


def checked_logits(logits) -> np.ndarray:
    """``logits`` as a float64 ``N x K`` array (finite, non-empty); one ``ValueError`` line otherwise."""
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


def checked_logits_labels(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    """``logits`` as float64 ``N x K`` (finite, non-empty) and ``labels`` as ``N`` integers in
    ``0..K-1``; one ``ValueError`` line otherwise."""
    z = checked_logits(logits)
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


def _check_probabilities_labels(probabilities, labels) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probabilities)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"probabilities must be a non-empty N x K array, got shape {p.shape}")
    p, _ = checked_outcomes(p, np.ones(1, dtype=bool))
    far = int(np.count_nonzero(np.abs(p.sum(axis=1) - 1) > 1e-6))
    if far:
        raise ValueError(f"{far} rows of probabilities do not sum to 1 (within 1e-6)")
    return p, _check_labels(labels, *p.shape)


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
    z = checked_logits(logits) / _check_temperature(temperature)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(logits / temperature)``, ``N x K`` float64, rows summing to 1.

    Numerically stable: the row maximum is subtracted before exponentiating. Same
    input checks as :func:`log_softmax`.
    """
    z = checked_logits(logits) / _check_temperature(temperature)
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


def _bins(conf: np.ndarray, corr: np.ndarray, edges: np.ndarray) -> ReliabilityBins:
    """Statistics of checked ``conf``/``corr`` in the right-closed bins ``(edges[i], edges[i+1]]``
    (``edges[0]`` is 0; a confidence of exactly 0 goes into bin 0)."""
    n_bins = edges.size - 1
    # side="left" on the upper edges: the number of upper edges strictly below c -> (e_i, e_{i+1}].
    idx = np.searchsorted(edges[1:], conf, side="left")
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(idx, weights=corr.astype(np.float64), minlength=n_bins) / count
        confidence = np.bincount(idx, weights=conf, minlength=n_bins) / count
    return ReliabilityBins(edges=edges, count=count, accuracy=accuracy, confidence=confidence)


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
    return _bins(conf, corr, np.arange(n_bins + 1, dtype=np.float64) / n_bins)


def equal_mass_edges(confidences: np.ndarray, n_bins: int) -> np.ndarray:
    """Edges ``0 = e_0 <= e_1 < ... < e_B = 1`` of equal-mass (adaptive) bins of checked ``confidences``.

    The sorted confidences are cut into ``min(n_bins, N)`` runs of consecutive values by
    ``numpy.array_split`` (the first ``N mod B`` runs one value longer); each inner upper edge
    is the midpoint of the last value of a run and the first of the next, the last upper edge
    is 1, and equal upper edges (ties across a cut) are merged, so there may be fewer than
    ``n_bins`` bins, none empty on these confidences. This is the binning of Kumar, Liang &
    Ma (2019), ``calibration.utils.get_equal_bins``; ``e_0 = 0`` is prepended as the lower edge.
    """
    conf = np.sort(np.asarray(confidences, dtype=np.float64))
    parts = np.array_split(conf, min(n_bins, conf.size))
    inner = [(a[-1] + b[0]) / 2.0 for a, b in zip(parts[:-1], parts[1:])]
    return np.concatenate([[0.0], np.unique(np.array([*inner, 1.0]))])


def equal_mass_bins(confidences, correct, n_bins: int = 15) -> ReliabilityBins:
    """Bin ``confidences`` (``N``, in [0, 1]) with ``correct`` into equal-mass (adaptive) bins.

    Edges from :func:`equal_mass_edges` (at most ``n_bins`` bins holding about ``N / n_bins``
    images each; ties are never split across bins); bins are right-closed like
    :func:`reliability_bins`: bin ``i`` is ``(edges[i], edges[i+1]]``, confidence 0 in bin 0.
    Same input checks as :func:`reliability_bins`.
    """
    conf, corr = _check_binned(confidences, correct, n_bins)
    return _bins(conf, corr, equal_mass_edges(conf, n_bins))


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
    return _mean_gap(reliability_bins(confidences, correct, n_bins))


def _mean_gap(bins: ReliabilityBins) -> float:
    """``sum over non-empty bins of |accuracy - mean confidence| * count / N``."""
    full = bins.count > 0
    gap = np.abs(bins.accuracy[full] - bins.confidence[full])
    return float(np.sum(gap * bins.count[full]) / np.sum(bins.count))


def adaptive_calibration_error(confidences, correct, n_bins: int = 15) -> float:
    """Equal-mass (adaptive) ECE, a fraction in [0, 1].

    ``sum over bins of |accuracy - mean confidence| * count / N`` like
    :func:`expected_calibration_error`, but over the equal-mass bins of
    :func:`equal_mass_bins` (at most ``n_bins`` bins of about ``N / n_bins`` images, ties
    kept in one bin, right-closed). ``confidences`` and ``correct`` are ``N`` arrays.
    netcal's ``ACE`` is a different quantity (classwise, unweighted mean over bins).
    """
    return _mean_gap(equal_mass_bins(confidences, correct, n_bins))


def max_calibration_error(confidences, correct, n_bins: int = 15) -> float:
    """Maximum calibration error (MCE), a fraction in [0, 1].

    ``max over NON-EMPTY bins of |accuracy - mean confidence|`` with the right-closed
    equal-width bins of :func:`reliability_bins` (unweighted: a bin of one image counts as
    much as a full one). ``confidences`` and ``correct`` are ``N`` arrays. torchmetrics'
    ``norm="max"`` calibration error is the same maximum over its LEFT-closed bins.
    """
    bins = reliability_bins(confidences, correct, n_bins)
    full = bins.count > 0
    return float(np.max(np.abs(bins.accuracy[full] - bins.confidence[full])))


def debiased_l2_calibration_error(confidences, correct, n_bins: int = 15) -> float:
    """Debiased top-label L2 calibration error of Kumar, Liang & Ma (NeurIPS 2019), a fraction in [0, 1].

    Over the equal-mass bins of :func:`equal_mass_bins` (at most ``n_bins``): per bin ``b``
    with ``n_b`` images, mean confidence ``c_b`` and accuracy ``a_b``, the plug-in squared
    error ``(c_b - a_b)^2`` minus its bias ``a_b (1 - a_b) / (n_b - 1)`` (0 for bins of fewer
    than 2 images); the estimate is ``sqrt(max(0, sum_b n_b / N * that))``. This is the
    authors' ``calibration.lower_bound_scaling_ce(probs, labels, p=2, debias=True,
    num_bins=15, mode="top-label")``. Their ``get_calibration_error`` switches to one bin per
    distinct value when the probabilities take few distinct values; this function always
    uses equal-mass bins. ``confidences`` and ``correct`` are ``N`` arrays.
    """
    bins = equal_mass_bins(confidences, correct, n_bins)
    n, a, c = bins.count, bins.accuracy, bins.confidence
    two = n >= 2
    squared = (c[two] - a[two]) ** 2 - a[two] * (1 - a[two]) / (n[two] - 1)
    return float(np.sqrt(max(0.0, float(np.sum(squared * n[two]) / np.sum(n)))))


def classwise_calibration_error(probabilities, labels, n_bins: int = 15) -> float:
    """Classwise ECE of Kull et al. (NeurIPS 2019), a fraction in [0, 1].

    ``(1/K) sum over classes k of ECE_k``, where ``ECE_k`` is
    :func:`expected_calibration_error` of ``probabilities[:, k]`` against ``labels == k``
    (``n_bins`` equal-width right-closed bins, each weighted by its count / N): every class's
    probability is binned, not just the top one. ``probabilities`` is ``N x K`` (rows of
    probabilities in [0, 1]), ``labels`` ``N`` integers in ``0..K-1``.
    """
    p, y = _check_probabilities_labels(probabilities, labels)
    return float(np.mean([expected_calibration_error(p[:, k], y == k, n_bins) for k in range(p.shape[1])]))


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
    z, y = checked_logits_labels(logits, labels)
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
    z, y = checked_logits_labels(logits, labels)
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
    z, y = checked_logits_labels(logits, labels)

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
    z, y = checked_logits_labels(logits, labels)
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


PROBABILITY_EPS = float(np.finfo(np.float64).eps)
"""Floor of the true class's probability in :func:`probability_metrics`' NLL (as ``sklearn.metrics.log_loss``)."""


def probability_metrics(probabilities, labels, n_bins: int = 15) -> dict[str, float]:
    """Every calibration and selective-prediction metric of ``N x K`` class probabilities.

    The prediction is the argmax (ties to the lower class index), the confidence its
    probability. Keys: ``top1_error``; ``ece`` (:func:`expected_calibration_error`),
    ``adaptive_ece`` (:func:`adaptive_calibration_error`), ``classwise_ece``
    (:func:`classwise_calibration_error`), ``mce`` (:func:`max_calibration_error`),
    ``l2_ce_debiased`` (:func:`debiased_l2_calibration_error`), all with ``n_bins`` bins;
    ``nll``: mean of ``-log max(p_label, PROBABILITY_EPS)`` (recalibration maps such as
    isotonic regression can give a class probability 0; the floor is sklearn's
    ``log_loss`` clipping); ``brier`` (sum over the K classes, range [0, 2]); ``aurc``,
    ``e_aurc``, ``augrc`` (:mod:`cutmix_eval.metrics.selective`, max probability as the
    confidence). Rows must sum to 1 within 1e-6.
    """
    p, y = _check_probabilities_labels(probabilities, labels)
    rows = np.arange(y.size)
    confidence = p.max(axis=1)
    correct = np.argmax(p, axis=1) == y
    diff = p.copy()
    diff[rows, y] -= 1.0
    return {
        "top1_error": float(1 - np.mean(correct)),
        "top5_error": float(1 - np.mean(topk_correct(p, y, 5))),
        "ece": expected_calibration_error(confidence, correct, n_bins),
        "adaptive_ece": adaptive_calibration_error(confidence, correct, n_bins),
        "classwise_ece": classwise_calibration_error(p, y, n_bins),
        "mce": max_calibration_error(confidence, correct, n_bins),
        "l2_ce_debiased": debiased_l2_calibration_error(confidence, correct, n_bins),
        "nll": probability_nll(p, y),
        "brier": float(np.mean(np.sum(diff * diff, axis=1))),
        "aurc": aurc(confidence, correct),
        "e_aurc": excess_aurc(confidence, correct),
        "augrc": augrc(confidence, correct),
    }


def probability_nll(probabilities, labels) -> float:
    """Mean over images of ``-log p[label]`` (nats) of ``N x K`` probability rows, each
    probability floored at :data:`PROBABILITY_EPS` (a map may give a label probability 0)."""
    p, y = _check_probabilities_labels(probabilities, labels)
    return float(np.mean(-np.log(np.maximum(p[np.arange(y.size), y], PROBABILITY_EPS))))
