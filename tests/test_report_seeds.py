"""Seeds in reports: a method's runs pooled with a t-interval, and differences from the
baseline paired by training seed, rendered in every format."""

import numpy as np
import pytest

from cutmix_eval.analyses import views
from cutmix_eval.metrics.seeds import t_interval
from cutmix_eval.report.comparison import build_tables, columns_of, difference_table
from cutmix_eval.report.render import html, latex, long_frame, markdown
from cutmix_eval.report.store import ResultStore
from cutmix_eval.report.table import HIGHER, LOWER, Cell, Row
from cutmix_eval.results import Result

stats = pytest.importorskip("scipy.stats")

#: (method, training seed, top-1 error) per run, in no particular order: baseline has seed 3 and
#: cutmix seed 7 that the other lacks; mixup has one run, cutout two runs of one seed
RUNS = [("baseline", 0, 0.20), ("baseline", 1, 0.22), ("baseline", 2, 0.18), ("baseline", 3, 0.30),
        ("cutmix", 2, 0.15), ("cutmix", 0, 0.16), ("cutmix", 1, 0.17), ("cutmix", 7, 0.90),
        ("mixup", 0, 0.21), ("cutout", 0, 0.19), ("cutout", 0, 0.18)]
PAPER_ARCH = "pyramidnet:depth=200,alpha=240"  # with cifar100: a setting the paper reports on
DIFF = "difference from baseline (paired by seed)"


def _store(tmp_path, runs=RUNS, seed_known=True, dataset="synthetic", arch="gapnet"):
    store = ResultStore(tmp_path)
    for i, (method, seed, error) in enumerate(runs):
        correct = np.arange(1000) >= 1000 * error
        model = {"method": method, "arch": arch, "recipe": "r" * 16, "seed": seed if seed_known else None}
        result = Result("classification", {"top1_error": error, "top5_error": 0.01, "num_nonfinite_logits": 0},
                        {}, model, {"name": dataset, "split": "test", "num_images": 1000},
                        per_sample={"top1_correct": correct, "top5_correct": correct | True})
        store.save({"analysis": "classification", "model": {"checkpoint_sha256": f"{method}{i}", "method": method},
                    "dataset": {"name": dataset, "split": "test", "limit": None}, "options": {}}, [result])
    return store


def _errors(method: str) -> dict[int, float]:
    """Top-1 error in percent by seed of ``method``'s runs (seeds unique)."""
    return {seed: 100 * error for m, seed, error in RUNS if m == method}


def _difference(tables):
    return next(t for t in tables if t.title.endswith(DIFF))


@pytest.mark.parametrize("values", [[1.0, 2.0], [0.20, 0.22, 0.18], [-3.0, 4.5, 0.1, 2.2, -1.0], list(range(10))])
def test_t_interval_equals_scipy(values):
    expected = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert t_interval(values) == pytest.approx(expected)
    assert t_interval(values, confidence=0.9) == pytest.approx(
        stats.t.interval(0.9, len(values) - 1, loc=np.mean(values), scale=stats.sem(values)))


def test_t_interval_of_equal_values_and_refusals():
    assert t_interval([2.5, 2.5, 2.5]) == (2.5, 2.5)
    for bad in ([1.0], [1.0, float("nan")]):
        with pytest.raises(ValueError, match="at least two finite values"):
            t_interval(bad)


def test_pooled_columns_show_the_t_interval_over_seeds(tmp_path):
    tables = build_tables(_store(tmp_path).records(), views())
    cell = tables[0].rows[0].cells["baseline"]
    values = list(_errors("baseline").values())
    expected = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert cell.seeds == 4 and cell.value == pytest.approx(np.mean(values))
    assert (cell.low, cell.high) == pytest.approx(expected) and cell.std == pytest.approx(np.std(values, ddof=1))
    said = "baseline: mean over 4 seeds [95% t-interval over seeds]"
    assert said in tables[0].note and said in markdown(tables) and said in html(tables, [])
    assert said.replace("%", r"\%") in latex(tables)
    frame = long_frame(tables).set_index(["table", "method"]).loc[tables[0].key]
    assert frame.loc["baseline"].iloc[0][["seeds", "interval"]].tolist() == [4, "95% t-interval over seeds"]


def test_single_seed_columns_keep_the_bootstrap_interval(tmp_path):
    alone = build_tables(_store(tmp_path / "a", [r for r in RUNS if r[0] == "mixup"]).records(), views())
    pooled = build_tables(_store(tmp_path / "b").records(), views())
    for table, other in zip(alone, pooled):
        for row, other_row in zip(table.rows, other.rows):
            assert row.cells["mixup"] == other_row.cells["mixup"]
    cell = pooled[0].rows[0].cells["mixup"]
    assert cell.seeds == 1 and cell.std is None and cell.low < cell.value < cell.high
    assert "mixup: mean over" not in pooled[0].note
    assert DIFF not in " ".join(t.title for t in alone)  # no baseline, no difference table


