"""Evaluators as accumulators: per-batch work, and a declared cross-process reduction.

An evaluator's per-batch work is an :class:`Accumulator`. ``update(batch)`` computes one
batch's outcomes and hands them over by kind: :meth:`Accumulator.add` for per-image rows
(concatenated in dataset order), :meth:`Accumulator.add_sum` for totals (histogram
counts, summed) and :meth:`Accumulator.keep_first` for examples (the first few of the
dataset). ``finish(...) -> Result`` reads :meth:`Accumulator.reduced`, which concatenates
the rows over batches and then over processes in rank order (under ``torchrun`` the loader
gives each rank a contiguous block, so rank order is dataset order,
:func:`~cutmix_eval.passes.make_loader`), sums the totals and takes the first examples over
ranks, the same on every rank.
So no evaluator calls a distributed function itself: torchrun support comes from the
protocol. :func:`feed` drives an accumulator over a loader with a progress bar.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from cutmix_eval.distributed import gather_objects, gather_rows, sum_arrays
from cutmix_eval.progress import progress_bar


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


class Accumulator:
    """Base of the evaluators' per-batch work (see the module docstring). Subclasses define
    ``update(batch)`` and a ``finish`` returning the Result; they record outcomes only through
    :meth:`add` and :meth:`add_sum`, in the same order on every rank."""

    def __init__(self) -> None:
        self._rows: dict[str, list[np.ndarray]] = {}
        self._sums: dict[str, np.ndarray] = {}
        self._kept: dict[str, list] = {}
        self._keep = 0

    def update(self, batch: dict) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def add(self, **rows: Any) -> None:
        """One batch's per-image outcomes by key (first axis: the batch's images)."""
        for key, value in rows.items():
            self._rows.setdefault(key, []).append(_numpy(value))

    def add_sum(self, **totals: Any) -> None:
        """One batch's totals by key, added to the running sums."""
        for key, value in totals.items():
            self._sums[key] = self._sums[key] + _numpy(value) if key in self._sums else _numpy(value).copy()

    def keep_first(self, count: int, **items: list) -> None:
        """Examples by key (a list, one entry per image, in batch order), kept up to ``count``."""
        self._keep = count
        for key, values in items.items():
            kept = self._kept.setdefault(key, [])
            kept.extend(values[:max(count - len(kept), 0)])

    def kept(self, key: str) -> int:
        """How many examples of ``key`` this process keeps so far."""
        return len(self._kept.get(key, []))

    def reduced(self) -> dict[str, Any]:
        """Every key's rows over all batches and ranks (dataset order), every total summed over
        ranks, and every example key's first ``count`` entries over ranks (lists); the same on
        every rank. Call once, after the last update."""
        rows = {key: gather_rows(np.concatenate(parts)) for key, parts in self._rows.items()}
        rows |= {key: sum_arrays(total) for key, total in self._sums.items()}
        if self._keep:
            parts = gather_objects(self._kept)
            rows |= {key: [x for part in parts for x in part.get(key, [])][:self._keep] for key in self._kept}
        return rows


def feed(accumulator: Accumulator, loader: Iterable[dict], *, desc: str, progress: bool = True) -> None:
    """Every batch of ``loader`` to ``accumulator.update``, with a progress bar."""
    for batch in progress_bar(loader, desc=desc, unit="batch", enabled=progress):
        accumulator.update(batch)
