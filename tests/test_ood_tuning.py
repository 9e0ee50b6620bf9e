"""Choosing OOD detectors' settings: OpenOOD v1.5's search on validation sets, defaults, and ODIN's
test-OOD holdout, each checked against a brute-force version written here."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cutmix_eval.analyses import run_analysis
from cutmix_eval.data import create_dataset
from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.ood import Validation, create_ood_sets, evaluate_ood
from cutmix_eval.evaluate.ood_scores import create_score, score_class
from cutmix_eval.evaluate.ood_tuning import Tuning, sweep_grid, tune_and_score
from cutmix_eval.metrics.ood import ood_metrics
from cutmix_eval.passes import predict
from cutmix_eval.settings import RunSettings

QUIET = RunSettings(batch_size=32, progress=False)


def openood_recursive_generator(lists):
    """OpenOOD's ``Evaluator.recursive_generator``, restated: the last list is the outer loop."""
    if len(lists) == 1:
        return [[x] for x in lists[0]]
    return [inner + [x] for x in lists[-1] for inner in openood_recursive_generator(lists[:-1])]


def test_the_grid_follows_openoods_order_and_pinned_parameters_leave_it():
    sweep = score_class("gen").sweep
    expected = [dict(zip(sweep, values)) for values in openood_recursive_generator(list(sweep.values()))]
    assert sweep_grid(sweep) == expected and len(expected) == 42
    assert sweep_grid(sweep, {"M": 100}) == [{"gamma": g} for g in sweep["gamma"]]
    assert sweep_grid(sweep, {"M": 100, "gamma": 1.0}) == [{}]
    assert sweep_grid({}) == [{}]


def _table_scorer(table):
    """A scorer reading ``table[key][setting index]`` arrays, sliced to each part."""
    def scorer(parts, grid):
        return {p: [table[p.key][g["i"]][p.start:p.stop] for g in grid] for p in parts}
    return scorer


def test_validation_search_keeps_the_first_setting_of_largest_auroc():
    rng = np.random.default_rng(0)
    grid = [{"i": i} for i in range(4)]
    id_val = [rng.normal(size=50) for _ in grid]
    # settings 1 and 3 separate the validation sets equally well; 1 comes first
    ood_val = [rng.normal(size=40) + shift for shift in (0.0, -2.0, -1.0, 0.0)]
    ood_val[3] = ood_val[1] - id_val[1].mean() + id_val[3].mean()
    id_val[3] = id_val[1] - id_val[1].mean() + id_val[3].mean()
    table = {"validation/id": id_val, "validation/v": ood_val,
             "id": [rng.normal(size=30) for _ in grid], "ood": [rng.normal(size=20) for _ in grid]}
    tuned = tune_and_score(Tuning("ood-validation"), grid, _table_scorer(table), {"id": 30, "ood": 20},
                           {"id": np.arange(30), "ood": np.arange(20)}, ["v"])
    aurocs = [roc_auc_score(np.r_[np.ones(50), np.zeros(40)], np.r_[i, o]) for i, o in zip(id_val, ood_val)]
    assert aurocs[1] == aurocs[3] == max(aurocs)
    assert tuned.record["chosen"] == {"i": 1} and tuned.record["criterion"] == "auroc"
    assert [t["auroc"] for t in tuned.record["trials"]] == pytest.approx(aurocs)
    np.testing.assert_array_equal(tuned.per_sample["ood/score"], table["ood"][1])
    np.testing.assert_array_equal(tuned.per_sample["id/score"], table["id"][1])


def test_test_ood_holdout_chooses_per_set_on_the_first_images_and_scores_the_rest():
    rng = np.random.default_rng(1)
    grid = [{"i": i} for i in range(3)]
    table = {"id": [rng.normal(size=60) for _ in grid],
             "a": [rng.normal(size=50) - s for s in (0.0, 1.0, 2.0)],
             "b": [rng.normal(size=45) - s for s in (2.0, 0.0, 1.0)]}
    tuned = tune_and_score(Tuning("test-ood-holdout", 20), grid, _table_scorer(table), {"id": 60, "a": 50, "b": 45},
                           {k: np.arange(n) for k, n in (("id", 60), ("a", 50), ("b", 45))})
    for name in ("a", "b"):
        quality = [(ood_metrics(table["id"][k][:20], table[name][k][:20]).tnr_at_tpr95,
                    ood_metrics(table["id"][k][:20], table[name][k][:20]).auroc) for k in range(3)]
        best = max(range(3), key=lambda k: quality[k])
        assert tuned.record["chosen"][name] == {"i": best}
        np.testing.assert_array_equal(tuned.per_sample[f"id/score@{name}"], table["id"][best][20:])
        np.testing.assert_array_equal(tuned.per_sample[f"{name}/score"], table[name][best][20:])
    assert tuned.used == {"id": 40, "a": 30, "b": 25} and "leak" in tuned.record["warning"]