def test_differences_equal_a_brute_force_loop_over_shared_seeds(tmp_path):
    tables = build_tables(_store(tmp_path).records(), views())
    diff = _difference(tables)
    assert diff.columns == ["cutmix"]  # mixup: one seed; cutout: seed 0 twice
    base, cutmix = _errors("baseline"), _errors("cutmix")
    brute = []
    for seed in base:
        if seed in cutmix:
            brute.append(cutmix[seed] - base[seed])
    assert len(brute) == 3  # seeds 3 (baseline only) and 7 (cutmix only) dropped
    row = diff.rows[0]
    cell = row.cells["cutmix"]
    assert cell.value == pytest.approx(np.mean(brute)) and cell.seeds == 3
    assert (cell.low, cell.high) == pytest.approx(
        stats.t.interval(0.95, 2, loc=np.mean(brute), scale=stats.sem(brute)))
    assert cell.std == pytest.approx(np.std(brute, ddof=1))
    assert row.label == "Δ top-1 error" and row.unit == "points" and row.difference and row.better == LOWER
    assert "mean over 3 training seeds" in diff.note
    assert "Seeds run by only one of the method and baseline left out: cutmix 3, 7." in diff.note
    assert "Not compared (fewer than 2 seeds shared with baseline, or seeds not recorded or repeated): " \
           "mixup, cutout." in diff.note


def test_pairing_is_by_seed_not_by_order(tmp_path):
    records = _store(tmp_path).records()
    columns = columns_of(records)
    metrics = views()["classification"].tables[0].metrics(records)
    table = build_tables(records, views())[0]
    shuffled = {label: list(rs)[::-1] for label, rs in columns.items()}
    assert difference_table(table, metrics, shuffled) == difference_table(table, metrics, columns)
    by_order = [c - b for c, b in zip(_errors("cutmix").values(), _errors("baseline").values())]
    assert _difference([table, difference_table(table, metrics, columns)]).rows[0].cells["cutmix"].value \
        != pytest.approx(np.mean(by_order))


def test_reference_rows_are_not_differenced(tmp_path):
    runs = [(m, s, e) for m, s, e in RUNS if m in ("baseline", "cutmix")]
    tables = build_tables(_store(tmp_path, runs, dataset="cifar100", arch=PAPER_ARCH).records(), views())
    assert any(row.reference for row in tables[0].rows)
    diff = _difference(tables)
    measured = [row.label for row in tables[0].rows if not row.reference]
    assert [row.label for row in diff.rows] == [f"Δ {label}" for label in measured]
    assert not any(row.reference for row in diff.rows)


def test_no_difference_table_without_seeds_or_intervals(tmp_path):
    records = _store(tmp_path, seed_known=False).records()
    assert not any(DIFF in t.title for t in build_tables(records, views()))
    assert not any(DIFF in t.title for t in build_tables(_store(tmp_path / "b").records(), views(), intervals=False))
    one_pair = [("baseline", 0, 0.2), ("baseline", 1, 0.3), ("cutmix", 1, 0.1), ("cutmix", 2, 0.1)]
    assert not any(DIFF in t.title for t in build_tables(_store(tmp_path / "c", one_pair).records(), views()))


@pytest.mark.parametrize("better, low, high, verdict", [
    (LOWER, -3.0, -1.0, "better"), (LOWER, 1.0, 3.0, "worse"), (HIGHER, 1.0, 3.0, "better"),
    (HIGHER, -3.0, -1.0, "worse"), (LOWER, -1.0, 1.0, ""), (None, 1.0, 3.0, "")])
def test_the_verdict_follows_the_row_direction(better, low, high, verdict):
    cell = Cell((low + high) / 2, low, high, std=1.0, seeds=3)
    row = Row("Δ x", {"m": cell}, better, difference=True)
    assert row.verdict(cell) == verdict
    assert row.best() == ({"m"} if low > 0 or high < 0 else set())  # marked even without a direction
    assert Row("x", {"m": cell}, better).verdict(cell) == ""  # measured rows have no verdict


def test_renderers_mark_significant_differences_with_their_verdict(tmp_path):
    worse = [("baseline", 0, 0.20), ("baseline", 1, 0.22), ("baseline", 2, 0.18),
             ("cutmix", 0, 0.25), ("cutmix", 1, 0.26), ("cutmix", 2, 0.24)]
    for runs, verdict in ((RUNS, "better"), (worse, "worse")):
        tables = build_tables(_store(tmp_path / verdict, runs).records(), views())
        diff = _difference(tables)
        cell = diff.rows[0].cells["cutmix"]
        assert diff.rows[0].verdict(cell) == verdict
        text = f"{cell.value:.2f} [{cell.low:.2f}, {cell.high:.2f}] {verdict}"
        assert f"| **{text}** |" in markdown(tables)
        assert rf"\textbf{{{text}}}".replace("-", "$-$") in latex(tables)
        value, interval = f"{cell.value:.2f}", f"[{cell.low:.2f}, {cell.high:.2f}]"
        assert f'col1 best" >{value} <span class="ci">{interval}</span> {verdict}</td>' in html(tables, [])
        frame = long_frame(tables)
        shown = frame[(frame.table == diff.key) & (frame.metric == "Δ top-1 error")].iloc[0]
        assert (shown.method, shown.verdict, shown.interval, shown.seeds) == \
               ("cutmix", verdict, "95% t-interval over paired seeds", 3)
        assert (shown.value, shown.ci_low, shown.ci_high, shown["std"]) == \
               pytest.approx((cell.value, cell.low, cell.high, cell.std))
        assert "better or worse than baseline as the row's arrow has it" in diff.note


def test_a_difference_whose_interval_holds_zero_is_not_marked(tmp_path):
    runs = [("baseline", 0, 0.20), ("baseline", 1, 0.10), ("cutmix", 0, 0.21), ("cutmix", 1, 0.09)]
    tables = build_tables(_store(tmp_path, runs).records(), views())
    diff = _difference(tables)
    assert diff.rows[0].best() == set() and diff.rows[0].verdict(diff.rows[0].cells["cutmix"]) == ""
    shown = markdown([diff])
    assert "**" not in shown.split("\n\n")[1] and "better" not in shown.split("\n\n")[1]
