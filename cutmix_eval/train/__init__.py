"""Training: mixing methods, named recipes and the loop.

The names below are imported on first use (PEP 562), so that importing
:mod:`cutmix_eval.train.recipes` does not import torch through the loop (the command
line builds its parsers from the recipes).
"""

import importlib

#: public name -> the submodule defining it
_SOURCES = {"TrainOutcome": "loop", "train": "loop", "METHODS": "methods", "create_mixer": "methods",
            "RECIPES": "recipes", "Recipe": "recipes", "get_recipe": "recipes"}

__all__ = sorted(_SOURCES)


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)

