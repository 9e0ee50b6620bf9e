"""Corrupted test sets: the released CIFAR-10-C / CIFAR-100-C / ImageNet-C files, and an
on-the-fly corrupted view of any dataset (Hendrycks & Dietterich, ICLR 2019).

A dataset object is **one (corruption, severity) slice**. For the released files the
slice is chosen with two keyword arguments of the factory, and
:func:`corrupted_slices` lists the slices present on disk, so an evaluator iterates::

    for corruption, severity in corrupted_slices("cifar10-c", root):
        ds = create_dataset("cifar10-c", "test", root=root, corruption=corruption, severity=severity)

Released files (read, never generated; corruption names and order as in
:data:`cutmix_eval.corruptions.ALL`):

``cifar10-c`` / ``cifar100-c`` (split ``test``)
    ``<root>/CIFAR-10-C/`` (``CIFAR-100-C/``) holds one ``<corruption>.npy`` per
    corruption, ``N x 32 x 32 x 3`` uint8 with ``N = 5 x n`` (``n`` = 10,000 test images
    in the release), severity outermost: image ``i`` at severity ``s`` is row
    ``(s - 1) * n + i``; ``labels.npy`` holds the ``N`` labels (the test labels repeated
    per severity). The arrays are memory-mapped (``np.load(mmap_mode="r")``), never read
    whole: ``images`` is the severity's ``n x 32 x 32 x 3`` ``np.memmap`` view. Class
    names are the clean set's (``batches.meta`` / ``meta`` where the clean CIFAR folder
    is found under the same root, see :mod:`cutmix_eval.data.cifar`), else ``"0"`` ..
    ``"K-1"``. No default transform (the models take 32 x 32).
``imagenet-c`` (split ``val``)
    ``<root>/ImageNet-C/<corruption>/<severity 1-5>/<wnid>/*.JPEG`` (or ``imagenet-c/``),
    already 224 x 224 (the corruptions were applied after ImageNet's Resize(256) +
    CenterCrop(224)). Labels are the 1000-class indices of the wnids, also in a slice that
    holds only some of them, and samples are in torchvision's ``ImageFolder`` order, as for
    the ``imagenet`` dataset (:func:`cutmix_eval.data.imagenet.imagenet_classes`; the
    released slices all hold the same 1,000 wnids). Default geometry Resize(S) +
    CenterCrop(S) with ``image_size=S`` (default 224: a no-op on the released files).

On the fly, :class:`CorruptedDataset` corrupts any dataset's images with
:func:`cutmix_eval.corruptions.corrupt`, image ``i`` seeded with :func:`image_seed`
``(seed, i)``, so an image gets the same corruption in every run, in every batch and for
every model; :func:`corrupt_indexed` does the same to a batch. The ImageNet-C README asks
that published ImageNet-C numbers come from the released files; on-the-fly corruption is
for data with no released copy.
"""

from __future__ import annotations

import os
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from cutmix_eval.corruptions.registry import ALL, SEVERITIES, TABLES, corrupt, get_corruption
from cutmix_eval.data.base import (DATA_ROOT_ENV, ImageDataset, Sample, Transform, dataset_labels, eval_transform,
                                   files_identity, find_layout, list_images, resolve_data_root)
from cutmix_eval.data.cifar import cifar_class_names
from cutmix_eval.data.imagefolder import ImageFolderDataset
from cutmix_eval.data.imagenet import imagenet_classes
from cutmix_eval.data.registry import dataset_spec, register_dataset
from cutmix_eval.errors import DatasetNotFoundError, UserError

#: released CIFAR-C sets: name -> (clean dataset, folder under the data root, number of classes)
CIFAR_C = {"cifar10-c": ("cifar10", "CIFAR-10-C", 10), "cifar100-c": ("cifar100", "CIFAR-100-C", 100)}
IMAGENET_C_FOLDERS = ("ImageNet-C", "imagenet-c")


