"""FGSM and PGD against independent computations (autograd written out here, and torchattacks
where it is installed), their constraints, the evaluator's bookkeeping and the `adversarial` command."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cutmix_eval.cli import main
from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.adversarial import eps_label, evaluate_adversarial, parse_eps, random_targets
from cutmix_eval.evaluate.attacks import fgsm, pgd
from cutmix_eval.models import create_model
from cutmix_eval.models.checkpoint import save_checkpoint
from cutmix_eval.report.figures import adversarial_figure
from cutmix_eval.settings import RunSettings

EPS = (1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255)


@pytest.fixture(scope="module")
def batch(small_labelled):
    dataset, model = small_labelled
    images = torch.stack([dataset[i]["image"].as_subclass(torch.Tensor) for i in range(len(dataset))])
    labels = torch.as_tensor([int(dataset[i]["label"]) for i in range(len(dataset))])
    return model, images, labels


def fgsm_by_hand(model, images, labels, eps, targeted=False):
    """FGSM written out: mean cross-entropy, backward, a signed step, clipping."""
    x = images.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), labels)
    loss.backward()
    step = -x.grad.sign() if targeted else x.grad.sign()
    model.zero_grad(set_to_none=True)
    return (images + eps * step).clamp(0, 1)


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_equals_autograd_written_out(batch, targeted):
    model, images, labels = batch
    goal = (labels + 3) % 10 if targeted else labels
    for eps in EPS:
        ours = fgsm(model, images, goal, eps, targeted=targeted)
        assert torch.equal(ours, fgsm_by_hand(model, images, goal, eps, targeted))


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_equals_torchattacks(batch, targeted):
    torchattacks = pytest.importorskip("torchattacks")
    model, images, labels = batch
    goal = (labels + 3) % 10 if targeted else labels
    attack = torchattacks.FGSM(model, eps=8 / 255)
    if targeted:
        attack.set_mode_targeted_by_label(quiet=True)
    assert torch.equal(fgsm(model, images, goal, 8 / 255, targeted=targeted), attack(images, goal))


def test_pgd_agrees_with_torchattacks_where_it_never_succeeded(batch):
    torchattacks = pytest.importorskip("torchattacks")
    model, images, labels = batch
    eps, alpha, steps = 8 / 255, 2 / 255, 7
    theirs = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(images, labels)
    ours = pgd(model, images, labels, eps, steps=steps, step_size=alpha, random_start=False)
    with torch.no_grad():
        robust_ours = model(ours).argmax(1) == labels
        robust_theirs = model(theirs).argmax(1) == labels
    # ours keeps the first point that fooled the model, theirs the last iterate: ours is never weaker, and
    # where no visited point fooled the model both end at the same iterate
    assert not (robust_ours & ~robust_theirs).any()
    assert robust_ours.any() and not robust_ours.all()
    torch.testing.assert_close(ours[robust_ours], theirs[robust_ours], rtol=0, atol=1e-6)


@pytest.mark.parametrize("targeted", [False, True])
def test_perturbations_stay_in_the_ball_and_in_pixel_range(batch, targeted):
    model, images, labels = batch
    goal = (labels + 1) % 10 if targeted else labels
    for eps in (2 / 255, 16 / 255):
        for adv in (fgsm(model, images, goal, eps, targeted=targeted),
                    pgd(model, images, goal, eps, steps=5, targeted=targeted, seed=1, restarts=2)):
            assert (adv - images).abs().max() <= eps + 1e-6
            assert adv.min() >= 0 and adv.max() <= 1


def test_pgd_is_never_weaker_than_fgsm(small_labelled):
    dataset, model = small_labelled
    result = evaluate_adversarial(model, dataset, attacks=("fgsm", "pgd"), eps=EPS, seed=0,
                                  settings=RunSettings(progress=False))
    m = result.metrics
    for eps in EPS:
        assert m[f"pgd/accuracy@{eps_label(eps)}"] <= m[f"fgsm/accuracy@{eps_label(eps)}"]
    assert m["fgsm/accuracy@16/255"] < m["fgsm/accuracy@2/255"] <= m["clean_accuracy"] == 1.0
    assert m["pgd/accuracy@8/255"] < m["fgsm/accuracy@8/255"]  # strictly stronger here
    # random starts are seeded per image: the same outcomes whatever the batch size
    again = evaluate_adversarial(model, dataset, attacks=("pgd",), eps=(8 / 255,),
                                 settings=RunSettings(batch_size=7, progress=False))
    np.testing.assert_array_equal(again.per_sample["pgd/correct"][:, 0], result.per_sample["pgd/correct"][:, 3])


def test_attacks_leave_parameters_and_batch_norm_alone():
    torch.manual_seed(0)
    model = create_model("gapnet:width=8", 10).train()
    for _ in range(3):  # give batch norm non-trivial statistics
        model(torch.rand(16, 3, 32, 32))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    fgsm(model.train(), images, labels, 8 / 255)
    pgd(model.train(), images, labels, 8 / 255, steps=3)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats and counters untouched
    assert all(p.grad is None for p in model.parameters())
    assert not model.training


def test_evaluator_bookkeeping(small_labelled, batch):
    dataset, model = small_labelled
    _, images, labels = batch
    result = evaluate_adversarial(model, dataset, attacks=("fgsm",), eps=(2 / 255, 8 / 255),
                                  settings=RunSettings(batch_size=20, progress=False))
    m, per_sample = result.metrics, result.per_sample
    for j, eps in enumerate((2 / 255, 8 / 255)):
        with torch.no_grad():
            expected = (model(fgsm(model, images, labels, eps)).argmax(1) == labels).numpy()
        np.testing.assert_array_equal(per_sample["fgsm/correct"][:, j], expected)
        assert m[f"fgsm/accuracy@{eps_label(eps)}"] == pytest.approx(expected.mean())
        clean = per_sample["clean_correct"]
        assert m[f"fgsm/success_rate@{eps_label(eps)}"] == pytest.approx((clean & ~expected).sum() / clean.sum())
    assert m["accuracy"] == m["fgsm/accuracy@8/255"]  # the paper's cell
    assert result.curves["fgsm"]["eps"][0] == 0 and result.curves["fgsm"]["accuracy"][0] == m["clean_accuracy"]
    json.loads(result.to_json())
    assert "accuracy" not in evaluate_adversarial(model, dataset, eps=(4 / 255,),
                                                  settings=RunSettings(limit=8, progress=False)).metrics


def test_targeted_evaluation(small_labelled):
    dataset, model = small_labelled
    result = evaluate_adversarial(model, dataset, attacks=("fgsm", "pgd"), eps=(16 / 255,), targeted=True,
                                  settings=RunSettings(batch_size=16, progress=False))
    targets = result.per_sample["target"]
    labels = np.asarray([int(dataset[i]["label"]) for i in range(len(dataset))])
    assert (targets != labels).all()
    again = evaluate_adversarial(model, dataset, attacks=("fgsm",), eps=(16 / 255,), targeted=True,
                                 settings=RunSettings(batch_size=48, progress=False))
    np.testing.assert_array_equal(again.per_sample["target"], targets)  # seeded per image, not per batch
    assert result.metrics["pgd/success_rate@16/255"] >= result.metrics["fgsm/success_rate@16/255"] > 0
    least = evaluate_adversarial(model, dataset, eps=(8 / 255,), targeted=True, target="least-likely",
                                 settings=RunSettings(progress=False))
    with torch.no_grad():
        images = torch.stack([dataset[i]["image"].as_subclass(torch.Tensor) for i in range(len(dataset))])
        np.testing.assert_array_equal(least.per_sample["target"], model(images).argmin(1).numpy())


def test_random_targets_are_uniform_over_other_classes():
    labels = torch.zeros(4000, dtype=torch.long)
    targets = random_targets(labels, torch.arange(4000), 5, seed=0)
    counts = torch.bincount(targets, minlength=5).numpy()
    assert counts[0] == 0 and np.allclose(counts[1:] / 4000, 0.25, atol=0.03)


def test_eps_parsing_and_errors(small_labelled):
    dataset, model = small_labelled
    assert parse_eps("8/255, 2/255,0.03") == [2 / 255, 0.03, 8 / 255]
    assert eps_label(8 / 255) == "8/255" and eps_label(0.03) == "0.03"
    for bad in ("abc", "0", "1/0", "2"):
        with pytest.raises(UserError):
            parse_eps(bad)
    with pytest.raises(UserError, match="unknown attack"):
        evaluate_adversarial(model, dataset, attacks=("cw",), settings=RunSettings(progress=False))
    with pytest.raises(UserError, match="PGD needs"):
        evaluate_adversarial(model, dataset, attacks=("pgd",), pgd_steps=0, settings=RunSettings(progress=False))


def test_figure(small_labelled):
    dataset, model = small_labelled
    result = evaluate_adversarial(model, dataset, attacks=("fgsm", "pgd"), eps=(4 / 255, 8 / 255), pgd_steps=2,
                                  settings=RunSettings(limit=8, progress=False))
    figure = adversarial_figure({"baseline": result.curves, "cutmix": {"fgsm": result.curves["fgsm"]}})
    axes = figure.get_axes()
    assert [len(ax.get_lines()) for ax in axes] == [2, 1]
    np.testing.assert_allclose(axes[0].get_lines()[0].get_xdata(), [0, 4, 8])


def test_adversarial_command(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = save_checkpoint(create_model("gapnet:width=4", 10), tmp_path / "m.pth", method="cutmix")
    out_dir = tmp_path / "out"
    code = main(["adversarial", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "12", "--attack", "fgsm,pgd",
                 "--eps", "2/255,8/255", "--pgd-steps", "2", "--output-dir", str(out_dir), "--json"])
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and set(summary["metrics"]) >= {"fgsm/accuracy@8/255", "pgd/accuracy@2/255", "accuracy"}
    assert "| pgd" in out and "8/255" in out
    record = json.loads((out_dir / "adversarial.json").read_text())
    assert np.asarray(record["per_sample"]["pgd/correct"]).shape == (12, 2)
    assert (out_dir / "adversarial-accuracy.png").stat().st_size > 5_000
    assert main(["adversarial", "--ckpt", str(ckpt), "--data", "synthetic", "--eps", "8/0"]) == 2
    assert "cannot read eps" in capsys.readouterr().err
    assert main(["adversarial", "--ckpt", str(ckpt), "--data", "synthetic", "--pgd-step-size", "1/255,2/255"]) == 2
    assert "one value" in capsys.readouterr().err


def pgd_l2_by_hand(model, images, labels, eps, steps, step, seed, keys):
    """PGD in the L2 ball, one image at a time: the start ``eps * radius * g / ||g||`` drawn from
    ``default_rng((seed, key, 0))`` (Gaussian g, radius u ** (1 / d)), then per step the mean
    cross-entropy's gradient divided by its norm, the projection ``delta * min(1, eps / ||delta||)``
    and clipping to [0, 1]; the first point that fools the model is kept."""
    out = []
    for image, label, key in zip(images, labels, keys):
        rng = np.random.default_rng((seed, key, 0))
        g = rng.standard_normal(image.shape)
        start = g / np.linalg.norm(g) * rng.random() ** (1 / g.size)
        x = (image + eps * torch.as_tensor(start, dtype=image.dtype)).clamp(0, 1)
        found = image if model(image[None]).argmax() != label else None
        for _ in range(steps):
            x = x.detach().requires_grad_(True)
            logits = model(x[None])
            if found is None and logits.argmax() != label:
                found = x.detach()
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, label[None]), x)
            delta = x.detach() + step * grad / grad.norm() - image
            x = (image + delta * min(1.0, eps / float(delta.norm()))).clamp(0, 1)
        if found is None and model(x[None]).argmax() != label:
            found = x.detach()
        out.append(x.detach() if found is None else found)
    return torch.stack(out)


def test_pgd_l2_equals_a_per_image_loop(batch):
    model, images, labels = batch
    keys = list(range(100, 100 + len(labels)))
    for eps in (0.5, 2.5):
        ours = pgd(model, images, labels, eps, steps=5, norm="L2", seed=3, keys=keys)
        theirs = pgd_l2_by_hand(model, images, labels, eps, steps=5, step=eps / 4, seed=3, keys=keys)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
        distance = (ours - images).flatten(1).norm(dim=1)
        assert (distance <= eps + 1e-5).all() and ours.min() >= 0 and ours.max() <= 1
        with torch.no_grad():
            fooled = model(ours).argmax(1) != labels
        assert fooled.any() == (eps == 2.5)  # the comparison covers both outcomes


def test_l2_options_and_defaults(small_labelled):
    dataset, model = small_labelled
    result = evaluate_adversarial(model, dataset, attacks=("pgd",), norm="L2", pgd_steps=2,
                                  settings=RunSettings(limit=8, progress=False))
    assert result.config["eps"] == [0.25, 0.5, 1.0] and result.config["norm"] == "L2"
    assert "L2" in result.conventions["threat_model"] and "L2 norm" in result.conventions["pgd"]
    assert len(evaluate_adversarial(model, dataset, attacks=("pgd",), norm="L2", eps=(3.0,), pgd_steps=1,
                                    settings=RunSettings(limit=4, progress=False)).config["eps"]) == 1
    with pytest.raises(UserError, match="FGSM is an L-infinity attack"):
        evaluate_adversarial(model, dataset, attacks=("fgsm",), norm="L2", settings=RunSettings(progress=False))
    with pytest.raises(UserError, match="write 8/255"):
        evaluate_adversarial(model, dataset, eps=(8,), settings=RunSettings(progress=False))
