"""The comparison-table model every report format renders.

A :class:`Table` is one analysis's block in the paper's layout: methods side by
side as columns, one :class:`Row` per metric. Cells hold values already in the
unit shown (percent for rates and errors), with an optional 95% bootstrap
interval over test images or, when several checkpoints share a method label, their
mean with the 95% Student-t interval over those seeds (:mod:`cutmix_eval.metrics.seeds`).
Difference tables (a method minus the baseline, paired by seed) mark the cells whose
interval excludes 0 instead of a best cell, each with its verdict, better or worse, by the
row's direction (:meth:`Row.verdict`). Rows say whether higher or lower is better;
reference rows (numbers reported in the CutMix paper) are marked and never
compete for the bold "best" cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

HIGHER, LOWER = "higher", "lower"
ARROWS = {HIGHER: "↑", LOWER: "↓", None: ""}


@dataclass(frozen=True)
class Cell:
    """One number of a table. ``low``/``high``: its 95% interval (same unit as ``value``):
    percentile bootstrap over test images for one checkpoint, Student-t over the ``seeds``
    checkpoints when there are several, in which case ``value`` is their mean and ``std`` their
    sample standard deviation (ddof 1)."""

    value: float
    low: float | None = None
    high: float | None = None
    std: float | None = None
    seeds: int = 1


def excludes_zero(cell: Cell) -> bool:
    """Whether the cell's interval lies wholly on one side of 0 (a difference significant at
    the interval's level); False without an interval."""
    return cell.low is not None and cell.high is not None and (cell.low > 0 or cell.high < 0)


@dataclass
class Row:
    """One metric across methods. ``better``: :data:`HIGHER`, :data:`LOWER` or ``None``
    (no best is marked); ``reference``: a row of published numbers (``source`` says which);
    ``digits``: decimals shown; ``difference``: a row of paired differences from the baseline,
    whose marked cells are those whose interval excludes 0."""

    label: str
    cells: dict[str, Cell]
    better: str | None = None
    digits: int = 1
    unit: str = "%"
    reference: bool = False
    source: str = ""
    difference: bool = False

    def best(self) -> set[str]:
        """Method labels holding the best finite value (ties share it); empty for reference
        rows, rows without a direction, rows with fewer than two numbers and rows where every
        number is the same (nothing to single out). In a difference row: the labels whose
        interval excludes 0."""
        if self.difference:
            return {k for k, c in self.cells.items() if excludes_zero(c)}
        if self.reference or self.better is None:
            return set()
        finite = {k: round(c.value, self.digits) for k, c in self.cells.items() if math.isfinite(c.value)}
        if len(finite) < 2 or len(set(finite.values())) == 1:
            return set()
        target = max(finite.values()) if self.better == HIGHER else min(finite.values())
        return {k for k, v in finite.items() if v == target}

    def verdict(self, cell: Cell) -> str:
        """A difference cell whose interval excludes 0: ``"better"`` or ``"worse"`` than the
        baseline by the row's ``better`` (a positive difference is better when higher is);
        ``""`` for every other cell and in rows without a direction."""
        if not self.difference or self.better is None or not excludes_zero(cell):
            return ""
        return "better" if (cell.value > 0) == (self.better == HIGHER) else "worse"


@dataclass
class Table:
    """One analysis block: ``columns`` are method labels in display order; ``note`` states the
    conventions behind the numbers (printed under the table)."""

    key: str
    title: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    note: str = ""
