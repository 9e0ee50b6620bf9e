"""PuzzleMix: the official mixup.py replayed bit for bit, targets equal to the pixel
composition, the official draws' distribution, the eval-mode input-gradient saliency."""

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from cutmix_eval.errors import UserError
from cutmix_eval.models import create_model
from cutmix_eval.train.mixers.puzzlemix import (PuzzleDraws, PuzzleMix, column_winners, draw_puzzle,
                                                puzzle_mix, transport_plan)
from cutmix_eval.train.mixing import mix_targets

gco = pytest.importorskip("gco")

# main.py, CIFAR-100 normalization
C100_MEAN = torch.tensor([129.3, 124.1, 112.4]).view(1, 3, 1, 1) / 255
C100_STD = torch.tensor([68.2, 65.4, 70.4]).view(1, 3, 1, 1) / 255


# --------------------------------------------------------------------------- the official code, re-typed
# snu-mllab/PuzzleMix mixup.py (mixup_process with graph=True, mixup_graph, graphcut_multi,
# neigh_penalty, mask_transport, transport_image, cost_matrix), on the CPU, without the
# adversarial branch (adv_p = 0 in the plain recipe) and the process pool (mp).

def _off_cost_matrix(width):
    c = np.zeros([width ** 2, width ** 2], dtype=np.float32)
    for m_i in range(width ** 2):
        i1, j1 = m_i // width, m_i % width
        for m_j in range(width ** 2):
            i2, j2 = m_j // width, m_j % width
            c[m_i, m_j] = abs(i1 - i2) ** 2 + abs(j1 - j2) ** 2
    c = c / (width - 1) ** 2
    return torch.tensor(c)


_OFF_COST = {str(n): _off_cost_matrix(n).unsqueeze(0) for n in (2, 4, 8, 16)}


def _off_graphcut_multi(unary1, unary2, pw_x, pw_y, alpha, beta, eta, n_labels=2, eps=1e-8):
    block_num = unary1.shape[0]
    large_val = 1000 * block_num ** 2
    if n_labels == 2:
        prior = np.array([-np.log(alpha + eps), -np.log(1 - alpha + eps)])
    elif n_labels == 3:
        prior = np.array([-np.log(alpha ** 2 + eps), -np.log(2 * alpha * (1 - alpha) + eps),
                          -np.log((1 - alpha) ** 2 + eps)])
    elif n_labels == 4:
        prior = np.array([-np.log(alpha ** 3 + eps), -np.log(3 * alpha ** 2 * (1 - alpha) + eps),
                          -np.log(3 * alpha * (1 - alpha) ** 2 + eps), -np.log((1 - alpha) ** 3 + eps)])
    prior = eta * prior / block_num ** 2
    unary_cost = (large_val * np.stack([(1 - lam) * unary1 + lam * unary2 + prior[i]
                                        for i, lam in enumerate(np.linspace(0, 1, n_labels))],
                                       axis=-1)).astype(np.int32)
    pairwise_cost = np.zeros(shape=[n_labels, n_labels], dtype=np.float32)
    for i in range(n_labels):
        for j in range(n_labels):
            pairwise_cost[i, j] = (i - j) ** 2 / (n_labels - 1) ** 2
    pw_x = (large_val * (pw_x + beta)).astype(np.int32)
    pw_y = (large_val * (pw_y + beta)).astype(np.int32)
    labels = 1.0 - gco.cut_grid_graph(unary_cost, pairwise_cost, pw_x, pw_y, algorithm="swap") / (n_labels - 1)
    return labels.reshape(block_num, block_num)


def _off_neigh_penalty(input1, input2, k):
    pw_x = input1[:, :, :-1, :] - input2[:, :, 1:, :]
    pw_y = input1[:, :, :, :-1] - input2[:, :, :, 1:]
    pw_x = pw_x[:, :, k - 1::k, :]
    pw_y = pw_y[:, :, :, k - 1::k]
    pw_x = F.avg_pool2d(pw_x.abs().mean(1), kernel_size=(1, k))
    pw_y = F.avg_pool2d(pw_y.abs().mean(1), kernel_size=(k, 1))
    return pw_x, pw_y


