"""In-between class samples: what a model's prediction of a mix of images A and B is.

Per pair and grid point the evaluator records an outcome code: :data:`PREDICTS_A` (the
top-1 class is A's), :data:`PREDICTS_B` (B's) or :data:`PREDICTS_NEITHER` (any other class,
or non-finite logits). Lower ``rate_neither`` is better (the paper's Fig. 5b).
"""

from __future__ import annotations

import numpy as np

#: outcome codes of ``{kind}/outcome`` (pairs x grid points, int8)
PREDICTS_A, PREDICTS_B, PREDICTS_NEITHER = 0, 1, 2


def outcome_rates(codes: np.ndarray) -> dict[str, np.ndarray]:
    """``codes`` (pairs x grid points) -> per grid point the share of pairs predicted as A,
    as B and as neither: ``{"rate_a", "rate_b", "rate_neither"}``, each of length grid points."""
    codes = np.asarray(codes)
    return {name: (codes == code).mean(axis=0) for name, code in
            (("rate_a", PREDICTS_A), ("rate_b", PREDICTS_B), ("rate_neither", PREDICTS_NEITHER))}
