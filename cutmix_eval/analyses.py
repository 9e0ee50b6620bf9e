"""The analyses a study, the quick start and the evaluation commands run, by name.

Each analysis is a function ``run(subject, **options) -> list[Result]`` over one model
on one labelled dataset (a :class:`Subject`), with every option's default in its
signature. :func:`make_job` turns (analysis, model, dataset, options) into the
job dict the result store keys records by, and :func:`run_job` runs a job unless
its record already exists. The command line and a study name the same analysis with
the same options, so they find each other's records.

=============== ==========================================================
classification  top-1/top-5 error and calibration from one labelled pass
localization    CAM weakly supervised localization (needs boxes)
ood             out-of-distribution detection against the companion sets
occlusion       accuracy as a centred hole grows / the image shrinks to it
inbetween       predicting neither class of Mixup/CutMix in-between samples
adversarial     accuracy under FGSM (and PGD) in pixel space
corruption      error under the common corruptions, on the fly
=============== ==========================================================
"""

from __future__ import annotations

import inspect
import math
import time
from fractions import Fraction
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cutmix_eval.distributed import is_main_process, main_decides
from cutmix_eval.errors import UserError, where_things_stand
from cutmix_eval.evaluate.adversarial import DEFAULT_EPS
from cutmix_eval.evaluate.inbetween import DEFAULT_GRID
from cutmix_eval.evaluate.occlusion import DEFAULT_FRACTIONS, MODES
from cutmix_eval.report.store import Record, ResultStore, job_key
from cutmix_eval.results import Result

Outcome = list[Result]  # what an analysis returns: its Results, in the order they are recorded


def effective_limit(limit: int | None, dataset: Any) -> int | None:
    """``limit`` as a job keys it: ``None`` (every image) when it covers the whole dataset, so
    ``--limit 5000`` on 2,000 images is the same job as no limit."""
    return None if limit is None or limit >= len(dataset) else limit


@dataclass
class Subject:
    """One model (with its identity record) on one dataset, and how to run it.

    ``limit`` is stored as :func:`effective_limit` makes it. The labelled pass (logits of
    every image) is computed once and shared by classification, calibration and the ID
    side of OOD detection; datasets an analysis reads besides (OOD sets, the Mahalanobis fit
    set) are built once and shared by the job's identity and the analysis (``cache``).
    """

    model: Any
    model_info: dict[str, Any]
    dataset: Any
    device: str = "cpu"
    batch_size: int = 128
    num_workers: int = 0
    progress: bool = True
    data_root: str | None = None
    limit: int | None = None
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.limit = effective_limit(self.limit, self.dataset)

    def common(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "device": self.device, "num_workers": self.num_workers,
                "limit": self.limit, "progress": self.progress}

    def labelled_pass(self):
        from cutmix_eval.evaluate.classification import labelled_pass

        return cached(self.cache, "labelled pass", lambda: labelled_pass(
            self.model, self.dataset, batch_size=self.batch_size, device=self.device, num_workers=self.num_workers,
            limit=self.limit, progress=self.progress))


def cached(cache: dict[Any, Any], key: Any, make: Callable[[], Any]) -> Any:
    """``cache[key]``, made by ``make()`` the first time."""
    if key not in cache:
        cache[key] = make()
    return cache[key]


def classification(subject: Subject, holdout: int = 0, n_bins: int = 15) -> Outcome:
    from cutmix_eval.evaluate.calibration import calibration_result
    from cutmix_eval.evaluate.classification import classification_result

    predictions, dataset_info = subject.labelled_pass()
    info = {"model_info": subject.model_info, "dataset_info": dataset_info}
    results = [classification_result(predictions, **info, config={"limit": subject.limit})]
    if results[0].metrics["num_nonfinite_logits"] == 0:
        results.append(calibration_result(predictions, holdout=holdout, n_bins=n_bins, **info,
                                          config={"limit": subject.limit}))
    return results


def localization(subject: Subject, cam: str = "cam", protocol: str = "wsolevaluation", examples: int = 16) -> Outcome:
    from cutmix_eval.evaluate.localization import evaluate_localization

    return [evaluate_localization(subject.model, subject.dataset, cam=cam, protocol=protocol,
                                  model_info=subject.model_info, keep_examples=examples, **subject.common())]


