"""The Result every evaluator returns and the result store and reports read.

A Result holds scalar metrics, the per-sample outcomes needed for bootstrap
intervals, curves for figures, the convention behind each metric, and provenance
(model identity, dataset, evaluator configuration, package versions, time). It is
plain data: ``to_dict()`` gives a JSON-serializable dict. Evaluators return
Results and write no files.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

SCHEMA_VERSION = 1


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Result:
    """One evaluation of one model on one dataset.

    ``metrics`` maps names to floats (fractions in [0, 1] for rates and errors;
    tables render them as percentages); ``conventions`` maps the same names to a
    sentence saying exactly how each was computed; ``per_sample`` maps names to
    arrays with one entry per evaluated image (in dataset order); ``curves`` maps
    names to ``{"x": [...], "y": [...]}``-style dicts.
    """

    evaluator: str
    metrics: dict[str, float]
    conventions: dict[str, str]
    model: dict[str, Any]
    dataset: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    per_sample: dict[str, np.ndarray] = field(default_factory=dict)
    curves: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=_now)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def summary(self) -> dict[str, Any]:
        """The record without per-sample arrays (what ``--json`` prints)."""
        data = self.to_dict()
        data.pop("per_sample")
        return data


def result_from_dict(data: dict[str, Any], per_sample: dict[str, np.ndarray] | None = None) -> Result:
    """The inverse of :meth:`Result.to_dict` (per-sample arrays given separately, since
    records keep them in a side file); unknown keys are refused."""
    names = set(Result.__dataclass_fields__)
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown Result fields {sorted(unknown)}")
    fields = {k: v for k, v in data.items() if k != "per_sample"}
    return Result(**fields, per_sample=dict(per_sample or {}))
