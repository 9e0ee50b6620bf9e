"""Comparison tables from stored records, in the paper's layout.

Records are grouped by analysis and dataset (and, where records of one analysis
differ in options, by those options); within a group the records of one method
label, architecture, training data and training recipe are one column, their
seeds (:func:`columns_of`; a label given to two architectures is refused, a
record without a label is a column of its own named by its file). A column of
one record gives a value with a 95% percentile-bootstrap interval over test
images (:mod:`cutmix_eval.metrics.bootstrap`, 1000 resamples, seed 0); a column
of several gives their mean and sample standard deviation, and the table's note
says what they are. Values are shown in percent for rates and
errors. Where the setting matches one of the paper's, its numbers follow as
reference rows (:mod:`cutmix_eval.report.paper`).
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cutmix_eval.errors import UserError
from cutmix_eval.metrics import bootstrap as bs
from cutmix_eval.metrics.corruption import BENCHMARK, CorruptionReference, mce, severity_scope
from cutmix_eval.report.paper import paper_references
from cutmix_eval.report.store import Record, canonical_json
from cutmix_eval.report.table import HIGHER, LOWER, Cell, Row, Table
from cutmix_eval.results import Result

METHOD_ORDER = ("baseline", "mixup", "cutout", "cutmix")
RESAMPLES = 1000
INBETWEEN_NEITHER = 2  # the in-between evaluator's per-sample outcome code for "neither class"

Interval = tuple[list[np.ndarray], Callable[..., np.ndarray]]


@dataclass(frozen=True)
class Metric:
    """One table row's recipe: ``value(record)`` in the shown unit, optionally
    ``interval(record) -> (groups, statistic)`` for :func:`bootstrap_interval` (statistic in
    the shown unit), and ``key``: the Result metric key the paper's numbers are matched on."""

    label: str
    value: Callable[[Record], float]
    better: str | None
    interval: Callable[[Record], Interval] | None = None
    key: str = ""
    unit: str = "%"
    digits: int = 1


def ordered_labels(labels: Sequence[str]) -> list[str]:
    """The four methods in the paper's order, then any other labels alphabetically."""
    unique = list(dict.fromkeys(labels))
    return [m for m in METHOD_ORDER if m in unique] + sorted(m for m in unique if m not in METHOD_ORDER)


# --------------------------------------------------------------------------- columns: which records are seeds


def declared_label(record: Record) -> str | None:
    """The method label the record was made under (``--label``, a study's ``label``, or the
    one our own checkpoints carry); ``None`` for official, timm, torchvision files and raw
    state dicts evaluated without one."""
    return record.job["model"].get("method") or None


def _model(record: Record) -> dict[str, Any]:
    return record.results[0].model if record.results else {}


def _file_column(record: Record) -> str:
    """An unlabelled record's column: its checkpoint's file name and SHA-256 prefix."""
    name = Path(str(_model(record).get("checkpoint") or "model")).name
    return f"{name} ({str(record.job['model'].get('checkpoint_sha256') or '')[:8]})"


def seed_key(record: Record) -> tuple:
    """What records must share to be pooled as seeds: the declared label, the architecture, the
    training data and the training recipe (``train_config`` without the seed, see
    :func:`~cutmix_eval.models.checkpoint.recipe_identity`). Files that record no recipe
    (official, timm, torchvision) count as one recipe when label, architecture and training
    data agree: giving them one label declares them runs of one recipe, which cannot be checked."""
    model = _model(record)
    return declared_label(record), model.get("arch"), model.get("training_data"), model.get("recipe")


def _check_one_architecture(label: str, records: Sequence[Record]) -> None:
    by_arch: dict[str, set[str]] = defaultdict(set)
    for record in records:
        by_arch[str(_model(record).get("arch"))].add(Path(str(_model(record).get("checkpoint"))).name)
    if len(by_arch) > 1:
        listed = "; ".join(f"{arch} ({', '.join(sorted(files))})" for arch, files in sorted(by_arch.items()))
        raise UserError(f"label {label!r} is given to {len(by_arch)} architectures: {listed}; a label's checkpoints "
                        "are pooled as seeds of one model, so evaluate them again with a distinct --label per "
                        f"architecture (`label` in a study file) and delete the records of {label!r} from the "
                        "results folder")


