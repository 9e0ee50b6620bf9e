"""Weakly supervised localization from class activation maps (needs boxes): MaxBoxAccV2,
MaxBoxAcc and PxAP under the wsolevaluation protocol, GT-known and top-1 localization under
the paper's."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cutmix_eval.analyses.base import Analysis, Option, Outcome, PassUse, Subject, register_analysis
from cutmix_eval.analyses.options import choice, count
from cutmix_eval.catalog import CAMS, LOCALIZATION_PROTOCOLS
from cutmix_eval.report.store import Record
from cutmix_eval.report.table import HIGHER
from cutmix_eval.report.view import Metric, TableSpec, View


def boxes_note(dataset: Any) -> str | None:
    """Why localization cannot run on ``dataset`` (None when it can)."""
    if not dataset.has_boxes:
        return f"localization skipped: {dataset.name}/{dataset.split} has no bounding boxes"
    return None


def _cams() -> list[str]:
    from cutmix_eval.cam import list_cams

    return list_cams()


def run(subject: Subject, cam: str = "cam", protocol: str = "wsolevaluation", examples: int = 16) -> Outcome:
    from cutmix_eval.evaluate.localization import evaluate_localization

    return [evaluate_localization(subject.model, subject.dataset, cam=cam, protocol=protocol,
                                  keep_examples=examples, settings=subject.settings)]


def joins(subject: Subject, options: Mapping[str, Any]) -> bool:
    """Native CAM on data with boxes: its maps come from the pass's feature maps (gradient CAMs
    need a backward pass of their own)."""
    return options["cam"] == "cam" and boxes_note(subject.dataset) is None


def consumer(subject: Subject, options: Mapping[str, Any]):
    from cutmix_eval.evaluate.localization import NativeCAMInPass

    return NativeCAMInPass(subject.model, subject.dataset, protocol=options["protocol"],
                           keep_examples=options["examples"])


def from_pass(subject: Subject, shared, consumer, options) -> Outcome | str:
    result = consumer.finish(subject.model_info, subject.settings.config(),
                             num_images=shared.dataset_info["num_images"])
    return result if isinstance(result, str) else [result]


def table(records: Sequence[Record]) -> list[Metric]:
    from cutmix_eval.report.comparison import percent_rows

    present = set.intersection(*(set(r.results[0].metrics) for r in records))

    def value(key: str) -> Callable[[Record], float]:
        return lambda r: 100 * r.results[0].metrics[key]

    def hits(key: str, test: Callable = lambda x: x) -> Callable:
        return lambda r: ([test(r.results[0].per_sample[key])], percent_rows)

    rows = []
    if "maxboxacc_v2" in present:
        rows.append(Metric("MaxBoxAccV2", value("maxboxacc_v2"), HIGHER, key="maxboxacc_v2"))
    if "maxboxacc" in present:
        rows.append(Metric("MaxBoxAcc (IoU 0.5, largest box)", value("maxboxacc"), HIGHER,
                           hits("best_iou_largest", lambda x: x >= 0.5), key="maxboxacc"))
    if "pxap" in present:
        rows.append(Metric("PxAP", value("pxap"), HIGHER, key="pxap"))
    if "gt_known_loc" in present:
        rows += [Metric("GT-known loc. accuracy", value("gt_known_loc"), HIGHER,
                        hits("iou_at_0.15", lambda x: x >= 0.5), key="gt_known_loc"),
                 Metric("top-1 loc. accuracy", value("top1_loc"), HIGHER, hits("top1_loc"), key="top1_loc")]
    return rows


def figure(columns, colours, where):
    """The same test images' CAMs, a row per column: ground-truth box green, the box at each
    model's best threshold red (dashed)."""
    import numpy as np

    from cutmix_eval.report.figures import sample_grid
    from cutmix_eval.results import examples_from_arrays

    shown = {label: examples_from_arrays(r.results[0].artifacts) for label, r in columns.items()
             if "examples/image" in r.results[0].artifacts}
    if not shown:
        return None
    count = min(8, *(len(e["image"]) for e in shown.values()))

    def joined(key: str) -> list:
        return [x for e in shown.values() for x in e[key][:count]]

    titles = next(iter(shown.values()))["title"][:count] + [""] * (count * (len(shown) - 1))
    grid = sample_grid(np.stack(joined("image")), boxes=joined("boxes"), heatmaps=joined("map"),
                       pred_boxes=joined("pred_boxes"), pred_inclusive=True, titles=titles, ncols=count,
                       row_labels=list(shown), title=f"Class activation maps — {where}")
    return ("cam", "Class activation maps of the same test images: ground-truth box green, the box at each "
                   "model's best threshold red (dashed)", grid)


ANALYSIS = register_analysis(Analysis(
    "localization", 1, "CAM weakly supervised localization (needs boxes)",
    options=(Option("cam", "cam", choice(_cams), f"map method: {', '.join(CAMS)}", shown="cam, native CAM"),
             Option("protocol", "wsolevaluation", choice(lambda: sorted(LOCALIZATION_PROTOCOLS)),
                    "; ".join(f"{k}: {v}" for k, v in LOCALIZATION_PROTOCOLS.items())),
             Option("examples", 16, count(0), "images whose maps the record keeps for figures")),
    run=run, shared=PassUse(finish=from_pass, joins=joins, consumer=consumer),
    view=View((TableSpec("localization", "Weakly supervised localization", table,
                         ("maxboxacc_v2", "maxboxacc", "top1_loc", "protocol"),
                         caveat="The MaxBoxAcc interval keeps the threshold chosen on all images fixed."),),
              figure=figure)))
