"""Post-hoc OOD scores fitted on training features: RMDS, KNN, ViM, SHE and NNGuide.

Each reads the shared prediction pass (pooled penultimate features, logits) and is fitted
on the one fit pass over the training images that every fitted score shares (see
:func:`cutmix_eval.evaluate.ood.evaluate_ood`). Higher score = more in-distribution.
Definitions follow OpenOOD v1.5 (``openood/postprocessors/*_postprocessor.py``) and the
authors' code; defaults are OpenOOD's ``configs/postprocessors/*.yml`` unless a docstring
says otherwise. OpenOOD tunes KNN's ``K`` and ViM's ``dim`` on OOD validation sets
("APS mode"); we use the default and record it in ``params()``.

Nearest-neighbour searches are exact: blocks of queries against the whole bank, one
matrix product and one top-k per block (:func:`blocked_topk`), never a loop per query.

Conventions shared by KNN and NNGuide: features are L2-normalized as ``x / ||x||``; a
zero feature vector (possible after a ReLU) stays zero instead of becoming NaN.
OpenOOD's and the authors' ``x / ||x|| + 1e-10`` adds 1e-10 to every coordinate, which
float32 cannot represent next to unit-norm coordinates above ~1e-3, so it is left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.special import logsumexp

from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.ood_scores import Mahalanobis, OODScore, register_score
from cutmix_eval.passes import Predictions

#: elements of one block's query x bank matrix (float32: 256 MiB)
BLOCK_ELEMENTS = 1 << 26


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (float32); zero rows stay zero."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, np.finfo(np.float32).tiny)


def blocked_topk(queries: np.ndarray, bank: np.ndarray, k: int, *, nearest: bool, block: int | None = None
                 ) -> np.ndarray:
    """Exact top-``k`` of every query against ``bank`` (float32 rows), ``N x k`` float64, unsorted.

    ``nearest=True``: the ``k`` smallest squared Euclidean distances ``|q|^2 + |t|^2 - 2 q.t``
    (clipped at 0, as rounding can leave a tiny negative; when every bank row has the same
    norm, as L2-normalized features do, from the ``k`` largest ``q.t``); ``nearest=False``: the ``k``
    largest inner products ``q.t``. ``block`` queries at a time (default: as many as keep
    one block's ``block x len(bank)`` matrix at :data:`BLOCK_ELEMENTS`), one matrix
    product and one ``torch.topk`` per block."""
    if not 1 <= k <= len(bank):
        raise ValueError(f"k={k} needs 1 <= k <= {len(bank)} (the bank's size)")
    q_all = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    t = torch.from_numpy(np.ascontiguousarray(bank, dtype=np.float32))
    block = block or max(1, BLOCK_ELEMENTS // max(1, len(t)))
    out = torch.empty((len(q_all), k), dtype=torch.float64)
    t_sq = (t * t).sum(dim=1)
    # a bank of rows of one norm (L2-normalized features): the nearest are the largest q.t
    one_norm = bool(len(t) and t_sq.max() - t_sq.min() <= 1e-6 * max(1.0, float(t_sq.max())))
    with torch.inference_mode():
        for start in range(0, len(q_all), block):
            q = q_all[start:start + block]
            if nearest and not one_norm:
                partial = torch.addmm(t_sq[None, :], q, t.T, alpha=-2.0)  # |t|^2 - 2 q.t
                values = torch.topk(partial, k, dim=1, largest=False, sorted=False).values
            else:
                values = torch.topk(q @ t.T, k, dim=1, largest=True, sorted=False).values
                if nearest:
                    values = float(t_sq.mean()) - 2.0 * values
            if nearest:
                values = (values + (q * q).sum(dim=1, keepdim=True)).clamp_min_(0.0)
            out[start:start + len(q)] = values.double()
    return out.numpy()


def _subsample(count: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of a seeded random ``int(count * fraction)`` of ``count`` rows
    (every row when ``fraction`` is 1), as the KNN and NNGuide authors draw their banks."""
    if fraction >= 1.0:
        return np.arange(count)
    keep = int(count * fraction)
    return np.sort(np.random.default_rng(seed).permutation(count)[:keep])


def _check_fraction(name: str, fraction: float) -> float:
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"{name} fraction of training features must be in (0, 1], not {fraction}")
    return float(fraction)


