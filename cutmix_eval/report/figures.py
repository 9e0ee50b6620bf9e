"""Figures for reports and papers, as pure functions returning matplotlib figures.

They use the non-interactive Agg backend, draw nothing on screen and write
nothing: the caller saves the returned figure (``fig.savefig(path)``). Each lays
itself out (constrained layout, or margins computed for image grids), so a plain
``savefig`` clips no label; titles name what the figure shows, and legends sit
outside the panels.
"""

from __future__ import annotations

import itertools
import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

BOX_COLOUR = "#39ff14"  # ground truth
PRED_COLOUR = "#ff2d2d"  # predictions
MASK_COLOUR = "white"


def _numpy(array: Any) -> np.ndarray:
    """A tensor or array-like as a numpy array (detached, on the CPU)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def sample_grid(images: Any, boxes: Sequence[Any] | None = None, masks: Any = None,
                titles: Sequence[str] | None = None, ncols: int = 8, *,
                row_labels: Sequence[str] | None = None, inclusive_boxes: bool = False,
                cell_inches: float = 1.0, heatmaps: Any = None, pred_boxes: Sequence[Any] | None = None,
                pred_inclusive: bool = False, title: str = "") -> Figure:
    """A grid of images with their boxes and mask outlines.

    ``images``: ``N x 3 x H x W`` floats in [0, 1] (array or tensor). ``boxes``:
    per image an ``M x 4`` XYXY array (or None), drawn as rectangles; with
    ``inclusive_boxes`` the coordinates are inclusive pixel indices (the
    ``torchvision.ops.masks_to_boxes`` convention), otherwise continuous pixel-edge
    coordinates (the data layer's); either way the rectangle goes round the outer
    edges of the boxed pixels.
    ``masks``: per image an ``H x W`` array whose 0.5 level is outlined (values
    other than 0/1, such as 255 = ignore, count as object). ``titles``: one title per
    image, shown as :func:`image_title` makes it fit the cell (class names such as CUB's
    ``001.Black_footed_Albatross`` wrap on two lines). Images fill the grid row by row, ``ncols`` per row;
    ``row_labels`` (one per row) are written at the left of each row.
    ``heatmaps``: per image an ``H x W`` map in [0, 1] drawn over the image (jet,
    half transparent), e.g. a class activation map at the image's resolution.
    ``pred_boxes``: per image predicted boxes, drawn dashed in red
    (``pred_inclusive`` as ``inclusive_boxes``), next to the ground truth in green.
    ``title``: written above the grid, in room kept for it.
    """
    images = _numpy(images)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be N x 3 x H x W, not {images.shape}")
    count = len(images)
    ncols = max(1, min(ncols, count))
    nrows = math.ceil(count / ncols)
    if titles is not None:
        titles = [image_title(t, cell_inches) for t in titles]
    # inches above each image for its title (7 pt lines), and above the grid for the figure's title
    title_room = 0.04 + 0.13 * max([t.count("\n") + 1 for t in titles if t] + [0]) if titles else 0.04
    width = ncols * cell_inches + (1.3 if row_labels else 0.1)
    title = "\n".join(textwrap.wrap(title, int(15 * width)))  # 8 pt: about 15 characters an inch
    top_room = 0.1 + (0.05 + 0.16 * (title.count("\n") + 1) if title else 0.0)
    fig = Figure(figsize=(width, nrows * (cell_inches + title_room) + top_room))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    # imshow centres pixel i at i, so its outer edges are i - 0.5 and i + 0.5
    pad = 1.0 if inclusive_boxes else 0.0
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= count:
            ax.axis("off")
            continue
        ax.imshow(np.clip(images[i].transpose(1, 2, 0), 0, 1), interpolation="nearest")
        if heatmaps is not None and heatmaps[i] is not None:
            ax.imshow(_numpy(heatmaps[i]), cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0, interpolation="bilinear")
        if masks is not None and masks[i] is not None:
            ax.contour((_numpy(masks[i]) > 0).astype(float), levels=[0.5], colors=MASK_COLOUR,
                       linewidths=0.7, linestyles="dashed")
        _draw_boxes(ax, boxes[i] if boxes is not None else None, pad, BOX_COLOUR, "solid")
        _draw_boxes(ax, pred_boxes[i] if pred_boxes is not None else None, 1.0 if pred_inclusive else 0.0,
                    PRED_COLOUR, "dashed")
        if titles is not None:
            ax.set_title(titles[i], fontsize=7, pad=2)
        for spine in ax.spines.values():
            spine.set_linewidth(0.4)
    if row_labels is not None:
        for label, row in zip(row_labels, axes):
            row[0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center", labelpad=4)
    height = fig.get_figheight()
    fig.subplots_adjust(left=(1.25 / fig.get_figwidth()) if row_labels else 0.01, right=0.99,
                        bottom=0.01, top=1 - (top_room + title_room - 0.04) / height, wspace=0.05,
                        hspace=title_room / cell_inches)
    if title:
        fig.suptitle(title, fontsize=8, y=1 - 0.06 / height, va="top")
    return fig


def image_title(text: str, cell_inches: float = 1.0, lines: int = 2) -> str:
    """A title that fits over an image ``cell_inches`` wide at 7 pt: a numeric class-index
    prefix dropped (CUB's ``001.Black_footed_Albatross``), underscores as spaces, wrapped
    on at most ``lines`` lines and shortened with an ellipsis beyond."""
    text = re.sub(r"^\d+\.(?=[A-Za-z])", "", str(text)).replace("_", " ")
    return "\n".join(textwrap.wrap(text, max(6, int(17 * cell_inches)), max_lines=lines, placeholder="…"))


def _draw_boxes(ax, boxes: Any, pad: float, colour: str, linestyle: str) -> None:
    """XYXY boxes as rectangles round the outer edges of the boxed pixels (imshow
    centres pixel i at i); ``pad`` is 1 for inclusive pixel indices, 0 for edges."""
    if boxes is None:
        return
    for x0, y0, x1, y1 in _numpy(boxes).reshape(-1, 4):
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + pad, y1 - y0 + pad, fill=False,
                               edgecolor=colour, linewidth=1.1, linestyle=linestyle))


def _style(ax) -> None:
    """Small ticks and labels, no top/right spines: the look of every curve panel."""
    ax.tick_params(labelsize=7)
    ax.xaxis.label.set_size(8)
    ax.yaxis.label.set_size(8)
    ax.spines[["top", "right"]].set_visible(False)


def _outside_legend(fig: Figure, handles: Sequence[Any], labels: Sequence[str], title: str | None = None) -> None:
    """One legend for the whole figure, right of the panels (never over the data); the
    figure must use constrained layout, which keeps room for it."""
    fig.legend(handles, labels, loc="outside right upper", fontsize=7, frameon=False, title=title,
               title_fontsize=7)


def ood_scores_figure(pairs: dict[str, tuple[Any, Any]], score: str, roc: dict[str, tuple[Any, Any, float]],
                      title: str = "") -> Figure:
    """Score histograms (ID against each OOD set) and ROC curves, side by side.

    ``pairs``: ``{set: (ID scores, OOD scores)}`` (higher = more in-distribution);
    ``roc``: ``{set: (fpr, tpr, auroc)}`` with ID positive. Histograms share bins
    over all scores and are normalized to densities, so sets of different sizes
    compare; the ID histogram is filled grey, each OOD set a coloured outline. One
    legend at the right names the sets with their AUROC. ``title`` defaults to
    naming the score.
    """
    fig = Figure(figsize=(9.5, 3.6), layout="constrained")
    hist, curve = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.35, 1]})
    everything = np.concatenate([np.concatenate([_numpy(a), _numpy(b)]) for a, b in pairs.values()])
    bins = np.histogram_bin_edges(everything, bins=50)
    first_id = _numpy(next(iter(pairs.values()))[0])
    shared_id = all(np.array_equal(_numpy(a), first_id) for a, _ in pairs.values())
    handles, labels = [], []
    if shared_id:
        handles.append(hist.hist(first_id, bins=bins, density=True, color="0.75")[2][0])
        labels.append("in-distribution")
    colours = matplotlib.colormaps["tab10"]
    for i, (name, (id_scores, ood_scores)) in enumerate(pairs.items()):
        if not shared_id:  # ODIN: each set has its own ID scores (its own temperature and noise)
            hist.hist(_numpy(id_scores), bins=bins, density=True, histtype="step", color=colours(i),
                      linestyle="dotted", linewidth=1.0)
        hist.hist(_numpy(ood_scores), bins=bins, density=True, histtype="step", color=colours(i), linewidth=1.3)
        fpr, tpr, auroc = roc[name]
        handles += curve.plot(_numpy(fpr), _numpy(tpr), color=colours(i), linewidth=1.3)
        labels.append(f"{name} ({100 * auroc:.1f})")
    hist.set_xlabel(f"{score} score (higher = more in-distribution)")
    hist.set_ylabel("density")
    curve.plot([0, 1], [0, 1], color="0.6", linewidth=0.8, linestyle="dashed")
    curve.axhline(0.95, color="0.6", linewidth=0.6, linestyle="dotted")
    curve.set_xlabel("false positive rate (OOD accepted)")
    curve.set_ylabel("true positive rate (ID accepted)")
    curve.set_xlim(0, 1)
    curve.set_ylim(0, 1.01)
    for ax in (hist, curve):
        _style(ax)
    _outside_legend(fig, handles, labels, title="OOD set (AUROC %)" + ("" if shared_id else "\nID dotted"))
    fig.suptitle(title or f"{score} score: ID against each OOD set", fontsize=9)
    return fig


def detectors_figure(values: Mapping[str, Mapping[str, Mapping[str, float]]], panels: Sequence[tuple[str, str]],
                     colours: Mapping[str, str] | None = None, title: str = "") -> Figure:
    """OOD detectors against each other and methods against each other: one panel per
    ``(metric key, panel title)`` of ``panels`` (e.g. ``("near/auroc", "near-OOD AUROC")``),
    a row of horizontal bars per detector, one bar per method in its colour.

    ``values``: ``{detector: {method: {metric key: fraction}}}``, detectors top to bottom in
    the order given; a method missing for a detector leaves a gap. Values are drawn in percent
    on a 0-100 axis, each bar labelled with its value; the x label says whether higher
    (AUROC) or lower (FPR@95) is better.
    """
    detectors = list(values)
    methods = list(dict.fromkeys(m for per in values.values() for m in per))
    colours = colours or method_colours(methods)
    height = 0.8 / max(len(methods), 1)
    ncols = min(len(panels), 2)
    nrows = math.ceil(len(panels) / ncols)
    rows_inches = 0.22 * len(detectors) * max(len(methods), 1) ** 0.5 + 0.9
    fig = Figure(figsize=(3.9 * ncols + 1.4, rows_inches * nrows + 0.4), layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False)
    for ax in grid.flat[len(panels):]:
        ax.axis("off")
    handles = {}
    for ax, (key, panel_title) in zip(grid.flat, panels):
        for j, method in enumerate(methods):
            ys, xs = [], []
            for i, detector in enumerate(detectors):
                value = values[detector].get(method, {}).get(key)
                if value is not None:
                    ys.append(i - 0.4 + height * (j + 0.5))
                    xs.append(100 * value)
            bars = ax.barh(ys, xs, height=height * 0.92, color=colours[method])
            handles[method] = bars
            for y, x in zip(ys, xs):
                ax.text(x + 1, y, f"{x:.1f}", va="center", fontsize=5.5, color="0.25")
        ax.set_yticks(range(len(detectors)), detectors, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 112)
        ax.set_title(panel_title, fontsize=8)
        ax.set_xlabel("% (lower is better)" if "fpr" in key else "% (higher is better)")
        ax.grid(True, axis="x", linewidth=0.3, color="0.85")
        _style(ax)
    if len(methods) > 1:
        _outside_legend(fig, list(handles.values()), list(handles), title="method")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def reliability_diagram(curves: Sequence[dict[str, Any]], labels: Sequence[str], title: str = "",
                        colours: Sequence[str] | None = None, max_columns: int = 4) -> Figure:
    """Reliability diagrams side by side: accuracy per confidence bin against the diagonal.

    Each curve is a dict with ``edges`` (B + 1), ``count``, ``accuracy`` and
    ``confidence`` (B each; NaN where a bin is empty). Bars show each bin's accuracy,
    the red outline its gap to the bin's mean confidence; the panel below the share
    of images per bin. ``colours``: one bar colour per panel (e.g. each method's).
    Panels wrap after ``max_columns`` per row; the first one holds the legend.
    """
    ncols = min(len(curves), max_columns)
    nrows = math.ceil(len(curves) / ncols)
    fig = Figure(figsize=(3.0 * ncols + 0.2, 3.6 * nrows + 0.3), layout="constrained")
    grid = fig.add_gridspec(2 * nrows, ncols, height_ratios=[3, 1] * nrows)
    for i, (curve, label) in enumerate(zip(curves, labels)):
        row, column = divmod(i, ncols)
        top = fig.add_subplot(grid[2 * row, column])
        bottom = fig.add_subplot(grid[2 * row + 1, column], sharex=top)
        edges, count = _numpy(curve["edges"]).astype(float), _numpy(curve["count"]).astype(float)
        accuracy = np.nan_to_num(_numpy(curve["accuracy"]).astype(float))
        confidence = _numpy(curve["confidence"]).astype(float)
        left, width = edges[:-1], np.diff(edges)
        top.bar(left, accuracy, width=width, align="edge", color=colours[i] if colours else "#4c72b0",
                edgecolor="white", linewidth=0.5, label="accuracy")
        filled = count > 0
        top.bar(left[filled], (confidence - accuracy)[filled], bottom=accuracy[filled], width=width[filled],
                align="edge", fill=False, edgecolor=PRED_COLOUR, linewidth=0.8, hatch="///", label="gap to confidence")
        top.plot([0, 1], [0, 1], color="0.4", linewidth=0.8, linestyle="dashed")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_title(label, fontsize=8)
        top.set_ylabel("accuracy")
        top.tick_params(labelbottom=False)
        if i == 0:
            top.legend(fontsize=6, frameon=False, loc="upper left")
        bottom.bar(left, count / max(count.sum(), 1), width=width, align="edge", color="0.6", edgecolor="white",
                   linewidth=0.5)
        bottom.set_xlabel("confidence (max softmax)")
        bottom.set_ylabel("share")
        for ax in (top, bottom):
            _style(ax)
    fig.suptitle(title or "Reliability diagrams", fontsize=9)
    return fig


#: one colour per training method (``catalog.METHODS``): the paper's four from Okabe-Ito; the others
#: each a hue of their own, so that a method and its variants (cutmix, cutmix-feature) stay apart
METHOD_COLOURS = {"baseline": "#555555", "mixup": "#0072b2", "cutout": "#009e73", "cutmix": "#d55e00",
                  "cutmix-center-gaussian": "#fdae6b", "cutmix-fixed-size": "#7f2704", "cutmix-scheduled": "#e7298a",
                  "cutmix-one-hot": "#999933", "cutmix-complete-label": "#882255", "cutmix-feature": "#a6761d",
                  "manifold-mixup": "#56b4e9", "fmix": "#e69f00", "smoothmix": "#bcbd22", "puzzlemix": "#9467bd",
                  "resizemix": "#8c564b", "saliencymix": "#cc79a7", "snapmix": "#17becf", "gridmix": "#000000",
                  "regmixup": "#08306b", "mixup-cutmix": "#66a61e"}
#: for other labels, in turn: tab20b/tab20c's dark shades, none of them a method's
OTHER_COLOURS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#31a354", "#756bb1")


def method_colours(labels: Sequence[str]) -> dict[str, str]:
    """A distinct colour per label: the training methods keep theirs (matched on the label's first
    word, so ``cutmix``, ``CutMix`` and ``cutmix seed 1`` agree), every other label (and a second
    label of the same method) takes the next of :data:`OTHER_COLOURS` in the order given, so
    figures drawn with the same labels colour them alike."""
    colours: dict[str, str] = {}
    others = itertools.cycle(OTHER_COLOURS)
    for label in dict.fromkeys(labels):
        fixed = METHOD_COLOURS.get(label.split()[0].lower() if label.split() else "")
        colours[label] = fixed if fixed and fixed not in colours.values() else next(others)
    return colours


def adversarial_figure(curves: dict[str, dict[str, dict[str, Any]]], title: str = "",
                       colours: Mapping[str, str] | None = None) -> Figure:
    """Accuracy against eps, one panel per attack, one line per model.

    ``curves``: ``{model label: {attack: {"eps": [...], "accuracy": [...]}}}`` with eps in
    [0, 1] pixel units (drawn in units of 1/255) and the clean accuracy at eps 0.
    """
    attacks = list(dict.fromkeys(a for per_model in curves.values() for a in per_model))
    panels = [{"title": attack.upper(), "xlabel": "eps (x 1/255, pixel space)", "ylabel": "top-1 accuracy (%)"}
              for attack in attacks]
    series = {label: [(255 * np.asarray(c[a]["eps"], dtype=float), c[a]["accuracy"]) if a in c else None
                      for a in attacks] for label, c in curves.items()}
    return line_panels(panels, series, title=title or "Top-1 accuracy under attack", colours=colours)


def occlusion_figure(curves: dict[str, dict[str, dict[str, Any]]], fill: str = "", title: str = "",
                     colours: Mapping[str, str] | None = None) -> Figure:
    """Top-1 accuracy against hole size, one panel per occlusion mode, one line per model
    (the paper's Fig. 5a).

    ``curves``: ``{model label: {mode: {"fraction": [...], "accuracy": [...]}}}``, the
    ``curves`` of occlusion Results; ``fill`` is named in the panel titles.
    """
    modes = list(dict.fromkeys(m for per_model in curves.values() for m in per_model))
    hidden = {"centre": "side of the centred hole", "boundary": "side of the centred window kept"}
    panels = [{"title": f"{mode} occlusion" + (f" ({fill} fill)" if fill else ""),
               "xlabel": f"{hidden.get(mode, 'side')}\n(fraction of the image side)", "ylabel": "top-1 accuracy (%)"}
              for mode in modes]
    series = {label: [(c[m]["fraction"], c[m]["accuracy"]) if m in c else None for m in modes]
              for label, c in curves.items()}
    return line_panels(panels, series, title=title or "Top-1 accuracy under occlusion", colours=colours)


def inbetween_figure(curves: dict[str, dict[str, dict[str, Any]]], title: str = "",
                     colours: Mapping[str, str] | None = None) -> Figure:
    """How often models predict neither class of in-between samples (the paper's Fig. 5b):
    one panel per kind (Mixup-style against ``t``, CutMix-style against ``s``), one line per
    model; lower is better.

    ``curves``: ``{model label: {kind: {"grid": [...], "rate_neither": [...]}}}``, the
    ``curves`` of in-between Results.
    """
    kinds = list(dict.fromkeys(k for per_model in curves.values() for k in per_model))
    axis = {"mixup": "partner's share t in (1 - t) A + t B",
            "cutmix": "side s of the partner's centred patch (fraction)"}
    panels = [{"title": f"{kind}-style in-between samples", "xlabel": axis.get(kind, kind),
               "ylabel": "predicted neither class (%)"} for kind in kinds]
    series = {label: [(c[k]["grid"], c[k]["rate_neither"]) if k in c else None for k in kinds]
              for label, c in curves.items()}
    return line_panels(panels, series, title=title or "Predicting neither class of in-between samples",
                       colours=colours)


def line_panels(panels: Sequence[dict[str, str]], series: dict[str, Sequence[tuple[Any, Any]]], *,
                linestyles: dict[str, str] | None = None, title: str = "", percent: bool = True,
                panel_inches: float = 3.2, markers: bool = True, max_columns: int = 3,
                colours: Mapping[str, str] | None = None) -> Figure:
    """Curves of several models side by side, one panel per analysis.

    ``panels``: per panel a dict with ``title``, ``xlabel`` and ``ylabel``. ``series``:
    ``{label: [(x, y) for each panel]}`` (``None`` instead of ``(x, y)`` leaves that
    panel without the series); ``colours`` maps labels to colours (default
    :func:`method_colours` of the labels), ``linestyles`` optionally to matplotlib line
    styles. With ``percent`` the y values (fractions) are drawn as percentages on a 0-100
    axis; ``markers`` marks each point (off for dense curves such as ROC). Panels wrap after
    ``max_columns`` per row, so a figure stays within a page's text width (about 10 inches
    at most plus the legend, which sits right of the panels).
    """
    ncols = min(len(panels), max_columns)
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(panel_inches * ncols + 1.4, 2.9 * nrows + 0.3), layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False)
    for ax in grid.flat[len(panels):]:
        ax.axis("off")
    axes = grid.flat[:len(panels)]
    scale = 100.0 if percent else 1.0
    colours = colours or method_colours(list(series))
    handles = {}
    for label, curves in series.items():
        for ax, curve in zip(axes, curves):
            if curve is None:
                continue
            x, y = (_numpy(v).astype(float) for v in curve)
            handles[label], = ax.plot(x, scale * y, color=colours[label], linewidth=1.4, markersize=2.5,
                                      linestyle=(linestyles or {}).get(label, "solid"), marker="o" if markers else None)
    for ax, panel in zip(axes, panels):
        ax.set_title(panel.get("title", ""), fontsize=8)
        ax.set_xlabel(panel.get("xlabel", ""))
        ax.set_ylabel(panel.get("ylabel", ""))
        if percent:
            ax.set_ylim(-2, 102)
        ax.grid(True, linewidth=0.3, color="0.85")
        _style(ax)
    _outside_legend(fig, list(handles.values()), list(handles))
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def corruption_heatmap(errors: dict[str, dict[str, Sequence[float]]], severities: Sequence[int],
                       groups: dict[str, str] | None = None, title: str = "",
                       colours: Mapping[str, str] | None = None, max_columns: int = 4) -> Figure:
    """Top-1 error per (corruption, severity) as annotated heat maps, one panel per model.

    ``errors``: ``{model label: {corruption: errors (fractions), one per severity}}``, rows in
    the order given; ``groups`` maps corruptions to their group (noise, blur, ...), drawn as
    separators with the group named at the right of each row of panels. All panels share
    one colour scale (0-100%, its bar right of the panels), and a last column holds each
    row's mean over severities. Panels wrap after ``max_columns``; each is titled with its
    model in the model's colour (``colours``, default :func:`method_colours`), except a lone
    panel under a ``title``.
    """
    labels = list(errors)
    colours = colours or method_colours(labels)
    rows = list(dict.fromkeys(c for per_model in errors.values() for c in per_model))
    ncols = min(len(labels), max_columns)
    nrows = math.ceil(len(labels) / ncols)
    longest = max([len(r) for r in rows] + [1])
    fig = Figure(figsize=(0.06 * longest + 2.6 * ncols + (0.7 if groups else 0.0) + 0.7,
                          nrows * (0.8 + 0.24 * len(rows)) + (0.3 if title else 0.0)), layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False)
    for ax in grid.flat[len(labels):]:
        ax.axis("off")
    axes = grid.flat[:len(labels)]
    cmap = matplotlib.colormaps["magma_r"]
    image = None
    for position, (ax, label) in enumerate(zip(axes, labels)):
        table = np.full((len(rows), len(severities) + 1), np.nan)
        for i, name in enumerate(rows):
            if name in errors[label]:
                values = 100 * np.asarray(errors[label][name], dtype=float)
                table[i, :-1], table[i, -1] = values, values.mean()
        image = ax.imshow(table, cmap=cmap, vmin=0, vmax=100, aspect="auto")
        for (i, j), value in np.ndenumerate(table):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if value > 55 else "black")
        ax.axvline(len(severities) - 0.5, color="white", linewidth=2)
        ax.set_xticks(range(len(severities) + 1), [str(s) for s in severities] + ["mean"], fontsize=7)
        ax.set_xlabel("severity", fontsize=8)
        if len(labels) > 1 or not title:
            ax.set_title(label, fontsize=8, color=colours[label])
        first_column, last_column = position % ncols == 0, position % ncols == ncols - 1 or ax is axes[-1]
        ax.set_yticks(range(len(rows)), rows if first_column else [], fontsize=7)
        ax.tick_params(length=0)
        if groups:
            names = [groups.get(r, "") for r in rows]
            for i in range(1, len(rows)):
                if names[i] != names[i - 1]:
                    ax.axhline(i - 0.5, color="white", linewidth=1.5)
            if last_column:  # the group names as tick labels of a right-hand axis: laid out, never covered
                right = ax.secondary_yaxis("right")
                spans = {name: [i for i, n in enumerate(names) if n == name] for name in dict.fromkeys(names)}
                right.set_yticks([float(np.mean(where)) for where in spans.values()], list(spans), fontsize=7,
                                 rotation=90, va="center")
                right.tick_params(length=0)
                right.spines["right"].set_visible(False)
    colourbar = fig.colorbar(image, ax=grid, shrink=min(1.0, 4.0 / max(len(rows), 1) + 0.4), aspect=25)
    colourbar.set_label("top-1 error (%)", fontsize=8)
    colourbar.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def shift_scatter(points: Mapping[str, Mapping[str, tuple[float, float]]], colours: Mapping[str, str] | None = None,
                  title: str = "") -> Figure:
    """Accuracy under natural distribution shift against ID accuracy, one panel per shift set.

    ``points``: ``{shift set: {model label: (ID accuracy, shift accuracy)}}`` (fractions,
    drawn in percent); each model one marker in its colour; the dashed diagonal is no loss
    under the shift, so the vertical distance to it is the accuracy lost. Axes share one
    range across panels, so sets compare at a glance.
    """
    sets = list(points)
    ncols = min(len(sets), 4)
    nrows = math.ceil(len(sets) / ncols)
    fig = Figure(figsize=(2.7 * ncols + 1.4, 2.7 * nrows + 0.4), layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False)
    for ax in grid.flat[len(sets):]:
        ax.axis("off")
    labels = list(dict.fromkeys(label for per in points.values() for label in per))
    colours = colours or method_colours(labels)
    values = [100 * v for per in points.values() for pair in per.values() for v in pair]
    low, high = max(0.0, min(values) - 5), min(100.0, max(values) + 5)
    handles = {}
    for ax, name in zip(grid.flat, sets):
        ax.plot([low, high], [low, high], color="0.6", linewidth=0.8, linestyle="dashed")
        for label, (id_acc, shift_acc) in points[name].items():
            handles[label] = ax.scatter([100 * id_acc], [100 * shift_acc], color=colours[label], s=22, zorder=3)
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("ID test accuracy (%)")
        ax.set_ylabel("shift accuracy (%)")
        ax.grid(True, linewidth=0.3, color="0.85")
        _style(ax)
    _outside_legend(fig, list(handles.values()), list(handles), title="method")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig



def learning_curves(histories: Mapping[str, Sequence[Sequence[Mapping[str, float]]]], *, title: str = "",
                    colours: Mapping[str, str] | None = None) -> Figure:
    """Test top-1 error and training loss against the epoch, one line per method (the paper's
    test-error-against-epoch figure).

    ``histories``: ``{method: [history of each seed]}``, a history being the per-epoch records
    of a training run (``epoch``, ``test_top1_error`` as a fraction, ``train_loss``). The line
    is the mean over seeds at each epoch that every seed reached; the band spans their lowest
    and highest value, so a band narrower than the gap between two lines says the gap is not
    one seed's luck. A single seed draws a line without a band.
    """
    colours = colours or method_colours(list(histories))
    panels = (("test_top1_error", "test top-1 error (%)", 100.0), ("train_loss", "training loss", 1.0))
    fig = Figure(figsize=(7.6, 2.9), layout="constrained")
    axes = fig.subplots(1, len(panels))
    handles = {}
    for method, runs in histories.items():
        epochs = min(len(run) for run in runs)
        x = np.array([record["epoch"] for record in runs[0][:epochs]], dtype=float)
        for ax, (key, _, scale) in zip(axes, panels):
            values = scale * np.array([[record[key] for record in run[:epochs]] for run in runs], dtype=float)
            handles[method], = ax.plot(x, values.mean(axis=0), color=colours[method], linewidth=1.4)
            if len(runs) > 1:
                ax.fill_between(x, values.min(axis=0), values.max(axis=0), color=colours[method], alpha=0.18,
                                linewidth=0)
    for ax, (_, label, _) in zip(axes, panels):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(True, linewidth=0.3, color="0.85")
        _style(ax)
    seeds = sorted({len(runs) for runs in histories.values()})
    _outside_legend(fig, list(handles.values()), list(handles),
                    title=f"mean of {'/'.join(map(str, seeds))} seeds" + (", band: min-max" if max(seeds) > 1 else ""))
    fig.suptitle(title or "Learning curves", fontsize=9)
    return fig


def sensitivity_figure(rows: Sequence[Any], *, knob: str = "body_evidence", title: str = "",
                       colours: Mapping[str, str] | None = None) -> Figure:
    """Top-1 error against a data setting, and each method's difference from the baseline.

    ``rows``: :class:`~cutmix_eval.sensitivity.Summary` rows (``level``, ``method``, ``mean``,
    ``low``, ``high`` in percent; ``diff`` = (mean, low, high) of the paired difference or None).
    Left: the mean over seeds with its 95% t-interval as error bars; right: the paired
    difference from the baseline with its interval, filled markers where it excludes 0.
    Methods are offset slightly along x so that their bars do not hide each other.
    """
    methods = list(dict.fromkeys(r.method for r in rows))
    colours = colours or method_colours(methods)
    levels = sorted({r.level for r in rows})
    step = min(np.diff(levels)) if len(levels) > 1 else 1.0
    fig = Figure(figsize=(7.8, 3.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    handles = {}
    for i, method in enumerate(methods):
        mine = sorted((r for r in rows if r.method == method), key=lambda r: r.level)
        x = np.array([r.level for r in mine]) + (i - (len(methods) - 1) / 2) * 0.04 * step
        mean = np.array([r.mean for r in mine])
        spread = np.array([[r.mean - r.low for r in mine], [r.high - r.mean for r in mine]])
        handles[method] = left.errorbar(x, mean, yerr=spread, color=colours[method], marker="o", markersize=3,
                                        linewidth=1.3, capsize=2)
        paired = [(xi, r.diff) for xi, r in zip(x, mine) if r.diff is not None]
        if paired:
            px = np.array([p[0] for p in paired])
            d = np.array([p[1] for p in paired])
            right.errorbar(px, d[:, 0], yerr=[d[:, 0] - d[:, 1], d[:, 2] - d[:, 0]], color=colours[method],
                           linewidth=1.3, capsize=2, marker="none")
            excludes = (d[:, 1] > 0) | (d[:, 2] < 0)
            right.scatter(px, d[:, 0], s=16, zorder=3, color=[colours[method] if e else "white" for e in excludes],
                          edgecolors=colours[method])
    right.axhline(0, color="0.4", linewidth=0.8, linestyle="dashed")
    left.set_ylabel("test top-1 error (%)")
    right.set_ylabel("difference from baseline (points)")
    right.set_title("paired by seed; filled: interval excludes 0", fontsize=8)
    for ax in (left, right):
        ax.set_xlabel(knob)
        ax.set_xticks(levels)
        ax.grid(True, linewidth=0.3, color="0.85")
        _style(ax)
    seeds = sorted({r.seeds for r in rows})
    _outside_legend(fig, list(handles.values()), list(handles),
                    title=f"mean of {'/'.join(map(str, seeds))} seeds, 95% t-interval")
    fig.suptitle(title or f"Top-1 error across {knob}", fontsize=9)
    return fig
