"""The CutMix paper's published numbers, as reference rows for reports.

When a user's setting (dataset + architecture) is one the paper reports on, a report
can show the paper's numbers next to the user's own, clearly marked as reference
rows. :func:`paper_setting` says which setting of the paper (if any) a dataset and an
architecture string are; :func:`paper_references` gives that setting's numbers for
one analysis.

Units: every reference value is in **percent, exactly as printed in the paper**
(``16.45`` means 16.45 %). Our evaluators write fractions in [0, 1] in
``Result.metrics``; reports multiply ours by 100 before putting them side by side.
Each :class:`PaperReference` names the ``Result.metrics`` key it corresponds to.

What is covered (transcribed from Yun et al., ICCV 2019, as summarised with table
numbers in the project's reference notes):

================================ ================= ==============================================
setting                          analysis          metrics
================================ ================= ==============================================
``cifar100-pyramidnet200``       classification    ``top1_error``, ``top5_error`` (headline)
(PyramidNet-200, alpha 240,      ood               ``<set>/tnr_at_tpr95``, ``<set>/auroc``,
bottleneck)                                        ``<set>/detection_accuracy`` for the seven sets
                                                   and ``mean/...`` (Table 12 / appendix Table A2)
``cifar10-pyramidnet200``        classification    ``top1_error``
``cifar100-pyramidnet110``       classification    ``top1_error`` (baseline and CutMix only)
(alpha 64, basic blocks)
``cifar100-resnet110``           classification    ``top1_error`` (baseline and CutMix only)
(CIFAR ResNet-110, basic blocks)
``imagenet-resnet50``            classification    ``top1_error``; ``top5_error`` (baseline, CutMix)
                                 adversarial       ``accuracy`` (untargeted FGSM, eps 8/255, Table 11)
                                 localization      ``top1_loc`` (Table 9)
``cub-resnet50``                 localization      ``top1_loc`` (Table 9)
``cub-vgg16`` (VGG-GAP)          localization      ``top1_loc`` (Table 9)
``imagenet-vgg16`` (VGG-GAP)     localization      ``top1_loc`` (Table 9)
================================ ================= ==============================================

Conventions and caveats carried in each ``source`` string:

* Classification errors are the **best test error seen during training** (CIFAR:
  mean of 3 runs), not the error of the final checkpoint; Mixup is alpha = 1.
* OOD numbers use the maximum softmax probability score (our ``msp``) with the
  CIFAR-100 test set as in-distribution; the paper's ``mean`` is over its seven sets,
  so ours is comparable only when all seven (``--out all``) were evaluated.
* ``top1_loc`` is written by the localization evaluator with ``protocol="paper"``
  (CAM binarized at 0.15 x max, largest component's box, IoU >= 0.5 and correct
  top-1 class); the paper's maps are CAM. The paper's ResNet-50 for localization has
  layer4 at stride 1 (14 x 14 maps).
* The FGSM reference is keyed ``accuracy``: the adversarial evaluator writes that key
  only for untargeted FGSM at eps = 8/255 (the paper's Table 11 cell), whereas
  ``fgsm/accuracy@8/255`` is also written by targeted runs.

Not covered, and why:

* Only the methods ``baseline``, ``mixup``, ``cutout`` and ``cutmix`` are kept. The
  paper (and its released checkpoints) also covers other regularizers (DropBlock,
  Manifold Mixup, ...); their numbers are omitted, as is Mixup with alpha = 0.5.
* Occlusion and in-between class samples (Fig. 5) are curves without numbers;
  corruption robustness has no benchmark numbers in the paper; nothing on calibration.
  Those analyses have no reference rows.
* Transfer results (Pascal VOC detection mAP, MS-COCO captioning BLEU-4) match no
  metric of this toolkit.
* The wsolevaluation splits (``cub-wsol``, ``imagenet-wsol``) are not matched: their
  ``val`` splits are different images from the paper's test sets.

Matching an architecture is strict about what defines the network: PyramidNet depth,
alpha (widening) and block type, CIFAR ResNet depth and block type; ResNet-50 is
``resnet50`` from torchvision or timm (any pretrained tag), not a variant
(``resnet50d``...). VGG-GAP (VGG-16 with the layers after conv5_3 replaced by a conv,
global average pooling and the classifier) is matched only by names saying so
(``vgg16_gap``, ``vgg_gap``, ``vgg16_cam``, ...); a plain ``vgg16`` with its fully
connected head is a different network and is not matched. No PyramidNet-110 alpha is
printed next to its number in the reference notes; the paper's lighter PyramidNet-110
is the alpha 64 one (our registry's ``pyramidnet110``), so only that one matches.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["METHODS", "PaperReference", "paper_references", "paper_setting"]

#: method labels, in the paper's usual order
METHODS = ("baseline", "mixup", "cutout", "cutmix")

PAPER = "CutMix paper"


@dataclass(frozen=True)
class PaperReference:
    """One row of published numbers: ``values`` maps method labels (``baseline``,
    ``mixup``, ``cutout``, ``cutmix``; only those the paper reports) to the value in
    percent as printed; ``metric`` is the ``Result.metrics`` key it compares with (our
    fractions x 100); ``source`` names the paper's table or section and the setting."""

    analysis: str
    metric: str
    values: dict[str, float]
    source: str


