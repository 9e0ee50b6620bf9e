"""Out-of-distribution detection against the companion sets: TNR at TPR 95%, AUROC and
detection accuracy per OOD set and score, the in-distribution test images positive."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cutmix_eval.analyses.base import Analysis, Option, Outcome, PassUse, Subject, register_analysis
from cutmix_eval.analyses.options import choices, count, number, texts
from cutmix_eval.catalog import OOD_SCORES
from cutmix_eval.errors import UserError
from cutmix_eval.report.store import Record
from cutmix_eval.report.table import HIGHER
from cutmix_eval.report.view import Interval, Metric, TableSpec, View

#: the table of each metric: its title and the bootstrap statistic of (ID scores, OOD scores)
#: (:mod:`cutmix_eval.metrics.bootstrap`)
COLUMNS = {"tnr_at_tpr95": ("TNR at TPR95", "tnr_at_tpr95_rows"),
           "auroc": ("AUROC", "auroc_rows"),
           "detection_accuracy": ("detection accuracy", "detection_accuracy_rows")}


def _inputs(subject: Subject, sets, scores, num_noise, fit_data):
    """The OOD sets and the Mahalanobis fit set, built once per subject."""
    from cutmix_eval.evaluate.ood import ood_inputs

    return ood_inputs(subject.dataset, subject.limit, subject.data_root, sets=sets, scores=scores,
                      num_noise=num_noise, fit_data=fit_data, cache=subject.cache)


def _evaluate(subject: Subject, id_predictions, scores, sets, num_noise, energy_temperature, odin_holdout,
              fit_data, fit_limit) -> Outcome:
    from cutmix_eval.evaluate.ood import evaluate_ood

    ood_sets, fit = _inputs(subject, sets, scores, num_noise, fit_data)
    return evaluate_ood(subject.model, subject.dataset, ood_sets, scores=list(scores),
                        score_options={"energy": {"temperature": energy_temperature},
                                       "odin": {"holdout": odin_holdout}},
                        fit_dataset=fit, fit_limit=fit_limit, id_predictions=id_predictions,
                        settings=subject.settings)


def run(subject: Subject, scores: tuple[str, ...] = ("msp",), sets: tuple[str, ...] = ("all",),
        num_noise: int | None = None, energy_temperature: float = 1.0, odin_holdout: int = 1000,
        fit_data: str | None = None, fit_limit: int | None = None) -> Outcome:
    shared = subject.labelled_pass()[0] if list(scores) == ["msp"] else None
    return _evaluate(subject, shared, scores, sets, num_noise, energy_temperature, odin_holdout, fit_data, fit_limit)


def from_pass(subject: Subject, shared, consumer, options) -> Outcome:
    """The pass's Predictions are the ID side of every post-hoc score (its pooled features serve
    the scores that need them); each OOD set still needs its own pass."""
    return _evaluate(subject, shared.predictions, **options)


def inputs(subject: Subject, options: Mapping[str, Any]) -> dict[str, Any]:
    """Each OOD set and the Mahalanobis fit set by identity
    (:attr:`~cutmix_eval.data.base.ImageDataset.identity`)."""
    ood_sets, fit = _inputs(subject, options["sets"], options["scores"], options["num_noise"], options["fit_data"])
    return {"ood_sets": {name: ood.identity for name, ood in ood_sets.items()},
            **({"fit_set": fit.identity} if fit is not None else {})}


def _scores() -> list[str]:
    from cutmix_eval.evaluate.ood_scores import list_scores

    return list_scores()


def _sets(value: Any, option: str) -> tuple[str, ...]:
    sets = texts(value)
    if not sets:
        raise UserError(f"option {option} needs at least one OOD set name or folder (or 'all')")
    return tuple(sets)


def _dataset_name(value: Any, option: str) -> str | None:
    from cutmix_eval.data import dataset_spec

    return None if value is None else dataset_spec(str(value)).name


def table_of(metric: str) -> Callable[[Sequence[Record]], list[Metric]]:
    """Rows of one OOD metric: one per OOD set, then the mean over sets."""
    def build(records: Sequence[Record]) -> list[Metric]:
        import numpy as np

        from cutmix_eval.metrics import bootstrap

        rows_fn = getattr(bootstrap, COLUMNS[metric][1])
        sets = list(records[0].results[0].dataset["ood_sets"])

        def samples(r: Record, ood_set: str) -> list | None:
            s = r.results[0].per_sample
            return [s["id/score"], s[f"{ood_set}/score"]] if "id/score" in s else None

        def one(ood_set: str) -> Metric:
            interval = None
            if samples(records[0], ood_set) is not None:
                interval = (lambda r: (samples(r, ood_set), lambda a, b: 100 * rows_fn(a, b)))
            return Metric(ood_set, lambda r: 100 * r.results[0].metrics[f"{ood_set}/{metric}"], HIGHER, interval,
                          key=f"{ood_set}/{metric}")

        def mean_interval(members: list[str]) -> Callable[[Record], Interval]:
            def interval(r: Record) -> Interval:
                s = r.results[0].per_sample
                groups = [s["id/score"], *(s[f"{n}/score"] for n in members)]
                return groups, lambda i, *o: 100 * np.mean([rows_fn(i, x) for x in o], axis=0)
            return interval

        def mean(label: str, group: str, members: list[str]) -> Metric:
            interval = mean_interval(members) if samples(records[0], sets[0]) is not None else None
            return Metric(label, lambda r: 100 * r.results[0].metrics[f"{group}/{metric}"], HIGHER, interval,
                          key=f"{group}/{metric}")

        from cutmix_eval.evaluate.ood import ood_group

        groups = {g: [n for n in sets if ood_group(n) == g] for g in ("near", "far")}
        means = [mean(f"{g}-OOD mean", g, members) for g, members in groups.items() if members]
        return [one(n) for n in sets] + means + [mean("mean", "mean", sets)]

    return build


def notes(records: Sequence[Record]) -> list[str]:
    result = records[0].results[0]
    sizes = ", ".join(f"{name} {about['num_images']:,}" for name, about in result.dataset["ood_sets"].items())
    return [f"Score: {result.config.get('score')} (higher = in-distribution); the ID test images are the positive "
            f"class. Images scored: {result.dataset['num_images']:,} ID; OOD {sizes}."]


def figure(columns, colours, where):
    """ROC curves per OOD set (none for per-set ID scores, ODIN's)."""
    from cutmix_eval.metrics.ood import roc_points
    from cutmix_eval.report.figures import line_panels

    results = {label: r.results[0] for label, r in columns.items()}
    first = next(iter(results.values()))
    if "id/score" not in first.per_sample:
        return None
    score = first.config["score"].upper()
    sets = list(first.dataset["ood_sets"])
    panels = [{"title": name, "xlabel": "false positive rate (OOD accepted)",
               "ylabel": "true positive rate (ID accepted)"} for name in sets]
    series = {label: [roc_points(r.per_sample["id/score"], r.per_sample[f"{n}/score"]) for n in sets]
              for label, r in results.items()}
    return "roc", f"ROC curves of the {score} score per OOD set, ID positive", line_panels(
        panels, series, percent=False, markers=False, colours=colours, title=f"ROC curves, {score} score — {where}")


ANALYSIS = register_analysis(Analysis(
    "ood", 1, "out-of-distribution detection against the companion sets",
    options=(Option("scores", ("msp",), choices(_scores, "OOD score"),
                    f"comma-separated scores from {', '.join(OOD_SCORES)}; post-hoc scores share one pass per set",
                    shown="msp, the paper's"),
             Option("sets", ("all",), _sets, "OOD set names or image folders (all: the paper's seven, or the "
                                             "embedded companions)"),
             Option("num_noise", None, count(1, optional=True), "images per noise set (default: as many as ID "
                                                                "test images, at most 10,000)"),
             Option("energy_temperature", 1.0, number(positive=True), "energy score temperature"),
             Option("odin_holdout", 1000, count(1), "ODIN: images held out at the start of every set to tune T and "
                    "noise"),
             Option("fit_data", None, _dataset_name, "the labelled set the fitted scores (mahalanobis, react, "
                                                     "knn, vim...) fit on (default: the ID dataset's train split)"),
             Option("fit_limit", None, count(1, optional=True), "fit on the first N images only")),
    run=run, shared=PassUse(finish=from_pass), inputs=inputs,
    view=View(tuple(TableSpec(f"ood-{m}", f"Out-of-distribution detection: {title}", table_of(m), (m,), notes=notes)
                    for m, (title, _) in COLUMNS.items()), figure=figure, split_by="score")))
