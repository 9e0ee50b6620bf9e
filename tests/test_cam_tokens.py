"""CAM on timm's token models (ViT, DeiT incl. distilled, hybrid ViT, Swin): the patch-grid
feature map, logits identical to timm's, native CAM where exact (refused elsewhere), gradient
CAMs at the right layer, and localization / occlusion end to end. Tiny random nets, eval mode."""

from functools import partial

import pytest
import torch
from torch import nn

from cutmix_eval.cam import create_cam
from cutmix_eval.data import create_dataset
from cutmix_eval.errors import UserError
from cutmix_eval.models import Classifier, create_model
from cutmix_eval.models.registry import IMAGENET_MEAN, IMAGENET_STD
from cutmix_eval.settings import RunSettings

TINY_VIT = dict(img_size=64, embed_dim=32, depth=2, num_heads=2)
#: name -> (arch, kwargs, feature grid of a 64 x 64 input)
MODELS = {
    "vit_token": ("timm/vit_tiny_patch16_224", TINY_VIT, (4, 4)),
    "vit_avg_fc_norm": ("timm/vit_tiny_patch16_224", dict(TINY_VIT, global_pool="avg"), (4, 4)),
    "vit_avg": ("timm/vit_tiny_patch16_224", dict(TINY_VIT, global_pool="avg", fc_norm=False), (4, 4)),
    "vit_dynamic": ("timm/vit_tiny_patch16_224", dict(TINY_VIT, dynamic_img_size=True), (4, 4)),
    "deit_distilled": ("timm/deit_tiny_distilled_patch16_224", TINY_VIT, (4, 4)),
    "vit_registers_map": ("timm/test_vit3", dict(img_size=64, depth=2), (4, 4)),  # 1 register token, attention pool
    "swin": ("timm/swin_tiny_patch4_window7_224",
             dict(img_size=64, embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4), (8, 8)),
    "hybrid": (None, {}, (8, 8)),
}
NATIVE_EXACT = ["vit_avg", "swin"]
NATIVE_REFUSED = {"vit_token": "class token", "vit_dynamic": "class token", "deit_distilled": "distillation",
                  "vit_avg_fc_norm": "fc_norm", "vit_registers_map": "attention"}


def hybrid_vit() -> Classifier:
    """A timm ViT on a CNN's feature map (timm's HybridEmbed) with a two-convolution backbone
    of stride 8, small enough for a test (timm's R26 hybrids build a full ResNet)."""
    from timm.layers import HybridEmbed
    from timm.models.vision_transformer import VisionTransformer

    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1))
    net = VisionTransformer(img_size=64, patch_size=1, embed_dim=32, depth=2, num_heads=2, num_classes=10,
                            embed_layer=partial(HybridEmbed, backbone=backbone))
    return Classifier(net, arch="hybrid", num_classes=10, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                      input_size=(3, 64, 64))


def build(name: str) -> Classifier:
    torch.manual_seed(0)
    arch, kwargs, _ = MODELS[name]
    model = hybrid_vit() if arch is None else create_model(arch, 10, input_size=(3, 64, 64), **kwargs)
    return model.eval()


_BUILT: dict[str, Classifier] = {}


def model_named(name: str) -> Classifier:
    """Each model built once for the module (CAM calls leave it as they found it)."""
    if name not in _BUILT:
        _BUILT[name] = build(name)
    return _BUILT[name]


@pytest.fixture(params=list(MODELS))
def token_model(request):
    return request.param, model_named(request.param)