def _methods(baseline: float | None, mixup: float | None, cutout: float | None,
             cutmix: float | None) -> dict[str, float]:
    """Values given in the order baseline / mixup / cutout / cutmix (None: not reported)."""
    return {m: v for m, v in zip(METHODS, (baseline, mixup, cutout, cutmix)) if v is not None}


_BEST = "best test error during training"

# ---- CIFAR-100, PyramidNet-200 (alpha 240) -------------------------------------------

_CIFAR100_PYRAMIDNET200 = "CIFAR-100, PyramidNet-200 (alpha 240)"

#: Table 12 / appendix Table A2, per OOD set: (TNR at TPR95, AUROC, detection accuracy),
#: each baseline / mixup / cutout / cutmix. Keys are our OOD set names
#: (:data:`cutmix_eval.evaluate.ood.PAPER_SETS`, what ``--out all`` expands to) and ``mean``.
OOD_TABLE: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "tinyimagenet-crop": ((43.0, 22.6, 30.5, 57.1), (88.9, 71.6, 85.6, 92.4), (81.3, 69.8, 79.0, 85.0)),
    "tinyimagenet-resize": ((29.8, 12.3, 22.0, 55.4), (84.2, 56.8, 82.8, 91.9), (77.0, 61.0, 77.1, 84.5)),
    "lsun-crop": ((34.6, 22.9, 33.2, 47.6), (86.5, 76.3, 85.7, 90.3), (79.5, 72.3, 78.5, 82.8)),
    "lsun-resize": ((34.3, 13.0, 23.7, 62.8), (86.4, 59.0, 84.0, 93.7), (79.0, 61.8, 78.4, 86.7)),
    "isun": ((32.0, 11.8, 22.2, 60.1), (85.1, 57.0, 82.8, 93.0), (77.8, 61.0, 76.8, 85.7)),
    "uniform": ((0.0, 0.0, 0.0, 100.0), (89.2, 0.8, 35.6, 99.8), (89.2, 50.0, 59.1, 99.7)),
    "gaussian": ((10.4, 0.0, 0.0, 100.0), (90.7, 23.4, 24.3, 99.7), (89.9, 50.5, 50.0, 99.0)),
    "mean": ((26.3, 11.8, 18.8, 69.0), (87.3, 49.3, 68.7, 94.4), (82.0, 60.9, 71.3, 89.1)),
}
#: the paper's name of each set, for the source strings
OOD_SET_TITLES = {"tinyimagenet-crop": "TinyImageNet (crop)", "tinyimagenet-resize": "TinyImageNet (resize)",
                  "lsun-crop": "LSUN (crop)", "lsun-resize": "LSUN (resize)", "isun": "iSUN",
                  "uniform": "Uniform", "gaussian": "Gaussian", "mean": "mean over the seven sets"}
OOD_METRICS = ("tnr_at_tpr95", "auroc", "detection_accuracy")
_OOD_METRIC_TITLES = {"tnr_at_tpr95": "TNR at TPR 95%", "auroc": "AUROC", "detection_accuracy": "detection accuracy"}


