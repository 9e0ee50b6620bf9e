"""`evaluate --all`: one shared pass gives the records the individual analyses give."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cutmix_eval.analyses import ANALYSES, Subject, analysis_options, run_analyses, run_job
from cutmix_eval.analyses.localization import boxes_note
from cutmix_eval.cli import main
from cutmix_eval.cli.evaluate import full_records
from cutmix_eval.data import create_dataset
from cutmix_eval.models import create_model
from cutmix_eval.models.checkpoint import save_checkpoint
from cutmix_eval.report.store import ResultStore
from cutmix_eval.settings import RunSettings

OOD = {"ood": {"sets": ["uniform", "gaussian"]}}  # noise sets: generated per image, nothing to build
INFO = {"checkpoint_sha256": "0" * 64, "method": "baseline", "arch": "gapnet:width=8"}
SHARED = ["classification", "localization", "ood"]  # the registry's analyses that can share the clean pass
ALL = {"classification": None, "localization": None, "ood": OOD["ood"]}


@pytest.fixture(scope="module")
def data():
    return create_dataset("synthetic", "test", num_samples=48)


def subject(model, dataset, **kwargs):
    return Subject(model, dataset, RunSettings(model_info=dict(INFO), batch_size=16, progress=False), **kwargs)


def count_images(monkeypatch, model) -> list[int]:
    """Patch ``model.features`` (every forward, plain or ``forward_all``, goes through it) to
    record the batch sizes it sees."""
    seen, features = [], model.features

    def counted(x):
        seen.append(int(x.shape[0]))
        return features(x)

    monkeypatch.setattr(model, "features", counted)
    return seen


def assert_same_results(ours, theirs):
    assert [r.evaluator for r in ours] == [r.evaluator for r in theirs]
    for a, b in zip(ours, theirs):
        assert a.metrics.keys() == b.metrics.keys()
        for key, value in a.metrics.items():
            assert value == pytest.approx(b.metrics[key], abs=1e-6, nan_ok=True), key
        assert a.per_sample.keys() == b.per_sample.keys()
        for key, value in a.per_sample.items():
            np.testing.assert_array_equal(value, b.per_sample[key], err_msg=key)
        assert a.dataset == b.dataset and a.model == b.model
        assert a.artifacts.keys() == b.artifacts.keys()
        for key, value in a.artifacts.items():
            np.testing.assert_array_equal(value, b.artifacts[key], err_msg=key)
        curves = [json.dumps(r.summary()["curves"], sort_keys=True, default=str) for r in (a, b)]
        assert curves[0] == curves[1]
        assert {k: v for k, v in a.config.items() if k != "batch_size"} == \
            {k: v for k, v in b.config.items() if k != "batch_size"}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, data, model):
    """``evaluate --all``'s records of ``model`` on ``data`` (noise OOD sets) in a fresh store."""
    folder = tmp_path_factory.mktemp("all")
    return folder, full_records(ResultStore(folder), subject(model, data), OOD)


def test_all_records_equal_the_individual_analyses(tmp_path, data, model, recorded):
    folder, (records, notes) = recorded
    assert [n for n, a in ANALYSES.items() if a.shared] == SHARED
    assert list(records) == SHARED and notes == {}
    alone = ResultStore(tmp_path / "alone")
    for name, (record, reused) in records.items():
        theirs, their_reused = run_job(alone, name, subject(model, data), OOD.get(name))
        assert not reused and not their_reused
        assert record.key == theirs.key and record.path.name == theirs.path.name  # same job, same file name
        assert_same_results(record.results, theirs.results)
        stored = ResultStore(folder).load(record.job)  # what was written reads back the same
        assert_same_results(stored.results, theirs.results)
    assert records["classification"][0].job["options"] == analysis_options("classification")
    assert records["localization"][0].job["options"] == analysis_options("localization")
    assert records["ood"][0].job["options"]["sets"] == ("uniform", "gaussian")
    assert len(records["classification"][0].results) == 2  # classification, calibration
    assert records["localization"][0].results[0].artifacts["examples/image"].shape == (16, 3, 64, 64)


