"""Argument groups and output helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from cutmix_eval.catalog import CUTMIX_VARIANTS, METHODS, PAPER_METHODS, SUCCESSORS


GENERIC_CHECKPOINT_NAMES = ("last", "best", "model_best", "checkpoint", "model")
NO_LABEL = ("{path} has no method label: reports show it in a column of its own, named by its file; give it one "
            "with --label NAME (`label` in a study file)")


class Command:
    """One subcommand: ``name``, one-line ``help``, ``examples`` for the epilog,
    ``add_arguments(parser)`` and ``run(args) -> exit status``."""

    name: str = ""
    help: str = ""
    examples: Sequence[str] = ()

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        pass

    def run(self, args: argparse.Namespace) -> int:  # pragma: no cover - every command defines it
        raise NotImplementedError


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print the results as one JSON object on the last line of stdout")


def add_data_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", metavar="DIR",
                        help="folder holding the datasets (default: $CUTMIX_EVAL_DATA, else ./data)")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:1...")


def add_methods(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--methods", type=lambda t: [m.strip() for m in t.split(",") if m.strip()],
                        default=list(PAPER_METHODS),
                        help=f"comma-separated training methods, 'all' for every one (default: the paper's "
                             f"{','.join(PAPER_METHODS)}); the paper's CutMix variants: {','.join(CUTMIX_VARIANTS)}; "
                             f"CutMix's successors: {','.join(SUCCESSORS)}")


def selected_methods(args: argparse.Namespace) -> list[str]:
    """The ``--methods`` list, checked against the known methods."""
    from cutmix_eval.errors import UserError

    methods = list(METHODS) if args.methods == ["all"] else args.methods
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method {', '.join(unknown)}; choose from {', '.join(METHODS)}, or all")
    return methods


def channels(values: Sequence[float]) -> str:
    """Per-channel values as commands print them: ``(0.4914, 0.4822, 0.4465)``."""
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def _floats(text: str) -> list[float]:
    values = [float(v) for v in text.replace(",", " ").split()]
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected 3 comma-separated numbers, got {text!r}")
    return values


def add_checkpoint(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_argument_group("checkpoint")
    group.add_argument("--ckpt", required=required, metavar="PATH",
                       help="checkpoint file (ours, official CutMix, timm, torchvision or a raw state dict)")
    group.add_argument("--arch", help="architecture, e.g. pyramidnet:depth=200,alpha=240 or timm/resnet50 "
                                      "(default: from the file or inferred from its tensor shapes)")
    group.add_argument("--num-classes", type=int, help="class count (default: from the file)")
    group.add_argument("--mean", type=_floats, help="per-channel mean in [0,1], e.g. 0.485,0.456,0.406")
    group.add_argument("--std", type=_floats, help="per-channel std in [0,1]")
    group.add_argument("--no-normalize", action="store_true",
                       help="feed the model [0,1] pixels as they are (mean 0, std 1): for models that normalize "
                            "inside, such as RobustBench's (default: the file's normalization, else the family's)")
    group.add_argument("--ema", action="store_true", help="use EMA weights when the file has them (timm)")
    group.add_argument("--trust-checkpoint", action="store_true",
                       help="allow full unpickling of a file that safe loading refuses: this runs any code the "
                            "file carries, so only for files from a source you trust")


def load_model_from_args(args: argparse.Namespace, num_classes: int | None = None):
    from cutmix_eval.models.checkpoint import load_checkpoint

    return load_checkpoint(args.ckpt, arch=args.arch, num_classes=args.num_classes or num_classes,
                           mean=args.mean, std=args.std, normalize=not args.no_normalize,
                           trust=args.trust_checkpoint, ema=args.ema)


def add_evaluation(parser: argparse.ArgumentParser, batch_size: int, data_help: str, data_option: str = "--data") -> None:
    """The options every evaluator command shares: checkpoint, data (``data_option``, stored
    as ``args.data``), split, method label, batching, data root, device and ``--json``."""
    add_checkpoint(parser)
    parser.add_argument(data_option, dest="data", required=True, metavar="NAME", help=data_help)
    parser.add_argument("--split", help="split (default: test, or the dataset's last split)")
    parser.add_argument("--label", "--method", dest="method", metavar="LABEL",
                        help="the model's column label in reports, e.g. cutmix (default: the method the checkpoint "
                             "records; official CutMix, timm and torchvision files record none). Checkpoints "
                             "sharing a label, architecture and training recipe are pooled as seeds")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--limit", type=int, help="evaluate only the first N images")
    parser.add_argument("--results", default="reports/results", metavar="DIR",
                        help="results folder the record is stored in, for `cutmix-eval report` (default "
                             "reports/results); an identical evaluation already recorded there is reused")
    parser.add_argument("--force", action="store_true",
                        help="evaluate again even when an identical evaluation is recorded in --results")
    add_data_root(parser)
    add_device(parser)
    add_json(parser)


def add_options(parser: argparse.ArgumentParser, analysis: str, flags: dict[str, str] | None = None, *,
                skip: Sequence[str] = ()) -> None:
    """A flag per option of ``analysis`` (not in ``skip``), built from the registry's
    :class:`~cutmix_eval.analyses.base.Option`: ``--name-with-dashes`` unless ``flags`` names it
    otherwise, the option's help and default (``--X`` / ``--no-X`` for true-or-false options).
    A flag not given leaves the value None, so the analysis's own default applies
    (:func:`given_options`); studies and Python calls share those defaults."""
    from cutmix_eval.analyses import get_analysis

    for option in get_analysis(analysis).options:
        if option.name in skip:
            continue
        flag = (flags or {}).get(option.name) or f"--{option.name.replace('_', '-')}"
        if option.shown or isinstance(option.default, bool):
            shown = option.shown or ("on" if option.default else "off")
        else:
            shown = "" if option.default is None else str(option.default)
        help_text = f"{option.help} (default {shown})" if shown else option.help  # None: the help says what
        if isinstance(option.default, bool):
            parser.add_argument(flag, dest=option.name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            parser.add_argument(flag, dest=option.name, metavar=flag.lstrip("-").upper().replace("-", "_"),
                                help=help_text)


def given_options(args: argparse.Namespace, analysis: str) -> dict[str, Any]:
    """The options of ``analysis`` given on the command line (:func:`add_options`), each read by
    its parser, so a bad value is one error naming the flag before any work."""
    from cutmix_eval.analyses import get_analysis

    flags = {a.dest: a.option_strings[0] for a in args._parser._actions if a.option_strings}
    return {o.name: o.parse(getattr(args, o.name), flags.get(o.name, o.name))
            for o in get_analysis(analysis).options if getattr(args, o.name, None) is not None}


def command_subject(args: argparse.Namespace, device, dataset, model, model_info: dict[str, Any],
                    cache: dict[Any, Any] | None = None):
    """The :class:`~cutmix_eval.analyses.base.Subject` of an evaluation command: its model and
    data, ``--batch-size``, ``--workers``, ``--limit``, ``--data-root``, the resolved device and
    the checkpoint's identity record."""
    from cutmix_eval.analyses import Subject
    from cutmix_eval.settings import RunSettings

    settings = RunSettings(batch_size=args.batch_size, device=str(device), num_workers=args.workers, limit=args.limit,
                           model_info=model_info)
    return Subject(model, dataset, settings, data_root=args.data_root, cache={} if cache is None else cache)


