"""Device selection and seeding, shared by training and evaluation."""

from __future__ import annotations

import random

import numpy as np
import torch

from cutmix_eval.errors import UserError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as given (checked)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine; use --device cpu or auto")
    return resolved


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator seeded the same way for
    data order and augmentation, so a run is reproducible from its seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def per_image_uniform(keys, shape, *, like: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) noise, one ``shape`` array per key: row ``i`` is drawn from
    ``numpy.random.default_rng(keys[i])`` (a key is an int or a tuple of ints, such as
    ``(seed, dataset index)``), so an image's noise depends on its key alone, not on the
    batch it is in or the model. Returned on ``like``'s device and dtype."""
    rows = [np.random.default_rng(key).random(tuple(shape), dtype=np.float32) for key in keys]
    return torch.from_numpy(np.stack(rows)).to(device=like.device, dtype=like.dtype)
