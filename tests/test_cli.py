"""The command line as a user meets it: help, JSON convention, one-line errors, exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cutmix_eval.cli import COMMANDS, build_parser, main
from cutmix_eval.errors import UserError
from cutmix_eval.models import create_model
from cutmix_eval.models.checkpoint import save_checkpoint

from conftest import CLI, cli_env


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def last_json(out):
    return json.loads(out.strip().splitlines()[-1])


def test_help_lists_every_command_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for command in COMMANDS:
        assert command.name in out and command.help[:30] in out
        with pytest.raises(SystemExit):
            main([command.name, "--help"])
        sub_help = capsys.readouterr().out
        assert "examples:" in sub_help and command.examples[0] in sub_help


def test_console_script_and_module_entry_points():
    script = str(Path(sys.executable).parent / "cutmix-eval")  # installed next to the interpreter
    for argv in ([script, "--version"], [sys.executable, "-m", "cutmix_eval", "--version"]):
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        assert done.stdout.startswith("cutmix-eval ")


def test_inspect_official_checkpoint_json(capsys, clovaai_dir):
    code, out, _ = run(capsys, "inspect", "--ckpt", str(clovaai_dir / "pyramidnet_cifar100_d56_a48_bottleneck.pth.tar"),
                       "--json")
    info = last_json(out)
    assert code == 0 and info["arch"] == "pyramidnet:depth=56,alpha=48.0,bottleneck=true"
    assert info["num_parameters"] == 613_416 and info["training"]["best_err1"] == 16.25
    assert "official CutMix CIFAR normalization" in out


def test_models_and_datasets_listings(capsys, tmp_path):
    code, out, _ = run(capsys, "models")
    assert code == 0 and "pyramidnet200" in out and "timm/resnet50" in out
    code, out, _ = run(capsys, "models", "--json")
    assert any(m["name"] == "gapnet" for m in last_json(out)["models"])
    code, out, _ = run(capsys, "models", "timm/resnet1*")
    assert code == 0 and "timm/resnet18" in out
    code, out, _ = run(capsys, "datasets", "--data-root", str(tmp_path), "--json")
    data = last_json(out)
    status = {d["name"]: d["status"] for d in data["datasets"]}
    assert status["synthetic"] == "built in" and status["cifar100"] == "not found"
    assert "cifar-100-python" in out  # the expected layout is shown for what is missing


def test_evaluate_on_embedded_data(capsys, tmp_path):
    ckpt = save_checkpoint(create_model("gapnet:width=8", 10, input_size=(3, 64, 64)), tmp_path / "m.pth",
                           method="baseline", dataset="synthetic")
    code, out, err = run(capsys, "evaluate", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "40",
                         "--batch-size", "16", "--json")
    result = last_json(out)
    assert code == 0 and result["evaluator"] == "classification"
    assert result["dataset"] == {"name": "synthetic", "split": "test", "num_images": 40, "num_classes": 10}
    assert 0 <= result["metrics"]["top1_error"] <= 1 and result["model"]["method"] == "baseline"
    assert "top-1 error (%)" in out


@pytest.mark.parametrize("argv,match", [
    (["inspect", "--ckpt", "{tmp}/missing.pth"], "does not exist"),
    (["evaluate", "--ckpt", "{tmp}/m.pth", "--data", "cifar100", "--data-root", "{tmp}"], "cifar100: not found"),
    (["evaluate", "--ckpt", "{tmp}/m.pth", "--data", "nosuchdata"], "unknown dataset"),
    (["evaluate", "--ckpt", "{tmp}/m.pth", "--data", "synthetic", "--split", "val"], "no split"),
    (["evaluate", "--ckpt", "{tmp}/m.pth", "--data", "synthetic"], "has 3 classes but 10"),
    (["evaluate", "--ckpt", "{tmp}/m.pth", "--data", "uniform"], "no class labels"),
    (["inspect", "--ckpt", "{tmp}/m.pth", "--arch", "cifar_resnet20"], "does not fit"),
    (["evaluate", "--ckpt", "{tmp}/m.pth", "--data", "synthetic", "--device", "cuda:0"], None),
])
def test_user_errors_are_one_line_exit_2(capsys, tmp_path, argv, match):
    save_checkpoint(create_model("gapnet:width=4", 3), tmp_path / "m.pth")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    import torch

    if match is None:
        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
        match = "CUDA is not available"
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cutmix-eval: error: ") and match in lines[0]
    assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "cutmix_eval", "inspect", "--ckpt", str(tmp_path / "x.pth"), "--debug"],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "Traceback" in done.stderr
    done = subprocess.run([sys.executable, "-m", "cutmix_eval", "inspect", "--ckpt", str(tmp_path / "x.pth")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_a_reader_that_leaves_early_ends_the_command_quietly():
    """``cutmix-eval models | head -1`` once head has exited: stdout is a pipe nobody reads
    (its read end closed before the command writes); the command stops with 141 like Unix
    tools, without a traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "cutmix_eval", "models"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 141 and done.stderr == ""


