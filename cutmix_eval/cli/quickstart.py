"""``quickstart``: the whole pipeline on the embedded dataset."""

from __future__ import annotations

from cutmix_eval.cli._common import Command, add_device, add_json, add_methods, emit_json, selected_methods


class QuickstartCommand(Command):
    name = "quickstart"
    help = "train the four methods on the embedded dataset and compare them; writes reports/quickstart/"
    examples = ("cutmix-eval quickstart", "cutmix-eval quickstart --epochs 2 --methods baseline,cutmix --out /tmp/qs")

    def add_arguments(self, parser):
        add_methods(parser)
        parser.add_argument("--epochs", type=int, help="training epochs (default: the quick recipe's 6)")
        parser.add_argument("--seed", type=int, help="seed (default 0)")
        parser.add_argument("--out", default="reports/quickstart", help="report folder")
        parser.add_argument("--checkpoints", default="checkpoints/quickstart",
                            help="checkpoint folder; finished runs there are reused, interrupted ones resumed")
        add_device(parser)
        add_json(parser)

    def run(self, args):
        from cutmix_eval.quickstart import run_quickstart
        from cutmix_eval.train import get_recipe

        methods = selected_methods(args)
        recipe = get_recipe("quick", epochs=args.epochs, seed=args.seed)
        summary = run_quickstart(args.out, args.checkpoints, recipe=recipe, methods=methods, device=args.device)
        if args.json:
            emit_json(summary)
        return 0
