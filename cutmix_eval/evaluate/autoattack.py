"""AutoAttack (Croce & Hein, ICML 2020) through the authors' own package, ``pyautoattack``
(the registry release of fra31/auto-attack, the code RobustBench runs).

Nothing of the attack is re-implemented here: :func:`autoattack_adversary` builds the package's
``AutoAttack`` with its own version settings (``standard``: APGD-CE, APGD-T with 9 targets,
FAB-T with 9 targets, Square with 5,000 queries, 100 iterations each; ``rand``: APGD-CE and
APGD-DLR with 20 EOT samples, for randomized defenses), and :func:`run_autoattack` calls its
``run_standard_evaluation`` exactly as RobustBench does, collecting the flags its ``checks``
module raises (randomized model, probability output, dynamic model, zero gradients, too few
classes, Square stronger than the white-box attacks). The flags are log records of the
package's ``auto-attack`` logger; they are kept by check name instead of printed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from cutmix_eval.errors import UserError

PACKAGE = "pyautoattack"
PINNED = "0.2.0"
LOGGER = "auto-attack"  # the name the package logs under


def package_version() -> str:
    """The installed ``pyautoattack``'s version; a UserError naming the install line if absent."""
    try:
        import pyautoattack
    except ImportError:
        raise UserError(f"AutoAttack needs the authors' package: pip install {PACKAGE}=={PINNED}") from None
    return pyautoattack.__version__


class _Flags(logging.Handler):
    """Keeps the warnings of the package's ``checks`` module, by check function."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.flags: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.module == "checks":
            self.flags[record.funcName] = record.getMessage()


@contextmanager
def captured_checks() -> Iterator[dict[str, str]]:
    """``{check function: message}`` of every flag the package raises inside the block (the
    handler also keeps them off the terminal: the caller reports them)."""
    logger, handler = logging.getLogger(LOGGER), _Flags()
    logger.addHandler(handler)
    try:
        yield handler.flags
    finally:
        logger.removeHandler(handler)


def check_logits(logits: torch.Tensor) -> None:
    """The package's own ``check_range_output`` on logits already computed (no forward pass);
    a UserError when it flags them as probabilities: gradient attacks on a softmax output
    are unreliable, and AutoAttack's losses expect logits."""
    from pyautoattack import checks

    with captured_checks() as flags:
        checks.check_range_output(lambda _: logits, None, logger=logging.getLogger(LOGGER))
    if flags:
        raise UserError("the model's outputs are probabilities (every row in [0, 1], summing to 1: AutoAttack's "
                        "check_range_output), not logits; attack the model without its final softmax")


def autoattack_adversary(model: torch.nn.Module, *, norm: str, eps: float, version: str, seed: int,
                         device: torch.device | str) -> Any:
    """The package's ``AutoAttack`` on ``model`` (put in eval mode) with the package's own
    settings for ``version`` (``standard`` or ``rand``) and a fixed ``seed``."""
    package_version()
    from pyautoattack import AutoAttack

    return AutoAttack(model.eval(), norm=norm, eps=eps, version=version, seed=seed, device=device)


#: the package's settings of each attack that change its outcome (they enter the stage key)
_ATTACK_SETTINGS = {
    "apgd": ("n_iter", "n_restarts", "eot_iter", "thr_decr", "use_largereps"),
    "apgd_targeted": ("n_iter", "n_restarts", "n_target_classes", "eot_iter", "thr_decr", "use_largereps"),
    "fab": ("n_iter", "n_restarts", "n_target_classes"),
    "square": ("n_queries", "p_init"),
}