def _ood_references() -> list[PaperReference]:
    rows = []
    for name, per_metric in OOD_TABLE.items():
        for metric, values in zip(OOD_METRICS, per_metric):
            rows.append(PaperReference(
                "ood", f"{name}/{metric}", _methods(*values),
                f"{PAPER}, Table 12 / appendix Table A2 ({_CIFAR100_PYRAMIDNET200} vs {OOD_SET_TITLES[name]}; "
                f"{_OOD_METRIC_TITLES[metric]}; maximum softmax probability score, no temperature or input "
                "perturbation)"))
    return rows


_CIFAR100_HEADLINE = f"{PAPER}, headline results ({_CIFAR100_PYRAMIDNET200}; {_BEST}, mean of 3 runs; Mixup alpha 1)"

_REFERENCES: dict[str, list[PaperReference]] = {
    "cifar100-pyramidnet200": [
        PaperReference("classification", "top1_error", _methods(16.45, 15.63, 16.53, 14.47), _CIFAR100_HEADLINE),
        PaperReference("classification", "top5_error", _methods(3.69, 3.99, 3.65, 2.97), _CIFAR100_HEADLINE),
        *_ood_references(),
    ],
    "cifar10-pyramidnet200": [
        PaperReference("classification", "top1_error", _methods(3.85, 3.09, 3.10, 2.88),
                       f"{PAPER}, CIFAR-10 results (CIFAR-10, PyramidNet-200 (alpha 240); {_BEST}, "
                       "mean of 3 runs)"),
    ],
    "cifar100-pyramidnet110": [
        PaperReference("classification", "top1_error", _methods(19.85, None, None, 17.97),
                       f"{PAPER}, lighter architectures (CIFAR-100, PyramidNet-110 (alpha 64); {_BEST}, "
                       "mean of 3 runs)"),
    ],
    "cifar100-resnet110": [
        PaperReference("classification", "top1_error", _methods(23.14, None, None, 20.11),
                       f"{PAPER}, lighter architectures (CIFAR-100, ResNet-110; {_BEST}, mean of 3 runs)"),
    ],
    "imagenet-resnet50": [
        PaperReference("classification", "top1_error", _methods(23.68, 22.58, 22.93, 21.40),
                       f"{PAPER}, headline results (ImageNet, ResNet-50; {_BEST}; single-crop 224)"),
        PaperReference("classification", "top5_error", _methods(7.05, None, None, 5.92),
                       f"{PAPER}, headline results (ImageNet, ResNet-50; {_BEST}; single-crop 224)"),
        PaperReference("adversarial", "accuracy", _methods(8.2, 24.4, 11.5, 31.0),
                       f"{PAPER}, Table 11 (ImageNet, ResNet-50; top-1 accuracy under untargeted white-box "
                       "FGSM, eps 8/255 in [0, 1] pixel space)"),
        PaperReference("localization", "top1_loc", _methods(46.30, 45.84, 46.69, 47.25),
                       f"{PAPER}, Table 9 (ImageNet, ResNet-50 with layer4 stride 1; top-1 localization "
                       "accuracy, CAM at 0.15 x max)"),
    ],
    "cub-resnet50": [
        PaperReference("localization", "top1_loc", _methods(49.41, 49.30, 52.78, 54.81),
                       f"{PAPER}, Table 9 (CUB-200-2011, ResNet-50 with layer4 stride 1; top-1 localization "
                       "accuracy, CAM at 0.15 x max)"),
    ],
    "cub-vgg16": [
        PaperReference("localization", "top1_loc", _methods(37.12, 41.73, 44.83, 52.53),
                       f"{PAPER}, Table 9 (CUB-200-2011, VGG-GAP; top-1 localization accuracy, "
                       "CAM at 0.15 x max)"),
    ],
    "imagenet-vgg16": [
        PaperReference("localization", "top1_loc", _methods(42.73, 42.54, 43.13, 43.45),
                       f"{PAPER}, Table 9 (ImageNet, VGG-GAP; top-1 localization accuracy, CAM at 0.15 x max)"),
    ],
}

#: every setting of the paper this module has numbers for
SETTINGS = tuple(_REFERENCES)

# ---- matching ------------------------------------------------------------------------

