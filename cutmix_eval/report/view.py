"""What a report shows of one analysis: its tables and its figure.

An analysis (:mod:`cutmix_eval.analyses`) hands the report a :class:`View`; the report's
machinery (:mod:`cutmix_eval.report.comparison` for tables, :mod:`cutmix_eval.report.build`
for figures and files) iterates the views it is given and knows no analysis by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cutmix_eval.report.store import Record
    from cutmix_eval.report.table import Row
    from cutmix_eval.results import Result

Interval = tuple[list[np.ndarray], Callable[..., np.ndarray]]


@dataclass(frozen=True)
class Metric:
    """One table row's recipe: ``value(record)`` in the shown unit, optionally
    ``interval(record) -> (groups, statistic)`` for the percentile bootstrap
    (:func:`cutmix_eval.metrics.bootstrap.bootstrap_interval`; statistic in the shown unit),
    ``better`` (:data:`~cutmix_eval.report.table.HIGHER` / ``LOWER``) and ``key``: the Result
    metric key the paper's numbers are matched on (:mod:`cutmix_eval.report.paper`)."""

    label: str
    value: Callable[[Record], float]
    better: str | None
    interval: Callable[[Record], Interval] | None = None
    key: str = ""
    unit: str = "%"
    digits: int = 1


@dataclass(frozen=True)
class TableSpec:
    """One table of an analysis, per group of comparable records (same dataset, split, limit,
    options). ``metrics(records)``: the rows, from the group's records (all columns);
    ``conventions``: keys of the records' ``conventions`` quoted in the note; ``notes(records)``:
    further sentences for the note, before the conventions; ``caveat``: a sentence after them;
    ``extra_rows(columns)``: rows that compare columns (mCE against the baseline column), after
    the metrics."""

    key: str
    title: str
    metrics: Callable[[Sequence[Record]], list[Metric]]
    conventions: tuple[str, ...] = ()
    notes: Callable[[Sequence[Record]], list[str]] | None = None
    caveat: str = ""
    extra_rows: Callable[[dict[str, list[Record]]], list[Row]] | None = None


#: ``(columns {label: Record}, colours {label: colour}, "dataset/split")`` -> ``(file stem,
#: caption, matplotlib Figure)``, or None when the records hold nothing to draw
Drawer = Callable[[dict[str, "Record"], dict[str, Any], str], "tuple[str, str, Any] | None"]


@dataclass(frozen=True)
class View:
    """An analysis in reports. ``tables``: its tables; ``figure``: its comparison figure (None:
    none); ``split_by``: a config key whose values make each of a record's Results a group of
    its own (OOD detection: one table per ``score``), else only the record's first Result is
    grouped; ``across_splits``: a figure comparing those parts; ``count(result)``: what the table title counts (default: the images)."""

    tables: tuple[TableSpec, ...]
    figure: Drawer | None = None
    split_by: str | None = None
    #: one figure over every split part of the same records (OOD: all scores side by side):
    #: ``({part: columns}, colours, "dataset/split")`` -> like :data:`Drawer`; called when there are 2+ parts
    across_splits: Callable[[dict[str, dict[str, "Record"]], dict[str, Any], str], "tuple[str, str, Any] | None"] \
        | None = None
    count: Callable[[Result], str | None] | None = None
