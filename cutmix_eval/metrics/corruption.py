"""Corruption robustness aggregates (Hendrycks & Dietterich, ICLR 2019).

Input is an **error table** ``E``: ``E(c, s)``, the top-1 error of a model on corruption
``c`` at each evaluated severity ``s``, a fraction in [0, 1] (never a percentage). The
evaluated severities ``S`` are ``severities=`` (ascending, among 1..5; default all five),
one column each, in that order. The table is given as a mapping ``{corruption: |S| errors,
lowest severity first}`` or as a ``C x |S|`` array with ``names`` (one corruption name per
row). Names and groups are :data:`GROUPS` (defined here, torch-free, and used by the registry
of :mod:`cutmix_eval.corruptions`): 15 benchmark corruptions in the groups noise, blur,
weather and digital, and 4 extra ("validation") ones. Clean errors are fractions too.

**Which severities a mean or sum is over: the evaluated ones, ``S``.** With all five this
is the published convention; with fewer (e.g. severities 3-5), every aggregate below is the
same formula over ``S`` only, and :func:`corruption_summary`'s ``note`` says so
(:func:`describe_severities` words it). Such numbers are not comparable with 5-severity ones.

**Which corruptions a mean is over.** By default, the benchmark corruptions present in the
table, in table order; the extra four are left out, as in the published tables. A table
holding only some of the 15 gives means over those, which are then not comparable with
full-benchmark numbers: :func:`corruption_summary` says so in its ``note``. Pass
``corruptions=[...]`` to choose the corruptions yourself (e.g. the extras).

Conventions (every result a fraction; mCE 1.0 is the paper's 100%):

* :func:`mean_corruption_error` (CIFAR-10-C / CIFAR-100-C, as AugMix reports it): the
  unnormalized mean of ``E(c, s)`` over the chosen corruptions and ``S``.
* :func:`group_mean_errors`: per group, the mean of ``E(c, s)`` over the group's
  corruptions present in the table and ``S``.
* :func:`corruption_errors`: ``CE_c = sum_s E(c, s) / sum_s E_ref(c, s)``; :func:`mce` is
  their mean over the chosen corruptions (ImageNet-C mCE with the AlexNet reference).
* :func:`relative_corruption_errors`: ``relCE_c = sum_s (E(c, s) - E_clean) /
  sum_s (E_ref(c, s) - E_ref_clean)``; :func:`relative_mce` is their mean.

Sums ``sum_s`` run over ``S``. The reference ``E_ref`` is a :class:`CorruptionReference`:
per corruption the reference model's mean error over *its* severities (so ``sum_s E_ref(c,
s) = |S| * mean``) and its clean error; CE needs the reference's severities to be ``S``.
:data:`ALEXNET_ERRORS`, the default, holds AlexNet's published ImageNet-C numbers, which are
only means over all 5 severities: its CE / mCE are defined for ``S`` = 1..5 alone, and for
any other ``S`` they raise ``ValueError`` rather than give a wrong number. Data without an
AlexNet reference (CIFAR, custom data), or fewer severities, are normalized by a reference
model of the study evaluated at the same severities, e.g. the baseline:
``CorruptionReference.from_table(baseline_E, clean_error=..., name="baseline",
severities=S)``; an ``E`` table at all 5 severities is also accepted wherever a reference
is (without a clean error).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Union

import numpy as np

from cutmix_eval.metrics._checks import check_finite_real

__all__ = [
    "ALEXNET_ERRORS",
    "ALL",
    "BENCHMARK",
    "CorruptionReference",
    "CorruptionSummary",
    "GROUPS",
    "SEVERITIES",
    "corruption_errors",
    "corruption_summary",
    "describe_severities",
    "error_table",
    "group_mean_errors",
    "mce",
    "mean_corruption_error",
    "relative_corruption_errors",
    "relative_mce",
    "severity_scope",
]

#: table order: the 15 benchmark corruptions by group, then the 4 extra (validation) ones
GROUPS: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
    "extra": ("speckle_noise", "gaussian_blur", "spatter", "saturate"),
}
BENCHMARK = tuple(name for group in ("noise", "blur", "weather", "digital") for name in GROUPS[group])
ALL = BENCHMARK + GROUPS["extra"]
SEVERITIES = (1, 2, 3, 4, 5)

#: an error table: ``{corruption: one error per severity}`` or a ``C x |S|`` array (with ``names``)
Errors = Union[Mapping[str, Sequence[float]], np.ndarray, Sequence[Sequence[float]]]


def _check_fractions(values: np.ndarray, what: str) -> np.ndarray:
    """``values`` as float64 if finite and in [0, 1]; a ``ValueError`` naming ``what`` otherwise."""
    values = check_finite_real(np.asarray(values), what, "errors").astype(np.float64)
    outside = values[(values < 0) | (values > 1)]
    if outside.size:
        raise ValueError(f"{what} holds {outside.size} values outside [0, 1] (e.g. {outside.flat[0]:g}); errors are "
                         f"fractions, not percentages")
    return values


def describe_severities(severities: Sequence[int]) -> str:
    """``severities`` in words: ``"severity 3"``, ``"severities 3-5"`` (a run of consecutive
    levels) or ``"severities 1, 3, 5"``."""
    levels = list(severities)
    if len(levels) == 1:
        return f"severity {levels[0]}"
    if levels == list(range(levels[0], levels[-1] + 1)):
        return f"severities {levels[0]}-{levels[-1]}"
    return f"severities {', '.join(map(str, levels))}"


def severity_scope(severities: Sequence[int], form: str = " over {}") -> str:
    """``""`` for all 5 severities (the published convention, said nowhere), else ``form``
    filled with :func:`describe_severities` (e.g. ``" over severities 3-5"``): appended to
    the label of every aggregate over fewer severities."""
    return "" if tuple(severities) == SEVERITIES else form.format(describe_severities(severities))


def _check_severities(severities: Sequence[int] | None) -> tuple[int, ...]:
    """The evaluated severities as a tuple (None: all five); a ``ValueError`` unless they are
    ascending, distinct and among 1..5."""
    if severities is None:
        return SEVERITIES
    levels = tuple(int(s) for s in severities)
    if not levels or any(s not in SEVERITIES for s in levels) or list(levels) != sorted(set(levels)):
        raise ValueError(f"severities must be ascending, distinct levels among 1-5 (one error column each); got "
                         f"{list(severities)}")
    return levels


def error_table(errors: Errors, names: Sequence[str] | None = None, what: str = "errors",
                severities: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """The checked table: ``{corruption: float64 array of its errors at the severities}``, in
    table order.

    ``errors`` is a mapping (then ``names`` must be None) or a ``C x |S|`` array with ``C``
    ``names``; ``severities`` (default 1-5) are its columns. Raises ``ValueError`` for an
    unknown or repeated name, a row that is not one error per severity, a value that is
    NaN, infinite or outside [0, 1], or an empty table.
    """
    levels = _check_severities(severities)
    if isinstance(errors, Mapping):
        if names is not None:
            raise ValueError(f"{what}: names go with a C x S array, not with a mapping (its keys are the names)")
        rows = list(errors.items())
    else:
        array = np.asarray(errors)
        count = None if names is None else len(names)
        if array.ndim != 2 or count != len(array):
            raise ValueError(f"{what}: a C x S array needs one corruption name per row; got shape {array.shape} and "
                             f"{'no' if count is None else count} names")
        rows = list(zip(names, array))
    table: dict[str, np.ndarray] = {}
    for name, row in rows:
        if name not in ALL:
            raise ValueError(f"{what}: unknown corruption {name!r}; expected names from {', '.join(ALL)}")
        if name in table:
            raise ValueError(f"{what}: corruption {name!r} appears twice")
        values = np.asarray(row)
        if values.shape != (len(levels),):
            raise ValueError(f"{what}[{name!r}] has shape {values.shape}; expected one error per evaluated severity "
                             f"({describe_severities(levels)}: {len(levels)} values)")
        table[name] = _check_fractions(values, f"{what}[{name!r}]")
    if not table:
        raise ValueError(f"{what}: the table is empty; expected errors for at least one corruption")
    return {name: table[name] for name in ALL if name in table}


def _check_error(value: float, what: str) -> float:
    """A single error: a real number in [0, 1]."""
    array = np.asarray(value)
    if array.shape != ():
        raise ValueError(f"{what} must be a single number, got shape {array.shape}")
    return float(_check_fractions(array, what))


@dataclass(frozen=True)
class CorruptionReference:
    """The model whose errors normalize CE and relative CE.

    ``mean_errors[c]`` is its mean error over ``severities`` (default all 5) of corruption
    ``c`` (so ``sum_s E_ref(c, s) = len(severities) * mean_errors[c]``), ``clean_error`` its
    clean error (needed only for relative CE). Values are checked fractions; the mapping is
    read-only.
    """

    name: str
    mean_errors: Mapping[str, float]
    clean_error: float | None = None
    severities: tuple[int, ...] = SEVERITIES

    def __post_init__(self) -> None:
        what = f"reference {self.name}"
        object.__setattr__(self, "severities", _check_severities(self.severities))
        for corruption, value in self.mean_errors.items():
            if corruption not in ALL:
                raise ValueError(f"{what}: unknown corruption {corruption!r}; expected names from {', '.join(ALL)}")
            _check_error(value, f"{what} error of {corruption!r}")
        checked = {c: float(self.mean_errors[c]) for c in ALL if c in self.mean_errors}
        object.__setattr__(self, "mean_errors", MappingProxyType(checked))
        if self.clean_error is not None:
            object.__setattr__(self, "clean_error", _check_error(self.clean_error, f"{what} clean error"))

    @classmethod
    def from_table(cls, errors: Errors, clean_error: float | None = None, *, name: str = "reference",
                   names: Sequence[str] | None = None, severities: Sequence[int] | None = None
                   ) -> CorruptionReference:
        """A reference from another model's error table at ``severities`` (default all 5) and
        its clean error."""
        table = error_table(errors, names, f"reference {name} errors", severities)
        return cls(name, {c: float(row.mean()) for c, row in table.items()}, clean_error, _check_severities(severities))


ALEXNET_ERRORS = CorruptionReference("AlexNet", {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
    "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948, "zoom_blur": 0.798360,
    "snow": 0.866816, "frost": 0.826572, "fog": 0.819324, "brightness": 0.564592,
    "contrast": 0.853204, "elastic_transform": 0.646056, "pixelate": 0.717840, "jpeg_compression": 0.606500,
}, clean_error=0.4348)
"""AlexNet on ImageNet-C (Hendrycks & Dietterich 2019): per benchmark corruption the mean
top-1 error over the 5 severities, and the clean error 0.4348; the default reference of
:func:`corruption_errors` and :func:`relative_corruption_errors`. It has no entries for
the 4 extra corruptions, and no per-severity errors: it normalizes 5-severity tables only."""

Reference = Union[CorruptionReference, Mapping[str, Sequence[float]]]


def _as_reference(reference: Reference) -> CorruptionReference:
    return reference if isinstance(reference, CorruptionReference) else CorruptionReference.from_table(reference)


def _selection(table: Mapping[str, np.ndarray], corruptions: Sequence[str] | None) -> tuple[str, ...]:
    """The corruptions a mean is over, in table order: ``corruptions`` (each must be in the
    table), else the benchmark corruptions present."""
    if corruptions is None:
        chosen = tuple(c for c in BENCHMARK if c in table)
        if not chosen:
            raise ValueError(f"the error table holds none of the 15 benchmark corruptions (it has "
                             f"{', '.join(table)}); pass corruptions=[...] to average those")
        return chosen
    if isinstance(corruptions, str):
        raise ValueError(f"corruptions must be a list of names, not the string {corruptions!r}")
    missing = [c for c in dict.fromkeys(corruptions) if c not in table]
    if missing or not corruptions:
        raise ValueError(f"corruptions {', '.join(missing) or '(none)'} requested but the error table has "
                         f"{', '.join(table)}; choose from those")
    return tuple(c for c in table if c in corruptions)


def mean_corruption_error(errors: Errors, *, corruptions: Sequence[str] | None = None,
                          names: Sequence[str] | None = None, severities: Sequence[int] | None = None) -> float:
    """The CIFAR-C mean corruption error: the unnormalized mean of ``E(c, s)`` over the chosen
    corruptions (default: the benchmark ones in the table, all 15 for a full table) and the
    evaluated severities (default all 5)."""
    table = error_table(errors, names, severities=severities)
    return float(np.mean([table[c] for c in _selection(table, corruptions)]))


def group_mean_errors(errors: Errors, *, names: Sequence[str] | None = None,
                      severities: Sequence[int] | None = None) -> dict[str, float]:
    """Per group (noise, blur, weather, digital, extra; groups with no corruption in the
    table are left out): the mean of ``E(c, s)`` over its corruptions in the table and the
    evaluated severities (default all 5)."""
    table = error_table(errors, names, severities=severities)
    return {group: float(np.mean([table[c] for c in members if c in table]))
            for group, members in GROUPS.items() if any(c in table for c in members)}


def _reference_sum(reference: CorruptionReference, corruption: str, severities: tuple[int, ...]) -> float:
    """``sum_s E_ref(c, s)`` over ``severities`` (``len(severities) * mean``); an error if the
    reference lacks the corruption or its means are over other severities."""
    if reference.severities != severities:
        raise ValueError(f"reference {reference.name}'s errors are means over "
                         f"{describe_severities(reference.severities)}, so CE over {describe_severities(severities)} "
                         f"cannot be computed from them; normalize by a reference model evaluated at "
                         f"{describe_severities(severities)} (CorruptionReference.from_table(..., severities=...))")
    if corruption not in reference.mean_errors:
        raise ValueError(f"reference {reference.name} has no error for {corruption!r} (it covers "
                         f"{', '.join(reference.mean_errors)}); leave it out with corruptions=[...] or normalize by a "
                         f"reference model that has it (CorruptionReference.from_table)")
    return len(severities) * reference.mean_errors[corruption]


def corruption_errors(errors: Errors, reference: Reference = ALEXNET_ERRORS, *,
                      corruptions: Sequence[str] | None = None, names: Sequence[str] | None = None,
                      severities: Sequence[int] | None = None) -> dict[str, float]:
    """``CE_c = sum_s E(c, s) / sum_s E_ref(c, s)``, sums over the evaluated severities
    (default all 5), for each chosen corruption (default: the benchmark ones in the table),
    in table order. ``reference`` is a :class:`CorruptionReference` over the same severities
    (default AlexNet, 5 severities only) or another model's 5-severity error table; every
    chosen corruption must be in it with a nonzero error."""
    levels = _check_severities(severities)
    table, ref = error_table(errors, names, severities=levels), _as_reference(reference)
    result = {}
    for c in _selection(table, corruptions):
        denominator = _reference_sum(ref, c, levels)
        if denominator == 0:
            raise ValueError(f"CE of {c!r} is undefined: reference {ref.name}'s error under it is 0")
        result[c] = float(table[c].sum() / denominator)
    return result


def mce(errors: Errors, reference: Reference = ALEXNET_ERRORS, *, corruptions: Sequence[str] | None = None,
        names: Sequence[str] | None = None, severities: Sequence[int] | None = None) -> float:
    """mCE: the mean of :func:`corruption_errors` over the chosen corruptions (default: the
    benchmark ones in the table), normalized by ``reference`` (default AlexNet)."""
    values = corruption_errors(errors, reference, corruptions=corruptions, names=names, severities=severities)
    return float(np.mean(list(values.values())))


def relative_corruption_errors(errors: Errors, clean_error: float, reference: Reference = ALEXNET_ERRORS, *,
                               corruptions: Sequence[str] | None = None, names: Sequence[str] | None = None,
                               severities: Sequence[int] | None = None) -> dict[str, float]:
    """``relCE_c = sum_s (E(c, s) - E_clean) / sum_s (E_ref(c, s) - E_ref_clean)``, sums over
    the evaluated severities (default all 5), for each chosen corruption (default: the
    benchmark ones in the table), in table order. ``reference`` (over the same severities)
    must carry a clean error (AlexNet's, 0.4348, by default), and its mean error under each
    chosen corruption must exceed it (else relCE is undefined)."""
    levels = _check_severities(severities)
    table, ref = error_table(errors, names, severities=levels), _as_reference(reference)
    clean = _check_error(clean_error, "clean_error")
    if ref.clean_error is None:
        raise ValueError(f"reference {ref.name} has no clean error; relative CE needs one: "
                         f"CorruptionReference.from_table(errors, clean_error=...)")
    result = {}
    for c in _selection(table, corruptions):
        denominator = _reference_sum(ref, c, levels) - len(levels) * ref.clean_error
        if denominator <= 0:
            raise ValueError(f"relative CE of {c!r} is undefined: reference {ref.name}'s mean error under it "
                             f"({ref.mean_errors[c]:g}) is not above its clean error ({ref.clean_error:g})")
        result[c] = float((table[c] - clean).sum() / denominator)
    return result


def relative_mce(errors: Errors, clean_error: float, reference: Reference = ALEXNET_ERRORS, *,
                 corruptions: Sequence[str] | None = None, names: Sequence[str] | None = None,
                 severities: Sequence[int] | None = None) -> float:
    """Relative mCE: the mean of :func:`relative_corruption_errors` over the chosen corruptions."""
    values = relative_corruption_errors(errors, clean_error, reference, corruptions=corruptions, names=names,
                                        severities=severities)
    return float(np.mean(list(values.values())))


@dataclass(frozen=True)
class CorruptionSummary:
    """Every aggregate of one error table, and what the means are over.

    ``metrics`` keys: ``mean_error`` (:func:`mean_corruption_error`), ``group/<group>``,
    and, when given, ``clean_error``; with a reference ``mce`` and ``ce/<corruption>``;
    with a reference and both clean errors ``relative_mce`` and ``relative_ce/<corruption>``.
    ``note`` states the corruptions and severities averaged (and whether they are the full
    benchmark) and the reference.
    """

    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    note: str
    metrics: dict[str, float]


def _coverage(chosen: tuple[str, ...], severities: tuple[int, ...]) -> str:
    """What the means are over, said from the corruptions and severities themselves."""
    levels = "5 severities" if severities == SEVERITIES else describe_severities(severities)
    if set(chosen) == set(BENCHMARK):
        what, caveat = "all 15 benchmark corruptions", ","
    elif set(chosen) < set(BENCHMARK):
        what, caveat = f"{len(chosen)} of the 15 benchmark corruptions ({', '.join(chosen)})", ","
    else:
        what, caveat = f"{len(chosen)} corruptions ({', '.join(chosen)})", ", not the 15-corruption benchmark:"
    note = f"means over {what} x {levels}"
    if set(chosen) == set(BENCHMARK) and severities == SEVERITIES:
        return note
    return f"{note}{caveat} not comparable with full-benchmark numbers"


def corruption_summary(errors: Errors, clean_error: float | None = None, reference: Reference | None = None, *,
                       corruptions: Sequence[str] | None = None, names: Sequence[str] | None = None,
                       severities: Sequence[int] | None = None) -> CorruptionSummary:
    """All aggregates of ``errors`` over the chosen corruptions (default: the benchmark ones
    in the table) and the evaluated severities (default all 5), normalized by ``reference``
    when one is given (``ALEXNET_ERRORS`` for ImageNet-C at 5 severities; a reference model
    of the study evaluated at the same severities elsewhere)."""
    levels = _check_severities(severities)
    table = error_table(errors, names, severities=levels)
    chosen = _selection(table, corruptions)
    metrics = {"mean_error": mean_corruption_error(table, corruptions=chosen, severities=levels)}
    metrics |= {f"group/{g}": value for g, value in group_mean_errors(table, severities=levels).items()}
    note = _coverage(chosen, levels)
    if clean_error is not None:
        metrics["clean_error"] = _check_error(clean_error, "clean_error")
    if reference is not None:
        ref = _as_reference(reference)
        ces = corruption_errors(table, ref, corruptions=chosen, severities=levels)
        metrics |= {"mce": float(np.mean(list(ces.values())))} | {f"ce/{c}": v for c, v in ces.items()}
        note += f"; CE normalized by {ref.name}"
        if clean_error is not None and ref.clean_error is not None:
            rel = relative_corruption_errors(table, clean_error, ref, corruptions=chosen, severities=levels)
            metrics |= {"relative_mce": float(np.mean(list(rel.values())))}
            metrics |= {f"relative_ce/{c}": v for c, v in rel.items()}
    return CorruptionSummary(chosen, levels, note, metrics)
