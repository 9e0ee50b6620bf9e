"""``evaluate``: classification error of a checkpoint on a dataset."""

from __future__ import annotations

from cutmix_eval.cli._common import (Command, add_checkpoint, add_data_root, add_device, add_json, emit_json,
                                     load_model_from_args, print_table)


class EvaluateCommand(Command):
    name = "evaluate"
    help = "top-1 / top-5 error of a checkpoint on a dataset"
    examples = ("cutmix-eval evaluate --ckpt checkpoints/quickstart/cutmix/last.pth --data synthetic",
                "cutmix-eval evaluate --ckpt PyramidNet200_cutmix.pth.tar --data cifar100 --data-root ~/data",
                "cutmix-eval evaluate --ckpt resnet50.pth --data imagenet --split val --json")

    def add_arguments(self, parser):
        add_checkpoint(parser)
        parser.add_argument("--data", required=True, metavar="NAME", help="dataset name (see `cutmix-eval datasets`)")
        parser.add_argument("--split", default=None, help="split (default: test, or the dataset's only split)")
        parser.add_argument("--method", help="method label to record (default: from the checkpoint)")
        parser.add_argument("--batch-size", type=int, default=256)
        parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
        parser.add_argument("--limit", type=int, help="evaluate only the first N images")
        add_data_root(parser)
        add_device(parser)
        add_json(parser)

    def run(self, args):
        from cutmix_eval.data import create_dataset, dataset_spec
        from cutmix_eval.evaluate import evaluate_classification
        from cutmix_eval.runtime import resolve_device

        device = resolve_device(args.device)  # fail before any loading
        spec = dataset_spec(args.data)
        split = args.split or ("test" if "test" in spec.splits else spec.splits[-1])
        dataset = create_dataset(args.data, split, root=args.data_root)
        model, info = load_model_from_args(args, num_classes=dataset.num_classes or None)
        model_info = {"checkpoint": info.path, "checkpoint_sha256": info.file_sha256, "arch": info.arch,
                      "method": args.method or info.method, "training_data": info.dataset,
                      "weights_sha256": info.weights_sha256}
        result = evaluate_classification(model, dataset, batch_size=args.batch_size, device=device,
                                         num_workers=args.workers, limit=args.limit, model_info=model_info)
        metrics = result.metrics
        print(f"{info.arch} on {dataset.name}/{split}: {metrics['num_images']} images")
        print_table([{"top-1 error (%)": 100 * metrics["top1_error"],
                      "top-5 error (%)": 100 * metrics["top5_error"]}])
        if metrics["num_nonfinite_logits"]:
            print(f"warning: {metrics['num_nonfinite_logits']} images got NaN/inf logits (counted as wrong)")
        if args.json:
            emit_json(result.summary())
        return 0
