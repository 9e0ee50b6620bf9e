"""Every training method by name: the registry the loop, the recipes and the command line use.

The paper's four methods are in :mod:`cutmix_eval.train.mixing`, CutMix's successors and
the paper's CutMix variants one module each in :mod:`cutmix_eval.train.mixers`. Their
names and order are :data:`cutmix_eval.catalog.METHODS` (the command line lists them
without importing torch); registration follows that order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cutmix_eval import catalog
from cutmix_eval.errors import UserError
from cutmix_eval.registry import Registry
from cutmix_eval.train.mixers.cutmix_ablations import (CenterGaussianCutMix, CompleteLabelCutMix, FixedSizeCutMix,
                                                       OneHotCutMix, ScheduledCutMix)
from cutmix_eval.train.mixers.feature_cutmix import FeatureCutMix
from cutmix_eval.train.mixers.fmix import FMix
from cutmix_eval.train.mixers.gridmix import GridMix
from cutmix_eval.train.mixers.manifold_mixup import ManifoldMixup
from cutmix_eval.train.mixers.puzzlemix import PuzzleMix
from cutmix_eval.train.mixers.regmixup import RegMixup
from cutmix_eval.train.mixers.resizemix import ResizeMix
from cutmix_eval.train.mixers.saliencymix import SaliencyMix
from cutmix_eval.train.mixers.smoothmix import SmoothMix
from cutmix_eval.train.mixers.snapmix import SnapMix
from cutmix_eval.train.mixers.timm_switch import TimmMixupCutMix
from cutmix_eval.train.mixing import Baseline, CutMix, Cutout, Mixer, Mixup

_CLASSES: tuple[type[Mixer], ...] = (
    Baseline, Mixup, Cutout, CutMix,
    CenterGaussianCutMix, FixedSizeCutMix, ScheduledCutMix, OneHotCutMix, CompleteLabelCutMix, FeatureCutMix,
    ManifoldMixup, FMix, SmoothMix, PuzzleMix, ResizeMix, SaliencyMix, SnapMix, GridMix, RegMixup, TimmMixupCutMix)

#: the training methods by name, in the order tables list them
METHODS: Registry[type[Mixer]] = Registry("method")
for _name in catalog.METHODS:
    METHODS.register(_name, next(c for c in _CLASSES if c.name == _name))


def create_mixer(method: str, num_classes: int, rng: np.random.Generator, **params: Any) -> Mixer:
    """The mixer for ``method`` (any of :data:`METHODS`) with its hyper-parameters."""
    mixer = METHODS.get(method)
    try:
        return mixer(num_classes, rng, **params)
    except TypeError as err:
        raise UserError(f"method {method!r} does not take {sorted(params)}: {err}") from err
