"""Shared benchmark mechanics: throughput, alternating rounds with medians, Markdown tables."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def parse_rounds(doc: str, quick: tuple[int, int], full: tuple[int, int]) -> tuple[int, int]:
    """The benchmark's command line: ``--quick`` picks the smaller (rounds, calls)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    return quick if parser.parse_args().quick else full


def throughput(fn: Callable[[Any, Any], Any], x, y, calls: int) -> float:
    """Images per second of ``calls`` calls of ``fn(x, y)`` on a batch ``x``."""
    start = time.perf_counter()
    for _ in range(calls):
        fn(x, y)
    return calls * x.shape[0] / (time.perf_counter() - start)


def alternating_medians(variants: dict[str, Callable], x, y, rounds: int, calls: int) -> dict[str, float]:
    """Median images/s per variant over ``rounds`` rounds that alternate between the
    variants (after one warm-up call each), so slow drift of the machine cancels."""
    for fn in variants.values():
        throughput(fn, x, y, 1)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            samples[name].append(throughput(fn, x, y, calls))
    return {name: statistics.median(v) for name, v in samples.items()}


def markdown_table(rows: Sequence[dict[str, Any]], columns: dict[str, str]) -> str:
    """``columns`` maps row keys to a format spec (``""`` for text, ``".3f"``...)."""
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if not fmt else "---:" for fmt in columns.values()) + "|"]
    lines += ["| " + " | ".join(format(r[k], fmt) for k, fmt in columns.items()) + " |" for r in rows]
    return "\n".join(lines)


def verdict(value: float, target: float) -> str:
    return "met" if value >= target else "NOT met"
