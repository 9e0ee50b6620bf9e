"""WSOL metrics: exact agreement with a wsolevaluation-style loop, and checks by hand.

``reference_best_ious`` below follows the code path of wsolevaluation's
``BoxEvaluator.accumulate`` (``compute_bboxes_from_scoremaps`` then
``calculate_multiple_iou``): one ``cv2.findContours`` per map and threshold. It shares
no code with the package, and the fast implementation must reproduce its numbers
exactly. ``benchmarks/bench_maxboxacc.py`` times this same loop.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from cutmix_eval.metrics.localization import (
    box_accuracy_curve,
    best_ious,
    boxes_from_map,
    cam_thresholds,
    gt_known_localization,
    iou_inclusive,
    max_box_acc,
    max_box_acc_v2,
    normalize_minmax,
    PixelHistogram,
    pxap,
    top1_localization,
)

THRESHOLDS = np.arange(0, 1, 0.01)
MODES = {"all": True, "largest": False}  # mode -> the reference's multi_contour_eval


# --- the reference loop ------------------------------------------------------------------


def reference_boxes(map2d: np.ndarray, threshold: float, multi_contour: bool) -> np.ndarray:
    """Boxes of one map at one threshold, step by step as wsolevaluation computes them."""
    image = np.expand_dims((map2d * 255).astype(np.uint8), 2)
    height, width = map2d.shape
    _, binary = cv2.threshold(image, int(threshold * np.max(image)), 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return np.array([[0, 0, 0, 0]])
    if not multi_contour:
        contours = [max(contours, key=cv2.contourArea)]
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
    return np.array(boxes)


def reference_iou(boxes: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """IoU of every (box, gt) pair with inclusive pixel coordinates (+1 on widths and heights)."""
    x0, y0, x1, y1 = (boxes[:, None, i] for i in range(4))
    g0, h0, g1, h1 = (gts[None, :, i] for i in range(4))
    overlap = np.clip(np.minimum(x1, g1) - np.maximum(x0, g0) + 1, 0, None) * \
        np.clip(np.minimum(y1, h1) - np.maximum(y0, h0) + 1, 0, None)
    union = (x1 - x0 + 1) * (y1 - y0 + 1) + (g1 - g0 + 1) * (h1 - h0 + 1) - overlap
    return np.where(union > 0, overlap / np.maximum(union, 1), 0.0)


def reference_best_ious(maps, gt_boxes, thresholds, multi_contour: bool) -> np.ndarray:
    """``N x T`` best IoU per map and threshold: every threshold's boxes are stacked, scored
    against the map's ground truth at once, and sliced back per threshold."""
    rows = []
    for map2d, gts in zip(maps, gt_boxes):
        per_threshold = [reference_boxes(map2d, t, multi_contour) for t in thresholds]
        best = reference_iou(np.concatenate(per_threshold), np.asarray(gts)).max(axis=1)
        ends = np.cumsum([len(b) for b in per_threshold])
        rows.append([best[end - len(b):end].max() for b, end in zip(per_threshold, ends)])
    return np.array(rows)


# --- maps ----------------------------------------------------------------------------------


def random_gt(rng, height, width, count) -> np.ndarray:
    xs, ys = np.sort(rng.integers(0, width, (count, 2)), axis=1), np.sort(rng.integers(0, height, (count, 2)), axis=1)
    return np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1)


def smooth_map(rng, height, width) -> np.ndarray:
    coarse = rng.random(tuple(rng.integers(2, 8, 2))).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def blob_map(rng, height, width, noise) -> np.ndarray:
    """Gaussian blobs on a 14 x 14 grid plus uniform noise, upsampled like a CAM."""
    yy, xx = np.mgrid[:14, :14] + 0.5
    coarse = noise * rng.random((14, 14))
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(2, 12, 2)
        coarse += rng.uniform(0.5, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(1, 4) ** 2))
    return cv2.resize(coarse.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)


