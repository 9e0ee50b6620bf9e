"""Classification and calibration: top-1/top-5 error, NLL, Brier score and ECE from one
labelled pass (calibration is left out when a logit is not finite)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cutmix_eval.analyses.base import Analysis, Option, Outcome, PassUse, Subject, register_analysis
from cutmix_eval.analyses.options import choices, count
from cutmix_eval.report.store import Record
from cutmix_eval.report.table import LOWER
from cutmix_eval.report.view import Metric, TableSpec, View


def results(predictions, dataset_info, subject: Subject, holdout: int, n_bins: int,
            recalibrate: tuple[str, ...]) -> Outcome:
    """Classification, then calibration (when every logit is finite), from one pass's Predictions."""
    from cutmix_eval.evaluate.calibration import calibration_result
    from cutmix_eval.evaluate.classification import classification_result

    info = {"model_info": subject.model_info, "dataset_info": dataset_info}
    out = [classification_result(predictions, **info, config={"limit": subject.limit})]
    if out[0].metrics["num_nonfinite_logits"] == 0:
        out.append(calibration_result(predictions, holdout=holdout, n_bins=n_bins, recalibrate=recalibrate, **info,
                                      config={"limit": subject.limit}))
    return out


def run(subject: Subject, holdout: int = 0, n_bins: int = 15, recalibrate: tuple[str, ...] = ("temperature",)
        ) -> Outcome:
    return results(*subject.labelled_pass(), subject, holdout, n_bins, recalibrate)


def check(options, dataset, num_images: int) -> None:
    """The holdout and the recalibration maps, against the number of images, before any work."""
    from cutmix_eval.evaluate.calibration import check_holdout

    check_holdout(options["holdout"], options["recalibrate"], num_images)


def recalibrations() -> tuple[str, ...]:
    from cutmix_eval.evaluate.recalibration import RECALIBRATIONS

    return tuple(RECALIBRATIONS)


def from_pass(subject: Subject, shared, consumer, options) -> Outcome:
    return results(shared.predictions, shared.dataset_info, subject, **options)


def table(records: Sequence[Record]) -> list[Metric]:
    from cutmix_eval.metrics import bootstrap as bs
    from cutmix_eval.report.comparison import error_rows, result_of

    def cls(r: Record):
        return result_of(r, "classification")

    def cal(name: str) -> Callable[[Record], float]:
        return lambda r: result_of(r, "calibration").metrics[name] if result_of(r, "calibration") else float("nan")

    def cal_samples(*names: str) -> Callable[[Record], list]:
        """One group whose trailing axis holds ``names``: an image's values resample together."""
        import numpy as np

        return lambda r: [np.stack([result_of(r, "calibration").per_sample[n].astype(np.float64) for n in names],
                                   axis=-1)]

    rows = [Metric("top-1 error", lambda r: 100 * cls(r).metrics["top1_error"], LOWER,
                   lambda r: ([cls(r).per_sample["top1_correct"]], error_rows), key="top1_error", digits=2),
            Metric("top-5 error", lambda r: 100 * cls(r).metrics["top5_error"], LOWER,
                   lambda r: ([cls(r).per_sample["top5_correct"]], error_rows), key="top5_error", digits=2)]
    if all(result_of(r, "calibration") for r in records):
        n_bins = result_of(records[0], "calibration").config.get("n_bins", 15)
        rows += [Metric("NLL", cal("nll"), LOWER, lambda r: (cal_samples("nll")(r), bs.mean_rows), key="nll",
                        unit="nats", digits=3),
                 Metric("Brier score", cal("brier"), LOWER, lambda r: (cal_samples("brier")(r), bs.mean_rows),
                        key="brier", unit="", digits=3),
                 Metric(f"ECE ({n_bins} bins)", lambda r: 100 * cal("ece")(r), LOWER,
                        lambda r: (cal_samples("confidence", "correct")(r),
                                   lambda x: 100 * bs.ece_rows(x[..., 0], x[..., 1] > 0.5, n_bins)),
                        key="ece", digits=2)]
        if all("adaptive_ece" in result_of(r, "calibration").metrics for r in records):  # classification v2 on
            from cutmix_eval.metrics.calibration import adaptive_calibration_error
            from cutmix_eval.metrics.selective import aurc

            def resampled(metric: Callable) -> Callable:
                return lambda r: (cal_samples("confidence", "correct")(r),
                                  lambda x: 100 * bs.outcome_rows(metric, x[..., 0], x[..., 1] > 0.5))

            rows += [Metric(f"adaptive ECE ({n_bins} equal-mass bins)", lambda r: 100 * cal("adaptive_ece")(r), LOWER,
                            resampled(lambda c, k: adaptive_calibration_error(c, k, n_bins)), key="adaptive_ece",
                            digits=2),
                     Metric("AURC (selective risk, max probability)", lambda r: 100 * cal("aurc")(r), LOWER,
                            resampled(aurc), key="aurc", digits=2)]
    return rows


def figure(columns, colours, where):
    """Reliability diagrams of the columns with a calibration Result."""
    from cutmix_eval.report.comparison import result_of
    from cutmix_eval.report.figures import reliability_diagram

    shown = {label: result_of(r, "calibration") for label, r in columns.items() if result_of(r, "calibration")}
    if not shown:
        return None
    labels = [f"{label} (ECE {100 * r.metrics['ece']:.2f}%)" for label, r in shown.items()]
    return ("reliability", "Reliability diagrams, 15 confidence bins",
            reliability_diagram([r.curves["reliability"] for r in shown.values()], labels,
                                colours=[colours[label] for label in shown], title=f"Reliability diagrams — {where}"))


ANALYSIS = register_analysis(Analysis(
    "classification", 3, "top-1/top-5 error and calibration from one labelled pass",
    options=(Option("holdout", 0, count(0), "hold out the first N images to fit a temperature minimizing their NLL; "
                    "every number is then computed on the other images", shown="0: no scaling"),
             Option("n_bins", 15, count(1), "confidence bins for ECE (equal-width), adaptive ECE and the debiased "
                    "L2 error (equal-mass) and the reliability diagram"),
             Option("recalibrate", ("temperature",), choices(recalibrations, "recalibration"),
                    "recalibration maps fitted on the holdout, metrics before and after each: temperature, vector, "
                    "matrix, dirichlet, histogram, isotonic (comma-separated; needs --holdout)",
                    shown="temperature")),
    run=run, check=check, shared=PassUse(finish=from_pass),
    view=View((TableSpec("classification", "Classification and calibration", table,
                         ("top1_error", "nll", "brier", "ece", "adaptive_ece", "aurc")),), figure=figure)))
