"""The analyses a study, the quick start, the evaluation commands and reports run, by name.

=============== ==========================================================
classification  top-1/top-5 error and calibration from one labelled pass
localization    CAM weakly supervised localization (needs boxes)
ood             out-of-distribution detection against the companion sets
occlusion       accuracy as a centred hole grows / the image shrinks to it
inbetween       predicting neither class of Mixup/CutMix in-between samples
adversarial     accuracy under FGSM (and PGD) in pixel space
corruption      error and calibration under the common corruptions
shift           accuracy, calibration and confidence under natural distribution shift
=============== ==========================================================

Each is one module of this package that registers an
:class:`~cutmix_eval.analyses.base.Analysis`; the import line below fills the registry,
in the report's order. ``docs/design.md`` ("Adding an analysis") shows how to add one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cutmix_eval.analyses.base import (ANALYSES, Analysis, Option, Outcome, PassUse, Subject, analysis_options,
                                       cached, effective_limit, get_analysis, list_analyses, register_analysis,
                                       run_analysis, views)
from cutmix_eval.analyses.jobs import (describe_job, make_job, not_recorded, plan, run_analyses, run_job,
                                       run_jobs, subject_job)

# the registry, in the report's order
from cutmix_eval.analyses import classification, localization, ood, occlusion, inbetween, adversarial, corruption, shift  # noqa: E402,F401,I001

__all__ = ["ANALYSES", "Analysis", "Option", "Outcome", "PassUse", "Subject", "analysis_options", "cached",
           "describe_job", "effective_limit", "get_analysis", "list_analyses", "make_job", "not_recorded", "plan",
           "register_analysis", "run_analyses", "run_analysis", "run_job", "run_jobs", "subject_job", "views", "write_report"]


def write_report(results_dir: str | Path, out_dir: str | Path, formats: Sequence[str] | None = None,
                 **options: Any):
    """The report of the records in ``results_dir``, written into ``out_dir``, every registered
    analysis shown by its view: :func:`cutmix_eval.report.build.write_report` (its keyword
    ``options``: ``intervals``, ``title``, ``intro``, ``force``, ``extra_figures``, ``only``)."""
    from cutmix_eval.report.build import FORMATS
    from cutmix_eval.report.build import write_report as render

    return render(results_dir, out_dir, FORMATS if formats is None else formats, views=views(), **options)
