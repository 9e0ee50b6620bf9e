"""A report from a results folder: comparison tables in every format, and figures.

:func:`write_report` reads the records of a results folder (never a model),
builds the tables (:mod:`cutmix_eval.report.comparison`) and one comparison figure
per analysis and dataset, and writes into the output folder::

    report.md     tables and figures (linked), for GitHub and notebooks
    report.tex    a complete LaTeX document of the tables (booktabs), compiles as is
    report.csv    every number in long format (one row per table, metric, method)
    report.html   one self-contained page: tables and every figure embedded
    figures/      the figures as PNG

The report is written whole: rendered into a hidden staging folder, then moved
into place, and the files the previous render of the folder wrote that this one
does not (another ``formats``, figures no longer drawn) are removed, so a folder
never mixes two reports, and a failed or interrupted render leaves the previous
one as it was. A manifest (``report-manifest.json``) of the inputs (the records'
JSON checksums), the options and the files written lets a second call with
nothing changed return at once without rendering.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cutmix_eval.catalog import REPORT_FORMATS as FORMATS  # light: the CLI lists them without this module
from cutmix_eval.errors import UserError
from cutmix_eval.fileio import atomic_save_figure, atomic_write_text, writable_folder
from cutmix_eval.report import render
from cutmix_eval.report.comparison import build_tables, columns_of, current_records, group_records, ordered_labels
from cutmix_eval.report.store import Record, ResultStore
from cutmix_eval.report.view import View

MANIFEST = "report-manifest.json"


@dataclass
class ReportOutcome:
    paths: dict[str, Path]
    figures: list[Path]
    reused: bool


def check_formats(formats: Sequence[str]) -> list[str]:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UserError(f"unknown report format {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(formats))


def _inputs_digest(record_files: Sequence[Path], options: dict[str, Any], extra: Sequence[Path]) -> str:
    from cutmix_eval import __version__

    digest = hashlib.sha256(json.dumps({"options": options, "version": __version__}, sort_keys=True).encode())
    for path in [*record_files, *extra]:
        try:
            content = path.read_bytes()
        except OSError:  # unreadable: the records' reader warns about it and leaves it out
            content = b""
        digest.update(path.name.encode() + hashlib.sha256(content).digest())
    return digest.hexdigest()


def _record_files(results_dir: Path) -> list[Path]:
    """The candidate record files of a results folder: its ``*.json`` files, less folders and
    a report's own manifest (a report may be written into the results folder itself)."""
    return sorted(p for p in results_dir.glob("*.json") if p.is_file() and p.name != MANIFEST)


def _previous_manifest(manifest: Path) -> dict[str, Any]:
    """The manifest of the last render; an unreadable one reads as none (render again)."""
    try:
        previous = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return previous if isinstance(previous, dict) else {}


def write_report(results_dir: str | Path, out_dir: str | Path, formats: Sequence[str] = FORMATS, *,
                 views: Mapping[str, View], intervals: bool = True, title: str = "cutmix-eval report", intro: str = "",
                 force: bool = False, extra_figures: Sequence[tuple[str, Path]] = (),
                 only: Sequence[Path] | None = None) -> ReportOutcome:
    """Render the report of the records in ``results_dir`` (or of the record files ``only``,
    e.g. a study's, when given) into ``out_dir`` (see the module docstring), each analysis as
    its view in ``views`` shows it (:func:`cutmix_eval.analyses.write_report` passes the
    registered ones); ``extra_figures`` (caption, PNG path) are shown before the comparison
    figures.

    The report is written whole: every file is rendered into a hidden staging folder in
    ``out_dir`` first, then moved into place, and what the previous render of ``out_dir``
    wrote (listed in its manifest) and this one does not is removed. A failed or interrupted
    render leaves the previous report as it was."""
    results_dir, out_dir, formats = Path(results_dir), Path(out_dir), check_formats(formats)
    if not results_dir.is_dir():
        raise UserError(f"results folder {results_dir} does not exist; run an evaluation or a study first")
    record_files = sorted(Path(p) for p in only) if only is not None else _record_files(results_dir)
    options = {"formats": formats, "intervals": intervals, "title": title, "intro": intro,
               "extra": [[caption, str(path)] for caption, path in extra_figures]}
    digest = _inputs_digest(record_files, options, [Path(p) for _, p in extra_figures])
    paths = {f: out_dir / f"report.{f}" for f in formats}
    manifest = out_dir / MANIFEST
    previous = _previous_manifest(manifest)
    if not force and all(p.exists() for p in paths.values()) and previous.get("digest") == digest \
            and all(Path(p).exists() for p in previous.get("figures", [])):
        return ReportOutcome(paths, [Path(p) for p in previous["figures"]], reused=True)
    records = current_records(ResultStore(results_dir).records(record_files))
    if not records:
        raise UserError(f"no records in {results_dir}; run an evaluation or a study into it first")
    tables = build_tables(records, views, intervals=intervals)
    writable_folder(out_dir, "output folder")
    stage = Path(tempfile.mkdtemp(prefix=".report-staging.", suffix=".tmp", dir=out_dir))
    try:
        drawn = [(caption, Path("figures") / f"{name}.png", figure)
                 for name, caption, figure in comparison_figures(records, views)]
        for _, name, figure in drawn:
            atomic_save_figure(stage / name, figure, dpi=150)
        shown = [(caption, Path(path)) for caption, path in extra_figures]
        figures = shown + [(caption, out_dir / name) for caption, name, _ in drawn]  # where they will be
        staged = shown + [(caption, stage / name) for caption, name, _ in drawn]  # where they are now
        writers = {
            "md": lambda: markdown_document(tables, figures, out_dir, title, intro, intervals),
            "tex": lambda: render.latex(tables, intervals=intervals, title=title),
            "csv": lambda: render.long_frame(tables).to_csv(index=False),
            "html": lambda: render.html(tables, staged, title=title, intro=intro, intervals=intervals),
        }
        for name, path in paths.items():
            atomic_write_text(stage / path.name, writers[name]())
        written = [p.name for p in paths.values()] + [name.as_posix() for _, name, _ in drawn]
        _swap_in(stage, out_dir, written, _previous_files(previous, out_dir, shown))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    atomic_write_text(manifest, json.dumps({"digest": digest, "written": written,
                                            "figures": [str(p) for _, p in figures]}, indent=1))
    return ReportOutcome(paths, [p for _, p in figures], reused=False)


