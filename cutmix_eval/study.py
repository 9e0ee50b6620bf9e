"""Studies: checkpoints x datasets x analyses, run where missing, then reported.

A study file (TOML) names what to compare; relative paths are resolved against
the file's folder::

    [study]
    name = "embedded"                  # outputs go to reports/<name>/ unless `output` is given
    output = "../reports/embedded"     # report folder; records in <output>/results
    formats = ["md", "tex", "csv", "html"]
    intervals = true                   # 95% bootstrap intervals in the tables
    device = "auto"
    batch_size = 128
    workers = 4                        # DataLoader processes decoding ahead (default 0)
    data_root = "~/data"               # default: $CUTMIX_EVAL_DATA, else ./data

    [[checkpoints]]
    path = "../checkpoints/quickstart/baseline/seed0/last.pth"
    label = "baseline"                 # the column label (`method` is the same key); checkpoints
                                       # sharing it, the architecture and the training recipe are seeds
    # arch, num_classes, mean = [...], std = [...], normalize = false (feed [0, 1] pixels as
    # they are), trust = true (only for files from a source you trust)

    [[datasets]]
    name = "synthetic"                 # split = "test" by default, limit = N images

    [analyses.classification]
    [analyses.occlusion]
    limit = 500                        # this analysis on the first 500 images only
    fill = "black"                     # any option of the analysis (see `cutmix-eval study --help`)

:func:`run_study` evaluates every (checkpoint, dataset, analysis) job whose record
is missing from the results folder, one model in memory at a time, and skips the
rest without loading anything: an interrupted study resumes where it stopped, and
a finished one re-renders its report in seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cutmix_eval.analyses import ANALYSES, Subject, analysis_options, make_job, run_jobs, write_report
from cutmix_eval.distributed import is_main_process, main_decides
from cutmix_eval.errors import UserError, where_things_stand
from cutmix_eval.report.build import FORMATS, ReportOutcome, check_formats
from cutmix_eval.report.store import ResultStore
from cutmix_eval.settings import RunSettings


@dataclass
class StudyCheckpoint:
    path: Path
    method: str
    arch: str | None = None
    num_classes: int | None = None
    trust: bool = False
    mean: list[float] | None = None
    std: list[float] | None = None
    normalize: bool = True

    def loading(self) -> dict[str, Any]:
        """The loading options given on top of the file, as the command line records them
        (:func:`cutmix_eval.cli._common.loading_overrides`), so both key one job."""
        given = {"arch": self.arch, "mean": self.mean, "std": self.std,
                 "normalize": None if self.normalize else False}
        return {key: value for key, value in given.items() if value is not None}

    def load(self):
        """``(model, CheckpointInfo)`` with this entry's loading options."""
        from cutmix_eval.models.checkpoint import load_checkpoint

        return load_checkpoint(self.path, arch=self.arch, num_classes=self.num_classes, mean=self.mean, std=self.std,
                               normalize=self.normalize, trust=self.trust)


@dataclass
class StudyDataset:
    name: str
    split: str | None = None
    limit: int | None = None


@dataclass
class Study:
    """What to compare (see the module docstring); ``analyses`` maps analysis names to their
    options, with an optional ``limit`` (images) per analysis."""

    name: str
    checkpoints: list[StudyCheckpoint]
    datasets: list[StudyDataset]
    analyses: dict[str, dict[str, Any]]
    output: Path
    formats: list[str] = field(default_factory=lambda: list(FORMATS))
    intervals: bool = True
    device: str = "auto"
    batch_size: int = 128
    workers: int = 0
    data_root: str | None = None
    title: str = ""
    intro: str = ""

    @property
    def results(self) -> Path:
        return self.output / "results"


