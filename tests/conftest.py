import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "clovaai"


def require_shared(path: Path, what: str) -> Path:
    """``path`` from ../shared: CI always has it (a failure there), elsewhere the test is skipped."""
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{what} missing: {path}")
        pytest.skip(f"{what} not present at {path}")
    return path


@pytest.fixture(scope="session")
def clovaai_dir() -> Path:
    """The official-format checkpoints in ../shared/fixtures/clovaai."""
    return require_shared(FIXTURES, "shared fixtures")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep generated-dataset caches out of the user's home during tests (one per session),
    and run every test in an empty folder of its own (not its ``tmp_path``), so that the
    commands' default outputs (``reports/results``, ``reports/<command>/...``) never land in
    the checkout or carry records from one test into another."""
    monkeypatch.setenv("CUTMIX_EVAL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


class PooledPixels(torch.nn.Module):
    """A tiny net in timm's protocol: 8 x 8 average-pooled pixels as the "feature map",
    flattened, and a linear head. Fitted in a second, it classifies the images it was fitted
    on, so robustness tests see a model whose accuracy attacks and occlusion can lower."""

    def __init__(self, num_classes: int, pool: int = 8):
        super().__init__()
        self.pool = pool
        self.fc = torch.nn.LazyLinear(num_classes)

    def forward_features(self, x):
        return torch.nn.functional.avg_pool2d(x, self.pool)

    def forward_head(self, fmap, pre_logits=False):
        flat = fmap.flatten(1)
        return flat if pre_logits else self.fc(flat)

    def get_classifier(self):
        return self.fc


def fitted_pixel_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int, steps: int = 300,
                            pool: int = 8):
    """A :class:`cutmix_eval.models.Classifier` around :class:`PooledPixels`, fitted to
    ``images`` (``N x 3 x H x W`` in [0, 1]) by full-batch Adam on the cross-entropy; a smaller
    ``pool`` keeps finer pixels, which makes the model more sensitive to pixel noise."""
    from cutmix_eval.models.classifier import Classifier

    torch.manual_seed(0)
    net = PooledPixels(num_classes, pool)
    model = Classifier(net, arch="pooled-pixels", num_classes=num_classes, mean=(0.5, 0.5, 0.5),
                       std=(0.25, 0.25, 0.25), input_size=images.shape[1:])
    model(images[:1])  # materialize the lazy head
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="session")
def small_labelled():
    """48 embedded test images (64 x 64, 10 classes; ``synthetic-part``, whose class lives in a
    small part, so the fitted model is confused by in-between images) and a pixel classifier
    fitted to them: ``(dataset, model)``."""
    from cutmix_eval.data import create_dataset

    dataset = create_dataset("synthetic-part", "test", num_samples=48)
    images = torch.stack([dataset[i]["image"].as_subclass(torch.Tensor) for i in range(len(dataset))])
    labels = torch.as_tensor([int(dataset[i]["label"]) for i in range(len(dataset))])
    return dataset, fitted_pixel_classifier(images, labels, dataset.num_classes)


@pytest.fixture(scope="module")
def model():
    """A random ``gapnet:width=8`` for 10 classes (seed 0), in eval mode: a fast CNN to run
    evaluators on."""
    from cutmix_eval.models import create_model

    torch.manual_seed(0)
    return create_model("gapnet:width=8", 10).eval()


def pixels(sample) -> np.ndarray:
    """The sample's image as ``3 x H x W`` integers 0..255."""
    return (sample["image"] * 255).round().to(torch.int64).numpy()


def source_coded(batch: int, height: int = 13, width: int = 17, channels: int = 1,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose every pixel holds the index of its source image, and labels = indices:
    after mixing, :func:`pixel_sources` reads off where each pixel came from."""
    x = torch.arange(batch, dtype=dtype).view(batch, 1, 1, 1).expand(batch, channels, height, width).clone()
    return x, torch.arange(batch)


def pixel_sources(mixed: torch.Tensor, batch: int) -> torch.Tensor:
    """Per mixed source-coded image, the fraction of its pixels (first channel) that came
    from each source image: ``B x batch``, float64."""
    flat = mixed[:, 0].reshape(mixed.shape[0], -1).round().long()
    return torch.stack([torch.bincount(row, minlength=batch) for row in flat]).double() / flat.shape[1]


def assert_one_line(err: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)


# --------------------------------------------------------------------------- the CLI in a subprocess, records


CLI = [sys.executable, "-m", "cutmix_eval"]


def cli_env() -> dict[str, str]:
    """The environment of a ``cutmix-eval`` subprocess: one thread, unbuffered output (so its
    progress lines can be watched), this session's dataset cache."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def tiny_checkpoint(path: Path, method: str = "cutmix", seed: int = 0) -> Path:
    """A randomly initialized 4-channel GAP net for the 64 x 64 synthetic images, saved at ``path``."""
    from cutmix_eval.models import create_model
    from cutmix_eval.models.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    return save_checkpoint(create_model("gapnet:width=4", 10, input_size=(3, 64, 64)), path, method=method,
                           dataset="synthetic")


def whole_records(folder: Path) -> list:
    """The records in ``folder``, asserting that the folder holds nothing else a reader could trip
    on: every JSON reads as a record without a warning (side file present, checksum matching),
    and apart from records only hidden ``.*.tmp`` files (never read) and side files left by an
    interrupted save (overwritten when the job is recomputed) may be there."""
    import warnings

    from cutmix_eval.report.store import ResultStore

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = ResultStore(folder).records()
    assert sorted(r.path for r in records) == sorted(folder.glob("*.json"))
    for file in folder.iterdir():
        assert file.suffix in (".json", ".npz") or (file.name.startswith(".") and file.suffix == ".tmp"), file
    return records


def swap_analysis(monkeypatch, analysis) -> None:
    """Stand ``analysis`` in for the registered analysis of its name, for one test."""
    from cutmix_eval.analyses import ANALYSES

    monkeypatch.setitem(ANALYSES._entries, analysis.name, analysis)


def randomized_reference(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A reference network of a family test with random weights (He-normal) and random
    BatchNorm statistics, so that eval-mode BatchNorm is not the identity; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / m.weight[0].numel()) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return net.eval()


def kaiming_reference(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Like :func:`randomized_reference`, with the convolutions initialized as the CIFAR
    repositories do (Kaiming normal, fan out) and linear layers left as built."""
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed)
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
                if m.bias is not None:
                    m.bias.normal_(0, 0.05, generator=gen)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0, 0.1, generator=gen)
                m.running_mean.normal_(0, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
    return net.eval()
