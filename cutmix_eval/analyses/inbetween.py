"""In-between class samples: how often a model predicts neither class of Mixup-style
``(1 - t) A + t B`` and CutMix-style (A with B's centred s x s window) pairs, the paper's
Fig. 5b. Lower is better."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cutmix_eval.analyses.base import Analysis, Option, Outcome, Subject, register_analysis
from cutmix_eval.analyses.options import count, grid
from cutmix_eval.catalog import INBETWEEN_GRID
from cutmix_eval.metrics.inbetween import PREDICTS_NEITHER
from cutmix_eval.report.store import Record
from cutmix_eval.report.table import LOWER
from cutmix_eval.report.view import Metric, TableSpec, View


def run(subject: Subject, num_pairs: int | None = None, seed: int = 0, mix_grid: tuple[float, ...] = INBETWEEN_GRID,
        cut_grid: tuple[float, ...] = INBETWEEN_GRID) -> Outcome:
    from cutmix_eval.evaluate.inbetween import evaluate_inbetween

    return [evaluate_inbetween(subject.model, subject.dataset, num_pairs=num_pairs, seed=seed, mix_grid=mix_grid,
                               cut_grid=cut_grid, settings=subject.settings)]


def check(options: Mapping[str, Any], dataset: Any, num_images: int) -> None:
    """No more pairs than images (each image is A of at most one pair), refused before any work."""
    from cutmix_eval.evaluate.inbetween import check_num_pairs

    check_num_pairs(options["num_pairs"], num_images)


def table(records: Sequence[Record]) -> list[Metric]:
    """Per kind, the area under the rate of predicting neither class, over the grid."""
    import numpy as np

    from cutmix_eval.metrics import bootstrap as bs

    result = records[0].results[0]
    grids = {"mixup": result.config["mix_grid"], "cutmix": result.config["cut_grid"]}

    def area(kind: str) -> Metric:
        points = np.asarray(grids[kind], dtype=float)
        return Metric(f"{kind}-style: predicted neither, area",
                      lambda r: 100 * r.results[0].metrics[f"{kind}/neither_auc"], LOWER,
                      lambda r: ([r.results[0].per_sample[f"{kind}/outcome"] == PREDICTS_NEITHER],
                                 lambda c: 100 * bs.trapezoid_rows(points, c.mean(axis=1))),
                      key=f"{kind}/neither_auc")

    return [area(kind) for kind in result.curves]


def figure(columns, colours, where):
    from cutmix_eval.report.figures import inbetween_figure

    return ("inbetween", "Rate of predicting neither class of in-between samples (paper Fig. 5b), lower is better",
            inbetween_figure({label: r.results[0].curves for label, r in columns.items()}, colours=colours,
                             title=f"Predicting neither class of in-between samples — {where}"))


ANALYSIS = register_analysis(Analysis(
    "inbetween", 1, "predicting neither class of Mixup/CutMix in-between samples",
    options=(Option("num_pairs", None, count(1, optional=True),
                    "pairs of images of different classes, at most the number of images (each image is A of at "
                    "most one pair; more is refused) (default: every image once as A, as the paper's 50,000 pairs "
                    "on ImageNet validation)"),
             Option("seed", 0, count(0), "seed of the pairing; the same seed gives every model the same pairs"),
             Option("mix_grid", INBETWEEN_GRID, grid, "Mixup-style shares t of the partner: start:step:stop or a comma "
                    "list", shown="0:0.1:1"),
             Option("cut_grid", INBETWEEN_GRID, grid, "CutMix-style window sides s as fractions of the image side: "
                    "start:step:stop or a comma list", shown="0:0.1:1")),
    run=run, check=check,
    view=View((TableSpec("inbetween", "In-between class samples", table,
                         ("mixup/neither_auc", "cutmix/neither_auc", "num_pairs")),), figure=figure,
              count=lambda result: f"{result.metrics['num_pairs']} image pairs")))
