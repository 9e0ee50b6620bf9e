"""``adversarial``: clean and robust accuracy under FGSM / PGD over a grid of eps."""

from __future__ import annotations

import json

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


def autoattack_cards(result) -> list[dict]:
    """RobustBench-style summaries of the record's AutoAttack runs, one per eps: accuracies in
    percent, the threat model, eps, number of images, version, package and the checks' flags
    (``unreliable`` when any check flagged the run)."""
    from cutmix_eval.evaluate.adversarial import eps_label

    m, checks = result.metrics, result.curves["autoattack"]["checks"]
    return [{"clean_acc": 100 * m["clean_accuracy"], "autoattack_acc": 100 * m[f"autoattack/accuracy@{eps_label(e)}"],
             "threat_model": result.config["norm"], "eps": e, "eps_label": eps_label(e),
             "n_images": m["num_images"], "version": result.config["autoattack_version"],
             "package": f"pyautoattack {result.versions.get('pyautoattack')}", "seed": result.config["seed"],
             "unreliable": bool(checks.get(eps_label(e))), "flags": checks.get(eps_label(e), {}),
             "record": "adversarial.json"} for e in result.config["eps"]]


class AdversarialCommand(Command):
    name = "adversarial"
    help = ("adversarial robustness: accuracy under FGSM (the paper's 8/255), PGD and AutoAttack, Linf or L2, "
            "untargeted or targeted")
    examples = ("cutmix-eval adversarial --ckpt checkpoints/quickstart/cutmix/seed0/last.pth --data synthetic",
                "cutmix-eval adversarial --ckpt ResNet50_cutmix.pth.tar --data imagenet --eps 8/255 --json",
                "cutmix-eval adversarial --ckpt model.pth --data cifar100 --attack fgsm,pgd --pgd-steps 20 "
                "--eps 2/255,8/255 --targeted",
                "cutmix-eval adversarial --ckpt model.pth --data cifar10 --attack autoattack --eps 8/255 --limit 1000",
                "cutmix-eval adversarial --ckpt model.pth --data cifar10 --attack pgd,autoattack --norm L2 --eps 0.5")

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
        out_dir = default_output_dir(args, "adversarial", *parts)
        paths = save_outputs(result, out_dir, "adversarial", {"accuracy": figure})
        if "autoattack" in result.config["attacks"]:
            from cutmix_eval.fileio import atomic_write_text

            cards = autoattack_cards(result)
            print(f"AutoAttack summary: {atomic_write_text(out_dir / 'autoattack.json', json.dumps(cards, indent=1))}")
            for card in cards:
                for check, message in card["flags"].items():
                    print(f"AutoAttack check {check} at eps {card['eps_label']}: {message}")
        goal = f"targeted ({result.config['target']} class)" if targeted else "untargeted"
        print(f"{info.arch} on {dataset.name}/{dataset.split}: {result.metrics['num_images']} images, {goal}, "
              f"white box in [0, 1] pixel space")
        print_table(adversarial_rows(result))
        print("success: " + result.conventions["success_rate"].split(" (keys")[0])
        report_outputs(args, result, paths)
        return 0

