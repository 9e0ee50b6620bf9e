"""Comparison tables from stored records, in the paper's layout.

Records are grouped by analysis and dataset (and, where records of one analysis
differ in options, by those options); within a group the records of one method
label, architecture, training data and training recipe are one column, their
seeds (:func:`columns_of`; a label given to two architectures is refused, a
record without a label is a column of its own named by its file). A column of
one record gives a value with a 95% percentile-bootstrap interval over test
images (:mod:`cutmix_eval.metrics.bootstrap`, 1000 resamples, seed 0); a column
of several gives their mean with the 95% Student-t interval over the seeds
(:mod:`cutmix_eval.metrics.seeds`), and the table's note says what they are.
Where a ``baseline`` column and others hold runs of the same training seeds, a
difference table follows each table (:func:`difference_table`): each method minus
the baseline, seed by seed, with the t-interval of those paired differences. Values
are shown in percent for rates and errors. Where the setting matches one of the
paper's, its numbers follow as reference rows (:mod:`cutmix_eval.report.paper`).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cutmix_eval.catalog import METHODS
from cutmix_eval.errors import UserError
from cutmix_eval.metrics import bootstrap as bs
from cutmix_eval.metrics.seeds import t_interval
from cutmix_eval.report.paper import paper_references
from cutmix_eval.report.store import Record, canonical_json
from cutmix_eval.report.table import Cell, Row, Table
from cutmix_eval.report.view import Metric, TableSpec, View
from cutmix_eval.results import Result

RESAMPLES = 1000


def ordered_labels(labels: Sequence[str]) -> list[str]:
    """The training methods in the catalog's order (the paper's four first), then any other
    labels alphabetically."""
    unique = list(dict.fromkeys(labels))
    return [m for m in METHODS if m in unique] + sorted(m for m in unique if m not in METHODS)


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


def error_rows(correct: np.ndarray) -> np.ndarray:
    """Bootstrap statistic: error in percent of each resample's correct flags (``R x N``)."""
    return 100 * (1 - bs.mean_rows(correct))


def percent_rows(x: np.ndarray) -> np.ndarray:
    """Bootstrap statistic: mean in percent of each resample's 0/1 values (``R x N``)."""
    return 100 * bs.mean_rows(x)


def aggregate(values: Sequence[float]) -> Cell:
    """One value as it is; several (seeds) as their mean with its 95% t-interval and their
    sample standard deviation (no interval when a value is not finite)."""
    if len(values) == 1:
        return Cell(float(values[0]))
    low = high = None
    if np.isfinite(values).all():
        low, high = t_interval(values)
    return Cell(float(np.mean(values)), low=low, high=high, std=float(np.std(values, ddof=1)), seeds=len(values))


def training_seed(record: Record) -> int | None:
    """The training seed of the record's checkpoint (from its training recipe), or None."""
    return _model(record).get("seed")


def by_seed(records: Sequence[Record]) -> dict[int, Record] | None:
    """A column's records by training seed; None when a record does not say its seed or two
    say the same one (no run to pair with the baseline's run of that seed)."""
    seeds = [training_seed(r) for r in records]
    if None in seeds or len(set(seeds)) < len(seeds):
        return None
    return dict(zip(seeds, records))


