"""OpenOOD v1.5's benchmarks: its image lists read as our datasets.

**Layout.** OpenOOD's ``scripts/download/download.py`` puts, in the folder given as
its ``--save_dir`` (``./data`` by default), ``benchmark_imglist/<benchmark>/<list>.txt``
and the images under ``images_classic/<dataset>/...`` (CIFAR-10/100, TinyImageNet,
MNIST, SVHN, Textures, Places365, CIFAR-10-C...) and ``images_largescale/<dataset>/...``
(ImageNet-1K, SSB-hard, NINCO, iNaturalist, OpenImage-O, ImageNet-V2/-C/-R/-ES).
That folder is looked for at ``<data root>`` and at ``<data root>/openood``; each
list is read relative to the images folder OpenOOD's ``DATA_INFO`` names for it
(all ``images_classic/`` for CIFAR; ``images_largescale/`` for the ImageNet
benchmarks except Textures, which lives in ``images_classic/``).

**Lists.** One sample a line: ``<path relative to the images folder> <extra>``,
split at the first run of whitespace. ``<extra>`` is an integer label, or a Python
dict literal (OpenOOD's extra-data form, e.g. ``{'label': 3}``) read with
:func:`ast.literal_eval` only, so nothing in a list is ever executed; its ``label``
key gives the label (OpenOOD's current ``ImglistDataset`` sets label 0 for dict
lines whatever the dict says; we use the dict's own ``label``). Blank lines are
skipped. A malformed line, an absolute path, an image that is not there, or (in an
in-distribution list) a label outside ``0..num_classes-1`` or missing is a one-line
:class:`~cutmix_eval.errors.UserError` naming the list and line number. Every line
is checked when the dataset is built.

**Samples** follow :mod:`cutmix_eval.data.base`: OOD lists give label ``-1``; ID and
covariate-shifted ID (csid) lists give their labels; class names are the label
numbers (``"0"`` ...), as the lists carry none. The default geometry is OpenOOD's
test preprocessor (``evaluation_api/preprocessor.py``) without its normalization
(our models normalize inside; OpenOOD's constants are in :data:`NORMALIZATION`):
CIFAR benchmarks Resize(32) (short side, bilinear) + CenterCrop(32); ImageNet-200
and ImageNet-1K Resize(256) + CenterCrop(224); ImageNet-C csid lists, already
224 x 224, get none, as in OpenOOD. ``image_size=S`` scales it: Resize(S) +
CenterCrop(S) for CIFAR, Resize(round(S * 256 / 224)) + CenterCrop(S) for ImageNet.
Resizing is torchvision's antialiased bilinear on tensors, which matches PIL's
within rounding.

**Names.** Every list is a registered dataset, named without ``/`` (a set's name
prefixes its metric keys, ``{set}/{metric}``, and the ``ood`` command takes a
name holding ``/`` for a folder):

* ``openood-<benchmark>``: the ID list, splits ``test``, ``val``, ``train``;
* ``openood-<benchmark>-val-<set>``: the OOD validation list (``val_<set>.txt``);
* ``openood-<benchmark>-near-<set>`` and ``openood-<benchmark>-far-<set>``: the test
  OOD sets, kind ``ood``;
* ``openood-<benchmark>-csid-<set>``: covariate-shifted ID sets (labelled, split
  ``test``) for full-spectrum evaluation.

``<benchmark>`` is ``cifar10``, ``cifar100``, ``imagenet200`` or ``imagenet``;
``<set>`` is OpenOOD's name with ``_`` as ``-`` (``tin``, ``ssb-hard``,
``openimage-o``). So ``cutmix-eval ood --in openood-cifar10 --out
openood-cifar10-near-cifar100 openood-cifar10-near-tin`` is OpenOOD's near-OOD
split; :func:`openood_set_names` lists a group's names. :func:`openood_benchmark`
builds a whole benchmark at once as a :class:`Benchmark`.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from cutmix_eval.data.base import Transform, eval_transform, resolve_data_root
from cutmix_eval.data.imagefolder import LabelledImages
from cutmix_eval.data.registry import register_dataset
from cutmix_eval.errors import DatasetNotFoundError, UserError

OOD_LABEL = -1
CLASSIC, LARGESCALE = "images_classic", "images_largescale"
#: where the OpenOOD folder (holding benchmark_imglist/, images_*/) is looked for, under the data root
FOLDER_CANDIDATES = ("", "openood")
#: OpenOOD's test-time normalization (mean, std) per benchmark; we return pixel space, models normalize
NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "imagenet200": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
#: longest dict literal read from a list line (a real one is a few dozen characters)
MAX_EXTRA_CHARS = 4096
GROUPS = ("val", "near", "far", "csid")


@dataclass(frozen=True)
class ListEntry:
    """One image list of a benchmark: ``imglist`` and ``images`` relative to the OpenOOD folder."""

    imglist: str
    images: str
    #: "benchmark" (the benchmark's test geometry) or "none" (files already at the model size)
    geometry: str = "benchmark"


@dataclass(frozen=True)
class BenchmarkInfo:
    """What OpenOOD v1.5's ``DATA_INFO`` says about one benchmark."""

    name: str
    num_classes: int
    geometry: str  # "cifar" or "imagenet"
    id: dict[str, ListEntry]  # split -> list
    #: group ("val", "near", "far", "csid") -> {OpenOOD set name: list}
    groups: dict[str, dict[str, ListEntry]]

    @property
    def default_size(self) -> int:
        return 32 if self.geometry == "cifar" else 224


