"""The file-based dataset loaders, each read back from a tiny copy of its real on-disk format.

Every test writes the files itself (pickles, .mat, JPEG/PNG, XML, CUB and
wsolevaluation text files, ODIN folders) under ``tmp_path`` and reads them
through ``create_dataset``; expected boxes after the default geometry are
computed by hand in the comments.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader

from cutmix_eval.data import collate_samples, create_dataset, dataset_spec, list_datasets
from cutmix_eval.errors import DatasetNotFoundError, UserError
from conftest import CLI, assert_one_line, cli_env, pixels

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def save(path: Path, pixels, size: tuple[int, int] | None = None) -> Path:
    """Write an image: ``pixels`` is an RGB colour (with ``size`` = (width, height)) or an
    ``H x W x 3`` / ``H x W`` uint8 array. JPEGs are written at quality 100 without
    chroma subsampling so that colours survive to within a few levels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, pixels) if size else Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, format="JPEG", quality=100, subsampling=0)
    else:
        image.save(path)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------------- CIFAR / SVHN

def py2_pickle(obj) -> bytes:
    """Serialise dicts, lists, ints, strings and uint8 arrays the way Python 2's cPickle
    (protocol 2) wrote the real CIFAR files: ``str`` as 8-bit strings, arrays through
    ``numpy.core.multiarray._reconstruct`` with their bytes as a string."""
    out = bytearray(pickle.PROTO + b"\x02")

    def string(raw: bytes) -> None:
        out.extend(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)

    def integer(value: int) -> None:
        out.extend(pickle.BININT + struct.pack("<i", value))

    def dump(item) -> None:
        if isinstance(item, dict):
            out.extend(pickle.EMPTY_DICT + pickle.MARK)
            for key, value in item.items():
                dump(key)
                dump(value)
            out.extend(pickle.SETITEMS)
        elif isinstance(item, list):
            out.extend(pickle.EMPTY_LIST + pickle.MARK)
            for value in item:
                dump(value)
            out.extend(pickle.APPENDS)
        elif isinstance(item, str):
            string(item.encode("latin1"))
        elif isinstance(item, int):
            integer(item)
        else:  # a uint8 ndarray
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            integer(0)
            out.extend(pickle.TUPLE1)
            string(b"b")
            out.extend(pickle.TUPLE3 + pickle.REDUCE + pickle.MARK)
            integer(1)
            out.extend(pickle.MARK)
            for dim in item.shape:
                integer(dim)
            out.extend(pickle.TUPLE + b"cnumpy\ndtype\n")
            string(b"u1")
            integer(0)
            integer(1)
            out.extend(pickle.TUPLE3 + pickle.REDUCE + pickle.MARK)
            integer(3)
            string(b"|")
            out.extend(pickle.NONE * 3)
            integer(-1)
            integer(-1)
            integer(0)
            out.extend(pickle.TUPLE + pickle.BUILD + pickle.NEWFALSE)
            string(item.tobytes())
            out.extend(pickle.TUPLE + pickle.BUILD)

    dump(obj)
    return bytes(out + pickle.STOP)


def cifar_rows(count: int, seed: int) -> np.ndarray:
    """``count x 3072`` uint8 rows; row 0 has the pixel at (row 1, column 2) = RGB (10, 20, 30)."""
    data = np.random.default_rng(seed).integers(0, 256, (count, 3072), dtype=np.uint8)
    data[0, [1 * 32 + 2, 1024 + 1 * 32 + 2, 2048 + 1 * 32 + 2]] = (10, 20, 30)
    return data


