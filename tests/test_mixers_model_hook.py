"""Methods that need the model in the training step: the stages hidden-state mixing may
replace (hidden.py), Manifold Mixup, SnapMix and feature-level CutMix.

The "official" functions below are our own re-typing of the authors' algorithms with
their own random calls (np.random, python's random, torch.randperm), used as the
reference for distributions and for replaying draws."""

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from conftest import pixel_sources, source_coded
from cutmix_eval.errors import UserError
from cutmix_eval.models import Classifier, create_model
from cutmix_eval.models.classifier import GAPHeadMixin
from cutmix_eval.models.gapnet import GAPNet
from cutmix_eval.train.hidden import mixing_stages, replacing_output, stage_name
from cutmix_eval.train.mixers.feature_cutmix import FeatureCutMix, draw_cutmix
from cutmix_eval.train.mixers.manifold_mixup import ManifoldDraws, ManifoldMixup, draw_manifold, manifold_step
from cutmix_eval.train.mixers.snapmix import (SnapMix, SnapMixDraws, draw_snapmix, semantic_percentage_maps,
                                              snapmix_compose)
from cutmix_eval.train.mixing import CutMix, cutmix_boxes, kept_fraction, mix_targets, paste_boxes, soft_cross_entropy

K = 10


def _gapnet(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return create_model("gapnet:width=4", K).to(dtype)


def _batch(batch, size=16, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, size, size, generator=gen, dtype=dtype),
            torch.randint(0, K, (batch,), generator=gen))




class _CodedNet(GAPHeadMixin, nn.Module):
    """Keeps source-coded images source-coded: stage1 halves the map (average of equal
    values), stage2 is an identity 1 x 1 conv; ``tail`` (an identity) lets a test see
    stage2's output."""

    mixing_stages = ("stage1", "stage2")

    def __init__(self, num_classes):
        super().__init__()
        self.stage1 = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(3, 3, 1))
        self.stage2 = nn.Sequential(nn.Conv2d(3, 3, 1))
        self.tail = nn.Identity()
        self.fc = nn.Linear(3, num_classes)
        with torch.no_grad():
            for conv in (self.stage1[1], self.stage2[0]):
                conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
                conv.bias.zero_()

    def forward_features(self, x):
        return self.tail(self.stage2(self.stage1(x)))


def _coded_model(num_classes):
    return Classifier(_CodedNet(num_classes), arch="coded", num_classes=num_classes, mean=(0, 0, 0),
                      std=(1, 1, 1), input_size=(3, 13, 17))


def _seen_by(module):
    """Forward pre-hook recording what ``module`` is given: returns (list, handle)."""
    seen = []
    return seen, module.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0].detach().clone()))


# ----------------------------------------------------------------------------- stages (hidden.py)

STAGES = {
    "gapnet:width=4": ("body.2", "body.5", "body.8", "body.11", "body.14"),
    "cifar_resnet20": ("layer1", "layer2", "layer3"),
    "pyramidnet110": ("layer1", "layer2", "layer3"),
    "wrn28_10": ("block1", "block2", "block3"),
    "preactresnet18": ("layer1", "layer2", "layer3", "layer4"),
    "timm/resnet18": ("layer1", "layer2", "layer3", "layer4"),
    "torchvision/resnet18": ("layer1", "layer2", "layer3", "layer4"),
}


@pytest.mark.parametrize("arch", list(STAGES))
def test_stages_are_found_in_forward_order(arch):
    model = create_model(arch, K).eval()
    stages = mixing_stages(model)
    assert stages == STAGES[arch]
    order, handles = [], [model.net.get_submodule(name).register_forward_hook(
        lambda *_, name=name: order.append(name)) for name in stages]
    with torch.no_grad():
        model(torch.rand(2, 3, 16, 16))
    for handle in handles:
        handle.remove()
    assert tuple(order) == stages  # each once, in forward order
    assert stage_name(model, 1) == stages[0] and stage_name(model, len(stages)) == stages[-1]


def test_a_single_container_gives_its_children_and_plain_layer_containers_are_not_stages():
    vit = create_model("timm/vit_tiny_patch16_224", K)  # patch_embed holds only layers
    assert mixing_stages(vit) == tuple(f"blocks.{i}" for i in range(12))
    assert mixing_stages(create_model("densenet_bc", K)) == ("block1", "block2", "block3")  # not trans1, trans2


