"""``calibration``: top-1/top-5 error, NLL, Brier score, ECE and beyond (adaptive, classwise, max, debiased
L2; AURC, E-AURC, AUGRC), before and after recalibration maps fitted on a holdout, and reliability diagrams."""

from __future__ import annotations

from cutmix_eval.cli._common import Command, add_evaluation, add_options, default_output_dir, given_options, \
    prepare_evaluation, print_table, report_outputs, save_outputs, stored_analysis

SHOWN = {"top1_error": "top-1 err", "top5_error": "top-5 err", "nll": "NLL", "brier": "Brier", "ece": "ECE (%)",
         "adaptive_ece": "adaptive ECE (%)", "classwise_ece": "classwise ECE (%)", "mce": "MCE (%)",
         "l2_ce_debiased": "L2-CE debiased (%)", "aurc": "AURC (%)", "e_aurc": "E-AURC (%)", "augrc": "AUGRC (%)"}
"""Columns of the command's table; every one but NLL and Brier is shown in percent."""


def calibration_rows(result) -> list[dict]:
    """One row for the model as trained and one per recalibration map fitted on the holdout; errors,
    calibration errors and the selective-prediction areas in percent."""
    m = result.metrics

    def row(label: str, suffix: str) -> dict:
        return {"": label, **{column: m[key + suffix] * (1 if key in ("nll", "brier") else 100)
                              for key, column in SHOWN.items()}}

    rows = [row("as trained", "")]
    for name in result.config.get("recalibrate", []):
        rows.append(row(map_label(result, name), f"_{name}"))
    return rows


def map_label(result, name: str) -> str:
    """A recalibration map's name with what was fitted or chosen for it: ``T = 1.234``,
    ``dirichlet (λ = 0.1, μ = 1)``."""
    from cutmix_eval.evaluate.calibration import reliability_key

    fitted = result.curves.get(reliability_key(name), {})
    if name == "temperature":
        return f"T = {result.metrics['temperature']:.3f}"
    if name == "dirichlet" and "reg_lambda" in fitted:
        return f"dirichlet (λ = {fitted['reg_lambda']:g}, μ = {fitted['reg_mu']:g})"
    return name


def reliability_figure(result):
    """Reliability diagrams, each with its confidence histogram below: as trained, then after each map."""
    from cutmix_eval.evaluate.calibration import reliability_key
    from cutmix_eval.report.figures import reliability_diagram

    m, curves = result.metrics, [result.curves["reliability"]]
    labels = [f"as trained (ECE {100 * m['ece']:.2f}%)"]
    for name in result.config.get("recalibrate", []):
        curves.append(result.curves[reliability_key(name)])
        labels.append(f"{map_label(result, name)} (ECE {100 * m[f'ece_{name}']:.2f}%)")
    data = result.dataset
    title = f"{result.model.get('arch', '')} on {data['name']}/{data['split']}: reliability diagram"
    return reliability_diagram(curves, labels, title=title)


class CalibrationCommand(Command):
    name = "calibration"
    help = ("calibration: NLL, Brier, ECE and beyond, AURC/AUGRC, reliability diagrams, recalibration maps fitted "
            "on a holdout")
    examples = ("cutmix-eval calibration --ckpt checkpoints/quickstart/cutmix/seed0/last.pth --data synthetic",
                "cutmix-eval calibration --ckpt PyramidNet200_cutmix.pth.tar --data cifar100 --holdout 1000 --json",
                "cutmix-eval calibration --ckpt last.pth --data synthetic --holdout 500 --recalibrate temperature,vector,isotonic")

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
        maps = ", ".join(result.config.get("recalibrate", []))
        held = f"; first {holdout} held out to fit {maps}" if holdout else ""
        print(f"{info.arch} on {dataset.name}/{dataset.split}: {result.metrics['num_images']} images{held}")
        print_table(calibration_rows(result), floatfmt=".4g")
        print(f"ECE, MCE, classwise ECE: {bins} equal-width confidence bins (i/{bins}, (i+1)/{bins}]; adaptive ECE, "
              f"L2-CE: {bins} equal-mass bins; AURC, AUGRC: max probability as the confidence; errors in %")
        report_outputs(args, result, paths)
        return 0
