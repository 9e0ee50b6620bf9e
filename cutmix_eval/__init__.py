"""cutmix-eval: train baseline / Mixup / Cutout / CutMix classifiers and evaluate them
on the analyses of the CutMix paper (Yun et al., ICCV 2019) and its successors.

The public API, in the style of ``timm``'s top level::

    import cutmix_eval as ce

    model, info = ce.load_checkpoint("last.pth")          # or ce.create_model("gapnet", num_classes=10)
    test = ce.create_dataset("synthetic", "test")
    [occlusion] = ce.run_analysis("occlusion", model, test, fractions="0:0.5:1",
                                  settings=ce.RunSettings(limit=200, batch_size=64))
    ce.list_analyses(), ce.list_models(), ce.list_datasets()

Every name is imported on first use (:pep:`562`), so ``import cutmix_eval`` and the command
line stay fast; ``cutmix_eval.NAME`` and ``from cutmix_eval import NAME`` work alike.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "load_checkpoint": "cutmix_eval.models.checkpoint",
    "save_checkpoint": "cutmix_eval.models.checkpoint",
    "create_model": "cutmix_eval.models",
    "list_models": "cutmix_eval.models",
    "create_dataset": "cutmix_eval.data",
    "list_datasets": "cutmix_eval.data",
    "run_analysis": "cutmix_eval.analyses",
    "run_analyses": "cutmix_eval.analyses",
    "list_analyses": "cutmix_eval.analyses",
    "Result": "cutmix_eval.results",
    "RunSettings": "cutmix_eval.settings",
    "load_study": "cutmix_eval.study",
    "run_study": "cutmix_eval.study",
    "write_report": "cutmix_eval.analyses",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cutmix_eval' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
