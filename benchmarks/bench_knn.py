"""KNN OOD score: our blocked exact search against the one-matrix plain-PyTorch floor.

Seconds per 10,000 queries of the ``knn`` score (k = 50, its default) against a bank of
50,000 x 512 L2-normalized training features (non-negative random float32 features, like
a ResNet-18's pooled post-ReLU ones; the bank is normalized once, outside the timing).
Ours: ``KNN.__call__``: normalize the queries, then blocks of queries against the whole
bank, one ``addmm`` and one ``torch.topk`` per block (``cutmix_eval.evaluate.ood_fitted.
blocked_topk``; a bank of unit rows takes the
largest inner products). The floor: what a PyTorch user writes with memory to spare, the whole
queries x bank similarity matrix in one product, then ``torch.topk`` on it (squared
distance ``2 - 2 cos`` of unit vectors). faiss's ``IndexFlatL2`` (what OpenOOD and the
KNN authors use) is timed for information when ``faiss`` imports (it is not a dependency).
Before timing, the scores are checked equal (max abs difference printed, at most 1e-4).
Rounds alternate between the variants; medians are reported. Target: ours at least 0.8
times the floor's speed, with a bounded block instead of a queries x bank matrix.
Full mode: 10,000 queries, 5 rounds; quick mode: 2,000 queries, 3 rounds (scaled to
10,000 in the table).

    .venv/bin/python benchmarks/bench_knn.py [--quick]
"""

from __future__ import annotations

import numpy as np
import torch

from _common import alternating_seconds, comparison, markdown_table, parse_rounds, print_summary, verdict
from cutmix_eval.evaluate.ood_fitted import BLOCK_ELEMENTS, l2_normalize
from cutmix_eval.evaluate.ood_scores import create_score
from cutmix_eval.passes import Predictions

TARGET = 0.8
TOLERANCE = 1e-4
BANK, WIDTH, K = 50_000, 512, 50


def features(count: int, seed: int) -> np.ndarray:
    return np.maximum(np.random.default_rng(seed).normal(0.3, 1.0, (count, WIDTH)), 0).astype(np.float32)


def floor(queries: np.ndarray, bank: torch.Tensor) -> np.ndarray:
    """One similarity matrix for all queries, top-k on it: minus the squared k-th distance."""
    q = torch.from_numpy(l2_normalize(queries))
    with torch.inference_mode():
        similarity = torch.topk(q @ bank.T, K, dim=1, largest=True, sorted=False).values
        return -(2.0 - 2.0 * similarity.min(dim=1).values.double()).numpy()


def faiss_variant(bank: np.ndarray):
    try:
        import faiss
    except ImportError:
        return None
    index = faiss.IndexFlatL2(bank.shape[1])
    index.add(bank)
    return lambda queries: -index.search(l2_normalize(queries), K)[0][:, -1].astype(np.float64)


def main() -> None:
    rounds, count = parse_rounds(__doc__, quick=(3, 2_000), full=(5, 10_000))
    train = features(BANK, 0)
    queries = features(count, 1)
    score = create_score("knn", k=K)
    score.fit(Predictions(np.zeros((BANK, 2), np.float32), np.zeros(BANK, np.int64), np.arange(BANK), train))
    bank = torch.from_numpy(score.bank)
    test = Predictions(np.zeros((count, 2), np.float32), np.full(count, -1), np.arange(count), queries)
    variants = {"ours (blocked)": lambda: score(test), "floor (one matrix)": lambda: floor(queries, bank)}
    flat = faiss_variant(score.bank)
    if flat is not None:
        variants["faiss IndexFlatL2"] = lambda: flat(queries)
    reference = variants["floor (one matrix)"]()
    diffs = {name: float(np.abs(fn() - reference).max()) for name, fn in variants.items()}
    assert max(diffs.values()) <= TOLERANCE, f"scores differ: {diffs}"
    seconds = alternating_seconds(variants, rounds, warmup=1)
    scale = 10_000 / count
    rows = [{"variant": name, "s / 10k queries": s * scale, "ratio": seconds["floor (one matrix)"] / s,
             "max abs diff": diffs[name]} for name, s in seconds.items()]
    print(f"# KNN score: {count:,} queries vs {BANK:,} x {WIDTH} normalized training features, k = {K} "
          f"(seconds per 10,000 queries, medians of {rounds} alternating rounds, torch threads "
          f"{torch.get_num_threads()})\n")
    print(markdown_table(rows, {"variant": "", "s / 10k queries": ".3f", "ratio": ".2f", "max abs diff": ".1e"}))
    print(f"\nratio = the floor's time / the variant's (higher = faster). ours: blocks of "
          f"{max(1, BLOCK_ELEMENTS // BANK)} queries ({BLOCK_ELEMENTS * 4 // 2**20} MiB per block matrix); floor: one "
          f"{count:,} x {BANK:,} float32 matrix ({count * BANK * 4 / 2**30:.1f} GiB).")
    ratio = seconds["floor (one matrix)"] / seconds["ours (blocked)"]
    print(f"Target: ours >= {TARGET:g} x the floor's speed: {verdict(ratio, TARGET)} (ratio {ratio:.2f}).")
    print_summary([comparison(f"KNN score, k={K}, {BANK // 1000}k x {WIDTH} bank: ours (blocked) vs one-matrix "
                              "torch floor", seconds["ours (blocked)"] * scale, seconds["floor (one matrix)"] * scale,
                              "s / 10k queries", ratio, f">= {TARGET:g}", ratio >= TARGET, "plain PyTorch")])


if __name__ == "__main__":
    main()