def ood(subject: Subject, scores: tuple[str, ...] = ("msp",), sets: tuple[str, ...] = ("all",),
        num_noise: int | None = None, energy_temperature: float = 1.0, odin_holdout: int = 1000,
        fit_data: str | None = None, fit_limit: int | None = None) -> Outcome:
    """``sets``: OOD set names or image folders (``all``: the paper's seven, or the embedded
    companions); ``num_noise``: images per noise set (default: as many as ID test images, at
    most 10,000); ``fit_data``: the labelled set Mahalanobis is fitted on (default: the ID
    dataset's train split)."""
    from cutmix_eval.evaluate.ood import evaluate_ood, ood_inputs

    ood_sets, fit = ood_inputs(subject.dataset, subject.limit, subject.data_root, sets=sets, scores=scores,
                               num_noise=num_noise, fit_data=fit_data, cache=subject.cache)
    shared = subject.labelled_pass()[0] if list(scores) == ["msp"] else None
    return evaluate_ood(subject.model, subject.dataset, ood_sets, scores=list(scores),
                        score_options={"energy": {"temperature": energy_temperature},
                                       "odin": {"holdout": odin_holdout}},
                        fit_dataset=fit, fit_limit=fit_limit, model_info=subject.model_info,
                        id_predictions=shared, **subject.common())


def occlusion(subject: Subject, fractions: tuple[float, ...] = DEFAULT_FRACTIONS, modes: tuple[str, ...] = MODES,
              fill: str | float = "black", seed: int = 0) -> Outcome:
    from cutmix_eval.evaluate.occlusion import evaluate_occlusion

    return [evaluate_occlusion(subject.model, subject.dataset, fractions=fractions, modes=modes, fill=fill, seed=seed, model_info=subject.model_info,
                               **subject.common())]


def inbetween(subject: Subject, num_pairs: int | None = None, seed: int = 0,
              mix_grid: tuple[float, ...] = DEFAULT_GRID, cut_grid: tuple[float, ...] = DEFAULT_GRID) -> Outcome:
    from cutmix_eval.evaluate.inbetween import evaluate_inbetween

    return [evaluate_inbetween(subject.model, subject.dataset, num_pairs=num_pairs, seed=seed,
                               mix_grid=mix_grid, cut_grid=cut_grid,
                               model_info=subject.model_info, **subject.common())]


def adversarial(subject: Subject, attacks: tuple[str, ...] = ("fgsm",), eps: tuple[float, ...] = DEFAULT_EPS,
                targeted: bool = False, target: str = "random", pgd_steps: int = 10,
                pgd_step_size: float | None = None, pgd_restarts: int = 1, random_start: bool = True,
                seed: int = 0) -> Outcome:
    from cutmix_eval.evaluate.adversarial import evaluate_adversarial

    return [evaluate_adversarial(subject.model, subject.dataset, attacks=list(attacks), eps=eps,
                                 targeted=targeted, target=target, pgd_steps=pgd_steps, pgd_step_size=pgd_step_size,
                                 pgd_restarts=pgd_restarts, random_start=random_start, seed=seed,
                                 model_info=subject.model_info, **subject.common())]


def corruption(subject: Subject, corruptions: str | tuple[str, ...] = "all",
               severities: tuple[int, ...] = (1, 2, 3, 4, 5), table: str = "auto", seed: int = 0,
               reference: str | None = None) -> Outcome:
    """On-the-fly corruptions of ``subject.dataset``; ``reference``: a checkpoint file whose
    errors on the same images normalize CE and mCE (default: AlexNet's published errors on
    ImageNet data, none elsewhere)."""
    from cutmix_eval.evaluate.corruption import evaluate_corruption
    from cutmix_eval.models.checkpoint import load_checkpoint

    model, label = None, "reference model"
    if reference:
        model, info = load_checkpoint(reference, num_classes=subject.model.num_classes)
        label = info.method or info.arch
    return [evaluate_corruption(subject.model, subject.dataset, corruptions=corruptions, severities=severities,
                                table=table, seed=seed, reference=model, reference_label=label,
                                model_info=subject.model_info, **subject.common())]