def stored_analysis(args: argparse.Namespace, name: str, device, dataset, model, model_info: dict[str, Any],
                    options: dict[str, Any], cache: dict[Any, Any] | None = None):
    """The record of analysis ``name`` with ``options`` from the ``--results`` store: reused when
    recorded (unless ``--force``), else computed with the command's batching and saved. ``cache``
    starts the subject's cache (data the analysis reads besides, see
    :class:`~cutmix_eval.analyses.base.Subject`) and is filled by it."""
    from cutmix_eval.analyses import run_job
    from cutmix_eval.distributed import is_main_process
    from cutmix_eval.report.store import ResultStore

    subject = command_subject(args, device, dataset, model, model_info, cache)
    record, reused = run_job(ResultStore(args.results), name, subject, options, force=args.force)
    if not is_main_process():
        raise SystemExit(0)  # torchrun: this rank did its shard; rank 0 prints and writes
    print(record_line(record, reused))
    return record


def record_line(record: Any, reused: bool) -> str:
    """Where a job's record is, and for a reused one what it matched (stdout, like ``record:``)."""
    from cutmix_eval.analyses import describe_job

    if reused:
        return (f"reused the recorded {describe_job(record.job)}: {record.path} (same checkpoint, data, options; "
                "--force evaluates again)")
    return f"recorded in {record.path}"


def check_counts(args: argparse.Namespace) -> None:
    """``--limit`` and ``--batch-size`` are at least 1 (a limit of 0 would otherwise read as
    "no limit"), ``--workers`` at least 0: one-line errors before anything is loaded."""
    from cutmix_eval.errors import UserError

    for option, value, least in (("--limit", args.limit, 1), ("--batch-size", args.batch_size, 1),
                                 ("--workers", args.workers, 0)):
        if value is not None and value < least:
            hint = "; leave it out to use every image" if option == "--limit" else ""
            raise UserError(f"{option} must be at least {least}, not {value}{hint}")


