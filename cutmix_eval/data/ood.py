"""Out-of-distribution sets: the ODIN image folders, generated noise, any folder of images.

Every OOD sample has label ``-1`` (its class means nothing) and the single split
``test``. ``image_size`` (default 32, the CIFAR size) is the side of the square
images returned:

* ODIN "crop" sets (TinyImageNet crop, LSUN crop) are centre-cropped to it (the
  files may be 36 x 36); "resize" sets (TinyImageNet resize, LSUN resize, iSUN)
  are resized to it, which leaves 32 x 32 files untouched at the default size.
* ``uniform`` / ``gaussian`` noise is generated at that size: U[0, 1] and
  N(0.5, 1) clipped to [0, 1], ``3 x S x S`` float32 in pixel space. Sample ``i``
  is drawn from a generator seeded with ``(seed, i)``, so it is the same whatever
  order or subset of the set is read.
* ``images`` reads every image under a folder (recursively), resized to it
  (``fit="resize"``, the default), short-side resized then centre-cropped
  (``fit="center_crop"``) or centre-cropped only (``fit="crop"``).

Sets given as folders are named by :func:`folder_set_names`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cutmix_eval.data.base import ImageDataset, Sample, Transform, eval_transform, find_layout, list_images, \
    read_image
from cutmix_eval.data.registry import register_dataset
from cutmix_eval.errors import UserError

OOD_LABEL = -1


class ImageFilesOOD(ImageDataset):
    """Image files read as an OOD set (label -1); ``folder`` is the folder they were listed from."""

    def __init__(self, name: str, folder: Path, files: list[Path], transform: Transform | None):
        super().__init__("test", transform)
        self.name = name
        self.folder = folder
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def source_files(self) -> list[Path]:
        return self.files

    def load(self, index: int) -> Sample:
        return {"image": read_image(self.files[index]), "label": OOD_LABEL}


def square_geometry(image_size: int, fit: str) -> Transform:
    """Square ``image_size`` images. ``fit="resize"`` resizes to ``image_size x image_size``
    (a no-op for images already that size); ``"center_crop"`` resizes the short side to
    ``image_size`` then centre-crops; ``"crop"`` centre-crops without resizing."""
    if fit == "resize":
        return eval_transform(size=(image_size, image_size), crop="none")
    if fit in ("center_crop", "crop"):
        return eval_transform(size=image_size, resize=image_size if fit == "center_crop" else None)
    raise UserError(f"fit must be 'resize', 'center_crop' or 'crop', not {fit!r}")


#: name -> (files as ODIN's release lays them out, geometry, what the set is)
_ODIN = {
    "tinyimagenet-crop": ("Imagenet/test/*.jpg", "crop", "TinyImageNet test images, random crops (10,000)"),
    "tinyimagenet-resize": ("Imagenet_resize/Imagenet_resize/*.jpg", "resize",
                            "TinyImageNet, downsampled (10,000)"),
    "lsun-crop": ("LSUN/test/*.jpg", "crop", "LSUN test scenes, random crops (10,000)"),
    "lsun-resize": ("LSUN_resize/LSUN_resize/*.jpg", "resize", "LSUN test scenes, downsampled (10,000)"),
    "isun": ("iSUN/iSUN_patches/*.jpeg", "resize", "iSUN scene patches, downsampled (8,925)"),
}


def _odin_layout(name: str) -> str:
    return f"{_ODIN[name][0]} under <root> or <root>/odin"


def locate_odin(name: str, root: Path) -> Path:
    """The folder holding the set's images."""
    folder = str(Path(_ODIN[name][0]).parent)
    return find_layout(root, [folder, f"odin/{folder}"], [], name, _odin_layout(name))


def odin_dataset(name: str, split: str, root: Path, *, transform: Any = "default",
                 image_size: int = 32) -> ImageFilesOOD:
    """One ODIN OOD folder, every image in it in sorted order."""
    fit = _ODIN[name][1]
    folder = locate_odin(name, root)
    return ImageFilesOOD(name, folder, list_images(folder, name),
                         square_geometry(image_size, fit) if transform == "default" else transform)


for _name, (_, _fit, _what) in _ODIN.items():
    _how = "centre-cropped to" if _fit == "crop" else "resized (when their size differs) to"
    register_dataset(_name, description=f"ODIN OOD set: {_what}; images {_how} image_size (default 32)",
                     layout=_odin_layout(_name), splits=("test",), kind="ood",
                     locate=partial(locate_odin, _name))(partial(odin_dataset, _name))

