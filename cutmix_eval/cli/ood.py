"""``ood``: out-of-distribution detection of a checkpoint, the ID test set against OOD sets."""

from __future__ import annotations

from cutmix_eval.cli._common import Command, add_evaluation, add_options, default_output_dir, emit_json, \
    given_options, prepare_evaluation, print_table, save_outputs, stored_analysis

COLUMNS = {"tnr_at_tpr95": "TNR at TPR95", "auroc": "AUROC", "detection_accuracy": "Det. acc",
           "aupr_in": "AUPR-In", "aupr_out": "AUPR-Out"}


def ood_table(result) -> list[dict]:
    """The paper's appendix table: one row per OOD set, then OpenOOD's near-OOD and far-OOD
    means when the sets are an OpenOOD v1.5 benchmark's, then the mean; values in percent."""
    groups = [g for g in ("near", "far") if f"{g}/auroc" in result.metrics]
    rows = [*((name, name) for name in result.dataset["ood_sets"]), *((g, f"{g}-OOD mean") for g in groups),
            ("mean", "mean")]
    return [{"OOD set": label, **{column: 100 * result.metrics[f"{key}/{metric}"] for metric, column in COLUMNS.items()}}
            for key, label in rows]


def detectors_table(results: dict) -> list[dict]:
    """Every score of one model on one page, as OpenOOD's leaderboards: one row per score,
    AUROC and the OOD-positive FPR@95 for the near-OOD and far-OOD means when the sets are an
    OpenOOD v1.5 benchmark's, and over every set; values in percent."""
    first = next(iter(results.values()))
    groups = [g for g in ("near", "far") if f"{g}/auroc" in first.metrics] + ["mean"]
    return [{"score": score, **{f"{g} {label}": 100 * r.metrics[f"{g}/{metric}"] for g in groups
                                for metric, label in (("auroc", "AUROC"), ("fpr95_ood_pos", "FPR@95"))}}
            for score, r in results.items()]


def detectors_figure(results: dict, title: str):
    """Every score of one model side by side (:func:`cutmix_eval.analyses.ood.detector_panels`)."""
    from cutmix_eval.analyses.ood import detector_panels
    from cutmix_eval.report.figures import detectors_figure as draw

    first = next(iter(results.values()))
    panels = detector_panels(first.metrics)
    method = first.model.get("method") or first.model.get("arch", "model")
    return draw({score: {method: {key: r.metrics[key] for key, _ in panels}} for score, r in results.items()},
                panels, title=title)


def tuning_line(result) -> str:
    """How the score's settings were chosen, in one line (a warning for test-OOD tuning)."""
    from cutmix_eval.evaluate.ood_tuning import LEAK_WARNING

    tuning, params = result.config["tuning"], result.config["params"]
    shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "none"
    if tuning["protocol"] == "test-ood-holdout" and "chosen" in tuning:
        per_set = "; ".join(f"{name}: " + ", ".join(f"{k}={v}" for k, v in chosen.items())
                            for name, chosen in tuning["chosen"].items())
        return (f"WARNING: {LEAK_WARNING}. Settings per set: {per_set}; scored on images from index "
                f"{tuning['evaluated_from_index']}")
    if "chosen" in tuning:
        best = max((t["auroc"] for t in tuning["trials"] if "auroc" in t), default=float("nan"))
        return (f"settings {shown}: best validation AUROC {100 * best:.1f}% of {len(tuning['trials'])} tried on "
                f"{', '.join(tuning['validation_sets'])} (OpenOOD v1.5's protocol)")
    return f"settings {shown} ({tuning['searched']})"


def ood_figure(result):
    from cutmix_eval.evaluate.ood import score_pairs
    from cutmix_eval.metrics.ood import roc_points
    from cutmix_eval.report.figures import ood_scores_figure

    pairs = score_pairs(result)
    roc = {n: (*roc_points(a, b), result.metrics[f"{n}/auroc"]) for n, (a, b) in pairs.items()}
    score, data = result.config["score"], result.dataset
    title = f"{result.model.get('arch', '')} on {data['name']}/{data['split']}: {score} score, ID against each OOD set"
    return ood_scores_figure(pairs, score, roc, title=title)


