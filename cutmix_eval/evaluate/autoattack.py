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


def run_autoattack(adversary: Any, images: torch.Tensor, labels: torch.Tensor,
                   batch_size: int) -> tuple[torch.Tensor, dict[str, str]]:
    """``(top-1 class of each image's final point, the checks' flags)``: the package's
    ``run_standard_evaluation(images, labels, batch_size=...)``. An image the model gets wrong
    is not attacked and keeps its clean prediction; one every attack failed on keeps its label.
    (The package's ``state_path`` resume is not used: in 0.2.0 a restored run fails on its first
    fooled image, its ``y_adv`` being defined only on a fresh run.)"""
    with captured_checks() as flags:
        _, predicted = adversary.run_standard_evaluation(images, labels, batch_size=batch_size)
    return predicted, flags
