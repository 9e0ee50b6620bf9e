"""``evaluate``: classification error of a checkpoint on a dataset."""

from __future__ import annotations

from cutmix_eval.cli._common import Command, add_evaluation, emit_json, prepare_evaluation, print_table, \
    stored_analysis


class EvaluateCommand(Command):
    name = "evaluate"
    help = "top-1 / top-5 error of a checkpoint on a dataset"
    examples = ("cutmix-eval evaluate --ckpt checkpoints/quickstart/cutmix/last.pth --data synthetic",
                "cutmix-eval evaluate --ckpt PyramidNet200_cutmix.pth.tar --data cifar100 --data-root ~/data",
                "cutmix-eval evaluate --ckpt resnet50.pth --data imagenet --split val --json")

    def add_arguments(self, parser):
        add_evaluation(parser, 256, "dataset name (see `cutmix-eval datasets`)")

    def run(self, args):
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
