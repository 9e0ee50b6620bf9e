"""Corrupted test sets: the released CIFAR-C / ImageNet-C layouts read back from tiny copies
written here in the real format, and the on-the-fly CorruptedDataset.

The CIFAR-C copies hold ``N = 5 x n`` rows per ``<corruption>.npy`` with the severity,
the image number and the corruption's position written into the first pixel of each
row, so that slicing is checked row by row. CorruptedDataset is checked with a fake
noise corruption put into the registry for the test (the real ones are checked too
once registered).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cutmix_eval.corruptions import ALL, Corruption, corrupt, list_corruptions
from cutmix_eval.corruptions import registry as corruption_registry
from cutmix_eval.corruptions.registry import per_image_rand
from cutmix_eval.data import (CorruptedDataset, collate_samples, corrupt_indexed, corrupted_slices, create_dataset,
                              dataset_spec, image_seed)
from cutmix_eval.errors import DatasetNotFoundError, UserError
from conftest import assert_one_line, pixels

N_IMAGES = 3  # test images per severity in the tiny CIFAR-C copies
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_c_array(corruption: str, n: int = N_IMAGES) -> np.ndarray:
    """``5n x 32 x 32 x 3`` uint8; row ``(s-1)*n + i`` starts with pixel (s, i, position of the corruption)."""
    array = np.random.default_rng(ALL.index(corruption)).integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8)
    for s in range(1, 6):
        for i in range(n):
            array[(s - 1) * n + i, 0, 0] = (s, i, ALL.index(corruption))
    return array


def make_cifar_c(root: Path, folder: str = "CIFAR-10-C", corruptions=("gaussian_noise", "fog", "saturate"),
                 labels=(3, 0, 9), dtype=np.int64) -> Path:
    """A CIFAR-C folder with ``corruptions`` and ``labels.npy`` (``labels`` repeated per severity)."""
    path = root / folder
    path.mkdir(parents=True)
    for corruption in corruptions:
        np.save(path / f"{corruption}.npy", cifar_c_array(corruption, len(labels)))
    np.save(path / "labels.npy", np.tile(np.asarray(labels, dtype=dtype), 5))
    return path


# ------------------------------------------------------------------------------------------- CIFAR-C

@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_cifar_c_severity_rows_labels_and_memory_map(tmp_path, severity):
    make_cifar_c(tmp_path)
    array = cifar_c_array("fog")
    ds = create_dataset("cifar10-c", "test", root=tmp_path, corruption="fog", severity=severity)
    assert len(ds) == N_IMAGES and ds.name == "cifar10-c" and ds.split == "test"
    assert ds.corruption == "fog" and ds.severity == severity
    assert isinstance(ds.images, np.memmap) and ds.images.shape == (N_IMAGES, 32, 32, 3)
    for i in range(N_IMAGES):
        sample = ds[i]
        assert sample["image"].shape == (3, 32, 32) and sample["image"].dtype == torch.float32
        assert pixels(sample)[:, 0, 0].tolist() == [severity, i, ALL.index("fog")]
        assert np.array_equal(pixels(sample), array[(severity - 1) * N_IMAGES + i].transpose(2, 0, 1))
        assert sample["label"] == [3, 0, 9][i] and sample["index"] == i
    assert ds.labels.tolist() == [3, 0, 9] and ds.labels.dtype == np.int64
    assert "corruption='fog'" in repr(ds) and f"severity={severity}" in repr(ds)


def test_cifar_c_classes_from_the_clean_meta_file_else_indices(tmp_path):
    make_cifar_c(tmp_path)
    plain = create_dataset("cifar10-c", "test", root=tmp_path, corruption="fog", severity=1)
    assert plain.classes == tuple("0123456789") and plain.num_classes == 10
    meta = tmp_path / "cifar-10-batches-py" / "batches.meta"
    meta.parent.mkdir()
    meta.write_bytes(pickle.dumps({"label_names": CIFAR10_NAMES, "num_vis": 3072}, protocol=2))
    named = create_dataset("cifar10-c", "test", root=tmp_path, corruption="fog", severity=1)
    assert named.classes == tuple(CIFAR10_NAMES)

    make_cifar_c(tmp_path, "CIFAR-100-C", ("speckle_noise",), labels=(99, 42), dtype=np.uint8)
    hundred = create_dataset("cifar100-c", "test", root=tmp_path, corruption="speckle_noise", severity=5)
    assert hundred.classes == tuple(str(i) for i in range(100)) and hundred.labels.tolist() == [99, 42]
    meta = tmp_path / "cifar100" / "cifar-100-python" / "meta"
    meta.parent.mkdir(parents=True)
    meta.write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}, protocol=2))
    hundred = create_dataset("cifar100-c", "test", root=tmp_path, corruption="speckle_noise", severity=5)
    assert hundred.classes[42] == "c42" and hundred[1]["label"] == 42
    assert pixels(hundred[1])[:, 0, 0].tolist() == [5, 1, ALL.index("speckle_noise")]


def test_cifar_c_slices_on_disk_in_table_order(tmp_path):
    folder = make_cifar_c(tmp_path, corruptions=("saturate", "fog", "gaussian_noise"))
    np.save(folder / "notes.npy", np.zeros(3))  # not a corruption: ignored
    expected = [(c, s) for c in ("gaussian_noise", "fog", "saturate") for s in range(1, 6)]
    assert corrupted_slices("cifar10-c", tmp_path) == expected
    assert dataset_spec("cifar10-c").locate(tmp_path) == folder
    for corruption, severity in corrupted_slices("cifar10-c", tmp_path):
        ds = create_dataset("cifar10-c", "test", root=tmp_path, corruption=corruption, severity=severity)
        assert pixels(ds[2])[:, 0, 0].tolist() == [severity, 2, ALL.index(corruption)]


def test_cifar_c_batches_and_pickling_remaps_the_file(tmp_path):
    make_cifar_c(tmp_path)
    ds = create_dataset("cifar10-c", "test", root=tmp_path, corruption="gaussian_noise", severity=4)
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_samples)))
    assert batch["image"].shape == (3, 3, 32, 32) and batch["label"].tolist() == [3, 0, 9]
    copy = pickle.loads(pickle.dumps(ds))
    assert isinstance(copy.images, np.memmap) and "images" not in ds.__getstate__()
    assert all(torch.equal(copy[i]["image"], ds[i]["image"]) for i in range(N_IMAGES))


def test_cifar_c_missing_files_are_one_line_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        create_dataset("cifar10-c", "test", root=tmp_path, corruption="fog", severity=1)
    assert_one_line(err, str(tmp_path / "CIFAR-10-C"), "labels.npy", "cifar10-c")
    with pytest.raises(DatasetNotFoundError) as err:
        corrupted_slices("cifar10-c", tmp_path)
    assert_one_line(err, str(tmp_path / "CIFAR-10-C"), "labels.npy")

    folder = make_cifar_c(tmp_path, corruptions=())
    with pytest.raises(DatasetNotFoundError) as err:  # labels but no slice: nothing stands for the release
        create_dataset("cifar10-c", "test", root=tmp_path)
    assert_one_line(err, "cifar10-c", "no slice on disk")
    for corruption in ("fog", "saturate"):
        np.save(folder / f"{corruption}.npy", cifar_c_array(corruption))
    with pytest.raises(DatasetNotFoundError) as err:
        create_dataset("cifar10-c", "test", root=tmp_path, corruption="snow", severity=1)
    assert_one_line(err, "snow.npy", str(folder), "fog, saturate")
    first = create_dataset("cifar10-c", "test", root=tmp_path)  # no slice named: the first on disk, table order
    assert (first.corruption, first.severity) == ("fog", 1)
    (folder / "labels.npy").unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        create_dataset("cifar10-c", "test", root=tmp_path, corruption="fog", severity=1)
    assert_one_line(err, str(folder), "labels.npy")


@pytest.mark.parametrize("array,parts", [
    (np.zeros((15, 32, 32), np.uint8), ["(15, 32, 32)", "N x 32 x 32 x 3 uint8"]),
    (np.zeros((15, 28, 28, 3), np.uint8), ["(15, 28, 28, 3)", "N x 32 x 32 x 3 uint8"]),
    (np.zeros((15, 32, 32, 3), np.float32), ["float32", "N x 32 x 32 x 3 uint8"]),
    (np.zeros((14, 32, 32, 3), np.uint8), ["(14, 32, 32, 3)", "N = 5 severities"]),
    (np.zeros((0, 32, 32, 3), np.uint8), ["(0, 32, 32, 3)", "N = 5 severities"]),
])
def test_cifar_c_wrong_arrays_name_the_file_and_the_expected_shape(tmp_path, array, parts):
    folder = make_cifar_c(tmp_path)
    np.save(folder / "fog.npy", array)
    with pytest.raises(UserError) as err:
        create_dataset("cifar10-c", "test", root=tmp_path, corruption="fog", severity=1)
    assert_one_line(err, str(folder / "fog.npy"), *parts)


def test_cifar_c_wrong_labels_and_unreadable_files(tmp_path):
    folder = make_cifar_c(tmp_path)
    np.save(folder / "labels.npy", np.zeros(14, np.int64))
    with pytest.raises(UserError) as err:
        create_dataset("cifar10-c", "test", root=tmp_path, corruption="fog", severity=1)
    assert_one_line(err, str(folder / "labels.npy"), "(14,)", "expected 15 integer labels", "fog.npy")
    np.save(folder / "labels.npy", np.zeros(15, np.float32))
    with pytest.raises(UserError) as err:
        create_dataset("cifar10-c", "test", root=tmp_path, corruption="fog", severity=1)
    assert_one_line(err, "float32", "integer labels")
    np.save(folder / "labels.npy", np.tile([1, 2, 10], 5))
    with pytest.raises(UserError) as err:
        create_dataset("cifar10-c", "test", root=tmp_path, corruption="fog", severity=2)
    assert_one_line(err, "1..10", "0..9")
    (folder / "fog.npy").write_text("not an array")
    with pytest.raises(UserError) as err:
        create_dataset("cifar10-c", "test", root=tmp_path, corruption="fog", severity=1)
    assert_one_line(err, f"cannot read {folder / 'fog.npy'}")


@pytest.mark.parametrize("name,split", [("cifar10-c", "test"), ("cifar100-c", "test"), ("imagenet-c", "val")])
@pytest.mark.parametrize("corruption,severity,parts", [
    ("fgo", 1, ["unknown corruption 'fgo'", "gaussian_noise"]), ("fog", 0, ["severity must be an integer 1-5", "0"]),
    ("fog", 6, ["1-5", "6"]), ("fog", "3", ["1-5", "'3'"]), ("fog", True, ["1-5", "True"]),
    (None, 1, ["both corruption=NAME and severity=1-5", "or neither", "corrupted_slices"]),
    ("fog", None, ["severity=1-5"]),
])
def test_slice_arguments_are_checked_before_any_file_is_read(tmp_path, name, split, corruption, severity, parts):
    with pytest.raises(UserError) as err:
        create_dataset(name, split, root=tmp_path, corruption=corruption, severity=severity)
    assert_one_line(err, name, *parts)


# ---------------------------------------------------------------------------------------- ImageNet-C

WNIDS = ("n01440764", "n01443537")


def make_imagenet_c(root: Path, slices=(("gaussian_noise", 1), ("gaussian_noise", 3), ("fog", 5))) -> Path:
    """Two 224 x 224 JPEGs of the first wnid and one of the second per slice; image ``k`` of
    a slice is a solid colour whose red channel is ``40 * severity + k``."""
    for corruption, severity in slices:
        for k, (wnid, stem) in enumerate([(WNIDS[0], "ILSVRC2012_val_00000001"), (WNIDS[0], "ILSVRC2012_val_00000007"),
                                          (WNIDS[1], "ILSVRC2012_val_00000002")]):
            path = root / corruption / str(severity) / wnid / f"{stem}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (224, 224), (40 * severity + k, 100, 200)).save(path, quality=100, subsampling=0)
    return root


@pytest.mark.parametrize("folder", ["ImageNet-C", "imagenet-c"])
def test_imagenet_c_slice_is_an_image_folder_with_sorted_wnids(tmp_path, folder):
    base = make_imagenet_c(tmp_path / folder)
    assert dataset_spec("imagenet-c").locate(tmp_path) == base
    assert corrupted_slices("imagenet-c", tmp_path) == [("gaussian_noise", 1), ("gaussian_noise", 3), ("fog", 5)]
    first = create_dataset("imagenet-c", "val", root=tmp_path)  # no slice named: the first on disk
    assert (first.corruption, first.severity) == ("gaussian_noise", 1)
    ds = create_dataset("imagenet-c", "val", root=tmp_path, corruption="gaussian_noise", severity=3)
    assert ds.classes[:2] == WNIDS and ds.num_classes == 1000 and len(ds) == 3 and ds.name == "imagenet-c"
    assert ds.split == "val"
    assert (ds.corruption, ds.severity) == ("gaussian_noise", 3) and ds.labels == [0, 0, 1]
    assert [ds[k]["label"] for k in range(3)] == [0, 0, 1]
    for k in range(3):  # ImageFolder order: ..._00000001, ..._00000007, then the second wnid
        sample = ds[k]
        assert sample["image"].shape == (3, 224, 224)
        assert np.abs(pixels(sample)[:, 112, 112] - np.array([120 + k, 100, 200])).max() <= 2
    raw = create_dataset("imagenet-c", "val", root=tmp_path, corruption="gaussian_noise", severity=3, transform=None)
    assert torch.equal(raw[0]["image"], ds[0]["image"])  # the default geometry leaves 224 x 224 files alone
    small = create_dataset("imagenet-c", "val", root=tmp_path, corruption="fog", severity=5, image_size=112)
    assert small[2]["image"].shape == (3, 112, 112) and small[2]["label"] == 1


def test_imagenet_c_missing_dataset_and_missing_slice(tmp_path):
    (tmp_path / "ImageNet-C" / "not-a-corruption" / "1").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as err:
        create_dataset("imagenet-c", "val", root=tmp_path, corruption="fog", severity=1)
    assert_one_line(err, str(tmp_path / "ImageNet-C"), str(tmp_path / "imagenet-c"), "<corruption>/<severity 1-5>")
    make_imagenet_c(tmp_path / "ImageNet-C")
    with pytest.raises(DatasetNotFoundError) as err:
        create_dataset("imagenet-c", "val", root=tmp_path, corruption="fog", severity=1)
    assert_one_line(err, "fog/1/", str(tmp_path / "ImageNet-C"))


# ------------------------------------------------------------------------------------- registry

@pytest.mark.parametrize("name", ["cifar10-c", "cifar100-c", "imagenet-c"])
def test_missing_dataset_names_the_paths_searched_and_the_layout(tmp_path, name):
    spec = dataset_spec(name)
    assert spec.accepts("corruption") and spec.accepts("severity")
    root = tmp_path / "no-data-here"
    for attempt in (lambda: spec.locate(root), lambda: corrupted_slices(name, root),
                    lambda: create_dataset(name, spec.splits[0], root=root, corruption="fog", severity=2)):
        with pytest.raises(DatasetNotFoundError) as err:
            attempt()
        assert_one_line(err, str(root), spec.layout, name)


def test_corrupted_slices_of_a_dataset_that_has_none(tmp_path):
    with pytest.raises(UserError) as err:
        corrupted_slices("cifar10", tmp_path)
    assert_one_line(err, "cifar10 is not a released corrupted set", "CorruptedDataset")


# ------------------------------------------------------------------------------------- on the fly

def test_image_seed_is_a_fixed_63_bit_hash_of_seed_and_index():
    assert image_seed(0, 0) == 7896617691693857887  # pinned: changing it changes every corrupted image
    seeds = {image_seed(seed, index) for seed in range(4) for index in range(2000)}
    assert len(seeds) == 8000 and all(0 <= s < 2**63 for s in seeds)
    assert image_seed(1, 0) != image_seed(0, 1) and image_seed(3, 5) == image_seed(np.int64(3), np.int64(5))
    assert torch.as_tensor([image_seed(7, 10**9)], dtype=torch.int64).item() == image_seed(7, 10**9)


FAKE_PARAMS = {"cifar": (0.01, 0.02, 0.03, 0.04, 0.05), "imagenet": (0.1, 0.2, 0.3, 0.4, 0.5)}


@pytest.fixture
def fake_noise(monkeypatch):
    """``gaussian_noise`` replaced by additive N(0, param) noise drawn per image from its seed."""
    list_corruptions()  # import the real corruption modules now, so that they cannot replace the fake later

    def add_noise(images, param, seeds):
        return images + param * per_image_rand(seeds, images.shape[1:], device=images.device, normal=True)

    fake = Corruption("gaussian_noise", "noise", add_noise, FAKE_PARAMS, True, "test fake")
    monkeypatch.setitem(corruption_registry._CORRUPTIONS._entries, "gaussian_noise", fake)
    return "gaussian_noise"


@pytest.fixture(scope="module")
def clean():
    return create_dataset("synthetic", "test", num_samples=6, image_size=32)


def stacked(dataset, indices) -> torch.Tensor:
    return torch.stack([dataset[i]["image"].as_subclass(torch.Tensor) for i in indices])


def test_corrupted_view_is_the_batched_call_image_by_image(clean, fake_noise):
    view = CorruptedDataset(clean, fake_noise, 3, seed=11)
    for i in (0, 4):
        expected = corrupt(clean[i]["image"][None], fake_noise, 3, seeds=[image_seed(11, i)], table="cifar")[0]
        assert torch.equal(view[i]["image"], expected)
    indices = [5, 1, 3, 0]  # any batch, any order
    batch = corrupt_indexed(stacked(clean, indices), indices, fake_noise, 3, seed=11)
    assert torch.equal(batch, stacked(view, indices))
    loaded = next(iter(DataLoader(view, batch_size=4, collate_fn=collate_samples)))
    clean_batch = next(iter(DataLoader(clean, batch_size=4, collate_fn=collate_samples)))
    assert torch.equal(loaded["image"], corrupt_indexed(clean_batch["image"], clean_batch["index"], fake_noise, 3,
                                                        seed=11))
    noise = (view[0]["image"] - clean[0]["image"]).flatten()
    assert 0.02 < noise.std() < 0.04  # the cifar table's sigma for 32 x 32 images (before clamping)


def test_corrupted_view_is_deterministic_per_seed_and_index(clean, fake_noise):
    first, again = CorruptedDataset(clean, fake_noise, 2), CorruptedDataset(clean, fake_noise, 2)
    assert torch.equal(stacked(first, range(6)), stacked(again, range(6)))
    assert not torch.equal(first[0]["image"], CorruptedDataset(clean, fake_noise, 2, seed=1)[0]["image"])
    assert not torch.equal(first[0]["image"] - clean[0]["image"], first[1]["image"] - clean[1]["image"])
    imagenet = CorruptedDataset(clean, fake_noise, 2, table="imagenet")[0]["image"]
    expected = corrupt(clean[0]["image"][None], fake_noise, 2, seeds=[image_seed(0, 0)], table="imagenet")[0]
    assert torch.equal(imagenet, expected) and not torch.equal(imagenet, first[0]["image"])


def test_corrupted_view_keeps_ground_truth_and_says_what_it_is(clean, fake_noise):
    view = CorruptedDataset(clean, fake_noise, 5, table="auto", seed=3)
    assert (view.name, view.split, view.corruption, view.severity, view.table, view.seed) == \
        ("synthetic", "test", "gaussian_noise", 5, "auto", 3)
    assert view.classes == clean.classes and len(view) == 6 and view.num_classes == 10
    assert view.has_boxes and view.has_masks and view.box_convention == "edges"
    assert np.array_equal(view.labels, clean.labels)
    assert "corruption='gaussian_noise'" in repr(view) and "severity=5" in repr(view)
    sample, original = view[2], clean[2]
    assert sample["image"].shape == (3, 32, 32) and 0 <= sample["image"].min() and sample["image"].max() <= 1
    assert sample["label"] == original["label"] and sample["index"] == 2
    for key in ("boxes", "mask", "part_mask"):
        assert torch.equal(sample[key], original[key]) and type(sample[key]) is type(original[key])


@pytest.mark.parametrize("kwargs,parts", [
    ({"corruption": "gaussian_nois"}, ["unknown corruption 'gaussian_nois'"]),
    ({"severity": 0}, ["severity must be an integer 1-5"]), ({"severity": 2.0}, ["1-5", "2.0"]),
    ({"table": "tiny"}, ["unknown severity table 'tiny'", "cifar"]), ({"seed": -1}, ["non-negative", "-1"]),
])
def test_corrupted_view_arguments_are_checked(clean, fake_noise, kwargs, parts):
    arguments = {"corruption": fake_noise, "severity": 1} | kwargs
    with pytest.raises(UserError) as err:
        CorruptedDataset(clean, **arguments)
    assert_one_line(err, *parts)


@pytest.mark.parametrize("name", ALL)
def test_registered_corruptions_agree_with_the_batched_call(clean, name):
    list_corruptions()
    if name not in corruption_registry._CORRUPTIONS:
        pytest.skip(f"{name} is not implemented yet")
    view = CorruptedDataset(clean, name, 3, seed=5)
    indices = [4, 0, 2]
    batch = corrupt_indexed(stacked(clean, indices), indices, name, 3, seed=5)
    assert torch.allclose(batch, stacked(view, indices), atol=1e-5)
    assert torch.equal(stacked(view, indices), stacked(CorruptedDataset(clean, name, 3, seed=5), indices))
