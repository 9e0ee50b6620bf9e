"""``occlusion``: top-1 accuracy as a centred hole grows (centre) or the image shrinks to it (boundary)."""

from __future__ import annotations

from cutmix_eval.cli._common import Command, add_evaluation, add_options, default_output_dir, given_options, \
    prepare_evaluation, print_table, report_outputs, save_outputs, stored_analysis


def occlusion_rows(result) -> list[dict]:
    """One row per hole size: accuracy of each mode in percent, then the area row."""
    curves, m = result.curves, result.metrics
    modes = list(curves)
    grid = curves[modes[0]]["fraction"]
    rows = [{"s": f"{f:g}", **{f"{mode} acc. (%)": 100 * curves[mode]["accuracy"][i] for mode in modes}}
            for i, f in enumerate(grid)]
    rows.append({"s": "area", **{f"{mode} acc. (%)": 100 * m[f"{mode}/auc"] for mode in modes}})
    return rows


def occlusion_example_figure(model, dataset, result, count: int):
    """The first ``count`` images of ``dataset`` under every (mode, hole size) of ``result``."""
    import torch

    from cutmix_eval.evaluate.occlusion import fill_pixels, occlusion_examples
    from cutmix_eval.report.figures import sample_grid

    config = result.config
    samples = [dataset[i] for i in range(min(count, len(dataset)))]
    images = torch.stack([s["image"].as_subclass(torch.Tensor) for s in samples])
    fill = fill_pixels(config["fill"], images, [s["index"] for s in samples], mean=getattr(model, "mean", None),
                       seed=config["seed"])
    variants = occlusion_examples(images, fill, config["fractions"], config["modes"])
    titles = [f"s={f:g}" for _ in range(len(samples) * len(config["modes"])) for f in config["fractions"]]
    names = [dataset.classes[int(s["label"])] if dataset.classes else f"class {int(s['label'])}" for s in samples]
    labels = [f"{mode}\n{name}" for name in names for mode in config["modes"]]
    return sample_grid(variants, titles=titles, ncols=len(config["fractions"]), row_labels=labels,
                       title=f"Occluded images ({config['fill']} fill): centre hides the centred s x s window, "
                             "boundary everything outside it")


class OcclusionCommand(Command):
    name = "occlusion"
    help = "occlusion robustness: accuracy vs hole size for centre and boundary occlusion (paper Fig. 5a)"
    examples = ("cutmix-eval occlusion --ckpt checkpoints/quickstart/cutmix/seed0/last.pth --data synthetic",
                "cutmix-eval occlusion --ckpt ResNet50_cutmix.pth.tar --data imagenet --data-root ~/data --json",
                "cutmix-eval occlusion --ckpt model.pth --data cifar100 --fill mean --fractions 0:0.05:1")

    def add_arguments(self, parser):
        add_evaluation(parser, 256, "labelled dataset (see `cutmix-eval datasets`)")
        add_options(parser, "occlusion")
        parser.add_argument("--examples", type=int, default=2, help="images shown in the example figure (default 2)")
        parser.add_argument("--output-dir", metavar="DIR",
                            help="folder for the record and figures (default: reports/occlusion/<checkpoint>-<sha256[:8]>-<data>)")

    def run(self, args):
        from cutmix_eval.report.figures import occlusion_figure

        options = given_options(args, "occlusion")
        device, dataset, model, info, model_info = prepare_evaluation(args)
        result = stored_analysis(args, "occlusion", device, dataset, model, model_info, options).results[0]
        fill = result.config["fill"]
        label = model_info["method"] or info.arch
        figures = {"curves": occlusion_figure({label: result.curves}, fill=str(fill),
                                              title=f"{label} on {dataset.name}/{dataset.split}")}
        if args.examples > 0:
            figures["examples"] = occlusion_example_figure(model.cpu(), dataset, result, args.examples)
        parts = [dataset.name] + ([] if fill == "black" else [f"fill-{fill}"])
        paths = save_outputs(result, default_output_dir(args, "occlusion", *parts), "occlusion", figures)
        print(f"{info.arch} on {dataset.name}/{dataset.split}: {result.metrics['num_images']} images, "
              f"clean top-1 accuracy {100 * result.metrics['clean_accuracy']:.2f}%")
        print(f"fill: {result.conventions['fill']}")
        print_table(occlusion_rows(result))
        print("s: side of the centred window as a fraction of the image side; area: trapezoid rule over s, "
              "divided by the span of the grid")
        report_outputs(args, result, paths)
        return 0
