"""ImageNet-1k, read in the layouts it is distributed in and labelled with the 1000-class indices.

**Labels** are the index of the image's wnid among the 1000 ImageNet-1k wnids sorted
(:func:`imagenet_wnids`: n01440764 = 0 ... n15075141 = 999), the class order of torchvision's
and timm's ImageNet models, whichever wnids are on disk: a subset or a partial copy keeps the
1000-class labels and ``num_classes`` 1000, and ``present_classes`` says which classes are
there. A tree none of whose wnids is an ImageNet-1k wnid (ImageNet-21k classes, say) is
labelled by the index among its own sorted wnids, like any ImageFolder tree; a tree mixing
both is refused (:func:`imagenet_classes`).

**Layouts** of a split folder ``<base>/<split>/``, where ``<base>`` is the first of
``<root>/imagenet``, ``<root>/ILSVRC2012``, Kaggle's ``<root>/imagenet/ILSVRC/Data/CLS-LOC`` and
``<root>/ILSVRC/Data/CLS-LOC``, and ``<root>`` itself that holds ``val/``:

- wnid folders, ``<split>/<wnid>/**/*.JPEG`` (train as extracted, val once sorted into
  folders): samples in torchvision's ``ImageFolder`` order;
- flat, ``val/ILSVRC2012_val_*.JPEG`` as ``ILSVRC2012_img_val.tar`` extracts: samples in file
  name order, each labelled by its annotation (an image without one is an error naming it).

**Annotations** of ``val`` (the first source found) give the boxes of the image's own class
(and the labels of the flat layout); the train split is read without boxes:

- PASCAL-VOC XML files, ``<image stem>.xml`` (``<size><width>/<height>``, then
  ``<object><name>wnid</name><bndbox><xmin>..<ymax>``), in ``<base>/bbox_val/``,
  ``<base>/Annotations/CLS-LOC/val/``, Kaggle's ``ILSVRC/Annotations/CLS-LOC/val/``, or beside
  each image (decided on the first image). If the image on disk is not the size the XML
  states (a resized copy), boxes are scaled to the image.
- Kaggle's ``LOC_val_solution.csv`` (header ``ImageId,PredictionString``; rows
  ``<stem>,<wnid> <xmin> <ymin> <xmax> <ymax> [<wnid> ...]``) in ``<base>/`` or at the top of
  Kaggle's tree; boxes as written (the file states no image size).

Boxes follow the transform like the image does.
"""

from __future__ import annotations

import csv
import functools
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from cutmix_eval.data.base import IMAGE_EXTENSIONS, Sample, Transform, find_layout, make_boxes
from cutmix_eval.data.imagefolder import LabelledImages, folder_samples, imagenet_geometry
from cutmix_eval.data.registry import register_dataset
from cutmix_eval.errors import DatasetNotFoundError, UserError

WNIDS_FILE = Path(__file__).with_name("imagenet_wnids.txt")
#: an annotation's objects: ``(wnid, [xmin, ymin, xmax, ymax])``
Objects = list[tuple[str, list[float]]]
_BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")


