"""Native CAM (Zhou et al. 2016) in the model's own forward pass.

For a classifier ``logits = W @ mean_hw(A) + b`` (global average pooling, then a
linear layer), the map of class c is

    CAM_c = sum_k W[c, k] * A_k        (``h x w``, the last feature map's resolution)

with no bias and no ReLU: the map is raw, its spatial mean plus ``b_c`` is the
logit, and negative values (evidence against c) are kept. Post-processing (resize,
min-max) is left to localization. Grad-CAM on such a model equals
``ReLU(CAM_c) / (h * w)``.

Maps and logits come from one forward pass (``model.forward_all``) under
``torch.inference_mode()``, on the model's device, with no backward; they are
inference tensors (``clone()`` them before modifying them in place outside
inference mode).

Token models (:mod:`cutmix_eval.models.tokens`): exact on Swin and on ViTs that
average their patch tokens after the per-token final norm (``global_pool="avg",
fc_norm=False``), the map being the patch grid; refused, with the reason, for
class-token ViTs, distilled DeiT and ViTs that normalize the averaged tokens
(``fc_norm``).
"""

from __future__ import annotations

import torch
from torch import nn

from cutmix_eval.cam.base import CAMMethod, CAMResult, TargetSpec, check_feature_map, check_targets
from cutmix_eval.cam.registry import list_cams, register_cam
from cutmix_eval.errors import UserError
from cutmix_eval.models.classifier import Classifier


@register_cam("cam")
class NativeCAM(CAMMethod):
    """``CAM_c = sum_k w_ck A_k`` for GAP + linear models; raw maps at feature resolution."""

    name = "cam"

    def __init__(self, model: Classifier):
        super().__init__(model)
        layout = model.token_layout
        if layout is not None and (reason := layout.native_cam_refusal(model.net)):
            self._unsupported(reason)
        if not isinstance(model.head, nn.Linear):
            self._unsupported(f"has a {type(model.head).__name__} head, not nn.Linear")

    def __call__(self, images: torch.Tensor, targets: TargetSpec) -> CAMResult:
        with torch.inference_mode():
            logits, pooled, fmap = self.model.forward_all(images)
            check_feature_map(fmap, self.model)
            if pooled.shape != fmap.shape[:2] or not torch.allclose(
                    pooled.float(), fmap.float().mean(dim=(2, 3)), rtol=1e-2, atol=1e-3):
                self._unsupported("does not pool its feature map by a global average")
            chosen = check_targets(targets(logits) if callable(targets) else targets,
                                   *logits.shape, device=fmap.device)
            weights = self.model.head.weight[chosen].float()  # B [x k] x C
            maps = torch.einsum("b...c,bchw->b...hw", weights, fmap.float())
        return CAMResult(self.name, logits.float(), maps, chosen,
                         normalized=False, resolution="features")

    def _unsupported(self, reason: str) -> None:
        others = [n for n in list_cams() if n != self.name]
        raise UserError(f"native CAM needs a linear head on globally average-pooled features, but "
                        f"{self.model.arch} {reason}; the gradient methods still work: {', '.join(others)}")
