"""AutoAttack in the `adversarial` evaluator costs what the authors' package costs, nothing more.

Seconds per image of (a) ours: ``evaluate_adversarial(model, dataset, attacks=("autoattack",),
eps=(8/255,))`` end to end (loader, clean pass, the package on the images correct without
attack, the record), and (b) the reference called the way its README shows:
``AutoAttack(model, norm="Linf", eps=8/255, version="standard", seed=0)`` then
``run_standard_evaluation(x_test, y_test, bs=batch)`` on the same images already in memory.
Both run the package's full standard version (APGD-CE, APGD-T, FAB-T, Square) on a random
``gapnet:width=4`` (seed 0) over the first embedded synthetic test images (64 px); calls
alternate between the two for several rounds and medians are reported. Target: ours at most
1.05 times the reference's time.

    .venv/bin/python benchmarks/bench_autoattack.py [--quick]
"""

from __future__ import annotations

import torch

from _common import alternating_seconds, comparison, markdown_table, parse_rounds, print_summary
from cutmix_eval.data import create_dataset
from cutmix_eval.evaluate.adversarial import evaluate_adversarial
from cutmix_eval.models import create_model
from cutmix_eval.settings import RunSettings

TARGET = 1.05
EPS = 8 / 255


def main() -> None:
    from pyautoattack import AutoAttack, __version__

    rounds, images = parse_rounds(__doc__, quick=(2, 32), full=(3, 128))
    torch.manual_seed(0)
    model = create_model("gapnet:width=4", 10).eval()
    dataset = create_dataset("synthetic", "test", num_samples=images)
    x = torch.stack([dataset[i]["image"].as_subclass(torch.Tensor) for i in range(images)])
    y = torch.as_tensor([int(dataset[i]["label"]) for i in range(images)])
    batch = 64
    with torch.no_grad():
        correct = int((model(x).argmax(1) == y).sum())

    def ours():
        return evaluate_adversarial(model, dataset, attacks=("autoattack",), eps=(EPS,),
                                    settings=RunSettings(batch_size=batch, progress=False, device="cpu"))

    def reference():
        adversary = AutoAttack(model, norm="Linf", eps=EPS, version="standard", seed=0, device="cpu")
        return adversary.run_standard_evaluation(x, y, batch_size=batch)

    seconds = alternating_seconds({"ours": ours, "reference": reference}, rounds, warmup=0)
    ratio = seconds["ours"] / seconds["reference"]
    rows = [{"variant": name, "seconds / image": s / images, "seconds": s} for name, s in seconds.items()]
    print(f"# AutoAttack: ours vs pyautoattack {__version__} called directly (standard version, Linf 8/255, "
          f"gapnet:width=4, {images} synthetic 64 px images of which {correct} correct without attack and "
          f"attacked; medians of {rounds} alternating rounds; {torch.get_num_threads()} CPU threads)\n")
    print(markdown_table(rows, {"variant": "", "seconds / image": ".4f", "seconds": ".2f"}))
    print(f"\nTarget: ours <= {TARGET} x the reference's time: {'met' if ratio <= TARGET else 'NOT met'} "
          f"(ratio {ratio:.3f}).")
    print_summary([comparison(f"AutoAttack standard vs pyautoattack called directly, gapnet 64 px, {images} images "
                              "(cost ratio)", seconds["ours"] / images, seconds["reference"] / images,
                              "s/image", ratio, f"<= {TARGET}", ratio <= TARGET, "pyautoattack")])


if __name__ == "__main__":
    main()
