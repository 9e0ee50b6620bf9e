"""Percentile-bootstrap confidence intervals over test images, and batched metrics for them.

Convention (state it next to every interval printed):

* **What an interval means**: the variability of a metric over the *test images*
  for one fixed, trained model: "had we drawn another test set of the same size
  from the same distribution, the number would typically fall in here". It says
  nothing about the variability over *training seeds* (a second, usually larger
  source of spread that needs several trained models: report mean +- std over
  seeds for that).
* **Percentile bootstrap**: draw ``n_resamples`` resamples (default 1000), compute
  the statistic on each, and report the ``(1 - level) / 2`` and ``(1 + level) / 2``
  quantiles of those values (default level 0.95, NumPy's default linear
  interpolation between order statistics). No bias correction (not BCa).
* **Stratified resampling**: each group (e.g. the ID scores and the OOD scores, or
  several test sets) is resampled with replacement *independently*, each with its
  own size, so every resample keeps the group sizes. Values that must stay paired
  (e.g. the correctness of two models on the same image, or one image's
  correctness at every hole size) belong in one group, along trailing axes: the
  first axis of every group is the image axis.
* **Reproducible**: the indices come from ``numpy.random.default_rng(seed)``
  (default seed 0), one spawned child generator per group, so group ``i``'s
  resamples depend only on the seed, ``i`` and ``n_i`` (not on the other groups,
  trailing axes, dtypes or chunking): the same seed resamples the same images for
  every statistic computed on the same test set.

The ``*_rows`` functions are vectorized statistics for :func:`bootstrap_interval`:
each takes arrays with a leading resample axis ``B`` and returns a float64 array of
shape ``(B,)`` equal row by row to the scalar metric of this package
(``ood_metrics``, ``expected_calibration_error``, ``trapezoid_mean``), with the
same conventions. Pure NumPy, no I/O.

Example (AUROC with a 95% interval)::

    lo, hi = bootstrap_interval(auroc_rows, [id_scores, ood_scores])
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from cutmix_eval.metrics._checks import check_finite_real
from cutmix_eval.metrics.calibration import checked_outcomes

__all__ = [
    "CONVENTION",
    "auroc_rows",
    "bootstrap_interval",
    "detection_accuracy_rows",
    "ece_rows",
    "mean_rows",
    "tnr_at_tpr95_rows",
    "trapezoid_rows",
]

CONVENTION: str = (
    "95% CI: percentile bootstrap over test images (1000 resamples, each group such as ID / OOD resampled "
    "independently with replacement, numpy default_rng(0)); spread over test images for this model, "
    "not over training seeds."
)
"""One-line form of the bootstrap convention (with the default arguments), for table footnotes."""

CHUNK_BYTES: int = 4 * 2**20
"""Target memory of one chunk of resampled groups plus their indices (4 MiB; the statistic's own
scratch memory comes on top). Small chunks stay in cache and ran faster than large ones; the
interval does not depend on the chunk size."""


# --------------------------------------------------------------------------- the bootstrap


def _check_groups(groups: Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(groups, np.ndarray) or not isinstance(groups, Sequence):
        raise ValueError("groups must be a list or tuple of arrays, e.g. [scores] or [id_scores, ood_scores]")
    if len(groups) == 0:
        raise ValueError("groups is empty; pass at least one array of per-image values")
    arrays = []
    for i, group in enumerate(groups):
        arr = np.asarray(group)
        if arr.ndim == 0:
            raise ValueError(f"group {i} is a scalar; each group needs a first (image) axis")
        if arr.shape[0] == 0:
            raise ValueError(f"group {i} is empty (shape {arr.shape}); each group needs at least one image")
        arrays.append(arr)
    return arrays


def _check_n_resamples(n_resamples: int) -> int:
    try:
        if isinstance(n_resamples, bool):
            raise TypeError
        n = operator.index(n_resamples)
    except TypeError:
        raise ValueError(f"n_resamples must be an integer >= 1, got {n_resamples!r}") from None
    if n < 1:
        raise ValueError(f"n_resamples must be an integer >= 1, got {n}")
    return n


def bootstrap_interval(
    statistic: Callable[..., np.ndarray],
    groups: Sequence[np.ndarray],
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval ``(low, high)`` of ``statistic`` over resampled images.

    ``groups`` is a sequence of arrays ``g_i`` of shape ``(n_i, ...)``: the first axis
    is the image axis (trailing axes travel with the image, e.g. ``(n, F)``
    correctness at ``F`` hole sizes). Each group is resampled with replacement
    independently of the others, keeping its size ``n_i``.

    ``statistic(*resampled)`` receives one array per group, of shape
    ``(B, n_i, ...)`` (a chunk of ``B <= n_resamples`` resamples, same dtype as the
    group), and must return ``B`` values, shape ``(B,)``; it is called once per
    chunk, never once per resample. Chunks are sized so the resampled arrays and
    their indices stay near :data:`CHUNK_BYTES` (at least one resample per chunk).

    Returns the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the
    ``n_resamples`` statistic values (``numpy.quantile``, linear interpolation) as
    Python floats. NaN values of the statistic (e.g. an undefined metric on a
    degenerate resample) are ignored when fewer than half of the values are NaN;
    otherwise the interval is ``(nan, nan)``. Indices are drawn from
    ``numpy.random.default_rng(seed).spawn(len(groups))``, one generator per group:
    deterministic for a seed, and group ``i``'s resamples depend only on
    ``(seed, i, n_i)``.

    Raises ``ValueError`` for no groups, an empty or 0-d group, ``n_resamples < 1``,
    ``level`` outside (0, 1), or a statistic that does not return shape ``(B,)``.
    """
    arrays = _check_groups(groups)
    n_res = _check_n_resamples(n_resamples)
    level = float(level)
    if not 0.0 < level < 1.0:  # also refuses NaN
        raise ValueError(f"level must be in (0, 1) (e.g. 0.95 for a 95% interval), got {level}")

    # One generator per group: group i's indices depend only on (seed, i, n_i), not on chunking.
    rngs = np.random.default_rng(seed).spawn(len(arrays))
    # Bytes per resample: the resampled copy of every group plus its int64 indices.
    per_resample = sum(a.shape[0] * (a.itemsize * (a.size // a.shape[0]) + 8) for a in arrays)
    chunk = int(max(1, min(n_res, CHUNK_BYTES // max(per_resample, 1))))

    values = np.empty(n_res, dtype=np.float64)
    for start in range(0, n_res, chunk):
        b = min(chunk, n_res - start)
        resampled = [a[rng.integers(0, a.shape[0], size=(b, a.shape[0]))] for a, rng in zip(arrays, rngs)]
        out = np.asarray(statistic(*resampled), dtype=np.float64)
        if out.shape != (b,):
            raise ValueError(
                f"statistic must return one value per resample, shape ({b},) for this chunk, got shape {out.shape}"
            )
        values[start : start + b] = out

    q = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
    n_nan = int(np.count_nonzero(np.isnan(values)))
    if n_nan == 0:
        low, high = np.quantile(values, q)
    elif 2 * n_nan < n_res:
        low, high = np.nanquantile(values, q)
    else:
        return float("nan"), float("nan")
    return float(low), float(high)


# --------------------------------------------------------------------------- batched statistics


def mean_rows(x: np.ndarray) -> np.ndarray:
    """Mean of every row: ``x.reshape(B, -1).mean(axis=1)``, float64 of shape ``(B,)``.

    ``x`` has shape ``(B, n, ...)``; the mean runs over ALL entries of a row (images
    and any trailing axes together), e.g. top-1 accuracy from ``(B, n)`` booleans.
    For a per-column mean over trailing axes, reduce inside your own statistic.
    """
    arr = np.asarray(x)
    if arr.ndim < 2 or arr.shape[1] == 0:
        raise ValueError(f"expected a (B, n, ...) array with n >= 1, got shape {arr.shape}")
    return arr.reshape(arr.shape[0], -1).mean(axis=1, dtype=np.float64)


def _check_score_rows(id_scores, ood_scores) -> tuple[np.ndarray, np.ndarray]:
    """Both score sets as 2-D arrays of one common dtype (as ``ood_metrics`` pools them)."""
    x, y = np.asarray(id_scores), np.asarray(ood_scores)
    for arr, name in ((x, "id_scores"), (y, "ood_scores")):
        if arr.ndim != 2 or arr.shape[1] == 0:
            raise ValueError(f"{name} must have shape (B, n) with n >= 1, got {arr.shape}")
        check_finite_real(arr, name, "scores")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"id_scores and ood_scores need the same number of rows B, got {x.shape} and {y.shape}")
    dtype = np.result_type(x.dtype, y.dtype)  # what np.concatenate gives in ood_metrics
    return x.astype(dtype, copy=False), y.astype(dtype, copy=False)


class _RowSweep(NamedTuple):
    """Counts at every distinct pooled score of every row, flattened over rows (row-major).

    Run ``r`` is one distinct value of row ``row(r)``; runs are in ascending value
    order within a row, and ``row_first[b]`` is the index of row ``b``'s first run.
    The counts mean the same as in ``ood_metrics``' sweep: images of the same row
    with a score below (``_lt``) or at most (``_le``) the run's value.
    """

    id_lt: np.ndarray
    id_le: np.ndarray
    ood_lt: np.ndarray
    ood_le: np.ndarray
    row_first: np.ndarray


def _sweep_rows(x: np.ndarray, y: np.ndarray) -> _RowSweep:
    """One row-wise sort of the pooled scores ``[x | y]`` (``B x (n + m)``), then 1-D counting.

    Within a run of tied values the sort order is arbitrary; only run boundaries and
    the number of ID images per run are used, which do not depend on it.
    """
    b, n = x.shape
    size = n + y.shape[1]
    pooled = np.concatenate([x, y], axis=1)
    order = np.argsort(pooled, axis=1)
    s = np.take_along_axis(pooled, order, axis=1)
    first = np.ones(s.shape, dtype=bool)  # a new distinct value starts here (every row starts one)
    np.not_equal(s[:, 1:], s[:, :-1], out=first[:, 1:])
    starts = np.flatnonzero(first)  # flat positions, ascending: runs never cross rows
    ends = np.append(starts[1:], b * size)
    id_cum = np.zeros(b * size + 1, dtype=np.int64)
    np.cumsum(order.ravel() < n, out=id_cum[1:])
    row_first = np.searchsorted(starts, np.arange(b) * size)
    runs_per_row = np.diff(np.append(row_first, starts.size))
    row_origin = np.repeat(np.arange(b, dtype=np.int64) * size, runs_per_row)  # flat start of each run's row
    id_origin = np.repeat(id_cum[np.arange(b) * size], runs_per_row)
    id_lt = id_cum[starts] - id_origin
    id_le = id_cum[ends] - id_origin
    ood_lt = starts - row_origin - id_lt
    ood_le = ends - row_origin - id_le
    return _RowSweep(id_lt, id_le, ood_lt, ood_le, row_first)


def auroc_rows(id_scores: np.ndarray, ood_scores: np.ndarray) -> np.ndarray:
    """AUROC of every row, ``(B,)``: equals ``ood_metrics(id_scores[b], ood_scores[b]).auroc``.

    ``id_scores`` is ``(B, n)``, ``ood_scores`` is ``(B, m)``; higher score = more ID.
    AUROC = P(ID score > OOD score) + 0.5 * P(equal), from one sort per batch: each
    ID image beats the OOD images strictly below it and ties with those equal to it,
    an exact integer count ``sum over distinct values of id_at * (2 ood_lt + ood_at)``
    divided once by ``2 n m``, exactly as in ``ood_metrics``.
    """
    x, y = _check_score_rows(id_scores, ood_scores)
    n, m = x.shape[1], y.shape[1]
    sw = _sweep_rows(x, y)
    wins = (sw.id_le - sw.id_lt) * (sw.ood_lt + sw.ood_le)  # = id_at * (2 ood_lt + ood_at)
    return np.add.reduceat(wins, sw.row_first) / (2.0 * n * m)


def _tpr_index(n: int, tpr_level: float) -> int:
    """Largest ``k`` in ``0..n-1`` with ``(n - k) / n >= tpr_level`` (``k`` = ID images below ``t*``)."""
    level = float(tpr_level)
    if not 0.0 < level <= 1.0:
        raise ValueError(f"tpr_level must be in (0, 1], got {level}")
    tpr = (n - np.arange(n)) / n  # the float64 rates ood_metrics compares
    return int(np.flatnonzero(tpr >= level)[-1])


def tnr_at_tpr95_rows(id_scores: np.ndarray, ood_scores: np.ndarray, tpr_level: float = 0.95) -> np.ndarray:
    """TNR at TPR 95% of every row, ``(B,)``: equals ``ood_metrics(...).tnr_at_tpr95`` per row.

    ``id_scores`` ``(B, n)``, ``ood_scores`` ``(B, m)``; ID positive, accepted as ID
    when ``score >= t``. ``t*`` is the largest distinct score with
    ``TPR(t*) = #(ID >= t*) / n >= tpr_level`` (exact sweep, all ties at ``t*``
    accepted); the result is ``#(OOD < t*) / m``. Since TPR only changes at ID
    scores, ``t*`` is the ``k``-th smallest ID score (0-based) for the largest ``k``
    with ``(n - k) / n >= tpr_level``: one partition per batch, no full sort.
    """
    x, y = _check_score_rows(id_scores, ood_scores)
    k = _tpr_index(x.shape[1], tpr_level)
    t_star = np.partition(x, k, axis=1)[:, k]
    return np.count_nonzero(y < t_star[:, None], axis=1) / y.shape[1]


def detection_accuracy_rows(id_scores: np.ndarray, ood_scores: np.ndarray) -> np.ndarray:
    """Detection accuracy of every row, ``(B,)``: equals ``ood_metrics(...).detection_accuracy``.

    ``id_scores`` ``(B, n)``, ``ood_scores`` ``(B, m)``; ID positive. The maximum over
    all thresholds ``t`` (every distinct pooled score, plus reject-all ``+inf``) of
    ``0.5 * TPR(t) + 0.5 * TNR(t)`` with ``TPR = #(ID >= t) / n`` and
    ``TNR = #(OOD < t) / m``; accept-all and reject-all both give 0.5, so the
    result is at least 0.5. Ties are exact: only the first position of each run of
    equal pooled scores is a threshold.
    """
    x, y = _check_score_rows(id_scores, ood_scores)
    n, m = x.shape[1], y.shape[1]
    sw = _sweep_rows(x, y)
    # Thresholds at every distinct score (accept-all included); reject-all (+inf) gives 0.5.
    value = 0.5 * ((n - sw.id_lt) / n) + 0.5 * (sw.ood_lt / m)
    return np.maximum(np.maximum.reduceat(value, sw.row_first), 0.5)


def ece_rows(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> np.ndarray:
    """ECE of every row, ``(B,)``: equals ``expected_calibration_error(confidence[b], correct[b], n_bins)``.

    ``confidence`` ``(B, n)`` in [0, 1] and ``correct`` ``(B, n)`` booleans (or 0/1).
    ``n_bins`` equal-width, RIGHT-closed bins ``(i / n_bins, (i + 1) / n_bins]`` with
    float64 edges, confidence 0 in the first bin; ECE = sum over non-empty bins of
    ``|accuracy - mean confidence| * count / n``.
    """
    conf, corr = np.asarray(confidence), np.asarray(correct)
    if conf.ndim != 2 or conf.shape[1] == 0 or corr.shape != conf.shape:
        raise ValueError(f"expected confidence (B, n) and correct (B, n), n >= 1, got {conf.shape} and {corr.shape}")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    conf, corr = checked_outcomes(conf, corr)

    b, n = conf.shape
    edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
    idx = np.maximum(np.searchsorted(edges, conf, side="left") - 1, 0)
    flat = (idx + n_bins * np.arange(b)[:, None]).ravel()  # bin of (row, image) in one bincount
    size = b * n_bins
    count = np.bincount(flat, minlength=size).reshape(b, n_bins)
    acc_sum = np.bincount(flat, weights=corr.ravel().astype(np.float64), minlength=size).reshape(b, n_bins)
    conf_sum = np.bincount(flat, weights=conf.ravel(), minlength=size).reshape(b, n_bins)
    full = count > 0
    safe = np.where(full, count, 1)
    gap = np.where(full, np.abs(acc_sum / safe - conf_sum / safe), 0.0)
    return np.sum(gap * count, axis=1) / n


def outcome_rows(metric: Callable[[np.ndarray, np.ndarray], float], confidence: np.ndarray,
                 correct: np.ndarray) -> np.ndarray:
    """``metric(confidence[b], correct[b])`` of every row, ``(B,)``: for the statistics whose
    rows cannot share one computation because each sorts its own row (adaptive ECE's
    equal-mass bins, AURC's ranking); a loop over rows (about 1 s for 1,000 resamples of
    10,000 images)."""
    conf, corr = np.asarray(confidence), np.asarray(correct)
    if conf.ndim != 2 or corr.shape != conf.shape:
        raise ValueError(f"expected confidence (B, n) and correct (B, n), got {conf.shape} and {corr.shape}")
    return np.array([metric(c, k) for c, k in zip(conf, corr)], dtype=np.float64)


def trapezoid_rows(grid: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mean height of every row's curve, ``(B,)``: equals ``trapezoid_mean(grid, values[b])``.

    ``grid`` ``(F,)`` (increasing, ``F >= 2``) and ``values`` ``(B, F)``: the area under
    the piecewise-linear curve by the trapezoid rule divided by the grid's span
    ``grid[-1] - grid[0]`` (over [0, 1] the area itself). For an occlusion or
    in-between AUC from per-image correctness ``c`` of shape ``(n, F)``::

        bootstrap_interval(lambda r: trapezoid_rows(grid, r.mean(axis=1)), [c])
    """
    x = np.asarray(grid, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"grid must be 1-D with at least 2 points, got shape {x.shape}")
    if y.ndim != 2 or y.shape[1] != x.size:
        raise ValueError(f"values must have shape (B, {x.size}) to match the grid, got {y.shape}")
    if not x[-1] > x[0]:
        raise ValueError(f"grid must span a positive range, got {x[0]} .. {x[-1]}")
    return np.sum((x[1:] - x[:-1]) * (y[:, 1:] + y[:, :-1]) / 2, axis=1) / (x[-1] - x[0])
