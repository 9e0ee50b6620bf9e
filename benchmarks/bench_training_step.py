"""CutMix's claim of negligible overhead, measured.

Images per second of a full training step (mix, forward, backward, SGD update) for
the baseline, our CutMix (probability 1, so every step mixes: the worst case) and
timm's ``Mixup(mixup_alpha=0, cutmix_alpha=1.0, prob=1.0)`` on the same model and
batch, plus the cost of the mixing call alone. Blocks of steps alternate between
the variants for several rounds, so the machine's drift cancels; medians are
reported. Targets: CutMix at least 0.97 of the baseline's throughput, and at least
0.97 of the throughput of the same step with timm's Mixup doing the CutMix.

On a GPU (``--device cuda``) the same steps run on the device, each timed block ending with the
device synchronized.

    .venv/bin/python benchmarks/bench_training_step.py [--quick] [--device cuda]
"""

from __future__ import annotations


import numpy as np
import torch
from timm.data import Mixup

from _common import (alternating_medians, device_note, markdown_table, parse_rounds, print_summary,
                     throughput_comparisons, verdict)
from cutmix_eval.models import create_model
from cutmix_eval.train.mixing import Baseline, CutMix, soft_cross_entropy

TARGET = 0.97
TARGET_VS_TIMM = 0.97  # no more than 3% slower than timm's Mixup in a whole step


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


def bench(arch: str, size: int, batch: int, rounds: int, steps: int, device: str) -> list[dict]:
    torch.manual_seed(0)
    model = create_model(arch, 10).train().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x, y = torch.rand(batch, 3, size, size, device=device), torch.randint(0, 10, (batch,), device=device)
    mixers = {"baseline": Baseline(10, np.random.default_rng(0)),
              "cutmix (ours)": CutMix(10, np.random.default_rng(0), prob=1.0),
              "cutmix (timm Mixup)": timm_mixer(10)}
    speed = alternating_medians({name: make_step(model, optimizer, m) for name, m in mixers.items()},
                                x, y, rounds, steps)
    mix_speed = alternating_medians(mixers, x, y, rounds, 50)
    return [{"model": f"{arch} {size}px batch {batch}", "variant": name, "images/s": s,
             "ratio to baseline": s / speed["baseline"], "ratio to timm": s / speed["cutmix (timm Mixup)"],
             "mix call (us)": 1e6 * batch / mix_speed[name]}
            for name, s in speed.items()]


def main() -> None:
    rounds, steps, device = parse_rounds(__doc__, quick=(3, 3), full=(7, 5), device=True)
    rows = bench("gapnet", 64, 128, rounds, steps, device) + bench("cifar_resnet56", 32, 64, rounds, steps, device)
    print(f"# Training step: CutMix vs baseline (medians of {rounds} alternating rounds of {steps} steps, "
          f"{device_note(device)})\n")
    print(markdown_table(rows, {"model": "", "variant": "", "images/s": ".0f", "ratio to baseline": ".3f",
                                "ratio to timm": ".3f", "mix call (us)": ".0f"}))
    ours = min(r["ratio to baseline"] for r in rows if r["variant"] == "cutmix (ours)")
    vs_timm = min(r["ratio to timm"] for r in rows if r["variant"] == "cutmix (ours)")
    print(f"\nTarget: CutMix >= {TARGET} x baseline throughput: {verdict(ours, TARGET)} (worst ratio {ours:.3f}).")
    print(f"Target: our CutMix step >= {TARGET_VS_TIMM} x timm Mixup's step throughput: "
          f"{verdict(vs_timm, TARGET_VS_TIMM)} (worst ratio {vs_timm:.3f}).")
    print_summary(throughput_comparisons(rows, "cutmix (ours)", "CutMix training step",
                                         (("baseline", "ratio to baseline", TARGET),
                                          ("cutmix (timm Mixup)", "ratio to timm", TARGET_VS_TIMM)), step=" step"))

if __name__ == "__main__":
    main()
