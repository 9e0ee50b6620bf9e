"""Natural distribution shift: accuracy, calibration and a confidence score on each shift set
against the ID test set, and effective robustness across the report's models."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cutmix_eval.analyses.base import Analysis, Option, Outcome, Subject, cached, register_analysis
from cutmix_eval.analyses.options import choice, count, texts
from cutmix_eval.errors import UserError
from cutmix_eval.report.store import Record
from cutmix_eval.report.table import HIGHER, LOWER, Cell, Row
from cutmix_eval.report.view import Metric, TableSpec, View

#: the shift sets evaluated when none are named, by ID dataset
DEFAULT_SETS = {"synthetic": ("synthetic-shift",), "cifar10": ("cifar10.1-v6", "cifar10.2"),
                "imagenet": ("imagenetv2-matched-frequency", "imagenet-a", "imagenet-r", "imagenet-sketch")}
LOGIT_SCORES = ("msp", "maxlogit", "energy", "gen")


def _is_folder(name: str) -> bool:
    return os.sep in name or Path(name).expanduser().is_dir()


def _sets(value: Any, option: str) -> tuple[str, ...] | None:
    """Registered shift sets by their canonical names, and folders (read as ``classmap-folder``)."""
    if value is None:
        return None
    from cutmix_eval.data import dataset_spec

    names = [name if _is_folder(name) else dataset_spec(name).name for name in texts(value)]
    if not names:
        raise UserError(f"option {option} needs at least one shift set (e.g. cifar10.1-v6, imagenetv2)")
    if len(set(names)) < len(names):
        raise UserError(f"option {option} names a shift set twice ({', '.join(texts(value))}); name each once")
    return tuple(names)


def _open(subject: Subject, name: str):
    """A registered shift set, or a folder with a class map (``classmap-folder``) read in the
    ID dataset's label space (the model's) at the ID images' size, named by its base name."""
    from cutmix_eval.data import create_dataset

    if not _is_folder(name):
        return name, create_dataset(name, "test", root=subject.data_root)
    folder = Path(name).expanduser().resolve()
    if not folder.is_dir():
        raise UserError(f"shift folder {name} does not exist; pass a folder with a class map or a set name (see "
                        "`cutmix-eval datasets`)")
    size = int(subject.dataset[0]["image"].shape[-1])
    return folder.name, create_dataset("classmap-folder", "test", root=folder, num_classes=subject.dataset.num_classes,
                                       image_size=size)


def shift_sets(subject: Subject, sets: tuple[str, ...] | None) -> dict[str, Any]:
    """The shift sets by name (default: :data:`DEFAULT_SETS` of the ID dataset), built once per subject."""
    names = sets or DEFAULT_SETS.get(subject.dataset.name)
    if not names:
        raise UserError(f"no default shift sets for {subject.dataset.name}; name them (registered sets such as "
                        "cifar10.1-v6, or a folder of class folders with a class_map.json)")

    def build() -> dict[str, Any]:
        opened = dict(_open(subject, name) for name in names)
        if len(opened) < len(names):
            raise UserError(f"two shift sets share the name {', '.join(opened)}; give folders different base names")
        return opened

    return cached(subject.cache, ("shift sets", names), build)


def _evaluate(subject: Subject, id_predictions, sets, score, n_bins) -> Outcome:
    from cutmix_eval.evaluate.shift import evaluate_shift

    return [evaluate_shift(subject.model, subject.dataset, shift_sets(subject, sets), score=score, n_bins=n_bins,
                           id_predictions=id_predictions, settings=subject.settings)]


def run(subject: Subject, sets: tuple[str, ...] | None = None, score: str = "msp", n_bins: int = 15) -> Outcome:
    """The ID side is the subject's labelled pass, shared with classification when both run on
    the subject. Not part of ``evaluate --all``'s shared pass: shift sets are extra data that
    most ID datasets' users do not have, so it runs when asked (``analyze shift``, a study)."""
    return _evaluate(subject, subject.labelled_pass()[0], sets, score, n_bins)


def inputs(subject: Subject, options: Mapping[str, Any]) -> dict[str, Any]:
    return {"shift_sets": {name: d.identity for name, d in shift_sets(subject, options["sets"]).items()}}


def _keys(records: Sequence[Record]) -> list[str]:
    return ["id", *records[0].results[0].dataset["shift_sets"]]


def _label(key: str) -> str:
    return "ID test" if key == "id" else key


def accuracy_table(records: Sequence[Record]) -> list[Metric]:
    """Top-1 accuracy on the ID test set and each shift set, then each set's gap to ID."""
    from cutmix_eval.metrics import bootstrap as bs

    def accuracy(key: str) -> Metric:
        return Metric(_label(key), lambda r: 100 * r.results[0].metrics[f"{key}/accuracy"], HIGHER,
                      lambda r: ([r.results[0].per_sample[f"{key}/correct"]], lambda x: 100 * bs.mean_rows(x)),
                      key=f"{key}/accuracy")

    def gap(key: str) -> Metric:
        return Metric(f"{key} - ID", lambda r: 100 * r.results[0].metrics[f"{key}/accuracy_gap"], HIGHER,
                      lambda r: ([r.results[0].per_sample["id/correct"], r.results[0].per_sample[f"{key}/correct"]],
                                 lambda a, b: 100 * (bs.mean_rows(b) - bs.mean_rows(a))),
                      key=f"{key}/accuracy_gap")

    keys = _keys(records)
    return [accuracy(k) for k in keys] + [gap(k) for k in keys[1:]]