def difference_table(table: Table, metrics: Sequence[Metric], columns: Mapping[str, Sequence[Record]],
                     baseline: str = "baseline") -> Table | None:
    """``table``'s metrics as differences from the ``baseline`` column, paired by training seed:
    per other column and metric, the mean over the seeds both columns hold of (method -
    baseline) with the 95% t-interval of those differences (:func:`aggregate`; ``seeds``: the
    number of pairs). Seeds only one of the two columns holds are left out; so are columns
    whose records do not each name a seed of their own (:func:`by_seed`) and columns with
    fewer than two pairs. The rows are ``table``'s measured metrics (reference and extra rows
    are not differenced), in points for percentages; a cell whose interval excludes 0 is
    marked (:meth:`~cutmix_eval.report.table.Row.best`) with its verdict
    (:meth:`~cutmix_eval.report.table.Row.verdict`). None when no column pairs with the
    baseline."""
    base = by_seed(columns.get(baseline, []))
    if not base:
        return None
    seeds = {label: by_seed(rs) for label, rs in columns.items() if label != baseline}
    pairs = {label: [(base[s], mine[s]) for s in sorted(mine.keys() & base.keys())]
             for label, mine in seeds.items() if mine}
    pairs = {label: p for label, p in pairs.items() if len(p) >= 2}
    if not pairs:
        return None
    rows = []
    for metric in metrics:
        cells = {}
        for label, paired in pairs.items():
            diffs = [metric.value(r) - metric.value(b) for b, r in paired]
            if np.isfinite(diffs).all():
                cells[label] = aggregate(diffs)
        if cells:
            rows.append(Row(f"Δ {metric.label}", cells, metric.better, metric.digits,
                            "points" if metric.unit == "%" else metric.unit, difference=True))
    if not rows:
        return None
    return Table(f"{table.key}-diff", f"{table.title}: difference from {baseline} (paired by seed)",
                 list(pairs), rows, _difference_note(baseline, base, {label: seeds[label] for label in pairs},
                                                     [label for label in seeds if label not in pairs]))


def _difference_note(baseline: str, base: Mapping[int, Record], paired: Mapping[str, Mapping[int, Record]],
                     unpaired: Sequence[str]) -> str:
    """The note of a :func:`difference_table`: what a cell is, how many pairs, what the marks
    mean, and which seeds and columns were left out."""
    counts = sorted({len(seeds.keys() & base.keys()) for seeds in paired.values()})
    note = (f"Each cell: the mean over {'/'.join(map(str, counts))} training seeds of (method - {baseline}), each "
            f"method run with the same seed as its {baseline} run (same initial weights and data order), with the 95% "
            "t-interval of those paired differences; bold where the interval excludes 0 (a paired t-test at 5%), "
            f"followed by better or worse than {baseline} as the row's arrow has it.")
    alone = {label: sorted(seeds.keys() ^ base.keys()) for label, seeds in paired.items()}
    if dropped := {label: s for label, s in alone.items() if s}:
        note += (f" Seeds run by only one of the method and {baseline} left out: "
                 + "; ".join(f"{label} {', '.join(map(str, s))}" for label, s in dropped.items()) + ".")
    if unpaired:
        note += (f" Not compared (fewer than 2 seeds shared with {baseline}, or seeds not recorded or repeated): "
                 + ", ".join(unpaired) + ".")
    return note


def _cell(metric: Metric, records: Sequence[Record], intervals: bool) -> Cell:
    values = [metric.value(r) for r in records]
    if len(records) > 1 or not intervals or metric.interval is None or not np.isfinite(values[0]):
        return aggregate(values)
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


def group_records(records: Sequence[Record], views: Mapping[str, View]) -> dict[tuple, list[Record]]:
    """Records by (analysis, dataset name, split, limit, options, split value): a view's
    ``split_by`` (OOD detection: the score) makes each of a record's Results a group of its
    own. Records of an analysis no view is given for are left out with a warning naming them."""
    groups: dict[tuple, list[Record]] = defaultdict(list)
    unknown: dict[str, list[str]] = defaultdict(list)
    for record in records:
        job = record.job
        view = views.get(job["analysis"])
        if view is None:
            unknown[job["analysis"]].append(record.path.name)
            continue
        for result in record.results if view.split_by else record.results[:1]:
            one = Record(record.path, job, record.key, [result]) if view.split_by else record
            part = str(result.config.get(view.split_by, "")) if view.split_by else ""
            key = (job["analysis"], job["dataset"]["name"], job["dataset"]["split"], job["dataset"].get("limit"),
                   canonical_json(job["options"]), part)
            groups[key].append(one)
    for analysis, names in unknown.items():
        warnings.warn(f"left out {len(names)} record(s) of analysis {analysis!r}, which this version of cutmix-eval "
                      f"does not know ({', '.join(names)}); a newer cutmix-eval may report them", stacklevel=2)
    return groups


