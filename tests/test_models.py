"""Every architecture builds, runs on a tiny input and exposes the common interface."""

import pytest
import torch
import torchvision

from cutmix_eval.errors import UserError
from cutmix_eval.models import create_model, format_arch, list_models, model_spec, parse_arch
from cutmix_eval.models.pyramidnet import pyramid_widths


def _check_interface(model, size):
    model.eval()
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        fmap = model.features(x)
        pooled = model.pool(fmap)
        logits = model.head(pooled)
        full = model(x)
        all_logits, all_pooled, all_fmap = model.forward_all(x)
    assert fmap.ndim == 4 and fmap.shape[0] == 2
    assert logits.shape == (2, model.num_classes)
    torch.testing.assert_close(full, logits)
    torch.testing.assert_close(all_logits, logits)
    torch.testing.assert_close(all_fmap, fmap)
    torch.testing.assert_close(all_pooled, pooled)
    return fmap, pooled


@pytest.mark.parametrize("name", [n for n in list_models() if n != "pyramidnet200"])
def test_every_registered_architecture(name):
    spec = model_spec(name)
    model = create_model(name, num_classes=7)
    fmap, pooled = _check_interface(model, spec.input_size[-1])
    if hasattr(model.head, "weight"):  # GAP + linear nets: pool is the spatial mean
        torch.testing.assert_close(pooled, fmap.mean(dim=(2, 3)))


def test_pyramidnet200_size_matches_paper():
    model = create_model("pyramidnet200", num_classes=100)
    assert round(model.num_parameters / 1e6, 1) == 26.8  # paper: 26.8M
    _check_interface(model, 32)


@pytest.mark.parametrize("arch,classes,expected", [
    ("cifar_resnet20", 10, 272_474),   # fixture json / He et al.: 0.27M
    ("cifar_resnet56", 10, 855_770),   # 0.85M
    ("cifar_resnet110", 10, 1_730_714),  # 1.7M
    ("pyramidnet:depth=56,alpha=48,bottleneck=true", 100, 613_416),  # fixture json
])
def test_parameter_counts(arch, classes, expected):
    assert create_model(arch, classes).num_parameters == expected


def test_pyramid_widths_follow_official_rounding():
    # alpha 48, 6 blocks per stage: widths grow by 48/18 per block from 16
    widths = pyramid_widths(56, 48, True)
    assert widths[0][:3] == [19, 21, 24] and widths[-1][-1] == 64
    assert sum(len(w) for w in widths) == 18


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "densenet121", "efficientnet_b0", "googlenet"])
def test_torchvision_adapter_matches_original(name):
    model = create_model(f"torchvision/{name}", num_classes=5)
    original = torchvision.models.get_model(name, weights=None, num_classes=5,
                                            **({"aux_logits": False, "init_weights": True} if name == "googlenet" else {}))
    original.load_state_dict(model.net.state_dict())  # same keys, same shapes
    original.eval()
    _check_interface(model, 64)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), original(model.normalize(x)))


def test_timm_model_follows_interface():
    model = create_model("timm/resnet18", num_classes=3)
    assert model.input_size == (3, 224, 224)
    _check_interface(model, 64)


def test_unsupported_torchvision_family_is_a_clear_error():
    with pytest.raises(UserError, match="timm"):
        create_model("torchvision/vit_b_16", num_classes=3)


def test_normalization_is_inside_the_model():
    model = create_model("cifar_resnet20", 10, mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5)).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.net((x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / 0.5))


def test_arch_strings_round_trip():
    name, kwargs = parse_arch("pyramidnet:depth=56,alpha=48.5,bottleneck=false")
    assert name == "pyramidnet" and kwargs == {"depth": 56, "alpha": 48.5, "bottleneck": False}
    assert parse_arch(format_arch(name, kwargs)) == (name, kwargs)
    assert create_model("pyramidnet:depth=20,alpha=12,bottleneck=false", 10).arch_kwargs["depth"] == 20


@pytest.mark.parametrize("arch,match", [
    ("nonexistent_net", "unknown architecture"),
    ("cifar_resnet:depth=21", "6n \\+ 2"),
    ("cifar_resnet:depth", "cannot parse"),
    ("timm/not_a_model", "timm has no model"),
    ("gapnet:colour=red", "does not accept"),
])
def test_bad_architectures_are_user_errors(arch, match):
    with pytest.raises(UserError, match=match):
        create_model(arch, 10)


def test_list_models_filters_and_reaches_external():
    assert "pyramidnet200" in list_models("pyramid*")
    assert "timm/resnet50" in list_models("timm/resnet5*", external=True)
    assert "torchvision/resnet50" in list_models("torchvision/resnet50", external=True)