class _BankScore(OODScore):
    """What KNN and NNGuide share: ``k`` neighbours searched exactly (:func:`blocked_topk`,
    ``block`` queries at a time) in a bank of a seeded random ``fraction`` of the fitting
    features (:func:`_subsample`)."""

    needs_features = True
    needs_fit = True

    def __init__(self, k: int, fraction: float, seed: int = 0, block: int | None = None):
        if int(k) < 1:
            raise UserError(f"{self.name} k must be >= 1, not {k}")
        self.k, self.fraction, self.seed = int(k), _check_fraction(self.name, fraction), int(seed)
        self.block = block
        self.bank: np.ndarray | None = None

    def params(self):
        return {"k": self.k, "fraction": self.fraction, "seed": self.seed}

    def _bank_rows(self, train: Predictions, short: Callable[[int], str]) -> np.ndarray:
        """The fitting rows of the bank; ``short(rows)``: the error's words when they are fewer than k."""
        keep = _subsample(len(train.pooled), self.fraction, self.seed)
        if len(keep) < self.k:
            raise UserError(short(len(keep)))
        return keep

    def _search(self, predictions: Predictions, nearest: bool) -> np.ndarray:
        if self.bank is None:
            raise RuntimeError(f"{type(self).__name__}.fit must be called before scoring")
        return blocked_topk(l2_normalize(predictions.pooled), self.bank, self.k, nearest=nearest, block=self.block)


def _require_classes(name: str, labels: np.ndarray, num_classes: int, what: str = "example") -> None:
    present = set(np.unique(labels[labels >= 0]).tolist())
    missing = sorted(set(range(num_classes)) - present)
    if missing:
        raise UserError(f"{name} fitting images have no {what} of class(es) {missing[:10]}; fit on labelled images "
                        "covering every class of the model (e.g. the training split)")


@register_score
class RMDS(Mahalanobis):
    """Relative Mahalanobis distance (Ren et al. 2021, OpenOOD's ``rmds``): per class, minus
    the squared Mahalanobis distance to the class mean under the tied class-conditional
    covariance (:class:`~cutmix_eval.evaluate.ood_scores.Mahalanobis`), plus the squared
    Mahalanobis distance to a single background Gaussian (mean and covariance of all
    training features); the score is the maximum over classes, i.e.
    ``MD_0(x) - min_c MD_c(x)``. Higher = more ID. Needs pooled features and a fit on the
    labelled fitting split (every class present); precisions are the pseudo-inverses of the
    maximum-likelihood covariances (scikit-learn's ``EmpiricalCovariance``), as in OpenOOD.
    No hyper-parameter (OpenOOD has no sweep for it)."""

    name = "rmds"
    description = ("relative Mahalanobis distance: squared Mahalanobis distance to one background Gaussian of all "
                   "training features minus the smallest to a class mean (tied covariance), pooled penultimate "
                   "features (Ren et al. 2021)")

    def __init__(self):
        super().__init__()
        self.background_mean: np.ndarray | None = None
        self.background_precision: np.ndarray | None = None

    def fit(self, train):
        from sklearn.covariance import EmpiricalCovariance

        _require_classes("the RMDS", train.labels, train.logits.shape[1])
        super().fit(train)
        features = train.pooled.astype(np.float64)
        self.background_mean = features.mean(axis=0)
        self.background_precision = EmpiricalCovariance(assume_centered=True).fit(
            features - self.background_mean).precision_

    def __call__(self, predictions):
        if self.background_precision is None:
            raise RuntimeError("RMDS.fit must be called before scoring")
        centred = predictions.pooled.astype(np.float64) - self.background_mean
        background = ((centred @ self.background_precision) * centred).sum(axis=1)
        return super().__call__(predictions) + background


