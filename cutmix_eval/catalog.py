"""The names the command line offers as choices, importable without torch.

Building ``cutmix-eval``'s parsers must stay light (``docs/design.md``, "The command
line imports lazily"), yet their choices and help name what registries hold: training
methods, CAM methods, OOD scores, localization protocols, report formats. Those
registries live in modules that import torch, OpenCV or matplotlib, so their names live
here, the standard library's only import. Where a registry is plain data it is built
from these (``cam/library.py``, ``evaluate/localization.py``, ``report/build.py``); where
it is filled by classes (the mixers, native CAM, the OOD scores), each class names
itself and ``tests/test_cli_imports.py`` checks that the registry holds exactly these
names, in this order. Adding a method, CAM, score, protocol or format starts here.
"""

#: the paper's four training methods (``train/mixing.py``): what ``train-all``, the quick start and
#: ``report``'s paper comparison take by default
PAPER_METHODS = ("baseline", "mixup", "cutout", "cutmix")
#: the quick start's training seeds: each trains every method, with the seed's initial weights and data
#: order shared by all methods, so that each method can be compared with the baseline seed by seed
QUICK_SEEDS = (0, 1, 2)

#: the CutMix variants the paper ablates (``train/mixers/cutmix_ablations.py``, ``feature_cutmix.py``)
CUTMIX_VARIANTS = ("cutmix-center-gaussian", "cutmix-fixed-size", "cutmix-scheduled", "cutmix-one-hot",
                   "cutmix-complete-label", "cutmix-feature")

#: CutMix's successors, by year (``train/mixers/``)
SUCCESSORS = ("manifold-mixup", "fmix", "smoothmix", "puzzlemix", "resizemix", "saliencymix", "snapmix",
              "gridmix", "regmixup", "mixup-cutmix")

#: every training method, in the order runs and reports list them (``train/methods.py``)
METHODS = PAPER_METHODS + CUTMIX_VARIANTS + SUCCESSORS

#: our name -> pytorch-grad-cam class (``cam/library.py`` imports the library on first use)
LIBRARY_CAMS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
                "layercam": "LayerCAM", "hirescam": "HiResCAM", "eigencam": "EigenCAM",
                "scorecam": "ScoreCAM"}

#: every CAM method: native CAM (``cam/native.py``) and the library's
CAMS = ("cam", *LIBRARY_CAMS)

#: the OOD scores, in registration order (``evaluate/ood_scores.py``)
OOD_SCORES = ("msp", "maxlogit", "energy", "mahalanobis", "odin", "gen", "klm", "react", "dice", "ash_p", "ash_b",
              "ash_s", "scale", "gradnorm", "fdbd", "rmds", "knn", "vim", "she", "nnguide")

#: localization protocol -> its conventions (``evaluate/localization.py``)
LOCALIZATION_PROTOCOLS = {
    "wsolevaluation": "ground-truth-class map, bicubic resize to the input size, then min-max normalization "
                      "(NaN/constant -> 0), uint8 quantization, foreground strictly above the threshold, thresholds "
                      "0:0.01:0.99, one threshold for the split, inclusive IoU",
    "paper": "ground-truth-class map, bilinear resize to the input size, binarized at 0.15 x its maximum, tight box "
             "of the largest connected component, inclusive IoU >= 0.5 (and correct top-1 class for top-1 "
             "localization)",
}

#: the formats a report is rendered in (``report/build.py``)
REPORT_FORMATS = ("md", "tex", "csv", "html")

#: occlusion: the modes (a centred hole, or only a centred window kept) and the default grid of
#: the hole's side as a fraction of the image side (``evaluate/occlusion.py``)
OCCLUSION_MODES = ("centre", "boundary")
OCCLUSION_FRACTIONS = tuple(i / 10 for i in range(11))

#: in-between samples: the default grid of the partner's share t (mixup) and window side s (cutmix)
INBETWEEN_GRID = tuple(i / 10 for i in range(11))

#: adversarial: the attacks, the target rules of targeted attacks, the threat models (norms), the
#: default radii per norm in [0, 1] pixel space and AutoAttack's versions (``evaluate/adversarial.py``)
ATTACKS = ("fgsm", "pgd", "autoattack")
ATTACK_TARGETS = ("random", "least-likely")
ATTACK_NORMS = ("Linf", "L2")
ATTACK_EPS = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
ATTACK_EPS_BY_NORM = {"Linf": ATTACK_EPS, "L2": (0.25, 0.5, 1.0)}
AUTOATTACK_VERSIONS = ("standard", "rand")
