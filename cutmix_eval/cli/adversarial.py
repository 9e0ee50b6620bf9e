"""``adversarial``: clean and robust accuracy under FGSM / PGD over a grid of eps."""

from __future__ import annotations

from cutmix_eval.cli._common import Command, add_evaluation, default_output_dir, prepare_evaluation, print_table, \
    report_outputs, save_outputs, stored_analysis


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
        parser.add_argument("--attack", default="fgsm",
                            help="comma-separated attacks: fgsm, pgd (default fgsm, the paper's)")
        parser.add_argument("--eps", default="1/255,2/255,4/255,8/255",
                            help="L-infinity radii in [0, 1] pixel space, comma-separated, e.g. 8/255 or 0.03 "
                                 "(default 1/255,2/255,4/255,8/255; the paper reports 8/255)")
        parser.add_argument("--targeted", action="store_true", help="aim every image at a target class")
        parser.add_argument("--target", default="random", choices=("random", "least-likely"),
                            help="target rule with --targeted: a random other class (seeded per image, the same "
                                 "for every model) or the least likely class of the clean image")
        parser.add_argument("--pgd-steps", type=int, default=10, help="PGD iterations (default 10)")
        parser.add_argument("--pgd-step-size",
                            help="PGD step size in pixel units, e.g. 2/255 (default eps / 4)")
        parser.add_argument("--pgd-restarts", type=int, default=1, help="PGD random restarts (default 1)")
        parser.add_argument("--no-random-start", dest="random_start", action="store_false",
                            help="start PGD at the clean image instead of a random point in the eps-ball")
        parser.add_argument("--seed", type=int, default=0, help="seed of PGD's random starts and random targets")
        parser.add_argument("--output-dir", metavar="DIR",
                            help="folder for the record and figure (default: reports/adversarial/<checkpoint>-<sha256[:8]>-<data>)")

    def run(self, args):
        from cutmix_eval.errors import UserError
        from cutmix_eval.evaluate.adversarial import parse_eps
        from cutmix_eval.report.figures import adversarial_figure

        eps = parse_eps(args.eps)
        step_size = parse_eps(args.pgd_step_size) if args.pgd_step_size else [None]
        if len(step_size) != 1:
            raise UserError(f"--pgd-step-size takes one value, not {args.pgd_step_size!r}")
        device, dataset, model, info, model_info = prepare_evaluation(args)
        attacks = [a.strip() for a in args.attack.split(",") if a.strip()]
        options = {"attacks": attacks, "eps": eps, "targeted": args.targeted, "target": args.target,
                   "pgd_steps": args.pgd_steps, "pgd_step_size": step_size[0], "pgd_restarts": args.pgd_restarts,
                   "random_start": args.random_start, "seed": args.seed}
        result = stored_analysis(args, "adversarial", device, dataset, model, model_info, options).results[0]
        label = model_info["method"] or info.arch
        figure = adversarial_figure({label: result.curves}, title=f"{label} on {dataset.name}/{dataset.split}")
        parts = [dataset.name] + (["targeted"] if args.targeted else [])
        paths = save_outputs(result, default_output_dir(args, "adversarial", *parts), "adversarial",
                             {"accuracy": figure})
        goal = f"targeted ({args.target} class)" if args.targeted else "untargeted"
        print(f"{info.arch} on {dataset.name}/{dataset.split}: {result.metrics['num_images']} images, {goal}, "
              f"white box in [0, 1] pixel space")
        print_table(adversarial_rows(result))
        print("success: " + result.conventions["success_rate"].split(" (keys")[0])
        report_outputs(args, result, paths)
        return 0

