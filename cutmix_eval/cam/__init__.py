"""Class activation maps: native CAM and pytorch-grad-cam's methods behind one call.

    cam = create_cam("cam", model)            # or "gradcam", "scorecam", ... (list_cams())
    result = cam(images, labels)              # images B x 3 x H x W in [0, 1], labels B
    result = cam(images, predicted)           # the top-1 class of each image
    result = cam(images, top_k(5))            # B x 5 classes, maps B x 5 x h x w

Every method returns a :class:`CAMResult` (``logits``, ``maps``, ``targets``, and
whether the maps are ``normalized`` and at ``"features"`` or ``"input"``
``resolution``). Native CAM (:mod:`~cutmix_eval.cam.native`) gives raw maps at
feature-map resolution from the forward pass that gives the logits; the gradient
family (:mod:`~cutmix_eval.cam.library`) gives the library's min-max normalized maps
at input resolution.
"""

from cutmix_eval.cam.base import CAMMethod, CAMResult, TargetSpec, predicted, top_k
from cutmix_eval.cam.registry import create_cam, list_cams, register_cam

# importing the methods fills the registry
from cutmix_eval.cam import library, native  # noqa: E402,F401

__all__ = ["CAMMethod", "CAMResult", "TargetSpec", "create_cam", "list_cams", "predicted", "register_cam",
           "top_k"]