def _off_mask_transport(mask, grad_pool, eps=0.01):
    block_num = mask.shape[-1]
    n_iter = int(block_num)
    c = _OFF_COST[str(block_num)]
    z = (mask > 0).float()
    cost = eps * c - grad_pool.reshape(-1, block_num ** 2, 1) * z.reshape(-1, 1, block_num ** 2)
    for _ in range(n_iter):
        row_best = cost.min(-1)[1]
        plan = torch.zeros_like(cost).scatter_(-1, row_best.unsqueeze(-1), 1)
        cost_fight = plan * cost
        col_best = cost_fight.min(-2)[1]
        plan_win = torch.zeros_like(cost).scatter_(-2, col_best.unsqueeze(-2), 1) * plan
        plan_lose = (1 - plan_win) * plan
        cost += plan_lose
    return plan_win


def _off_transport_image(img, plan, batch_size, block_num, block_size):
    input_patch = img.reshape([batch_size, 3, block_num, block_size, block_num * block_size]).transpose(-2, -1)
    input_patch = input_patch.reshape([batch_size, 3, block_num, block_num, block_size, block_size]).transpose(-2, -1)
    input_patch = input_patch.reshape([batch_size, 3, block_num ** 2, block_size, block_size]).permute(
        0, 1, 3, 4, 2).unsqueeze(-1)
    input_transport = plan.transpose(-2, -1).unsqueeze(1).unsqueeze(1).unsqueeze(1).matmul(input_patch).squeeze(
        -1).permute(0, 1, 4, 2, 3)
    input_transport = input_transport.reshape([batch_size, 3, block_num, block_num, block_size, block_size])
    input_transport = input_transport.transpose(-2, -1).reshape(
        [batch_size, 3, block_num, block_num * block_size, block_size])
    return input_transport.transpose(-2, -1).reshape(
        [batch_size, 3, block_num * block_size, block_num * block_size])


