"""Adversarial robustness: accuracy under white-box FGSM, PGD and AutoAttack over a grid of eps.

The CutMix paper's number (Table 11) is top-1 accuracy under untargeted FGSM at
eps = 8/255 in [0, 1] pixel space. Attacks (:mod:`cutmix_eval.evaluate.attacks`) run
on the model in eval mode and never touch its parameters or batch-norm statistics.
The threat model is the L-infinity ball (FGSM, PGD, AutoAttack) or the L2 ball (PGD,
AutoAttack) of radius eps around each image.

AutoAttack (:mod:`cutmix_eval.evaluate.autoattack`, the authors' package) attacks, once
per eps after the pass over the data, the images the clean pass found correct, in
``settings.batch_size`` batches, as RobustBench's ``run_standard_evaluation(x, y,
bs=batch_size)`` on the whole set does (that call attacks only the images it finds correct,
so handing it those alone changes nothing); they are held in host memory meanwhile, as
RobustBench holds its test set. It attacks the model itself, never the folded copy below,
so its numbers are the package's own.

Cost: FGSM's direction ``sign(grad)`` does not depend on eps, so one forward and
backward pass per batch (whose forward also gives the clean predictions) plus one
forward pass per eps serve the whole grid. PGD costs ``steps`` forward/backward passes
per eps and restart. Without AutoAttack, every pass runs on a copy of the model whose batch
norms are folded into the convolutions before them (:mod:`cutmix_eval.models.folding`): in
eval mode the same function up to float rounding, with no batch-norm backward to pay for.
With AutoAttack every pass runs on the model itself, so its clean pass is the one the
package would compute.

Targeted attacks aim every image at a target class: ``random`` (a class other than
the label, drawn from a generator seeded by (seed, dataset index), so every model of a
study gets the same targets) or ``least-likely`` (the class with the lowest clean logit,
which depends on the model).
"""

from __future__ import annotations

from fractions import Fraction
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cutmix_eval.data.base import ImageDataset
from cutmix_eval.catalog import ATTACK_EPS_BY_NORM, ATTACK_NORMS, ATTACKS, AUTOATTACK_VERSIONS
from cutmix_eval.catalog import ATTACK_TARGETS as TARGETS
from cutmix_eval.distributed import gather_objects
from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.attacks import fgsm_direction, pgd
from cutmix_eval.evaluate.accumulate import Accumulator, feed
from cutmix_eval.evaluate.autoattack import (autoattack_adversary, check_logits, package_version, run_autoattack,
                                             stage_key)
from cutmix_eval.evaluate.classification import check_compatible
from cutmix_eval.models.classifier import Classifier
from cutmix_eval.models.checkpoint import weights_sha256
from cutmix_eval.models.folding import fold_batchnorm
from cutmix_eval.passes import head, make_loader
from cutmix_eval.results import Result
from cutmix_eval.settings import RunSettings
from cutmix_eval.runtime import on_device, resolve_device

PAPER_EPS = 8 / 255


def eps_label(eps: float) -> str:
    """``8/255`` for multiples of 1/255 (up to float rounding), else the value (``0.03``)."""
    steps = eps * 255
    return f"{round(steps)}/255" if abs(steps - round(steps)) < 1e-6 else f"{eps:g}"


def parse_eps(text: str, norm: str = "Linf") -> list[float]:
    """``"1/255,2/255,0.03"`` -> radii for ``norm`` (:func:`check_eps`), sorted, unique; a
    UserError otherwise."""
    values = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        try:
            values.append(float(Fraction(item)))
        except (ValueError, ZeroDivisionError):
            raise UserError(f"cannot read eps {item!r}; write fractions of 1 such as 8/255 or 0.03") from None
    return check_eps(values, norm)


def check_eps(values, norm: str = "Linf") -> list[float]:
    """Radii sorted and unique: positive, and for Linf at most 1 ([0, 1] pixel units: a value
    such as 8 meant 8 of 255 levels, and the fix ``8/255`` is named). L2 radii may exceed 1."""
    eps = sorted({float(v) for v in values})
    if not eps or eps[0] <= 0:
        raise UserError(f"eps must be one or more positive radii in [0, 1] pixel units (e.g. 8/255), "
                        f"not {list(values)}")
    if norm == "Linf" and eps[-1] > 1:
        raise UserError(f"eps {eps[-1]:g} is more than 1: L-infinity radii are in [0, 1] pixel units; "
                        f"for {eps[-1]:g} of 255 levels write {eps[-1]:g}/255")
    return eps


