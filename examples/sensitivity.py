"""The sensitivity study of the docs: the methods across the embedded data's evidence knob.

    python examples/sensitivity.py                      # the docs' study (about N minutes on 2 CPU cores)
    python examples/sensitivity.py --levels 0,1 --methods baseline,cutmix --seeds 0,1

Trains every method with every seed at every body_evidence level with the quick start's recipe
(finished runs in checkpoints/sensitivity/ are reused), then writes
docs/images/sensitivity.png and docs/sensitivity-table.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cutmix_eval.fileio import atomic_save_figure, atomic_write_text
from cutmix_eval.report.figures import sensitivity_figure
from cutmix_eval.sensitivity import markdown_table, run_sensitivity, summarize
from cutmix_eval.train import get_recipe

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="0,0.5,1", help="body_evidence levels (comma-separated)")
    parser.add_argument("--methods", default="baseline,mixup,cutout,cutmix,saliencymix,puzzlemix")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--checkpoints", default=str(ROOT / "checkpoints" / "sensitivity"))
    parser.add_argument("--out", default=str(ROOT / "docs"))
    args = parser.parse_args()
    levels = [float(v) for v in args.levels.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    recipe = get_recipe("quick")
    start = time.perf_counter()
    runs = run_sensitivity(levels, args.methods.split(","), seeds, recipe, args.checkpoints)
    rows = summarize(runs)
    out = Path(args.out)
    atomic_save_figure(out / "images" / "sensitivity.png",
                       sensitivity_figure(rows, title=f"Top-1 error across the embedded data's body_evidence "
                                                      f"({recipe.arch}, recipe {recipe.name})"), dpi=130)
    atomic_write_text(out / "sensitivity-table.md",
                      f"Test top-1 error (%), mean over seeds {args.seeds} [95% t-interval]; Δ: difference from "
                      "the baseline paired by seed [95% t-interval], bold where the interval excludes 0. "
                      f"Recipe `{recipe.name}` ({recipe.arch}, {recipe.epochs} epochs, {recipe.train_samples} "
                      f"training images; error on the first {recipe.test_samples} test images). "
                      f"{len(runs)} runs, {sum(r.seconds for r in runs) / 60:.0f} min of training "
                      f"({(time.perf_counter() - start) / 60:.0f} min in this call).\n\n{markdown_table(rows)}\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
