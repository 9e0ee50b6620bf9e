"""Jobs: an analysis of one model on one dataset, as the result store keys its record.

:func:`make_job` turns (analysis, model, dataset, options) into the job dict the store
keys records by; :func:`run_jobs` reads the records of a subject's jobs that exist and
computes the missing ones, the analyses that can share the clean pass over the images
(:class:`~cutmix_eval.analyses.base.PassUse`) from ONE pass (:func:`plan`). The command
line, studies, the quick start and ``evaluate --all`` all come through here, so they find
each other's records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from cutmix_eval.analyses.base import ANALYSES, Outcome, Subject, check_job, get_analysis
from cutmix_eval.errors import where_things_stand
from cutmix_eval.fileio import PartFolder
from cutmix_eval.report.store import Record, ResultStore, job_key
from cutmix_eval.settings import RunSettings


def make_job(name: str, model_info: Mapping[str, Any], dataset: Any, limit: int | None,
             options: Mapping[str, Any] | None = None, *, data_root: str | None = None,
             cache: dict[Any, Any] | None = None) -> dict[str, Any]:
    """The store's job for analysis ``name`` on ``dataset`` (see :mod:`cutmix_eval.report.store`):
    everything that decides its numbers. The model by its checkpoint's SHA-256, method label
    and the loading overrides given on top of the file (``model_info["loading"]``), so it can
    be looked up before loading a model; the dataset by name, split, :func:`~cutmix_eval.analyses.base.effective_limit`
    and :attr:`~cutmix_eval.data.base.ImageDataset.identity` (where its files are and a
    fingerprint of them); every option, defaults filled in; the other data it reads (the
    analysis's ``inputs``); and the analysis's
    :attr:`~cutmix_eval.analyses.base.Analysis.version`."""
    analysis = get_analysis(name)
    options = analysis.parse_options(options)
    about = Subject(None, dataset, RunSettings(limit=limit, model_info=dict(model_info)), data_root=data_root,
                    cache={} if cache is None else cache)  # the limit as it applies (effective_limit)
    limit = about.limit
    check_job(name, options, dataset, about.num_images)
    inputs = analysis.inputs(about, options) if analysis.inputs else {}
    return {"analysis": name, "version": analysis.version,
            "model": {"checkpoint_sha256": model_info.get("checkpoint_sha256"), "method": model_info.get("method"),
                      "loading": dict(model_info.get("loading") or {})},
            "dataset": {"name": dataset.name, "split": dataset.split, "limit": limit, "identity": dataset.identity},
            "options": options, "inputs": dict(inputs)}


def subject_job(name: str, subject: Subject, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return make_job(name, subject.model_info, subject.dataset, subject.limit, options, data_root=subject.data_root,
                    cache=subject.cache)


def describe_job(job: Mapping[str, Any]) -> str:
    """What a job's record is of, for messages: the checkpoint, the data and its identity."""
    from cutmix_eval.data.base import describe_identity

    data = job["dataset"]
    limit = f", first {data['limit']} images" if data["limit"] else ""
    return (f"{job['analysis']} of checkpoint {str(job['model']['checkpoint_sha256'])[:12]} on {data['name']}/"
            f"{data['split']} ({describe_identity(data['identity'])}{limit})")


def not_recorded(names: list[str], store: ResultStore) -> str:
    """Where things stand when computing the records of analyses ``names`` was interrupted."""
    return (f"{', '.join(names)} not recorded (nothing half-written was kept in {store.root}); "
            f"rerun the same command to compute {'it' if len(names) == 1 else 'them'}")


#: ``report(names, seconds, reused)``: told after each computation (or reuse) of ``names``
Reporter = Callable[[list[str], float, bool], None]


def run_job(store: ResultStore, name: str, subject: Subject, options: Mapping[str, Any] | None = None, *,
            force: bool = False) -> tuple[Record, bool]:
    """The record of analysis ``name`` on ``subject`` (:func:`run_jobs` for one analysis).
    Returns ``(record, reused)``."""
    return _run(store, subject, {name: subject_job(name, subject, options)}, force)[name]


def run_jobs(store: ResultStore, subject: Subject, options: Mapping[str, Mapping[str, Any] | None], *,
             force: bool = False, report: Reporter | None = None,
             notes: dict[str, str] | None = None) -> dict[str, tuple[Record, bool]]:
    """The records of the analyses ``options`` names (with their options) on ``subject``:
    read from ``store`` when they exist (and not ``force``), else computed and saved. The
    missing ones that can share the clean pass over the images (classification, OOD detection,
    native-CAM localization on data with boxes: their ``shared`` use) are computed together
    from ONE pass when two or more are missing (:func:`plan`); the others each by their
    ``run``. Returns ``{name: (record, reused)}`` in the order asked.
    An analysis the shared pass had to leave out (localization of a model native CAM cannot
    explain) is then computed alone, which fails as it would alone; with ``notes`` (a dict,
    ``evaluate --all``) it is left out instead, and ``notes[name]`` says why.

    Under ``torchrun``, rank 0 decides what exists and alone saves; every rank computes its
    shard (a reused record is read on rank 0 only). Ctrl-C while computing raises a
    ``KeyboardInterrupt`` saying what was not recorded (:func:`not_recorded`)."""
    jobs = {name: subject_job(name, subject, given) for name, given in options.items()}
    return _run(store, subject, jobs, force, report=report, notes=notes)


def plan(subject: Subject, jobs: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """The missing analyses ``jobs`` names (with their options) as computations: the ones that
    can join the subject's clean pass (:attr:`~cutmix_eval.analyses.base.Analysis.shared`) together
    when two or more can, each other one alone; in the order of ``jobs``."""
    def joins(name: str) -> bool:
        use = get_analysis(name).shared
        return use is not None and use.joins(subject, jobs[name]["options"])

    shared = [name for name in jobs if joins(name)]
    if len(shared) < 2:
        return [[name] for name in jobs]
    groups: list[list[str]] = []
    for name in jobs:
        if name not in shared:
            groups.append([name])
        elif name == shared[0]:
            groups.append(shared)
    return groups


def _run(store: ResultStore, subject: Subject, jobs: Mapping[str, dict[str, Any]], force: bool, *,
         report: Reporter | None = None, notes: dict[str, str] | None = None) -> dict[str, tuple[Record, bool]]:
    from cutmix_eval.distributed import is_main_process, main_decides
    from cutmix_eval.runtime import on_device, resolve_device

    main = is_main_process()  # under torchrun every rank computes, rank 0 alone reads and writes the store
    loaded = {name: store.load(job) if main and not force else None for name, job in jobs.items()}
    exists = main_decides({name: record is not None for name, record in loaded.items()})
    records = {name: (loaded[name] or Record(store.path_for(job), job, job_key(job), []), True)
               for name, job in jobs.items() if exists[name]}
    for name in records if report else ():
        report([name], 0.0, True)
    missing = [name for name in jobs if name not in records]
    if subject.settings.parts is None:  # a rerun after an interruption continues what was finished
        subject = dataclasses.replace(subject, settings=subject.settings.replace(parts=PartFolder(store.work_folder)))
    groups = plan(subject, {name: jobs[name] for name in missing})
    # the model goes to the device once for all the computations (each evaluator's own move is then a no-op)
    with on_device(subject.model, resolve_device(subject.settings.device)) if groups else contextlib.nullcontext():
        for group in groups:
            start = time.perf_counter()
            with where_things_stand(lambda group=group: not_recorded(group, store)):
                for name, results in _compute(group, subject, jobs, notes):  # each saved as soon as it is computed
                    path = store.save(jobs[name], results) if main else store.path_for(jobs[name])
                    records[name] = (Record(path, jobs[name], job_key(jobs[name]), results), False)
            if report:
                report([name for name in group if name in records], time.perf_counter() - start, False)
    return {name: records[name] for name in jobs if name in records}


def _compute(group: list[str], subject: Subject, jobs: Mapping[str, dict[str, Any]],
             notes: dict[str, str] | None) -> Iterator[tuple[str, Outcome]]:
    """``(name, Results)`` of the analyses ``group`` (from :func:`plan`): one shared pass for
    several (:func:`~cutmix_eval.evaluate.full.shared_pass`, each analysis's consumer seeing
    its batches, then each turning it into its Results), the analysis's own run for one and
    for any the shared pass had to leave out (unless ``notes`` takes its note, see
    :func:`run_jobs`)."""
    left = list(group)
    if len(group) > 1:
        from cutmix_eval.evaluate.full import shared_pass

        uses = {name: get_analysis(name).shared for name in group}
        consumers = {name: use.consumer(subject, jobs[name]["options"]) for name, use in uses.items()}
        shared = shared_pass(subject.model, subject.dataset, [c for c in consumers.values() if c is not None],
                             settings=subject.settings)
        outcomes = {name: use.finish(subject, shared, consumers[name], jobs[name]["options"])
                    for name, use in uses.items()}  # all finished before any is saved, as one computation
        left = [name for name, outcome in outcomes.items() if isinstance(outcome, str) and notes is None]
        if notes is not None:
            notes |= {name: outcome for name, outcome in outcomes.items() if isinstance(outcome, str)}
        yield from ((name, outcome) for name, outcome in outcomes.items() if not isinstance(outcome, str))
    for name in left:
        yield name, ANALYSES.get(name).run(subject, **jobs[name]["options"])


def run_analyses(model: Any, dataset: Any, analyses: Mapping[str, Mapping[str, Any] | None], *,
                 settings: RunSettings = RunSettings(), data_root: str | None = None,
                 notes: dict[str, str] | None = None) -> dict[str, Outcome]:
    """Several analyses of ``model`` on ``dataset`` (``analyses``: name -> its options or None),
    nothing written: :func:`~cutmix_eval.analyses.base.run_analysis` for each, except that the
    ones that can share the clean pass over the images make ONE pass (:func:`plan`). Returns
    ``{name: Results}`` in the order asked; ``notes`` as in :func:`run_jobs`."""
    subject = Subject(model, dataset, settings, data_root=data_root)
    jobs = {name: {"options": get_analysis(name).parse_options(given)} for name, given in analyses.items()}
    for name, job in jobs.items():
        check_job(name, job["options"], dataset, subject.num_images)
    done = {name: outcome for group in plan(subject, jobs) for name, outcome in _compute(group, subject, jobs, notes)}
    return {name: done[name] for name in jobs if name in done}
