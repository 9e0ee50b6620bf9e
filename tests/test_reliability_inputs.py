"""Fault injection through the real command line: untrusted and broken files, bad numbers,
empty inputs, unwritable folders and awkward paths.

The library-level error paths are tested with their modules (test_checkpoints, test_data_loaders,
test_data_corrupted, test_store, test_metrics_*); here each fault goes through
``cutmix_eval.cli.main`` as a user meets it. A user error ends with exit status 2 and exactly one
stderr line, ``cutmix-eval: error: ...``, naming the offending file or option and the fix, no
traceback, and nothing written where records or reports go.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cutmix_eval.cli import main
from cutmix_eval.data import create_dataset
from cutmix_eval.errors import UserError
from cutmix_eval.models import create_model
from cutmix_eval.models.checkpoint import load_checkpoint, save_checkpoint
from cutmix_eval.report.store import ResultStore
from conftest import CLI, cli_env, tiny_checkpoint
from test_data_corrupted import make_cifar_c

SYNTHETIC = ["--data", "synthetic", "--limit", "8", "--batch-size", "8"]


def cli(capsys, *argv) -> tuple[int, str, str]:
    """``main(argv)`` in this process: ``(exit status, stdout, stderr)``."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(outcome: tuple[int, str, str], *parts: str, warned: tuple[Path, ...] = ()) -> str:
    """Exit status 2, one stderr line ``cutmix-eval: error: ...`` holding every part (after one
    warning line per file of ``warned``, naming it), no traceback; returns the error line."""
    code, out, err = outcome
    *warnings, line = err.strip().splitlines() or [""]
    assert code == 2 and len(warnings) == len(warned), (code, err)
    assert all(w.startswith("cutmix-eval: warning: ") and str(f) in w for w, f in zip(warnings, sorted(warned)))
    assert line.startswith("cutmix-eval: error: ") and "Traceback" not in out + err
    for part in parts:
        assert part in line, (part, line)
    return line


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny 10-class gapnet checkpoints for the embedded dataset: ``good``; ``nan`` (NaN
    classifier weights: every logit and every class activation map is NaN); ``flat`` (zero
    classifier weights: every class activation map is constant)."""
    root = tmp_path_factory.mktemp("models")
    paths = {"good": tiny_checkpoint(root / "good.pth")}
    model, _ = load_checkpoint(paths["good"])
    with torch.no_grad():
        model.net.fc.weight.fill_(float("nan"))
        paths["nan"] = save_checkpoint(model, root / "nan.pth")
        model.net.fc.weight.zero_()
        paths["flat"] = save_checkpoint(model, root / "flat.pth")
    return paths


# ------------------------------------------------------------------------ untrusted checkpoints

class WritesMarker:
    """Unpickling this writes ``marker``: the code a checkpoint can carry."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return Path.write_text, (Path(self.marker), "pwned")


def booby_trapped(good: Path, folder: Path) -> tuple[Path, Path]:
    """``(checkpoint, marker)``: ``good``'s contents plus an object that writes ``marker`` when
    unpickled; with full unpickling it loads as the good model."""
    contents = torch.load(good, weights_only=True)
    contents["note"] = WritesMarker(folder / "pwned")
    torch.save(contents, folder / "evil.pth")
    return folder / "evil.pth", folder / "pwned"


def study_file(folder: Path, checkpoint: Path, study: str = "", checkpoint_keys: str = "",
               dataset_keys: str = "limit = 8", analysis_keys: str = "") -> Path:
    """``folder/study.toml``: one checkpoint, the embedded dataset, classification; records in
    ``folder/out/results``; each ``*_keys`` is added to its table."""
    path = folder / "study.toml"
    path.write_text(f'[study]\noutput = "out"\n{study}\n[[checkpoints]]\npath = "{checkpoint}"\nmethod = "cutmix"\n'
                    f'{checkpoint_keys}\n[[datasets]]\nname = "synthetic"\n{dataset_keys}\n'
                    f'[analyses.classification]\n{analysis_keys}\n')
    return path