def test_quickstart_small_run(tmp_path, monkeypatch):
    from cutmix_eval import quickstart
    from cutmix_eval.report.store import ResultStore
    from cutmix_eval.train import get_recipe

    small = {name: dict(entry, limit=16) for name, entry in quickstart.QUICK_ANALYSES.items()}
    small["inbetween"] = {"options": dict(small["inbetween"]["options"], num_pairs=16), "limit": 32}
    monkeypatch.setattr(quickstart, "QUICK_ANALYSES", small)
    recipe = get_recipe("quick", epochs=2, arch="gapnet:width=4", train_samples=64, test_samples=32, batch_size=32)
    lines = []
    methods, seeds = ["baseline", "cutmix"], (0, 1)
    summary = quickstart.run_quickstart(tmp_path / "report", tmp_path / "ckpt", recipe=recipe, methods=methods,
                                        seeds=seeds, progress=False, log=lines.append)
    report = (tmp_path / "report" / "report.md").read_text()
    assert "### Classification and calibration" in report and "### Out-of-distribution detection: AUROC" in report
    assert "figures/samples.png" in report and "figures/cam-synthetic-test.png" in report
    assert "figures/learning-curves.png" in report and "mean over 2 seeds" in report
    assert all((tmp_path / "report" / f"report.{f}").stat().st_size > 1000 for f in ("md", "tex", "csv", "html"))
    records = ResultStore(tmp_path / "report" / "results").records()
    assert len(records) == 4 * len(small) and {r.job["model"]["method"] for r in records} == set(methods)
    assert any("left" in line for line in lines)  # the progress display estimates the time remaining
    assert set(summary["checkpoints"]) == {f"{m}/seed{s}" for m in methods for s in seeds}
    # a seed fixes the initial weights and the data order of every method: the two seeds differ
    weights = {s: torch.load(tmp_path / "ckpt" / "baseline" / f"seed{s}" / "last.pth", weights_only=True)
               for s in seeds}
    assert weights[0]["train_config"]["seed"] == 0 and weights[1]["train_config"]["seed"] == 1
    assert weights[0]["weights_sha256"] != weights[1]["weights_sha256"]
    lines.clear()
    again = quickstart.run_quickstart(tmp_path / "report", tmp_path / "ckpt", recipe=recipe, methods=methods,
                                      seeds=seeds, progress=False, log=lines.append)
    assert again["timings"]["evaluate"] < 10 and sum("reused" in line for line in lines) == 4 * len(small)


def test_a_misspelled_option_shows_the_commands_usage_and_the_nearest_option(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", "--ckpt", "m.pth", "--data", "synthetic", "--limt", "5"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("usage: cutmix-eval evaluate ")
    assert "error: unrecognized arguments: --limt (did you mean --limit?) 5" in err
    with pytest.raises(SystemExit):
        main(["--bogus"])
    assert capsys.readouterr().err.startswith("usage: cutmix-eval [-h]")


# --------------------------------------------------------------------------- `metrics`, help texts, --debug


def _parsers(parser, prog=()):
    """``(command path, parser)`` for the top-level parser and every subcommand's, at every level."""
    import argparse

    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*prog, name))


def test_every_help_text_renders_without_stray_percent_signs():
    done = subprocess.run(CLI + ["metrics", "ood", "--help"], capture_output=True, text=True, env=cli_env())
    assert done.returncode == 0 and ">= 95% of ID images" in done.stdout
    helps = {" ".join(prog): parser.format_help() for prog, parser in _parsers(build_parser())}
    assert {"", "ood", "metrics", "metrics ood", "metrics wsol"} <= set(helps)
    assert [prog for prog, text in helps.items() if "%%" in text] == []


def test_debug_is_accepted_at_every_level_and_shows_the_traceback(tmp_path):
    undebuggable = [" ".join(prog) for prog, parser in _parsers(build_parser())
                    if "--debug" not in parser._option_string_actions]
    assert undebuggable == []
    scores = ["--id-scores", str(tmp_path / "missing.txt"), "--ood-scores", str(tmp_path / "missing.txt")]
    done = subprocess.run(CLI + ["metrics", "ood", "--debug", *scores], capture_output=True, text=True, env=cli_env())
    assert "Traceback" in done.stderr and "UserError: cannot read ID scores" in done.stderr
    for argv in (["metrics", "--debug", "ood", *scores], ["--debug", "metrics", "ood", *scores]):
        with pytest.raises(UserError, match="cannot read ID scores"):  # re-raised for the traceback
            main(argv)


