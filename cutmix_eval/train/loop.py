"""A plain supervised training loop (baseline method).

SGD with Nesterov momentum, cosine learning-rate decay per step, random
horizontal flips; data order and flips come from one seeded generator, so a run is
reproducible from its seed on the same machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from cutmix_eval.evaluate.passes import make_loader
from cutmix_eval.models.classifier import Classifier
from cutmix_eval.runtime import resolve_device, seed_everything


@dataclass
class TrainConfig:
    epochs: int = 4
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    flip: bool = True
    num_workers: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def channel_stats(dataset: Dataset, max_samples: int = 2000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the first ``max_samples`` images (pixel space)."""
    images = torch.stack([dataset[i]["image"].as_subclass(torch.Tensor)
                          for i in range(min(max_samples, len(dataset)))])
    return images.mean(dim=(0, 2, 3)).tolist(), images.std(dim=(0, 2, 3)).tolist()


def train_classifier(model: Classifier, dataset: Dataset, config: TrainConfig, *, device: str = "auto",
                     progress: bool = True, log: Callable[[str], None] | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place on ``dataset``; returns one dict per epoch (loss, accuracy, time)."""
    device = resolve_device(device)
    generator = seed_everything(config.seed)
    model.to(device).train()
    loader = make_loader(dataset, config.batch_size, config.num_workers, shuffle=True,
                         generator=generator, drop_last=len(dataset) > config.batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * len(loader))
    history = []
    for epoch in range(1, config.epochs + 1):
        start, total_loss, correct, seen = time.perf_counter(), 0.0, 0, 0
        # disable=None: tqdm hides the bar when stderr is not a terminal (logs, CI)
        bar = tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", unit="batch",
                   disable=None if progress else True, leave=False)
        for batch in bar:
            images, labels = batch["image"].to(device), batch["label"].to(device)
            if config.flip:
                flip = torch.rand(images.shape[0], generator=generator) < 0.5
                images = torch.where(flip.to(device)[:, None, None, None], images.flip(-1), images)
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}")
        record = {"epoch": epoch, "loss": total_loss / seen, "train_accuracy": correct / seen,
                  "seconds": time.perf_counter() - start}
        history.append(record)
        if log:
            log(f"epoch {epoch}/{config.epochs}: loss {record['loss']:.3f}, "
                f"train accuracy {100 * record['train_accuracy']:.1f}%, {record['seconds']:.0f} s")
    model.eval()
    return history
