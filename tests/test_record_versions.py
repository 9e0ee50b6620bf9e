"""Records carry versions (issue 17): the package versions and the analysis's version are in
every record, the analysis version is part of the job, so bumping it recomputes old records
(with a warning naming them), and a report keeps only the newest record of a checkpoint."""

import dataclasses
import json
from pathlib import Path

import pytest

from conftest import swap_analysis, tiny_checkpoint
from cutmix_eval import __version__, analyses
from cutmix_eval.cli import main
from cutmix_eval.report.comparison import current_records
from cutmix_eval.report.store import Record
from cutmix_eval.results import Result


def occlusion(tmp_path: Path, ckpt: Path, capsys) -> tuple[int, str, str]:
    code = main(["occlusion", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "8", "--fractions", "0,1",
                 "--examples", "0", "--results", str(tmp_path / "R"), "--output-dir", str(tmp_path / "o")])
    out, err = capsys.readouterr()
    return code, out, err


def bump(monkeypatch, name: str, version: int) -> None:
    swap_analysis(monkeypatch, dataclasses.replace(analyses.get_analysis(name), version=version))


def test_a_record_names_its_versions(tmp_path, capsys):
    assert occlusion(tmp_path, tiny_checkpoint(tmp_path / "m.pth"), capsys)[0] == 0
    [path] = (tmp_path / "R").glob("*.json")
    record = json.loads(path.read_text())
    assert record["job"]["version"] == analyses.get_analysis("occlusion").version
    versions = record["results"][0]["versions"]
    assert versions["cutmix_eval"] == __version__ and versions["analysis"] == str(record["job"]["version"])
    assert {"torch", "numpy", "python"} <= set(versions)
    assert set(Result("x", {}, {}, {}, {}).versions) >= {"cutmix_eval", "torch", "numpy"}  # from Python too


def test_a_new_analysis_version_recomputes_and_the_report_keeps_the_newest(tmp_path, capsys, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path / "m.pth")
    assert occlusion(tmp_path, ckpt, capsys)[0] == 0
    code, out, _ = occlusion(tmp_path, ckpt, capsys)
    assert code == 0 and "reused the recorded" in out
    [old] = (tmp_path / "R").glob("*.json")
    bump(monkeypatch, "occlusion", analyses.get_analysis("occlusion").version + 1)
    code, out, err = occlusion(tmp_path, ckpt, capsys)
    assert code == 0 and "recorded in" in out
    assert f"record {old} was computed by occlusion version 1; this is version 2, so it is computed again" in err
    assert len(list((tmp_path / "R").glob("*.json"))) == 2
    assert main(["report", str(tmp_path / "R"), "--format", "md", "--out", str(tmp_path / "rep")]) == 0
    _, err = capsys.readouterr()
    assert f"left out 1 superseded record(s) ({old.name})" in err
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "±" not in report and "seeds" not in report  # one checkpoint, not two seeds of it


def _record(name: str, sha: str, version: int | None, created: str) -> Record:
    job = {"analysis": "occlusion", "model": {"checkpoint_sha256": sha, "method": "cutmix", "loading": {}},
           "dataset": {"name": "synthetic", "split": "test", "limit": None, "identity": {"n": created}},
           "options": {"seed": 0}, "inputs": {}}
    if version is not None:
        job["version"] = version
    return Record(Path(name), job, name, [Result("occlusion", {}, {}, {}, {}, created=created)])


def test_current_records_keep_the_newest_of_each_checkpoint():
    records = [_record("a-old.json", "a", None, "2026-01-02"), _record("a-v1.json", "a", 1, "2026-01-01"),
               _record("a-v1-later.json", "a", 1, "2026-01-03"), _record("b.json", "b", 1, "2026-01-01")]
    with pytest.warns(UserWarning, match=r"left out 2 superseded record\(s\) \(a-old.json, a-v1.json\)"):
        kept = current_records(records)
    assert [r.path.name for r in kept] == ["a-v1-later.json", "b.json"]
