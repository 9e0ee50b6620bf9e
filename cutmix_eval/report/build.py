"""A report from a results folder: comparison tables in every format, and figures.

:func:`write_report` reads the records of a results folder (never a model),
builds the tables (:mod:`cutmix_eval.report.comparison`) and one comparison figure
per analysis and dataset, and writes into the output folder::

    report.md     tables and figures (linked), for GitHub and notebooks
    report.tex    a complete LaTeX document of the tables (booktabs), compiles as is
    report.csv    every number in long format (one row per table, metric, method)
    report.html   one self-contained page: tables and every figure embedded
    figures/      the figures as PNG

Every file is written atomically. A manifest of the inputs (the records' JSON
checksums) and the options lets a second call with nothing changed return at
once without rendering.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cutmix_eval.errors import UserError
from cutmix_eval.fileio import atomic_save_figure, atomic_write_text
from cutmix_eval.metrics.corruption import severity_scope
from cutmix_eval.metrics.ood import roc_points
from cutmix_eval.report import figures as fig
from cutmix_eval.report import render
from cutmix_eval.report.comparison import build_tables, group_records, method_label, ordered_labels, result_of
from cutmix_eval.report.store import Record, ResultStore, examples_from_arrays

FORMATS = ("md", "tex", "csv", "html")
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
                 intervals: bool = True, title: str = "cutmix-eval report", intro: str = "",
                 force: bool = False, extra_figures: Sequence[tuple[str, Path]] = (),
                 only: Sequence[Path] | None = None) -> ReportOutcome:
    """Render the report of the records in ``results_dir`` (or of the record files ``only``,
    e.g. a study's, when given) into ``out_dir`` (see the module docstring); ``extra_figures``
    (caption, PNG path) are shown before the comparison figures."""
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
    records = ResultStore(results_dir).records(record_files)
    if not records:
        raise UserError(f"no records in {results_dir}; run an evaluation or a study into it first")
    tables = build_tables(records, intervals=intervals)
    figures = [(caption, Path(path)) for caption, path in extra_figures]
    figures += [(caption, atomic_save_figure(out_dir / "figures" / f"{name}.png", figure, dpi=150))
                for name, caption, figure in comparison_figures(records)]
    writers = {
        "md": lambda: markdown_document(tables, figures, out_dir, title, intro, intervals),
        "tex": lambda: render.latex(tables, intervals=intervals, title=title),
        "csv": lambda: render.long_frame(tables).to_csv(index=False),
        "html": lambda: render.html(tables, figures, title=title, intro=intro, intervals=intervals),
    }
    for name, path in paths.items():
        atomic_write_text(path, writers[name]())
    atomic_write_text(manifest, json.dumps({"digest": digest, "figures": [str(p) for _, p in figures]}, indent=1))
    for stale in set(previous.get("figures", [])) - {str(p) for _, p in figures}:  # drawn last time, not now
        Path(stale).unlink(missing_ok=True)
    return ReportOutcome(paths, [p for _, p in figures], reused=False)


def markdown_document(tables, figures, out_dir: Path, title: str, intro: str, intervals: bool) -> str:
    parts = [f"# {title}", intro, render.markdown(tables, intervals=intervals)]
    if figures:
        parts.append("## Figures")
        parts += [f"![{caption}]({path.relative_to(out_dir).as_posix()})\n\n*{caption}*" for caption, path in figures]
    return "\n\n".join(p for p in parts if p) + "\n"


# --------------------------------------------------------------------------- figures


def comparison_figures(records: Sequence[Record]) -> list[tuple[str, str, Any]]:
    """``(file stem, caption, matplotlib Figure)`` per analysis group, methods in the
    paper's order and in their fixed colours; with several checkpoints per method the
    first one is drawn."""
    out = []
    groups = group_records(records)
    order = list(DRAWERS)  # the tables' order
    for key in sorted(groups, key=lambda k: (k[1], k[2], order.index(k[0]), k[5], k[4])):
        analysis, dataset, split, _, _, score = key
        columns: dict[str, Record] = {}
        for record in groups[key]:
            columns.setdefault(method_label(record), record)
        columns = {label: columns[label] for label in ordered_labels(list(columns))}
        drawn = DRAWERS[analysis](columns)
        if drawn is None:
            continue
        name, caption, figure = drawn
        stem = "-".join(p for p in (name, score, dataset, split) if p)
        suffix = sum(1 for s, _, _ in out if s.startswith(stem))
        out.append((stem + (f"-{suffix + 1}" if suffix else ""), f"{caption} ({dataset}/{split})", figure))
    return out


def _results(columns: dict[str, Record], evaluator: str | None = None) -> dict[str, Any]:
    return {label: (result_of(r, evaluator) if evaluator else r.results[0]) for label, r in columns.items()}


def _reliability(columns):
    results = {k: v for k, v in _results(columns, "calibration").items() if v is not None}
    if not results:
        return None
    labels = [f"{label} (ECE {100 * r.metrics['ece']:.2f}%)" for label, r in results.items()]
    colours = [fig.method_colour(label, i) for i, label in enumerate(results)]
    return ("reliability", "Reliability diagrams, 15 confidence bins",
            fig.reliability_diagram([r.curves["reliability"] for r in results.values()], labels, colours=colours))


def _roc(columns):
    results = _results(columns)
    sets = list(next(iter(results.values())).dataset["ood_sets"])
    if "id/score" not in next(iter(results.values())).per_sample:
        return None  # per-set ID scores (ODIN): no shared ROC
    panels = [{"title": name, "xlabel": "false positive rate (OOD accepted)",
               "ylabel": "true positive rate (ID accepted)"} for name in sets]
    series = {label: [roc_points(r.per_sample["id/score"], r.per_sample[f"{n}/score"]) for n in sets]
              for label, r in results.items()}
    return "roc", "ROC curves per OOD set, ID positive", fig.line_panels(panels, series, percent=False,
                                                                         markers=False)


def _cams(columns):
    shown = {label: examples_from_arrays(r.artifacts) for label, r in columns.items()
             if "examples/image" in r.artifacts}
    if not shown:
        return None
    count = min(8, *(len(e["image"]) for e in shown.values()))

    def joined(key: str) -> list:
        return [x for e in shown.values() for x in e[key][:count]]

    titles = next(iter(shown.values()))["title"][:count] + [""] * (count * (len(shown) - 1))
    figure = fig.sample_grid(np.stack(joined("image")), boxes=joined("boxes"), heatmaps=joined("map"),
                             pred_boxes=joined("pred_boxes"), pred_inclusive=True, titles=titles, ncols=count,
                             row_labels=list(shown))
    return ("cam", "Class activation maps of the same test images: ground-truth box green, the box at each "
                   "model's best threshold red (dashed)", figure)


def _occlusion(columns):
    results = _results(columns)
    fill = next(iter(results.values())).config.get("fill", "")
    return ("occlusion", "Top-1 accuracy under centre and boundary occlusion (paper Fig. 5a)",
            fig.occlusion_figure({k: r.curves for k, r in results.items()}, fill=str(fill)))


def _inbetween(columns):
    return ("inbetween", "Rate of predicting neither class of in-between samples (paper Fig. 5b), lower is better",
            fig.inbetween_figure({k: r.curves for k, r in _results(columns).items()}))


def _adversarial(columns):
    return ("adversarial", "Top-1 accuracy against the attack radius eps",
            fig.adversarial_figure({k: r.curves for k, r in _results(columns).items()}))


def _corruption(columns):
    results = _results(columns)
    first = next(iter(results.values()))
    return ("corruption", "Top-1 error (%) per corruption and severity"
            + severity_scope(first.curves["severities"], " ({} only)"),
            fig.corruption_heatmap({k: r.curves["errors"] for k, r in results.items()}, first.curves["severities"],
                                   groups=first.curves["group_of"]))


DRAWERS = {"classification": _reliability, "localization": _cams, "ood": _roc, "occlusion": _occlusion,
           "inbetween": _inbetween, "adversarial": _adversarial, "corruption": _corruption}
