"""OOD scores, the OOD evaluator and the `ood` / `metrics ood` commands."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cutmix_eval.cli import main
from cutmix_eval.data import create_dataset
from cutmix_eval.errors import UserError
from cutmix_eval.evaluate import ood as ood_eval
from cutmix_eval.evaluate.ood import create_ood_sets, evaluate_ood, ood_set_names, score_pairs
from cutmix_eval.evaluate.ood_scores import ODINSetting, create_score, list_scores
from cutmix_eval.evaluate.ood_tuning import Tuning
from cutmix_eval.metrics.ood import ood_metrics
from cutmix_eval.models import create_model
from cutmix_eval.models.checkpoint import save_checkpoint
from cutmix_eval.passes import Predictions
from cutmix_eval.settings import RunSettings

from conftest import CLI, cli_env, tiny_checkpoint


@pytest.fixture(scope="module")
def synthetic_test():
    return create_dataset("synthetic", "test", num_samples=40)


def predictions(logits, pooled=None, labels=None):
    logits = np.asarray(logits, dtype=np.float32)
    labels = np.full(len(logits), -1) if labels is None else np.asarray(labels)
    return Predictions(logits, labels, np.arange(len(logits)), pooled)


def test_registry_lists_the_scores_and_rejects_unknown_ones():
    assert list_scores()[:5] == ["msp", "maxlogit", "energy", "mahalanobis", "odin"]
    with pytest.raises(UserError, match="unknown OOD score"):
        create_score("no-such-score")


def test_logit_scores_against_torch():
    logits = np.random.default_rng(0).normal(0, 5, (50, 7))
    t = torch.tensor(logits.astype(np.float32), dtype=torch.float64)
    pred = predictions(logits)
    np.testing.assert_allclose(create_score("msp")(pred), torch.softmax(t, 1).max(1).values.numpy(), rtol=1e-12)
    np.testing.assert_array_equal(create_score("maxlogit")(pred), t.max(1).values.numpy())
    np.testing.assert_allclose(create_score("energy", temperature=2.0)(pred),
                               2.0 * torch.logsumexp(t / 2.0, 1).numpy(), rtol=1e-12)


def test_mahalanobis_against_a_brute_force_loop():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    features = rng.normal(size=(300, 4)) + labels[:, None] * 2.0
    score = create_score("mahalanobis")
    score.fit(predictions(np.zeros((300, 3)), features, labels))
    means = [features[labels == c].mean(0) for c in range(3)]
    covariance = sum(np.outer(f - means[y], f - means[y]) for f, y in zip(features, labels)) / len(features)
    precision = np.linalg.inv(covariance)
    test = rng.normal(size=(20, 4)) * 3
    brute = [-min((x - m) @ precision @ (x - m) for m in means) for x in test]
    np.testing.assert_allclose(score(predictions(np.zeros((20, 3)), test)), brute, rtol=1e-9)
    with pytest.raises(UserError, match="no example of class"):
        score.fit(predictions(np.zeros((10, 3)), features[:10], np.zeros(10, int)))


def test_odin_perturbs_each_image_against_its_own_gradient(model, synthetic_test):
    """Batched ODIN scores equal a per-image loop: x' = x - eps * sign(grad CE(f(x)/T, argmax))."""
    odin = create_score("odin")
    settings = [ODINSetting(1000.0, 0.0), ODINSetting(1000.0, 0.002), ODINSetting(10.0, 0.004)]
    data = torch.utils.data.Subset(synthetic_test, range(6))
    batched = odin.scores(model, data, settings, RunSettings(batch_size=4, device="cpu", progress=False))
    for s in settings:
        brute = []
        for i in range(6):
            x = synthetic_test[i]["image"][None].clone().requires_grad_(True)
            logits = model(x) / s.temperature
            torch.nn.functional.cross_entropy(logits, logits.argmax(1)).backward()
            with torch.no_grad():
                moved = model(x - s.noise * x.grad.sign()).double() / s.temperature
            brute.append(torch.softmax(moved, 1).max().item())
        np.testing.assert_allclose(batched[s], brute, rtol=1e-5)


