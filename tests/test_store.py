"""The result store: round trips, job keys, atomic commits, damaged records, concurrent writers."""

import json
import multiprocessing
import warnings

import numpy as np
import pytest

from cutmix_eval.report.store import RECORD_SCHEMA, ResultStore, StoreError, job_key, read_record
from cutmix_eval.results import Result


def job(analysis="occlusion", method="cutmix", **options):
    return {"analysis": analysis, "model": {"checkpoint_sha256": "ab" * 32, "method": method},
            "dataset": {"name": "synthetic", "split": "test", "limit": None}, "options": options}


def result(seed=0, n=50):
    rng = np.random.default_rng(seed)
    return Result(evaluator="occlusion", metrics={"centre/auc": 0.5 + seed / 100, "num_images": n},
                  conventions={"auc": "trapezoid rule"}, model={"method": "cutmix", "arch": "gapnet"},
                  dataset={"name": "synthetic", "split": "test", "num_images": n},
                  config={"fractions": [0.0, 0.5, 1.0]},
                  per_sample={"index": np.arange(n), "centre/correct": rng.random((n, 3)) > 0.5,
                              "score": rng.normal(size=n).astype(np.float32)},
                  curves={"centre": {"fraction": [0.0, 0.5, 1.0], "accuracy": [0.9, 0.5, 0.1]}})


def test_round_trip_keeps_every_field_and_array(tmp_path):
    store = ResultStore(tmp_path)
    results = [result(0), result(1)]
    results[1].artifacts = {"examples/image": np.zeros((2, 3, 4, 4), np.float16),
                            "examples/title": np.array(["a", "b"])}
    path = store.save(job(), results)
    record = store.load(job())
    assert record.path == path and record.key == job_key(job()) and record.analysis == "occlusion"
    for original, loaded in zip(results, record.results):
        assert loaded.summary() == original.summary()
        for name, array in original.per_sample.items():
            np.testing.assert_array_equal(loaded.per_sample[name], array)
            assert loaded.per_sample[name].dtype == array.dtype
        assert loaded.per_sample.keys() == original.per_sample.keys()
    assert record.results[0].artifacts == {}
    assert record.results[1].artifacts["examples/title"].tolist() == ["a", "b"]
    assert record.results[1].artifacts["examples/image"].dtype == np.float16
    data = json.loads(path.read_text())
    assert data["record_schema"] == RECORD_SCHEMA and "per_sample" not in data["results"][0]
    assert path.name.startswith("occlusion-cutmix-synthetic-") and path.with_suffix(".npz").exists()


def test_job_key_is_canonical():
    assert job_key(job(fill="black", seed=0)) == job_key(job(seed=0, fill="black"))
    assert job_key(job(fractions=[0.0, 1.0])) == job_key(job(fractions=(0.0, 1.0)))
    assert job_key(job(seed=0)) != job_key(job(seed=1)) != job_key(job(method="mixup", seed=1))
    assert len(job_key(job())) == 64


def test_missing_record_is_none_and_records_lists_only_records(tmp_path):
    store = ResultStore(tmp_path / "new")
    assert store.load(job()) is None and store.records() == []
    store.save(job(seed=1), [result()])
    (tmp_path / "new" / "notes.json").write_text('{"not": "a record"}')
    assert [r.job["options"] for r in store.records()] == [{"seed": 1}]


def test_a_failed_write_leaves_no_record(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("cutmix_eval.report.store.atomic_write_text", broken)
    with pytest.raises(OSError, match="disk full"):
        store.save(job(), [result()])
    assert store.load(job()) is None and not list(tmp_path.glob("*.json"))
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


@pytest.mark.parametrize("damage", ["side file deleted", "side file changed", "json truncated", "schema"])
def test_damaged_records_warn_and_read_as_missing(tmp_path, damage):
    store = ResultStore(tmp_path)
    path = store.save(job(), [result()])
    side = path.with_suffix(".npz")
    if damage == "side file deleted":
        side.unlink()
    elif damage == "side file changed":
        store_other = ResultStore(tmp_path / "other")
        side.write_bytes(store_other.save(job(), [result(seed=3)]).with_suffix(".npz").read_bytes())
    elif damage == "json truncated":
        path.write_text(path.read_text()[:100])
    else:
        path.write_text(path.read_text().replace('"record_schema": 2', '"record_schema": 99'))
    with pytest.warns(UserWarning, match="recomputed"):
        assert store.load(job()) is None
    with pytest.warns(UserWarning, match="skipped"):
        assert store.records() == []


def _write(args):
    root, seed, method = args
    ResultStore(root).save(job(method=method, seed=seed), [result(seed, n=2000)])
    return seed


def test_concurrent_writers_lose_nothing(tmp_path):
    jobs = [(tmp_path, seed, "cutmix") for seed in range(12)] + [(tmp_path, 0, "cutmix")] * 4  # 4 race on seed 0
    with multiprocessing.get_context("fork").Pool(4) as pool:
        assert sorted(set(pool.map(_write, jobs))) == list(range(12))
    store = ResultStore(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = store.records()
    assert sorted(r.job["options"]["seed"] for r in records) == list(range(12))
    for r in records:
        np.testing.assert_array_equal(r.results[0].per_sample["score"], result(r.job["options"]["seed"], 2000)
                                      .per_sample["score"])
    assert not list(tmp_path.glob(".*.tmp"))


def test_read_record_refuses_a_pickled_side_file(tmp_path):
    """The side file is read with allow_pickle=False: object arrays never unpickle."""
    store = ResultStore(tmp_path)
    path = store.save(job(), [result()])
    data = json.loads(path.read_text())
    side = path.with_suffix(".npz")
    np.savez(side, **{"0/evil": np.array([{"a": 1}], dtype=object)})
    import hashlib
    data["side_sha256"] = hashlib.sha256(side.read_bytes()).hexdigest()
    path.write_text(json.dumps(data))
    with pytest.raises(StoreError, match="pickle"):
        read_record(path)


def test_records_get_the_usual_file_permissions(tmp_path):
    import os
    import stat

    path = ResultStore(tmp_path).save(job(), [result()])
    mask = os.umask(0o022)
    os.umask(mask)
    for file in (path, path.with_suffix(".npz")):
        assert stat.S_IMODE(file.stat().st_mode) == 0o666 & ~mask
