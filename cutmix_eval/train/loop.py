"""The training loop: one method, one recipe, one output folder.

``train(method, recipe, out_dir)`` writes into ``out_dir``:

``last.pth``
    our checkpoint format after every epoch (atomically), with the optimizer,
    scheduler and AMP-scaler states ``--resume`` needs;
``best.pth``
    the weights with the lowest test top-1 error seen so far (what the paper reports);
``log.jsonl``
    one JSON line per epoch: lr, train loss/accuracy, test top-1/top-5 error, images/s.

Reproducibility: every random choice of an epoch (data order, augmentation,
mixing, dropout) is seeded from ``(seed, epoch, rank)`` alone, so a run killed
after epoch k and resumed from ``last.pth`` reaches the same final weights as an
uninterrupted run (on the same machine, CPU). The four methods share the data
order for a given seed: mixing draws from its own generator.

Under ``torchrun`` the global batch is split across processes
(DistributedSampler + DistributedDataParallel; SyncBatchNorm on CUDA); rank 0
evaluates and writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler

from cutmix_eval.data import create_dataset, dataset_spec
from cutmix_eval.data.base import collate_samples
from cutmix_eval.errors import UserError
from cutmix_eval.fileio import atomic_write_text, writable_folder
from cutmix_eval.metrics.classification import topk_error
from cutmix_eval.models import create_model, model_spec, parse_arch
from cutmix_eval.models.checkpoint import load_checkpoint, read_checkpoint_file, save_checkpoint
from cutmix_eval.models.classifier import Classifier
from cutmix_eval.passes import head, predict
from cutmix_eval.settings import RunSettings
from cutmix_eval.progress import progress_bar
from cutmix_eval.runtime import Loader
from cutmix_eval import distributed
from cutmix_eval.train.augment import batch_augment, sample_transform
from cutmix_eval.train.methods import METHODS, create_mixer
from cutmix_eval.train.mixing import soft_cross_entropy
from cutmix_eval.train.recipes import Recipe

LAST, BEST, LOG = "last.pth", "best.pth", "log.jsonl"
#: recipe fields that may differ when a run is resumed (they do not change the result)
_FREE_ON_RESUME = ("name", "description", "workers")


@dataclass
class TrainOutcome:
    """Where a run wrote its files, and its per-epoch history."""

    method: str
    out_dir: Path
    last: Path
    best: Path
    log: Path
    history: list[dict[str, Any]]

    @property
    def best_top1_error(self) -> float:
        return min(h["test_top1_error"] for h in self.history)


def epoch_seed(seed: int, epoch: int, rank: int, stream: int) -> int:
    """A 63-bit seed for one random stream of one epoch of one process."""
    return int(np.random.SeedSequence([seed, epoch, rank, stream]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def build_datasets(recipe: Recipe, image_size: int, data_root: str | None) -> tuple[Dataset, Dataset, int]:
    """(train set with augmentation, test set with the eval geometry, class count)."""
    spec = dataset_spec(recipe.dataset)
    if spec.kind != "classification" or "train" not in spec.splits:
        raise UserError(f"{recipe.dataset} has no labelled train split to train on")
    eval_split = "test" if "test" in spec.splits else "val"
    # datasets whose images vary in size are brought to the model's size by their own eval
    # geometry, unless a per-image augmentation (ImageNet's random resized crop) replaces it
    sized = {"image_size": image_size} if spec.accepts("image_size") else {}
    train_set = create_dataset(recipe.dataset, "train", root=data_root, **sized)
    per_image = sample_transform(recipe.augment, image_size)
    if per_image is not None:
        train_set.transform = per_image
    test_set = create_dataset(recipe.dataset, eval_split, root=data_root, **sized)
    if len(train_set) == 0 or len(test_set) == 0:
        raise UserError(f"{recipe.dataset}: the train or {eval_split} split is empty; nothing to train on")
    return head(train_set, recipe.train_samples), head(test_set, recipe.test_samples), train_set.num_classes


def _lr_factor(recipe: Recipe, steps_per_epoch: int) -> Callable[[int], float]:
    total = recipe.epochs * steps_per_epoch

    def factor(step: int) -> float:
        if recipe.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        epoch = step // steps_per_epoch
        return recipe.gamma ** sum(epoch >= m for m in recipe.milestones)

    return factor


def _prepare_out_dir(out_dir: Path, resume: bool) -> None:
    writable_folder(out_dir, "--out")
    if not resume and (out_dir / LAST).exists():
        raise UserError(f"{out_dir} already holds a run ({LAST}); pass --resume to continue it, "
                        "or choose another --out")


def _resume_state(out_dir: Path, method: str, recipe: Recipe, num_classes: int) -> tuple[dict, dict]:
    path = out_dir / LAST
    if not path.exists():
        raise UserError(f"nothing to resume: {path} does not exist; run without --resume to start")
    raw = read_checkpoint_file(path)
    state = raw.get("train_state") if isinstance(raw, dict) else None
    if state is None:
        raise UserError(f"{path} has no training state to resume from (it is a final checkpoint)")
    if raw.get("method") != method:
        raise UserError(f"{path} is a run with method {raw.get('method')!r}, not {method!r}; resume it with "
                        "the same method or choose another --out")
    stored = raw.get("train_config", {})
    now = json.loads(json.dumps(recipe.to_dict()))  # tuples -> lists, as stored
    # a field added after the run was started held its default then
    defaults = {f.name: json.loads(json.dumps(f.default)) for f in dataclasses.fields(Recipe)
                if f.default is not dataclasses.MISSING}
    changed = [k for k in now if k not in _FREE_ON_RESUME and stored.get(k, defaults.get(k)) != now[k]]
    if changed:
        details = ", ".join(f"{k} {stored.get(k)!r} -> {now[k]!r}" for k in changed[:4])
        raise UserError(f"{path} was trained with other settings ({details}); resume with the same recipe "
                        "or choose another --out")
    if raw.get("num_classes") != num_classes:
        raise UserError(f"{path} has {raw.get('num_classes')} classes but {recipe.dataset} has {num_classes}")
    model, _ = load_checkpoint(path)  # verifies the weights' sha256
    return state, model.net.state_dict()


def train(method: str, recipe: Recipe, out_dir: str | Path, *, data_root: str | None = None,
          device: str = "auto", resume: bool = False, progress: bool = True,
          log: Callable[[str], None] = print) -> TrainOutcome:
    """Train ``method`` with ``recipe``; checkpoints and log go to ``out_dir``."""
    joined = distributed.world()[1] > 1  # the caller (e.g. the command line) already joined the group
    ctx = distributed.setup(device)
    try:
        return _train(ctx, method, recipe, Path(out_dir), data_root, resume, progress,
                      log if ctx.is_main else (lambda _: None))
    finally:
        if not joined:
            distributed.teardown(ctx)


def _train(ctx: distributed.DistContext, method: str, recipe: Recipe, out_dir: Path, data_root: str | None,
           resume: bool, progress: bool, log: Callable[[str], None]) -> TrainOutcome:
    METHODS.get(method)  # an unknown method fails before any work
    if recipe.batch_size % ctx.world_size:
        raise UserError(f"batch_size {recipe.batch_size} does not split evenly over {ctx.world_size} processes")
    if ctx.is_main:
        _prepare_out_dir(out_dir, resume)
    spec = model_spec(parse_arch(recipe.arch)[0])
    image_size = spec.input_size[-1]
    train_set, test_set, num_classes = build_datasets(recipe, image_size, data_root)

    torch.manual_seed(recipe.seed)  # same initial weights for every method
    model = create_model(recipe.arch, num_classes, mean=recipe.mean, std=recipe.std)
    mean, std = (tuple(v.flatten().tolist()) for v in (model.mean, model.std))
    mixer = create_mixer(method, num_classes, np.random.default_rng(0), **recipe.method_params(method, mean, std))
    use_cuda = ctx.device.type == "cuda"
    use_amp = use_cuda and recipe.amp
    if use_cuda and recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if ctx.distributed and use_cuda and recipe.sync_bn:
        model.net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.net)
    model.to(ctx.device)

    sampler = DistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=recipe.seed)
    local_batch = recipe.batch_size // ctx.world_size
    steps_per_epoch = math.ceil(len(sampler) / local_batch)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(recipe, steps_per_epoch))
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=use_amp)

    augment = batch_augment(recipe.augment)
    history: list[dict[str, Any]] = []
    start_epoch = 1
    if resume:
        state, weights = _resume_state(out_dir, method, recipe, num_classes)
        model.net.load_state_dict(weights)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history = list(state["history"])
        start_epoch = int(state["epoch"]) + 1
        log(f"resuming {method} from epoch {start_epoch - 1} ({out_dir / LAST})")
    net = DistributedDataParallel(model, device_ids=[ctx.device] if use_cuda else None) if ctx.distributed else model

    for epoch in range(start_epoch, recipe.epochs + 1):
        torch.manual_seed(epoch_seed(recipe.seed, epoch, ctx.rank, 0))  # augmentation, dropout
        mixer.start_epoch(np.random.default_rng(epoch_seed(recipe.seed, epoch, ctx.rank, 1)), epoch, recipe.epochs)
        sampler.set_epoch(epoch)
        loader = Loader(train_set, batch_size=local_batch, sampler=sampler, num_workers=recipe.workers,
                        collate_fn=collate_samples, pin_memory=use_cuda,
                        generator=torch.Generator().manual_seed(epoch_seed(recipe.seed, epoch, ctx.rank, 2)))
        lr = optimizer.param_groups[0]["lr"]  # at the start of the epoch
        augment_generator = torch.Generator().manual_seed(epoch_seed(recipe.seed, epoch, ctx.rank, 3))
        record = _train_epoch(net, model, loader, augment, augment_generator, mixer, optimizer, scheduler, scaler, ctx,
                              use_amp, use_cuda and recipe.channels_last, f"{method} {epoch}/{recipe.epochs}",
                              progress)
        top1, top5 = _evaluate(model, test_set, local_batch, ctx.device)  # every rank its shard, gathered
        if ctx.is_main:
            record = {"epoch": epoch, "lr": lr, **record,
                      "test_top1_error": top1, "test_top5_error": top5}
            history.append(record)
            _save(out_dir, model, method, recipe, history, optimizer, scheduler, scaler)
            log(f"{method} epoch {epoch}/{recipe.epochs}: loss {record['train_loss']:.3f}, test top-1 error "
                f"{100 * top1:.2f}%, top-5 {100 * top5:.2f}%, {record['images_per_second']:.0f} img/s, "
                f"{record['seconds']:.0f} s")
        distributed.barrier(ctx)
    model.eval()
    if not ctx.is_main:  # rank 0 kept the history; every process returns the same outcome
        history = read_history(out_dir)
    return TrainOutcome(method, out_dir, out_dir / LAST, out_dir / BEST, out_dir / LOG, history)


def read_history(out_dir: str | Path) -> list[dict[str, Any]]:
    """A run's per-epoch records, from its ``log.jsonl`` (one JSON object per epoch)."""
    return [json.loads(line) for line in (Path(out_dir) / LOG).read_text().splitlines()]