def stage_key(adversary: Any, images: torch.Tensor, labels: torch.Tensor, weights: str, batch_size: int) -> str:
    """The key under which :func:`run_autoattack` keeps its finished attacks for these images:
    the SHA-256 of everything the outcome depends on (the images' and labels' bytes, the model's
    ``weights`` digest, norm, eps, version, seed, batch size, the attacks and their settings, the
    package's version), so a part is only ever picked up by the run that made it."""
    digest = hashlib.sha256()
    digest.update(images.detach().cpu().contiguous().numpy().tobytes())
    digest.update(labels.detach().cpu().to(torch.int64).numpy().tobytes())
    settings = {name: [getattr(getattr(adversary, name), a) for a in names] for name, names in _ATTACK_SETTINGS.items()}
    digest.update(json.dumps([weights, adversary.norm, adversary.epsilon, adversary.version, adversary.seed,
                              batch_size, list(adversary.attacks_to_run), settings, package_version()]).encode())
    return f"autoattack-{digest.hexdigest()[:32]}.pt"


def run_autoattack(adversary: Any, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                   parts: Any = None, key: str = "") -> tuple[torch.Tensor, dict[str, str]]:
    """``(top-1 class of each image's final point, the checks' flags)`` of the package's
    ``run_standard_evaluation(images, labels, batch_size=...)``, for images the model gets right.
    An image every attack failed on keeps its label.

    The package's attacks run one call each, in the version's order, each on the images every
    earlier attack failed on. That is what one call does inside: the same images in the same
    ``batch_size`` batches, and each attack re-seeds per batch. So the outcome is one call's, and
    the test holds it to that. The two checks that look at the whole list of attacks (Square
    against the white-box attacks, the class count against the targets) are then made once
    more with that list, through the package's own functions, so the flags are one call's too.

    After each attack the outcome so far goes to ``parts`` under ``key`` (``RunSettings.parts``;
    :func:`stage_key`), and a rerun continues after the last attack kept there; the part is
    removed once the last attack has run. The package's own ``state_path`` resume is not used:
    in 0.2.0 a restored run fails on its first fooled image, its ``y_adv`` being defined only on
    a fresh run.
    """
    from pyautoattack import checks

    attacks = list(adversary.attacks_to_run)
    fresh = {"finished": [], "robust": torch.ones(len(labels), dtype=torch.bool),
             "predicted": labels.detach().cpu().clone(), "accuracy": {"clean": 1.0}, "flags": {}}
    state = _read_stages(parts, key) or fresh
    try:
        for attack in attacks[len(state["finished"]):]:
            robust = state["robust"]
            if robust.any():
                adversary.attacks_to_run = [attack]
                with captured_checks() as flags:
                    _, predicted = adversary.run_standard_evaluation(images[robust], labels[robust],
                                                                     batch_size=batch_size)
                fooled = predicted.cpu() != labels[robust].cpu()
                hit = robust.nonzero().flatten()[fooled]
                state["predicted"][hit], state["robust"][hit] = predicted.cpu()[fooled], False
                state["flags"] |= flags
            state["accuracy"][attack] = float(state["robust"].float().mean()) if len(labels) else 0.0
            state["finished"].append(attack)
            if parts is not None and attack != attacks[-1]:
                buffer = io.BytesIO()
                torch.save(state, buffer)
                parts.write(key, buffer.getvalue())
    finally:
        adversary.attacks_to_run = attacks
    with torch.no_grad():
        num_classes = adversary.get_logits(images[:1].to(adversary.device)).shape[-1]
    with captured_checks() as flags:  # the two checks that look at every attack, as one call makes them
        checks.check_n_classes(num_classes, attacks, adversary.apgd_targeted.n_target_classes,
                               adversary.fab.n_target_classes, logger=logging.getLogger(LOGGER))
        checks.check_square_sr(state["accuracy"], logger=logging.getLogger(LOGGER))
    if parts is not None:
        parts.remove(key)
    return state["predicted"], state["flags"] | flags


def _read_stages(parts: Any, key: str) -> dict[str, Any] | None:
    """The stages a run kept in ``parts`` under ``key``, or None when there are none (or they
    cannot be read: those attacks run again)."""
    data = parts.read(key) if parts is not None else None
    if data is None:
        return None
    try:
        return torch.load(io.BytesIO(data), weights_only=True)
    except Exception:  # noqa: BLE001 - a torn or foreign file: start over rather than fail the run
        return None
