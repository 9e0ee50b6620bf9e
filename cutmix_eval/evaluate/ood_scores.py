"""Out-of-distribution scores: a registry of detectors, higher score = more in-distribution.

Two kinds:

* **post-hoc** scores read the shared prediction pass (logits, and pooled
  penultimate features for Mahalanobis), so the ID pass is computed once and
  serves every OOD set and every such score: ``msp``, ``maxlogit``, ``energy``,
  ``mahalanobis`` (fitted on training features first).
  :mod:`cutmix_eval.evaluate.ood_shaping` adds OpenOOD's GEN, KLM, ReAct, DICE, ASH-P/B/S,
  SCALE, GradNorm and fDBD (registered when this module is imported).
* **input-perturbation** scores make their own passes with input gradients
  (:meth:`OODScore.score_datasets`): ``odin``.

A score's ``sweep`` is the grid its hyper-parameters are searched over (OpenOOD v1.5's
``postprocessor_sweep``; empty: nothing to tune). Which setting is used is the evaluator's
tuning protocol (:mod:`cutmix_eval.evaluate.ood_tuning`), the same for every score.

The evaluator dispatches on the kind a score declares, and :func:`register_score` refuses
a duplicate name or a score lacking its kind's method.

Softmax-based scores are computed in float64 from the float32 logits, so that
confident predictions tie at 1.0 as late as possible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.special import logsumexp, softmax
from torch.utils.data import Dataset

from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.accumulate import Accumulator, feed
from cutmix_eval.evaluate.attacks import loss_gradient
from cutmix_eval.models.classifier import Classifier
from cutmix_eval.passes import Predictions, make_loader
from cutmix_eval.registry import Registry
from cutmix_eval.runtime import on_device, resolve_device
from cutmix_eval.settings import RunSettings


#: what a score declares it needs; the OOD evaluator dispatches on it, never on a score's class
KINDS = ("posthoc", "perturbation")


class OODScore:
    """A detector, one of :data:`KINDS`:

    * ``"posthoc"``: ``__call__(predictions) -> N scores`` from the shared pass;
      ``needs_features``: the pass keeps pooled features; ``needs_fit``: :meth:`fit` on
      training predictions (with labels and pooled features) before scoring, every such
      score sharing one fit pass; ``needs_head``: :meth:`use_head` receives the linear
      classifier (``weight`` ``K x D``, ``bias`` ``K``, float64) before :meth:`fit` and
      scoring (ReAct, DICE, ViM... recompute logits from modified features);
    * ``"perturbation"``: makes its own passes with input gradients: :meth:`score_datasets`
      scores whole datasets under several settings at once (see :class:`ODIN`).

    ``sweep``: parameter -> the values a tuning protocol searches (OpenOOD's sweep; empty:
    nothing to tune). ``fit_split``: the ID split OpenOOD fits the score on, ``"train"`` or
    ``"val"`` (ReAct's percentile, KLM's templates); the evaluator uses the ID validation
    images for ``"val"`` when it has them, else the fitting set.
    """

    name = ""
    description = ""
    kind = "posthoc"
    needs_features = False
    needs_fit = False
    needs_head = False
    sweep: dict[str, tuple] = {}
    fit_split = "train"

    def params(self) -> dict:
        """The score's settings, recorded with its results."""
        return {}

    def fit(self, train: Predictions) -> None:  # pragma: no cover - only scores with needs_fit define it
        raise NotImplementedError

    def use_head(self, weight: np.ndarray, bias: np.ndarray) -> None:  # pragma: no cover - needs_head scores
        raise NotImplementedError

    def __call__(self, predictions: Predictions) -> np.ndarray:  # pragma: no cover - every post-hoc score defines it
        raise NotImplementedError

    def score_datasets(self, model: Classifier, data: Mapping[str, Dataset], grid: Sequence[Mapping[str, Any]],
                       settings: RunSettings) -> dict[str, list[np.ndarray]]:  # pragma: no cover - perturbation scores
        """A perturbation score's scores of every image of each dataset of ``data`` under each
        setting of ``grid`` (changes to this score's own settings), in that order: ``{key: [N
        scores per setting]}``; ``settings``: how to run the passes."""
        raise NotImplementedError


_SCORES: Registry[type[OODScore]] = Registry("OOD score")
_REQUIRED = {"posthoc": "__call__", "perturbation": "score_datasets"}


