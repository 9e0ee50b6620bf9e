"""The corruption registry: names, groups, both severity tables, and one batched call.

Every corruption is a function ``fn(images, param, seeds) -> images`` on a batch of
pixel-space images (``B x 3 x H x W`` float in [0, 1], CPU or CUDA), where ``param`` is
the severity's entry of the chosen table and ``seeds`` (``B`` int64) seeds each image's
randomness on its own, so an image gets the same corruption whatever batch it is in,
in every run and for every model. Functions return float images in [0, 1], unquantized.

Two parameter tables (``../shared/reference/corruptions.md``): ``cifar`` (the CIFAR-10-C /
CIFAR-100-C definitions for 32 x 32 images) and ``imagenet`` (ImageNet-C, 224 x 224).
``table="auto"`` picks ``cifar`` for images whose longer side is at most
:data:`CIFAR_MAX_SIDE` pixels and ``imagenet`` otherwise.

The names, groups and severity levels (``GROUPS``, ``BENCHMARK``, ``ALL``, ``SEVERITIES``)
are defined in :mod:`cutmix_eval.metrics.corruption`, whose aggregates need them without
importing torch, and re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cutmix_eval.errors import UserError
from cutmix_eval.metrics.corruption import ALL, BENCHMARK, GROUPS, SEVERITIES
from cutmix_eval.registry import Registry

TABLES = ("cifar", "imagenet")
#: geometric mean of 32 and 224, rounded: the size above which the ImageNet table applies
CIFAR_MAX_SIDE = 84

CorruptionFn = Callable[[torch.Tensor, Any, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Corruption:
    """One registered corruption: ``params[table][severity - 1]`` is passed to ``fn``."""

    name: str
    group: str
    fn: CorruptionFn
    params: dict[str, tuple[Any, ...]]
    stochastic: bool
    description: str


_CORRUPTIONS: Registry[Corruption] = Registry("corruption")


def register_corruption(name: str, *, cifar: Sequence[Any], imagenet: Sequence[Any], stochastic: bool,
                        description: str) -> Callable[[CorruptionFn], CorruptionFn]:
    """Decorator registering ``fn`` under ``name`` with its five-severity parameters per table."""
    group = next((g for g, names in GROUPS.items() if name in names), None)
    if group is None or len(cifar) != 5 or len(imagenet) != 5:
        raise ValueError(f"{name}: unknown corruption or not 5 severities per table")

    def decorate(fn: CorruptionFn) -> CorruptionFn:
        _CORRUPTIONS.register(name, Corruption(name, group, fn, {"cifar": tuple(cifar), "imagenet": tuple(imagenet)},
                                               stochastic, description))
        return fn

    return decorate


def get_corruption(name: str) -> Corruption:
    """The registered corruption ``name``; a one-line UserError naming the close ones if unknown."""
    _load_all()
    return _CORRUPTIONS.get(name)


def list_corruptions(selection: str = "all") -> list[str]:
    """Names in table order: ``all`` (19), ``benchmark`` (15), a group name, or a
    comma-separated list of names and groups."""
    _load_all()
    if selection in ("all", ""):
        return list(ALL)
    if selection == "benchmark":
        return list(BENCHMARK)
    chosen: list[str] = []
    for item in (s.strip() for s in selection.split(",") if s.strip()):
        if item in GROUPS:
            chosen += GROUPS[item]
        elif item in ALL:
            chosen.append(item)
        else:
            raise UserError(f"unknown corruption or group {item!r}; choose from all, benchmark, "
                            f"{', '.join(GROUPS)} or {', '.join(ALL)}")
    return list(dict.fromkeys(chosen))


def resolve_table(table: str, height: int, width: int) -> str:
    """``cifar`` / ``imagenet`` as given, or chosen from the image size for ``auto``."""
    if table == "auto":
        return "cifar" if max(height, width) <= CIFAR_MAX_SIDE else "imagenet"
    if table not in TABLES:
        raise UserError(f"unknown severity table {table!r}; choose auto, cifar or imagenet")
    return table


def corrupt(images: torch.Tensor, name: str, severity: int, *, seeds: torch.Tensor | Sequence[int] | None = None,
            table: str = "auto") -> torch.Tensor:
    """``images`` (``B x 3 x H x W`` in [0, 1]) corrupted by ``name`` at ``severity`` (1-5)
    with the parameters of ``table``; ``seeds`` (one per image, default ``0..B-1``) make
    every stochastic corruption reproducible image by image."""
    corruption = get_corruption(name)
    if severity not in SEVERITIES:
        raise UserError(f"severity must be 1-5, not {severity}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise UserError(f"images must be B x 3 x H x W, not {tuple(images.shape)}")
    seeds = torch.arange(len(images)) if seeds is None else torch.as_tensor(seeds, dtype=torch.int64)
    param = corruption.params[resolve_table(table, *images.shape[-2:])][severity - 1]
    return corruption.fn(images.float(), param, seeds).clamp_(0.0, 1.0)


def image_generators(seeds: torch.Tensor, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One ``torch.Generator`` per image, seeded by that image's seed."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def per_image_rand(seeds: torch.Tensor, shape: Sequence[int], device: torch.device | str = "cpu",
                   normal: bool = False) -> torch.Tensor:
    """``B x *shape`` random numbers, uniform in [0, 1) (or standard normal), image ``i``'s
    drawn from its own generator seeded by ``seeds[i]`` (drawn on the CPU, then moved, so
    CPU and CUDA runs corrupt identically)."""
    draw = torch.randn if normal else torch.rand
    return torch.stack([draw(tuple(shape), generator=g) for g in image_generators(seeds)]).to(device)


def per_image_draws(seeds: torch.Tensor, shapes: Sequence[Sequence[int]], device: torch.device | str,
                    normal: bool = False) -> list[torch.Tensor]:
    """Independent per-image random tensors ``B x *shape``, one per entry of ``shapes``, all
    taken from the single stream of each image's seed (uniform in [0, 1) or standard normal)."""
    sizes = [math.prod(shape) for shape in shapes]
    flat = per_image_rand(seeds, (sum(sizes),), device, normal=normal)
    return [part.reshape(len(seeds), *shape) for part, shape in zip(flat.split(sizes, dim=1), shapes)]


def _load_all() -> None:
    """Import the modules that register corruptions (kept here so importing the registry is cheap)."""
    from cutmix_eval.corruptions import blur, digital, noise, weather  # noqa: F401
