"""Class-folder trees: any torchvision ``ImageFolder`` tree (ImageNet's are in
:mod:`cutmix_eval.data.imagenet`).

Classes are the sorted sub-folder names and samples are listed in torchvision's
``ImageFolder`` order (class by class; within a class, folders as a sorted
``os.walk`` visits them, files sorted), so labels and sample indices match
torchvision's. The default geometry is ImageNet's evaluation one, Resize(256) +
CenterCrop(224); ``image_size=S`` makes it Resize(round(S * 256 / 224)) + CenterCrop(S).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cutmix_eval.data.base import (IMAGE_EXTENSIONS, ImageDataset, Sample, Transform, eval_transform,
                                   find_layout, read_image)
from cutmix_eval.data.registry import register_dataset
from cutmix_eval.errors import DatasetNotFoundError

#: the classes, in label order, of a tree whose sorted class folders are given
LabelSpace = Callable[[tuple[str, ...]], tuple[str, ...]]


def imagenet_geometry(image_size: int = 224) -> Transform:
    """Resize the short side to ``round(image_size * 256 / 224)``, centre-crop ``image_size``."""
    return eval_transform(size=image_size, resize=round(image_size * 256 / 224))


class LabelledImages(ImageDataset):
    """A list of ``(image path, label)`` samples: subclasses set ``name``, ``classes`` and ``samples``."""

    samples: list[tuple[Path, int]]

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


class ImageFolderDataset(LabelledImages):
    """Images in ``<folder>/<class>/**/<image>``; label = index of the class in ``label_space(folders)``,
    by default the sorted class folders themselves."""

    def __init__(self, name: str, split: str, folder: Path, transform: Transform | None,
                 label_space: LabelSpace | None = None):
        super().__init__(split, transform)
        self.name = name
        self.folder = folder
        self.classes, self.samples = folder_samples(folder, name, label_space)


def folder_samples(folder: Path, dataset: str, label_space: LabelSpace | None = None
                   ) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """The classes (``label_space(sorted class folders)``, by default those folders) and the
    ``(path, label)`` samples of the tree at ``folder``, in torchvision's ``ImageFolder`` order;
    an error if it has no class folders or one of them holds no image."""
    folders = class_folders(folder, dataset)
    classes = label_space(folders) if label_space else folders
    index = {cls: label for label, cls in enumerate(classes)}
    return classes, labelled_folders(folder, dataset, {cls: index[cls] for cls in folders})


def class_folders(folder: Path, dataset: str) -> tuple[str, ...]:
    """The names of the sub-folders of ``folder``, sorted; an error if there are none."""
    folders = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()))
    if not folders:
        raise DatasetNotFoundError(f"{dataset}: no class sub-folders in {folder}; expected <class>/<image> files")
    return folders


def labelled_folders(folder: Path, dataset: str, labels: dict[str, int]) -> list[tuple[Path, int]]:
    """The ``(path, label)`` samples of the class folders ``labels`` maps to their labels, by
    label, then folder name, then as torchvision lists a folder's files (a tree whose labels
    grow with the sorted folder names is therefore in ``ImageFolder`` order); an error if a
    class folder holds no image."""
    return [(path, labels[name]) for name in sorted(labels, key=lambda name: (labels[name], name))
            for path in class_images(folder / name, dataset)]


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
