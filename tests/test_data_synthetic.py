"""The embedded generated dataset (cutmix_eval.data.synthetic) and its OOD companions."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader
from torchvision.ops import masks_to_boxes
from torchvision.transforms import v2

from cutmix_eval.data import collate_samples, create_dataset, dataset_spec
from cutmix_eval.data import synthetic as S
from cutmix_eval.errors import UserError
from cutmix_eval.report.figures import sample_grid

N = 200  # samples per set in most tests: generation takes ~0.1 s


def make(name="synthetic", split="test", **kwargs):
    kwargs.setdefault("num_samples", N)
    return create_dataset(name, split, **kwargs)


@pytest.fixture(scope="module")
def test_set():
    return make(cache=False)


def same_arrays(a: S.Generated, b: S.Generated) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("images", "labels", "boxes", "masks",
                                                                      "part_masks"))


def test_same_seed_same_bytes_other_seed_or_split_differs():
    first, again = make(cache=False), make(cache=False)
    assert same_arrays(first.data, again.data)
    assert not np.array_equal(first.data.images, make(cache=False, seed=1).data.images)
    assert not np.array_equal(first.data.images, make(split="train", cache=False).data.images)


def test_sample_format(test_set):
    raw = test_set.load(0)
    assert raw["image"].dtype == torch.uint8 and raw["image"].shape == (3, 64, 64)
    sample = test_set[0]
    assert sample["image"].dtype == torch.float32 and 0 <= sample["image"].min() <= sample["image"].max() <= 1
    assert sample["index"] == 0 and 0 <= sample["label"] < 10
    assert sample["boxes"].shape == (1, 4) and tuple(sample["boxes"].canvas_size) == (64, 64)
    for key in ("mask", "part_mask"):
        assert sample[key].dtype == torch.uint8 and sample[key].shape == (64, 64)
        assert set(sample[key].unique().tolist()) == {0, 1}
    assert not (sample["part_mask"].bool() & ~sample["mask"].bool()).any()  # the part is part of the object
    assert test_set.has_boxes and test_set.has_masks and test_set.num_classes == 10
    assert len(test_set) == N and "synthetic" in repr(test_set)


def test_boxes_are_masks_to_boxes_and_objects_lie_inside(test_set):
    masks = torch.from_numpy(test_set.data.masks)
    # pixel-edge convention: masks_to_boxes (inclusive indices) + 1 on the far edges
    assert torch.equal(torch.from_numpy(test_set.data.boxes), masks_to_boxes(masks) + torch.tensor([0, 0, 1.0, 1.0]))
    border = torch.cat([masks[:, 0], masks[:, -1], masks[:, :, 0], masks[:, :, -1]], dim=1)
    assert not border.any()


def test_part_is_small_visible_and_objects_vary(test_set):
    masks, parts = test_set.data.masks.astype(bool), test_set.data.part_masks.astype(bool)
    part_pixels = parts.sum((1, 2))
    assert part_pixels.min() >= 4
    area_fraction = part_pixels / masks.sum((1, 2))
    assert 0.02 < area_fraction.mean() < 0.12 and area_fraction.max() < 0.25

    def extent(boxes):
        return np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) + 1

    object_extent = extent(test_set.data.boxes)
    extent_fraction = extent(S.boxes_from_masks(parts)) / object_extent
    assert 0.1 < extent_fraction.mean() < 0.3
    side = object_extent / 64  # objects of varied size and position
    assert side.min() < 0.45 and side.max() > 0.7
    centres = (test_set.data.boxes[:, :2] + test_set.data.boxes[:, 2:]) / 2
    assert centres.std(0).min() > 5


def test_classes_balanced_and_named_after_their_part():
    dataset = make(num_samples=205, num_classes=20, cache=False)
    counts = np.bincount(dataset.labels, minlength=20)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 205
    assert len(set(dataset.classes)) == 20
    assert dataset.classes[:2] == ["red-triangle", "yellow-disc"]
    designs = S.class_designs(20)
    assert len({(d.colour, d.shape) for d in designs}) == 20  # unique combinations...
    # ...of colours and shapes that several classes share
    assert len({d.colour for d in designs[:10]}) == 5 and len({d.shape for d in designs[:10]}) == 5


def test_train_and_test_differ_and_have_default_sizes():
    assert len(create_dataset("synthetic", "test", num_samples=None, cache=False, image_size=16)) == 2000
    train = make(split="train", cache=False)
    assert not np.array_equal(train.data.images, make(cache=False).data.images)


def test_cache_round_trip_and_corrupt_file_regenerated(tmp_path, monkeypatch):
    monkeypatch.setenv(S.CACHE_ENV, str(tmp_path))
    fresh = make(cache=True)
    files = list(tmp_path.iterdir())  # one file, no temporary left behind
    assert len(files) == 1 and files[0].name.startswith("synthetic-test-") and files[0].suffix == ".npz"

    def no_generation(*args):
        raise AssertionError("generated although cached")

    with monkeypatch.context() as patch:
        patch.setitem(S.BUILDERS, "synthetic", no_generation)
        assert same_arrays(make(cache=True).data, fresh.data)

    files[0].write_bytes(b"not a zip file")
    assert same_arrays(make(cache=True).data, fresh.data)  # regenerated...
    assert same_arrays(S._from_npz(files[0], N, 64), fresh.data)  # ...and rewritten

    make(seed=3, cache=False)
    assert len(list(tmp_path.iterdir())) == 1  # cache=False neither reads nor writes


def test_unwritable_cache_only_warns(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(S.CACHE_ENV, str(blocker / "cache"))
    with pytest.warns(UserWarning, match="cannot write the dataset cache"):
        assert len(make(num_samples=10)) == 10


@pytest.mark.parametrize("name", ["synthetic-unseen", "synthetic-background", "photos"])
def test_ood_companions(name):
    spec = dataset_spec(name)
    assert spec.kind == "ood" and spec.splits == ("test",) and spec.locate is None
    dataset = make(name, num_samples=24, cache=False, image_size=48)
    assert len(dataset) == 24 and dataset.classes == []
    samples = [dataset[i] for i in range(len(dataset))]
    assert {s["label"] for s in samples} == {-1}
    assert all(s["image"].shape == (3, 48, 48) for s in samples)
    assert ("mask" in samples[0]) == (name == "synthetic-unseen") == dataset.has_boxes
    assert np.array_equal(dataset.data.images, make(name, num_samples=24, cache=False, image_size=48).data.images)
    assert dataset.data.images.reshape(24, -1).std(1).min() > 3  # every image has content


def test_unseen_parts_differ_from_training_parts():
    train, unseen = S.class_designs(50), S.unseen_designs()
    assert not {d.shape for d in train} & {d.shape for d in unseen}
    assert not {d.name for d in train} & {d.name for d in unseen}
    objects = make("synthetic-unseen", num_samples=40, cache=False)
    assert objects.data.part_masks.sum((1, 2)).min() >= 4  # they do carry a part


def test_backgrounds_have_no_object_but_clutter():
    backgrounds = make("synthetic-background", num_samples=40, cache=False).data.images.astype(float)
    # colour varies within every image (smooth fields, texture, fragments)
    assert backgrounds.std((2, 3)).mean(1).min() > 4


def test_dataloader_batches_and_transforms_move_the_ground_truth():
    dataset = make(num_samples=10, cache=False, transform=v2.RandomHorizontalFlip(p=1.0))
    batch = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate_samples)))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["label"].shape == (4,)
    assert batch["mask"].shape == (4, 64, 64) and len(batch["boxes"]) == 4
    flipped = torch.from_numpy(dataset.data.masks[:4]).flip(-1)
    assert torch.equal(batch["mask"], flipped)
    # pixel-edge boxes follow v2's continuous geometry exactly: still the flipped mask's box
    expected = masks_to_boxes(flipped) + torch.tensor([0, 0, 1.0, 1.0])
    assert torch.equal(torch.cat(batch["boxes"]), expected)


def test_invalid_parameters_are_user_errors():
    for kwargs in ({"num_classes": 1}, {"num_classes": 51}, {"image_size": 8}, {"num_samples": 0}):
        with pytest.raises(UserError):
            make(cache=False, **kwargs)
    with pytest.raises(UserError):
        S.synthetic("val", None)


def colour_histograms(images: np.ndarray, regions: np.ndarray, bins: int = 4) -> np.ndarray:
    """Normalised ``bins**3`` RGB histograms of the pixels of each image inside its region."""
    quantised = images.astype(np.int64) // (256 // bins)
    codes = (quantised[:, 0] * bins + quantised[:, 1]) * bins + quantised[:, 2]
    hist = np.stack([np.bincount(c[r], minlength=bins ** 3) for c, r in zip(codes, regions)]).astype(float)
    return hist / np.maximum(hist.sum(1, keepdims=True), 1)


def shape_moments(masks: np.ndarray) -> np.ndarray:
    """Log of the first four Hu moments of each mask: shape descriptors that do not
    change with position, scale or rotation."""
    weights = masks.astype(float)
    y, x = np.mgrid[:masks.shape[1], :masks.shape[2]]
    area = weights.sum((1, 2))
    dx = x - ((weights * x).sum((1, 2)) / area)[:, None, None]
    dy = y - ((weights * y).sum((1, 2)) / area)[:, None, None]

    def eta(p, q):
        return (weights * dx ** p * dy ** q).sum((1, 2)) / area ** (1 + (p + q) / 2)

    n20, n02, n11, n30, n03, n21, n12 = (eta(2, 0), eta(0, 2), eta(1, 1), eta(3, 0), eta(0, 3), eta(2, 1),
                                         eta(1, 2))
    hu = [n20 + n02, (n20 - n02) ** 2 + 4 * n11 ** 2, (n30 - 3 * n12) ** 2 + (3 * n21 - n03) ** 2,
          (n30 + n12) ** 2 + (n21 + n03) ** 2]
    return np.log(np.stack(hu, axis=1) + 1e-6)


def linear_accuracy(features, train, test) -> float:
    """Test accuracy of a logistic regression on ``features(dataset.data)``."""
    fitted = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(features(train.data),
                                                                                   train.labels)
    return fitted.score(features(test.data), test.labels)


def body_pixels(d):
    return d.masks.astype(bool) & ~d.part_masks.astype(bool)


def body_features(d):
    """Colour histogram of the body's pixels and the silhouette's shape moments."""
    return np.hstack([colour_histograms(d.images, body_pixels(d)), shape_moments(d.masks)])


def test_part_carries_the_class_and_body_less():
    """At body_evidence 0 (synthetic-part), a linear classifier on the part's colours and
    shape finds the class; on the body's colours and the object's silhouette, only weakly;
    on the whole image's colours, no better (colour is no shortcut: two classes share each
    part colour)."""
    train = make("synthetic-part", split="train", num_samples=600, cache=False)
    test = make("synthetic-part", num_samples=400, cache=False)

    def accuracy(features):
        return linear_accuracy(features, train, test)

    def part_pixels(d):
        return d.part_masks.astype(bool)

    part = accuracy(lambda d: np.hstack([colour_histograms(d.images, part_pixels(d)), shape_moments(d.part_masks)]))
    body = accuracy(body_features)
    part_colours = accuracy(lambda d: colour_histograms(d.images, part_pixels(d)))
    whole = accuracy(lambda d: colour_histograms(d.images, np.ones_like(d.masks, dtype=bool)))
    assert part > 0.85
    assert 0.15 < body < part - 0.5
    assert 0.4 < part_colours < 0.8  # the colour narrows the class down to two
    assert whole < part - 0.5


def test_body_evidence_moves_the_class_into_the_body():
    """The same cheap classifier on the body's colours and silhouette does far better at
    body_evidence 1 than at 0: the body follows its class's hue and shape prototype."""
    def body_accuracy(level):
        train = make(split="train", num_samples=600, cache=False, body_evidence=level)
        return linear_accuracy(body_features, train, make(num_samples=400, cache=False, body_evidence=level))

    assert body_accuracy(1.0) > body_accuracy(0.0) + 0.3


def test_sample_grid_draws_boxes_and_mask_outlines(test_set):
    samples = [test_set[i] for i in range(5)]
    fig = sample_grid(torch.stack([s["image"] for s in samples]), [s["boxes"] for s in samples],
                      [s["mask"] for s in samples], titles=[test_set.classes[s["label"]] for s in samples],
                      ncols=3, row_labels=["first", "second"])
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    assert sum(len(ax.patches) for ax in fig.axes) == 5 and not fig.axes[5].axison
    assert fig.axes[0].get_title() == test_set.classes[samples[0]["label"]]
    with pytest.raises(ValueError):
        sample_grid(np.zeros((2, 64, 64)))