def adversarial_maps(rng) -> list[np.ndarray]:
    """Ties, plateaus, holes, nesting, lines, borders, single pixels, degenerate maps."""
    maps = [np.zeros((12, 15)), np.full((9, 9), 0.3), np.full((8, 8), np.nan), rng.random((20, 17))]
    maps += [rng.integers(0, 4, (25, 30)).astype(float) for _ in range(4)]  # few levels: many ties
    maps += [(rng.random((30, 24)) < 0.5) * rng.random() for _ in range(2)]  # binary noise
    blocks = np.zeros((30, 40))
    blocks[2:8, 3:9], blocks[12:20, 20:35], blocks[25:29, 2:6], blocks[0:3, 37:40] = 0.9, 0.6, 0.3, 1.0
    maps.append(blocks)  # separate plateaus, one in a corner
    rings = np.zeros((40, 40))
    for radius, value in [(18, 0.4), (12, 0.8), (6, 0.6), (2, 1.0)]:
        yy, xx = np.mgrid[:40, :40]
        rings[np.abs(np.hypot(yy - 20, xx - 20) - radius) < 1.2] = value
    maps.append(rings)  # nested rings: holes inside holes
    cup = np.zeros((30, 30))
    cup[5:25, 5:8], cup[22:25, 5:25], cup[5:25, 22:25], cup[12:16, 13:17] = 0.5, 0.5, 0.5, 0.9
    cup[8:11, 14] = 0.7  # a peak inside the U's box: overlapping component boxes
    maps.append(cup)
    lines = np.zeros((20, 20))
    lines[3, :], lines[:, 15] = 0.5, 0.7
    lines[np.arange(20), np.arange(20)] = 0.9  # 1-pixel lines, diagonal connectivity
    maps.append(lines)
    dots = np.zeros((16, 16))
    dots[rng.integers(0, 16, 12), rng.integers(0, 16, 12)] = rng.random(12)
    maps.append(dots)  # single pixels, some on the border
    checker = (np.indices((14, 14)).sum(axis=0) % 2) * np.linspace(0.2, 1, 14)
    maps.append(checker)  # diagonal-only neighbours
    steps = np.arange(256) / 255.0  # exact quantization boundaries and their neighbours
    maps.append(np.stack([steps, np.nextafter(steps, 0), np.nextafter(steps, 1).clip(0, 1)]))
    rim = np.pad(np.full((10, 10), 0.2), 1, constant_values=1.0)
    maps.append(rim)  # a plateau framed by the border: one big hole
    return maps


def families():
    rng = np.random.default_rng(7)
    return {
        "smooth": [smooth_map(rng, *rng.integers(8, 50, 2)) for _ in range(40)],
        "blobs": [blob_map(rng, 56, 56, noise) for noise in (0.0, 0.05, 0.15) for _ in range(8)],
        "cam-sized": [blob_map(rng, 224, 224, noise) for noise in (0.0, 0.1) for _ in range(3)],
        "adversarial": adversarial_maps(rng),
    }


FAMILIES = families()


def normalized_with_gt(maps, seed=0):
    rng = np.random.default_rng(seed)
    maps = [normalize_minmax(np.asarray(m, dtype=np.float64)[None])[0] for m in maps]
    return maps, [random_gt(rng, *m.shape, rng.integers(1, 4)) for m in maps]


# --- exactness against the reference loop ------------------------------------------------


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_best_iou_equals_reference_loop(family, mode):
    maps, gts = normalized_with_gt(FAMILIES[family])
    expected = reference_best_ious(maps, gts, THRESHOLDS, MODES[mode])
    for shape in {m.shape for m in maps}:  # the API takes one N x H x W stack per map size
        picked = [i for i, m in enumerate(maps) if m.shape == shape]
        curve = box_accuracy_curve(np.stack([maps[i] for i in picked]), [gts[i] for i in picked], THRESHOLDS,
                                   mode=mode)
        np.testing.assert_array_equal(curve.best_iou, expected[picked])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_both_modes_in_one_call_equal_the_reference_loop(family):
    """V1 and V2 computed together (shared tracing) give each mode's reference curve."""
    maps, gts = normalized_with_gt(FAMILIES[family])
    for shape in {m.shape for m in maps}:
        picked = [i for i, m in enumerate(maps) if m.shape == shape]
        both = best_ious(np.stack([maps[i] for i in picked]), [gts[i] for i in picked], THRESHOLDS, tuple(MODES))
        for mode, multi in MODES.items():
            expected = reference_best_ious([maps[i] for i in picked], [gts[i] for i in picked], THRESHOLDS, multi)
            np.testing.assert_array_equal(both[mode], expected, err_msg=mode)


