"""How an evaluation runs: the one settings object every evaluator and analysis takes.

Kept apart from what an analysis measures (its options): batch size, device, loader
workers and the progress bar change no number (batch size is stored in the record's
config all the same); ``limit`` chooses which images are used (the first N), so it is part
of every job key; ``model_info`` is the model's identity record written into each Result.
Imports nothing heavy, so the command line and the analysis registry can build one freely.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunSettings:
    """``batch_size`` images per forward pass; ``device``: ``"auto"`` (CUDA when available),
    ``"cpu"``, ``"cuda:1"`` or a ``torch.device``; ``num_workers`` loader processes;
    ``limit``: evaluate the first N images only (None: all); ``progress``: show progress
    bars; ``model_info``: the identity record of the model (None: its architecture and
    class count, :meth:`model_record`); ``parts``: where a long evaluation keeps what it has
    finished, so that a rerun after an interruption continues from there (AutoAttack, attack
    by attack): an object with ``read(key) -> bytes | None``, ``write(key, bytes)`` and
    ``remove(key)``, such as :class:`cutmix_eval.fileio.PartFolder` (None: nothing kept). Jobs
    get a PartFolder on their results folder's ``.unfinished/``."""

    batch_size: int = 256
    device: Any = "auto"
    num_workers: int = 0
    limit: int | None = None
    progress: bool = True
    model_info: Mapping[str, Any] | None = None
    parts: Any = None

    def replace(self, **changes: Any) -> RunSettings:
        """A copy with ``changes`` (e.g. ``settings.replace(progress=False)``)."""
        return dataclasses.replace(self, **changes)

    def model_record(self, model: Any) -> dict[str, Any]:
        """The ``model`` field of a Result: ``model_info`` as given, else the model's
        architecture and number of classes."""
        if self.model_info is not None:
            return dict(self.model_info)
        return {"arch": model.arch, "num_classes": model.num_classes}

    def config(self) -> dict[str, Any]:
        """The run settings a Result's config records: batch size and limit."""
        return {"batch_size": self.batch_size, "limit": self.limit}