def _table(data: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise UserError(f"{where}: `{key}` must be a {'table' if kind is dict else 'list of tables'}")
    return value


def _fields(data: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise UserError(f"{where}: unknown key {', '.join(unknown)}; expected {', '.join(allowed)}")


def _count(value: Any, where: str, least: int = 1, hint: str = "") -> int | None:
    """An optional whole number of at least ``least`` (``None`` when left out)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
        raise UserError(f"{where} must be a whole number of at least {least}, not {value!r}{hint}")
    return value


def _channels(value: Any, where: str) -> list[float] | None:
    """A per-channel ``mean`` or ``std``: three numbers, or left out."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 3 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise UserError(f"{where}: expected three numbers in [0, 1], e.g. [0.4914, 0.4822, 0.4465]; got {value!r}")
    return [float(v) for v in value]


def _limit(value: Any, where: str) -> int | None:
    """A ``limit`` of images: left out for all of them, else at least 1 (0 is not "all")."""
    return _count(value, f"{where}: `limit`", hint="; leave it out to use every image")


def study_from_dict(data: Mapping[str, Any], base: Path, where: str = "study") -> Study:
    """A :class:`Study` from parsed TOML, relative paths resolved against ``base``; every
    mistake is one :class:`UserError` naming the key."""
    head = data.get("study", {})
    if not isinstance(head, dict):
        raise UserError(f"{where}: [study] must be a table")
    _fields(data, ("study", "checkpoints", "datasets", "analyses"), where)
    _fields(head, ("name", "output", "formats", "intervals", "device", "batch_size", "workers", "data_root", "title",
                   "intro"), f"{where} [study]")

    def path(text: str) -> Path:
        p = Path(str(text)).expanduser()
        return p if p.is_absolute() else Path(os.path.normpath(base / p))

    checkpoints = []
    for i, entry in enumerate(_table(data, "checkpoints", list, where)):
        _fields(entry, ("path", "label", "method", "arch", "num_classes", "trust", "mean", "std", "normalize"),
                f"{where} checkpoints[{i}]")
        if "path" not in entry or not ("label" in entry or "method" in entry):
            raise UserError(f"{where} checkpoints[{i}]: needs `path` and `label` (the column label, e.g. "
                            "\"cutmix\"; `method` is the same key)")
        if "label" in entry and "method" in entry and entry["label"] != entry["method"]:
            raise UserError(f"{where} checkpoints[{i}]: `label` and `method` are the same key and disagree "
                            f"({entry['label']!r}, {entry['method']!r}); keep one")
        checkpoints.append(StudyCheckpoint(path(entry["path"]), str(entry.get("label", entry.get("method"))),
                                           entry.get("arch"), entry.get("num_classes"),
                                           bool(entry.get("trust", False)),
                                           *(_channels(entry.get(k), f"{where} checkpoints[{i}].{k}")
                                             for k in ("mean", "std")),
                                           bool(entry.get("normalize", True))))
    datasets = []
    for i, entry in enumerate(_table(data, "datasets", list, where)):
        _fields(entry, ("name", "split", "limit"), f"{where} datasets[{i}]")
        if "name" not in entry:
            raise UserError(f"{where} datasets[{i}]: needs `name`")
        datasets.append(StudyDataset(entry["name"], entry.get("split"),
                                     _limit(entry.get("limit"), f"{where} datasets[{i}]")))
    analyses = {}
    for name, options in _table(data, "analyses", dict, where).items():
        if name not in ANALYSES:
            raise UserError(f"{where}: unknown analysis [analyses.{name}]; choose from {', '.join(ANALYSES.names())}")
        options = dict(options)
        limit = _limit(options.pop("limit", None), f"{where} [analyses.{name}]")
        try:  # every value read and checked now, not after an hour of work
            analysis_options(name, options)
        except UserError as error:
            raise UserError(f"{where} [analyses.{name}]: {error}") from None
        analyses[name] = {"options": options, "limit": limit}
    if not checkpoints or not datasets or not analyses:
        raise UserError(f"{where}: needs at least one [[checkpoints]], one [[datasets]] and one [analyses.NAME]")
    name = str(head.get("name", "study"))
    output = path(head["output"]) if "output" in head else Path("reports") / name
    data_root = str(path(head["data_root"])) if "data_root" in head else None
    return Study(name=name, checkpoints=checkpoints, datasets=datasets, analyses=analyses, output=output,
                 formats=check_formats(head.get("formats", list(FORMATS))), intervals=bool(head.get("intervals", True)),
                 device=str(head.get("device", "auto")),
                 batch_size=_count(head.get("batch_size", 128), f"{where} [study]: `batch_size`"),
                 workers=_count(head.get("workers", 0), f"{where} [study]: `workers`", least=0),
                 data_root=data_root, title=str(head.get("title", "")), intro=str(head.get("intro", "")))


def load_study(path: str | Path) -> Study:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, as a package
        import tomli as tomllib

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"study file {path} not found") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"study file {path} is not valid TOML: {error}") from None
    return study_from_dict(data, path.parent, where=str(path))


