"""``cutmix-eval``: argparse subcommands, thin wrappers over the library.

Conventions for every command: user mistakes end in one line on stderr and exit
status 2 (``--debug`` shows the traceback); with ``--json`` the last line of stdout
is one JSON object with the command's results; progress bars go to stderr; Ctrl-C ends
in one line saying what is kept (exit status 130).

Imports are lazy: building the parser (every command's ``add_arguments``) imports only
the standard library, NumPy, tabulate and light modules of ours (:mod:`cutmix_eval.catalog`
for the names in choices and help, :mod:`cutmix_eval.train.recipes`, :mod:`cutmix_eval.errors`);
torch, OpenCV, matplotlib, pandas and the modules of ours that import them are imported
inside a command's ``run``, so ``--help`` answers at once and ``metrics ood`` never loads
torch. ``tests/test_cli_imports.py`` checks this.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from cutmix_eval import __version__
from cutmix_eval.cli._common import Command
from cutmix_eval.cli.adversarial import AdversarialCommand
from cutmix_eval.cli.analyze import AnalyzeCommand
from cutmix_eval.cli.calibration import CalibrationCommand
from cutmix_eval.cli.corruption import CorruptionCommand
from cutmix_eval.cli.evaluate import EvaluateCommand
from cutmix_eval.cli.inbetween import InbetweenCommand
from cutmix_eval.cli.info import DatasetsCommand, InspectCommand, ModelsCommand
from cutmix_eval.cli.localize import LocalizeCommand
from cutmix_eval.cli.metrics import MetricsCommand
from cutmix_eval.cli.occlusion import OcclusionCommand
from cutmix_eval.cli.ood import OODCommand
from cutmix_eval.cli.quickstart import QuickstartCommand
from cutmix_eval.cli.report import ReportCommand, StudyCommand
from cutmix_eval.cli.train import TrainAllCommand, TrainCommand
from cutmix_eval.errors import UserError

COMMANDS: list[Command] = [QuickstartCommand(), DatasetsCommand(), ModelsCommand(), InspectCommand(),
                           TrainCommand(), TrainAllCommand(), EvaluateCommand(), LocalizeCommand(), OODCommand(),
                           CalibrationCommand(), OcclusionCommand(), InbetweenCommand(), AdversarialCommand(),
                           CorruptionCommand(), AnalyzeCommand(), MetricsCommand(), StudyCommand(), ReportCommand()]


def build_parser() -> argparse.ArgumentParser:
    examples = "\n".join(f"  {c.examples[0]}" for c in COMMANDS)
    parser = argparse.ArgumentParser(
        prog="cutmix-eval",
        description="Train baseline / Mixup / Cutout / CutMix classifiers and evaluate any classifier on "
                    "the analyses of the CutMix paper.",
        epilog=f"examples:\n{examples}\n\n`cutmix-eval COMMAND --help` shows each command's options and examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cutmix-eval {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for command in COMMANDS:
        epilog = "examples:\n" + "\n".join(f"  {e}" for e in command.examples)
        # no abbreviations: `--out` must not silently become `--output-dir` or `--out-sets`
        p = sub.add_parser(command.name, help=command.help, description=command.help, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
        command.add_arguments(p)
        _prepare(p)
        p.set_defaults(_command=command)
    return parser


def _prepare(parser: argparse.ArgumentParser) -> None:
    """``--debug`` on a command's parser and on each of its subcommands' (``metrics ood``), at
    every level, so it is accepted wherever it is written (left unset unless given, so a
    ``--debug`` before the command is not overridden); and each parser as the one that refuses
    the arguments it does not know (:func:`_refuse_unknown`)."""
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
    parser.set_defaults(_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subcommand in action.choices.values():
                _prepare(subcommand)


def _refuse_unknown(args: argparse.Namespace, unknown: list[str]) -> None:
    """Unrecognized arguments, refused by the innermost command's own parser (its usage, not the
    top level's), with the closest option named when one is near."""
    import difflib

    sub = args._parser
    options = [o for action in sub._actions for o in action.option_strings]
    hints = [f"{u} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(u.split("=")[0], options, n=1))
             else u for u in unknown]
    sub.error(f"unrecognized arguments: {' '.join(hints)}")


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"cutmix-eval: warning: {message}", file=sys.stderr)


def _join_torchrun(args: argparse.Namespace):
    """Under ``torchrun``, join the process group before the command runs and return its
    context (None otherwise); ranks other than 0 compute their shard silently (rank 0 prints
    and writes)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from cutmix_eval import distributed

    ctx = distributed.setup(getattr(args, "device", None) or "auto")
    if not ctx.is_main:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    return ctx


def main(argv: list[str] | None = None) -> int:
    """Run one command; Ctrl-C anywhere, even while a command imports torch, ends in one line
    saying where things stand (the interrupt's message, see
    :func:`cutmix_eval.errors.where_things_stand`) and exit status 130, without a traceback."""
    try:
        return _run(argv)
    except KeyboardInterrupt as stop:
        status = str(stop.args[0]) if stop.args else "nothing half-written was kept"
        print(f"cutmix-eval: interrupted; {status}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout left (`... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the final flush must not fail again
        return 141


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if not getattr(args, "_command", None):
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        parser.print_help()
        return 2
    if unknown:
        _refuse_unknown(args, unknown)
    warnings.showwarning = _show_warning
    # Python 3.12+ warns when a process with threads forks, as DataLoader workers do once CUDA or
    # the pin-memory thread runs; the workers never touch CUDA, which is what makes fork safe here
    warnings.filterwarnings("ignore", message=r"This process \(pid=\d+\) is multi-threaded, use of fork\(\)",
                            category=DeprecationWarning)
    group = None
    try:
        group = _join_torchrun(args)
        return args._command.run(args)
    except UserError as err:
        if args.debug:
            raise
        print(f"cutmix-eval: error: {err}", file=sys.stderr)
        return err.exit_code
    finally:
        if group is not None:  # leaving gloo's threads to interpreter exit aborts the process
            from cutmix_eval import distributed

            distributed.teardown(group)
