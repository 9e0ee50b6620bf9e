"""``corruption``: top-1 error under the 19 common corruptions at 5 severities, on the fly or from released files."""

from __future__ import annotations

from cutmix_eval.cli._common import Command, add_evaluation, add_options, default_output_dir, given_options, \
    prepare_evaluation, print_table, report_outputs, save_outputs, stored_analysis



def corruption_rows(result) -> list[dict]:
    """One row per corruption (error per severity, mean, CE and relative CE when normalized),
    then one per group; values in percent."""
    m, levels = result.metrics, result.config["severities"]
    normalized = "mce" in m
    rows = []
    for name in result.config["corruptions"]:
        row = {"corruption": name, **{f"s{s}": 100 * m[f"{name}/error@{s}"] for s in levels},
               "mean": 100 * m[f"{name}/error"]}
        if normalized and f"{name}/ce" in m:
            row |= {"CE": 100 * m[f"{name}/ce"], "rel. CE": 100 * m.get(f"{name}/relative_ce", float("nan"))}
        rows.append(row)
    for group in result.curves["groups"]:
        rows.append({"corruption": f"{group} (mean)", "mean": 100 * m[f"{group}/error"]})
    return rows


def summary_lines(result) -> list[str]:
    """The clean error and the summaries, each with its convention; those over fewer than 5
    severities say which, and a summary left out says why."""
    from cutmix_eval.metrics.corruption import severity_scope

    scope = severity_scope(result.config["severities"])
    lines = []
    for key in ("clean_error", "mean_corruption_error", "mce", "relative_mce"):
        label = key if key == "clean_error" else key + scope
        if key in result.metrics:
            lines.append(f"{label}: {100 * result.metrics[key]:.2f}%  ({result.conventions[key]})")
        elif result.conventions.get(key, "").startswith("not reported"):
            lines.append(f"{label}: {result.conventions[key]}")
    return lines


def corruption_examples_figure(result, dataset, model_table: str, count: int = 1):
    """The first ``count`` images under every evaluated corruption (rows) at every severity
    (columns, after the clean image)."""
    import torch

    from cutmix_eval.data.corrupted import corrupt_indexed
    from cutmix_eval.report.figures import sample_grid

    names, levels, seed = result.config["corruptions"], result.config["severities"], result.config["seed"]
    images, titles, labels = [], [], []
    for index in range(min(count, len(dataset))):
        clean = dataset[index]["image"].as_subclass(torch.Tensor)[None]
        for name in names:
            images += [clean] + [corrupt_indexed(clean, [index], name, s, seed=seed or 0, table=model_table)
                                 for s in levels]
            titles += ["clean"] + [f"severity {s}" for s in levels]
            labels.append(name.replace("_", " "))
    return sample_grid(torch.cat(images), titles=titles, ncols=len(levels) + 1, row_labels=labels,
                       title=f"Corrupted images ({model_table} severity table)")


def released_examples_figure(result, name: str, root, split: str):
    """The first image of every evaluated slice of a released set, one row per corruption."""
    import torch

    from cutmix_eval.data import create_dataset
    from cutmix_eval.report.figures import sample_grid

    names, levels = result.config["corruptions"], result.config["severities"]
    images = [create_dataset(name, split, root=root, corruption=c, severity=s)[0]["image"].as_subclass(torch.Tensor)
              for c in names for s in levels]
    return sample_grid(torch.stack(images), titles=[f"severity {s}" for _ in names for s in levels],
                       ncols=len(levels), row_labels=[c.replace("_", " ") for c in names],
                       title=f"Corrupted images of {name}")


class CorruptionCommand(Command):
    name = "corruption"
    help = "common-corruption robustness: error per corruption and severity, mean CE, mCE, relative mCE"
    examples = ("cutmix-eval corruption --ckpt checkpoints/quickstart/cutmix/seed0/last.pth --data synthetic",
                "cutmix-eval corruption --ckpt PyramidNet200_cutmix.pth.tar --data cifar100-c --data-root ~/data",
                "cutmix-eval corruption --ckpt model.pth --data cifar100 --corruptions noise,blur --severities 3-5 "
                "--reference-ckpt baseline.pth --json")

    def add_arguments(self, parser):
        add_evaluation(parser, 128, "a labelled dataset corrupted on the fly (cifar100, synthetic, ...) or a released "
                                    "corrupted set (cifar10-c, cifar100-c, imagenet-c)")
        add_options(parser, "corruption", {"reference": "--reference-ckpt"})
        parser.add_argument("--clean-data", metavar="NAME",
                            help="with a released set: the clean test set for the clean error (default: cifar10, "
                                 "cifar100 or imagenet when found under the data root)")
        parser.add_argument("--examples", type=int, default=1,
                            help="images shown under every corruption and severity in the example sheet (default 1)")
        parser.add_argument("--output-dir", metavar="DIR",
                            help="folder for the record and figures (default: reports/corruption/<checkpoint>-<sha256[:8]>-<data>)")

    def run(self, args):
        from cutmix_eval.analyses import get_analysis
        from cutmix_eval.data import create_dataset
        from cutmix_eval.data.corrupted import CLEAN_OF, is_released
        from cutmix_eval.errors import UserError
        from cutmix_eval.report.figures import corruption_heatmap

        released = is_released(args.data)
        given = given_options(args, "corruption") | ({"table": "released"} if released else {})
        options = get_analysis("corruption").parse_options(given)
        severities, reference_ckpt = list(options["severities"]), options["reference"]
        if args.clean_data and not released:
            raise UserError("--clean-data goes with a released corrupted set (cifar10-c, cifar100-c, imagenet-c)")
        # a released set is read slice by slice; the first one on disk stands for it here
        device, dataset, model, info, model_info = prepare_evaluation(args)
        cache = {}
        if args.clean_data:
            cache["released clean set"] = create_dataset(args.clean_data, "test", root=args.data_root)
        result = stored_analysis(args, "corruption", device, dataset, model, model_info, options,
                                 cache=cache).results[0]
        if released and cache.get("released clean set") is None:
            print(f"note: {CLEAN_OF[dataset.name][0]} not found under the data root: no clean error, no relative mCE")
        label = model_info["method"] or info.arch
        errors = {label: result.curves["errors"]}
        if "reference" in result.curves and reference_ckpt:
            errors[result.config["reference"]] = result.curves["reference"]["errors"]
        figures = {"heatmap": corruption_heatmap(errors, severities, groups=result.curves["group_of"],
                                                 title=f"{label} on {result.dataset['name']}: top-1 error (%)")}
        if args.examples > 0:
            figures["examples"] = (released_examples_figure(result, args.data, args.data_root, dataset.split)
                                   if released else
                                   corruption_examples_figure(result, dataset, result.config["table"], args.examples))
        paths = save_outputs(result, default_output_dir(args, "corruption", args.data), "corruption", figures)
        print(f"{info.arch} on {result.dataset['name']}: {result.metrics['num_images']} images, "
              f"{result.config['source']}" + (f", {result.config['table']} severity table" if not released else ""))
        print_table(corruption_rows(result), floatfmt=".1f")
        for line in summary_lines(result):
            print(line)
        report_outputs(args, result, paths)
        return 0