@pytest.mark.parametrize("command", ["evaluate", "localize", "ood", "calibration", "inspect", "study"])
def test_code_carrying_checkpoint_is_refused_by_every_loading_command(capsys, tmp_path, models, command):
    evil, marker = booby_trapped(models["good"], tmp_path)
    argv = {"inspect": ["inspect", "--ckpt", evil], "study": ["study", study_file(tmp_path, evil)],
            "ood": ["ood", "--ckpt", evil, "--in", "synthetic", "--out", "uniform", "--limit", "8",
                    "--results", tmp_path / "out" / "results"]}.get(
        command, [command, "--ckpt", evil, *SYNTHETIC, "--results", tmp_path / "out" / "results"])
    fix = "`trust = true` in a study file" if command == "study" else "--trust-checkpoint"
    assert_user_error(cli(capsys, *argv), f"checkpoint {evil}", "could run code", "refused", fix)
    assert not marker.exists() and files_under(tmp_path / "out") == []


def test_the_payload_never_runs_in_a_real_process_and_trust_is_the_only_way_in(tmp_path, models, capsys):
    evil, marker = booby_trapped(models["good"], tmp_path)
    done = subprocess.run([*CLI, "evaluate", "--ckpt", str(evil), *map(str, SYNTHETIC), "--results",
                           str(tmp_path / "results")], capture_output=True, text=True, env=cli_env())
    assert_user_error((done.returncode, done.stdout, done.stderr), str(evil), "--trust-checkpoint")
    assert not marker.exists() and files_under(tmp_path / "results") == []
    with pytest.raises(SystemExit):
        main(["inspect", "--help"])
    assert "runs any code the file carries" in " ".join(capsys.readouterr().out.split())
    code, out, err = cli(capsys, "inspect", "--ckpt", evil, "--trust-checkpoint")
    assert code == 0 and marker.read_text() == "pwned"  # the payload was live: only trust let it run
    assert f"loading {evil} with full unpickling" in err and "gapnet" in out
    marker.unlink()
    assert cli(capsys, "study", study_file(tmp_path, evil, checkpoint_keys="trust = true"))[0] == 0 and marker.exists()


@pytest.mark.parametrize("variant", [".cudatag", ".cudatag_legacy"])
def test_checkpoints_saved_on_a_gpu_evaluate_on_the_cpu(capsys, tmp_path, clovaai_dir, variant):
    """Tensors tagged with a CUDA device in the pickle load onto the CPU, with the plain file's numbers."""
    numbers = {}
    for name in ("", variant):
        code, out, _ = cli(capsys, "evaluate", "--ckpt", clovaai_dir / f"resnet_cifar10_d20{name}.pth.tar",
                           *SYNTHETIC, "--device", "cpu", "--results", tmp_path, "--json")
        assert code == 0
        numbers[name] = last_json(out)["metrics"]
    assert numbers[variant] == numbers[""]


# ------------------------------------------------------------------------ broken files

