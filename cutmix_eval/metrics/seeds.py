"""Intervals over training seeds: how far a mean over a few runs can be trusted.

A handful of seeds is too few for a bootstrap, so a mean over seeds gets the Student-t
interval of the mean: ``mean +- t_{0.975, n-1} * s / sqrt(n)`` with ``s`` the sample
standard deviation (ddof 1). Paired differences (a method minus the baseline, run by run
with the same seed, hence the same initial weights and data order) get the same interval of
their mean, which is the paired t-test's: the difference is significant at 5% exactly when
its interval excludes 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The Student-t ``confidence`` interval of the mean of ``values`` (at least two finite
    numbers; with identical values it is the value itself)."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or len(x) < 2 or not np.isfinite(x).all():
        raise ValueError(f"a t-interval needs at least two finite values, got {x.tolist()}")
    mean, half = float(x.mean()), 0.0
    spread = float(x.std(ddof=1))
    if spread > 0:
        half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1)) * spread / np.sqrt(len(x))
    return float(mean - half), float(mean + half)
