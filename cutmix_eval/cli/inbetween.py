"""``inbetween``: how often a model predicts neither class of Mixup- and CutMix-style in-between samples."""

from __future__ import annotations

from cutmix_eval.cli._common import Command, add_evaluation, add_options, default_output_dir, given_options, \
    prepare_evaluation, print_table, report_outputs, save_outputs, stored_analysis


def inbetween_rows(result) -> list[dict]:
    """One row per (kind, grid point): rates of A, B and neither in percent, then each kind's area row."""
    rows = []
    for kind, curve in result.curves.items():
        for i, value in enumerate(curve["grid"]):
            rows.append({"samples": kind, "t or s": f"{value:g}", "B's share (%)": 100 * curve["partner_share"][i],
                         "A (%)": 100 * curve["rate_a"][i], "B (%)": 100 * curve["rate_b"][i],
                         "neither (%) ↓": 100 * curve["rate_neither"][i]})
        rows.append({"samples": kind, "t or s": "area", "B's share (%)": None, "A (%)": None, "B (%)": None,
                     "neither (%) ↓": 100 * result.metrics[f"{kind}/neither_auc"]})
    return rows


def inbetween_example_figure(dataset, result, count: int):
    """The in-between samples of the first ``count`` pairs of ``result``, one row per (pair, kind)."""
    import torch

    from cutmix_eval.evaluate.inbetween import inbetween_examples
    from cutmix_eval.report.figures import sample_grid

    grids = {"mixup": result.config["mix_grid"], "cutmix": result.config["cut_grid"]}
    width = max(len(g) for g in grids.values())
    pairs = list(zip(result.per_sample["index_a"], result.per_sample["index_b"]))[:count]
    images, labels, titles = [], [], []
    for a, b in pairs:
        first, second = dataset[int(a)], dataset[int(b)]
        names = [dataset.classes[int(s["label"])] if dataset.classes else str(int(s["label"])) for s in (first, second)]
        samples = inbetween_examples(first["image"].as_subclass(torch.Tensor),
                                     second["image"].as_subclass(torch.Tensor), grids)
        for kind, row in samples.items():  # rows of unequal grids are padded with white cells
            images.append(torch.cat([row, torch.ones(width - len(row), *row.shape[1:])]))
            variable = "t" if kind == "mixup" else "s"
            titles += [f"{variable}={v:g}" for v in grids[kind]] + [""] * (width - len(row))
            labels.append(f"{kind}\nA: {names[0]}\nB: {names[1]}")
    return sample_grid(torch.cat(images), titles=titles, ncols=width, row_labels=labels,
                       title="In-between samples: mixup (1 - t) A + t B; cutmix A with B's centred s x s window")


class InbetweenCommand(Command):
    name = "inbetween"
    help = "in-between class samples: rate of predicting neither class of Mixup/CutMix-style pairs (paper Fig. 5b)"
    examples = ("cutmix-eval inbetween --ckpt checkpoints/quickstart/cutmix/seed0/last.pth --data synthetic",
                "cutmix-eval inbetween --ckpt ResNet50_cutmix.pth.tar --data imagenet --data-root ~/data --json",
                "cutmix-eval inbetween --ckpt model.pth --data cifar100 --pairs 5000 --seed 1 --mix-grid 0:0.05:1")

    def add_arguments(self, parser):
        add_evaluation(parser, 128, "labelled dataset (see `cutmix-eval datasets`)")
        add_options(parser, "inbetween", {"num_pairs": "--pairs"})
        parser.add_argument("--examples", type=int, default=2, help="pairs shown in the example figure (default 2)")
        parser.add_argument("--output-dir", metavar="DIR",
                            help="folder for the record and figures (default: reports/inbetween/<checkpoint>-<sha256[:8]>-<data>)")

    def run(self, args):
        from cutmix_eval.report.figures import inbetween_figure

        options = given_options(args, "inbetween")
        device, dataset, model, info, model_info = prepare_evaluation(args)
        result = stored_analysis(args, "inbetween", device, dataset, model, model_info, options).results[0]
        label = model_info["method"] or info.arch
        figures = {"neither": inbetween_figure({label: result.curves},
                                               title=f"{label} on {dataset.name}/{dataset.split}")}
        if args.examples > 0:
            figures["examples"] = inbetween_example_figure(dataset, result, args.examples)
        paths = save_outputs(result, default_output_dir(args, "inbetween", dataset.name), "inbetween", figures)
        print(f"{info.arch} on {dataset.name}/{dataset.split}: {result.metrics['num_pairs']} pairs (A, B) of "
              f"different classes, seed {result.config['seed']}")
        print_table(inbetween_rows(result), floatfmt=".1f")
        print("mixup: (1 - t) A + t B; cutmix: A with its centred s x s window from B; neither: the top-1 class is "
              "neither A's nor B's (lower is better); area: trapezoid rule over the grid divided by its span")
        report_outputs(args, result, paths)
        return 0
