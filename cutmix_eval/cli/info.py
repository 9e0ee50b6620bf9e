"""Read-only commands: ``datasets``, ``models``, ``inspect``."""

from __future__ import annotations

import textwrap

from cutmix_eval.cli._common import (NO_LABEL, Command, add_checkpoint, channels, add_data_root, add_json, emit_json,
                                     load_model_from_args, print_table)
from cutmix_eval.errors import DatasetNotFoundError

WIDTH = 100  # inspect's output fits a terminal this wide


class DatasetsCommand(Command):
    name = "datasets"
    help = "list the registered datasets and which ones are found under the data root"
    examples = ("cutmix-eval datasets", "cutmix-eval datasets --data-root ~/data --kind ood",
                "cutmix-eval datasets 'cifar*' --json")

    def add_arguments(self, parser):
        parser.add_argument("pattern", nargs="?", default="*", help="shell-style filter on names (default: all)")
        parser.add_argument("--kind", choices=("classification", "ood"), help="only datasets of this kind")
        add_data_root(parser)
        add_json(parser)

    def run(self, args):
        from cutmix_eval.data import dataset_spec, list_datasets, resolve_data_root

        root = resolve_data_root(args.data_root)
        rows = []
        for name in list_datasets(args.pattern, kind=args.kind):
            spec = dataset_spec(name)
            if spec.locate is None:
                status = "built in"
            elif spec.root_is_folder:
                status = "any folder: pass it as the root"
            else:
                status = dataset_status(spec, root)
            rows.append({"name": name, "kind": spec.kind, "splits": ",".join(spec.splits), "status": status,
                         "layout": spec.layout, "description": spec.description})
        print(f"data root: {root.resolve()} (set with --data-root or $CUTMIX_EVAL_DATA)\n")
        print_table([{k: r[k] for k in ("name", "kind", "splits", "status", "description")} for r in rows])
        missing = [r for r in rows if r["status"] == "not found" or r["status"].startswith("does not load")]
        if missing and not args.json:
            print("\nexpected layouts of the datasets not found or not loading:")
            for r in missing:
                print(f"  {r['name']}: {r['layout']}")
        if args.json:
            emit_json({"data_root": str(root), "datasets": rows})
        return 0


def dataset_status(spec, root) -> str:
    """``found: <where>`` (with the layout found, for datasets that describe it), ``not found``,
    or ``does not load: <why>`` when the files are there but reading them fails."""
    from cutmix_eval.errors import UserError

    try:
        where = spec.locate(root)
    except DatasetNotFoundError:
        return "not found"
    try:
        return f"found: {spec.describe(root) if spec.describe else where}"
    except UserError as error:
        return f"does not load: {error}"


class ModelsCommand(Command):
    name = "models"
    help = "list the architectures (ours, plus any timm/NAME or torchvision/NAME)"
    examples = ("cutmix-eval models", "cutmix-eval models 'timm/resnet*'", "cutmix-eval models 'torchvision/*' --json")

    def add_arguments(self, parser):
        parser.add_argument("pattern", nargs="?", default="*",
                            help="shell-style filter; patterns starting with timm/ or torchvision/ search those")
        add_json(parser)

    def run(self, args):
        from cutmix_eval.models import list_models, model_spec

        external = "/" in args.pattern
        names = list_models(args.pattern, external=external)
        rows = []
        for name in names:
            if external and "/" in name:
                rows.append({"name": name})
                continue
            spec = model_spec(name)
            defaults = ",".join(f"{k}={v}" for k, v in spec.defaults.items())
            rows.append({"name": name, "defaults": defaults, "input": "x".join(map(str, spec.input_size[1:])),
                         "description": spec.description})
        print_table(rows)
        if not external and not args.json:
            print(f"\nplus {len(list_models('timm/*', external=True))} timm and "
                  f"{len(list_models('torchvision/*', external=True))} torchvision classifiers "
                  "(e.g. timm/resnet50; list with `cutmix-eval models 'timm/*'`).\n"
                  "Arguments go after a colon: --arch pyramidnet:depth=110,alpha=64,bottleneck=false")
        if args.json:
            emit_json({"models": rows})
        return 0


class InspectCommand(Command):
    name = "inspect"
    help = "show what a checkpoint is: format, architecture, classes, parameters, normalization, metadata"
    examples = ("cutmix-eval inspect --ckpt PyramidNet200_cutmix.pth.tar",
                "cutmix-eval inspect --ckpt model.pth --arch timm/resnet50 --json")

    def add_arguments(self, parser):
        add_checkpoint(parser)
        add_json(parser)

    def run(self, args):
        from cutmix_eval.models import model_spec, parse_arch
        from cutmix_eval.models.checkpoint import recipe_identity

        _, info = load_model_from_args(args)
        data = info.to_dict()
        flat = {k: v for k, v in info.training.items() if not isinstance(v, dict)}
        nested = {k: v for k, v in info.training.items() if isinstance(v, dict) and v}
        recipe = recipe_identity(info)
        rows = [
            ("file", info.path), ("file sha256", info.file_sha256), ("format", info.format),
            ("architecture", f"{info.arch} ({info.arch_source})"),
            ("family", model_spec(parse_arch(info.arch)[0]).description), ("classes", info.num_classes),
            ("parameters", f"{info.num_parameters:,}"),
            ("input size", "x".join(map(str, info.input_size))),
            ("normalization", f"mean {channels(info.mean)}, std {channels(info.std)}; source: {info.normalization_source}"),
            ("method label", info.method or NO_LABEL.format(path="this file")),
            ("training data", info.dataset or "unknown"), ("weights sha256", info.weights_sha256),
            ("training recipe", f"{recipe} (its settings apart from the seed)" if recipe else "not recorded"),
        ]
        rows += [(f"training: {k}", v) for k, v in flat.items()]
        if info.versions:
            rows.append(("saved with", ", ".join(f"{k} {v}" for k, v in info.versions.items())))
        print("\n".join(aligned(rows)))
        for key, values in nested.items():
            print(f"\ntraining: {key}\n" + "\n".join(settings(values)))
        if args.json:
            emit_json(data)
        return 0


def aligned(rows: list[tuple[str, object]], width: int = WIDTH) -> list[str]:
    """``key  value`` lines, values in one column and wrapped to ``width`` characters under it."""
    pad = max(len(k) for k, _ in rows) + 2
    lines = []
    for key, value in rows:
        wrapped = textwrap.wrap(str(value), width - pad, break_on_hyphens=False) or [""]
        lines += [key.ljust(pad) + wrapped[0], *(" " * pad + w for w in wrapped[1:])]
    return lines


def settings(values: dict, width: int = WIDTH) -> list[str]:
    """A mapping as indented ``key=value`` pairs (strings with spaces quoted, lists without
    spaces so a line never breaks inside one), wrapped to ``width`` characters."""
    def shown(v: object) -> str:
        if isinstance(v, (list, tuple)):
            return "[" + ",".join(map(str, v)) + "]"
        return repr(v) if isinstance(v, str) and (" " in v or "," in v) else str(v)

    text = ", ".join(f"{k}={shown(v)}" for k, v in values.items())
    return textwrap.wrap(text, width, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False)


