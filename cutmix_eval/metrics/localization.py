"""Weakly supervised object localization metrics, numerically identical to wsolevaluation.

The accepted reference is ``clovaai/wsolevaluation`` (Choe et al., CVPR 2020,
``evaluation.py``). Every convention below is its convention; the tests compare our
numbers with a per-image, per-threshold ``cv2.findContours`` loop written like it.

Conventions shared by every function here:

* **Maps** are ``N x H x W`` arrays of finite values in [0, 1] (min-max normalized
  per image by the caller, see :func:`normalize_minmax`); float32 maps are converted
  to float64 first, because the reference only accepts float64 maps.
* **Quantization**: a map becomes ``uint8`` as ``(map * 255).astype(np.uint8)``
  (truncation). A threshold ``tau`` selects the pixels whose quantized value is
  *strictly greater* than ``int(tau * max(quantized map))``: the threshold is
  relative to the map's own quantized maximum (255 for a normalized map), and at
  most 256 different foregrounds exist per map.
* **Regions** are what ``cv2.findContours(mode=RETR_TREE, method=CHAIN_APPROX_SIMPLE)``
  returns: one outer contour per 8-connected foreground component *and one contour
  per hole* (a 4-connected background component that does not touch the image
  border). A contour's box is ``cv2.boundingRect`` ``(x, y, w, h)`` turned into
  ``[x, y, x + w, y + h]`` and clipped to ``W - 1`` / ``H - 1``: one pixel wider and
  taller than the tight box unless clipped (the reference's quirk, kept). A hole's
  contour runs through the foreground pixels around it, so its box is the hole's
  pixel extent grown by one pixel on each side before that conversion.
* **"all" / "largest"**: "all" keeps the box of every contour, holes included
  (MaxBoxAccV2); "largest" keeps the contour of largest ``cv2.contourArea``
  (polygon area, first one on ties, holes competing too; MaxBoxAcc V1). No contour
  gives the single box ``[0, 0, 0, 0]``, which is then scored like any other box.
* **Boxes** are integer ``[x0, y0, x1, y1]`` with inclusive pixel coordinates:
  width ``x1 - x0 + 1`` (:func:`iou_inclusive`). An image's IoU at a threshold is
  the best over all (predicted box, ground-truth box) pairs.
* **Fractions, not percentages**: accuracies and AP are in [0, 1]; the reference
  prints them multiplied by 100.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np

BOX_MODES = ("all", "largest")
V2_IOU_THRESHOLDS = (0.3, 0.5, 0.7)


def cam_thresholds(step: float = 0.01) -> np.ndarray:
    """The reference's threshold grid ``np.arange(0, 1, step)``.

    In wsolevaluation, ``config.py`` (training and inference) and ``evaluate_wsol``
    default to ``step=0.001`` (1000 thresholds); the standalone ``evaluation.py``
    command line defaults to 0.01 (100 thresholds), our default. A step must give
    at least two thresholds (``0 < step <= 0.5``): the metrics maximize over the grid.
    """
    if not 0 < step <= 0.5:  # also refuses NaN
        raise ValueError(f"the threshold step must be in (0, 0.5] so that the grid np.arange(0, 1, step) has at "
                         f"least 2 thresholds, not {step} (wsolevaluation uses 0.01 or 0.001)")
    return np.arange(0.0, 1.0, step)


def normalize_minmax(maps: np.ndarray) -> np.ndarray:
    """Per-map min-max normalization of ``N x H x W`` maps to [0, 1].

    Like wsolevaluation's ``normalize_scoremap``: ``(m - min) / (max - min)`` in the
    map's own float precision (integer maps become float64); a map with any NaN
    becomes all zeros, and so does a constant map. We also send a map with an
    infinite value to zeros, where the reference would produce NaNs and then reject
    the map.
    """
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"expected maps N x H x W, got shape {maps.shape}")
    if not np.issubdtype(maps.dtype, np.floating):
        maps = maps.astype(np.float64)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    valid = np.isfinite(maps).all(axis=(1, 2), keepdims=True) & (span > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = (maps - low) / np.where(valid, span, 1)
    return np.where(valid, scaled, 0).astype(maps.dtype)


def iou_inclusive(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of every pair, ``N x M``, for boxes ``N x 4`` and ``M x 4`` ``[x0, y0, x1, y1]``.

    Inclusive pixel boxes: width ``x1 - x0 + 1``, height ``y1 - y0 + 1``, so
    ``[0, 0, 0, 0]`` is one pixel. A pair whose union is not positive (only possible
    with inverted boxes) has IoU 0, as in the reference.
    """
    a = np.asarray(boxes_a, dtype=np.int64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.int64).reshape(-1, 4)
    return _paired_iou(a[:, None, :], b[None, :, :])


