"""``localize``: CAM-based weakly supervised localization of a checkpoint on a dataset with boxes."""

from __future__ import annotations

from pathlib import Path

from cutmix_eval.cli._common import (Command, add_checkpoint, add_data_root, add_device, add_json, emit_json,
                                     load_model_from_args, print_table)


class LocalizeCommand(Command):
    name = "localize"
    help = "weakly supervised localization from class activation maps (MaxBoxAccV2, top-1 loc, PxAP)"
    examples = ("cutmix-eval localize --ckpt checkpoints/quickstart/cutmix/last.pth --data synthetic",
                "cutmix-eval localize --ckpt resnet50_cub.pth --data cub --data-root ~/data --cam gradcam",
                "cutmix-eval localize --ckpt model.pth --data cub-wsol --split test --protocol paper --json")

    def add_arguments(self, parser):
        from cutmix_eval.cam import list_cams
        from cutmix_eval.evaluate.localization import PROTOCOLS

        add_checkpoint(parser)
        parser.add_argument("--data", required=True, metavar="NAME", help="dataset with boxes (see `cutmix-eval datasets`)")
        parser.add_argument("--split", help="split (default: test, or the dataset's last split)")
        parser.add_argument("--cam", default="cam", choices=list_cams(), help="map method (default: native CAM)")
        parser.add_argument("--protocol", default="wsolevaluation", choices=sorted(PROTOCOLS),
                            help="; ".join(f"{k}: {v.description}" for k, v in PROTOCOLS.items()))
        parser.add_argument("--method", help="method label to record (default: from the checkpoint)")
        parser.add_argument("--batch-size", type=int, default=64)
        parser.add_argument("--workers", type=int, default=0)
        parser.add_argument("--limit", type=int, help="only the first N images")
        parser.add_argument("--out", help="folder for the result record and figure "
                                          "(default: reports/localize/<checkpoint>-<data>-<cam>-<protocol>)")
        add_data_root(parser)
        add_device(parser)
        add_json(parser)

    def run(self, args):
        from cutmix_eval.data import create_dataset, dataset_spec
        from cutmix_eval.evaluate.localization import evaluate_localization, write_outputs
        from cutmix_eval.runtime import resolve_device

        device = resolve_device(args.device)
        spec = dataset_spec(args.data)
        split = args.split or ("test" if "test" in spec.splits else spec.splits[-1])
        dataset = create_dataset(args.data, split, root=args.data_root)
        model, info = load_model_from_args(args, num_classes=dataset.num_classes or None)
        model_info = {"checkpoint": info.path, "checkpoint_sha256": info.file_sha256, "arch": info.arch,
                      "method": args.method or info.method, "training_data": info.dataset,
                      "weights_sha256": info.weights_sha256}
        result, examples = evaluate_localization(model, dataset, cam=args.cam, protocol=args.protocol,
                                                 batch_size=args.batch_size, device=device,
                                                 num_workers=args.workers, limit=args.limit, model_info=model_info)
        stem = Path(info.path).stem.replace(".pth", "")
        out = Path(args.out or f"reports/localize/{stem}-{dataset.name}-{args.cam}-{args.protocol}")
        record, figure = write_outputs(result, examples, out)
        metrics = result.metrics
        print(f"{info.arch} on {dataset.name}/{split}: {metrics['num_images']} images, {args.cam} maps, "
              f"protocol {args.protocol}")
        print_table([{"metric": k, "value (%)": 100 * v} for k, v in metrics.items()
                     if k != "num_images" and not k.startswith("threshold")])
        print(f"record: {record}\nfigure: {figure}")
        if args.json:
            emit_json(result.summary() | {"record": str(record), "figure": str(figure)})
        return 0
