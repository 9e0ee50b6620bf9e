"""CAM methods: native CAM exactness, agreement with Grad-CAM, every method on every
family, per-image targets, and hooks/memory released after many calls and after errors."""

import gc
import resource

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cutmix_eval.cam import create_cam, list_cams, predicted, top_k
from cutmix_eval.errors import UserError
from cutmix_eval.models import create_model

GRADIENT_METHODS = [name for name in list_cams() if name != "cam"]
FAMILIES = ["gapnet:width=8", "cifar_resnet20", "pyramidnet:depth=8,alpha=12,bottleneck=false",
            "timm/test_resnet", "torchvision/resnet18"]


def small_gapnet(seed: int = 0):
    torch.manual_seed(seed)
    return create_model("gapnet:width=8", 10).eval()


@pytest.fixture(scope="module")
def gapnet():
    return small_gapnet()


def images(batch: int, height: int = 64, width: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's per-image scaling: subtract the min, divide by max + 1e-7."""
    maps = maps - maps.amin(dim=(-2, -1), keepdim=True)
    return maps / (maps.amax(dim=(-2, -1), keepdim=True) + 1e-7)


def as_the_library_processes(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """ReLU, min-max, bilinear resize with half-pixel centres (what cv2.resize does), min-max."""
    scaled = minmax(raw.clamp(min=0))
    resized = F.interpolate(scaled[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return minmax(resized)


def hook_count(*roots: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(m._backward_pre_hooks) for root in roots for m in root.modules())


def live_tensors() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), torch.Tensor))


# (1) native CAM is exact, and Grad-CAM is ReLU(CAM) up to scale on a GAP + linear net

def test_native_cam_is_fc_weights_times_the_feature_map_of_the_logits_pass(gapnet):
    x, targets = images(4), torch.tensor([0, 3, 3, 9])
    result = create_cam("cam", gapnet)(x, targets)
    with torch.no_grad():
        every_class = torch.einsum("kc,bchw->bkhw", gapnet.head.weight, gapnet.features(x))
        expected_logits = gapnet(x)
    assert result.maps.shape == (4, 16, 16) and result.maps.dtype == torch.float32
    assert not result.normalized and result.resolution == "features"
    torch.testing.assert_close(result.maps, every_class[torch.arange(4), targets])
    torch.testing.assert_close(result.logits, expected_logits)
    assert torch.equal(result.targets, targets)
    # raw, not ReLU'd: the map's mean plus the bias is the target's logit
    torch.testing.assert_close(result.maps.mean(dim=(1, 2)) + gapnet.head.bias[targets],
                               expected_logits[torch.arange(4), targets])


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "xgradcam"])  # all equal Grad-CAM on GAP + linear
def test_gradient_cam_is_relu_of_native_cam_after_the_library_processing(gapnet, method):
    x, targets = images(4, 64, 48), torch.tensor([2, 2, 5, 8])
    native = create_cam("cam", gapnet)(x, targets)
    result = create_cam(method, gapnet)(x, targets)
    assert result.normalized and result.resolution == "input" and result.maps.shape == (4, 64, 48)
    torch.testing.assert_close(result.maps, as_the_library_processes(native.maps, (64, 48)), atol=1e-4, rtol=0)
    torch.testing.assert_close(result.logits, native.logits)


# (2) every method on every family, two input sizes

@pytest.fixture(scope="module", params=FAMILIES)
def family_model(request):
    torch.manual_seed(0)
    return create_model(request.param, 10).eval()


@pytest.mark.parametrize("size", [(32, 32), (64, 96)])
@pytest.mark.parametrize("method", list_cams())
def test_every_method_runs_on_every_family(family_model, method, size):
    x, targets = images(2, *size), torch.tensor([1, 4])
    result = create_cam(method, family_model)(x, targets)
    with torch.no_grad():
        fmap_size = tuple(family_model.features(x).shape[-2:])
    assert result.maps.shape == (2, *(size if result.resolution == "input" else fmap_size))
    assert result.maps.dtype == torch.float32 and torch.isfinite(result.maps).all()
    assert result.logits.shape == (2, 10) and torch.isfinite(result.logits).all()
    assert torch.equal(result.targets, targets) and result.method == method


# (3) each image gets the map of its own target

