"""Comparison tables rendered as Markdown, LaTeX, HTML and a tidy data frame.

Every renderer takes a list of :class:`~cutmix_eval.report.table.Table` and follows
the same conventions: a cell shows its value with the row's decimals, followed by
its 95% interval ``[low, high]``: percentile bootstrap over test images for one
checkpoint, Student-t over the seeds for a mean over several; missing numbers show as
an en dash; the best measured cell(s) of a row (:meth:`Row.best`) are bold (in a
difference table: the differences whose interval excludes 0, each followed by its verdict,
``better`` or ``worse``, :meth:`Row.verdict`); reference rows (numbers from the CutMix paper) are
italic, prefixed ``paper:`` and never bold. The unit and the direction arrow go in
the metric label, never inside cells.

Tables are laid out with pandas (``DataFrame.to_markdown``, ``Styler.to_latex``,
``Styler.to_html``); this module only formats the cells and assembles documents.
"""

from __future__ import annotations

import base64
import html as htmllib
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from cutmix_eval.errors import UserError
from cutmix_eval.report.table import ARROWS, Cell, Row, Table

EN_DASH = "–"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# User text and cell text for LaTeX: the ten special characters, and the symbols this
# module writes itself (arrows, ±, en dash, minus sign, the Δ of difference rows) in forms pdflatex accepts.
_TEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "↑": r"$\uparrow$", "↓": r"$\downarrow$", "±": r"$\pm$", EN_DASH: "--", "−": "$-$",
    "Δ": r"$\Delta$",
}
_TEX_TABLE = str.maketrans(_TEX)

LATEX_PREAMBLE = r"""\documentclass{article}
\usepackage[T1]{fontenc}
\usepackage[utf8]{inputenc}
\usepackage[margin=2cm]{geometry}
\usepackage{booktabs}
\usepackage{adjustbox}
"""

HTML_CSS = """
body { font-family: Georgia, "Times New Roman", serif; color: #222; background: #fff;
       max-width: 62rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { font-weight: normal; border-bottom: 1px solid #999; padding-bottom: .3rem; }
h2 { font-weight: normal; font-size: 1.25rem; margin-top: 2.2rem; }
nav ol { padding-left: 1.4rem; }
a { color: #1a4f8b; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; border-top: 2px solid #222; border-bottom: 2px solid #222;
        font-variant-numeric: tabular-nums; }
th { font-weight: normal; border-bottom: 1px solid #222; }
th, td { padding: .25rem .75rem; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
td.best { font-weight: bold; }
td.ref { font-style: italic; background: #f2f2f2; }
.ci { font-size: .8em; color: #666; }
.note, .legend { font-size: .9rem; color: #444; }
figure { margin: 2rem 0; text-align: center; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: .9rem; color: #444; margin-top: .4rem; }
"""


# --------------------------------------------------------------------------- cells and labels


def _number(x: float, digits: int) -> str:
    """``x`` with ``digits`` decimals, or an en dash when it is not finite."""
    return f"{x:.{digits}f}" if math.isfinite(x) else EN_DASH


#: what a cell's interval is over (:func:`interval_kind`), as the legend and the CSV say it
BOOTSTRAP, OVER_SEEDS, PAIRED = ("95% bootstrap over images", "95% t-interval over seeds",
                                 "95% t-interval over paired seeds")


def interval_kind(cell: Cell, row: Row) -> str:
    """What the cell's interval is: :data:`BOOTSTRAP` for one checkpoint, :data:`OVER_SEEDS` for
    a mean over pooled seeds, :data:`PAIRED` in a difference row; ``""`` without an interval."""
    if cell.low is None or cell.high is None:
        return ""
    if row.difference:
        return PAIRED
    return OVER_SEEDS if cell.seeds > 1 else BOOTSTRAP


def _cell_parts(cell: Cell, row: Row, intervals: bool) -> tuple[str, str, str]:
    """The cell's value, its interval (``"[a, b]"`` or ``""``) and its verdict
    (:meth:`Row.verdict`, ``""`` in measured rows) as text."""
    value = _number(cell.value, row.digits)
    if not intervals or not math.isfinite(cell.value) or not interval_kind(cell, row):
        return value, "", ""
    return value, f"[{_number(cell.low, row.digits)}, {_number(cell.high, row.digits)}]", row.verdict(cell)


