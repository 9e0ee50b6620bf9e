"""Every training method's step against the baseline step, and our mixing calls against the peers'.

1. Images per second of a whole training step (the loop's ``Mixer.training_step``, the soft
   cross-entropy, backward, SGD update) for every method in ``catalog.METHODS`` on the same
   model and batch, each method's probability of mixing set to 1 (every step mixes: the worst
   case). Each method is timed in a pair with the baseline, their blocks of steps alternating,
   so the machine's drift cancels in their ratio; medians are reported, with the ratio to the
   baseline and the cost in baseline steps.
   Targets: the methods that only compose pixels (mask and box methods) at least 0.97 of the
   baseline's throughput. Their step is the baseline's plus the mixing call, so the target is
   judged on ``baseline step / (baseline step + mixing call)``, the call timed on its own on
   the same batch: on a shared 2-core machine two step timings differ by 10-15% from noise
   alone, far more than a mixing call costs. Both figures are printed. The methods that need more than the one pass report their cost in
   baseline steps next to what their design adds (Manifold Mixup: nothing; SnapMix: a forward
   pass for the CAMs; PuzzleMix: a forward and backward pass for the saliency, then graph cuts
   and transport; RegMixup: a batch twice as large).
2. The mixing call alone against the same method's call in the peer that implements it:
   timm's ``Mixup`` (CutMix, its Mixup/CutMix switch) and OpenMixup's augment functions
   (Mixup, CutMix, FMix, GridMix, ResizeMix, SmoothMix). OpenMixup needs mmcv to import as a
   package, so its augment modules are loaded one by one with the two helpers they import
   stubbed, and their hard-coded ``.cuda()`` calls made no-ops on a CPU run. Install it once
   into a folder of its own (its dependencies are not needed):

       .venv/bin/pip install --no-deps --target .venv/openmixup openmixup==0.2.9

    .venv/bin/python benchmarks/bench_mixers.py [--quick] [--device cuda]
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch
from timm.data import Mixup

from _common import (alternating_medians, comparison, device_note, markdown_table, parse_rounds, print_summary,
                     verdict)
from cutmix_eval import catalog
from cutmix_eval.models import create_model
from cutmix_eval.train import get_recipe
from cutmix_eval.train.methods import create_mixer
from cutmix_eval.train.mixing import soft_cross_entropy

TARGET = 0.97
#: what each method that needs the model adds to the baseline's one forward and backward pass
EXTRA_WORK = {"manifold-mixup": "none (mixes inside the pass)", "cutmix-feature": "none (mixes inside the pass)",
              "snapmix": "a no-grad forward (CAMs)", "puzzlemix": "a forward + input backward, graph cuts, transport",
              "regmixup": "the pass on 2B images", "saliencymix": "a saliency map per batch (in the mixing call)"}
#: the methods whose step is more than the baseline's plus a mixing call
MODEL_METHODS = frozenset({"manifold-mixup", "cutmix-feature", "snapmix", "puzzlemix", "regmixup"})
OPENMIXUP = Path(__file__).resolve().parent.parent / ".venv" / "openmixup"
#: our method -> (OpenMixup augment module, its keyword arguments for the same setting)
OPENMIXUP_CALLS = {"mixup": ("mixup", {"alpha": 1.0}), "cutmix": ("cutmix", {"alpha": 1.0}),
                   "fmix": ("fmix", {"alpha": 1.0, "decay_power": 3}),
                   "gridmix": ("gridmix", {"alpha": 0.2, "n_holes": (2, 6), "cut_area_ratio": (0.5, 1),
                                           "cut_aspect_ratio": (0.5, 2)}),
                   "resizemix": ("resizemix", {"scope": (0.1, 0.8)}), "smoothmix": ("smoothmix", {"alpha": 1.0})}


def _mixer(method: str, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)):
    params = get_recipe("quick").method_params(method, mean, std)
    params.update({k: 1.0 for k in ("prob",) if k in params})
    mixer = create_mixer(method, 10, np.random.default_rng(0), **params)
    mixer.start_epoch(np.random.default_rng(0), 1, 1)  # a one-epoch run: scheduled CutMix at its full probability
    return mixer


def make_step(model, optimizer, mixer):
    def step(x, y):
        logits, targets = mixer.training_step(model, model, x, y)
        loss = soft_cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def bench_steps(arch: str, size: int, batch: int, rounds: int, steps: int, device: str) -> list[dict]:
    """Each method against the baseline in a pair of its own (their blocks alternate), so the
    ratio compares steps run moments apart even when the machine drifts over the whole run."""
    torch.manual_seed(0)
    model = create_model(arch, 10).train().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x, y = torch.rand(batch, 3, size, size, device=device), torch.randint(0, 10, (batch,), device=device)
    mean, std = (tuple(v.flatten().tolist()) for v in (model.mean, model.std))
    baseline = make_step(model, optimizer, _mixer("baseline"))
    pixel_only = [m for m in catalog.METHODS[1:] if m not in MODEL_METHODS]
    mix_speed = alternating_medians({m: _mixer(m, mean, std) for m in pixel_only}, x, y, rounds, 10)
    rows = []
    for method in catalog.METHODS[1:]:
        speed = alternating_medians({"baseline": baseline, method: make_step(model, optimizer, _mixer(method, mean, std))},
                                    x, y, rounds, steps)
        # the step differs from the baseline's by the mixing call alone: its time, measured on its
        # own, bounds the ratio far more tightly than two noisy step timings do
        share = speed["baseline"] / mix_speed[method] if method in mix_speed else None
        rows.append({"model": f"{arch} {size}px batch {batch}", "method": method, "images/s": speed[method],
                     "baseline images/s": speed["baseline"], "ratio to baseline": speed[method] / speed["baseline"],
                     "baseline steps": speed["baseline"] / speed[method],
                     "mix call (ms)": 1e3 * batch / mix_speed[method] if method in mix_speed else None,
                     "ratio from mix call": 1 / (1 + share) if share is not None else None,
                     "extra work": EXTRA_WORK.get(method, "")})
    return rows


def _openmixup_functions() -> dict[str, object]:
    """OpenMixup's augment functions by our method name, or {} when it is not installed."""
    folder = OPENMIXUP / "openmixup" / "models" / "augments"
    if not folder.is_dir():
        return {}
    utils = types.ModuleType("openmixup.models.utils")
    utils.batch_shuffle_ddp = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("dist_mode is not benchmarked"))
    utils.to_2tuple = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    for name in ("openmixup", "openmixup.models"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["openmixup.models.utils"] = utils
    functions = {}
    for method, (module, kwargs) in OPENMIXUP_CALLS.items():
        spec = importlib.util.spec_from_file_location(f"openmixup_{module}", folder / f"{module}.py")
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
        functions[method] = (lambda fn, kw: lambda x, y: fn(x.clone(), y, **kw))(getattr(loaded, module), kwargs)
    return functions


@contextlib.contextmanager
def _cuda_calls_stay(device: str):
    """OpenMixup's functions call ``.cuda()`` on their masks and indices; on a CPU run that is a no-op."""
    if device.startswith("cuda"):
        yield
        return
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.Tensor.cuda = original


def bench_calls(size: int, batch: int, rounds: int, device: str) -> list[dict]:
    x, y = torch.rand(batch, 3, size, size, device=device), torch.randint(0, 10, (batch,), device=device)
    timm_cutmix = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, label_smoothing=0.0, num_classes=10)
    timm_switch = Mixup(num_classes=10)  # timm's defaults, as our mixup-cutmix's
    peers = {"cutmix": {"timm": lambda a, b: timm_cutmix(a.clone(), b)},
             "mixup-cutmix": {"timm": lambda a, b: timm_switch(a.clone(), b)}}
    for method, fn in _openmixup_functions().items():
        peers.setdefault(method, {})["OpenMixup"] = fn
    rows = []
    with _cuda_calls_stay(device):
        for method, references in peers.items():
            variants = {"ours": _mixer(method), **references}
            speed = alternating_medians(variants, x, y, rounds, 20)
            rows += [{"method": method, "peer": peer, "ours (us)": 1e6 * batch / speed["ours"],
                      "peer (us)": 1e6 * batch / speed[peer], "speed-up": speed["ours"] / speed[peer]}
                     for peer in references]
    return rows


