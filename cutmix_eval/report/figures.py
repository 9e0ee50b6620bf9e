"""Figures for reports and papers, as pure functions returning matplotlib figures.

They use the non-interactive Agg backend, draw nothing on screen and write
nothing: the caller saves the returned figure (``fig.savefig(path)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
                pred_inclusive: bool = False) -> Figure:
    """A grid of images with their boxes and mask outlines.

    ``images``: ``N x 3 x H x W`` floats in [0, 1] (array or tensor). ``boxes``:
    per image an ``M x 4`` XYXY array (or None), drawn as rectangles; with
    ``inclusive_boxes`` the coordinates are inclusive pixel indices (the
    ``torchvision.ops.masks_to_boxes`` convention), otherwise continuous pixel-edge
    coordinates (the data layer's); either way the rectangle goes round the outer
    edges of the boxed pixels.
    ``masks``: per image an ``H x W`` array whose 0.5 level is outlined (values
    other than 0/1, such as 255 = ignore, count as object). ``titles``: one short
    title per image. Images fill the grid row by row, ``ncols`` per row;
    ``row_labels`` (one per row) are written at the left of each row.
    ``heatmaps``: per image an ``H x W`` map in [0, 1] drawn over the image (jet,
    half transparent), e.g. a class activation map at the image's resolution.
    ``pred_boxes``: per image predicted boxes, drawn dashed in red
    (``pred_inclusive`` as ``inclusive_boxes``), next to the ground truth in green.
    """
    images = _numpy(images)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be N x 3 x H x W, not {images.shape}")
    count = len(images)
    ncols = max(1, min(ncols, count))
    nrows = math.ceil(count / ncols)
    fig = Figure(figsize=(ncols * cell_inches + (1.3 if row_labels else 0.1),
                          nrows * cell_inches * (1.18 if titles else 1.0) + 0.1))
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
    fig.subplots_adjust(left=(1.25 / fig.get_figwidth()) if row_labels else 0.01, right=0.99, bottom=0.01,
                        top=1 - 0.1 / fig.get_figheight(), wspace=0.05, hspace=0.18 if titles else 0.05)
    return fig


def _draw_boxes(ax, boxes: Any, pad: float, colour: str, linestyle: str) -> None:
    """XYXY boxes as rectangles round the outer edges of the boxed pixels (imshow
    centres pixel i at i); ``pad`` is 1 for inclusive pixel indices, 0 for edges."""
    if boxes is None:
        return
    for x0, y0, x1, y1 in _numpy(boxes).reshape(-1, 4):
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + pad, y1 - y0 + pad, fill=False,
                               edgecolor=colour, linewidth=1.1, linestyle=linestyle))


def ood_scores_figure(pairs: dict[str, tuple[Any, Any]], score: str, roc: dict[str, tuple[Any, Any, float]],
                      title: str = "") -> Figure:
    """Score histograms (ID against each OOD set) and ROC curves, side by side.

    ``pairs``: ``{set: (ID scores, OOD scores)}`` (higher = more in-distribution);
    ``roc``: ``{set: (fpr, tpr, auroc)}`` with ID positive. Histograms share bins
    over all scores and are normalized to densities, so sets of different sizes
    compare; the ID histogram is filled grey, each OOD set a coloured outline.
    """
    fig = Figure(figsize=(9.0, 3.4))
    hist, curve = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.35, 1]})
    everything = np.concatenate([np.concatenate([_numpy(a), _numpy(b)]) for a, b in pairs.values()])
    bins = np.histogram_bin_edges(everything, bins=50)
    first_id = _numpy(next(iter(pairs.values()))[0])
    shared_id = all(np.array_equal(_numpy(a), first_id) for a, _ in pairs.values())
    if shared_id:
        hist.hist(first_id, bins=bins, density=True, color="0.75", label="in-distribution")
    colours = matplotlib.colormaps["tab10"]
    for i, (name, (id_scores, ood_scores)) in enumerate(pairs.items()):
        if not shared_id:  # ODIN: each set has its own ID scores (its own temperature and noise)
            hist.hist(_numpy(id_scores), bins=bins, density=True, histtype="step", color=colours(i),
                      linestyle="dotted", linewidth=1.0)
        hist.hist(_numpy(ood_scores), bins=bins, density=True, histtype="step", color=colours(i), linewidth=1.3,
                  label=name)
        fpr, tpr, auroc = roc[name]
        curve.plot(_numpy(fpr), _numpy(tpr), color=colours(i), linewidth=1.3, label=f"{name} ({100 * auroc:.1f})")
    hist.set_xlabel(f"{score} score (higher = more in-distribution)")
    hist.set_ylabel("density")
    hist.legend(fontsize=7, frameon=False)
    curve.plot([0, 1], [0, 1], color="0.6", linewidth=0.8, linestyle="dashed")
    curve.axhline(0.95, color="0.6", linewidth=0.6, linestyle="dotted")
    curve.set_xlabel("false positive rate (OOD accepted)")
    curve.set_ylabel("true positive rate (ID accepted)")
    curve.set_xlim(0, 1)
    curve.set_ylim(0, 1.01)
    curve.legend(fontsize=7, frameon=False, title="AUROC (%)", title_fontsize=7, loc="lower right")
    for ax in (hist, curve):
        ax.tick_params(labelsize=7)
        ax.xaxis.label.set_size(8)
        ax.yaxis.label.set_size(8)
        ax.spines[["top", "right"]].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def reliability_diagram(curves: Sequence[dict[str, Any]], labels: Sequence[str], title: str = "",
                        colours: Sequence[str] | None = None) -> Figure:
    """Reliability diagrams side by side: accuracy per confidence bin against the diagonal.

    Each curve is a dict with ``edges`` (B + 1), ``count``, ``accuracy`` and
    ``confidence`` (B each; NaN where a bin is empty). Bars show each bin's accuracy,
    the red outline its gap to the bin's mean confidence; the lower panel the share
    of images per bin. ``colours``: one bar colour per panel (e.g. each method's).
    """
    fig = Figure(figsize=(3.3 * len(curves), 3.8))
    axes = fig.subplots(2, len(curves), squeeze=False, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for i, ((top, bottom), curve, label) in enumerate(zip(axes.T, curves, labels)):
        edges, count = _numpy(curve["edges"]).astype(float), _numpy(curve["count"]).astype(float)
        accuracy = np.nan_to_num(_numpy(curve["accuracy"]).astype(float))
        confidence = _numpy(curve["confidence"]).astype(float)
        left, width = edges[:-1], np.diff(edges)
        top.bar(left, accuracy, width=width, align="edge", color=colours[i] if colours else "#4c72b0",
                edgecolor="white", linewidth=0.5,
                label="accuracy")
        filled = count > 0
        top.bar(left[filled], (confidence - accuracy)[filled], bottom=accuracy[filled], width=width[filled],
                align="edge", fill=False, edgecolor=PRED_COLOUR, linewidth=0.8, hatch="///", label="gap to confidence")
        top.plot([0, 1], [0, 1], color="0.4", linewidth=0.8, linestyle="dashed")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_title(label, fontsize=8)
        top.set_ylabel("accuracy", fontsize=8)
        top.legend(fontsize=6, frameon=False, loc="upper left")
        bottom.bar(left, count / max(count.sum(), 1), width=width, align="edge", color="0.6", edgecolor="white",
                   linewidth=0.5)
        bottom.set_xlabel("confidence (max softmax)", fontsize=8)
        bottom.set_ylabel("share", fontsize=8)
        for ax in (top, bottom):
            ax.tick_params(labelsize=7)
            ax.spines[["top", "right"]].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


#: one colour per training method, the same in every figure (colour-blind-safe Okabe-Ito hues)
METHOD_COLOURS = {"baseline": "#555555", "mixup": "#0072b2", "cutout": "#009e73", "cutmix": "#d55e00"}
_OTHER_COLOURS = ("#cc79a7", "#e69f00", "#56b4e9", "#f0e442", "#000000")


def method_colour(label: str, position: int = 0) -> str:
    """The colour of a model's curves: fixed for the four methods (matched on the label's
    first word, so ``cutmix``, ``CutMix`` and ``cutmix seed 1`` agree), otherwise the
    ``position``-th of a few other colours."""
    first = label.split()[0].lower() if label.split() else ""
    return METHOD_COLOURS.get(first, _OTHER_COLOURS[position % len(_OTHER_COLOURS)])


def adversarial_figure(curves: dict[str, dict[str, dict[str, Any]]], title: str = "") -> Figure:
    """Accuracy against eps, one panel per attack, one line per model.

    ``curves``: ``{model label: {attack: {"eps": [...], "accuracy": [...]}}}`` with eps in
    [0, 1] pixel units (drawn in units of 1/255) and the clean accuracy at eps 0.
    """
    attacks = list(dict.fromkeys(a for per_model in curves.values() for a in per_model))
    panels = [{"title": attack.upper(), "xlabel": "eps (x 1/255, pixel space)", "ylabel": "top-1 accuracy (%)"}
              for attack in attacks]
    series = {label: [(255 * np.asarray(c[a]["eps"], dtype=float), c[a]["accuracy"]) if a in c else None
                      for a in attacks] for label, c in curves.items()}
    return line_panels(panels, series, title=title)


def occlusion_figure(curves: dict[str, dict[str, dict[str, Any]]], fill: str = "", title: str = "") -> Figure:
    """Top-1 accuracy against hole size, one panel per occlusion mode, one line per model
    (the paper's Fig. 5a).

    ``curves``: ``{model label: {mode: {"fraction": [...], "accuracy": [...]}}}``, the
    ``curves`` of occlusion Results; ``fill`` is named in the x label.
    """
    modes = list(dict.fromkeys(m for per_model in curves.values() for m in per_model))
    hidden = {"centre": "side of the centred hole", "boundary": "side of the centred window kept"}
    panels = [{"title": f"{mode} occlusion" + (f" ({fill} fill)" if fill else ""),
               "xlabel": f"{hidden.get(mode, 'side')} (fraction of the image side)", "ylabel": "top-1 accuracy (%)"}
              for mode in modes]
    series = {label: [(c[m]["fraction"], c[m]["accuracy"]) if m in c else None for m in modes]
              for label, c in curves.items()}
    return line_panels(panels, series, title=title)


def inbetween_figure(curves: dict[str, dict[str, dict[str, Any]]], title: str = "") -> Figure:
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
    return line_panels(panels, series, title=title)


def line_panels(panels: Sequence[dict[str, str]], series: dict[str, Sequence[tuple[Any, Any]]], *,
                linestyles: dict[str, str] | None = None, title: str = "", percent: bool = True,
                panel_inches: float = 3.2, markers: bool = True, max_columns: int = 3) -> Figure:
    """Curves of several models side by side, one panel per analysis.

    ``panels``: per panel a dict with ``title``, ``xlabel`` and ``ylabel``. ``series``:
    ``{label: [(x, y) for each panel]}`` (``None`` instead of ``(x, y)`` leaves that
    panel without the series); colours follow :func:`method_colour`, ``linestyles``
    optionally maps labels to matplotlib line styles. With ``percent`` the y values
    (fractions) are drawn as percentages on a 0-100 axis; ``markers`` marks each point
    (off for dense curves such as ROC). Panels wrap after ``max_columns`` per row, so a figure
    stays within a page's text width (about 10 inches at most).
    """
    ncols = min(len(panels), max_columns)
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(panel_inches * ncols + 0.2, 2.9 * nrows))
    grid = fig.subplots(nrows, ncols, squeeze=False)
    for ax in grid.flat[len(panels):]:
        ax.axis("off")
    axes = grid.flat[:len(panels)]
    scale = 100.0 if percent else 1.0
    for position, (label, curves) in enumerate(series.items()):
        for ax, curve in zip(axes, curves):
            if curve is None:
                continue
            x, y = (_numpy(v).astype(float) for v in curve)
            ax.plot(x, scale * y, color=method_colour(label, position), linestyle=(linestyles or {}).get(label, "solid"),
                    linewidth=1.4, marker="o" if markers else None, markersize=2.5, label=label)
    for ax, panel in zip(axes, panels):
        ax.set_title(panel.get("title", ""), fontsize=8)
        ax.set_xlabel(panel.get("xlabel", ""), fontsize=8)
        ax.set_ylabel(panel.get("ylabel", ""), fontsize=8)
        if percent:
            ax.set_ylim(-2, 102)
        ax.grid(True, linewidth=0.3, color="0.85")
        ax.tick_params(labelsize=7)
        ax.spines[["top", "right"]].set_visible(False)
    axes[len(axes) - 1].legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def corruption_heatmap(errors: dict[str, dict[str, Sequence[float]]], severities: Sequence[int],
                       groups: dict[str, str] | None = None, title: str = "") -> Figure:
    """Top-1 error per (corruption, severity) as annotated heat maps, one panel per model.

    ``errors``: ``{model label: {corruption: errors (fractions), one per severity}}``, rows in
    the order given; ``groups`` maps corruptions to their group (noise, blur, ...), drawn as
    separators with the group named at the right. All panels share one colour scale
    (0-100%), and a last column holds each row's mean over severities.
    """
    labels = list(errors)
    rows = list(dict.fromkeys(c for per_model in errors.values() for c in per_model))
    fig = Figure(figsize=(1.2 + 3.0 * len(labels), 0.9 + 0.24 * len(rows)))
    axes = fig.subplots(1, len(labels), squeeze=False)[0]
    cmap = matplotlib.colormaps["magma_r"]
    image = None
    for ax, label in zip(axes, labels):
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
        ax.set_title(label, fontsize=8, color=method_colour(label, labels.index(label)))
        ax.set_yticks(range(len(rows)), rows if ax is axes[0] else [], fontsize=7)
        ax.tick_params(length=0)
        if groups:
            names = [groups.get(r, "") for r in rows]
            for i in range(1, len(rows)):
                if names[i] != names[i - 1]:
                    ax.axhline(i - 0.5, color="white", linewidth=1.5)
            if ax is axes[-1]:
                for name in dict.fromkeys(names):
                    where = [i for i, n in enumerate(names) if n == name]
                    ax.text(len(severities) + 0.7, np.mean(where), name, fontsize=7, va="center", rotation=90)
    colourbar = fig.colorbar(image, ax=list(axes), fraction=0.025, pad=0.06 if groups else 0.02)
    colourbar.set_label("top-1 error (%)", fontsize=8)
    colourbar.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