def _train_epoch(net, model, loader, augment, augment_generator, mixer, optimizer, scheduler, scaler, ctx,
                 use_amp: bool, channels_last: bool, desc: str, progress: bool) -> dict[str, float]:
    """One epoch; ``net`` takes the gradient pass (DDP's wrapper under torchrun), ``model`` is
    the classifier inside it, for the methods whose mixing needs the model."""
    net.train()
    start = time.perf_counter()
    loss_sum = correct = seen = 0.0
    bar = progress_bar(loader, desc=desc, unit="batch", enabled=progress and ctx.is_main)
    for batch in bar:
        images = batch["image"].to(ctx.device, non_blocking=True)
        labels = batch["label"].to(ctx.device, non_blocking=True)
        if augment is not None:
            images = augment(images, augment_generator)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(ctx.device.type, dtype=torch.float16, enabled=use_amp):
            logits, targets = mixer.training_step(net, model, images, labels)
        loss = soft_cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        count = targets.shape[0]  # RegMixup trains on 2B rows: its clean and its mixed batch
        loss_sum += loss.item() * count
        correct += (logits.argmax(1) == targets.argmax(1)).sum().item()  # vs the dominant label
        seen += count
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                        img_s=f"{seen / (time.perf_counter() - start):.0f}")
    loss_sum, correct, seen = distributed.sum_over_ranks(ctx, [loss_sum, correct, seen])
    seconds = time.perf_counter() - start
    return {"train_loss": loss_sum / seen, "train_accuracy": correct / seen,
            "images_per_second": seen / seconds, "seconds": seconds}