def _pool_name(label: str, key: tuple, keys: Sequence[tuple]) -> str:
    """The column of one pool of a label whose checkpoints differ in training data or recipe."""
    parts = []
    if len({k[2] for k in keys}) > 1:
        parts.append(f"trained on {key[2] or 'unknown data'}")
    if len({k[3] for k in keys}) > 1:
        parts.append(f"recipe {key[3][:8]}" if key[3] else "no recipe")
    return f"{label} ({', '.join(parts)})"


def columns_of(records: Sequence[Record]) -> dict[str, list[Record]]:
    """The report's columns of one table, in the paper's method order: records sharing a
    :func:`seed_key` are one column (their seeds); a label given to several architectures is
    a :class:`UserError`; a label with several recipes or training sets gets a column per
    pool; an unlabelled record is a column of its own, named by :func:`_file_column`."""
    columns: dict[str, list[Record]] = {}
    labelled: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        if declared_label(record):
            labelled[declared_label(record)].append(record)
        else:
            columns[_file_column(record)] = [record]
    for label, members in labelled.items():
        _check_one_architecture(label, members)
        pools: dict[tuple, list[Record]] = defaultdict(list)
        for record in members:
            pools[seed_key(record)].append(record)
        for key, pool in pools.items():
            columns[label if len(pools) == 1 else _pool_name(label, key, list(pools))] = pool
    return {label: columns[label] for label in ordered_labels(list(columns))}


def result_of(record: Record, evaluator: str) -> Result | None:
    return next((r for r in record.results if r.evaluator == evaluator), None)


def _error(correct: np.ndarray) -> np.ndarray:
    return 100 * (1 - bs.mean_rows(correct))


def _percent(x: np.ndarray) -> np.ndarray:
    return 100 * bs.mean_rows(x)


# --------------------------------------------------------------------------- per-analysis rows


def classification_metrics(records: Sequence[Record]) -> list[Metric]:
    def cls(r: Record) -> Result:
        return result_of(r, "classification")

    def cal(name: str) -> Callable[[Record], float]:
        return lambda r: result_of(r, "calibration").metrics[name] if result_of(r, "calibration") else np.nan

    def cal_samples(*names: str) -> Callable[[Record], list[np.ndarray]]:
        """One group whose trailing axis holds ``names``: an image's values resample together."""
        return lambda r: [np.stack([result_of(r, "calibration").per_sample[n].astype(np.float64) for n in names],
                                   axis=-1)]

    has_calibration = all(result_of(r, "calibration") for r in records)
    rows = [Metric("top-1 error", lambda r: 100 * cls(r).metrics["top1_error"], LOWER,
                   lambda r: ([cls(r).per_sample["top1_correct"]], _error), key="top1_error", digits=2),
            Metric("top-5 error", lambda r: 100 * cls(r).metrics["top5_error"], LOWER,
                   lambda r: ([cls(r).per_sample["top5_correct"]], _error), key="top5_error", digits=2)]
    if has_calibration:
        n_bins = result_of(records[0], "calibration").config.get("n_bins", 15)
        rows += [Metric("NLL", cal("nll"), LOWER, lambda r: (cal_samples("nll")(r), bs.mean_rows), key="nll",
                        unit="nats", digits=3),
                 Metric("Brier score", cal("brier"), LOWER, lambda r: (cal_samples("brier")(r), bs.mean_rows),
                        key="brier", unit="", digits=3),
                 Metric(f"ECE ({n_bins} bins)", lambda r: 100 * cal("ece")(r), LOWER,
                        lambda r: (cal_samples("confidence", "correct")(r),
                                   lambda x: 100 * bs.ece_rows(x[..., 0], x[..., 1] > 0.5, n_bins)),
                        key="ece", digits=2)]
    return rows