class _Undeclared(GAPNet):
    mixing_stages = None


class _Misdeclared(GAPNet):
    mixing_stages = ("body.2", "nope")


class _MlpHead(_CodedNet):
    def __init__(self, num_classes):
        super().__init__(num_classes)
        self.fc = nn.Sequential(nn.Linear(3, num_classes))


def _wrap(net):
    return Classifier(net, arch="toy", num_classes=K, mean=(0, 0, 0), std=(1, 1, 1), input_size=(3, 16, 16))


def test_a_net_without_stages_or_a_wrong_layer_is_one_line():
    with pytest.raises(UserError, match="layers are 0 .* to 5") as err:
        stage_name(create_model("gapnet:width=4", K), 6)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="'nope' is not a module"):
        mixing_stages(_wrap(_Misdeclared(K, width=4)))
    with pytest.raises(UserError, match="has no stages of blocks.*mixing_stages"):
        mixing_stages(_wrap(_Undeclared(K, width=4)))  # one container, of plain layers only


def test_replacing_output_once_and_the_hook_is_removed_even_on_error():
    model = _gapnet().eval()
    x, _ = _batch(2)
    stage = model.net.get_submodule("body.5")
    with replacing_output(model, "body.5", torch.zeros_like), torch.no_grad():
        zeroed = model(x)
    with torch.no_grad():
        expected = model.head(model.net.body[6:](torch.zeros(2, 8, 4, 4)).mean((2, 3)))
    assert torch.equal(zeroed, expected)
    assert not stage._forward_hooks
    with pytest.raises(KeyError), replacing_output(model, "body.5", torch.zeros_like):
        raise KeyError("an error inside the block")
    assert not stage._forward_hooks
    with pytest.raises(UserError, match="ran 2 times"), replacing_output(model, "body.5", lambda h: h):
        model(x)
        model(x)
    assert not stage._forward_hooks


# ----------------------------------------------------------------------------- Manifold Mixup


def _official_manifold_draws(seed, batch, alpha=2.0):
    """The official draws, in order: ``random.randint(0, 2)`` (layer), ``np.random.beta``
    (get_lambda, cast to float32), ``np.random.permutation`` (mixup_process)."""
    random.seed(seed)
    np.random.seed(seed)
    layer = random.randint(0, 2)
    lam = np.random.beta(alpha, alpha)
    return layer, lam, np.random.permutation(batch)


def _official_resnet20_forward(model, x, y, layer, lam, indices):
    """models/preresnet.py's forward with mixup_hidden, on cifar_resnet20's modules by hand
    (no hooks): mixup_process at the chosen layer; returns (logits, target_reweighted).
    Layer 0 mixes pixels, then the model normalizes (the official code mixes the
    normalized input: the same up to rounding, normalization being affine)."""
    lam = torch.from_numpy(np.array([lam]).astype("float32"))
    target = F.one_hot(y, K).float()

    def mixup_process(out, target):
        return out * lam + out[indices] * (1 - lam), target * lam + target[indices] * (1 - lam)

    net, out = model.net, x
    if layer == 0:
        out, target = mixup_process(out, target)
    out = net.layer1(net.relu(net.bn1(net.conv1(model.normalize(out)))))
    if layer == 1:
        out, target = mixup_process(out, target)
    out = net.layer2(out)
    if layer == 2:
        out, target = mixup_process(out, target)
    out = net.layer3(out)
    return net.fc(out.mean((2, 3))), target


def test_manifold_mixup_replays_the_official_forward_bit_for_bit():
    """Official draws fed to our step: the logits equal a hook-free forward run by hand,
    the targets the official target_reweighted; all three layers are hit."""
    torch.manual_seed(0)
    model = create_model("cifar_resnet20", K).eval()
    x, y = _batch(6)
    layers = set()
    for seed in range(8):
        layer, lam, perm = _official_manifold_draws(seed, 6)
        layers.add(layer)
        with torch.no_grad():
            logits, targets = manifold_step(model, model, x, y, ManifoldDraws(layer, lam, perm), K)
            official, official_targets = _official_resnet20_forward(model, x, y, layer, lam, torch.as_tensor(perm))
        assert torch.equal(logits, official) and torch.equal(targets, official_targets)
    assert layers == {0, 1, 2}


