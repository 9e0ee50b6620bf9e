"""The one registry implementation (``cutmix_eval/registry.py``), the package's registries built
on it, and the checkpoint detectors model families register with themselves."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from cutmix_eval.errors import UserError
from cutmix_eval.registry import Registry
from conftest import assert_one_line


def fruit(**options) -> Registry[int]:
    fruits: Registry[int] = Registry("fruit", **options)
    fruits.register("banana", 1)
    fruits.register("apple", 2, aliases=("pomme",))
    fruits.register("apricot", 3)
    return fruits


def test_a_name_or_alias_registered_twice_is_refused():
    fruits = fruit()
    for name, aliases in (("apple", ()), ("pomme", ()), ("cherry", ("banana",))):
        with pytest.raises(ValueError, match=f"fruit '{'banana' if aliases else name}' registered twice"):
            fruits.register(name, 9, aliases=aliases)
    assert "cherry" not in fruits  # a refused registration leaves nothing behind


def test_unknown_names_are_one_line_with_a_close_match_only_when_there_is_one():
    fruits = fruit()
    with pytest.raises(UserError) as err:
        fruits.get("aple")
    assert str(err.value) == "unknown fruit 'aple'; did you mean 'apple'? (known: banana, apple, apricot)"
    with pytest.raises(UserError) as err:
        fruits.get("kiwi")
    assert str(err.value) == "unknown fruit 'kiwi' (known: banana, apple, apricot)"
    with pytest.raises(UserError) as err:
        fruit(sort=True, note="or any fruit/NAME").get("Banana")
    assert str(err.value) == ("unknown fruit 'Banana'; did you mean 'banana'? (known: apple, apricot, banana; "
                              "or any fruit/NAME)")


def test_aliases_and_case_resolve_to_the_entry_and_are_never_listed():
    fruits = fruit()
    assert fruits.get("pomme") == fruits.get("apple") == 2 and "pomme" in fruits
    assert "APPLE" not in fruits and 3 not in fruits
    folded = fruit(ignore_case=True)
    assert folded.get("APPLE") == folded.get("Pomme") == 2 and "BANANA" in folded
    assert folded.names() == ["banana", "apple", "apricot"]


def test_listing_takes_wildcards_in_registration_or_sorted_order():
    fruits = fruit()
    assert fruits.names() == list(fruits) == ["banana", "apple", "apricot"]
    assert fruits.names("ap*") == ["apple", "apricot"] and fruits.names("a?ple") == ["apple"]
    assert fruits.names("cherry*") == []
    assert fruits.items() == [("banana", 1), ("apple", 2), ("apricot", 3)]
    assert fruit(sort=True).names() == ["apple", "apricot", "banana"]
    assert fruit(sort=True).items()[0] == ("apple", 2)


def test_the_package_registries_say_unknown_names_in_one_line_with_the_close_one():
    from cutmix_eval.cam import create_cam
    from cutmix_eval.corruptions.registry import get_corruption
    from cutmix_eval.data import create_dataset
    from cutmix_eval.evaluate.ood_scores import create_score
    from cutmix_eval.models import create_model
    from cutmix_eval.train.methods import create_mixer

    for lookup, parts in (
        (lambda: create_model("pyramidnet20", 10), ["unknown architecture 'pyramidnet20'", "'pyramidnet200'?",
                                                    "timm/NAME"]),
        (lambda: create_dataset("CIFAR-10"), ["unknown dataset 'CIFAR-10'; did you mean 'cifar10'?", "synthetic"]),
        (lambda: create_cam("gradcm", None), ["unknown CAM method 'gradcm'; did you mean 'gradcam'?"]),
        (lambda: create_score("enrgy"), ["unknown OOD score 'enrgy'; did you mean 'energy'?", "msp, maxlogit"]),
        (lambda: get_corruption("gausian_noise"), ["unknown corruption", "did you mean 'gaussian_noise'?"]),
        (lambda: create_mixer("cutmx", 3, np.random.default_rng(0)),
         ["unknown method 'cutmx'; did you mean 'cutmix'? (known: baseline, mixup, cutout, cutmix, "]),
    ):
        with pytest.raises(UserError) as err:
            lookup()
        assert_one_line(err, *parts)
    assert create_dataset("Synthetic", num_samples=2).name == "synthetic"  # dataset names ignore case


# --------------------------------------------------------------------------- checkpoint detectors


class ToyNet(nn.Module):
    """A family the package does not know: a 1x1 conv trunk named ``toy`` and a linear head."""

    def __init__(self, num_classes: int, width: int):
        super().__init__()
        self.toy = nn.Conv2d(3, width, 1)
        self.fc = nn.Linear(width, num_classes)

    def forward_features(self, x):
        return self.toy(x)

    def forward_head(self, fmap, pre_logits=False):
        pooled = fmap.mean(dim=(2, 3))
        return pooled if pre_logits else self.fc(pooled)

    def get_classifier(self):
        return self.fc


def detect_toy(state, meta):
    return f"toynet:width={state['toy.weight'].shape[0]}" if "toy.weight" in state else None


def test_a_new_family_registers_its_detector_and_checkpoints_find_it(monkeypatch, tmp_path):
    from cutmix_eval.models import create_model, register_model
    from cutmix_eval.models import registry as models_registry
    from cutmix_eval.errors import CheckpointError
    from cutmix_eval.models.checkpoint import INFERRED, infer_arch, load_checkpoint

    assert {"timm", "torchvision", "cifar_resnet", "pyramidnet"} <= set(models_registry._DETECTORS.names())
    pyramid = create_model("pyramidnet:depth=20,alpha=12,bottleneck=false", 10).net.state_dict()
    assert infer_arch({"toy.weight": torch.zeros(5, 3, 1, 1)}, {}) is None
    for name in ("_MODELS", "_DETECTORS"):  # the throwaway family goes into copies, dropped after the test
        monkeypatch.setattr(models_registry, name, copy.deepcopy(getattr(models_registry, name)))

    register_model("toynet", description="a throwaway family", detect=detect_toy, width=4)(ToyNet)
    assert infer_arch({"toy.weight": torch.zeros(5, 3, 1, 1)}, {}) == ("toynet:width=5", INFERRED)
    assert infer_arch(pyramid, {})[0].startswith("pyramidnet:depth=20,")  # the others still answer for theirs
    torch.save(ToyNet(7, 5).state_dict(), tmp_path / "toy.pth")
    model, info = load_checkpoint(tmp_path / "toy.pth")
    assert (info.arch, info.num_classes, info.format, info.arch_source) == ("toynet:width=5", 7, "state-dict",
                                                                            INFERRED)

    register_model("greedy", description="answers for everything", detect=lambda state, meta: "greedy")(ToyNet)
    with pytest.raises(CheckpointError, match=r"fit 2 architectures \(pyramidnet:depth=20,.*, greedy\)"):
        infer_arch(pyramid, {})  # two families claim it: refused with both names, never a silent first answer
    assert infer_arch({"other.weight": torch.zeros(1)}, {}) == ("greedy", INFERRED)


def test_the_throwaway_family_is_gone_afterwards():
    from cutmix_eval.models import list_models
    from cutmix_eval.models import registry as models_registry

    assert "toynet" not in list_models() and "toynet" not in models_registry._DETECTORS.names()
