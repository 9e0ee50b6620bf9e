"""Occlusion robustness: top-1 accuracy as a centred hole grows (centre occlusion) or the
image shrinks to a centred window (boundary occlusion), the paper's Fig. 5a."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cutmix_eval.analyses.base import Analysis, Option, Outcome, Subject, register_analysis
from cutmix_eval.analyses.options import count, grid, texts
from cutmix_eval.catalog import OCCLUSION_FRACTIONS, OCCLUSION_MODES
from cutmix_eval.report.store import Record
from cutmix_eval.report.table import HIGHER
from cutmix_eval.report.view import Metric, TableSpec, View


def run(subject: Subject, fractions: tuple[float, ...] = OCCLUSION_FRACTIONS, modes: tuple[str, ...] = OCCLUSION_MODES,
        fill: str | float = "black", seed: int = 0) -> Outcome:
    from cutmix_eval.evaluate.occlusion import evaluate_occlusion

    return [evaluate_occlusion(subject.model, subject.dataset, fractions=fractions, modes=modes, fill=fill, seed=seed,
                               settings=subject.settings)]


def _modes(value: Any, option: str) -> tuple[str, ...]:
    from cutmix_eval.evaluate.occlusion import check_modes

    return tuple(check_modes(texts(value)))


def _fill(value: Any, option: str) -> str | float:
    from cutmix_eval.evaluate.occlusion import parse_fill

    return parse_fill(value)


def table(records: Sequence[Record]) -> list[Metric]:
    import numpy as np

    from cutmix_eval.metrics import bootstrap as bs

    result = records[0].results[0]
    fractions = np.asarray(result.config["fractions"], dtype=float)

    def area(mode: str) -> Metric:
        return Metric(f"{mode} occlusion: accuracy area", lambda r: 100 * r.results[0].metrics[f"{mode}/auc"],
                      HIGHER, lambda r: ([r.results[0].per_sample[f"{mode}/correct"]],
                                         lambda c: 100 * bs.trapezoid_rows(fractions, c.mean(axis=1))),
                      key=f"{mode}/auc")

    return [area(mode) for mode in result.config["modes"]]


def figure(columns, colours, where):
    from cutmix_eval.report.figures import occlusion_figure

    results = {label: r.results[0] for label, r in columns.items()}
    fill = next(iter(results.values())).config.get("fill", "")
    return ("occlusion", "Top-1 accuracy under centre and boundary occlusion (paper Fig. 5a)",
            occlusion_figure({k: r.curves for k, r in results.items()}, fill=str(fill), colours=colours,
                             title=f"Top-1 accuracy under occlusion — {where}"))


ANALYSIS = register_analysis(Analysis(
    "occlusion", 1, "accuracy as a centred hole grows / the image shrinks to it",
    options=(Option("fractions", OCCLUSION_FRACTIONS, grid, "hole sides as fractions of the image side: "
                    "start:step:stop or a comma list", shown="0:0.1:1, 11 sizes"),
             Option("modes", OCCLUSION_MODES, _modes, "comma-separated: centre (hide the centred s x s window), "
                    "boundary (hide everything outside it)", shown="both"),
             Option("fill", "black", _fill, "what hidden pixels become: black (pixel value 0), mean (the model's "
                    "normalization mean), noise (uniform, seeded per image) or a grey level in [0, 1]"),
             Option("seed", 0, count(0), "seed of the noise fill")),
    run=run, view=View((TableSpec("occlusion", "Occlusion robustness", table, ("fill", "auc")),), figure=figure)))
