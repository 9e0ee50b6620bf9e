"""Natural distribution shift test sets, read as their authors release them.

**CIFAR-10.1** (``cifar10.1-v4``, ``cifar10.1-v6``; alias ``cifar10.1`` = v6, the version its
authors recommend): ``cifar10.1_<v>_data.npy`` (uint8 ``N x 32 x 32 x 3``) and
``cifar10.1_<v>_labels.npy`` (``N`` integers 0-9, int32 in the release), as in the ``datasets/``
folder of github.com/modestyachts/CIFAR-10.1; N = 2,021 (v4), 2,000 (v6).

**CIFAR-10.2** (``cifar10.2``, splits test and train): ``cifar102_<split>.npz`` of
github.com/modestyachts/cifar-10.2 with the arrays ``images`` (uint8 ``N x 32 x 32 x 3``) and
``labels`` (``N`` integers 0-9); N = 2,000 (test), 10,000 (train). The other arrays in the file
(``label_names``, ``ti_indices``, ``keywords``) are not read. Both CIFAR sets are labelled in
CIFAR-10's class order; class names come from ``cifar-10-batches-py/batches.meta`` when CIFAR-10
is under the same root, else ``"0"``..``"9"``. No default transform (32 x 32, like ``cifar10``).

**ImageNetV2** (``imagenetv2-matched-frequency``, alias ``imagenetv2``;
``imagenetv2-threshold0.7``; ``imagenetv2-top-images``): the folder each released tar file
extracts to, ``imagenetv2-<variant>-format-val/<class>/<hash>.jpeg``, 10,000 images, 10 per
class. The class folders are the ImageNet-1k class indices written as decimal integers
(``0``..``999``), read as integers: folder ``10`` is class 10 (torchvision's ``ImageFolder``
would sort it before ``2`` and mislabel it). Samples are in class-index order.

**ImageNet-A** and **ImageNet-R** (``imagenet-a``, ``imagenet-r``): ``imagenet-a/<wnid>/*.jpg``
(7,500 images) and ``imagenet-r/<wnid>/*.jpg`` (30,000 images), 200 wnids each. Labels are in
the set's own 200-class space: the index of the wnid among the set's sorted wnids
(:func:`subset_wnids`, shipped as ``imagenet_a_wnids.txt`` / ``imagenet_r_wnids.txt``, the
lists of the authors' evaluation code). ``class_mask`` (also :func:`subset_mask`) is the int64
array of the 200 ImageNet-1k indices of those wnids, ascending, so class ``k`` of the set is
class ``class_mask[k]`` of a 1000-way model, and ``logits[:, dataset.class_mask]`` (NumPy or
torch) are the model's logits for the set's classes in label order, as the authors evaluate.

**ImageNet-Sketch** (``imagenet-sketch``): ``sketch/<wnid>/*.JPEG`` as the authors' archive
extracts, 1000 wnids; labels are the 1000-class indices, as for ``imagenet``.

**A class-mapped folder** (``classmap-folder``): the root is an ImageFolder tree of the user's
own shift set whose classes are the model's; ``class_map`` (default ``<root>/class_map.json``,
else ``<root>/class_map.txt``) maps each class folder to the model's class index: a JSON object
``{"<folder>": <index>, ...}`` or text lines ``<folder> <index>``. ``num_classes`` (default 1000)
is the model's class count. Every class folder must be in the map; the map may name folders
that are not there (a partial copy). Samples are by class index, then folder name.

ImageNet-style sets default to Resize(256) + CenterCrop(224) (:func:`imagenet_geometry`;
``image_size=S`` scales it) and use the single split ``test``. A class folder that is not
what the set's release holds (not an integer 0-999 for ImageNetV2, not one of the set's wnids
for A, R and Sketch, missing from a class map) is a one-line error naming it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from cutmix_eval.data.base import Transform, find_layout
from cutmix_eval.data.cifar import ArrayDataset, cifar_class_names
from cutmix_eval.data.imagefolder import (ImageFolderDataset, LabelledImages, class_folders, imagenet_geometry,
                                          labelled_folders)
from cutmix_eval.data.imagenet import imagenet_wnids
from cutmix_eval.data.registry import register_dataset
from cutmix_eval.errors import DatasetNotFoundError, UserError

CIFAR_SHAPE = (32, 32, 3)


def _geometry(transform: Any, image_size: int) -> Transform | None:
    return imagenet_geometry(image_size) if transform == "default" else transform


# -------------------------------------------------------------------------------- CIFAR-10.1 / 10.2

def cifar10_arrays(images: np.ndarray, labels: np.ndarray, images_from: str, labels_from: str
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Check released CIFAR-10-style arrays (uint8 ``N x 32 x 32 x 3`` images, ``N`` integer labels
    0-9) and return them as ``N x 3 x 32 x 32`` uint8 and int64; a one-line UserError naming the
    file otherwise (a count mismatch included)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != CIFAR_SHAPE or not len(images):
        raise UserError(f"{images_from}: array of shape {images.shape} and dtype {images.dtype}; expected "
                        f"N x 32 x 32 x 3 uint8 (N > 0) as released")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{labels_from}: array of shape {labels.shape} and dtype {labels.dtype}; expected one "
                        f"integer label per image")
    if len(labels) != len(images):
        raise UserError(f"{labels_from} holds {len(labels)} labels but {images_from} {len(images)} images; "
                        f"expected one label per image (replace them with the released pair)")
    if labels.min() < 0 or labels.max() > 9:
        raise UserError(f"{labels_from}: labels range over {labels.min()}..{labels.max()}; expected CIFAR-10 "
                        f"class indices 0..9")
    return images.transpose(0, 3, 1, 2), labels.astype(np.int64)


def _load_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise UserError(f"cannot read {path} as a .npy array ({err}); replace it with the released file") from err


CIFAR101_VERSIONS = {"v4": 2021, "v6": 2000}
_CIFAR101_FOLDERS = ["cifar10.1", "CIFAR-10.1/datasets", ""]


def _cifar101_files(version: str) -> list[str]:
    return [f"cifar10.1_{version}_data.npy", f"cifar10.1_{version}_labels.npy"]


def _cifar101_layout(version: str) -> str:
    data, labels = _cifar101_files(version)
    return (f"{data} (uint8 N x 32 x 32 x 3) and {labels} (N int labels) in <root>/cifar10.1/, "
            f"<root>/CIFAR-10.1/datasets/ (a clone of the authors' repository) or <root>")


def locate_cifar101(version: str, root: Path) -> Path:
    """The folder holding both files of CIFAR-10.1 ``version``."""
    return find_layout(root, _CIFAR101_FOLDERS, _cifar101_files(version), f"cifar10.1-{version}",
                       _cifar101_layout(version))


def cifar101_dataset(version: str, split: str, root: Path, *, transform: Any = "default") -> ArrayDataset:
    """CIFAR-10.1 ``version`` (``v4`` or ``v6``), read into memory."""
    folder = locate_cifar101(version, root)
    data, labels = (folder / name for name in _cifar101_files(version))
    images, targets = cifar10_arrays(_load_array(data), _load_array(labels), str(data), str(labels))
    return ArrayDataset(f"cifar10.1-{version}", split, images, targets, cifar_class_names("cifar10", root, 10),
                        None if transform == "default" else transform, sources=[data, labels])


for _version, _count in CIFAR101_VERSIONS.items():
    register_dataset(f"cifar10.1-{_version}", description=f"CIFAR-10.1 {_version}: {_count:,} new CIFAR-10 test "
                     f"images{' (the version its authors recommend)' if _version == 'v6' else ''}, 32 x 32, "
                     f"CIFAR-10 labels", layout=_cifar101_layout(_version), splits=("test",),
                     locate=partial(locate_cifar101, _version),
                     aliases=("cifar10.1",) if _version == "v6" else ())(partial(cifar101_dataset, _version))

_CIFAR102_LAYOUT = ("cifar102_test.npz (and cifar102_train.npz for the train split) with arrays images (uint8 "
                    "N x 32 x 32 x 3) and labels (N ints), in <root>/cifar10.2/, <root>/cifar-10.2/ (a clone of the "
                    "authors' repository) or <root>")


def locate_cifar102(root: Path, split: str = "test") -> Path:
    """The folder holding ``cifar102_<split>.npz``."""
    return find_layout(root, ["cifar10.2", "cifar-10.2", ""], [f"cifar102_{split}.npz"], "cifar10.2",
                       _CIFAR102_LAYOUT)


@register_dataset("cifar10.2", description="CIFAR-10.2: new CIFAR-10 images, 2,000 test / 10,000 train, 32 x 32, "
                  "CIFAR-10 labels", layout=_CIFAR102_LAYOUT, splits=("test", "train"), locate=locate_cifar102)
def cifar102_dataset(split: str, root: Path, *, transform: Any = "default") -> ArrayDataset:
    """``cifar102_<split>.npz``'s ``images`` and ``labels``, read into memory."""
    path = locate_cifar102(root, split) / f"cifar102_{split}.npz"
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [key for key in ("images", "labels") if key not in arrays.files]
            if missing:
                raise UserError(f"{path} has no {' or '.join(missing)} array (it has {', '.join(arrays.files)}); "
                                f"expected the released file with arrays images and labels")
            images, labels = arrays["images"], arrays["labels"]
    except (ValueError, OSError) as err:
        raise UserError(f"cannot read {path} as a .npz file ({err}); replace it with the released file") from err
    images, labels = cifar10_arrays(images, labels, f"{path} 'images'", f"{path} 'labels'")
    return ArrayDataset("cifar10.2", split, images, labels, cifar_class_names("cifar10", root, 10),
                        None if transform == "default" else transform, sources=[path])


