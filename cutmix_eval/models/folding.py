"""Batch norm folded into the convolution before it, for passes that need input gradients.

In eval mode a ``BatchNorm2d`` is a per-channel affine map, ``y = x * s + t`` with
``s = gamma / sqrt(running_var + eps)`` and ``t = beta - running_mean * s``. When its
input is a ``Conv2d``'s output and nothing else reads that output, the pair is one
convolution with weights ``W * s`` (per output channel) and bias ``b * s + t``. The
folded network computes the same function up to float rounding (relative differences
around 1e-7) and skips the batch-norm forward and, above all, its backward, which on
CPU costs a large share of a gradient pass: FGSM and PGD run about a fifth faster
(``benchmarks/bench_robustness.py``).

Pairs are found by tracing the network with ``torch.fx`` (the computation graph says
which convolution feeds which batch norm); the folding itself edits the modules of a
copy of the model in place, so the copy keeps its class and its methods
(``forward_features``, ``get_classifier``...). A network that cannot be traced
symbolically (data-dependent control flow) is returned unchanged: correct, only not
faster.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from cutmix_eval.models.classifier import Classifier


class _Tracer(fx.Tracer):
    """torch.fx's tracer, also stopping at subclasses of ``Conv2d`` and ``BatchNorm2d`` (e.g.
    timm's), whose own forward may branch on shapes and so cannot be traced."""

    def is_leaf_module(self, module: nn.Module, name: str) -> bool:
        return isinstance(module, (nn.Conv2d, nn.BatchNorm2d)) or super().is_leaf_module(module, name)


def foldable_pairs(net: nn.Module) -> list[tuple[str, str]]:
    """``(conv name, batch-norm name)`` of every ``Conv2d`` whose output only feeds an
    eval-mode ``BatchNorm2d`` with running statistics, each module called once in the
    traced forward; ``[]`` when ``net`` cannot be traced with ``torch.fx``. Exact types
    only: subclasses (timm's ``BatchNormAct2d``, ``Conv2dSame``...) may do more."""
    try:
        graph = _Tracer().trace(net)
    except Exception:  # noqa: BLE001 - any tracing failure only means "nothing to fold"
        return []
    modules = dict(net.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or type(modules[node.target]) is not nn.BatchNorm2d:
            continue
        norm, source = modules[node.target], node.args[0]
        if (isinstance(source, fx.Node) and source.op == "call_module"
                and type(modules[source.target]) is nn.Conv2d and len(source.users) == 1
                and calls[source.target] == calls[node.target] == 1
                and not norm.training and norm.track_running_stats and norm.running_var is not None):
            pairs.append((source.target, node.target))
    return pairs


@torch.no_grad()
def _fold(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    """Fold ``norm`` into ``conv`` in place (``conv`` gains a bias if it had none)."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    shift = -norm.running_mean * scale
    if norm.affine:
        scale, shift = scale * norm.weight, shift * norm.weight + norm.bias
    bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter(bias * scale + shift, requires_grad=conv.weight.requires_grad)


def fold_batchnorm(model: Classifier) -> Classifier:
    """A copy of ``model`` (put in eval mode) with each batch norm that directly follows a
    convolution folded into it and replaced by ``nn.Identity``; ``model`` itself is left
    as it was. See the module docstring for when nothing is folded."""
    model.eval()
    pairs = foldable_pairs(model.net)
    if not pairs:
        return model
    folded = copy.deepcopy(model)
    modules = dict(folded.net.named_modules())
    for conv_name, norm_name in pairs:
        _fold(modules[conv_name], modules[norm_name])
        parent, _, child = norm_name.rpartition(".")
        setattr(modules[parent] if parent else folded.net, child, nn.Identity())
    return folded
