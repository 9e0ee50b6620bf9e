"""``evaluate``: classification error of a checkpoint on a dataset; with ``--all``, every
analysis of the shared clean pass (classification, calibration, OOD detection, localization)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cutmix_eval.cli._common import Command, add_evaluation, emit_json, prepare_evaluation, print_table, \
    command_subject, record_line, stored_analysis


class EvaluateCommand(Command):
    name = "evaluate"
    help = "top-1 / top-5 error of a checkpoint on a dataset (--all: + calibration, OOD, localization in one pass)"
    examples = ("cutmix-eval evaluate --ckpt checkpoints/quickstart/cutmix/seed0/last.pth --data synthetic",
                "cutmix-eval evaluate --ckpt PyramidNet200_cutmix.pth.tar --data cifar100 --data-root ~/data",
                "cutmix-eval evaluate --ckpt resnet50.pth --data imagenet --split val --json",
                "cutmix-eval evaluate --ckpt checkpoints/quickstart/cutmix/seed0/last.pth --data synthetic --all",
                "cutmix-eval evaluate --ckpt model.pth --data cifar100 --all --out-sets lsun isun --data-root ~/data")

    def add_arguments(self, parser):
        add_evaluation(parser, 256, "dataset name (see `cutmix-eval datasets`)")
        parser.add_argument("--all", action="store_true",
                            help="also calibration, OOD detection (MSP) and native-CAM localization, all from ONE "
                                 "pass over the dataset (plus one per OOD set); stores the same records as the "
                                 "`evaluate`, `ood` and `localize` commands with their defaults, reusing recorded "
                                 "ones; localization is skipped on a dataset without boxes")
        parser.add_argument("--out-sets", nargs="+", metavar="NAME|DIR",
                            help="with --all: the OOD sets, as `ood --out` takes them (default: all, the paper's "
                                 "seven or the embedded companions)")

    def run(self, args):
        from cutmix_eval.errors import UserError

        if args.out_sets and not args.all:
            raise UserError("--out-sets goes with --all (the `ood` command takes --out)")
        if args.all:
            return self.run_all(args)
        device, dataset, model, info, model_info = prepare_evaluation(args)
        record = stored_analysis(args, "classification", device, dataset, model, model_info, {})
        result = record.results[0]
        metrics = result.metrics
        print(f"{info.arch} on {dataset.name}/{dataset.split}: {metrics['num_images']} images")
        row = {"top-1 error (%)": 100 * metrics["top1_error"], "top-5 error (%)": 100 * metrics["top5_error"]}
        summary = result.summary()
        if metrics["num_nonfinite_logits"]:
            print(f"warning: {metrics['num_nonfinite_logits']} images got NaN/inf logits (counted as wrong; "
                  "calibration skipped)")
        else:  # the same pass gives the calibration numbers
            calibration = record.results[1]
            row |= {"NLL": calibration.metrics["nll"], "Brier": calibration.metrics["brier"],
                    "ECE (%)": 100 * calibration.metrics["ece"]}
            summary["calibration"] = calibration.summary()
        print_table([row], floatfmt=".4g")
        if args.json:
            emit_json(summary)
        return 0

    def run_all(self, args) -> int:
        from cutmix_eval.distributed import is_main_process
        from cutmix_eval.errors import DatasetNotFoundError
        from cutmix_eval.report.store import ResultStore

        device, dataset, model, info, model_info = prepare_evaluation(args)
        subject = command_subject(args, device, dataset, model, model_info)
        options = {"ood": {"sets": [s for text in args.out_sets for s in text.split(",") if s]}} \
            if args.out_sets else {}
        try:
            records, notes = full_records(ResultStore(args.results), subject, options, force=args.force)
        except DatasetNotFoundError as error:  # an OOD set (built before any pass)
            raise DatasetNotFoundError(f"{str(error).rstrip('.')}; --all detects OOD images against "
                                       f"{', '.join(args.out_sets or ['all'])}: choose sets that are present "
                                       "with --out-sets") from error
        if not is_main_process():
            raise SystemExit(0)  # torchrun: this rank did its shard; rank 0 prints and writes
        used = len(dataset) if args.limit is None else min(args.limit, len(dataset))
        computed = [name for name, (_, reused) in records.items() if not reused]
        print(f"{info.arch} on {dataset.name}/{dataset.split}: {used} images"
              + (f"; {', '.join(computed)} computed from one shared pass over them" if computed else ""))
        for name, (record, reused) in records.items():
            print(f"{name}: {record_line(record, reused)}")
        for note in notes.values():
            print(f"note: {note}")
        summary = print_headlines(records)
        if args.json:
            emit_json(summary | {"records": {n: str(r.path) for n, (r, _) in records.items()},
                                 "reused": {n: reused for n, (_, reused) in records.items()}, "notes": notes})
        return 0


def full_records(store, subject, options: Mapping[str, Mapping[str, Any]] | None = None, *, force: bool = False,
                 analyses: Sequence[str] | None = None):
    """The records of the shared-pass analyses (``analyses``, default the registry's analyses
    that can share the clean pass, in its order) of ``subject`` in ``store``, with
    ``options[name]`` over the registry's defaults: :func:`cutmix_eval.analyses.run_jobs`, so
    recorded ones are reused unless ``force`` and the missing ones share one pass. Returns
    ``({name: (Record, reused)}, notes)``, ``notes`` naming the analyses left out and why
    (localization on data without boxes, or of a model native CAM cannot explain)."""
    from cutmix_eval.analyses import ANALYSES, run_jobs
    from cutmix_eval.analyses.localization import boxes_note

    names = list(analyses or [name for name, analysis in ANALYSES.items() if analysis.shared])
    notes: dict[str, str] = {}
    if "localization" in names and (note := boxes_note(subject.dataset)):
        notes["localization"] = note
        names.remove("localization")
    records = run_jobs(store, subject, {name: (options or {}).get(name) for name in names}, force=force, notes=notes)
    return records, notes


def print_headlines(records) -> dict[str, Any]:
    """Each analysis's headline table, as its own command prints it; returns the summaries
    (``classification``, ``calibration``, ``ood`` by score, ``localization``) for ``--json``."""
    from cutmix_eval.cli.calibration import calibration_rows
    from cutmix_eval.cli.ood import ood_table

    summary: dict[str, Any] = {}
    if "classification" in records:
        results = records["classification"][0].results
        metrics = results[0].metrics
        summary["classification"] = results[0].summary()
        print(f"\nclassification and calibration: {metrics['num_images']} images")
        if metrics["num_nonfinite_logits"]:
            print(f"warning: {metrics['num_nonfinite_logits']} images got NaN/inf logits (counted as wrong; "
                  "calibration skipped)")
            print_table([{"top-1 err": 100 * metrics["top1_error"], "top-5 err": 100 * metrics["top5_error"]}],
                        floatfmt=".4g")
        else:
            summary["calibration"] = results[1].summary()
            print_table(calibration_rows(results[1]), floatfmt=".4g")
    if "ood" in records:
        summary["ood"] = {}
        for result in records["ood"][0].results:
            score = result.config["score"]
            summary["ood"][score] = result.summary()
            print(f"\nOOD detection, score {score} (ID {result.dataset['name']} = positive class, "
                  f"{result.dataset['num_images']} images):")
            print_table(ood_table(result), floatfmt=".1f")
    if "localization" in records:
        result = records["localization"][0].results[0]
        metrics = result.metrics
        summary["localization"] = result.summary()
        print(f"\nlocalization: {metrics['num_images']} images, {result.config['cam']} maps, protocol "
              f"{result.config['protocol']}")
        print_table([{"metric": k, "value (%)": 100 * v} for k, v in metrics.items()
                     if k != "num_images" and not k.startswith("threshold")])
    return summary