def test_manifold_mixup_training_step_draws_then_mixes():
    """The step equals its own draws replayed through the hand-run forward; targets are
    lam * onehot(y) + (1 - lam) * onehot(y[perm])."""
    torch.manual_seed(0)
    model = create_model("cifar_resnet20", K).eval()
    x, y = _batch(5)
    for seed in range(6):
        mixer = ManifoldMixup(K, np.random.default_rng(seed))
        with torch.no_grad():
            logits, targets = mixer.training_step(model, model, x, y)
        rng = np.random.default_rng(seed)
        layer, lam, perm = (0, 1, 2)[rng.integers(3)], rng.beta(2.0, 2.0), rng.permutation(5)
        with torch.no_grad():
            expected, _ = _official_resnet20_forward(model, x, y, layer, lam, torch.as_tensor(perm))
        assert torch.equal(logits, expected)
        one_hot = F.one_hot(y, K).double()
        torch.testing.assert_close(targets.double(), lam * one_hot + (1 - lam) * one_hot[perm], rtol=0, atol=1e-7)


def test_manifold_mixup_draws_follow_the_official_distribution():
    rng = np.random.default_rng(1)
    ours = [draw_manifold(rng, (0, 1, 2), 2.0, 4) for _ in range(3000)]
    random.seed(7)
    np.random.seed(7)
    official = [(random.randint(0, 2), np.random.beta(2.0, 2.0), np.random.permutation(4)) for _ in range(3000)]
    assert stats.ks_2samp([d.lam for d in ours], [d[1] for d in official]).pvalue > 0.001
    counts = [np.bincount(layers, minlength=3) for layers in ([d.layer for d in ours], [o[0] for o in official])]
    assert stats.chi2_contingency(counts).pvalue > 0.001


# ----------------------------------------------------------------------------- feature-level CutMix


@pytest.mark.parametrize("per_sample", [False, True])
def test_feature_cutmix_at_layer_0_is_cutmix(per_sample):
    """Same generator state: the same logits and targets as CutMix followed by the model,
    mixed and unmixed batches alike."""
    model = _gapnet().eval()
    x, y = _batch(7)
    mixed_batches = 0
    for seed in range(12):
        mixed, expected_targets = CutMix(K, np.random.default_rng(seed), prob=0.5, per_sample=per_sample)(x, y)
        mixed_batches += not torch.equal(mixed, x)
        mixer = FeatureCutMix(K, np.random.default_rng(seed), layer=0, per_sample=per_sample)
        with torch.no_grad():
            logits, targets = mixer.training_step(model, model, x, y)
            assert torch.equal(logits, model(mixed))
        assert torch.equal(targets, expected_targets)
    assert 0 < mixed_batches < 12


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("layer", [1, 2])
@pytest.mark.parametrize("batch", [1, 2, 7])
def test_feature_cutmix_targets_equal_the_feature_map_composition(batch, layer, per_sample):
    """Source-coded images through a net that keeps them source-coded: each label's
    weight is exactly its share of the mixed map (6 x 8, not the image's 13 x 17)."""
    model = _coded_model(batch)
    x, y = source_coded(batch, channels=3)
    after = model.net.stage2 if layer == 1 else model.net.tail
    mixer = FeatureCutMix(batch, np.random.default_rng(batch), layer=layer, prob=1.0, per_sample=per_sample)
    for _ in range(10):
        seen, handle = _seen_by(after)
        with torch.no_grad():
            _, targets = mixer.training_step(model, model, x, y)
        handle.remove()
        assert seen[0].shape[-2:] == (6, 8)
        torch.testing.assert_close(targets.double(), pixel_sources(seen[0], batch), rtol=0, atol=1e-7)


