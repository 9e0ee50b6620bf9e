"""White-box attacks in pixel space: FGSM (L-infinity) and PGD (L-infinity or L2), untargeted or
targeted.

Conventions shared by every function here:

* images are ``B x 3 x H x W`` pixels in [0, 1] (our models normalize inside), and
  adversarial images are clipped back to [0, 1];
* the loss is the summed cross-entropy of the logits; an untargeted attack climbs
  the loss of the true label, a targeted one descends the loss of the target;
* the model is put in eval mode (batch-norm statistics are read, never updated) and
  gradients are taken with :func:`torch.autograd.grad` with respect to the input only,
  so nothing is ever accumulated into the parameters' ``.grad``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cutmix_eval.runtime import per_image_uniform


def loss_gradient(model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None = None,
                  temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits / temperature, d CE(logits / temperature, targets) / d images)`` in one
    forward and one backward pass; ``targets=None`` uses the model's own top-1 class (ODIN's
    convention). The logits are detached; the gradient has the images' shape."""
    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model.eval()(x) / temperature
        chosen = logits.argmax(dim=1) if targets is None else targets
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, chosen, reduction="sum"), x)
    return logits.detach(), grad


def fgsm_direction(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
                   targeted: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(clean logits, step direction)`` of FGSM: ``sign(grad)`` (untargeted, away from
    the label) or ``-sign(grad)`` (targeted, toward the target). The direction does not
    depend on eps, so one backward pass serves every eps of a grid."""
    logits, grad = loss_gradient(model, images, targets)
    direction = grad.sign()
    return logits, -direction if targeted else direction


def fgsm(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, eps: float,
         targeted: bool = False) -> torch.Tensor:
    """FGSM (Goodfellow et al. 2015): ``clip(x + eps * sign(grad_x CE(f(x), y)), 0, 1)``
    (targeted: ``clip(x - eps * sign(grad_x CE(f(x), target)), 0, 1)``)."""
    _, direction = fgsm_direction(model, images, targets, targeted)
    return (images + eps * direction).clamp_(0.0, 1.0)


def _fooled(logits: torch.Tensor, targets: torch.Tensor, targeted: bool) -> torch.Tensor:
    predicted = logits.argmax(dim=1)
    return predicted == targets if targeted else predicted != targets


def per_image_l2_ball(keys, shape, *, like: torch.Tensor) -> torch.Tensor:
    """Points uniform in the unit L2 ball (by volume), one ``shape`` array per key: row ``i`` is
    drawn from ``numpy.random.default_rng(keys[i])`` (a Gaussian direction, then a radius
    ``u ** (1 / dimension)``), so it depends on its key alone. On ``like``'s device and dtype."""
    rows = []
    for key in keys:
        rng = np.random.default_rng(key)
        direction = rng.standard_normal(tuple(shape))
        radius = rng.random() ** (1.0 / direction.size)
        rows.append((radius / max(float(np.linalg.norm(direction)), 1e-12)) * direction)
    return torch.from_numpy(np.stack(rows)).to(device=like.device, dtype=like.dtype)


def l2_project(x: torch.Tensor, images: torch.Tensor, eps: float) -> torch.Tensor:
    """``x`` moved onto the L2 ball of radius ``eps`` around each image (``delta * min(1, eps /
    ||delta||)``), then clipped to [0, 1] (which only shortens ``delta``, so both hold)."""
    delta = x - images
    norms = delta.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))
    return (images + delta * torch.clamp(eps / norms.clamp_min(1e-12), max=1.0)).clamp_(0.0, 1.0)


def _l2_direction(grad: torch.Tensor) -> torch.Tensor:
    """Each image's gradient divided by its L2 norm (a zero gradient stays zero)."""
    return grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (grad.dim() - 1))


def pgd(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, eps: float, *, steps: int = 10,
        step_size: float | None = None, random_start: bool = True, restarts: int = 1, targeted: bool = False,
        seed: int = 0, keys: Sequence[int] | torch.Tensor | None = None,
        clean_logits: torch.Tensor | None = None, norm: str = "Linf") -> torch.Tensor:
    """Projected gradient descent (Madry et al. 2018) in the ``norm`` ball of radius ``eps``
    (``"Linf"`` or ``"L2"``). Defaults: 10 steps of ``eps / 4``, a random start, 1 restart.

    Each restart starts at ``x`` or, with ``random_start``, at a random point of the ball
    clipped to [0, 1]: Linf, ``x`` plus uniform noise in ``[-eps, eps]``; L2, ``x`` plus
    ``eps`` times a point uniform (by volume) in the unit L2 ball (:func:`per_image_l2_ball`).
    Image ``i``'s start for restart ``r`` is drawn from ``numpy.random.default_rng((seed,
    keys[i], r))``, with ``keys`` the images' dataset indices, by default their positions in
    the batch, so a start depends on the image alone, not on the batch or the model. Then
    ``steps`` steps of length ``step_size``: Linf, along ``sign(grad)``; L2, along
    ``grad / ||grad||_2`` per image; each followed by the projection onto the eps-ball and
    [0, 1] (L2: :func:`l2_project`). Success is
    kept per image: the returned image is the first point (the clean image, then every
    iterate of every restart in order) at which the attack succeeded (untargeted: top-1
    differs from the label; targeted: top-1 equals the target), or the last iterate of the
    last restart if none did. An image therefore counts as robust only if no point the
    attack visited fooled the model. The logits needed to check each iterate come from the
    forward pass that computes the next gradient, so this costs one extra forward pass per
    restart over the plain loop (``clean_logits``, when the caller has them, save another).
    """
    step = eps / 4 if step_size is None else step_size
    sign = -1.0 if targeted else 1.0
    best = images.detach().clone()
    if clean_logits is None:
        with torch.no_grad():
            clean_logits = model.eval()(images)
    done = _fooled(clean_logits, targets, targeted)
    keys = range(len(images)) if keys is None else keys.tolist() if torch.is_tensor(keys) else keys
    for restart in range(restarts):
        x = images.detach().clone()
        if random_start and eps > 0:
            starts = [(seed, int(k), restart) for k in keys]
            if norm == "L2":
                x = (x + eps * per_image_l2_ball(starts, images.shape[1:], like=images)).clamp_(0.0, 1.0)
            else:
                noise = per_image_uniform(starts, images.shape[1:], like=images)
                x = (x + (2 * noise - 1) * eps).clamp_(0.0, 1.0)
        for _ in range(steps):
            logits, grad = loss_gradient(model, x, targets)
            _keep_first_success(best, done, x, _fooled(logits, targets, targeted))
            if norm == "L2":
                x = l2_project(x + sign * step * _l2_direction(grad), images, eps)
            else:
                x = x + sign * step * grad.sign()
                x = torch.min(torch.max(x, images - eps), images + eps).clamp_(0.0, 1.0)
        with torch.no_grad():
            _keep_first_success(best, done, x, _fooled(model(x), targets, targeted))
        if bool(done.all()):
            break
    return torch.where(done.view(-1, 1, 1, 1), best, x)


def _keep_first_success(best: torch.Tensor, done: torch.Tensor, x: torch.Tensor, fooled: torch.Tensor) -> None:
    """In place: images that were not yet fooled but are fooled at ``x`` keep ``x``."""
    new = fooled & ~done
    best[new] = x[new].detach()
    done |= new
