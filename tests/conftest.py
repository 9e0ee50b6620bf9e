import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "clovaai"


@pytest.fixture(scope="session")
def clovaai_dir() -> Path:
    """The official-format checkpoints in ../shared/fixtures/clovaai (CI always has them)."""
    if not FIXTURES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"fixtures missing: {FIXTURES}")
        pytest.skip(f"shared fixtures not present at {FIXTURES}")
    return FIXTURES


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep generated-dataset caches out of the user's home during tests (one per session)."""
    monkeypatch.setenv("CUTMIX_EVAL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
