"""Write docs/images/embedded_samples.png: examples of every class of the embedded
dataset with boxes and mask outlines, then a row of each OOD companion.

Run from the repository root: ``python docs/make_sample_grid.py``.
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image

from cutmix_eval.data import create_dataset
from cutmix_eval.data.synthetic import PART_COLOURS
from cutmix_eval.report.figures import BOX_COLOUR, sample_grid

PER_ROW = 8
OUT = Path(__file__).resolve().parent / "images" / "embedded_samples.png"


def rows():
    """``(label, samples)`` per figure row: ``PER_ROW`` test samples of each class of
    ``synthetic``, then of each OOD companion (generated here, not cached)."""
    synthetic = create_dataset("synthetic", "test", num_samples=40 * PER_ROW, cache=False)
    for label, name in enumerate(synthetic.classes):
        yield name, [synthetic[int(i)] for i in np.flatnonzero(synthetic.labels == label)[:PER_ROW]]
    for name in ("synthetic-unseen", "synthetic-background", "photos"):
        ood = create_dataset(name, "test", num_samples=PER_ROW, cache=False)
        yield "OOD: " + name.removeprefix("synthetic-"), [ood[i] for i in range(PER_ROW)]


def save_small_png(fig, path: Path, dpi: int = 90) -> None:
    """Save ``fig`` as a 256-colour PNG: a median-cut palette of the figure plus the
    exact part colours, box colour, white and black, so small parts keep their colour."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    image = Image.open(buffer).convert("RGB")
    exact = [round(255 * c) for rgb in PART_COLOURS.values() for c in rgb]
    exact += [int(BOX_COLOUR[i:i + 2], 16) for i in (1, 3, 5)] + [255, 255, 255, 0, 0, 0]
    free = 256 - len(exact) // 3
    palette = Image.new("P", (1, 1))
    palette.putpalette(image.quantize(free, method=Image.Quantize.MEDIANCUT).getpalette()[:3 * free] + exact)
    image.quantize(palette=palette, dither=Image.Dither.NONE).save(path, optimize=True)


def main() -> None:
    labels, samples = zip(*rows())
    samples = [sample for row in samples for sample in row]
    fig = sample_grid(np.stack([sample["image"].numpy() for sample in samples]),
                      [sample.get("boxes") for sample in samples], [sample.get("mask") for sample in samples],
                      ncols=PER_ROW, row_labels=labels, cell_inches=0.9)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_small_png(fig, OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