@dataclass
class Progress:
    """Counts jobs and estimates the time left from the jobs already computed (per analysis
    when one of its kind has run, else the mean of all)."""

    total: int
    log: Callable[[str], None]
    done: int = 0
    start: float = field(default_factory=time.perf_counter)
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def remaining(self, pending: Sequence[str]) -> float | None:
        every = [s for times in self.seconds.values() for s in times]
        if not every:
            return None
        return sum(_mean(self.seconds.get(name, every)) for name in pending)

    def report(self, names: Sequence[str], what: str, seconds: float, reused: bool, pending: Sequence[str]) -> None:
        """``names`` (analyses) done in ``seconds``, together when several (one shared pass)."""
        self.done += len(names)
        if not reused:
            for name in names:
                self.seconds.setdefault(name, []).append(seconds / len(names))
        left = self.remaining(pending)
        eta = f", about {_duration(left)} left" if left else ""
        state = "reused" if reused else f"{seconds:.1f} s"
        self.log(f"[{self.done}/{self.total}] {what}: {state} ({_duration(time.perf_counter() - self.start)} "
                 f"elapsed{eta})")


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def study_datasets(study: Study) -> dict[tuple[str, str], Any]:
    """Every (dataset, split) of ``study``, built once: a missing or malformed dataset fails here,
    before any model is loaded or evaluated, and each dataset's identity keys its jobs. A released
    corrupted set (``cifar100-c``...) is its first slice on disk, which stands for the release
    (the corruption analysis reads every slice with ``table = "released"``)."""
    from cutmix_eval.data import create_dataset, dataset_spec

    built: dict[tuple[str, str], Any] = {}
    for dataset in study.datasets:
        spec = dataset_spec(dataset.name)
        split = dataset.split or ("test" if "test" in spec.splits else spec.splits[-1])
        if (spec.name, split) not in built:
            built[spec.name, split] = create_dataset(spec.name, split, root=study.data_root)
    return built


def study_jobs(study: Study, checkpoint: StudyCheckpoint, sha256: str, datasets: Mapping[tuple[str, str], Any],
               caches: dict[tuple[str, str], dict]) -> list[tuple[tuple[str, str], str, dict]]:
    """((dataset, split), analysis, job) of one checkpoint, in run order; ``datasets`` from
    :func:`study_datasets`, ``caches`` the data each dataset's analyses read besides (OOD
    sets...), built once per dataset."""
    from cutmix_eval.data import dataset_spec

    jobs = []
    for dataset in study.datasets:
        spec = dataset_spec(dataset.name)
        where = (spec.name, dataset.split or ("test" if "test" in spec.splits else spec.splits[-1]))
        for name, entry in study.analyses.items():
            limit = _smaller(dataset.limit, entry["limit"])
            info = {"checkpoint_sha256": sha256, "method": checkpoint.method, "loading": checkpoint.loading()}
            jobs.append((where, name, make_job(name, info, datasets[where], limit, entry["options"],
                                               data_root=study.data_root, cache=caches.setdefault(where, {}))))
    return jobs