def localization_metrics(records: Sequence[Record]) -> list[Metric]:
    present = set.intersection(*(set(r.results[0].metrics) for r in records))

    def loc(r: Record) -> Result:
        return r.results[0]

    def value(key: str) -> Callable[[Record], float]:
        return lambda r: 100 * loc(r).metrics[key]

    rows = []
    if "maxboxacc_v2" in present:
        rows.append(Metric("MaxBoxAccV2", value("maxboxacc_v2"), HIGHER, key="maxboxacc_v2"))
    if "maxboxacc" in present:
        rows.append(Metric("MaxBoxAcc (IoU 0.5, largest box)", value("maxboxacc"), HIGHER,
                           lambda r: ([loc(r).per_sample["best_iou_largest"] >= 0.5], _percent), key="maxboxacc"))
    if "pxap" in present:
        rows.append(Metric("PxAP", value("pxap"), HIGHER, key="pxap"))
    if "gt_known_loc" in present:
        rows += [Metric("GT-known loc. accuracy", value("gt_known_loc"), HIGHER,
                        lambda r: ([loc(r).per_sample["iou_at_0.15"] >= 0.5], _percent), key="gt_known_loc"),
                 Metric("top-1 loc. accuracy", value("top1_loc"), HIGHER,
                        lambda r: ([loc(r).per_sample["top1_loc"]], _percent), key="top1_loc")]
    return rows


OOD_COLUMNS = {"tnr_at_tpr95": ("TNR at TPR95", bs.tnr_at_tpr95_rows),
               "auroc": ("AUROC", bs.auroc_rows),
               "detection_accuracy": ("detection accuracy", bs.detection_accuracy_rows)}


def ood_metrics_for(metric: str) -> Callable[[Sequence[Record]], list[Metric]]:
    """Rows of one OOD metric: one per OOD set, then the mean over sets."""
    rows_fn = OOD_COLUMNS[metric][1]

    def build(records: Sequence[Record]) -> list[Metric]:
        sets = list(records[0].results[0].dataset["ood_sets"])

        def samples(r: Record, ood_set: str) -> list[np.ndarray] | None:
            s = r.results[0].per_sample
            return [s["id/score"], s[f"{ood_set}/score"]] if "id/score" in s else None

        def one(ood_set: str) -> Metric:
            interval = None
            if samples(records[0], ood_set) is not None:
                interval = (lambda r: (samples(r, ood_set), lambda a, b: 100 * rows_fn(a, b)))
            return Metric(ood_set, lambda r: 100 * r.results[0].metrics[f"{ood_set}/{metric}"], HIGHER, interval,
                          key=f"{ood_set}/{metric}")

        def mean_interval(r: Record) -> Interval:
            s = r.results[0].per_sample
            groups = [s["id/score"], *(s[f"{n}/score"] for n in sets)]
            return groups, lambda i, *o: 100 * np.mean([rows_fn(i, x) for x in o], axis=0)

        mean = Metric("mean", lambda r: 100 * r.results[0].metrics[f"mean/{metric}"], HIGHER,
                      mean_interval if samples(records[0], sets[0]) is not None else None, key=f"mean/{metric}")
        return [one(n) for n in sets] + [mean]

    return build


def occlusion_metrics(records: Sequence[Record]) -> list[Metric]:
    result = records[0].results[0]
    grid = np.asarray(result.config["fractions"], dtype=float)

    def area(mode: str) -> Metric:
        return Metric(f"{mode} occlusion: accuracy area", lambda r: 100 * r.results[0].metrics[f"{mode}/auc"],
                      HIGHER, lambda r: ([r.results[0].per_sample[f"{mode}/correct"]],
                                         lambda c: 100 * bs.trapezoid_rows(grid, c.mean(axis=1))),
                      key=f"{mode}/auc")

    return [area(mode) for mode in result.config["modes"]]


def inbetween_metrics(records: Sequence[Record]) -> list[Metric]:
    result = records[0].results[0]
    grids = {"mixup": result.config["mix_grid"], "cutmix": result.config["cut_grid"]}

    def area(kind: str) -> Metric:
        grid = np.asarray(grids[kind], dtype=float)
        return Metric(f"{kind}-style: predicted neither, area",
                      lambda r: 100 * r.results[0].metrics[f"{kind}/neither_auc"], LOWER,
                      lambda r: ([r.results[0].per_sample[f"{kind}/outcome"] == INBETWEEN_NEITHER],
                                 lambda c: 100 * bs.trapezoid_rows(grid, c.mean(axis=1))),
                      key=f"{kind}/neither_auc")

    return [area(kind) for kind in result.curves]