def images(batch: int = 2, height: int = 64, width: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def timm_patch_tokens(model: Classifier, x: torch.Tensor) -> torch.Tensor:
    """timm's own ``forward_features`` output, prefix tokens dropped, as ``B x positions x C``."""
    out = model.net.forward_features(model.normalize(x))
    if out.dim() == 4:  # Swin: B x H x W x C
        return out.flatten(1, 2)
    return out[:, model.net.num_prefix_tokens:]


# the map and the logits

def test_logits_are_timms_and_the_map_is_the_patch_grid(token_model):
    name, model = token_model
    x = images(2)
    with torch.no_grad():
        logits, pooled, fmap = model.forward_all(x)
        expected = model.net(model.normalize(x))
        tokens = timm_patch_tokens(model, x)
        again = model.head(model.pool(model.features(x)))
    assert (logits - expected).abs().max() < 1e-5 and (model(x) - expected).abs().max() < 1e-5
    torch.testing.assert_close(again, logits)
    grid = MODELS[name][2]
    assert fmap.shape == (2, tokens.shape[-1], *grid)
    # position (i, j) of the map is patch token i * w + j (row-major, as the patch embedding flattens)
    torch.testing.assert_close(fmap.flatten(2).transpose(1, 2), tokens, rtol=0, atol=0)
    assert pooled.shape == (2, 2 * tokens.shape[-1] if name == "deit_distilled" else tokens.shape[-1])


def test_a_dynamic_size_vit_maps_the_grid_of_the_actual_input():
    model = model_named("vit_dynamic")
    x = images(2, 48, 80)
    with torch.no_grad():
        logits, _, fmap = model.forward_all(x)
        expected = model.net(model.normalize(x))
    assert fmap.shape == (2, 32, 3, 5) and (logits - expected).abs().max() < 1e-5
    result = create_cam("gradcam", model)(x, torch.tensor([0, 1]))
    assert result.maps.shape == (2, 48, 80) and torch.isfinite(result.maps).all()


def test_a_class_token_map_pools_only_with_its_prefix_tokens():
    model = model_named("vit_token")
    with torch.no_grad():
        fmap = model.features(images(1))
        model.pool(fmap)
        with pytest.raises(ValueError, match="prefix token"):
            model.pool(fmap.clone())  # the class token does not follow tensor operations


# native CAM

@pytest.mark.parametrize("name", NATIVE_EXACT)
def test_native_cam_is_the_class_weights_over_the_normed_patch_tokens(name):
    model = model_named(name)
    x, targets = images(3), torch.tensor([0, 4, 9])
    result = create_cam("cam", model)(x, targets)
    with torch.no_grad():
        tokens = timm_patch_tokens(model, x)  # after the final per-token norm
        expected_logits = model.net(model.normalize(x))
    weights = model.net.get_classifier().weight  # timm's own head
    height, width = MODELS[name][2]
    brute = torch.stack([tokens[b] @ weights[targets[b]] for b in range(3)]).view(3, height, width)
    assert result.maps.shape == (3, height, width) and result.resolution == "features"
    torch.testing.assert_close(result.maps, brute, atol=1e-5, rtol=1e-5)
    bias = model.net.get_classifier().bias[targets]
    torch.testing.assert_close(result.maps.mean(dim=(1, 2)) + bias, expected_logits[torch.arange(3), targets],
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(NATIVE_REFUSED))
def test_native_cam_is_refused_in_one_line_where_it_is_not_exact(name):
    with pytest.raises(UserError, match=NATIVE_REFUSED[name]) as refusal:
        create_cam("cam", model_named(name))
    assert "\n" not in str(refusal.value) and "gradcam" in str(refusal.value)


# gradient CAMs

def test_a_class_token_has_no_gradient_on_the_final_patch_map():
    """Why a class-token ViT's gradient target is inside the trunk: its final norm is per
    token, so the logits do not depend on the final patch tokens."""
    model = model_named("vit_token")
    with torch.no_grad():
        fmap = model.features(images(2))
    leaf = fmap.detach().requires_grad_()
    leaf.prefix_tokens = fmap.prefix_tokens
    model.head(model.pool(leaf))[:, 3].sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().max() == 0


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "eigencam"])
def test_gradient_cams_give_nonzero_finite_maps_at_input_resolution(token_model, method):
    name, model = token_model
    x, targets = images(2), torch.tensor([1, 4])
    result = create_cam(method, model)(x, targets)
    with torch.no_grad():
        expected = model.net(model.normalize(x))
    assert result.maps.shape == (2, 64, 64) and result.resolution == "input" and result.normalized
    assert torch.isfinite(result.maps).all() and (result.maps.amax(dim=(1, 2)) > 0).all()
    assert (result.logits - expected).abs().max() < 1e-5