def make_cifar10(root: Path) -> dict[str, np.ndarray]:
    """A Python-2 style cifar-10-batches-py with 2 images per train batch and 3 test images."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {f"data_batch_{i}": cifar_rows(2, i) for i in range(1, 6)} | {"test_batch": cifar_rows(3, 0)}
    for name, data in batches.items():
        record = {"batch_label": name, "labels": [int(v) for v in data[:, 0] % 10], "data": data,
                  "filenames": [f"img_{i}.png" for i in range(len(data))]}
        (folder / name).write_bytes(py2_pickle(record))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(py2_pickle({"label_names": names, "num_cases_per_batch": 10000,
                                                      "num_vis": 3072}))
    return batches


def test_cifar10_reads_python2_pickles_and_the_plane_layout(tmp_path):
    batches = make_cifar10(tmp_path)
    test = create_dataset("cifar10", "test", root=tmp_path)
    assert len(test) == 3 and test.classes[:3] == ("airplane", "automobile", "bird") and test.num_classes == 10
    first = test[0]
    assert first["image"].shape == (3, 32, 32) and first["image"].dtype == torch.float32
    assert pixels(first)[:, 1, 2].tolist() == [10, 20, 30]
    expected = batches["test_batch"].reshape(3, 3, 32, 32)
    assert np.array_equal(pixels(test[2]), expected[2])
    assert [test[i]["label"] for i in range(3)] == [int(v) % 10 for v in batches["test_batch"][:, 0]]

    train = create_dataset("cifar10", "train", root=tmp_path)  # the five batches, in order
    assert len(train) == 10
    assert np.array_equal(pixels(train[9]), batches["data_batch_5"][1].reshape(3, 32, 32))
    batch = next(iter(DataLoader(train, batch_size=4, collate_fn=collate_samples)))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["index"].tolist() == [0, 1, 2, 3]
    assert batch["label"].tolist() == [train[i]["label"] for i in range(4)]


def test_cifar100_reads_python3_pickles_under_the_cifar100_folder(tmp_path):
    folder = tmp_path / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True)
    data = cifar_rows(4, 7)
    for split in ("train", "test"):
        with open(folder / split, "wb") as file:  # protocol 5: numpy._core.numeric._frombuffer
            pickle.dump({"filenames": ["a.png"] * 4, "fine_labels": [99, 0, 5, 42], "coarse_labels": [1, 2, 3, 4],
                         "data": data}, file)
    with open(folder / "meta", "wb") as file:
        pickle.dump({"fine_label_names": [f"class{i}" for i in range(100)], "coarse_label_names": ["x"]}, file,
                    protocol=2)
    ds = create_dataset("cifar100", "test", root=tmp_path, transform=None)
    assert len(ds) == 4 and ds.num_classes == 100 and ds.classes[42] == "class42"
    assert [ds[i]["label"] for i in range(4)] == [99, 0, 5, 42]
    assert pixels(ds[0])[:, 1, 2].tolist() == [10, 20, 30]
    assert dataset_spec("cifar100").locate(tmp_path) == folder


def test_cifar_wrong_shape_and_missing_labels_are_one_line_errors(tmp_path):
    make_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(py2_pickle({"labels": [1, 2], "data": np.zeros((2, 1024), np.uint8)}))
    with pytest.raises(UserError) as err:
        create_dataset("cifar10", "test", root=tmp_path)
    assert_one_line(err, str(path), "(2, 1024)", "N x 3072")

    path.write_bytes(py2_pickle({"data": np.zeros((2, 3072), np.uint8)}))
    with pytest.raises(UserError) as err:
        create_dataset("cifar10", "test", root=tmp_path)
    assert_one_line(err, str(path), "'labels'")


class _WritesAFile:
    """A pickle payload that, if unpickled naively, calls ``function(argument)``."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


@pytest.mark.parametrize("how", ["exec", "os.system"])
def test_cifar_pickle_that_would_run_code_is_refused(tmp_path, how):
    make_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    payload = (_WritesAFile(exec, f"open({str(marker)!r}, 'w').write('x')") if how == "exec"
               else _WritesAFile(os.system, f"touch {marker}"))
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps({"labels": [0], "data": payload}, protocol=2))
    with pytest.raises(UserError) as err:
        create_dataset("cifar10", "test", root=tmp_path)
    assert_one_line(err, str(path), "refusing")
    assert not marker.exists()


