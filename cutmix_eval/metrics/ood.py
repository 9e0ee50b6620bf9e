"""Out-of-distribution (OOD) detection metrics from per-image scores.

Inputs are two 1-D arrays of finite real scores, ``id_scores`` (``N_in``) for the
in-distribution test set and ``ood_scores`` (``N_out``) for the OOD set, where a
HIGHER score means MORE in-distribution (e.g. the maximum softmax probability).

Conventions (see ``CONVENTIONS`` for the one-line form printed next to each number):

* An image is *accepted as ID* at threshold ``t`` when ``score >= t``.
  ``TPR(t)`` is the fraction of ID scores ``>= t`` and ``TNR(t)`` the fraction of
  OOD scores ``< t``; ID is the positive class unless a name says otherwise.
* Thresholds are swept exactly: every distinct score value is a candidate (plus
  ``+inf``, which accepts nothing). There is no threshold grid and no
  interpolation between operating points.
* All metrics are fractions in [0, 1], not percentages.

Everything is computed from one sort of the concatenated scores: the counts of ID
and OOD images at or below each distinct value give every operating point, so the
cost is O(N log N) with ties handled exactly (tied images always fall on the same
side of a threshold).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from typing import NamedTuple

import numpy as np

from cutmix_eval.metrics._checks import check_finite_real

__all__ = ["CONVENTIONS", "OODMetrics", "ood_metrics", "roc_points"]

CONVENTIONS: dict[str, str] = {
    "tnr_at_tpr95": (
        "TNR at TPR 95% (ID positive, accept as ID when score >= t): fraction of OOD images with score < t* where t* "
        "is the largest distinct score whose TPR (fraction of ID scores >= t*) is >= 0.95, found by an exact sweep "
        "over all scores (Mahalanobis-code style, not ODIN's averaging over TPR in [0.9495, 0.9505], not interpolated)."
    ),
    "auroc": (
        "AUROC: probability that a random ID image scores higher than a random OOD image, ties counting 1/2 "
        "(equals sklearn roc_auc_score with ID labelled 1; independent of which class is positive)."
    ),
    "detection_accuracy": (
        "Detection accuracy (ID positive): max over all thresholds t, including accept-all and reject-all (both 0.5), "
        "of 0.5 * TPR(t) + 0.5 * TNR(t), i.e. 1 - minimum detection error with equal class priors."
    ),
    "aupr_in": (
        "AUPR-In: average precision with ID positive ranked by score, sum over distinct thresholds of "
        "(R_n - R_(n-1)) * P_n with precision from counts tp / (tp + fp), no interpolation "
        "(sklearn average_precision_score)."
    ),
    "aupr_out": (
        "AUPR-Out: average precision with OOD positive ranked by the negated score, sum over distinct thresholds "
        "of (R_n - R_(n-1)) * P_n with precision from counts tp / (tp + fp), no interpolation "
        "(sklearn average_precision_score)."
    ),
    "fpr95_ood_pos": (
        "OOD-positive FPR at 95% (OpenOOD >= 2023 / pytorch-ood convention, flag as OOD when score <= t): "
        "fraction of ID images with score <= t where t is the smallest distinct score at which >= 95% of OOD "
        "images are flagged; not 1 - tnr_at_tpr95."
    ),
}


@dataclass(frozen=True)
class OODMetrics:
    """OOD detection metrics for one (ID set, OOD set, score) triple; fractions in [0, 1].

    Field conventions are the entries of :data:`CONVENTIONS` with the same name;
    ``threshold_tpr95`` is the score threshold ``t*`` used for ``tnr_at_tpr95``
    (images with ``score >= t*`` are accepted as ID).
    """

    tnr_at_tpr95: float
    auroc: float
    detection_accuracy: float
    aupr_in: float
    aupr_out: float
    fpr95_ood_pos: float
    threshold_tpr95: float

    def as_dict(self) -> dict[str, float]:
        """The six metrics and ``threshold_tpr95`` as plain Python floats, in field order."""
        return {f.name: float(v) for f, v in zip(fields(self), astuple(self))}


class _Sweep(NamedTuple):
    """Counts at each distinct score value ``values[j]`` (ascending)."""

    values: np.ndarray  # distinct scores, ascending
    id_lt: np.ndarray  # number of ID scores  < values[j]
    id_le: np.ndarray  # number of ID scores <= values[j]
    ood_lt: np.ndarray  # number of OOD scores  < values[j]
    ood_le: np.ndarray  # number of OOD scores <= values[j]
    n_in: int
    n_out: int


def _check_scores(scores, name: str) -> np.ndarray:
    arr = np.asarray(scores)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of scores, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; OOD metrics need at least one score in each set")
    return check_finite_real(arr, name, "scores")


def _sweep(id_scores, ood_scores) -> _Sweep:
    """Sort the pooled scores once and count ID/OOD images at each distinct value."""
    x = _check_scores(id_scores, "id_scores")
    y = _check_scores(ood_scores, "ood_scores")
    pooled = np.concatenate([x, y])  # common dtype: comparisons stay exact for same-dtype inputs
    is_id = np.zeros(pooled.size, dtype=bool)
    is_id[: x.size] = True
    order = np.argsort(pooled, kind="stable")
    s = pooled[order]
    starts = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1]]))
    ends = np.concatenate([starts[1:], [s.size]])  # exclusive end of each run of equal values
    id_cum = np.concatenate([[0], np.cumsum(is_id[order], dtype=np.int64)])
    id_le = id_cum[ends]
    ood_le = ends.astype(np.int64) - id_le
    id_lt = id_cum[starts]
    ood_lt = starts.astype(np.int64) - id_lt
    return _Sweep(s[starts], id_lt, id_le, ood_lt, ood_le, int(x.size), int(y.size))


def _check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level <= 1.0:
        raise ValueError(f"tpr_level must be in (0, 1], got {level}")
    return level


def ood_metrics(id_scores, ood_scores, tpr_level: float = 0.95) -> OODMetrics:
    """All OOD detection metrics for ``id_scores`` (``N_in``) and ``ood_scores`` (``N_out``).

    Higher score = more in-distribution. An image is accepted as ID at threshold
    ``t`` when ``score >= t``; ``TPR(t)`` = fraction of ID scores ``>= t``,
    ``TNR(t)`` = fraction of OOD scores ``< t``, each computed as count / set size
    in float64. The candidate thresholds are every distinct score plus ``+inf``
    (an exact sweep: no grid, no interpolation).

    * ``tnr_at_tpr95``: ``t*`` = the LARGEST distinct score with ``TPR(t*) >= tpr_level``
      (all images tied at ``t*`` are accepted); reports ``TNR(t*)``. This is the
      exact-sweep rule in the style of the Mahalanobis code, not ODIN's average
      over thresholds with TPR in [0.9495, 0.9505], and not interpolated.
      ``threshold_tpr95`` is ``t*``.
    * ``fpr95_ood_pos``: OOD positive. An image is flagged OOD when ``score <= t``;
      ``t`` = the SMALLEST distinct score at which at least ``tpr_level`` of the OOD
      images are flagged; reports the fraction of ID images flagged (``score <= t``).
      Not the same number as ``1 - tnr_at_tpr95`` in general.
    * ``auroc``: P(random ID score > random OOD score) + 0.5 * P(equal); equals
      ``sklearn.metrics.roc_auc_score`` with ID labelled 1.
    * ``detection_accuracy``: max over candidate thresholds (accept-all and
      reject-all included, both giving 0.5) of ``0.5 * TPR + 0.5 * TNR``.
    * ``aupr_in``: average precision with ID positive and the score as ranking:
      ``sum_n (R_n - R_{n-1}) * P_n`` over distinct thresholds, precision from
      counts ``tp / (tp + fp)``, no interpolation (``sklearn.metrics.average_precision_score``).
    * ``aupr_out``: the same with OOD positive and the negated score.

    ``tpr_level`` (default 0.95) sets the level for both ``tnr_at_tpr95`` and
    ``fpr95_ood_pos``; the field names keep "95" whatever the level.
    Raises ``ValueError`` for an empty or non-1-D set, non-numeric scores, NaN or
    infinite scores, or ``tpr_level`` outside (0, 1].
    """
    level = _check_level(tpr_level)
    sw = _sweep(id_scores, ood_scores)
    n_in, n_out = sw.n_in, sw.n_out
    id_ge = n_in - sw.id_lt  # ID accepted at t = values[j]
    ood_ge = n_out - sw.ood_lt  # OOD accepted at t = values[j]
    tpr = id_ge / n_in
    tnr = sw.ood_lt / n_out

    # TPR is non-increasing in t and TPR(min score) = 1, so the last index qualifies.
    j_star = int(np.flatnonzero(tpr >= level)[-1])
    tnr_at_tpr = float(tnr[j_star])

    # OOD caught when score <= values[j]: non-decreasing in j, reaches 1 at the last value.
    j_ood = int(np.flatnonzero(sw.ood_le / n_out >= level)[0])
    fpr_ood_pos = float(sw.id_le[j_ood] / n_in)

    id_at = sw.id_le - sw.id_lt
    ood_at = sw.ood_le - sw.ood_lt
    # Each ID image beats the OOD images strictly below it and ties with those equal to it.
    auroc = float(np.sum(id_at * (2 * sw.ood_lt + ood_at)) / (2.0 * n_in * n_out))

    # Accept-all (t = min score) gives 0.5 and is in the sweep; reject-all (t = +inf) gives 0.5.
    det_acc = float(max(np.max(0.5 * tpr + 0.5 * tnr), 0.5))

    # Recall rises by id_at / n_in at each distinct value (descending), with precision from counts.
    aupr_in = float(np.sum(id_at * (id_ge / (id_ge + ood_ge))) / n_in)
    aupr_out = float(np.sum(ood_at * (sw.ood_le / (sw.ood_le + sw.id_le))) / n_out)

    return OODMetrics(
        tnr_at_tpr95=tnr_at_tpr,
        auroc=auroc,
        detection_accuracy=det_acc,
        aupr_in=aupr_in,
        aupr_out=aupr_out,
        fpr95_ood_pos=fpr_ood_pos,
        threshold_tpr95=float(sw.values[j_star]),
    )


def roc_points(id_scores, ood_scores) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve ``(fpr, tpr)``, ID positive, for plotting.

    One point per candidate threshold, thresholds descending: ``+inf`` first
    (point (0, 0)), then every distinct score down to the smallest (point (1, 1)),
    so both arrays have ``n_distinct + 1`` entries and are non-decreasing. At
    threshold ``t``, ``tpr`` = fraction of ID scores ``>= t`` and ``fpr`` = fraction
    of OOD scores ``>= t``. Tied ID/OOD scores give a diagonal segment, so the
    trapezoidal area under these points equals ``ood_metrics(...).auroc``.
    """
    sw = _sweep(id_scores, ood_scores)
    tpr = (sw.n_in - sw.id_lt[::-1]) / sw.n_in
    fpr = (sw.n_out - sw.ood_lt[::-1]) / sw.n_out
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])