def test_fine_grid_and_unsorted_thresholds_equal_reference():
    maps, gts = normalized_with_gt([blob_map(np.random.default_rng(s), 32, 32, 0.05) for s in range(4)])
    thresholds = np.random.default_rng(1).permutation(np.arange(0, 1, 0.001))  # many thresholds share a level
    for mode, multi in MODES.items():
        expected = reference_best_ious(maps, gts, thresholds, multi)
        np.testing.assert_array_equal(box_accuracy_curve(np.stack(maps), gts, thresholds, mode=mode).best_iou, expected)


def test_unnormalized_maximum_sets_the_levels():
    """Levels are relative to the map's own quantized maximum, here 127, not 255."""
    maps, gts = normalized_with_gt([smooth_map(np.random.default_rng(s), 20, 20) for s in range(3)])
    maps = [m * 0.5 for m in maps]
    for mode, multi in MODES.items():
        expected = reference_best_ious(maps, gts, THRESHOLDS, multi)
        np.testing.assert_array_equal(box_accuracy_curve(np.stack(maps), gts, mode=mode).best_iou, expected)


def test_float32_maps_are_read_as_float64():
    maps, gts = normalized_with_gt(FAMILIES["blobs"][:4])
    single = np.stack(maps).astype(np.float32)
    expected = box_accuracy_curve(single.astype(np.float64), gts).best_iou
    np.testing.assert_array_equal(box_accuracy_curve(single, gts).best_iou, expected)


def test_max_box_acc_summaries_from_the_reference_curve():
    maps, gts = normalized_with_gt(FAMILIES["blobs"])
    for summary, deltas, multi in [(max_box_acc, (0.5,), False), (max_box_acc_v2, (0.3, 0.5, 0.7), True)]:
        accuracy = np.array([(reference_best_ious(maps, gts, THRESHOLDS, multi) >= d).mean(axis=0) for d in deltas])
        result = summary(np.stack(maps), gts)
        np.testing.assert_array_equal(result.curve.accuracy, accuracy)
        np.testing.assert_array_equal(result.per_iou, accuracy.max(axis=1))
        np.testing.assert_array_equal(result.best_thresholds, THRESHOLDS[accuracy.argmax(axis=1)])
        assert result.value == pytest.approx(accuracy.max(axis=1).mean(), abs=1e-15)


def test_max_box_acc_is_invariant_to_scaling_the_raw_maps():
    """Normalization removes a positive scale; powers of two keep every bit of the maps."""
    rng = np.random.default_rng(3)
    raw = np.stack([blob_map(rng, 40, 40, 0.1) for _ in range(12)]).astype(np.float64) - 0.2
    gts = [random_gt(rng, 40, 40, 2) for _ in range(12)]
    base = max_box_acc_v2(normalize_minmax(raw), gts)
    for scale in (2.0 ** -7, 2.0 ** 9):
        scaled = max_box_acc_v2(normalize_minmax(raw * scale), gts)
        assert scaled.value == base.value
        np.testing.assert_array_equal(scaled.curve.best_iou, base.curve.best_iou)


# --- primitives by hand --------------------------------------------------------------------


def test_iou_inclusive_by_hand():
    ious = iou_inclusive([[1, 2, 5, 6], [0, 0, 0, 0], [10, 10, 12, 12]], [[3, 1, 4, 5], [0, 0, 0, 0]])
    # a is 5 x 5 = 25 pixels, b 2 x 5 = 10, they share x 3..4, y 2..5: 8 pixels
    np.testing.assert_allclose(ious, [[8 / 27, 0], [0, 1], [0, 0]])
    assert iou_inclusive([[5, 5, 3, 3]], [[5, 5, 3, 3]])[0, 0] == 0  # inverted box: union 2 - ... <= 0 -> 0
    assert iou_inclusive(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)


