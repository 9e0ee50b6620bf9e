"""Selective prediction: the risk-coverage curve, AURC, E-AURC and AUGRC.

A selective classifier accepts an image when its confidence is at least a threshold
``t`` and abstains otherwise. Inputs are ``confidences`` (``N`` real numbers, higher =
more confident; any scale, e.g. the max softmax probability) and ``correct`` (``N``
bools or 0/1: whether the prediction is right). All outputs are fractions.

Ties: the thresholds are the DISTINCT confidences, so images with equal confidence
are accepted or rejected together and the numbers do not depend on the input order.
At threshold ``t_j`` (the ``j``-th largest distinct confidence), coverage ``c_j`` is
the share of images with confidence ``>= t_j``, the selective risk ``r_j`` the share
of errors among them, and the generalized risk ``g_j = c_j * r_j`` the share of ALL
images that are accepted and wrong (Traub et al. 2024).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cutmix_eval.metrics._checks import check_finite_real

__all__ = ["RiskCoverage", "aurc", "augrc", "excess_aurc", "risk_coverage_curve"]


@dataclass(frozen=True)
class RiskCoverage:
    """The risk-coverage curve at each distinct confidence threshold, in decreasing order.

    ``threshold`` (``J``): the distinct confidences, largest first; ``coverage`` (``J``):
    share of images with confidence ``>= threshold``, increasing to 1; ``risk`` (``J``):
    selective risk (errors / accepted); ``generalized_risk`` (``J``): errors accepted / N.
    """

    threshold: np.ndarray
    coverage: np.ndarray
    risk: np.ndarray
    generalized_risk: np.ndarray


def _checked(confidences, correct) -> tuple[np.ndarray, np.ndarray]:
    conf, corr = np.asarray(confidences), np.asarray(correct)
    if conf.ndim != 1 or corr.shape != conf.shape:
        raise ValueError(f"expected confidences N and correct N, got shapes {conf.shape} and {corr.shape}")
    if conf.size == 0:
        raise ValueError("confidences are empty; selective prediction of an empty set is undefined")
    conf = check_finite_real(conf, "confidences", "confidences").astype(np.float64, copy=False)
    if corr.dtype != bool and not (np.issubdtype(corr.dtype, np.number) and np.isin(corr, (0, 1)).all()):
        raise ValueError("correct must be booleans (or 0/1)")
    return conf, corr.astype(bool)


def risk_coverage_curve(confidences, correct) -> RiskCoverage:
    """Risk-coverage curve of ``confidences`` (``N``, higher = more confident) and ``correct`` (``N``).

    One point per distinct confidence ``t``, largest first: accept every image with
    confidence ``>= t`` (tied images together). Raises ``ValueError`` for mismatched
    shapes, an empty set, non-finite confidences or non-boolean ``correct``.
    """
    conf, corr = _checked(confidences, correct)
    order = np.argsort(-conf, kind="stable")
    conf, wrong = conf[order], ~corr[order]
    last = np.flatnonzero(np.r_[conf[1:] != conf[:-1], True])  # last image of each tie group
    accepted = last + 1
    errors = np.cumsum(wrong)[last]
    n = conf.size
    return RiskCoverage(threshold=conf[last], coverage=accepted / n, risk=errors / accepted,
                        generalized_risk=errors / n)


def aurc(confidences, correct) -> float:
    """Area under the risk-coverage curve (Geifman et al. 2019), in [0, 1], lower is better.

    ``AURC = sum over thresholds j of (c_j - c_{j-1}) * r_j`` (``c_0 = 0``): the selective
    risk as a right-continuous step function of coverage, i.e. the mean over images of the
    selective risk at the threshold equal to the image's own confidence. Without ties this
    is the usual ``(1/N) sum_{i=1..N} (errors among the i most confident) / i``; with ties,
    tied images share the risk after all of them are accepted.
    """
    rc = risk_coverage_curve(confidences, correct)
    return float(np.sum(np.diff(rc.coverage, prepend=0.0) * rc.risk))


def excess_aurc(confidences, correct) -> float:
    """E-AURC (Geifman et al. 2019): :func:`aurc` minus the AURC of an oracle, in [0, 1].

    The oracle ranks every correct image above every wrong one: with ``m`` correct of
    ``N``, its AURC is ``(1/N) sum_{i=m+1..N} (i - m) / i``, computed exactly here.
    Geifman et al. give its continuous approximation ``r + (1 - r) ln(1 - r)`` (``r`` the
    error rate), which differs by O(1/N) and is undefined at ``r = 1``. 0 when distinct
    confidences rank every correct image above every wrong one (or all are correct); tied
    confidences share their risk (:func:`aurc`), so a score with ties among the wrong images
    stays above 0 even when it separates them from the correct ones.
    """
    conf, corr = _checked(confidences, correct)
    n, m = corr.size, int(np.count_nonzero(corr))
    i = np.arange(m + 1, n + 1, dtype=np.float64)
    return aurc(conf, corr) - float(np.sum((i - m) / i) / n)


def augrc(confidences, correct) -> float:
    """Area under the generalized risk-coverage curve (Traub et al. 2024), in [0, 0.5].

    The generalized risk ``g_j`` (share of all images accepted and wrong) against coverage
    ``c_j``, integrated by the trapezoidal rule from ``(0, 0)`` over the distinct
    thresholds. With ``r`` the error rate and ``A`` the AUROC of the confidence for telling
    correct from wrong images (ties counted half), this equals
    ``r^2 / 2 + r (1 - r) (1 - A)``, the identity of Traub et al.; 0 when all are correct.
    """
    rc = risk_coverage_curve(confidences, correct)
    g = np.r_[0.0, rc.generalized_risk]
    return float(np.sum(np.diff(rc.coverage, prepend=0.0) * (g[1:] + g[:-1]) / 2))
