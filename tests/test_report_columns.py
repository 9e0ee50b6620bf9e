"""What a report pools as seeds, how it names the other columns, and that a report folder holds
one report whole (issue 24, items 2, 7, 12 and 13), through the command line."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import CLI, cli_env
from cutmix_eval.cli import main
from cutmix_eval.models import create_model
from cutmix_eval.models.checkpoint import load_checkpoint, recipe_identity, save_checkpoint
from cutmix_eval.report.store import ResultStore

RECIPE = {"name": "tiny", "arch": "gapnet", "dataset": "synthetic", "epochs": 6, "lr": 0.1, "seed": 0, "workers": 0}
EVALUATE = ["evaluate", "--data", "synthetic", "--limit", "32", "--batch-size", "32"]


def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(argv), capture_output=True, text=True, env=cli_env())


def own(path: Path, seed: int, width: int = 4, method: str | None = "cutmix", **recipe) -> Path:
    """Our own checkpoint of a random ``gapnet:width=W`` trained (nominally) with ``RECIPE``
    changed by ``recipe``, its seed ``seed``."""
    torch.manual_seed(seed)
    model = create_model(f"gapnet:width={width}", 10, input_size=(3, 64, 64))
    return save_checkpoint(model, path, method=method, dataset="synthetic",
                           train_config=RECIPE | {"seed": seed} | recipe)


def raw(path: Path, seed: int) -> Path:
    """A raw state dict (as torchvision or a training script saves one): no method label."""
    torch.manual_seed(seed)
    torch.save(create_model("gapnet:width=4", 10).net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Records in three results folders: ``seeds`` (two seeds of one recipe, label cutmix from
    the files), ``split`` (those and a third run of another recipe), ``archs`` (those two and a
    wider net given the label cutmix)."""
    root = tmp_path_factory.mktemp("runs")
    ckpt = {"s0": own(root / "s0.pth", 0), "s1": own(root / "s1.pth", 1),
            "other": own(root / "other.pth", 2, epochs=12), "wide": own(root / "wide.pth", 3, width=8, method=None)}
    folders = {name: root / name for name in ("seeds", "split", "archs")}
    for name in ("s0", "s1"):
        assert main([*EVALUATE, "--ckpt", str(ckpt[name]), "--results", str(folders["seeds"])]) == 0
    shutil.copytree(folders["seeds"], folders["split"])
    shutil.copytree(folders["seeds"], folders["archs"])
    assert main([*EVALUATE, "--ckpt", str(ckpt["other"]), "--results", str(folders["split"])]) == 0
    assert main([*EVALUATE, "--ckpt", str(ckpt["wide"]), "--label", "cutmix", "--results", str(folders["archs"])]) == 0
    return ckpt, folders


def top1(folder: Path, checkpoint: Path) -> float:
    """The recorded top-1 error (%) of ``checkpoint`` in ``folder``."""
    record = next(r for r in ResultStore(folder).records()
                  if r.analysis == "classification" and r.results[0].model["checkpoint"] == str(checkpoint))
    return 100 * record.results[0].metrics["top1_error"]


def top1_cells(csv: Path) -> pd.DataFrame:
    frame = pd.read_csv(csv)
    return frame[(frame.metric == "top-1 error") & ~frame.reference].set_index("method")


def test_unlabelled_checkpoints_are_a_column_each_and_say_so(tmp_path, capsys):
    files = [raw(tmp_path / "a.pth", 0), raw(tmp_path / "b.pth", 1)]
    done = cli(*EVALUATE, "--ckpt", str(files[0]), "--arch", "gapnet:width=4", "--results", str(tmp_path / "R"))
    assert done.returncode == 0 and f"note: {files[0]} has no method label" in done.stdout and "--label" in done.stdout
    assert main([*EVALUATE, "--ckpt", str(files[1]), "--arch", "gapnet:width=4", "--results", str(tmp_path / "R")]) == 0
    assert main(["inspect", "--ckpt", str(files[0]), "--arch", "gapnet:width=4"]) == 0
    shown = capsys.readouterr().out
    assert "no method label" in shown and "--label NAME" in shown
    done = cli("report", str(tmp_path / "R"), "--format", "md,csv")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "R-report"
    cells = top1_cells(out / "report.csv")
    assert len(cells) == 2 and all(cells.seeds == 1) and cells.isna()["std"].all()
    for path in files:
        column = next(m for m in cells.index if m.startswith(f"{path.name} ("))
        assert cells.loc[column, "value"] == pytest.approx(top1(tmp_path / "R", path))
    md = (out / "report.md").read_text()
    assert "No method label: a.pth (" in md and "--label NAME" in md and "±" not in md