# ------------------------------------------------------------------------------------------ ImageNetV2

#: variant -> the folder its tar file extracts to
IMAGENETV2 = {"matched-frequency": "imagenetv2-matched-frequency-format-val",
              "threshold0.7": "imagenetv2-threshold0.7-format-val",
              "top-images": "imagenetv2-top-images-format-val"}


def _imagenetv2_layout(variant: str) -> str:
    return (f"{IMAGENETV2[variant]}/<class index 0-999>/<hash>.jpeg (as imagenetv2-{variant}.tar.gz extracts) "
            f"under <root> or <root>/imagenetv2")


def locate_imagenetv2(variant: str, root: Path) -> Path:
    """The variant's ``...-format-val`` folder."""
    folder = IMAGENETV2[variant]
    return find_layout(root, [folder, f"imagenetv2/{folder}"], [], f"imagenetv2-{variant}",
                       _imagenetv2_layout(variant))


def class_index_label(name: str, folder: Path, dataset: str) -> int:
    """The class index an ImageNetV2 class folder ``name`` writes in decimal (``"10"`` -> 10)."""
    if re.fullmatch(r"0|[1-9][0-9]{0,2}", name) is None:
        raise UserError(f"{dataset}: class folder {folder / name} is not a class index 0-999; ImageNetV2's class "
                        f"folders are the ImageNet-1k class indices written as integers (0, 1, ..., 999)")
    return int(name)


