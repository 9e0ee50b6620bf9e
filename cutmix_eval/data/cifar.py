"""CIFAR-10, CIFAR-100 and SVHN: small 32 x 32 datasets held in memory.

CIFAR is read from torchvision's "python version" layout, pickled dicts whose
``data`` is a uint8 ``N x 3072`` array (the R plane, then G, then B, each 32 x 32
row-major) and whose labels are ``labels`` (CIFAR-10) or ``fine_labels``
(CIFAR-100). The pickles are read with a restricted unpickler that only
rebuilds numpy arrays, so a tampered data file cannot run code. SVHN is
torchvision's ``<split>_32x32.mat`` (``X``: ``32 x 32 x 3 x N`` uint8, ``y``:
``N x 1`` with 10 standing for the digit 0).

Each dataset object reads its arrays once, at construction; samples are
``3 x 32 x 32`` uint8 images with no default transform (the models take 32 x 32).
"""

from __future__ import annotations

import codecs
import hashlib
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import torch

from cutmix_eval.data.base import ImageDataset, Sample, Transform, files_identity, find_layout
from cutmix_eval.data.registry import register_dataset
from cutmix_eval.errors import UserError

#: the only globals a CIFAR pickle needs: numpy array / dtype / scalar
#: reconstruction (Python 2 files name ``numpy.core``, numpy 2 writes ``numpy._core``)
#: and the codec Python 3 uses to pickle ``bytes`` at protocol 2
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}
for _core in ("numpy.core", "numpy._core"):
    _SAFE_GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = np._core.multiarray._reconstruct
    _SAFE_GLOBALS[(f"{_core}.multiarray", "scalar")] = np._core.multiarray.scalar
    _SAFE_GLOBALS[(f"{_core}.numeric", "_frombuffer")] = np._core.numeric._frombuffer


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`_SAFE_GLOBALS` and refuses anything else."""

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="latin1")  # the real files were pickled by Python 2
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise UserError(f"refusing to load {self.path}: it references {module}.{name}, which a "
                            f"CIFAR data file never needs (only numpy arrays, lists and strings)") from None


def load_pickle(path: Path) -> Any:
    """Read a CIFAR pickle with :class:`_RestrictedUnpickler`; a damaged file is a UserError."""
    try:
        with open(path, "rb") as file:
            return _RestrictedUnpickler(file, path).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise UserError(f"cannot read {path} as a CIFAR pickle ({err})") from err


def _entry(record: Any, key: str, path: Path) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise UserError(f"{path} has no {key!r} entry; is it a CIFAR file of the right version?")
    return record[key]


class ArrayDataset(ImageDataset):
    """Images held in memory as a uint8 ``N x 3 x H x W`` tensor with int labels."""

    def __init__(self, name: str, split: str, images: np.ndarray, labels: np.ndarray,
                 classes: tuple[str, ...], transform: Transform | None, sources: Sequence[Path] = ()):
        super().__init__(split, transform)
        self.name, self.sources = name, list(sources)
        self.classes = classes
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def source_files(self) -> list[Path]:
        return self.sources

    @cached_property
    def identity(self) -> dict[str, Any]:
        """:func:`files_identity` of the files the arrays were read from; arrays built in
        memory: the SHA-256 of their bytes."""
        if self.sources:
            return files_identity(self.sources)
        digest = hashlib.sha256(self.images.numpy().tobytes())
        digest.update(self.labels.numpy().tobytes())
        return {"arrays": list(self.images.shape), "sha256": digest.hexdigest()}

    def load(self, index: int) -> Sample:
        return {"image": self.images[index], "label": int(self.labels[index])}


@dataclass(frozen=True)
class _CifarFormat:
    """Where one CIFAR version keeps its files and which keys hold what."""

    folder: str
    batches: dict[str, tuple[str, ...]]
    meta: str
    names_key: str
    labels_key: str


_CIFAR = {
    "cifar10": _CifarFormat("cifar-10-batches-py",
                            {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
                            "batches.meta", "label_names", "labels"),
    "cifar100": _CifarFormat("cifar-100-python", {"train": ("train",), "test": ("test",)},
                             "meta", "fine_label_names", "fine_labels"),
}


def _cifar_layout(name: str) -> str:
    fmt = _CIFAR[name]
    files = ",".join((*fmt.batches["train"], *fmt.batches["test"], fmt.meta))
    return f"{fmt.folder}/{{{files}}} (torchvision's python pickles) under <root> or <root>/{name}"


def locate_cifar(name: str, root: Path, split: str = "test") -> Path:
    """The CIFAR folder holding ``split``'s batches and the meta file."""
    fmt = _CIFAR[name]
    return find_layout(root, [fmt.folder, f"{name}/{fmt.folder}"], [*fmt.batches[split], fmt.meta],
                       name, _cifar_layout(name))