def test_nothing_to_tune_scores_every_image_under_every_protocol():
    table = {"id": [np.arange(10.0)], "o": [np.arange(8.0) - 3]}
    for protocol in ("ood-validation", "defaults", "test-ood-holdout"):
        tuned = tune_and_score(Tuning(protocol, 5), [{}], lambda parts, grid: {p: [table[p.key][0]] for p in parts},
                               {"id": 10, "o": 8}, {"id": np.arange(10), "o": np.arange(8)})
        assert tuned.used == {"id": 10, "o": 8} and "chosen" not in tuned.record


def test_a_setting_the_data_cannot_take_is_skipped_and_recorded():
    def scorer(parts, grid):
        return {p: [np.arange(5.0) if g["ok"] else "too large" for g in grid] for p in parts}

    grid = [{"ok": False}, {"ok": True}]
    tuned = tune_and_score(Tuning("ood-validation"), grid, scorer, {"id": 5, "o": 5},
                           {"id": np.arange(5), "o": np.arange(5)}, ["v"])
    assert tuned.record["chosen"] == {"ok": True} and tuned.record["trials"][0]["skipped"] == "too large"
    # no setting of the sweep applies (ViM's dims 256 and 1000 on 128 features): the score's own settings
    for protocol in ("ood-validation", "test-ood-holdout"):
        tuned = tune_and_score(Tuning(protocol, 2), [{"ok": False}, {"ok": False}],
                               lambda parts, grid: {p: [np.arange(5.0) if g.get("ok", True) else "too large"
                                                        for g in grid] for p in parts},
                               {"id": 5, "o": 5}, {"id": np.arange(5), "o": np.arange(5)}, ["v"])
        assert tuned.record["searched"].startswith("no setting of the sweep applies") and "chosen" not in tuned.record
        assert tuned.used == {"id": 5, "o": 5} and "warning" not in tuned.record


@pytest.fixture(scope="module")
def data():
    test = create_dataset("synthetic", "test", num_samples=48)
    val = create_dataset("synthetic", "train", num_samples=40)
    sets = create_ood_sets(test, ["synthetic-background", "uniform"], num_noise=30)
    val_ood = create_ood_sets(test, ["synthetic-unseen"])
    return test, val, sets, Validation(val, val_ood)


def test_react_is_tuned_and_fitted_on_validation_data_as_openood_does(model, data):
    """Brute force: for each percentile of OpenOOD's sweep, ReAct's threshold from the ID
    validation features, AUROC on the validation sets; the first best one scores the test sets."""
    test, val, sets, validation = data
    [result] = evaluate_ood(model, test, sets, scores=["react"], tuning=Tuning("ood-validation"),
                            validation=validation, settings=QUIET)
    run = {name: predict(model, d, keep_features=True, settings=QUIET)
           for name, d in {"id": test, "val": val, "val_ood": validation.ood["synthetic-unseen"], **sets}.items()}
    aurocs = []
    for percentile in score_class("react").sweep["percentile"]:
        react = create_score("react", percentile=percentile)
        react.use_head(model.head.weight.detach().double().numpy(), model.head.bias.detach().double().numpy())
        react.fit(run["val"])
        aurocs.append(roc_auc_score(np.r_[np.ones(40), np.zeros(len(run["val_ood"].labels))],
                                    np.r_[react(run["val"]), react(run["val_ood"])]))
    best = int(np.argmax(aurocs))
    assert result.config["tuning"]["chosen"] == {"percentile": score_class("react").sweep["percentile"][best]}
    assert [t["auroc"] for t in result.config["tuning"]["trials"]] == pytest.approx(aurocs)
    assert result.config["fit_data"] == {"name": "synthetic", "split": "train", "num_images": 40}
    react = create_score("react", percentile=score_class("react").sweep["percentile"][best])
    react.use_head(model.head.weight.detach().double().numpy(), model.head.bias.detach().double().numpy())
    react.fit(run["val"])
    np.testing.assert_allclose(result.per_sample["uniform/score"], react(run["uniform"]), rtol=1e-12)
    assert result.config["params"]["threshold"] == pytest.approx(react.threshold)
    assert result.dataset["validation"]["id"]["num_images"] == 40


