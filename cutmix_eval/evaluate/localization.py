"""Weakly supervised object localization from class activation maps.

Two protocols, each reproducing its source's conventions:

``wsolevaluation`` (Choe et al., CVPR 2020)
    map of the ground-truth class; resized to the input size with bicubic
    interpolation (``cv2.INTER_CUBIC``) *before* per-image min-max normalization
    (NaN or constant maps become zeros); quantized to uint8; foreground = pixels
    strictly above the threshold; thresholds ``0, 0.01, ..., 0.99``; ONE threshold
    for the whole split. Reports MaxBoxAccV2 (mean over IoU 0.3/0.5/0.7, boxes of
    every region), MaxBoxAcc (IoU 0.5, largest region) and, for datasets with
    masks, PxAP.
``paper`` (Yun et al., ICCV 2019, Table 9)
    the same maps resized with bilinear interpolation; binarized at 0.15 x the
    map's maximum; the tight box of the largest connected component. Top-1
    localization: IoU >= 0.5 with a ground-truth box AND top-1 class correct;
    GT-known localization: IoU >= 0.5 alone.

IoU uses inclusive pixel boxes (width = x1 - x0 + 1) in both. Maps are computed
batch by batch and reduced to per-image outcomes at once, so memory does not grow
with the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from cutmix_eval.cam import create_cam
from cutmix_eval.catalog import LOCALIZATION_PROTOCOLS
from cutmix_eval.data.base import ImageDataset
from cutmix_eval.distributed import gather_objects
from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.accumulate import Accumulator
from cutmix_eval.evaluate.classification import check_compatible
from cutmix_eval.metrics import localization as loc
from cutmix_eval.models.classifier import Classifier
from cutmix_eval.passes import head, make_loader
from cutmix_eval.progress import progress_bar
from cutmix_eval.results import Result, example_arrays
from cutmix_eval.runtime import on_device, resolve_device
from cutmix_eval.settings import RunSettings


@dataclass(frozen=True)
class Protocol:
    name: str
    interpolation: int  # cv2 flag used to resize maps to the input size
    description: str


#: the protocols named (and described) in the catalog, each with its interpolation
INTERPOLATIONS = {"wsolevaluation": cv2.INTER_CUBIC, "paper": cv2.INTER_LINEAR}
PROTOCOLS = {name: Protocol(name, INTERPOLATIONS[name], description)
             for name, description in LOCALIZATION_PROTOCOLS.items()}
WSOL_THRESHOLDS = loc.cam_thresholds(0.01)  # wsolevaluation's grid: 0, 0.01, ..., 0.99
PAPER_THRESHOLD = 0.15


def resize_and_normalize(maps: np.ndarray, height: int, width: int, interpolation: int) -> np.ndarray:
    """``B x h x w`` raw maps -> ``B x height x width`` in [0, 1]: resize first, then
    per-map min-max (wsolevaluation's order)."""
    resized = np.stack([cv2.resize(m.astype(np.float32), (width, height), interpolation=interpolation)
                        for m in maps])
    return loc.normalize_minmax(resized)


def evaluate_localization(model: Classifier, dataset: ImageDataset, *, cam: str = "cam",
                          protocol: str = "wsolevaluation", keep_examples: int = 16,
                          settings: RunSettings = RunSettings()) -> Result:
    """Localization metrics of ``model``'s class activation maps on ``dataset``.

    The Result's ``artifacts`` hold the first ``keep_examples`` examples for a figure
    (:func:`~cutmix_eval.results.example_arrays`; :func:`~cutmix_eval.results.examples_from_arrays` gives them back as lists).
    """
    accumulator = LocalizationAccumulator(dataset, cam=cam, protocol=protocol, keep_examples=keep_examples)
    check_compatible(model, dataset)
    device = resolve_device(settings.device)
    with on_device(model, device):
        method = create_cam(cam, model)
        data = head(dataset, settings.limit)
        for batch in progress_bar(make_loader(data, settings.batch_size, settings.num_workers),
                                  desc=f"localize {dataset.name}", unit="batch", enabled=settings.progress):
            images, labels = batch["image"].to(device), batch["label"].to(device)
            out = method(images, labels)
            accumulator.update(batch, out.logits, out.maps)
        return accumulator.finish(settings.model_record(model), settings.config(), num_images=len(data))


class LocalizationAccumulator(Accumulator):
    """The per-batch work of :func:`evaluate_localization`, reusable by any pass that has
    the maps of the ground-truth classes (e.g. a shared pass that also keeps logits).

    :meth:`update` reduces one batch's raw maps at once to per-image outcomes (best IoUs
    over the threshold grid: rows; pixel histograms for PxAP: sums) and keeps the first
    examples, so memory does not grow with the split; :meth:`finish` reduces them over ranks
    (:class:`~cutmix_eval.evaluate.accumulate.Accumulator`) and returns the Result, the
    examples in its artifacts. ``dataset`` must have boxes; ``protocol`` is a key of
    :data:`PROTOCOLS`.
    """

    def __init__(self, dataset: ImageDataset, *, cam: str = "cam", protocol: str = "wsolevaluation",
                 keep_examples: int = 16):
        if protocol not in PROTOCOLS:
            raise UserError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
        if not dataset.has_boxes:
            raise UserError(f"{dataset.name} has no bounding boxes; localization needs a dataset with boxes "
                            "(synthetic, cub, cub-wsol, imagenet with XML boxes, ...)")
        super().__init__()
        self.dataset, self.cam, self.keep_examples = dataset, cam, keep_examples
        self.spec = PROTOCOLS[protocol]
        self.pxap = dataset.has_masks and self.spec.name == "wsolevaluation"

    def update(self, batch: dict, logits, maps) -> None:
        """One batch: ``batch`` as collated by the loader (images, labels, indices, boxes and
        masks on the CPU), ``logits`` ``B x K`` and raw ``maps`` ``B x h x w`` of the labels'
        classes (tensors on any device, e.g. a :class:`~cutmix_eval.cam.CAMResult`'s)."""
        spec, dataset = self.spec, self.dataset
        labels = batch["label"]
        maps = resize_and_normalize(maps.float().cpu().numpy(), *batch["image"].shape[-2:], spec.interpolation)
        boxes = [inclusive_boxes(b.numpy(), dataset) for b in batch["boxes"]]
        modes = ("largest", "all") if spec.name == "wsolevaluation" else ("largest",)
        best = loc.best_ious(maps, boxes, WSOL_THRESHOLDS, modes)  # one shared computation for V1 and V2
        self.add(index=batch["index"], correct=logits.argmax(1) == labels.to(logits.device), v1=best["largest"])
        if spec.name == "wsolevaluation":
            self.add(v2=best["all"])
            if self.pxap:
                pixels = loc.PixelHistogram(WSOL_THRESHOLDS)
                pixels.update(maps, batch["mask"].numpy())
                self.add_sum(foreground=pixels.foreground, background=pixels.background)
        else:
            self.add(fixed=loc.gt_known_localization(maps, boxes, PAPER_THRESHOLD).iou)
        self.keep_first(self.keep_examples, **_examples(self.keep_examples - self.kept("image"), batch, maps,
                                                       dataset))

    def finish(self, model_info: dict[str, Any], run_config: dict[str, Any], *, num_images: int) -> Result:
        """The Result (``num_images``: images of the split evaluated, over all ranks;
        ``run_config``: :meth:`RunSettings.config`), with
        the examples and their predicted boxes as its artifacts (:func:`example_arrays`);
        call once, after the last :meth:`update`."""
        spec, dataset = self.spec, self.dataset
        arrays = self.reduced()
        pixels = None
        if self.pxap:
            pixels = loc.PixelHistogram(WSOL_THRESHOLDS)
            pixels.foreground, pixels.background = arrays.pop("foreground"), arrays.pop("background")
        examples = {key: arrays.pop(key, []) for key in EXAMPLE_KEYS}
        config = {"cam": self.cam, "protocol": spec.name, "protocol_conventions": spec.description,
                  "thresholds": WSOL_THRESHOLDS.tolist()} | run_config
        dataset_info = {"name": dataset.name, "split": dataset.split, "num_images": num_images,
                        "num_classes": dataset.num_classes}
        result = _result(arrays, pixels, spec, model_info, dataset_info, config)
        threshold = PAPER_THRESHOLD if spec.name == "paper" else result.metrics["threshold_maxboxacc"]
        examples["pred_boxes"] = [loc.boxes_from_map(m, threshold, "largest") for m in examples["map"]]
        examples["threshold"] = threshold
        result.artifacts = example_arrays(examples)
        return result


def inclusive_boxes(boxes: np.ndarray, dataset: ImageDataset) -> np.ndarray:
    """Dataset boxes -> the metric's inclusive pixel boxes. Boxes derived from masks are
    pixel-edge coordinates (``x1`` one past the last pixel), so 1 comes off the far
    edges; annotation boxes are taken as the annotators' inclusive coordinates, as
    wsolevaluation does."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if getattr(dataset, "box_convention", "annotation") == "edges":
        boxes = boxes - np.array([0, 0, 1, 1])
    return boxes


#: what each kept example holds: the image, its map, its boxes and its class name
EXAMPLE_KEYS = ("image", "map", "boxes", "title")


def _examples(count: int, batch: dict, maps: np.ndarray, dataset: ImageDataset) -> dict[str, list]:
    """The batch's first ``count`` images as examples (:data:`EXAMPLE_KEYS`)."""
    shown = range(min(max(count, 0), len(maps)))
    labels = [int(batch["label"][i]) for i in shown]
    return {"image": [batch["image"][i].numpy() for i in shown], "map": [maps[i] for i in shown],
            "boxes": [batch["boxes"][i].numpy() for i in shown],
            "title": [dataset.classes[label] if dataset.classes else str(label) for label in labels]}


def _curve_metrics(best_iou: np.ndarray, deltas: tuple[float, ...]) -> tuple[np.ndarray, dict[str, float]]:
    """Accuracy curves (D x T) and, per delta, the max over thresholds and its threshold."""
    accuracy = (best_iou[None] >= np.asarray(deltas)[:, None, None]).mean(axis=1)
    best = accuracy.argmax(axis=1)
    metrics = {}
    for d, delta in enumerate(deltas):
        metrics[f"box_acc_iou{int(round(delta * 100))}"] = float(accuracy[d, best[d]])
        metrics[f"threshold_iou{int(round(delta * 100))}"] = float(WSOL_THRESHOLDS[best[d]])
    return accuracy, metrics


def _result(arrays: dict[str, np.ndarray], pixels, spec: Protocol, model_info, dataset_info, config) -> Result:
    v1_accuracy, _ = _curve_metrics(arrays["v1"], (0.5,))
    v1_best = int(v1_accuracy[0].argmax())
    metrics: dict[str, float] = {"num_images": int(len(arrays["index"])),
                                 "top1_error": float(1 - arrays["correct"].mean())}
    conventions = {"top1_error": "fraction of images whose top-1 prediction is not the label",
                   "maxboxacc": "MaxBoxAcc (V1): best over thresholds of the fraction with IoU >= 0.5, largest "
                                "region's box, one threshold for the split",
                   "threshold_maxboxacc": "the threshold at which MaxBoxAcc is reached"}
    metrics["maxboxacc"] = float(v1_accuracy[0, v1_best])
    metrics["threshold_maxboxacc"] = float(WSOL_THRESHOLDS[v1_best])
    curves = {"thresholds": WSOL_THRESHOLDS, "box_acc_largest_iou50": v1_accuracy[0]}
    per_sample = {"index": arrays["index"], "top1_correct": arrays["correct"],
                  "best_iou_largest": arrays["v1"][:, v1_best]}
    if spec.name == "wsolevaluation":
        v2_accuracy, per_delta = _curve_metrics(arrays["v2"], loc.V2_IOU_THRESHOLDS)
        metrics["maxboxacc_v2"] = float(np.mean([per_delta[f"box_acc_iou{d}"] for d in (30, 50, 70)]))
        metrics.update(per_delta)
        conventions["maxboxacc_v2"] = ("MaxBoxAccV2: mean over IoU 0.3/0.5/0.7 of the best-threshold fraction of "
                                       "images localized, boxes of every region, one threshold per IoU for the split")
        curves.update({f"box_acc_all_iou{int(d * 100)}": v2_accuracy[i]
                       for i, d in enumerate(loc.V2_IOU_THRESHOLDS)})
        best50 = int(v2_accuracy[1].argmax())
        per_sample["best_iou_all"] = arrays["v2"][:, best50]
        if pixels is not None:
            ap = pixels.result()
            metrics["pxap"] = ap.ap
            conventions["pxap"] = "pixel average precision against the masks, ignore regions excluded"
            curves["pxap"] = {"precision": ap.precision, "recall": ap.recall}
    else:
        hit = arrays["fixed"] >= 0.5
        metrics["gt_known_loc"] = float(hit.mean())
        metrics["top1_loc"] = float((hit & arrays["correct"]).mean())
        conventions["gt_known_loc"] = "IoU >= 0.5 at 0.15 x the map maximum, largest region's box"
        conventions["top1_loc"] = "GT-known hit AND correct top-1 class (the CutMix paper's Table 9 metric)"
        per_sample.update({"iou_at_0.15": arrays["fixed"], "top1_loc": hit & arrays["correct"]})
    conventions["protocol"] = spec.description
    return Result(evaluator="localization", metrics=metrics, conventions=conventions, model=model_info,
                  dataset=dataset_info, config=config, per_sample=per_sample, curves=curves)


class _PassOutputs:
    """Stands in for the model inside :class:`~cutmix_eval.cam.native.NativeCAM`:
    ``forward_all`` returns the outputs a shared pass already computed, so NativeCAM's maps
    (``sum_k W[c, k] A_k``) and its checks are reused as they are, without a second forward
    pass. Every other attribute is the model's."""

    def __init__(self, model: Classifier):
        self._model = model
        self.outputs: tuple | None = None

    def forward_all(self, images):
        return self.outputs

    def __getattr__(self, name: str):
        return getattr(self._model, name)


class NativeCAMInPass:
    """Native-CAM localization as a consumer of a shared pass
    (:func:`~cutmix_eval.evaluate.full.shared_pass`): each batch's CAM maps of the labels'
    classes come from the pass's own feature map and the classifier weights, and go at once to
    a :class:`LocalizationAccumulator`. A model native CAM cannot explain (no linear head on
    average-pooled features, found when built or on the first batch) leaves localization out:
    :meth:`finish` then returns the note saying why (on every rank when one rank had to)."""

    def __init__(self, model: Classifier, dataset: ImageDataset, *, protocol: str = "wsolevaluation",
                 keep_examples: int = 16):
        from cutmix_eval.cam.native import NativeCAM

        self.accumulator = LocalizationAccumulator(dataset, cam="cam", protocol=protocol, keep_examples=keep_examples)
        self.outputs, self.cam, self.note = _PassOutputs(model), None, None
        try:
            self.cam = NativeCAM(self.outputs)
        except UserError as error:
            self.note = f"localization skipped: {error}"

    def update(self, batch: dict, images, logits, pooled, fmap) -> None:
        if self.cam is None:
            return
        self.outputs.outputs = (logits, pooled, fmap)
        try:
            maps = self.cam(images, batch["label"].to(images.device)).maps
        except UserError as error:  # e.g. features not average-pooled: found on the first batch
            self.cam, self.note = None, f"localization skipped: {error}"
        else:
            self.accumulator.update(batch, logits, maps)

    def finish(self, model_info: dict[str, Any], run_config: dict[str, Any], *, num_images: int) -> Result | str:
        """The Result, or the note saying why localization was left out."""
        if notes := [n for n in gather_objects(self.note) if n]:
            return notes[0]
        return self.accumulator.finish(model_info, run_config, num_images=num_images)