def register_score(cls: type[OODScore]) -> type[OODScore]:
    """Class decorator adding a score to the registry under ``cls.name``. A name registered
    twice, a kind not in :data:`KINDS`, or a kind whose method the class does not define is
    refused (a score that would silently produce nothing)."""
    if not cls.name:
        raise ValueError(f"OOD score {cls.__name__} has no name")
    if cls.kind not in _REQUIRED:
        raise ValueError(f"OOD score {cls.name!r} has kind {cls.kind!r}; kinds: {', '.join(KINDS)}")
    if getattr(cls, _REQUIRED[cls.kind]) is getattr(OODScore, _REQUIRED[cls.kind]):
        raise ValueError(f"OOD score {cls.name!r} of kind {cls.kind!r} must define {_REQUIRED[cls.kind]}")
    return _SCORES.register(cls.name, cls)


def list_scores() -> list[str]:
    """The scores' names in registration order."""
    return _SCORES.names()


def fits(names: Sequence[str]) -> bool:
    """Whether any of the scores ``names`` fits on training images (``needs_fit``)."""
    return any(score_class(name).needs_fit for name in names)


def score_class(name: str) -> type[OODScore]:
    """The registered class of score ``name`` (its ``sweep``, ``kind``, constructor)."""
    return _SCORES.get(name)


def create_score(name: str, **kwargs) -> OODScore:
    """A score by name, e.g. ``create_score("energy", temperature=1.0)``."""
    return score_class(name)(**kwargs)


def logits64(predictions: Predictions) -> np.ndarray:
    return predictions.logits.astype(np.float64)


@register_score
class MSP(OODScore):
    name = "msp"
    description = "maximum softmax probability (Hendrycks & Gimpel 2017; the CutMix paper's score)"

    def __call__(self, predictions):
        return softmax(logits64(predictions), axis=1).max(axis=1)


@register_score
class MaxLogit(OODScore):
    name = "maxlogit"
    description = "maximum logit (Hendrycks et al. 2022)"

    def __call__(self, predictions):
        return logits64(predictions).max(axis=1)


class TemperedScore(OODScore):
    """A score with one setting, a softmax temperature ``T`` > 0 (default 1)."""

    def __init__(self, temperature: float = 1.0):
        if not temperature > 0:
            raise UserError(f"{self.name} temperature must be > 0, not {temperature}")
        self.temperature = float(temperature)

    def params(self):
        return {"temperature": self.temperature}


@register_score
class Energy(TemperedScore):
    name = "energy"
    description = "negative free energy T * logsumexp(logits / T) (Liu et al. 2020)"

    def __call__(self, predictions):
        return self.temperature * logsumexp(logits64(predictions) / self.temperature, axis=1)


@register_score
class Mahalanobis(OODScore):
    """Class means and one shared (tied) covariance of the pooled penultimate features of
    the training set; score = minus the smallest squared Mahalanobis distance to a class
    mean. The penultimate-layer variant without input perturbation or layer ensembles
    (Lee et al. 2018 add both; OpenOOD's "MDS" is this one). The precision matrix is the
    pseudo-inverse of the maximum-likelihood covariance (scikit-learn's
    ``EmpiricalCovariance``), as in the authors' code."""

    name = "mahalanobis"
    description = ("minus the smallest squared Mahalanobis distance of the pooled features to a class mean, "
                   "class-conditional Gaussians with tied covariance fitted on training features (Lee et al. 2018, "
                   "penultimate layer, no input perturbation)")
    needs_features = True
    needs_fit = True

    def __init__(self):
        self.means: np.ndarray | None = None
        self.precision: np.ndarray | None = None

    def fit(self, train):
        from sklearn.covariance import EmpiricalCovariance

        features, labels = train.pooled.astype(np.float64), train.labels
        num_classes = train.logits.shape[1]
        missing = sorted(set(range(num_classes)) - set(np.unique(labels).tolist()))
        if num_classes < 2 or missing:
            raise UserError(f"the Mahalanobis fitting images have no example of class(es) {missing[:10]}; fit on "
                            "labelled images covering every class of the model (e.g. the training split)")
        self.means = np.stack([features[labels == c].mean(axis=0) for c in range(num_classes)])
        centred = features - self.means[labels]
        self.precision = EmpiricalCovariance(assume_centered=True).fit(centred).precision_

    def __call__(self, predictions):
        if self.precision is None:
            raise RuntimeError("Mahalanobis.fit must be called before scoring")
        features = predictions.pooled.astype(np.float64)
        projected = features @ self.precision
        distances = ((projected * features).sum(axis=1)[:, None] - 2 * projected @ self.means.T
                     + ((self.means @ self.precision) * self.means).sum(axis=1)[None, :])
        return -distances.min(axis=1)


