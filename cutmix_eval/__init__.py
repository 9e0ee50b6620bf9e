"""cutmix-eval: train baseline / Mixup / Cutout / CutMix classifiers and evaluate them
on the analyses of the CutMix paper (Yun et al., ICCV 2019) and its successors."""

__version__ = "0.1.0"
