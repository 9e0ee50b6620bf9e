"""The sensitivity study: seed intervals, paired differences, the table, the figure, a tiny run."""

import numpy as np
import pytest
from scipy import stats

from cutmix_eval.metrics.seeds import t_interval
from cutmix_eval.errors import UserError
from cutmix_eval.sensitivity import Run, level_dataset, markdown_table, quickstart_runs, run_sensitivity, summarize


def test_t_interval_is_scipys_and_refuses_what_has_no_interval():
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 12):
        x = rng.normal(10, 3, n)
        assert np.allclose(t_interval(x), stats.t.interval(0.95, n - 1, loc=x.mean(), scale=stats.sem(x)))
        assert np.allclose(t_interval(x, 0.9), stats.t.interval(0.9, n - 1, loc=x.mean(), scale=stats.sem(x)))
    assert t_interval([4.0, 4.0, 4.0]) == (4.0, 4.0)
    for bad in ([1.0], [1.0, np.nan], []):
        with pytest.raises(ValueError, match="at least two finite values"):
            t_interval(bad)


def _runs(table: dict[tuple[float, str], list[float]]) -> list[Run]:
    return [Run(level, method, seed, error, 1.0) for (level, method), errors in table.items()
            for seed, error in enumerate(errors)]


def test_summary_pairs_by_seed_not_by_order_and_drops_unpaired_seeds():
    table = {(0.0, "baseline"): [0.10, 0.14, 0.12, 0.50], (0.0, "cutmix"): [0.20, 0.21, 0.25]}
    runs = _runs(table)
    shuffled = [runs[i] for i in (6, 0, 3, 5, 1, 4, 2)]  # the order runs come in does not matter
    rows = {r.method: r for r in summarize(shuffled)}
    base, cutmix = rows["baseline"], rows["cutmix"]
    assert base.seeds == 4 and base.mean == pytest.approx(100 * np.mean(table[0.0, "baseline"]))
    assert (base.low, base.high) == pytest.approx(t_interval(100 * np.array(table[0.0, "baseline"])))
    assert base.diff is None
    brute = [100 * (c - b) for c, b in zip(table[0.0, "cutmix"], table[0.0, "baseline"])]  # seeds 0-2 only
    assert cutmix.diff == pytest.approx((np.mean(brute), *t_interval(brute)))
    text = markdown_table(list(rows.values()))
    assert text.splitlines()[0] == "| method | body_evidence 0 |"
    assert f"Δ **{np.mean(brute):+.1f} [" in text  # excludes 0: bold


def test_a_difference_whose_interval_holds_zero_is_not_bold():
    rows = summarize(_runs({(1.0, "baseline"): [0.10, 0.20, 0.15], (1.0, "mixup"): [0.12, 0.17, 0.16]}))
    assert "Δ +0.0 [" in markdown_table(rows) and "**" not in markdown_table(rows)


def test_sensitivity_figure_draws_every_method(tmp_path):
    from cutmix_eval.fileio import atomic_save_figure
    from cutmix_eval.report.figures import sensitivity_figure

    table = {(level, method): list(np.random.default_rng(k).uniform(0.1, 0.3, 3))
             for k, (level, method) in enumerate((lv, m) for lv in (0.0, 0.5, 1.0) for m in ("baseline", "cutmix"))}
    figure = sensitivity_figure(summarize(_runs(table)))
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["baseline", "cutmix"]
    assert atomic_save_figure(tmp_path / "s.png", figure).stat().st_size > 5000


def test_a_tiny_study_trains_each_level_and_reuses_finished_runs(tmp_path):
    from cutmix_eval.train import get_recipe

    recipe = get_recipe("quick", epochs=1, arch="gapnet:width=4", train_samples=32, test_samples=16, batch_size=16)
    lines = []
    runs = run_sensitivity([0.0, 1.0], ["baseline"], [0, 1], recipe, tmp_path, log=lines.append)
    assert [(r.level, r.seed) for r in runs] == [(0.0, 0), (0.0, 1), (1.0, 0), (1.0, 1)]
    assert (tmp_path / "body_evidence=1" / "baseline" / "seed1" / "last.pth").is_file()
    assert level_dataset("synthetic", 0.5) == "synthetic:body_evidence=0.5"
    again = run_sensitivity([0.0, 1.0], ["baseline"], [0, 1], recipe, tmp_path, log=lines.append)
    assert [r.top1_error for r in again] == [r.top1_error for r in runs]
    # the quick start's own runs stand for its level: read from their logs, not trained again
    reused = quickstart_runs(tmp_path / "body_evidence=1", 1.0, ["baseline"], [0, 1])
    assert [(r.level, r.seed, r.top1_error) for r in reused] == [(r.level, r.seed, r.top1_error) for r in runs[2:]]
    with pytest.raises(UserError, match="no finished quick-start run .*cutmix/seed0/log.jsonl"):
        quickstart_runs(tmp_path / "body_evidence=1", 1.0, ["cutmix"], [0])