_DATASETS = {"cifar100": "cifar100", "cifar10": "cifar10", "imagenet": "imagenet", "imagenet1k": "imagenet",
             "ilsvrc2012": "imagenet", "cub": "cub", "cub2002011": "cub"}
_VGG_GAP_NAMES = {"vgggap", "vgg16gap", "vggcam", "vgg16cam"}


def _dataset_key(dataset: str) -> str | None:
    return _DATASETS.get(re.sub(r"[\s_-]+", "", str(dataset).lower()))


def _same(value: Any, number: float) -> bool:
    """``value`` (int, float or numeric string) equals ``number``."""
    if isinstance(value, bool):
        return False
    try:
        return math.isclose(float(value), number, rel_tol=0, abs_tol=1e-9)
    except (TypeError, ValueError):
        return False


def _flag(value: Any) -> bool | None:
    """A boolean keyword argument as parsed from an architecture string, or None if unclear."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    return None


def _registered_defaults(name: str) -> dict[str, Any]:
    """Keyword defaults of one of our own registered architectures ({} if not ours)."""
    import cutmix_eval.models  # noqa: F401  (importing the families fills the registry)
    from cutmix_eval.models.registry import model_spec

    try:
        return dict(model_spec(name).defaults)
    except Exception:  # not a registered name
        return {}


def _architecture(arch: str) -> str | None:
    """The paper's architecture an architecture string is: ``pyramidnet200``,
    ``pyramidnet110``, ``resnet110``, ``resnet50``, ``vgg16`` (VGG-GAP) or None."""
    from cutmix_eval.models.registry import parse_arch

    try:
        name, kwargs = parse_arch(str(arch).strip())
    except Exception:
        return None
    name = name.strip().lower()
    prefix, _, base = name.rpartition("/")
    if not prefix:
        kwargs = {**_registered_defaults(base), **kwargs}
    if prefix in ("", "timm", "torchvision"):
        stem = base.split(".", 1)[0] if prefix == "timm" else base  # timm pretrained tags: resnet50.a1_in1k
        if stem == "resnet50":
            return "resnet50"
    if prefix == "" and base in ("pyramidnet", "pyramidnet200", "pyramidnet110"):
        depth, alpha, bottleneck = kwargs.get("depth"), kwargs.get("alpha"), _flag(kwargs.get("bottleneck"))
        if _same(depth, 200) and _same(alpha, 240) and bottleneck is True:
            return "pyramidnet200"
        if _same(depth, 110) and _same(alpha, 64) and bottleneck is False:
            return "pyramidnet110"
        return None
    if prefix == "" and (base == "cifar_resnet" or base.startswith("cifar_resnet")):
        if _same(kwargs.get("depth"), 110) and _flag(kwargs.get("bottleneck")) is False:
            return "resnet110"
        return None
    if re.sub(r"[\s_-]+", "", base) in _VGG_GAP_NAMES:
        return "vgg16"
    return None


def paper_setting(dataset: str, arch: str) -> str | None:
    """The paper's setting ``dataset`` (our dataset name) and ``arch`` (our architecture
    string, as stored in checkpoints and records) are, e.g. ``"cifar100-pyramidnet200"``,
    ``"imagenet-resnet50"``, ``"cub-vgg16"``; None when the paper has no numbers for it.

    >>> paper_setting("cifar100", "pyramidnet:depth=200,alpha=240.0,bottleneck=true")
    'cifar100-pyramidnet200'
    >>> paper_setting("imagenet", "torchvision/resnet50")
    'imagenet-resnet50'
    >>> paper_setting("cifar100", "pyramidnet:depth=110,alpha=240") is None
    True
    """
    data, network = _dataset_key(dataset), _architecture(arch)
    if data is None or network is None:
        return None
    setting = f"{data}-{network}"
    return setting if setting in _REFERENCES else None


def paper_references(dataset: str, arch: str, analysis: str) -> list[PaperReference]:
    """The paper's numbers for ``analysis`` in the setting of ``dataset`` + ``arch``
    (see :func:`paper_setting`), in percent; an empty list when there are none (the paper has
    numbers for classification, localization, ood and adversarial only).
    """
    setting = paper_setting(dataset, arch)
    if setting is None:
        return []
    return [replace(ref, values=dict(ref.values)) for ref in _REFERENCES[setting] if ref.analysis == analysis]
