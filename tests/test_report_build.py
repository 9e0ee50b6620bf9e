"""Reports from records: tables in the paper's layout, intervals, seeds, reference rows, every format."""

import dataclasses
import json
import re
import time

import numpy as np
import pandas as pd
import pytest

from cutmix_eval.analyses import views, write_report
from cutmix_eval.analyses import Subject, run_job
from cutmix_eval.metrics import bootstrap as bs
from cutmix_eval.metrics.seeds import t_interval
from cutmix_eval.report.comparison import build_tables
from cutmix_eval.report.store import ResultStore
from cutmix_eval.results import Result
from cutmix_eval.settings import RunSettings

OPTIONS = {"classification": {}, "localization": {"examples": 4, "cam": "gradcam"}, "ood": {"num_noise": 24},
           "occlusion": {"fractions": [0.0, 0.5, 1.0]},
           "inbetween": {"num_pairs": 16, "mix_grid": [0.0, 0.5, 1.0], "cut_grid": [0.0, 0.5, 1.0]},
           "adversarial": {"eps": [2 / 255, 8 / 255]}, "corruption": {"corruptions": "noise"}}


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory, small_labelled):
    """Every analysis of two models (a fitted one as "cutmix", an untrained copy as "baseline")
    on 48 embedded test images, recorded in one store."""
    import copy

    import torch

    dataset, fitted = small_labelled
    untrained = copy.deepcopy(fitted)
    with torch.no_grad():
        untrained.net.fc.weight.mul_(0.05)
    root = tmp_path_factory.mktemp("records")
    store = ResultStore(root)
    for method, model in (("baseline", untrained), ("cutmix", fitted)):
        info = {"checkpoint_sha256": method * 8, "method": method, "arch": "pooled-pixels"}
        subject = Subject(model, dataset, RunSettings(model_info=info, batch_size=16, progress=False))
        for name, options in OPTIONS.items():
            run_job(store, name, subject, options)
    return root


@pytest.fixture(scope="session")
def tables(results_dir):
    return {t.key[:t.key.index("-synthetic")]: t for t in build_tables(ResultStore(results_dir).records(), views())}


def test_one_table_per_analysis_methods_in_paper_order(tables):
    assert set(tables) == {"classification", "localization", "ood-tnr_at_tpr95", "ood-auroc",
                           "ood-detection_accuracy", "occlusion", "inbetween", "adversarial", "corruption",
                           "corruption-ece"}
    assert all(t.columns == ["baseline", "cutmix"] for t in tables.values())
    assert "48 images" in tables["classification"].title and tables["classification"].note


def test_cells_are_the_records_metrics_with_bootstrap_intervals(results_dir, tables):
    record = next(r for r in ResultStore(results_dir).records()
                  if r.analysis == "classification" and r.job["model"]["method"] == "cutmix")
    correct = record.results[0].per_sample["top1_correct"]
    cell = tables["classification"].rows[0].cells["cutmix"]
    assert cell.value == pytest.approx(100 * record.results[0].metrics["top1_error"])
    assert cell.value == pytest.approx(100 * (1 - correct.mean()))
    low, high = bs.bootstrap_interval(lambda c: 100 * (1 - bs.mean_rows(c)), [correct])
    assert (cell.low, cell.high) == pytest.approx((low, high))
    half = 100 * 2.5 * np.sqrt(max(correct.mean() * (1 - correct.mean()), 1e-3) / len(correct))
    assert cell.low <= cell.value <= cell.high and cell.high - cell.low < 2 * half


def test_adaptive_ece_and_aurc_intervals_resample_images_as_a_loop_does(results_dir, tables):
    """Each resample's adaptive ECE and AURC recomputed by the metric functions, row by row."""
    from cutmix_eval.metrics.calibration import adaptive_calibration_error
    from cutmix_eval.metrics.selective import aurc

    record = next(r for r in ResultStore(results_dir).records()
                  if r.analysis == "classification" and r.job["model"]["method"] == "cutmix")
    calibration = record.results[1]
    outcomes = np.stack([calibration.per_sample["confidence"].astype(np.float64),
                         calibration.per_sample["correct"].astype(np.float64)], axis=-1)
    rows = {row.label.split(" (")[0]: row for row in tables["classification"].rows}
    for label, metric, key in (("adaptive ECE", lambda c, k: adaptive_calibration_error(c, k, 15), "adaptive_ece"),
                               ("AURC", aurc, "aurc")):
        cell = rows[label].cells["cutmix"]
        low, high = bs.bootstrap_interval(
            lambda x, metric=metric: 100 * np.array([metric(r[:, 0], r[:, 1] > 0.5) for r in x]), [outcomes])
        assert cell.value == pytest.approx(100 * calibration.metrics[key])
        assert (cell.low, cell.high) == pytest.approx((low, high)) and cell.low <= cell.value <= cell.high