def _off_mixup_graph(input1, grad1, indices, block_num, alpha, beta, gamma, eta, neigh_size, n_labels, mean, std,
                     transport, t_eps, t_size):
    input2 = input1[indices].clone()
    batch_size, _, _, width = input1.shape
    block_size = width // block_num
    neigh_size = min(neigh_size, block_size)
    t_size = min(t_size, block_size)
    beta = beta / block_num / 16
    grad1_pool = F.avg_pool2d(grad1, block_size)
    unary1_torch = grad1_pool / grad1_pool.reshape(batch_size, -1).sum(1).reshape(batch_size, 1, 1)
    unary2_torch = unary1_torch[indices]
    input1_pool = F.avg_pool2d(input1 * std + mean, neigh_size)
    input2_pool = input1_pool[indices]
    pw_x = torch.zeros([batch_size, 2, 2, block_num - 1, block_num])
    pw_y = torch.zeros([batch_size, 2, 2, block_num, block_num - 1])
    k = block_size // neigh_size
    pw_x[:, 0, 0], pw_y[:, 0, 0] = _off_neigh_penalty(input2_pool, input2_pool, k)
    pw_x[:, 0, 1], pw_y[:, 0, 1] = _off_neigh_penalty(input2_pool, input1_pool, k)
    pw_x[:, 1, 0], pw_y[:, 1, 0] = _off_neigh_penalty(input1_pool, input2_pool, k)
    pw_x[:, 1, 1], pw_y[:, 1, 1] = _off_neigh_penalty(input1_pool, input1_pool, k)
    pw_x = beta * gamma * pw_x
    pw_y = beta * gamma * pw_y
    unary1 = unary1_torch.clone()
    unary2 = unary2_torch.clone()
    unary2[:, :-1, :] += (pw_x[:, 1, 0] + pw_x[:, 1, 1]) / 2.
    unary1[:, :-1, :] += (pw_x[:, 0, 1] + pw_x[:, 0, 0]) / 2.
    unary2[:, 1:, :] += (pw_x[:, 0, 1] + pw_x[:, 1, 1]) / 2.
    unary1[:, 1:, :] += (pw_x[:, 1, 0] + pw_x[:, 0, 0]) / 2.
    unary2[:, :, :-1] += (pw_y[:, 1, 0] + pw_y[:, 1, 1]) / 2.
    unary1[:, :, :-1] += (pw_y[:, 0, 1] + pw_y[:, 0, 0]) / 2.
    unary2[:, :, 1:] += (pw_y[:, 0, 1] + pw_y[:, 1, 1]) / 2.
    unary1[:, :, 1:] += (pw_y[:, 1, 0] + pw_y[:, 0, 0]) / 2.
    pw_x = (pw_x[:, 1, 0] + pw_x[:, 0, 1] - pw_x[:, 1, 1] - pw_x[:, 0, 0]) / 2
    pw_y = (pw_y[:, 1, 0] + pw_y[:, 0, 1] - pw_y[:, 1, 1] - pw_y[:, 0, 0]) / 2
    unary1, unary2 = unary1.detach().cpu().numpy(), unary2.detach().cpu().numpy()
    pw_x, pw_y = pw_x.detach().cpu().numpy(), pw_y.detach().cpu().numpy()
    mask = [_off_graphcut_multi(unary2[i], unary1[i], pw_x[i], pw_y[i], alpha, beta, eta, n_labels)
            for i in range(batch_size)]
    mask = torch.tensor(np.array(mask), dtype=torch.float32).unsqueeze(1)
    if transport:
        if t_size == -1:
            t_block_num = block_num
            t_size = block_size
        elif t_size < block_size:
            t_block_num = width // t_size
            mask = F.interpolate(mask, size=t_block_num)
            grad1_pool = F.avg_pool2d(grad1, t_size)
            unary1_torch = grad1_pool / grad1_pool.reshape(batch_size, -1).sum(1).reshape(batch_size, 1, 1)
            unary2_torch = unary1_torch[indices]
        else:
            t_block_num = block_num
        plan = _off_mask_transport(mask, unary1_torch, eps=t_eps)
        input1 = _off_transport_image(input1, plan, batch_size, t_block_num, t_size)
        plan = _off_mask_transport(1 - mask, unary2_torch, eps=t_eps)
        input2 = _off_transport_image(input2, plan, batch_size, t_block_num, t_size)
    mask = F.interpolate(mask, size=width)
    ratio = mask.reshape(batch_size, -1).mean(-1)
    return mask * input1 + (1 - mask) * input2, ratio


def _off_mixup_process(out, target, grad, num_classes, s: PuzzleMix, mixup_alpha=1.0, mean=0.0, std=1.0):
    """mixup_process(graph=True) with to_one_hot and get_lambda; its np.random calls.
    ``mean=0, std=1``: its normalized-space input is the pixels, and ``x * 1 + 0`` is exact."""
    target_reweighted = torch.zeros((target.size(0), num_classes), dtype=torch.float32)
    target_reweighted.scatter_(1, target.unsqueeze(1), 1)
    block_num = 2 ** np.random.randint(1, 5)
    indices = np.random.permutation(out.size(0))
    lam = np.random.beta(mixup_alpha, mixup_alpha)
    out, ratio = _off_mixup_graph(out, grad, indices, block_num, lam, s.beta, s.gamma, s.eta, s.neigh_size,
                                  s.n_labels, mean, std, s.transport, s.t_eps, s.t_size)
    target_shuffled_onehot = target_reweighted[indices]
    target_reweighted = target_reweighted * ratio.unsqueeze(-1) + target_shuffled_onehot * (1 - ratio.unsqueeze(-1))
    return out, target_reweighted


def _recorded_draws(seed, batch, alpha=1.0):
    """The official draws of mixup_process under np.random.seed(seed), in its order."""
    np.random.seed(seed)
    block_num = 2 ** np.random.randint(1, 5)
    perm = np.random.permutation(batch)
    return PuzzleDraws(int(block_num), perm, np.random.beta(alpha, alpha))


