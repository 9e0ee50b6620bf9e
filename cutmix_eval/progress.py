"""Progress of long work, on stderr: a live tqdm bar on a terminal, periodic lines elsewhere.

On a terminal the bar redraws in place (and is cleared when done). When stderr is not a
terminal (a log file, ``nohup``, a pipe, a batch job), the same bar is written as one line
every :data:`LINE_SECONDS` seconds (``$CUTMIX_EVAL_PROGRESS_SECONDS``) and once more when the
work ends, so a 5-minute attack never runs silently and a log never fills with carriage
returns; work shorter than that interval writes nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm.auto import tqdm

SECONDS_ENV = "CUTMIX_EVAL_PROGRESS_SECONDS"
LINE_SECONDS = 30.0


class _Bar(tqdm):
    """tqdm whose ``set_postfix`` waits for the next scheduled redraw. tqdm's own redraws at once,
    which in a log writes one line per batch, each with a stale count (the count is only
    brought up to date at scheduled redraws)."""

    def set_postfix(self, ordered_dict=None, refresh: bool = False, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=refresh, **kwargs)


class _Lines:
    """A stream that turns tqdm's in-place redraws into whole lines (blank redraws dropped)."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.strip("\r\n").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable: Iterable | None = None, *, desc: str, enabled: bool = True, **kwargs: Any) -> _Bar:
    """``tqdm(iterable, desc=desc, **kwargs)`` on stderr: see the module docstring. ``enabled``
    False shows nothing (tests, ranks other than 0)."""
    if not enabled:
        return _Bar(iterable, desc=desc, disable=True, **kwargs)
    if sys.stderr.isatty():
        return _Bar(iterable, desc=desc, leave=False, **kwargs)
    seconds = float(os.environ.get(SECONDS_ENV, LINE_SECONDS))
    return _Bar(iterable, desc=desc, file=_Lines(sys.stderr), disable=False, leave=True, delay=seconds,
                mininterval=seconds, ascii=True, **kwargs)