def job_inputs(name: str, dataset: Any, limit: int | None, data_root: str | None, options: Mapping[str, Any],
               cache: dict[Any, Any]) -> dict[str, Any]:
    """What analysis ``name`` reads besides its model and dataset, by identity: each OOD set and
    the Mahalanobis fit set (:attr:`~cutmix_eval.data.base.ImageDataset.identity`), the
    corruption reference checkpoint (SHA-256). Part of the job: a record is never reused for
    other OOD images or another reference model."""
    if name == "ood":
        from cutmix_eval.evaluate.ood import INPUT_OPTIONS, ood_inputs

        ood_sets, fit = ood_inputs(dataset, limit, data_root, cache=cache, **{k: options[k] for k in INPUT_OPTIONS})
        return {"ood_sets": {set_name: ood.identity for set_name, ood in ood_sets.items()},
                **({"fit_set": fit.identity} if fit is not None else {})}
    if name == "corruption" and options.get("reference"):
        from cutmix_eval.models.checkpoint import file_sha256

        path = Path(options["reference"]).expanduser()
        if not path.is_file():
            raise UserError(f"reference checkpoint {path} not found; give the file of the reference model")
        return {"reference_sha256": cached(cache, ("sha256", str(path)), lambda: file_sha256(path))}
    return {}


@dataclass(frozen=True)
class Analysis:
    """An analysis by name: ``run(subject, **options) -> list[Result]`` and its ``version``.

    The version is part of every job (:func:`make_job`), so a record is reused only by the
    version that computed it. **Bump it in any change that alters the analysis's numbers**
    (a metric fix, another default, another convention): records of the old version are then
    computed again, with a warning naming them, and reports keep only the newest record of a
    checkpoint (:func:`cutmix_eval.report.comparison.current_records`)."""

    name: str
    version: int
    run: Callable[..., Outcome]


ANALYSES: dict[str, Analysis] = {a.name: a for a in (
    Analysis("classification", 1, classification),
    Analysis("localization", 1, localization),
    Analysis("ood", 1, ood),
    Analysis("occlusion", 1, occlusion),
    Analysis("inbetween", 1, inbetween),
    Analysis("adversarial", 1, adversarial),
    Analysis("corruption", 1, corruption),
)}


def check_analysis(name: str) -> Analysis:
    if name not in ANALYSES:
        raise UserError(f"unknown analysis {name!r}; choose from {', '.join(ANALYSES)}")
    return ANALYSES[name]


def list_analyses() -> list[str]:
    """The analyses' names, in the report's order."""
    return list(ANALYSES)


def run_analysis(name: str, model: Any, dataset: Any, *, model_info: Mapping[str, Any] | None = None,
                 limit: int | None = None, batch_size: int = 128, device: str = "auto", num_workers: int = 0,
                 progress: bool = True, data_root: str | None = None, **options: Any) -> Outcome:
    """Analysis ``name`` of ``model`` on ``dataset`` (its first ``limit`` images): its Results,
    nothing written. ``options`` are the analysis's (:func:`analysis_options`: the names and
    syntaxes of study files, checked the same way, e.g. ``fractions="0:0.1:1"``); ``data_root``
    is where the other data it reads are found (OOD sets, the Mahalanobis fit set);
    ``model_info``: what the Results say about the model (default: its architecture and
    class count; commands pass the checkpoint's identity)."""
    options = analysis_options(name, options)
    info = dict(model_info or {"arch": model.arch, "num_classes": model.num_classes})
    subject = Subject(model, info, dataset, device=device, batch_size=batch_size, num_workers=num_workers,
                      progress=progress, data_root=data_root, limit=limit)
    check_job(name, options, dataset, subject.limit)
    return ANALYSES[name].run(subject, **options)


def check_job(name: str, options: Mapping[str, Any], dataset: Any, limit: int | None) -> None:
    """What can only be checked against the data, before any work: the in-between pairs the
    images allow."""
    if name == "inbetween":
        from cutmix_eval.evaluate.inbetween import check_num_pairs

        check_num_pairs(options["num_pairs"], len(dataset) if limit is None else limit)


def analysis_options(name: str, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every option of analysis ``name``: its defaults overridden by ``given`` (unknown names
    refused), each value read and checked by the parser its command uses (:data:`OPTION_CHECKS`),
    so a study file may write the command line's syntax (``fractions = "0:0.1:1"``,
    ``eps = ["8/255"]``, ``severities = "3-5"``) and every mistake is one UserError before any
    work. Values come out canonical (lists as tuples, numbers as floats), so the command line, a
    study and Python defaults key alike."""
    parameters = list(inspect.signature(check_analysis(name).run).parameters.values())[1:]
    defaults = {p.name: p.default for p in parameters}
    unknown = sorted(set(given or {}) - set(defaults))
    if unknown:
        raise UserError(f"analysis {name} has no option {', '.join(unknown)}; its options: {', '.join(defaults)}")
    merged = defaults | dict(given or {})
    checked = {k: OPTION_CHECKS[name].get(k, _plain)(v, k) for k, v in merged.items()}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in checked.items()}


# --------------------------------------------------------------------------- option parsers
# Each takes (value, option name) and returns the canonical value or raises a UserError. They accept
# what the command line accepts (comma-separated text, ranges) and what TOML gives (lists, numbers).


def _plain(value: Any, option: str) -> Any:
    return value


def _texts(value: Any) -> list[str]:
    """A comma-separated string or a list of strings -> the stripped, non-empty strings."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()]


