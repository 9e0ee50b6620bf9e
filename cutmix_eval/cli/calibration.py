"""``calibration``: top-1/top-5 error, NLL, Brier score, ECE and a reliability diagram."""

from __future__ import annotations

from cutmix_eval.cli._common import Command, add_evaluation, add_options, default_output_dir, given_options, \
    prepare_evaluation, print_table, report_outputs, save_outputs, stored_analysis

SHOWN = {"top1_error": "top-1 err", "top5_error": "top-5 err", "nll": "NLL", "brier": "Brier", "ece": "ECE (%)"}


def calibration_rows(result) -> list[dict]:
    """One row before temperature scaling and, if fitted, one after; errors and ECE in percent."""
    m = result.metrics
    rows = [{"": "as trained", **{label: m[key] * (100 if key in ("top1_error", "top5_error", "ece") else 1)
                                  for key, label in SHOWN.items()}}]
    if "temperature" in m:
        rows.append({"": f"T = {m['temperature']:.3f}", "top-1 err": 100 * m["top1_error"],
                     "top-5 err": 100 * m["top5_error"], "NLL": m["nll_calibrated"], "Brier": m["brier_calibrated"],
                     "ECE (%)": 100 * m["ece_calibrated"]})
    return rows


def reliability_figure(result):
    from cutmix_eval.report.figures import reliability_diagram

    m, curves = result.metrics, [result.curves["reliability"]]
    labels = [f"as trained (ECE {100 * m['ece']:.2f}%)"]
    if "reliability_calibrated" in result.curves:
        curves.append(result.curves["reliability_calibrated"])
        labels.append(f"temperature {m['temperature']:.2f} (ECE {100 * m['ece_calibrated']:.2f}%)")
    data = result.dataset
    title = f"{result.model.get('arch', '')} on {data['name']}/{data['split']}: reliability diagram"
    return reliability_diagram(curves, labels, title=title)


class CalibrationCommand(Command):
    name = "calibration"
    help = "calibration: NLL, Brier score, ECE (15 bins), reliability diagram, optional temperature scaling"
    examples = ("cutmix-eval calibration --ckpt checkpoints/quickstart/cutmix/last.pth --data synthetic",
                "cutmix-eval calibration --ckpt PyramidNet200_cutmix.pth.tar --data cifar100 --holdout 1000 --json")

    def add_arguments(self, parser):
        add_evaluation(parser, 256, "labelled dataset (see `cutmix-eval datasets`)")
        add_options(parser, "classification", {"n_bins": "--bins"})
        parser.add_argument("--output-dir", metavar="DIR",
                            help="folder for the record and figure (default: reports/calibration/<checkpoint>-<sha256[:8]>-<data>)")

    def run(self, args):
        from cutmix_eval.errors import UserError
        options = given_options(args, "classification")
        device, dataset, model, info, model_info = prepare_evaluation(args)
        record = stored_analysis(args, "classification", device, dataset, model, model_info, options)
        if len(record.results) < 2:
            metrics = record.results[0].metrics
            raise UserError(f"checkpoint {args.ckpt} produced NaN or infinite logits for "
                            f"{metrics['num_nonfinite_logits']} of {metrics['num_images']} images of {dataset.name}; "
                            "calibration is undefined for them (check the checkpoint and its --mean/--std; "
                            "`evaluate` counts them as wrong)")
        result = record.results[1]
        paths = save_outputs(result, default_output_dir(args, "calibration", dataset.name), "calibration",
                             {"reliability": reliability_figure(result)})
        holdout, bins = result.config["holdout"], result.config["n_bins"]
        held = f"; first {holdout} held out for the temperature" if holdout else ""
        print(f"{info.arch} on {dataset.name}/{dataset.split}: {result.metrics['num_images']} images{held}")
        print_table(calibration_rows(result), floatfmt=".4g")
        print(f"ECE: {bins} equal-width confidence bins (i/{bins}, (i+1)/{bins}], weighted by count")
        report_outputs(args, result, paths)
        return 0
