"""The corruption evaluator (on the fly and on released files), its summaries and the `corruption` command."""

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from cutmix_eval.analyses import views
from cutmix_eval.analyses import Subject, run_job
from cutmix_eval.cli import main
from cutmix_eval.corruptions import BENCHMARK, GROUPS, list_corruptions
from cutmix_eval.data import corrupt_indexed, create_dataset
from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.corruption import evaluate_corruption, evaluate_released_corruption, parse_severities
from cutmix_eval.metrics import corruption as summaries
from cutmix_eval.models import create_model
from cutmix_eval.models.checkpoint import load_checkpoint, save_checkpoint
from cutmix_eval.report.comparison import build_tables
from cutmix_eval.report.figures import corruption_heatmap
from cutmix_eval.report.store import ResultStore
from cutmix_eval.settings import RunSettings
from conftest import CLI, cli_env, fitted_pixel_classifier, tiny_checkpoint
from test_data_corrupted import make_cifar_c, make_imagenet_c

CHEAP = ["gaussian_noise", "impulse_noise", "defocus_blur"]


@pytest.fixture(scope="module")
def sensitive(small_labelled):
    """The embedded images and two pixel classifiers that pixel noise can fool: ``(dataset, model, weaker)``."""
    dataset, _ = small_labelled
    images, labels = torch.stack([dataset[i]["image"].as_subclass(torch.Tensor) for i in range(len(dataset))]), \
        torch.as_tensor(dataset.labels)
    return (dataset, fitted_pixel_classifier(images, labels, 10, pool=1),
            fitted_pixel_classifier(images, labels, 10, steps=2, pool=1))


def brute_force_correct(model, dataset, name, severity, seed, table, count):
    images = torch.stack([dataset[i]["image"].as_subclass(torch.Tensor) for i in range(count)])
    labels = torch.as_tensor([int(dataset[i]["label"]) for i in range(count)])
    with torch.no_grad():
        corrupted = corrupt_indexed(images, range(count), name, severity, seed=seed, table=table)
        return (model(corrupted).argmax(1) == labels).numpy()


def test_on_the_fly_equals_a_brute_force_loop_and_ignores_batch_size(small_labelled):
    dataset, model = small_labelled
    result = evaluate_corruption(model, dataset, corruptions=CHEAP, severities=[1, 5], seed=3,
                                 settings=RunSettings(batch_size=20, limit=40, progress=False))
    assert result.config["table"] == "cifar" and result.config["source"] == "on the fly"  # 64 px <= 84
    for name in CHEAP:
        for j, severity in enumerate((1, 5)):
            expected = brute_force_correct(model, dataset, name, severity, 3, result.config["table"], 40)
            np.testing.assert_array_equal(result.per_sample[f"{name}/correct"][:, j], expected)
            assert result.metrics[f"{name}/error@{severity}"] == pytest.approx(1 - expected.mean())
    again = evaluate_corruption(model, dataset, corruptions=CHEAP, severities=[1, 5], seed=3,
                                settings=RunSettings(batch_size=7, limit=40, progress=False))
    for name in CHEAP:
        np.testing.assert_array_equal(again.per_sample[f"{name}/correct"], result.per_sample[f"{name}/correct"])
    outcomes = np.stack([result.per_sample[f"{name}/correct"] for name in CHEAP])  # C x N x 2 severities
    assert result.metrics["mean_corruption_error"] == pytest.approx(1 - outcomes.mean())  # over severities 1 and 5
    assert "severities 1, 5, not comparable" in result.conventions["mean_corruption_error"]
    json.loads(result.to_json())


def brute_force_ece(confidence, correct, n_bins=15):
    """ECE by a loop over right-closed bins (i/B, (i+1)/B]."""
    total = 0.0
    for b in range(n_bins):
        inside = [(c, ok) for c, ok in zip(confidence, correct) if b / n_bins < c <= (b + 1) / n_bins]
        if inside:
            total += len(inside) / len(confidence) * abs(np.mean([ok for _, ok in inside])
                                                         - np.mean([c for c, _ in inside]))
    return total


