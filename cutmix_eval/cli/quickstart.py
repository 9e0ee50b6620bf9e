"""``quickstart``: the whole pipeline on the embedded dataset."""

from __future__ import annotations

import argparse

from cutmix_eval.catalog import QUICK_SEEDS
from cutmix_eval.cli._common import Command, add_device, add_json, add_methods, emit_json, selected_methods


def seed_list(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``: distinct non-negative integers."""
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 0,1,2, not {text!r}") from None
    if any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct non-negative seeds, not {text!r}")
    return seeds


class QuickstartCommand(Command):
    name = "quickstart"
    help = "train the four methods with three seeds on the embedded dataset and compare them; writes reports/quickstart/"
    examples = ("cutmix-eval quickstart",
                "cutmix-eval quickstart --epochs 2 --seeds 0 --methods baseline,cutmix --out /tmp/qs")

    def add_arguments(self, parser):
        add_methods(parser)
        parser.add_argument("--epochs", type=int, help="training epochs (default: the quick recipe's 8)")
        parser.add_argument("--seeds", type=seed_list, default=QUICK_SEEDS,
                            help="comma-separated training seeds, each trains every method (default: 0,1,2)")
        parser.add_argument("--out", default="reports/quickstart", help="report folder")
        parser.add_argument("--checkpoints", default="checkpoints/quickstart",
                            help="checkpoint folder; finished runs there are reused, interrupted ones resumed")
        add_device(parser)
        add_json(parser)

    def run(self, args):
        from cutmix_eval.quickstart import run_quickstart
        from cutmix_eval.train import get_recipe

        methods = selected_methods(args)
        recipe = get_recipe("quick", epochs=args.epochs)
        summary = run_quickstart(args.out, args.checkpoints, recipe=recipe, methods=methods, seeds=args.seeds,
                                 device=args.device)
        if args.json:
            emit_json(summary)
        return 0
