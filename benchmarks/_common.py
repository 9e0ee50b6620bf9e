"""Shared benchmark mechanics: one timing loop (alternating rounds, medians), Markdown tables,
and the machine-readable summary line that ``run_all.py`` collects.

Every ``bench_*.py`` prints a Markdown section (a ``# Title`` line, tables, one ``Target:``
line per target) and, as its very last line, ``BENCH-SUMMARY {json}`` (see
:func:`print_summary`); ``run_all.py`` builds the summary table of ``results.md`` from those
lines and strips them from the sections.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

SUMMARY_PREFIX = "BENCH-SUMMARY "


def parse_rounds(doc: str, quick: tuple, full: tuple, device: bool = False) -> tuple:
    """The benchmark's command line: ``--quick`` picks the smaller settings (rounds, calls, sizes...).

    With ``device=True`` the benchmark also takes ``--device`` (default ``cpu``; ``cuda`` on a GPU
    machine) and the chosen settings come back with the device appended.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and smaller inputs")
    if device:
        parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    args = parser.parse_args()
    chosen = quick if args.quick else full
    return (*chosen, args.device) if device else chosen


def synchronizer(device: str) -> Callable[[], None]:
    """What makes a timed block end when its work ends: CUDA runs asynchronously, so a block on a
    CUDA device waits for the device (``torch.cuda.synchronize``); on the CPU there is nothing to wait for."""
    if not device.startswith("cuda"):
        return lambda: None
    import torch

    return lambda: torch.cuda.synchronize(device)


def device_note(device: str) -> str:
    """How the timings were taken, for a benchmark's title: CPU threads, or the CUDA device's name."""
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)}, synchronized per block"
    return f"{torch.get_num_threads()} CPU threads"


def alternating_seconds(variants: dict[str, Callable[[], Any]], rounds: int, calls: int = 1,
                        warmup: int = 1, device: str = "cpu") -> dict[str, float]:
    """Median seconds per call of each zero-argument variant: THE timing loop of every benchmark.

    After ``warmup`` untimed calls of each variant, ``rounds`` rounds each time a block of
    ``calls`` calls of every variant in turn (the first variant of the round rotates, so no
    variant always runs right after the same other one); slow drift of the machine hits all
    variants alike and cancels in their ratio. Returns, per variant, the median over the
    rounds of (block time / ``calls``).
    """
    names = list(variants)
    for name in names:
        for _ in range(warmup):
            variants[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = variants[name]
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[name].append((time.perf_counter() - start) / calls)
    return {name: statistics.median(samples[name]) for name in names}


def alternating_medians(variants: dict[str, Callable], x, y, rounds: int, calls: int) -> dict[str, float]:
    """Median images/s of each ``fn(x, y)`` on the batch ``x`` (via :func:`alternating_seconds`, on
    ``x``'s device)."""
    seconds = alternating_seconds({name: (lambda fn=fn: fn(x, y)) for name, fn in variants.items()},
                                  rounds, calls, device=str(x.device))
    return {name: x.shape[0] / s for name, s in seconds.items()}


def markdown_table(rows: Sequence[dict[str, Any]], columns: dict[str, str]) -> str:
    """``columns`` maps row keys to a format spec (``""`` for text, ``".3f"``...); None prints empty."""
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if not fmt else "---:" for fmt in columns.values()) + "|"]
    lines += ["| " + " | ".join("" if r[k] is None else format(r[k], fmt) for k, fmt in columns.items()) + " |"
              for r in rows]
    return "\n".join(lines)


def verdict(value: float, target: float) -> str:
    return "met" if value >= target else "NOT met"


def comparison(what: str, ours: float, reference: float, unit: str, ratio: float, target: str,
               met: bool | None, reference_name: str = "") -> dict[str, Any]:
    """One row of the summary table.

    ``what``: what is compared (ours vs what, on which input); ``ours`` / ``reference``: the two
    figures in ``unit``; ``ratio``: the number the target is about, whose direction ``target``
    states (``">= 20"``: ours / reference at least 20; ``"<= 3.5"``: a cost ratio at most 3.5);
    ``met``: ``None`` for an informational row without a target.
    """
    return {"comparison": what, "ours": float(ours), "reference": float(reference),
            "reference_name": reference_name, "unit": unit, "ratio": float(ratio), "target": target,
            "met": None if met is None else bool(met)}


def throughput_comparisons(rows: Sequence[dict[str, Any]], ours: str, what: str,
                           references: Sequence[tuple[str, str, float]], step: str = "") -> list[dict[str, Any]]:
    """Summary rows for a throughput table (rows with ``model``, ``variant``, ``images/s`` and
    ratio columns): for each ``(reference variant, ratio column, target)`` and each row of
    variant ``ours``, "``what`` vs ``reference`` + ``step``, model" against that model's
    reference row, met when the ratio is at least the target."""
    speed = {(r["model"], r["variant"]): r["images/s"] for r in rows}
    return [comparison(f"{what} vs {reference}{step}, {r['model']}", r["images/s"], speed[r["model"], reference],
                       "images/s", r[column], f">= {target:g}", r[column] >= target, reference)
            for reference, column, target in references for r in rows if r["variant"] == ours]


def print_summary(comparisons: Sequence[dict[str, Any]]) -> None:
    """Print the machine-readable summary line; call it last."""
    print("\n" + SUMMARY_PREFIX + json.dumps({"comparisons": list(comparisons)}), flush=True)