@register_score
class KNN(_BankScore):
    """Deep nearest neighbours (Sun et al. 2022, OpenOOD's ``knn``): minus the squared
    Euclidean distance from the L2-normalized pooled feature to its ``k``-th nearest
    L2-normalized training feature (the authors' and OpenOOD's ``-D[:, -1]`` of a faiss
    ``IndexFlatL2``, which returns squared distances; the unsquared distance ranks the same,
    so every metric is identical). Higher = more ID. Needs pooled features and a fit on the
    fitting split (labels unused).

    ``k``: default 50, OpenOOD's default for every benchmark and the authors' CIFAR choice;
    the authors use k=1000 on ImageNet (all training features, ``ALPHA = 1.00`` in their
    ``run_imagenet.py``); OpenOOD's sweep: 50, 100, 200, 500, 1000. ``fraction``: the share
    of training features kept in the bank, a seeded random subset (default 1.0: all, as
    OpenOOD; the paper's ImageNet ablation keeps 1%). Exact search (:func:`blocked_topk`),
    ``block`` queries at a time."""

    name = "knn"
    sweep = {"k": (50, 100, 200, 500, 1000)}
    description = ("minus the squared distance of the L2-normalized pooled features to their k-th nearest "
                   "L2-normalized training feature (Sun et al. 2022)")

    def __init__(self, k: int = 50, fraction: float = 1.0, seed: int = 0, block: int | None = None):
        super().__init__(k, fraction, seed, block)

    def fit(self, train):
        keep = self._bank_rows(train, lambda rows: f"knn with k={self.k} needs at least {self.k} training features, "
                                                   f"but the fitting images give {rows}; fit on more images or lower k")
        self.bank = l2_normalize(train.pooled[keep])

    def __call__(self, predictions):
        return -self._search(predictions, nearest=True).max(axis=1)


def vim_dim(feature_dim: int) -> int:
    """ViM's principal-subspace dimension by feature size, the authors' rule (``benchmark.py``
    of haoqiwang/vim): 1000 for >= 2048 features, 512 for >= 768, else half. OpenOOD's
    scripts use 256 for ResNet-18's 512 and 1000 for ResNet-50's 2048 (the same values)."""
    if feature_dim >= 2048:
        return 1000
    if feature_dim >= 768:
        return 512
    return feature_dim // 2


@register_score
class ViM(OODScore):
    """Virtual-logit matching (Wang et al. 2022, OpenOOD's ``vim``): energy (logsumexp of the
    logits ``W x + b``) minus ``alpha`` times the norm of the feature's residual off the
    principal subspace. Features are first shifted to the origin ``u = -pinv(W) b``; the
    principal subspace is spanned by the ``dim`` leading eigenvectors of the uncentred
    covariance of the shifted training features (``EmpiricalCovariance(assume_centered=True)``
    of ``x - u``); the residual is the projection on the other eigenvectors;
    ``alpha = mean(max training logit) / mean(training residual norm)``. Higher = more ID.
    Needs pooled features, the linear head and a fit on the fitting split (labels unused).

    ``dim``: default None, the authors' rule :func:`vim_dim` (256 for 512 features, 1000 for
    2048); OpenOOD's default 256 and sweep 256, 1000."""

    name = "vim"
    sweep = {"dim": (256, 1000)}
    description = ("energy minus alpha x the norm of the pooled feature's residual off the principal subspace of "
                   "training features, origin -pinv(W) b (Wang et al. 2022)")
    needs_features = True
    needs_fit = True
    needs_head = True

    def __init__(self, dim: int | None = None):
        if dim is not None and int(dim) < 1:
            raise UserError(f"vim dim must be >= 1, not {dim}")
        self.dim = None if dim is None else int(dim)
        self.weight: np.ndarray | None = None
        self.bias: np.ndarray | None = None
        self.origin: np.ndarray | None = None
        self.residual_basis: np.ndarray | None = None
        self.alpha: float | None = None
        self.used_dim: int | None = None

    def params(self):
        return {"dim": self.dim if self.used_dim is None else self.used_dim, "dim_rule": self.dim is None}

    def use_head(self, weight, bias):
        self.weight, self.bias = np.asarray(weight, np.float64), np.asarray(bias, np.float64)
        self.origin = -np.linalg.pinv(self.weight) @ self.bias

    def _residual_norm(self, features: np.ndarray) -> np.ndarray:
        return np.linalg.norm((features - self.origin) @ self.residual_basis, axis=1)

    def fit(self, train):
        if self.weight is None:
            raise RuntimeError("ViM.use_head must be called before fit")
        features = train.pooled.astype(np.float64)
        width = features.shape[1]
        dim = vim_dim(width) if self.dim is None else self.dim
        if not 1 <= dim < width:
            raise UserError(f"vim dim={dim} must be below the feature size {width} (a residual must remain)")
        shifted = features - self.origin
        covariance = shifted.T @ shifted / len(shifted)
        values, vectors = np.linalg.eigh(covariance)
        order = np.argsort(-values, kind="stable")
        self.residual_basis = np.ascontiguousarray(vectors[:, order[dim:]])
        residual = self._residual_norm(features).mean()
        if not residual > 0:
            raise UserError(f"vim: the training features have no residual off their {dim}-dimensional principal "
                            "subspace; lower dim or fit on more images")
        logits = features @ self.weight.T + self.bias
        self.alpha = float(logits.max(axis=1).mean() / residual)
        self.used_dim = dim

    def __call__(self, predictions):
        if self.alpha is None:
            raise RuntimeError("ViM.fit must be called before scoring")
        features = predictions.pooled.astype(np.float64)
        energy = logsumexp(features @ self.weight.T + self.bias, axis=1)
        return energy - self.alpha * self._residual_norm(features)


