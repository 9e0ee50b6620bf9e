"""Dataset registry: ``register_dataset`` fills it, ``create_dataset`` reads it.

Each entry knows how to build the dataset from a data root, which splits it has,
what its on-disk layout is (for error messages and ``cutmix-eval datasets``) and
whether it is ``"classification"`` data (labels, maybe boxes/masks) or an
``"ood"`` set (label -1).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cutmix_eval.data.base import ImageDataset, resolve_data_root
from cutmix_eval.errors import UserError
from cutmix_eval.registry import Registry, parse_options


@dataclass(frozen=True)
class DatasetSpec:
    """What the registry knows about one dataset name."""

    name: str
    factory: Callable[..., ImageDataset]
    description: str
    layout: str  # the on-disk layout under the data root, or "built in"
    splits: tuple[str, ...]
    kind: str = "classification"  # or "ood"
    #: ``locate(root) -> Path`` raises DatasetNotFoundError if the files are missing;
    #: None for generated datasets that need no files
    locate: Callable[[Path], Path] | None = None
    aliases: tuple[str, ...] = field(default=())
    #: the data root given *is* the dataset (any ImageFolder tree, any folder of images)
    root_is_folder: bool = False
    #: ``describe(root) -> str``: where the dataset is and which layout it has, reading it as the
    #: factory would (raises if it would not load); None: ``locate`` alone tells
    describe: Callable[[Path], str] | None = None

    def accepts(self, argument: str) -> bool:
        """Whether the factory takes keyword ``argument`` (e.g. ``image_size``)."""
        return argument in inspect.signature(self.factory).parameters


#: names and aliases are looked up case-insensitively (``CIFAR10`` is ``cifar10``)
_DATASETS: Registry[DatasetSpec] = Registry("dataset", sort=True, ignore_case=True,
                                            note="`cutmix-eval datasets` says where each is expected")


def register_dataset(name: str, *, description: str, layout: str, splits: tuple[str, ...],
                     kind: str = "classification", locate: Callable[[Path], Path] | None = None,
                     aliases: tuple[str, ...] = (), root_is_folder: bool = False,
                     describe: Callable[[Path], str] | None = None):
    """Decorator registering ``factory(split, root, transform=..., **kwargs)`` under ``name``."""

    def decorator(factory: Callable[..., ImageDataset]) -> Callable[..., ImageDataset]:
        _DATASETS.register(name, DatasetSpec(name, factory, description, layout, splits, kind, locate, aliases,
                                             root_is_folder, describe), aliases)
        return factory

    return decorator


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name`` (or one of its aliases); settings after a colon
    (``synthetic:body_evidence=0.25``, see :func:`create_dataset`) are ignored here."""
    return _DATASETS.get(parse_options(name, "dataset")[0])


def list_datasets(pattern: str = "*", kind: str | None = None) -> list[str]:
    """Registered dataset names matching a shell-style ``pattern``, optionally of one ``kind``."""
    return [n for n in _DATASETS.names(pattern) if kind is None or _DATASETS.get(n).kind == kind]


def create_dataset(name: str, split: str = "test", root: str | os.PathLike | None = None,
                   **kwargs: Any) -> ImageDataset:
    """Build dataset ``name`` for ``split`` from the data root.

    ``root`` defaults to ``$CUTMIX_EVAL_DATA`` or ``./data``. Keyword arguments go to
    the dataset (e.g. ``transform``, ``image_size``), and so do settings written into the
    name as an architecture's are (``synthetic:body_evidence=0.25``), so that one string
    names the data in recipes, studies and on the command line; a setting given both ways
    must agree. A missing or malformed dataset raises
    :class:`~cutmix_eval.errors.DatasetNotFoundError` naming the path searched and the
    expected layout.
    """
    spec = dataset_spec(name)
    if split not in spec.splits:
        raise UserError(f"dataset {spec.name!r} has no split {split!r}; choose from {', '.join(spec.splits)}")
    settings = parse_options(name, "dataset")[1]
    clashing = sorted(k for k in settings if k in kwargs and kwargs[k] != settings[k])
    if clashing:
        raise UserError(f"dataset {name!r} sets {', '.join(clashing)}, which is also given as "
                        f"{', '.join(f'{k}={kwargs[k]!r}' for k in clashing)}; give it once")
    unknown = sorted(k for k in settings if not spec.accepts(k))
    if unknown:
        known = [p for p in inspect.signature(spec.factory).parameters if p not in ("split", "root", "transform")]
        raise UserError(f"dataset {spec.name!r} has no setting {', '.join(unknown)}; its settings are "
                        f"{', '.join(known) or 'none'}")
    return spec.factory(split, resolve_data_root(root), **{**kwargs, **settings})
