"""The embedded dataset's body_evidence knob (cutmix_eval.data.synthetic) and the probe of
where its class evidence lives (cutmix_eval.data.evidence)."""

import hashlib

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from cutmix_eval.data import create_dataset
from cutmix_eval.data import synthetic as S
from cutmix_eval.data.evidence import evidence_probe, part_only
from cutmix_eval.errors import UserError

#: SHA-256 over images, labels, boxes, masks and part masks of 300 images, recorded from the
#: generator as it was before body_evidence existed: b = 0 must reproduce them byte for byte
BEFORE_THE_KNOB = {
    ("synthetic", "train", 64): "61b60c21ea30123d0cf7b9a4e02e93277d158ccc52db9dba027028b8e59d0023",
    ("synthetic", "test", 64): "95a9124104557ea6f6f6620ce3e7342cd5fdcacdf3e15c4c346125a09d146dbe",
    ("synthetic-shift", "test", 48): "dc879510ee44fda814e0aa345a702d9278c289ecc6ab5a5bd47c5108b55f3d8d",
    ("synthetic-unseen", "test", 48): "af62b04072d4722d0bed0127c00c1e7ead8d6be9d08933f45b70791cc160a3e7",
}
FIELDS = ("images", "labels", "boxes", "masks", "part_masks")


def digest(data: S.Generated) -> str:
    sha = hashlib.sha256()
    for field in FIELDS:
        sha.update(getattr(data, field).tobytes())
    return sha.hexdigest()


def generated(name="synthetic", split="test", n=300, size=64, **kwargs):
    params = {"image_size": size, "seed": 0, "body_evidence": 0.0, **kwargs}
    if name != "synthetic-unseen":
        params.setdefault("num_classes", 10)
    return S.generate(name, split, n, cache=False, **params)


@pytest.mark.parametrize("name, split, size", list(BEFORE_THE_KNOB))
def test_no_body_evidence_is_the_generator_before_the_knob(name, split, size):
    assert digest(generated(name, split, size=size)) == BEFORE_THE_KNOB[name, split, size]


def test_synthetic_part_is_synthetic_at_zero_and_named_apart():
    part = create_dataset("synthetic-part", "train", num_samples=300, cache=False)
    assert digest(part.data) == BEFORE_THE_KNOB["synthetic", "train", 64]
    assert part.classes == create_dataset("synthetic", "train", num_samples=10, cache=False).classes
    assert part.identity["generated"] == "synthetic-part" and part.identity["body_evidence"] == 0.0
    default = create_dataset("synthetic", num_samples=10, cache=False)
    assert default.identity["body_evidence"] == S.DEFAULT_BODY_EVIDENCE
    assert create_dataset("synthetic:body_evidence=1", num_samples=10, cache=False).identity["body_evidence"] == 1.0


def test_deterministic_and_only_the_body_changes_with_the_level():
    half = generated(body_evidence=0.5)
    assert digest(half) == digest(generated(body_evidence=0.5))
    zero, one = generated(), generated(body_evidence=1.0)
    assert np.array_equal(half.labels, zero.labels) and np.array_equal(one.labels, zero.labels)
    assert not np.array_equal(half.images, zero.images) and not np.array_equal(one.images, half.images)
    unseen_zero, unseen_one = generated("synthetic-unseen", size=48), generated("synthetic-unseen", size=48,
                                                                                body_evidence=1.0)
    assert not np.array_equal(unseen_zero.images, unseen_one.images)


@pytest.mark.parametrize("value", [-0.1, 1.5, "high", True, float("nan")])
def test_body_evidence_outside_zero_to_one_is_refused(value):
    for name in ("synthetic", "synthetic-shift", "synthetic-unseen"):
        with pytest.raises(UserError, match="body_evidence"):
            create_dataset(name, "test", num_samples=10, cache=False, body_evidence=value)
    with pytest.raises(UserError, match="no setting body_evidence"):
        create_dataset("synthetic-part:body_evidence=0.5", "test", num_samples=10, cache=False)


def test_levels_cache_apart_and_the_default_once(tmp_path, monkeypatch):
    monkeypatch.setenv(S.CACHE_ENV, str(tmp_path))
    for name in ("synthetic", "synthetic:body_evidence=0.5", "synthetic:body_evidence=0", "synthetic-part",
                 "synthetic:body_evidence=1"):
        create_dataset(name, num_samples=20)
    # the default is b = 0.5, and 0 is 0.0: three settings, three files
    assert len(list(tmp_path.iterdir())) == 3
    with monkeypatch.context() as patch:
        patch.setitem(S.BUILDERS, "synthetic", None)  # calling it would fail: everything comes from the cache
        assert create_dataset("synthetic", num_samples=20).identity["body_evidence"] == S.DEFAULT_BODY_EVIDENCE


def test_prototypes_are_fixed_spread_and_inside_the_shared_ranges():
    ten = S.body_prototypes(np.arange(10))
    twenty = S.body_prototypes(np.arange(20))
    assert all(np.array_equal(a[:10], b) for a, b in zip(twenty.shape, ten.shape))  # a function of k alone
    bounds = (S.ASPECT_RANGE, S.SQUARENESS_RANGE, S.TAPER_RANGE, S.STRIPE_FREQUENCY_RANGE)
    unit = np.stack([(v - lo) / (hi - lo) for v, (lo, hi) in zip((*ten.shape, ten.frequency), bounds)], 1)
    assert 0.1 <= unit.min() and unit.max() <= 0.9
    gaps = np.linalg.norm(unit[:, None] - unit[None], axis=-1)[np.triu_indices(10, 1)]
    assert gaps.min() > 0.25 and 3 <= ten.striped.sum() <= 7


def test_without_the_part_only_the_part_changes():
    params = {"image_size": 64, "num_classes": 10, "seed": 0, "body_evidence": 0.5}
    whole = S.generate("synthetic", "test", 100, cache=False, **params)
    bare = S.generate("synthetic", "test", 100, cache=False, draw_parts=False, **params)
    assert all(np.array_equal(getattr(whole, f), getattr(bare, f)) for f in FIELDS[1:])
    changed = (whole.images != bare.images).any(1)
    near_part = binary_dilation(whole.part_masks.astype(bool), structure=np.ones((1, 3, 3)))
    assert not (changed & ~near_part).any()
    assert changed.any((1, 2)).all()  # every image loses its part
    with pytest.raises(TypeError):
        S.generate("synthetic-background", "test", 4, cache=False, draw_parts=False, image_size=32, seed=0)


def test_part_only_view_keeps_the_part_on_mean_grey():
    data = generated(n=20)
    view = part_only(data.images, data.part_masks)
    inside = data.part_masks.astype(bool)[:, None].repeat(3, 1)
    assert np.array_equal(view[inside], data.images[inside])
    grey = np.rint(data.images.mean((1, 2, 3)))
    assert np.all(view == np.where(inside, view, grey[:, None, None, None]))


def test_evidence_probe_smoke():
    result = evidence_probe(1.0, num_train=64, num_test=32, image_size=32, epochs=1)
    assert result["body_evidence"] == 1.0 and result["chance"] == 0.1
    assert all(0 <= result[view] <= 1 for view in ("whole", "part_only", "no_part"))
    assert set(result["seconds"]) == {"whole", "part_only", "no_part"}
    assert result == {**evidence_probe(1.0, num_train=64, num_test=32, image_size=32, epochs=1),
                      "seconds": result["seconds"]}  # deterministic
