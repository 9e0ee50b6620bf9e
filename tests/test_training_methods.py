"""Every training method through the loop: the command line, exact resume, torchrun, recipes.

The per-method tests of the mixing itself are in ``test_mixing.py`` and ``test_mixers_*.py``;
here each method goes through the same training step the loop runs (``Mixer.training_step``),
so a method that needs the model (Manifold Mixup, SnapMix, PuzzleMix, feature CutMix) is
tested with the loop's hook, not a copy of it.
"""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from cutmix_eval import catalog
from cutmix_eval.cli import main
from cutmix_eval.models.checkpoint import load_checkpoint
from cutmix_eval.train import get_recipe, loop, train
from cutmix_eval.train.methods import METHODS, create_mixer
from cutmix_eval.train.recipes import Recipe, mixer_parameters, param_field

TINY = dict(arch="gapnet:width=4", train_samples=32, test_samples=16, batch_size=16, workers=0, epochs=2)


def tiny(**overrides):
    return get_recipe("quick", **{**TINY, **overrides})


def test_the_registry_holds_every_catalog_method_in_order_with_distinct_colours():
    from cutmix_eval.report.figures import METHOD_COLOURS

    assert tuple(METHODS) == catalog.METHODS
    assert set(METHOD_COLOURS) == set(catalog.METHODS)
    assert len(set(METHOD_COLOURS.values())) == len(METHOD_COLOURS)


@pytest.mark.parametrize("method", catalog.METHODS)
def test_recipe_defaults_are_the_mixers_defaults(method):
    """A recipe field per hyper-parameter, holding the method's published default (the quick
    recipe overrides Cutout's size and the paper's recipes CutMix's probability, on purpose)."""
    mixer = METHODS.get(method)
    defaults = {f.name: f.default for f in dataclasses.fields(Recipe)}
    mixer_defaults = {f.name: f.default for f in dataclasses.fields(mixer)}
    for param in mixer_parameters(mixer):
        if param in ("mean", "std"):  # the model's normalization
            continue
        source = param_field(mixer, param)
        assert source is not None, f"{method}: no recipe field sets {param}"
        if source not in ("cutout_size", "cutout_fill"):
            assert defaults[source] == mixer_defaults[param], f"{method}.{param}: recipe {defaults[source]!r}"
    create_mixer(method, 10, np.random.default_rng(0), **get_recipe("quick").method_params(method, (0.5,) * 3, (0.25,) * 3))


def test_every_method_trains_one_epoch_through_the_cli(tmp_path, capsys):
    code = main(["train-all", "--methods", "all", "--recipe", "quick", "--arch", "gapnet:width=4",
                 "--train-samples", "32", "--test-samples", "16", "--epochs", "1", "--batch-size", "16",
                 "--workers", "0", "--out", str(tmp_path), "--json"])
    out = capsys.readouterr().out
    runs = json.loads(out.strip().splitlines()[-1])["runs"]
    assert code == 0 and [r["method"] for r in runs] == list(catalog.METHODS)
    for method in catalog.METHODS:
        model, info = load_checkpoint(tmp_path / method / "last.pth")
        assert info.method == method
        history = [json.loads(line) for line in (tmp_path / method / "log.jsonl").read_text().splitlines()]
        assert np.isfinite(history[0]["train_loss"]) and history[0]["train_loss"] > 0, method
        assert all(torch.isfinite(v).all() for v in model.net.state_dict().values()), method


class _Killed(BaseException):
    """Stands for SIGKILL right after a checkpoint is written (the SIGKILL test in
    ``test_training.py`` shows a real kill leaves exactly that state: the files are
    written atomically)."""


@pytest.mark.parametrize("method", [m for m in catalog.METHODS if m != "baseline"])
def test_every_method_resumes_to_the_same_weights(tmp_path, monkeypatch, method):
    recipe = tiny()
    straight = train(method, recipe, tmp_path / "straight", progress=False, log=lambda _: None)
    save = loop._save

    def save_then_die(*args, **kwargs):
        save(*args, **kwargs)
        raise _Killed

    monkeypatch.setattr(loop, "_save", save_then_die)
    with pytest.raises(_Killed):
        train(method, recipe, tmp_path / "killed", progress=False, log=lambda _: None)
    monkeypatch.setattr(loop, "_save", save)
    resumed = train(method, recipe, tmp_path / "killed", resume=True, progress=False, log=lambda _: None)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    a = load_checkpoint(straight.last)[0].net.state_dict()
    b = load_checkpoint(resumed.last)[0].net.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), (method, key)


#: trains every method for an epoch in this process of a torchrun group and prints the
#: SHA-256 of each final model's parameters as this process holds them
_RANKS_SCRIPT = """
import hashlib, json, sys
import torch
from cutmix_eval import catalog, distributed
from cutmix_eval.train import get_recipe, loop

recipe = get_recipe("quick", arch="gapnet:width=4,norm=group", augment="none", epochs=1, train_samples=32,
                    test_samples=16, batch_size=16, workers=0)
held, evaluate = {}, loop._evaluate
loop._evaluate = lambda model, *args: (held.update(model=model), evaluate(model, *args))[1]  # every rank calls it
ctx = distributed.setup("cpu")  # joined once, so every run below stays in the group
digests = {}
for method in catalog.METHODS:
    loop.train(method, recipe, f"{sys.argv[1]}/{method}", device="cpu", progress=False, log=lambda _: None)
    weights = b"".join(p.detach().contiguous().numpy().tobytes() for p in held["model"].parameters())
    digests[method] = hashlib.sha256(weights).hexdigest()
print(json.dumps({"rank": ctx.rank, "digests": digests}))
distributed.teardown(ctx)
"""


def test_torchrun_two_processes_keep_every_method_in_step(tmp_path):
    """Under torchrun each process mixes its own part of the batch (as timm's and every DDP
    implementation do, so a run is not the one-process run), and the gradient pass of every
    method, the model-hook ones included, goes through DistributedDataParallel: after an
    epoch both processes hold bit-identical weights, and every method's run is complete."""
    script = tmp_path / "ranks.py"
    script.write_text(_RANKS_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(tmp_path / "runs")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    # both processes write to one pipe: their lines may run together, so read JSON objects, not lines
    decoder, text, ranks = json.JSONDecoder(), done.stdout, []
    start = text.find('{"rank"')
    while start >= 0:
        obj, end = decoder.raw_decode(text, start)
        ranks.append(obj)
        start = text.find('{"rank"', end)
    ranks.sort(key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1]
    assert list(ranks[0]["digests"]) == list(catalog.METHODS)
    assert ranks[0]["digests"] == ranks[1]["digests"]
    for method in catalog.METHODS:
        assert (tmp_path / "runs" / method / "last.pth").exists(), method