def test_the_model_runs_once_per_id_image(monkeypatch, data, model):
    seen = count_images(monkeypatch, model)
    results = run_analyses(model, data, ALL, settings=RunSettings(batch_size=16, progress=False))
    assert list(results) == SHARED and results["classification"][0].metrics["num_images"] == 48
    # the ID images once (CAM maps and localization included), then each of the two OOD sets once
    assert seen == [16] * 3 + [16] * 3 * 2


def test_recorded_analyses_are_reused_and_only_missing_ones_computed(tmp_path, monkeypatch, data, model, recorded):
    shutil.copytree(recorded[0], tmp_path / "store")
    store = ResultStore(tmp_path / "store")
    first = {name: (store.load(record.job), False) for name, (record, _) in recorded[1][0].items()}
    seen = count_images(monkeypatch, model)
    again, _ = full_records(store, subject(model, data), OOD)
    assert all(reused for _, reused in again.values()) and seen == []
    assert {n: r.key for n, (r, _) in again.items()} == {n: r.key for n, (r, _) in first.items()}
    first["localization"][0].path.unlink()  # one record missing: only it is computed, in one ID pass
    again, _ = full_records(store, subject(model, data), OOD)
    assert [n for n, (_, reused) in again.items() if not reused] == ["localization"] and sum(seen) == 48
    assert_same_results(again["localization"][0].results, first["localization"][0].results)
    seen.clear()
    forced, _ = full_records(store, subject(model, data), OOD, force=True)
    assert not any(reused for _, reused in forced.values()) and sum(seen) == 3 * 48


def test_a_dataset_without_boxes_skips_localization_with_a_note(tmp_path, capsys):
    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(3):
            colour = (10 + 80 * i, 20, 30 if cls == "a" else 200)
            Image.new("RGB", (40, 40), colour).save(tmp_path / "data" / cls / f"{i}.png")
    dataset = create_dataset("imagefolder", "test", root=tmp_path / "data", image_size=32)
    model = create_model("gapnet:width=4", 2).eval()
    assert "no bounding boxes" in boxes_note(dataset)
    ckpt = save_checkpoint(model, tmp_path / "m.pth", method="baseline")
    code = main(["evaluate", "--ckpt", str(ckpt), "--data", "imagefolder", "--data-root", str(tmp_path / "data"),
                 "--all", "--out-sets", "uniform", "--results", str(tmp_path / "results"), "--json"])
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and "note: localization skipped" in out and "no bounding boxes" in out
    assert set(summary["records"]) == {"classification", "ood"} and "localization" in summary["notes"]


def test_cli_all_json_and_reuse_by_the_individual_commands(tmp_path, capsys):
    ckpt = save_checkpoint(create_model("gapnet:width=4", 10, input_size=(3, 64, 64)), tmp_path / "m.pth",
                           method="cutmix", dataset="synthetic")
    argv = ["--ckpt", str(ckpt), "--data", "synthetic", "--limit", "24", "--batch-size", "16",
            "--results", str(tmp_path / "results")]
    code = main(["evaluate", *argv, "--all", "--out-sets", "uniform,gaussian", "--json"])
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and set(summary["records"]) == set(SHARED) and not any(summary["reused"].values())
    assert summary["classification"]["metrics"]["num_images"] == 24 and "calibration" in summary
    assert set(summary["ood"]) == {"msp"} and "localization" in summary
    assert "top-1 err" in out and "AUROC" in out and "maxboxacc_v2" in out
    code = main(["evaluate", *argv, "--all", "--out-sets", "uniform", "gaussian", "--json"])
    out = capsys.readouterr().out
    assert code == 0 and all(json.loads(out.strip().splitlines()[-1])["reused"].values())
    code = main(["localize", *argv, "--output-dir", str(tmp_path / "loc")])
    assert code == 0 and "reused the recorded" in capsys.readouterr().out
    code = main(["evaluate", *argv])
    assert code == 0 and "reused the recorded" in capsys.readouterr().out
    code = main(["evaluate", *argv, "--out-sets", "uniform"])
    assert code == 2 and "--out-sets goes with --all" in capsys.readouterr().err