def _evaluate(model: Classifier, test_set: Dataset, batch_size: int, device: torch.device) -> tuple[float, float]:
    predictions = predict(model, test_set, RunSettings(batch_size=max(batch_size, 256), device=device, progress=False))
    model.train()
    return topk_error(predictions.logits, predictions.labels, 1), topk_error(predictions.logits, predictions.labels, 5)


def _save(out_dir: Path, model: Classifier, method: str, recipe: Recipe, history: list[dict[str, Any]],
          optimizer, scheduler, scaler) -> None:
    latest = history[-1]
    best = min(history, key=lambda h: h["test_top1_error"])
    common = {"method": method, "dataset": recipe.dataset, "train_config": recipe.to_dict()}
    summary = {"epoch": latest["epoch"], "test_top1_error": latest["test_top1_error"],
               "best_top1_error": best["test_top1_error"], "best_epoch": best["epoch"]}
    state = {"epoch": latest["epoch"], "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "scaler": scaler.state_dict(), "history": history}
    if best is latest:
        save_checkpoint(model, out_dir / BEST, extra=summary, **common)
    save_checkpoint(model, out_dir / LAST, extra=summary, train_state=state, **common)
    atomic_write_text(out_dir / LOG, "".join(json.dumps(h) + "\n" for h in history))