def adversarial_metrics(records: Sequence[Record]) -> list[Metric]:
    result = records[0].results[0]
    rows = [Metric("clean accuracy", lambda r: 100 * r.results[0].metrics["clean_accuracy"], HIGHER,
                   lambda r: ([r.results[0].per_sample["clean_correct"]], _percent), key="clean_accuracy")]
    targeted = " (targeted)" if result.config.get("targeted") else ""
    for attack in result.curves:
        labels = [k.split("@", 1)[1] for k in result.metrics if k.startswith(f"{attack}/accuracy@")]
        for j, label in enumerate(labels):
            key = f"{attack}/accuracy@{label}"
            paper = attack == "fgsm" and label == "8/255" and not targeted  # the paper's Table 11 cell
            rows.append(Metric(f"{attack.upper()}{targeted} eps {label}: accuracy",
                               lambda r, key=key: 100 * r.results[0].metrics[key], HIGHER,
                               lambda r, a=attack, j=j: ([r.results[0].per_sample[f"{a}/correct"][:, j]], _percent),
                               key="accuracy" if paper else key))
    return rows


def corruption_metrics(records: Sequence[Record]) -> list[Metric]:
    """Clean error, the mean error over the corruptions evaluated and per group; means over
    the severities the records hold, said in each label when they are not all 5."""
    result = records[0].results[0]
    names = list(result.config["corruptions"])
    group_of = result.curves["group_of"]
    scope = severity_scope(result.config["severities"])

    def error_of(label: str, members: Sequence[str], key: str) -> Metric:
        def value(r: Record) -> float:
            return 100 * float(np.mean([r.results[0].metrics[f"{c}/error"] for c in members]))

        def interval(r: Record) -> Interval:
            s = r.results[0].per_sample
            stacked = np.concatenate([s[f"{c}/correct"].reshape(len(s["index"]), -1) for c in members], axis=1)
            return [stacked], _error
        return Metric(label, value, LOWER, interval, key)

    rows = []
    if "clean_error" in result.metrics:
        rows.append(Metric("clean error", lambda r: 100 * r.results[0].metrics["clean_error"], LOWER,
                           lambda r: ([r.results[0].per_sample["clean_correct"]], _error), key="clean_error"))
    rows.append(error_of(f"mean corruption error ({len(names)} corruptions){scope}", names, "error"))
    for group in result.curves["groups"]:
        members = [c for c in names if group_of.get(c) == group]
        rows.append(error_of(f"{group} ({len(members)}): mean error{scope}", members, f"{group}/error"))
    return rows


def corruption_mce_row(columns: dict[str, list[Record]]) -> Row | None:
    """mCE with the baseline column as the reference model (CE per corruption = sum over the
    severities evaluated of the model's errors / the baseline's; mean over the benchmark
    corruptions evaluated, in percent, baseline = 100); no interval. Where the baseline makes
    no error under a corruption, CE is undefined: the row says so and holds no numbers."""
    if "baseline" not in columns:
        return None
    first = columns["baseline"][0].results[0]
    levels = first.config["severities"]
    names = [c for c in first.config["corruptions"] if c in BENCHMARK] or list(first.config["corruptions"])
    reference = CorruptionReference.from_table({c: first.curves["errors"][c] for c in names}, name="baseline",
                                               severities=levels)
    label = f"mCE relative to baseline ({len(names)} corruptions){severity_scope(levels)}"
    try:
        cells = {method: _aggregate([100 * mce({c: r.results[0].curves["errors"][c] for c in names}, reference,
                                               corruptions=names, severities=levels) for r in records])
                 for method, records in columns.items()}
    except ValueError as err:  # the baseline's error under a corruption is 0
        return Row(f"{label}: not reported, {err}", {method: Cell(math.nan) for method in columns}, unit="")
    return Row(label, cells, LOWER, digits=1)


# --------------------------------------------------------------------------- assembly

TABLES: dict[str, list[tuple[str, str, Callable[[Sequence[Record]], list[Metric]], tuple[str, ...]]]] = {
    "classification": [("classification", "Classification and calibration", classification_metrics,
                        ("top1_error", "nll", "brier", "ece"))],
    "localization": [("localization", "Weakly supervised localization", localization_metrics,
                      ("maxboxacc_v2", "maxboxacc", "top1_loc", "protocol"))],
    "ood": [(f"ood-{m}", f"Out-of-distribution detection: {OOD_COLUMNS[m][0]}", ood_metrics_for(m), (m,))
            for m in OOD_COLUMNS],
    "occlusion": [("occlusion", "Occlusion robustness", occlusion_metrics, ("fill", "auc"))],
    "inbetween": [("inbetween", "In-between class samples", inbetween_metrics, ())],
    "adversarial": [("adversarial", "Adversarial robustness", adversarial_metrics, ("success_rate",))],
    "corruption": [("corruption", "Common corruptions", corruption_metrics, ("error", "source"))],
}