def _title(spec: TableSpec, view: View, key: tuple, records: Sequence[Record], siblings: list[tuple]) -> str:
    _, dataset, split, _, options, part = key
    result = records[0].results[0]
    title = f"{spec.title} ({part.upper()} {view.split_by})" if part else spec.title
    size = result.dataset.get("num_images") or result.metrics.get("num_images")
    count = view.count(result) if view.count else (f"{size} images" if size else None)
    title += f" — {dataset}/{split}" + (f", {count}" if count else "")
    differing = _differing_options(options, [s[4] for s in siblings])
    return title + (f" [{differing}]" if differing else "")


def _differing_options(options: str, all_options: list[str]) -> str:
    import json

    mine, others = json.loads(options), [json.loads(o) for o in all_options]
    keys = sorted(k for k in mine if any(o.get(k) != mine[k] for o in others))
    return ", ".join(f"{k}={mine[k]}" for k in keys)


def build_tables(records: Sequence[Record], views: Mapping[str, View], intervals: bool = True) -> list[Table]:
    """Every comparison table of ``records``, analyses in the order of ``views`` (analysis name
    -> :class:`~cutmix_eval.report.view.View`; :func:`cutmix_eval.analyses.views` gives the
    registered ones)."""
    groups = group_records(records, views)
    tables = []
    for analysis, view in views.items():
        keys = [k for k in groups if k[0] == analysis]
        for key in sorted(keys, key=lambda k: (k[1], k[2], str(k[3]), k[5], k[4])):
            siblings = [k for k in keys if k[1:4] == key[1:4] and k[5] == key[5]]
            columns = columns_of(groups[key])
            labels = list(columns)
            everything = [r for rs in columns.values() for r in rs]
            for spec in view.tables:
                metrics = spec.metrics(everything)
                rows = [Row(m.label, {label: _cell(m, rs, intervals) for label, rs in columns.items()}, m.better,
                            m.digits, m.unit) for m in metrics]
                rows += spec.extra_rows(columns) if spec.extra_rows else []
                rows += reference_rows(analysis, key[1], everything, metrics, labels)
                if not rows:  # e.g. a table of numbers older records do not hold
                    continue
                table = Table(f"{spec.key}-{key[1]}-{len(tables)}", _title(spec, view, key, everything, siblings),
                              labels, rows, notes(spec, columns))
                tables.append(table)
                if intervals and (paired := difference_table(table, metrics, columns)):
                    tables.append(paired)
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


def notes(spec: TableSpec, columns: dict[str, list[Record]]) -> str:
    """A table's note: the view's own sentences (``spec.notes``), the conventions behind its
    numbers (``spec.conventions`` keys of the records' conventions, from the records
    themselves), the view's ``caveat``, and what its columns are (:func:`column_notes`)."""
    records = [r for rs in columns.values() for r in rs]
    conventions = {k: v for r in reversed(records[0].results) for k, v in r.conventions.items()}
    parts = list(spec.notes(records)) if spec.notes else []
    for key in spec.conventions:
        if key in conventions:
            text = conventions[key].rstrip(".")
            parts.append((text if text[:1].isupper() else f"{key}: {text}") + ".")
    if spec.caveat:
        parts.append(spec.caveat)
    return " ".join(parts + column_notes(columns))


def column_notes(columns: dict[str, list[Record]]) -> list[str]:
    """What the intervals of pooled columns are over, which labels were split by recipe, and which
    columns are unlabelled files (with how to label them)."""
    parts = []
    for label, records in columns.items():
        if len(records) < 2:
            continue
        if all(_model(r).get("recipe") for r in records):
            parts.append(f"{label}: mean over {len(records)} seeds [95% t-interval over seeds]: training runs of "
                         "one recipe (same architecture and training settings apart from the seed).")
        else:
            parts.append(f"{label}: mean over {len(records)} seeds [95% t-interval over seeds]: checkpoints given this "
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