def _entry(benchmark: str, stem: str, images: str, geometry: str = "benchmark") -> ListEntry:
    return ListEntry(f"benchmark_imglist/{benchmark}/{stem}.txt", f"{images}/", geometry)


def _cifar(name: str, other: str, csid: dict[str, ListEntry]) -> BenchmarkInfo:
    def entry(stem: str) -> ListEntry:
        return _entry(name, stem, CLASSIC)

    return BenchmarkInfo(
        name, 10 if name == "cifar10" else 100, "cifar",
        {split: entry(f"{split}_{name}") for split in ("test", "val", "train")},
        {"val": {"tin": entry("val_tin")},
         "near": {other: entry(f"test_{other}"), "tin": entry("test_tin")},
         "far": {s: entry(f"test_{s}") for s in ("mnist", "svhn", "texture", "places365")},
         "csid": csid})


def _imagenet(name: str, csid: Sequence[tuple[str, str]]) -> BenchmarkInfo:
    def entry(stem: str, images: str = LARGESCALE, geometry: str = "benchmark") -> ListEntry:
        return _entry(name, stem, images, geometry)

    return BenchmarkInfo(
        name, 200 if name == "imagenet200" else 1000, "imagenet",
        {split: entry(f"{split}_{name}") for split in ("test", "val", "train")},
        {"val": {"openimage_o": entry("val_openimage_o")},
         "near": {"ssb_hard": entry("test_ssb_hard"), "ninco": entry("test_ninco")},
         "far": {"inaturalist": entry("test_inaturalist"), "textures": entry("test_textures", CLASSIC),
                 "openimage_o": entry("test_openimage_o")},
         "csid": {s: entry(stem, geometry="none" if s == "imagenet_c" else "benchmark") for s, stem in csid}})


#: OpenOOD v1.5 (``openood/evaluation_api/datasets.py``, DATA_INFO)
BENCHMARKS: dict[str, BenchmarkInfo] = {
    "cifar10": _cifar("cifar10", "cifar100", {"cifar10c": _entry("cifar10", "test_cifar10c", CLASSIC)}),
    "cifar100": _cifar("cifar100", "cifar10", {}),
    "imagenet200": _imagenet("imagenet200", [("imagenet_v2", "test_imagenet200_v2"),
                                             ("imagenet_c", "test_imagenet200_c"),
                                             ("imagenet_r", "test_imagenet200_r")]),
    "imagenet": _imagenet("imagenet", [("imagenet_v2", "test_imagenet_v2"), ("imagenet_c", "test_imagenet_c"),
                                       ("imagenet_r", "test_imagenet_r"), ("imagenet_es", "test_imagenet_es")]),
}