def random_targets(labels: torch.Tensor, indices: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """A class other than each image's label, uniform over the other classes, drawn from
    ``numpy.random.default_rng((seed, dataset index))``: the same targets for every model and
    batch size."""
    offsets = [int(np.random.default_rng((seed, int(i))).integers(1, num_classes)) for i in indices.tolist()]
    return (labels + torch.as_tensor(offsets, device=labels.device)) % num_classes


def _conventions(attacks: list[str], targeted: bool, target: str, steps: int, step_size: float | None,
                 restarts: int, random_start: bool, norm: str, version: str) -> dict[str, str]:
    goal = (f"targeted at a {target} class (random: another class drawn per image from (seed, index); "
            "least-likely: lowest clean logit), descending the target's cross-entropy"
            if targeted else "untargeted, ascending the cross-entropy of the true label")
    conventions = {
        "space": "attacks in [0, 1] pixel space (normalization is inside the model), adversarial images clipped "
                 "to [0, 1], model in eval mode, white box",
        "threat_model": f"{norm} ball of radius eps around each image (pixel units)",
        "goal": goal,
        "clean_accuracy": "fraction of images whose top-1 class is the label, without attack",
        "accuracy": "robust accuracy: fraction of images whose top-1 class on the attacked image is the label "
                    "(keys {attack}/accuracy@{eps})",
        "success_rate": ("fraction of images whose attacked top-1 class is the target" if targeted else
                         "fraction of the images classified correctly without attack that the attack makes "
                         "wrong") + " (keys {attack}/success_rate@{eps})",
    }
    if "fgsm" in attacks:
        conventions["fgsm"] = "x + eps * sign(grad_x CE(f(x), y)) (targeted: x - eps * sign(grad_x CE(f(x), t))), " \
                              "clipped to [0, 1] (Goodfellow et al. 2015)"
    if "pgd" in attacks:
        size = "eps / 4" if step_size is None else f"{step_size:g}"
        start = "uniform random start in the eps-ball drawn per image from (seed, index, restart), " \
            if random_start else ""
        kind = "sign steps" if norm == "Linf" else "steps along the gradient divided by its L2 norm"
        conventions["pgd"] = (f"{steps} {kind} of {size}, projection to the eps-ball and [0, 1] after each, "
                              f"{start}{restarts} restart(s); an image counts as fooled if any visited point fooled "
                              "the model (Madry et al. 2018)")
    if "autoattack" in attacks:
        conventions["autoattack"] = (f"AutoAttack (Croce & Hein 2020), {version} version, run by the authors' package "
                                     f"pyautoattack {package_version()} with seed = seed, on the images correct without "
                                     "attack, in batches of the batch size; its checks' flags are in the curves "
                                     "(autoattack/checks, by eps) and counted in autoattack/flags@{eps}")
    return conventions


@dataclass(frozen=True)
class AttackSettings:
    """What :func:`evaluate_adversarial` attacks with (checked by it)."""

    attacks: list[str]
    eps: list[float]
    targeted: bool
    target: str
    pgd_steps: int
    pgd_step_size: float | None
    pgd_restarts: int
    random_start: bool
    seed: int
    norm: str = "Linf"
    autoattack_version: str = "standard"


class AdversarialAccumulator(Accumulator):
    """The per-batch work of :func:`evaluate_adversarial`: each batch's clean predictions, its
    attack goals and, per attack and eps, whether the attacked image keeps its label and whether
    it lands on the goal. AutoAttack's images (those correct without attack) are kept, on the
    host, for :meth:`run_autoattack` after the last batch."""

    def __init__(self, model: Classifier, settings: AttackSettings, device: torch.device, dataset_name: str,
                 batch_size: int = 128, parts: Any = None):
        super().__init__()
        self.model, self.settings, self.device, self.dataset_name = model, settings, device, dataset_name
        self.batch_size, self.parts = batch_size, parts
        self.kept_images: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.clean_predictions: list[torch.Tensor] = []
        self.checks: dict[str, dict[str, str]] = {}

    def _goal(self, images: torch.Tensor, labels: torch.Tensor, index: torch.Tensor):
        """The attack's goal class per image, and the clean logits when computing the goal gave them."""
        s = self.settings
        if s.targeted and s.target == "least-likely":
            with torch.no_grad():
                clean_logits = self.model(images)
            return clean_logits.argmin(dim=1), clean_logits
        if s.targeted:
            return random_targets(labels, index, self.model.num_classes, s.seed), None
        return labels, None

    def update(self, batch: dict) -> None:
        s, model = self.settings, self.model
        images, labels = batch["image"].to(self.device), batch["label"].to(self.device)
        goal, clean_logits = self._goal(images, labels, batch["index"])
        direction = None
        if "fgsm" in s.attacks:  # its forward pass gives the clean logits too
            logits, direction = fgsm_direction(model, images, goal, s.targeted)
            clean_logits = logits if clean_logits is None else clean_logits
        if clean_logits is None:
            with torch.no_grad():
                clean_logits = model(images)
        if not torch.isfinite(clean_logits).all():
            bad = int((~torch.isfinite(clean_logits).all(dim=1)).sum())
            raise UserError(f"the model produced NaN or infinite logits for {bad} of {len(labels)} images in a batch of "
                            f"{self.dataset_name}; the attacks' gradients are undefined there (check the checkpoint "
                            "and its input scaling, --mean/--std)")
        if "autoattack" in s.attacks:
            if not self.clean_predictions:
                check_logits(clean_logits)  # the package's own probability check, before any attack
            self._keep_for_autoattack(images, labels, clean_logits.argmax(dim=1))
        outcomes = {}
        for attack in (a for a in s.attacks if a != "autoattack"):
            if attack == "fgsm":
                predicted = fgsm_predictions(model, images, direction, s.eps)
            else:
                predicted = _predict_each(model, (pgd(model, images, goal, e, steps=s.pgd_steps,
                                                      step_size=s.pgd_step_size, random_start=s.random_start,
                                                      restarts=s.pgd_restarts, targeted=s.targeted, seed=s.seed,
                                                      keys=batch["index"], clean_logits=clean_logits, norm=s.norm)
                                                  for e in s.eps))
            outcomes[f"{attack}/robust"] = predicted == labels[:, None]
            outcomes[f"{attack}/hit"] = predicted == goal[:, None]
        self.add(index=batch["index"], clean=clean_logits.argmax(dim=1) == labels, goal=goal, **outcomes)

    def _keep_for_autoattack(self, images: torch.Tensor, labels: torch.Tensor, predicted: torch.Tensor) -> None:
        correct = predicted == labels
        self.clean_predictions.append(predicted.cpu())
        self.labels.append(labels.cpu())
        self.kept_images.append(images[correct].cpu())

    def run_autoattack(self) -> None:
        """AutoAttack at each eps on this process's images that were correct without attack, in
        ``batch_size`` batches; adds the ``autoattack/robust`` and ``/hit`` rows (N x E, every
        image of this process; an image wrong without attack keeps its clean prediction) and
        keeps the checks' flags by eps. With ``parts`` (``RunSettings.parts``) every finished
        attack is kept there until its eps is done, and a rerun continues from it
        (:func:`run_autoattack`)."""
        s = self.settings
        clean, labels = torch.cat(self.clean_predictions), torch.cat(self.labels)
        correct, images = clean == labels, torch.cat(self.kept_images)
        weights = weights_sha256(self.model.state_dict()) if self.parts is not None and len(images) else ""
        columns = []
        for e in s.eps:
            column = clean.clone()
            if len(images):
                adversary = autoattack_adversary(self.model, norm=s.norm, eps=e, version=s.autoattack_version,
                                                 seed=s.seed, device=self.device)
                key = stage_key(adversary, images, labels[correct], weights, self.batch_size)
                attacked, self.checks[eps_label(e)] = run_autoattack(adversary, images, labels[correct],
                                                                     self.batch_size, self.parts, key)
                column[correct] = attacked.cpu()
            columns.append(column)
        robust = torch.stack(columns, dim=1) == labels[:, None]
        self.add(**{"autoattack/robust": robust, "autoattack/hit": robust})  # untargeted: the goal is the label

    def finish(self, model_info: dict[str, Any], dataset_info: dict[str, Any], config: dict[str, Any]) -> Result:
        s, rows = self.settings, self.reduced()
        metrics, curves, per_sample = _summarize(s.eps, rows["clean"], {a: rows[f"{a}/robust"] for a in s.attacks},
                                                 {a: rows[f"{a}/hit"] for a in s.attacks}, s.targeted)
        per_sample = {"index": rows["index"]} | per_sample
        if s.targeted:
            per_sample["target"] = rows["goal"]
        if "fgsm" in s.attacks and any(abs(e - PAPER_EPS) < 1e-9 for e in s.eps) and not s.targeted:
            metrics["accuracy"] = metrics[f"fgsm/accuracy@{eps_label(PAPER_EPS)}"]  # the paper's Table 11 cell
        metrics["num_images"] = int(len(rows["clean"]))
        if "autoattack" in s.attacks:
            checks = merged_checks(gather_objects(self.checks))
            curves["autoattack"]["checks"] = checks
            metrics |= {f"autoattack/flags@{label}": float(len(flags)) for label, flags in checks.items()}
        conventions = _conventions(s.attacks, s.targeted, s.target, s.pgd_steps, s.pgd_step_size, s.pgd_restarts,
                                   s.random_start, s.norm, s.autoattack_version)
        if "accuracy" in metrics:
            conventions["accuracy"] += "; 'accuracy' alone is untargeted FGSM at 8/255, the paper's Table 11 setting"
        return Result(evaluator="adversarial", metrics=metrics, conventions=conventions, model=model_info,
                      dataset=dataset_info, config=config, curves=curves, per_sample=per_sample)


def evaluate_adversarial(model: Classifier, dataset: ImageDataset, *, attacks: tuple[str, ...] | list[str] = ("fgsm",),
                         eps: tuple[float, ...] | list[float] | None = None, targeted: bool = False,
                         target: str = "random", pgd_steps: int = 10, pgd_step_size: float | None = None,
                         pgd_restarts: int = 1, random_start: bool = True, seed: int = 0, norm: str = "Linf",
                         autoattack_version: str = "standard", settings: RunSettings = RunSettings()) -> Result:
    """Clean and robust accuracy of ``model`` on ``dataset`` (its first ``settings.limit``
    images) under each attack at each eps of the ``norm`` ball (default grid: Linf 1, 2, 4,
    8 / 255; L2 0.25, 0.5, 1); see the module docstring for the conventions."""
    attacks = _check_settings(attacks, target, pgd_steps, pgd_step_size, pgd_restarts, targeted, model.num_classes,
                              norm, autoattack_version)
    eps = check_eps(ATTACK_EPS_BY_NORM[norm] if eps is None else eps, norm)
    check_compatible(model, dataset)
    device = resolve_device(settings.device)
    model_record = settings.model_record(model)
    with on_device(model, device):
        if "autoattack" not in attacks:
            model = fold_batchnorm(model)  # the same function, about a fifth cheaper to attack
        data = head(dataset, settings.limit)
        attack = AttackSettings(attacks, eps, targeted, target, pgd_steps, pgd_step_size, pgd_restarts, random_start,
                                seed, norm, autoattack_version)
        accumulator = AdversarialAccumulator(model, attack, device, dataset.name, settings.batch_size,
                                             settings.parts)
        feed(accumulator, make_loader(data, settings.batch_size, settings.num_workers), desc=f"attack {dataset.name}",
             progress=settings.progress)
        if "autoattack" in attacks:
            accumulator.run_autoattack()
        config = {"attacks": attacks, "eps": eps, "norm": norm, "targeted": targeted,
                  "target": target if targeted else None, "pgd_steps": pgd_steps, "pgd_step_size": pgd_step_size,
                  "pgd_restarts": pgd_restarts, "random_start": random_start, "seed": seed,
                  "autoattack_version": autoattack_version if "autoattack" in attacks else None} | settings.config()
        return accumulator.finish(model_record,
                                  {"name": dataset.name, "split": dataset.split, "num_images": len(data),
                                   "num_classes": dataset.num_classes}, config)


def merged_checks(per_process: Sequence[dict[str, dict[str, str]]]) -> dict[str, dict[str, str]]:
    """The AutoAttack checks' flags by eps of every process (under torchrun each attacks its own
    images, and a flag raised on any of them is the run's): ``{eps label: {check: message}}``."""
    merged: dict[str, dict[str, str]] = {}
    for checks in per_process:
        for label, flags in checks.items():
            merged.setdefault(label, {}).update(flags)
    return merged


def _check_settings(attacks: Sequence[str], target: str, pgd_steps: int, pgd_step_size: float | None,
                    pgd_restarts: int, targeted: bool, num_classes: int, norm: str = "Linf",
                    autoattack_version: str = "standard") -> list[str]:
    """The attacks asked for, each once; every setting checked (one UserError each)."""
    attacks = list(dict.fromkeys(attacks))
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown or not attacks:
        raise UserError(f"unknown attack {', '.join(unknown) or '(none)'}; choose from {', '.join(ATTACKS)}")
    if target not in TARGETS:
        raise UserError(f"unknown target rule {target!r}; choose from {', '.join(TARGETS)}")
    if pgd_steps < 1 or pgd_restarts < 1 or (pgd_step_size is not None and pgd_step_size <= 0):
        raise UserError("PGD needs steps >= 1, restarts >= 1 and a positive step size")
    if targeted and num_classes < 2:
        raise UserError("a targeted attack needs a model with at least 2 classes")
    if norm not in ATTACK_NORMS:
        raise UserError(f"unknown norm {norm!r}; choose from {', '.join(ATTACK_NORMS)}")
    if norm != "Linf" and "fgsm" in attacks:
        raise UserError("FGSM is an L-infinity attack; drop fgsm from the attacks or use the Linf norm")
    if "autoattack" in attacks:
        if autoattack_version not in AUTOATTACK_VERSIONS:
            raise UserError(f"unknown AutoAttack version {autoattack_version!r}; choose from "
                            f"{', '.join(AUTOATTACK_VERSIONS)}")
        if targeted:
            raise UserError("AutoAttack is untargeted (APGD-T and FAB-T pick their own targets); drop --targeted "
                            "or the autoattack attack")
        package_version()
    return attacks


def _summarize(eps: Sequence[float], clean_correct: np.ndarray, correct: dict[str, np.ndarray],
               on_goal: dict[str, np.ndarray], targeted: bool) -> tuple[dict, dict, dict]:
    """Metrics, curves and per-image outcomes from each attack's ``N x E`` outcomes: ``correct``
    (still the label) and ``on_goal`` (the attack's goal class). Success rate: targeted, the
    fraction on the target; untargeted, of the images right without attack, the fraction made wrong."""
    metrics: dict[str, float] = {"clean_accuracy": float(clean_correct.mean())}
    curves: dict[str, Any] = {}
    per_sample: dict[str, np.ndarray] = {"clean_correct": clean_correct}
    for attack, right in correct.items():
        success = on_goal[attack].mean(axis=0) if targeted else \
            (clean_correct[:, None] & ~right).sum(axis=0) / max(int(clean_correct.sum()), 1)
        for j, e in enumerate(eps):
            metrics[f"{attack}/accuracy@{eps_label(e)}"] = float(right[:, j].mean())
            metrics[f"{attack}/success_rate@{eps_label(e)}"] = float(success[j])
        curves[attack] = {"eps": [0.0, *eps], "accuracy": [metrics["clean_accuracy"], *right.mean(axis=0)],
                          "success_rate": [0.0, *success]}
        per_sample[f"{attack}/correct"] = right
    return metrics, curves, per_sample


def fgsm_predictions(model: Classifier, images: torch.Tensor, direction: torch.Tensor,
                     eps: list[float] | tuple[float, ...]) -> torch.Tensor:
    """``B x E`` top-1 classes on ``clip(images + eps * direction, 0, 1)`` for each eps, with
    the FGSM ``direction`` of :func:`~cutmix_eval.evaluate.attacks.fgsm_direction`: one
    forward pass per eps, in inference mode."""
    return _predict_each(model, ((images + e * direction).clamp_(0.0, 1.0) for e in eps))


def _predict_each(model: Classifier, batches) -> torch.Tensor:
    """``B x E`` top-1 classes, one column per batch of attacked images (one per eps; an
    iterable, so only one attacked batch is held at a time)."""
    columns = []
    for x in batches:
        with torch.inference_mode():
            columns.append(model(x).argmax(dim=1))
    return torch.stack(columns, dim=1)
