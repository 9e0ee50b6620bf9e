"""PuzzleMix: saliency-preserving graph-cut masks with block-wise transport."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import comb
from typing import ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from cutmix_eval.errors import UserError
from cutmix_eval.train.mixing import Mixer, as_index, mix_targets, one_hot_targets, pair_indices, sample_lambda

#: the pinned graph-cut package (imported on first use)
GCO_REQUIREMENT = "gco-wrapper==3.0.9"


class PuzzleDraws(NamedTuple):
    """One batch's random draws: the graph-cut grid (``block_num x block_num`` blocks),
    the partners and ``lam``."""

    block_num: int
    perm: np.ndarray
    lam: float


def draw_puzzle(rng: np.random.Generator, block_nums: tuple[int, ...], batch: int, alpha: float) -> PuzzleDraws:
    """In the official order: ``block_num`` uniform over ``block_nums`` (official
    ``2 ** np.random.randint(1, 5)``), one permutation of the batch, ``lam ~ Beta(alpha, alpha)``."""
    block_num = int(block_nums[int(rng.integers(len(block_nums)))])
    perm = pair_indices(rng, batch)
    return PuzzleDraws(block_num, perm, float(sample_lambda(rng, alpha)))


# ----------------------------------------------------------------------------- saliency


def gradient_saliency(grad: torch.Tensor) -> torch.Tensor:
    """``B x C x H x W`` input gradient -> ``B x H x W`` saliency: the root mean square
    over channels (official ``sqrt(mean(grad ** 2, dim=1))``)."""
    return torch.sqrt(torch.mean(grad ** 2, dim=1))


def block_saliency(saliency: torch.Tensor, size: int) -> torch.Tensor:
    """``B x H x W`` -> ``B x H/size x W/size``: the mean over each ``size x size`` block,
    divided by the image's total so each image's blocks sum to 1."""
    pooled = F.avg_pool2d(saliency, size)
    return pooled / pooled.reshape(len(pooled), -1).sum(1).reshape(-1, 1, 1)


# ----------------------------------------------------------------------------- graph cut


def boundary_distance(upper: torch.Tensor, lower: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean absolute difference across the boundaries between graph-cut blocks, with
    ``upper`` on the upper / left side and ``lower`` on the lower / right side.

    ``upper``, ``lower``: ``B x C x h x w`` images pooled to ``k x k`` cells per block.
    Returns ``(vertical B x n-1 x n, horizontal B x n x n-1)`` for the ``n x n`` grid:
    the last cell row (column) of each block against the first of the next, averaged
    over channels and the ``k`` cells along the boundary.
    """
    down = (upper[:, :, :-1, :] - lower[:, :, 1:, :])[:, :, k - 1::k, :]
    right = (upper[:, :, :, :-1] - lower[:, :, :, 1:])[:, :, :, k - 1::k]
    return (F.avg_pool2d(down.abs().mean(1), kernel_size=(1, k)),
            F.avg_pool2d(right.abs().mean(1), kernel_size=(k, 1)))


class GraphCosts(NamedTuple):
    """Costs of the per-image graph, ``float`` arrays on the CPU: ``own`` and ``partner``
    (``B x n x n``) are the unary costs of showing the own / the partner's block (the
    saliency it hides plus its mean boundary cost), ``vertical`` (``B x n-1 x n``) and
    ``horizontal`` (``B x n x n-1``) the weights of a change of source across a boundary."""

    own: np.ndarray
    partner: np.ndarray
    vertical: np.ndarray
    horizontal: np.ndarray


