"""OpenOOD v1.5 image lists, read back from a tiny OpenOOD data folder written in tmp.

The tree has OpenOOD's real layout and the cifar10 benchmark's real list names
(``benchmark_imglist/cifar10/{test,val}_cifar10.txt``, ``val_tin.txt``,
``test_{cifar100,tin,mnist,svhn,texture,places365}.txt``, ``test_cifar10c.txt``);
images sit in ``images_classic/<dataset>/...`` (dataset folder names as OpenOOD's
download script makes them; the paths below them are made up).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cutmix_eval.data import create_dataset, dataset_spec
from cutmix_eval.data.openood import (BENCHMARKS, Benchmark, openood_benchmark, openood_set_names,
                                      read_imglist)
from cutmix_eval.errors import DatasetNotFoundError, UserError
from conftest import assert_one_line, pixels


def image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.new("RGB", size, colour)
    if path.suffix == ".jpg":
        picture.save(path, quality=100, subsampling=0)
    else:
        picture.save(path)


def imglist(folder: Path, name: str, lines: list[str]) -> Path:
    path = folder / "benchmark_imglist" / "cifar10" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def openood_tree(folder: Path) -> Path:
    """A cifar10 benchmark: 3 ID test images (labels 0, 1, 9), 2 per OOD list."""
    classic = folder / "images_classic"
    image(classic / "cifar10/test/airplane/0.png", (255, 0, 0))
    image(classic / "cifar10/test/automobile/1.png", (0, 255, 0))
    image(classic / "cifar10/test/truck/2.png", (0, 0, 255))
    imglist(folder, "test_cifar10.txt", ["cifar10/test/airplane/0.png 0", "cifar10/test/automobile/1.png 1",
                                         "cifar10/test/truck/2.png 9"])
    image(classic / "cifar10/train/cat/3.png", (9, 9, 9))
    imglist(folder, "val_cifar10.txt", ["cifar10/train/cat/3.png 3"])
    image(classic / "cifar10c/0_0.png", (5, 5, 5))
    imglist(folder, "test_cifar10c.txt", ["cifar10c/0_0.png 0"])
    for name in ("cifar100", "tin", "mnist", "svhn", "texture", "places365"):
        image(classic / f"{name}/test/a.png", (10, 20, 30))
        image(classic / f"{name}/test/b.jpg", (200, 100, 50), size=(64, 48))  # resized + cropped to 32
        imglist(folder, f"test_{name}.txt", [f"{name}/test/a.png -1", f"{name}/test/b.jpg -1"])
    image(classic / "tin/val/c.png", (1, 2, 3))
    imglist(folder, "val_tin.txt", ["tin/val/c.png -1"])
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    openood_tree(tmp_path / "openood")
    return tmp_path


def test_the_cifar10_lists_are_openoods_v15_ones():
    info = BENCHMARKS["cifar10"]
    assert list(info.groups["near"]) == ["cifar100", "tin"]
    assert list(info.groups["far"]) == ["mnist", "svhn", "texture", "places365"]
    assert info.groups["val"]["tin"].imglist == "benchmark_imglist/cifar10/val_tin.txt"
    assert info.groups["csid"]["cifar10c"].imglist == "benchmark_imglist/cifar10/test_cifar10c.txt"
    textures = BENCHMARKS["imagenet200"].groups["far"]["textures"]
    assert (textures.imglist, textures.images) == ("benchmark_imglist/imagenet200/test_textures.txt",
                                                    "images_classic/")
    assert BENCHMARKS["imagenet"].groups["near"]["ssb_hard"].images == "images_largescale/"
    assert openood_set_names("cifar100", "near") == ["openood-cifar100-near-cifar10", "openood-cifar100-near-tin"]


def test_id_list_samples_labels_and_size(root):
    data = create_dataset("openood-cifar10", "test", root=root)
    assert len(data) == 3 and data.num_classes == 10 and data.labels == [0, 1, 9]
    sample = data[2]
    assert sample["label"] == 9 and sample["index"] == 2
    assert tuple(sample["image"].shape) == (3, 32, 32)
    assert (pixels(sample)[:, 16, 16] == [0, 0, 255]).all()
    assert create_dataset("openood-cifar10", "val", root=root).labels == [3]


def test_ood_list_labels_are_minus_one_and_images_follow_the_cifar_geometry(root):
    data = create_dataset("openood-cifar10-far-texture", root=root)
    assert dataset_spec("openood-cifar10-far-texture").kind == "ood" and data.num_classes == 0
    samples = [data[0], data[1]]
    assert [s["label"] for s in samples] == [-1, -1]
    # 64 x 48 -> Resize(32) short side -> 42 x 32 -> CenterCrop(32)
    assert all(tuple(s["image"].shape) == (3, 32, 32) for s in samples)
    assert np.abs(pixels(samples[1])[:, 16, 16] - [200, 100, 50]).max() <= 3
    # image_size (what the ood command passes: the ID size) scales it
    assert tuple(create_dataset("openood-cifar10-far-texture", root=root, image_size=24)[1]["image"].shape) \
        == (3, 24, 24)


def test_the_benchmark_preset(root):
    bench = openood_benchmark("cifar10", root)
    assert isinstance(bench, Benchmark) and bench.folder == root / "openood"
    assert len(bench.id_test) == 3 and len(bench.id_val) == 1
    assert list(bench.ood_val) == ["tin"] and list(bench.near) == ["cifar100", "tin"]
    assert list(bench.far) == ["mnist", "svhn", "texture", "places365"] and bench.csid == {}
    assert list(bench.ood_sets()) == openood_set_names("cifar10", "near") + openood_set_names("cifar10", "far")
    full = openood_benchmark("cifar10", root / "openood", csid=True)  # the folder itself works too
    assert full.csid["cifar10c"].labels == [0] and full.csid["cifar10c"].num_classes == 10


def test_dict_literal_lines(tmp_path):
    folder = openood_tree(tmp_path)
    lines = ["cifar10/test/airplane/0.png {'label': 4, 'extra': [1, 2]}",
             "cifar10/test/truck/2.png  {\"label\": 7}", "", "cifar10/test/automobile/1.png 2"]
    path = imglist(folder, "mine.txt", lines)
    samples = read_imglist(path, folder / "images_classic", 10)
    assert [label for _, label in samples] == [4, 7, 2]
    assert samples[1][0] == folder / "images_classic/cifar10/test/truck/2.png"
    # OOD lists: the dict need not hold a label; every label is -1
    path = imglist(folder, "ood.txt", ["tin/test/a.png {'source': 'tin'}"])
    assert read_imglist(path, folder / "images_classic") == [(folder / "images_classic/tin/test/a.png", -1)]
    # an ID list needs the label
    path = imglist(folder, "nolabel.txt", ["cifar10/test/truck/2.png 1", "cifar10/test/truck/2.png {'x': 1}"])
    with pytest.raises(UserError) as err:
        read_imglist(path, folder / "images_classic", 10)
    assert_one_line(err, f"{path}:2:", "'label'")


@pytest.mark.parametrize("line, words", [
    ("cifar10/test/airplane/0.png", "expected '<image path"),
    ("cifar10/test/airplane/0.png cat", "integer label"),
    ("cifar10/test/airplane/0.png {'label': 1", "not a Python dict literal"),
    ("cifar10/test/airplane/0.png [1, 2]", "integer label"),
    ("cifar10/test/airplane/0.png {'label': 'one'}", "not an integer"),
    ("/etc/passwd 0", "absolute"),
])
def test_a_bad_line_is_one_line_naming_file_and_line(tmp_path, line, words):
    folder = openood_tree(tmp_path)
    path = imglist(folder, "bad.txt", ["cifar10/test/airplane/0.png 0", line])
    with pytest.raises(UserError) as err:
        read_imglist(path, folder / "images_classic", 10)
    assert_one_line(err, f"{path}:2:", words)


def test_a_malicious_dict_literal_is_refused_without_running(tmp_path, monkeypatch):
    folder = openood_tree(tmp_path)
    marker = tmp_path / "ran"
    calls = []
    monkeypatch.setattr("os.system", lambda *args: calls.append(args))
    for n, extra in enumerate([f"{{'label': __import__('os').system('touch {marker}')}}",
                               "{'label': (lambda: 1)()}", "{**__builtins__}"]):
        path = imglist(folder, f"evil{n}.txt", [f"cifar10/test/airplane/0.png {extra}"])
        with pytest.raises(UserError) as err:
            read_imglist(path, folder / "images_classic", 10)
        assert_one_line(err, f"{path}:1:", "only literals are read")
    assert not calls and not marker.exists()


def test_missing_image_names_list_line_and_path(root):
    folder = root / "openood"
    (folder / "images_classic/svhn/test/b.jpg").unlink()
    (folder / "images_classic/svhn/test/a.png").unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        create_dataset("openood-cifar10-far-svhn", root=root)
    assert_one_line(err, f"{folder}/benchmark_imglist/cifar10/test_svhn.txt:1:",
                    f"{folder}/images_classic/svhn/test/a.png not found", "1 more lines")


def test_an_id_label_out_of_range_is_one_line(root):
    path = imglist(root / "openood", "test_cifar10.txt", ["cifar10/test/airplane/0.png 0",
                                                          "cifar10/test/truck/2.png 10"])
    with pytest.raises(UserError) as err:
        create_dataset("openood-cifar10", root=root)
    assert_one_line(err, f"{path}:2:", "label 10", "0..9")
    imglist(root / "openood", "test_cifar10.txt", ["cifar10/test/truck/2.png -1"])
    with pytest.raises(UserError) as err:
        create_dataset("openood-cifar10", root=root)
    assert_one_line(err, ":1:", "label -1")


def test_an_absent_preset_names_what_is_missing_and_where_it_looked(tmp_path, root):
    with pytest.raises(DatasetNotFoundError) as err:
        openood_benchmark("cifar100", tmp_path / "empty")
    assert_one_line(err, "OpenOOD benchmark cifar100", f"{tmp_path}/empty (no such folder)",
                    f"{tmp_path}/empty/openood (no such folder)", "download.py")
    (root / "openood/benchmark_imglist/cifar10/test_mnist.txt").unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        openood_benchmark("cifar10", root)
    assert_one_line(err, f"{root} (lacks benchmark_imglist/, images_classic/)",
                    f"{root}/openood (lacks benchmark_imglist/cifar10/test_mnist.txt)")
    with pytest.raises(DatasetNotFoundError) as err:  # csid lists are needed only when asked for
        openood_benchmark("cifar10", tmp_path / "empty", csid=True)
    assert_one_line(err, "benchmark_imglist/")
    with pytest.raises(DatasetNotFoundError) as err:
        create_dataset("openood-cifar10-far-mnist", root=root)
    assert_one_line(err, "openood-cifar10-far-mnist: not found", "test_mnist.txt")
    with pytest.raises(UserError) as err:
        openood_benchmark("cifar1000", root)
    assert_one_line(err, "unknown OpenOOD benchmark", "cifar10, cifar100, imagenet200, imagenet")


def test_the_ood_command_builds_the_sets_by_name(root):
    from cutmix_eval.evaluate.ood import create_ood_sets

    id_set = create_dataset("openood-cifar10", root=root)
    sets = create_ood_sets(id_set, openood_set_names("cifar10", "near"), root=str(root))
    assert list(sets) == ["openood-cifar10-near-cifar100", "openood-cifar10-near-tin"]
    assert all(s[0]["label"] == -1 and tuple(s[0]["image"].shape) == (3, 32, 32) for s in sets.values())


def test_the_ood_command_on_a_v15_benchmark_reports_near_and_far_means(root, tmp_path, capsys):
    """`--in openood-cifar10 --out openood-cifar10-near --out openood-cifar10-far`: every near and far
    set by its group name, and OpenOOD's near-OOD / far-OOD means next to each set's numbers."""
    import json

    import torch

    from cutmix_eval.cli import main
    from cutmix_eval.models import create_model
    from cutmix_eval.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ckpt = save_checkpoint(create_model("gapnet:width=4", 10), tmp_path / "m.pth", method="cutmix")
    code = main(["ood", "--ckpt", str(ckpt), "--in", "openood-cifar10", "--data-root", str(root), "--out",
                 "openood-cifar10-near", "--out", "openood-cifar10-far", "--results", str(tmp_path / "r"), "--output-dir",
                 str(tmp_path / "o"), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    metrics = summary["msp"]["metrics"]
    near = [metrics[f"openood-cifar10-near-{s}/auroc"] for s in ("cifar100", "tin")]
    far = [metrics[f"openood-cifar10-far-{s}/auroc"] for s in ("mnist", "svhn", "texture", "places365")]
    assert metrics["near/auroc"] == pytest.approx(sum(near) / 2) and metrics["far/auroc"] == pytest.approx(sum(far) / 4)
    assert metrics["mean/auroc"] == pytest.approx(sum(near + far) / 6)
    # msp has nothing to tune: OpenOOD's validation set is named but no search runs
    assert summary["msp"]["config"]["tuning"]["searched"].startswith("no search")
    csv = (tmp_path / "o" / "msp-openood.csv").read_text().splitlines()
    assert csv[0] == ",FPR@95,AUROC,AUPR_IN,AUPR_OUT,ACC"
    assert [line.split(",")[0] for line in csv[1:]] == ["cifar100", "tin", "nearood", "mnist", "svhn", "texture",
                                                        "places365", "farood"]
    nearood = [float(v) for v in csv[3].split(",")[1:]]
    assert nearood == pytest.approx([100 * metrics[f"near/{m}"] for m in ("fpr95_ood_pos", "auroc", "aupr_in",
                                                                          "aupr_out")] + [100 * metrics["id/accuracy"]],
                                    abs=0.006)