def test_normalize_minmax_edge_cases():
    maps = np.array([[[2.0, 4.0], [6.0, 6.0]], [[3.0, 3.0], [3.0, 3.0]], [[0.0, np.nan], [1.0, 2.0]],
                     [[0.0, np.inf], [1.0, 2.0]], [[-1.0, -3.0], [-2.0, -3.0]]])
    out = normalize_minmax(maps)
    np.testing.assert_array_equal(out, [[[0, 0.5], [1, 1]], np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2)),
                                        [[1, 0], [0.5, 0]]])
    assert normalize_minmax(maps.astype(np.float32)).dtype == np.float32
    assert normalize_minmax(np.arange(4).reshape(1, 2, 2)).dtype == np.float64
    with pytest.raises(ValueError):
        normalize_minmax(np.zeros((3, 3)))


def test_boxes_from_map_by_hand():
    blob = np.zeros((10, 12))
    blob[2:5, 3:7] = 1.0  # rows 2..4, columns 3..6
    np.testing.assert_array_equal(boxes_from_map(blob, 0.5), [[3, 2, 7, 5]])  # x + w, y + h
    blob[0:3, 9:12] = 0.5  # a second, fainter block touching the top right border
    found = boxes_from_map(blob, 0.2, "all")
    np.testing.assert_array_equal(found[np.lexsort(found.T)], [[9, 0, 11, 3], [3, 2, 7, 5]])  # clipped to W - 1
    np.testing.assert_array_equal(boxes_from_map(blob, 0.9, "all"), [[3, 2, 7, 5]])
    np.testing.assert_array_equal(boxes_from_map(np.zeros((5, 5)), 0.0, "all"), [[0, 0, 0, 0]])
    ring = np.zeros((9, 9))
    ring[1:8, 1:8], ring[3:6, 3:6] = 1.0, 0.0  # a hole of 3 x 3 pixels at 3..5
    found = boxes_from_map(ring, 0.5, "all")
    np.testing.assert_array_equal(found[np.lexsort(found.T)], [[2, 2, 7, 7], [1, 1, 8, 8]])  # hole +-1, then + w
    np.testing.assert_array_equal(boxes_from_map(ring, 0.5, "largest"), [[1, 1, 8, 8]])


def test_threshold_is_strictly_above_a_fraction_of_the_quantized_max():
    """0.15 of 255 is 38.25 -> level 38: quantized 38 is background, 39 foreground."""
    values = np.array([[38, 39, 0, 0], [0, 0, 0, 255]]) / 255.0 + 1e-9
    found = boxes_from_map(values.clip(0, 1), 0.15, "all")
    np.testing.assert_array_equal(found[np.lexsort(found.T)], [[1, 0, 2, 1], [3, 1, 3, 1]])


def test_gt_known_and_top1_localization_by_hand():
    maps = np.zeros((3, 10, 10))
    maps[0, 2:6, 2:6] = 1.0  # box [2, 2, 6, 6]: 25 pixels
    maps[1, 2:6, 2:6] = 1.0
    maps[1, 7:10, 7:10] = 0.1  # below 0.15 of the max: ignored
    maps[2, 0:2, 8:10] = 1.0  # far from the object
    gts = [[[2, 2, 6, 6]], [[0, 0, 9, 9], [2, 2, 5, 5]], [[2, 2, 6, 6]]]
    known = gt_known_localization(maps, gts)
    np.testing.assert_allclose(known.iou, [1.0, 16 / 25, 0.0])
    np.testing.assert_array_equal(known.hit, [True, True, False])
    assert known.accuracy == pytest.approx(2 / 3)
    top1 = top1_localization(maps, gts, correct=[True, False, True])
    np.testing.assert_array_equal(top1.hit, [True, False, False])
    assert top1.accuracy == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        top1_localization(maps, gts, correct=[True])


# --- PxAP ----------------------------------------------------------------------------------


def histogram_pxap(maps, masks, thresholds) -> float:
    """The reference's binned AP written as counts: a pixel is positive at t when score >= t."""
    cuts = np.concatenate([[2.0, 1.0], thresholds[::-1]])
    positives, negatives = maps[masks == 1], maps[masks == 0]
    tp = np.array([(positives >= t).sum() for t in cuts])
    fp = np.array([(negatives >= t).sum() for t in cuts])
    recall = tp / len(positives)
    ap = 0.0
    for i in range(1, len(cuts)):
        if tp[i] + fp[i] > 0:
            ap += tp[i] / (tp[i] + fp[i]) * (recall[i] - recall[i - 1])
    return ap


