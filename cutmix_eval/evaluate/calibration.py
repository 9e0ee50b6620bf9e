"""Calibration: how far a classifier's confidence is from its accuracy.

Reads the shared prediction pass. Reports top-1/top-5 error, NLL, Brier score and
ECE (15 equal-width bins, right-closed; exact conventions in
:mod:`cutmix_eval.metrics.calibration`) with the reliability diagram's bins as a
curve, and beyond ECE: adaptive, classwise and maximum ECE, the debiased L2
calibration error and the selective-prediction areas AURC, E-AURC and AUGRC
(:func:`~cutmix_eval.metrics.calibration.probability_metrics`). With ``holdout=N`` the
first N images are held out to fit each recalibration map in ``recalibrate``
(:mod:`cutmix_eval.evaluate.recalibration`; default: temperature scaling, Guo et al.
2017), and every number, before and after, is computed on the remaining images. The
metrics after map ``M`` are the keys ``<metric>_<M>`` (``ece_isotonic``); temperature
scaling also keeps its older keys ``temperature``, ``ece_calibrated``, ``nll_calibrated``
and ``brier_calibrated`` (the latter three from the logits, the same numbers to ~1e-16).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cutmix_eval.errors import UserError
from cutmix_eval.metrics.calibration import CONVENTIONS as CALIBRATION_CONVENTIONS
from cutmix_eval.evaluate.recalibration import CONVENTIONS as RECALIBRATION_CONVENTIONS
from cutmix_eval.evaluate.recalibration import RECALIBRATIONS, fit_recalibration
from cutmix_eval.metrics.calibration import brier_per_image, calibration_metrics, nll_per_image, \
    probability_metrics, reliability_bins, softmax
from cutmix_eval.metrics.classification import topk_correct
from cutmix_eval.passes import Predictions
from cutmix_eval.results import Result

N_BINS = 15
BEYOND_ECE = ("adaptive_ece", "classwise_ece", "mce", "l2_ce_debiased", "aurc", "e_aurc", "augrc")
"""The metrics beyond ECE/NLL/Brier that :func:`probability_metrics` adds for the model as trained."""


def reliability_key(name: str) -> str:
    """The curve holding the reliability bins after recalibration map ``name`` (temperature
    scaling keeps its older name, ``reliability_calibrated``)."""
    return "reliability_calibrated" if name == "temperature" else f"reliability_{name}"


def _outcomes(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: confidence (max softmax) and whether the top-1 class is right."""
    probs = softmax(logits)
    return probs.max(axis=1), probs.argmax(axis=1) == labels


def _bins_curve(confidence: np.ndarray, correct: np.ndarray, n_bins: int, **fields: Any) -> dict[str, Any]:
    """The reliability bins as a curve, with ``fields`` (the temperature, the map's name...)."""
    bins = reliability_bins(confidence, correct, n_bins)
    return {"edges": bins.edges, "count": bins.count, "accuracy": bins.accuracy, "confidence": bins.confidence,
            **fields}


def check_holdout(holdout: int, recalibrate: tuple[str, ...], num_images: int) -> None:
    """One UserError line for a holdout that leaves fewer than 2 images, an unknown map, or maps
    other than the default temperature asked for without a holdout to fit them on."""
    if holdout and not 0 < holdout < num_images - 1:
        raise UserError(f"cannot hold out {holdout} of {num_images} images to fit the temperature; "
                        "use fewer (e.g. 10-20% of the set)")
    unknown = [name for name in recalibrate if name not in RECALIBRATIONS]
    if unknown:
        raise UserError(f"unknown recalibration {', '.join(unknown)}; choose from {', '.join(RECALIBRATIONS)}")
    if not holdout and tuple(recalibrate) != ("temperature",):
        raise UserError(f"recalibrating ({', '.join(recalibrate)}) needs held-out images to fit on: "
                        "give a holdout (e.g. 10-20% of the set)")


def calibration_result(predictions: Predictions, *, holdout: int = 0, n_bins: int = N_BINS,
                       recalibrate: tuple[str, ...] = ("temperature",), model_info: dict[str, Any],
                       dataset_info: dict[str, Any], config: dict[str, Any] | None = None) -> Result:
    """Calibration metrics from a (possibly shared) prediction pass; see the module docstring."""
    predictions.require_finite("calibration is undefined for them")
    logits, labels = predictions.logits.astype(np.float64), predictions.labels
    check_holdout(holdout, recalibrate, len(labels))
    z, y = logits[holdout:], labels[holdout:]  # every number is computed on these
    confidence, correct = _outcomes(z, y)
    beyond = probability_metrics(softmax(z), y, n_bins)
    metrics: dict[str, float] = {"top1_error": float(1 - topk_correct(z, y, 1).mean()),
                                 "top5_error": float(1 - topk_correct(z, y, 5).mean()),
                                 **calibration_metrics(z, y, n_bins), "num_images": int(len(y)),
                                 **{key: beyond[key] for key in BEYOND_ECE}}
    curves = {"reliability": _bins_curve(confidence, correct, n_bins, temperature=1.0)}
    conventions = dict(CALIBRATION_CONVENTIONS) | {
        "top1_error": "fraction of images whose label is not the highest logit",
        "top5_error": "fraction of images whose label is not among the 5 highest logits"}
    if holdout:
        for name in recalibrate:
            fitted = fit_recalibration(name, logits[:holdout], labels[:holdout])
            probs = fitted(z)
            metrics |= {f"{key}_{name}": value for key, value in probability_metrics(probs, y, n_bins).items()}
            curves[reliability_key(name)] = _bins_curve(probs.max(axis=1), probs.argmax(axis=1) == y, n_bins,
                                                        map=name, **fitted.params)
        if "temperature" in recalibrate:
            temperature = curves[reliability_key("temperature")]["temperature"]
            scaled = calibration_metrics(z / temperature, y, n_bins)
            metrics |= {"temperature": temperature, "ece_calibrated": scaled["ece"], "nll_calibrated": scaled["nll"],
                        "brier_calibrated": scaled["brier"]}
            conventions["temperature"] += (f"; fitted on the first {holdout} images, every metric computed on the "
                                           "remaining ones")
        metrics["num_holdout"] = holdout
        conventions["recalibration"] = (
            f"maps fitted on the first {holdout} images, metrics <metric>_<map> computed on the remaining ones; "
            + "; ".join(RECALIBRATION_CONVENTIONS[name] for name in recalibrate))
    per_sample = {"index": predictions.indices[holdout:], "confidence": confidence, "correct": correct,
                  "nll": nll_per_image(z, y), "brier": brier_per_image(z, y)}
    return Result(evaluator="calibration", metrics=metrics, conventions=conventions, model=model_info,
                  dataset=dataset_info,
                  config={"holdout": holdout, "n_bins": n_bins, "recalibrate": list(recalibrate) if holdout else []}
                  | (config or {}),
                  curves=curves, per_sample=per_sample)