class ImageNetV2Dataset(LabelledImages):
    """One ImageNetV2 variant: labels are the integer class folders, classes the 1000 wnids."""

    def __init__(self, name: str, folder: Path, transform: Transform | None):
        super().__init__("test", transform)
        self.name, self.folder = name, folder
        self.classes = imagenet_wnids()
        self.samples = labelled_folders(folder, name, {f: class_index_label(f, folder, name)
                                                       for f in class_folders(folder, name)})


def imagenetv2_dataset(variant: str, split: str, root: Path, *, transform: Any = "default",
                       image_size: int = 224) -> ImageNetV2Dataset:
    """ImageNetV2 ``variant``."""
    return ImageNetV2Dataset(f"imagenetv2-{variant}", locate_imagenetv2(variant, root),
                             _geometry(transform, image_size))


for _variant in IMAGENETV2:
    register_dataset(f"imagenetv2-{_variant}", description=f"ImageNetV2 {_variant}: 10,000 new ImageNet test "
                     "images (10 per class), 1000-class labels from the integer class folders; default geometry "
                     "Resize(256) + CenterCrop(224)", layout=_imagenetv2_layout(_variant), splits=("test",),
                     locate=partial(locate_imagenetv2, _variant),
                     aliases=("imagenetv2",) if _variant == "matched-frequency" else ())(
        partial(imagenetv2_dataset, _variant))


# ---------------------------------------------------------------------------- ImageNet-A, -R, -Sketch

#: the 200-class sets: name -> (title, folder, image count, wnid file)
SUBSETS = {"imagenet-a": ("ImageNet-A", "imagenet-a", 7500, "imagenet_a_wnids.txt"),
           "imagenet-r": ("ImageNet-R", "imagenet-r", 30000, "imagenet_r_wnids.txt")}


