"""The comparison-table model every report format renders.

A :class:`Table` is one analysis's block in the paper's layout: methods side by
side as columns, one :class:`Row` per metric. Cells hold values already in the
unit shown (percent for rates and errors), with an optional 95% bootstrap
interval over test images or, when several checkpoints share a method label, the
standard deviation over those seeds. Rows say whether higher or lower is better;
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
    """One number of a table. ``low``/``high``: 95% percentile-bootstrap interval
    (same unit as ``value``); ``std``: sample standard deviation over ``seeds``
    checkpoints (ddof 1), in which case ``value`` is their mean."""

    value: float
    low: float | None = None
    high: float | None = None
    std: float | None = None
    seeds: int = 1


@dataclass
class Row:
    """One metric across methods. ``better``: :data:`HIGHER`, :data:`LOWER` or ``None``
    (no best is marked); ``reference``: a row of published numbers (``source`` says which);
    ``digits``: decimals shown."""

    label: str
    cells: dict[str, Cell]
    better: str | None = None
    digits: int = 1
    unit: str = "%"
    reference: bool = False
    source: str = ""

    def best(self) -> set[str]:
        """Method labels holding the best finite value (ties share it); empty for reference
        rows, rows without a direction, rows with fewer than two numbers and rows where every
        number is the same (nothing to single out)."""
        if self.reference or self.better is None:
            return set()
        finite = {k: round(c.value, self.digits) for k, c in self.cells.items() if math.isfinite(c.value)}
        if len(finite) < 2 or len(set(finite.values())) == 1:
            return set()
        target = max(finite.values()) if self.better == HIGHER else min(finite.values())
        return {k for k, v in finite.items() if v == target}


@dataclass
class Table:
    """One analysis block: ``columns`` are method labels in display order; ``note`` states the
    conventions behind the numbers (printed under the table)."""

    key: str
    title: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    note: str = ""
