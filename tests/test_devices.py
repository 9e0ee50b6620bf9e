"""Where models and tensors live: evaluations leave the caller's model as they found it, a
model moved inside inference mode can still take gradients, torchrun with more processes than
GPUs is refused, and the CUDA paths agree with the CPU (those run only where CUDA is)."""

import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cutmix_eval import distributed
from cutmix_eval.data import create_dataset
from cutmix_eval.errors import UserError
from cutmix_eval.evaluate.ood import evaluate_ood
from cutmix_eval.models import create_model
from cutmix_eval.passes import head, predict
from cutmix_eval.runtime import _quiet_pin_memory_thread, on_device
from cutmix_eval.settings import RunSettings

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("gapnet:width=8", 10)


def test_an_evaluation_restores_the_callers_mode(model):
    model.train()
    predict(model, head(create_dataset("synthetic", "test"), 8), RunSettings(device="cpu", progress=False))
    assert model.training
    with on_device(model, torch.device("cpu")):
        assert not model.training
    assert model.training
    model.eval()


def test_a_device_mismatch_is_not_called_a_size_problem(model):
    """An input on another device than the model fails with torch's own message, not our
    "cannot run on H x W images" (which a device mismatch at another image size became)."""
    on_meta = create_model("gapnet:width=8", 10).to("meta")
    with pytest.raises(RuntimeError) as caught:
        on_meta.features(torch.rand(1, 3, 32, 32))
    assert not isinstance(caught.value, UserError)


def test_torchrun_with_more_processes_than_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(UserError, match="torchrun started 2 processes on this machine but it has 1 CUDA device"):
        distributed.setup("auto")


def test_the_pin_memory_threads_connection_errors_are_dropped_and_nothing_else():
    reported = []
    pin = SimpleNamespace(thread=threading.Thread(name="Thread-1 (_pin_memory_loop)"))
    _quiet_pin_memory_thread(SimpleNamespace(**vars(pin), exc_type=ConnectionResetError), report=reported.append)
    _quiet_pin_memory_thread(SimpleNamespace(**vars(pin), exc_type=EOFError), report=reported.append)
    assert reported == []
    other = SimpleNamespace(**vars(pin), exc_type=ValueError)
    elsewhere = SimpleNamespace(thread=threading.Thread(name="Thread-2 (work)"), exc_type=ConnectionResetError)
    _quiet_pin_memory_thread(other, report=reported.append)
    _quiet_pin_memory_thread(elsewhere, report=reported.append)
    assert reported == [other, elsewhere]


@cuda
def test_a_model_moved_inside_inference_mode_still_takes_gradients(model):
    """predict runs under inference mode; a model it moved to CUDA there used to come back with
    inference-tensor parameters, and ODIN, gradient CAMs and attacks on it then failed."""
    data = head(create_dataset("synthetic", "test"), 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.inference_mode():
        with on_device(model, torch.device("cuda")):
            assert next(model.parameters()).is_cuda
    assert not any(p.is_inference() for p in model.parameters())
    predict(model, data, RunSettings(device="cuda", progress=False))
    assert all(p.device.type == "cpu" and not p.is_inference() for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with on_device(model, torch.device("cuda")):
        x = torch.rand(2, 3, 64, 64, device="cuda", requires_grad=True)
        model(x).sum().backward()
        assert x.grad is not None


@cuda
def test_odin_on_cuda_agrees_with_the_cpu(model):
    data = create_dataset("synthetic", "test")
    sets = {"noise": create_dataset("synthetic", "test")}
    results = {device: evaluate_ood(model, data, sets, scores=["msp", "odin"],
                                    settings=RunSettings(device=device, limit=24, progress=False))
               for device in ("cpu", "cuda")}
    for a, b in zip(results["cpu"], results["cuda"]):
        for key, value in a.per_sample.items():
            if np.asarray(value).dtype.kind == "f":
                np.testing.assert_allclose(b.per_sample[key], value, rtol=1e-3, atol=1e-3, err_msg=key)
    assert next(model.parameters()).device.type == "cpu"