def _batch(batch, side, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, side, side, generator=gen)
    # a smooth bright square per image, so the graph cut has structure to keep
    x[:, :, side // 4:side // 2, side // 4:side // 2] += 0.5
    saliency = torch.rand(batch, side, side, generator=gen) ** 2 + 1e-3
    return x.clamp(0, 1), saliency, torch.randint(0, 10, (batch,), generator=gen)


# --------------------------------------------------------------------------- replay


REPLAY = [  # (n_labels, transport, t_size, side, seeds)
    (3, True, 4, 32, range(8)),
    (3, True, 4, 16, range(8)),
    (2, True, -1, 32, range(4)),
    (4, False, 4, 32, range(4)),
    (3, True, -1, 16, range(4)),
]


@pytest.mark.parametrize("n_labels, transport, t_size, side, seeds", REPLAY)
@pytest.mark.parametrize("batch", [1, 5])
def test_replay_of_the_official_mixup_process_is_bit_equal(n_labels, transport, t_size, side, seeds, batch):
    """Same images, saliency and np.random draws: the official mixup_process (normalization
    mean 0, std 1, so its pixel round trip is exact) and ours give equal images and targets."""
    settings = PuzzleMix(10, np.random.default_rng(0), n_labels=n_labels, transport=transport, t_size=t_size)
    grids = set()
    for seed in seeds:
        x, saliency, y = _batch(batch, side, seed)
        np.random.seed(seed)
        official, official_targets = _off_mixup_process(x, y, saliency, 10, settings)
        draws = _recorded_draws(seed, batch)
        grids.add(draws.block_num)
        mixed, ratio = puzzle_mix(x, saliency, draws, settings)
        targets = mix_targets(y, torch.as_tensor(draws.perm), ratio.numpy(), 10)
        assert torch.equal(mixed, official) and torch.equal(targets, official_targets), (seed, draws.block_num)
    if len(seeds) == 8:
        assert grids == {2, 4, 8, 16}


def test_pixel_space_mixing_equals_the_official_normalized_space_mixing():
    """With CIFAR-100 normalization the official code mixes normalized images; ours, mixing
    pixels, gives its output mapped back to pixels (to float rounding) and the same targets."""
    x, saliency, y = _batch(6, 32, 3)
    settings = PuzzleMix(10, np.random.default_rng(0))
    for seed in range(4):
        np.random.seed(seed)
        official, official_targets = _off_mixup_process((x - C100_MEAN) / C100_STD, y, saliency, 10,
                                                        settings, mean=C100_MEAN, std=C100_STD)
        draws = _recorded_draws(seed, 6)
        mixed, ratio = puzzle_mix(x, saliency, draws, settings)
        torch.testing.assert_close(mixed, official * C100_STD + C100_MEAN, rtol=0, atol=1e-6)
        assert torch.equal(mix_targets(y, torch.as_tensor(draws.perm), ratio.numpy(), 10), official_targets)


@pytest.mark.parametrize("n", [2, 4, 8, 16])
@pytest.mark.parametrize("eps", [0.8, 0.0, 10.0])
def test_transport_plan_equals_the_official_dense_iteration_ties_included(n, eps):
    """Our pick-by-pick iteration against the official one-hot matrices, on saliency with
    few distinct values (ties between blocks), zero-saliency blocks and 0 / 0.5 / 1 masks."""
    gen = torch.Generator().manual_seed(n)
    for _ in range(3):
        mask = torch.randint(0, 3, (4, 1, n, n), generator=gen).float() / 2
        saliency = torch.randint(0, 4, (4, n, n), generator=gen).float() / (n * n)
        official = _off_mask_transport(mask, saliency, eps=eps)
        ours = transport_plan(mask, saliency, eps)
        assert torch.equal(ours.filled, official.amax(1) > 0)
        assert torch.equal(torch.where(ours.filled, ours.source, -1),
                           torch.where(official.amax(1) > 0, official.argmax(1), -1))


def test_column_winners_equal_the_official_column_minimum():
    """Every case of the official rule, on 3 blocks with picks and costs from small sets
    (all blocks on one position, costs below, at and above 0)."""
    gen = torch.Generator().manual_seed(0)
    pick = torch.randint(0, 2, (4000, 3), generator=gen)
    full = torch.randint(-2, 3, (4000, 3, 3), generator=gen).float()
    plan = torch.zeros_like(full).scatter_(-1, pick.unsqueeze(-1), 1)
    col_best = (plan * full).min(-2)[1]
    won = torch.zeros_like(full).scatter_(-2, col_best.unsqueeze(-2), 1) * plan
    official = torch.where(won.amax(1) > 0, won.argmax(1), 3)
    assert torch.equal(column_winners(pick, full.gather(-1, pick.unsqueeze(-1)).squeeze(-1)), official)


# --------------------------------------------------------------------------- targets = pixel composition


def _channel_coded(batch, side=16):
    """Image ``i`` is 1 in channel ``i`` and 0 elsewhere, so a mixed image's channel ``k``
    mean is exactly the share of source ``k`` (blended mask levels included); labels = indices."""
    x = torch.eye(batch).view(batch, batch, 1, 1).expand(batch, batch, side, side).clone()
    return x, torch.arange(batch)


@pytest.mark.parametrize("n_labels, transport", [(3, True), (2, True), (4, False), (3, False)])
@pytest.mark.parametrize("batch", [1, 2, 7])
def test_targets_equal_the_pixel_composition_exactly(n_labels, transport, batch):
    mixer = PuzzleMix(batch, np.random.default_rng(batch), n_labels=n_labels, transport=transport)
    x, y = _channel_coded(batch)
    gen = torch.Generator().manual_seed(batch)
    for _ in range(5):
        saliency = torch.rand(batch, 16, 16, generator=gen) + 1e-3
        mixed, targets = mixer(x, y, saliency)
        torch.testing.assert_close(targets, mixed.mean((2, 3)), rtol=0, atol=1e-6)
        torch.testing.assert_close(targets.sum(1), torch.ones(batch))


# --------------------------------------------------------------------------- distributions


def test_draws_follow_the_official_sampling():
    """block_num, lam and the partners against the official np.random calls (two-sample KS)."""
    rng = np.random.default_rng(0)
    ours = [draw_puzzle(rng, (2, 4, 8, 16), 5, 1.0) for _ in range(3000)]
    np.random.seed(0)
    official = [(2 ** np.random.randint(1, 5), np.random.permutation(5), np.random.beta(1.0, 1.0))
                for _ in range(3000)]
    assert stats.ks_2samp([d.block_num for d in ours], [d[0] for d in official]).pvalue > 0.001
    assert stats.ks_2samp([d.lam for d in ours], [d[2] for d in official]).pvalue > 0.001
    assert stats.ks_2samp([d.perm[0] for d in ours], [d[1][0] for d in official]).pvalue > 0.001


def test_mixed_ratio_follows_the_official_distribution():
    """The own-label weight after mixing (the mask mean) over many batches: ours against the
    official mixup_process, two-sample KS. The transport moves pixels, not the mask, so it
    is off here (the replay covers it bit for bit)."""
    x, saliency, _ = _batch(2, 16, 7)
    y = torch.arange(2)
    mixer = PuzzleMix(2, np.random.default_rng(1), transport=False)
    ours = [mixer(x, y, saliency)[1][0, 0].item() for _ in range(300)]
    np.random.seed(1)
    official = [_off_mixup_process(x, y, saliency, 2, mixer)[1][0, 0].item() for _ in range(300)]
    assert stats.ks_2samp(ours, official).pvalue > 0.001


# --------------------------------------------------------------------------- the saliency guide


def test_guide_is_the_official_eval_mode_input_gradient_and_touches_no_parameter():
    torch.manual_seed(0)
    model = create_model("gapnet:width=4", 10).train()
    x, _, y = _batch(4, 16, 0)
    stats_before = [b.clone() for b in model.buffers()]
    ours = PuzzleMix(10, np.random.default_rng(0)).guide(model, x, y)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(stats_before, model.buffers()))  # eval mode: no BN update
    # main.py with clean_lam 0: eval mode, the gradient of the mean per-sample loss w.r.t. the normalized input
    model.eval()
    net_input = model.normalize(x).requires_grad_(True)
    F.cross_entropy(model.net(net_input), y, reduction="none").mean(0).backward(retain_graph=True)
    assert torch.equal(ours, torch.sqrt(torch.mean(net_input.grad ** 2, dim=1)))
    PuzzleMix(10, np.random.default_rng(0)).guide(model, x, y)
    assert not model.training  # the mode is restored, eval included


