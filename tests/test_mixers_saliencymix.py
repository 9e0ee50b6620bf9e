"""SaliencyMix and its saliency detector, against OpenCV and the official code.

OpenCV's saliency module is only in opencv-contrib, which cannot sit beside the project's
opencv-python (both are ``cv2``); it is installed on its own, for these tests only:

    .venv/bin/pip install --no-deps --target .venv/opencv-contrib opencv-contrib-python-headless==5.1.0.95

and run in a subprocess with it first on ``PYTHONPATH``. The subprocess also runs the
official SaliencyMix step (afm-shahab-uddin/SaliencyMix, ``SaliencyMix_CIFAR/saliencymix.py``,
retyped below) with ``np.random`` and ``torch`` seeded, and hands back its draws and output.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from cutmix_eval.errors import UserError
from cutmix_eval.train.mixers.saliencymix import (SaliencyMix, detector_images, draw_saliencymix, saliency_boxes,
                                                  saliencymix)
from cutmix_eval.train.mixing import kept_fraction
from cutmix_eval.train.saliency import (blur3, centre_surround, centre_values, fine_grained_saliency, integral_image,
                                        saliency_peaks, scale_to_byte, to_gray)

CONTRIB = Path(__file__).resolve().parents[1] / ".venv" / "opencv-contrib"
INSTALL = ".venv/bin/pip install --no-deps --target .venv/opencv-contrib opencv-contrib-python-headless==5.1.0.95"
MEAN = tuple(v / 255 for v in (125.3, 123.0, 113.9))  # the official CIFAR normalization
STD = tuple(v / 255 for v in (63.0, 62.1, 66.7))

#: image sizes whose maps are compared with OpenCV's (both paths), tails and borders included
MAP_SIZES = [(1, 1), (1, 6), (6, 1), (5, 12), (13, 7), (9, 29), (32, 32), (24, 40), (64, 64)]
#: (batch, height, width, seed) of the official runs replayed
REPLAYS = [(1, 32, 32, 0), (2, 32, 32, 1), (7, 32, 32, 2), (8, 32, 32, 3), (7, 24, 40, 4), (5, 40, 24, 5),
           (8, 32, 32, 6), (8, 32, 32, 7)]
KS_IMAGES = 8

OPENCV_SIDE = textwrap.dedent('''
    import sys
    import cv2
    import numpy as np
    import torch

    def saliency_bbox(img, lam):  # the official saliency_bbox, np.int -> int
        size = img.size()
        W = size[1]
        H = size[2]
        cut_rat = np.sqrt(1. - lam)
        cut_w = int(W * cut_rat)
        cut_h = int(H * cut_rat)
        temp_img = img.cpu().numpy().transpose(1, 2, 0)
        saliency = cv2.saliency.StaticSaliencyFineGrained_create()
        (success, saliencyMap) = saliency.computeSaliency(temp_img)
        saliencyMap = (saliencyMap * 255).astype("uint8")
        maximum_indices = np.unravel_index(np.argmax(saliencyMap, axis=None), saliencyMap.shape)
        x = maximum_indices[0]
        y = maximum_indices[1]
        bbx1 = np.clip(x - cut_w // 2, 0, W)
        bby1 = np.clip(y - cut_h // 2, 0, H)
        bbx2 = np.clip(x + cut_w // 2, 0, W)
        bby2 = np.clip(y + cut_h // 2, 0, H)
        return bbx1, bby1, bbx2, bby2

    def quantized_map(image):  # HWC, as saliency_bbox computes it
        ok, saliency_map = cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(image)
        assert ok
        return (saliency_map * 255).astype("uint8")

    def official_step(images, seed, beta=1.0, prob=1.0):  # the official training step's mixing
        np.random.seed(seed)
        torch.manual_seed(seed)
        r = np.random.rand(1)
        assert beta > 0 and r < prob
        lam = np.random.beta(beta, beta)
        rand_index = torch.randperm(images.size()[0])
        bbx1, bby1, bbx2, bby2 = saliency_bbox(images[rand_index[0]], lam)
        images[:, :, bbx1:bbx2, bby1:bby2] = images[rand_index, :, bbx1:bbx2, bby1:bby2]
        corrected = 1 - ((bbx2 - bbx1) * (bby2 - bby1) / (images.size()[-1] * images.size()[-2]))
        return lam, rand_index.numpy(), np.array([bbx1, bbx2, bby1, bby2]), corrected, images.numpy()

    inputs = dict(np.load(sys.argv[1]))
    out = {"ipp": np.array(cv2.ipp.getIppVersion())}
    for key, image in inputs.items():
        if key.startswith("map/"):
            out[key] = quantized_map(image)
        elif key.startswith("replay/"):
            lam, perm, box, corrected, mixed = official_step(torch.from_numpy(image), int(key.split("/")[-1]))
            out.update({key + "/lam": np.array(lam), key + "/perm": perm, key + "/box": box,
                        key + "/corrected": np.array(corrected), key + "/mixed": mixed})
        elif key == "ks":
            out["ks/peaks"] = np.array([np.unravel_index(np.argmax(quantized_map(im.transpose(1, 2, 0))), im.shape[1:])
                                        for im in image])
    np.savez(sys.argv[2], **out)
''')


def _pixels(rng, batch, height, width):
    """Float32 images in [0, 1] with structure at several scales (smooth blobs and noise)."""
    coarse = torch.from_numpy(rng.random((batch, 3, height // 6 + 2, width // 6 + 2)).astype(np.float32))
    smooth = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return (0.75 * smooth + 0.25 * torch.from_numpy(rng.random((batch, 3, height, width)).astype(np.float32))).clamp(0, 1)


def _wrapping_disc():
    """A grey disc with a dot whose on + off response passes 255 (OpenCV's last step wraps)."""
    yy, xx = np.mgrid[:105, :105]
    r = np.hypot(yy - 52.5, xx - 52.5)
    return np.repeat(np.where(r < 4.9, 253, np.where(r < 23.5, 217, 215)).astype(np.uint8)[..., None], 3, 2)


def _map_inputs():
    """HWC images for OpenCV: ``u8/`` as detector_images(x, 'uint8'), ``f32/`` normalized."""
    rng = np.random.default_rng(0)
    images = {}
    for height, width in MAP_SIZES + [(224, 224)]:
        x = _pixels(rng, 1, height, width)
        if (height, width) != (224, 224):
            images[f"map/u8/{height}x{width}"] = detector_images(x, "uint8")[0].permute(1, 2, 0).numpy()
        images[f"map/f32/{height}x{width}"] = detector_images(x, "normalized", MEAN, STD)[0].permute(1, 2, 0).numpy()
    images["map/u8/constant"] = np.full((20, 30, 3), 77, np.uint8)
    images["map/f32/constant"] = np.zeros((20, 30, 3), np.float32)
    images["map/u8/wrapping"] = _wrapping_disc()
    return images


def _replay_pixels(batch, height, width, seed):
    return _pixels(np.random.default_rng(100 + seed), batch, height, width)


def _ks_pixels():
    """Source-coded images with structure: image i's pixels lie in [i / B, (i + 1) / B)."""
    pattern = _pixels(np.random.default_rng(7), KS_IMAGES, 32, 32)
    return (torch.arange(KS_IMAGES, dtype=torch.float32).view(-1, 1, 1, 1) + 0.25 + 0.5 * pattern) / KS_IMAGES


@pytest.fixture(scope="module")
def opencv(tmp_path_factory):
    """Everything OpenCV and the official code compute, in one subprocess."""
    if not CONTRIB.exists():
        if os.environ.get("CI"):
            pytest.fail(f"opencv-contrib missing at {CONTRIB}: run `{INSTALL}`")
        pytest.skip(f"opencv-contrib not installed at {CONTRIB}: run `{INSTALL}`")
    folder = tmp_path_factory.mktemp("opencv")
    inputs = _map_inputs()
    for batch, height, width, seed in REPLAYS:
        normalized = detector_images(_replay_pixels(batch, height, width, seed), "normalized", MEAN, STD)
        inputs[f"replay/{batch}/{height}/{width}/{seed}"] = normalized.numpy()
    inputs["ks"] = detector_images(_ks_pixels(), "normalized", MEAN, STD).numpy()
    np.savez(folder / "in.npz", **inputs)
    env = dict(os.environ, PYTHONPATH=str(CONTRIB), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", OPENCV_SIDE, str(folder / "in.npz"), str(folder / "out.npz")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return inputs, dict(np.load(folder / "out.npz"))


# ----------------------------------------------------------------------------- the detector


def test_saliency_maps_equal_opencvs_byte_for_byte(opencv):
    """Both of OpenCV's paths (8-bit images, and float32 ones as SaliencyMix passes them),
    every size class (1 pixel, widths below 4 and 8, tails after 8-column runs), the
    all-zero map and the wrapping last step: the official ``(map * 255).astype(uint8)``
    equals our map exactly, so the argmax is the same."""
    inputs, out = opencv
    assert {k for k in inputs if k.startswith("map/")} <= set(out)
    for key in (k for k in inputs if k.startswith("map/")):
        ours = fine_grained_saliency(torch.from_numpy(inputs[key]).permute(2, 0, 1)[None])[0].numpy()
        theirs = out[key]
        assert np.array_equal(ours, theirs), (
            f"{key}: {(ours != theirs).sum()} of {ours.size} pixels differ, max {np.abs(ours - theirs.astype(int)).max()}"
            f" (OpenCV's IPP dispatch here: {out['ipp']}; the float32 path follows the AVX2 build's rounding)")
    assert out["map/u8/constant"].max() == 0 and out["map/f32/constant"].max() == 0
    gray = blur3(blur3(to_gray(torch.from_numpy(inputs["map/u8/wrapping"]).permute(2, 0, 1)[None])))
    on, off = centre_surround(integral_image(gray), centre_values(gray))
    assert (scale_to_byte(on) + scale_to_byte(off) > 255).any()  # the wrap is exercised


def test_a_batch_gives_each_images_own_map(opencv):
    inputs, _ = opencv
    image = torch.from_numpy(inputs["map/f32/32x32"]).permute(2, 0, 1)
    images = torch.stack([image, image.flip(-1), image.flip(-2)])
    maps = fine_grained_saliency(images)
    for i in range(3):
        assert torch.equal(maps[i], fine_grained_saliency(images[i:i + 1])[0])


def test_peaks_are_the_first_maximum_in_row_major_order():
    maps = torch.zeros(3, 4, 5, dtype=torch.uint8)
    maps[0, 2, 1] = maps[0, 2, 3] = maps[0, 3, 0] = 9
    maps[1, 0, 4] = 1
    rows, cols = saliency_peaks(maps)
    assert rows.tolist() == [2, 0, 0] and cols.tolist() == [1, 4, 0]


# ----------------------------------------------------------------------------- the official code


def test_replay_of_the_official_step_is_bit_equal(opencv):
    """The official draws (np.random.beta, torch.randperm) fed to our composition: the same
    box, the same corrected lambda, and the same mixed batch (the official code pastes
    normalized images; pasting commutes with the per-channel normalization, bit for bit)."""
    _, out = opencv
    for batch, height, width, seed in REPLAYS:
        key = f"replay/{batch}/{height}/{width}/{seed}"
        x = _replay_pixels(batch, height, width, seed)
        y = torch.arange(batch) % 5
        lam, perm = float(out[key + "/lam"]), out[key + "/perm"]
        mixed, targets = saliencymix(x, y, lam, perm, 5, detector_images(x, "normalized", MEAN, STD))
        assert torch.equal(detector_images(mixed, "normalized", MEAN, STD), torch.from_numpy(out[key + "/mixed"])), key
        source = detector_images(x[torch.as_tensor(perm[:1])], "normalized", MEAN, STD)
        rows, cols = saliency_peaks(fine_grained_saliency(source))
        box = saliency_boxes(rows[0], cols[0], height, width, lam)
        assert box.tolist() == out[key + "/box"].tolist(), key
        corrected = float(out[key + "/corrected"])
        assert float(kept_fraction(box, height, width)) == corrected
        one_hot = F.one_hot(y, 5).float()
        lam_t = torch.tensor(corrected, dtype=torch.float32)
        assert torch.equal(targets, lam_t * one_hot + (1 - lam_t) * one_hot[torch.as_tensor(perm)]), key


def _official_areas(peaks, height, width, draws, seed):
    """Pasted areas of the official sampling (np.random coin and beta, torch.randperm) with
    the box around the OpenCV peak of image ``rand_index[0]``."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    areas = []
    for _ in range(draws):
        r = np.random.rand(1)
        assert r < 1.0
        lam = np.random.beta(1.0, 1.0)
        rand_index = torch.randperm(len(peaks))
        x, y = peaks[int(rand_index[0])]
        cut_w, cut_h = int(height * np.sqrt(1. - lam)), int(width * np.sqrt(1. - lam))
        bbx1, bbx2 = np.clip(x - cut_w // 2, 0, height), np.clip(x + cut_w // 2, 0, height)
        bby1, bby2 = np.clip(y - cut_h // 2, 0, width), np.clip(y + cut_h // 2, 0, width)
        areas.append(int((bbx2 - bbx1) * (bby2 - bby1)))
    return np.array(areas)


def test_pasted_area_distribution_matches_the_official_sampling(opencv):
    """Two-sample KS of the pasted area (integer pixel counts): our mixer on source-coded
    images against the official sampling over the same images' OpenCV peaks."""
    _, out = opencv
    x = _ks_pixels()
    mixer = SaliencyMix(KS_IMAGES, np.random.default_rng(3), prob=1.0, mean=MEAN, std=STD)
    y = torch.arange(KS_IMAGES)
    ours = []
    for _ in range(500):
        mixed, _ = mixer(x, y)
        sources = (mixed[:, 0] * KS_IMAGES).floor().long()
        ours.append(int((sources != y.view(-1, 1, 1)).sum((1, 2)).max()))
    official = _official_areas(out["ks/peaks"], 32, 32, 1500, seed=0)
    assert stats.ks_2samp(ours, official).pvalue > 0.001


# ----------------------------------------------------------------------------- the composition


def _sources(mixed, batch):
    """Fraction of each image's pixels from each source image (pixels of image i lie in
    ``[i / B, (i + 1) / B)``): B x B."""
    flat = (mixed[:, 0] * batch).floor().long().reshape(mixed.shape[0], -1)
    return torch.stack([torch.bincount(row, minlength=batch) for row in flat]).float() / flat.shape[1]


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("detector_input", ["normalized", "uint8"])
@pytest.mark.parametrize("batch", [1, 2, 7])
def test_targets_equal_the_pixel_composition_exactly(batch, detector_input, per_sample):
    pattern = _pixels(np.random.default_rng(batch), batch, 13, 17)
    x = (torch.arange(batch, dtype=torch.float32).view(-1, 1, 1, 1) + 0.25 + 0.5 * pattern) / batch
    mixer = SaliencyMix(batch, np.random.default_rng(batch), prob=1.0, per_sample=per_sample,
                        detector_input=detector_input, mean=MEAN, std=STD)
    for _ in range(6):
        mixed, targets = mixer(x, torch.arange(batch))
        torch.testing.assert_close(targets, _sources(mixed, batch), rtol=0, atol=1e-6)


def test_per_sample_boxes_centre_on_each_partners_peak():
    """Brute force: per image, the partner's peak, its box from its own lambda, pasted."""
    x = _pixels(np.random.default_rng(5), 6, 20, 24).double()
    y = torch.arange(6)
    lam, perm = np.random.default_rng(1).beta(1, 1, 6), np.array([3, 0, 0, 5, 4, 1])
    detector = detector_images(x, "uint8")
    mixed, targets = saliencymix(x, y, lam, perm, 6, detector)
    for i in range(6):
        rows, cols = saliency_peaks(fine_grained_saliency(detector[perm[i]:perm[i] + 1]))
        y0, y1, x0, x1 = saliency_boxes(rows[0], cols[0], 20, 24, lam[i])
        expected = x[i].clone()
        expected[:, y0:y1, x0:x1] = x[perm[i], :, y0:y1, x0:x1]
        assert torch.equal(mixed[i], expected)
        kept = 1 - (y1 - y0) * (x1 - x0) / (20 * 24)
        assert targets[i, i] == pytest.approx(kept if perm[i] != i else 1.0, abs=1e-12)


def test_the_box_is_the_official_one_on_non_square_images():
    """Official names are swapped (``W = size[1]`` is the row count), but rows pair with rows."""
    box = saliency_boxes(np.int64(3), np.int64(30), 10, 40, 0.75)
    assert box.tolist() == [1, 5, 20, 40]  # rows 3 -/+ int(10 * .5) // 2, cols 30 -/+ int(40 * .5) // 2


# ----------------------------------------------------------------------------- the mixer


def test_probability_coin():
    rng = np.random.default_rng(0)
    assert all(draw_saliencymix(rng, 4, 1.0, 0.0) is None for _ in range(50))
    assert all(draw_saliencymix(rng, 4, 1.0, 1.0) is not None for _ in range(50))
    mixed = sum(draw_saliencymix(rng, 4, 1.0, 0.5) is not None for _ in range(400))
    assert stats.binomtest(mixed, 400, 0.5).pvalue > 0.001
    x, y = torch.rand(4, 3, 8, 8), torch.arange(4)
    never = SaliencyMix(4, np.random.default_rng(0), prob=0.0, mean=MEAN, std=STD)
    mixed_x, targets = never(x, y)
    assert torch.equal(mixed_x, x) and torch.equal(targets, torch.eye(4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [1, 3])
def test_shapes_dtypes_devices_and_seeds(batch, dtype):
    x = torch.rand(batch, 3, 10, 12, dtype=dtype)
    y = torch.randint(0, 4, (batch,))
    make = lambda: SaliencyMix(4, np.random.default_rng(9), prob=1.0, mean=MEAN, std=STD)  # noqa: E731
    mixed, targets = make()(x, y)
    assert mixed.shape == x.shape and mixed.dtype == dtype and mixed.device == x.device
    assert targets.shape == (batch, 4) and targets.dtype == dtype
    torch.testing.assert_close(targets.sum(1), torch.ones(batch, dtype=dtype))
    again = make()(x, y)
    assert torch.equal(mixed, again[0]) and torch.equal(targets, again[1])
    assert make().describe()["method"] == "saliencymix"


def test_bad_parameters_are_one_line_user_errors():
    rng = np.random.default_rng(0)
    for params, match in [({"beta": 0, "mean": MEAN, "std": STD}, "beta"),
                          ({"prob": 1.5, "mean": MEAN, "std": STD}, "prob"),
                          ({"detector_input": "gray", "mean": MEAN, "std": STD}, "detector_input"),
                          ({}, "mean and std"),
                          ({"mean": MEAN, "std": (0.2, 0.0, 0.2)}, "std > 0")]:
        with pytest.raises(UserError, match=match) as err:
            SaliencyMix(3, rng, **params)
        assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="channels"):
        SaliencyMix(3, rng, prob=1.0, mean=MEAN, std=STD)(torch.rand(2, 4, 8, 8), torch.tensor([0, 1]))
    SaliencyMix(3, rng, detector_input="uint8")  # needs no normalization
