"""Input checks shared by the metric modules: one clear ``ValueError`` line per problem."""

from __future__ import annotations

import numpy as np


def check_real(arr: np.ndarray, name: str) -> np.ndarray:
    """``arr`` if it holds real numbers (integers or floats; not booleans, strings or objects)."""
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} must hold real numbers (integer or float), got dtype {arr.dtype}")
    return arr


def check_finite_real(arr: np.ndarray, name: str, what: str, verb: str = "contains") -> np.ndarray:
    """``arr`` if it holds finite real numbers; the error counts the NaN/infinite values
    (``"{name} {verb} 3 NaN/infinite values; {what} must be finite"``)."""
    bad = int(np.count_nonzero(~np.isfinite(check_real(arr, name))))
    if bad:
        raise ValueError(f"{name} {verb} {bad} NaN/infinite values; {what} must be finite")
    return arr
