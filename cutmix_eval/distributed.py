"""torch.distributed for runs launched with ``torchrun``: training and evaluation.

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) everything is a single process.
Under ``torchrun`` each process joins the default group: NCCL on CUDA (one GPU per
local rank), gloo on CPU.

Evaluation shards every dataset it iterates into contiguous blocks, one per rank in
rank order (:func:`shard_range`); the evaluators' accumulators
(:mod:`cutmix_eval.evaluate.accumulate`) and the passes gather their per-sample outcomes
with :func:`gather_rows`, which concatenates the blocks in rank order, i.e. dataset order,
on every rank, so each rank computes the same metrics and rank 0 writes the record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

import torch
import torch.distributed as dist

from cutmix_eval.errors import UserError
from cutmix_eval.runtime import resolve_device

#: how long a finished rank waits for the others before leaving the process group
FINISH_WAIT = timedelta(minutes=2)


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    resolved = resolve_device(device)
    if world_size == 1:
        return DistContext(0, 1, resolved)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if resolved.type == "cuda":
        gpus = torch.cuda.device_count()
        if local_rank >= gpus:
            raise UserError(f"torchrun started {os.environ.get('LOCAL_WORLD_SIZE', local_rank + 1)} processes on this "
                            f"machine but it has {gpus} CUDA device(s), one per process; use --nproc-per-node {gpus}, "
                            "or --device cpu to run the processes on the CPU (gloo)")
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), world_size, resolved)


def teardown(ctx: DistContext) -> None:
    """Leave the process group. Every rank waits for the others first (for at most
    ``FINISH_WAIT``): a rank that is done early (ranks other than 0 stop once their shard is
    computed) and destroys its group while another still talks to it is aborted by gloo
    now and then ("terminate called without an active exception", exit -6)."""
    if ctx.distributed and dist.is_initialized():
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=FINISH_WAIT)
            else:
                dist.barrier()
        except RuntimeError:  # a rank that failed or is still busy: leave anyway
            pass
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def sum_over_ranks(ctx: DistContext, values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over all processes (identity in one process)."""
    if not ctx.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def world() -> tuple[int, int]:
    """``(rank, world size)`` of the default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return world()[0] == 0


def shard_range(n: int) -> range:
    """This rank's contiguous block of ``range(n)``: blocks differ in size by at most one,
    and rank order is index order."""
    rank, size = world()
    return range(n * rank // size, n * (rank + 1) // size)


def main_decides(value):
    """Rank 0's ``value`` on every rank (``value`` itself in one process): decisions that must
    agree, such as whether a record already exists, are taken by rank 0 alone."""
    if world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value) -> list:
    """``value`` of every rank, in rank order (``[value]`` in one process)."""
    rank, size = world()
    if size == 1:
        return [value]
    parts: list = [None] * size
    dist.all_gather_object(parts, value)
    return parts


def gather_rows(array: np.ndarray) -> np.ndarray:
    """``array`` (first axis: this rank's samples) concatenated over ranks in rank order, on
    every rank; the array itself in one process."""
    if world()[1] == 1:
        return array
    return np.concatenate(gather_objects(np.asarray(array)), axis=0)


def sum_arrays(array: np.ndarray) -> np.ndarray:
    """Element-wise sum of ``array`` over ranks (e.g. histogram counts); itself in one process."""
    if world()[1] == 1:
        return array
    return np.sum(gather_objects(np.asarray(array)), axis=0).astype(np.asarray(array).dtype)