@register_score
class SHE(OODScore):
    """Simplified Hopfield energy (Zhang et al. 2023, OpenOOD's ``she``): the inner product of
    the pooled feature with the stored pattern of its predicted class (argmax of the logits);
    a class's stored pattern is the mean pooled feature of the training images of that class
    the model classifies correctly. Higher = more ID. Needs pooled features, logits and a fit
    on the labelled fitting split (every class with a correctly classified image). OpenOOD's
    default metric ``inner_product`` (no sweep)."""

    name = "she"
    description = ("inner product of the pooled features with the mean training feature of the predicted class over "
                   "correctly classified training images (simplified Hopfield energy, Zhang et al. 2023)")
    needs_features = True
    needs_fit = True

    def __init__(self):
        self.patterns: np.ndarray | None = None

    def fit(self, train):
        num_classes = train.logits.shape[1]
        correct = train.logits.argmax(axis=1) == train.labels
        _require_classes("the SHE", train.labels[correct], num_classes, what="correctly classified image")
        features, labels = train.pooled[correct].astype(np.float64), train.labels[correct]
        sums = np.zeros((num_classes, features.shape[1]))
        np.add.at(sums, labels, features)
        self.patterns = sums / np.bincount(labels, minlength=num_classes)[:, None]

    def __call__(self, predictions):
        if self.patterns is None:
            raise RuntimeError("SHE.fit must be called before scoring")
        predicted = predictions.logits.argmax(axis=1)
        return (predictions.pooled.astype(np.float64) * self.patterns[predicted]).sum(axis=1)


@register_score
class NNGuide(_BankScore):
    """Nearest-neighbour guidance (Park et al. 2023, OpenOOD's ``nnguide``): the energy
    (logsumexp of the logits) times the guidance, the mean of the ``k`` largest inner
    products of the L2-normalized pooled feature with a bank of L2-normalized training
    features each scaled by its own energy. Higher = more ID. Needs pooled features, logits
    and a fit on the fitting split (labels unused).

    Defaults are OpenOOD's: ``k`` 100 and ``fraction`` 0.01 of the training images in the
    bank (its sweep is only those values; the authors' config uses k=10). The bank is a
    seeded random ``int(N * fraction)`` of the fitting images, as the authors' ``subsample``
    draws it (OpenOOD takes its train loader's first batches until they exceed that count).
    Exact search (:func:`blocked_topk`)."""

    name = "nnguide"
    description = ("energy times the mean of the k largest inner products of the L2-normalized pooled features with "
                   "a bank of normalized training features scaled by their energy (Park et al. 2023)")

    def __init__(self, k: int = 100, fraction: float = 0.01, seed: int = 0, block: int | None = None):
        super().__init__(k, fraction, seed, block)

    def fit(self, train):
        keep = self._bank_rows(train, lambda rows: (
            f"nnguide with k={self.k} needs a bank of at least {self.k} training features, but {self.fraction:g} "
            f"of the {len(train.pooled)} fitting images is {rows}; fit on at least "
            f"{math.ceil(self.k / self.fraction)} images, or raise fraction or lower k"))
        energy = logsumexp(train.logits[keep].astype(np.float64), axis=1)
        self.bank = (l2_normalize(train.pooled[keep]) * energy[:, None]).astype(np.float32)

    def __call__(self, predictions: Predictions):
        guidance = self._search(predictions, nearest=False).mean(axis=1)
        return guidance * logsumexp(predictions.logits.astype(np.float64), axis=1)