def test_best_values_follow_the_direction(tables):
    top1 = tables["classification"].rows[0]
    assert top1.label == "top-1 error" and top1.better == "lower"
    assert top1.best() == {min(top1.cells, key=lambda k: top1.cells[k].value)}
    clean = tables["adversarial"].rows[0]
    assert clean.better == "higher" and clean.best() == {max(clean.cells, key=lambda k: clean.cells[k].value)}


def test_ood_tables_have_a_row_per_set_and_the_mean(results_dir, tables):
    record = next(r for r in ResultStore(results_dir).records() if r.analysis == "ood")
    sets = list(record.results[0].dataset["ood_sets"])
    auroc = tables["ood-auroc"]
    assert [r.label for r in auroc.rows] == [*sets, "mean"]
    mean = auroc.rows[-1].cells[record.job["model"]["method"]]
    assert mean.value == pytest.approx(100 * np.mean([record.results[0].metrics[f"{s}/auroc"] for s in sets]))
    assert mean.low <= mean.value <= mean.high


def test_mce_relative_to_the_baseline_column(results_dir, tables):
    records = {r.job["model"]["method"]: r.results[0] for r in ResultStore(results_dir).records()
               if r.analysis == "corruption"}
    row = tables["corruption"].rows[-1]
    assert row.label.startswith("mCE relative to baseline")
    errors = {m: r.curves["errors"] for m, r in records.items()}
    by_hand = 100 * np.mean([np.sum(errors["cutmix"][c]) / np.sum(errors["baseline"][c]) for c in errors["cutmix"]])
    assert row.cells["baseline"].value == pytest.approx(100.0)
    assert row.cells["cutmix"].value == pytest.approx(by_hand)


def test_several_checkpoints_per_method_give_mean_and_t_interval(results_dir, tmp_path):
    store = ResultStore(tmp_path)
    values = []
    for record in ResultStore(results_dir).records():
        if record.analysis != "classification":
            continue
        store.save(record.job, record.results)
        seed2 = dataclasses.replace(record.results[0], metrics=record.results[0].metrics | {"top1_error": 0.5})
        job2 = json.loads(json.dumps(record.job)) | {"model": {"checkpoint_sha256": "f" * 64,
                                                               "method": record.job["model"]["method"]}}
        store.save(job2, [seed2])
        if record.job["model"]["method"] == "cutmix":
            values = [100 * record.results[0].metrics["top1_error"], 50.0]
    cell = build_tables(store.records(), views())[0].rows[0].cells["cutmix"]
    assert cell.seeds == 2 and (cell.low, cell.high) == pytest.approx(t_interval(values))
    assert cell.value == pytest.approx(np.mean(values)) and cell.std == pytest.approx(np.std(values, ddof=1))


def test_paper_reference_rows_when_the_setting_matches(tmp_path):
    store = ResultStore(tmp_path)
    for method, error in (("baseline", 0.17), ("cutmix", 0.15)):
        correct = np.arange(1000) >= 1000 * error
        result = Result("classification", {"top1_error": error, "top5_error": 0.03, "num_nonfinite_logits": 0},
                        {}, {"method": method, "arch": "pyramidnet:depth=200,alpha=240"},
                        {"name": "cifar100", "split": "test", "num_images": 1000},
                        per_sample={"top1_correct": correct, "top5_correct": correct | True})
        store.save({"analysis": "classification", "model": {"checkpoint_sha256": method, "method": method},
                    "dataset": {"name": "cifar100", "split": "test", "limit": None}, "options": {}}, [result])
    table = build_tables(store.records(), views())[0]
    reference = [r for r in table.rows if r.reference]
    assert [r.label for r in reference] == ["top-1 error", "top-5 error"]
    assert {k: c.value for k, c in reference[0].cells.items()} == {"baseline": 16.45, "cutmix": 14.47}
    assert "CutMix paper" in reference[0].source and reference[0].best() == set()
    assert not [r for r in build_tables(store.records(), views())[0].rows if r.reference and "mixup" in r.cells]