def _aggregate(values: Sequence[float]) -> Cell:
    if len(values) == 1:
        return Cell(float(values[0]))
    return Cell(float(np.mean(values)), std=float(np.std(values, ddof=1)), seeds=len(values))


def _cell(metric: Metric, records: Sequence[Record], intervals: bool) -> Cell:
    values = [metric.value(r) for r in records]
    if len(records) > 1 or not intervals or metric.interval is None or not np.isfinite(values[0]):
        return _aggregate(values)
    groups, statistic = metric.interval(records[0])
    low, high = bs.bootstrap_interval(statistic, groups, n_resamples=RESAMPLES)
    return Cell(float(values[0]), low=float(low), high=float(high))


def current_records(records: Sequence[Record]) -> list[Record]:
    """``records`` without the superseded ones: of records of one checkpoint (and loading
    options, label) with one analysis, dataset name, split, limit and options, only the newest
    is kept, by analysis version, then time. The others were computed by an older analysis
    version or on data that has changed since; pooled, they would count one checkpoint as
    several seeds. Those left out are warned about, by name."""
    newest: dict[str, Record] = {}
    for record in records:
        job = record.job
        same = canonical_json([job["analysis"], job["model"], job["dataset"]["name"], job["dataset"]["split"],
                               job["dataset"].get("limit"), job["options"]])
        if same not in newest or _recency(record) > _recency(newest[same]):
            newest[same] = record
    kept = {id(r) for r in newest.values()}
    if left := [r.path.name for r in records if id(r) not in kept]:
        warnings.warn(f"left out {len(left)} superseded record(s) ({', '.join(left)}): a newer record of the same "
                      "checkpoint, analysis and options exists (a newer analysis version, or data changed since)",
                      stacklevel=2)
    return [r for r in records if id(r) in kept]


def _recency(record: Record) -> tuple[int, str]:
    return int(record.job.get("version") or 0), max((r.created for r in record.results), default="")


def group_records(records: Sequence[Record]) -> dict[tuple, list[Record]]:
    """Records by (analysis, dataset name, split, limit, options, OOD score)."""
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for record in records:
        job = record.job
        for result in record.results if job["analysis"] == "ood" else record.results[:1]:
            one = record if job["analysis"] != "ood" else Record(record.path, job, record.key, [result])
            score = result.config.get("score", "") if job["analysis"] == "ood" else ""
            key = (job["analysis"], job["dataset"]["name"], job["dataset"]["split"], job["dataset"].get("limit"),
                   canonical_json(job["options"]), score)
            groups[key].append(one)
    return groups


def _title(base: str, key: tuple, records: Sequence[Record], siblings: list[tuple]) -> str:
    analysis, dataset, split, _, options, score = key
    result = records[0].results[0]
    size = result.dataset.get("num_images") or result.metrics.get("num_images") or result.metrics.get("num_pairs")
    title = f"{base} ({score.upper()} score)" if score else base
    count = f"{result.metrics['num_pairs']} image pairs" if analysis == "inbetween" else f"{size} images"
    title += f" — {dataset}/{split}" + (f", {count}" if size else "")
    differing = _differing_options(options, [s[4] for s in siblings])
    return title + (f" [{differing}]" if differing else "")


def _differing_options(options: str, all_options: list[str]) -> str:
    import json

    mine, others = json.loads(options), [json.loads(o) for o in all_options]
    keys = sorted(k for k in mine if any(o.get(k) != mine[k] for o in others))
    return ", ".join(f"{k}={mine[k]}" for k in keys)