def _official_rand_bbox(size, lam):
    """CutMix-PyTorch train.py's rand_bbox (also SnapMix's utils/custom_ops.py): ``W`` is
    the size of dimension 2, drawn first."""
    W, H = size[2], size[3]
    cut_rat = np.sqrt(1.0 - lam)
    cut_w, cut_h = int(W * cut_rat), int(H * cut_rat)
    cx, cy = np.random.randint(W), np.random.randint(H)
    return (np.clip(cx - cut_w // 2, 0, W), np.clip(cy - cut_h // 2, 0, H),
            np.clip(cx + cut_w // 2, 0, W), np.clip(cy + cut_h // 2, 0, H))


def test_feature_cutmix_replays_official_cutmix_on_a_feature_map():
    """train.py's paste and lambda, run on a feature map (its draws: np.random, torch.randperm),
    replayed through our composition: bit-equal map, the same corrected lam."""
    h = torch.rand(5, 4, 6, 9)
    np.random.seed(3)
    torch.manual_seed(3)
    for _ in range(20):
        if not np.random.rand(1) < 0.5:
            continue
        lam = np.random.beta(1.0, 1.0)
        rand_index = torch.randperm(h.size(0))
        bbx1, bby1, bbx2, bby2 = _official_rand_bbox(h.size(), lam)
        official = h.clone()
        official[:, :, bbx1:bbx2, bby1:bby2] = h[rand_index, :, bbx1:bbx2, bby1:bby2]
        lam = 1 - ((bbx2 - bbx1) * (bby2 - bby1) / (h.size()[-1] * h.size()[-2]))
        boxes = np.array([bbx1, bbx2, bby1, bby2])  # official x is the row
        assert torch.equal(paste_boxes(h, rand_index, boxes), official)
        assert kept_fraction(boxes, 6, 9) == lam


def test_feature_cutmix_step_equals_a_hand_run_gapnet():
    """A gapnet forward run by hand, the box drawn on the stage's own map, equals the step."""
    model = _gapnet().eval()
    x, y = _batch(4)
    stages = mixing_stages(model)
    for layer in range(1, 6):
        mixer = FeatureCutMix(K, np.random.default_rng(layer), layer=layer, prob=1.0)
        with torch.no_grad():
            logits, targets = mixer.training_step(model, model, x, y)
        rng = np.random.default_rng(layer)
        rng.random()
        lam, perm = rng.beta(1.0, 1.0), torch.as_tensor(rng.permutation(4))
        cut = int(stages[layer - 1].split(".")[1]) + 1
        with torch.no_grad():
            h = model.net.body[:cut](model.normalize(x))
            boxes = cutmix_boxes(rng, h.shape[-2], h.shape[-1], lam)
            y0, y1, x0, x1 = boxes
            h[:, :, y0:y1, x0:x1] = h[perm, :, y0:y1, x0:x1].clone()
            expected = model.head(model.net.body[cut:](h).mean((2, 3)))
        assert torch.equal(logits, expected)
        assert torch.equal(targets, mix_targets(y, perm, kept_fraction(boxes, *h.shape[-2:]), K))


def test_feature_cutmix_areas_follow_the_official_distribution():
    """Pasted area on a 7 x 9 map and the share of mixed batches, against train.py's draws."""
    rng = np.random.default_rng(5)
    ours, official = [], []
    for _ in range(3000):
        draws = draw_cutmix(rng, 1.0, 0.5, 4, per_sample=False)
        ours.append(-1 if draws is None else 63 - round(kept_fraction(cutmix_boxes(rng, 7, 9, draws.lam), 7, 9) * 63))
    np.random.seed(5)
    for _ in range(3000):
        if not np.random.rand(1) < 0.5:
            official.append(-1)
            continue
        lam = np.random.beta(1.0, 1.0)
        bbx1, bby1, bbx2, bby2 = _official_rand_bbox((4, 3, 7, 9), lam)
        official.append((bbx2 - bbx1) * (bby2 - bby1))
    assert stats.ks_2samp(ours, official).pvalue > 0.001


# ----------------------------------------------------------------------------- SnapMix


def _official_get_spm(model, x, y):
    """utils/mixmethod.py get_spm, on our classifier (fms = the last feature map, clsw = head)."""
    with torch.no_grad():
        fms = model.features(x)
        weight = model.head.weight.data
        bias = model.head.bias.data
        weight = weight.view(weight.size(0), weight.size(1), 1, 1)
        fms = F.relu(fms)
        out = F.conv2d(fms, weight, bias=bias)
        outmaps = torch.stack([out[i, y[i]] for i in range(x.size(0))])
        outmaps = outmaps.view(outmaps.size(0), 1, outmaps.size(1), outmaps.size(2))
        outmaps = F.interpolate(outmaps, tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
        outmaps = outmaps.squeeze(1)  # the official squeeze() also drops a batch of one
        for i in range(x.size(0)):
            outmaps[i] -= outmaps[i].min()
            outmaps[i] /= outmaps[i].sum()
    return outmaps


def _official_snapmix(input, target, wfmaps, prob=1.0, beta=5.0):
    """utils/mixmethod.py snapmix with the maps given; returns its outputs and its draws."""
    input = input.clone()
    r = np.random.rand(1)
    lam_a = torch.ones(input.size(0))
    lam_b = 1 - lam_a
    target_b = target.clone()
    draws = None
    if r < prob:
        bs = input.size(0)
        lam = np.random.beta(beta, beta)
        lam1 = np.random.beta(beta, beta)
        rand_index = torch.randperm(bs)
        wfmaps_b = wfmaps[rand_index, :, :]
        target_b = target[rand_index]
        same_label = target == target_b
        bbx1, bby1, bbx2, bby2 = _official_rand_bbox(input.size(), lam)
        bbx1_1, bby1_1, bbx2_1, bby2_1 = _official_rand_bbox(input.size(), lam1)
        draws = SnapMixDraws(lam, lam1, rand_index.numpy(), np.array([bbx1, bbx2, bby1, bby2]),
                             np.array([bbx1_1, bbx2_1, bby1_1, bby2_1]))
        area = (bby2 - bby1) * (bbx2 - bbx1)
        area1 = (bby2_1 - bby1_1) * (bbx2_1 - bbx1_1)
        if area1 > 0 and area > 0:
            ncont = input[rand_index, :, bbx1_1:bbx2_1, bby1_1:bby2_1].clone()
            ncont = F.interpolate(ncont, size=(bbx2 - bbx1, bby2 - bby1), mode="bilinear", align_corners=True)
            input[:, :, bbx1:bbx2, bby1:bby2] = ncont
            lam_a = 1 - wfmaps[:, bbx1:bbx2, bby1:bby2].sum(2).sum(1) / (wfmaps.sum(2).sum(1) + 1e-8)
            lam_b = wfmaps_b[:, bbx1_1:bbx2_1, bby1_1:bby2_1].sum(2).sum(1) / (wfmaps_b.sum(2).sum(1) + 1e-8)
            tmp = lam_a.clone()
            lam_a[same_label] += lam_b[same_label]
            lam_b[same_label] += tmp[same_label]
            lam = 1 - ((bbx2 - bbx1) * (bby2 - bby1) / (input.size()[-1] * input.size()[-2]))
            lam_a[torch.isnan(lam_a)] = lam
            lam_b[torch.isnan(lam_b)] = 1 - lam
    return input, target, target_b, lam_a, lam_b, draws


def _maps(batch, height, width, seed=0, nan_rows=()):
    maps = torch.rand(batch, height, width, generator=torch.Generator().manual_seed(seed))
    maps = maps / maps.sum((1, 2), keepdim=True)
    maps[list(nan_rows)] = float("nan")  # a constant class activation map: 0 / 0 in get_spm
    return maps


@pytest.mark.parametrize("batch", [2, 7, 8])
def test_snapmix_replays_the_official_code_bit_for_bit(batch):
    """Non-square images (rows != columns: the official x is the row), repeated labels
    (the same-label fix-up) and a NaN map: the official draws replayed give the same image
    and the targets lam_a * onehot(y) + lam_b * onehot(y_b), bit for bit."""
    x, _ = _batch(batch, seed=batch)
    x = x[..., :12]
    y = torch.tensor([0, 1, 0, 1, 2, 0, 3, 1])[:batch]
    maps = _maps(batch, 16, 12, seed=batch, nan_rows=[1] if batch > 2 else [])
    np.random.seed(batch)
    torch.manual_seed(batch)
    pasted = 0
    for _ in range(15):
        official, _, target_b, lam_a, lam_b, draws = _official_snapmix(x, y, maps, prob=0.8)
        if draws is None:
            continue
        mixed, targets = snapmix_compose(x, y, maps, draws, K)
        assert torch.equal(mixed, official)
        one_hot = F.one_hot(y, K).float()
        assert torch.equal(targets, lam_a[:, None] * one_hot + lam_b[:, None] * F.one_hot(target_b, K).float())
        pasted += not torch.equal(mixed, x)
    assert pasted > 5


def _brute_force_weights(maps, y, draws):
    """SnapMix's label weights, one sample and one pixel at a time, in float64."""
    r0, r1, c0, c1 = (int(v) for v in draws.box)
    s0, s1, t0, t1 = (int(v) for v in draws.box1)
    height, width = maps.shape[1:]
    weights = []
    for i, j in enumerate(draws.perm):
        own = [[float(maps[i, r, c]) for c in range(width)] for r in range(height)]
        partner = [[float(maps[j, r, c]) for c in range(width)] for r in range(height)]
        inside = sum(own[r][c] for r in range(r0, r1) for c in range(c0, c1))
        taken = sum(partner[r][c] for r in range(s0, s1) for c in range(t0, t1))
        lam_a = 1 - inside / (sum(map(sum, own)) + 1e-8)
        lam_b = taken / (sum(map(sum, partner)) + 1e-8)
        if y[i] == y[j]:
            lam_a = lam_b = lam_a + lam_b
        kept = 1 - (r1 - r0) * (c1 - c0) / (height * width)
        weights.append((kept if np.isnan(lam_a) else lam_a, 1 - kept if np.isnan(lam_b) else lam_b, int(y[j])))
    return weights


@pytest.mark.parametrize("batch", [1, 2, 7])
def test_snapmix_pastes_the_partner_box_and_weights_labels_by_map_mass(batch):
    """Source-coded images: the image's box holds its partner's pixels, the rest its own;
    the targets follow the stated rule computed pixel by pixel."""
    x, y = source_coded(batch, channels=3)
    y = y % 3  # same-label pairs
    maps = _maps(batch, 13, 17, nan_rows=[batch - 1] if batch > 1 else [])
    rng = np.random.default_rng(batch)
    checked = 0
    while checked < 6:
        draws = draw_snapmix(rng, 5.0, 1.0, batch, 13, 17)
        mixed, targets = snapmix_compose(x, y, maps, draws, K)
        area = 1 - kept_fraction(draws.box, 13, 17)
        if (draws.box1[1] - draws.box1[0]) * (draws.box1[3] - draws.box1[2]) == 0 or area == 0:
            assert torch.equal(mixed, x) and torch.equal(targets, F.one_hot(y, K).float())
            continue
        eye = torch.eye(batch, dtype=torch.float64)
        torch.testing.assert_close(pixel_sources(mixed, batch), (1 - area) * eye + area * eye[draws.perm],
                                   rtol=0, atol=1e-12)
        expected = torch.zeros(batch, K, dtype=torch.float64)
        for i, (lam_a, lam_b, y_b) in enumerate(_brute_force_weights(maps, y, draws)):
            expected[i, y[i]] += lam_a
            expected[i, y_b] += lam_b
        torch.testing.assert_close(targets.double(), expected, rtol=1e-5, atol=1e-6)
        checked += 1


def test_snapmix_boxes_follow_the_official_distribution():
    """Both boxes' areas on a 16 x 12 image against the official rand_bbox with Beta(5, 5)."""
    rng = np.random.default_rng(9)
    ours = [draw_snapmix(rng, 5.0, 1.0, 4, 16, 12) for _ in range(3000)]
    np.random.seed(9)
    official = []
    for _ in range(3000):
        lam, lam1 = np.random.beta(5.0, 5.0), np.random.beta(5.0, 5.0)
        boxes = [_official_rand_bbox((4, 3, 16, 12), v) for v in (lam, lam1)]
        official.append([(b[2] - b[0]) * (b[3] - b[1]) for b in boxes])
    for k, name in enumerate(("box", "box1")):
        area = [round((1 - kept_fraction(getattr(d, name), 16, 12)) * 192) for d in ours]
        assert stats.ks_2samp(area, [o[k] for o in official]).pvalue > 0.001


def test_snapmix_guide_is_the_official_maps_without_gradients():
    model = _gapnet(dtype=torch.float32).train()
    x, y = _batch(5)
    before = model.net.body[1].running_mean.clone()
    maps = SnapMix(K, np.random.default_rng(0)).guide(model, x, y)
    assert all(p.grad is None for p in model.parameters()) and not maps.requires_grad
    assert not torch.equal(model.net.body[1].running_mean, before)  # the training model, as official
    model.eval()
    maps = semantic_percentage_maps(model, x, y)
    assert maps.shape == (5, 16, 16)
    torch.testing.assert_close(maps, _official_get_spm(model, x, y), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(maps.sum((1, 2)), torch.ones(5))
    torch.testing.assert_close(semantic_percentage_maps(model, x[:1], y[:1]), maps[:1])  # a batch of one works


def test_snapmix_training_step_guides_only_mixed_batches():
    model = _gapnet().eval()
    x, y = _batch(6)
    calls = []
    mixer = SnapMix(K, np.random.default_rng(4), prob=0.5)
    guide = mixer.guide
    mixer.guide = lambda *args: calls.append(1) or guide(*args)
    reference = SnapMix(K, np.random.default_rng(4), prob=0.5)
    for _ in range(10):
        with torch.no_grad():
            logits, targets = mixer.training_step(model, model, x, y)
            mixed, expected = reference(x, y, semantic_percentage_maps(model, x, y))
            assert torch.equal(logits, model(mixed)) and torch.equal(targets, expected)
    assert 0 < len(calls) < 10
    with pytest.raises(UserError, match="class activation maps"):
        reference(x, y)


# ----------------------------------------------------------------------------- all three


def _mixers(rng_seed=0):
    rng = np.random.default_rng
    return [ManifoldMixup(K, rng(rng_seed)), FeatureCutMix(K, rng(rng_seed), layer=2, prob=1.0),
            SnapMix(K, rng(rng_seed))]


class _Wrapper(nn.Module):
    """Stands for DistributedDataParallel: what the loss forward goes through."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_training_steps_keep_shapes_and_dtypes_and_train(batch, dtype):
    model = _gapnet(dtype=dtype).train()
    x, y = _batch(batch, dtype=dtype)
    for mixer in _mixers(batch):
        for net in (model, _Wrapper(model)):
            model.zero_grad(set_to_none=True)
            logits, targets = mixer.training_step(net, model, x, y)
            assert logits.shape == targets.shape == (batch, K) and targets.dtype == dtype
            assert logits.device == targets.device == x.device
            soft_cross_entropy(logits, targets).backward()
            assert all(p.grad is not None for p in model.parameters())
            assert not any(m._forward_hooks for m in model.modules())


def test_same_seed_same_step():
    model = _gapnet().eval()
    x, y = _batch(6)
    with torch.no_grad():
        for a, b in zip(_mixers(3), _mixers(3)):
            for _ in range(3):
                first, second = a.training_step(model, model, x, y), b.training_step(model, model, x, y)
                assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


@pytest.mark.parametrize("make, match", [
    (lambda: ManifoldMixup(K, np.random.default_rng(0), alpha=0), "alpha must be > 0"),
    (lambda: ManifoldMixup(K, np.random.default_rng(0), layers=()), "layers must be"),
    (lambda: ManifoldMixup(K, np.random.default_rng(0), layers=(0, -1)), "layers must be"),
    (lambda: FeatureCutMix(K, np.random.default_rng(0), beta=0), "beta must be > 0"),
    (lambda: FeatureCutMix(K, np.random.default_rng(0), prob=2), "prob must be in"),
    (lambda: FeatureCutMix(K, np.random.default_rng(0), layer=-1), "layer must be"),
    (lambda: SnapMix(K, np.random.default_rng(0), beta=-1), "beta must be > 0"),
    (lambda: SnapMix(K, np.random.default_rng(0), prob=-0.1), "prob must be in"),
    (lambda: ManifoldMixup(K, np.random.default_rng(0))(*_batch(2)), "training_step"),
    (lambda: FeatureCutMix(K, np.random.default_rng(0))(*_batch(2)), "training_step"),
    (lambda: FeatureCutMix(K, np.random.default_rng(0), layer=6, prob=1).training_step(
        _gapnet(), _gapnet(), *_batch(2)), "layers are 0"),
    (lambda: SnapMix(K, np.random.default_rng(0)).guide(_wrap(_MlpHead(K)), *_batch(2)), "linear classifier head"),
])
def test_bad_parameters_are_one_line(make, match):
    with pytest.raises(UserError, match=match) as err:
        make()
    assert "\n" not in str(err.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_steps_on_cuda():
    model = _gapnet().cuda().train()
    x, y = _batch(4)
    x, y = x.cuda(), y.cuda()
    for mixer in _mixers():
        logits, targets = mixer.training_step(model, model, x, y)
        assert logits.is_cuda and targets.is_cuda
        soft_cross_entropy(logits, targets).backward()