def graph_costs(x: torch.Tensor, unary: torch.Tensor, perm: torch.Tensor, neigh_size: int,
                smoothness: float) -> GraphCosts:
    """The graph of every image against its partner ``x[perm]``.

    ``unary`` is the ``B x n x n`` block saliency. The boundary cost of each of the four
    (upper source, lower source) pairs, times ``smoothness``, is split as the official
    code does: half of each pair's cost goes to the unary cost of each side's source,
    and the rest, ``(d(own, partner) + d(partner, own) - d(own, own) - d(partner,
    partner)) / 2``, weighs a change of source between the two blocks.
    """
    batch, n = unary.shape[0], unary.shape[-1]
    pooled = F.avg_pool2d(x, neigh_size)
    mate = pooled[perm]
    k = x.shape[-1] // n // neigh_size
    # pair[s, t]: the boundary cost with source s above / left and t below / right (0 = partner, 1 = own)
    pair_v = torch.zeros([batch, 2, 2, n - 1, n], dtype=x.dtype, device=x.device)
    pair_h = torch.zeros([batch, 2, 2, n, n - 1], dtype=x.dtype, device=x.device)
    for s, upper in enumerate((mate, pooled)):
        for t, lower in enumerate((mate, pooled)):
            pair_v[:, s, t], pair_h[:, s, t] = boundary_distance(upper, lower, k)
    pair_v = smoothness * pair_v
    pair_h = smoothness * pair_h
    own = unary[perm].clone()  # showing the own image hides the partner's saliency
    partner = unary.clone()
    # the official order of the additions (float addition is not associative)
    own[:, :-1, :] += (pair_v[:, 1, 0] + pair_v[:, 1, 1]) / 2.
    partner[:, :-1, :] += (pair_v[:, 0, 1] + pair_v[:, 0, 0]) / 2.
    own[:, 1:, :] += (pair_v[:, 0, 1] + pair_v[:, 1, 1]) / 2.
    partner[:, 1:, :] += (pair_v[:, 1, 0] + pair_v[:, 0, 0]) / 2.
    own[:, :, :-1] += (pair_h[:, 1, 0] + pair_h[:, 1, 1]) / 2.
    partner[:, :, :-1] += (pair_h[:, 0, 1] + pair_h[:, 0, 0]) / 2.
    own[:, :, 1:] += (pair_h[:, 0, 1] + pair_h[:, 1, 1]) / 2.
    partner[:, :, 1:] += (pair_h[:, 1, 0] + pair_h[:, 0, 0]) / 2.
    change_v = (pair_v[:, 1, 0] + pair_v[:, 0, 1] - pair_v[:, 1, 1] - pair_v[:, 0, 0]) / 2
    change_h = (pair_h[:, 1, 0] + pair_h[:, 0, 1] - pair_h[:, 1, 1] - pair_h[:, 0, 0]) / 2
    return GraphCosts(*(t.detach().cpu().numpy() for t in (own, partner, change_v, change_h)))


def label_prior(lam: float, n_labels: int, eps: float = 1e-8) -> np.ndarray:
    """``-log P(label)`` of the ``n_labels`` mask levels, label ``i`` showing the own
    image with weight ``1 - i / (n_labels - 1)``: the binomial probabilities of
    ``n_labels - 1`` draws with success ``lam`` (official: written out for 2, 3, 4
    labels; this form is bit-identical for them)."""
    m = n_labels - 1
    return np.array([-np.log(comb(m, i) * lam ** (m - i) * (1 - lam) ** i + eps) for i in range(n_labels)])


def graphcut_mask(own: np.ndarray, partner: np.ndarray, vertical: np.ndarray, horizontal: np.ndarray,
                  lam: float, smoothness: float, eta: float, n_labels: int) -> np.ndarray:
    """One image's ``n x n`` mask (weight of the own image, levels ``0, 1/(n_labels-1),
    ..., 1``) minimizing the PuzzleMix energy by gco's alpha-beta swap.

    Label ``i`` costs ``(1 - w) * own + w * partner + eta * prior_i / n**2`` with
    ``w = i / (n_labels - 1)``; a boundary between labels ``i, j`` costs
    ``(weight + smoothness) * (i - j)**2 / (n_labels - 1)**2``. As in the official
    call, the unary and edge costs are scaled by ``1000 * n**2`` and truncated to int32
    and the label distances are float32, so gco scales and truncates every term once
    more by its own fixed precisions.
    """
    gco = import_gco()
    n = own.shape[0]
    scale = 1000 * n ** 2
    prior = eta * label_prior(lam, n_labels) / n ** 2
    unary = (scale * np.stack([(1 - w) * own + w * partner + prior[i]
                               for i, w in enumerate(np.linspace(0, 1, n_labels))], axis=-1)).astype(np.int32)
    levels = np.arange(n_labels)
    label_cost = ((levels[:, None] - levels[None, :]) ** 2 / (n_labels - 1) ** 2).astype(np.float32)
    labels = gco.cut_grid_graph(unary, label_cost, (scale * (vertical + smoothness)).astype(np.int32),
                                (scale * (horizontal + smoothness)).astype(np.int32), algorithm="swap")
    return (1.0 - labels / (n_labels - 1)).reshape(n, n)