def test_set_names_expand_all_and_aliases():
    assert ood_set_names("cifar100", ["all"]) == list(ood_eval.PAPER_SETS)
    assert ood_set_names("synthetic", ["all"]) == list(ood_eval.SYNTHETIC_SETS)
    assert ood_set_names("cifar10", ["lsun", "noise", "isun"]) == ["lsun-crop", "lsun-resize", "uniform", "gaussian",
                                                                    "isun"]
    for twice in (["all", "uniform"], ["lsun", "lsun-crop"], ["isun", "isun"]):
        with pytest.raises(UserError, match="is named twice"):
            ood_set_names("cifar10", twice)


def test_folder_sets_are_named_by_their_shortest_unique_path_suffix(tmp_path):
    from cutmix_eval.data.ood import folder_set_names

    root = Path("/data")
    assert folder_set_names([root / "LSUN/test", root / "Imagenet/test"]) == ["LSUN-test", "Imagenet-test"]
    assert folder_set_names([root / "a/x/test", root / "b/x/test", root / "places"]) == ["a-x-test", "b-x-test",
                                                                                          "places"]
    assert folder_set_names([root / "mine/isun"], taken={"isun", "id", "mean"}) == ["mine-isun"]
    assert folder_set_names([Path("/a/b"), Path("/x/a/b")]) == ["a-b", "x-a-b"]
    with pytest.raises(UserError, match="cannot be told apart"):  # only through names holding "-"
        folder_set_names([Path("/x/a-b"), Path("/y/a/b"), Path("/z/b")])


