"""CutMix's claim of negligible overhead, measured.

Images per second of a full training step (mix, forward, backward, SGD update) for
the baseline, our CutMix (probability 1, so every step mixes: the worst case) and
timm's ``Mixup(mixup_alpha=0, cutmix_alpha=1.0, prob=1.0)`` on the same model and
batch, plus the cost of the mixing call alone. Blocks of steps alternate between
the variants for several rounds, so the machine's drift cancels; medians are
reported. Target: CutMix at least 0.97 of the baseline's throughput.

    .venv/bin/python benchmarks/bench_training_step.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from timm.data import Mixup

from cutmix_eval.models import create_model
from cutmix_eval.train.mixing import Baseline, CutMix, soft_cross_entropy

TARGET = 0.97


def make_step(model, optimizer, mixer):
    def step(x, y):
        mixed, targets = mixer(x, y)
        loss = soft_cross_entropy(model(mixed), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def timm_mixer(num_classes):
    timm_mix = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, label_smoothing=0.0, num_classes=num_classes)
    return lambda x, y: timm_mix(x.clone(), y)  # timm mixes in place; clone like ours for a fair comparison


def throughput(fn, x, y, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn(x, y)
    return steps * x.shape[0] / (time.perf_counter() - start)


def bench(arch: str, size: int, batch: int, rounds: int, steps: int) -> list[dict]:
    torch.manual_seed(0)
    model = create_model(arch, 10).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x, y = torch.rand(batch, 3, size, size), torch.randint(0, 10, (batch,))
    mixers = {"baseline": Baseline(10, np.random.default_rng(0)),
              "cutmix (ours)": CutMix(10, np.random.default_rng(0), prob=1.0),
              "cutmix (timm Mixup)": timm_mixer(10)}
    steps_fn = {name: make_step(model, optimizer, m) for name, m in mixers.items()}
    for fn in steps_fn.values():  # warm-up
        throughput(fn, x, y, 2)
    samples = {name: [] for name in steps_fn}
    mix_only = {name: [] for name in steps_fn}
    for _ in range(rounds):
        for name, fn in steps_fn.items():
            samples[name].append(throughput(fn, x, y, steps))
            mix_only[name].append(1e6 / throughput(mixers[name], x, y, 50) * batch)  # microseconds per call
    base = statistics.median(samples["baseline"])
    return [{"model": f"{arch} {size}px batch {batch}", "variant": name,
             "images/s": statistics.median(v), "ratio to baseline": statistics.median(v) / base,
             "mix call (us)": statistics.median(mix_only[name])} for name, v in samples.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    rounds, steps = (3, 3) if args.quick else (7, 5)
    rows = bench("gapnet", 64, 128, rounds, steps) + bench("cifar_resnet56", 32, 64, rounds, steps)
    print(f"# Training step: CutMix vs baseline (medians of {rounds} alternating rounds of {steps} steps, "
          f"{torch.get_num_threads()} CPU threads)\n")
    print("| model | variant | images/s | ratio to baseline | mixing call (us) |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['variant']} | {r['images/s']:.0f} | {r['ratio to baseline']:.3f} | "
              f"{r['mix call (us)']:.0f} |")
    ours = [r["ratio to baseline"] for r in rows if r["variant"] == "cutmix (ours)"]
    verdict = "met" if min(ours) >= TARGET else "NOT met"
    print(f"\nTarget: CutMix >= {TARGET} x baseline throughput: {verdict} (worst ratio {min(ours):.3f}).")


if __name__ == "__main__":
    main()
