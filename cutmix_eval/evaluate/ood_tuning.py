"""Choosing an OOD detector's hyper-parameters, under one of three protocols.

* ``ood-validation`` (OpenOOD v1.5, ``evaluation_api/evaluator.py: hyperparam_search``):
  every setting of the detector's sweep is scored on the ID validation images and the OOD
  validation images (several validation sets are pooled into one). The first setting with
  the largest AUROC is kept, and the test sets are scored with it.
* ``defaults``: no search. The detector's default settings (OpenOOD's ``postprocessor_args``)
  score every image. This is what runs when there is no validation data.
* ``test-ood-holdout`` (the ODIN paper's protocol, Liang et al. 2018): for each OOD test set,
  the first ``holdout`` images of the ID test set and of that set are held out. The setting
  with the best TNR at TPR 95% on them (ties broken by AUROC) is chosen for that set, and the
  remaining images of both are scored with it. This tunes on the test distribution, which
  OpenOOD and later work treat as a leak, so it runs only on request and is flagged in
  records and reports.

A detector with nothing to tune (an empty sweep, or every axis pinned by the caller) scores
every image, whatever the protocol.

Scoring goes through a *scorer* the caller supplies:
``scorer(parts, grid) -> {part: [scores under each setting of grid]}``. Each part is
``Part(key, start, stop)``, the images ``start:stop`` of one set (``stop`` None = to the
end). Keys are ``"id"``, the OOD test sets' names, and :data:`VALIDATION_ID` and
``validation/<name>`` for validation sets. Post-hoc detectors score arrays of a shared pass;
ODIN runs its own passes. Either way the protocol code is this module's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from cutmix_eval.errors import UserError
from cutmix_eval.metrics.ood import ood_metrics

PROTOCOLS = ("ood-validation", "defaults", "test-ood-holdout")
#: what each searching protocol maximizes (the first setting reaching the maximum wins, as in OpenOOD)
CRITERIA = {"ood-validation": "auroc", "test-ood-holdout": "tnr_at_tpr95, then auroc"}
VALIDATION_ID = "validation/id"
NONE_APPLIES = "no setting of the sweep applies to this model (see trials): the score's settings as given"
LEAK_WARNING = ("tuned on held-out images of each test OOD set (the ODIN paper's protocol); OpenOOD treats this as "
                "test-set leakage, so these numbers are not comparable with OpenOOD v1.5's")


@dataclass(frozen=True)
class Tuning:
    """How hyper-parameters are chosen: ``protocol``, one of :data:`PROTOCOLS`. ``holdout`` is the
    number of images held out at the start of the ID set and of every OOD set, and is used
    only by ``test-ood-holdout``."""

    protocol: str = "defaults"
    holdout: int = 1000

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise UserError(f"unknown tuning protocol {self.protocol!r}; choose from {', '.join(PROTOCOLS)}")
        if int(self.holdout) < 1:
            raise UserError(f"the tuning holdout must be at least 1 image, not {self.holdout}")

    @property
    def searches(self) -> bool:
        return self.protocol != "defaults"


class Part(NamedTuple):
    """Images ``start:stop`` of the set ``key`` (``stop`` None: to the end)."""

    key: str
    start: int = 0
    stop: int | None = None

    def label(self) -> str:
        """``key`` with its range when not the whole set: ``gaussian [0:1000]``, ``id [1000:]``."""
        whole = self.start == 0 and self.stop is None
        return self.key if whole else f"{self.key} [{self.start}:{'' if self.stop is None else self.stop}]"


Scorer = Callable[[Sequence[Part], Sequence[dict]], dict[Part, list[np.ndarray]]]


def validation_key(name: str) -> str:
    return f"validation/{name}"


def sweep_grid(sweep: Mapping[str, Sequence[Any]], pinned: Mapping[str, Any] = ()) -> list[dict[str, Any]]:
    """Every setting of ``sweep`` (parameter -> values) with the ``pinned`` parameters left out,
    in OpenOOD's order (``recursive_generator``: the first parameter varies fastest); ``[{}]``
    when nothing is left to vary."""
    axes = {name: tuple(values) for name, values in sweep.items() if name not in dict(pinned)}
    names = list(axes)
    return [dict(zip(names, reversed(values))) for values in itertools.product(*(axes[n] for n in reversed(names)))]


def _quality(protocol: str, id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[float, ...]:
    metrics = ood_metrics(id_scores, ood_scores)
    return (metrics.auroc,) if protocol == "ood-validation" else (metrics.tnr_at_tpr95, metrics.auroc)


def _search(protocol: str, grid: Sequence[dict], id_scores: Sequence[np.ndarray | str],
            ood_scores: Sequence[np.ndarray | str]) -> tuple[int | None, list[dict]]:
    """The index of the first setting of the best quality (None if the scorer could apply
    none), and every setting's metrics. A setting the scorer could not apply (a reason
    instead of scores) is recorded as skipped."""
    trials, quality = [], {}
    for k, (setting, i, o) in enumerate(zip(grid, id_scores, ood_scores)):
        if isinstance(i, str) or isinstance(o, str):
            trials.append({"params": setting, "skipped": i if isinstance(i, str) else o})
            continue
        quality[k] = q = _quality(protocol, i, o)
        trials.append({"params": setting, "auroc": q[-1], **({"tnr_at_tpr95": q[0]} if len(q) > 1 else {})})
    return (max(quality, key=lambda k: quality[k]) if quality else None), trials


def _pool(scores: Sequence[np.ndarray | str]) -> np.ndarray | str:
    """The validation sets' scores as one set (a skip reason if any set was skipped)."""
    reasons = [s for s in scores if isinstance(s, str)]
    return reasons[0] if reasons else np.concatenate(scores)