@functools.cache
def subset_wnids(name: str) -> tuple[str, ...]:
    """The 200 wnids of ``imagenet-a`` or ``imagenet-r``, sorted: the set's class order."""
    # imagenet_a_wnids.txt: the ImageNet-1k wnids of the indices that thousand_k_to_200 maps to a class in eval.py of
    # github.com/hendrycks/natural-adv-examples (commit 07770705); imagenet_r_wnids.txt: imagenet_r_wnids of eval.py
    # of github.com/hendrycks/imagenet-r (commit 3131cace), sorted. Both equal timm's _info/imagenet_{a,r}_synsets.txt.
    return tuple(Path(__file__).with_name(SUBSETS[name][3]).read_text().split())


def subset_mask(name: str) -> np.ndarray:
    """The ImageNet-1k class indices of :func:`subset_wnids` (200 int64, ascending): column ``k`` of
    ``logits[:, subset_mask(name)]`` is the set's class ``k``."""
    index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
    return np.array([index[wnid] for wnid in subset_wnids(name)], dtype=np.int64)


def wnid_classes(dataset: str, known: Callable[[], tuple[str, ...]], what: str
                 ) -> Callable[[tuple[str, ...]], tuple[str, ...]]:
    """An ImageFolder label space: the classes ``known()`` whatever subset of them is on disk; a
    class folder outside them is a one-line error (``what`` names them in it)."""

    def label_space(folders: tuple[str, ...]) -> tuple[str, ...]:
        classes = known()
        allowed = set(classes)
        foreign = [f for f in folders if f not in allowed]
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise UserError(f"{dataset}: {len(foreign)} class folder(s) are not {what} ({shown}); expected the "
                            f"released {dataset} class folders")
        return classes

    return label_space


class ImageNetSubsetDataset(ImageFolderDataset):
    """ImageNet-A or -R: labels in the set's 200-class space; ``class_mask`` maps them to ImageNet-1k."""

    def __init__(self, name: str, folder: Path, transform: Transform | None):
        super().__init__(name, "test", folder, transform,
                         wnid_classes(name, partial(subset_wnids, name), f"among {SUBSETS[name][0]}'s 200 wnids"))
        self.class_mask = subset_mask(name)


def _subset_layout(name: str) -> str:
    return f"{SUBSETS[name][1]}/<wnid>/*.jpg (200 wnid folders, as {SUBSETS[name][1]}.tar extracts) under <root>"


def locate_subset(name: str, root: Path) -> Path:
    """The set's wnid-folder tree."""
    return find_layout(root, [SUBSETS[name][1]], [], name, _subset_layout(name))


def subset_dataset(name: str, split: str, root: Path, *, transform: Any = "default",
                   image_size: int = 224) -> ImageNetSubsetDataset:
    """ImageNet-A or ImageNet-R."""
    return ImageNetSubsetDataset(name, locate_subset(name, root), _geometry(transform, image_size))


for _name, (_title, _, _count, _) in SUBSETS.items():
    register_dataset(_name, description=f"{_title}: {_count:,} images of 200 ImageNet classes; labels 0-199 in the "
                     f"set's sorted wnids, class_mask = their ImageNet-1k indices (logits[:, class_mask]); default "
                     f"geometry Resize(256) + CenterCrop(224)", layout=_subset_layout(_name), splits=("test",),
                     locate=partial(locate_subset, _name))(partial(subset_dataset, _name))

_SKETCH_LAYOUT = ("sketch/<wnid>/*.JPEG (as the authors' ImageNet-Sketch archive extracts) under <root> or "
                  "<root>/imagenet-sketch")


def locate_sketch(root: Path) -> Path:
    """The ``sketch/`` wnid-folder tree."""
    return find_layout(root, ["sketch", "imagenet-sketch/sketch"], [], "imagenet-sketch", _SKETCH_LAYOUT)


@register_dataset("imagenet-sketch", description="ImageNet-Sketch: about 50,000 sketches, 50 per ImageNet class; "
                  "1000-class labels; default geometry Resize(256) + CenterCrop(224)", layout=_SKETCH_LAYOUT,
                  splits=("test",), locate=locate_sketch)
def sketch_dataset(split: str, root: Path, *, transform: Any = "default",
                   image_size: int = 224) -> ImageFolderDataset:
    """ImageNet-Sketch, labelled with the 1000-class indices of its wnid folders."""
    return ImageFolderDataset("imagenet-sketch", "test", locate_sketch(root), _geometry(transform, image_size),
                              wnid_classes("imagenet-sketch", imagenet_wnids, "ImageNet-1k wnids"))


# ---------------------------------------------------------------------------------- class-mapped folder