def test_training_step_mixes_with_the_guide_and_leaves_gradients_to_the_loss():
    model = create_model("gapnet:width=4", 10).train()
    x, _, y = _batch(3, 32, 1)
    logits, targets = PuzzleMix(10, np.random.default_rng(0)).training_step(model, model, x, y)
    assert logits.shape == targets.shape == (3, 10) and all(p.grad is None for p in model.parameters())
    torch.testing.assert_close(targets.sum(1), torch.ones(3))
    F.cross_entropy(logits, targets).backward()
    assert all(p.grad is not None for p in model.parameters())


# --------------------------------------------------------------------------- shapes, seeds, errors


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_dtypes_devices_and_seeds(batch, dtype):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        x, saliency, y = (t.to(device) for t in _batch(batch, 32, batch))
        x = x.to(dtype)
        first = PuzzleMix(10, np.random.default_rng(5))(x, y, saliency)
        again = PuzzleMix(10, np.random.default_rng(5))(x, y, saliency)
        for out, kept in zip(first, again):
            assert out.dtype == dtype and out.device == x.device and torch.equal(out, kept)
        assert first[0].shape == x.shape and first[1].shape == (batch, 10)


def test_prob_leaves_batches_unmixed():
    x, saliency, y = _batch(6, 16, 0)
    never = PuzzleMix(10, np.random.default_rng(0), prob=0.0)
    mixed, targets = never(x, y, saliency)
    assert torch.equal(mixed, x) and torch.equal(targets, F.one_hot(y, 10).float())
    coins = []
    for seed in range(12):  # the coin is the generator's first draw: mixed when below prob
        mixed, _ = PuzzleMix(10, np.random.default_rng(seed), prob=0.5)(x, y, saliency)
        rng = np.random.default_rng(seed)
        coins.append(rng.random() < 0.5)
        expected = puzzle_mix(x, saliency, draw_puzzle(rng, (2, 4, 8, 16), 6, 1.0), never)[0] \
            if coins[-1] else x
        assert torch.equal(mixed, expected)
    assert 0 < sum(coins) < 12