def _truncated(good: Path, folder: Path) -> Path:
    data = good.read_bytes()
    (folder / "half.pth").write_bytes(data[: len(data) // 2])
    return folder / "half.pth"


def _empty(good: Path, folder: Path) -> Path:
    (folder / "empty.pth").write_bytes(b"")
    return folder / "empty.pth"


def _html(good: Path, folder: Path) -> Path:
    (folder / "page.pth").write_text("<!DOCTYPE html><html><title>Sign in - Google Accounts</title></html>")
    return folder / "page.pth"


def _three_classes(good: Path, folder: Path) -> Path:
    return save_checkpoint(create_model("gapnet:width=4", 3), folder / "three.pth")


@pytest.mark.parametrize("make,extra,fix", [
    (_truncated, [], "truncated or corrupted"),
    (_empty, [], "is empty (0 bytes)"),
    (_html, [], "HTML page"),
    (lambda good, folder: good, ["--arch", "cifar_resnet20"], "does not fit architecture cifar_resnet20"),
    (_three_classes, [], "has 3 classes but 10"),
])
@pytest.mark.parametrize("command", ["evaluate", "localize"])
def test_broken_checkpoints_are_one_line_errors_and_record_nothing(capsys, tmp_path, models, make, extra, fix,
                                                                   command):
    ckpt = make(models["good"], tmp_path)
    outputs = ["--output-dir", tmp_path / "out"] if command == "localize" else []
    line = assert_user_error(cli(capsys, command, "--ckpt", ckpt, *extra, *SYNTHETIC, "--results", tmp_path / "res",
                                 *outputs), f"checkpoint {ckpt}", fix)
    assert any(hint in line for hint in ("again", "pass the right --arch", "use a checkpoint trained on"))
    assert files_under(tmp_path / "res") == files_under(tmp_path / "out") == []


def image_folder(root: Path) -> Path:
    """Two classes of three 40 x 40 PNGs each, the second image of class ``a`` not a PNG."""
    for label in ("a", "b"):
        for i in range(3):
            (root / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(root / label / f"{i}.png")
    (root / "a" / "1.png").write_bytes(b"this is not a PNG")
    return root / "a" / "1.png"


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_corrupt_image_stops_the_run_naming_the_file(capsys, tmp_path, workers):
    """The documented rule (docs/datasets.md): never skipped, one line naming the file, also when
    DataLoader worker processes decode the images."""
    bad = image_folder(tmp_path / "images")
    ckpt = save_checkpoint(create_model("gapnet:width=4", 2), tmp_path / "m.pth")
    assert_user_error(cli(capsys, "evaluate", "--ckpt", ckpt, "--data", "imagefolder", "--data-root",
                          tmp_path / "images", "--workers", workers, "--batch-size", "2", "--results",
                          tmp_path / "res"),
                      f"cannot decode image {bad}", "remove or replace the file")
    assert files_under(tmp_path / "res") == []


@pytest.mark.parametrize("damage,parts", [
    (lambda folder: np.save(folder / "fog.npy", np.zeros((15, 28, 28, 3), np.uint8)),
     ["fog.npy", "(15, 28, 28, 3)", "N x 32 x 32 x 3 uint8"]),
    (lambda folder: np.save(folder / "fog.npy", np.zeros((14, 32, 32, 3), np.uint8)),
     ["fog.npy", "(14, 32, 32, 3)", "N = 5 severities"]),
    (lambda folder: (folder / "labels.npy").unlink(), ["labels.npy", "CIFAR-10-C"]),
])
def test_released_corruption_files_of_the_wrong_shape_or_missing_labels(capsys, tmp_path, models, damage, parts):
    folder = make_cifar_c(tmp_path / "data", corruptions=("fog",))
    damage(folder)
    assert_user_error(cli(capsys, "corruption", "--ckpt", models["good"], "--data", "cifar10-c", "--data-root",
                          tmp_path / "data", "--results", tmp_path / "res", "--output-dir", tmp_path / "out"), *parts)
    assert files_under(tmp_path / "res") == files_under(tmp_path / "out") == []


def test_cifar_batch_without_labels_via_the_command_line(capsys, tmp_path, models):
    from test_data_loaders import make_cifar10, py2_pickle

    make_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(py2_pickle({"data": np.zeros((2, 3072), np.uint8)}))
    assert_user_error(cli(capsys, "evaluate", "--ckpt", models["good"], "--data", "cifar10", "--data-root", tmp_path,
                          "--results", tmp_path / "res"), str(batch), "'labels'")
    assert files_under(tmp_path / "res") == []


@pytest.fixture
def two_records(tmp_path, models, capsys) -> Path:
    """A results folder with a classification and a localization record of the good model."""
    results = ["--results", tmp_path / "results"]
    assert cli(capsys, "evaluate", "--ckpt", models["good"], *SYNTHETIC, *results)[0] == 0
    assert cli(capsys, "localize", "--ckpt", models["good"], *SYNTHETIC, *results, "--output-dir",
               tmp_path / "loc")[0] == 0
    return tmp_path / "results"


def test_report_warns_about_a_damaged_record_and_renders_the_others(capsys, two_records, tmp_path):
    damaged = next(two_records.glob("localization-*.json"))
    damaged.write_text(damaged.read_text()[:200])
    (two_records / "notes.json").mkdir()  # a folder that looks like a record file is ignored
    code, out, err = cli(capsys, "report", two_records, "--out", tmp_path / "report")
    [line] = err.strip().splitlines()
    assert code == 0 and line.startswith(f"cutmix-eval: warning: record {damaged}") and line.endswith("skipped")
    report = (tmp_path / "report" / "report.md").read_text()
    assert "Classification and calibration" in report and "localization" not in report.lower()
    broken = next(two_records.glob("classification-*.json"))
    broken.write_text("{")
    assert_user_error(cli(capsys, "report", two_records, "--out", tmp_path / "again"), "no records", str(two_records),
                      warned=(broken, damaged))
    assert files_under(tmp_path / "again") == []


def test_a_damaged_record_is_warned_about_and_recomputed(capsys, two_records, models):
    damaged = next(two_records.glob("classification-*.json"))
    damaged.write_text(damaged.read_text()[:100])
    code, out, err = cli(capsys, "evaluate", "--ckpt", models["good"], *SYNTHETIC, "--results", two_records)
    assert code == 0 and f"recorded in {damaged}" in out
    [line] = err.strip().splitlines()
    assert line.startswith(f"cutmix-eval: warning: record {damaged} is unreadable") and line.endswith("recomputed")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(ResultStore(two_records).records()) == 2


# ------------------------------------------------------------------------ numerics

def test_nan_logits_count_as_wrong_in_evaluate_and_are_refused_where_undefined(capsys, tmp_path, models):
    """Classification: a non-finite row is a wrong prediction, counted and warned about (exit 0);
    calibration, OOD scores and attack gradients of such rows mean nothing: one-line error with
    the count; the
    shared pass of ``evaluate --all`` records nothing then."""
    results = ["--results", tmp_path / "res"]
    code, out, _ = cli(capsys, "evaluate", "--ckpt", models["nan"], *SYNTHETIC, *results, "--json")
    metrics = last_json(out)["metrics"]
    assert code == 0 and metrics["num_nonfinite_logits"] == 8 and metrics["top1_error"] == 1.0
    assert "warning: 8 images got NaN/inf logits (counted as wrong; calibration skipped)" in out
    assert_user_error(cli(capsys, "calibration", "--ckpt", models["nan"], *SYNTHETIC, *results, "--output-dir",
                          tmp_path / "cal"), f"checkpoint {models['nan']}", "8 of 8 images", "--mean/--std")
    assert_user_error(cli(capsys, "ood", "--ckpt", models["nan"], "--in", "synthetic", "--limit", "8", "--out",
                          "uniform", "--num-noise", "8", *results, "--output-dir", tmp_path / "ood"),
                      "NaN or infinite logits for 8 of 8 images", "check the checkpoint")
    assert_user_error(cli(capsys, "adversarial", "--ckpt", models["nan"], *SYNTHETIC, *results, "--output-dir",
                          tmp_path / "adv"), "NaN or infinite logits for 8 of 8 images", "--mean/--std")
    assert files_under(tmp_path / "cal") == files_under(tmp_path / "ood") == files_under(tmp_path / "adv") == []
    assert_user_error(cli(capsys, "evaluate", "--ckpt", models["nan"], *SYNTHETIC, "--all", "--out-sets", "uniform",
                          "--results", tmp_path / "all"), "NaN or infinite logits for 8 of 8")
    assert files_under(tmp_path / "all") == []


def test_nan_and_constant_maps_localize_as_no_box(capsys, tmp_path, models):
    """Documented (README, Localization): a NaN or constant map becomes all zeros, so no pixel
    is foreground at any threshold and the box is wsolevaluation's empty ``[0, 0, 0, 0]``: such
    images count as not localized (IoU about 0), never as an error."""
    outcomes = {}
    for name in ("flat", "nan"):
        code, out, _ = cli(capsys, "localize", "--ckpt", models[name], *SYNTHETIC, "--results", tmp_path / name,
                           "--output-dir", tmp_path / f"{name}-out", "--json")
        assert code == 0
        outcomes[name] = last_json(out)["metrics"]
        record = ResultStore(tmp_path / name).records()[0].results[0]
        assert np.all(record.per_sample["best_iou_all"] < 0.01)
    assert outcomes["flat"]["maxboxacc_v2"] == outcomes["flat"]["maxboxacc"] == 0.0
    assert outcomes["nan"].pop("top1_error") == 1.0  # NaN logits: every prediction wrong
    assert outcomes["nan"] == {k: v for k, v in outcomes["flat"].items() if k != "top1_error"}


@pytest.mark.parametrize("argv,parts", [
    (["--limit", "0"], ["--limit must be at least 1, not 0", "leave it out"]),
    (["--limit", "-3"], ["--limit must be at least 1, not -3"]),
    (["--batch-size", "0"], ["--batch-size must be at least 1, not 0"]),
    (["--workers", "-1"], ["--workers must be at least 0, not -1"]),
])
def test_counts_out_of_range_are_refused_before_any_work(capsys, tmp_path, models, argv, parts):
    """``--limit 0`` used to mean "every image" and ``--batch-size 0`` ended in a traceback."""
    assert_user_error(cli(capsys, "evaluate", "--ckpt", models["good"], "--data", "synthetic", *argv,
                          "--results", tmp_path / "res"), *parts)
    assert files_under(tmp_path / "res") == []


@pytest.mark.parametrize("keys,parts", [
    ({"dataset_keys": "limit = 0"}, ["datasets[0]: `limit` must be a whole number of at least 1, not 0",
                                     "leave it out"]),
    ({"analysis_keys": "limit = -1"}, ["[analyses.classification]: `limit`", "not -1"]),
    ({"study": "batch_size = 0"}, ["[study]: `batch_size` must be a whole number of at least 1, not 0"]),
    ({"study": 'workers = "two"'}, ["[study]: `workers` must be a whole number of at least 0, not 'two'"]),
])
def test_study_counts_out_of_range_are_refused_before_any_work(capsys, tmp_path, models, keys, parts):
    path = study_file(tmp_path, models["good"], **keys)
    assert_user_error(cli(capsys, "study", path), str(path), *parts)
    assert files_under(tmp_path / "out") == []


def test_empty_folders_are_one_line_errors(capsys, tmp_path, models):
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "ood").mkdir()
    ckpt = save_checkpoint(create_model("gapnet:width=4", 1), tmp_path / "m1.pth")
    assert_user_error(cli(capsys, "evaluate", "--ckpt", ckpt, "--data", "imagefolder", "--data-root",
                          tmp_path / "data", "--results", tmp_path / "res"), "no image files", str(tmp_path / "data"))
    assert_user_error(cli(capsys, "ood", "--ckpt", models["good"], "--in", "synthetic", "--limit", "8", "--out",
                          tmp_path / "ood", "--results", tmp_path / "res"), "no image files", str(tmp_path / "ood"))
    np.save(tmp_path / "none.npy", np.zeros(0))
    np.save(tmp_path / "some.npy", np.ones(3))
    assert_user_error(cli(capsys, "metrics", "ood", "--id-scores", tmp_path / "some.npy", "--ood-scores",
                          tmp_path / "none.npy"), f"OOD scores {tmp_path / 'none.npy'}", "non-empty", "(0,)")
    assert files_under(tmp_path / "res") == []


def test_batch_size_one_gives_the_numbers_of_batch_size_eight(capsys, tmp_path, models):
    records = {}
    for batch in ("1", "8"):
        argv = ["evaluate", "--ckpt", models["good"], "--data", "synthetic", "--limit", "8", "--batch-size", batch,
                "--all", "--out-sets", "uniform", "--results", tmp_path / batch]
        assert cli(capsys, *argv)[0] == 0
        records[batch] = {r.analysis: r.results for r in ResultStore(tmp_path / batch).records()}
    assert sorted(records["1"]) == sorted(records["8"]) == ["classification", "localization", "ood"]
    for analysis, results in records["1"].items():
        for one, eight in zip(results, records["8"][analysis], strict=True):
            for name, value in one.metrics.items():
                assert value == pytest.approx(eight.metrics[name], abs=1e-5), (analysis, name)
            for name, array in one.per_sample.items():
                np.testing.assert_allclose(array, eight.per_sample[name], atol=1e-5, err_msg=f"{analysis} {name}")


def test_images_too_small_for_the_network(capsys, tmp_path):
    """Documented (Classifier.features): images are never resized to the model's input size;
    the CNNs here run at any size, a net that cannot is a one-line error naming both sizes."""
    with torch.no_grad():
        logits = create_model("cifar_resnet20", 10).eval()(torch.rand(2, 3, 8, 8))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    with pytest.raises(UserError, match=r"torchvision/googlenet cannot run on 8 x 8 images .*224 x 224") as err:
        create_model("torchvision/googlenet", 10).eval()(torch.rand(2, 3, 8, 8))
    assert "\n" not in str(err.value)
    vit = save_checkpoint(create_model("timm/vit_tiny_patch16_224:depth=1", 10), tmp_path / "vit.pth")
    assert_user_error(cli(capsys, "evaluate", "--ckpt", vit, *SYNTHETIC, "--results", tmp_path / "res"),
                      "timm/vit_tiny_patch16_224 cannot run on 64 x 64 images", "built for 224 x 224")
    assert files_under(tmp_path / "res") == []


# ------------------------------------------------------------------------ disk and paths

def blocked(tmp_path: Path, how: str) -> Path:
    """A folder nothing can be written into: under a plain file (for everyone, root included),
    or read-only (0o500; root ignores permissions, so that case is skipped for root)."""
    if how == "under a file":
        (tmp_path / "plain-file").write_text("")
        return tmp_path / "plain-file" / "sub"
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o500)
    return folder / "sub"


@pytest.mark.parametrize("how", ["under a file", "read-only"])
@pytest.mark.parametrize("option,fix", [("--results", "choose another --results folder"),
                                        ("--output-dir", "choose another --output-dir folder"),
                                        ("report --out", "choose another output folder")])
def test_an_unwritable_output_folder_is_a_one_line_error_before_any_work(capsys, tmp_path, models, how, option,
                                                                         fix):
    folder = blocked(tmp_path, how)
    if option == "report --out":
        assert cli(capsys, "evaluate", "--ckpt", models["good"], *SYNTHETIC, "--results", tmp_path / "results")[0] == 0
        argv = ["report", tmp_path / "results", "--out", folder]
    else:
        folders = {"--results": tmp_path / "results", "--output-dir": tmp_path / "loc", option: folder}
        argv = ["localize", "--ckpt", models["good"], *SYNTHETIC, *[a for item in folders.items() for a in item]]
    assert_user_error(cli(capsys, *argv), "cannot write", str(folder.parent), fix)
    assert files_under(tmp_path / "loc") == [] and not list((tmp_path / "results").glob("localization-*"))
    assert not list(tmp_path.rglob("report.*"))


def test_a_full_disk_is_a_one_line_error_and_leaves_no_partial_file(capsys, tmp_path, models, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    create_dataset("synthetic", "test")  # its cache written now (a full disk only costs the cache a warning)
    monkeypatch.setattr("cutmix_eval.fileio.os.fsync", full)
    assert_user_error(cli(capsys, "evaluate", "--ckpt", models["good"], *SYNTHETIC, "--results", tmp_path / "res"),
                      f"cannot write {tmp_path / 'res'}", "No space left on device", "free disk space")
    assert list((tmp_path / "res").iterdir()) == []  # not even a temporary file


def test_spaces_and_non_ascii_in_every_path(capsys, tmp_path, models):
    base = tmp_path / "run ü 1"
    ckpt = tiny_checkpoint(base / "modèle final.pth")
    results, report = base / "résultats dir", base / "rapport ü"
    assert cli(capsys, "evaluate", "--ckpt", ckpt, *SYNTHETIC, "--results", results)[0] == 0
    assert cli(capsys, "localize", "--ckpt", ckpt, *SYNTHETIC, "--results", results, "--output-dir",
               base / "loc ü")[0] == 0
    code, out, _ = cli(capsys, "report", results, "--out", report, "--json")
    assert code == 0 and not last_json(out)["reused"]
    assert [r.analysis for r in ResultStore(results).records()] == ["classification", "localization"]
    assert (base / "loc ü" / "examples.png").stat().st_size > 0
    assert all((report / f"report.{f}").stat().st_size > 500 for f in ("md", "tex", "csv", "html"))
    record = json.loads(next(results.glob("classification-*.json")).read_text(encoding="utf-8"))
    assert record["results"][0]["model"]["checkpoint"] == str(ckpt)


def test_report_twice_and_into_the_results_folder_itself(capsys, two_records, tmp_path):
    """A second report is a no-op; a report written into the results folder leaves the records
    readable and is itself a no-op the second time; a damaged manifest only costs a re-render."""
    for out in (tmp_path / "report", two_records):
        states = [last_json(cli(capsys, "report", two_records, "--out", out, "--json")[1])["reused"]
                  for _ in range(2)]
        assert states == [False, True], out
    code, _, err = cli(capsys, "report", two_records, "--out", two_records)
    assert code == 0 and err == ""  # no warning: the manifest is not mistaken for a record
    assert len(ResultStore(two_records).records()) == 2 and (two_records / "report.md").exists()
    (two_records / "report-manifest.json").write_text("{ damaged")
    code, out, err = cli(capsys, "report", two_records, "--out", two_records, "--json")
    assert code == 0 and err == "" and last_json(out)["reused"] is False