def test_svhn_mat_files_digit_zero_and_optional_train(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    digits = np.array([[10], [1], [2], [9], [10]], dtype=np.uint8)
    (tmp_path / "svhn").mkdir()
    scipy.io.savemat(tmp_path / "svhn" / "test_32x32.mat", {"X": images, "y": digits})
    ds = create_dataset("svhn", "test", root=tmp_path)
    assert len(ds) == 5 and ds.classes == tuple("0123456789")
    assert [ds[i]["label"] for i in range(5)] == [0, 1, 2, 9, 0]
    assert np.array_equal(pixels(ds[3]), images[..., 3].transpose(2, 0, 1))
    with pytest.raises(DatasetNotFoundError) as err:
        create_dataset("svhn", "train", root=tmp_path)
    assert_one_line(err, "train_32x32.mat", str(tmp_path / "svhn"))

    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": images[..., :2], "y": digits[:2]})  # directly in root
    assert len(create_dataset("svhn", "train", root=tmp_path)) == 2

    scipy.io.savemat(tmp_path / "svhn" / "test_32x32.mat", {"X": images[:, :, 0], "y": digits})
    with pytest.raises(UserError) as err:
        create_dataset("svhn", "test", root=tmp_path)
    assert_one_line(err, "test_32x32.mat", "(32, 32, 5)", "32 x 32 x 3 x N")


# ------------------------------------------------------------------------------- ImageFolder / ImageNet

def test_imagefolder_matches_torchvision_order_and_geometry(tmp_path):
    save(tmp_path / "zebra" / "z1.png", RED, (300, 200))
    save(tmp_path / "zebra" / "nested" / "z0.jpg", GREEN, (64, 48))
    save(tmp_path / "ant" / "a1.PNG", BLUE, (120, 100))
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    ds = create_dataset("imagefolder", "test", root=tmp_path)
    reference = torchvision.datasets.ImageFolder(str(tmp_path))
    assert ds.classes == tuple(reference.classes) == ("ant", "zebra")
    assert [(str(p), label) for p, label in ds.samples] == reference.samples
    sample = ds[1]  # zebra/z1.png (before zebra/nested/), 300 x 200 -> Resize(256) -> 384 x 256 -> CenterCrop(224)
    assert sample["label"] == 1 and sample["image"].shape == (3, 224, 224)
    assert pixels(sample)[:, 100, 100].tolist() == list(RED)
    assert create_dataset("imagefolder", "test", root=tmp_path, image_size=32)[0]["image"].shape == (3, 32, 32)
    assert create_dataset("imagefolder", "test", root=tmp_path, transform=None)[0]["image"].shape == (3, 100, 120)


def test_imagefolder_corrupt_image_names_the_file(tmp_path):
    save(tmp_path / "a" / "good.png", RED, (8, 8))
    bad = write(tmp_path / "a" / "bad.png", "this is not a PNG")
    ds = create_dataset("imagefolder", "test", root=tmp_path)
    with pytest.raises(UserError) as err:
        ds[0]  # bad.png sorts first
    assert_one_line(err, str(bad))


def voc_xml(width: int, height: int, objects: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    """A PASCAL-VOC annotation as ImageNet's val boxes are distributed."""
    body = "".join(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
                   f"<difficult>0</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
                   f"<ymax>{y1}</ymax></bndbox></object>" for name, (x0, y0, x1, y1) in objects)
    return (f"<annotation><folder>val</folder><filename>img</filename><source><database>ILSVRC_2012</database>"
            f"</source><size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
            f"<segmented>0</segmented>{body}</annotation>")


WNIDS = ("n01440764", "n01443537")


def make_imagenet(root: Path, xml_place: str | None) -> None:
    """Three 640 x 512 val images (two of n01440764, one of n01443537) and their XML files
    in ``xml_place`` (``bbox_val``, ``Annotations/CLS-LOC/val``, ``beside``, or None)."""
    files = {"ILSVRC2012_val_00000003": (WNIDS[0], GREEN), "ILSVRC2012_val_00000001": (WNIDS[0], RED),
             "ILSVRC2012_val_00000002": (WNIDS[1], BLUE)}
    xmls = {"ILSVRC2012_val_00000001": voc_xml(640, 512, [(WNIDS[0], (100, 60, 400, 300)),
                                                          (WNIDS[1], (0, 0, 10, 10)),
                                                          (WNIDS[0], (20, 100, 600, 500))]),
            # annotated at twice the size of the file on disk: boxes are scaled by 1/2
            "ILSVRC2012_val_00000003": voc_xml(1280, 1024, [(WNIDS[0], (200, 120, 800, 600))]),
            "ILSVRC2012_val_00000002": voc_xml(640, 512, [(WNIDS[1], (0, 0, 640, 512))])}
    for stem, (wnid, colour) in files.items():
        save(root / "val" / wnid / f"{stem}.JPEG", colour, (640, 512))
        if xml_place is not None:
            folder = root / "val" / wnid if xml_place == "beside" else root / xml_place
            write(folder / f"{stem}.xml", xmls[stem])


@pytest.mark.parametrize("folder,xml_place", [("imagenet", "bbox_val"), ("ILSVRC2012", "Annotations/CLS-LOC/val"),
                                              ("", "beside"), ("imagenet", None)])
def test_imagenet_val_boxes_follow_resize_and_center_crop(tmp_path, folder, xml_place):
    make_imagenet(tmp_path / folder, xml_place)
    ds = create_dataset("imagenet", "val", root=tmp_path)
    assert ds.present_classes == WNIDS and ds.num_classes == 1000 and len(ds) == 3
    assert ds.layout == "wnid folders" and ds.has_boxes == (xml_place is not None)
    assert [ds[i]["label"] for i in range(3)] == [0, 0, 1]
    first = ds[0]  # ILSVRC2012_val_00000001, red
    assert first["image"].shape == (3, 224, 224)
    assert np.abs(pixels(first)[:, 112, 112] - np.array(RED)).max() <= 3
    if xml_place is None:
        assert "boxes" not in first
        return
    # 640 x 512 -> Resize(256) -> 320 x 256 (scale 1/2) -> CenterCrop(224): left 48, top 16.
    # (100, 60, 400, 300) -> (2, 14, 152, 134); (20, 100, 600, 500) -> (-38, 34, 252, 234), clamped
    # to (0, 34, 224, 224); the n01443537 object is another class's and is dropped.
    assert first["boxes"].tolist() == [[2, 14, 152, 134], [0, 34, 224, 224]]
    assert first["boxes"].canvas_size == (224, 224)
    assert ds[1]["boxes"].tolist() == [[2, 14, 152, 134]]  # XML at 1280 x 1024, scaled to the file
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_samples)))
    assert batch["image"].shape == (3, 3, 224, 224) and [len(b) for b in batch["boxes"]] == [2, 1, 1]
    raw = create_dataset("imagenet", "val", root=tmp_path, transform=None)[0]
    assert raw["image"].shape == (3, 512, 640) and raw["boxes"].tolist()[0] == [100, 60, 400, 300]


def test_imagenet_broken_and_missing_annotations(tmp_path):
    make_imagenet(tmp_path / "imagenet", "bbox_val")
    write(tmp_path / "imagenet" / "bbox_val" / "ILSVRC2012_val_00000001.xml", "<annotation><size>")
    (tmp_path / "imagenet" / "bbox_val" / "ILSVRC2012_val_00000002.xml").unlink()
    ds = create_dataset("imagenet", "val", root=tmp_path)
    with pytest.raises(UserError) as err:
        ds[0]
    assert_one_line(err, "ILSVRC2012_val_00000001.xml", "PASCAL-VOC")
    with pytest.raises(DatasetNotFoundError) as err:
        ds[2]
    assert_one_line(err, "ILSVRC2012_val_00000002.xml")


# ImageNet subsets and the flat val folder: labels are the 1000-class indices (sorted ImageNet-1k wnids)
GOLDFISH, KIT_FOX, TOILET_TISSUE = "n01443537", "n02119789", "n15075141"  # classes 1, 278 and 999
SUBSET = {"ILSVRC2012_val_00000001": (KIT_FOX, RED), "ILSVRC2012_val_00000002": (GOLDFISH, BLUE),
          "ILSVRC2012_val_00000003": (TOILET_TISSUE, GREEN), "ILSVRC2012_val_00000004": (KIT_FOX, GREEN)}
