"""Natural distribution shift sets, read back from tiny copies in their released layouts.

CIFAR-10.1: ``cifar10.1_<v>_{data,labels}.npy`` (uint8 N x 32 x 32 x 3 and int32 labels, as in
modestyachts/CIFAR-10.1 ``datasets/``); CIFAR-10.2: ``cifar102_<split>.npz`` with the released
keys; ImageNetV2: ``imagenetv2-<variant>-format-val/<class index>/<hash>.jpeg``; ImageNet-A/-R:
``imagenet-{a,r}/<wnid>/*.jpg``; ImageNet-Sketch: ``sketch/<wnid>/*.JPEG``. Only the counts
are made up.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cutmix_eval.data import create_dataset, dataset_spec, list_datasets
from cutmix_eval.data.imagenet import imagenet_wnids
from cutmix_eval.data.shift import SUBSETS, subset_mask, subset_wnids
from cutmix_eval.errors import DatasetNotFoundError, UserError
from conftest import assert_one_line

WNIDS = imagenet_wnids()


def cifar_arrays(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    images[0, 1, 2] = (10, 20, 30)  # row 1, column 2 of image 0
    return images, rng.integers(0, 10, count).astype(np.int32)


def jpeg(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="JPEG", quality=100, subsampling=0)
    return path


# ------------------------------------------------------------------------------------------- CIFAR

@pytest.mark.parametrize("version, folder", [("v6", "cifar10.1"), ("v4", "CIFAR-10.1/datasets"), ("v6", "")])
def test_cifar101_reads_the_released_npy_pair(tmp_path, version, folder):
    images, labels = cifar_arrays(5, 1)
    (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    np.save(tmp_path / folder / f"cifar10.1_{version}_data.npy", images)
    np.save(tmp_path / folder / f"cifar10.1_{version}_labels.npy", labels)
    ds = create_dataset(f"cifar10.1-{version}", "test", root=tmp_path)
    assert len(ds) == 5 and ds.name == f"cifar10.1-{version}" and ds.classes == tuple("0123456789")
    assert ds.labels.tolist() == labels.tolist()
    sample = ds[0]
    assert sample["image"].shape == (3, 32, 32) and sample["image"].dtype == torch.float32
    assert (sample["image"][:, 1, 2] * 255).round().tolist() == [10, 20, 30]
    assert torch.equal((ds[3]["image"] * 255).round().to(torch.uint8), torch.from_numpy(images[3]).permute(2, 0, 1))
    if version == "v6":
        assert create_dataset("cifar10.1", "test", root=tmp_path).name == "cifar10.1-v6"  # the recommended version


def test_cifar_shift_sets_take_cifar10s_class_names_when_it_is_there(tmp_path):
    from test_data_loaders import make_cifar10

    make_cifar10(tmp_path)
    images, labels = cifar_arrays(2, 0)
    np.save(tmp_path / "cifar10.1_v6_data.npy", images)
    np.save(tmp_path / "cifar10.1_v6_labels.npy", labels)
    assert create_dataset("cifar10.1-v6", "test", root=tmp_path).classes[9] == "truck"


@pytest.mark.parametrize("split", ["test", "train"])
def test_cifar102_reads_the_released_npz_keys(tmp_path, split):
    images, labels = cifar_arrays(4, 2)
    folder = tmp_path / "cifar-10.2"
    folder.mkdir()
    np.savez(folder / f"cifar102_{split}.npz", images=images, labels=labels.astype(np.int64),
             label_names=np.array(["airplane", "automobile"]), ti_indices=np.arange(4), keywords=np.array(["a"] * 4))
    ds = create_dataset("cifar10.2", split, root=tmp_path)
    assert len(ds) == 4 and ds.labels.tolist() == labels.tolist()
    assert (ds[0]["image"][:, 1, 2] * 255).round().tolist() == [10, 20, 30]


def test_cifar_shift_errors_are_one_line(tmp_path):
    images, labels = cifar_arrays(3, 0)
    np.save(tmp_path / "cifar10.1_v4_data.npy", images)
    with pytest.raises(DatasetNotFoundError) as err:  # labels missing
        create_dataset("cifar10.1-v4", "test", root=tmp_path)
    assert_one_line(err, "cifar10.1_v4_labels.npy", str(tmp_path / "cifar10.1"), "CIFAR-10.1/datasets")
    np.save(tmp_path / "cifar10.1_v4_labels.npy", labels[:2])
    with pytest.raises(UserError) as err:
        create_dataset("cifar10.1-v4", "test", root=tmp_path)
    assert_one_line(err, "2 labels", "3 images")
    np.save(tmp_path / "cifar10.1_v4_labels.npy", labels + 10)
    with pytest.raises(UserError) as err:
        create_dataset("cifar10.1-v4", "test", root=tmp_path)
    assert_one_line(err, "0..9")
    np.save(tmp_path / "cifar10.1_v4_data.npy", images.astype(np.float32))
    with pytest.raises(UserError) as err:
        create_dataset("cifar10.1-v4", "test", root=tmp_path)
    assert_one_line(err, "float32", "uint8")
    np.savez(tmp_path / "cifar102_test.npz", data=images, labels=labels)
    with pytest.raises(UserError) as err:
        create_dataset("cifar10.2", "test", root=tmp_path)
    assert_one_line(err, "no images array", "cifar102_test.npz")
    np.savez(tmp_path / "cifar102_test.npz", images=images, labels=labels[:1])
    with pytest.raises(UserError) as err:
        create_dataset("cifar10.2", "test", root=tmp_path)
    assert_one_line(err, "1 labels", "3 images")
    with pytest.raises(DatasetNotFoundError) as err:
        create_dataset("cifar10.2", "train", root=tmp_path)
    assert_one_line(err, "cifar10.2: not found", "cifar102_train.npz")


# -------------------------------------------------------------------------------------- ImageNetV2

@pytest.mark.parametrize("variant", ["matched-frequency", "threshold0.7", "top-images"])
def test_imagenetv2_class_folders_are_integers_not_strings(tmp_path, variant):
    folder = tmp_path / f"imagenetv2-{variant}-format-val"
    for cls, colour in ((1, (255, 0, 0)), (10, (0, 255, 0)), (2, (0, 0, 255)), (999, (9, 9, 9))):
        jpeg(folder / str(cls) / f"{cls:040x}.jpeg", colour)
    ds = create_dataset(f"imagenetv2-{variant}", "test", root=tmp_path)
    assert ds.labels == [1, 2, 10, 999]  # class-index order; folder "10" is class 10, not after "1"
    assert ds.num_classes == 1000 and ds.classes == WNIDS
    assert [p.parent.name for p, _ in ds.samples] == ["1", "2", "10", "999"]
    sample = ds[2]
    assert sample["label"] == 10 and sample["image"].shape == (3, 224, 224)
    assert (sample["image"][:, 112, 112] * 255).round().tolist() == pytest.approx([0, 255, 0], abs=3)
    assert create_dataset(f"imagenetv2-{variant}", "test", root=tmp_path, transform=None)[0]["image"].shape == \
        (3, 30, 40)


def test_imagenetv2_alias_nesting_and_bad_folders(tmp_path):
    folder = tmp_path / "imagenetv2" / "imagenetv2-matched-frequency-format-val"
    jpeg(folder / "0" / "a.jpeg", (1, 2, 3))
    assert create_dataset("imagenetv2", "test", root=tmp_path).labels == [0]
    for bad in ("n01440764", "1000", "010"):
        jpeg(folder / bad / "b.jpeg", (1, 2, 3))
        with pytest.raises(UserError) as err:
            create_dataset("imagenetv2", "test", root=tmp_path)
        assert_one_line(err, str(folder / bad), "0-999")
        (folder / bad / "b.jpeg").unlink()
        (folder / bad).rmdir()


# ------------------------------------------------------------------------------ ImageNet-A, -R, -Sketch

@pytest.mark.parametrize("name", sorted(SUBSETS))
def test_the_200_class_wnid_lists(name):
    wnids = subset_wnids(name)
    mask = subset_mask(name)
    assert len(wnids) == len(set(wnids)) == 200 and list(wnids) == sorted(wnids) and set(wnids) <= set(WNIDS)
    assert mask.dtype == np.int64 and mask.shape == (200,) and list(mask) == sorted(mask)
    assert [WNIDS[i] for i in mask] == list(wnids)
    first = {"imagenet-a": ("n01498041", 6), "imagenet-r": ("n01443537", 1)}[name]  # the authors' first kept class
    assert (wnids[0], mask[0]) == first


@pytest.mark.parametrize("name", sorted(SUBSETS))
def test_imagenet_a_and_r_labels_and_mask(tmp_path, name):
    wnids = subset_wnids(name)
    folder = tmp_path / name
    jpeg(folder / wnids[0] / "a.jpg", (255, 0, 0))
    jpeg(folder / wnids[199] / "b.jpg", (0, 0, 255))
    jpeg(folder / wnids[5] / "c.jpg", (0, 255, 0))
    (folder / "README.txt").write_text("the released archive has a README beside the class folders\n")
    ds = create_dataset(name, "test", root=tmp_path)
    assert ds.labels == [0, 5, 199] and ds.num_classes == 200 and ds.classes == wnids
    assert np.array_equal(ds.class_mask, subset_mask(name))
    logits = torch.randn(3, 1000)
    restricted = logits[:, ds.class_mask]
    assert restricted.shape == (3, 200) and restricted[1, 5] == logits[1, WNIDS.index(wnids[5])]
    assert np.array_equal(logits.numpy()[:, ds.class_mask], restricted.numpy())
    assert ds[2]["image"].shape == (3, 224, 224)
    other = next(w for w in WNIDS if w not in wnids)
    for bad, words in ((other, "among"), ("n99999999", "among")):
        jpeg(folder / bad / "d.jpg", (1, 1, 1))
        with pytest.raises(UserError) as err:
            create_dataset(name, "test", root=tmp_path)
        assert_one_line(err, bad, words, "200 wnids")
        (folder / bad / "d.jpg").unlink()
        (folder / bad).rmdir()


@pytest.mark.parametrize("folder", ["sketch", "imagenet-sketch/sketch"])
def test_imagenet_sketch_has_1000_class_labels(tmp_path, folder):
    jpeg(tmp_path / folder / WNIDS[278] / "sketch_0.JPEG", (200, 200, 200))
    jpeg(tmp_path / folder / WNIDS[0] / "sketch_1.JPEG", (0, 0, 0))
    ds = create_dataset("imagenet-sketch", "test", root=tmp_path)
    assert ds.labels == [0, 278] and ds.num_classes == 1000
    jpeg(tmp_path / folder / "n99999999" / "x.JPEG", (0, 0, 0))
    with pytest.raises(UserError) as err:
        create_dataset("imagenet-sketch", "test", root=tmp_path)
    assert_one_line(err, "n99999999", "ImageNet-1k wnids")


# ------------------------------------------------------------------------------ class-mapped folder

@pytest.mark.parametrize("kind", ["json", "txt"])
def test_classmap_folder_labels_by_the_map(tmp_path, kind):
    mapping = {"wolf": 269, "kitfox": 278, "goldfish": 1}
    for cls in mapping:
        jpeg(tmp_path / cls / "0.jpg", (5, 5, 5))
    jpeg(tmp_path / "wolf" / "nested" / "1.jpg", (5, 5, 5))
    if kind == "json":
        (tmp_path / "class_map.json").write_text(json.dumps(mapping | {"absent": 3}))
    else:
        (tmp_path / "class_map.txt").write_text("".join(f"{k} {v}\n" for k, v in mapping.items()) + "\nabsent 3\n")
    ds = create_dataset("classmap-folder", "test", root=tmp_path)
    assert ds.labels == [1, 269, 269, 278] and ds.num_classes == 1000
    assert (tmp_path / f"class_map.{kind}") in ds.source_files()
    small = create_dataset("classmap-folder", "test", root=tmp_path, num_classes=279)
    assert small.num_classes == 279
    with pytest.raises(UserError) as err:
        create_dataset("classmap-folder", "test", root=tmp_path, num_classes=10)
    assert_one_line(err, "outside the model's classes", "0..9")


def test_classmap_folder_errors(tmp_path):
    jpeg(tmp_path / "cat" / "0.jpg", (5, 5, 5))
    jpeg(tmp_path / "dog" / "0.jpg", (5, 5, 5))
    with pytest.raises(DatasetNotFoundError) as err:
        create_dataset("classmap-folder", "test", root=tmp_path)
    assert_one_line(err, "class_map.json", "class_map.txt", str(tmp_path))
    (tmp_path / "class_map.json").write_text(json.dumps({"cat": 3}))
    with pytest.raises(UserError) as err:
        create_dataset("classmap-folder", "test", root=tmp_path)
    assert_one_line(err, "dog", "not in the class map")
    for text, words in (('{"cat": 3, "dog": "4"}', "not an integer"), ('{"cat": 3, "dog": -1}', "outside"),
                        ("[3, 4]", "JSON list"), ("{", "not JSON")):
        (tmp_path / "class_map.json").write_text(text)
        with pytest.raises(UserError) as err:
            create_dataset("classmap-folder", "test", root=tmp_path)
        assert_one_line(err, "class_map.json", words)
    path = tmp_path / "elsewhere.txt"
    for text, words in ("cat 3\ndog\n", ":2:"), ("cat 3\ncat 4\n", "mapped twice"):
        path.write_text(text)
        with pytest.raises(UserError) as err:
            create_dataset("classmap-folder", "test", root=tmp_path, class_map=path)
        assert_one_line(err, str(path), words)


# ---------------------------------------------------------------------------------- missing data

SHIFT_SETS = ["cifar10.1-v4", "cifar10.1-v6", "cifar10.2", "imagenetv2-matched-frequency", "imagenetv2-threshold0.7",
              "imagenetv2-top-images", "imagenet-a", "imagenet-r", "imagenet-sketch", "classmap-folder"]


def test_every_shift_set_is_registered():
    assert set(SHIFT_SETS) <= set(list_datasets())


@pytest.mark.parametrize("name", SHIFT_SETS)
def test_missing_shift_set_names_where_it_looked_and_the_layout(tmp_path, name):
    spec = dataset_spec(name)
    root = tmp_path / "no-data-here"
    with pytest.raises(DatasetNotFoundError) as err:
        create_dataset(name, "test", root=root)
    assert_one_line(err, str(root), spec.layout, name)
