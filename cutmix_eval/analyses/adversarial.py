"""Adversarial robustness: top-1 accuracy under white-box FGSM, PGD and AutoAttack in [0, 1]
pixel space, in the L-infinity or L2 ball, untargeted or targeted; the paper's Table 11 is FGSM
at eps 8/255."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cutmix_eval.analyses.base import Analysis, Option, Outcome, Subject, register_analysis
from cutmix_eval.analyses.options import choice, choices, count, flag
from cutmix_eval.errors import UserError
from cutmix_eval.catalog import ATTACK_EPS_BY_NORM, ATTACK_NORMS, ATTACK_TARGETS, ATTACKS, AUTOATTACK_VERSIONS
from cutmix_eval.report.store import Record
from cutmix_eval.report.table import HIGHER, LOWER
from cutmix_eval.report.view import Metric, TableSpec, View


def run(subject: Subject, attacks: tuple[str, ...] = ("fgsm",), eps: tuple[float, ...] | None = None,
        targeted: bool = False, target: str = "random", pgd_steps: int = 10, pgd_step_size: float | None = None,
        pgd_restarts: int = 1, random_start: bool = True, seed: int = 0, norm: str = "Linf",
        autoattack_version: str = "standard") -> Outcome:
    from cutmix_eval.evaluate.adversarial import evaluate_adversarial

    return [evaluate_adversarial(subject.model, subject.dataset, attacks=list(attacks), eps=eps, targeted=targeted,
                                 target=target, pgd_steps=pgd_steps, pgd_step_size=pgd_step_size,
                                 pgd_restarts=pgd_restarts, random_start=random_start, seed=seed, norm=norm,
                                 autoattack_version=autoattack_version, settings=subject.settings)]


def settle(options: dict[str, Any]) -> dict[str, Any]:
    """No eps: the norm's grid (so an evaluation keys alike whether its grid was given or not);
    radii checked in the norm's unit (an L-infinity eps above 1 is refused, naming the fix
    ``8/255``)."""
    from cutmix_eval.evaluate.adversarial import check_eps

    eps = ATTACK_EPS_BY_NORM[options["norm"]] if options["eps"] is None else options["eps"]
    return options | {"eps": tuple(check_eps(eps, options["norm"]))}


def _eps(value: Any, option: str) -> tuple[float, ...] | None:
    """Positive radii (their bound depends on the norm: :func:`check`); None: the norm's grid."""
    from cutmix_eval.evaluate.adversarial import parse_eps

    if value is None:
        return None
    items = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    return tuple(parse_eps(items if isinstance(items, str) else ",".join(str(v) for v in items), norm="L2"))


def _step_size(value: Any, option: str) -> float | None:
    if value is None:
        return None
    steps = _eps(value, option)
    if steps is None or len(steps) != 1:
        raise UserError(f"{option} takes one value, not {value!r}")
    return steps[0]


def table(records: Sequence[Record]) -> list[Metric]:
    """Clean accuracy, then accuracy per attack and radius; untargeted FGSM at 8/255 is keyed
    ``accuracy``, the paper's Table 11 cell."""
    from cutmix_eval.report.comparison import percent_rows

    result = records[0].results[0]
    rows = [Metric("clean accuracy", lambda r: 100 * r.results[0].metrics["clean_accuracy"], HIGHER,
                   lambda r: ([r.results[0].per_sample["clean_correct"]], percent_rows), key="clean_accuracy")]
    targeted = " (targeted)" if result.config.get("targeted") else ""
    for attack in result.curves:
        labels = [k.split("@", 1)[1] for k in result.metrics if k.startswith(f"{attack}/accuracy@")]
        for j, label in enumerate(labels):
            key = f"{attack}/accuracy@{label}"
            paper = attack == "fgsm" and label == "8/255" and not targeted
            rows.append(Metric(f"{attack.upper()}{targeted} eps {label}: accuracy",
                               lambda r, key=key: 100 * r.results[0].metrics[key], HIGHER,
                               lambda r, a=attack, j=j: ([r.results[0].per_sample[f"{a}/correct"][:, j]],
                                                         percent_rows),
                               key="accuracy" if paper else key))
    for label in [k.split("@", 1)[1] for k in result.metrics if k.startswith("autoattack/flags@")]:
        key = f"autoattack/flags@{label}"  # the package's reliability checks that fired (0: none)
        rows.append(Metric(f"AUTOATTACK eps {label}: checks flagged", lambda r, key=key: r.results[0].metrics[key],
                           LOWER, None, key=key, unit="", digits=0))
    return rows


def figure(columns, colours, where):
    from cutmix_eval.report.figures import adversarial_figure

    return ("adversarial", "Top-1 accuracy against the attack radius eps",
            adversarial_figure({label: r.results[0].curves for label, r in columns.items()}, colours=colours,
                               title=f"Top-1 accuracy under attack — {where}"))


ANALYSIS = register_analysis(Analysis(
    "adversarial", 2, "accuracy under FGSM, PGD and AutoAttack in pixel space",
    options=(Option("attacks", ("fgsm",), choices(lambda: ATTACKS, "attack"),
                    "comma-separated attacks: fgsm, pgd, autoattack (the authors' package, pyautoattack)",
                    shown="fgsm, the paper's"),
             Option("eps", None, _eps, "radii in [0, 1] pixel units, comma-separated, e.g. 8/255 or 0.03 (Linf), "
                    "0.5 (L2)", shown="Linf 1/255,2/255,4/255,8/255 (the paper reports 8/255); L2 0.25,0.5,1"),
             Option("targeted", False, flag, "aim every image at a target class"),
             Option("target", "random", choice(lambda: ATTACK_TARGETS),
                    "target rule of targeted attacks: random (another class, seeded per image, the same for every "
                    "model) or least-likely (the clean image's least likely class)"),
             Option("pgd_steps", 10, count(1), "PGD iterations"),
             Option("pgd_step_size", None, _step_size, "PGD step size in pixel units, e.g. 2/255 (default eps / 4)"),
             Option("pgd_restarts", 1, count(1), "PGD random restarts (an image is robust only if none succeeds)"),
             Option("random_start", True, flag, "start PGD at a random point in the eps-ball (--no-random-start: "
                    "at the clean image)"),
             Option("seed", 0, count(0), "seed of PGD's random starts, random targets and AutoAttack"),
             Option("norm", "Linf", choice(lambda: ATTACK_NORMS),
                    "threat model of PGD and AutoAttack: Linf or L2 ball of radius eps (FGSM is Linf only)"),
             Option("autoattack_version", "standard", choice(lambda: AUTOATTACK_VERSIONS),
                    "AutoAttack version: standard (APGD-CE, APGD-T, FAB-T, Square) or rand (APGD-CE, APGD-DLR with "
                    "EOT, for randomized models)")),
    run=run, settle=settle, view=View((TableSpec("adversarial", "Adversarial robustness", table, ("success_rate",)),),
                       figure=figure)))
