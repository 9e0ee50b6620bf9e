"""What an analysis is, and the registry that holds them.

An :class:`Analysis` is one registered object: its name and version, its options (each
with its default, its parser and its help), ``run(subject, **options) -> list[Result]``
over one model on one labelled dataset (a :class:`Subject`), how it joins the clean pass
over the images it shares with other analyses (:class:`PassUse`), what else it reads
(``inputs``, part of its job key) and its report view (tables, figure:
:class:`~cutmix_eval.report.view.View`). Each analysis is one module of this package
that calls :func:`register_analysis`; ``analyses/__init__.py`` imports them, in the
report's order. The command line, studies, the quick start, ``evaluate --all`` and
reports iterate the registry.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cutmix_eval.errors import UserError
from cutmix_eval.registry import Registry
from cutmix_eval.report.view import View
from cutmix_eval.results import Result
from cutmix_eval.settings import RunSettings

Outcome = list[Result]  # what an analysis returns: its Results, in the order they are recorded


def effective_limit(limit: int | None, dataset: Any) -> int | None:
    """``limit`` as a job keys it: ``None`` (every image) when it covers the whole dataset, so
    ``--limit 5000`` on 2,000 images is the same job as no limit."""
    return None if limit is None or limit >= len(dataset) else limit


def cached(cache: dict[Any, Any], key: Any, make: Callable[[], Any]) -> Any:
    """``cache[key]``, made by ``make()`` the first time."""
    if key not in cache:
        cache[key] = make()
    return cache[key]


@dataclass
class Subject:
    """One model on one dataset, and how to run it (``settings``, with the model's identity
    record; ``data_root``: where the other data an analysis reads are found).

    ``settings.limit`` is stored as :func:`effective_limit` makes it. The labelled pass
    (logits of every image) is computed once and shared by classification, calibration and
    the ID side of OOD detection; datasets an analysis reads besides (OOD sets, the
    Mahalanobis fit set) are built once and shared by the job's identity and the analysis
    (``cache``).
    """

    model: Any
    dataset: Any
    settings: RunSettings = RunSettings()
    data_root: str | None = None
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.settings = self.settings.replace(limit=effective_limit(self.settings.limit, self.dataset))

    @property
    def limit(self) -> int | None:
        return self.settings.limit

    @property
    def model_info(self) -> dict[str, Any]:
        return self.settings.model_record(self.model)

    @property
    def num_images(self) -> int:
        return len(self.dataset) if self.limit is None else self.limit

    def labelled_pass(self):
        from cutmix_eval.evaluate.classification import labelled_pass

        return cached(self.cache, "labelled pass",
                      lambda: labelled_pass(self.model, self.dataset, settings=self.settings))


@dataclass(frozen=True)
class Option:
    """One option of an analysis: its ``name`` (the keyword of ``run``, of a study's
    ``[analyses.NAME]`` table and of :func:`run_analysis`), its ``default`` and ``parse(value,
    name) -> canonical value`` (accepts the command line's text and what TOML gives; raises
    a UserError naming the option), ``help`` and ``shown``: the default as the command line
    writes it, when that is not ``str(default)`` (``"0:0.1:1"``, ``"1/255,2/255"``). The command
    line builds its flags from these (:func:`cutmix_eval.cli._common.add_options`)."""

    name: str
    default: Any
    parse: Callable[[Any, str], Any]
    help: str = ""
    shown: str = ""


@dataclass(frozen=True)
class PassUse:
    """How an analysis joins the clean pass a subject's analyses share (one forward per image
    giving logits, pooled features and the last feature map, :func:`~cutmix_eval.evaluate.full.shared_pass`).

    ``joins(subject, options)``: whether it can (else it runs alone, by its ``run``);
    ``consumer(subject, options)``: an object whose
    ``update(batch, images, logits, pooled, fmap)`` sees each batch of the pass (or None);
    ``finish(subject, shared, consumer, options)``: its Results from the pass's
    :class:`~cutmix_eval.evaluate.full.SharedPass`, or a note (str) when the pass had to leave
    it out."""

    finish: Callable[..., Outcome | str]
    joins: Callable[[Subject, Mapping[str, Any]], bool] = lambda subject, options: True
    consumer: Callable[[Subject, Mapping[str, Any]], Any] = lambda subject, options: None


@dataclass(frozen=True)
class Analysis:
    """An analysis by name (see the module docstring).

    The ``version`` is part of every job (:func:`~cutmix_eval.analyses.jobs.make_job`), so a
    record is reused only by the version that computed it. **Bump it in any change that alters
    the analysis's numbers** (a metric fix, another default, another convention): records of
    the old version are then computed again, with a warning naming them, and reports keep only
    the newest record of a checkpoint (:func:`cutmix_eval.report.comparison.current_records`).

    ``inputs(subject, options)``: what it reads besides its model and dataset, by identity (OOD
    sets, a reference checkpoint's SHA-256), part of the job; ``check(options, dataset,
    num_images)``: what can only be checked against the data, before any work; ``settle(options)
    -> options``: options that fix others, applied after parsing (a released corrupted set's
    table has no seed), so equal evaluations key alike."""

    name: str
    version: int
    summary: str
    options: tuple[Option, ...]
    run: Callable[..., Outcome]
    view: View
    shared: PassUse | None = None
    inputs: Callable[[Subject, Mapping[str, Any]], dict[str, Any]] | None = None
    check: Callable[[Mapping[str, Any], Any, int], None] | None = None
    settle: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        names = list(inspect.signature(self.run).parameters)[1:]
        if names != [o.name for o in self.options]:
            raise ValueError(f"analysis {self.name}: run takes {names}, its options are "
                             f"{[o.name for o in self.options]}")

    def defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self.options}

    def parse_options(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every option: the defaults overridden by ``given`` (unknown names refused), each value
        read by its parser, so a study file may write the command line's syntax (``fractions =
        "0:0.1:1"``, ``eps = ["8/255"]``) and every mistake is one UserError before any work.
        Values come out canonical (lists as tuples, numbers as floats), so the command line, a
        study and Python defaults key alike."""
        unknown = sorted(set(given or {}) - {o.name for o in self.options})
        if unknown:
            raise UserError(f"analysis {self.name} has no option {', '.join(unknown)}; its options: "
                            f"{', '.join(o.name for o in self.options)}")
        merged = self.defaults() | dict(given or {})
        parsed = {o.name: o.parse(merged[o.name], o.name) for o in self.options}
        parsed = {k: tuple(v) if isinstance(v, list) else v for k, v in parsed.items()}
        return self.settle(parsed) if self.settle else parsed