def test_unknown_options_are_refused(data, model):
    from cutmix_eval.errors import UserError

    with pytest.raises(UserError, match="no option"):
        run_analyses(model, data, {"localization": {"cams": "cam"}}, settings=RunSettings(progress=False))
    with pytest.raises(UserError, match="unknown analysis 'ocllusion'; did you mean 'occlusion'"):
        run_analyses(model, data, {"ocllusion": None}, settings=RunSettings(progress=False))
    assert boxes_note(data) is None


class FlattenedPixels(torch.nn.Module):
    """8 x 8 pooled pixels as the "feature map", flattened (not average-pooled) into a linear head."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 8 * 8, 10)

    def forward_features(self, x):
        return torch.nn.functional.avg_pool2d(x, 8)

    def forward_head(self, fmap, pre_logits=False):
        return fmap.flatten(1) if pre_logits else self.fc(fmap.flatten(1))

    def get_classifier(self):
        return self.fc


def test_a_model_native_cam_cannot_explain_skips_localization_with_a_note(data):
    from cutmix_eval.errors import UserError
    from cutmix_eval.models.classifier import Classifier

    model = Classifier(FlattenedPixels(), arch="flattened-pixels", num_classes=10, mean=(0.5,) * 3, std=(0.25,) * 3,
                       input_size=(3, 64, 64)).eval()
    notes = {}
    results = run_analyses(model, data, {"classification": None, "localization": None}, notes=notes,
                           settings=RunSettings(batch_size=16, progress=False))
    assert list(results) == ["classification"] and "native CAM needs" in notes["localization"]
    with pytest.raises(UserError, match="native CAM needs"):  # without notes: computed alone, failing as alone
        run_analyses(model, data, {"classification": None, "localization": None},
                     settings=RunSettings(batch_size=16, progress=False))


@pytest.mark.slow
def test_all_under_torchrun_writes_the_records_of_one_process(tmp_path):
    """Two gloo processes (the ID set and each OOD set sharded, arrays gathered in rank order)
    write the records one process writes."""
    import os
    import subprocess
    import sys

    torch.manual_seed(3)
    ckpt = save_checkpoint(create_model("gapnet:width=4", 10, input_size=(3, 64, 64)), tmp_path / "m.pth",
                           method="cutmix", dataset="synthetic")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = ["-m", "cutmix_eval", "evaluate", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "21",
            "--batch-size", "8", "--all", "--out-sets", "uniform", "photos", "--json"]
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    for name, prefix in (("one", []), ("two", torchrun)):
        done = subprocess.run([sys.executable, *prefix, *argv, "--results", str(tmp_path / name)], env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count("recorded in") == 3 and json.loads(done.stdout.strip().splitlines()[-1])["records"]
    one = {r.path.name: r for r in ResultStore(tmp_path / "one").records()}
    two = {r.path.name: r for r in ResultStore(tmp_path / "two").records()}
    assert sorted(one) == sorted(two) and len(one) == 3
    for file, single in one.items():
        double = two[file]
        assert double.job == single.job
        for a, b in zip(single.results, double.results):
            for key, value in a.metrics.items():
                assert b.metrics[key] == pytest.approx(value, abs=1e-5, nan_ok=True), (file, key)
            for key, value in a.per_sample.items():
                np.testing.assert_allclose(b.per_sample[key], value, atol=1e-5, err_msg=f"{file} {key}")
            for key, value in a.artifacts.items():
                if value.dtype.kind == "f":
                    np.testing.assert_allclose(b.artifacts[key], value, atol=2e-3, err_msg=key)
                else:
                    np.testing.assert_array_equal(b.artifacts[key], value, err_msg=key)
