"""pytorch-grad-cam's methods (``grad-cam`` 1.5) behind the common call.

**What they return.** The library's maps, as they are: for each image the
method's map at the feature map's resolution, ReLU'd, min-max scaled
(``(m - min) / (max - min + 1e-7)``), resized to the input ``H x W`` with OpenCV's
bilinear ``cv2.resize``, then min-max scaled once more; so ``CAMResult.normalized``
is True and ``resolution`` is ``"input"``. A map that is zero everywhere stays zero.
Resizing to the input size and min-max scaling again (the localization protocol)
leaves them unchanged but for the 1e-7; only native CAM gives raw maps.

**How the library is driven.**

* It sees the model through :class:`FeatureMapNet`, whose identity layer ``fmap``
  outputs exactly ``model.features(x)``: that layer is the target for every method
  and architecture (gapnet, CIFAR ResNet, PyramidNet, timm, torchvision), with no
  guess at which block ends the trunk. The trunk runs without autograd, so the
  backward pass crosses only pooling and head: the gradient w.r.t. the map is the
  same, the cost is a fraction of a full backward. Token models (timm ViT, Swin)
  take the same route with their patch-grid map, except a ViT whose pooled vector
  reads prefix tokens (class token, distilled DeiT): the gradient w.r.t. its final
  patch tokens is zero, so it runs whole with autograd (:class:`TokenTargetNet`)
  and the target is the layer its layout names (the last block's ``norm1``, as in
  the library's ViT tutorial), reshaped to the patch grid of the input.
* One ``ClassifierOutputTarget`` per image, built from ``targets``; a ``B x k``
  target tensor runs the library once per column.
* Logits are those of the library's own forward (of the first column). A selector
  (``predicted``, ``top_k``) costs one extra inference-mode forward to pick targets.
* Hooks are registered per call and released in a ``finally`` (not through the
  library's context manager, which swallows ``IndexError``). The library switches
  the model to eval mode and clears parameter gradients (``zero_grad``); afterwards
  every module's train/eval flag is restored and gradients are left as None.
* Gradients are enabled inside the call, so it also works under ``torch.no_grad()``
  or ``torch.inference_mode()``. Maps are computed by the library in NumPy on the
  CPU and returned as float32 tensors on the images' device.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from cutmix_eval.cam.base import CAMMethod, CAMResult, TargetSpec, check_feature_map, check_targets
from cutmix_eval.cam.registry import register_cam
from cutmix_eval.catalog import LIBRARY_CAMS
from cutmix_eval.models.classifier import Classifier
from cutmix_eval.models.tokens import TokenLayout, carry_prefix_tokens


class GraphStart(nn.Module):
    """Identity whose output is a fresh autograd leaf that requires grad (keeping a ViT
    map's prefix tokens)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return carry_prefix_tokens(x, x.detach().requires_grad_())


class FeatureMapNet(nn.Module):
    """The classifier as pytorch-grad-cam sees it: trunk (no autograd) -> ``fmap`` -> pool -> head."""

    def __init__(self, model: Classifier):
        super().__init__()
        self.model = model
        self.fmap = GraphStart()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            fmap = self.model.features(x)
        check_feature_map(fmap, self.model)
        return self.model.head(self.model.pool(self.fmap(fmap)))


class TokenTargetNet(nn.Module):
    """The classifier as pytorch-grad-cam sees it when the target is a token layer inside
    the trunk: pixels -> logits with autograd throughout; :meth:`reshape` (the library's
    ``reshape_transform``) turns that layer's tokens into the patch grid of the input of
    the current forward."""

    def __init__(self, model: Classifier, layout: TokenLayout):
        super().__init__()
        self.model = model
        self.layout = layout
        self.image_size: tuple[int, int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.image_size = (int(x.shape[-2]), int(x.shape[-1]))
        return self.model(x)

    def reshape(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.layout.to_map(self.model.net, tokens, self.image_size)


@contextlib.contextmanager
def _lent_to_library(net: nn.Module) -> Iterator[None]:
    """Grad enabled inside; afterwards train/eval flags restored and parameter gradients None."""
    modes = [(module, module.training) for module in net.modules()]
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training
        net.zero_grad(set_to_none=True)


class LibraryCAM(CAMMethod):
    """A pytorch-grad-cam method: normalized maps at input resolution (see the module docstring)."""

    def __init__(self, model: Classifier, name: str, class_name: str):
        super().__init__(model)
        self.name = name
        self.library_class = getattr(importlib.import_module("pytorch_grad_cam"), class_name)
        layout = model.token_layout
        inner = layout.gradient_target(model.net) if layout is not None else None
        if inner is None:
            self.net = FeatureMapNet(model)
            self.target_layer, self.reshape = self.net.fmap, None
        else:
            self.net = TokenTargetNet(model, layout)
            self.target_layer, self.reshape = inner, self.net.reshape

    def __call__(self, images: torch.Tensor, targets: TargetSpec) -> CAMResult:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        logits = None
        if callable(targets):
            with torch.inference_mode():
                logits = self.model(images).float()
            targets = targets(logits)
        chosen = check_targets(targets, images.shape[0], self.model.num_classes, images.device)
        maps = []
        with _lent_to_library(self.net):
            cam = self.library_class(model=self.net, target_layers=[self.target_layer],
                                     reshape_transform=self.reshape)
            try:
                for column in (chosen if chosen.dim() == 2 else chosen[:, None]).T.tolist():
                    maps.append(self._run(cam, images, [ClassifierOutputTarget(c) for c in column]))
                    if logits is None:
                        logits = cam.outputs.detach().float()
            finally:
                cam.activations_and_grads.release()
        stacked = torch.from_numpy(np.stack(maps, axis=1) if chosen.dim() == 2 else maps[0])
        return CAMResult(self.name, logits.to(images.device), stacked.to(images.device), chosen,
                         normalized=True, resolution="input")

    def _run(self, cam, images: torch.Tensor, per_image_targets: list) -> np.ndarray:
        """One library call: ``B x H x W`` float32 maps."""
        return cam(images, per_image_targets)


class ScoreCAMMethod(LibraryCAM):
    """Score-CAM: one forward per feature channel and image, ``batch_size`` masked images at a time.

    The library draws a progress bar per image on stderr; it is discarded (with
    anything else written to stderr during the call).
    """

    def __init__(self, model: Classifier, batch_size: int = 64):
        super().__init__(model, "scorecam", LIBRARY_CAMS["scorecam"])
        self.batch_size = int(batch_size)

    def _run(self, cam, images: torch.Tensor, per_image_targets: list) -> np.ndarray:
        cam.batch_size = self.batch_size  # read by the library's ScoreCAM
        with contextlib.redirect_stderr(io.StringIO()):
            return super()._run(cam, images, per_image_targets)


def _library_factory(name: str):
    def build(model: Classifier) -> LibraryCAM:
        return LibraryCAM(model, name, LIBRARY_CAMS[name])
    return build


for _name in LIBRARY_CAMS:
    register_cam(_name)(ScoreCAMMethod if _name == "scorecam" else _library_factory(_name))
