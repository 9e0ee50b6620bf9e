"""Calibration: how far a classifier's confidence is from its accuracy.

Reads the shared prediction pass. Reports top-1/top-5 error, NLL, Brier score and
ECE (15 equal-width bins, right-closed; exact conventions in
:mod:`cutmix_eval.metrics.calibration`) with the reliability diagram's bins as a
curve. With ``holdout=N`` the first N images are held out to fit the temperature
that minimizes their NLL (Guo et al. 2017), and every number, before and after
scaling, is computed on the remaining images.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cutmix_eval.errors import UserError
from cutmix_eval.metrics.calibration import CONVENTIONS as CALIBRATION_CONVENTIONS
from cutmix_eval.metrics.calibration import brier_per_image, calibration_metrics, fit_temperature, nll_per_image, \
    reliability_bins, softmax
from cutmix_eval.metrics.classification import topk_correct
from cutmix_eval.passes import Predictions
from cutmix_eval.results import Result

N_BINS = 15


def _outcomes(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Per image: confidence (max softmax at ``temperature``) and whether the top-1 class is right."""
    probs = softmax(logits, temperature)
    return probs.max(axis=1), probs.argmax(axis=1) == labels


def _bins_curve(confidence: np.ndarray, correct: np.ndarray, n_bins: int, temperature: float) -> dict[str, Any]:
    bins = reliability_bins(confidence, correct, n_bins)
    return {"edges": bins.edges, "count": bins.count, "accuracy": bins.accuracy, "confidence": bins.confidence,
            "temperature": temperature}


def calibration_result(predictions: Predictions, *, holdout: int = 0, n_bins: int = N_BINS,
                       model_info: dict[str, Any], dataset_info: dict[str, Any],
                       config: dict[str, Any] | None = None) -> Result:
    """Calibration metrics from a (possibly shared) prediction pass; see the module docstring."""
    predictions.require_finite("calibration is undefined for them")
    logits, labels = predictions.logits.astype(np.float64), predictions.labels
    if holdout and not 0 < holdout < len(labels) - 1:
        raise UserError(f"cannot hold out {holdout} of {len(labels)} images to fit the temperature; "
                        "use fewer (e.g. 10-20% of the set)")
    z, y = logits[holdout:], labels[holdout:]  # every number is computed on these
    confidence, correct = _outcomes(z, y)
    metrics: dict[str, float] = {"top1_error": float(1 - topk_correct(z, y, 1).mean()),
                                 "top5_error": float(1 - topk_correct(z, y, 5).mean()),
                                 **calibration_metrics(z, y, n_bins), "num_images": int(len(y))}
    curves = {"reliability": _bins_curve(confidence, correct, n_bins, 1.0)}
    conventions = dict(CALIBRATION_CONVENTIONS) | {
        "top1_error": "fraction of images whose label is not the highest logit",
        "top5_error": "fraction of images whose label is not among the 5 highest logits"}
    if holdout:
        temperature = fit_temperature(logits[:holdout], labels[:holdout])
        scaled = calibration_metrics(z / temperature, y, n_bins)
        metrics |= {"temperature": temperature, "ece_calibrated": scaled["ece"], "nll_calibrated": scaled["nll"],
                    "brier_calibrated": scaled["brier"], "num_holdout": holdout}
        curves["reliability_calibrated"] = _bins_curve(*_outcomes(z, y, temperature), n_bins, temperature)
        conventions["temperature"] += (f"; fitted on the first {holdout} images, every metric computed on the "
                                       "remaining ones")
    per_sample = {"index": predictions.indices[holdout:], "confidence": confidence, "correct": correct,
                  "nll": nll_per_image(z, y), "brier": brier_per_image(z, y)}
    return Result(evaluator="calibration", metrics=metrics, conventions=conventions, model=model_info,
                  dataset=dataset_info, config={"holdout": holdout, "n_bins": n_bins} | (config or {}),
                  curves=curves, per_sample=per_sample)