SUBSET_LAYOUTS = {  # layout -> (ImageNet folder under the root, where the annotations go)
    "wnid folders": ("imagenet", "imagenet/bbox_val"),
    "flat, XML beside": ("imagenet", "imagenet/val"),
    "flat, CLS-LOC XML": ("ILSVRC2012", "ILSVRC2012/Annotations/CLS-LOC/val"),
    "flat, Kaggle XML": ("ILSVRC/Data/CLS-LOC", "ILSVRC/Annotations/CLS-LOC/val"),
    "flat, Kaggle CSV": ("ILSVRC/Data/CLS-LOC", "LOC_val_solution.csv")}


def make_subset(root: Path, layout: str) -> None:
    """Four 96 x 64 val images of three ImageNet-1k classes in ``layout``; each annotated with one
    box of its class, (10, 5, 50, 40) on the file (the XML at twice the size, the CSV as is)."""
    folder, annotations = SUBSET_LAYOUTS[layout]
    rows = []
    for stem, (wnid, colour) in SUBSET.items():
        save(root / folder / "val" / (wnid if layout == "wnid folders" else "") / f"{stem}.JPEG", colour, (96, 64))
        if annotations.endswith(".csv"):
            rows.append(f"{stem},{wnid} 10 5 50 40 \n")
        else:
            write(root / annotations / f"{stem}.xml", voc_xml(192, 128, [(wnid, (20, 10, 100, 80))]))
    if rows:
        write(root / annotations, "ImageId,PredictionString\n" + "".join(rows))


@pytest.mark.parametrize("layout", SUBSET_LAYOUTS)
def test_imagenet_subset_and_flat_val_get_the_1000_class_labels(tmp_path, layout):
    make_subset(tmp_path, layout)
    ds = create_dataset("imagenet", "val", root=tmp_path, transform=None)
    assert ds.num_classes == 1000 and ds.present_classes == (GOLDFISH, KIT_FOX, TOILET_TISSUE)
    assert ds.classes[0] == "n01440764" and ds.classes[278] == KIT_FOX and ds.classes[-1] == TOILET_TISSUE
    if layout == "wnid folders":  # ImageFolder order: goldfish, kit fox (1, 4), toilet tissue
        stems, labels = [2, 1, 4, 3], [1, 278, 278, 999]
    else:  # file-name order
        stems, labels = [1, 2, 3, 4], [278, 1, 999, 278]
    assert [p.name for p, _ in ds.samples] == [f"ILSVRC2012_val_0000000{k}.JPEG" for k in stems]
    assert ds.labels == labels and [ds[i]["label"] for i in range(4)] == labels
    assert ds.layout == layout.split(",")[0] and ds.has_boxes
    assert [ds[i]["boxes"].tolist() for i in range(4)] == [[[10, 5, 50, 40]]] * 4
    assert np.abs(pixels(ds[0])[:, 24, 32] - np.array(SUBSET[ds.samples[0][0].stem][1])).max() <= 3
    # 96 x 64 -> Resize(256) -> 384 x 256 (x 4) -> CenterCrop(224): left 80, top 16
    default = create_dataset("imagenet", "val", root=tmp_path)[0]
    assert default["image"].shape == (3, 224, 224) and default["boxes"].tolist() == [[0, 4, 120, 144]]


def test_imagenet_wnid_list_is_the_standard_1000_class_order():
    from timm.data import ImageNetInfo

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    from cutmix_eval.data.imagenet import WNIDS_FILE, imagenet_wnids

    wnids = imagenet_wnids()
    assert len(set(wnids)) == 1000 and list(wnids) == sorted(wnids)
    assert (wnids[0], wnids[1], wnids[278], wnids[-1]) == ("n01440764", GOLDFISH, KIT_FOX, TOILET_TISSUE)
    assert list(wnids) == ImageNetInfo().label_names()  # timm's (and torchvision's) class index
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert WNIDS_FILE.name in pyproject["tool"]["setuptools"]["package-data"]["cutmix_eval.data"]  # shipped


def test_imagenet_folders_that_are_not_imagenet_1k_wnids(tmp_path):
    for wnid in ("n99999999", "n00000001"):
        save(tmp_path / "imagenet" / "val" / wnid / "a.JPEG", RED, (8, 8))
    ds = create_dataset("imagenet", "val", root=tmp_path)
    assert ds.classes == ("n00000001", "n99999999") and ds.labels == [0, 1]  # index among the folders
    save(tmp_path / "imagenet" / "val" / KIT_FOX / "b.JPEG", RED, (8, 8))
    with pytest.raises(UserError) as err:
        create_dataset("imagenet", "val", root=tmp_path)
    assert_one_line(err, "2 of the 3 class folders are not ImageNet-1k wnids", "n00000001", "--data imagefolder")