@pytest.mark.parametrize("params", [{"alpha": 0}, {"n_labels": 1}, {"t_size": 0}, {"neigh_size": 0},
                                    {"block_nums": (1, 2)}, {"prob": 1.5}, {"beta": -1}])
def test_bad_parameters_are_one_line_user_errors(params):
    with pytest.raises(UserError) as err:
        PuzzleMix(10, np.random.default_rng(0), **params)
    assert "\n" not in str(err.value) and next(iter(params)) in str(err.value)


def test_bad_inputs_are_one_line_user_errors(monkeypatch):
    mixer = PuzzleMix(10, np.random.default_rng(0))
    x, saliency, y = _batch(2, 32, 0)
    messages = []
    for args in [(x, y), (x, y, saliency[:, :16]), (x[..., :16], y, saliency[..., :16]),
                 (x[..., :24, :24], y, saliency[..., :24, :24])]:
        with pytest.raises(UserError) as err:
            mixer(*args)
        messages.append(str(err.value))
    monkeypatch.setitem(sys.modules, "gco", None)
    with pytest.raises(UserError) as err:
        mixer(x, y, saliency)
    messages.append(str(err.value))
    assert all("\n" not in m for m in messages)
    assert "saliency" in messages[0] and "square" in messages[2] and "gco-wrapper==" in messages[4]
