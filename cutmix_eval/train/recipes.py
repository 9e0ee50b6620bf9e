"""Named training recipes: data, not code paths.

A :class:`Recipe` holds every setting of a run; the loop reads nothing else. Named
recipes reproduce the paper's settings (``paper.md`` section 2) and add a quick one
for the embedded dataset; any field can be overridden (``get_recipe(name,
epochs=5)``, or ``--epochs 5`` on the command line). Importing this module imports no
torch: the command line builds its recipe options from it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from cutmix_eval.errors import UserError


def _doc(default: Any, help: str) -> Any:
    """A dataclass field with a help text (``...`` = required); the CLI shows the text."""
    if default is ...:
        return field(metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Recipe:
    """Every setting of a training run. ``batch_size`` is the global batch (split
    across processes under torchrun); learning-rate milestones are in epochs."""

    name: str
    description: str
    arch: str = _doc(..., "architecture, e.g. gapnet, pyramidnet200, cifar_resnet110, timm/resnet50")
    dataset: str = _doc(..., "dataset name (train split for training, test/val for the per-epoch error)")
    epochs: int = _doc(..., "number of epochs")
    batch_size: int = _doc(..., "global batch size (split across torchrun processes)")
    lr: float = _doc(..., "initial learning rate")
    momentum: float = _doc(0.9, "SGD momentum")
    nesterov: bool = _doc(True, "Nesterov momentum")
    weight_decay: float = _doc(1e-4, "weight decay (on every parameter, as the official code)")
    schedule: str = _doc("step", "step: lr x gamma at each milestone epoch; cosine: per-iteration cosine decay to 0")
    milestones: tuple[int, ...] = _doc((), "epochs at which the step schedule multiplies the lr by gamma")
    gamma: float = _doc(0.1, "step schedule factor")
    augment: str = _doc("cifar", "cifar (crop with 4 px padding + flip), imagenet (random resized crop + flip + "
                                 "color jitter 0.4 + PCA lighting 0.1), flip, or none")
    mean: tuple[float, ...] | None = _doc(None, "normalization mean in [0,1] (default: the architecture's)")
    std: tuple[float, ...] | None = _doc(None, "normalization std in [0,1] (default: the architecture's)")
    mixup_alpha: float = _doc(1.0, "Mixup: lambda ~ Beta(alpha, alpha)")
    cutout_size: int = _doc(16, "Cutout: hole side in pixels")
    cutout_fill: str = _doc("mean", "Cutout: 'mean' (= zero after normalization, as the original code) or a "
                                    "pixel value such as 0 (black)")
    cutmix_beta: float = _doc(1.0, "CutMix: lambda ~ Beta(beta, beta)")
    cutmix_prob: float = _doc(0.5, "CutMix: probability that a batch is mixed")
    per_sample: bool = _doc(False, "Mixup, CutMix and its variants: one lambda (and box) per image instead of per "
                                   "batch")
    lambda_correction: bool = _doc(True, "CutMix and its variants, FMix: lambda = the exact share of the image kept "
                                         "(off: the drawn lambda, as code written before the correction)")
    # the paper's CutMix variants (they also take cutmix_beta and cutmix_prob)
    cutmix_center_gaussian_centre_std: float = _doc(0.25, "cutmix-center-gaussian: std of the box centre around the "
                                                          "image centre, as a fraction of the side (the paper gives none)")
    cutmix_fixed_size_size: int = _doc(16, "cutmix-fixed-size: side of the pasted square in pixels (16 on 32 px: "
                                           "lambda 0.75)")
    cutmix_scheduled_prob: float = _doc(1.0, "cutmix-scheduled: probability reached in the last epoch, rising "
                                             "linearly from 0 in the first")
    cutmix_feature_layer: int = _doc(1, "cutmix-feature: stage whose output is mixed (0 = the image)")
    # CutMix's successors
    manifold_mixup_alpha: float = _doc(2.0, "manifold-mixup: lambda ~ Beta(alpha, alpha) (official CIFAR: 2)")
    manifold_mixup_layers: tuple[int, ...] = _doc((0, 1, 2), "manifold-mixup: stages to mix at, one drawn per "
                                                              "batch (0 = the image)")
    fmix_alpha: float = _doc(1.0, "fmix: lambda ~ Beta(alpha, alpha)")
    fmix_decay_power: float = _doc(3.0, "fmix: the noise spectrum decays as 1 / f ** decay_power")
    fmix_max_soft: float = _doc(0.0, "fmix: soft ramp around the mask's threshold, in [0, 0.5] (0: binary)")
    fmix_reformulate: bool = _doc(False, "fmix: the paper's reformulation, lambda ~ Beta(alpha + 1, alpha), loss on "
                                         "the own label only")
    fmix_full_spectrum: bool = _doc(False, "fmix: the paper's full 2-D spectrum (off: the official code's, which "
                                           "keeps horizontal frequencies 0 and 1 only)")
    fmix_prob: float = _doc(1.0, "fmix: probability that a batch is mixed")
    smoothmix_sigma_min: float = _doc(0.25, "smoothmix: smallest Gaussian sigma, as a fraction of the image height")
    smoothmix_sigma_max: float = _doc(0.5, "smoothmix: largest Gaussian sigma, as a fraction of the image height")
    smoothmix_prob: float = _doc(1.0, "smoothmix: probability that a batch is mixed")
    puzzlemix_alpha: float = _doc(1.0, "puzzlemix: lambda ~ Beta(alpha, alpha)")
    puzzlemix_n_labels: int = _doc(3, "puzzlemix: mask levels 0, 1/(n-1), ..., 1")
    puzzlemix_beta: float = _doc(1.2, "puzzlemix: mask smoothness (label) cost")
    puzzlemix_gamma: float = _doc(0.5, "puzzlemix: image discontinuity cost where the source changes")
    puzzlemix_eta: float = _doc(0.2, "puzzlemix: weight of the prior around lambda")
    puzzlemix_neigh_size: int = _doc(4, "puzzlemix: pooling size of the boundary costs")
    puzzlemix_transport: bool = _doc(True, "puzzlemix: move salient blocks into the region each image shows")
    puzzlemix_t_size: int = _doc(4, "puzzlemix: transport block side (-1: the graph cut's block)")
    puzzlemix_t_eps: float = _doc(0.8, "puzzlemix: transport distance cost")
    puzzlemix_block_nums: tuple[int, ...] = _doc((2, 4, 8, 16), "puzzlemix: grid sizes, one drawn per batch")
    puzzlemix_prob: float = _doc(1.0, "puzzlemix: probability that a batch is mixed")
    resizemix_scale_min: float = _doc(0.1, "resizemix: smallest scale tau of the pasted image (the paper's alpha)")
    resizemix_scale_max: float = _doc(0.8, "resizemix: largest scale tau (the paper's beta)")
    resizemix_scale_beta: float | None = _doc(None, "resizemix: tau ~ Beta(a, a) redrawn uniformly outside the "
                                                    "range (OpenMixup's use_alpha; default: tau uniform)")
    resizemix_interpolation: str = _doc("nearest", "resizemix: resize mode, nearest or bilinear")
    resizemix_prob: float = _doc(1.0, "resizemix: probability that a batch is mixed")
    saliencymix_beta: float = _doc(1.0, "saliencymix: lambda ~ Beta(beta, beta)")
    saliencymix_prob: float = _doc(0.5, "saliencymix: probability that a batch is mixed (CIFAR; ImageNet: 1.0)")
    saliencymix_detector_input: str = _doc("normalized", "saliencymix: what the saliency detector sees: normalized "
                                                         "(the official code's float input) or uint8")
    snapmix_beta: float = _doc(5.0, "snapmix: both box lambdas ~ Beta(beta, beta)")
    snapmix_prob: float = _doc(1.0, "snapmix: probability that a batch is mixed")
    gridmix_alpha: float = _doc(0.2, "gridmix: lambda ~ Beta(alpha, alpha) (OpenMixup's CIFAR setting)")
    gridmix_n_holes_min: int = _doc(2, "gridmix: fewest grid cells across the crop")
    gridmix_n_holes_max: int = _doc(6, "gridmix: most grid cells across the crop")
    gridmix_hole_aspect_ratio: float = _doc(1.0, "gridmix: patch height / width")
    gridmix_cut_area_min: float = _doc(0.5, "gridmix: smallest crop area / image area")
    gridmix_cut_area_max: float = _doc(1.0, "gridmix: largest crop area / image area")
    gridmix_cut_aspect_min: float = _doc(0.5, "gridmix: smallest crop height / width")
    gridmix_cut_aspect_max: float = _doc(2.0, "gridmix: largest crop height / width")
    gridmix_prob: float = _doc(1.0, "gridmix: probability that a batch is mixed")
    regmixup_alpha: float = _doc(20.0, "regmixup: lambda ~ Beta(alpha, alpha) of the Mixup term (20 for CIFAR-10, "
                                       "10 for CIFAR-100)")
    regmixup_eta: float = _doc(1.0, "regmixup: weight of the Mixup cross-entropy against the clean one")
    mixup_cutmix_mixup_alpha: float = _doc(1.0, "mixup-cutmix (timm's Mixup): Mixup's Beta parameter, active if > 0")
    mixup_cutmix_cutmix_alpha: float = _doc(0.0, "mixup-cutmix: CutMix's Beta parameter, active if > 0 (DeiT: "
                                                 "mixup 0.8, cutmix 1.0)")
    mixup_cutmix_cutmix_minmax: tuple[float, ...] | None = _doc(None, "mixup-cutmix: box sides uniform in these "
                                                                      "fractions of the side")
    mixup_cutmix_prob: float = _doc(1.0, "mixup-cutmix: probability of mixing each unit")
    mixup_cutmix_switch_prob: float = _doc(0.5, "mixup-cutmix: probability of CutMix rather than Mixup when both "
                                                "are active")
    mixup_cutmix_mode: str = _doc("batch", "mixup-cutmix: one draw per batch, pair (i, B - 1 - i) or elem (image)")
    mixup_cutmix_correct_lam: bool = _doc(True, "mixup-cutmix: lambda = the kept area of the clipped box")
    mixup_cutmix_label_smoothing: float = _doc(0.1, "mixup-cutmix: label smoothing s: 1 - s + s / K and s / K")
    seed: int = _doc(0, "seed of initialization, data order, augmentation and mixing")
    workers: int = _doc(2, "DataLoader worker processes")
    train_samples: int | None = _doc(None, "train on the first N training images only")
    test_samples: int | None = _doc(None, "measure the per-epoch error on the first N test images only")
    amp: bool = _doc(True, "mixed precision (CUDA only)")
    channels_last: bool = _doc(True, "channels-last memory format (CUDA only)")
    sync_bn: bool = _doc(True, "SyncBatchNorm under torchrun (CUDA only; PyTorch has no CPU version)")

    def method_params(self, method: str, mean: tuple[float, ...], std: tuple[float, ...]) -> dict[str, Any]:
        """The keyword arguments of ``create_mixer`` for ``method`` on a model normalizing
        with ``mean`` and ``std``.

        Each hyper-parameter ``p`` of the method's mixer comes from the recipe field
        ``<method>_<p>`` (``-`` as ``_``: ``manifold_mixup_alpha``), else from that of the
        method it specializes (its parent class, or the first word of its name: the paper's
        CutMix variants take ``cutmix_beta`` and ``cutmix_prob``), else from a field shared
        by several methods (:data:`SHARED_FIELDS`); a mixer's ``mean`` and ``std`` are the
        model's normalization (Cutout fills with the mean, SaliencyMix computes saliency on
        normalized images, as the official code). A parameter no field names keeps the
        mixer's default.
        """
        from cutmix_eval.train.methods import METHODS  # torch: this module stays light for the CLI's parsers

        mixer = METHODS.get(method)
        normalization = {"mean": tuple(mean), "std": tuple(std)}
        params: dict[str, Any] = {}
        for param in mixer_parameters(mixer):
            source = param_field(mixer, param)
            if param in normalization:
                params[param] = normalization[param]
            elif source is not None:
                params[param] = _CONVERT.get(source, lambda v: v)(getattr(self, source))
        return params

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _fill(value: str) -> str | float:
    return value if value == "mean" else float(value)


_FIELD_NAMES = frozenset(f.name for f in fields(Recipe))
#: recipe fields that set the parameter of the same name of every method that has one
SHARED_FIELDS = ("per_sample", "lambda_correction")
#: recipe fields whose command-line text becomes another type for the mixer
_CONVERT = {"cutout_fill": _fill}


_CIFAR = dict(epochs=300, batch_size=64, lr=0.25, weight_decay=1e-4, schedule="step", milestones=(150, 225),
              augment="cifar", cutout_size=16, cutmix_prob=0.5, regmixup_alpha=10.0)  # RegMixup's CIFAR-100 alpha

RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe("cifar100-pyramidnet200", "the paper's CIFAR-100 recipe: PyramidNet-200 (alpha 240), 300 epochs, "
           "batch 64, SGD lr 0.25 Nesterov, wd 1e-4, lr x0.1 at 150/225, crop+flip, beta 1, cutmix_prob 0.5",
           arch="pyramidnet200", dataset="cifar100", **_CIFAR),
    Recipe("cifar100-resnet110", "CIFAR ResNet-110 with the official train.py CIFAR settings (as for PyramidNet-200)",
           arch="cifar_resnet110", dataset="cifar100", **_CIFAR),
    Recipe("imagenet-resnet50", "the paper's ImageNet recipe: ResNet-50, 300 epochs, batch 256, lr 0.1, "
           "x0.1 at 75/150/225, RandomResizedCrop + flip + ColorJitter(0.4) + PCA lighting(0.1), cutmix_prob 1.0, "
           "Cutout 112", arch="torchvision/resnet50", dataset="imagenet", epochs=300, batch_size=256, lr=0.1,
           milestones=(75, 150, 225), augment="imagenet", cutout_size=112, cutmix_fixed_size_size=112, cutmix_prob=1.0,
           saliencymix_prob=1.0, workers=8),
    Recipe("quick", "the embedded dataset in minutes on a CPU: gapnet width 16, 8 epochs of 4,000 images, batch 64, "
           "lr 0.1 cosine, wd 5e-4, crop+flip, Cutout 32 (half the side, as 16 at 32 px), cutmix_prob 0.5; test "
           "error after each epoch on the first 1,000 test images",
           arch="gapnet:width=16", dataset="synthetic", epochs=8, batch_size=64, lr=0.1, weight_decay=5e-4,
           schedule="cosine", augment="cifar", mean=(0.489, 0.485, 0.484), std=(0.174, 0.171, 0.175),
           cutout_size=32, cutmix_fixed_size_size=32, cutmix_prob=0.5, workers=0, train_samples=4000,
           test_samples=1000),
]}


def mixer_parameters(mixer: type) -> list[str]:
    """The hyper-parameters of a mixer class: its dataclass fields but the class count and generator."""
    return [f.name for f in fields(mixer) if f.init and f.name not in ("num_classes", "rng")]


def param_field(mixer: type, param: str) -> str | None:
    """The recipe field that sets hyper-parameter ``param`` of ``mixer`` (a Mixer class), by
    the rule of :meth:`Recipe.method_params`; None if no field does."""
    names = [c.name for c in mixer.__mro__ if getattr(c, "name", "")] + [mixer.name.split("-")[0]]
    prefixes = list(dict.fromkeys(n.replace("-", "_") for n in names))
    shared = [param] if param in SHARED_FIELDS else []
    return next((n for n in [f"{p}_{param}" for p in prefixes] + shared if n in _FIELD_NAMES), None)


def recipe_fields() -> list[dataclasses.Field]:
    """The fields a user may override (all but ``name`` and ``description``)."""
    return [f for f in fields(Recipe) if f.name not in ("name", "description")]


def get_recipe(name: str, **overrides: Any) -> Recipe:
    """The named recipe with ``overrides`` applied (None values are ignored)."""
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    known = {f.name for f in recipe_fields()}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserError(f"recipes have no field {', '.join(unknown)}; fields: {', '.join(sorted(known))}")
    recipe = dataclasses.replace(RECIPES[name], **{k: v for k, v in overrides.items() if v is not None})
    _validate(recipe)
    return recipe


def _validate(recipe: Recipe) -> None:
    from cutmix_eval.train.augment import AUGMENTATIONS  # torch: this module stays light for the CLI's parsers

    problems = []
    if recipe.epochs < 1:
        problems.append(f"epochs must be >= 1 (got {recipe.epochs})")
    if recipe.batch_size < 1:
        problems.append(f"batch_size must be >= 1 (got {recipe.batch_size})")
    if recipe.lr <= 0:
        problems.append(f"lr must be > 0 (got {recipe.lr})")
    if recipe.schedule not in ("step", "cosine"):
        problems.append(f"schedule must be step or cosine (got {recipe.schedule!r})")
    if recipe.augment not in AUGMENTATIONS:
        problems.append(f"augment must be cifar, imagenet, flip or none (got {recipe.augment!r})")
    for name in ("train_samples", "test_samples"):
        if getattr(recipe, name) is not None and getattr(recipe, name) < 1:
            problems.append(f"{name} must be >= 1 when given (got {getattr(recipe, name)})")
    if recipe.nesterov and recipe.momentum <= 0:
        problems.append("Nesterov momentum needs momentum > 0 (or --no-nesterov)")
    if not 0 <= recipe.cutmix_prob <= 1:
        problems.append(f"cutmix_prob must be in [0, 1] (got {recipe.cutmix_prob})")
    if recipe.cutout_fill != "mean":
        try:
            float(recipe.cutout_fill)
        except ValueError:
            problems.append(f"cutout_fill must be 'mean' or a number (got {recipe.cutout_fill!r})")
    if problems:
        raise UserError("invalid recipe: " + "; ".join(problems))