def test_imagenet_flat_val_annotation_errors_name_the_file(tmp_path):
    make_subset(tmp_path, "flat, XML beside")
    val = tmp_path / "imagenet" / "val"
    (val / "ILSVRC2012_val_00000003.xml").unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        create_dataset("imagenet", "val", root=tmp_path)
    assert_one_line(err, "no annotation for", str(val / "ILSVRC2012_val_00000003.JPEG"))
    write(val / "ILSVRC2012_val_00000003.xml", voc_xml(64, 48, [(KIT_FOX, (1, 1, 9, 9)), (GOLDFISH, (2, 2, 8, 8))]))
    with pytest.raises(UserError) as err:
        create_dataset("imagenet", "val", root=tmp_path)
    assert_one_line(err, str(val / "ILSVRC2012_val_00000003.JPEG"), f"several classes ({GOLDFISH}, {KIT_FOX})")
    for xml in val.glob("*.xml"):
        xml.unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        create_dataset("imagenet", "val", root=tmp_path)
    assert_one_line(err, f"{val} holds the val images flat", "LOC_val_solution.csv", "Annotations/CLS-LOC/val")
    csv = write(tmp_path / "imagenet" / "LOC_val_solution.csv",
                f"ImageId,PredictionString\nILSVRC2012_val_00000001,{KIT_FOX} 1 2 3 4\n")
    with pytest.raises(DatasetNotFoundError) as err:
        create_dataset("imagenet", "val", root=tmp_path)
    assert_one_line(err, str(val / "ILSVRC2012_val_00000002.JPEG"), f"{csv} has no row ILSVRC2012_val_00000002")
    write(csv, f"ImageId,PredictionString\nILSVRC2012_val_00000001,{KIT_FOX} 1 2 3\n")
    with pytest.raises(UserError) as err:
        create_dataset("imagenet", "val", root=tmp_path)
    assert_one_line(err, f"{csv}, line 2", "<wnid> <xmin> <ymin> <xmax> <ymax>")