def _previous_files(previous: dict[str, Any], out_dir: Path, kept: Sequence[tuple[str, Path]]) -> list[str]:
    """What the previous render wrote into ``out_dir``, relative to it: its manifest's
    ``written`` list (manifests before it had none: then the report files of every format and
    the figures it listed; no manifest: nothing), less the figures passed in again (``kept``:
    not ours to remove)."""
    if not previous:
        return []
    if isinstance(previous.get("written"), list):
        names = [str(n) for n in previous["written"]]
    else:
        names = [f"report.{f}" for f in FORMATS] + [Path(p).relative_to(out_dir).as_posix()
                                                  for p in previous.get("figures", [])
                                                  if Path(p).is_relative_to(out_dir)]
    mine = {Path(p).resolve() for _, p in kept}
    inside = [n for n in names if not Path(n).is_absolute() and ".." not in Path(n).parts]
    return [n for n in inside if (out_dir / n).resolve() not in mine]


def _swap_in(stage: Path, out_dir: Path, written: Sequence[str], previous: Sequence[str]) -> None:
    """Move the files ``written`` (relative names) from ``stage`` into ``out_dir`` (a rename
    each), then remove the ``previous`` render's files that this one did not write."""
    for name in written:
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / name, out_dir / name)
    for name in set(previous) - set(written):
        (out_dir / name).unlink(missing_ok=True)


def markdown_document(tables, figures, out_dir: Path, title: str, intro: str, intervals: bool) -> str:
    parts = [f"# {title}", intro, render.markdown(tables, intervals=intervals)]
    if figures:
        parts.append("## Figures")
        parts += [f"![{caption}]({path.relative_to(out_dir).as_posix()})\n\n*{caption}*" for caption, path in figures]
    return "\n\n".join(p for p in parts if p) + "\n"


# --------------------------------------------------------------------------- figures


def comparison_figures(records: Sequence[Record], views: Mapping[str, View]) -> list[tuple[str, str, Any]]:
    """``(file stem, caption, matplotlib Figure)`` per analysis group that the analysis's view
    draws, the tables' columns (:func:`~cutmix_eval.report.comparison.columns_of`) in the paper's
    order, each in one colour across all the figures; of a column pooling several seeds the
    first one is drawn. Each figure's title names what it shows and on which data; split groups
    (OOD scores) name their part in the title, the caption and the file stem."""
    from cutmix_eval.report import figures as fig

    out = []
    groups = group_records(records, views)
    order = list(views)  # the tables' order
    columns = {key: {label: pooled[0] for label, pooled in columns_of(members).items()}
               for key, members in groups.items()}
    colours = fig.method_colours(ordered_labels(list(dict.fromkeys(label for c in columns.values() for label in c))))
    for key in sorted(groups, key=lambda k: (k[1], k[2], order.index(k[0]), k[5], k[4])):
        analysis, dataset, split, _, _, part = key
        drawer = views[analysis].figure
        drawn = drawer(columns[key], colours, f"{dataset}/{split}") if drawer else None
        if drawn is None:
            continue
        name, caption, figure = drawn
        stem = "-".join(p for p in (name, part, dataset, split) if p)
        suffix = sum(1 for s, _, _ in out if s.startswith(stem))
        out.append((stem + (f"-{suffix + 1}" if suffix else ""), f"{caption} ({dataset}/{split})", figure))
    return out + _across_splits(groups, columns, views, colours)


def _across_splits(groups, columns, views, colours) -> list[tuple[str, str, Any]]:
    """The figures of views that compare their split parts (OOD: every score of the same records)."""
    parts: dict[tuple, dict[str, dict]] = {}
    for key in sorted(groups, key=lambda k: (k[1], k[2], k[0], k[4], k[5])):
        if views[key[0]].across_splits and key[5]:
            parts.setdefault(key[:5], {})[key[5]] = columns[key]
    out = []
    for (analysis, dataset, split, _, _), by_part in parts.items():
        drawn = views[analysis].across_splits(by_part, colours, f"{dataset}/{split}") if len(by_part) > 1 else None
        if drawn is not None:
            name, caption, figure = drawn
            stem = f"{name}-{dataset}-{split}"
            suffix = sum(1 for s, _, _ in out if s.startswith(stem))
            out.append((stem + (f"-{suffix + 1}" if suffix else ""), f"{caption} ({dataset}/{split})", figure))
    return out