def test_a_given_setting_is_not_searched(model, data):
    test, _, sets, validation = data
    [result] = evaluate_ood(model, test, sets, scores=["react"], score_options={"react": {"percentile": 95}},
                            tuning=Tuning("ood-validation"), validation=validation, settings=QUIET)
    assert result.config["params"]["percentile"] == 95 and "chosen" not in result.config["tuning"]
    assert result.config["tuning"]["searched"].startswith("no search")


def test_full_spectrum_puts_the_csid_images_on_the_id_side(model, data):
    test, val, sets, _ = data
    [plain, full] = [evaluate_ood(model, test, sets, scores=["energy"], csid_sets=csid, settings=QUIET)[0]
                     for csid in ({}, {"shifted": val})]
    id_scores = np.r_[plain.per_sample["id/score"], create_score("energy")(predict(model, val, settings=QUIET))]
    np.testing.assert_allclose(full.per_sample["id/score"], id_scores, rtol=1e-6)
    np.testing.assert_array_equal(full.per_sample["id/source"], np.r_[np.zeros(48), np.ones(40)])
    expected = ood_metrics(id_scores, full.per_sample["uniform/score"])
    assert full.metrics["uniform/auroc"] == pytest.approx(expected.auroc)
    labels = np.r_[predict(model, test, settings=QUIET).labels, predict(model, val, settings=QUIET).labels]
    logits = np.r_[predict(model, test, settings=QUIET).logits, predict(model, val, settings=QUIET).logits]
    assert full.metrics["id/accuracy"] == pytest.approx(np.mean(logits.argmax(1) == labels))
    assert list(full.dataset["csid_sets"]) == ["shifted"] and full.dataset["num_images"] == 88


@pytest.mark.parametrize("options, words", [
    ({"tuning": "ood-validation"}, "needs some: pass --tune-on"),
    ({"tuning": "defaults", "tune_on": "synthetic-unseen"}, "does not use them"),
    ({"scores": "msp", "params": "react.percentile=95"}, "not among the scores evaluated"),
    ({"scores": "react", "params": "react.percentil=95"}, "has no setting percentil; its settings: percentile"),
    ({"scores": "react", "params": "react.percentile=high"}, "is not a number"),
    ({"scores": "react", "params": "react.percentile=120"}, "must lie in [0, 100]"),
    ({"tune_on": "synthetic-unseen"}, "also needs ID validation images"),
])
def test_tuning_mistakes_are_one_line_errors(model, data, options, words):
    with pytest.raises(UserError) as err:
        run_analysis("ood", model, data[0], settings=QUIET, sets=("uniform",), **options)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_the_report_warns_when_settings_were_tuned_on_test_ood_images(model, data):
    from pathlib import Path

    from cutmix_eval.analyses.ood import notes
    from cutmix_eval.report.store import Record

    test, _, sets, _ = data
    [leaky] = evaluate_ood(model, test, sets, scores=["gen"], tuning=Tuning("test-ood-holdout", 10), settings=QUIET)
    [plain] = evaluate_ood(model, test, sets, scores=["gen"], settings=QUIET)
    assert "leak" in notes([Record(Path("a.json"), {}, "a", [leaky])])[-1]
    assert not any("leak" in line for line in notes([Record(Path("b.json"), {}, "b", [plain])]))


def test_score_settings_read_alike_from_the_command_line_and_a_study_file():
    from cutmix_eval.analyses import get_analysis

    ood = get_analysis("ood")
    text = ood.parse_options({"scores": "react,knn", "params": "knn.k=100, react.percentile=95"})["params"]
    table = ood.parse_options({"scores": ["react", "knn"], "params": {"react": {"percentile": 95}, "knn": {"k": 100}}})
    assert text == table["params"] == {"knn": {"k": 100}, "react": {"percentile": 95}}
    flags = ood.parse_options({"scores": "fdbd", "params": "fdbd.distance_as_normalizer=false"})["params"]
    assert flags == {"fdbd": {"distance_as_normalizer": False}}
