"""FGSM and the occlusion sweep cost what their forward/backward passes cost, nothing more.

Images per second of (a) plain inference (``model(x)`` in inference mode) and
(b) FGSM at one eps as the adversarial evaluator runs it (on the copy of the model
with batch norms folded into the convolutions: one forward + backward for the sign
of the input gradient, whose forward also gives the clean predictions, then one
forward on the attacked batch) on one batch, and of
(c) 22 plain inference passes in a row and (d) our occlusion sweep over 11 hole sizes in both modes (22
variants of the batch, which needs 20 distinct passes: centre at 0 and boundary at 1
are the clean image, centre at 1 and boundary at 0 the all-black one) on a batch a
quarter that size (the sweep's 22 passes dominate the run time). Blocks of calls
alternate between the two variants of each pair for several rounds so the machine's
drift cancels; medians are reported. Batches: FGSM 128 (gapnet, 64 px) and 64
(cifar_resnet56, 32 px), 7 rounds of 2 calls; sweep 32 and 16, 5 rounds of 1 call
(``--quick``: 3 rounds of 1 call for both). Targets: FGSM at most 3.5 times the cost of
one inference pass; the sweep at most 1.2 times the cost of 22 inference passes.

    .venv/bin/python benchmarks/bench_robustness.py [--quick]
"""

from __future__ import annotations

import torch

from _common import alternating_medians, comparison, markdown_table, parse_rounds, print_summary
from cutmix_eval.evaluate.adversarial import fgsm_predictions
from cutmix_eval.evaluate.attacks import fgsm_direction
from cutmix_eval.evaluate.occlusion import DEFAULT_FRACTIONS, MODES, fill_pixels, occlusion_sweep
from cutmix_eval.models import create_model
from cutmix_eval.models.folding import fold_batchnorm

TARGET_FGSM = 3.5
TARGET_SWEEP = 1.2
VARIANTS = len(DEFAULT_FRACTIONS) * len(MODES)


def plain_inference(model, passes: int = 1):
    def run(x, y):
        with torch.inference_mode():
            for _ in range(passes):
                model(x)
    return run


def fgsm_one_eps(model, eps: float = 8 / 255):
    def run(x, y):  # what the adversarial evaluator does per batch
        _, direction = fgsm_direction(model, x, y)
        fgsm_predictions(model, x, direction, [eps])
    return run


def occlusion(model):
    def run(x, y):
        occlusion_sweep(model, x, y, fill_pixels("black", x), DEFAULT_FRACTIONS, MODES)
    return run


def bench(arch: str, size: int, batch: int, fgsm_rounds: tuple[int, int],
          sweep_rounds: tuple[int, int]) -> list[dict]:
    """FGSM vs one pass on ``batch`` images; the sweep vs 22 passes on ``batch // 4``."""
    torch.manual_seed(0)
    model = create_model(arch, 10).eval()
    x, y = torch.rand(batch, 3, size, size), torch.randint(0, 10, (batch,))
    folded = fold_batchnorm(model)  # what the adversarial evaluator attacks (folded once per evaluation)
    speed = alternating_medians({"inference": plain_inference(model), "fgsm": fgsm_one_eps(folded),
                                 "folded inference": plain_inference(folded)}, x, y, *fgsm_rounds)
    speed |= alternating_medians({"inference x22": plain_inference(model, VARIANTS), "sweep": occlusion(model)},
                                 x[:batch // 4], y[:batch // 4], *sweep_rounds)
    name = f"{arch} {size}px"
    return [{"model": f"{name} batch {batch}", "what": "FGSM, one eps", "ours (images/s)": speed["fgsm"],
             "floor": "1 inference pass", "floor (images/s)": speed["inference"],
             "cost ratio": speed["inference"] / speed["fgsm"], "target": f"<= {TARGET_FGSM}", "limit": TARGET_FGSM,
             "vs folded inference": speed["folded inference"] / speed["fgsm"]},
            {"model": f"{name} batch {batch // 4}",
             "what": f"occlusion sweep, {len(DEFAULT_FRACTIONS)} sizes x 2 modes",
             "ours (images/s)": speed["sweep"], "floor": f"{VARIANTS} inference passes",
             "floor (images/s)": speed["inference x22"], "cost ratio": speed["inference x22"] / speed["sweep"],
             "target": f"<= {TARGET_SWEEP}", "limit": TARGET_SWEEP, "vs folded inference": None}]


def main() -> None:
    # (rounds, calls per block) for FGSM vs inference and for the sweep vs 22 inference passes
    fgsm_rounds, sweep_rounds = parse_rounds(__doc__, quick=((3, 1), (3, 1)), full=((7, 2), (5, 1)))
    rows = bench("gapnet", 64, 128, fgsm_rounds, sweep_rounds) + bench("cifar_resnet56", 32, 64, fgsm_rounds,
                                                                       sweep_rounds)
    print(f"# Robustness evaluators: FGSM and occlusion vs plain inference (medians of alternating rounds: "
          f"{fgsm_rounds[0]} rounds of {fgsm_rounds[1]} calls for FGSM, {sweep_rounds[0]} of {sweep_rounds[1]} "
          f"for the sweep; {torch.get_num_threads()} CPU threads)\n")
    print(markdown_table(rows, {"model": "", "what": "", "ours (images/s)": ".1f", "floor": "",
                                "floor (images/s)": ".1f", "cost ratio": ".2f", "vs folded inference": ".2f",
                                "target": ""}))
    print("\ncost ratio: our time / the floor's time for the same images (images/s of the floor / ours). "
          "vs folded inference: the same ratio against inference on the batch-norm-folded copy the attack uses.")
    for what in dict.fromkeys(r["what"] for r in rows):
        mine = [r for r in rows if r["what"] == what]
        worst, limit = max(r["cost ratio"] for r in mine), mine[0]["limit"]
        print(f"Target: {what} <= {limit} x {mine[0]['floor']}: {'met' if worst <= limit else 'NOT met'} "
              f"(worst ratio {worst:.2f}).")
    print_summary([comparison(f"{r['what']} vs {r['floor']}, {r['model']} (cost ratio)", r["ours (images/s)"],
                              r["floor (images/s)"], "images/s", r["cost ratio"], r["target"],
                              r["cost ratio"] <= r["limit"], r["floor"]) for r in rows])


if __name__ == "__main__":
    main()