@dataclass
class Tuned:
    """A detector's scores under the protocol. ``pairs``: ``{set: (ID scores, OOD scores)}``.
    ``per_sample``: the record's per-image arrays. ``used``: the images scored per key
    (``"id"`` and each OOD set). ``record``: what the Result's ``config["tuning"]`` keeps."""

    pairs: dict[str, tuple[np.ndarray, np.ndarray]]
    per_sample: dict[str, np.ndarray]
    used: dict[str, int]
    record: dict[str, Any] = field(default_factory=dict)


def tune_and_score(tuning: Tuning, grid: Sequence[dict], scorer: Scorer, sizes: Mapping[str, int],
                   indices: Mapping[str, np.ndarray], validation: Sequence[str] = ()) -> Tuned:
    """Score the ID set (key ``"id"``) and every OOD set of ``sizes`` (key -> image count) under
    ``tuning`` (see the module docstring). ``grid``: the settings a search may choose from
    (:func:`sweep_grid`; ``[{}]``: nothing to tune); ``defaults`` ignores it. ``indices``: the
    dataset positions of each key's images, for the per-image record. ``validation`` names the
    OOD validation sets (keys ``validation/<name>``), which ``ood-validation`` needs."""
    ood_names = [key for key in sizes if key != "id"]
    record: dict[str, Any] = {"protocol": tuning.protocol}
    if not tuning.searches or len(grid) < 2:
        grid = [{}]
        record["searched"] = "no search: the score's settings as given" if tuning.searches else \
            "no search (protocol defaults): the score's settings as given"
    elif tuning.protocol == "test-ood-holdout":
        tuned = _holdout(tuning, grid, scorer, sizes, indices, ood_names, record)
        if tuned is not None:
            return tuned
        grid = [{}]
    chosen = grid[0]
    if len(grid) > 1:
        if not validation:
            raise UserError("tuning on OOD validation sets needs at least one (pass --tune-on)")
        parts = [Part(VALIDATION_ID), *(Part(validation_key(n)) for n in validation)]
        scored = scorer(parts, grid)
        pooled = [_pool([scored[p][k] for p in parts[1:]]) for k in range(len(grid))]
        best, trials = _search(tuning.protocol, grid, scored[parts[0]], pooled)
        if best is None:
            chosen = {}
            record |= {"searched": NONE_APPLIES, "trials": trials}
        else:
            chosen = grid[best]
            record |= {"criterion": CRITERIA[tuning.protocol], "chosen": chosen, "trials": trials,
                       "validation_sets": list(validation)}
    parts = [Part("id"), *(Part(n) for n in ood_names)]
    scored = {part.key: values[0] for part, values in scorer(parts, [chosen]).items()}
    per_sample = {"id/index": indices["id"], "id/score": scored["id"]}
    for name in ood_names:
        per_sample |= {f"{name}/index": indices[name], f"{name}/score": scored[name]}
    return Tuned({n: (scored["id"], scored[n]) for n in ood_names}, per_sample, dict(sizes), record)


def _holdout(tuning: Tuning, grid: Sequence[dict], scorer: Scorer, sizes: Mapping[str, int],
             indices: Mapping[str, np.ndarray], ood_names: Sequence[str], record: dict) -> Tuned | None:
    """ODIN's protocol; None (``record`` saying why) when no setting of ``grid`` applies."""
    held = tuning.holdout
    for key, size in sizes.items():
        if size <= held:
            raise UserError(f"test-OOD tuning holds out the first {held} images of every set to tune on, but "
                            f"{'the ID set' if key == 'id' else key} has only {size}; lower --holdout or use more "
                            "images")
    tuned = scorer([Part("id", 0, held), *(Part(n, 0, held) for n in ood_names)], grid)
    chosen: dict[str, int] = {}
    trials: dict[str, list[dict]] = {}
    for name in ood_names:
        best, trials[name] = _search(tuning.protocol, grid, tuned[Part("id", 0, held)], tuned[Part(name, 0, held)])
        if best is None:  # a setting applies or not whatever the set: none applies to any
            record |= {"searched": NONE_APPLIES, "trials": trials[name]}
            return None
        chosen[name] = best
    scores: dict[str, np.ndarray] = {}
    for k in sorted(set(chosen.values())):  # one scoring per setting chosen, whichever sets chose it
        parts = [Part("id", held), *(Part(n, held) for n in ood_names if chosen[n] == k)]
        scored = scorer(parts, [grid[k]])
        scores |= {f"{p.key}/score": scored[p][0] for p in parts[1:]}
        scores |= {f"id/score@{p.key}": scored[parts[0]][0] for p in parts[1:]}
    per_sample = {"id/index": indices["id"][held:]}
    for name in ood_names:
        per_sample |= {f"id/score@{name}": scores[f"id/score@{name}"], f"{name}/index": indices[name][held:],
                       f"{name}/score": scores[f"{name}/score"]}
    pairs = {n: (per_sample[f"id/score@{n}"], per_sample[f"{n}/score"]) for n in ood_names}
    record |= {"criterion": CRITERIA[tuning.protocol], "holdout": held, "evaluated_from_index": held,
               "chosen": {n: grid[k] for n, k in chosen.items()}, "trials": trials, "warning": LEAK_WARNING}
    return Tuned(pairs, per_sample, {key: size - held for key, size in sizes.items()}, record)