def test_pxap_equals_sklearn_when_scores_lie_on_the_grid():
    rng = np.random.default_rng(0)
    grid = cam_thresholds(0.01)
    maps = np.append(grid, 1.0)[rng.integers(0, 101, (4, 16, 16))]
    masks = rng.choice(np.array([0, 1, 255], np.uint8), (4, 16, 16), p=[0.5, 0.3, 0.2])
    keep = masks != 255
    expected = average_precision_score(masks[keep] == 1, maps[keep])
    assert pxap(maps, masks, grid).ap == pytest.approx(expected, abs=1e-12)


def test_pxap_bins_scores_between_grid_points():
    """Off the grid, PxAP is the reference's step integration, not sklearn's exact AP."""
    rng = np.random.default_rng(1)
    maps = normalize_minmax(np.stack([blob_map(rng, 24, 24, 0.2) for _ in range(5)]).astype(np.float64))
    masks = (maps > 0.45).astype(np.uint8)
    masks[:, :3] = 255
    result = pxap(maps, masks)
    assert result.ap == pytest.approx(histogram_pxap(maps, masks, cam_thresholds()), abs=1e-12)
    keep = masks != 255
    assert result.ap == pytest.approx(average_precision_score(masks[keep] == 1, maps[keep]), abs=0.02)
    assert result.thresholds[0] == 1.0 and result.thresholds[-1] == 0.0
    assert result.recall[-1] == 1.0 and np.all(np.diff(result.recall) >= 0)


def test_pxap_accumulates_batch_by_batch():
    rng = np.random.default_rng(2)
    maps = rng.random((6, 12, 12))
    masks = rng.choice(np.array([0, 1, 255], np.uint8), (6, 12, 12))
    streamed = PixelHistogram()
    streamed.update(maps[:4], masks[:4])
    streamed.update(maps[4:], masks[4:])
    whole = pxap(maps, masks)
    assert streamed.result().ap == whole.ap
    np.testing.assert_array_equal(streamed.result().precision, whole.precision)


def test_pxap_ignores_the_ignore_region():
    maps = np.array([[[0.9, 0.1, 0.8]]])
    masks = np.array([[[1, 0, 255]]], np.uint8)
    assert pxap(maps, masks).ap == pytest.approx(1.0)
    masks[0, 0, 2] = 0  # counted now, as a negative ranked below the positive: still perfect
    assert pxap(maps, masks).ap == pytest.approx(1.0)
    maps[0, 0, 2] = 0.95  # now a negative outranks the positive
    assert pxap(maps, masks).ap == pytest.approx(0.5)


# --- input checks ----------------------------------------------------------------------------


def test_inputs_are_checked():
    maps = np.zeros((2, 5, 5))
    gts = [[[0, 0, 1, 1]], [[0, 0, 1, 1]]]
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        box_accuracy_curve(maps + 2, gts)
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        box_accuracy_curve(np.full((2, 5, 5), np.nan), gts)
    with pytest.raises(ValueError, match="ground-truth"):
        box_accuracy_curve(maps, gts[:1])
    with pytest.raises(ValueError, match="mode"):
        box_accuracy_curve(maps, gts, mode="biggest")
    with pytest.raises(ValueError, match="thresholds"):
        box_accuracy_curve(maps, gts, thresholds=[-0.1])
    with pytest.raises(ValueError, match="mask values"):
        pxap(maps, np.full((2, 5, 5), 2, np.uint8))
    with pytest.raises(ValueError, match="foreground"):
        pxap(maps, np.zeros((2, 5, 5), np.uint8))


def test_threshold_grid_has_at_least_two_thresholds():
    assert len(cam_thresholds(0.01)) == 100 and list(cam_thresholds(0.5)) == [0.0, 0.5]
    for step in (0, -0.01, 0.51, 1, 2, float("nan")):
        with pytest.raises(ValueError, match="at least 2 thresholds"):
            cam_thresholds(step)
