"""Architecture registry: ``register_model`` fills it, ``create_model`` reads it.

An architecture is named by a registry name plus keyword arguments. On the command
line both fit in one string, ``NAME`` or ``NAME:key=value,key=value`` (for example
``pyramidnet:depth=56,alpha=48,bottleneck=true``); ``timm/NAME`` and
``torchvision/NAME`` reach every timm and torchvision classifier.

A family registers the detector of its checkpoints with itself (``register_model(...,
detect=fn)``, ``register_external(..., detect=fn)``);
:func:`cutmix_eval.models.checkpoint.infer_arch` asks them in registration order.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cutmix_eval.errors import UserError
from cutmix_eval.models.classifier import Classifier
from cutmix_eval.registry import Registry, parse_options

CIFAR_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)  # the official CutMix CIFAR normalization
CIFAR_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one architecture name."""

    name: str
    builder: Callable[..., nn.Module]  # builder(num_classes, **kwargs) -> net (timm protocol)
    description: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: tuple[int, int, int]
    defaults: dict[str, Any]  # default keyword arguments, recorded with every checkpoint
    #: where ``mean``/``std`` come from in the family's own code, for files that carry none
    #: (e.g. "kuangliu/pytorch-cifar normalizes in its data loader with the CIFAR-10 mean/std")
    normalization: str = ""


#: ``detect(state_dict, meta) -> architecture string | None``: a family's answer to "is this
#: checkpoint one of mine, and which?" (``meta``: what the file holds besides its weights).
#: A detector answers only for its own family's state dicts and leaves the rest to others.
Detector = Callable[[Mapping[str, torch.Tensor], Mapping[str, Any]], str | None]


@dataclass(frozen=True)
class ExternalFamily:
    """Names ``prefix/NAME`` resolved on demand (``timm/...``, ``torchvision/...``)."""

    resolve: Callable[[str], ModelSpec]  # resolve(NAME) -> spec, or a UserError
    names: Callable[[], list[str]]  # every NAME the family offers


_MODELS: Registry[ModelSpec] = Registry("architecture", sort=True,
                                        note="or timm/NAME, torchvision/NAME: `cutmix-eval models` lists them")
_EXTERNAL: Registry[ExternalFamily] = Registry("model family")
#: checkpoint detectors by family name, in registration order
_DETECTORS: Registry[Detector] = Registry("checkpoint detector")
#: the families whose detector reads a model name the file records (not tensor shapes)
_BY_RECORDED_NAME: set[str] = set()


def register_model(name: str, *, description: str, mean=CIFAR_MEAN, std=CIFAR_STD,
                   input_size=(3, 32, 32), detect: Detector | None = None, normalization: str = "",
                   **defaults: Any):
    """Decorator registering ``builder(num_classes, **kwargs) -> net`` under ``name``;
    ``detect`` tells this family's checkpoints by their state dict (see :data:`Detector`);
    ``normalization`` says where ``mean``/``std`` come from in the family's own code (shown
    and recorded when a file carries no normalization of its own)."""

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS.register(name, ModelSpec(name, builder, description, tuple(mean), tuple(std),
                                         tuple(input_size), dict(defaults), normalization))
        if detect is not None:
            _DETECTORS.register(name, detect)
        return builder

    return decorator


def register_external(prefix: str, resolve: Callable[[str], ModelSpec], names: Callable[[], list[str]], *,
                      detect: Detector | None = None, by_recorded_name: bool = False) -> None:
    """Register a family of prefixed names resolved on demand (``prefix/NAME``), and
    optionally the detector of its checkpoints (``by_recorded_name``: it reads a model name
    the file records, which outranks what tensor shapes suggest)."""
    _EXTERNAL.register(prefix, ExternalFamily(resolve, names))
    if detect is not None:
        _DETECTORS.register(prefix, detect)
        if by_recorded_name:
            _BY_RECORDED_NAME.add(prefix)


def detectors() -> list[tuple[str, Detector, bool]]:
    """``(family, detector, by recorded name)`` of every registered checkpoint detector, in
    registration order (the families' import order)."""
    return [(family, detect, family in _BY_RECORDED_NAME) for family, detect in _DETECTORS.items()]


def families() -> list[str]:
    """The families that detect their checkpoints: our own registered names and the
    external prefixes (``timm``, ``torchvision``)."""
    return _DETECTORS.names()


def count_blocks(state: Mapping[str, torch.Tensor], layer: str) -> int:
    """How many blocks stage ``layer`` (``"layer1"``) has in a state dict (``layer1.0.``, ``layer1.1.``...)."""
    pattern = re.compile(rf"^{re.escape(layer)}\.(\d+)\.")
    return len({m.group(1) for k in state if (m := pattern.match(k))})


def parse_arch(arch: str) -> tuple[str, dict[str, Any]]:
    """``"name:depth=56,alpha=48,bottleneck=true"`` -> ``("name", {"depth": 56, ...})``
    (:func:`~cutmix_eval.registry.parse_options`)."""
    return parse_options(arch, "architecture")


def format_arch(name: str, kwargs: dict[str, Any]) -> str:
    """Inverse of :func:`parse_arch`."""
    if not kwargs:
        return name
    return name + ":" + ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in kwargs.items())


def model_spec(name: str) -> ModelSpec:
    """The registry entry for ``name`` (our own, ``timm/...`` or ``torchvision/...``)."""
    prefix, sep, rest = name.partition("/")
    if sep and prefix in _EXTERNAL:
        return _EXTERNAL.get(prefix).resolve(rest)
    return _MODELS.get(name)


def list_models(pattern: str = "*", external: bool = False) -> list[str]:
    """Registered names matching a shell-style ``pattern``; with ``external=True`` also
    every ``timm/...`` and ``torchvision/...`` classifier."""
    names = _MODELS.names()
    if external:
        names += [f"{prefix}/{n}" for prefix, family in _EXTERNAL.items() for n in family.names()]
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))


def create_model(arch: str, num_classes: int, *, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, input_size: Sequence[int] | None = None,
                 **kwargs: Any) -> Classifier:
    """Build a pixel-space :class:`Classifier` for ``arch`` with ``num_classes`` outputs.

    ``arch`` may carry keyword arguments (``"pyramidnet:depth=56,alpha=48"``); explicit
    ``kwargs`` override them. ``mean``/``std``/``input_size`` default to the
    architecture's usual values (CIFAR normalization for the CIFAR nets, ImageNet's
    for timm/torchvision unless the model's config says otherwise).
    """
    name, arch_kwargs = parse_arch(arch)
    spec = model_spec(name)
    arch_kwargs = {**spec.defaults, **arch_kwargs, **kwargs}
    try:
        net = spec.builder(num_classes, **arch_kwargs)
    except TypeError as err:
        raise UserError(f"architecture {name!r} does not accept {sorted(arch_kwargs)}: {err}") from err
    return Classifier(net, arch=name, arch_kwargs=arch_kwargs, num_classes=num_classes,
                      mean=spec.mean if mean is None else mean, std=spec.std if std is None else std,
                      input_size=spec.input_size if input_size is None else input_size)
