"""The localization evaluator and the `localize` / `metrics wsol` commands."""

import json

import numpy as np
import pytest
from PIL import Image

from cutmix_eval.cli import main
from cutmix_eval.data import create_dataset
from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.localization import evaluate_localization, inclusive_boxes
from cutmix_eval.results import examples_from_arrays
from cutmix_eval.metrics import localization as loc
from cutmix_eval.models import create_model
from cutmix_eval.models.checkpoint import save_checkpoint
from cutmix_eval.settings import RunSettings


@pytest.fixture(scope="module")
def synthetic_test():
    return create_dataset("synthetic", "test", num_samples=48)


@pytest.mark.parametrize("protocol", ["wsolevaluation", "paper"])
def test_evaluator_metrics_and_per_image_outcomes(synthetic_test, protocol):
    model = create_model("gapnet:width=8", 10)
    result = evaluate_localization(model, synthetic_test, protocol=protocol, keep_examples=4,
                                   settings=RunSettings(batch_size=16, progress=False))
    m = result.metrics
    assert m["num_images"] == 48 and 0 <= m["maxboxacc"] <= 1
    assert len(result.per_sample["index"]) == 48 and len(result.curves["thresholds"]) == 100
    if protocol == "wsolevaluation":
        assert 0 <= m["maxboxacc_v2"] <= 1 and 0 <= m["pxap"] <= 1
        assert m["maxboxacc_v2"] == pytest.approx(np.mean([m["box_acc_iou30"], m["box_acc_iou50"], m["box_acc_iou70"]]))
    else:
        assert m["top1_loc"] <= m["gt_known_loc"]
        assert m["top1_loc"] == pytest.approx(result.per_sample["top1_loc"].mean())
    assert "one threshold" in result.conventions["maxboxacc"] and result.config["protocol"] == protocol
    examples = examples_from_arrays(result.artifacts)
    assert len(examples["image"]) == 4 and examples["map"][0].shape == (64, 64)
    assert "artifacts" not in result.summary() and "examples/image" not in result.to_json()


def test_evaluator_matches_the_metric_functions_on_the_same_maps(synthetic_test):
    """The batched, streamed evaluator equals the metric functions applied to all maps at once."""
    from cutmix_eval.cam import create_cam
    from cutmix_eval.evaluate.localization import PROTOCOLS, WSOL_THRESHOLDS, resize_and_normalize

    model = create_model("gapnet:width=8", 10).eval()
    result = evaluate_localization(model, synthetic_test, settings=RunSettings(batch_size=7, progress=False))
    samples = [synthetic_test[i] for i in range(len(synthetic_test))]
    import torch

    images = torch.stack([s["image"] for s in samples])
    labels = torch.tensor([s["label"] for s in samples])
    maps = resize_and_normalize(create_cam("cam", model)(images, labels).maps.numpy(), 64, 64,
                                PROTOCOLS["wsolevaluation"].interpolation)
    boxes = [inclusive_boxes(s["boxes"].numpy(), synthetic_test) for s in samples]
    assert result.metrics["maxboxacc_v2"] == loc.max_box_acc_v2(maps, boxes, WSOL_THRESHOLDS).value
    assert result.metrics["maxboxacc"] == loc.max_box_acc(maps, boxes, WSOL_THRESHOLDS).value


def test_boxes_from_masks_become_inclusive(synthetic_test):
    edge = synthetic_test[0]["boxes"].numpy()
    inclusive = inclusive_boxes(edge, synthetic_test)
    np.testing.assert_array_equal(inclusive, edge - [0, 0, 1, 1])


def test_dataset_without_boxes_is_a_clear_error(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (40, 40), (10, 20, 30)).save(tmp_path / cls / "x.png")
    dataset = create_dataset("imagefolder", "test", root=tmp_path, image_size=32)
    with pytest.raises(UserError, match="no bounding boxes"):
        evaluate_localization(create_model("gapnet:width=4", 2), dataset, settings=RunSettings(progress=False))


def test_localize_command_writes_record_and_figure(tmp_path, capsys):
    ckpt = save_checkpoint(create_model("gapnet:width=4", 10), tmp_path / "m.pth", method="cutmix")
    code = main(["localize", "--ckpt", str(ckpt), "--data", "synthetic", "--limit", "24", "--protocol", "paper",
                 "--output-dir", str(tmp_path / "out"), "--json"])
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and summary["evaluator"] == "localization" and summary["model"]["method"] == "cutmix"
    record = json.loads((tmp_path / "out" / "result.json").read_text())
    assert len(record["per_sample"]["top1_loc"]) == 24
    assert (tmp_path / "out" / "examples.png").stat().st_size > 5000
    assert main(["localize", "--ckpt", str(ckpt), "--data", "uniform"]) == 2
    assert "no bounding boxes" in capsys.readouterr().err


def test_metrics_wsol_command(tmp_path, capsys):
    rng = np.random.default_rng(0)
    maps = rng.random((5, 20, 24))
    boxes = [[[2, 3, 10, 12]], [[0, 0, 23, 19]], [[5, 5, 6, 6], [10, 10, 15, 18]], [[1, 1, 3, 3]], [[8, 2, 20, 9]]]
    np.save(tmp_path / "maps.npy", maps)
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    (tmp_path / "localization.txt").write_text("".join(
        f"img{i}.jpg,{b[0]},{b[1]},{b[2]},{b[3]}\n" for i, bs in enumerate(boxes) for b in bs))
    results = []
    for name in ("boxes.json", "localization.txt"):
        assert main(["metrics", "wsol", "--maps", str(tmp_path / "maps.npy"), "--boxes", str(tmp_path / name),
                     "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["metrics"])
    assert results[0] == results[1]
    expected = loc.max_box_acc_v2(loc.normalize_minmax(maps), [np.array(b) for b in boxes]).value
    assert results[0]["maxboxacc_v2"] == pytest.approx(expected)
    np.save(tmp_path / "bad.npy", maps[:3])
    assert main(["metrics", "wsol", "--maps", str(tmp_path / "bad.npy"), "--boxes", str(tmp_path / "boxes.json")]) == 2
    err = capsys.readouterr().err
    assert "one map per image" in err and len(err.strip().splitlines()) == 1
