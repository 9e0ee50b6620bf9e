"""Where the quick start's time goes, and what each speed lever buys on this machine.

Three measurements, each against the plain-PyTorch floor or the previous setting in the same run:

* **the training step** of the quick start's network (``gapnet``, 64 px, batch 128) at the old
  width 32 and the new width 16: eager fp32 with every thread, one thread, channels-last and
  ``torch.compile`` (whose one-off compile time is printed), as images per second;
* **a training epoch through our loop** (``train``: DataLoader, augmentation, mixing hook,
  per-epoch test error) against a plain PyTorch loop over the same images in memory (forward,
  backward, SGD: the floor), with DataLoader workers 0 and 2;
* **the other phases**: generating the embedded data (10,000 training and 2,000 test images)
  and one per-epoch evaluation of the test error.

    .venv/bin/python benchmarks/bench_quickstart.py [--quick]
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace

import torch

from _common import alternating_seconds, device_note, markdown_table, parse_rounds, print_summary, comparison
from cutmix_eval.data.synthetic import generate
from cutmix_eval.models import create_model
from cutmix_eval.train import get_recipe, train
from cutmix_eval.train.mixing import soft_cross_entropy

BATCH, SIZE = 128, 64


def step_fn(model, x, y):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def steps(rounds: int, calls: int) -> list[dict]:
    """Images/s of one training step per network width and lever."""
    rows = []
    threads = torch.get_num_threads()
    x, y = torch.rand(BATCH, 3, SIZE, SIZE), torch.randint(0, 10, (BATCH,))
    for width in (32, 16):
        arch = f"gapnet:width={width}"
        torch.manual_seed(0)
        variants = {"eager": step_fn(create_model(arch, 10).train(), x, y)}
        variants["channels-last"] = step_fn(create_model(arch, 10).train().to(memory_format=torch.channels_last),
                                            x.contiguous(memory_format=torch.channels_last), y)
        start = time.perf_counter()
        compiled = step_fn(torch.compile(create_model(arch, 10).train()), x, y)
        compiled()
        compile_seconds = time.perf_counter() - start
        variants["torch.compile"] = compiled
        seconds = alternating_seconds(variants, rounds, calls)
        torch.set_num_threads(1)
        one = alternating_seconds({"1 thread": variants["eager"]}, rounds, calls)
        torch.set_num_threads(threads)
        seconds.update(one)
        for name, s in seconds.items():
            rows.append({"network": arch, "lever": name, "images/s": BATCH / s,
                         "ratio": seconds["eager"] / s,
                         "one-off s": compile_seconds if name == "torch.compile" else None})
    return rows


def floor_epoch(recipe, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Seconds of one epoch of the plain loop: shuffled batches of in-memory tensors."""
    torch.manual_seed(0)
    model = create_model(recipe.arch, 10).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=0.9, nesterov=True,
                                weight_decay=recipe.weight_decay)
    start = time.perf_counter()
    order = torch.randperm(len(images))
    for i in range(0, len(images), recipe.batch_size):
        batch = order[i:i + recipe.batch_size]
        loss = soft_cross_entropy(model(images[batch]), torch.nn.functional.one_hot(labels[batch], 10).float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def epochs(train_samples: int) -> list[dict]:
    """One epoch through ``train`` (workers 0 and 2) against the plain loop's floor."""
    recipe = get_recipe("quick", epochs=1, train_samples=train_samples)
    data = generate("synthetic", "train", 10_000, image_size=SIZE, num_classes=10, seed=0)
    images = (torch.from_numpy(data.images[:train_samples]).float() / 255 - 0.5) / 0.25
    labels = torch.from_numpy(data.labels[:train_samples])
    floor = min(floor_epoch(recipe, images, labels) for _ in range(2))
    rows = [{"epoch of": f"{train_samples} images", "path": "plain PyTorch loop (floor)", "seconds": floor,
             "ratio to floor": 1.0}]
    for workers in (0, 2):
        with tempfile.TemporaryDirectory() as out:
            outcome = train("baseline", replace(recipe, workers=workers), out, progress=False, log=lambda _: None)
        record = outcome.history[-1]
        rows.append({"epoch of": f"{train_samples} images", "path": f"cutmix-eval train, workers {workers}",
                     "seconds": record["seconds"], "ratio to floor": record["seconds"] / floor})
    return rows


def phases(train_samples: int, test_samples: int) -> list[dict]:
    from cutmix_eval.data import create_dataset
    from cutmix_eval.passes import head, predict
    from cutmix_eval.settings import RunSettings

    start = time.perf_counter()
    generate("synthetic", "train", 10_000, cache=False, image_size=SIZE, num_classes=10, seed=0)
    generate("synthetic", "test", 2_000, cache=False, image_size=SIZE, num_classes=10, seed=0)
    rows = [{"phase": "generate 10,000 + 2,000 images (no cache)", "seconds": time.perf_counter() - start}]
    model = create_model(get_recipe("quick").arch, 10).eval()
    test = head(create_dataset("synthetic", "test"), test_samples)
    start = time.perf_counter()
    predict(model, test, RunSettings(batch_size=256, device="cpu", progress=False))
    rows.append({"phase": f"per-epoch test error on {test_samples} images", "seconds": time.perf_counter() - start})
    return rows


def main() -> None:
    rounds, calls, train_samples = parse_rounds(__doc__, quick=(3, 2, 1024), full=(5, 3, 4000))
    recipe = get_recipe("quick")
    print(f"# The quick start's time ({device_note('cpu')}; recipe `quick`: {recipe.arch}, {recipe.epochs} epochs "
          f"of {recipe.train_samples} images)\n")
    step_rows = steps(rounds, calls)
    print(markdown_table(step_rows, {"network": "", "lever": "", "images/s": ".0f", "ratio": ".2f",
                                     "one-off s": ".1f"}))
    print()
    epoch_rows = epochs(train_samples)
    print(markdown_table(epoch_rows, {"epoch of": "", "path": "", "seconds": ".2f", "ratio to floor": ".2f"}))
    print()
    print(markdown_table(phases(train_samples, recipe.test_samples or 2000), {"phase": "", "seconds": ".2f"}))
    ours = next(r for r in epoch_rows if r["path"].endswith("workers 0"))
    print_summary([comparison(f"quick-recipe epoch of {train_samples} images through train() vs the plain loop",
                              ours["seconds"], epoch_rows[0]["seconds"], "s", ours["ratio to floor"], "informational",
                              None, "plain PyTorch loop")])


if __name__ == "__main__":
    main()