def import_gco():
    """The ``gco`` module of gco-wrapper (Python bindings of Boykov/Kolmogorov/Veksler's
    graph cuts), or a one-line :class:`UserError` saying how to install it."""
    try:
        import gco
    except ImportError as err:
        raise UserError(f"puzzlemix needs the graph-cut package gco-wrapper: pip install '{GCO_REQUIREMENT}'") from err
    return gco


# ----------------------------------------------------------------------------- transport


@lru_cache(maxsize=None)
def block_distances(n: int, device: torch.device) -> torch.Tensor:
    """``n^2 x n^2`` float32 squared distances between the blocks of an ``n x n`` grid
    (row-major), divided by ``(n - 1)**2``."""
    index = torch.arange(n * n, device=device)
    rows, cols = index // n, index % n
    squared = (rows[:, None] - rows[None, :]) ** 2 + (cols[:, None] - cols[None, :]) ** 2
    return squared.to(torch.float32) / (n - 1) ** 2


class Transport(NamedTuple):
    """A transport plan by destination: ``source[b, j]`` is the block (row-major) moved
    to position ``j`` of image ``b``, where ``filled[b, j]``; unfilled positions stay empty."""

    source: torch.Tensor
    filled: torch.Tensor


def transport_plan(mask: torch.Tensor, saliency: torch.Tensor, eps: float) -> Transport:
    """Where the blocks of each image move, by the official iteration (``mask_transport``).

    ``mask`` is ``B x 1 x n x n`` (the image's weight per block), ``saliency`` ``B x n x n``.
    Moving block ``i`` to position ``j`` costs ``eps * distance(i, j) - saliency_i *
    [mask_j > 0]``. ``n`` rounds: every block picks its cheapest position (first on ties);
    each position goes to the block whose value in the official column minimum comes first,
    that column holding each picker's cost and 0 for every other block (see
    :func:`column_winners`); every picker that did not win has its cost for that position
    raised by 1. The plan is the last round's winners. The official code does this on dense
    ``B x n^2 x n^2`` one-hot plans; this keeps only each block's pick (re-picking only the
    losers, whose costs alone changed), with the same float values and tie order, so the
    outcome is the same.
    """
    n = mask.shape[-1]
    occupied = (mask > 0).to(saliency.dtype)
    cost = eps * block_distances(n, mask.device) - saliency.reshape(-1, n * n, 1) * occupied.reshape(-1, 1, n * n)
    blocks = torch.arange(n * n, device=mask.device).expand(cost.shape[:2])
    pick = cost.min(-1)[1]
    for _ in range(n):
        winner = column_winners(pick, cost.gather(-1, pick.unsqueeze(-1)).squeeze(-1))
        lost = winner.gather(-1, pick) != blocks
        cost.scatter_add_(-1, pick.unsqueeze(-1), lost.to(cost.dtype).unsqueeze(-1))
        pick[lost] = cost[lost].min(-1)[1]  # only the losers' costs changed
    filled = winner < n * n
    return Transport(torch.where(filled, winner, 0), filled)


