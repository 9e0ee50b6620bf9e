"""``analyze``: any registered analysis by name, its flags built from its options.

Every analysis in the registry (``cutmix-eval analyze --help`` lists them) gets a
subcommand here without a command module of its own: the evaluation options every command
shares, then one flag per option of the analysis (:func:`~cutmix_eval.cli._common.add_options`).
It stores the same record the analysis's own command, a study or ``ce.run_analysis`` would
(reusing a recorded one) and prints each Result's metrics. The dedicated commands
(``occlusion``, ``ood``...) add their own tables and figures.
"""

from __future__ import annotations

from cutmix_eval.cli._common import Command, add_evaluation, add_options, emit_json, given_options, \
    prepare_evaluation, print_table, stored_analysis


class AnalyzeCommand(Command):
    name = "analyze"
    help = "run any registered analysis by name (flags from its options): store its record, print its metrics"
    examples = ("cutmix-eval analyze occlusion --ckpt checkpoints/quickstart/cutmix/seed0/last.pth --data synthetic "
                "--fractions 0:0.25:1",
                "cutmix-eval analyze inbetween --ckpt model.pth --data cifar100 --num-pairs 5000 --json",
                "cutmix-eval analyze ANALYSIS --help")

    def add_arguments(self, parser):
        from cutmix_eval.analyses import ANALYSES

        sub = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True,
                                    title="analyses (the registry's, in the report's order)")
        for name, analysis in ANALYSES.items():
            p = sub.add_parser(name, help=analysis.summary, description=analysis.summary, allow_abbrev=False)
            add_evaluation(p, 128, "labelled dataset (see `cutmix-eval datasets`)")
            add_options(p, name)

    def run(self, args):
        options = given_options(args, args.analysis)
        device, dataset, model, info, model_info = prepare_evaluation(args)
        record = stored_analysis(args, args.analysis, device, dataset, model, model_info, options)
        for result in record.results:
            print(f"\n{result.evaluator}: {info.arch} on {dataset.name}/{dataset.split}")
            print_table([{"metric": key, "value": value} for key, value in result.metrics.items()], floatfmt=".4g")
        if args.json:
            emit_json({"record": str(record.path), "results": [r.summary() for r in record.results]})
        return 0
