"""Hidden-state mixing: which modules of a classifier are its *stages*, and one forward
with one stage's output replaced.

Methods that mix inside the network (Manifold Mixup, feature-level CutMix) number the
places they may mix at: ``0`` is the input (pixels, before the classifier normalizes
them), ``k >= 1`` the output of stage ``k``, stages counted in forward order.

**Which modules are stages** (:func:`mixing_stages`), as dotted names inside
``model.net``:

* a net may say so itself with a class attribute ``mixing_stages`` (a tuple of dotted
  module names, in forward order; gapnet does, after each ReLU);
* otherwise the stages are the top-level children of ``model.net`` that are containers
  with parameters (an ``nn.Sequential``, or any module with child modules holding
  parameters), in registration order, leaving out the classifier head (and any child
  that contains it): a ResNet's ``layer1``..., a Wide ResNet's ``block1..3``, a
  PyramidNet's ``layer1..3``. Where some of these containers hold blocks (containers
  themselves) and others hold only plain layers (a ViT's ``patch_embed``, DenseNet's
  transitions, ConvNeXt's stem), only the containers of blocks are stages;
* a net with a single such container (a ViT's ``blocks``, ConvNeXt's ``stages``) has
  that container's children as its stages, by the same rule.

Registration order is the forward order for every architecture here (the tests check
it on each family); a net where it is not declares ``mixing_stages``.

**Replacing an output** (:func:`replacing_output`): a forward hook on the stage
returns ``fn(output)`` in place of its output. It is registered on the module inside
``model``, so it fires through whatever wraps the model (DistributedDataParallel), and
it is removed when the ``with`` block ends, on error too. A stage that runs more than
once in the block (a shared module) is a :class:`UserError` (not a ``RuntimeError``,
which the classifier would report as an image-size problem): the replacement is for
one forward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from cutmix_eval.errors import UserError


def mixing_stages(model: nn.Module) -> tuple[str, ...]:
    """Dotted names (inside ``model.net``) of the stages hidden-state mixing may replace
    the output of, in forward order; see the module's docstring for the rule."""
    net = model.net
    declared = getattr(net, "mixing_stages", None)
    if declared is not None:
        for name in declared:
            _submodule(net, name, model)
        return tuple(declared)
    head = model.head
    prefix, module = "", net
    while True:
        found = _stage_children(module, head)
        if len(found) != 1:
            break
        name, module = found[0]
        prefix += name + "."
    if not found:
        raise UserError(f"model {getattr(model, 'arch', type(net).__name__)} has no stages of blocks for "
                        f"hidden-state mixing: give its net a class attribute mixing_stages = ('name', ...) with "
                        f"the dotted names of the modules to mix after, or mix at layer 0 (the input)")
    return tuple(prefix + name for name, _ in found)


def stage_name(model: nn.Module, layer: int) -> str:
    """The stage whose output mixing at ``layer`` (1-based) replaces; layer 0 is the input
    and has none."""
    stages = mixing_stages(model)
    if not 1 <= layer <= len(stages):
        raise UserError(f"mixing layer {layer} does not exist: model {getattr(model, 'arch', '')} has "
                        f"{len(stages)} stages ({', '.join(stages)}), so layers are 0 (the input) to {len(stages)}")
    return stages[layer - 1]


@contextmanager
def replacing_output(model: nn.Module, stage: str,
                     fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Within the block, the output ``h`` of ``model.net``'s module ``stage`` is replaced by
    ``fn(h)`` when the module runs (once); the hook is removed on leaving, on error too."""
    module = _submodule(model.net, stage, model)
    calls = 0

    def hook(_module, _inputs, output):
        nonlocal calls
        calls += 1
        if calls > 1:
            raise UserError(f"stage {stage} ran {calls} times in one forward; hidden-state mixing replaces the "
                            "output of a stage that runs once: declare mixing_stages on the net")
        if not isinstance(output, torch.Tensor):
            raise UserError(f"stage {stage} returns a {type(output).__name__}, not a tensor; declare "
                            "mixing_stages on the net with modules that return tensors")
        return fn(output)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def forward_mixed(net: nn.Module, model: nn.Module, x: torch.Tensor, layer: int,
                  mix: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``net``'s logits with the input (``layer`` 0: ``net(mix(x))``) or stage ``layer``'s
    output replaced by ``mix`` of it; ``net`` is called exactly once."""
    if layer == 0:
        return net(mix(x))
    with replacing_output(model, stage_name(model, layer), mix):
        return net(x)


def _stage_children(module: nn.Module, head: nn.Module) -> list[tuple[str, nn.Module]]:
    containers = [(name, child) for name, child in module.named_children()
                  if _is_container(child) and not any(m is head for m in child.modules())]
    of_blocks = [(name, child) for name, child in containers if any(map(_is_container, child.children()))]
    return of_blocks or containers


def _is_container(module: nn.Module) -> bool:
    """Whether any child module of ``module`` holds parameters."""
    return any(next(child.parameters(), None) is not None for child in module.children())


def _submodule(net: nn.Module, name: str, model: nn.Module) -> nn.Module:
    try:
        return net.get_submodule(name)
    except AttributeError as err:
        raise UserError(f"mixing stage {name!r} is not a module of model {getattr(model, 'arch', '')}: "
                        f"{err}") from err
