"""The sample convention every dataset follows, and the helpers loaders share.

A **sample** is a dict:

``image``
    ``tv_tensors.Image``, float32, shape ``3 x H x W``, values in [0, 1] (pixel
    space; models normalize inside).
``label``
    int class index; ``-1`` for out-of-distribution sets, whose labels mean nothing.
``index``
    int position of the sample in its dataset.
``boxes`` (optional)
    ``tv_tensors.BoundingBoxes`` in XYXY format, shape ``N x 4``, in pixel
    coordinates of the *returned* image (after every transform), treated as
    continuous coordinates the way torchvision's v2 transforms treat them.
    Annotation files' numbers pass through as given (CUB ``x, y, x + w, y + h``;
    ImageNet XML ``xmin..xmax``); boxes we derive from masks (the embedded
    dataset) are pixel-edge coordinates (pixels ``c0..c1`` -> ``x0 = c0,
    x1 = c1 + 1``), which transforms move exactly. Metrics state the IoU
    convention they apply.
``mask`` (optional)
    ``tv_tensors.Mask``, uint8, shape ``H x W``: 0 = background, 1 = object,
    255 = ignore (excluded from pixel-level metrics).

Geometric transforms are ``torchvision.transforms.v2`` transforms applied to the
whole dict, so boxes and masks move with the image.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Subset
from torchvision import tv_tensors
from torchvision.transforms import v2

from cutmix_eval.errors import DatasetNotFoundError, UserError

DATA_ROOT_ENV = "CUTMIX_EVAL_DATA"
DEFAULT_DATA_ROOT = "data"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

Sample = dict[str, Any]
_SANITIZE_BOXES = v2.Compose([v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(labels_getter=None)])
Transform = Callable[[Sample], Sample]


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$CUTMIX_EVAL_DATA``, else ``./data``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(DATA_ROOT_ENV)
    return Path(env).expanduser() if env else Path(DEFAULT_DATA_ROOT)


def find_layout(root: Path, candidates: Sequence[str], required: Sequence[str], dataset: str,
                expected: str) -> Path:
    """Return the first ``root / candidate`` folder that holds every ``required`` entry.

    Raises :class:`DatasetNotFoundError` naming every folder searched and the layout
    expected, so a user can fix the path in one go.
    """
    searched = []
    for candidate in candidates:
        folder = (root / candidate) if candidate else root
        searched.append(str(folder))
        if folder.is_dir() and all((folder / item).exists() for item in required):
            return folder
    raise DatasetNotFoundError(
        f"{dataset}: not found (searched {', '.join(dict.fromkeys(searched))}); expected {expected}. "
        f"Point --data-root (or ${DATA_ROOT_ENV}) at the folder that holds it."
    )


def list_images(folder: Path, dataset: str) -> list[Path]:
    """All image files under ``folder`` (recursively), sorted; an error if there are none."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise DatasetNotFoundError(
            f"{dataset}: no image files ({', '.join(IMAGE_EXTENSIONS)}) under {folder}")
    return files


def read_image(path: Path) -> tv_tensors.Image:
    """Decode an image file to a uint8 ``3 x H x W`` tensor (RGB).

    A file that cannot be decoded is a :class:`UserError` naming the file: a
    corrupted image inside a dataset stops the run rather than being skipped
    silently, so that every model of a study sees the same images.
    """
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise UserError(f"cannot decode image {path} ({err}); remove or replace the file") from err
    return tv_tensors.Image(torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1))


def to_float_image(image: torch.Tensor) -> tv_tensors.Image:
    """uint8 or float image tensor -> float32 ``tv_tensors.Image`` in [0, 1]."""
    if image.dtype == torch.uint8:
        image = image.to(torch.float32).div_(255.0)
    return tv_tensors.Image(image.to(torch.float32))


