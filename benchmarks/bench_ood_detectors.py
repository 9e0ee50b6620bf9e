"""Every post-hoc OOD detector on one model from one pass, against one pass per detector.

Seconds for all the post-hoc scores (every registered score of kind ``posthoc``) of one
model on the embedded ID test images against two OOD sets, with the detectors that fit
sharing one pass over the fitting images (the random-weight network gets a least-squares
head so that it predicts every class; NNGuide's bank is 100 images, its k):

* **ours**: one ``evaluate_ood`` call with every score: one forward pass per set (pooled
  features kept), one fit pass, then each detector from the arrays;
* **one pass per detector**: ``evaluate_ood`` called once per score, the way OpenOOD runs a
  postprocessor, each making its own passes over every set (and its own fit pass);
* **the floor**: the forward passes alone (``passes.predict`` over the ID set, each OOD set
  and the fitting set, features kept), with no detector at all;
* **ours, tuned**: the same call under OpenOOD's protocol (``ood-validation``): every setting
  of every sweep scored on an ID validation set and an OOD validation set (as many images as
  the test sets), against its floor, the same passes plus the two validation passes.

Target: ours at most 1.3 times the floor (every detector together costs at most 30% on top
of the passes it cannot avoid), tuned or not. The cost of one pass per detector is printed for
information: it grows with the number of detectors.

    .venv/bin/python benchmarks/bench_ood_detectors.py [--quick]
"""

from __future__ import annotations

import torch

from _common import alternating_seconds, comparison, markdown_table, parse_rounds, print_summary, verdict
from cutmix_eval.data import create_dataset
from cutmix_eval.evaluate.ood import Validation, evaluate_ood
from cutmix_eval.evaluate.ood_scores import create_score, list_scores
from cutmix_eval.evaluate.ood_tuning import Tuning
from cutmix_eval.models import create_model
from cutmix_eval.passes import predict
from cutmix_eval.settings import RunSettings

TARGET = 1.3


def fit_head(model, data) -> None:
    """Give the random-weight network a least-squares linear head on its pooled features, so it
    predicts every class (SHE and KLM fit on the images each class gets right)."""
    pooled = predict(model, data, RunSettings(device="cpu", progress=False), keep_features=True)
    features = torch.from_numpy(pooled.pooled).double()
    targets = torch.nn.functional.one_hot(torch.from_numpy(pooled.labels), 10).double()
    design = torch.cat([features, torch.ones(len(features), 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(design, targets).solution
    with torch.no_grad():
        model.head.weight.copy_(solution[:-1].T.float())
        model.head.bias.copy_(solution[-1].float())


def main() -> None:
    rounds, count, fit_count = parse_rounds(__doc__, quick=(2, 500, 2000), full=(3, 2000, 10000))
    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = create_model("gapnet", 10).eval()
    fit_head(model, torch.utils.data.Subset(create_dataset("synthetic", "train"), range(fit_count)))
    test = create_dataset("synthetic", "test", num_samples=count)
    train = create_dataset("synthetic", "train")
    sets = {"uniform": create_dataset("uniform", "test", num_samples=count, image_size=64),
            "gaussian": create_dataset("gaussian", "test", num_samples=count, image_size=64)}
    scores = [name for name in list_scores() if create_score(name).kind == "posthoc"]
    settings = RunSettings(batch_size=256, device="cpu", progress=False)
    options = {"nnguide": {"fraction": 100 / fit_count}}  # a bank of 100 (k) whatever the fitting-set size

    def ours():
        evaluate_ood(model, test, sets, scores=scores, score_options=options, fit_dataset=train, fit_limit=fit_count,
                     settings=settings)

    def one_each():
        for score in scores:
            evaluate_ood(model, test, sets, scores=[score], score_options=options, fit_dataset=train,
                         fit_limit=fit_count, settings=settings)

    def floor():
        for data in (test, *sets.values(), torch.utils.data.Subset(train, range(fit_count))):
            predict(model, data, settings, keep_features=True)

    validation = Validation(create_dataset("synthetic", "train", num_samples=count),  # drawn apart from `train`
                            {"val": create_dataset("uniform", "test", num_samples=count, image_size=64, seed=1)})

    def tuned():
        evaluate_ood(model, test, sets, scores=scores, score_options=options, fit_dataset=train, fit_limit=fit_count,
                     tuning=Tuning("ood-validation"), validation=validation, settings=settings)

    def tuned_floor():
        floor()
        for data in (validation.id, *validation.ood.values()):
            predict(model, data, settings, keep_features=True)

    seconds = alternating_seconds({"ours": ours, "one pass per detector": one_each, "floor": floor,
                                   "ours, tuned": tuned, "floor, tuned": tuned_floor}, rounds)
    tuned_ratio = seconds["ours, tuned"] / seconds["floor, tuned"]
    ratio = seconds["ours"] / seconds["floor"]
    print(f"# All {len(scores)} post-hoc OOD detectors from one pass\n")
    print(f"gapnet (width 32) on {count} embedded test images, 2 noise sets of {count}, {fit_count} fitting images; "
          f"scores: {', '.join(scores)}\n")
    print(markdown_table([{"variant": name, "seconds": s,
                           "x floor": s / seconds["floor, tuned" if "tuned" in name else "floor"]}
                          for name, s in seconds.items()], {"variant": "", "seconds": ".2f", "x floor": ".2f"}))
    print(f"\nTarget: every detector together at most {TARGET} x the floor: {ratio:.2f} x "
          f"({verdict(TARGET, ratio)}); one pass per detector: {seconds['one pass per detector'] / seconds['floor']:.1f} x")
    print(f"Tuned on validation sets (OpenOOD v1.5): {tuned_ratio:.2f} x its floor ({verdict(TARGET, tuned_ratio)})")
    print_summary([comparison(f"all {len(scores)} post-hoc OOD detectors from one pass vs the bare passes", seconds["ours"],
                              seconds["floor"], "s", ratio, f"<= {TARGET}", ratio <= TARGET, "forward passes alone"),
                   comparison("the same, every sweep tuned on validation sets, vs the bare passes",
                              seconds["ours, tuned"], seconds["floor, tuned"], "s", tuned_ratio, f"<= {TARGET}",
                              tuned_ratio <= TARGET, "forward passes alone, validation sets included")])


if __name__ == "__main__":
    main()