def format_cell(cell: Cell, row: Row, intervals: bool = True) -> str:
    """The cell as text: ``23.4`` or, when ``intervals``, ``23.4 [22.1, 24.6]`` (bootstrap
    interval over images, or t-interval over pooled seeds), in a difference row followed by
    ``better``/``worse`` where the interval excludes 0 (``-2.1 [-3.0, -1.2] better``); a missing
    (non-finite) value is an en dash. Decimals: ``row.digits``; no unit."""
    return " ".join(part for part in _cell_parts(cell, row, intervals) if part)


def _tex(text: str) -> str:
    """``text`` escaped for LaTeX (special characters, arrows, ±, dashes)."""
    return text.translate(_TEX_TABLE)


def metric_label(row: Row, latex: bool = False) -> str:
    """The metric column's text: ``"{label} ({unit}) ↑"``, without the unit when it is
    empty and without an arrow when the row has no direction; reference rows start
    with ``"paper: "``. With ``latex`` the text is escaped and the arrow is
    ``$\\uparrow$``/``$\\downarrow$``."""
    text = f"paper: {row.label}" if row.reference else row.label
    if row.unit:
        text += f" ({row.unit})"
    if ARROWS[row.better]:
        text += f" {ARROWS[row.better]}"
    return _tex(text) if latex else text


