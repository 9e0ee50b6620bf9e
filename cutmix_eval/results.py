"""The Result every evaluator returns and the result store and reports read.

A Result holds scalar metrics, the per-sample outcomes needed for bootstrap
intervals, curves for figures, the convention behind each metric, and provenance
(model identity, dataset, evaluator configuration, package versions, time). It is
plain data: ``to_dict()`` gives a JSON-serializable dict. Evaluators return
Results and write no files.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, field
from datetime import datetime, timezone
from collections.abc import Mapping
from typing import Any

import numpy as np

from cutmix_eval.versions import package_versions

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


@dataclass(repr=False)
class Result:
    """One evaluation of one model on one dataset.

    ``metrics`` maps names to floats (fractions in [0, 1] for rates and errors;
    tables render them as percentages); ``conventions`` maps the same names to a
    sentence saying exactly how each was computed; ``per_sample`` maps names to
    arrays with one entry per evaluated image (in dataset order); ``curves`` maps
    names to ``{"x": [...], "y": [...]}``-style dicts; ``artifacts`` maps names to
    arrays that are not per-image outcomes but are kept for figures (localization's
    CAM examples: ``examples/image``, ``examples/map``...). Artifacts stay out of
    :meth:`to_dict` and :meth:`summary` (the result store keeps them, with the
    per-sample arrays, in its side file).
    """

    evaluator: str
    metrics: dict[str, float]
    conventions: dict[str, str]
    model: dict[str, Any]
    dataset: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    per_sample: dict[str, np.ndarray] = field(default_factory=dict)
    curves: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=lambda: dict(package_versions()))
    created: str = field(default_factory=_now)
    schema_version: int = SCHEMA_VERSION
    artifacts: dict[str, np.ndarray] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Every field but ``artifacts``, JSON-serializable (arrays as lists)."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "artifacts"}
        return jsonable(data)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def summary(self) -> dict[str, Any]:
        """The record without per-sample arrays (what ``--json`` prints)."""
        data = self.to_dict()
        data.pop("per_sample")
        return data

    def __repr__(self) -> str:
        """One short line: evaluator, dataset, image count, the first metrics, and the
        names and shapes of the arrays (never their values)."""
        where = "/".join(str(self.dataset[k]) for k in ("name", "split") if self.dataset.get(k) is not None)
        shown = [f"{k}={v:.4g}" if isinstance(v, numbers.Real) else f"{k}={v!r}"
                 for k, v in list(self.metrics.items())[:_REPR_ITEMS]]
        parts = [f"{self.evaluator} on {where or '?'}", f"{self.dataset.get('num_images', '?')} images",
                 "metrics: " + _listed(shown, len(self.metrics))]
        for name, arrays in (("per_sample", self.per_sample), ("artifacts", self.artifacts)):
            if arrays:
                shapes = [f"{k}{tuple(np.shape(v))}" for k, v in list(arrays.items())[:_REPR_ITEMS]]
                parts.append(f"{name}: " + _listed(shapes, len(arrays)))
        return f"Result({'; '.join(parts)})"


_REPR_ITEMS = 4  # metrics and arrays named in a Result's repr; the rest are counted


def _listed(items: list[str], total: int) -> str:
    more = total - len(items)
    return ", ".join(items) + (f" (+{more} more)" if more else "")


def result_from_dict(data: dict[str, Any], per_sample: dict[str, np.ndarray] | None = None,
                     artifacts: dict[str, np.ndarray] | None = None) -> Result:
    """The inverse of :meth:`Result.to_dict` (per-sample arrays and artifacts given
    separately, since records keep them in a side file); unknown keys are refused."""
    names = set(Result.__dataclass_fields__) - {"artifacts"}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown Result fields {sorted(unknown)}")
    fields = {k: v for k, v in data.items() if k != "per_sample"}
    return Result(**fields, per_sample=dict(per_sample or {}), artifacts=dict(artifacts or {}))


# --------------------------------------------------------------------------- CAM examples as artifacts

def example_arrays(examples: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """CAM examples (the localization evaluator's) as a Result's artifacts: images (N, 3, H, W) and maps (N, H, W) as
    float16, boxes and predicted boxes padded with NaN to (N, K, 4), titles, threshold."""
    def padded(boxes: list) -> np.ndarray:
        width = max([len(b) for b in boxes] + [1])
        out = np.full((len(boxes), width, 4), np.nan, dtype=np.float32)
        for i, b in enumerate(boxes):
            out[i, :len(b)] = np.asarray(b, dtype=np.float32).reshape(-1, 4)
        return out

    if not examples.get("image"):
        return {}
    return {"examples/image": np.stack(examples["image"]).astype(np.float16),
            "examples/map": np.stack(examples["map"]).astype(np.float16),
            "examples/boxes": padded(examples["boxes"]), "examples/pred_boxes": padded(examples["pred_boxes"]),
            "examples/title": np.asarray(examples["title"], dtype=str),
            "examples/threshold": np.asarray(examples["threshold"], dtype=np.float64)}


def examples_from_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The inverse of :func:`example_arrays` (the evaluator's example lists)."""
    def unpadded(boxes: np.ndarray) -> list[np.ndarray]:
        return [b[np.isfinite(b).all(axis=1)] for b in boxes]

    return {"image": list(arrays["examples/image"].astype(np.float32)),
            "map": list(arrays["examples/map"].astype(np.float32)),
            "boxes": unpadded(arrays["examples/boxes"]), "pred_boxes": unpadded(arrays["examples/pred_boxes"]),
            "title": [str(t) for t in arrays["examples/title"]], "threshold": float(arrays["examples/threshold"])}
