"""Several writers of one results folder at once: real CLI processes, and the worst interleaving
of two writers of the same job, forced in one process."""

from __future__ import annotations

import subprocess
import time
import warnings

import pytest

from cutmix_eval.report import store as store_module
from cutmix_eval.report.store import ResultStore
from conftest import CLI, cli_env, tiny_checkpoint, whole_records
from test_store import job, result


def test_processes_evaluating_into_one_folder_at_once(tmp_path):
    """Three processes at once, two on the same job: every record whole, that job recorded once."""
    ckpt = tiny_checkpoint(tmp_path / "m.pth")
    results = tmp_path / "results"

    def occlusion(fractions: str, out: str) -> list[str]:
        return [*CLI, "occlusion", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "100", "--batch-size", "8",
                "--fractions", fractions, "--examples", "0", "--results", str(results), "--output-dir",
                str(tmp_path / out)]

    runs = [occlusion("0,1", "a"), occlusion("0,0.5,1", "b"), occlusion("0,1", "c")]  # a and c: one job
    procs = [subprocess.Popen(argv, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv in runs]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], [err[-2000:] for _, err in outputs]
    records = whole_records(results)
    assert sorted(len(r.job["options"]["fractions"]) for r in records) == [2, 3]
    assert sorted(p.suffix for p in results.iterdir()) == [".json", ".json", ".npz", ".npz"]  # no temp files


@pytest.mark.parametrize("same_numbers", [True, False])
def test_two_writers_of_one_job_interleaved(tmp_path, monkeypatch, same_numbers):
    """Writer A's side file, then writer B's whole record (seconds later), then A's JSON: with the
    same numbers the record stays valid (the side file's bytes do not depend on the clock); with
    different numbers it reads as missing, with a warning, and never as wrong numbers."""
    store = ResultStore(tmp_path)
    commit_json = store_module.atomic_write_text

    def b_finishes_first(path, text):
        monkeypatch.setattr(store_module, "atomic_write_text", commit_json)
        now = time.time()
        monkeypatch.setattr(time, "time", lambda: now + 10)  # B writes 10 s later
        store.save(job(), [result(seed=0 if same_numbers else 1)])
        return commit_json(path, text)

    monkeypatch.setattr(store_module, "atomic_write_text", b_finishes_first)
    store.save(job(), [result(seed=0)])
    if same_numbers:
        (record,) = whole_records(tmp_path)
        assert record.results[0].metrics == result(seed=0).metrics
    else:
        with pytest.warns(UserWarning, match="does not match its side file"):
            assert store.load(job()) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(store.records()) == int(same_numbers)