def _smaller(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def run_study(study: Study, *, force: bool = False, render_force: bool = False, progress: bool = True,
              log: Callable[[str], None] = print,
              extra_figures: Sequence[tuple[str, Path]] = ()) -> ReportOutcome | None:
    """Run every missing job of ``study`` (all of them with ``force``), then write the report of
    exactly its records (other records in the folder, e.g. of an earlier version of the study,
    are left out); re-rendered when records changed, or with ``render_force``; ``extra_figures``
    as in :func:`~cutmix_eval.report.build.write_report`. Under ``torchrun`` every rank evaluates
    its shard of each job and only rank 0 logs, writes and returns the outcome (others: None).
    Ctrl-C raises a ``KeyboardInterrupt`` saying how many jobs are recorded."""
    from cutmix_eval.models.checkpoint import file_sha256, model_identity
    from cutmix_eval.runtime import resolve_device

    device = str(resolve_device(study.device))
    store = ResultStore(study.results)
    for checkpoint in study.checkpoints:
        if not checkpoint.path.is_file():
            raise UserError(f"checkpoint {checkpoint.path} ({checkpoint.method}) not found; fix its `path` in the "
                            "study file")
    datasets = study_datasets(study)
    caches: dict[tuple[str, str], dict] = {}
    plan = [(c, study_jobs(study, c, file_sha256(c.path), datasets, caches)) for c in study.checkpoints]
    main = is_main_process()  # under torchrun rank 0 decides what is missing, logs, writes
    done = main_decides([main and not force and store.load(job) is not None for _, jobs in plan for *_, job in jobs])
    log = log if main else (lambda _: None)
    counter = Progress(sum(len(jobs) for _, jobs in plan), log)
    pending = [name for _, jobs in plan for _, name, _ in jobs]
    recorded = iter(done)
    with where_things_stand(lambda: f"{counter.done} of {counter.total} jobs recorded in {store.root}; rerun "
                                    "the same command to finish the rest"):
        for checkpoint, jobs in plan:
            flags = [next(recorded) for _ in jobs]
            missing = [entry for entry, kept in zip(jobs, flags) if not kept]
            model, model_info = None, None
            if missing:
                model, info = checkpoint.load()
                model_info = model_identity(info, checkpoint.method) | {"loading": checkpoint.loading()}
            for (_, name, job), kept in zip(jobs, flags):
                if kept:
                    pending.remove(name)
                    counter.report([name], f"{name} · {checkpoint.method} · {job['dataset']['name']}", 0.0, True,
                                   pending)
            by_subject: dict[tuple[str, str, int | None], list[tuple[str, dict]]] = {}
            for where, name, job in missing:  # one subject per (dataset, limit): its analyses share its passes
                by_subject.setdefault((*where, job["dataset"]["limit"]), []).append((name, job))
            for (*where, limit), named in by_subject.items():
                settings = RunSettings(batch_size=study.batch_size, device=device, num_workers=study.workers,
                                       limit=limit, progress=progress, model_info=model_info)
                subject = Subject(model, datasets[tuple(where)], settings, data_root=study.data_root,
                                  cache=dict(caches[tuple(where)]))

                def done(names: list[str], seconds: float, reused: bool, about=f"{checkpoint.method} · {where[0]}"):
                    for name in names:
                        pending.remove(name)
                    counter.report(names, f"{' + '.join(names)} · {about}", seconds, reused, pending)

                run_jobs(store, subject, {name: job["options"] for name, job in named}, force=True, report=done)
    if not main:
        return None
    return write_report(study.results, study.output, study.formats, intervals=study.intervals,
                        title=study.title or f"{study.name}: cutmix-eval report", intro=study.intro,
                        force=render_force, extra_figures=extra_figures,
                        only=[store.path_for(job) for _, jobs in plan for _, _, job in jobs])