def test_one_label_on_two_architectures_is_refused_and_the_previous_report_stays(runs, tmp_path):
    ckpt, folders = runs
    out = tmp_path / "out"
    assert main(["report", str(folders["seeds"]), "--out", str(out), "--format", "md,csv"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    done = cli("report", str(folders["archs"]), "--out", str(out))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    message = done.stderr.strip()
    assert "\n" not in message, message
    for part in ("'cutmix'", "gapnet:width=4,norm=batch (s0.pth, s1.pth)", "gapnet:width=8,norm=batch (wide.pth)",
                 "--label"):
        assert part in message, (part, message)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_seeds_of_one_recipe_pool_and_other_recipes_do_not(runs):
    ckpt, folders = runs
    assert cli("report", str(folders["seeds"]), "--format", "csv,md").returncode == 0
    out = folders["seeds"].parent / "seeds-report"
    cells = top1_cells(out / "report.csv")
    values = [top1(folders["seeds"], ckpt["s0"]), top1(folders["seeds"], ckpt["s1"])]
    assert list(cells.index) == ["cutmix"] and cells.loc["cutmix", "seeds"] == 2
    assert cells.loc["cutmix", "value"] == pytest.approx(np.mean(values))
    assert cells.loc["cutmix", "std"] == pytest.approx(np.std(values, ddof=1))
    md = (out / "report.md").read_text()
    assert "cutmix: mean over 2 seeds [95% t-interval over seeds]: training runs of one recipe" in md

    assert main(["report", str(folders["split"]), "--format", "csv,md", "--no-intervals"]) == 0
    out = folders["split"].parent / "split-report"
    recipes = {name: recipe_identity(load_checkpoint(ckpt[name])[1]) for name in ("s0", "s1", "other")}
    assert recipes["s0"] == recipes["s1"] != recipes["other"]  # the seed is not part of the recipe
    cells = top1_cells(out / "report.csv")
    pooled, alone = f"cutmix (recipe {recipes['s0'][:8]})", f"cutmix (recipe {recipes['other'][:8]})"
    assert sorted(cells.index) == sorted([pooled, alone])
    assert cells.loc[pooled, "seeds"] == 2 and cells.loc[pooled, "value"] == pytest.approx(np.mean(values))
    assert cells.loc[alone, "seeds"] == 1
    assert cells.loc[alone, "value"] == pytest.approx(top1(folders["split"], ckpt["other"]))
    assert "Not pooled: checkpoints labelled cutmix differ in training data or recipe" in (out / "report.md").read_text()


def test_a_second_report_replaces_the_first_whole(runs, tmp_path):
    _, folders = runs
    results = tmp_path / "results"
    shutil.copytree(folders["seeds"], results)
    assert main(["report", str(results), "--format", "md,tex,html", "--no-intervals"]) == 0
    out = tmp_path / "results-report"  # the default: beside the results folder, named after it
    assert {p.name for p in out.iterdir()} >= {"report.md", "report.tex", "report.html"}
    done = cli("report", str(results), "--format", "csv")
    assert done.returncode == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    manifest = json.loads((out / "report-manifest.json").read_text())
    assert files == sorted(["report-manifest.json", *manifest["written"]])
    assert "report.csv" in files and not {"report.md", "report.tex", "report.html"} & set(files)
    assert all(name.startswith("figures/") for name in manifest["written"] if name != "report.csv")


def test_an_interrupted_render_leaves_the_previous_report_whole(runs, tmp_path, monkeypatch):
    from cutmix_eval.analyses import write_report
    from cutmix_eval.report import render

    _, folders = runs
    out = tmp_path / "out"
    write_report(folders["seeds"], out, intervals=False)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C after the figures and the other formats were rendered

    monkeypatch.setattr(render, "html", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_report(folders["split"], out, intervals=False)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_ood_tables_state_the_set_sizes(runs, tmp_path):
    ckpt, _ = runs
    results = tmp_path / "R"
    assert main(["ood", "--ckpt", str(ckpt["s0"]), "--in", "synthetic", "--out", "all", "--limit", "16",
                 "--num-noise", "12", "--results", str(results), "--output-dir", str(tmp_path / "ood")]) == 0
    result = ResultStore(results).records()[0].results[0]
    sizes = {name: about["num_images"] for name, about in result.dataset["ood_sets"].items()}
    assert result.dataset["num_images"] == 16 and len(sizes) >= 2
    assert main(["report", str(results), "--format", "md", "--no-intervals"]) == 0
    md = (tmp_path / "R-report" / "report.md").read_text()
    stated = "Images scored: 16 ID; OOD " + ", ".join(f"{name} {n}" for name, n in sizes.items()) + "."
    assert md.count(stated) == 3  # under each OOD table: TNR at TPR95, AUROC, detection accuracy


def test_inspect_fits_a_100_column_terminal(runs):
    ckpt, _ = runs
    done = cli("inspect", "--ckpt", str(ckpt["other"]))
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert max(map(len, lines)) <= 100, max(lines, key=len)
    recipe = recipe_identity(load_checkpoint(ckpt["other"])[1])
    assert any(line.startswith("training recipe") and recipe in line for line in lines)
    assert "training: train_config" in lines and any("epochs=12" in line for line in lines)
    assert any(line.startswith("method label") and line.endswith("cutmix") for line in lines)


def test_study_files_take_label_or_method(tmp_path):
    from cutmix_eval.errors import UserError
    from cutmix_eval.study import study_from_dict

    def study(**entry):
        return study_from_dict({"checkpoints": [{"path": "m.pth", **entry}], "datasets": [{"name": "synthetic"}],
                                "analyses": {"classification": {}}}, tmp_path)

    assert study(label="cutmix").checkpoints[0].method == "cutmix"
    assert study(method="cutmix").checkpoints[0].method == "cutmix"
    with pytest.raises(UserError, match="`label` and `method` are the same key"):
        study(label="cutmix", method="mixup")
    with pytest.raises(UserError, match="needs `path` and `label`"):
        study()