@pytest.mark.parametrize("method", list_cams())
def test_each_image_gets_the_map_of_its_own_target(gapnet, method):
    x, targets = images(3), torch.tensor([1, 5, 7])
    cam = create_cam(method, gapnet)
    batch = cam(x, targets)
    for i in range(3):
        alone = cam(x[i:i + 1], targets[i:i + 1])
        torch.testing.assert_close(batch.maps[i], alone.maps[0], atol=1e-4, rtol=1e-4)
    if method not in ("eigencam", "scorecam"):  # EigenCAM ignores the target; Score-CAM's softmax
        # weights are nearly uniform on an untrained net
        assert not torch.allclose(batch.maps[0], cam(x, torch.tensor([2, 5, 7])).maps[0], atol=1e-3)


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_selectors_pick_targets_from_the_logits(gapnet, method):
    x = images(3)
    cam = create_cam(method, gapnet)
    top1 = cam(x, predicted)
    top3 = cam(x, top_k(3))
    assert torch.equal(top1.targets, gapnet(x).argmax(1))
    assert top3.targets.shape == (3, 3) and top3.maps.shape == (3, 3, *top1.maps.shape[1:])
    assert torch.equal(top3.targets[:, 0], top1.targets)
    for j in range(3):
        torch.testing.assert_close(top3.maps[:, j], cam(x, top3.targets[:, j]).maps, atol=1e-5, rtol=1e-5)


def test_one_target_for_a_batch_is_refused():
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x, model = images(3), small_gapnet()
    # the library's pitfall: one target for a batch explains only the first image
    with GradCAM(model=model, target_layers=[model.net.body[-1]]) as library_cam:
        maps = library_cam(x, [ClassifierOutputTarget(3)])
    assert maps[0].max() > 0 and (maps[1:] == 0).all()
    for method in ("cam", "gradcam"):
        cam = create_cam(method, model)
        for wrong in (torch.tensor([3]), torch.tensor(3), torch.tensor([1.0, 2.0, 3.0]), [1, 2, 3]):
            with pytest.raises(ValueError, match="targets"):
                cam(x, wrong)
        with pytest.raises(UserError, match=r"\[0, 10\)"):
            cam(x, torch.tensor([1, 2, 10]))


# models CAM cannot explain natively

def test_a_non_linear_head_is_a_user_error_naming_the_methods_that_work():
    model = small_gapnet()
    model.net.fc = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))
    with pytest.raises(UserError, match="gradcam"):
        create_cam("cam", model)
    assert torch.isfinite(create_cam("gradcam", model)(images(2), torch.tensor([0, 1])).maps).all()


def test_pooling_that_is_not_global_average_is_a_user_error():
    model = small_gapnet()
    model.net.forward_head = lambda fmap, pre_logits=False: fmap.amax(dim=(2, 3)) if pre_logits else None
    with pytest.raises(UserError, match="global average"):
        create_cam("cam", model)(images(2), torch.tensor([0, 1]))


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_a_token_feature_map_is_a_user_error(method):
    # BEiT is a token model without a patch-grid adapter (ViT/DeiT and Swin have one:
    # tests/test_cam_tokens.py): its features stay B x tokens x C
    model = create_model("timm/beit_base_patch16_224", 10, img_size=64, embed_dim=32, depth=1, num_heads=2,
                         input_size=(3, 64, 64)).eval()
    with pytest.raises(UserError, match="no CAM method works") as refusal:
        create_cam(method, model)(images(1), torch.tensor([0]))
    assert "\n" not in str(refusal.value)


def test_unknown_method_and_option_are_user_errors(gapnet):
    with pytest.raises(UserError, match="gradcam"):
        create_cam("gradcamm", gapnet)
    with pytest.raises(UserError, match="batch_size"):
        create_cam("gradcam", gapnet, batch_size=8)
    assert create_cam("scorecam", gapnet, batch_size=8).batch_size == 8


# (4) hooks released, no memory growth, model state untouched

@pytest.mark.parametrize("method", list_cams())
def test_repeated_calls_leave_no_hooks_and_no_memory(gapnet, method):
    cam = create_cam(method, gapnet)
    x, targets = images(4, 32, 32), torch.tensor([0, 1, 2, 3])
    calls = 20 if method == "scorecam" else 100
    for _ in range(3):
        cam(x, targets)
    tensors, rss = live_tensors(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(calls):
        result = cam(x, targets)
    del result
    assert hook_count(gapnet, getattr(cam, "net", gapnet)) == 0
    assert live_tensors() <= tensors
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 32 * 1024  # KiB on Linux
    assert all(p.grad is None for p in gapnet.parameters())


@pytest.mark.parametrize("method", list_cams())
def test_an_error_inside_a_call_releases_hooks_and_restores_the_model(method, monkeypatch):
    model = small_gapnet().train()
    cam = create_cam(method, model)
    tensors = live_tensors()

    def broken(_):
        raise RuntimeError("broken head")

    monkeypatch.setattr(model.net.fc, "forward", broken)
    with pytest.raises(RuntimeError, match="broken head"):
        cam(images(2), torch.tensor([0, 1]))
    assert hook_count(model, getattr(cam, "net", model)) == 0
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert live_tensors() <= tensors


def test_gradient_methods_work_inside_inference_mode_and_keep_eval_flags(gapnet):
    with torch.inference_mode():
        result = create_cam("gradcam", gapnet)(images(2), predicted)
    assert result.maps.max() > 0
    assert not any(m.training for m in gapnet.modules())