def image_seed(seed: int, index: int) -> int:
    """The corruption seed of dataset image ``index`` in a run seeded ``seed`` (both >= 0).

    The first 64-bit word of ``numpy.random.SeedSequence((seed, index))`` shifted right by
    one bit: a non-negative 63-bit int (it fits torch.int64), deterministic across runs,
    platforms and processes, and a hash of the pair, so distinct pairs collide with
    probability about 2**-63.
    """
    word = np.random.SeedSequence((int(seed), int(index))).generate_state(1, dtype=np.uint64)[0]
    return int(word) >> 1


def corrupt_indexed(images: torch.Tensor, indices: Any, corruption: str, severity: int, *, seed: int = 0,
                    table: str = "auto") -> torch.Tensor:
    """``images`` (``B x 3 x H x W`` in [0, 1]) of dataset positions ``indices`` (``B`` ints)
    corrupted as :class:`CorruptedDataset` corrupts them one by one: ``corrupt(images,
    corruption, severity, seeds=[image_seed(seed, i) for i in indices], table=table)``."""
    seeds = [image_seed(seed, int(i)) for i in indices]
    return corrupt(images, corruption, severity, seeds=seeds, table=table)


def _check_severity(dataset: str, severity: Any) -> int:
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or severity not in SEVERITIES:
        raise UserError(f"{dataset}: severity must be an integer 1-5, not {severity!r}")
    return int(severity)


def _check_slice(dataset: str, corruption: str | None, severity: int | None) -> tuple[str, int] | None:
    """``(corruption, severity)`` if ``corruption`` is one of the 19 names and ``severity``
    an int in 1-5, None when neither is given (:func:`_slice_or_first`); a one-line
    :class:`UserError` otherwise (also when one is missing). Reads no file."""
    if corruption is None and severity is None:
        return None
    if corruption is None or severity is None:
        raise UserError(f"{dataset}: each dataset object is one slice; pass both corruption=NAME and severity=1-5, "
                        f"or neither for the first slice on disk (corrupted_slices({dataset!r}) lists them)")
    if corruption not in ALL:
        raise UserError(f"{dataset}: unknown corruption {corruption!r}; choose from {', '.join(ALL)}")
    return corruption, _check_severity(dataset, severity)


def _slice_or_first(dataset: str, chosen: tuple[str, int] | None, on_disk: list[tuple[str, int]]) -> tuple[str, int]:
    """The slice asked for, or with none asked the first one on disk: the object that stands
    for the whole release (its labels, image size and identity; the corruption analysis
    reads every slice)."""
    if chosen is not None:
        return chosen
    if not on_disk:
        raise DatasetNotFoundError(f"{dataset}: no slice on disk beside its labels; see `cutmix-eval datasets` for "
                                   "the layout")
    return on_disk[0]


class CorruptionSlice:
    """Mixin of the corrupted datasets: which corruption and severity the object holds."""

    corruption: str
    severity: int

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, corruption={self.corruption!r}, "
                f"severity={self.severity}, samples={len(self)}, classes={self.num_classes})")


# ----------------------------------------------------------------------------------------- CIFAR-C

