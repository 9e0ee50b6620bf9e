"""Post-hoc OOD detectors that reshape the softmax, the pooled features or the linear head.

Each reproduces the definition of OpenOOD v1.5 (``openood/postprocessors/*_postprocessor.py``,
``openood/networks/{react,ash,scale}_net.py``, defaults from ``configs/postprocessors/*.yml``),
checked against the authors' code where it is public. Every score reads the shared
post-hoc pass: logits, and the pooled penultimate features (the linear classifier's input,
after the network's last ReLU). Scores that rebuild logits from reshaped features use the
head given by :meth:`~cutmix_eval.evaluate.ood_scores.OODScore.use_head`; scores that need
statistics of in-distribution data take them from the fitting set (the ID training split
unless ``--fit-data`` says otherwise). Higher = more in-distribution throughout.

Where OpenOOD estimates a statistic on its ID *validation* split (ReAct's clipping
threshold, KLM's templates: ``fit_split = "val"``), the evaluator fits on the ID validation
images when it has them (an OpenOOD benchmark, tuned on its validation split) and on the
fitting set otherwise; the record's ``fit_data`` says which. Computation is in float64 from the float32 pass, as in
:mod:`cutmix_eval.evaluate.ood_scores`.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, softmax, xlogy

from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.ood_scores import OODScore, TemperedScore, logits64, register_score
from cutmix_eval.passes import Predictions

#: OpenOOD's sweep of the activation-shaping percentile (``configs/postprocessors/{ash,scale}.yml``)
SHAPING_GRID = (65.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0)


def _pooled(predictions: Predictions, score: str) -> np.ndarray:
    if predictions.pooled is None:
        raise RuntimeError(f"{score} needs the pooled features of the pass (keep_features=True)")
    return predictions.pooled.astype(np.float64)


def _percentile(value: float, score: str, *, top: float = 100.0) -> float:
    if not 0 <= value <= top:
        raise UserError(f"{score} percentile must lie in [0, {top:g}], not {value}")
    return float(value)


def _energy(logits: np.ndarray) -> np.ndarray:
    """The energy score at temperature 1, ``logsumexp`` over classes (OpenOOD's ``energyconf``)."""
    return logsumexp(logits, axis=1)


@register_score
class GEN(OODScore):
    """GEN (Liu et al. 2023): minus the generalized entropy of the ``M`` largest softmax
    probabilities, ``-sum_j p_j^gamma (1 - p_j)^gamma`` over the top-``M`` classes (all of them
    when ``M`` >= the number of classes). Reads the logits only. Defaults ``gamma`` 0.1,
    ``M`` 100 (OpenOOD's ``gen.yml``); its sweep: ``gamma`` in 0.01, 0.1, 0.5, 1, 2, 5, 10 and
    ``M`` in 10, 50, 100, 200, 500, 1000."""

    name = "gen"
    description = ("minus the generalized entropy sum p^gamma (1-p)^gamma of the top-M softmax probabilities "
                   "(Liu et al. 2023)")
    sweep = {"gamma": (0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0), "M": (10, 50, 100, 200, 500, 1000)}

    def __init__(self, gamma: float = 0.1, M: int = 100):
        if not gamma > 0 or int(M) != M or M < 1:
            raise UserError(f"GEN needs gamma > 0 and an integer M >= 1, not gamma={gamma}, M={M}")
        self.gamma, self.M = float(gamma), int(M)

    def params(self):
        return {"gamma": self.gamma, "M": self.M}

    def __call__(self, predictions):
        top = np.sort(softmax(logits64(predictions), axis=1), axis=1)[:, -self.M:]
        return -(top ** self.gamma * (1 - top) ** self.gamma).sum(axis=1)


@register_score
class KLMatching(OODScore):
    """KL matching (Hendrycks et al. 2022, "Scaling out-of-distribution detection"): one
    template per class, the mean softmax of the fitting images *predicted* as that class
    (argmax of the logits, not the label; a class predicted for none gets the one-hot
    template); score = minus the smallest ``KL(softmax || template)`` (scipy's ``entropy(p,
    q)``: both normalized to sum 1, ``0 log 0 = 0``, infinite where a template is 0 and the
    softmax is not). Reads the logits; fits on the fitting set's logits. OpenOOD
    (``kl_matching_postprocessor.py``) builds the templates on its ID validation split, and so
    does the evaluator when it has one; else the fitting set serves. No hyper-parameters."""

    name = "klm"
    description = ("minus the smallest KL divergence of the softmax to the class templates, the mean softmax of "
                   "the fitting images predicted as each class (Hendrycks et al. 2022)")
    needs_fit = True
    fit_split = "val"

    def __init__(self):
        self.templates: np.ndarray | None = None

    def fit(self, train):
        probs = softmax(logits64(train), axis=1)
        predicted = probs.argmax(axis=1)
        num_classes = probs.shape[1]
        templates = np.eye(num_classes)
        for c in np.unique(predicted):
            templates[c] = probs[predicted == c].mean(axis=0)
        self.templates = templates

    def __call__(self, predictions):
        if self.templates is None:
            raise RuntimeError("KLMatching.fit must be called before scoring")
        p = softmax(logits64(predictions), axis=1)
        p = p / p.sum(axis=1, keepdims=True)
        q = self.templates / self.templates.sum(axis=1, keepdims=True)
        zero = q == 0
        log_q = np.log(np.where(zero, 1.0, q))
        divergence = xlogy(p, p).sum(axis=1)[:, None] - p @ log_q.T
        divergence[(p > 0).astype(np.float64) @ zero.T.astype(np.float64) > 0] = np.inf
        return -divergence.min(axis=1)


class _HeadEnergy(OODScore):
    """Energy (``logsumexp``, temperature 1) of logits the linear head recomputes from reshaped
    pooled features; subclasses define :meth:`shape` (and may reshape the head)."""

    needs_features = True
    needs_head = True

    def __init__(self):
        self.weight: np.ndarray | None = None
        self.bias: np.ndarray | None = None

    def use_head(self, weight, bias):
        self.weight, self.bias = np.asarray(weight, np.float64), np.asarray(bias, np.float64)

    def shape(self, features: np.ndarray) -> np.ndarray:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def head_weight(self) -> np.ndarray:
        return self.weight

    def __call__(self, predictions):
        if self.weight is None:
            raise RuntimeError(f"{type(self).__name__}.use_head must be called before scoring")
        shaped = self.shape(_pooled(predictions, self.name))
        return _energy(shaped @ self.head_weight().T + self.bias)


@register_score
class ReAct(_HeadEnergy):
    """ReAct (Sun et al. 2021): the pooled features clipped from above at a threshold ``c``,
    ``min(h, c)``, through the linear head, then the energy score. ``c`` is the
    ``percentile``-th percentile of every pooled activation (all images x all units,
    flattened) of the ID validation images, as OpenOOD v1.5 (``react_postprocessor.py``) and the
    authors' ``compute_threshold.py`` take it, when the evaluator has them; else of the fitting
    set (the ID training split by default). Needs the
    pooled features, the head and a fit. Default ``percentile`` 90 (OpenOOD's ``react.yml``,
    the paper's); OpenOOD's sweep 85, 90, 95, 99. Setting :attr:`threshold` to infinity
    gives the plain energy score."""

    name = "react"
    description = ("energy of the logits recomputed from pooled features clipped at the percentile-p activation "
                   "of the fitting set (Sun et al. 2021)")
    needs_fit = True
    fit_split = "val"
    sweep = {"percentile": (85.0, 90.0, 95.0, 99.0)}

    def __init__(self, percentile: float = 90):
        super().__init__()
        self.percentile = _percentile(percentile, "ReAct")
        self.threshold: float | None = None

    def params(self):
        return {"percentile": self.percentile} | ({} if self.threshold is None else {"threshold": self.threshold})

    def fit(self, train):
        # the reference's np.percentile over the float32 activations, flattened
        self.threshold = float(np.percentile(_pooled(train, self.name).astype(np.float32).ravel(), self.percentile))

    def shape(self, features):
        if self.threshold is None:
            raise RuntimeError("ReAct.fit must be called before scoring")
        return np.minimum(features, self.threshold)


@register_score
class DICE(_HeadEnergy):
    """DICE (Sun & Li 2022): the linear head sparsified, then the energy score. The
    contribution of unit ``i`` to class ``k`` is ``mean_h[i] * W[k, i]``, ``mean_h`` the mean
    pooled feature of the fitting set (OpenOOD's ``dice_postprocessor.py``: its training
    split); the weights whose contribution is strictly above the ``p``-th percentile of all
    ``K x D`` contributions are kept, the others zeroed, the bias kept. ``p`` = 0 keeps every
    weight (no sparsification, the energy score; the reference's strict ``>`` would still
    drop the smallest contribution). Needs the pooled features, the head and a fit. Default
    ``p`` 90 (OpenOOD's ``dice.yml``, whose sweep is only 90)."""

    name = "dice"
    description = ("energy of the logits of a head keeping only the weights whose contribution (mean training "
                   "feature x weight) is above its p-th percentile (Sun & Li 2022)")
    needs_fit = True

    def __init__(self, p: float = 90):
        super().__init__()
        self.p = _percentile(p, "DICE")
        self.mask: np.ndarray | None = None

    def params(self):
        return {"p": self.p}

    def fit(self, train):
        if self.weight is None:
            raise RuntimeError("DICE.use_head must be called before fit")
        contribution = _pooled(train, self.name).mean(axis=0)[None, :] * self.weight
        self.mask = (np.ones(contribution.shape, bool) if self.p == 0
                     else contribution > np.percentile(contribution, self.p))

    def head_weight(self):
        if self.mask is None:
            raise RuntimeError("DICE.fit must be called before scoring")
        return self.weight * self.mask

    def shape(self, features):
        return features


def _top(features: np.ndarray, percentile: float) -> tuple[int, np.ndarray]:
    """``(k, mask)``: per image, the ``k = D - round(D * percentile / 100)`` largest pooled
    activations (the reference's count, numpy's round-half-to-even), as a boolean ``N x D``
    mask. Ties (post-ReLU zeros) go to the lower unit index; the reference's ``torch.topk``
    leaves them unspecified."""
    n = features.shape[1]
    k = n - int(np.round(n * percentile / 100.0))
    mask = np.zeros(features.shape, bool)
    order = np.argsort(-features, axis=1, kind="stable")[:, :k]
    np.put_along_axis(mask, order, True, axis=1)
    return k, mask


class _Shaping(_HeadEnergy):
    """Activation shaping of the pooled features, per image, at ``percentile`` (OpenOOD's
    ``ash_net.py``/``scale_net.py`` apply it to the pooled vector viewed as ``N x C x 1 x 1``,
    as the ASH authors' ResNets do after ``avgpool``), then the head and the energy score."""

    sweep = {"percentile": SHAPING_GRID}

    def __init__(self, percentile: float = 90):
        super().__init__()
        self.percentile = _percentile(percentile, self.name)

    def params(self):
        return {"percentile": self.percentile}


@register_score
class ASHP(_Shaping):
    """ASH-P (Djurisic et al. 2023): per image, the pooled activations below the top
    ``100 - percentile`` % are set to 0, the rest kept, then the head and the energy score.
    ``percentile`` 0 keeps everything (the energy score). Needs the pooled features and the
    head. Default 90: OpenOOD's ASH percentile (``ash.yml``, for its one variant, ASH-B);
    its sweep 65, 70, ..., 95. The authors' repository sweeps 65-99."""

    name = "ash_p"
    description = ("energy of the logits of the pooled features pruned to their top (100-p)% per image "
                   "(ASH-P, Djurisic et al. 2023)")

    def shape(self, features):
        return features * _top(features, self.percentile)[1]


@register_score
class ASHB(_Shaping):
    """ASH-B (Djurisic et al. 2023): per image, the top ``100 - percentile`` % pooled
    activations (``k`` of them) are all set to ``s / k``, ``s`` the sum of every activation of
    the image, the others to 0, then the head and the energy score (all zero when ``k`` = 0).
    Needs the pooled features and the head. Default 90, OpenOOD's ``ash.yml`` (its ``ash``
    *is* ASH-B: ``ash_net.py`` calls ``ash_b``); its sweep 65, 70, ..., 95."""

    name = "ash_b"
    description = ("energy of the logits of the pooled features binarized per image: the top (100-p)% set to "
                   "their sum / count, the rest 0 (ASH-B, Djurisic et al. 2023)")

    def shape(self, features):
        k, mask = _top(features, self.percentile)
        if k == 0:
            return np.zeros_like(features)
        return mask * (features.sum(axis=1, keepdims=True) / k)


def _sharpening(features: np.ndarray, percentile: float) -> tuple[np.ndarray, np.ndarray]:
    """``(pruned, exp(s1 / s2))`` per image: the features pruned to the top ``100 - percentile``
    %, and the exponential of the sum of all activations over the sum of the kept ones (1 where
    nothing is kept or every kept one is 0, leaving zeros zeros; the reference divides by 0)."""
    pruned = features * _top(features, percentile)[1]
    kept = pruned.sum(axis=1, keepdims=True)
    ratio = np.divide(features.sum(axis=1, keepdims=True), kept, out=np.zeros_like(kept), where=kept != 0)
    return pruned, np.exp(ratio)


@register_score
class ASHS(_Shaping):
    """ASH-S (Djurisic et al. 2023): per image, the pooled features pruned to the top ``100 -
    percentile`` % (as ASH-P), then multiplied by ``exp(s1 / s2)``, ``s1`` the sum before and
    ``s2`` after pruning; then the head and the energy score. Needs the pooled features and
    the head. Default 90 (OpenOOD's ASH percentile; the authors' configs run ``ash_s@90``);
    OpenOOD's sweep 65, 70, ..., 95."""

    name = "ash_s"
    description = ("energy of the logits of the pooled features pruned to their top (100-p)% and scaled by "
                   "exp(sum before / sum after) per image (ASH-S, Djurisic et al. 2023)")

    def shape(self, features):
        pruned, scale = _sharpening(features, self.percentile)
        return pruned * scale


@register_score
class SCALE(_Shaping):
    """SCALE (Xu et al. 2024): per image, the *unpruned* pooled features multiplied by
    ``exp(s1 / s2)``, ``s1`` the sum of all activations and ``s2`` of the top ``100 -
    percentile`` %; then the head and the energy score. Needs the pooled features and the
    head. Default 85 (OpenOOD's ``scale.yml``); its sweep 65, 70, ..., 95."""

    name = "scale"
    description = ("energy of the logits of the pooled features scaled by exp(sum / sum of the top (100-p)%) per "
                   "image (SCALE, Xu et al. 2024)")

    def __init__(self, percentile: float = 85):
        super().__init__(percentile)

    def shape(self, features):
        return features * _sharpening(features, self.percentile)[1]


@register_score
class GradNorm(TemperedScore):
    """GradNorm (Huang et al. 2021): the L1 norm of the gradient, with respect to the last
    linear layer's *weight* (not its bias), of ``sum_k -log softmax(z / T)_k`` (the authors'
    and OpenOOD's loss: all-ones targets, i.e. ``K`` times the cross-entropy to the uniform
    distribution, whose KL to the softmax differs by a constant). That gradient is
    ``(K p - 1) / T`` outer ``h`` (``p = softmax(z / T)``, ``h`` the pooled features), so the
    score is, in closed form, ``sum_k |K p_k - 1| * sum_i |h_i| / T``: no backward pass.
    Reads the logits and the pooled features. Default ``T`` 1 (the authors'; OpenOOD has no
    setting and no sweep)."""

    name = "gradnorm"
    description = ("L1 norm of the last layer's weight gradient of the cross-entropy of softmax(logits / T) to "
                   "all-ones targets, in closed form (Huang et al. 2021)")
    needs_features = True

    def __call__(self, predictions):
        logits = logits64(predictions)
        probs = softmax(logits / self.temperature, axis=1)
        output_grad = np.abs(logits.shape[1] * probs - 1).sum(axis=1) / self.temperature
        return output_grad * np.abs(_pooled(predictions, self.name)).sum(axis=1)


@register_score
class FDBD(OODScore):
    """fDBD (Liu & Qin 2024): the summed distance of the pooled features to the decision
    boundaries between the predicted class ``c`` and every other class ``j``,
    ``|z_c - z_j| / ||W_c - W_j||`` (``z`` the logits, ``W`` the head's weight rows), divided by
    the distance of the features to the mean pooled feature of the fitting set (OpenOOD's
    ``fdbd_postprocessor.py``: its training split; ``distance_as_normalizer=False``: by the
    feature norm ``||h||`` instead). A sum over ``j``, as OpenOOD and the authors' code (the
    paper's mean differs by the constant ``K - 1``). Needs the logits, the pooled features,
    the head and a fit. Default ``distance_as_normalizer`` True (OpenOOD's ``fdbd.yml``); its
    sweep True, False."""

    name = "fdbd"
    sweep = {"distance_as_normalizer": (True, False)}
    description = ("summed distance of the features to the decision boundaries of the predicted class, divided by "
                   "their distance to the mean training feature (Liu & Qin 2024)")
    needs_features = True
    needs_fit = True
    needs_head = True

    def __init__(self, distance_as_normalizer: bool = True):
        self.distance_as_normalizer = bool(distance_as_normalizer)
        self.denominators: np.ndarray | None = None
        self.mean: np.ndarray | None = None

    def params(self):
        return {"distance_as_normalizer": self.distance_as_normalizer}

    def use_head(self, weight, bias):
        weight = np.asarray(weight, np.float64)
        self.denominators = np.stack([np.linalg.norm(weight - row, axis=1) for row in weight])  # K x D at a time
        np.fill_diagonal(self.denominators, 1.0)

    def fit(self, train):
        self.mean = _pooled(train, self.name).mean(axis=0)

    def __call__(self, predictions):
        if self.denominators is None or self.mean is None:
            raise RuntimeError("FDBD.use_head and FDBD.fit must be called before scoring")
        logits, features = logits64(predictions), _pooled(predictions, self.name)
        predicted = logits.argmax(axis=1)
        top = logits[np.arange(len(logits)), predicted]
        distances = (np.abs(top[:, None] - logits) / self.denominators[predicted]).sum(axis=1)
        normalizer = features - self.mean if self.distance_as_normalizer else features
        return distances / np.linalg.norm(normalizer, axis=1)