def _image_folder(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(np.full((36, 36, 3), 30 * i, np.uint8)).save(folder / f"{i}.png")
    return folder


def test_two_ood_folders_with_one_base_name_are_two_sets_through_the_cli(tmp_path):
    """ODIN's LSUN and TinyImageNet crop folders both end in `test`: two sets, each with its own images."""
    ckpt = tiny_checkpoint(tmp_path / "m.pth")
    lsun, imagenet = _image_folder(tmp_path / "LSUN" / "test", 3), _image_folder(tmp_path / "Imagenet" / "test", 5)
    results, out_dir = tmp_path / "results", tmp_path / "out"
    done = subprocess.run(CLI + ["ood", "--ckpt", str(ckpt), "--in", "synthetic", "--limit", "6", "--out", str(lsun),
                                 "--out", str(imagenet), "--results", str(results), "--output-dir", str(out_dir)],
                          capture_output=True, text=True, env=cli_env())
    assert done.returncode == 0, done.stderr
    record = json.loads((out_dir / "msp.json").read_text())
    sets = record["dataset"]["ood_sets"]
    assert {name: about["num_images"] for name, about in sets.items()} == {"LSUN-test": 3, "Imagenet-test": 5}
    assert str(lsun) in sets["LSUN-test"]["description"]
    assert [len(record["per_sample"][f"{name}/score"]) for name in sets] == [3, 5]
    assert {key for key in record["metrics"] if key.startswith(("LSUN-test/", "Imagenet-test/", "mean/"))} | {"id/accuracy"} == set(
        record["metrics"])
    rows = [line.split("|")[1].strip() for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[1:] == ["LSUN-test", "Imagenet-test", "mean"]
    report = subprocess.run(CLI + ["report", str(results), "--out", str(tmp_path / "report"), "--format", "md,csv"],
                            capture_output=True, text=True, env=cli_env())
    assert report.returncode == 0, report.stderr
    table = (tmp_path / "report" / "report.md").read_text()
    assert "LSUN-test" in table and "Imagenet-test" in table
    assert (tmp_path / "report" / "figures").is_dir()


def test_an_ood_set_given_twice_is_refused(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "m.pth")
    lsun = _image_folder(tmp_path / "LSUN" / "test", 2)
    results = tmp_path / "results"
    for sets, message in (([lsun, tmp_path / "LSUN" / ".." / "LSUN" / "test"], "are the same folder"),
                          (["noise", "uniform"], "uniform is named twice")):
        argv = [part for name in sets for part in ("--out", str(name))]
        code = main(["ood", "--ckpt", str(ckpt), "--in", "synthetic", "--limit", "4", *argv, "--results", str(results)])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
        assert not results.exists() or not any(results.iterdir())


def test_evaluator_shares_passes_and_its_numbers_follow_from_the_scores(model, synthetic_test, monkeypatch):
    calls = []
    original = ood_eval.predict
    monkeypatch.setattr(ood_eval, "predict", lambda *a, **k: calls.append(k["desc"]) or original(*a, **k))
    sets = create_ood_sets(synthetic_test, ["synthetic-unseen", "uniform"], num_noise=30)
    fit = create_dataset("synthetic", "train", num_samples=200)
    results = evaluate_ood(model, synthetic_test, sets, scores=["msp", "energy", "mahalanobis"], fit_dataset=fit,
                           settings=RunSettings(batch_size=16, limit=30, progress=False))
    assert len(calls) == 4  # ID, two OOD sets, the fitting set: shared by all three scores
    assert [result.config["score"] for result in results] == ["msp", "energy", "mahalanobis"]
    for result in results:
        assert result.dataset["ood_sets"]["uniform"]["num_images"] == 30
        pairs = score_pairs(result)
        assert set(pairs) == {"synthetic-unseen", "uniform"} and len(pairs["uniform"][1]) == 30
        for set_name, (id_scores, ood_scores) in pairs.items():
            expected = ood_metrics(id_scores, ood_scores).as_dict()
            assert result.metrics[f"{set_name}/auroc"] == expected["auroc"]
            assert result.metrics[f"{set_name}/fpr95_ood_pos"] == expected["fpr95_ood_pos"]
        assert result.metrics["mean/tnr_at_tpr95"] == pytest.approx(
            np.mean([result.metrics[f"{s}/tnr_at_tpr95"] for s in pairs]))
        assert "higher = more in-distribution" in result.conventions["score"]
    assert results[2].config["fit_data"]["num_images"] == 200


def test_odin_tunes_on_held_out_test_images_only_when_asked_and_says_so(model, synthetic_test):
    sets = create_ood_sets(synthetic_test, ["gaussian"], num_noise=40)
    [result] = evaluate_ood(model, synthetic_test, sets, scores=["odin"], tuning=Tuning("test-ood-holdout", 10),
                            settings=RunSettings(batch_size=16, progress=False))
    assert result.dataset["num_images"] == 30 and result.dataset["ood_sets"]["gaussian"]["num_images"] == 30
    assert result.per_sample["id/index"][0] == 10 and len(result.per_sample["id/score@gaussian"]) == 30
    tuning = result.config["tuning"]
    chosen = tuning["chosen"]["gaussian"]
    assert chosen["temperature"] in (1, 10, 100, 1000) and chosen["noise"] in (0.0014, 0.0028)
    assert len(tuning["trials"]["gaussian"]) == 8 and "leak" in tuning["warning"]
    assert "leak" in result.conventions["tuning"] and tuning["protocol"] == "test-ood-holdout"
    # the chosen setting's own scores: the same as scoring the rest with that setting
    odin = create_score("odin")
    rest = torch.utils.data.Subset(sets["gaussian"], range(10, 40))
    setting = ODINSetting(chosen["temperature"], chosen["noise"])
    direct = odin.scores(model, rest, [setting], RunSettings(batch_size=16, progress=False))[setting]
    np.testing.assert_allclose(result.per_sample["gaussian/score"], direct, rtol=1e-6)
    with pytest.raises(UserError, match="holds out the first 50"):
        evaluate_ood(model, synthetic_test, sets, scores=["odin"], tuning=Tuning("test-ood-holdout", 50),
                     settings=RunSettings(progress=False))


def test_odin_without_validation_data_runs_at_openood_defaults(model, synthetic_test):
    sets = create_ood_sets(synthetic_test, ["gaussian"], num_noise=40)
    [result] = evaluate_ood(model, synthetic_test, sets, scores=["odin"],
                            settings=RunSettings(batch_size=16, progress=False))
    assert result.config["params"] == {"temperature": 1000.0, "noise": 0.0014}
    assert result.config["tuning"]["protocol"] == "defaults" and result.dataset["num_images"] == 40
    assert 0 <= result.metrics["id/accuracy"] <= 1


def test_nan_logits_and_single_class_models_are_clear_errors(model, synthetic_test):
    sets = create_ood_sets(synthetic_test, ["uniform"], num_noise=8)
    broken = create_model("gapnet:width=8", 10)
    with torch.no_grad():
        broken.net.fc.weight[0, 0] = float("nan")
    with pytest.raises(UserError, match="NaN or infinite logits for 40 of 40 images of synthetic"):
        evaluate_ood(broken, synthetic_test, sets, settings=RunSettings(progress=False))
    with pytest.raises(UserError, match="at least two classes"):
        evaluate_ood(create_model("gapnet:width=8", 1), synthetic_test, sets, settings=RunSettings(progress=False))


def test_folders_of_images_grayscale_and_other_sizes_become_rgb_at_the_id_size(synthetic_test, tmp_path):
    folder = tmp_path / "my_ood"
    folder.mkdir()
    Image.fromarray(np.zeros((20, 30), np.uint8), mode="L").save(folder / "gray.png")
    Image.fromarray(np.zeros((100, 80, 3), np.uint8)).save(folder / "big.jpg")
    sets = create_ood_sets(synthetic_test, [str(folder)])
    assert list(sets) == ["my_ood"] and {tuple(s["image"].shape) for s in sets["my_ood"]} == {(3, 64, 64)}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no image files"):
        create_ood_sets(synthetic_test, [str(empty)])
    with pytest.raises(UserError, match="not an OOD set"):
        create_ood_sets(synthetic_test, ["cifar10"])


def test_ood_command_table_record_and_figure(tmp_path, capsys):
    ckpt = save_checkpoint(create_model("gapnet:width=4", 10), tmp_path / "m.pth", method="cutmix")
    out_dir = tmp_path / "out"
    code = main(["ood", "--ckpt", str(ckpt), "--in", "synthetic", "--out", "synthetic-background", "--out", "noise",
                 "--limit", "24", "--num-noise", "24", "--score", "msp,maxlogit", "--output-dir", str(out_dir),
                 "--json"])
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and set(summary) == {"msp", "maxlogit"}
    assert "| synthetic-background" in out and "| mean" in out and "TNR at TPR95" in out
    record = json.loads((out_dir / "msp.json").read_text())
    assert len(record["per_sample"]["gaussian/score"]) == 24 and record["model"]["method"] == "cutmix"
    assert (out_dir / "msp-scores.png").stat().st_size > 10_000
    assert main(["ood", "--ckpt", str(ckpt), "--in", "synthetic", "--out", "uniform", "--score", "nope"]) == 2
    assert "unknown OOD score nope" in capsys.readouterr().err
    assert main(["ood", "--ckpt", str(ckpt), "--in", "synthetic", "--out", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_metrics_ood_command(tmp_path, capsys):
    rng = np.random.default_rng(0)
    id_scores, ood_scores = rng.normal(1, 1, 300), rng.normal(0, 1, 200)
    np.save(tmp_path / "id.npy", id_scores)
    np.save(tmp_path / "ood.npy", ood_scores)
    code = main(["metrics", "ood", "--id-scores", str(tmp_path / "id.npy"), "--ood-scores", str(tmp_path / "ood.npy"),
                 "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["metrics"] == pytest.approx(ood_metrics(id_scores, ood_scores).as_dict())
    np.save(tmp_path / "nan.npy", np.array([0.1, np.nan]))
    assert main(["metrics", "ood", "--id-scores", str(tmp_path / "nan.npy"), "--ood-scores",
                 str(tmp_path / "ood.npy")]) == 2
    err = capsys.readouterr().err
    assert "finite" in err and len(err.strip().splitlines()) == 1


def test_the_score_registry_refuses_what_would_silently_produce_nothing():
    from cutmix_eval.evaluate.ood_scores import OODScore, register_score

    class Twice(OODScore):
        name = "msp"

        def __call__(self, predictions):
            return predictions.logits[:, 0]

    class Unknown(OODScore):
        name = "gradnorm-like"
        kind = "gradient"

    class Silent(OODScore):
        name = "perturbed-msp"
        kind = "perturbation"  # defines no score_datasets: it would have produced no scores

    for cls, match in ((Twice, "OOD score 'msp' registered twice"), (Unknown, "kinds: posthoc, perturbation"),
                       (Silent, "must define score_datasets")):
        with pytest.raises(ValueError, match=match):
            register_score(cls)