def test_report_in_every_format(results_dir, tmp_path):
    out = tmp_path / "report"
    outcome = write_report(results_dir, out, title="Test study")
    assert not outcome.reused and set(outcome.paths) == {"md", "tex", "csv", "html"}
    md = outcome.paths["md"].read_text()
    assert md.startswith("# Test study") and "### Classification and calibration" in md and "**" in md
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out / link).stat().st_size > 5000
    names = {p.name.split("-")[0] for p in outcome.figures}
    assert names == {"reliability", "cam", "roc", "occlusion", "inbetween", "adversarial", "corruption"}
    frame = pd.read_csv(outcome.paths["csv"])
    assert {"table", "metric", "method", "value", "ci_low", "ci_high"} <= set(frame.columns)
    assert set(frame["method"]) == {"baseline", "cutmix"}
    tex = outcome.paths["tex"].read_text()
    assert tex.count(r"\begin{table}") == 10 and r"\toprule" in tex and tex.rstrip().endswith(r"\end{document}")
    page = outcome.paths["html"].read_text()
    assert page.count("data:image/png;base64,") == len(outcome.figures)
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", page)


def test_second_render_is_skipped_until_a_record_changes(results_dir, tmp_path):
    write_report(results_dir, tmp_path, formats=["md"])
    start = time.perf_counter()
    again = write_report(results_dir, tmp_path, formats=["md"])
    assert again.reused and time.perf_counter() - start < 1.0
    assert not write_report(results_dir, tmp_path, formats=["md"], intervals=False).reused
    table_lines = [line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("|")]
    assert table_lines and not any("[" in line for line in table_lines)


def test_an_empty_or_missing_results_folder_is_a_user_error(tmp_path):
    from cutmix_eval.errors import UserError

    with pytest.raises(UserError, match="does not exist"):
        write_report(tmp_path / "nothing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no records"):
        write_report(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(UserError, match="unknown report format pdf"):
        write_report(tmp_path / "empty", tmp_path / "out", formats=["pdf"])


def test_ece_interval_resamples_each_image_whole(tmp_path):
    """Confidence and correctness of an image stay paired: the interval agrees with a plain
    loop over paired resamples (an unpaired resampling lands far off, with ECE near 0 here)."""
    from cutmix_eval.metrics.calibration import expected_calibration_error

    rng = np.random.default_rng(1)
    n = 3000
    confidence = rng.uniform(0.1, 1.0, n)
    correct = rng.random(n) < confidence  # calibrated by construction
    cls = Result("classification", {"top1_error": 1 - correct.mean(), "top5_error": 0.0, "num_nonfinite_logits": 0},
                 {}, {"method": "baseline"}, {"name": "toy", "split": "test", "num_images": n},
                 per_sample={"top1_correct": correct, "top5_correct": np.ones(n, bool)})
    ece = expected_calibration_error(confidence, correct)
    cal = Result("calibration", {"ece": ece, "nll": 0.0, "brier": 0.0}, {}, {"method": "baseline"},
                 {"name": "toy", "split": "test", "num_images": n}, config={"n_bins": 15},
                 per_sample={"confidence": confidence, "correct": correct, "nll": np.zeros(n), "brier": np.zeros(n)})
    store = ResultStore(tmp_path)
    store.save({"analysis": "classification", "model": {"checkpoint_sha256": "x", "method": "baseline"},
                "dataset": {"name": "toy", "split": "test", "limit": None}, "options": {}}, [cls, cal])
    cell = next(r for r in build_tables(store.records(), views())[0].rows if r.label.startswith("ECE")).cells["baseline"]
    loop = []
    for _ in range(1000):
        i = rng.integers(0, n, n)
        loop.append(100 * expected_calibration_error(confidence[i], correct[i]))
    assert cell.value == pytest.approx(100 * ece)
    assert (cell.low, cell.high) == pytest.approx(tuple(np.percentile(loop, [2.5, 97.5])), abs=0.4)


def test_report_of_selected_records_and_stale_figures_removed(results_dir, tmp_path):
    store = ResultStore(results_dir)
    chosen = [r.path for r in store.records() if r.analysis in ("occlusion", "adversarial")]
    outcome = write_report(results_dir, tmp_path, formats=["md"], only=chosen)
    md = outcome.paths["md"].read_text()
    assert "### Occlusion robustness" in md and "### Adversarial robustness" in md and "Classification" not in md
    assert sorted(p.name.split("-")[0] for p in outcome.figures) == ["adversarial", "occlusion"]
    adversarial = [p for p in chosen if "adversarial" in p.name]
    smaller = write_report(results_dir, tmp_path, formats=["md"], only=adversarial)
    assert not smaller.reused and len(smaller.figures) == 1
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [smaller.figures[0].name]