def _count(least: int, optional: bool = False) -> Callable[[Any, str], Any]:
    def check(value: Any, option: str) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UserError(f"option {option} must be a whole number of at least {least}"
                            f"{' (or left out)' if optional else ''}, not {value!r}")
        return value
    return check


def _number(positive: bool = False, optional: bool = False) -> Callable[[Any, str], Any]:
    def check(value: Any, option: str) -> float | None:
        if value is None and optional:
            return None
        try:
            number = float(Fraction(value) if isinstance(value, str) else value)
        except (TypeError, ValueError, ZeroDivisionError):
            number = float("nan")
        if not math.isfinite(number) or (positive and number <= 0):
            raise UserError(f"option {option} must be a {'positive ' if positive else ''}number, not {value!r}")
        return number
    return check


def _choice(choices: Callable[[], Sequence[str]]) -> Callable[[Any, str], str]:
    def check(value: Any, option: str) -> str:
        if value not in choices():
            raise UserError(f"option {option} must be one of {', '.join(choices())}, not {value!r}")
        return value
    return check


def _choices(choices: Callable[[], Sequence[str]]) -> Callable[[Any, str], tuple[str, ...]]:
    def check(value: Any, option: str) -> tuple[str, ...]:
        values = _texts(value)
        unknown = [v for v in values if v not in choices()]
        if unknown or not values:
            raise UserError(f"option {option}: unknown {', '.join(unknown) or '(none given)'}; choose from "
                            f"{', '.join(choices())}")
        return tuple(dict.fromkeys(values))
    return check


def _flag(value: Any, option: str) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"option {option} must be true or false, not {value!r}")
    return value


def _grid(value: Any, option: str) -> tuple[float, ...]:
    from cutmix_eval.evaluate.occlusion import check_fractions, parse_grid

    if isinstance(value, str):
        return tuple(parse_grid(value, option))
    return tuple(check_fractions([_number()(v, option) for v in value], option))


def _eps(value: Any, option: str) -> tuple[float, ...]:
    from cutmix_eval.evaluate.adversarial import parse_eps

    items = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    return tuple(parse_eps(items if isinstance(items, str) else ",".join(str(v) for v in items)))


def _step_size(value: Any, option: str) -> float | None:
    return None if value is None else _eps([value], option)[0]


def _fill(value: Any, option: str) -> str | float:
    from cutmix_eval.evaluate.occlusion import parse_fill

    return parse_fill(value)


def _modes(value: Any, option: str) -> tuple[str, ...]:
    from cutmix_eval.evaluate.occlusion import check_modes

    return tuple(check_modes(_texts(value)))


def _corruptions(value: Any, option: str) -> str | tuple[str, ...]:
    from cutmix_eval.evaluate.corruption import check_selection

    check_selection(value, [1])  # names, groups or "all"/"benchmark": refused here when unknown
    return value if isinstance(value, str) else tuple(_texts(value))


def _severities(value: Any, option: str) -> tuple[int, ...]:
    from cutmix_eval.evaluate.corruption import check_selection, parse_severities

    if isinstance(value, str):
        return tuple(parse_severities(value))
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    return tuple(check_selection("all", [_count(1)(v, option) for v in value])[1])


def _scores() -> list[str]:
    from cutmix_eval.evaluate.ood_scores import list_scores

    return list_scores()


def _cams() -> list[str]:
    from cutmix_eval.cam import list_cams

    return list_cams()


def _protocols() -> list[str]:
    from cutmix_eval.evaluate.localization import PROTOCOLS

    return sorted(PROTOCOLS)


def _sets(value: Any, option: str) -> tuple[str, ...]:
    sets = _texts(value)
    if not sets:
        raise UserError(f"option {option} needs at least one OOD set name or folder (or 'all')")
    return tuple(sets)