def benchmark_info(name: str) -> BenchmarkInfo:
    """The benchmark ``name`` (``cifar10``, ``cifar100``, ``imagenet200``, ``imagenet``)."""
    info = BENCHMARKS.get(name.lower().removeprefix("openood-"))
    if info is None:
        raise UserError(f"unknown OpenOOD benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    return info


def dataset_name(benchmark: str, group: str | None = None, set_name: str | None = None) -> str:
    """The registry name of a benchmark's ID list (no ``group``) or of one of its sets."""
    if group is None:
        return f"openood-{benchmark}"
    return f"openood-{benchmark}-{group}-{set_name.replace('_', '-')}"


def openood_set_names(benchmark: str, group: str) -> list[str]:
    """The registry names of a benchmark's sets in ``group`` (val, near, far, csid), in OpenOOD's order."""
    info = benchmark_info(benchmark)
    if group not in GROUPS:
        raise UserError(f"unknown OpenOOD group {group!r}; choose from {', '.join(GROUPS)}")
    return [dataset_name(info.name, group, s) for s in info.groups[group]]


# ------------------------------------------------------------------------------------------ locating

def _layout_hint() -> str:
    return ("OpenOOD's scripts/download/download.py --save_dir DIR puts benchmark_imglist/, images_classic/ "
            "and images_largescale/ in DIR: point --data-root (or $CUTMIX_EVAL_DATA) at DIR, or at the folder "
            "holding it as openood/")


def locate_openood(root: Path, required: Sequence[str], what: str) -> Path:
    """The first of ``<root>``, ``<root>/openood`` holding every ``required`` path; else a one-line
    :class:`DatasetNotFoundError` saying, for each place looked, what it lacks."""
    looked = []
    for candidate in FOLDER_CANDIDATES:
        folder = root / candidate if candidate else root
        if not folder.is_dir():
            looked.append(f"{folder} (no such folder)")
            continue
        missing = [item for item in required if not (folder / item).exists()]
        if not missing:
            return folder
        if not (folder / "benchmark_imglist").is_dir():
            missing = ["benchmark_imglist/", *dict.fromkeys(m for m in missing if m.startswith("images_"))]
        looked.append(f"{folder} (lacks {', '.join(missing)})")
    raise DatasetNotFoundError(f"{what}: not found; looked in {'; '.join(looked)}. {_layout_hint()}")


def _entry_required(entry: ListEntry) -> list[str]:
    return [entry.imglist, entry.images]


# ------------------------------------------------------------------------------------------ reading

def _line_error(imglist: Path, number: int, problem: str) -> UserError:
    return UserError(f"{imglist}:{number}: {problem}")


def parse_extra(extra: str, imglist: Path, number: int) -> int | None:
    """The label of a line's ``<extra>`` part: an integer, or a dict literal's ``label`` (None if it
    has none). Only literals are read (:func:`ast.literal_eval`); anything else is a UserError."""
    if not extra.startswith("{"):
        try:
            return int(extra)
        except ValueError:
            raise _line_error(imglist, number, f"expected an integer label or a dict literal after the path, "
                                               f"got {extra[:60]!r}") from None
    if len(extra) > MAX_EXTRA_CHARS:
        raise _line_error(imglist, number, f"the dict after the path is over {MAX_EXTRA_CHARS} characters")
    try:
        extras = ast.literal_eval(extra)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise _line_error(imglist, number, f"{extra[:60]!r} is not a Python dict literal (only literals are "
                                           "read, nothing is evaluated)") from None
    if not isinstance(extras, dict):
        raise _line_error(imglist, number, f"expected a dict literal after the path, got {type(extras).__name__}")
    label = extras.get("label")
    if label is None:
        return None
    if isinstance(label, bool) or not isinstance(label, int):
        raise _line_error(imglist, number, f"the dict's 'label' is {label!r}, not an integer")
    return label


def read_imglist(imglist: Path, images: Path, num_classes: int | None = None) -> list[tuple[Path, int]]:
    """``(image path, label)`` for every line of an OpenOOD image list, paths under ``images``.

    ``num_classes``: an in-distribution list, whose labels must be ``0..num_classes-1``;
    None: an OOD list, every label ``-1`` (the file's labels are only checked to parse).
    Raises a one-line UserError naming the list and line for a malformed line, an
    absolute path, a bad or missing ID label, or a missing image (saying how many lines
    name missing images in all).
    """
    try:
        text = imglist.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read image list {imglist} ({err})") from None
    samples: list[tuple[Path, int]] = []
    missing: list[tuple[int, Path]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        parts = stripped.split(None, 1)
        if len(parts) < 2:
            raise _line_error(imglist, number, f"expected '<image path relative to {images.name}/> <label>', "
                                               f"got {stripped[:80]!r}")
        relpath, extra = parts[0], parts[1].strip()
        if relpath.startswith("/") or Path(relpath).is_absolute():
            raise _line_error(imglist, number, f"image path {relpath} is absolute; paths are relative to "
                                               f"{images}")
        label = parse_extra(extra, imglist, number)
        if num_classes is None:
            label = OOD_LABEL
        elif label is None:
            raise _line_error(imglist, number, "the dict has no 'label'; an in-distribution list needs one")
        elif not 0 <= label < num_classes:
            raise _line_error(imglist, number, f"label {label} is outside 0..{num_classes - 1} "
                                               f"({num_classes} classes)")
        path = images / relpath
        if not path.is_file():
            missing.append((number, path))
        samples.append((path, label))
    if missing:
        number, path = missing[0]
        more = f" ({len(missing) - 1} more lines name missing images)" if len(missing) > 1 else ""
        raise DatasetNotFoundError(f"{imglist}:{number}: image {path} not found{more}")
    if not samples:
        raise DatasetNotFoundError(f"image list {imglist} has no lines")
    return samples


def openood_geometry(benchmark: str, image_size: int | None = None, geometry: str = "benchmark"
                     ) -> Transform | None:
    """OpenOOD's test geometry for ``benchmark`` (see the module docstring), at ``image_size``."""
    info = benchmark_info(benchmark)
    size = image_size or info.default_size
    if geometry == "none" and size == info.default_size:
        return None
    if info.geometry == "cifar":
        return eval_transform(size=size, resize=size)
    return eval_transform(size=size, resize=round(size * 256 / 224))


class ImglistDataset(LabelledImages):
    """One OpenOOD image list. ``num_classes`` None: an OOD set (label -1, no classes). Its
    identity covers the list file besides the images."""

    def __init__(self, name: str, split: str, imglist: Path, images: Path, num_classes: int | None,
                 transform: Transform | None):
        super().__init__(split, transform)
        self.name = name
        self.imglist, self.images = imglist, images
        self.classes = tuple(str(i) for i in range(num_classes)) if num_classes else ()
        self.samples = read_imglist(imglist, images, num_classes)

    def source_files(self) -> list[Path]:
        return [self.imglist, *super().source_files()]


def _build(info: BenchmarkInfo, name: str, split: str, entry: ListEntry, labelled: bool, root: Path,
           transform: Any, image_size: int | None) -> ImglistDataset:
    folder = locate_openood(root, _entry_required(entry), name)
    if transform == "default":
        transform = openood_geometry(info.name, image_size, entry.geometry)
    return ImglistDataset(name, split, folder / entry.imglist, folder / entry.images,
                          info.num_classes if labelled else None, transform)


def _id_dataset(benchmark: str, split: str, root: Path, *, transform: Any = "default",
                image_size: int | None = None) -> ImglistDataset:
    info = benchmark_info(benchmark)
    return _build(info, dataset_name(benchmark), split, info.id[split], True, root, transform, image_size)


def _set_dataset(benchmark: str, group: str, set_name: str, split: str, root: Path, *,
                 transform: Any = "default", image_size: int | None = None) -> ImglistDataset:
    info = benchmark_info(benchmark)
    return _build(info, dataset_name(benchmark, group, set_name), split, info.groups[group][set_name],
                  group == "csid", root, transform, image_size)


# ------------------------------------------------------------------------------------------ presets

@dataclass
class Benchmark:
    """A whole OpenOOD benchmark; set dicts are keyed by OpenOOD's set names (``tin``, ``ssb_hard``)."""

    name: str
    num_classes: int
    folder: Path  # the OpenOOD folder read
    id_test: ImglistDataset
    id_val: ImglistDataset
    ood_val: dict[str, ImglistDataset]
    near: dict[str, ImglistDataset]
    far: dict[str, ImglistDataset]
    #: empty unless built with ``csid=True``
    csid: dict[str, ImglistDataset] = field(default_factory=dict)

    def ood_sets(self) -> dict[str, ImglistDataset]:
        """Near then far test sets under their registry names (what ``create_ood_sets`` would name them)."""
        return {d.name: d for d in (*self.near.values(), *self.far.values())}


def openood_benchmark(name: str, root: str | Path | None = None, *, csid: bool = False,
                      transform: Any = "default", image_size: int | None = None) -> Benchmark:
    """Benchmark ``name`` (``cifar10``, ``cifar100``, ``imagenet200``, ``imagenet``) from the
    OpenOOD folder under ``root`` (default: the data root).

    ``csid=True`` also builds the covariate-shifted ID sets (full-spectrum mode); they are
    not in OpenOOD's default v1.5 download for every benchmark (CIFAR-10-C, ImageNet-ES),
    so they are asked for. Every list and images folder needed is checked first: if any
    is missing, one line names them all and every place looked.
    """
    info = benchmark_info(name)
    data_root = resolve_data_root(root)
    entries = [info.id["test"], info.id["val"], *(e for g in ("val", "near", "far") for e in info.groups[g].values())]
    if csid:
        entries += info.groups["csid"].values()
    required = list(dict.fromkeys(item for e in entries for item in _entry_required(e)))
    folder = locate_openood(data_root, required, f"OpenOOD benchmark {info.name}")

    def build(group: str) -> dict[str, ImglistDataset]:
        return {s: _set_dataset(info.name, group, s, "test", folder, transform=transform, image_size=image_size)
                for s in info.groups[group]}

    return Benchmark(info.name, info.num_classes, folder,
                     _id_dataset(info.name, "test", folder, transform=transform, image_size=image_size),
                     _id_dataset(info.name, "val", folder, transform=transform, image_size=image_size),
                     build("val"), build("near"), build("far"), build("csid") if csid else {})


_GROUP_WORDS = {"val": "OOD validation set", "near": "near-OOD set", "far": "far-OOD set",
                "csid": "covariate-shifted ID set (labelled)"}


def _layout(entry: ListEntry) -> str:
    return f"{entry.imglist} + images under {entry.images} in <root> or <root>/openood (OpenOOD's data folder)"


def _register() -> None:
    for info in BENCHMARKS.values():
        size = info.default_size
        geometry = "Resize(32) + CenterCrop(32)" if info.geometry == "cifar" else "Resize(256) + CenterCrop(224)"
        name = dataset_name(info.name)
        register_dataset(name, description=f"OpenOOD v1.5 {info.name} ID list ({info.num_classes} classes); "
                         f"{geometry}, image_size (default {size}) scales it",
                         layout=_layout(info.id["test"]).replace("test_", "{test,val,train}_"),
                         splits=("test", "val", "train"),
                         locate=partial(locate_openood, required=_entry_required(info.id["test"]), what=name)
                         )(partial(_id_dataset, info.name))
        for group, sets in info.groups.items():
            for set_name, entry in sets.items():
                name = dataset_name(info.name, group, set_name)
                how = "no resize (files are 224 x 224)" if entry.geometry == "none" else geometry
                register_dataset(name, description=f"OpenOOD v1.5 {info.name} {_GROUP_WORDS[group]} "
                                 f"{set_name}; {how}", layout=_layout(entry), splits=("test",),
                                 kind="classification" if group == "csid" else "ood",
                                 locate=partial(locate_openood, required=_entry_required(entry), what=name)
                                 )(partial(_set_dataset, info.name, group, set_name))


_register()