def calibration_table(records: Sequence[Record]) -> list[Metric]:
    """ECE on the ID test set and each shift set (calibration under shift)."""
    from cutmix_eval.metrics import bootstrap as bs

    n_bins = records[0].results[0].config.get("n_bins", 15)

    def ece(key: str) -> Metric:
        def interval(r: Record):
            import numpy as np

            s = r.results[0].per_sample
            stacked = np.stack([s[f"{key}/confidence"], s[f"{key}/correct"].astype(np.float64)], axis=-1)
            return [stacked], lambda x: 100 * bs.ece_rows(x[..., 0], x[..., 1] > 0.5, n_bins)
        return Metric(_label(key), lambda r: 100 * r.results[0].metrics[f"{key}/ece"], LOWER, interval,
                      key=f"{key}/ece", digits=2)

    return [ece(k) for k in _keys(records)]


def score_table(records: Sequence[Record]) -> list[Metric]:
    """AUROC of the confidence score, ID test images positive, against each shift set."""
    from cutmix_eval.metrics import bootstrap as bs

    def auroc(key: str) -> Metric:
        return Metric(key, lambda r: 100 * r.results[0].metrics[f"{key}/score_auroc_vs_id"], None,
                      lambda r: ([r.results[0].per_sample["id/score"], r.results[0].per_sample[f"{key}/score"]],
                                 lambda a, b: 100 * bs.auroc_rows(a, b)), key=f"{key}/score_auroc_vs_id")

    return [auroc(k) for k in _keys(records)[1:]]


def effective_robustness(points: Mapping[str, tuple[float, float]]) -> dict[str, float] | None:
    """Effective robustness (Taori et al. 2020) of each model: its shift accuracy minus the
    accuracy a line fitted over every model's (ID, shift) accuracies predicts, the line fitted
    by least squares in logit space (``logit(shift) = a logit(ID) + b``) and mapped back;
    fractions in, fractions out. None with fewer than three models (a line through two points
    leaves nothing to measure)."""
    import numpy as np

    if len(points) < 3:
        return None
    eps = 1e-6
    x, y = (np.clip(np.array(v, dtype=np.float64), eps, 1 - eps) for v in zip(*points.values()))
    slope, intercept = np.polyfit(np.log(x / (1 - x)), np.log(y / (1 - y)), 1)
    predicted = 1 / (1 + np.exp(-(slope * np.log(x / (1 - x)) + intercept)))
    return {label: float(shift - p) for label, shift, p in zip(points, y, predicted)}


def robustness_rows(columns: dict[str, list[Record]]) -> list[Row]:
    """One row per shift set: each column's effective robustness against the fit over the
    columns (three or more models)."""
    first = next(iter(columns.values()))
    rows = []
    for key in _keys(first)[1:]:
        points = {label: (rs[0].results[0].metrics["id/accuracy"], rs[0].results[0].metrics[f"{key}/accuracy"])
                  for label, rs in columns.items()}
        found = effective_robustness(points)
        if found is not None:
            rows.append(Row(f"{key}: effective robustness", {label: Cell(100 * v) for label, v in found.items()},
                            HIGHER))
    return rows


def notes(records: Sequence[Record]) -> list[str]:
    result = records[0].results[0]
    sizes = ", ".join(f"{name} {about['num_images']:,}" for name, about in result.dataset["shift_sets"].items())
    return [f"Images: ID test {result.dataset['num_images']:,}; {sizes}. ImageNet-A/-R are scored on the model's logits "
            "restricted to their 200 classes. Effective robustness: shift accuracy above the line fitted in logit "
            "space over the columns' (ID, shift) accuracies (Taori et al. 2020), shown with three or more models."]


def figure(columns, colours, where):
    """ID accuracy against each shift set's accuracy, one point per model, y = x dashed."""
    from cutmix_eval.report.figures import shift_scatter

    results = {label: r.results[0] for label, r in columns.items()}
    first = next(iter(results.values()))
    points = {key: {label: (r.metrics["id/accuracy"], r.metrics[f"{key}/accuracy"]) for label, r in results.items()}
              for key in first.dataset["shift_sets"]}
    return "shift", "ID accuracy against accuracy under each natural shift", shift_scatter(
        points, colours, title=f"Accuracy under natural distribution shift — {where}")


def _scores() -> tuple[str, ...]:
    return LOGIT_SCORES


ANALYSIS = register_analysis(Analysis(
    "shift", 1, "accuracy, calibration and confidence under natural distribution shift",
    options=(Option("sets", None, _sets, "shift sets (default: cifar10.1-v6, cifar10.2 for cifar10; imagenetv2-"
                    "matched-frequency, imagenet-a, imagenet-r, imagenet-sketch for imagenet; synthetic-shift for "
                    "synthetic)", shown="by ID dataset"),
             Option("score", "msp", choice(_scores), "confidence score compared between ID and shift images"),
             Option("n_bins", 15, count(1), "equal-width confidence bins for ECE")),
    run=run, inputs=inputs,
    view=View((TableSpec("shift-accuracy", "Natural distribution shift: top-1 accuracy", accuracy_table,
                         ("accuracy",), notes=notes, extra_rows=robustness_rows),
               TableSpec("shift-ece", "Calibration under natural shift: ECE", calibration_table, ("ece",)),
               TableSpec("shift-score", "Confidence score under natural shift: AUROC of ID against each set",
                         score_table, ("score_auroc_vs_id",))), figure=figure)))
