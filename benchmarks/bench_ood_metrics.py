"""OOD metrics on a million scores: our one-sort sweep against scikit-learn.

Seconds to compute the five OOD detection metrics (TNR at TPR 95%, AUROC, detection
accuracy, AUPR-In, AUPR-Out) for 500,000 ID and 500,000 OOD scores, the point estimates
(no bootstrap): ours is one call of ``cutmix_eval.metrics.ood.ood_metrics`` (one sort of
the pooled scores; it also gives the OOD-positive FPR at 95%), scikit-learn is what its
users write: ``roc_auc_score`` for AUROC, one ``roc_curve(drop_intermediate=False)`` for
TNR at TPR 95% (first operating point with TPR >= 0.95) and the detection accuracy (max of
(TPR + 1 - FPR) / 2), and ``average_precision_score`` twice (ID positive; OOD positive on
the negated score) for the AUPRs. A leaner scikit-learn variant that reuses the one ROC
curve for AUROC (``sklearn.metrics.auc``) is timed for information. Two score sets:
continuous float64 scores (no ties) and the same rounded to 3 decimals (heavy ties, like
the softmax confidences of a trained model). Before timing, every metric of ours is
checked against scikit-learn's (max abs difference printed, at most 1e-9). Rounds
alternate between the variants; medians are reported. Target: ours at least 2 times
scikit-learn's speed (the way its users compute the five, above) on both sets.

    .venv/bin/python benchmarks/bench_ood_metrics.py [--quick]
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import auc, average_precision_score, roc_auc_score, roc_curve

from _common import alternating_seconds, comparison, markdown_table, parse_rounds, print_summary, verdict
from cutmix_eval.metrics.ood import ood_metrics

TARGET = 2.0
TOLERANCE = 1e-9
METRICS = ("tnr_at_tpr95", "auroc", "detection_accuracy", "aupr_in", "aupr_out")


def score_sets(n_in: int, n_out: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Confidence-like scores in [0, 1]: ID skewed high, OOD lower and wider, overlapping."""
    rng = np.random.default_rng(seed)
    ids, oods = rng.beta(8.0, 2.0, n_in), rng.beta(3.0, 2.0, n_out)
    return {"continuous float64 (no ties)": (ids, oods),
            "rounded to 3 decimals (heavy ties)": (np.round(ids, 3), np.round(oods, 3))}


def labelled(ids: np.ndarray, oods: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's inputs: labels (ID = 1) and pooled scores; built once, outside the timing."""
    return np.r_[np.ones(ids.size), np.zeros(oods.size)], np.r_[ids, oods]


def sklearn_metrics(y: np.ndarray, s: np.ndarray, level: float = 0.95, lean: bool = False) -> dict[str, float]:
    """The five metrics the way a scikit-learn user computes them (ID positive, higher = more ID)."""
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)  # thresholds descending: TPR non-decreasing
    first = int(np.argmax(tpr >= level))  # largest threshold with TPR >= level
    return {"tnr_at_tpr95": 1.0 - fpr[first],
            "auroc": auc(fpr, tpr) if lean else roc_auc_score(y, s),
            "detection_accuracy": float(np.max(0.5 * tpr + 0.5 * (1.0 - fpr))),
            "aupr_in": average_precision_score(y, s),
            "aupr_out": average_precision_score(1 - y, -s)}


def bench(name: str, ids: np.ndarray, oods: np.ndarray, rounds: int) -> dict:
    y, s = labelled(ids, oods)
    ours = ood_metrics(ids, oods).as_dict()
    diffs = [abs(ours[m] - v) for reference in (sklearn_metrics(y, s), sklearn_metrics(y, s, lean=True))
             for m, v in reference.items()]
    max_diff = max(diffs)
    assert max_diff <= TOLERANCE, f"{name}: ours and scikit-learn differ by {max_diff:g}"
    seconds = alternating_seconds({"ours": lambda: ood_metrics(ids, oods),
                                   "sklearn": lambda: sklearn_metrics(y, s),
                                   "sklearn (lean)": lambda: sklearn_metrics(y, s, lean=True)}, rounds)
    return {"scores": f"{ids.size:,} ID + {oods.size:,} OOD, {name}", "distinct": np.unique(s).size,
            "ours (s)": seconds["ours"], "sklearn (s)": seconds["sklearn"],
            "sklearn lean (s)": seconds["sklearn (lean)"], "ratio": seconds["sklearn"] / seconds["ours"],
            "ratio vs lean": seconds["sklearn (lean)"] / seconds["ours"], "max abs diff": max_diff}


def main() -> None:
    rounds, _ = parse_rounds(__doc__, quick=(3, 0), full=(7, 0))
    rows = [bench(name, ids, oods, rounds) for name, (ids, oods) in score_sets(500_000, 500_000).items()]
    print(f"# OOD metrics on 1,000,000 scores: ours (one sort) vs scikit-learn (seconds for the five metrics, "
          f"medians of {rounds} alternating rounds)\n")
    print(markdown_table(rows, {"scores": "", "distinct": ",", "ours (s)": ".3f", "sklearn (s)": ".3f",
                                "ratio": ".2f", "sklearn lean (s)": ".3f", "ratio vs lean": ".2f",
                                "max abs diff": ".1e"}))
    print("\nratio = scikit-learn's time / ours. sklearn: roc_auc_score + roc_curve + 2 x average_precision_score; "
          "lean: the ROC curve's area via sklearn.metrics.auc instead of roc_auc_score. "
          f"All five metrics agree with scikit-learn's within {TOLERANCE:g} (max abs diff column).")
    worst = min(r["ratio"] for r in rows)
    print(f"Target: ours >= {TARGET:g} x scikit-learn's speed for the five metrics on both score sets: "
          f"{verdict(worst, TARGET)} (worst ratio {worst:.2f}).")
    print_summary([comparison(f"OOD metrics, 1M scores, {r['scores'].split(', ', 1)[1]}: ours vs scikit-learn",
                              r["ours (s)"], r["sklearn (s)"], "s", r["ratio"], f">= {TARGET:g}",
                              r["ratio"] >= TARGET, "scikit-learn") for r in rows])


if __name__ == "__main__":
    main()