def files_identity(files: Sequence[Path]) -> dict[str, Any]:
    """Which files a dataset reads, cheaply: the resolved folder holding them all, their count,
    and the SHA-256 (hex) over each file's path relative to that folder, size and modification
    time in nanoseconds, in dataset order. One ``stat`` per file, no reading: a file added,
    removed, renamed, re-ordered, rewritten or touched changes it, and so does the same tree
    at another place (the folder is part of it). A file that cannot be read is a UserError."""
    resolved = [Path(f).resolve() for f in files]
    folder = Path(os.path.commonpath([p.parent for p in resolved])) if resolved else Path()
    digest = hashlib.sha256()
    for path in resolved:
        try:
            stat = path.stat()
        except OSError as err:
            raise UserError(f"cannot read {path} ({err.strerror}); the dataset's files changed while it was "
                            "being read, or are not readable") from None
        digest.update(f"{path.relative_to(folder).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return {"folder": str(folder), "files": len(resolved), "sha256": digest.hexdigest()}


def describe_identity(identity: dict[str, Any]) -> str:
    """A dataset identity (:meth:`ImageDataset.identity`) in a few words for messages."""
    if "sha256" in identity:
        return f"{identity['files']} files in {identity['folder']}, fingerprint {identity['sha256'][:12]}"
    return ", ".join(f"{k} {v}" for k, v in identity.items())


def make_boxes(boxes: Any, height: int, width: int) -> tv_tensors.BoundingBoxes:
    """An ``N x 4`` XYXY box array on an ``height x width`` canvas as a tv_tensor."""
    data = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    return tv_tensors.BoundingBoxes(data, format="XYXY", canvas_size=(height, width))


class ImageDataset(Dataset):
    """Base class: subclasses implement :meth:`load` and set the metadata attributes.

    ``load(index)`` returns a sample dict whose ``image`` is a uint8 or float
    ``3 x H x W`` tensor at the stored resolution (with ``boxes``/``mask`` on that
    canvas). ``__getitem__`` converts the image to float [0, 1], applies the
    transform to the whole sample and adds ``index``. Labelled datasets also expose
    ``labels`` (one int per sample, in order) without decoding any image; see
    :func:`dataset_labels`.
    """

    #: registry name, e.g. ``"cifar100"``
    name: str = ""
    #: class names, in label order (empty for OOD sets)
    classes: Sequence[str] = ()
    #: whether samples carry boxes / masks
    has_boxes: bool = False
    has_masks: bool = False
    #: "annotation": box numbers as annotators wrote them (read as inclusive pixel indices by
    #: the localization metrics, like wsolevaluation); "edges": pixel-edge coordinates derived
    #: from masks (x1 one past the last pixel)
    box_convention: str = "annotation"

    def __init__(self, split: str, transform: Transform | None = None):
        self.split = split
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def load(self, index: int) -> Sample:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def source_files(self) -> Sequence[Path]:
        """The files the samples are read from (images, arrays, annotations), in dataset order;
        file-backed datasets define it, generated ones define :attr:`identity` instead."""
        raise NotImplementedError(f"{type(self).__name__} does not say which files it reads: define "
                                  "source_files() or identity")

    @cached_property
    def identity(self) -> dict[str, Any]:
        """What this dataset's samples are, beyond its name and split, as a JSON-able dict: for
        file-backed data :func:`files_identity` of :meth:`source_files`; generated data their
        generator's settings. Part of every stored job (the result store never reuses a record
        for other images); computed once per object."""
        return files_identity(self.source_files())

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {self.name} ({len(self)} samples)")
        sample = self.load(index)
        sample["image"] = to_float_image(sample["image"])
        if self.transform is not None:
            sample = self.transform(sample)
            if "boxes" in sample:  # drop boxes a crop left empty, clamp the rest
                sample = _SANITIZE_BOXES(sample)
        sample["index"] = index
        return sample

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, "
                f"samples={len(self)}, classes={self.num_classes})")


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """Every sample's label as an int64 array, in dataset order: from the dataset's
    in-memory ``labels`` when it has them (every labelled dataset here does; a ``Subset``
    is followed to its base), otherwise by loading each sample."""
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [int(dataset[i]["label"]) for i in range(len(dataset))]
    return np.asarray(labels, dtype=np.int64).reshape(-1)


def eval_transform(size: int | tuple[int, int] | None = None, resize: int | None = None,
                   crop: str = "center") -> Transform | None:
    """The evaluation-time geometry as a v2 transform (moves boxes and masks too).

    ``resize`` resizes the short side first (ImageNet's Resize(256)); ``size``
    is then reached by a centre crop (``crop="center"``) or by resizing to exactly
    ``size`` (``crop="none"``). Returns None when there is nothing to do. Boxes a
    crop leaves empty are dropped by :class:`ImageDataset` after the transform.
    """
    steps: list[Any] = []
    if resize is not None:
        steps.append(v2.Resize(resize, antialias=True))
    if size is not None:
        if crop == "center":
            steps.append(v2.CenterCrop(size))
        elif crop == "none":
            steps.append(v2.Resize(size if isinstance(size, tuple) else (size, size), antialias=True))
        else:
            raise ValueError(f"crop must be 'center' or 'none', not {crop!r}")
    return v2.Compose(steps) if steps else None


def collate_samples(samples: Sequence[Sample]) -> dict[str, Any]:
    """Batch samples: images ``B x 3 x H x W``, labels and indices ``B``; boxes as a
    list of ``N_i x 4`` tensors; masks ``B x H x W`` when every sample has one."""
    batch: dict[str, Any] = {
        "image": torch.stack([s["image"].as_subclass(torch.Tensor) for s in samples]),
        "label": torch.as_tensor([int(s["label"]) for s in samples], dtype=torch.long),
        "index": torch.as_tensor([int(s["index"]) for s in samples], dtype=torch.long),
    }
    if all("boxes" in s for s in samples):
        batch["boxes"] = [s["boxes"].as_subclass(torch.Tensor) for s in samples]
    if all("mask" in s for s in samples):
        batch["mask"] = torch.stack([s["mask"].as_subclass(torch.Tensor) for s in samples])
    return batch
