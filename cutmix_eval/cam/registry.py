"""CAM method registry: ``register_cam`` fills it, ``create_cam`` reads it."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from cutmix_eval.cam.base import CAMMethod
from cutmix_eval.errors import UserError
from cutmix_eval.models.classifier import Classifier
from cutmix_eval.registry import Registry

_CAMS: Registry[Callable[..., CAMMethod]] = Registry("CAM method", sort=True)


def register_cam(name: str):
    """Decorator registering ``factory(model, **kwargs) -> CAMMethod`` under ``name``."""

    def decorator(factory: Callable[..., CAMMethod]) -> Callable[..., CAMMethod]:
        return _CAMS.register(name, factory)

    return decorator


def list_cams(pattern: str = "*") -> list[str]:
    """Registered method names matching a shell-style ``pattern``, sorted."""
    return _CAMS.names(pattern)


def create_cam(name: str, model: Classifier, **kwargs) -> CAMMethod:
    """The CAM method ``name`` bound to ``model``; ``kwargs`` are the method's options."""
    factory = _CAMS.get(name)
    try:
        inspect.signature(factory).bind(model, **kwargs)
    except TypeError as err:
        raise UserError(f"CAM method {name!r} does not accept {sorted(kwargs)}: {err}") from err
    return factory(model, **kwargs)