_IMAGES_LAYOUT = "<root>/**/<image> (any folder of images; the root is the folder itself)"


def locate_images(root: Path) -> Path:
    """The folder itself, if it is one."""
    return find_layout(root, [""], [], "images", _IMAGES_LAYOUT)


@register_dataset("images", description="any folder of images (recursive) as an OOD set; resized to "
                  "image_size (default 32); fit='center_crop': short-side resize + centre crop; "
                  "fit='crop': centre crop only",
                  layout=_IMAGES_LAYOUT, splits=("test",), kind="ood", locate=locate_images, root_is_folder=True)
def images_dataset(split: str, root: Path, *, transform: Any = "default", image_size: int = 32,
                   fit: str = "resize") -> ImageFilesOOD:
    """Every image under ``root``, sorted by path."""
    folder = locate_images(root)
    return ImageFilesOOD("images", folder, list_images(folder, "images"),
                         square_geometry(image_size, fit) if transform == "default" else transform)


def folder_set_names(folders: Sequence[Path], taken: Collection[str] = ()) -> list[str]:
    """Names of the OOD sets read from ``folders`` (absolute, resolved, all different).

    Each folder is named by its shortest path suffix that no other folder ends with and
    whose name is not in ``taken`` (the other sets' names and the records' own key
    prefixes), the suffix's folder names joined by ``-``: ``/data/LSUN/test`` and
    ``/data/Imagenet/test`` become ``LSUN-test`` and ``Imagenet-test``, and a folder alone
    keeps its base name. ``/`` is never part of a name: records key a set's metrics
    ``{set}/{metric}``. Two names that still coincide (possible only through folder names
    that contain ``-``) are a :class:`UserError`.
    """
    parts = [folder.parts for folder in folders]
    names = []
    for i, own in enumerate(parts):
        others = parts[:i] + parts[i + 1:]
        for k in range(1, len(own) + 1):
            name = "-".join(part for part in own[-k:] if part != folders[i].anchor)
            if name and name not in taken and all(other[-k:] != own[-k:] for other in others):
                break
        names.append(name)
    clashes = {name for name in names if names.count(name) > 1 or name in taken}
    if clashes:
        given = [str(f) for f, n in zip(folders, names) if n in clashes]
        raise UserError(f"the OOD folders {', '.join(given)} cannot be told apart by their names "
                        f"({', '.join(sorted(clashes))}); rename or move one of them")
    return names


def uniform_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """U[0, 1)."""
    return rng.random(shape, dtype=np.float32)


def gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """N(0.5, 1) clipped to [0, 1]."""
    return np.clip(rng.normal(0.5, 1.0, shape), 0.0, 1.0).astype(np.float32)


class NoiseOOD(ImageDataset):
    """``num_samples`` noise images of ``3 x image_size x image_size``; sample ``i`` is
    ``draw(np.random.default_rng([seed, i]), shape)``."""

    def __init__(self, name: str, draw: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray],
                 image_size: int, num_samples: int, seed: int, transform: Transform | None):
        super().__init__("test", transform)
        self.name, self.draw = name, draw
        self.shape = (3, image_size, image_size)
        self.num_samples, self.seed = num_samples, seed

    def __len__(self) -> int:
        return self.num_samples

    @property
    def identity(self) -> dict[str, Any]:
        return {"generated": self.name, "shape": list(self.shape), "num_samples": self.num_samples, "seed": self.seed}

    def load(self, index: int) -> Sample:
        rng = np.random.default_rng([self.seed, index])
        return {"image": torch.from_numpy(self.draw(rng, self.shape)), "label": OOD_LABEL}


def noise_dataset(name: str, draw: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray],
                  split: str, root: Path, *, transform: Any = "default", image_size: int = 32,
                  num_samples: int = 10000, seed: int = 0) -> NoiseOOD:
    """Generated noise; ``root`` is not used. The default transform is none."""
    return NoiseOOD(name, draw, image_size, num_samples, seed, None if transform == "default" else transform)


for _name, _draw, _what in (("uniform", uniform_noise, "U[0, 1]"),
                            ("gaussian", gaussian_noise, "N(0.5, 1) clipped to [0, 1]")):
    register_dataset(_name, description=f"{_what} noise images, 3 x image_size x image_size (default 32), "
                     f"num_samples (default 10,000), each seeded from (seed, index)", layout="built in",
                     splits=("test",), kind="ood")(partial(noise_dataset, _name, _draw))
