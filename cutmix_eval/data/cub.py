"""CUB-200-2011 in its original layout, and the wsolevaluation metadata format.

Both give boxes in XYXY pixel coordinates of the stored image (CUB: ``x, y,
x + w, y + h``; wsolevaluation: ``x0, y0, x1, y1`` as listed) and both default
to wsolevaluation's geometry, Resize((224, 224)), which the boxes follow.
``image_size=S`` makes it Resize((S, S)).

wsolevaluation's OpenImages30k split carries masks instead of boxes:
``localization.txt`` rows ``path,mask_path,ignore_path`` (one row per instance
mask; the ignore path is given once per image, may be empty), paths relative to
the dataset folder. The sample ``mask`` is 1 where any instance mask is > 0, 255
where the ignore mask is > 0 and no instance is (the ignore region minus the
foreground, as wsolevaluation defines it), 0 elsewhere.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from cutmix_eval.data.base import (ImageDataset, Sample, Transform, eval_transform, find_layout,
                                   make_boxes, read_image)
from cutmix_eval.data.registry import register_dataset
from cutmix_eval.errors import UserError


def wsol_geometry(image_size: int = 224) -> Transform:
    """Resize to exactly ``image_size x image_size`` (no crop), as wsolevaluation does."""
    return eval_transform(size=(image_size, image_size), crop="none")


def read_rows(path: Path, sep: str | None, width: int) -> list[list[str]]:
    """The non-empty lines of a text table, split on ``sep`` (None: whitespace), each
    checked to have at least ``width`` fields."""
    rows = [[field.strip() for field in line.split(sep)] for line in path.read_text().splitlines() if line.strip()]
    for number, row in enumerate(rows, 1):
        if len(row) < width:
            raise UserError(f"{path}, line {number}: expected {width} fields, found {len(row)}")
    return rows


class AnnotatedImages(ImageDataset):
    """A list of image files with a label each and optionally boxes or masks.

    ``boxes[i]`` is an ``N x 4`` XYXY list on the stored image; ``masks[i]`` is
    ``(instance mask paths, ignore path or None)``.
    """

    def __init__(self, name: str, split: str, files: list[Path], labels: list[int],
                 classes: tuple[str, ...], transform: Transform | None,
                 boxes: list[list[list[float]]] | None = None,
                 masks: list[tuple[list[Path], Path | None]] | None = None, annotations: Sequence[Path] = ()):
        super().__init__(split, transform)
        self.name, self.files, self.labels, self.classes = name, files, labels, classes
        self.boxes, self.masks, self.annotations = boxes, masks, list(annotations)
        self.has_boxes, self.has_masks = boxes is not None, masks is not None

    def __len__(self) -> int:
        return len(self.files)

    def source_files(self) -> list[Path]:
        """The images, the annotation files (labels, splits, boxes) and the mask files."""
        masks = [path for instances, ignore in self.masks or () for path in [*instances, *([ignore] if ignore else [])]]
        return [*self.files, *self.annotations, *masks]

    def load(self, index: int) -> Sample:
        image = read_image(self.files[index])
        height, width = image.shape[-2:]
        sample: Sample = {"image": image, "label": self.labels[index]}
        if self.boxes is not None:
            sample["boxes"] = make_boxes(self.boxes[index], height, width)
        if self.masks is not None:
            sample["mask"] = build_mask(*self.masks[index], height, width)
        return sample


def _read_mask(path: Path, height: int, width: int) -> np.ndarray:
    """A mask file as a boolean ``height x width`` array (any channel > 0), resized by
    nearest neighbour if its size differs from the image's."""
    image = read_image(path).amax(0).numpy()
    if image.shape != (height, width):
        image = np.asarray(Image.fromarray(image).resize((width, height), Image.NEAREST))
    return image > 0


def build_mask(instances: list[Path], ignore: Path | None, height: int, width: int) -> tv_tensors.Mask:
    """uint8 ``height x width`` mask: 1 = any instance, 255 = ignore region outside them, 0 = rest."""
    foreground = np.zeros((height, width), dtype=bool)
    for path in instances:
        foreground |= _read_mask(path, height, width)
    mask = foreground.astype(np.uint8)
    if ignore is not None:
        mask[_read_mask(ignore, height, width) & ~foreground] = 255
    return tv_tensors.Mask(torch.from_numpy(mask))


_CUB_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt",
              "classes.txt", "images")
_CUB_LAYOUT = ("CUB_200_2011/{images.txt,image_class_labels.txt,train_test_split.txt,bounding_boxes.txt,"
               "classes.txt,images/<class>/<file>.jpg} under <root> or <root>/cub")


def locate_cub(root: Path) -> Path:
    """The ``CUB_200_2011`` folder."""
    return find_layout(root, ["CUB_200_2011", "cub/CUB_200_2011"], _CUB_FILES, "cub", _CUB_LAYOUT)


@register_dataset("cub", description="CUB-200-2011 birds (200 classes; 5,994 train / 5,794 test), one box "
                  "per image; default geometry Resize((224, 224))", layout=_CUB_LAYOUT,
                  splits=("train", "test"), locate=locate_cub)
