"""Device selection, seeding and data loading, shared by training and evaluation."""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from cutmix_eval.errors import UserError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as given (checked)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine; use --device cpu or auto")
    return resolved


@contextlib.contextmanager
def on_device(model: torch.nn.Module, device: torch.device) -> Iterator[torch.nn.Module]:
    """``model`` on ``device`` and in eval mode for the block, then back on its own device and
    in its own mode: an evaluation leaves the caller's model where and as it found it.

    Moves happen with inference mode off, also inside an ``inference_mode`` function:
    parameters moved under inference mode become inference tensors, which can never again
    take part in a backward pass (ODIN, gradient CAMs and attacks on the same model would
    fail). A model whose parameters and buffers are not all on one device is not moved back.
    """
    def move(to: torch.device) -> None:
        with torch.inference_mode(False):
            model.to(to)

    homes = {t.device for t in (*model.parameters(), *model.buffers())}
    training = model.training
    move(device)
    model.eval()
    try:
        yield model
    finally:
        if len(homes) == 1:
            move(homes.pop())
        model.train(training)


class Loader(DataLoader):
    """A DataLoader whose worker processes are started with Ctrl-C (SIGINT) held back.

    A SIGINT while ``os.fork`` starts a worker is raised either inside the parent's at-fork
    hook (logging's lock release), where CPython prints "Exception ignored" and drops it (the
    run went on as if Ctrl-C had never been pressed), or half-way through the DataLoader's
    iterator set-up, whose clean-up then fails with a traceback. Held back, it is raised as a
    KeyboardInterrupt once the workers have started (they are shut down cleanly). The workers
    inherit the holding handler, so a Ctrl-C to the whole process group is the main
    process's alone to handle. Workers also keep quiet when the main process hangs up in the
    middle of taking a batch from them (see :func:`_quiet_worker`), and so does the main
    process's pin-memory thread (see :func:`_quiet_pin_memory_thread`).
    """

    def __init__(self, *args, worker_init_fn=None, **kwargs):
        super().__init__(*args, worker_init_fn=functools.partial(_quiet_worker, worker_init_fn), **kwargs)
        if self.pin_memory:
            threading.excepthook = _quiet_pin_memory_thread

    def __iter__(self):
        if not self.num_workers or threading.current_thread() is not threading.main_thread() \
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return super().__iter__()  # no forks, or Ctrl-C is not a KeyboardInterrupt here
        pressed = []
        signal.signal(signal.SIGINT, lambda *_: pressed.append(True))
        try:
            started = super().__iter__()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if pressed:
            raise KeyboardInterrupt
        return started


def _quiet_worker(worker_init_fn, worker_id: int) -> None:
    """Set up a DataLoader worker: a batch's tensors are handed to the main process through a
    connection served by a thread of the worker (torch's file-descriptor sharing, through
    ``multiprocessing.resource_sharer``, which reports its errors with ``sys.excepthook``);
    when the main process stops mid-handover (Ctrl-C), that thread's ``ConnectionResetError``
    would print a traceback from every worker. Such connection errors are dropped, anything
    else is reported as usual; then ``worker_init_fn``, if any."""
    sys.excepthook = _drop_connection_errors
    if worker_init_fn is not None:
        worker_init_fn(worker_id)


#: what a loader's helper (a worker's sharing thread, the pin-memory thread) raises when the
#: other side of its connection is gone: Ctrl-C stopped it first; dropped, never reported
CONNECTION_ERRORS = (OSError, EOFError)


def _drop_connection_errors(kind, error, traceback) -> None:
    if not issubclass(kind, CONNECTION_ERRORS):
        sys.__excepthook__(kind, error, traceback)


def _quiet_pin_memory_thread(args, report=threading.excepthook) -> None:
    """``threading.excepthook`` once a loader pins memory (CUDA): the loader's pin-memory thread
    takes each batch from the workers through the same connections as above, and when a
    Ctrl-C stops the workers first its connection error ended the run in a 40-line thread
    traceback after the interrupt line. Such errors of that thread are dropped; anything else
    is reported as usual (``report``: the hook in place when this module was imported)."""
    if "_pin_memory_loop" in getattr(args.thread, "name", "") and issubclass(args.exc_type, CONNECTION_ERRORS):
        return
    report(args)


def per_image_uniform(keys, shape, *, like: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) noise, one ``shape`` array per key: row ``i`` is drawn from
    ``numpy.random.default_rng(keys[i])`` (a key is an int or a tuple of ints, such as
    ``(seed, dataset index)``), so an image's noise depends on its key alone, not on the
    batch it is in or the model. Returned on ``like``'s device and dtype."""
    rows = [np.random.default_rng(key).random(tuple(shape), dtype=np.float32) for key in keys]
    return torch.from_numpy(np.stack(rows)).to(device=like.device, dtype=like.dtype)