@dataclass(frozen=True)
class ODINSetting:
    temperature: float
    noise: float


def _key(setting: ODINSetting) -> str:
    return f"{setting.temperature!r}/{setting.noise!r}"


class _ODINScores(Accumulator):
    """ODIN's per-batch work: per temperature one backward pass for the input gradient, then
    per noise one forward pass on the moved images; rows of max softmax (of logits / T) per
    setting (:func:`_key`)."""

    def __init__(self, model: Classifier, settings: Sequence[ODINSetting], device: torch.device):
        super().__init__()
        self.model, self.device = model, device
        self.by_temperature: dict[float, list[float]] = {}
        for s in settings:
            self.by_temperature.setdefault(s.temperature, []).append(s.noise)

    def update(self, batch: dict) -> None:
        images = batch["image"].to(self.device)
        for temperature, noises in self.by_temperature.items():
            logits, grad = loss_gradient(self.model, images, None, temperature)
            step = grad.sign()
            with torch.no_grad():
                for noise in noises:
                    moved = self.model(images - noise * step) if noise else logits * temperature
                    probs = torch.softmax(moved.double() / temperature, dim=1)
                    self.add(**{_key(ODINSetting(temperature, noise)): probs.max(dim=1).values})


@register_score
class ODIN(OODScore):
    """ODIN (Liang et al. 2018): the maximum softmax probability at temperature ``T`` of the
    input moved by ``noise`` against the gradient of the cross-entropy of ``logits / T`` with
    the predicted class: ``x' = x - noise * sign(grad_x CE)``. Our models take pixels in
    [0, 1] and normalize inside, so the step is in pixel space: the same step as ODIN's code,
    which divides its normalized-space gradient by the channel std. ``x'`` is not clipped,
    as in ODIN's code. Needs input gradients: its own passes, one backward per temperature
    and one forward per setting, batch by batch.

    Defaults ``temperature`` 1000, ``noise`` 0.0014 and the sweep ``temperature`` in 1, 10,
    100, 1000 x ``noise`` in 0.0014, 0.0028 are OpenOOD v1.5's (``odin.yml``); the settings
    are chosen by the evaluator's tuning protocol (:mod:`cutmix_eval.evaluate.ood_tuning`).
    """

    name = "odin"
    description = ("maximum softmax at temperature T of the input perturbed by noise * sign of the gradient "
                   "(Liang et al. 2018)")
    kind = "perturbation"
    sweep = {"temperature": (1.0, 10.0, 100.0, 1000.0), "noise": (0.0014, 0.0028)}

    def __init__(self, temperature: float = 1000.0, noise: float = 0.0014):
        if not temperature > 0 or not noise >= 0:
            raise UserError(f"ODIN needs temperature > 0 and noise >= 0, not {temperature} and {noise}")
        self.temperature, self.noise = float(temperature), float(noise)

    def params(self):
        return {"temperature": self.temperature, "noise": self.noise}

    def setting(self, changes: Mapping[str, float]) -> ODINSetting:
        """This score's setting with ``changes`` (a grid point) applied."""
        return ODINSetting(**(self.params() | {k: float(v) for k, v in changes.items()}))

    def scores(self, model: Classifier, dataset: Dataset, grid: Sequence[ODINSetting], settings: RunSettings, *,
               desc: str = "odin") -> dict[ODINSetting, np.ndarray]:
        """ODIN scores of every image of ``dataset`` for each setting of ``grid``: one backward
        pass per temperature and one forward pass per setting, batch by batch."""
        device = resolve_device(settings.device)
        with on_device(model, device):
            accumulator = _ODINScores(model, grid, device)
            feed(accumulator, make_loader(dataset, settings.batch_size, settings.num_workers), desc=desc,
                 progress=settings.progress)
        rows = accumulator.reduced()
        return {s: rows[_key(s)] for s in grid}

    def score_datasets(self, model, data, grid, settings):
        wanted = [self.setting(changes) for changes in grid]
        out = {}
        for key, dataset in data.items():
            scored = self.scores(model, dataset, list(dict.fromkeys(wanted)), settings, desc=f"ODIN {key}")
            out[key] = [scored[s] for s in wanted]
        return out


# the detectors that reshape the softmax, the pooled features or the head, then those fitted in feature
# space (RMDS, KNN, ViM, SHE, NNGuide), register themselves here, after the base ones
from cutmix_eval.evaluate import ood_shaping  # noqa: E402,F401
from cutmix_eval.evaluate import ood_fitted  # noqa: E402,F401
