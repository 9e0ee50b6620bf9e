"""``quickstart``: the whole pipeline on the embedded dataset."""

from __future__ import annotations

from cutmix_eval.cli._common import Command, add_device, add_json, emit_json


class QuickstartCommand(Command):
    name = "quickstart"
    help = "train and evaluate on the embedded dataset in a few CPU minutes; writes reports/quickstart/"
    examples = ("cutmix-eval quickstart", "cutmix-eval quickstart --epochs 1 --out /tmp/qs")

    def add_arguments(self, parser):
        parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 4)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--out", default="reports/quickstart", help="report folder")
        parser.add_argument("--checkpoints", default="checkpoints/quickstart", help="checkpoint folder")
        add_device(parser)
        add_json(parser)

    def run(self, args):
        from cutmix_eval.quickstart import run_quickstart
        from cutmix_eval.train import TrainConfig

        config = TrainConfig(seed=args.seed)
        if args.epochs is not None:
            config.epochs = args.epochs
        summary = run_quickstart(args.out, args.checkpoints, config=config, device=args.device)
        if args.json:
            emit_json(summary)
        return 0
