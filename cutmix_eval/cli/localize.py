"""``localize``: CAM-based weakly supervised localization of a checkpoint on a dataset with boxes."""

from __future__ import annotations

from pathlib import Path

from cutmix_eval.cli._common import Command, add_evaluation, add_options, default_output_dir, emit_json, \
    given_options, prepare_evaluation, print_table, stored_analysis


def examples_figure(examples: dict[str, list]):
    """The CAM example sheet: each image with its map, ground-truth boxes (green) and the box
    at the split's threshold (red, dashed), titled with its class."""
    import numpy as np

    from cutmix_eval.report.figures import sample_grid

    return sample_grid(np.stack(examples["image"]), boxes=examples["boxes"], heatmaps=examples["map"],
                       titles=examples["title"], ncols=8, pred_boxes=examples["pred_boxes"], pred_inclusive=True,
                       title=f"Class activation maps: ground truth (green) and largest-region box at threshold "
                             f"{examples['threshold']:.2f} (red, dashed)")


def write_outputs(result, out_dir: Path) -> tuple[Path, Path]:
    """Write the record (``result.json``) and the figure of the examples in the Result's
    artifacts (``examples.png``) atomically."""
    from cutmix_eval.fileio import atomic_save_figure, atomic_write_text
    from cutmix_eval.results import examples_from_arrays

    examples = examples_from_arrays(result.artifacts)
    record = atomic_write_text(out_dir / "result.json", result.to_json(indent=1))
    return record, atomic_save_figure(out_dir / "examples.png", examples_figure(examples), dpi=120)


class LocalizeCommand(Command):
    name = "localize"
    help = "weakly supervised localization from class activation maps (MaxBoxAccV2, top-1 loc, PxAP)"
    examples = ("cutmix-eval localize --ckpt checkpoints/quickstart/cutmix/seed0/last.pth --data synthetic",
                "cutmix-eval localize --ckpt resnet50_cub.pth --data cub --data-root ~/data --cam gradcam",
                "cutmix-eval localize --ckpt model.pth --data cub-wsol --split test --protocol paper --json")

    def add_arguments(self, parser):
        add_evaluation(parser, 64, "dataset with boxes (see `cutmix-eval datasets`)")
        add_options(parser, "localization")
        parser.add_argument("--output-dir", metavar="DIR",
                            help="folder for the result record and figure "
                                 "(default: reports/localize/<checkpoint>-<sha256[:8]>-<data>-<cam>-<protocol>)")

    def run(self, args):
        options = given_options(args, "localization")
        device, dataset, model, info, model_info = prepare_evaluation(args)
        record = stored_analysis(args, "localization", device, dataset, model, model_info, options)
        result = record.results[0]
        cam, protocol = result.config["cam"], result.config["protocol"]
        record, figure = write_outputs(result, default_output_dir(args, "localize", dataset.name, cam, protocol))
        metrics = result.metrics
        print(f"{info.arch} on {dataset.name}/{dataset.split}: {metrics['num_images']} images, {cam} maps, "
              f"protocol {protocol}")
        print_table([{"metric": k, "value (%)": 100 * v} for k, v in metrics.items()
                     if k != "num_images" and not k.startswith("threshold")])
        print(f"record: {record}\nfigure: {figure}")
        if args.json:
            emit_json(result.summary() | {"record": str(record), "figure": str(figure)})
        return 0
