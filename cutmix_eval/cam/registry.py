"""CAM method registry: ``register_cam`` fills it, ``create_cam`` reads it."""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable

from cutmix_eval.cam.base import CAMMethod
from cutmix_eval.errors import UserError
from cutmix_eval.models.classifier import Classifier

_REGISTRY: dict[str, Callable[..., CAMMethod]] = {}


def register_cam(name: str):
    """Decorator registering ``factory(model, **kwargs) -> CAMMethod`` under ``name``."""

    def decorator(factory: Callable[..., CAMMethod]) -> Callable[..., CAMMethod]:
        if name in _REGISTRY:
            raise ValueError(f"CAM method {name!r} registered twice")
        _REGISTRY[name] = factory
        return factory

    return decorator


def list_cams(pattern: str = "*") -> list[str]:
    """Registered method names matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def create_cam(name: str, model: Classifier, **kwargs) -> CAMMethod:
    """The CAM method ``name`` bound to ``model``; ``kwargs`` are the method's options."""
    if name not in _REGISTRY:
        raise UserError(f"unknown CAM method {name!r}; choose one of {', '.join(list_cams())}")
    factory = _REGISTRY[name]
    try:
        inspect.signature(factory).bind(model, **kwargs)
    except TypeError as err:
        raise UserError(f"CAM method {name!r} does not accept {sorted(kwargs)}: {err}") from err
    return factory(model, **kwargs)
