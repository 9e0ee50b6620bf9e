"""Every registered analysis, end to end: run on a tiny model, stored, read back, rendered as
tables and a figure, and written into a report. A new analysis is covered by registering it;
``SMALL`` only shrinks the options of the expensive ones (an analysis missing from it runs
with its defaults)."""

import json
import math

import numpy as np
import pytest

from cutmix_eval.analyses import Subject, get_analysis, list_analyses, run_jobs, views, write_report
from cutmix_eval.data import create_dataset
from cutmix_eval.models import create_model
from cutmix_eval.report.build import comparison_figures
from cutmix_eval.report.comparison import build_tables
from cutmix_eval.report.store import ResultStore
from cutmix_eval.settings import RunSettings

SMALL = {"ood": {"sets": ["uniform", "gaussian"]},
         "occlusion": {"fractions": [0.0, 0.5, 1.0]},
         "inbetween": {"num_pairs": 8, "mix_grid": [0.0, 0.5, 1.0], "cut_grid": [0.0, 0.5, 1.0]},
         "adversarial": {"eps": ["2/255", "8/255"]},
         "corruption": {"corruptions": ["gaussian_noise", "fog"], "severities": [1, 3]}}
METHODS = ("baseline", "cutmix")


def class_map_folder(folder, mapping: dict, per_class: int = 3):
    """A shift set of your own: class folders of small PNGs and a ``class_map.json``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in mapping:
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / name / f"{i}.png")
    (folder / "class_map.json").write_text(json.dumps(mapping))
    return folder


def same_json(a, b) -> bool:
    """Equal as JSON (NaN equals NaN there, as in the stored record)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Each analysis of two tiny models (labelled baseline and cutmix) on 16 synthetic images."""
    import torch

    data = create_dataset("synthetic", "test", num_samples=16)
    store = ResultStore(tmp_path_factory.mktemp("results"))
    shift = class_map_folder(tmp_path_factory.mktemp("shift") / "my-shift", {"a": 0, "b": 3})
    small = SMALL | {"shift": {"sets": [str(shift)]}}
    records = {}
    for seed, method in enumerate(METHODS):
        torch.manual_seed(seed)
        model = create_model("gapnet:width=4", 10, input_size=(3, 64, 64)).eval()
        info = {"checkpoint_sha256": f"{seed}" * 64, "method": method, "arch": "gapnet:width=4", "num_classes": 10}
        subject = Subject(model, data, RunSettings(model_info=info, batch_size=8, progress=False))
        done = run_jobs(store, subject, {name: small.get(name) for name in list_analyses()})
        records[method] = {name: record for name, (record, _) in done.items()}
    return store, records


@pytest.mark.parametrize("name", list_analyses())
def test_each_analysis_runs_stores_renders_and_reloads(name, stored, tmp_path):
    store, records = stored
    analysis = get_analysis(name)
    assert analysis.summary and all(option.help for option in analysis.options)
    assert analysis.parse_options(analysis.parse_options()) == analysis.parse_options()  # canonical is a fixed point
    record = records["cutmix"][name]
    assert record.job["analysis"] == name and record.job["version"] == analysis.version
    assert record.results and all(r.metrics for r in record.results)
    again = store.load(record.job)
    assert again is not None and len(again.results) == len(record.results)
    for ours, theirs in zip(record.results, again.results):
        assert theirs.versions["analysis"] == str(analysis.version)
        assert same_json({**ours.to_dict(), "versions": None}, {**theirs.to_dict(), "versions": None})
        assert ours.per_sample.keys() == theirs.per_sample.keys()
        for key, value in ours.per_sample.items():
            np.testing.assert_array_equal(value, theirs.per_sample[key], err_msg=key)

    mine = [records[m][name] for m in METHODS]
    tables = build_tables(mine, views())
    assert len(tables) >= len(analysis.view.tables)
    for table in tables:
        assert table.columns == list(METHODS) and table.rows and table.note
        values = [cell.value for row in table.rows if not row.reference for cell in row.cells.values()]
        assert values and any(math.isfinite(v) for v in values), table.title
    figures = comparison_figures(mine, views())
    assert (len(figures) > 0) == (analysis.view.figure is not None)

    outcome = write_report(store.root, tmp_path / "report", ["md", "html"], only=[r.path for r in mine])
    text = outcome.paths["md"].read_text()
    assert all(table.title in text for table in tables) and len(outcome.figures) == len(figures)
    assert all(path.stat().st_size > 1000 for path in outcome.figures)


def test_a_record_of_an_unknown_analysis_is_named_not_dropped_silently(stored, tmp_path):
    _, records = stored
    record = records["cutmix"]["occlusion"]
    stranger = type(record)(record.path, dict(record.job, analysis="saliency"), record.key, record.results)
    with pytest.warns(UserWarning, match="analysis 'saliency', which this version of cutmix-eval does not know"):
        tables = build_tables([stranger, records["baseline"]["occlusion"]], views())
    assert [t.columns for t in tables] == [["baseline"]]


def test_a_registered_name_is_refused_twice_and_unknown_names_get_close_matches():
    from cutmix_eval.analyses import register_analysis
    from cutmix_eval.errors import UserError

    with pytest.raises(ValueError, match="registered twice"):
        register_analysis(get_analysis("occlusion"))
    with pytest.raises(UserError, match="did you mean 'inbetween'"):
        get_analysis("in-between")