def test_imagenet_subsets_and_flat_val_through_the_cli(tmp_path, capsys):
    from cutmix_eval.cli import main
    from cutmix_eval.models import create_model
    from cutmix_eval.models.checkpoint import save_checkpoint

    model = create_model("gapnet:width=4", 1000, input_size=(3, 64, 64))
    with torch.no_grad():  # logits = the bias: kit fox first, then goldfish, then toilet tissue
        model.net.fc.weight.zero_()
        model.net.fc.bias.zero_()
        model.net.fc.bias[[278, 1, 999]] = torch.tensor([3.0, 2.0, 1.0])
    ckpt = save_checkpoint(path=tmp_path / "kitfox.pth", model=model, method="baseline", dataset="imagenet")
    for layout in ("wnid folders", "flat, Kaggle CSV"):
        root = tmp_path / layout.replace(" ", "")
        make_subset(root, layout)
        assert main(["datasets", "imagenet", "--data-root", str(root), "--json"]) == 0
        status = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["datasets"][0]["status"]
        assert status.startswith("found: ") and layout.split(",")[0] in status
        assert "val: 4 images of 3 of the 1000 ImageNet-1k classes" in status
        run = subprocess.run(CLI + ["evaluate", "--ckpt", str(ckpt), "--data", "imagenet", "--split", "val",
                                    "--data-root", str(root), "--results", str(tmp_path / layout), "--json"],
                             env=cli_env(), capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert result["dataset"]["num_classes"] == 1000 and result["dataset"]["num_images"] == 4
        # 2 of the 4 images are kit foxes; the other two are in the top 5
        assert result["metrics"]["top1_error"] == 0.5 and result["metrics"]["top5_error"] == 0.0
    (root / "LOC_val_solution.csv").rename(root / "elsewhere.csv")  # the flat val/ has no labels left
    assert main(["datasets", "imagenet", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "does not load: imagenet:" in out and "holds the val images flat" in out and "found:" not in out


# ------------------------------------------------------------------------------------ CUB / wsolevaluation

CUB_CLASSES = ("001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross")


def make_cub(root: Path) -> Path:
    """CUB_200_2011 with 4 images of 400 x 200: ids 1 and 3 train, 2 and 4 test."""
    folder = root / "CUB_200_2011"
    images = {1: (1, "Black_Footed_Albatross_0001_796111.jpg", RED),
              2: (1, "Black_Footed_Albatross_0002_55.jpg", GREEN), 3: (2, "Laysan_Albatross_0001_545.jpg", BLUE), 4: (3, "Sooty_Albatross_0001_1071.jpg", RED)}
    for cls, name, colour in images.values():
        save(folder / "images" / CUB_CLASSES[cls - 1] / name, colour, (400, 200))
    write(folder / "classes.txt", "".join(f"{i} {name}\n" for i, name in enumerate(CUB_CLASSES, 1)))
    write(folder / "images.txt", "".join(f"{i} {CUB_CLASSES[c - 1]}/{n}\n" for i, (c, n, _) in images.items()))
    write(folder / "image_class_labels.txt", "".join(f"{i} {c}\n" for i, (c, _, _) in images.items()))
    write(folder / "train_test_split.txt", "1 1\n2 0\n3 1\n4 0\n")
    write(folder / "bounding_boxes.txt", "1 50.0 20.0 100.0 80.0\n2 0.0 0.0 400.0 200.0\n"
                                         "3 10.0 10.0 20.0 20.0\n4 200.0 100.0 150.0 50.0\n")
    return folder


def test_cub_splits_labels_and_resized_boxes(tmp_path):
    make_cub(tmp_path)
    train = create_dataset("cub", "train", root=tmp_path)
    test = create_dataset("cub", "test", root=tmp_path)
    assert (len(train), len(test)) == (2, 2) and train.classes == CUB_CLASSES and train.has_boxes
    assert [train[i]["label"] for i in range(2)] == [0, 1] and [test[i]["label"] for i in range(2)] == [0, 2]
    first = train[0]  # 400 x 200 -> Resize((224, 224)): x * 0.56, y * 1.12; (50, 20, 50+100, 20+80)
    assert first["image"].shape == (3, 224, 224)
    assert np.abs(pixels(first)[:, 100, 100] - np.array(RED)).max() <= 3
    assert torch.allclose(first["boxes"], torch.tensor([[28.0, 22.4, 84.0, 112.0]]))
    raw = create_dataset("cub", "test", root=tmp_path, transform=None)[1]
    assert raw["image"].shape == (3, 200, 400) and raw["boxes"].tolist() == [[200, 100, 350, 150]]
    batch = next(iter(DataLoader(test, batch_size=2, collate_fn=collate_samples)))
    assert batch["label"].tolist() == [0, 2] and len(batch["boxes"]) == 2


def test_cub_malformed_and_missing_files(tmp_path):
    folder = make_cub(tmp_path)
    write(folder / "bounding_boxes.txt", "1 50.0 20.0 wide 80.0\n2 0 0 1 1\n3 0 0 1 1\n4 0 0 1 1\n")
    with pytest.raises(UserError) as err:
        create_dataset("cub", "train", root=tmp_path)
    assert_one_line(err, str(folder), "'wide'")
    write(folder / "train_test_split.txt", "1 1\n2 0\n3 1\n4 0\n5 0\n")  # id 5 is in no other file
    with pytest.raises(UserError) as err:
        create_dataset("cub", "test", root=tmp_path)
    assert_one_line(err, "image id '5'")
    (folder / "image_class_labels.txt").unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        create_dataset("cub", "test", root=tmp_path)
    assert_one_line(err, str(folder), "image_class_labels.txt")


def make_wsol(base: Path, folder: str, split: str, localization: str, labels: str, images: dict[str, tuple]):
    """wsolevaluation metadata for one split plus its images (path -> (colour, (w, h)))."""
    metadata = base / "metadata" / folder / split
    write(metadata / "image_ids.txt", "".join(f"{p}\n" for p in images))
    write(metadata / "class_labels.txt", labels)
    write(metadata / "image_sizes.txt", "".join(f"{p},{w},{h}\n" for p, (_, (w, h)) in images.items()))
    write(metadata / "localization.txt", localization)
    for path, (colour, size) in images.items():
        save(base / "dataset" / folder / path, colour, size)
    return metadata


@pytest.mark.parametrize("name,folder,nested", [("cub-wsol", "CUB", True), ("imagenet-wsol", "ILSVRC", False)])
def test_wsol_boxes_several_per_image(tmp_path, name, folder, nested):
    base = tmp_path / "wsolevaluation" if nested else tmp_path
    images = {"001.A/a_1.jpg": (RED, (400, 200)), "002.B/b_1.jpg": (BLUE, (100, 100))}
    metadata = make_wsol(base, folder, "test", "001.A/a_1.jpg,60,27,385,150\n001.A/a_1.jpg,0,0,100,100\n"
                         "002.B/b_1.jpg,10,20,30,40\n", "001.A/a_1.jpg,0\n002.B/b_1.jpg,1\n", images)
    ds = create_dataset(name, "test", root=tmp_path)
    assert len(ds) == 2 and ds.has_boxes and not ds.has_masks and ds.classes[1] == "1"
    assert [ds[i]["label"] for i in range(2)] == [0, 1]
    # 400 x 200 -> 224 x 224: x * 0.56, y * 1.12
    assert torch.allclose(ds[0]["boxes"], torch.tensor([[33.6, 30.24, 215.6, 168.0], [0.0, 0.0, 56.0, 112.0]]))
    assert torch.allclose(ds[1]["boxes"], torch.tensor([[22.4, 44.8, 67.2, 89.6]]))
    assert create_dataset(name, "test", root=tmp_path, image_size=112)[0]["image"].shape == (3, 112, 112)

    write(metadata / "localization.txt", "001.A/a_1.jpg,60,27,x,150\n")
    with pytest.raises(UserError) as err:
        create_dataset(name, "test", root=tmp_path)
    assert_one_line(err, str(metadata), "not a number")
    write(metadata / "localization.txt", "002.B/b_1.jpg,10,20,30,40\n")
    write(metadata / "class_labels.txt", "001.A/a_1.jpg,0\n")
    with pytest.raises(UserError) as err:
        create_dataset(name, "test", root=tmp_path)
    assert_one_line(err, "class_labels.txt", "002.B/b_1.jpg")
    (metadata / "class_labels.txt").unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        create_dataset(name, "test", root=tmp_path)
    assert_one_line(err, "class_labels.txt", str(tmp_path / "wsolevaluation"))


def test_openimages_wsol_masks_union_and_ignore(tmp_path):
    base = tmp_path / "wsolevaluation"
    images = {"test/01226z/a.jpg": (RED, (8, 4)), "test/01226z/b.jpg": (GREEN, (8, 4))}
    localization = ("test/01226z/a.jpg,test/01226z/a_m1.png,test/01226z/a_ignore.png\n"
                    "test/01226z/a.jpg,test/01226z/a_m2.png,\n"
                    "test/01226z/b.jpg,test/01226z/b_m1.png,\n")
    make_wsol(base, "OpenImages", "test", localization, "test/01226z/a.jpg,3\ntest/01226z/b.jpg,3\n", images)
    masks = base / "dataset" / "OpenImages" / "test" / "01226z"
    instance_1, instance_2, ignore = (np.zeros((4, 8), np.uint8) for _ in range(3))
    instance_1[0, :4] = 255  # first instance: top-left
    instance_2[3, 6:] = 1  # second instance: any value > 0 counts
    ignore[:2, 2:6] = 255  # ignore box overlapping the first instance
    for file, array in (("a_m1.png", instance_1), ("a_m2.png", instance_2), ("a_ignore.png", ignore)):
        save(masks / file, array)
    save(masks / "b_m1.png", np.full((2, 4), 255, np.uint8) * (np.arange(4) < 2))  # half size: nearest-resized
    ds = create_dataset("openimages-wsol", "test", root=tmp_path, transform=None)
    assert ds.has_masks and not ds.has_boxes and ds[0]["label"] == 3
    expected = np.zeros((4, 8), np.uint8)
    expected[:2, 2:6] = 255
    expected[0, :4] = 1  # foreground wins over the ignore box
    expected[3, 6:] = 1
    assert ds[0]["mask"].numpy().tolist() == expected.tolist()
    expected_b = np.zeros((4, 8), np.uint8)
    expected_b[:, :4] = 1
    assert ds[1]["mask"].numpy().tolist() == expected_b.tolist()

    default = create_dataset("openimages-wsol", "test", root=tmp_path)
    batch = next(iter(DataLoader(default, batch_size=2, collate_fn=collate_samples)))
    assert batch["image"].shape == (2, 3, 224, 224) and batch["mask"].shape == (2, 224, 224)
    assert batch["mask"].dtype == torch.uint8 and set(batch["mask"].unique().tolist()) == {0, 1, 255}
    assert batch["mask"][0, 0, 0] == 1 and batch["mask"][0, 56, 112] == 255 and batch["mask"][0, 200, 100] == 0


# ---------------------------------------------------------------------------------------------- OOD sets

ODIN = {"tinyimagenet-crop": ("Imagenet/test", ".jpg", 36), "lsun-crop": ("LSUN/test", ".jpg", 36),
        "tinyimagenet-resize": ("Imagenet_resize/Imagenet_resize", ".jpg", 32),
        "lsun-resize": ("LSUN_resize/LSUN_resize", ".jpg", 32), "isun": ("iSUN/iSUN_patches", ".jpeg", 32)}


def framed(size: int) -> np.ndarray:
    """``size x size`` blue with a 2-pixel red frame (what a 32 centre crop removes from 36)."""
    array = np.zeros((size, size, 3), np.uint8)
    array[...] = RED
    array[2:-2, 2:-2] = BLUE
    return array


@pytest.mark.parametrize("under_odin", [False, True])
@pytest.mark.parametrize("name", sorted(ODIN))
def test_odin_folders(tmp_path, name, under_odin):
    folder, ext, side = ODIN[name]
    images = tmp_path / ("odin" if under_odin else "") / folder
    for i in range(3):
        save(images / f"{i}{ext}", framed(side))
    ds = create_dataset(name, "test", root=tmp_path)
    assert dataset_spec(name).kind == "ood" and ds.classes == () and len(ds) == 3
    sample = ds[1]
    assert sample["label"] == -1 and sample["image"].shape == (3, 32, 32)
    if side == 36:  # centre crop drops the red frame
        assert np.abs(pixels(sample) - np.array(BLUE)[:, None, None]).max() <= 8
    else:  # already 32 x 32: left as read
        assert np.array_equal(pixels(sample), ds.load(1)["image"].numpy())
    assert create_dataset(name, "test", root=tmp_path, image_size=16)[0]["image"].shape == (3, 16, 16)
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_samples)))
    assert batch["label"].tolist() == [-1, -1, -1] and batch["image"].shape == (3, 3, 32, 32)