def _open_npy(path: Path) -> np.ndarray:
    """``path`` memory-mapped read-only; a file numpy cannot map is a one-line UserError."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise UserError(f"cannot read {path} as a .npy array ({err}); replace it with the released file") from err


def _severity_slice(path: Path, labels_path: Path, severity: int,
                    num_classes: int) -> tuple[slice, np.ndarray, np.ndarray]:
    """The rows of ``severity`` in a checked CIFAR-C file, their memory-mapped images and labels (int64)."""
    images = _open_npy(path)
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3) or images.dtype != np.uint8 or len(images) % 5 \
            or not len(images):
        raise UserError(f"{path}: array of shape {images.shape} and dtype {images.dtype}; expected N x 32 x 32 x 3 "
                        f"uint8 with N = 5 severities x the test images (50000 in the released files)")
    labels = _open_npy(labels_path)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{labels_path}: shape {labels.shape} and dtype {labels.dtype}; expected {len(images)} "
                        f"integer labels, one per row of {path.name}")
    n = len(images) // 5
    rows = slice((severity - 1) * n, severity * n)
    chosen = np.asarray(labels[rows], dtype=np.int64)
    if chosen.min() < 0 or chosen.max() >= num_classes:
        raise UserError(f"{labels_path}: labels range over {chosen.min()}..{chosen.max()}; expected class indices "
                        f"0..{num_classes - 1}")
    return rows, images[rows], chosen


class CifarCDataset(CorruptionSlice, ImageDataset):
    """One severity of one released CIFAR-C file: ``images`` is its ``n x 32 x 32 x 3``
    uint8 memory-mapped view, ``labels`` its ``n`` int64 labels. Pickling (DataLoader
    workers under spawn / forkserver) re-maps the file instead of copying the images."""

    def __init__(self, name: str, path: Path, labels_path: Path, corruption: str, severity: int,
                 classes: tuple[str, ...], transform: Transform | None):
        super().__init__("test", transform)
        self.name, self.path, self.corruption, self.severity, self.classes = name, path, corruption, severity, classes
        self.labels_path = labels_path
        self.rows, self.images, self.labels = _severity_slice(path, labels_path, severity, len(classes))

    def source_files(self) -> list[Path]:
        return [self.path, self.labels_path]

    @cached_property
    def identity(self) -> dict[str, Any]:
        return files_identity(self.source_files()) | {"corruption": self.corruption, "severity": self.severity}

    def __getstate__(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "images"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.images = _open_npy(self.path)[self.rows]

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> Sample:
        image = np.ascontiguousarray(self.images[index].transpose(2, 0, 1))
        return {"image": torch.from_numpy(image), "label": int(self.labels[index])}


def _cifar_c_layout(name: str) -> str:
    folder = CIFAR_C[name][1]
    return (f"{folder}/{{labels.npy,<corruption>.npy}} under <root> (the released files: one N x 32 x 32 x 3 uint8 "
            f"array per corruption, N = 5 severities x 10000 test images, severity outermost)")


def locate_cifar_c(name: str, root: Path) -> Path:
    """The CIFAR-C folder, the one holding ``labels.npy``."""
    return find_layout(root, [CIFAR_C[name][1]], ["labels.npy"], name, _cifar_c_layout(name))


def _cifar_c_slices(folder: Path) -> list[tuple[str, int]]:
    return [(c, s) for c in ALL if (folder / f"{c}.npy").is_file() for s in SEVERITIES]


def cifar_c_dataset(name: str, split: str, root: Path, *, corruption: str | None = None, severity: int | None = None,
                    transform: Any = "default") -> CifarCDataset:
    """Severity ``severity`` of ``<corruption>.npy`` (``split`` is always ``test``); neither
    given: the first slice on disk."""
    chosen = _check_slice(name, corruption, severity)
    folder = locate_cifar_c(name, root)
    corruption, severity = _slice_or_first(name, chosen, _cifar_c_slices(folder))
    path = folder / f"{corruption}.npy"
    if not path.is_file():
        present = ", ".join(dict.fromkeys(c for c, _ in _cifar_c_slices(folder))) or "none"
        raise DatasetNotFoundError(f"{name}: no {path.name} in {folder} (corruptions there: {present}); expected "
                                   f"the released {path.name} beside labels.npy")
    clean, _, count = CIFAR_C[name]
    return CifarCDataset(name, path, folder / "labels.npy", corruption, severity, cifar_class_names(clean, root, count),
                         None if transform == "default" else transform)


for _name, _title in (("cifar10-c", "CIFAR-10-C"), ("cifar100-c", "CIFAR-100-C")):
    register_dataset(_name, description=f"{_title}: the released corrupted CIFAR test set, one (corruption, severity) "
                     f"slice per dataset (corruption=, severity=)", layout=_cifar_c_layout(_name),
                     splits=("test",), locate=partial(locate_cifar_c, _name))(partial(cifar_c_dataset, _name))


# --------------------------------------------------------------------------------------- ImageNet-C

_IMAGENET_C_LAYOUT = ("ImageNet-C/<corruption>/<severity 1-5>/<wnid>/*.JPEG (or imagenet-c/...) under <root>, "
                      "as the released tar files extract")


def _imagenet_c_slices(folder: Path) -> list[tuple[str, int]]:
    return [(c, s) for c in ALL for s in SEVERITIES if (folder / c / str(s)).is_dir()]


def locate_imagenet_c(root: Path) -> Path:
    """The ImageNet-C folder, the first candidate holding at least one ``<corruption>/<severity>/`` folder."""
    searched = [root / folder for folder in IMAGENET_C_FOLDERS]
    for folder in searched:
        if _imagenet_c_slices(folder):
            return folder
    raise DatasetNotFoundError(f"imagenet-c: not found (searched {', '.join(map(str, searched))}); expected "
                               f"{_IMAGENET_C_LAYOUT}. Point --data-root (or ${DATA_ROOT_ENV}) at the folder that "
                               f"holds it.")


class ImageNetCDataset(CorruptionSlice, ImageFolderDataset):
    """One ImageNet-C slice, ``<folder>/<corruption>/<severity>/<wnid>/*.JPEG``, read as an ImageFolder
    labelled as ``imagenet`` is (the 1000-class indices of the wnids)."""

    def __init__(self, folder: Path, corruption: str, severity: int, transform: Transform | None):
        super().__init__("imagenet-c", "val", folder / corruption / str(severity), transform, imagenet_classes)
        self.corruption, self.severity = corruption, severity

    @cached_property
    def identity(self) -> dict[str, Any]:
        return files_identity(self.source_files()) | {"corruption": self.corruption, "severity": self.severity}


@register_dataset("imagenet-c", description="ImageNet-C: the released corrupted ImageNet val images (224 x 224), "
                  "one (corruption, severity) slice per dataset (corruption=, severity=)",
                  layout=_IMAGENET_C_LAYOUT, splits=("val",), locate=locate_imagenet_c)
def imagenet_c_dataset(split: str, root: Path, *, corruption: str | None = None, severity: int | None = None,
                       transform: Any = "default", image_size: int = 224) -> ImageNetCDataset:
    """The ``<corruption>/<severity>`` ImageFolder (neither given: the first slice on disk);
    default geometry Resize(S) + CenterCrop(S)."""
    chosen = _check_slice("imagenet-c", corruption, severity)
    folder = locate_imagenet_c(root)
    corruption, severity = _slice_or_first("imagenet-c", chosen, _imagenet_c_slices(folder))
    if not (folder / corruption / str(severity)).is_dir():
        raise DatasetNotFoundError(f"imagenet-c: no {corruption}/{severity}/ folder in {folder}; expected "
                                   f"{_IMAGENET_C_LAYOUT}")
    geometry = eval_transform(size=image_size, resize=image_size) if transform == "default" else transform
    return ImageNetCDataset(folder, corruption, severity, geometry)


_SLICES = {"cifar10-c": _cifar_c_slices, "cifar100-c": _cifar_c_slices, "imagenet-c": _imagenet_c_slices}
#: each released corrupted set's clean counterpart (dataset, split): its clean error comes from there
CLEAN_OF = {"cifar10-c": ("cifar10", "test"), "cifar100-c": ("cifar100", "test"), "imagenet-c": ("imagenet", "val")}


def is_released(name: str) -> bool:
    """Whether ``name`` is a released corrupted set (``cifar10-c``, ``cifar100-c``, ``imagenet-c``)."""
    return dataset_spec(name).name in _SLICES


def corrupted_slices(name: str, root: str | os.PathLike | None = None) -> list[tuple[str, int]]:
    """The ``(corruption, severity)`` slices of released corrupted set ``name`` on disk under
    the data root (``root``, else ``$CUTMIX_EVAL_DATA``, else ``./data``): corruptions in
    table order (the 15 benchmark ones, then the 4 extra), severities ascending. A
    CIFAR-C file holds all five severities; an ImageNet-C slice is its folder."""
    spec = dataset_spec(name)
    if spec.name not in _SLICES:
        raise UserError(f"{spec.name} is not a released corrupted set ({', '.join(_SLICES)}); wrap it in "
                        f"CorruptedDataset to corrupt it on the fly")
    return _SLICES[spec.name](spec.locate(resolve_data_root(root)))


def released_identity(name: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """:func:`~cutmix_eval.data.base.files_identity` of every file of released corrupted set
    ``name`` under the data root: the CIFAR-C arrays and their labels, or every image of every
    ImageNet-C slice (one ``stat`` each)."""
    spec = dataset_spec(name)
    folder = spec.locate(resolve_data_root(root))
    if spec.name == "imagenet-c":
        files = [f for c, s in _imagenet_c_slices(folder) for f in list_images(folder / c / str(s), name)]
    else:
        files = [*(folder / f"{c}.npy" for c in dict.fromkeys(c for c, _ in _cifar_c_slices(folder))),
                 folder / "labels.npy"]
    return files_identity(files)


# ---------------------------------------------------------------------------------------- on the fly

class CorruptedDataset(CorruptionSlice, ImageDataset):
    """``base`` with every image corrupted by ``corruption`` at ``severity`` (1-5), on the fly.

    Sample ``i`` is ``base[i]`` with its image (after the base's own transform, at the size
    the model sees) replaced by ``corrupt(image[None], corruption, severity,
    seeds=[image_seed(seed, i)], table=table)[0]``: float in [0, 1], unquantized.
    ``table="auto"`` takes the CIFAR-C parameters for images of at most 84 pixels a side
    and the ImageNet-C ones above (see :mod:`cutmix_eval.corruptions.registry`). Label,
    ``boxes``, ``mask`` and any extra keys pass through unchanged: the corruptions are
    photometric or local warps (blurs, elastic transform, pixelation) that do not move
    the object. ``name``, ``split``, ``classes``, ``labels`` and the box/mask attributes
    are the base's; ``corruption``, ``severity``, ``table`` and ``seed`` say what was done.
    """

    def __init__(self, base: Dataset, corruption: str, severity: int, table: str = "auto", seed: int = 0):
        super().__init__(getattr(base, "split", "test"), transform=None)
        self.name = getattr(base, "name", type(base).__name__)
        self.base, self.corruption = base, get_corruption(corruption).name
        self.severity = _check_severity(self.name, severity)
        if table != "auto" and table not in TABLES:
            raise UserError(f"unknown severity table {table!r}; choose auto, {' or '.join(TABLES)}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise UserError(f"seed must be a non-negative integer, not {seed!r}")
        self.table, self.seed = table, int(seed)
        for attribute in ("classes", "has_boxes", "has_masks", "box_convention"):
            setattr(self, attribute, getattr(base, attribute, getattr(ImageDataset, attribute)))

    @property
    def labels(self) -> np.ndarray:
        return dataset_labels(self.base)

    @cached_property
    def identity(self) -> dict[str, Any]:
        return {"base": self.base.identity, "corruption": self.corruption, "severity": self.severity,
                "table": self.table, "seed": self.seed}

    def __len__(self) -> int:
        return len(self.base)

    def load(self, index: int) -> Sample:
        sample = dict(self.base[index])
        image = sample["image"].as_subclass(torch.Tensor)[None]
        sample["image"] = corrupt_indexed(image, [index], self.corruption, self.severity, seed=self.seed,
                                          table=self.table)[0]
        return sample