class OODCommand(Command):
    name = "ood"
    help = "out-of-distribution detection: TNR at TPR95, AUROC, detection accuracy, AUPR-In/Out"
    examples = ("cutmix-eval ood --ckpt checkpoints/quickstart/cutmix/seed0/last.pth --in synthetic --out all",
                "cutmix-eval ood --ckpt PyramidNet200_cutmix.pth.tar --in cifar100 --out all --data-root ~/data",
                "cutmix-eval ood --ckpt model.pth --in cifar100 --out lsun --out ~/my_ood_images --score msp,energy",
                "cutmix-eval ood --ckpt model.pth --in openood-cifar10 --out openood-cifar10-near --out "
                "openood-cifar10-far --score msp,energy,react,knn,vim",
                "cutmix-eval ood --ckpt model.pth --in openood-cifar10 --out openood-cifar10-near --score react "
                "--params react.percentile=95 --csid openood-cifar10-csid",
                "cutmix-eval ood --ckpt model.pth --in cifar100 --out isun --score odin --tuning test-ood-holdout "
                "--holdout 1000 --json")

    def add_arguments(self, parser):
        add_evaluation(parser, 256, "in-distribution dataset (its test split unless --split)", data_option="--in")
        parser.add_argument("--out", dest="ood", action="append", required=True, metavar="NAME|DIR",
                            help="OOD set, repeatable: a name from `cutmix-eval datasets` (kind ood), lsun / "
                                 "tinyimagenet (crop + resize), noise (uniform + gaussian), all (the paper's seven, "
                                 "or the embedded companions for --in synthetic), an OpenOOD v1.5 group "
                                 "(openood-cifar10-near, openood-cifar10-far, ...: every set of it), or a folder of "
                                 "images (named by its "
                                 "shortest path suffix no other folder shares: LSUN/test, Imagenet/test -> LSUN-test, "
                                 "Imagenet-test); each set once")
        add_options(parser, "ood", {"scores": "--score"}, skip=("sets",))
        parser.add_argument("--output-dir", metavar="DIR",
                            help="folder for the records and figures (default: reports/ood/<checkpoint>-<sha256[:8]>-<in>)")

    def run(self, args):
        from cutmix_eval.fileio import atomic_save_figure, atomic_write_text
        from cutmix_eval.analyses.ood import openood_frame

        options = given_options(args, "ood") | {"sets": args.ood}
        device, dataset, model, info, model_info = prepare_evaluation(args)
        record = stored_analysis(args, "ood", device, dataset, model, model_info, options)
        results = {result.config["score"]: result for result in record.results}
        out_dir = default_output_dir(args, "ood", dataset.name)
        summary = {}
        for score, result in results.items():
            paths = save_outputs(result, out_dir, score, {"scores": ood_figure(result)})
            csv_path = atomic_write_text(out_dir / f"{score}-openood.csv", openood_frame(result).to_csv(
                float_format="%.2f"))
            used = result.dataset["num_images"]
            print(f"\n{info.arch}: {dataset.name}/{dataset.split} ({used} images) = positive class; score "
                  f"{score} (higher = in-distribution); ID accuracy {100 * result.metrics['id/accuracy']:.1f}%")
            print(tuning_line(result))
            for name, about in {**result.dataset.get("csid_sets", {}), **result.dataset["ood_sets"]}.items():
                kind = "csID" if name in result.dataset.get("csid_sets", {}) else "OOD"
                print(f"  {kind} {name}: {about['num_images']} images; {about['description']}")
            print_table(ood_table(result), floatfmt=".1f")
            print(f"record: {paths[0]}\nfigure: {paths[1]}\nOpenOOD-style CSV: {csv_path}")
            summary[score] = result.summary() | {"record": str(paths[0]), "figure": str(paths[1]),
                                                 "openood_csv": str(csv_path)}
        if len(results) > 1:
            print(f"\nDetectors compared ({info.arch} on {dataset.name}), in %:")
            print_table(detectors_table(results), floatfmt=".1f")
            figure = atomic_save_figure(out_dir / "detectors.png", detectors_figure(
                results, f"OOD detectors compared: {info.arch} on {dataset.name}/{dataset.split}"))
            print(f"figure: {figure}")
        print("TNR at TPR95: exact sweep, largest threshold accepting >= 95% of ID images; the OOD-positive "
              "FPR@95 is in the record as fpr95_ood_pos")
        if args.json:
            emit_json(summary)
        return 0
