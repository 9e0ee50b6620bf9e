"""Seeds in reports: a method's runs pooled with a t-interval, and differences from the
baseline paired by training seed, rendered in every format."""

import numpy as np
import pytest

from cutmix_eval.analyses import views
from cutmix_eval.metrics.seeds import t_interval
from cutmix_eval.report.comparison import build_tables
from cutmix_eval.report.render import latex, long_frame, markdown
from cutmix_eval.report.store import ResultStore
from cutmix_eval.results import Result

#: top-1 error per (method, training seed); cutmix has a seed the baseline lacks, mixup one seed only
ERRORS = {("baseline", 0): 0.20, ("baseline", 1): 0.22, ("baseline", 2): 0.18,
          ("cutmix", 2): 0.15, ("cutmix", 0): 0.16, ("cutmix", 1): 0.17, ("cutmix", 7): 0.90,
          ("mixup", 0): 0.21}


def _store(tmp_path, errors=ERRORS, seed_known=True):
    store = ResultStore(tmp_path)
    for (method, seed), error in errors.items():
        correct = np.arange(1000) >= 1000 * error
        model = {"method": method, "arch": "gapnet", "recipe": "r" * 16, "seed": seed if seed_known else None}
        result = Result("classification", {"top1_error": error, "top5_error": 0.01, "num_nonfinite_logits": 0},
                        {}, model, {"name": "synthetic", "split": "test", "num_images": 1000},
                        per_sample={"top1_correct": correct, "top5_correct": correct | True})
        store.save({"analysis": "classification", "model": {"checkpoint_sha256": f"{method}{seed}", "method": method},
                    "dataset": {"name": "synthetic", "split": "test", "limit": None}, "options": {}}, [result])
    return store


def test_pooled_columns_show_the_t_interval_over_seeds(tmp_path):
    table = build_tables(_store(tmp_path).records(), views())[0]
    cell = table.rows[0].cells["baseline"]
    values = [100 * ERRORS["baseline", s] for s in range(3)]
    assert cell.seeds == 3 and cell.value == pytest.approx(np.mean(values))
    assert (cell.low, cell.high) == pytest.approx(t_interval(values))
    assert table.rows[0].cells["mixup"].seeds == 1  # one run: a bootstrap interval over images, as before
    assert "baseline: mean over 3 seeds [95% t-interval over seeds]" in table.note


def test_differences_are_paired_by_seed_and_unpaired_seeds_dropped(tmp_path):
    tables = build_tables(_store(tmp_path).records(), views())
    diff = next(t for t in tables if t.title.endswith("difference from baseline (paired by seed)"))
    assert diff.columns == ["cutmix"]  # mixup has a single seed: nothing to pair
    row = diff.rows[0]
    brute = [100 * (ERRORS["cutmix", s] - ERRORS["baseline", s]) for s in (0, 1, 2)]  # by seed, not by order
    cell = row.cells["cutmix"]
    assert cell.value == pytest.approx(np.mean(brute)) and (cell.low, cell.high) == pytest.approx(t_interval(brute))
    assert row.label.startswith("Δ top-1 error") and row.unit == "points" and row.difference
    assert row.best() == ({"cutmix"} if cell.high < 0 else set())
    assert "Seeds without a baseline run left out: cutmix 1." in diff.note
    text = markdown(tables)
    assert "difference from baseline (paired by seed)" in text and "paired t-test at 5%" in text
    assert r"$\Delta$ top-1 error" in latex(tables)
    frame = long_frame(tables)
    shown = frame[(frame.metric.str.startswith("Δ top-1")) & (frame.method == "cutmix")].iloc[0]
    assert shown.value == pytest.approx(np.mean(brute)) and shown.ci_low == pytest.approx(cell.low)


def test_a_difference_whose_interval_holds_zero_is_not_marked(tmp_path):
    errors = {("baseline", 0): 0.20, ("baseline", 1): 0.10, ("cutmix", 0): 0.21, ("cutmix", 1): 0.09}
    diff = build_tables(_store(tmp_path, errors).records(), views())[1]
    assert diff.rows[0].best() == set() and "**" not in markdown([diff]).split("\n\n")[1]


def test_no_difference_table_without_seeds_or_intervals(tmp_path):
    records = _store(tmp_path, seed_known=False).records()
    assert not any("difference from" in t.title for t in build_tables(records, views()))
    assert not any("difference from" in t.title for t in build_tables(_store(tmp_path / "b").records(), views(),
                                                                       intervals=False))