def test_gradcam_of_a_class_token_vit_is_the_librarys_on_the_last_norm1():
    """The same maps as pytorch-grad-cam driven as its ViT tutorial says (target the last
    block's norm1, drop the class token, reshape to the patch grid)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = model_named("vit_token")
    x, targets = images(2), torch.tensor([2, 7])
    ours = create_cam("gradcam", model)(x, targets).maps
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())  # released
    assert all(p.grad is None for p in model.parameters())

    def reshape(tokens):
        return tokens[:, 1:].reshape(tokens.shape[0], 4, 4, tokens.shape[-1]).permute(0, 3, 1, 2)

    with GradCAM(model=model, target_layers=[model.net.blocks[-1].norm1], reshape_transform=reshape) as cam:
        library = cam(x, [ClassifierOutputTarget(int(t)) for t in targets])
    model.zero_grad(set_to_none=True)
    torch.testing.assert_close(ours, torch.from_numpy(library), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", NATIVE_EXACT)
def test_gradcam_is_relu_of_native_cam_where_native_cam_is_exact(name):
    """As on a CNN: the target is the map itself, whose gradient is the class weights / (h w)."""
    model = model_named(name)
    x, targets = images(2), torch.tensor([3, 5])
    native = create_cam("cam", model)(x, targets).maps.clamp(min=0)
    gradcam = create_cam("gradcam", model)(x, targets).maps
    scaled = native - native.amin(dim=(1, 2), keepdim=True)
    scaled = scaled / (scaled.amax(dim=(1, 2), keepdim=True) + 1e-7)
    resized = nn.functional.interpolate(scaled[:, None], size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    resized = resized - resized.amin(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(gradcam, resized / (resized.amax(dim=(1, 2), keepdim=True) + 1e-7),
                               atol=1e-4, rtol=0)


def test_a_vit_with_post_norm_blocks_targets_the_input_of_its_last_block():
    from timm.models.vision_transformer import ResPostBlock, VisionTransformer

    torch.manual_seed(0)
    net = VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=5,
                            block_fn=ResPostBlock)
    model = Classifier(net, arch="post-norm vit", num_classes=5, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                       input_size=(3, 32, 32)).eval()
    assert model.token_layout.gradient_target(net) is net.blocks[0]
    result = create_cam("gradcam", model)(images(2, 32, 32), torch.tensor([0, 3]))
    assert torch.isfinite(result.maps).all() and (result.maps.amax(dim=(1, 2)) > 0).all()


# evaluators

@pytest.mark.parametrize("name,cam", [("vit_token", "gradcam"), ("swin", "cam")])
def test_localization_and_occlusion_run_on_token_models(name, cam):
    from cutmix_eval.evaluate.localization import evaluate_localization
    from cutmix_eval.evaluate.occlusion import evaluate_occlusion

    dataset = create_dataset("synthetic", "test", num_samples=4)
    model = model_named(name)
    settings = RunSettings(batch_size=2, progress=False)
    result = evaluate_localization(model, dataset, cam=cam, keep_examples=2, settings=settings)
    assert result.metrics["num_images"] == 4 and 0 <= result.metrics["maxboxacc_v2"] <= 1
    assert result.config["cam"] == cam
    occlusion = evaluate_occlusion(model, dataset, fractions=(0, 0.5), settings=settings)
    assert occlusion.metrics["num_images"] == 4