def cub_dataset(split: str, root: Path, *, transform: Any = "default", image_size: int = 224) -> AnnotatedImages:
    """CUB ``split`` (train_test_split.txt: 1 = train); label = class id - 1; box = x, y, x + w, y + h."""
    folder = locate_cub(root)
    table = {name: {row[0]: row[1:] for row in read_rows(folder / name, None, width)}
             for name, width in (("images.txt", 2), ("image_class_labels.txt", 2), ("bounding_boxes.txt", 5))}
    wanted = "1" if split == "train" else "0"
    ids = [row[0] for row in read_rows(folder / "train_test_split.txt", None, 2) if row[1] == wanted]
    try:
        files = [folder / "images" / table["images.txt"][i][0] for i in ids]
        labels = [int(table["image_class_labels.txt"][i][0]) - 1 for i in ids]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in
                 ([float(v) for v in table["bounding_boxes.txt"][i][:4]] for i in ids)]
        ordered = sorted(read_rows(folder / "classes.txt", None, 2), key=lambda row: int(row[0]))
    except KeyError as err:
        raise UserError(f"cub: image id {err} of train_test_split.txt is missing from another file in {folder}") \
            from err
    except ValueError as err:
        raise UserError(f"cub: a number in the text files of {folder} is malformed ({err})") from err
    classes = tuple(row[1] for row in ordered)
    return AnnotatedImages("cub", split, files, labels, classes,
                           wsol_geometry(image_size) if transform == "default" else transform, boxes=boxes,
                           annotations=[folder / name for name in _CUB_FILES if name != "images"])


#: registry name -> (wsolevaluation dataset folder, number of classes, "boxes" or "masks")
_WSOL = {"cub-wsol": ("CUB", 200, "boxes"), "imagenet-wsol": ("ILSVRC", 1000, "boxes"),
         "openimages-wsol": ("OpenImages", 100, "masks")}
_WSOL_FILES = ("image_ids.txt", "class_labels.txt", "localization.txt")


def _wsol_layout(folder: str) -> str:
    return (f"wsolevaluation/metadata/{folder}/<train|val|test>/{{{','.join(_WSOL_FILES)},image_sizes.txt}} "
            f"with images in wsolevaluation/dataset/{folder}/<path> (or metadata/ and dataset/ directly "
            f"under <root>)")


def locate_wsol(name: str, root: Path, split: str = "test") -> Path:
    """The folder holding ``metadata/`` and ``dataset/`` (``<root>/wsolevaluation`` or ``<root>``)."""
    folder = _WSOL[name][0]
    required = [f"metadata/{folder}/{split}/{file}" for file in _WSOL_FILES] + [f"dataset/{folder}"]
    return find_layout(root, ["wsolevaluation", ""], required, name, _wsol_layout(folder))


def read_wsol_metadata(metadata: Path, images: Path, ground_truth: str) -> tuple[list[str], dict[str, int],
                                                                                dict[str, list]]:
    """``(image paths, label of each path, {"boxes" or "masks": one entry per image})`` of one split."""
    paths = [row[0] for row in read_rows(metadata / "image_ids.txt", ",", 1)]
    label_of = {path: int(label) for path, label, *_ in read_rows(metadata / "class_labels.txt", ",", 2)}
    if ground_truth == "boxes":
        boxes = defaultdict(list)
        for path, *coords in read_rows(metadata / "localization.txt", ",", 5):
            boxes[path].append([float(v) for v in coords[:4]])
        return paths, label_of, {"boxes": [boxes[p] for p in paths]}
    instances, ignores = defaultdict(list), {}
    for path, mask, ignore, *_ in read_rows(metadata / "localization.txt", ",", 3):
        instances[path].append(images / mask)
        if ignore:
            ignores.setdefault(path, images / ignore)
    return paths, label_of, {"masks": [(instances[p], ignores.get(p)) for p in paths]}


def wsol_dataset(name: str, split: str, root: Path, *, transform: Any = "default",
                 image_size: int = 224) -> AnnotatedImages:
    """A wsolevaluation split: images in ``image_ids.txt`` order, labels from
    ``class_labels.txt``, boxes (``path,x0,y0,x1,y1``, one row per box) or masks
    (``path,mask_path,ignore_path``) from ``localization.txt``."""
    folder, num_classes, ground_truth = _WSOL[name]
    base = locate_wsol(name, root, split)
    metadata, images = base / "metadata" / folder / split, base / "dataset" / folder
    try:
        paths, label_of, annotations = read_wsol_metadata(metadata, images, ground_truth)
    except ValueError as err:
        raise UserError(f"{name}: a label or coordinate in {metadata} is not a number ({err})") from err
    unlabelled = next((p for p in paths if not 0 <= label_of.get(p, -1) < num_classes), None)
    if unlabelled is not None:
        raise UserError(f"{metadata / 'class_labels.txt'}: no label in 0..{num_classes - 1} for {unlabelled}")
    return AnnotatedImages(name, split, [images / p for p in paths], [label_of[p] for p in paths],
                           tuple(str(c) for c in range(num_classes)),
                           wsol_geometry(image_size) if transform == "default" else transform,
                           annotations=[metadata / file for file in _WSOL_FILES], **annotations)


for _name, (_folder, _classes, _truth) in _WSOL.items():
    register_dataset(_name, description=f"wsolevaluation {_folder} split ({_classes} classes named by their "
                     f"label numbers), {_truth} from localization.txt; default geometry Resize((224, 224))",
                     layout=_wsol_layout(_folder), splits=("train", "val", "test"),
                     locate=partial(locate_wsol, _name))(partial(wsol_dataset, _name))