def cifar_dataset(name: str, split: str, root: Path, *, transform: Any = "default") -> ArrayDataset:
    """Read every batch of ``split`` into memory (``3 x 32 x 32`` uint8 images)."""
    fmt = _CIFAR[name]
    folder = locate_cifar(name, root, split)
    images, labels = [], []
    for batch in fmt.batches[split]:
        path = folder / batch
        record = load_pickle(path)
        data = np.asarray(_entry(record, "data", path))
        batch_labels = np.asarray(_entry(record, fmt.labels_key, path))
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or batch_labels.shape != (len(data),):
            raise UserError(f"{path}: 'data' has shape {data.shape} and {fmt.labels_key!r} {batch_labels.shape}; "
                            f"expected N x 3072 (RGB planes of 32 x 32) and N labels")
        images.append(data.astype(np.uint8).reshape(-1, 3, 32, 32))
        labels.append(batch_labels)
    meta = folder / fmt.meta
    classes = tuple(str(c) for c in _entry(load_pickle(meta), fmt.names_key, meta))
    return ArrayDataset(name, split, np.concatenate(images), np.concatenate(labels), classes,
                        None if transform == "default" else transform,
                        sources=[*(folder / batch for batch in fmt.batches[split]), meta])


def cifar_class_names(clean: str, root: Path, count: int) -> tuple[str, ...]:
    """The clean CIFAR set's class names from its meta file under ``root``, else ``"0"``.. ``"count-1"``."""
    fmt = _CIFAR[clean]
    meta = next((path for path in (root / fmt.folder / fmt.meta, root / clean / fmt.folder / fmt.meta)
                 if path.is_file()), None)
    if meta is None:
        return tuple(str(i) for i in range(count))
    names = tuple(str(c) for c in _entry(load_pickle(meta), fmt.names_key, meta))
    if len(names) != count:
        raise UserError(f"{meta}: {len(names)} class names; expected {count} for {clean}")
    return names


for _name, _title in (("cifar10", "CIFAR-10: 10 classes, 50,000 train / 10,000 test"),
                      ("cifar100", "CIFAR-100: 100 fine classes, 50,000 train / 10,000 test")):
    register_dataset(_name, description=f"{_title}, 32 x 32", layout=_cifar_layout(_name),
                     splits=("train", "test"), locate=partial(locate_cifar, _name))(
        partial(cifar_dataset, _name))

_SVHN_LAYOUT = "svhn/test_32x32.mat (and train_32x32.mat for the train split), or the .mat files directly in <root>"


def locate_svhn(root: Path, split: str = "test") -> Path:
    """The folder holding ``<split>_32x32.mat``."""
    return find_layout(root, ["svhn", ""], [f"{split}_32x32.mat"], "svhn", _SVHN_LAYOUT)


@register_dataset("svhn", description="SVHN digits (cropped 32 x 32), labels 0-9; a common far-OOD set",
                  layout=_SVHN_LAYOUT, splits=("test", "train"), locate=locate_svhn)
def svhn_dataset(split: str, root: Path, *, transform: Any = "default") -> ArrayDataset:
    """Read ``<split>_32x32.mat`` into memory; label 10 in the file is the digit 0."""
    path = locate_svhn(root, split) / f"{split}_32x32.mat"
    try:
        mat = scipy.io.loadmat(path, variable_names=("X", "y"))
    except (ValueError, TypeError, OSError) as err:
        raise UserError(f"cannot read {path} as a MATLAB file ({err})") from err
    images, labels = mat.get("X"), mat.get("y")
    if images is None or labels is None or images.ndim != 4 or images.shape[:3] != (32, 32, 3) \
            or labels.size != images.shape[3]:
        shapes = [None if a is None else a.shape for a in (images, labels)]
        raise UserError(f"{path}: X, y have shapes {shapes[0]}, {shapes[1]}; expected X 32 x 32 x 3 x N "
                        f"and y N x 1")
    return ArrayDataset("svhn", split, images.transpose(3, 2, 0, 1).astype(np.uint8),
                        labels.reshape(-1).astype(np.int64) % 10, tuple(str(d) for d in range(10)),
                        None if transform == "default" else transform, sources=[path])