def prepare_evaluation(args: argparse.Namespace):
    """Counts, device and the output folders (checked first: writable, created if missing),
    dataset, model and its identity record
    (:func:`~cutmix_eval.models.checkpoint.model_identity`, labelled by ``--label``) from the
    shared options; a model without a method label gets a note (stdout, with the results)."""
    from cutmix_eval.data import create_dataset, dataset_spec
    from cutmix_eval.distributed import is_main_process
    from cutmix_eval.fileio import writable_folder
    from cutmix_eval.models.checkpoint import OVERRIDE, model_identity
    from cutmix_eval.runtime import resolve_device

    check_counts(args)
    device = resolve_device(args.device)  # fail before any loading
    writable_folder(args.results, "--results folder")
    if getattr(args, "output_dir", None):
        writable_folder(args.output_dir, "--output-dir folder")
    spec = dataset_spec(args.data)
    split = args.split or ("test" if "test" in spec.splits else spec.splits[-1])
    dataset = create_dataset(args.data, split, root=args.data_root)
    if args.limit is not None and args.limit > len(dataset) and is_main_process():
        print(f"note: --limit {args.limit} is more than the {len(dataset)} images of {dataset.name}/{dataset.split}: "
              f"evaluating all {len(dataset)} (recorded as no limit)")
    model, info = load_model_from_args(args, num_classes=dataset.num_classes or None)
    args.checkpoint_sha256 = info.file_sha256  # names the default output folder (default_output_dir)
    model_info = model_identity(info, args.method) | {"loading": loading_overrides(args)}
    if not model_info["method"] and is_main_process():
        print(f"note: {NO_LABEL.format(path=info.path)}")
    if is_main_process():  # what the model is and what input it gets, with where each came from
        kind = "note" if OVERRIDE in info.normalization_source else "model"
        print(f"{kind}: {info.arch} ({info.arch_source}); input normalized with mean {channels(info.mean)}, "
              f"std {channels(info.std)} ({info.normalization_source})")
    return device, dataset, model, info, model_info


def loading_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The checkpoint options given on top of the file that can change a model's outputs (part
    of every job: the same file loaded with another mean or its EMA weights is another model)."""
    given = {"arch": args.arch, "mean": args.mean, "std": args.std, "ema": args.ema or None,
             "normalize": False if args.no_normalize else None}
    return {key: value for key, value in given.items() if value is not None}


def save_outputs(result: Any, out_dir: Path, stem: str, figures: dict[str, Any]) -> list[Path]:
    """Write ``<stem>.json`` (the full record) and one ``<stem>-<name>.png`` per figure into
    ``out_dir``, each atomically; returns the paths, record first."""
    from cutmix_eval.fileio import atomic_save_figure, atomic_write_text

    paths = [atomic_write_text(out_dir / f"{stem}.json", result.to_json(indent=1))]
    return paths + [atomic_save_figure(out_dir / f"{stem}-{name}.png", figure) for name, figure in figures.items()]


def report_outputs(args: argparse.Namespace, result: Any, paths: Sequence[Path]) -> None:
    """Print where the record and the figures went (``paths`` from :func:`save_outputs`);
    with ``--json`` then the record's summary and those paths as the last line."""
    print(f"record: {paths[0]}\n" + "\n".join(f"figure: {p}" for p in paths[1:]))
    if args.json:
        emit_json(result.summary() | {"record": str(paths[0]), "figures": [str(p) for p in paths[1:]]})


def default_output_dir(args: argparse.Namespace, command: str, *parts: str) -> Path:
    """``--output-dir``, else ``reports/<command>/<checkpoint stem>-<SHA-256 prefix>-<parts...>``:
    named from the checkpoint's identity, so ``runs/s0/cutmix/last.pth`` and
    ``runs/s1/cutmix/last.pth`` (``cutmix-last-1a2b3c4d-...``, ``cutmix-last-5e6f7a8b-...``)
    never share a folder."""
    from cutmix_eval.models.checkpoint import file_sha256

    if args.output_dir:
        return Path(args.output_dir)
    ckpt = Path(args.ckpt)
    stem = ckpt.name.split(".")[0]
    if stem in GENERIC_CHECKPOINT_NAMES:  # checkpoints/quickstart/cutmix/seed0/last.pth -> cutmix-last
        stem = f"{ckpt.resolve().parent.name}-{stem}"
    sha = getattr(args, "checkpoint_sha256", None) or file_sha256(ckpt)
    return Path("reports") / command / "-".join([stem, sha[:8], *parts])


def print_table(rows: list[dict[str, Any]], headers: str | Sequence[str] = "keys", floatfmt: str = ".2f") -> None:
    print(tabulate(rows, headers=headers, tablefmt="github", floatfmt=floatfmt))


def emit_json(obj: Any) -> None:
    """The ``--json`` convention: one JSON object, alone on the last line of stdout."""
    sys.stdout.flush()
    print(json.dumps(obj, default=str))