def _slug(key: str) -> str:
    """``key`` reduced to characters safe in LaTeX labels and HTML ids."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "-", key) or "table"


def _legend(tables: Sequence[Table], intervals: bool) -> list[tuple[str, str, str]]:
    """What the marks used in ``tables`` mean, as ``(term, style, explanation)`` with
    ``style`` one of ``""``, ``"bold"``, ``"italic"``; only marks that appear are listed."""
    rows = [row for table in tables for row in table.rows]
    kinds = {interval_kind(cell, row) for row in rows for cell in row.cells.values() if math.isfinite(cell.value)}
    entries = []
    if any(ARROWS[row.better] for row in rows):
        entries.append(("↑/↓", "", "higher/lower is better"))
    if any(row.best() for row in rows if not row.difference):
        entries.append(("bold", "bold", "best measured value in the row (ties share it)"))
    if any(row.best() for row in rows if row.difference):
        entries.append(("bold (difference tables)", "bold", "the 95% interval of the paired difference from the "
                                                            "baseline excludes 0 (a paired t-test at 5%); better/"
                                                            "worse: than the baseline, by the row's arrow"))
    if any(row.reference for row in rows):
        entries.append(("italic", "italic", "numbers reported in the CutMix paper, never marked best"))
    if intervals and BOOTSTRAP in kinds:
        entries.append(("[a, b]", "", "95% percentile bootstrap interval over test images, 1000 resamples"))
    if intervals and OVER_SEEDS in kinds:
        entries.append(("[a, b] of a mean over seeds", "", "95% Student-t interval over the seeds pooled in the "
                                                           "column (the table's note says how many)"))
    if intervals and PAIRED in kinds:
        entries.append(("[a, b] of a difference", "", "95% Student-t interval of the paired differences over the "
                                                      "seeds both columns hold"))
    return entries


def _display_frame(table: Table, cell_text: Callable[[Cell, Row], str],
                   label_text: Callable[[Row], str]) -> pd.DataFrame:
    """The table as strings: a ``metric`` column, then one column per method
    (``""`` where a row has no cell for that method)."""
    records = [[label_text(row)] + [cell_text(row.cells[m], row) if m in row.cells else ""
                                    for m in table.columns] for row in table.rows]
    return pd.DataFrame(records, columns=["metric", *table.columns])


def _marks(table: Table, frame: pd.DataFrame, best: str, reference: str) -> pd.DataFrame:
    """Per non-empty cell of ``frame``, ``best`` on the rows' best cells, ``reference`` on
    every cell of reference rows, ``""`` elsewhere (same shape as ``frame``)."""
    marks = pd.DataFrame("", index=frame.index, columns=frame.columns)
    for i, row in enumerate(table.rows):
        if row.reference:
            marks.iloc[i] = [reference if text else "" for text in frame.iloc[i]]
        for method in row.best():
            if method in table.columns:
                marks.iloc[i, 1 + table.columns.index(method)] = best
    return marks


# --------------------------------------------------------------------------- Markdown


def markdown(tables: Sequence[Table], intervals: bool = True) -> str:
    """GitHub-flavoured Markdown: per table a ``### title`` heading, a pipe table (best
    cells bold, reference rows italic) and its note; one legend line at the end."""

    def text(s: str) -> str:
        return s.replace("|", "\\|")

    blocks = []
    for table in tables:
        frame = _display_frame(table, lambda c, r: format_cell(c, r, intervals), metric_label)
        marks = _marks(table, frame, "**", "*")
        shown = frame.map(text)
        shown = shown.where(marks == "", marks + shown + marks)
        shown.columns = [text(c) for c in frame.columns]
        pipe = shown.to_markdown(index=False, disable_numparse=True,
                                 colalign=["left"] + ["right"] * len(table.columns))
        blocks.append(f"### {table.title}\n\n{pipe}")
        if table.note:
            blocks.append(table.note)
    legend = _legend(tables, intervals)
    if legend:
        wrap = {"": "", "bold": "**", "italic": "*"}
        blocks.append("; ".join(f"{wrap[style]}{term}{wrap[style]}: {explanation}"
                                for term, style, explanation in legend) + ".")
    return "\n\n".join(blocks) + "\n"


# --------------------------------------------------------------------------- LaTeX


def _latex_cell(cell: Cell, row: Row, intervals: bool) -> str:
    """The cell for LaTeX: escaped, with a true minus sign for negative numbers."""
    return _tex(format_cell(cell, row, intervals).replace("-", "−"))


def _reference_rules(tabular: str, rows: Sequence[Row]) -> str:
    """``tabular`` with a ``\\midrule`` wherever the rows pass between measured and
    reference rows (the body lines follow the header's ``\\midrule``, one per row)."""
    lines = tabular.splitlines()
    body = lines.index(r"\midrule") + 1
    for i in range(len(rows) - 1, 0, -1):
        if rows[i].reference != rows[i - 1].reference:
            lines.insert(body + i, r"\midrule")
    return "\n".join(lines)


def _latex_table(table: Table, intervals: bool = True) -> str:
    """One ``table`` float: caption, label ``tab:{key}``, a booktabs tabular from
    ``Styler.to_latex`` shrunk to the text width when wider, and the note below."""
    frame = _display_frame(table, lambda c, r: _latex_cell(c, r, intervals),
                           lambda r: metric_label(r, latex=True))
    frame.columns = ["metric", *(_tex(m) for m in table.columns)]
    marks = _marks(table, frame, "textbf:--rwrap;", "textit:--rwrap;")
    styler = frame.style.hide(axis="index").apply(lambda _: marks, axis=None)
    tabular = styler.to_latex(hrules=True, column_format="l" + "r" * len(table.columns))
    lines = [r"\begin{table}[htbp]", r"\centering", rf"\caption{{{_tex(table.title)}}}",
             rf"\label{{tab:{_slug(table.key)}}}", r"\begin{adjustbox}{max width=\textwidth}",
             _reference_rules(tabular, table.rows), r"\end{adjustbox}"]
    if table.note:
        lines.append(rf"\par\smallskip\footnotesize {_tex(table.note)}")
    lines.append(r"\end{table}")
    return "\n".join(lines)


def latex(tables: Sequence[Table], intervals: bool = True, title: str = "") -> str:
    """A complete LaTeX document (compiles with pdflatex as is): an optional ``title``
    heading, one float per table (:func:`_latex_table`) and the legend."""
    parts = [LATEX_PREAMBLE + r"\begin{document}"]
    if title:
        parts.append(rf"\section*{{{_tex(title)}}}")
    parts += [_latex_table(table, intervals) for table in tables]
    legend = _legend(tables, intervals)
    if legend:
        wrap = {"": "{}", "bold": r"\textbf{{{}}}", "italic": r"\textit{{{}}}"}
        parts.append(r"\noindent\small " + "; ".join(
            f"{wrap[style].format(_tex(term))}: {_tex(explanation)}" for term, style, explanation in legend) + ".")
    parts.append(r"\end{document}")
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------- tidy frame


def long_frame(tables: Sequence[Table]) -> pd.DataFrame:
    """The tables in long (tidy) form, one row per (table, metric row, method with a
    cell), for one's own plots and for checking the numbers. Columns: ``table`` (key), ``metric``
    (row label; ``Δ ...`` in difference tables), ``unit``, ``better``, ``method``, ``value``,
    ``ci_low``, ``ci_high``, ``std`` (NaN where absent), ``seeds`` (in a difference row: the
    number of pairs), ``interval`` (what ``ci_low``/``ci_high`` are over, :func:`interval_kind`),
    ``verdict`` (difference rows: ``better``/``worse`` where the interval excludes 0),
    ``reference``, ``source``. A t-interval re-checks as ``value -+ t_{0.975, seeds-1} * std /
    sqrt(seeds)``."""

    def num(x: float | None) -> float:
        return math.nan if x is None else float(x)

    records = [
        {"table": table.key, "metric": row.label, "unit": row.unit, "better": row.better, "method": method,
         "value": num(cell.value), "ci_low": num(cell.low), "ci_high": num(cell.high), "std": num(cell.std),
         "seeds": cell.seeds, "interval": interval_kind(cell, row), "verdict": row.verdict(cell),
         "reference": row.reference, "source": row.source}
        for table in tables for row in table.rows
        for method in table.columns if (cell := row.cells.get(method)) is not None
    ]
    columns = ["table", "metric", "unit", "better", "method", "value", "ci_low", "ci_high", "std", "seeds",
               "interval", "verdict", "reference", "source"]
    return pd.DataFrame(records, columns=columns)


# --------------------------------------------------------------------------- HTML


def _html_cell(cell: Cell, row: Row, intervals: bool) -> str:
    """The cell as escaped HTML, its interval in a smaller grey span, then its verdict."""
    value, extra, verdict = _cell_parts(cell, row, intervals)
    if not extra:
        return htmllib.escape(value)
    return " ".join(part for part in (htmllib.escape(value), f'<span class="ci">{htmllib.escape(extra)}</span>',
                                      htmllib.escape(verdict)) if part)


def _html_table(table: Table, intervals: bool = True) -> str:
    """One table as an HTML ``<table>`` from ``Styler.to_html``: best cells with class
    ``best``, reference-row cells with class ``ref``, all text escaped."""
    frame = _display_frame(table, lambda c, r: _html_cell(c, r, intervals),
                           lambda r: htmllib.escape(metric_label(r)))
    styler = (frame.style.hide(axis="index").format_index(escape="html", axis=1)
              .set_td_classes(_marks(table, frame, "best", "ref")).set_uuid(_slug(table.key)))
    # Styler writes an empty <style> element per table; the page has one stylesheet.
    return re.sub(r'<style type="text/css">\s*</style>\s*', "", styler.to_html(cell_ids=False))


def _png_data_uri(path: str | Path) -> str:
    """The PNG file at ``path`` as a ``data:image/png;base64,`` URI."""
    data = Path(path).read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise UserError(f"figure {path} is not a PNG file; save figures with fig.savefig('name.png')")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def html(tables: Sequence[Table], figures: Sequence[tuple[str, str | Path]], title: str = "cutmix-eval report",
         intro: str = "", intervals: bool = True) -> str:
    """One self-contained HTML5 page (inline CSS, figures embedded as base64 PNG, no
    external resources): title, optional ``intro`` paragraph, table of contents, the
    tables with their notes, the legend, then ``figures`` given as
    ``(caption, path_to_png)`` pairs. All text is escaped."""
    esc = htmllib.escape
    toc = [f'<li><a href="#tab-{esc(_slug(t.key))}">{esc(t.title)}</a></li>' for t in tables]
    if figures:
        toc.append('<li><a href="#figures">Figures</a></li>')
    body = [f"<h1>{esc(title)}</h1>"]
    if intro:
        body.append(f"<p>{esc(intro)}</p>")
    body.append("<nav><h2>Contents</h2><ol>\n" + "\n".join(toc) + "\n</ol></nav>")
    for table in tables:
        section = [f'<section id="tab-{esc(_slug(table.key))}">', f"<h2>{esc(table.title)}</h2>",
                   f'<div class="scroll">\n{_html_table(table, intervals)}</div>']
        if table.note:
            section.append(f'<p class="note">{esc(table.note)}</p>')
        body.append("\n".join(section) + "\n</section>")
    legend = _legend(tables, intervals)
    if legend:
        wrap = {"": "{}", "bold": "<b>{}</b>", "italic": "<i>{}</i>"}
        body.append('<p class="legend">' + "; ".join(
            f"{wrap[style].format(esc(term))}: {esc(explanation)}" for term, style, explanation in legend) + ".</p>")
    if figures:
        shown = [f'<figure><img src="{_png_data_uri(path)}" alt="{esc(caption)}">'
                 f"<figcaption>{esc(caption)}</figcaption></figure>" for caption, path in figures]
        body.append('<section id="figures">\n<h2>Figures</h2>\n' + "\n".join(shown) + "\n</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n<style>{HTML_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
