"""On-the-fly corruption: our batched torch corruptions vs imagecorruptions called image by image.

For each of the 19 corruptions, images per second over the 5 severities of (a) ours,
``corrupt(batch, name, severity, table=...)`` on a whole batch of float images, and
(b) the reference package (``imagecorruptions``, the ``imagecorruptions-imaug`` fork)
the way its users call it, ``corrupt(image, corruption_name=name, severity=s)`` on each
uint8 H x W x 3 image in turn. Both use the ImageNet-C parameter table (the only one the
reference has), so the work compared is the same; at 32 x 32 our CIFAR-C table, which
the tool uses for images of that size, is timed too, for information. The same natural
images (scikit-image's sample photographs, resized) go through both. Totals are images
per second over all 19 corruptions (total images / total time). For each corruption,
rounds alternate between the variants (after a warm-up) and medians are reported, so
the machine's drift cancels. 128 images at 32 x 32 and 8 at 224 x 224, 3 rounds
(``--quick``: 64 and 8, 2 rounds). Targets: at least 10x the reference's total at
32 x 32 and 3x at 224 x 224.

    .venv/bin/python benchmarks/bench_corruptions.py [--quick]
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from imagecorruptions import corrupt as reference_corrupt
from skimage import data as photos

from _common import alternating_seconds, comparison, markdown_table, parse_rounds, print_summary
from cutmix_eval.corruptions import ALL, SEVERITIES, corrupt

TARGETS = {32: 10.0, 224: 3.0}


def natural_images(count: int, size: int) -> torch.Tensor:
    """``count x 3 x size x size`` floats in [0, 1]: crops of scikit-image's photographs, resized."""
    sources = [photos.astronaut(), photos.chelsea(), photos.coffee(), photos.rocket()]
    images = []
    for k in range(count):
        photo = torch.from_numpy(sources[k % len(sources)]).permute(2, 0, 1).float() / 255
        side = min(photo.shape[1:]) - 8 * (k // len(sources))
        crop = photo[:, :side, :side]
        images.append(F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True,
                                    align_corners=False)[0])
    return torch.stack(images).clamp(0, 1)


def bench(size: int, count: int, rounds: int) -> list[dict]:
    batch = natural_images(count, size)
    uint8 = [(255 * image.permute(1, 2, 0).numpy()).round().astype(np.uint8) for image in batch]
    rows = []
    for name in ALL:
        def ours(table: str = "imagenet", name: str = name) -> None:
            for severity in SEVERITIES:
                corrupt(batch, name, severity, table=table)

        def reference(images=uint8, name: str = name) -> None:
            for severity in SEVERITIES:
                for image in images:
                    reference_corrupt(image, corruption_name=name, severity=severity)

        variants = {"ours": ours, "reference": reference}
        if size == 32:
            variants["ours (cifar table)"] = lambda: ours("cifar")
        # Warm-up (lazy loads, kernel caches): ours on the batch, the slow reference on one image.
        ours(), reference(uint8[:1])
        seconds = alternating_seconds(variants, rounds, warmup=0)
        row = {"size": f"{size} x {size}", "corruption": name}
        row |= {key: count * len(SEVERITIES) / s for key, s in seconds.items()}
        rows.append(row | {"ratio": row["ours"] / row["reference"]})
    total = {key: len(rows) / sum(1 / r[key] for r in rows) for key in ("ours", "reference", "ours (cifar table)")
             if key in rows[0]}
    rows.append({"size": f"{size} x {size}", "corruption": "**all 19**", **total,
                 "ratio": total["ours"] / total["reference"]})
    return rows


def main() -> None:
    # (rounds, images at 32 x 32, images at 224 x 224); the reference's image-by-image calls dominate the time
    rounds, small_count, large_count = parse_rounds(__doc__, quick=(2, 64, 8), full=(3, 128, 8))
    torch.manual_seed(0)
    small, large = bench(32, small_count, rounds), bench(224, large_count, rounds)
    print(f"# On-the-fly corruptions: ours (batched torch) vs imagecorruptions image by image (images/s over "
          f"severities 1-5, medians of {rounds} alternating rounds, {torch.get_num_threads()} CPU threads)\n")
    print(markdown_table(small, {"size": "", "corruption": "", "ours": ".0f", "reference": ".0f", "ratio": ".1f",
                                 "ours (cifar table)": ".0f"}))
    print()
    print(markdown_table(large, {"size": "", "corruption": "", "ours": ".1f", "reference": ".1f", "ratio": ".1f"}))
    print("\nBoth columns use the ImageNet-C table; ratio = ours / reference. Totals: images / total time over all "
          "19 corruptions.")
    for size, rows in ((32, small), (224, large)):
        ratio, target = rows[-1]["ratio"], TARGETS[size]
        print(f"Target at {size} x {size}: >= {target:g}x the reference over all 19: "
              f"{'met' if ratio >= target else 'NOT met'} ({ratio:.1f}x).")
    print_summary([comparison(f"19 corruptions x 5 severities at {size} x {size}: ours (batched) vs "
                              f"imagecorruptions image by image", rows[-1]["ours"], rows[-1]["reference"],
                              "images/s", rows[-1]["ratio"], f">= {TARGETS[size]:g}",
                              rows[-1]["ratio"] >= TARGETS[size], "imagecorruptions-imaug")
                   for size, rows in ((32, small), (224, large))])


if __name__ == "__main__":
    main()