def test_calibration_under_corruption_against_a_brute_force_loop(small_labelled):
    dataset, model = small_labelled
    result = evaluate_corruption(model, dataset, corruptions=CHEAP[:2], severities=[2, 4], seed=1,
                                 settings=RunSettings(batch_size=16, limit=30, progress=False))
    images = torch.stack([dataset[i]["image"].as_subclass(torch.Tensor) for i in range(30)])
    labels = torch.as_tensor([int(dataset[i]["label"]) for i in range(30)])
    grid = []
    for name in CHEAP[:2]:
        row = []
        for j, severity in enumerate((2, 4)):
            with torch.no_grad():
                corrupted = corrupt_indexed(images, range(30), name, severity, seed=1, table=result.config["table"])
                probs = torch.softmax(model(corrupted).double(), 1)
            confidence, correct = probs.max(1).values.numpy(), (probs.argmax(1) == labels).numpy()
            np.testing.assert_allclose(result.per_sample[f"{name}/confidence"][:, j], confidence, rtol=1e-6)
            row.append(brute_force_ece(confidence, correct))
            assert result.metrics[f"{name}/ece@{severity}"] == pytest.approx(row[-1], abs=1e-6)
        grid.append(row)
    with torch.no_grad():
        probs = torch.softmax(model(images).double(), 1)
    assert result.metrics["clean_ece"] == pytest.approx(
        brute_force_ece(probs.max(1).values.numpy(), (probs.argmax(1) == labels).numpy()), abs=1e-6)
    assert result.metrics["ece@4"] == pytest.approx(np.mean([r[1] for r in grid]), abs=1e-6)
    assert result.metrics["mean_ece"] == pytest.approx(np.mean(grid), abs=1e-6)


def test_errors_grow_with_severity(sensitive):
    dataset, model, _ = sensitive
    result = evaluate_corruption(model, dataset, corruptions="shot_noise", table="imagenet",
                                 settings=RunSettings(progress=False))
    errors = result.curves["errors"]["shot_noise"]
    assert errors[-1] > errors[0] and result.config["table"] == "imagenet"


def test_summaries_and_a_reference_model_in_the_same_sweep(sensitive):
    dataset, model, weaker = sensitive
    result = evaluate_corruption(model, dataset, corruptions="noise,speckle_noise", reference=weaker,
                                 reference_label="baseline", table="imagenet", settings=RunSettings(progress=False))
    alone = evaluate_corruption(weaker, dataset, corruptions="noise,speckle_noise", table="imagenet",
                                settings=RunSettings(progress=False))
    assert 0 < result.metrics["mce"] < 10
    m = result.metrics
    errors = {c: np.asarray(result.curves["errors"][c]) for c in ("gaussian_noise", "shot_noise", "impulse_noise")}
    reference_errors = {c: np.asarray(alone.curves["errors"][c]) for c in errors}
    for name, reference_row in result.curves["reference"]["errors"].items():  # the same corrupted images
        np.testing.assert_allclose(reference_row, alone.curves["errors"][name])
    reference = summaries.CorruptionReference.from_table(reference_errors, alone.metrics["clean_error"],
                                                         name="baseline")
    assert m["mce"] == pytest.approx(summaries.mce(errors, reference))
    assert m["relative_mce"] == pytest.approx(summaries.relative_mce(errors, m["clean_error"], reference))
    assert m["mean_corruption_error"] == pytest.approx(np.mean(list(errors.values())))
    assert m["noise/error"] == pytest.approx(m["mean_corruption_error"])
    assert m["extra/error"] == pytest.approx(np.mean(result.curves["errors"]["speckle_noise"]))
    assert "gaussian_noise/ce" in m and "speckle_noise/ce" not in m  # extras stay out of mCE
    assert result.config["reference"] == "baseline" and "baseline" in result.conventions["mce"]
    assert "3 of the 15" in result.conventions["mean_corruption_error"]
    assert "mce" not in alone.metrics  # no reference off ImageNet
    alexnet = evaluate_corruption(model, dataset, corruptions="noise", reference="alexnet",
                                  settings=RunSettings(limit=12, progress=False))
    assert alexnet.config["reference"] == "AlexNet" and "published" in alexnet.conventions["mce"]


