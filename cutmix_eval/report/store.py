"""The result store: one record per evaluation job in a results folder.

A *job* is what decides an evaluation's outcome, as a JSON-able dict::

    {"analysis": "occlusion",
     "model": {"checkpoint_sha256": "...", "method": "cutmix", "loading": {...overrides such as "mean"...}},
     "dataset": {"name": "imagefolder", "split": "test", "limit": None,
                 "identity": {"folder": "/data/pets", "files": 3680, "sha256": "..."}},
     "options": {...every option of the analysis, defaults filled in...},
     "inputs": {...identities of the other data it reads: OOD sets, a reference model...},
     "version": 1}

``version`` is the analysis's (:class:`cutmix_eval.analyses.Analysis`): a change that alters
an analysis's numbers bumps it, so its old records are keyed apart and computed again.
:meth:`ResultStore.load` warns when it finds only such a superseded record of a job.

Its *key* is the SHA-256 of the job's canonical JSON (sorted keys, no spaces).
The dataset's ``identity`` (:attr:`cutmix_eval.data.base.ImageDataset.identity`:
where its files are and a fingerprint of their names, sizes and modification
times, or a generated set's settings) makes another tree under the same dataset
name another job. Batch size, device and worker count are not part of a job:
they do not change the numbers beyond float rounding.

A record is two files named ``<analysis>-<method>-<dataset>-<key[:12]>``:

* ``.npz``: the per-sample arrays of every Result of the job (``<i>/<name>``)
  and its artifacts (``<i>/artifact/<name>``, e.g. CAM examples), written first;
* ``.json``: the job, its key, the Results without their per-sample arrays (each with
  its package versions and the analysis's version, ``versions``), the side file's name and
  SHA-256, and ``record_schema``. Written second, it is the commit point: a record exists
  once its JSON does.

Both are written atomically (temp file ``.<name>.<random>.tmp`` in the folder,
fsync, rename), so a reader never sees half a file and an interrupted run leaves
no record: at most a side file without its JSON (overwritten when the job is
recomputed) and, after SIGKILL or power loss, temp files, which readers ignore.
Jobs of different keys never share a file, so any number of processes can write
into one folder at once. The side file's bytes depend only on the arrays (no
timestamps), so two processes finishing the *same* job with the same numbers at
once leave one valid record. If their numbers differ (another batch size or
device changes the float rounding), the JSON's checksum may no longer match its
side file and the record reads as missing (it is recomputed), never as wrong numbers.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from glob import escape as glob_escape
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cutmix_eval.fileio import atomic_write, atomic_write_text
from cutmix_eval.results import Result, jsonable, result_from_dict

RECORD_SCHEMA = 2  # 2: jobs identify the data (dataset identity, inputs, loading overrides); artifacts per Result
ARTIFACT = "artifact/"  # after a Result's ``<i>/``: its artifacts, not per-sample arrays


def canonical_json(value: Any) -> str:
    return json.dumps(jsonable(value), sort_keys=True, separators=(",", ":"), default=str)


def job_key(job: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the job's canonical JSON."""
    return hashlib.sha256(canonical_json(job).encode()).hexdigest()


