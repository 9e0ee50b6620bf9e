"""Where CutMix helps and where it hurts: the methods across the embedded data's evidence knob.

The embedded dataset's ``body_evidence`` (:mod:`cutmix_eval.data.synthetic`) says how much of
the class evidence the object's body carries besides its small, most discriminative part. At 0
only the part tells the classes apart, and a CutMix box that carries the partner's part makes
the area-proportional label wrong; at 1 the whole object does, as in natural images where the
object's extent carries the class. :func:`run_sensitivity` trains every method with every seed
at every level (the same recipe, seeds, initial weights and data order as the quick start),
and :func:`summarize` turns the final test errors into the across-seed mean with its 95%
t-interval and each method's difference from the baseline, paired by seed.

``python examples/sensitivity.py`` runs it and writes the figure and table of the docs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cutmix_eval.metrics.seeds import t_interval
from cutmix_eval.train import Recipe, train
from cutmix_eval.errors import UserError
from cutmix_eval.train.loop import LAST, LOG, read_history


@dataclass(frozen=True)
class Run:
    """One training run's outcome: final test top-1 error (fraction) on the recipe's test images, and
    the seconds its epochs took (from its history, so a reused run reports its training time)."""

    level: float
    method: str
    seed: int
    top1_error: float
    seconds: float


def level_dataset(dataset: str, level: float) -> str:
    """The dataset name that sets ``body_evidence`` to ``level`` (``synthetic:body_evidence=0.5``)."""
    return f"{dataset}:body_evidence={level:g}"


def run_sensitivity(levels: Sequence[float], methods: Sequence[str], seeds: Sequence[int], recipe: Recipe,
                    ckpt_dir: str | Path, *, device: str = "auto", progress: bool = False,
                    log: Callable[[str], None] = print) -> list[Run]:
    """Train ``methods`` x ``seeds`` at every ``level`` into ``ckpt_dir/<level>/<method>/seed<k>``;
    finished runs are reused and interrupted ones resumed, so the study can be stopped and rerun."""
    runs = []
    for level in levels:
        for seed in seeds:
            for method in methods:
                run_dir = Path(ckpt_dir) / f"body_evidence={level:g}" / method / f"seed{seed}"
                outcome = train(method, replace(recipe, seed=seed, dataset=level_dataset(recipe.dataset, level)),
                                run_dir, device=device, resume=(run_dir / LAST).exists(), progress=progress,
                                log=lambda _: None)
                runs.append(Run(level, method, seed, outcome.history[-1]["test_top1_error"],
                                sum(h["seconds"] for h in outcome.history)))
                log(f"body_evidence {level:g} · {method} · seed {seed}: top-1 error "
                    f"{100 * runs[-1].top1_error:.2f}% ({runs[-1].seconds:.0f} s)")
    return runs


def quickstart_runs(ckpt_dir: str | Path, level: float, methods: Sequence[str], seeds: Sequence[int]) -> list[Run]:
    """The finished quick-start runs under ``ckpt_dir`` (``<method>/seed<k>/log.jsonl``) as the
    runs of ``level``: the quick start trains the same recipe on the same data when ``level`` is
    the embedded data's default, so its runs need not be trained again. A missing run is a
    :class:`UserError` naming it."""
    runs = []
    for seed in seeds:
        for method in methods:
            run_dir = Path(ckpt_dir) / method / f"seed{seed}"
            if not (run_dir / LOG).is_file():
                raise UserError(f"no finished quick-start run {run_dir / LOG}; run `cutmix-eval quickstart` first, "
                                "or leave out the quick start's level")
            history = read_history(run_dir)
            runs.append(Run(level, method, seed, history[-1]["test_top1_error"], sum(h["seconds"] for h in history)))
    return runs


@dataclass(frozen=True)
class Summary:
    """Per (level, method): mean top-1 error over seeds and its 95% t-interval, all in percent;
    ``diff`` the same of (method - baseline) over the seeds both have (``None`` for the baseline)."""

    level: float
    method: str
    seeds: int
    mean: float
    low: float
    high: float
    diff: tuple[float, float, float] | None


def summarize(runs: Sequence[Run], baseline: str = "baseline") -> list[Summary]:
    """:class:`Summary` rows in the order levels and methods first appear in ``runs``."""
    rows = []
    levels = list(dict.fromkeys(r.level for r in runs))
    methods = list(dict.fromkeys(r.method for r in runs))
    for level in levels:
        base = {r.seed: 100 * r.top1_error for r in runs if r.level == level and r.method == baseline}
        for method in methods:
            errors = {r.seed: 100 * r.top1_error for r in runs if r.level == level and r.method == method}
            if not errors:
                continue
            values = np.array(list(errors.values()))
            low, high = t_interval(values)
            diff = None
            common = sorted(set(errors) & set(base))
            if method != baseline and len(common) >= 2:
                paired = np.array([errors[s] - base[s] for s in common])
                diff = (float(paired.mean()), *t_interval(paired))
            rows.append(Summary(level, method, len(values), float(values.mean()), low, high, diff))
    return rows


def markdown_table(rows: Sequence[Summary]) -> str:
    """The summary as a Markdown table: a row per method, a column per level; each cell the mean
    top-1 error [95% t-interval] and, below the baseline, the paired difference, bold where its
    interval excludes 0."""
    levels = list(dict.fromkeys(r.level for r in rows))
    methods = list(dict.fromkeys(r.method for r in rows))
    cell = {(r.level, r.method): r for r in rows}
    lines = ["| method | " + " | ".join(f"body_evidence {level:g}" for level in levels) + " |",
             "|---|" + "---|" * len(levels)]
    for method in methods:
        parts = []
        for level in levels:
            r = cell.get((level, method))
            if r is None:
                parts.append("")
                continue
            text = f"{r.mean:.1f} [{r.low:.1f}, {r.high:.1f}]"
            if r.diff is not None:
                d, lo, hi = r.diff
                shown = f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]"
                text += f"<br>Δ {'**' + shown + '**' if lo > 0 or hi < 0 else shown}"
            parts.append(text)
        lines.append(f"| {method} | " + " | ".join(parts) + " |")
    return "\n".join(lines)