@functools.cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in class-index order (sorted: n01440764 first, n15075141 last)."""
    # imagenet_wnids.txt is the first column of LOC_synset_mapping.txt of the ImageNet Object
    # Localization Challenge files, as stored in github.com/JasmineLi-805/res18 (commit 531a11e2);
    # the same 1000 lines as timm 1.0.31's timm/data/_info/imagenet_synsets.txt.
    return tuple(WNIDS_FILE.read_text().split())


def imagenet_classes(wnids: tuple[str, ...]) -> tuple[str, ...]:
    """The classes, in label order, of a tree whose sorted class folders are ``wnids``: the 1000
    ImageNet-1k wnids when every folder is one of them, the folders themselves when none is;
    a mix is a one-line error (its labels would be neither)."""
    known = set(imagenet_wnids())
    foreign = [wnid for wnid in wnids if wnid not in known]
    if not foreign:
        return imagenet_wnids()
    if len(foreign) == len(wnids):
        return wnids
    shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
    raise UserError(f"{len(foreign)} of the {len(wnids)} class folders are not ImageNet-1k wnids ({shown}) while "
                    f"the others are; remove them to get the 1000-class labels, or read the tree with "
                    f"--data imagefolder (labels = index among the folders)")


# ------------------------------------------------------------------------------------- annotations

class ValAnnotations:
    """A source of val annotations: subclasses give ``where`` (for messages) and ``objects``."""

    where: str

    def objects(self, image: Path) -> tuple[Objects, tuple[float, float] | None]:
        """The objects annotated on ``image`` and the ``(width, height)`` they were annotated
        at (None: the image's own size)."""
        raise NotImplementedError  # pragma: no cover - every subclass defines it

    def files(self, images: list[Path]) -> list[Path]:
        """The annotation files read for ``images`` (part of the dataset's identity)."""
        raise NotImplementedError  # pragma: no cover - every subclass defines it

    def wnid(self, image: Path) -> str:
        """The class of ``image``: the one wnid its objects name (ImageNet's val annotations
        name only the image's class)."""
        names = sorted({name for name, _ in self.objects(image)[0]})
        if len(names) != 1:
            found = f"several classes ({', '.join(names)})" if names else "no object"
            raise UserError(f"imagenet: the annotation of {image} ({self.where}) names {found}; expected the "
                            f"image's one class, as in the released ILSVRC2012 val annotations")
        return names[0]

    def boxes(self, image: Path, wnid: str, height: int, width: int) -> list[list[float]]:
        """The ``xmin, ymin, xmax, ymax`` boxes of the ``wnid`` objects on ``image``, scaled
        from the annotated size to the ``height x width`` image on disk."""
        objects, size = self.objects(image)
        scale_x, scale_y = (width / size[0], height / size[1]) if size else (1.0, 1.0)
        return [[x0 * scale_x, y0 * scale_y, x1 * scale_x, y1 * scale_y]
                for name, (x0, y0, x1, y1) in objects if name == wnid]


class VocAnnotations(ValAnnotations):
    """One PASCAL-VOC XML file per image, ``<folder>/<image stem>.xml``, or beside the image
    when ``folder`` is None."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.where = f"XML files in {folder}" if folder else "XML files beside the images"

    def path(self, image: Path) -> Path:
        return (self.folder or image.parent) / f"{image.stem}.xml"

    def objects(self, image: Path) -> tuple[Objects, tuple[float, float] | None]:
        return read_voc(self.path(image), image)

    def files(self, images: list[Path]) -> list[Path]:
        return [self.path(image) for image in images]


def read_voc(path: Path, image: Path) -> tuple[Objects, tuple[float, float] | None]:
    """The objects of a PASCAL-VOC XML file and its ``<size>`` (None if it has none)."""
    try:
        tree = ET.parse(path).getroot()
        size_node = tree.find("size")
        size = None if size_node is None else (float(size_node.findtext("width")),
                                               float(size_node.findtext("height")))
        if size is not None and min(size) <= 0:
            raise ValueError(f"size {size[0]:g} x {size[1]:g}")
        return [(obj.findtext("name"), [float(obj.findtext(f"bndbox/{k}")) for k in _BOX_KEYS])
                for obj in tree.iter("object")], size
    except FileNotFoundError as err:
        raise DatasetNotFoundError(f"imagenet: no annotation for {image}: missing box annotation {path}") from err
    except (ET.ParseError, TypeError, ValueError) as err:
        raise UserError(f"cannot read box annotation {path} ({err}); expected PASCAL-VOC XML with "
                        f"<size> and <object><name><bndbox><xmin>..<ymax>") from err


class SolutionCsv(ValAnnotations):
    """Kaggle's ``LOC_val_solution.csv``, read whole when the dataset is built."""

    def __init__(self, path: Path):
        self.path = path
        self.where = str(path)
        self.rows = read_solution_csv(path)

    def objects(self, image: Path) -> tuple[Objects, tuple[float, float] | None]:
        if image.stem not in self.rows:
            raise DatasetNotFoundError(f"imagenet: no annotation for {image}: {self.path} has no row "
                                       f"{image.stem}")
        return self.rows[image.stem], None

    def files(self, images: list[Path]) -> list[Path]:
        return [self.path]


def read_solution_csv(path: Path) -> dict[str, Objects]:
    """``ImageId -> objects`` of a ``LOC_val_solution.csv`` file; malformed lines are one-line errors."""
    expected = ("rows <ImageId>,<wnid> <xmin> <ymin> <xmax> <ymax> [<wnid> ...] under the header "
                "ImageId,PredictionString")
    with open(path, newline="") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header != ["ImageId", "PredictionString"]:
            raise UserError(f"{path}: header {','.join(header or [])!r}; expected {expected}")
        rows = {}
        for line, row in enumerate(reader, start=2):
            try:
                stem, text = row
                fields = text.split()
                if not fields or len(fields) % 5:
                    raise ValueError(f"{len(fields)} fields, not groups of 5")
                rows[stem] = [(fields[i], [float(v) for v in fields[i + 1:i + 5]]) for i in range(0, len(fields), 5)]
            except ValueError as err:
                raise UserError(f"{path}, line {line}: cannot read {','.join(row)!r} ({err}); expected {expected}") \
                    from err
    return rows


def annotation_places(base: Path) -> tuple[list[Path], list[Path]]:
    """The XML folders and the solution files that may hold the val annotations of the ImageNet
    folder ``base``, in the order they are tried."""
    folders = [base / "bbox_val", base / "Annotations" / "CLS-LOC" / "val"]
    files = [base / "LOC_val_solution.csv"]
    if base.parts[-3:] == ("ILSVRC", "Data", "CLS-LOC"):  # Kaggle's tree
        top = base.parents[2]
        folders.append(top / "ILSVRC" / "Annotations" / "CLS-LOC" / "val")
        files.append(top / "LOC_val_solution.csv")
    return folders, files


def val_annotations(base: Path, first_image: Path) -> ValAnnotations | None:
    """The first annotation source found for the val images of ``base``: an XML folder, XML
    files beside the images (``first_image`` has one), a solution file; None if there is none."""
    folders, files = annotation_places(base)
    folder = next((f for f in folders if f.is_dir()), None)
    if folder is not None or first_image.with_suffix(".xml").is_file():
        return VocAnnotations(folder)
    file = next((f for f in files if f.is_file()), None)
    return SolutionCsv(file) if file else None


# ------------------------------------------------------------------------------------------ dataset

class ImageNetDataset(LabelledImages):
    """ImageNet images in ``<base>/<split>/``, as wnid folders or (val) flat; labels are the
    1000-class indices (see the module docstring). ``layout`` is ``"wnid folders"`` or
    ``"flat"``; ``annotations`` the val annotation source (None: no boxes)."""

    name = "imagenet"

    def __init__(self, base: Path, split: str, transform: Transform | None):
        super().__init__(split, transform)
        self.folder = base / split
        if not self.folder.is_dir():
            raise DatasetNotFoundError(f"imagenet: no {split}/ folder in {base}; expected {_IMAGENET_LAYOUT}")
        if any(p.is_dir() for p in self.folder.iterdir()):
            self.layout = "wnid folders"
            self.classes, self.samples = folder_samples(self.folder, self.name, imagenet_classes)
            self.annotations = val_annotations(base, self.samples[0][0]) if split == "val" else None
        else:
            self.layout = "flat"
            images = flat_images(self.folder, split)
            self.annotations = val_annotations(base, images[0])
            if self.annotations is None:
                raise DatasetNotFoundError(
                    f"imagenet: {self.folder} holds the val images flat but no annotation gives their classes; "
                    f"expected the ILSVRC2012 val XML files in {base / 'bbox_val'}, "
                    f"{base / 'Annotations' / 'CLS-LOC' / 'val'} or beside the images, or "
                    f"{base / 'LOC_val_solution.csv'} (or sort the images into val/<wnid>/ folders)")
            self.classes, self.samples = annotated_samples(images, self.annotations)
        self.has_boxes = self.annotations is not None

    def source_files(self) -> list[Path]:
        images = super().source_files()
        return images + (self.annotations.files(images) if self.annotations is not None else [])

    @property
    def present_classes(self) -> tuple[str, ...]:
        """The classes that have images here, in label order."""
        return tuple(self.classes[label] for label in sorted(set(self.labels)))

    def describe(self) -> str:
        """One line: the split, its images and classes, the layout and where labels and boxes come from."""
        if self.classes == imagenet_wnids():
            classes = f"{len(self.present_classes)} of the 1000 ImageNet-1k classes"
        else:
            classes = f"{self.num_classes} classes that are not ImageNet-1k wnids (labels = index among them)"
        source = f"labels and boxes from {self.annotations.where}" if self.layout == "flat" else \
            f"boxes from {self.annotations.where}" if self.annotations else "no boxes"
        return f"{self.split}: {len(self)} images of {classes}, {self.layout}, {source}"

    def load(self, index: int) -> Sample:
        sample = super().load(index)
        if self.annotations is not None:
            height, width = sample["image"].shape[-2:]
            boxes = self.annotations.boxes(self.samples[index][0], self.classes[sample["label"]], height, width)
            sample["boxes"] = make_boxes(boxes, height, width)
        return sample


def flat_images(folder: Path, split: str) -> list[Path]:
    """The image files directly in the val ``folder``, sorted by name; an error if there are
    none or ``split`` is not val (only val is distributed flat)."""
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not images:
        raise DatasetNotFoundError(f"imagenet: neither wnid folders nor images in {folder}; expected "
                                   f"{_IMAGENET_LAYOUT}")
    if split != "val":
        raise DatasetNotFoundError(f"imagenet: no wnid folders in {folder} (only val is read flat); expected "
                                   f"{_IMAGENET_LAYOUT}")
    return images


def annotated_samples(images: list[Path], annotations: ValAnnotations
                      ) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """The classes and ``(path, label)`` samples of flat val ``images``, each labelled by the
    wnid its annotation names."""
    wnids = [annotations.wnid(image) for image in images]
    classes = imagenet_classes(tuple(sorted(set(wnids))))
    index = {wnid: label for label, wnid in enumerate(classes)}
    return classes, [(image, index[wnid]) for image, wnid in zip(images, wnids)]


_IMAGENET_LAYOUT = ("imagenet/val/<wnid>/*.JPEG, or the flat imagenet/val/ILSVRC2012_val_*.JPEG with their "
                    "annotations, and for training imagenet/train/<wnid>/*.JPEG (or under ILSVRC2012/, Kaggle's "
                    "ILSVRC/Data/CLS-LOC/, or directly under <root>); val annotations (boxes; the labels of a "
                    "flat val/): <stem>.xml in imagenet/bbox_val/, imagenet/Annotations/CLS-LOC/val/ or beside "
                    "each image, or LOC_val_solution.csv")


def locate_imagenet(root: Path) -> Path:
    """The ImageNet folder, the one holding ``val/``."""
    return find_layout(root, ["imagenet", "ILSVRC2012", "imagenet/ILSVRC/Data/CLS-LOC", "ILSVRC/Data/CLS-LOC", ""],
                       ["val"], "imagenet", _IMAGENET_LAYOUT)


def describe_imagenet(root: Path) -> str:
    """Where ImageNet is under ``root`` and what its val split holds, reading it as
    :class:`ImageNetDataset` does (so whatever would not load raises); train/ is only noted."""
    base = locate_imagenet(root)
    train = "; train/ beside it" if (base / "train").is_dir() else ""
    return f"{base} ({ImageNetDataset(base, 'val', None).describe()}{train})"


@register_dataset("imagenet", description="ImageNet-1k (val: 50,000 images, 1,000 wnid classes; subsets keep the "
                  "1000-class labels), val boxes from PASCAL-VOC XML or LOC_val_solution.csv when present; "
                  "default geometry Resize(256) + CenterCrop(224)",
                  layout=_IMAGENET_LAYOUT, splits=("train", "val"), locate=locate_imagenet,
                  describe=describe_imagenet)
def imagenet_dataset(split: str, root: Path, *, transform: Any = "default",
                     image_size: int = 224) -> ImageNetDataset:
    """ImageNet ``val`` (with boxes when annotated) or ``train``."""
    return ImageNetDataset(locate_imagenet(root), split,
                           imagenet_geometry(image_size) if transform == "default" else transform)