def _slug(text: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", str(text)).strip("_") or "none"


@dataclass
class Record:
    """One stored job: its Results (per-sample arrays and artifacts loaded)."""

    path: Path
    job: dict[str, Any]
    key: str
    results: list[Result]

    @property
    def analysis(self) -> str:
        return self.job["analysis"]


class StoreError(Exception):
    """A record that cannot be read back (missing side file, checksum mismatch, bad JSON)."""


class NotARecord(Exception):
    """A JSON file in the folder that is not a record (ignored)."""


class ResultStore:
    """Records in one folder (created on first write). See the module docstring."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def work_folder(self) -> Path:
        """Where unfinished computations keep their finished parts (``RunSettings.parts``)."""
        return self.root / ".unfinished"

    def path_for(self, job: Mapping[str, Any]) -> Path:
        key = job_key(job)
        parts = [job["analysis"], job["model"].get("method") or "model", job["dataset"]["name"], key[:12]]
        return self.root / ("-".join(_slug(p) for p in parts) + ".json")

    def save(self, job: Mapping[str, Any], results: Sequence[Result]) -> Path:
        """Write the job's record (side file, then JSON); returns the JSON's path. Each Result's
        ``versions`` gains the job's analysis version (``analysis``)."""
        path = self.path_for(job)
        arrays = {}
        for i, result in enumerate(results):
            result.versions["analysis"] = str(job.get("version"))
            if clash := [name for name in result.per_sample if name.startswith(ARTIFACT)]:
                raise ValueError(f"per-sample array names may not start with {ARTIFACT!r}: {clash}")
            arrays |= {f"{i}/{name}": np.asarray(value) for name, value in result.per_sample.items()}
            arrays |= {f"{i}/{ARTIFACT}{name}": np.asarray(value) for name, value in result.artifacts.items()}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # dates every member 1980-01-01: same arrays, same bytes
        payload = buffer.getvalue()
        side = path.with_suffix(".npz")
        atomic_write(side, lambda fh: fh.write(payload))
        record = {"record_schema": RECORD_SCHEMA, "key": job_key(job), "job": jsonable(dict(job)),
                  "side_file": side.name, "side_sha256": hashlib.sha256(payload).hexdigest(),
                  "results": [result.summary() for result in results]}
        return atomic_write_text(path, json.dumps(record, indent=1))

    def load(self, job: Mapping[str, Any]) -> Record | None:
        """The job's record, or ``None`` when there is none or it cannot be read (warned); a
        record of the same job by another analysis version (:meth:`superseded`) is warned about."""
        path = self.path_for(job)
        if not path.exists():
            for old, version in self.superseded(job):
                warnings.warn(f"record {old} was computed by {job['analysis']} "
                              f"{'version ' + str(version) if version else 'before analyses had versions'}; "
                              f"this is version {job.get('version')}, so it is computed again", stacklevel=2)
            return None
        try:
            return read_record(path)
        except StoreError as error:
            warnings.warn(f"{error}; it will be recomputed", stacklevel=2)
            return None

    def superseded(self, job: Mapping[str, Any]) -> list[tuple[Path, Any]]:
        """``(path, version)`` of the records in the folder of ``job`` computed by another
        version of its analysis: the same job but for ``version``."""
        same = {k: v for k, v in jsonable(dict(job)).items() if k != "version"}
        prefix = self.path_for(job).name.rsplit("-", 1)[0]
        found = []
        for path in sorted(self.root.glob(f"{glob_escape(prefix)}-*.json")) if self.root.is_dir() else []:
            try:
                other = json.loads(path.read_text(encoding="utf-8"))["job"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if {k: v for k, v in other.items() if k != "version"} == same and other.get("version") != job.get("version"):
                found.append((path, other.get("version")))
        return found

    def records(self, paths: Sequence[Path] | None = None) -> list[Record]:
        """Every readable record in the folder (or those at ``paths``), in file-name order;
        unreadable ones are warned about and skipped, JSON files that are not records ignored."""
        found = []
        if paths is None:
            paths = sorted(self.root.glob("*.json")) if self.root.is_dir() else []
        for path in paths:
            try:
                found.append(read_record(path))
            except StoreError as error:
                warnings.warn(f"{error}; skipped", stacklevel=2)
            except NotARecord:
                continue
        return found


def read_record(path: Path) -> Record:
    """Read one record and its side file, checking the schema and the side file's checksum."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StoreError(f"record {path} is unreadable ({error})") from None
    if not isinstance(data, dict) or "record_schema" not in data:
        raise NotARecord(path)
    if data["record_schema"] != RECORD_SCHEMA:
        raise StoreError(f"record {path} has schema {data['record_schema']}, this version reads {RECORD_SCHEMA} "
                         "(older records do not identify the images they were computed on: rerun the evaluation)")
    side = path.with_name(data["side_file"])
    try:
        payload = side.read_bytes()
    except OSError:
        raise StoreError(f"record {path} lacks its side file {side.name}") from None
    if hashlib.sha256(payload).hexdigest() != data["side_sha256"]:
        raise StoreError(f"record {path} does not match its side file {side.name} (checksum)")
    try:  # never unpickle: a side file holding object arrays is refused
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise StoreError(f"record {path} has an unreadable side file {side.name} ({error})") from None
    results = []
    for i, summary in enumerate(data["results"]):
        own = {k[len(f"{i}/"):]: v for k, v in arrays.items() if k.startswith(f"{i}/")}
        per_sample = {k: v for k, v in own.items() if not k.startswith(ARTIFACT)}
        artifacts = {k[len(ARTIFACT):]: v for k, v in own.items() if k.startswith(ARTIFACT)}
        results.append(result_from_dict(summary, per_sample, artifacts))
    return Record(path=path, job=data["job"], key=data["key"], results=results)