def _dataset_name(value: Any, option: str) -> str | None:
    from cutmix_eval.data import dataset_spec

    return None if value is None else dataset_spec(str(value)).name


def _path(value: Any, option: str) -> str | None:
    return None if value is None else str(value)


def _attacks() -> tuple[str, ...]:
    from cutmix_eval.evaluate.adversarial import ATTACKS

    return ATTACKS


def _targets() -> tuple[str, ...]:
    from cutmix_eval.evaluate.adversarial import TARGETS

    return TARGETS


#: analysis -> option -> parser (options not named pass through unchanged)
OPTION_CHECKS: dict[str, dict[str, Callable[[Any, str], Any]]] = {
    "classification": {"holdout": _count(0), "n_bins": _count(1)},
    "localization": {"cam": _choice(_cams), "protocol": _choice(_protocols), "examples": _count(0)},
    "ood": {"scores": _choices(_scores), "sets": _sets, "num_noise": _count(1, optional=True),
            "energy_temperature": _number(positive=True), "odin_holdout": _count(1),
            "fit_data": _dataset_name, "fit_limit": _count(1, optional=True)},
    "occlusion": {"fractions": _grid, "modes": _modes, "fill": _fill, "seed": _count(0)},
    "inbetween": {"num_pairs": _count(1, optional=True), "seed": _count(0), "mix_grid": _grid, "cut_grid": _grid},
    "adversarial": {"attacks": _choices(_attacks), "eps": _eps, "targeted": _flag, "target": _choice(_targets),
                    "pgd_steps": _count(1), "pgd_step_size": _step_size, "pgd_restarts": _count(1),
                    "random_start": _flag, "seed": _count(0)},
    "corruption": {"corruptions": _corruptions, "severities": _severities,
                   "table": _choice(lambda: ("auto", "cifar", "imagenet", "released")),
                   "seed": _count(0, optional=True), "reference": _path},
}


