"""The paper's reference numbers (cutmix_eval.report.paper): every number against the project's
reference notes (parsed here from ../shared/reference/paper.md), the setting matching rules, and
that every metric key is one our evaluators really write."""

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import require_shared

from cutmix_eval.analyses import list_analyses
from cutmix_eval.report.paper import METHODS, SETTINGS, PaperReference, paper_references, paper_setting

PAPER_MD = Path(__file__).resolve().parents[2] / "shared" / "reference" / "paper.md"
NUMBER = r"(\d+(?:\.\d+)?)"

#: one architecture string per setting, as our checkpoints/records spell them
ARCH_OF = {"pyramidnet200": "pyramidnet:depth=200,alpha=240.0,bottleneck=true", "pyramidnet110": "pyramidnet110",
           "resnet110": "cifar_resnet:depth=110,bottleneck=false", "resnet50": "torchvision/resnet50",
           "vgg16": "vgg16_gap"}
#: the paper's OOD set names -> ours
OOD_NAMES = {"TinyImageNet (crop)": "tinyimagenet-crop", "TinyImageNet (resize)": "tinyimagenet-resize",
             "LSUN (crop)": "lsun-crop", "LSUN (resize)": "lsun-resize", "iSUN": "isun", "Uniform": "uniform",
             "Gaussian": "gaussian", "mean": "mean"}


@pytest.fixture(scope="module")
def paper_text() -> str:
    """paper.md with bold markers removed and all whitespace runs collapsed to one space."""
    return require_shared(PAPER_MD, "reference notes").read_text(encoding="utf-8").replace("**", "")


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def numbers(pattern: str, text: str) -> list[float]:
    match = re.search(pattern, flat(text))
    assert match, f"paper.md no longer has {pattern!r}"
    return [float(g) for g in match.groups()]


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start:end if end >= 0 else None]