def test_released_files(tmp_path, small_labelled):
    _, model = small_labelled
    make_cifar_c(tmp_path, corruptions=("gaussian_noise", "fog"))
    tiny = create_model("gapnet:width=4", 10).eval()
    result = evaluate_released_corruption(tiny, "cifar10-c", root=tmp_path, corruptions="gaussian_noise,fog",
                                          settings=RunSettings(progress=False))
    assert result.config["source"] == "released files (cifar10-c)" and result.metrics["num_images"] == 3
    for name in ("gaussian_noise", "fog"):
        for severity in range(1, 6):
            part = create_dataset("cifar10-c", "test", root=tmp_path, corruption=name, severity=severity)
            images = torch.stack([part[i]["image"].as_subclass(torch.Tensor) for i in range(3)])
            with torch.no_grad():
                expected = (tiny(images).argmax(1).numpy() == part.labels)
            np.testing.assert_array_equal(result.per_sample[f"{name}/correct"][:, severity - 1], expected)
    assert "clean_error" not in result.metrics and "relative_mce" not in result.metrics
    partial = evaluate_released_corruption(tiny, "cifar10-c", root=tmp_path, corruptions="gaussian_noise,snow",
                                           settings=RunSettings(progress=False))
    assert partial.config["corruptions"] == ["gaussian_noise"] and partial.config["absent"] == ["snow"]
    assert "left out: snow" in partial.config["source"]
    with pytest.raises(UserError, match="no slice"):
        evaluate_released_corruption(tiny, "cifar10-c", root=tmp_path, corruptions="blur",
                                     settings=RunSettings(progress=False))


def test_severity_parsing():
    assert parse_severities("1-5") == [1, 2, 3, 4, 5] and parse_severities("5,1,3") == [1, 3, 5]
    assert parse_severities("3") == [3]
    for bad in ("0-2", "x", "6"):
        with pytest.raises(UserError):
            parse_severities(bad)


def test_heatmap_panels():
    errors = {"gaussian_noise": [0.1, 0.2, 0.3, 0.4, 0.5], "fog": [0.2] * 5}
    figure = corruption_heatmap({"baseline": errors, "cutmix": errors}, [1, 2, 3, 4, 5],
                                groups={"gaussian_noise": "noise", "fog": "weather"})
    heat = [ax for ax in figure.get_axes() if ax.get_images()]
    assert len(heat) == 2 and heat[0].get_images()[0].get_array().shape == (2, 6)
    assert heat[0].get_images()[0].get_array()[0, -1] == pytest.approx(30.0)  # mean column, in percent


