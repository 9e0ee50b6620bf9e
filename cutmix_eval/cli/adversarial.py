"""``adversarial``: clean and robust accuracy under FGSM / PGD over a grid of eps."""

from __future__ import annotations

from cutmix_eval.cli._common import Command, add_evaluation, add_options, default_output_dir, given_options, \
    prepare_evaluation, print_table, report_outputs, save_outputs, stored_analysis


def adversarial_rows(result) -> list[dict]:
    """One row per (attack, eps): robust accuracy and success rate in percent."""
    from cutmix_eval.evaluate.adversarial import eps_label

    m = result.metrics
    rows = [{"attack": "none (clean)", "eps": "0", "accuracy (%)": 100 * m["clean_accuracy"], "success (%)": 0.0}]
    for attack, curve in result.curves.items():
        for eps in curve["eps"][1:]:
            label = eps_label(eps)
            rows.append({"attack": attack, "eps": label, "accuracy (%)": 100 * m[f"{attack}/accuracy@{label}"],
                         "success (%)": 100 * m[f"{attack}/success_rate@{label}"]})
    return rows


class AdversarialCommand(Command):
    name = "adversarial"
    help = "adversarial robustness: accuracy under FGSM (the paper's 8/255) and PGD, untargeted or targeted"
    examples = ("cutmix-eval adversarial --ckpt checkpoints/quickstart/cutmix/last.pth --data synthetic",
                "cutmix-eval adversarial --ckpt ResNet50_cutmix.pth.tar --data imagenet --eps 8/255 --json",
                "cutmix-eval adversarial --ckpt model.pth --data cifar100 --attack fgsm,pgd --pgd-steps 20 "
                "--eps 2/255,8/255 --targeted")

    def add_arguments(self, parser):
        add_evaluation(parser, 128, "labelled dataset (see `cutmix-eval datasets`)")
        add_options(parser, "adversarial", {"attacks": "--attack"})
        parser.add_argument("--output-dir", metavar="DIR",
                            help="folder for the record and figure (default: reports/adversarial/<checkpoint>-<sha256[:8]>-<data>)")

    def run(self, args):
        from cutmix_eval.report.figures import adversarial_figure

        options = given_options(args, "adversarial")
        device, dataset, model, info, model_info = prepare_evaluation(args)
        result = stored_analysis(args, "adversarial", device, dataset, model, model_info, options).results[0]
        targeted = result.config["targeted"]
        label = model_info["method"] or info.arch
        figure = adversarial_figure({label: result.curves}, title=f"{label} on {dataset.name}/{dataset.split}")
        parts = [dataset.name] + (["targeted"] if targeted else [])
        paths = save_outputs(result, default_output_dir(args, "adversarial", *parts), "adversarial",
                             {"accuracy": figure})
        goal = f"targeted ({result.config['target']} class)" if targeted else "untargeted"
        print(f"{info.arch} on {dataset.name}/{dataset.split}: {result.metrics['num_images']} images, {goal}, "
              f"white box in [0, 1] pixel space")
        print_table(adversarial_rows(result))
        print("success: " + result.conventions["success_rate"].split(" (keys")[0])
        report_outputs(args, result, paths)
        return 0

