"""``localize``: CAM-based weakly supervised localization of a checkpoint on a dataset with boxes."""

from __future__ import annotations

from cutmix_eval.cli._common import Command, add_evaluation, default_output_dir, emit_json, prepare_evaluation, \
    print_table, stored_analysis
from cutmix_eval.catalog import CAMS, LOCALIZATION_PROTOCOLS


class LocalizeCommand(Command):
    name = "localize"
    help = "weakly supervised localization from class activation maps (MaxBoxAccV2, top-1 loc, PxAP)"
    examples = ("cutmix-eval localize --ckpt checkpoints/quickstart/cutmix/last.pth --data synthetic",
                "cutmix-eval localize --ckpt resnet50_cub.pth --data cub --data-root ~/data --cam gradcam",
                "cutmix-eval localize --ckpt model.pth --data cub-wsol --split test --protocol paper --json")

    def add_arguments(self, parser):
        add_evaluation(parser, 64, "dataset with boxes (see `cutmix-eval datasets`)")
        parser.add_argument("--cam", default="cam", choices=sorted(CAMS), help="map method (default: native CAM)")
        parser.add_argument("--protocol", default="wsolevaluation", choices=sorted(LOCALIZATION_PROTOCOLS),
                            help="; ".join(f"{k}: {v}" for k, v in LOCALIZATION_PROTOCOLS.items()))
        parser.add_argument("--output-dir", metavar="DIR",
                            help="folder for the result record and figure "
                                 "(default: reports/localize/<checkpoint>-<sha256[:8]>-<data>-<cam>-<protocol>)")

    def run(self, args):
        from cutmix_eval.evaluate.localization import write_outputs

        device, dataset, model, info, model_info = prepare_evaluation(args)
        record = stored_analysis(args, "localization", device, dataset, model, model_info,
                                 {"cam": args.cam, "protocol": args.protocol})
        result = record.results[0]
        record, figure = write_outputs(result, default_output_dir(args, "localize", dataset.name, args.cam,
                                                                  args.protocol))
        metrics = result.metrics
        print(f"{info.arch} on {dataset.name}/{dataset.split}: {metrics['num_images']} images, {args.cam} maps, "
              f"protocol {args.protocol}")
        print_table([{"metric": k, "value (%)": 100 * v} for k, v in metrics.items()
                     if k != "num_images" and not k.startswith("threshold")])
        print(f"record: {record}\nfigure: {figure}")
        if args.json:
            emit_json(result.summary() | {"record": str(record), "figure": str(figure)})
        return 0
