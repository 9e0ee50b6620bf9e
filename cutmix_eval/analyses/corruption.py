"""Common corruptions, applied on the fly: top-1 error per corruption and severity, means
per group, and CE/mCE against a reference model (AlexNet's published errors on ImageNet
data, a reference checkpoint, or in reports the baseline column)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cutmix_eval.analyses.base import Analysis, Option, Outcome, Subject, cached, register_analysis
from cutmix_eval.analyses.options import choice, count, path, texts
from cutmix_eval.errors import UserError
from cutmix_eval.metrics.corruption import BENCHMARK, CorruptionReference, mce, severity_scope
from cutmix_eval.report.store import Record
from cutmix_eval.report.table import LOWER, Cell, Row
from cutmix_eval.report.view import Interval, Metric, TableSpec, View


def run(subject: Subject, corruptions: str | tuple[str, ...] = "all", severities: tuple[int, ...] = (1, 2, 3, 4, 5),
        table: str = "auto", seed: int | None = 0, reference: str | None = None) -> Outcome:
    """On-the-fly corruptions of ``subject.dataset``, or with ``table="released"`` the slices of
    the released corrupted set it is (``cifar10-c``, ``cifar100-c``, ``imagenet-c``: the first
    slice on disk stands for the release) and the clean error from its clean counterpart
    (:func:`clean_set`). ``reference``: a checkpoint file whose errors on the same images
    normalize CE and mCE (default: AlexNet's published errors on ImageNet data, none elsewhere)."""
    from cutmix_eval.evaluate.corruption import evaluate_corruption, evaluate_released_corruption
    from cutmix_eval.models.checkpoint import load_checkpoint

    model, label = None, "reference model"
    if reference:
        model, info = load_checkpoint(reference, num_classes=subject.model.num_classes)
        label = info.method or info.arch
    if table == "released":
        data = subject.dataset
        return [evaluate_released_corruption(
            subject.model, data.name, root=subject.data_root, split=data.split, clean=clean_set(subject),
            corruptions=corruptions, severities=severities, reference=model, reference_label=label,
            settings=subject.settings)]
    return [evaluate_corruption(subject.model, subject.dataset, corruptions=corruptions, severities=severities,
                                table=table, seed=seed, reference=model, reference_label=label,
                                settings=subject.settings)]


def clean_set(subject: Subject):
    """The clean counterpart of the released set ``subject.dataset`` (``cifar100-c`` ->
    ``cifar100``/test; :data:`~cutmix_eval.data.corrupted.CLEAN_OF`) under the data root, or
    None when it is not there (no clean error then); built once per subject. A caller may put
    another labelled set in ``subject.cache["released clean set"]`` (``corruption --clean-data``)."""
    def build():
        from cutmix_eval.data import create_dataset
        from cutmix_eval.data.corrupted import CLEAN_OF
        from cutmix_eval.errors import DatasetNotFoundError

        name, split = CLEAN_OF[subject.dataset.name]
        try:
            return create_dataset(name, split, root=subject.data_root)
        except DatasetNotFoundError:
            return None
    return cached(subject.cache, "released clean set", build)


def inputs(subject: Subject, options: Mapping[str, Any]) -> dict[str, Any]:
    """What the numbers depend on besides the model and the dataset object: a released set's
    every slice file and its clean set (identities), and the reference checkpoint (SHA-256), so a
    record is never reused for other files or another reference."""
    found: dict[str, Any] = {}
    if options["table"] == "released":
        from cutmix_eval.data.corrupted import released_identity

        clean = clean_set(subject)
        found |= {"released": released_identity(subject.dataset.name, subject.data_root),
                  "clean": clean.identity if clean is not None else None}
    if options.get("reference"):
        from cutmix_eval.models.checkpoint import file_sha256

        file = Path(options["reference"]).expanduser()
        if not file.is_file():
            raise UserError(f"reference checkpoint {file} not found; give the file of the reference model")
        found["reference_sha256"] = cached(subject.cache, ("sha256", str(file)), lambda: file_sha256(file))
    return found


def check(options: Mapping[str, Any], dataset: Any, num_images: int) -> None:
    """A released corrupted set is evaluated on its own files (``table = "released"``), any other
    dataset corrupted on the fly (any other table)."""
    from cutmix_eval.data.corrupted import is_released

    if is_released(dataset.name) != (options["table"] == "released"):
        raise UserError(f"{dataset.name} is a released corrupted set: evaluate its own files with table = "
                        "\"released\" (--table released)" if is_released(dataset.name) else
                        f"table = \"released\" reads a released corrupted set (cifar10-c, cifar100-c, imagenet-c), "
                        f"not {dataset.name}; choose auto, cifar or imagenet to corrupt it on the fly")


def settle(options: dict[str, Any]) -> dict[str, Any]:
    """A released set's corruptions are in its files: no seed."""
    return options | {"seed": None} if options["table"] == "released" else options


def _corruptions(value: Any, option: str) -> str | tuple[str, ...]:
    from cutmix_eval.evaluate.corruption import check_selection

    check_selection(value, [1])  # names, groups or "all"/"benchmark": refused here when unknown
    return value if isinstance(value, str) else tuple(texts(value))


def _severities(value: Any, option: str) -> tuple[int, ...]:
    from cutmix_eval.evaluate.corruption import check_selection, parse_severities

    if isinstance(value, str):
        return tuple(parse_severities(value))
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    return tuple(check_selection("all", [count(1)(v, option) for v in value])[1])


def table(records: Sequence[Record]) -> list[Metric]:
    """Clean error, the mean error over the corruptions evaluated and per group; means over
    the severities the records hold, said in each label when they are not all 5."""
    import numpy as np

    from cutmix_eval.report.comparison import error_rows

    result = records[0].results[0]
    names = list(result.config["corruptions"])
    group_of = result.curves["group_of"]
    scope = severity_scope(result.config["severities"])

    def error_of(label: str, members: Sequence[str], key: str) -> Metric:
        def value(r: Record) -> float:
            return 100 * float(np.mean([r.results[0].metrics[f"{c}/error"] for c in members]))

        def interval(r: Record) -> Interval:
            s = r.results[0].per_sample
            stacked = np.concatenate([s[f"{c}/correct"].reshape(len(s["index"]), -1) for c in members], axis=1)
            return [stacked], error_rows
        return Metric(label, value, LOWER, interval, key)

    rows = []
    if "clean_error" in result.metrics:
        rows.append(Metric("clean error", lambda r: 100 * r.results[0].metrics["clean_error"], LOWER,
                           lambda r: ([r.results[0].per_sample["clean_correct"]], error_rows), key="clean_error"))
    rows.append(error_of(f"mean corruption error ({len(names)} corruptions){scope}", names, "error"))
    for group in result.curves["groups"]:
        members = [c for c in names if group_of.get(c) == group]
        rows.append(error_of(f"{group} ({len(members)}): mean error{scope}", members, f"{group}/error"))
    return rows


def calibration_table(records: Sequence[Record]) -> list[Metric]:
    """Calibration under corruption: ECE on the clean images, at each severity (mean over the
    corruptions evaluated) and over everything, from records that hold it (corruption analysis
    version 2 on); no interval (an ECE per corruption is not a mean over images)."""
    result = records[0].results[0]
    if "mean_ece" not in result.metrics:
        return []

    def row(label: str, key: str) -> Metric:
        return Metric(label, lambda r: 100 * r.results[0].metrics[key], LOWER, None, key=key, digits=2)

    names = result.config["corruptions"]
    rows = [row("clean", "clean_ece")] if "clean_ece" in result.metrics else []
    rows += [row(f"severity {s} (mean over {len(names)} corruptions)", f"ece@{s}") for s in result.config["severities"]]
    return rows + [row(f"mean over corruptions and severities{severity_scope(result.config['severities'])}",
                       "mean_ece")]


def mce_row(columns: dict[str, list[Record]]) -> list[Row]:
    """mCE with the baseline column as the reference model (CE per corruption = sum over the
    severities evaluated of the model's errors / the baseline's; mean over the benchmark
    corruptions evaluated, in percent, baseline = 100); no interval. Where the baseline makes
    no error under a corruption, CE is undefined: the row says so and holds no numbers."""
    from cutmix_eval.report.comparison import aggregate

    if "baseline" not in columns:
        return []
    first = columns["baseline"][0].results[0]
    levels = first.config["severities"]
    names = [c for c in first.config["corruptions"] if c in BENCHMARK] or list(first.config["corruptions"])
    reference = CorruptionReference.from_table({c: first.curves["errors"][c] for c in names}, name="baseline",
                                               severities=levels)
    label = f"mCE relative to baseline ({len(names)} corruptions){severity_scope(levels)}"
    try:
        cells = {method: aggregate([100 * mce({c: r.results[0].curves["errors"][c] for c in names}, reference,
                                              corruptions=names, severities=levels) for r in records])
                 for method, records in columns.items()}
    except ValueError as err:  # the baseline's error under a corruption is 0
        return [Row(f"{label}: not reported, {err}", {method: Cell(math.nan) for method in columns}, unit="")]
    return [Row(label, cells, LOWER, digits=1)]


def figure(columns, colours, where):
    from cutmix_eval.report.figures import corruption_heatmap

    results = {label: r.results[0] for label, r in columns.items()}
    first = next(iter(results.values()))
    return ("corruption", "Top-1 error (%) per corruption and severity"
            + severity_scope(first.curves["severities"], " ({} only)"),
            corruption_heatmap({k: r.curves["errors"] for k, r in results.items()}, first.curves["severities"],
                               groups=first.curves["group_of"], colours=colours,
                               title=f"Top-1 error (%) under common corruptions — {where}"))


ANALYSIS = register_analysis(Analysis(
    "corruption", 2, "error and calibration under the common corruptions, on the fly or from a released set's files",
    options=(Option("corruptions", "all", _corruptions, "all (19), benchmark (the 15), a group (noise, blur, "
                    "weather, digital, extra) or a comma-separated list of groups and names"),
             Option("severities", (1, 2, 3, 4, 5), _severities, "a range such as 3-5, one level, or a list such as "
                    "1,3,5; every summary is then over the severities given, and says so", shown="1-5"),
             Option("table", "auto", choice(lambda: ("auto", "cifar", "imagenet", "released")),
                    "severity parameters for on-the-fly corruption: cifar (the CIFAR-C table, 32 px), imagenet "
                    "(the ImageNet-C one, 224 px), auto (by image size, <= 84 px: cifar), or released: the files "
                    "of a released corrupted set (cifar10-c, cifar100-c, imagenet-c)"),
             Option("seed", 0, count(0, optional=True), "seed of the on-the-fly corruptions"),
             Option("reference", None, path, "a reference model's checkpoint (e.g. the study's baseline) evaluated "
                    "on the same corrupted images; CE, mCE and relative mCE are normalized by its errors (default: "
                    "AlexNet's published errors on ImageNet data at all 5 severities, none elsewhere)")),
    run=run, inputs=inputs, check=check, settle=settle,
    view=View((TableSpec("corruption", "Common corruptions", table, ("error", "source"), extra_rows=mce_row),
               TableSpec("corruption-ece", "Calibration under common corruptions: ECE (15 bins)", calibration_table,
                         ("ece",))),
              figure=figure)))