def build_tables(records: Sequence[Record], intervals: bool = True) -> list[Table]:
    """Every comparison table of ``records``, analyses in the report's order."""
    groups = group_records(records)
    tables = []
    for analysis, makers in TABLES.items():
        keys = [k for k in groups if k[0] == analysis]
        for key in sorted(keys, key=lambda k: (k[1], k[2], str(k[3]), k[5], k[4])):
            siblings = [k for k in keys if k[1:4] == key[1:4] and k[5] == key[5]]
            columns = columns_of(groups[key])
            labels = list(columns)
            for table_key, base, metrics_of, convention_keys in makers:
                everything = [r for rs in columns.values() for r in rs]
                metrics = metrics_of(everything)
                rows = [Row(m.label, {label: _cell(m, rs, intervals) for label, rs in columns.items()}, m.better,
                            m.digits, m.unit) for m in metrics]
                if analysis == "corruption" and (extra := corruption_mce_row(columns)):
                    rows.append(extra)
                rows += reference_rows(analysis, key[1], everything, metrics, labels)
                note = notes(analysis, columns, convention_keys)
                tables.append(Table(f"{table_key}-{key[1]}-{len(tables)}", _title(base, key, everything, siblings),
                                    labels, rows, note))
    return tables


def reference_rows(analysis: str, dataset: str, records: Sequence[Record], metrics: Sequence[Metric],
                   labels: Sequence[str]) -> list[Row]:
    """The paper's numbers for the rows of this table, when every model has the same
    architecture and it and the dataset match a setting of the paper."""
    archs = {r.results[0].model.get("arch") for r in records}
    if len(archs) != 1 or None in archs:
        return []
    by_key = {m.key: m for m in metrics if m.key}
    rows = []
    for ref in paper_references(dataset, archs.pop(), analysis):
        metric = by_key.get(ref.metric)
        shown = {m: Cell(v) for m, v in ref.values.items() if m in labels and v is not None}
        if metric and shown:
            rows.append(Row(metric.label, shown, metric.better, metric.digits, metric.unit, reference=True,
                            source=ref.source))
    return rows


def notes(analysis: str, columns: dict[str, list[Record]], keys: Sequence[str]) -> str:
    """The conventions behind a table's numbers (``keys`` of the records' conventions), from
    the records themselves, and what its columns are (:func:`column_notes`)."""
    records = [r for rs in columns.values() for r in rs]
    result = records[0].results[0]
    conventions = {k: v for r in reversed(records[0].results) for k, v in r.conventions.items()}
    parts = []
    if analysis == "ood":
        sizes = ", ".join(f"{name} {about['num_images']:,}" for name, about in result.dataset["ood_sets"].items())
        parts.append(f"Score: {result.config.get('score')} (higher = in-distribution); the ID test images are "
                     f"the positive class. Images scored: {result.dataset['num_images']:,} ID; OOD {sizes}.")
    for key in keys:
        if key in conventions:
            text = conventions[key].rstrip(".")
            parts.append((text if text[:1].isupper() else f"{key}: {text}") + ".")
    if analysis == "localization":
        parts.append("The MaxBoxAcc interval keeps the threshold chosen on all images fixed.")
    return " ".join(parts + column_notes(columns))


def column_notes(columns: dict[str, list[Record]]) -> list[str]:
    """What the ± of pooled columns is over, which labels were split by recipe, and which
    columns are unlabelled files (with how to label them)."""
    parts = []
    for label, records in columns.items():
        if len(records) < 2:
            continue
        if all(_model(r).get("recipe") for r in records):
            parts.append(f"{label}: mean ± sample standard deviation over {len(records)} training runs of one "
                         "recipe (same architecture and training settings apart from the seed).")
        else:
            parts.append(f"{label}: mean ± sample standard deviation over {len(records)} checkpoints given this "
                         "label (same architecture; their files record no training recipe, so that they differ "
                         "only in seed is taken on trust).")
    split = sorted({declared_label(rs[0]) for name, rs in columns.items() if declared_label(rs[0]) not in (None, name)})
    if split:
        parts.append(f"Not pooled: checkpoints labelled {', '.join(split)} differ in training data or recipe "
                     "(training settings apart from the seed), a column each.")
    unlabelled = [name for name, rs in columns.items() if declared_label(rs[0]) is None]
    if unlabelled:
        parts.append(f"No method label: {', '.join(unlabelled)} (a column per file, named by file and SHA-256 "
                     "prefix); give one with --label NAME, or `label` in a study file.")
    return parts
