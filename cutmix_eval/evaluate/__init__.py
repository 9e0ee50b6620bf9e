"""Evaluators: functions of (model, data, config) -> Result. They write no files."""

from cutmix_eval.evaluate.classification import evaluate_classification
from cutmix_eval.evaluate.passes import Predictions, predict

__all__ = ["Predictions", "evaluate_classification", "predict"]