def make_job(name: str, model_info: Mapping[str, Any], dataset: Any, limit: int | None,
             options: Mapping[str, Any] | None = None, *, data_root: str | None = None,
             cache: dict[Any, Any] | None = None, inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The store's job for analysis ``name`` on ``dataset`` (see :mod:`cutmix_eval.report.store`):
    everything that decides its numbers. The model by its checkpoint's SHA-256, method label
    and the loading overrides given on top of the file (``model_info["loading"]``), so it can
    be looked up before loading a model; the dataset by name, split, :func:`effective_limit`
    and :attr:`~cutmix_eval.data.base.ImageDataset.identity` (where its files are and a
    fingerprint of them); every option, defaults filled in; the other data it reads
    (:func:`job_inputs`, or ``inputs`` when the caller knows them); and the analysis's
    :attr:`Analysis.version`."""
    options = analysis_options(name, options)
    limit = effective_limit(limit, dataset)
    check_job(name, options, dataset, limit)
    if inputs is None:
        inputs = job_inputs(name, dataset, limit, data_root, options, {} if cache is None else cache)
    return {"analysis": name, "version": ANALYSES[name].version,
            "model": {"checkpoint_sha256": model_info.get("checkpoint_sha256"), "method": model_info.get("method"),
                      "loading": dict(model_info.get("loading") or {})},
            "dataset": {"name": dataset.name, "split": dataset.split, "limit": limit, "identity": dataset.identity},
            "options": options, "inputs": dict(inputs)}


def subject_job(name: str, subject: Subject, options: Mapping[str, Any] | None = None,
                inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return make_job(name, subject.model_info, subject.dataset, subject.limit, options, data_root=subject.data_root,
                    cache=subject.cache, inputs=inputs)


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
            force: bool = False, compute: Callable[[], Outcome] | None = None,
            inputs: Mapping[str, Any] | None = None) -> tuple[Record, bool]:
    """The record of analysis ``name`` on ``subject`` (:func:`run_jobs` for one analysis);
    ``compute`` computes a variant the registry does not run, such as a released corrupted
    set, whose other data are then ``inputs``. Returns ``(record, reused)``."""
    job = subject_job(name, subject, options, inputs)
    return _run(store, subject, {name: job}, force, compute=compute)[name]


def run_jobs(store: ResultStore, subject: Subject, options: Mapping[str, Mapping[str, Any] | None], *,
             force: bool = False, report: Reporter | None = None,
             notes: dict[str, str] | None = None) -> dict[str, tuple[Record, bool]]:
    """The records of the analyses ``options`` names (with their options) on ``subject``:
    read from ``store`` when they exist (and not ``force``), else computed and saved. The
    missing ones that share the clean pass over the images (classification, OOD detection,
    native-CAM localization: :data:`cutmix_eval.evaluate.full.SHARED_ANALYSES`) are computed
    together from ONE pass when two or more are missing (:func:`plan`); the others each by
    their :attr:`Analysis.run`. Returns ``{name: (record, reused)}`` in the order asked.
    An analysis the shared pass had to leave out (localization of a model native CAM cannot
    explain) is then computed alone, which fails as it would alone; with ``notes`` (a dict,
    ``evaluate --all``) it is left out instead, and ``notes[name]`` says why.

    Under ``torchrun``, rank 0 decides what exists and alone saves; every rank computes its
    shard (a reused record is read on rank 0 only). Ctrl-C while computing raises a
    ``KeyboardInterrupt`` saying what was not recorded (:func:`not_recorded`)."""
    jobs = {name: subject_job(name, subject, given) for name, given in options.items()}
    return _run(store, subject, jobs, force, report=report, notes=notes)


def plan(names: Sequence[str], dataset: Any) -> list[list[str]]:
    """``names`` (missing analyses of one subject) as computations: the shared-pass ones
    together when two or more can share it (localization only on data with boxes), each
    other one alone; in the order of ``names``."""
    from cutmix_eval.evaluate.full import SHARED_ANALYSES, localization_note

    shared = [n for n in names if n in SHARED_ANALYSES and (n != "localization" or localization_note(dataset) is None)]
    if len(shared) < 2:
        return [[n] for n in names]
    groups: list[list[str]] = []
    for name in names:
        if name not in shared:
            groups.append([name])
        elif name == shared[0]:
            groups.append(shared)
    return groups


def _run(store: ResultStore, subject: Subject, jobs: Mapping[str, dict[str, Any]], force: bool, *,
         report: Reporter | None = None, compute: Callable[[], Outcome] | None = None,
         notes: dict[str, str] | None = None) -> dict[str, tuple[Record, bool]]:
    main = is_main_process()  # under torchrun every rank computes, rank 0 alone reads and writes the store
    loaded = {name: store.load(job) if main and not force else None for name, job in jobs.items()}
    exists = main_decides({name: record is not None for name, record in loaded.items()})
    records = {name: (loaded[name] or Record(store.path_for(job), job, job_key(job), []), True)
               for name, job in jobs.items() if exists[name]}
    for name in records if report else ():
        report([name], 0.0, True)
    missing = [name for name in jobs if name not in records]
    groups = plan(missing, subject.dataset) if compute is None else [missing] if missing else []
    for group in groups:
        start = time.perf_counter()
        with where_things_stand(lambda group=group: not_recorded(group, store)):
            outcomes = iter([(group[0], compute())]) if compute else _compute(group, subject, jobs, notes)
            for name, results in outcomes:  # each saved as soon as it is computed
                path = store.save(jobs[name], results) if main else store.path_for(jobs[name])
                records[name] = (Record(path, jobs[name], job_key(jobs[name]), results), False)
        if report:
            report([name for name in group if name in records], time.perf_counter() - start, False)
    return {name: records[name] for name in jobs if name in records}


def _compute(group: list[str], subject: Subject, jobs: Mapping[str, dict[str, Any]],
             notes: dict[str, str] | None) -> Iterator[tuple[str, Outcome]]:
    """``(name, Results)`` of the analyses ``group`` (from :func:`plan`): one shared pass for
    several, the analysis's own run for one and for any the shared pass left out (unless
    ``notes`` takes its note, see :func:`run_jobs`)."""
    left = list(group)
    if len(group) > 1:
        from cutmix_eval.evaluate.full import evaluate_all

        full = evaluate_all(subject.model, subject.dataset, analyses=group,
                            options={name: jobs[name]["options"] for name in group}, model_info=subject.model_info,
                            data_root=subject.data_root, cache=subject.cache, **subject.common())
        yield from full.results.items()
        left = [name for name in group if name not in full.results]
        if notes is not None:
            notes |= {name: full.notes[name] for name in left}
            left = []
    for name in left:
        yield name, ANALYSES[name].run(subject, **jobs[name]["options"])
