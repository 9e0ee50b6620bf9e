"""``train`` and ``train-all``: train one method, or several with the same seed and data order."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import time
import typing
from pathlib import Path

from cutmix_eval.catalog import METHODS
from cutmix_eval.cli._common import (Command, add_data_root, add_device, add_json, add_methods, emit_json,
                                     print_table, selected_methods)

_DEFAULT_RECIPE = {"synthetic": "quick", "cifar10": "cifar100-pyramidnet200", "cifar100": "cifar100-pyramidnet200",
                   "imagenet": "imagenet-resnet50"}


def _csv_ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.replace(",", " ").split())


def _csv_floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.replace(",", " ").split())


def _add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """One option per recipe field, so any field can be overridden (``--epochs 5``)."""
    from cutmix_eval.train.recipes import Recipe, recipe_fields

    hints = typing.get_type_hints(Recipe)
    recipe_group = parser.add_argument_group("recipe overrides (default: the recipe's value)")
    method_group = parser.add_argument_group("method hyper-parameters (default: the method's published value; "
                                             "each applies to the methods it names)")
    prefixes = tuple(m.replace("-", "_") + "_" for m in METHODS) + ("per_sample", "lambda_correction")
    for field in recipe_fields():
        group = method_group if field.name.startswith(prefixes) else recipe_group
        flag = "--" + field.name.replace("_", "-")
        hint = hints[field.name]
        args = typing.get_args(hint)
        base = next((a for a in args if a is not type(None)), hint) if args else hint
        text = field.metadata.get("help")
        if field.name == "dataset":
            group.add_argument("--data", dest="dataset", metavar="NAME", help=text)
        elif hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif typing.get_origin(base) is tuple:
            item = typing.get_args(base)[0]
            group.add_argument(flag, type=_csv_ints if item is int else _csv_floats, metavar="A,B,...", help=text)
        else:
            group.add_argument(flag, type=base if base in (int, float) else str,
                               metavar=field.name.upper(), help=text)


def _recipe_from_args(args: argparse.Namespace):
    from cutmix_eval.train.recipes import get_recipe, recipe_fields

    overrides = {f.name: getattr(args, f.name) for f in recipe_fields()}
    name = args.recipe or _DEFAULT_RECIPE.get(args.dataset or "")
    if name is None:
        from cutmix_eval.errors import UserError

        raise UserError(f"no default recipe for --data {args.dataset}; pass --recipe "
                        f"({', '.join(sorted(set(_DEFAULT_RECIPE.values())))}) and override its fields")
    return get_recipe(name, **overrides)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")


def _add_common(parser: argparse.ArgumentParser) -> None:
    from cutmix_eval.train.recipes import RECIPES

    parser.add_argument("--recipe", choices=sorted(RECIPES),
                        help="named recipe (default: by dataset; quick for synthetic). "
                             + "; ".join(f"{n}: {r.description}" for n, r in RECIPES.items()))
    parser.add_argument("--out", help="output folder (default: checkpoints/<dataset>-<arch>[/<method>])")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pth")
    add_data_root(parser)
    add_device(parser)
    add_json(parser)
    _add_recipe_options(parser)


def _run(methods: list[str], args: argparse.Namespace, nested: bool) -> int:
    from cutmix_eval.train import train

    recipe = _recipe_from_args(args)
    base = Path(args.out or f"checkpoints/{_slug(recipe.dataset)}-{_slug(recipe.arch)}")
    if os.environ.get("RANK", "0") == "0":
        print(f"recipe {recipe.name}: {recipe.arch} on {recipe.dataset}, {recipe.epochs} epochs, batch {recipe.batch_size}, "
              f"lr {recipe.lr} ({recipe.schedule}), seed {recipe.seed}")
    rows = []
    for method in methods:
        start = time.perf_counter()
        out = base / method if nested or not args.out else base
        outcome = train(method, recipe, out, data_root=args.data_root, device=args.device, resume=args.resume)
        final = outcome.history[-1]
        rows.append({"method": method, "best top-1 error (%)": 100 * outcome.best_top1_error,
                     "final top-1 error (%)": 100 * final["test_top1_error"],
                     "final top-5 error (%)": 100 * final["test_top5_error"],
                     "minutes": (time.perf_counter() - start) / 60, "checkpoint": str(outcome.last)})
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
        return 0
    print()
    print_table(rows)
    if args.json:
        emit_json({"recipe": dataclasses.asdict(recipe), "runs": rows})
    return 0


class TrainCommand(Command):
    name = "train"
    help = "train one model with baseline, mixup, cutout, cutmix, a CutMix variant or a successor, from a named recipe"
    examples = ("cutmix-eval train --method cutmix --recipe quick",
                "cutmix-eval train --method cutmix --arch pyramidnet200 --data cifar100 --data-root ~/data",
                "cutmix-eval train --method mixup --recipe quick --epochs 3 --out checkpoints/try",
                "cutmix-eval train --method cutmix --recipe quick --out checkpoints/try --resume",
                "torchrun --nproc_per_node=4 -m cutmix_eval train --method cutmix --recipe imagenet-resnet50")

    def add_arguments(self, parser):
        parser.add_argument("--method", required=True, choices=METHODS, metavar="METHOD",
                            help=f"the training method: {', '.join(METHODS)}")
        _add_common(parser)

    def run(self, args):
        return _run([args.method], args, nested=False)


class TrainAllCommand(Command):
    name = "train-all"
    help = "train several methods (the paper's four by default) with the same recipe, seed and data order"
    examples = ("cutmix-eval train-all --recipe quick",
                "cutmix-eval train-all --recipe quick --methods cutmix,fmix,puzzlemix,snapmix",
                "cutmix-eval train-all --recipe cifar100-pyramidnet200 --data-root ~/data --out checkpoints/c100")

    def add_arguments(self, parser):
        add_methods(parser)
        _add_common(parser)

    def run(self, args):
        return _run(selected_methods(args), args, nested=True)