def table_rows(text: str) -> dict[str, list[str]]:
    """``| name | cell | cell |`` rows (header and separator rows dropped): name -> cells."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.strip().startswith("|") and not set(cells[0]) <= set("-: ") and len(cells) > 1:
            rows[cells[0]] = cells[1:]
    return rows


def split_values(cell: str) -> list[float]:
    return [float(v) for v in cell.split("/")]


def by_method(values, order) -> dict[str, float]:
    return dict(zip(order, values))


def expected_from_paper(text: str) -> dict[tuple[str, str, str], dict[str, float]]:
    """(setting, analysis, metric) -> {method: value}, read from paper.md."""
    expected: dict[tuple[str, str, str], dict[str, float]] = {}
    b, t5b, co, t5co, mx, t5mx, cm, t5cm = numbers(
        rf"CIFAR-100, PyramidNet-200, top-1 / top-5 error \(%\): Baseline {NUMBER} / {NUMBER}, Cutout {NUMBER} / "
        rf"{NUMBER}, Mixup\(a=1\) {NUMBER} / {NUMBER}, CutMix {NUMBER} / {NUMBER}\.", text)
    c100 = "cifar100-pyramidnet200"
    expected[c100, "classification", "top1_error"] = dict(baseline=b, cutout=co, mixup=mx, cutmix=cm)
    expected[c100, "classification", "top5_error"] = dict(baseline=t5b, cutout=t5co, mixup=t5mx, cutmix=t5cm)
    b, co, mx, cm = numbers(rf"CIFAR-10 \(PyramidNet-200\) top-1 error: Baseline {NUMBER}, Cutout {NUMBER}, "
                            rf"Mixup {NUMBER}, CutMix {NUMBER}\.", text)
    expected["cifar10-pyramidnet200", "classification", "top1_error"] = dict(baseline=b, cutout=co, mixup=mx, cutmix=cm)
    b, t5b, co, mx, cm, t5cm = numbers(
        rf"ImageNet, ResNet-50 top-1 / top-5 error: Baseline {NUMBER} / {NUMBER}, Cutout {NUMBER}, Mixup {NUMBER}, "
        rf"CutMix {NUMBER} / {NUMBER}\.", text)
    expected["imagenet-resnet50", "classification", "top1_error"] = dict(baseline=b, cutout=co, mixup=mx, cutmix=cm)
    expected["imagenet-resnet50", "classification", "top5_error"] = dict(baseline=t5b, cutmix=t5cm)
    pb, pc, rb, rc = numbers(rf"Lighter models on CIFAR-100: PyramidNet-110 {NUMBER} -> {NUMBER}, ResNet-110 "
                             rf"{NUMBER} -> {NUMBER} \(baseline -> CutMix\)", text)
    expected["cifar100-pyramidnet110", "classification", "top1_error"] = dict(baseline=pb, cutmix=pc)
    expected["cifar100-resnet110", "classification", "top1_error"] = dict(baseline=rb, cutmix=rc)

    b, mx, co, cm = numbers(rf"FGSM \(Table 11, ImageNet ResNet-50\).*?Top-1 accuracy \(%\): Baseline {NUMBER}, "
                            rf"Mixup {NUMBER}, Cutout {NUMBER}, CutMix {NUMBER}\.", text)
    expected["imagenet-resnet50", "adversarial", "accuracy"] = dict(baseline=b, mixup=mx, cutout=co, cutmix=cm)

    wsol = section(text, "### 4a. Weakly supervised object localization (Table 9)")
    assert "| backbone  | baseline (CAM) | Mixup         | Cutout        | CutMix            |" in wsol
    assert "Top-1 localization accuracy (%), CUB / ImageNet:" in flat(wsol)
    rows = table_rows(wsol)
    for backbone, key in (("VGG-GAP", "vgg16"), ("ResNet-50", "resnet50")):
        cells = [split_values(c) for c in rows[backbone]]
        assert len(cells) == 4 and all(len(c) == 2 for c in cells)
        for index, dataset in enumerate(("cub", "imagenet")):
            expected[f"{dataset}-{key}", "localization", "top1_loc"] = by_method(
                [c[index] for c in cells], METHODS)

    ood = section(text, "### 4d. Out-of-distribution detection (Table 12 and appendix Table A2)")
    assert "Per set, Baseline / Mixup / Cutout / CutMix:" in ood
    rows = table_rows(ood)
    assert rows["OOD set"] == ["TNR at TPR95", "AUROC", "Detection acc."]
    del rows["OOD set"]
    assert set(rows) == set(OOD_NAMES), "paper.md's OOD sets changed"
    for name, cells in rows.items():
        for metric, cell in zip(("tnr_at_tpr95", "auroc", "detection_accuracy"), cells, strict=True):
            expected["cifar100-pyramidnet200", "ood", f"{OOD_NAMES[name]}/{metric}"] = by_method(
                split_values(cell), METHODS)
    return expected


def all_references() -> dict[tuple[str, str, str], PaperReference]:
    found = {}
    for setting in SETTINGS:
        dataset, network = setting.split("-", 1)
        arch = ARCH_OF[network]
        assert paper_setting(dataset, arch) == setting
        for analysis in list_analyses():
            for ref in paper_references(dataset, arch, analysis):
                assert ref.analysis == analysis
                key = (setting, analysis, ref.metric)
                assert key not in found, f"two references for {key}"
                found[key] = ref
    return found


# ---- the numbers ---------------------------------------------------------------------


def test_every_number_matches_paper_md_and_every_paper_number_is_transcribed(paper_text):
    expected = expected_from_paper(paper_text)
    found = all_references()
    assert set(found) == set(expected)
    for key, values in expected.items():
        assert found[key].values == values, key
    analyses = [analysis for _, analysis, _ in found]
    # classification: CIFAR-100 top-1/top-5, CIFAR-10, PyramidNet-110, ResNet-110, ImageNet top-1/top-5;
    # FGSM; Table 9: 2 backbones x 2 datasets; OOD: (7 sets + mean) x 3 metrics
    assert {a: analyses.count(a) for a in set(analyses)} == {"classification": 7, "adversarial": 1,
                                                             "localization": 4, "ood": 24}
    assert sum(len(r.values) for r in found.values()) == (4 + 4 + 4 + 2 + 2 + 4 + 2) + 4 + 4 * 4 + 24 * 4


def test_headline_errors_spot_checks(paper_text):
    """A few cells written out, independent of the parser above."""
    text = flat(paper_text)
    c100 = {r.metric: r.values for r in paper_references("cifar100", "pyramidnet200", "classification")}
    assert c100["top1_error"] == {"baseline": 16.45, "mixup": 15.63, "cutout": 16.53, "cutmix": 14.47}
    assert c100["top5_error"] == {"baseline": 3.69, "mixup": 3.99, "cutout": 3.65, "cutmix": 2.97}
    assert "Baseline 16.45 / 3.69" in text and "CutMix 14.47 / 2.97" in text
    imagenet = {r.metric: r.values for r in paper_references("imagenet", "timm/resnet50", "classification")}
    assert imagenet["top1_error"]["cutmix"] == 21.40 and imagenet["top5_error"] == {"baseline": 7.05, "cutmix": 5.92}
    assert "Baseline 23.68 / 7.05" in text and "CutMix 21.40 / 5.92" in text
    [fgsm] = paper_references("imagenet", "torchvision/resnet50", "adversarial")
    assert fgsm.values == {"baseline": 8.2, "mixup": 24.4, "cutout": 11.5, "cutmix": 31.0}
    assert "Baseline 8.2, Mixup 24.4, Cutout 11.5, CutMix 31.0" in text
    ood = {r.metric: r.values for r in paper_references("cifar100", "pyramidnet200", "ood")}
    assert ood["lsun-resize/auroc"] == {"baseline": 86.4, "mixup": 59.0, "cutout": 84.0, "cutmix": 93.7}
    assert ood["mean/tnr_at_tpr95"] == {"baseline": 26.3, "mixup": 11.8, "cutout": 18.8, "cutmix": 69.0}
    assert "| LSUN (resize)         | 34.3 / 13.0 / 23.7 / 62.8 | 86.4 / 59.0 / 84.0 / 93.7 |" in paper_text


def test_values_are_percent_of_known_methods_and_sources_name_the_table():
    for (_, analysis, _), ref in all_references().items():
        assert ref.values and set(ref.values) <= set(METHODS)
        assert all(isinstance(v, float) and 0 <= v <= 100 for v in ref.values.values())
        assert ref.source.startswith("CutMix paper, ")
        table = {"ood": "Table 12", "adversarial": "Table 11", "localization": "Table 9"}.get(analysis)
        if table:
            assert table in ref.source, ref.source
        if analysis == "classification":
            assert "best test error during training" in ref.source
    assert "VGG-GAP" in paper_references("cub", "vgg16_gap", "localization")[0].source


def test_returned_references_are_copies():
    first = paper_references("cifar100", "pyramidnet200", "classification")[0]
    first.values["baseline"] = 0.0
    assert paper_references("cifar100", "pyramidnet200", "classification")[0].values["baseline"] == 16.45


# ---- matching ------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["pyramidnet:depth=200,alpha=240,bottleneck=true",
                                  "pyramidnet:depth=200,alpha=240.0,bottleneck=true", "pyramidnet200", "pyramidnet",
                                  "pyramidnet:depth=200", "PyramidNet200", " pyramidnet:alpha=240 "])
def test_pyramidnet200_alpha240_matches(arch):
    assert paper_setting("cifar100", arch) == "cifar100-pyramidnet200"
    assert paper_setting("cifar10", arch) == "cifar10-pyramidnet200"
    assert paper_setting("imagenet", arch) is None


@pytest.mark.parametrize("arch", ["pyramidnet:depth=110,alpha=240,bottleneck=true", "pyramidnet:depth=110",
                                  "pyramidnet200:depth=110", "pyramidnet:depth=200,alpha=48",
                                  "pyramidnet:depth=200,alpha=240,bottleneck=false", "pyramidnet:depth=272,alpha=200",
                                  "pyramidnet110:alpha=48", "pyramidnet:depth=200,alpha=240,bottleneck=maybe"])
def test_other_pyramidnets_do_not_match_pyramidnet200(arch):
    assert paper_setting("cifar100", arch) is None
    assert paper_references("cifar100", arch, "classification") == []


def test_lighter_models_match_only_their_own_network():
    assert paper_setting("cifar100", "pyramidnet110") == "cifar100-pyramidnet110"
    assert paper_setting("cifar100", "pyramidnet:depth=110,alpha=64,bottleneck=false") == "cifar100-pyramidnet110"
    assert paper_setting("cifar10", "pyramidnet110") is None  # the paper has CIFAR-100 only for it
    for arch in ("cifar_resnet110", "cifar_resnet:depth=110", "cifar_resnet:depth=110,bottleneck=false"):
        assert paper_setting("cifar100", arch) == "cifar100-resnet110"
    for arch in ("cifar_resnet110_bottleneck", "cifar_resnet56", "cifar_resnet", "cifar_resnet:depth=164",
                 "cifar_resnet:depth=110,bottleneck=true"):
        if arch == "cifar_resnet":  # its default depth is 110 with basic blocks: that is ResNet-110
            assert paper_setting("cifar100", arch) == "cifar100-resnet110"
        else:
            assert paper_setting("cifar100", arch) is None, arch


@pytest.mark.parametrize("arch", ["resnet50", "timm/resnet50", "torchvision/resnet50", "timm/resnet50.a1_in1k",
                                  "torchvision/ResNet50"])
def test_resnet50_names_match(arch):
    assert paper_setting("imagenet", arch) == "imagenet-resnet50"
    assert paper_setting("cub", arch) == "cub-resnet50"
    assert paper_setting("cifar100", arch) is None


@pytest.mark.parametrize("arch", ["resnet18", "torchvision/resnet18", "timm/resnet50d", "timm/resnet101",
                                  "torchvision/wide_resnet50_2", "torchvision/resnext50_32x4d", "gapnet",
                                  "torchvision/vgg16", "timm/vgg16", "", "not an arch: ::", "pyramidnet200"])
def test_other_imagenet_architectures_do_not_match(arch):
    assert paper_setting("imagenet", arch) is None
    assert paper_setting("cub", arch) is None
    assert paper_references("imagenet", arch, "adversarial") == []


def test_vgg_gap_has_localization_only():
    for arch in ("vgg16_gap", "vgg_gap", "vgg16-gap", "vgg16_cam"):
        assert paper_setting("cub", arch) == "cub-vgg16"
        assert paper_setting("imagenet", arch) == "imagenet-vgg16"
    assert paper_references("imagenet", "vgg16_gap", "classification") == []
    assert [r.metric for r in paper_references("cub", "vgg16_gap", "localization")] == ["top1_loc"]


@pytest.mark.parametrize("dataset", ["svhn", "cifar100-c", "imagenet-c", "cub-wsol", "imagenet-wsol", "synthetic",
                                     "tinyimagenet-crop", "mnist", ""])
def test_other_datasets_have_no_setting(dataset):
    assert paper_setting(dataset, "pyramidnet200") is None
    assert paper_setting(dataset, "torchvision/resnet50") is None


def test_analyses_without_numbers_and_unknown_analyses():
    for analysis in ("occlusion", "inbetween", "corruption", "calibration"):
        for dataset, arch in (("cifar100", "pyramidnet200"), ("imagenet", "resnet50"), ("cub", "resnet50")):
            assert paper_references(dataset, arch, analysis) == []
    assert paper_references("cub", "resnet50", "classification") == []
    assert paper_references("cifar10", "pyramidnet200", "ood") == []
    # every published row belongs to a registered analysis (a misspelt name would never be shown)
    from cutmix_eval.report.paper import _REFERENCES

    assert {ref.analysis for refs in _REFERENCES.values() for ref in refs} <= set(list_analyses())


def test_dataset_names_match_our_registry():
    from cutmix_eval.data import list_datasets

    registered = set(list_datasets())
    for setting in SETTINGS:
        assert setting.split("-", 1)[0] in registered


# ---- the metric keys are ours ---------------------------------------------------------


def test_ood_keys_are_the_evaluators_keys_for_cifar100_all():
    from cutmix_eval.data import list_datasets
    from cutmix_eval.evaluate.ood import _set_metrics, ood_set_names

    sets = ood_set_names("cifar100", ["all"])
    assert set(sets) <= set(list_datasets(kind="ood"))
    rng = np.random.default_rng(0)
    written = _set_metrics({name: (rng.random(20), rng.random(20)) for name in sets})
    refs = paper_references("cifar100", "pyramidnet200", "ood")
    assert {r.metric for r in refs} == {k for k in written if k.rsplit("/", 1)[1] in
                                        ("tnr_at_tpr95", "auroc", "detection_accuracy")}
    assert len(refs) == 3 * (len(sets) + 1)


def test_other_keys_are_written_by_our_evaluators():
    """Run the classification, localization (paper protocol) and adversarial evaluators on a
    tiny model and a few embedded images, and look the reference keys up in their metrics."""
    from cutmix_eval.data import create_dataset
    from cutmix_eval.evaluate.adversarial import evaluate_adversarial
    from cutmix_eval.evaluate.classification import evaluate_classification
    from cutmix_eval.evaluate.localization import evaluate_localization
    from cutmix_eval.models import create_model
    from cutmix_eval.settings import RunSettings

    dataset = create_dataset("synthetic", "test", num_samples=12)
    model = create_model("gapnet:width=4", dataset.num_classes).eval()
    common = {"settings": RunSettings(batch_size=12, device="cpu", progress=False)}
    written = {
        "classification": evaluate_classification(model, dataset, **common).metrics,
        "localization": evaluate_localization(model, dataset, cam="cam", protocol="paper", keep_examples=0,
                                              **common).metrics,
        "adversarial": evaluate_adversarial(model, dataset, attacks=("fgsm",), eps=(8 / 255,), **common).metrics,
    }
    used = set()
    for setting, analysis, metric in all_references():
        if analysis in written:
            assert metric in written[analysis], (setting, analysis, metric)
            used.add(analysis)
    assert used == set(written)
    # the FGSM reference is the untargeted 8/255 cell: the same number as fgsm/accuracy@8/255
    assert written["adversarial"]["accuracy"] == written["adversarial"]["fgsm/accuracy@8/255"]