def test_corruption_command(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = save_checkpoint(create_model("gapnet:width=4", 10), tmp_path / "m.pth", method="cutmix")
    ref = save_checkpoint(create_model("gapnet:width=4", 10), tmp_path / "b.pth", method="baseline")
    out_dir = tmp_path / "out"
    code = main(["corruption", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "8", "--corruptions",
                 "gaussian_noise,defocus_blur", "--reference-ckpt", str(ref), "--output-dir", str(out_dir), "--json"])
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and summary["config"]["reference"] == "baseline" and "mce" in summary["metrics"]
    assert "| gaussian_noise" in out and "mean_corruption_error" in out
    record = json.loads((out_dir / "corruption.json").read_text())
    assert np.asarray(record["per_sample"]["defocus_blur/correct"]).shape == (8, 5)
    for name in ("heatmap", "examples"):
        assert (out_dir / f"corruption-{name}.png").stat().st_size > 5_000
    make_cifar_c(tmp_path / "data", corruptions=("gaussian_noise",))
    code = main(["corruption", "--ckpt", str(ckpt), "--data", "cifar10-c", "--data-root", str(tmp_path / "data"),
                 "--corruptions", "gaussian_noise", "--output-dir", str(tmp_path / "released")])
    out = capsys.readouterr().out
    assert code == 0 and "cifar10 not found" in out and "released files" in out
    for argv, message in ((["--corruptions", "rain"], "unknown corruption"), (["--severities", "0-9"], "1-5"),
                          (["--clean-data", "cifar10"], "released corrupted set")):
        assert main(["corruption", "--ckpt", str(ckpt), "--data", "synthetic", *argv]) == 2
        assert message in capsys.readouterr().err


# ------------------------------------------------------------- fewer than 5 severities, through the command

@pytest.fixture(scope="module")
def fitted_and_untrained(tmp_path_factory):
    """Two checkpoints for the 64 x 64 synthetic images: a gapnet fitted to the first 8 test
    images ("cutmix": right on them when clean, wrong more often as the corruption grows) and an
    untrained one ("baseline", the reference model)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    dataset = create_dataset("synthetic", "test")
    images = torch.stack([dataset[i]["image"].as_subclass(torch.Tensor) for i in range(8)])
    labels = torch.as_tensor([int(dataset[i]["label"]) for i in range(8)])
    torch.manual_seed(0)
    model = create_model("gapnet:width=4", 10, input_size=(3, 64, 64))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(40):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    fitted = save_checkpoint(model.eval(), folder / "cutmix.pth", method="cutmix", dataset="synthetic")
    return fitted, tiny_checkpoint(folder / "baseline.pth", method="baseline")


def run_command(cwd, *argv: str) -> subprocess.CompletedProcess:
    done = subprocess.run(CLI + list(argv), capture_output=True, text=True, env=cli_env(), cwd=cwd)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return done


def expected_summaries(record: dict) -> dict[str, float]:
    """The record's summaries recomputed with numpy from its per-image outcomes at the severities
    it holds (and the reference model's errors in its curves)."""
    samples = {k: np.asarray(v) for k, v in record["per_sample"].items()}
    names, levels = record["config"]["corruptions"], record["config"]["severities"]
    errors = {c: 1 - samples[f"{c}/correct"].mean(axis=0) for c in names}  # one per severity evaluated
    assert all(e.shape == (len(levels),) for e in errors.values())
    benchmark = [c for c in names if c in BENCHMARK] or names
    expected = {f"{c}/error@{s}": e[j] for c, e in errors.items() for j, s in enumerate(levels)}
    expected["mean_corruption_error"] = np.mean([errors[c] for c in benchmark])
    expected |= {f"{g}/error": np.mean([errors[c] for c in members if c in errors])
                 for g, members in GROUPS.items() if any(c in errors for c in members)}
    reference = record["curves"].get("reference")
    if reference:
        ces = [errors[c].sum() / np.sum(reference["errors"][c]) for c in benchmark]
        expected["mce"] = np.mean(ces)
    return expected


def check_command(done: subprocess.CompletedProcess, record: dict, levels: list[int]) -> None:
    """The printed table has one column per severity evaluated and the group means; every
    summary printed is the record's, labelled with the severities; the record's numbers are
    numpy's from its own per-image outcomes."""
    m, out = record["metrics"], done.stdout
    assert record["config"]["severities"] == levels
    expected = expected_summaries(record)
    assert {k: m[k] for k in expected} == pytest.approx(expected)
    header = next(line for line in out.splitlines() if line.startswith("| corruption"))
    assert [c.strip() for c in header.strip("|").split("|")][:len(levels) + 2] == \
        ["corruption", *(f"s{s}" for s in levels), "mean"]
    for group in record["curves"]["groups"]:
        assert f"| {group} (mean)" in out
    scope = "" if levels == [1, 2, 3, 4, 5] else f" over {summaries.describe_severities(levels)}"
    for key in ("mean_corruption_error", "mce"):
        assert f"{key}{scope}: {100 * m[key]:.2f}%" in out
    if "clean_error" in m and "relative_mce" not in m:  # an untrained reference errs as much corrupted as clean
        assert f"relative_mce{scope}: not reported: relative CE of" in out
    if scope:
        assert scope.strip() in record["conventions"]["mce"] and "not comparable" in \
            record["conventions"]["mean_corruption_error"]


@pytest.mark.parametrize("severities,corruptions", [  # the default run keeps a one-severity and a gapped selection
    pytest.param("3", "all", marks=pytest.mark.slow), pytest.param("3-5", "gaussian_noise", marks=pytest.mark.slow),
    ("1,3,5", "noise,fog,speckle_noise"), ("1-5", "gaussian_noise")])
def test_any_severities_on_the_fly_through_the_command(tmp_path, fitted_and_untrained, severities, corruptions):
    fitted, untrained = fitted_and_untrained
    argv = ["corruption", "--ckpt", str(fitted), "--data", "synthetic", "--limit", "8", "--table", "imagenet",
            "--corruptions", corruptions, "--severities", severities, "--reference-ckpt", str(untrained),
            "--results", "results", "--output-dir", "out"]
    done = run_command(tmp_path, *argv)
    record = json.loads((tmp_path / "out" / "corruption.json").read_text())
    levels = parse_severities(severities)
    check_command(done, record, levels)
    assert record["config"]["reference"] == "baseline" and record["metrics"]["clean_error"] == 0  # fitted to them
    assert record["config"]["corruptions"] == list_corruptions(corruptions)
    model, _ = load_checkpoint(fitted)
    dataset = create_dataset("synthetic", "test")
    for j, severity in enumerate(levels):  # column j is severity levels[j]
        expected = brute_force_correct(model, dataset, "gaussian_noise", severity, 0, "imagenet", 8)
        np.testing.assert_array_equal(np.asarray(record["per_sample"]["gaussian_noise/correct"])[:, j], expected)
    for name in ("heatmap", "examples"):
        assert (tmp_path / "out" / f"corruption-{name}.png").stat().st_size > 5_000
    if severities == "3-5":  # the README's example: the rerun reuses the record and prints the same
        again = run_command(tmp_path, *argv)
        assert "reused the recorded" in again.stdout + again.stderr
        assert again.stdout.split("| corruption")[1] == done.stdout.split("| corruption")[1]


WRONG = {1: 1, 2: 2, 3: 3, 4: 0, 5: 1}  # images the fitted model gets wrong under released gaussian_noise, by severity


@pytest.fixture(scope="module")
def released_root(tmp_path_factory, fitted_and_untrained):
    """A tiny CIFAR-10-C (gaussian_noise and fog, 3 images) labelled so that the fitted model
    gets exactly ``WRONG[s]`` of the 3 gaussian_noise images of severity ``s`` wrong: an error
    that says which slice was read for which column."""
    root = tmp_path_factory.mktemp("data")
    folder = make_cifar_c(root, corruptions=("gaussian_noise", "fog"))
    model, _ = load_checkpoint(fitted_and_untrained[0])
    labels = []
    for severity in range(1, 6):
        part = create_dataset("cifar10-c", "test", root=root, corruption="gaussian_noise", severity=severity)
        with torch.no_grad():
            predicted = model(torch.stack([part[i]["image"].as_subclass(torch.Tensor) for i in range(3)])).argmax(1)
        labels += [(int(p) + (i < WRONG[severity])) % 10 for i, p in enumerate(predicted)]
    np.save(folder / "labels.npy", np.asarray(labels, dtype=np.int64))
    return root


@pytest.mark.parametrize("severities,corruptions", [("2", "gaussian_noise"), ("1,3,5", "all")])
def test_any_severities_of_a_released_set_through_the_command(tmp_path, fitted_and_untrained, released_root,
                                                              severities, corruptions):
    fitted, untrained = fitted_and_untrained
    done = run_command(tmp_path, "corruption", "--ckpt", str(fitted), "--data", "cifar10-c", "--data-root",
                       str(released_root), "--corruptions", corruptions, "--severities", severities,
                       "--reference-ckpt", str(untrained), "--results", "results", "--output-dir", "out")
    record = json.loads((tmp_path / "out" / "corruption.json").read_text())
    levels = parse_severities(severities)
    check_command(done, record, levels)
    assert [record["metrics"][f"gaussian_noise/error@{s}"] for s in levels] == pytest.approx(
        [WRONG[s] / 3 for s in levels])
    on_disk = ["gaussian_noise", "fog"] if corruptions == "all" else ["gaussian_noise"]
    assert record["config"]["corruptions"] == on_disk and record["metrics"]["num_images"] == 3
    for name in ("heatmap", "examples"):
        assert (tmp_path / "out" / f"corruption-{name}.png").stat().st_size > 5_000


def test_alexnet_normalizes_five_severities_only_and_the_command_says_why(tmp_path, small_labelled):
    root = make_imagenet_c(tmp_path / "data" / "ImageNet-C",
                           slices=[("gaussian_noise", s) for s in range(1, 6)]).parent
    torch.manual_seed(0)
    ckpt = save_checkpoint(create_model("gapnet:width=4", 1000), tmp_path / "imagenet1k.pth", method="cutmix")
    done = run_command(tmp_path, "corruption", "--ckpt", str(ckpt), "--data", "imagenet-c", "--data-root", str(root),
                       "--corruptions", "gaussian_noise", "--severities", "3-5", "--output-dir", "out",
                       "--examples", "0")
    record = json.loads((tmp_path / "out" / "corruption.json").read_text())
    assert "mce" not in record["metrics"] and record["config"]["reference"] is None
    assert record["metrics"]["mean_corruption_error"] == pytest.approx(expected_summaries(record)[
        "mean_corruption_error"])
    assert ("mce over severities 3-5: not reported: AlexNet's published ImageNet-C errors are means over all 5 "
            "severities, so they cannot normalize CE over severities 3-5") in done.stdout
    _, model = small_labelled
    with pytest.raises(UserError, match="AlexNet's published .* cannot normalize CE over severity 2"):
        evaluate_corruption(model, small_labelled[0], corruptions="noise", severities=[2], reference="alexnet")


SUBSETS = [[3], [3, 4, 5], [1, 3, 5], [1, 2, 3, 4, 5]]  # one severity, a run, a non-contiguous set, all five


def test_report_tables_and_figures_at_any_severities(tmp_path, fitted_and_untrained):
    store, dataset, errors = ResultStore(tmp_path / "results"), create_dataset("synthetic", "test"), {}
    for path in fitted_and_untrained:
        model, info = load_checkpoint(path)
        subject = Subject(model, dataset,
                          RunSettings(model_info={"checkpoint_sha256": info.file_sha256, "method": info.method, "arch": info.arch}, limit=8, progress=False))
        for levels in SUBSETS:
            record, _ = run_job(store, "corruption", subject, {"corruptions": "noise,fog", "severities": levels,
                                                               "table": "imagenet"})
            errors[info.method, tuple(levels)] = record.results[0].curves["errors"]
    done = run_command(tmp_path, "report", "results", "--format", "md,csv", "--no-intervals", "--out", "report")
    assert f"figures: {len(SUBSETS)} in" in done.stdout
    cells = pd.read_csv(tmp_path / "report" / "report.csv").set_index(["metric", "method"])["value"]
    markdown = (tmp_path / "report" / "report.md").read_text()
    for levels in SUBSETS:
        scope = summaries.severity_scope(levels)
        for method in ("baseline", "cutmix"):
            table = np.array([errors[method, tuple(levels)][c] for c in list_corruptions("noise,fog")])  # 4 x |S|
            assert cells[f"mean corruption error (4 corruptions){scope}", method] == pytest.approx(100 * table.mean())
            assert cells[f"noise (3): mean error{scope}", method] == pytest.approx(100 * table[:3].mean())
            baseline = np.array([errors["baseline", tuple(levels)][c] for c in list_corruptions("noise,fog")])
            assert cells[f"mCE relative to baseline (4 corruptions){scope}", method] == pytest.approx(
                100 * np.mean(table.sum(axis=1) / baseline.sum(axis=1)))
        if scope:
            assert f"Top-1 error (%) per corruption and severity ({scope.removeprefix(' over ')} only)" in markdown
    for figure in (tmp_path / "report" / "figures").glob("corruption-*.png"):
        assert figure.stat().st_size > 5_000


def test_the_report_says_why_an_mce_is_undefined(tmp_path, fitted_and_untrained):
    """The fitted model as the baseline makes no error under gaussian noise at severity 1: no CE."""
    store = ResultStore(tmp_path)
    for path, method in zip(fitted_and_untrained, ("baseline", "cutmix")):
        model, info = load_checkpoint(path)
        subject = Subject(model, create_dataset("synthetic", "test"),
                          RunSettings(model_info={"checkpoint_sha256": info.file_sha256, "method": method, "arch": info.arch}, limit=8, progress=False))
        record, _ = run_job(store, "corruption", subject, {"corruptions": "gaussian_noise", "severities": [1],
                                                           "table": "imagenet"})
    row = build_tables(store.records(), views(), intervals=False)[0].rows[-1]
    assert row.label == ("mCE relative to baseline (1 corruptions) over severity 1: not reported, CE of "
                         "'gaussian_noise' is undefined: reference baseline's error under it is 0")
    assert all(np.isnan(cell.value) for cell in row.cells.values())


def test_a_released_set_is_the_corruption_analysis_with_table_released(tmp_path, capsys):
    """The command, a study and Python reach the same analysis: the study finds the command's
    record (same job: table released, no seed, every slice file and the clean set by identity),
    and a released set without table = "released" (or that table on other data) is one line."""
    from cutmix_eval.analyses import run_analysis
    from cutmix_eval.study import load_study, run_study

    torch.manual_seed(0)
    ckpt = save_checkpoint(create_model("gapnet:width=4", 10), tmp_path / "m.pth", method="cutmix")
    make_cifar_c(tmp_path / "data", corruptions=("gaussian_noise", "fog"))
    argv = ["--ckpt", str(ckpt), "--data", "cifar10-c", "--data-root", str(tmp_path / "data"), "--severities", "1,3",
            "--results", str(tmp_path / "study" / "results"), "--output-dir", str(tmp_path / "out"), "--examples", "0"]
    assert main(["corruption", *argv]) == 0 and "recorded in" in capsys.readouterr().out
    study = tmp_path / "study.toml"
    study.write_text(f'[study]\nname = "released"\noutput = "{tmp_path / "study"}"\ndata_root = "{tmp_path / "data"}"\n'
                     f'[[checkpoints]]\npath = "{ckpt}"\nlabel = "cutmix"\n[[datasets]]\nname = "cifar10-c"\n'
                     '[analyses.corruption]\ntable = "released"\nseverities = [1, 3]\n')
    lines = []
    run_study(load_study(study), progress=False, log=lines.append)
    assert any("reused" in line for line in lines), lines
    assert main(["analyze", "corruption", "--table", "released", *argv[:-4]]) == 0  # the generic command: the same job
    assert "reused the recorded" in capsys.readouterr().out
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "study" / "results").glob("corruption-*.json")]
    assert record["job"]["options"]["table"] == "released" and record["job"]["options"]["seed"] is None
    assert set(record["job"]["inputs"]) == {"released", "clean"} and record["job"]["inputs"]["clean"] is None

    model, _ = load_checkpoint(ckpt)
    first = create_dataset("cifar10-c", "test", root=tmp_path / "data")  # the first slice stands for the release
    [result] = run_analysis("corruption", model, first, data_root=str(tmp_path / "data"), table="released",
                            severities="1,3", settings=RunSettings(device="cpu", progress=False))
    assert result.metrics["gaussian_noise/error@3"] == pytest.approx(record["results"][0]["metrics"][
        "gaussian_noise/error@3"])
    with pytest.raises(UserError, match='released corrupted set: evaluate its own files with table = "released"'):
        run_analysis("corruption", model, first, data_root=str(tmp_path / "data"), settings=RunSettings(progress=False))
    with pytest.raises(UserError, match='table = "released" reads a released corrupted set'):
        run_analysis("corruption", model, create_dataset("synthetic", "test", num_samples=4), table="released",
                     settings=RunSettings(progress=False))
