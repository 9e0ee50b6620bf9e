"""Out-of-distribution detection against the companion sets: TNR at TPR 95%, AUROC and
detection accuracy per OOD set and score, the in-distribution test images positive."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cutmix_eval.analyses.base import Analysis, Option, Outcome, PassUse, Subject, register_analysis
from cutmix_eval.analyses.options import choice, choices, count, texts
from cutmix_eval.catalog import OOD_SCORES
from cutmix_eval.errors import UserError
from cutmix_eval.report.store import Record
from cutmix_eval.report.table import HIGHER
from cutmix_eval.report.view import Interval, Metric, TableSpec, View
from cutmix_eval.results import Result

#: the table of each metric: its title and the bootstrap statistic of (ID scores, OOD scores)
#: (:mod:`cutmix_eval.metrics.bootstrap`)
COLUMNS = {"tnr_at_tpr95": ("TNR at TPR95", "tnr_at_tpr95_rows"),
           "auroc": ("AUROC", "auroc_rows"),
           "detection_accuracy": ("detection accuracy", "detection_accuracy_rows")}


def _inputs(subject: Subject, options: Mapping[str, Any]):
    """The OOD sets, fitting set, validation data and csid sets, built once per subject."""
    from cutmix_eval.evaluate.ood import ood_inputs

    return ood_inputs(subject.dataset, subject.limit, subject.data_root, cache=subject.cache,
                      **{name: options[name] for name in ("sets", "scores", "num_noise", "fit_data", "tuning",
                                                          "tune_on", "csid")})


def _evaluate(subject: Subject, id_predictions, options: Mapping[str, Any]) -> Outcome:
    from cutmix_eval.evaluate.ood import evaluate_ood
    from cutmix_eval.evaluate.ood_tuning import Tuning

    inputs = _inputs(subject, options)
    protocol = "ood-validation" if inputs.validation is not None else (
        "defaults" if options["tuning"] == "auto" else options["tuning"])
    return evaluate_ood(subject.model, subject.dataset, inputs.sets, scores=list(options["scores"]),
                        score_options=options["params"], fit_dataset=inputs.fit, fit_limit=options["fit_limit"],
                        id_predictions=id_predictions, tuning=Tuning(protocol, options["holdout"]),
                        validation=inputs.validation, csid_sets=inputs.csid, settings=subject.settings)


def run(subject: Subject, scores: tuple[str, ...] = ("msp",), sets: tuple[str, ...] = ("all",),
        num_noise: int | None = None, tuning: str = "auto", tune_on: tuple[str, ...] | None = None,
        holdout: int = 1000, params: dict | None = None, csid: tuple[str, ...] | None = None,
        fit_data: str | None = None, fit_limit: int | None = None) -> Outcome:
    shared = subject.labelled_pass()[0] if list(scores) == ["msp"] else None
    return _evaluate(subject, shared, {"scores": scores, "sets": sets, "num_noise": num_noise, "tuning": tuning,
                                       "tune_on": tune_on, "holdout": holdout, "params": params or {},
                                       "csid": csid, "fit_data": fit_data, "fit_limit": fit_limit})


def from_pass(subject: Subject, shared, consumer, options) -> Outcome:
    """The pass's Predictions are the ID side of every post-hoc score (its pooled features serve
    the scores that need them); each OOD set still needs its own pass."""
    return _evaluate(subject, shared.predictions, options)


def inputs(subject: Subject, options: Mapping[str, Any]) -> dict[str, Any]:
    """Each OOD set, the fitting set, the validation sets and the csid sets by identity
    (:attr:`~cutmix_eval.data.base.ImageDataset.identity`)."""
    return _inputs(subject, options).identity()


def _scores() -> list[str]:
    from cutmix_eval.evaluate.ood_scores import list_scores

    return list_scores()


def _sets(value: Any, option: str) -> tuple[str, ...]:
    sets = texts(value)
    if not sets:
        raise UserError(f"option {option} needs at least one OOD set name or folder (or 'all')")
    return tuple(sets)


def _optional_sets(value: Any, option: str) -> tuple[str, ...] | None:
    return None if value is None else _sets(value, option)


def _tunings() -> tuple[str, ...]:
    from cutmix_eval.evaluate.ood_tuning import PROTOCOLS

    return ("auto", *PROTOCOLS)


def _params(value: Any, option: str) -> dict[str, dict[str, Any]]:
    """Score settings: ``"react.percentile=95,knn.k=100"`` (the command line), a TOML table
    ``{react = {percentile = 95}}``, or None; each checked by building the score. Values are
    Python literals (numbers, true/false as ``True``/``False`` or ``true``/``false``)."""
    import ast
    import inspect

    from cutmix_eval.evaluate.ood_scores import create_score, score_class

    given: dict[str, dict[str, Any]] = {}
    if isinstance(value, Mapping):
        given = {str(k): dict(v) for k, v in value.items()}
    elif value is not None:
        for item in texts(value):
            target, _, text = item.partition("=")
            score, _, param = target.strip().partition(".")
            if not (score and param and text.strip()):
                raise UserError(f"option {option}: {item!r} is not SCORE.PARAM=VALUE (e.g. react.percentile=95)")
            text = {"true": "True", "false": "False"}.get(text.strip().lower(), text.strip())
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise UserError(f"option {option}: value {text!r} of {target.strip()} is not a number or "
                                "true/false") from None
            given.setdefault(score, {})[param] = parsed
    for score, params in given.items():
        known = list(inspect.signature(score_class(score).__init__).parameters)[1:]
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise UserError(f"option {option}: score {score} has no setting {', '.join(unknown)}; its settings: "
                            f"{', '.join(known) or 'none'}")
        create_score(score, **params)
    return {score: dict(sorted(params.items())) for score, params in sorted(given.items())}


def settle(options: dict[str, Any]) -> dict[str, Any]:
    """Settings given for a score that is not evaluated are a mistake, not a no-op."""
    unused = sorted(set(options["params"]) - set(options["scores"]))
    if unused:
        raise UserError(f"settings are given for {', '.join(unused)}, which is not among the scores evaluated "
                        f"({', '.join(options['scores'])}); add it to --score or drop its --param")
    return options


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
    """The score, the set sizes and how each column's settings were chosen (a warning where
    they were tuned on test OOD images)."""
    from cutmix_eval.evaluate.ood_tuning import LEAK_WARNING

    result = records[0].results[0]
    sizes = ", ".join(f"{name} {about['num_images']:,}" for name, about in result.dataset["ood_sets"].items())
    csid = ", ".join(result.dataset.get("csid_sets", {}))
    lines = [f"Score: {result.config.get('score')} (higher = in-distribution); the ID test images"
             f"{f' and the covariate-shifted ID sets {csid} (full-spectrum)' if csid else ''} are the positive "
             f"class. Images scored: {result.dataset['num_images']:,} ID; OOD {sizes}."]
    tunings = [r.results[0].config.get("tuning", {}) for r in records]
    if any("warning" in t for t in tunings):
        lines.append(f"Warning: settings {LEAK_WARNING}.")
    elif any("validation_sets" in t for t in tunings):
        lines.append("Settings chosen on the OOD validation sets by AUROC (OpenOOD v1.5's protocol).")
    return lines


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


OPENOOD_COLUMNS = {"FPR@95": "fpr95_ood_pos", "AUROC": "auroc", "AUPR_IN": "aupr_in", "AUPR_OUT": "aupr_out"}


def openood_name(set_name: str) -> str:
    """OpenOOD's own name of one of its sets (``openood-cifar10-far-places365`` -> ``places365``,
    ``openood-imagenet-near-ssb-hard`` -> ``ssb_hard``); other names unchanged."""
    parts = set_name.split("-", 3)
    if set_name.startswith("openood-") and len(parts) == 4 and parts[2] in ("near", "far"):
        return parts[3].replace("-", "_")
    return set_name


def openood_frame(result: Result):
    """``result`` (an OOD Result) as OpenOOD v1.5 writes its results (``ood.csv`` of
    ``evaluation_api/evaluator.py``), a pandas DataFrame.

    Rows: each near-OOD set, ``nearood`` (their mean), each far-OOD set, ``farood`` (their
    mean), in OpenOOD's order and under OpenOOD's set names (``openood-cifar10-near-tin`` ->
    ``tin``). Sets outside an OpenOOD group (the paper's ODIN-era sets, folders) come after
    them under our names, then ``mean`` over every set. Columns, in percent as OpenOOD prints
    them: ``FPR@95`` (OpenOOD's convention: OOD positive, the share of ID images flagged when
    95% of OOD images are caught; our ``fpr95_ood_pos``), ``AUROC``, ``AUPR_IN``,
    ``AUPR_OUT``, and ``ACC``, the ID top-1 accuracy (with the csid sets in full-spectrum
    mode), the same on every row as in OpenOOD."""
    import pandas as pd

    from cutmix_eval.evaluate.ood import ood_group

    metrics = result.metrics
    accuracy = 100 * metrics["id/accuracy"]
    sets = list(result.dataset["ood_sets"])
    rows: list[tuple[str, str]] = []  # (row label, metric key prefix)
    for group, label in (("near", "nearood"), ("far", "farood")):
        members = [s for s in sets if ood_group(s) == group]
        rows += [(openood_name(s), s) for s in members] + ([(label, group)] if members else [])
    others = [s for s in sets if ood_group(s) is None]
    rows += [(s, s) for s in others] + ([("mean", "mean")] if others else [])
    table = {label: {column: 100 * metrics[f"{key}/{metric}"] for column, metric in OPENOOD_COLUMNS.items()} | {"ACC": accuracy}
             for label, key in rows}
    return pd.DataFrame.from_dict(table, orient="index", columns=[*OPENOOD_COLUMNS, "ACC"])


def detector_panels(metrics: Mapping[str, float]) -> list[tuple[str, str]]:
    """The panels comparing detectors: AUROC and OOD-positive FPR@95 of the near-OOD and
    far-OOD means for an OpenOOD v1.5 benchmark's sets (OpenOOD's headline numbers), else of
    the mean over sets."""
    groups = [g for g in ("near", "far") if f"{g}/auroc" in metrics] or ["mean"]
    words = {"near": "near-OOD", "far": "far-OOD", "mean": "mean over sets,"}
    return [(f"{g}/{m}", f"{words[g]} {label}") for m, label in (("auroc", "AUROC"), ("fpr95_ood_pos", "FPR@95"))
            for g in groups]


def detectors_figure(parts: Mapping[str, Mapping[str, Record]], colours, where: str):
    """Every score of the same records side by side, one bar per method (a report's columns)."""
    from cutmix_eval.report.figures import detectors_figure as draw

    first = next(iter(next(iter(parts.values())).values())).results[0]
    panels = detector_panels(first.metrics)
    values = {score: {label: {key: r.results[0].metrics.get(key) for key, _ in panels} for label, r in columns.items()}
              for score, columns in parts.items()}
    if all(v is None for per in values.values() for m in per.values() for v in m.values()):
        return None
    return "detectors", "AUROC and FPR@95 (OOD positive) of every OOD score, per method", draw(
        values, panels, colours, title=f"OOD detectors and methods compared — {where}")


ANALYSIS = register_analysis(Analysis(
    "ood", 2, "out-of-distribution detection against the companion sets",
    options=(Option("scores", ("msp",), choices(_scores, "OOD score"),
                    f"comma-separated scores from {', '.join(OOD_SCORES)}; post-hoc scores share one pass per set",
                    shown="msp, the paper's"),
             Option("sets", ("all",), _sets, "OOD set names or image folders (all: the paper's seven, or the "
                                             "embedded companions)"),
             Option("num_noise", None, count(1, optional=True), "images per noise set (default: as many as ID "
                                                                "test images, at most 10,000)"),
             Option("tuning", "auto", choice(_tunings), "how scores with a sweep choose their settings: "
                    "ood-validation (OpenOOD v1.5: best AUROC on the ID and OOD validation sets), defaults (no "
                    "search), test-ood-holdout (the ODIN paper's: per OOD set, on its first --holdout images and "
                    "the ID set's; tunes on test data, flagged), auto (ood-validation when there are validation "
                    "sets, else defaults)"),
             Option("tune_on", None, _optional_sets, "OOD validation sets for ood-validation (default: the "
                    "OpenOOD benchmark's own, e.g. openood-cifar10-val, when --in is an OpenOOD ID list)"),
             Option("holdout", 1000, count(1), "test-ood-holdout: images held out at the start of every set"),
             Option("params", {}, _params, "score settings, SCORE.PARAM=VALUE comma-separated "
                    "(react.percentile=95,knn.k=100); a setting given is not searched", shown="none"),
             Option("csid", None, _optional_sets, "full-spectrum mode: covariate-shifted ID sets scored as ID "
                    "(an OpenOOD group such as openood-cifar10-csid, or set names)"),
             Option("fit_data", None, _dataset_name, "the labelled set the fitted scores (mahalanobis, react, "
                                                     "knn, vim...) fit on (default: the ID dataset's train split)"),
             Option("fit_limit", None, count(1, optional=True), "fit on the first N images only")),
    run=run, shared=PassUse(finish=from_pass), inputs=inputs, settle=settle,
    view=View(tuple(TableSpec(f"ood-{m}", f"Out-of-distribution detection: {title}", table_of(m), (m,), notes=notes)
                    for m, (title, _) in COLUMNS.items()), figure=figure, split_by="score",
              across_splits=detectors_figure)))
