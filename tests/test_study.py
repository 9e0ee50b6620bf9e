"""Studies: parsing with one-line errors, running what is missing, resuming, the study and report commands."""

import dataclasses
import functools
import json
from pathlib import Path

import pytest

from cutmix_eval import analyses
from cutmix_eval.cli import main
from cutmix_eval.errors import UserError
from cutmix_eval.study import load_study, run_study, study_from_dict
from conftest import swap_analysis, tiny_checkpoint

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

SMALL = {"classification": {}, "ood": {"num_noise": 16, "limit": 16},
         "occlusion": {"fractions": [0.0, 0.5, 1.0], "limit": 12},
         "adversarial": {"eps": [8 / 255], "limit": 12}}


def write_study(tmp_path: Path, analyses_: dict, methods=("baseline", "cutmix"), limit: int = 24,
                output: str = "out", **head) -> Path:
    """``<output>.toml`` in ``tmp_path``: one tiny checkpoint per method (made once, seeded by its
    position), the first ``limit`` synthetic test images, ``analyses_`` with their options, and
    ``head`` as extra [study] keys; outputs in ``tmp_path / output``."""
    lines = ['[study]', 'name = "tiny"', f'output = "{output}"', 'formats = ["md", "csv"]', 'batch_size = 16']
    lines += [f"{k} = {json.dumps(v)}" for k, v in head.items()] + [""]
    for i, method in enumerate(methods):
        ckpt = tmp_path / f"{method}.pth"
        if not ckpt.exists():
            tiny_checkpoint(ckpt, method, seed=i)
        lines += ["[[checkpoints]]", f'path = "{ckpt.name}"', f'method = "{method}"', ""]
    lines += ["[[datasets]]", 'name = "synthetic"', f"limit = {limit}", ""]
    for name, options in analyses_.items():
        lines.append(f"[analyses.{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in options.items()]
    path = tmp_path / f"{output}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_study_reference_names_every_key_analysis_and_option():
    """docs/studies.md (which `study --help` points to) cannot fall behind the code."""

    from cutmix_eval.study import Study, StudyCheckpoint, StudyDataset

    text = (Path(__file__).resolve().parents[1] / "docs" / "studies.md").read_text()
    keys = [f.name for cls in (Study, StudyCheckpoint, StudyDataset) for f in dataclasses.fields(cls)]
    options = [o.name for _, a in analyses.ANALYSES.items() for o in a.options]
    missing = [k for k in [*keys, *analyses.list_analyses(), *options]
               if k not in ("checkpoints", "datasets", "analyses") and f"`{k}`" not in text]
    assert not missing


def test_examples_parse_with_paths_relative_to_the_file():
    embedded = load_study(EXAMPLES / "embedded.toml")
    assert [c.method for c in embedded.checkpoints] == ["baseline", "mixup", "cutout", "cutmix"] * 3
    assert embedded.checkpoints[0].path == EXAMPLES.parent / "checkpoints/quickstart/baseline/seed0/last.pth"
    assert embedded.checkpoints[-1].path == EXAMPLES.parent / "checkpoints/quickstart/cutmix/seed2/last.pth"
    assert set(embedded.analyses) == set(analyses.list_analyses())
    paper = load_study(EXAMPLES / "cifar100-paper.toml")
    assert paper.datasets[0].name == "cifar100" and {c.arch for c in paper.checkpoints} == {
        "pyramidnet:depth=200,alpha=240"}


def test_examples_match_the_quick_start():
    from cutmix_eval.quickstart import QUICK_ANALYSES

    embedded = load_study(EXAMPLES / "embedded.toml")
    for name, entry in QUICK_ANALYSES.items():
        assert analyses.analysis_options(name, embedded.analyses[name]["options"]) == \
            analyses.analysis_options(name, entry["options"]), name
        assert embedded.analyses[name]["limit"] == entry["limit"], name


@pytest.mark.parametrize("data,match", [
    ({"checkpoints": [{"path": "a.pth"}], "datasets": [{"name": "synthetic"}], "analyses": {"ood": {}}},
     "needs `path` and `label`"),
    ({"checkpoints": [{"path": "a", "method": "m"}], "datasets": [{"name": "x"}], "analyses": {"lens": {}}},
     "unknown analysis"),
    ({"checkpoints": [{"path": "a", "method": "m"}], "datasets": [{"name": "x"}],
      "analyses": {"occlusion": {"holes": 3}}}, "has no option holes"),
    ({"checkpoints": [{"path": "a", "method": "m"}], "datasets": [{"name": "x"}], "analyses": {}}, "needs at least"),
    ({"checkpoints": {"path": "a"}, "datasets": [], "analyses": {}}, "must be a list of tables"),
    ({"study": {"colour": "red"}, "checkpoints": [], "datasets": [], "analyses": {}}, "unknown key colour"),
    ({"study": {"formats": ["pdf"]}, "checkpoints": [{"path": "a", "method": "m"}], "datasets": [{"name": "x"}],
      "analyses": {"ood": {}}}, "unknown report format"),
])
def test_study_mistakes_are_one_line_user_errors(data, match):
    with pytest.raises(UserError, match=match) as err:
        study_from_dict(data, Path("."))
    assert "\n" not in str(err.value)


def test_study_runs_what_is_missing_and_resumes(tmp_path, monkeypatch):
    study = load_study(write_study(tmp_path, SMALL))
    calls = []
    original = dict(analyses.ANALYSES.items())

    def counting(name):
        @functools.wraps(original[name].run)  # keeps the signature the options are checked against
        def run(subject, **options):
            calls.append(name)
            if name == "occlusion" and subject.model_info["method"] == "cutmix" and len(calls) < 100:
                raise KeyboardInterrupt  # the user presses Ctrl-C in the middle
            return original[name].run(subject, **options)
        return dataclasses.replace(original[name], run=run)

    for name in original:
        swap_analysis(monkeypatch, counting(name))
    with pytest.raises(KeyboardInterrupt):
        run_study(study, progress=False, log=lambda _: None)
    assert calls == ["classification", "ood", "occlusion", "adversarial", "classification", "ood", "occlusion"]
    assert len(list((tmp_path / "out" / "results").glob("*.json"))) == 6  # nothing half-written
    calls.clear()
    for name in original:
        swap_analysis(monkeypatch, counting(name) if name != "occlusion" else original[name])
    lines = []
    outcome = run_study(study, progress=False, log=lines.append)
    assert calls == ["adversarial"] and not outcome.reused
    assert sum("reused" in line for line in lines) == 6 and lines[-1].startswith("[8/8]")
    report = outcome.paths["md"].read_text()
    assert "| baseline" in report or "baseline |" in report

    def no_loading(*args, **kwargs):
        raise AssertionError("a finished study loads no model")

    monkeypatch.setattr("cutmix_eval.models.checkpoint.load_checkpoint", no_loading)
    assert run_study(study, progress=False, log=lambda _: None).reused


def test_study_and_report_commands(tmp_path, capsys):
    path = write_study(tmp_path, {"classification": {}})
    assert main(["study", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["reused"] is False and Path(summary["report"]["md"]).exists()
    assert "[2/2] classification · cutmix · synthetic" in out
    results = tmp_path / "out" / "results"
    mtimes = {p: p.stat().st_mtime_ns for p in results.glob("*.json")}

    def rerun(*flags: str) -> tuple[str, dict]:
        assert main(["study", str(path), "--json", *flags]) == 0
        out = capsys.readouterr().out
        return out, json.loads(out.strip().splitlines()[-1])

    out, summary = rerun()
    assert summary["reused"] is True and out.count(": reused (") == 2
    out, summary = rerun("--rerender")  # the report again, from the same records
    assert summary["reused"] is False and out.count(": reused (") == 2
    assert {p: p.stat().st_mtime_ns for p in results.glob("*.json")} == mtimes
    out, summary = rerun("--force")  # every job evaluated again, as --force does for a command
    assert ": reused (" not in out and all(p.stat().st_mtime_ns != t for p, t in mtimes.items())
    assert main(["report", str(results), "--format", "md,tex", "--out", str(tmp_path / "r"), "--no-intervals"]) == 0
    assert "report (written)" in capsys.readouterr().out
    tex = (tmp_path / "r" / "report.tex").read_text()
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0]
    assert r"\toprule" in tex and "[" not in body and "top-1 error" in body
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["study", str(tmp_path / "nope.toml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_evaluation_commands_store_and_reuse_records(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "m.pth")
    argv = ["occlusion", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "8", "--fractions", "0,1",
            "--examples", "0", "--results", str(tmp_path / "results"), "--output-dir", str(tmp_path / "o")]
    assert main(argv) == 0
    assert "recorded in" in capsys.readouterr().out
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "reused the recorded" in first and "--force" in first
    assert main(argv + ["--force"]) == 0
    assert "recorded in" in capsys.readouterr().out
    assert main(["evaluate", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "8",
                 "--results", str(tmp_path / "results")]) == 0
    assert len(list((tmp_path / "results").glob("*.json"))) == 2


@pytest.mark.parametrize("options, message", [
    ({"ood": {"scores": ["enrgy"]}}, "[analyses.ood]: option scores: unknown OOD score enrgy; choose from msp"),
    ({"occlusion": {"fractions": "0:0:1"}}, "[analyses.occlusion]: cannot read fractions '0:0:1'"),
    ({"adversarial": {"eps": ["8/0"]}}, "[analyses.adversarial]: cannot read eps '8/0'"),
    ({"inbetween": {"num_pairs": 0}}, "[analyses.inbetween]: option num_pairs must be a whole number of at least 1"),
    ({"corruption": {"severities": "0-2"}}, "[analyses.corruption]: severities must be among 1-5"),
    ({"localization": {"cam": "gradcamm"}}, "[analyses.localization]: option cam must be one of cam,"),
    ({"ood": {"sets": ["no-such-set"]}}, "unknown dataset 'no-such-set'"),
])
def test_every_value_of_every_job_is_checked_before_any_work(tmp_path, options, message):
    """A bad value fails the study as one line before job 1 (it used to fail after jobs ran, or
    with a traceback); the results folder stays empty."""
    path = write_study(tmp_path, {"classification": {}, **options})
    code, _, err = _run_cli(["study", str(path)])
    assert code == 2 and message in err and "\n" not in err.strip() and "Traceback" not in err
    assert not list((tmp_path / "out" / "results").glob("*.json"))


def test_study_files_accept_the_command_lines_syntax_and_share_its_records(tmp_path):
    """fractions = "0:0.5:1" and eps = ["8/255"] are what `occlusion --fractions 0:0.5:1` and
    `adversarial --eps 8/255` mean: the study computes them, the commands reuse its records."""
    path = write_study(tmp_path, {"occlusion": {"fractions": "0:0.5:1", "limit": 8},
                                  "adversarial": {"eps": ["8/255"], "limit": 8}}, methods=("cutmix",))
    code, _, err = _run_cli(["study", str(path)])
    assert code == 0, err
    common = ["--ckpt", str(tmp_path / "cutmix.pth"), "--data", "synthetic", "--limit", "8",
              "--results", str(tmp_path / "out" / "results"), "--batch-size", "8", "--method", "cutmix"]
    for argv in (["occlusion", *common, "--fractions", "0,0.5,1"], ["adversarial", *common, "--eps", "8/255"]):
        code, out, err = _run_cli(argv)
        assert code == 0 and "reused the recorded" in out, (argv, out, err)


def _run_cli(argv):
    """``(exit status, stdout, stderr)`` of the CLI run in this process."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_analyses_sharing_a_pass_make_one_pass_and_their_records_match_separate_runs(tmp_path, monkeypatch):
    """Classification, localization and MSP OOD detection of one model on one dataset are one
    pass over its images in a study (issue 17), with the records separate runs give."""
    from cutmix_eval.models.classifier import Classifier
    from cutmix_eval.report.store import ResultStore

    seen = []

    def counting(method):
        def run(self, images, *args, **kwargs):
            if images.shape[-1] == 64:  # the embedded images (not the model's own inner calls)
                seen.append(len(images))
            return method(self, images, *args, **kwargs)
        return run

    monkeypatch.setattr(Classifier, "forward_all", counting(Classifier.forward_all))
    monkeypatch.setattr(Classifier, "forward", counting(Classifier.forward))
    shared = {"classification": {}, "localization": {"examples": 2}, "ood": {"sets": ["uniform"], "num_noise": 8}}
    lines = []
    study = load_study(write_study(tmp_path, shared, methods=("cutmix",), limit=24))
    run_study(study, progress=False, log=lines.append)
    assert sum(seen) == 24 + 8  # the 24 ID images once, the 8 OOD images once
    assert lines[0].startswith("[3/3] classification + localization + ood · cutmix · synthetic")
    together = {r.analysis: r for r in ResultStore(tmp_path / "out" / "results").records()}
    for name in shared:  # each alone, in its own folder: the same numbers
        alone = load_study(write_study(tmp_path, {name: shared[name]}, methods=("cutmix",), limit=24,
                                       output=f"alone-{name}"))
        run_study(alone, progress=False, log=lambda _: None)
        [record] = ResultStore(tmp_path / f"alone-{name}" / "results").records()
        assert record.key == together[name].key
        for mine, theirs in zip(together[name].results, record.results, strict=True):
            assert mine.metrics == pytest.approx(theirs.metrics, abs=1e-9)