CLASS_MAP_FILES = ("class_map.json", "class_map.txt")
_CLASSMAP_LAYOUT = ("<root>/<class folder>/**/<image> plus a class map, <root>/class_map.json ({\"<folder>\": "
                    "<model class index>, ...}) or <root>/class_map.txt (lines '<folder> <index>'); the root is the "
                    "tree itself")


def read_class_map(path: Path) -> dict[str, int]:
    """``folder -> class index`` from a JSON object (``.json``) or ``<folder> <index>`` lines; a
    malformed file is a one-line UserError naming it (and the line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read class map {path} ({err})") from None
    if path.suffix == ".json":
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"class map {path} is not JSON ({err})") from None
        if not isinstance(entries, dict):
            raise UserError(f"class map {path} holds a JSON {type(entries).__name__}; expected an object "
                            f"{{\"<folder>\": <class index>, ...}}")
        pairs = list(entries.items())
    else:
        pairs = []
        for number, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or re.fullmatch(r"-?[0-9]+", fields[1]) is None:
                raise UserError(f"{path}:{number}: expected '<folder> <class index>', got {line.strip()[:80]!r}")
            if any(fields[0] == folder for folder, _ in pairs):
                raise UserError(f"{path}:{number}: folder {fields[0]!r} is mapped twice")
            pairs.append((fields[0], int(fields[1])))
    for folder, index in pairs:
        if isinstance(index, bool) or not isinstance(index, int):
            raise UserError(f"class map {path}: {folder!r} maps to {index!r}, not an integer class index")
    return dict(pairs)


class ClassMapFolder(LabelledImages):
    """An ImageFolder tree labelled by a class map with the model's class indices (``classes`` are
    their numbers, ``"0"``..)."""

    def __init__(self, name: str, split: str, folder: Path, class_map: Path, num_classes: int,
                 transform: Transform | None):
        super().__init__(split, transform)
        self.name, self.folder, self.class_map = name, folder, class_map
        self.classes = tuple(str(i) for i in range(num_classes))
        mapping = read_class_map(class_map)
        outside = {f: i for f, i in mapping.items() if not 0 <= i < num_classes}
        if outside:
            folder_name, index = next(iter(outside.items()))
            raise UserError(f"class map {class_map}: {folder_name!r} maps to {index}, outside the model's classes "
                            f"0..{num_classes - 1} (num_classes={num_classes})")
        folders = class_folders(folder, name)
        unmapped = [f for f in folders if f not in mapping]
        if unmapped:
            shown = ", ".join(unmapped[:3]) + (", ..." if len(unmapped) > 3 else "")
            raise UserError(f"{name}: class folder(s) {shown} of {folder} are not in the class map {class_map}; "
                            f"map every class folder to the model's class index")
        self.samples = labelled_folders(folder, name, {f: mapping[f] for f in folders})

    def source_files(self) -> list[Path]:
        return [self.class_map, *super().source_files()]


def locate_classmap(root: Path) -> Path:
    """The tree itself, if it is a folder."""
    return find_layout(root, [""], [], "classmap-folder", _CLASSMAP_LAYOUT)


@register_dataset("classmap-folder", description="your own shift set: an ImageFolder tree whose class folders a "
                  "class map (class_map.json or .txt) maps to the model's class indices; num_classes (default "
                  "1000); default geometry Resize(256) + CenterCrop(224)", layout=_CLASSMAP_LAYOUT,
                  splits=("test", "train", "val"), locate=locate_classmap, root_is_folder=True)
def classmap_dataset(split: str, root: Path, *, class_map: str | Path | None = None, num_classes: int = 1000,
                     transform: Any = "default", image_size: int = 224) -> ClassMapFolder:
    """The tree at ``root`` labelled by ``class_map`` (default: the first of ``CLASS_MAP_FILES`` in it)."""
    folder = locate_classmap(root)
    if class_map is None:
        found = [folder / name for name in CLASS_MAP_FILES if (folder / name).is_file()]
        if not found:
            raise DatasetNotFoundError(f"classmap-folder: no class map in {folder} (looked for "
                                       f"{', '.join(CLASS_MAP_FILES)}); expected {_CLASSMAP_LAYOUT}, or pass "
                                       f"class_map=PATH")
        class_map = found[0]
    class_map = Path(class_map).expanduser()
    if not class_map.is_file():
        raise DatasetNotFoundError(f"classmap-folder: class map {class_map} not found; expected {_CLASSMAP_LAYOUT}")
    return ClassMapFolder("classmap-folder", split, folder, class_map, num_classes, _geometry(transform, image_size))
