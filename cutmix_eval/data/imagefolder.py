"""Class-folder trees: any torchvision ``ImageFolder`` tree, and the ImageNet validation set.

Classes are the sorted sub-folder names and samples are listed in torchvision's
``ImageFolder`` order (class by class; within a class, folders as a sorted
``os.walk`` visits them, files sorted), so labels and sample indices match
torchvision's; ImageNet labels are the indices of the sorted wnids. The default geometry is ImageNet's
evaluation one, Resize(256) + CenterCrop(224); ``image_size=S`` makes it
Resize(round(S * 256 / 224)) + CenterCrop(S).

ImageNet boxes come from PASCAL-VOC XML files, one per image named
``<image stem>.xml`` (``<size><width>/<height>``, then ``<object><name>wnid</name>
<bndbox><xmin>..<ymax>``); the objects of the image's own class are kept. If the
image on disk is not the size the XML states (a resized copy), boxes are scaled
to the image. Boxes follow the transform like the image does.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from cutmix_eval.data.base import (IMAGE_EXTENSIONS, ImageDataset, Sample, Transform, eval_transform,
                                   find_layout, make_boxes, read_image)
from cutmix_eval.data.registry import register_dataset
from cutmix_eval.errors import DatasetNotFoundError, UserError


def imagenet_geometry(image_size: int = 224) -> Transform:
    """Resize the short side to ``round(image_size * 256 / 224)``, centre-crop ``image_size``."""
    return eval_transform(size=image_size, resize=round(image_size * 256 / 224))


class ImageFolderDataset(ImageDataset):
    """Images in ``<folder>/<class>/**/<image>``; label = index of the class in sorted order."""

    def __init__(self, name: str, split: str, folder: Path, transform: Transform | None):
        super().__init__(split, transform)
        self.name = name
        self.folder = folder
        self.classes = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()))
        if not self.classes:
            raise DatasetNotFoundError(f"{name}: no class sub-folders in {folder}; expected <class>/<image> files")
        self.samples = [(path, label) for label, cls in enumerate(self.classes)
                        for path in class_images(folder / cls, name)]

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def source_files(self) -> list[Path]:
        return [path for path, _ in self.samples]

    def load(self, index: int) -> Sample:
        path, label = self.samples[index]
        return {"image": read_image(path), "label": label}


def class_images(folder: Path, dataset: str) -> list[Path]:
    """The image files under one class folder, in torchvision's order; an error if none."""
    files = [Path(parent) / file for parent, _, files in sorted(os.walk(folder, followlinks=True))
             for file in sorted(files) if file.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        raise DatasetNotFoundError(f"{dataset}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in class folder "
                                   f"{folder}")
    return files


_IMAGEFOLDER_LAYOUT = "<root>/<class>/**/<image> (a torchvision ImageFolder tree; the root is the tree itself)"


def locate_imagefolder(root: Path) -> Path:
    """The tree itself, if it is a folder."""
    return find_layout(root, [""], [], "imagefolder", _IMAGEFOLDER_LAYOUT)


@register_dataset("imagefolder", description="any ImageFolder tree (classes = sorted sub-folders); "
                  "default geometry Resize(256) + CenterCrop(224)", layout=_IMAGEFOLDER_LAYOUT,
                  splits=("test", "train", "val"), locate=locate_imagefolder, root_is_folder=True)
def imagefolder_dataset(split: str, root: Path, *, transform: Any = "default",
                        image_size: int = 224) -> ImageFolderDataset:
    """The ImageFolder tree at ``root`` (``split`` is only a label here)."""
    return ImageFolderDataset("imagefolder", split, locate_imagefolder(root),
                              imagenet_geometry(image_size) if transform == "default" else transform)


class ImageNetDataset(ImageFolderDataset):
    """ImageNet images in ``<base>/<split>/<wnid>/``; validation images carry XML boxes
    when annotations exist.

    Annotations are looked for in the flat folders ``<base>/bbox_val/`` and
    ``<base>/Annotations/CLS-LOC/val/``, then beside the images (decided on the first
    image); with none, samples have no boxes and ``has_boxes`` is False. The train
    split is read without boxes.
    """

    def __init__(self, base: Path, split: str, transform: Transform | None):
        if not (base / split).is_dir():
            raise DatasetNotFoundError(f"imagenet: no {split}/ folder in {base}; expected {_IMAGENET_LAYOUT}")
        super().__init__("imagenet", split, base / split, transform)
        flat = (base / "bbox_val", base / "Annotations" / "CLS-LOC" / "val")
        self.xml_folder = next((f for f in flat if f.is_dir()), None)  # None: beside the images
        self.has_boxes = split == "val" and (self.xml_folder is not None
                                              or self.xml_path(self.samples[0][0]).exists())

    def source_files(self) -> list[Path]:
        images = super().source_files()
        return images + [self.xml_path(path) for path in images] if self.has_boxes else images

    def xml_path(self, image: Path) -> Path:
        return (self.xml_folder or image.parent) / f"{image.stem}.xml"

    def load(self, index: int) -> Sample:
        sample = super().load(index)
        if self.has_boxes:
            height, width = sample["image"].shape[-2:]
            boxes = read_voc_boxes(self.xml_path(self.samples[index][0]), self.classes[sample["label"]],
                                   height, width)
            sample["boxes"] = make_boxes(boxes, height, width)
        return sample


def read_voc_boxes(path: Path, wnid: str, height: int, width: int) -> list[list[float]]:
    """The ``xmin, ymin, xmax, ymax`` boxes of the ``wnid`` objects in a PASCAL-VOC XML file,
    scaled from the XML's ``<size>`` to a ``height x width`` image."""
    try:
        tree = ET.parse(path).getroot()
        size = tree.find("size")
        scale_x = width / float(size.findtext("width")) if size is not None else 1.0
        scale_y = height / float(size.findtext("height")) if size is not None else 1.0
        return [[float(obj.findtext(f"bndbox/{k}")) * s
                 for k, s in (("xmin", scale_x), ("ymin", scale_y), ("xmax", scale_x), ("ymax", scale_y))]
                for obj in tree.iter("object") if obj.findtext("name") == wnid]
    except FileNotFoundError as err:
        raise DatasetNotFoundError(f"imagenet: missing box annotation {path}") from err
    except (ET.ParseError, TypeError, ValueError, ZeroDivisionError) as err:
        raise UserError(f"cannot read box annotation {path} ({err}); expected PASCAL-VOC XML with "
                        f"<size> and <object><name><bndbox><xmin>..<ymax>") from err


_IMAGENET_LAYOUT = ("imagenet/val/<wnid>/*.JPEG and, for training, imagenet/train/<wnid>/*.JPEG (or under "
                    "ILSVRC2012/, or directly under <root>); "
                    "boxes optional: <stem>.xml in imagenet/bbox_val/, imagenet/Annotations/CLS-LOC/val/ "
                    "or beside each image")


def locate_imagenet(root: Path) -> Path:
    """The ImageNet folder, the one holding ``val/``."""
    return find_layout(root, ["imagenet", "ILSVRC2012", ""], ["val"], "imagenet", _IMAGENET_LAYOUT)


@register_dataset("imagenet", description="ImageNet-1k (val: 50,000 images, 1,000 wnid classes), val boxes "
                  "from PASCAL-VOC XML when present; default geometry Resize(256) + CenterCrop(224)",
                  layout=_IMAGENET_LAYOUT, splits=("train", "val"), locate=locate_imagenet)
def imagenet_dataset(split: str, root: Path, *, transform: Any = "default",
                     image_size: int = 224) -> ImageNetDataset:
    """ImageNet ``val`` (with boxes) or ``train``."""
    return ImageNetDataset(locate_imagenet(root), split,
                           imagenet_geometry(image_size) if transform == "default" else transform)