def main() -> None:
    rounds, steps, device = parse_rounds(__doc__, quick=(3, 2), full=(5, 4), device=True)
    models = [("gapnet", 64, 128)] + ([] if rounds < 5 else [("cifar_resnet20", 32, 128)])
    rows = [row for arch, size, batch in models for row in bench_steps(arch, size, batch, rounds, steps, device)]
    print(f"# Training step of every method vs the baseline (medians of {rounds} alternating rounds of {steps} "
          f"steps, probability of mixing 1, {device_note(device)})\n")
    print(markdown_table(rows, {"model": "", "method": "", "images/s": ".0f", "baseline images/s": ".0f",
                                "ratio to baseline": ".3f", "baseline steps": ".2f", "mix call (ms)": ".2f",
                                "ratio from mix call": ".4f", "extra work": ""}))
    pixel_only = [r for r in rows if r["method"] not in MODEL_METHODS]
    worst = min(pixel_only, key=lambda r: r["ratio from mix call"])
    noisy = min(pixel_only, key=lambda r: r["ratio to baseline"])
    print(f"\nTarget: every pixel-composing method >= {TARGET} x the baseline's step throughput, judged on "
          f"baseline step / (baseline step + the method's mixing call): {verdict(worst['ratio from mix call'], TARGET)} "
          f"(worst: {worst['method']}, {worst['ratio from mix call']:.4f}, {worst['model']}). The direct step "
          f"ratios carry the machine's noise (worst {noisy['ratio to baseline']:.3f}, {noisy['method']}).")
    calls = bench_calls(32, 128, rounds, device)
    print(f"\n## The mixing call alone vs the peer's (32 px, batch 128; microseconds per call"
          f"{'' if OPENMIXUP.is_dir() else '; OpenMixup not installed, see the docstring'})\n")
    print(markdown_table(calls, {"method": "", "peer": "", "ours (us)": ".0f", "peer (us)": ".0f", "speed-up": ".2f"}))
    summary = [comparison(f"{r['method']} training step vs baseline step (from its mixing call), {r['model']}",
                          r["baseline images/s"] * r["ratio from mix call"], r["baseline images/s"], "images/s",
                          r["ratio from mix call"], f">= {TARGET:g}", r["ratio from mix call"] >= TARGET, "baseline")
               for r in pixel_only]
    summary += [comparison(f"{r['method']} training step vs baseline step, {r['model']}", r["images/s"],
                           r["baseline images/s"], "images/s", r["ratio to baseline"], "informational", None, "baseline")
                for r in rows]
    summary += [comparison(f"{r['method']} mixing call vs {r['peer']}'s", r["ours (us)"], r["peer (us)"], "us/call",
                           r["speed-up"], "informational", None, r["peer"]) for r in calls]
    print_summary(summary)


if __name__ == "__main__":
    main()