def test_metrics_ood_reads_text_scores_and_names_the_accepted_formats(tmp_path, capsys):
    from cutmix_eval.metrics.ood import ood_metrics

    rng = np.random.default_rng(0)
    id_scores, ood_scores = rng.normal(1, 1, 50), rng.normal(0, 1, 30)
    np.savetxt(tmp_path / "id.txt", id_scores)
    np.savetxt(tmp_path / "ood.csv", ood_scores, delimiter=",")
    np.save(tmp_path / "ood.npy", ood_scores)
    done = subprocess.run(CLI + ["metrics", "ood", "--id-scores", str(tmp_path / "id.txt"), "--ood-scores",
                                 str(tmp_path / "ood.csv"), "--json"], capture_output=True, text=True, env=cli_env())
    assert done.returncode == 0, done.stderr
    expected = ood_metrics(id_scores, ood_scores).as_dict()
    assert last_json(done.stdout)["metrics"] == pytest.approx(expected)
    code, out, _ = run(capsys, "metrics", "ood", "--id-scores", str(tmp_path / "id.txt"), "--ood-scores",
                       str(tmp_path / "ood.npy"), "--json")
    assert code == 0 and last_json(out)["metrics"] == pytest.approx(expected)
    (tmp_path / "scores.pkl").write_bytes(b"\x80\x04K\x01.")
    (tmp_path / "header.csv").write_text("score\n0.5\n")
    np.savetxt(tmp_path / "two.txt", np.ones((4, 2)))
    for name, message in (("scores.pkl", "unsupported file type .pkl; give the scores as a 1-D .npy array or a "
                                         ".txt/.csv file of numbers, one per line"),
                          ("header.csv", "as numbers, one per line"), ("two.txt", "got shape (4, 2)")):
        code, _, err = run(capsys, "metrics", "ood", "--id-scores", str(tmp_path / name), "--ood-scores",
                           str(tmp_path / "ood.npy"))
        assert code == 2 and message in err and str(tmp_path / name) in err and len(err.strip().splitlines()) == 1


def test_metrics_wsol_threshold_step_gives_a_grid_of_at_least_two(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "maps.npy", rng.random((2, 8, 8)))
    (tmp_path / "boxes.json").write_text(json.dumps([[[0, 0, 3, 3]], [[2, 2, 7, 7]]]))
    wsol = ["metrics", "wsol", "--maps", str(tmp_path / "maps.npy"), "--boxes", str(tmp_path / "boxes.json")]
    done = subprocess.run(CLI + wsol + ["--step", "0"], capture_output=True, text=True, env=cli_env())
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "--step: the threshold step must be in (0, 0.5]" in done.stderr
    for step in ("2", "0.6", "-0.1", "nan"):
        code, _, err = run(capsys, *wsol, "--step", step)
        assert code == 2 and "at least 2 thresholds" in err, step
    code, out, _ = run(capsys, *wsol, "--step", "0.5", "--json")
    assert code == 0 and last_json(out)["thresholds"] == 2


def test_analyze_reaches_every_registered_analysis_with_flags_from_its_options(tmp_path, capsys):
    """`analyze NAME` exists for each registered analysis, its flags are the analysis's options,
    and its record is the one the dedicated command makes (reused both ways)."""
    from cutmix_eval.analyses import get_analysis, list_analyses
    from conftest import tiny_checkpoint

    for name in list_analyses():
        with pytest.raises(SystemExit):
            main(["analyze", name, "--help"])
        shown = capsys.readouterr().out
        flags = [f"--{o.name.replace('_', '-')}" for o in get_analysis(name).options]
        assert all(flag in shown for flag in flags), name
    ckpt = tiny_checkpoint(tmp_path / "m.pth")
    common = ["--ckpt", str(ckpt), "--data", "synthetic", "--limit", "8", "--results", str(tmp_path / "R")]
    code, out, _ = run(capsys, "analyze", "occlusion", *common, "--fractions", "0:0.5:1", "--json")
    assert code == 0 and "recorded in" in out and "centre/auc" in out
    assert last_json(out)["results"][0]["config"]["fractions"] == [0.0, 0.5, 1.0]
    code, out, _ = run(capsys, "occlusion", *common, "--fractions", "0,0.5,1", "--examples", "0",
                       "--output-dir", str(tmp_path / "o"))
    assert code == 0 and "reused the recorded occlusion" in out
    code, _, err = run(capsys, "analyze", "occlusion", *common, "--seed", "-1")
    assert code == 2 and "option --seed must be a whole number of at least 0, not -1" in err
