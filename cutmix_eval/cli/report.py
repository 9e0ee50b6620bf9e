"""``report``: comparison tables and figures from a results folder, and ``study``: run a study file."""

from __future__ import annotations

from pathlib import Path

from cutmix_eval.catalog import REPORT_FORMATS
from cutmix_eval.cli._common import Command, add_json, emit_json


def _formats(text: str) -> list[str]:
    return [f.strip() for f in text.split(",") if f.strip()]


def add_report_options(parser) -> None:
    parser.add_argument("--no-intervals", dest="intervals", action="store_false",
                        help="hide the 95%% bootstrap intervals (and seed standard deviations) in the tables")
    parser.add_argument("--rerender", action="store_true",
                        help="render the report again even when its records did not change")
    add_json(parser)


def print_outcome(args, outcome, extra: dict | None = None) -> None:
    state = "unchanged, kept" if outcome.reused else "written"
    print(f"report ({state}):\n" + "\n".join(f"  {p}" for p in outcome.paths.values()))
    if outcome.figures:
        print(f"figures: {len(outcome.figures)} in {outcome.figures[0].parent}")
    if args.json:
        emit_json({"report": {k: str(p) for k, p in outcome.paths.items()},
                   "figures": [str(p) for p in outcome.figures], "reused": outcome.reused} | (extra or {}))


def default_report_folder(results: Path) -> Path:
    """``<results>-report`` beside the results folder (``.`` and ``..`` resolved first)."""
    results = results.resolve() if results.name in ("", "..") else results
    return results.parent / f"{results.name}-report"


class ReportCommand(Command):
    name = "report"
    help = "comparison tables (Markdown, LaTeX, CSV, HTML) and figures from a folder of evaluation records"
    examples = ("cutmix-eval report reports/quickstart/results",
                "cutmix-eval report reports/results --format md,tex --out paper/tables --no-intervals")

    def add_arguments(self, parser):
        parser.add_argument("results", metavar="RESULTS_DIR", help="folder of records written by evaluations")
        parser.add_argument("--format", dest="formats", type=_formats, default=list(REPORT_FORMATS),
                            help=f"comma-separated subset of {','.join(REPORT_FORMATS)} (default: all)")
        parser.add_argument("--out", metavar="DIR",
                            help="output folder (default: RESULTS_DIR's name + `-report`, next to it: "
                                 "reports/results -> reports/results-report). The report replaces the one "
                                 "rendered there before as a whole")
        parser.add_argument("--title", default="cutmix-eval report", help="the report's title")
        add_report_options(parser)

    def run(self, args):
        from cutmix_eval.analyses import write_report

        results = Path(args.results)
        out = Path(args.out) if args.out else default_report_folder(results)
        outcome = write_report(results, out, args.formats, intervals=args.intervals, title=args.title,
                               force=args.rerender)
        print_outcome(args, outcome)
        return 0


class StudyCommand(Command):
    name = "study"
    help = "run a study file (checkpoints x datasets x analyses): compute what is missing, then the report"
    examples = ("cutmix-eval study examples/embedded.toml",
                "cutmix-eval study examples/cifar100-paper.toml --data-root ~/data",
                "cutmix-eval study my-study.toml --force")

    def add_arguments(self, parser):
        parser.add_argument("file", metavar="STUDY.toml", help="the study (see examples/ and docs/studies.md)")
        parser.add_argument("--data-root", metavar="DIR", help="overrides the study's data_root")
        parser.add_argument("--device", help="overrides the study's device")
        parser.add_argument("--force", action="store_true",
                            help="evaluate every job again, even those already recorded (as --force does "
                                 "for an evaluation command)")
        add_report_options(parser)

    def run(self, args):
        from cutmix_eval.study import load_study, run_study

        study = load_study(args.file)
        study.data_root = args.data_root or study.data_root
        study.device = args.device or study.device
        study.intervals = study.intervals and args.intervals
        print(f"study {study.name}: {len(study.checkpoints)} checkpoints x {len(study.datasets)} datasets x "
              f"{len(study.analyses)} analyses; records in {study.results}")
        outcome = run_study(study, force=args.force, render_force=args.rerender)
        if outcome is not None:  # None on torchrun ranks other than 0
            print_outcome(args, outcome, {"results": str(study.results)})
        return 0