def column_winners(pick: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
    """``B x N`` winner of each position, ``N`` where none: the official ``argmin`` over
    blocks ``i`` of ``cost_i`` if block ``i`` picked the position, else 0 (first index on
    ties), kept when that block picked it.

    So the lowest-cost picker wins when its cost is below 0, or when every block picked
    the position; otherwise the value 0 is the minimum and the first block holding it
    decides: a picker whose cost is exactly 0 wins if it comes before every block that did
    not pick the position (the first such block is block 0, or, for block 0's own pick,
    the first block whose pick differs), and nobody wins if not.
    """
    batch, count = pick.shape
    blocks = torch.arange(count, device=pick.device).expand(batch, count)
    none = torch.full_like(pick, count)
    best = torch.full_like(cost, float("inf")).scatter_reduce(-1, pick, cost, "amin")
    first_best = none.scatter_reduce(-1, pick, torch.where(cost == best.gather(-1, pick), blocks, count), "amin")
    first_zero = none.scatter_reduce(-1, pick, torch.where(cost == 0, blocks, count), "amin")
    pickers = torch.zeros_like(pick).scatter_add_(-1, pick, torch.ones_like(pick))
    other_than_first = torch.where(pick != pick[:, :1], blocks, count).amin(-1, keepdim=True)
    first_non_picker = torch.where(blocks == pick[:, :1], other_than_first, 0)
    zero_winner = torch.where(first_zero < first_non_picker, first_zero, count)
    return torch.where((best < 0) | (pickers == count), first_best, zero_winner)


def move_blocks(images: torch.Tensor, plan: Transport, size: int) -> torch.Tensor:
    """``B x C x H x W`` images with their ``size x size`` blocks moved by ``plan``; empty
    positions become 0. The official code multiplies by the one-hot plan, which gives
    the same values; a gather keeps float rounding (TF32 included) off the pixels."""
    batch, channels, height, width = images.shape
    n = width // size
    blocks = images.reshape(batch, channels, n, size, n, size).transpose(3, 4).reshape(batch, channels, n * n, -1)
    source = plan.source[:, None, :, None].expand(-1, channels, -1, size * size)
    moved = blocks.gather(2, source) * plan.filled[:, None, :, None].to(images.dtype)
    return moved.reshape(batch, channels, n, n, size, size).transpose(3, 4).reshape(batch, channels, height, width)


# ----------------------------------------------------------------------------- composition


def puzzle_mix(x: torch.Tensor, saliency: torch.Tensor, draws: PuzzleDraws,
               settings: PuzzleMix) -> tuple[torch.Tensor, torch.Tensor]:
    """The official ``mixup_graph`` as a function of its inputs: ``(mixed B x C x H x W,
    ratio B)``, ``ratio`` the mean of each image's pixel mask (the own image's weight).

    ``x`` is ``B x C x S x S`` in pixel space (the official code turns its normalized
    input back into pixels for the boundary costs and mixes normalized images; the
    transport only moves blocks, so mixing pixels gives the same image), ``saliency``
    ``B x S x S``. Steps: block saliency on the ``block_num`` grid; the boundary costs of
    the images pooled over ``neigh_size`` cells with ``beta`` normalized to ``beta /
    block_num / 16``; one graph cut per image; with ``transport``, each image's blocks
    (of ``t_size``; the mask upsampled to that grid) moved by :func:`transport_plan` into
    where it is shown (the partner by ``1 - mask`` and its own saliency); the mask
    upsampled to pixels (nearest) and the two images blended by it.
    """
    batch, side = x.shape[0], x.shape[-1]
    block, neigh, t_size = settings.sizes(side, draws.block_num)
    perm = as_index(draws.perm, x.device)
    smoothness = settings.beta / draws.block_num / 16
    unary = block_saliency(saliency, block)
    costs = graph_costs(x, unary, perm, neigh, smoothness * settings.gamma)
    mask = torch.tensor(np.stack([graphcut_mask(*(c[i] for c in costs), draws.lam, smoothness, settings.eta,
                                                settings.n_labels) for i in range(batch)]),
                        dtype=x.dtype, device=x.device).unsqueeze(1)
    own, partner = x, x[perm]
    if settings.transport:
        if t_size < block:
            mask = F.interpolate(mask, size=side // t_size)
            unary = block_saliency(saliency, t_size)
        own = move_blocks(own, transport_plan(mask, unary, settings.t_eps), t_size)
        partner = move_blocks(partner, transport_plan(1 - mask, unary[perm], settings.t_eps), t_size)
    mask = F.interpolate(mask, size=side)
    return mask * own + (1 - mask) * partner, mask.reshape(batch, -1).mean(-1)


def check_geometry(shape: tuple[int, ...], block_nums: tuple[int, ...], settings: PuzzleMix) -> None:
    """One-line :class:`UserError` unless every ``block_num`` tiles the (square) images
    with blocks its neighbourhood and transport blocks divide."""
    height, width = shape[-2:]
    if height != width:
        raise UserError(f"puzzlemix mixes square images (the official code's grid), got {height} x {width}")
    for block_num in block_nums:
        block, neigh, t_size = settings.sizes(width, block_num)
        if block < 1 or width % block_num or block % neigh or (settings.transport and block % t_size):
            raise UserError(f"puzzlemix cannot split {width} x {width} images into a {block_num} x {block_num} grid "
                            f"of blocks that neigh_size {neigh} and t_size {t_size} divide (block side "
                            f"{width / block_num:g}); use images whose side is a multiple of 16 (32, 64) or other "
                            "block_nums / neigh_size / t_size")


# ----------------------------------------------------------------------------- the mixer


@dataclass
class PuzzleMix(Mixer):
    """PuzzleMix (Kim, Choo & Song, "Puzzle Mix: Exploiting Saliency and Local Statistics
    for Optimal Mixup", ICML 2020; official code github.com/snu-mllab/PuzzleMix,
    ``main.py`` and ``mixup.py``), CIFAR recipe of its README.

    **Saliency** (:meth:`guide`): the gradient of the mean cross-entropy of the clean
    batch with respect to the net's (normalized) input, computed with the model in
    eval mode (official, ``clean_lam = 0``) and restored to its mode after; the
    saliency is its root mean square over channels. Only the input gradient is
    computed (``torch.autograd.grad``); no parameter ``.grad`` is touched.

    **Mixing**, per batch: a grid of ``block_num x block_num`` blocks with
    ``block_num`` uniform over ``block_nums``, one random permutation (self-pairs
    allowed) and one ``lam ~ Beta(alpha, alpha)``; per image, a graph cut over the
    grid (gco's alpha-beta swap, ``n_labels`` mask levels) trades the saliency each
    source loses, the smoothness of the mask (``beta``), the image discontinuity at
    source changes (``gamma``) and a binomial prior around ``lam`` (``eta``); with
    ``transport``, salient blocks of each source then move into where that source is
    shown (:func:`transport_plan`). The targets are ``ratio * onehot(y) + (1 - ratio)
    * onehot(y[perm])`` with ``ratio`` each image's mean mask, per sample, which is the
    exact pixel composition (mask levels other than 0 and 1 blend the two sources).
    ``prob`` (default 1: every batch, as the CIFAR ``main.py``) leaves a batch unmixed
    with probability ``1 - prob``; the saliency is computed for it all the same.

    Images must be square with a side that every ``block_num`` divides into blocks
    divisible by the neighbourhood and transport sizes (CIFAR's 32, Tiny-ImageNet's 64).
    Not reproduced: the official CIFAR loss ``BCELoss(softmax(logits), targets)`` (not a
    cross-entropy of soft targets; the loop's cross-entropy is used), the adversarial
    variant (``adv_p``, 0 in the plain recipe) and ``clean_lam > 0`` (a clean loss term
    and a train-mode saliency pass; the Tiny-ImageNet recipe, not CIFAR's). Where a
    position's transport has no winner the official code leaves 0 in normalized space
    (the mean colour) and this leaves 0 in pixel space; such a position has mask weight
    0 unless a whole transport block has zero saliency.
    """

    #: Beta(alpha, alpha) for lam: README CIFAR command ``--mixup_alpha 1.0``
    alpha: float = 1.0
    #: mask levels 0, 1/(n-1), ..., 1: main.py ``--n_labels`` 3
    n_labels: int = 3
    #: label smoothness (mask boundary cost): main.py ``--beta`` 1.2
    beta: float = 1.2
    #: data local smoothness (image discontinuity at a source change): main.py ``--gamma`` 0.5
    gamma: float = 0.5
    #: weight of the prior around lam: main.py ``--eta`` 0.2
    eta: float = 0.2
    #: pixels pooled per cell for the boundary costs: main.py ``--neigh_size`` 4
    neigh_size: int = 4
    #: move salient blocks into the shown region: main.py ``--transport`` True
    transport: bool = True
    #: transport block side, -1 = the graph-cut block: README CIFAR ``--t_size 4`` (main.py default -1)
    t_size: int = 4
    #: transport distance cost: main.py ``--t_eps`` 0.8
    t_eps: float = 0.8
    #: graph-cut grids drawn from: mixup.py ``2 ** np.random.randint(1, 5)``
    block_nums: tuple[int, ...] = (2, 4, 8, 16)
    #: probability of mixing a batch: imagenet/train.py ``--mixup_prob`` 1.0 (CIFAR main.py has none)
    prob: float = 1.0

    name: ClassVar[str] = "puzzlemix"
    needs_guide: ClassVar[str] = "input-gradient saliency"

    def __post_init__(self):
        super().__post_init__()
        self.block_nums = tuple(int(b) for b in self.block_nums)
        problems = [f"alpha must be > 0, got {self.alpha}" if not self.alpha > 0 else "",
                    f"n_labels must be an integer >= 2, got {self.n_labels}"
                    if not (self.n_labels >= 2 and int(self.n_labels) == self.n_labels) else "",
                    *(f"{k} must be >= 0, got {getattr(self, k)}" for k in ("beta", "gamma", "eta", "t_eps")
                      if not getattr(self, k) >= 0),
                    f"neigh_size must be >= 1, got {self.neigh_size}" if not self.neigh_size >= 1 else "",
                    f"t_size must be >= 1 or -1, got {self.t_size}" if not (self.t_size >= 1 or self.t_size == -1)
                    else "",
                    f"block_nums must be integers >= 2, got {list(self.block_nums)}"
                    if not self.block_nums or min(self.block_nums) < 2 else ""]
        if any(problems):
            raise UserError("puzzlemix: " + "; ".join(p for p in problems if p))

    def sizes(self, side: int, block_num: int) -> tuple[int, int, int]:
        """``(block, neighbourhood, transport block)`` sizes in pixels, as the official
        ``mixup_graph`` clips them (``t_size = -1``: the graph-cut block)."""
        block = side // block_num
        transport = block if self.t_size == -1 else min(self.t_size, block)
        return block, min(self.neigh_size, block), transport

    def guide(self, model, x, y):
        """``B x H x W`` saliency: root mean square over channels of the input gradient
        of the clean batch's mean cross-entropy, the model in eval mode."""
        training = model.training
        model.eval()
        try:
            with torch.enable_grad():
                net_input = model.normalize(x).detach().requires_grad_(True)
                logits = model.forward_head(model.forward_features(net_input))
                loss = F.cross_entropy(logits, y, reduction="none").mean(0)
                (grad,) = torch.autograd.grad(loss, net_input)
        finally:
            model.train(training)
        return gradient_saliency(grad)

    def mix(self, x, y, guide):
        if guide.shape != (x.shape[0], *x.shape[-2:]):
            raise UserError(f"puzzlemix expects a B x H x W saliency for images {tuple(x.shape)}, "
                            f"got {tuple(guide.shape)}")
        check_geometry(x.shape, self.block_nums, self)
        if self.prob < 1 and not self.rng.random() < self.prob:
            return x, one_hot_targets(y, self.num_classes, x.dtype)
        draws = draw_puzzle(self.rng, self.block_nums, x.shape[0], self.alpha)
        mixed, ratio = puzzle_mix(x, guide.to(x), draws, self)
        targets = mix_targets(y, as_index(draws.perm, x.device), ratio.cpu().numpy(), self.num_classes, x.dtype)
        return mixed, targets