ANALYSES: Registry[Analysis] = Registry("analysis")


def register_analysis(analysis: Analysis) -> Analysis:
    """Add ``analysis`` to the registry (a second analysis of one name is refused)."""
    ANALYSES.register(analysis.name, analysis)
    return analysis


def get_analysis(name: str) -> Analysis:
    """The registered analysis ``name``; a UserError naming the close matches when unknown."""
    return ANALYSES.get(name)


def list_analyses(pattern: str = "*") -> list[str]:
    """The analyses' names, in the report's order (``pattern``: a shell wildcard)."""
    return ANALYSES.names(pattern)


def analysis_options(name: str, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:meth:`Analysis.parse_options` of analysis ``name``."""
    return get_analysis(name).parse_options(given)


def check_job(name: str, options: Mapping[str, Any], dataset: Any, num_images: int) -> None:
    """The analysis's own check of its options against the data (its first ``num_images``)."""
    analysis = get_analysis(name)
    if analysis.check is not None:
        analysis.check(options, dataset, num_images)


def views() -> dict[str, View]:
    """Each analysis's report view, in the report's order."""
    return {name: analysis.view for name, analysis in ANALYSES.items()}


def run_analysis(name: str, model: Any, dataset: Any, *, settings: RunSettings = RunSettings(),
                 data_root: str | None = None, **options: Any) -> Outcome:
    """Analysis ``name`` of ``model`` on ``dataset`` (its first ``settings.limit`` images): its
    Results, nothing written. ``options`` are the analysis's (:func:`analysis_options`: the
    names and syntaxes of study files, checked the same way, e.g. ``fractions="0:0.1:1"``);
    ``settings``: how to run it and what the Results say about the model
    (``settings.model_info``, default its architecture and class count; commands pass the
    checkpoint's identity); ``data_root``: where the other data it reads are found (OOD
    sets, the Mahalanobis fit set)."""
    analysis = get_analysis(name)
    options = analysis.parse_options(options)
    subject = Subject(model, dataset, settings, data_root=data_root)
    check_job(name, options, dataset, subject.num_images)
    return analysis.run(subject, **options)