def _paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Inclusive IoU of boxes ``a[..., 4]`` and ``b[..., 4]``, broadcast against each other."""
    inter_w = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    inter_h = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


# --- the exact primitive: one map, one threshold, one findContours ---------------------


def _checked(maps: np.ndarray) -> np.ndarray:
    """The maps as float64, after checking they are finite and in [0, 1] (NaN fails both tests)."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.size and not (maps.min() >= 0 and maps.max() <= 1):
        raise ValueError("maps must be finite and in [0, 1]: normalize them first (normalize_minmax)")
    return maps


def _quantize(map2d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(q, key)``: the reference's ``(map * 255).astype(uint8)`` and a finer uint16 order
    ``key = floor(map * 255 * 256)`` with ``key >> 8 == q`` (``map * 65280`` is exactly
    ``(map * 255) * 256`` in floating point: the factor 256 only shifts the exponent)."""
    key = (_checked(map2d) * 65280.0).astype(np.uint16)
    return (key >> 8).astype(np.uint8), key


def _levels(quantized_max: int, thresholds: np.ndarray) -> np.ndarray:
    """``int(tau * quantized_max)`` for every threshold: foreground is ``q > level``."""
    return np.trunc(thresholds * float(quantized_max)).astype(np.int64)


def _trace(foreground: np.ndarray) -> tuple:
    """``(contours, hierarchy)`` of a binary map, with the reference's findContours call."""
    return cv2.findContours(foreground.view(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2:]


def _traced_rects(traced: tuple, mode: str) -> np.ndarray:
    """``[x, y, x + w, y + h]`` (before clipping) of every traced contour's ``boundingRect``,
    or of the one of largest ``contourArea``; ``0 x 4`` when nothing was traced."""
    contours = traced[0]
    if mode == "largest" and len(contours):
        contours = [max(contours, key=cv2.contourArea)]
    rects = np.array([cv2.boundingRect(c) for c in contours], dtype=np.int64).reshape(-1, 4)
    rects[:, 2:] += rects[:, :2]
    return rects


def _rects_to_boxes(x0, y0, x_end, y_end, width: int, height: int) -> np.ndarray:
    """``[x, y, x + w, y + h]`` clipped to ``width - 1`` / ``height - 1``, as ``k x 4`` int64."""
    return np.stack([x0, y0, np.minimum(x_end, width - 1), np.minimum(y_end, height - 1)], axis=-1).astype(np.int64)


def _check_mode(mode: str) -> None:
    if mode not in BOX_MODES:
        raise ValueError(f"mode must be one of {BOX_MODES}, got {mode!r}")


def boxes_from_map(map2d: np.ndarray, threshold: float, mode: str = "largest") -> np.ndarray:
    """Predicted boxes ``k x 4`` of one ``H x W`` map at one threshold, as wsolevaluation does.

    Quantize to uint8, keep pixels strictly above ``int(threshold * max)``, run
    ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)``, then keep every contour
    (``mode="all"``) or the one of largest ``cv2.contourArea`` (``"largest"``) and
    convert ``boundingRect`` as described in the module docstring. No contour gives
    ``[[0, 0, 0, 0]]``. This is the slow, obviously faithful primitive; the curve
    functions below compute the same boxes for all thresholds at once.
    """
    _check_mode(mode)
    quantized = _quantize(map2d)[0]
    rects = _traced_rects(_trace(quantized > _levels(quantized.max(), np.float64(threshold))), mode)
    if len(rects) == 0:
        return np.zeros((1, 4), dtype=np.int64)
    return _rects_to_boxes(*rects.T, quantized.shape[1], quantized.shape[0])


# --- the fast path: every threshold of one map at once -----------------------------------
#
# Order the pixels strictly by (key, raster index): every foreground {q > level} is a
# prefix of that order. Sweeping down it, components are born at strict local maxima
# and later only merge, so C(level) = births_above(level) - merges_above(level) with
# merges_above non-increasing in the level. The Euler number E = C - holes of every
# level (8-connected foreground, 4-connected background) comes from a few histograms of
# 2x2-window statistics. Knowing C at one level (traced: its outer contours) predicts
# C = births_above - merges_above(top) below it as long as nothing merges; since
# E <= C <= prediction, a level where E equals the prediction proves that nothing merged
# down to it and that it has no hole. So from the top, repeatedly: trace a level, take
# the lowest level where E matches the prediction, and serve the whole stretch in
# between from row and column maxima, of the whole map (one component) or of the
# components labelled at the stretch's bottom (no merge above it: each holds one
# component at every higher level). Levels of the stretch with holes, and for
# "largest" levels with several components, are traced with the exact primitive.
# Noisy stretches degrade to tracing every level, i.e. to the reference's own cost.


_MIN_STRETCH = 3  # a step proving fewer levels than this saves no time over tracing them
_NOISY = 3  # after this many such steps in a row, the remaining lower levels are traced


def _half_kernels(offsets) -> tuple[np.ndarray, np.ndarray]:
    """3x3 kernels selecting the given neighbours that come after / before in raster order."""
    after, before = np.zeros((3, 3), np.uint8), np.zeros((3, 3), np.uint8)
    for dy, dx in offsets:
        (after if (dy, dx) > (0, 0) else before)[1 + dy, 1 + dx] = 1
    return after, before


_MAX_AFTER, _MAX_BEFORE = _half_kernels([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
_MIN_AFTER, _MIN_BEFORE = _half_kernels([(-1, 0), (0, 1), (1, 0), (0, -1)])


def _births_above(quantized: np.ndarray, key: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Number of strict local maxima of the (key, raster index) order above each level."""
    births = (key > cv2.dilate(key, _MAX_AFTER)) & (key >= cv2.dilate(key, _MAX_BEFORE))
    values = np.sort(quantized[births])
    return len(values) - np.searchsorted(values, levels, side="right")


def _lowest_pit(quantized: np.ndarray, key: np.ndarray) -> int:
    """Lowest value of a strict 4-neighbourhood minimum off the border (256 if none):
    every hole contains one, so no level below it has a hole."""
    pits = (key <= cv2.erode(key, _MIN_AFTER)) & (key < cv2.erode(key, _MIN_BEFORE))
    values = quantized[1:-1, 1:-1][pits[1:-1, 1:-1]]
    return int(values.min()) if len(values) else 256


def _count_above(values: np.ndarray, few: bool = False) -> np.ndarray:
    """How many of the uint8 ``values`` exceed l, for l = 0..255 (``few``: a short array,
    cheaper to count with bincount than with cv2.calcHist)."""
    if few:
        counts = np.bincount(values, minlength=256)
    else:
        counts = cv2.calcHist([values], [0], None, [256], [0, 256]).ravel()
    return len(values) - np.cumsum(counts)


def _euler_numbers(quantized: np.ndarray) -> np.ndarray:
    """Euler number (8-connected components minus holes) of ``quantized > l``, l = 0..255.

    Gray's bit quads over the 2x2 windows of the zero-padded map: 4 E = #windows with one
    foreground pixel - #with three - 2 #with two diagonal ones. With window minimum v1
    and maximum v4, that is 2 E = #(v1 > l) + #(v4 > l) - 2 #(pixels > l) - D(l), where D
    counts the windows whose top two values are diagonal and straddle l.
    """
    width = quantized.shape[1] + 2
    flat = cv2.copyMakeBorder(quantized, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0).ravel()
    a, b, c, d = flat[:-width - 1], flat[1:-width], flat[width:-1], flat[width + 1:]  # wrapped windows are all 0
    low_ad, high_ad, low_bc, high_bc = np.minimum(a, d), np.maximum(a, d), np.minimum(b, c), np.maximum(b, c)
    diagonal = np.flatnonzero((low_ad > high_bc) | (low_bc > high_ad))
    upper_pair = np.maximum(low_ad[diagonal], low_bc[diagonal])
    lower_pair = np.minimum(high_ad[diagonal], high_bc[diagonal])
    twice = (_count_above(np.minimum(low_ad, low_bc)) + _count_above(np.maximum(high_ad, high_bc))
             - 2 * _count_above(flat) - _count_above(upper_pair, few=True) + _count_above(lower_pair, few=True))
    return np.rint(twice / 2).astype(np.int64)


def _outer(hierarchy: np.ndarray) -> np.ndarray:
    """Which traced contours are outer ones (an even number of ancestors in the RETR_TREE hierarchy)."""
    parent = hierarchy[0, :, 3]
    outer, up = np.ones(len(parent), bool), parent
    while (up >= 0).any():
        outer ^= up >= 0
        up = np.where(up >= 0, parent[up], -1)
    return outer


def _outer_count(traced: tuple) -> int:
    """Number of outer contours (foreground components) among traced contours."""
    return int(np.count_nonzero(_outer(traced[1]))) if len(traced[0]) else 0


def _worth_labelling(components: int, levels: int) -> bool:
    """Whether labelling ``components`` components beats tracing ``levels`` levels: measured on
    224 x 224 maps, a labelling (a trace, plus a connected-components pass when component
    boxes overlap) costs about two traces and each component a fifth of one."""
    return components == 1 or 2 + components / 5 < levels


def _stretches(quantized: np.ndarray, key: np.ndarray, levels: np.ndarray, mode: str):
    """Split ascending levels (all below the map's maximum) into proven stretches and traced levels.

    Returns ``(stretches, traced)``: ``stretches`` is a list of ``(level indices, anchor)``
    whose boxes come from row and column maxima, of the whole map when ``anchor`` is
    None (one component) or of the components at level index ``anchor``; ``traced``
    maps the other level indices to their ``_trace`` result.
    """
    births = _births_above(quantized, key, levels)
    if births[0] == 1 and _lowest_pit(quantized, key) > levels[-1]:
        return [(np.arange(len(levels)), None)], {}
    euler = _euler_numbers(quantized)[levels]
    stretches, traced, short = [], {}, 0
    top = len(levels) - 1
    while top >= 0 and short < _NOISY:
        if births[top] > 1:
            traced[top] = _trace(quantized > levels[top])
        merged = births[top] - _outer_count(traced[top]) if top in traced else 0
        predicted = births[:top + 1] - merged
        proven = euler[:top + 1] == predicted
        bottom = int(np.argmax(proven)) if proven.any() else top
        if mode == "largest" or not _worth_labelling(predicted[bottom], np.count_nonzero(proven)):
            proven &= predicted == 1
        proven[top] &= top not in traced
        stretches.append((np.flatnonzero(proven), bottom if (predicted[proven] > 1).any() else None))
        traced.update({i: _trace(quantized > levels[i])
                       for i in np.flatnonzero(~proven[bottom:]) + bottom if i not in traced})
        short = short + 1 if top - bottom < _MIN_STRETCH else 0
        top = bottom - 1
    traced.update({i: _trace(quantized > levels[i]) for i in range(top + 1)})  # noisy bottom: trace it all
    return stretches, traced


def _extents(profile: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index where ``profile > level``, for each level (profile must exceed it)."""
    first = np.searchsorted(np.maximum.accumulate(profile), levels, side="right")
    last = len(profile) - 1 - np.searchsorted(np.maximum.accumulate(profile[::-1]), levels, side="right")
    return first, last


def _profile_boxes(rows: np.ndarray, cols: np.ndarray, levels: np.ndarray, origin=(0, 0)):
    """``(alive, x0, y0, x1, y1)``: tight boxes of one component's pixels above each level,
    from its row and column maxima (other pixels must not exceed the levels)."""
    alive = levels < rows.max()
    (top, bottom), (left, right) = _extents(rows, levels[alive]), _extents(cols, levels[alive])
    return alive, left + origin[1], top + origin[0], right + origin[1], bottom + origin[0]


def _component_profiles(quantized: np.ndarray, level: int):
    """``(rows, cols, origin)`` of each 8-connected component of ``quantized > level``: the row
    and column maxima of its bounding crop, other components' pixels left out."""
    contours, hierarchy = _trace(quantized > level)
    outer = [c for c, keep in zip(contours, _outer(hierarchy)) if keep]
    rects = np.array([cv2.boundingRect(c) for c in outer]).reshape(-1, 4)
    x0, y0, x1, y1 = rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2], rects[:, 1] + rects[:, 3]
    overlap = (x0[:, None] < x1) & (x0 < x1[:, None]) & (y0[:, None] < y1) & (y0 < y1[:, None])
    labels = None
    if np.count_nonzero(overlap) > len(outer):  # some crops hold pixels of another component
        labels = cv2.connectedComponents((quantized > level).view(np.uint8), connectivity=8, ltype=cv2.CV_32S)[1]
    for contour, (x, y, w, h) in zip(outer, rects):
        crop = quantized[y:y + h, x:x + w]
        if labels is not None:
            crop = np.where(labels[y:y + h, x:x + w] == labels[contour[0, 0, 1], contour[0, 0, 0]], crop, 0)
        yield crop.max(axis=1), crop.max(axis=0), (y, x)


def _traced_level_rects(traced: dict, modes: tuple[str, ...]) -> dict:
    """``{mode: (level index per rect, rects k x 4)}`` from the traced levels' contours, what
    :func:`_traced_rects` gives level by level, computed for all levels at once: a contour's
    ``boundingRect`` is the extent of its points, and its ``contourArea`` the shoelace sum
    of its polygon (integer cross products, exact), largest first on ties."""
    levels = list(traced)
    contours = list(itertools.chain.from_iterable(traced[i][0] for i in levels))  # each k x 1 x 2 int32
    if not contours:
        return {mode: (np.zeros(0, np.int64), np.zeros((0, 4), np.int64)) for mode in modes}
    counts = np.fromiter((len(traced[i][0]) for i in levels), np.int64, len(levels))
    sizes = np.fromiter(map(len, contours), np.int64, len(contours))
    owners = np.repeat(np.asarray(levels, dtype=np.int64), counts)
    points = np.concatenate(contours).reshape(-1, 2).astype(np.int64)
    starts, ends = np.cumsum(sizes) - sizes, np.cumsum(sizes)
    rects = np.concatenate([np.minimum.reduceat(points, starts), np.maximum.reduceat(points, starts) + 1], axis=1)
    found = {"all": (owners, rects)}
    if "largest" in modes:
        following = np.empty_like(points)
        following[:-1] = points[1:]
        following[ends - 1] = points[starts]  # each polygon closes on itself
        areas = np.abs(np.add.reduceat(points[:, 0] * following[:, 1] - following[:, 0] * points[:, 1], starts))
        groups = np.repeat(np.arange(len(levels)), counts)
        best = np.maximum.reduceat(areas, np.cumsum(counts) - counts)
        first = np.unique(groups[areas == best[groups]], return_index=True)[1]
        first = np.flatnonzero(areas == best[groups])[first]
        found["largest"] = (owners[first], rects[first])
    return {mode: found[mode] for mode in modes}


def _level_boxes(quantized: np.ndarray, key: np.ndarray, levels: np.ndarray, modes: tuple[str, ...]) -> dict:
    """Predicted boxes of one map at ascending unique levels, for each box mode:
    ``{mode: (level_index, boxes k x 4)}``.

    Every level gets at least one box: ``[0, 0, 0, 0]`` above the map's maximum, boxes
    from the component structure where it is proven, traced contours elsewhere. The
    modes share one decomposition: with "largest" among them, every proven level holds
    one component without holes, whose box is the same in both modes, and each traced
    level's contours give both modes' boxes.
    """
    height, width = quantized.shape
    live = int(np.count_nonzero(levels < quantized.max()))  # levels ascend: the live ones come first
    plan = "largest" if "largest" in modes else "all"
    stretches, traced = _stretches(quantized, key, levels[:live], plan) if live else ([], {})
    whole = [(quantized.max(axis=1), quantized.max(axis=0), (0, 0))]
    profiled = [(np.zeros(0, np.int64),) * 5]
    for proven, anchor in stretches:
        for rows, cols, origin in whole if anchor is None else _component_profiles(quantized, levels[anchor]):
            alive, x0, y0, x1, y1 = _profile_boxes(rows, cols, levels[proven], origin)
            profiled.append((proven[alive], x0, y0, x1 + 1, y1 + 1))
    boxes = {}
    for mode, (owners, rects) in _traced_level_rects(traced, modes).items():  # a live level always has a contour
        found, *rects = (np.concatenate(column) for column in zip(*profiled, (owners, *rects.T)))
        index = np.concatenate([np.arange(live, len(levels)), found])  # levels above the maximum: no contour
        boxes[mode] = (index, np.concatenate([np.zeros((len(levels) - live, 4), np.int64),
                                              _rects_to_boxes(*rects, width, height)]))
    return boxes


# --- public curves and summaries ------------------------------------------------------------


@dataclass(frozen=True)
class BoxAccuracyCurve:
    """Box accuracy of a split at every threshold.

    ``thresholds`` (T) are the map thresholds; ``iou_thresholds`` (D) the deltas;
    ``best_iou`` (N x T) each image's best IoU at each threshold; ``accuracy``
    (D x T) the fraction of images with ``best_iou >= delta``.
    """

    thresholds: np.ndarray
    iou_thresholds: np.ndarray
    best_iou: np.ndarray
    accuracy: np.ndarray


def _gt_arrays(gt_boxes, count: int) -> list[np.ndarray]:
    boxes = [np.asarray(b, dtype=np.int64).reshape(-1, 4) for b in gt_boxes]
    if len(boxes) != count or any(len(b) == 0 for b in boxes):
        raise ValueError(f"expected one non-empty K x 4 array of ground-truth boxes per map ({count} maps)")
    return boxes


def _threshold_array(thresholds) -> np.ndarray:
    thresholds = cam_thresholds() if thresholds is None else np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if len(thresholds) == 0 or not (thresholds.min() >= 0):
        raise ValueError("thresholds must be a non-empty sequence of numbers >= 0")
    return thresholds


def best_ious(maps: np.ndarray, gt_boxes, thresholds=None, modes: tuple[str, ...] = ("all",)) -> dict:
    """``{mode: N x T}``: each map's best IoU over (predicted, ground-truth) box pairs at each
    threshold, for each box mode ("all": V2, "largest": V1). Asking for both modes in one
    call costs little more than "largest" alone: they share quantization and tracing.
    ``maps``, ``gt_boxes`` and ``thresholds`` as in :func:`box_accuracy_curve`."""
    for mode in modes:
        _check_mode(mode)
    maps = np.asarray(maps)
    if maps.ndim != 3 or len(maps) == 0:
        raise ValueError(f"expected maps N x H x W with N >= 1, got shape {maps.shape}")
    thresholds = _threshold_array(thresholds)
    gts = _gt_arrays(gt_boxes, len(maps))
    grids = {}  # quantized maximum -> (its unique levels, each threshold's position among them)
    tops, found = [], []
    for map2d in maps:
        quantized, key = _quantize(map2d)
        tops.append(int(quantized.max()))
        if tops[-1] not in grids:
            grids[tops[-1]] = np.unique(_levels(tops[-1], thresholds), return_inverse=True)
        found.append(_level_boxes(quantized, key, grids[tops[-1]][0], modes))
    width = max(len(g) for g in gts)  # pad each image's ground truth by repeating its first box
    padded = np.stack([np.concatenate([g, np.repeat(g[:1], width - len(g), axis=0)]) for g in gts])
    result = {}
    for mode in modes:
        positions, boxes = zip(*(per_mode[mode] for per_mode in found))
        images = np.repeat(np.arange(len(maps)), [len(b) for b in boxes])
        ious = _paired_iou(np.concatenate(boxes)[:, None, :], padded[images]).max(axis=1)
        by_level = np.zeros((len(maps), len(thresholds)))
        np.maximum.at(by_level, (images, np.concatenate(positions)), ious)
        result[mode] = np.stack([by_level[n, grids[top][1]] for n, top in enumerate(tops)])
    return result


def box_accuracy_curve(maps: np.ndarray, gt_boxes, thresholds=None, iou_thresholds=V2_IOU_THRESHOLDS,
                       mode: str = "all") -> BoxAccuracyCurve:
    """Box accuracy at every threshold, computed as wsolevaluation's ``BoxEvaluator`` does.

    ``maps``: ``N x H x W`` in [0, 1], already resized to the input size and min-max
    normalized per image by the caller (the protocol's job, not this function's).
    ``gt_boxes``: one ``K_i x 4`` array per image, ``[x0, y0, x1, y1]`` inclusive, in
    map pixels; several boxes per image are allowed and the best pair counts.
    ``thresholds``: map thresholds (default :func:`cam_thresholds` ``(0.01)``), applied
    as described in the module docstring (uint8 quantization, strictly above
    ``int(tau * max)``). ``mode``: "all" (V2) or "largest" (V1).

    The results equal the reference's per-image, per-threshold ``findContours`` loop
    exactly. Thresholds that quantize to the same level share one computation; levels
    whose component structure is proven by counting get their boxes from row and
    column maxima, the others are traced with the reference's own primitive (see the
    comment above ``_stretches``). On 224 x 224 CAM-like maps with 100 thresholds that
    is 2 to 5 times faster than the reference loop (``benchmarks/bench_maxboxacc.py``),
    more the smoother the maps.
    """
    thresholds = _threshold_array(thresholds)
    deltas = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    best = best_ious(maps, gt_boxes, thresholds, (mode,))[mode]
    accuracy = (best[None] >= deltas[:, None, None]).mean(axis=1)
    return BoxAccuracyCurve(thresholds, deltas, best, accuracy)


@dataclass(frozen=True)
class MaxBoxAccuracy:
    """A MaxBoxAcc summary: ``value`` is the mean over deltas of each delta's best accuracy
    over thresholds (``per_iou``, D), reached first at ``best_thresholds`` (D); one
    threshold serves the whole split for each delta (never one per image)."""

    value: float
    per_iou: np.ndarray
    best_thresholds: np.ndarray
    curve: BoxAccuracyCurve


def _summarize(curve: BoxAccuracyCurve) -> MaxBoxAccuracy:
    best = curve.accuracy.argmax(axis=1)
    per_iou = curve.accuracy[np.arange(len(best)), best]
    return MaxBoxAccuracy(float(per_iou.mean()), per_iou, curve.thresholds[best], curve)


def max_box_acc(maps: np.ndarray, gt_boxes, thresholds=None) -> MaxBoxAccuracy:
    """MaxBoxAcc (V1): IoU >= 0.5, the largest contour's box, best single threshold for the split."""
    return _summarize(box_accuracy_curve(maps, gt_boxes, thresholds, (0.5,), "largest"))


def max_box_acc_v2(maps: np.ndarray, gt_boxes, thresholds=None) -> MaxBoxAccuracy:
    """MaxBoxAccV2: mean over IoU 0.3 / 0.5 / 0.7 of the best-threshold accuracy, every contour's box.

    Each delta takes its own best threshold (the reference maximizes each delta's
    curve separately), each one threshold for the whole split.
    """
    return _summarize(box_accuracy_curve(maps, gt_boxes, thresholds, V2_IOU_THRESHOLDS, "all"))


@dataclass(frozen=True)
class FixedThresholdLocalization:
    """Localization at one fixed threshold: ``accuracy`` = mean of ``hit`` (N bools);
    ``iou`` (N) is each image's best IoU."""

    accuracy: float
    hit: np.ndarray
    iou: np.ndarray


def gt_known_localization(maps: np.ndarray, gt_boxes, relative_threshold: float = 0.15,
                          iou_threshold: float = 0.5, mode: str = "largest") -> FixedThresholdLocalization:
    """GT-known localization: the map of the ground-truth class localizes the object.

    The CutMix paper's rule (after CAM, Zhou et al. 2016): binarize at
    ``relative_threshold`` of the map's maximum and take the tight box of the largest
    connected region; a hit is IoU >= ``iou_threshold`` with some ground-truth box.
    Exactly: ``maps`` are min-max normalized (so "of the max" is of the range, the
    raw CAM's minimum mapped to 0), quantized to uint8, and foreground is
    ``q > int(relative_threshold * max(q))`` (``q > 38``, i.e. normalized value
    >= 39/255, for 0.15 and a non-constant map); the "largest connected component"
    is the contour of largest ``cv2.contourArea`` among all ``findContours`` contours
    (8-connected components, holes included), and its box has the reference's
    ``[x, y, x + w, y + h]`` convention. This is :func:`boxes_from_map` with
    ``mode="largest"``, i.e. one point of the MaxBoxAcc V1 curve.
    """
    curve = box_accuracy_curve(maps, gt_boxes, [relative_threshold], (iou_threshold,), mode)
    iou = curve.best_iou[:, 0]
    hit = iou >= iou_threshold
    return FixedThresholdLocalization(float(hit.mean()), hit, iou)


def top1_localization(maps: np.ndarray, gt_boxes, correct, relative_threshold: float = 0.15,
                      iou_threshold: float = 0.5, mode: str = "largest") -> FixedThresholdLocalization:
    """Top-1 localization (the CutMix paper's Table 9 metric): a GT-known hit AND a correct
    top-1 prediction (``correct``: N bools). ``maps`` are the ground-truth class's maps,
    as in the paper's protocol; see :func:`gt_known_localization` for the box rule."""
    correct = np.asarray(correct, dtype=bool).reshape(-1)
    known = gt_known_localization(maps, gt_boxes, relative_threshold, iou_threshold, mode)
    if len(correct) != len(known.hit):
        raise ValueError(f"expected {len(known.hit)} top-1 outcomes, got {len(correct)}")
    hit = known.hit & correct
    return FixedThresholdLocalization(float(hit.mean()), hit, known.iou)


@dataclass(frozen=True)
class PixelAP:
    """Pixel average precision and its curve.

    Point ``i`` counts pixels with score >= ``thresholds[i]`` as positive; thresholds
    descend (1.0, then the grid from its top). ``precision`` is NaN where no pixel
    reaches the threshold.
    """

    ap: float
    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray


class PixelHistogram:
    """PxAP accumulated batch by batch, as wsolevaluation's ``MaskEvaluator`` does.

    Scores are binned with ``np.histogram`` on the edges ``thresholds + [1, 2, 3]``
    (default grid :func:`cam_thresholds`, which must increase and stay below 1): a
    pixel is predicted positive at threshold ``t`` when its score is >= ``t`` (scores
    between grid points fall to the grid point below). :meth:`update` adds the
    foreground (mask 1) and background (mask 0) pixels of a batch; mask 255 is
    ignored. :meth:`result` reads precision and recall off the cumulative histograms
    from the top and integrates AP = sum over points of precision x recall increment,
    skipping points where nothing is predicted positive. This is a step integration on
    the grid, not scikit-learn's exact ``average_precision_score`` on raw scores; the
    two agree when every score lies on the grid.
    """

    def __init__(self, thresholds=None):
        thresholds = _threshold_array(thresholds)
        if not (np.all(np.diff(thresholds) > 0) and thresholds[-1] < 1):
            raise ValueError("PxAP thresholds must increase and stay below 1")
        self.edges = np.append(thresholds, [1.0, 2.0, 3.0])
        self.foreground = np.zeros(len(self.edges) - 1, np.int64)
        self.background = np.zeros(len(self.edges) - 1, np.int64)

    def update(self, maps: np.ndarray, masks: np.ndarray) -> None:
        """Add ``N x H x W`` maps in [0, 1] and their uint8 masks (0, 1 or 255)."""
        maps, masks = _checked(maps), np.asarray(masks)
        if maps.ndim != 3 or masks.shape != maps.shape:
            raise ValueError(f"expected maps and masks N x H x W of one shape, got {maps.shape} and {masks.shape}")
        if not np.isin(masks, (0, 1, 255)).all():
            raise ValueError("mask values must be 0 (background), 1 (foreground) or 255 (ignore)")
        self.foreground += np.histogram(maps[masks == 1], bins=self.edges)[0]
        self.background += np.histogram(maps[masks == 0], bins=self.edges)[0]

    def result(self) -> PixelAP:
        tp, fp = np.cumsum(self.foreground[::-1]), np.cumsum(self.background[::-1])
        if tp[-1] == 0:
            raise ValueError("PxAP needs at least one foreground pixel")
        predicted = tp + fp
        with np.errstate(invalid="ignore"):
            precision = tp / predicted
        recall = tp / tp[-1]
        gains = (precision[1:] * np.diff(recall))[predicted[1:] > 0]
        return PixelAP(float(gains.sum()), self.edges[-3::-1], precision[1:], recall[1:])


def pxap(maps: np.ndarray, masks: np.ndarray, thresholds=None) -> PixelAP:
    """PxAP of ``N x H x W`` maps in [0, 1] against uint8 masks (1 foreground, 0 background,
    255 ignore, excluded from both) in one call; see :class:`PixelHistogram`."""
    histogram = PixelHistogram(thresholds)
    histogram.update(maps, masks)
    return histogram.result()
