"""MaxBoxAcc over a split: our exact fast path against wsolevaluation's per-threshold loop.

Maps per second of MaxBoxAccV2 (and V1 on one family) over 224 x 224 CAM-like maps
with ground-truth boxes and 100 thresholds: wsolevaluation's code path (one
``cv2.findContours`` per map and threshold: ``reference_best_ious`` of
``tests/test_metrics_localization.py``, imported so that the timed loop is the one
the tests trust) against ``cutmix_eval.metrics.localization``. The maps are Gaussian
blobs on a 14 x 14 grid plus uniform noise, upsampled bicubically like real CAMs; the
noise level sets how many levels have tiny components or holes, which our fast path
must trace like the reference. Rounds alternate between the two, medians are
reported, and every map's best IoU at every threshold is checked to be identical
(that check, one run of each on the whole split, is also the warm-up). Splits of 300
maps and 5 rounds (``--quick``: 100 maps, 3 rounds). Target: at least 20 times the
reference's speed on MaxBoxAccV2.

    .venv/bin/python benchmarks/bench_maxboxacc.py [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from _common import alternating_seconds, comparison, markdown_table, parse_rounds, print_summary, verdict
from cutmix_eval.metrics.localization import cam_thresholds, max_box_acc, max_box_acc_v2, normalize_minmax

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_metrics_localization import blob_map, random_gt, reference_best_ious  # noqa: E402

TARGET = 20.0
THRESHOLDS = cam_thresholds(0.01)
METRICS = {"MaxBoxAccV2": (max_box_acc_v2, (0.3, 0.5, 0.7), True), "MaxBoxAcc (V1)": (max_box_acc, (0.5,), False)}


def split(count: int, noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    maps = normalize_minmax(np.stack([blob_map(rng, 224, 224, noise) for _ in range(count)]).astype(np.float64))
    return maps, [random_gt(rng, 224, 224, rng.integers(1, 3)) for _ in range(count)]


def reference_metric(deltas, multi_contour):
    """The reference's summary: per delta, the best accuracy over thresholds; their mean."""
    def run(maps, gts):
        best = reference_best_ious(maps, gts, THRESHOLDS, multi_contour)
        return float(np.mean([(best >= d).mean(axis=0).max() for d in deltas]))
    return run


def bench(metric: str, noise: float, count: int, rounds: int) -> dict:
    ours, deltas, multi_contour = METRICS[metric]
    maps, gts = split(count, noise)
    reference = reference_metric(deltas, multi_contour)
    variants = {"reference": lambda: reference(maps, gts), "ours": lambda: ours(maps, gts).value}
    # The check runs both once on the whole split: it is also the warm-up.
    expected = reference_best_ious(maps, gts, THRESHOLDS, multi_contour)
    identical = np.array_equal(expected, ours(maps, gts).curve.best_iou)
    seconds = alternating_seconds(variants, rounds, warmup=0)
    return {"metric": metric, "maps": f"{count} x 224 x 224, noise {noise}",
            "reference (ms/map)": 1e3 * seconds["reference"] / count, "ours (ms/map)": 1e3 * seconds["ours"] / count,
            "ratio": seconds["reference"] / seconds["ours"], "identical": "yes" if identical else "NO"}


def main() -> None:
    count, rounds = parse_rounds(__doc__, quick=(100, 3), full=(300, 5))  # maps per split, rounds
    rows = [bench("MaxBoxAccV2", noise, count, rounds) for noise in (0.0, 0.05, 0.15)]
    rows.append(bench("MaxBoxAcc (V1)", 0.05, count, rounds))
    print(f"# MaxBoxAcc over a split: ours vs the reference's per-threshold findContours loop "
          f"({len(THRESHOLDS)} thresholds, medians of {rounds} alternating rounds)\n")
    print(markdown_table(rows, {"metric": "", "maps": "", "reference (ms/map)": ".3f", "ours (ms/map)": ".3f",
                                "ratio": ".1f", "identical": ""}))
    v2 = [r["ratio"] for r in rows if r["metric"] == "MaxBoxAccV2"]
    print(f"\nTarget: MaxBoxAccV2 >= {TARGET:.0f} x the reference's speed with identical results: "
          f"{verdict(min(v2), TARGET)} (ratios {', '.join(f'{r:.1f}' for r in v2)}; "
          f"identical: {all(r['identical'] == 'yes' for r in rows)}).")
    print_summary([comparison(f"{r['metric']} vs the per-threshold findContours loop, {r['maps']}",
                              r["ours (ms/map)"], r["reference (ms/map)"], "ms/map", r["ratio"],
                              f">= {TARGET:g}, identical" if r["metric"] == "MaxBoxAccV2" else "(none), identical",
                              (r["ratio"] >= TARGET if r["metric"] == "MaxBoxAccV2" else True)
                              and r["identical"] == "yes", "wsolevaluation loop")
                   for r in rows])


if __name__ == "__main__":
    main()