def test_odin_corrupt_and_truncated_images_are_user_errors(tmp_path):
    folder = tmp_path / "LSUN" / "test"
    good = save(folder / "0.jpg", framed(36))
    write(folder / "1.jpg", "garbage")
    (folder / "2.jpg").write_bytes(good.read_bytes()[:300])
    ds = create_dataset("lsun-crop", "test", root=tmp_path)
    for index in (1, 2):
        with pytest.raises(UserError) as err:
            ds[index]
        assert_one_line(err, str(folder / f"{index}.jpg"))


def test_images_folder_fit_modes(tmp_path):
    bands = np.zeros((30, 90, 3), np.uint8)  # red | wide green | blue
    bands[:, :25], bands[:, 25:65], bands[:, 65:] = RED, GREEN, BLUE
    save(tmp_path / "photos" / "deep" / "bands.png", bands)
    save(tmp_path / "photos" / "small.jpg", GREEN, (10, 10))
    resized = create_dataset("images", "test", root=tmp_path / "photos")
    assert len(resized) == 2 and resized[0]["label"] == -1 and resized[0]["image"].shape == (3, 32, 32)
    squashed = pixels(resized[0])  # deep/bands.png sorts first; squashed to 32 x 32, all three colours remain
    assert squashed[:, 16, 2].tolist() == list(RED) and squashed[:, 16, 29].tolist() == list(BLUE)
    cropped = pixels(create_dataset("images", "test", root=tmp_path / "photos", fit="center_crop")[0])
    # 90 x 30 -> 96 x 32 (green at x = 26.7..69.3) -> centre 32 columns (x = 32..64): all green
    assert cropped.shape == (3, 32, 32) and (cropped == np.array(GREEN)[:, None, None]).all()
    with pytest.raises(UserError, match="fit must be"):
        create_dataset("images", "test", root=tmp_path / "photos", fit="stretch")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no image files"):
        create_dataset("images", "test", root=tmp_path / "empty")


