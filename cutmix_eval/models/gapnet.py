"""``gapnet``: a small, fast all-convolutional network with a GAP + linear head.

Built for the quick start on the embedded 64 x 64 dataset on a CPU: five
conv3x3-BN-ReLU layers (two with stride 2), so the last feature map is 1/4 of the
input side (16 x 16 at 64 px), large enough for class activation maps to show
where the evidence is. ``width`` scales every layer; ``norm="group"`` swaps
BatchNorm for GroupNorm (8 groups), which does not depend on the batch, so
multi-process CPU training (no SyncBatchNorm there) matches one process exactly.
"""

from __future__ import annotations

from torch import nn

from cutmix_eval.errors import UserError
from cutmix_eval.models.classifier import GAPHeadMixin
from cutmix_eval.models.registry import register_model


class GAPNet(GAPHeadMixin, nn.Module):
    mixing_stages = ("body.2", "body.5", "body.8", "body.11", "body.14")  # hidden-state mixing: after each ReLU

    def __init__(self, num_classes: int = 10, width: int = 32, norm: str = "batch"):
        super().__init__()
        # (out channels as multiples of width, stride)
        if norm not in ("batch", "group"):
            raise UserError(f"gapnet norm must be 'batch' or 'group', not {norm!r}")
        plan = [(1, 2), (2, 2), (2, 1), (4, 1), (4, 1)]
        layers: list[nn.Module] = []
        in_ch = 3
        for mult, stride in plan:
            out_ch = mult * width
            layers += [nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(out_ch) if norm == "batch" else nn.GroupNorm(min(8, out_ch), out_ch),
                       nn.ReLU(inplace=True)]
            in_ch = out_ch
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward_features(self, x):
        return self.body(x)


@register_model("gapnet", description="small fast GAP network for the embedded dataset (quick start)",
                mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=(3, 64, 64), width=32, norm="batch")
def gapnet(num_classes: int, width: int, norm: str) -> GAPNet:
    return GAPNet(num_classes, width, norm)
