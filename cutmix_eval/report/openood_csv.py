"""An OOD Result as OpenOOD v1.5 writes its results: ``ood.csv`` of ``evaluation_api/evaluator.py``.

Rows: each near-OOD set, ``nearood`` (their mean), each far-OOD set, ``farood`` (their mean),
in OpenOOD's order and under OpenOOD's set names (``openood-cifar10-near-tin`` -> ``tin``).
Sets outside an OpenOOD group (the paper's ODIN-era sets, folders) come after them under
our names, then ``mean`` over every set. Columns, in percent as OpenOOD prints them:
``FPR@95`` (OpenOOD's convention: OOD positive, the share of ID images flagged when 95% of
OOD images are caught; our ``fpr95_ood_pos``), ``AUROC``, ``AUPR_IN``, ``AUPR_OUT``, and
``ACC``, the ID top-1 accuracy (with the csid sets in full-spectrum mode), the same on
every row as in OpenOOD.
"""

from __future__ import annotations

from typing import Any

COLUMNS = {"FPR@95": "fpr95_ood_pos", "AUROC": "auroc", "AUPR_IN": "aupr_in", "AUPR_OUT": "aupr_out"}


def openood_name(set_name: str) -> str:
    """OpenOOD's own name of one of its sets (``openood-cifar10-far-places365`` -> ``places365``,
    ``openood-imagenet-near-ssb-hard`` -> ``ssb_hard``); other names unchanged."""
    parts = set_name.split("-", 3)
    if set_name.startswith("openood-") and len(parts) == 4 and parts[2] in ("near", "far"):
        return parts[3].replace("-", "_")
    return set_name


def openood_frame(result: Any):
    """The pandas DataFrame of ``result`` (an OOD Result) in OpenOOD's layout (module docstring)."""
    import pandas as pd

    from cutmix_eval.evaluate.ood import ood_group

    metrics = result.metrics
    accuracy = 100 * metrics["id/accuracy"]
    sets = list(result.dataset["ood_sets"])
    rows: list[tuple[str, str]] = []  # (row label, metric key prefix)
    for group, label in (("near", "nearood"), ("far", "farood")):
        members = [s for s in sets if ood_group(s) == group]
        rows += [(openood_name(s), s) for s in members] + ([(label, group)] if members else [])
    others = [s for s in sets if ood_group(s) is None]
    rows += [(s, s) for s in others] + ([("mean", "mean")] if others else [])
    table = {label: {column: 100 * metrics[f"{key}/{metric}"] for column, metric in COLUMNS.items()} | {"ACC": accuracy}
             for label, key in rows}
    return pd.DataFrame.from_dict(table, orient="index", columns=[*COLUMNS, "ACC"])