@pytest.mark.parametrize("name", ["uniform", "gaussian"])
def test_noise_is_deterministic_per_index(tmp_path, name):
    assert dataset_spec(name).locate is None and dataset_spec(name).kind == "ood"
    ds = create_dataset(name, "test", root=tmp_path / "nowhere")
    assert len(ds) == 10000
    sample = ds[7]
    assert sample["label"] == -1 and sample["image"].shape == (3, 32, 32) and sample["image"].dtype == torch.float32
    small = create_dataset(name, "test", num_samples=10)
    assert torch.equal(small[7]["image"], sample["image"])  # same whatever subset is read
    order = [small[i]["image"] for i in reversed(range(10))][::-1]
    workers = torch.cat([b["image"] for b in DataLoader(small, batch_size=3, num_workers=2,
                                                        collate_fn=collate_samples)])
    assert torch.equal(torch.stack(order), workers)
    assert not torch.equal(ds[8]["image"], sample["image"])
    assert not torch.equal(create_dataset(name, "test", seed=1)[7]["image"], sample["image"])
    assert create_dataset(name, "test", image_size=8)[0]["image"].shape == (3, 8, 8)


def test_noise_statistics():
    uniform = torch.stack([s["image"] for s in create_dataset("uniform", num_samples=20)]).flatten()
    assert 0 <= uniform.min() and uniform.max() < 1
    assert abs(uniform.mean() - 0.5) < 0.01 and abs(uniform.std() - (1 / 12) ** 0.5) < 0.01
    gaussian = torch.stack([s["image"] for s in create_dataset("gaussian", num_samples=20)]).flatten()
    # N(0.5, 1) clipped: P(x <= 0) = P(x >= 1) = Phi(-0.5) = 0.3085, the rest spread inside
    assert gaussian.min() == 0 and gaussian.max() == 1
    assert abs((gaussian == 0).float().mean() - 0.3085) < 0.01 and abs((gaussian == 1).float().mean() - 0.3085) < 0.01
    assert abs(gaussian.mean() - 0.5) < 0.01


# ------------------------------------------------------------------------------------ missing datasets

FILE_BASED = sorted({"cifar10", "cifar100", "svhn", "imagefolder", "imagenet", "cub", "cub-wsol", "imagenet-wsol",
                     "openimages-wsol", "images", *ODIN})


def test_every_dataset_registered_here_is_tested():
    assert set(list_datasets("*")) >= set(FILE_BASED) | {"uniform", "gaussian"}


@pytest.mark.parametrize("name", FILE_BASED)
def test_missing_dataset_names_the_paths_searched_and_the_layout(tmp_path, name):
    spec = dataset_spec(name)
    root = tmp_path / "no-data-here"
    for attempt in (lambda: spec.locate(root), lambda: create_dataset(name, spec.splits[0], root=root)):
        with pytest.raises(DatasetNotFoundError) as err:
            attempt()
        assert_one_line(err, str(root), spec.layout, name)


@pytest.mark.parametrize("name, make, annotation", [
    ("cifar10", make_cifar10, "cifar-10-batches-py/batches.meta"),
    ("imagenet", lambda root: make_imagenet(root, "bbox_val"), "bbox_val/ILSVRC2012_val_00000002.xml"),
    ("cub", make_cub, "CUB_200_2011/bounding_boxes.txt"),
])
def test_a_datasets_identity_covers_its_annotations(tmp_path, name, make, annotation):
    """Records are keyed on the files a dataset reads (issue 24): labels and boxes come from
    annotation files too, so rewriting one makes another dataset identity."""
    import os

    make(tmp_path)
    split = "val" if name == "imagenet" else "test"
    dataset = create_dataset(name, split, root=tmp_path)
    before = dataset.identity
    assert (tmp_path / annotation).resolve() in [Path(f).resolve() for f in dataset.source_files()]
    os.utime(tmp_path / annotation, ns=(7, 7))
    assert create_dataset(name, split, root=tmp_path).identity["sha256"] != before["sha256"]


def test_settings_in_a_dataset_name_reach_the_dataset_and_mistakes_are_one_line_errors():
    from cutmix_eval.data import create_dataset, dataset_spec

    named = create_dataset("synthetic:image_size=24,num_samples=6", "test", cache=False)
    plain = create_dataset("synthetic", "test", image_size=24, num_samples=6, cache=False)
    assert dataset_spec("synthetic:image_size=24").name == "synthetic"
    assert named.identity == plain.identity and np.array_equal(named.data.images, plain.data.images)
    assert create_dataset("synthetic:image_size=24", "test", image_size=24, num_samples=6, cache=False).identity \
        == plain.identity  # the same value given both ways is fine
    with pytest.raises(UserError, match="sets image_size, which is also given as image_size=32; give it once"):
        create_dataset("synthetic:image_size=24", "test", image_size=32)
    with pytest.raises(UserError, match="has no setting colour; its settings are .*image_size"):
        create_dataset("synthetic:colour=red", "test")
    with pytest.raises(UserError, match="cannot parse dataset 'synthetic:24'"):
        create_dataset("synthetic:24", "test")
