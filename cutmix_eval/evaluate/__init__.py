"""Evaluators: functions of (model, data, config) -> Result (``evaluate_ood``: a list of
Results, one per score, in the order asked). They write no files."""

from cutmix_eval.evaluate.classification import evaluate_classification
from cutmix_eval.passes import Predictions, predict

__all__ = ["Predictions", "evaluate_classification", "predict"]
