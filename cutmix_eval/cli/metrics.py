"""``metrics``: score outputs produced elsewhere with our metric functions.

``metrics wsol`` takes saved maps and boxes, the way wsolevaluation accepts saved
score maps, so CAMs from any tool can be scored with the same conventions.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np

from cutmix_eval.cli._common import Command, add_json, emit_json, print_table
from cutmix_eval.errors import UserError


SCORE_FORMATS = "as a 1-D .npy array or a .txt/.csv file of numbers, one per line"


def _load_array(path: str, what: str) -> np.ndarray:
    """A ``.npy`` array (no pickles)."""
    if Path(path).suffix.lower() != ".npy":
        raise UserError(f"{what} {path}: expected a .npy array (numpy.save)")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {what} {path} as a .npy array ({err})") from err


def load_scores(path: str, what: str) -> np.ndarray:
    """Scores from a ``.npy`` array or a text file read by ``np.loadtxt`` (``.txt``:
    whitespace-separated, ``.csv``: comma-separated; ``#`` starts a comment), one number
    per line; a non-empty 1-D numeric array, else a :class:`UserError` naming the file."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".npy", ".txt", ".csv"):
        raise UserError(f"{what} {path}: unsupported file type {suffix or '(none)'}; give the scores {SCORE_FORMATS}")
    if suffix == ".npy":
        scores = _load_array(path, what)
    else:
        try:
            with warnings.catch_warnings():  # an empty file: refused below, not warned about
                warnings.simplefilter("ignore", UserWarning)
                scores = np.loadtxt(path, delimiter="," if suffix == ".csv" else None, ndmin=1)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read {what} {path} as numbers, one per line ({err})") from err
    if scores.ndim != 1 or not np.issubdtype(scores.dtype, np.number) or not scores.size:
        raise UserError(f"{what} {path}: expected a non-empty 1-D numeric array (one number per image), got shape "
                        f"{scores.shape} of {scores.dtype}")
    return scores


def load_boxes(path: str) -> list[np.ndarray]:
    """Per-image ``K x 4`` boxes from JSON (a list, one list of ``[x0, y0, x1, y1]`` per
    image) or a wsolevaluation ``localization.txt`` (``image,x0,y0,x1,y1`` rows; an
    image's rows are its boxes; images in order of first appearance)."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"boxes file {path} does not exist")
    try:
        if file.suffix == ".json":
            boxes = [np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in json.loads(file.read_text())]
        else:
            grouped: dict[str, list[list[float]]] = {}
            with open(file, newline="") as fh:
                for row in csv.reader(fh):
                    if row:
                        grouped.setdefault(row[0], []).append([float(v) for v in row[1:5]])
            boxes = [np.asarray(b).reshape(-1, 4) for b in grouped.values()]
    except (ValueError, TypeError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read boxes from {path} ({err}); expected JSON [[[x0,y0,x1,y1],...],...] "
                        "or wsolevaluation localization.txt rows image,x0,y0,x1,y1") from err
    if not boxes or any(len(b) == 0 for b in boxes):
        raise UserError(f"{path}: every image needs at least one box")
    return boxes


class MetricsCommand(Command):
    name = "metrics"
    help = "score outputs produced elsewhere (wsol: MaxBoxAccV2, MaxBoxAcc, top-1 loc, PxAP; ood: TNR at TPR95, AUROC...)"
    examples = ("cutmix-eval metrics wsol --maps cams.npy --boxes localization.txt --json",
                "cutmix-eval metrics ood --id-scores id.npy --ood-scores ood.npy --json",
                "cutmix-eval metrics wsol --maps cams.npy --boxes boxes.json --masks masks.npy --correct correct.npy")

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="metric", metavar="METRIC", required=True)
        wsol = sub.add_parser("wsol", help="weakly supervised localization metrics from saved maps",
                              description="Maps N x H x W (.npy, any scale: min-max normalized per map here, "
                                          "NaN/constant maps -> 0) at the resolution of the boxes; boxes inclusive "
                                          "pixel coordinates. Conventions: wsolevaluation's (uint8 quantization, "
                                          "foreground strictly above the threshold, one threshold for the split).")
        wsol.add_argument("--maps", required=True, help="N x H x W .npy array of maps, one per image")
        wsol.add_argument("--boxes", required=True, help="JSON per-image box lists or wsolevaluation localization.txt")
        wsol.add_argument("--masks", help="N x H x W uint8 .npy (0 background, 1 object, 255 ignore) for PxAP")
        wsol.add_argument("--correct", help="N booleans .npy: top-1 prediction correct, for top-1 localization")
        wsol.add_argument("--step", type=float, default=0.01,
                          help="threshold grid step, in (0, 0.5]: thresholds 0, step, 2 step, ... below 1 (default "
                               "0.01: 100 thresholds)")
        add_json(wsol)
        ood = sub.add_parser("ood", help="OOD detection metrics from saved scores",
                             description="Scores: one number per image, higher = more in-distribution (negate a "
                                         f"detector that scores OOD-ness), {SCORE_FORMATS}. ID is the positive "
                                         "class; TNR at TPR95 uses the exact sweep (largest threshold accepting "
                                         ">= 95% of ID images).")
        ood.add_argument("--id-scores", required=True, help="scores of the in-distribution images (N_in; .npy, .txt "
                                                            "or .csv)")
        ood.add_argument("--ood-scores", required=True, help="scores of the OOD images (N_out; .npy, .txt or .csv)")
        add_json(ood)

    def run(self, args):
        return self.run_ood(args) if args.metric == "ood" else self.run_wsol(args)

    def run_ood(self, args):
        from cutmix_eval.metrics.ood import CONVENTIONS, ood_metrics

        scores = {what: load_scores(path, what) for what, path in (("ID scores", args.id_scores),
                                                                   ("OOD scores", args.ood_scores))}
        try:
            metrics = ood_metrics(scores["ID scores"], scores["OOD scores"]).as_dict()
        except ValueError as err:
            raise UserError(f"{err}") from err
        print(f"{len(scores['ID scores'])} ID scores (positive class) vs {len(scores['OOD scores'])} OOD scores; "
              "higher = more in-distribution")
        print_table([{"metric": k, "value (%)": 100 * v} for k, v in metrics.items() if k != "threshold_tpr95"])
        print(f"threshold at TPR 95%: {metrics['threshold_tpr95']:.6g}")
        if args.json:
            emit_json({"metrics": metrics, "conventions": CONVENTIONS, "num_id": len(scores["ID scores"]),
                       "num_ood": len(scores["OOD scores"])})
        return 0

    def run_wsol(self, args):
        from cutmix_eval.metrics import localization as loc

        try:
            thresholds = loc.cam_thresholds(args.step)
        except ValueError as err:
            raise UserError(f"--step: {err}") from err
        maps = _load_array(args.maps, "maps")
        boxes = load_boxes(args.boxes)
        if maps.ndim != 3 or len(maps) != len(boxes):
            raise UserError(f"maps must be N x H x W with one map per image of the boxes file: got shape "
                            f"{maps.shape} for {len(boxes)} images")
        maps = loc.normalize_minmax(maps.astype(np.float64))
        v2 = loc.max_box_acc_v2(maps, boxes, thresholds)
        v1 = loc.max_box_acc(maps, boxes, thresholds)
        metrics = {"maxboxacc_v2": v2.value, "maxboxacc": v1.value,
                   **{f"box_acc_iou{int(round(d * 100))}": float(a) for d, a in zip(loc.V2_IOU_THRESHOLDS, v2.per_iou)},
                   "gt_known_loc": loc.gt_known_localization(maps, boxes).accuracy}
        if args.correct:
            correct = _load_array(args.correct, "top-1 outcomes").astype(bool).reshape(-1)
            if len(correct) != len(maps):
                raise UserError(f"{args.correct} has {len(correct)} entries for {len(maps)} maps")
            metrics["top1_loc"] = loc.top1_localization(maps, boxes, correct).accuracy
        if args.masks:
            masks = _load_array(args.masks, "masks")
            if masks.shape != maps.shape:
                raise UserError(f"masks have shape {masks.shape}, maps {maps.shape}; they must match")
            metrics["pxap"] = loc.pxap(maps, masks, thresholds).ap
        print(f"{len(maps)} maps of {maps.shape[1]} x {maps.shape[2]}; wsolevaluation conventions, "
              f"{len(thresholds)} thresholds")
        print_table([{"metric": k, "value (%)": 100 * v} for k, v in metrics.items()])
        if args.json:
            emit_json({"metrics": metrics, "num_images": len(maps), "thresholds": len(thresholds),
                       "best_thresholds_v2": v2.best_thresholds.tolist(),
                       "best_threshold_v1": float(v1.best_thresholds[0])})
        return 0
