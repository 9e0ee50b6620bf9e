"""Checkpoint I/O: our own format, and every foreign format users bring.

**Our format** is a dict of plain types and tensors only, so
``torch.load(path, weights_only=True)`` reads it::

    {"format": "cutmix-eval", "format_version": 1,
     "arch": "pyramidnet", "arch_kwargs": {...}, "num_classes": 100,
     "mean": [...], "std": [...], "input_size": [3, 32, 32],
     "method": "cutmix" | None, "dataset": "cifar100" | None,
     "train_config": {...}, "versions": {...}, "created": ISO time,
     "weights_sha256": hex, "state_dict": {...}}

It is written atomically (temporary file in the same folder, then ``os.replace``),
so an interrupted save never leaves a half-written file under the final name.

**Foreign formats** are detected from their contents: official CutMix files
(``state_dict`` with ``module.`` keys plus ``arch``, ``best_err1``...), timm
training checkpoints (``state_dict`` / ``state_dict_ema`` / ``model``), the
containers other training code writes (``model_state_dict``, ``net`` (kuangliu/pytorch-cifar's;
a whole network pickled there loads with ``trust``), ``network``;
PyTorch Lightning's ``state_dict`` whose keys carry the module's attribute, ``model.``
or ``net.``; RegMixup's ``feature_extractor.*`` + ``fc.*``, with its data module's normalization;
OpenMixup / mmclassification's ``backbone.*`` + ``head.fc.*``), raw state
dicts (torchvision's included) and safetensors files. Wrapper components are
stripped wherever every key has them at the same place (``module.`` of DataParallel /
DDP, ``_orig_mod.`` of torch.compile; a leading ``model.`` / ``net.``). RobustBench-style
``mu``/``sigma`` buffers (the normalization a model applies inside its ``forward``) become
the file's mean/std. For official PyramidNet/ResNet state dicts the depth, alpha, bottleneck
and class count are inferred from tensor shapes; torchvision ResNets (the official
CutMix ImageNet models) likewise: each model family registers the detector of its
checkpoints with itself (:func:`infer_arch`). ``arch``/``num_classes``/``mean``/``std``
arguments override what is detected.

**Safety**: files are read with ``weights_only=True`` (plus argparse ``Namespace``
and NumPy scalars, which timm checkpoints pickle and which cannot run code; PuzzleMix's pickled
``RecorderMeter`` training log is read as an inert stand-in). A file
that needs full unpickling is refused unless ``trust=True`` (``--trust-checkpoint``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cutmix_eval.errors import CheckpointError
from cutmix_eval.fileio import atomic_write
from cutmix_eval.models.classifier import Classifier
from cutmix_eval.models.registry import (CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD,
                                         create_model, detectors, families, format_arch, model_spec,
                                         parse_arch)
from cutmix_eval.versions import package_versions

FORMAT_NAME = "cutmix-eval"
FORMAT_VERSION = 1
#: key components that only wrap a model: DataParallel/DDP's ``module``, torch.compile's ``_orig_mod``
_WRAPPERS = ("module", "_orig_mod")
#: a leading component holding the whole model in a training container (Lightning's ``self.model``)
_HOLDERS = ("model", "net")
#: where training code keeps the weights in a dict, in the order they are looked for
_WEIGHT_KEYS = ("state_dict", "model", "model_state_dict", "net", "network")
_EMA_KEYS = ("state_dict_ema", "model_ema")
#: file suffixes checkpoints are saved under (``.tar`` covers ``.pth.tar``)
CHECKPOINT_SUFFIXES = (".pth", ".tar", ".pt", ".ckpt", ".bin", ".safetensors")
# harmless types that timm and other training scripts pickle next to the weights
_NP_CORE = getattr(np, "_core", None) or np.core
_EXTRA_SAFE_GLOBALS = [argparse.Namespace, np.dtype, _NP_CORE.multiarray.scalar,
                       np.dtypes.Float64DType, np.dtypes.Float32DType, np.dtypes.Int64DType]
#: classes that training scripts pickle whole next to the weights and that hold a training log,
#: never weights: snu-mllab/PuzzleMix's (and Manifold Mixup's) main.py saves its ``RecorderMeter``
#: from logger.py under ``recorder``. Read as inert stand-ins (:class:`_LeftOut`), with the NumPy
#: arrays they hold, such files load safely without --trust-checkpoint.
_TRAINING_LOGS = ("logger.RecorderMeter",)
_NUMPY_ARRAYS = [np.ndarray, (_NP_CORE.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
                 (_NP_CORE.multiarray._reconstruct, "numpy._core.multiarray._reconstruct")]


class _LeftOut:
    """What a training-log object of :data:`_TRAINING_LOGS` is read as: it keeps nothing and runs nothing."""

    def __setstate__(self, state: Any) -> None:
        pass

    def __repr__(self) -> str:
        return "<training log left out>"


@dataclass
class CheckpointInfo:
    """What was found in a checkpoint file and how it was interpreted."""

    path: str
    file_sha256: str
    format: str  # "cutmix-eval", "clovaai-cutmix", "timm", "training-dict", "lightning", "openmixup", "state-dict",
    #              "safetensors", "pickled-module" (see parse_checkpoint)
    arch: str  # registry name with keyword arguments, e.g. "pyramidnet:depth=56,alpha=48,bottleneck=true"
    arch_source: str  # "checkpoint", "--arch", RECORDED or INFERRED (how the architecture was found)
    num_classes: int
    num_parameters: int
    mean: list[float]
    std: list[float]
    normalization_source: str  # where mean/std came from
    input_size: list[int]
    weights_sha256: str
    method: str | None = None
    dataset: str | None = None
    training: dict[str, Any] = field(default_factory=dict)  # epoch, best_err1, train_config...
    versions: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- identity

# train_config keys that do not make another recipe: the seed (runs of one recipe differ in
# it), the run's name and description, and the DataLoader worker count
NOT_RECIPE = ("seed", "name", "description", "workers")


def recipe_identity(info: CheckpointInfo) -> str | None:
    """The training recipe of the file as 16 hex digits: SHA-256 of its ``train_config``
    (our own checkpoints) without the keys of :data:`NOT_RECIPE`, so runs that differ only in
    their seed share it. ``None`` when the file carries no training config (official CutMix,
    timm, torchvision files, raw state dicts)."""
    config = info.training.get("train_config")
    if not isinstance(config, Mapping) or not config:
        return None
    recipe = {k: v for k, v in config.items() if k not in NOT_RECIPE}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_identity(info: CheckpointInfo, label: str | None = None) -> dict[str, Any]:
    """What records say about the model (a Result's ``model``): the file and its SHA-256, the
    architecture, the method label (``label``, else the file's own; ``None`` when neither
    says), the training data, the weights' SHA-256 and the training recipe
    (:func:`recipe_identity`) with its seed (None when the file records none), and the
    normalization used with where it came from. The report pools records as seeds only when label,
    architecture, training data and recipe all agree, and pairs methods with the baseline by seed."""
    config = info.training.get("train_config")
    seed = config.get("seed") if isinstance(config, Mapping) else None
    return {"checkpoint": info.path, "checkpoint_sha256": info.file_sha256, "arch": info.arch,
            "method": label or info.method, "training_data": info.dataset,
            "weights_sha256": info.weights_sha256, "recipe": recipe_identity(info),
            "seed": seed if isinstance(seed, int) else None,
            "normalization": {"mean": info.mean, "std": info.std, "source": info.normalization_source}}


# --------------------------------------------------------------------------- hashing

def weights_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over keys, dtypes, shapes and raw bytes of a state dict (sorted by key).

    The same weights give the same hash whatever device or file format they came from.
    """
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- saving

def _plain(value: Any) -> Any:
    """Convert to the plain types ``weights_only`` loading accepts (dict/list/str/number/bool/None)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, str):
        return str(value)  # str subclasses (torch.__version__ is one) would need unpickling
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint; use plain types")


def save_checkpoint(model: Classifier, path: str | os.PathLike, *, method: str | None = None,
                    dataset: str | None = None, train_config: Mapping[str, Any] | None = None,
                    extra: Mapping[str, Any] | None = None,
                    train_state: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` in our format (atomically), in ``torch.save(obj, f)``'s
    order. Returns the path written.

    ``method`` and ``dataset`` label the weights (``inspect``, records and reports show
    them); ``train_config`` and ``extra`` must hold plain types; ``train_state`` (what
    ``--resume`` needs: optimizer, scheduler and scaler state dicts, history) may also
    hold tensors. All of it stays readable by ``weights_only`` loading.
    """
    if not isinstance(model, Classifier):
        raise TypeError(f"save_checkpoint(model, path): the model comes first (as in torch.save), got a "
                        f"{type(model).__name__}")
    state = {k: v.detach().cpu() for k, v in model.net.state_dict().items()}
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "arch": model.arch,
        "arch_kwargs": _plain(model.arch_kwargs),
        "num_classes": model.num_classes,
        "mean": model.mean.flatten().tolist(),
        "std": model.std.flatten().tolist(),
        "input_size": list(model.input_size),
        "method": method,
        "dataset": dataset,
        "train_config": _plain(train_config or {}),
        "extra": _plain(extra or {}),
        "versions": package_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "weights_sha256": weights_sha256(state),
        "state_dict": state,
    }
    if train_state is not None:
        payload["train_state"] = dict(train_state)
    return atomic_write(path, lambda fh: torch.save(payload, fh))


# --------------------------------------------------------------------------- reading

def _looks_like_html(head: bytes) -> bool:
    """PyTorch files start with a zip or pickle header, never with ``<`` (HTML, XML)."""
    return head.lstrip().startswith(b"<")


def read_checkpoint_file(path: str | os.PathLike, *, trust: bool = False) -> Any:
    """Load a checkpoint file onto the CPU, safely.

    Raises :class:`CheckpointError` with one line naming the file and the fix for a
    missing, empty, HTML, truncated or unsafe file.
    """
    path = Path(path)
    if path.is_dir():
        raise _folder_error(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path given to --ckpt")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); the download or save did not "
                              "complete: fetch or save it again")
    with open(path, "rb") as fh:
        head = fh.read(512)
    if _looks_like_html(head):
        raise CheckpointError(f"checkpoint {path} is a text/HTML page, not PyTorch weights (a failed "
                              "download saves the site's page instead of the file): download it again")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        with torch.serialization.safe_globals(_EXTRA_SAFE_GLOBALS), warnings.catch_warnings():
            # plain pickles (not torch.save) trip a torch warning about the protocol; the
            # safe unpickler's verdict is what matters
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower() and "weights_only" not in str(err).lower():
            raise _unreadable(path, err) from err
        logs_left_out = _load_leaving_out_logs(path)
        if logs_left_out is not None:
            return logs_left_out
        if not trust:
            detail = _first_unsafe_global(str(err))
            raise CheckpointError(
                f"checkpoint {path} contains pickled Python objects{detail} that could run code when "
                "loaded; refused. If you trust its source, pass --trust-checkpoint "
                "(`trust = true` in a study file, trust=True in Python) to load it with full unpickling") from err
    except Exception as err:  # truncated zip, bad magic number, EOF...
        raise _unreadable(path, err) from err
    warnings.warn(f"--trust-checkpoint: loading {path} with full unpickling; any code it carries runs now",
                  stacklevel=2)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise _unreadable(path, err) from err


def _global_name(obj: Any) -> str:
    return obj[1] if isinstance(obj, tuple) else f"{obj.__module__}.{obj.__qualname__}"


def _load_leaving_out_logs(path: Path) -> Any | None:
    """The file read safely with its training-log objects (:data:`_TRAINING_LOGS`) as inert
    :class:`_LeftOut` stand-ins, when those (and the NumPy arrays they hold) are all that safe
    loading refused; else None."""
    try:
        unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # a legacy (pre-1.6) file: not listed, refused as before
        return None
    allowed = [*_EXTRA_SAFE_GLOBALS, *_NUMPY_ARRAYS, *((_LeftOut, name) for name in _TRAINING_LOGS)]
    if not unsafe & set(_TRAINING_LOGS) or not unsafe <= {_global_name(g) for g in allowed}:
        return None
    try:
        with torch.serialization.safe_globals(allowed), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors (the format holds tensors only: nothing to unpickle)."""
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except Exception as err:  # header too large, truncated data, not safetensors at all...
        raise _unreadable(path, err) from err


def _folder_error(path: Path) -> CheckpointError:
    """A folder given as a checkpoint: name the checkpoint files it holds (``*.pth``,
    ``*.pth.tar``, ``*.pt``, ``*.ckpt``, ``*.bin``), best and last first."""
    found = sorted((p.name for p in path.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES),
                   key=lambda name: (name.split(".")[0] not in ("best", "last"), name))
    if not found:
        return CheckpointError(f"checkpoint {path} is a folder, not a file, and holds no checkpoint file "
                               f"({', '.join('*' + s for s in CHECKPOINT_SUFFIXES)}); pass the file itself")
    listed = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
    return CheckpointError(f"checkpoint {path} is a folder, not a file; pass one of its checkpoint files, "
                           f"e.g. --ckpt {path / found[0]} (it holds {listed})")


def _unreadable(path: Path, err: BaseException) -> CheckpointError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return CheckpointError(f"checkpoint {path} cannot be read as a PyTorch file (truncated or corrupted: "
                           f"{reason[:160]}); download or save it again")


def _first_unsafe_global(message: str) -> str:
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    return f" ({match.group(1)})" if match else ""


def _strip_prefixes(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Drop the components that only wrap the model: ``module`` (DataParallel/DDP) and
    ``_orig_mod`` (torch.compile) wherever every key has one at the same depth
    (``model.module.conv1.weight`` -> ``model.conv1.weight``), and a leading ``model`` or
    ``net`` every key starts with (a training container's attribute, e.g. Lightning's)."""
    state = dict(state_dict)
    while state:
        parts = [key.split(".") for key in state]
        depth = min(len(p) for p in parts) - 1  # a component before the parameter's own name
        wrapped = next((d for d in range(depth) if all(p[d] in _WRAPPERS for p in parts)
                        or (d == 0 and len({p[0] for p in parts}) == 1 and parts[0][0] in _HOLDERS)), None)
        if wrapped is None:
            return state
        state = {".".join(p[:wrapped] + p[wrapped + 1:]): v for p, v in zip(parts, state.values())}
    return state


def _openmixup(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]] | None:
    """An OpenMixup / mmclassification classifier (``backbone.*`` + ``head.fc.*``) as the
    plain net (``fc.*`` for the head), and the key groups left out (e.g. a momentum
    encoder's ``backbone_k``, a mixing block): None for other state dicts."""
    if "head.fc.weight" not in state or not any(k.startswith("backbone.") for k in state):
        return None
    net = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    net |= {k[len("head."):]: v for k, v in state.items() if k.startswith("head.fc.")}
    left_out = sorted({k.split(".")[0] for k in state if not k.startswith(("backbone.", "head.fc."))})
    return net, left_out


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


@dataclass
class _Parsed:
    format: str
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]
    #: ``(mean, std, where they come from)`` the container tells (RegMixup's dataset), or None
    normalization: tuple[list[float], list[float], str] | None = None


def parse_checkpoint(obj: Any, *, ema: bool = False) -> _Parsed:
    """Tell which format a loaded checkpoint object is and pull out its state dict
    (``ema``: prefer a training checkpoint's EMA weights, ``state_dict_ema`` / ``model_ema``).

    Formats: ``cutmix-eval`` (ours), ``clovaai-cutmix`` (the official repository's),
    ``timm`` (a training checkpoint: weights under ``state_dict``/``model``/their EMA, with its
    metadata), ``training-dict`` (weights under ``model_state_dict``/``net``/``network``, as
    many research scripts save them), ``lightning`` (PyTorch Lightning: ``pytorch-lightning_version``), ``openmixup``
    (``backbone.*`` + ``head.fc.*``, whatever the container), ``state-dict`` (tensors only),
    ``pickled-module`` (a whole ``nn.Module``, readable only when trusted)."""
    if isinstance(obj, nn.Module):
        return _mixing_framework(_Parsed("pickled-module", _strip_prefixes(obj.state_dict()), {}))
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint holds a {type(obj).__name__}, not a dict of weights")
    if obj.get("format") == FORMAT_NAME:
        return _Parsed(FORMAT_NAME, dict(obj["state_dict"]), {k: v for k, v in obj.items() if k != "state_dict"})
    if _is_state_dict(obj):
        return _mixing_framework(_Parsed("state-dict", _strip_prefixes(obj), {}))
    keys = [*_EMA_KEYS, *_WEIGHT_KEYS] if ema else [*_WEIGHT_KEYS, *_EMA_KEYS]
    for key in keys:
        weights = obj.get(key)
        pickled = isinstance(weights, nn.Module)  # a whole network pickled under the key (read with trust)
        if pickled:
            weights = weights.state_dict()
        if _is_state_dict(weights):
            meta = {k: v for k, v in obj.items() if not _is_state_dict(v) and not isinstance(v, nn.Module)
                    and k not in ("optimizer", "optimizer_states")}
            official = key == "state_dict" and obj.get("arch") in ("pyramidnet", "resnet") and "best_err1" in obj
            meta["weights_key"] = key
            kind = "clovaai-cutmix" if official else "pickled-module" if pickled else \
                "lightning" if "pytorch-lightning_version" in obj else \
                "timm" if key in ("state_dict", "model", *_EMA_KEYS) else "training-dict"
            return _mixing_framework(_Parsed(kind, _strip_prefixes(weights), meta))
    raise CheckpointError(f"checkpoint is a dict without weights (none of {', '.join(map(repr, keys))} holds "
                          f"tensors, nor is it a dict of tensors; its keys: {', '.join(map(str, list(obj)[:8]))})")


def _mixing_framework(parsed: _Parsed) -> _Parsed:
    """An OpenMixup / mmclassification state dict (:func:`_openmixup`) as the plain net's."""
    found = _openmixup(parsed.state_dict)
    if found is None:
        return _backbone_and_classifier(parsed)
    state, left_out = found
    meta = parsed.meta | ({"left_out": left_out} if left_out else {})
    return _Parsed("openmixup", _strip_prefixes(state), meta)


#: FrancescoPinto/RegMixup's CIFARDataModule (data/cifar.py): its normalization per dataset
_REGMIXUP_NORMALIZATION = {"cifar10": ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]),
                           "cifar100": ([0.5071, 0.4867, 0.4408], [0.2675, 0.2565, 0.2761])}
_HEAD_KEYS = ("fc.weight", "fc.bias")


def _backbone_and_classifier(parsed: _Parsed) -> _Parsed:
    """A Lightning module holding its backbone as ``feature_extractor`` and its classifier as a
    top-level ``fc`` (FrancescoPinto/RegMixup's ``models/vanilla.py``, which RegMixup training
    extends; its backbones -- a Wide ResNet with xternalz's names, a kuangliu ResNet-50 -- end in
    pooled features) as the plain net: ``feature_extractor.`` dropped, ``fc.*`` kept. RegMixup
    trains on CIFAR-10/100 only: the dataset is read from the file's ``hyper_parameters``, else
    from the class count, and its data module's normalization goes with it. Other state dicts
    are returned as they are."""
    state = parsed.state_dict
    if "fc.weight" not in state or not any(k.startswith("feature_extractor.") for k in state) \
            or not all(k.startswith("feature_extractor.") or k in _HEAD_KEYS for k in state):
        return parsed
    net = {k.removeprefix("feature_extractor."): v for k, v in state.items()}
    meta = dict(parsed.meta)
    hparams = meta.get("hyper_parameters")
    dataset = hparams.get("dataset") if isinstance(hparams, Mapping) else None
    if dataset in _REGMIXUP_NORMALIZATION:
        how = "the dataset its hyper_parameters name"
    else:
        classes = int(state["fc.weight"].shape[0])
        dataset = {10: "cifar10", 100: "cifar100"}.get(classes)
        how = f"the dataset assumed from its {classes} classes ({OVERRIDE})"
    normalization = None
    if dataset is not None:
        meta.setdefault("dataset", dataset)
        mean, std = _REGMIXUP_NORMALIZATION[dataset]
        normalization = (mean, std, f"FrancescoPinto/RegMixup's CIFARDataModule (data/cifar.py) normalization "
                                    f"for {dataset}, {how}")
    return _Parsed(parsed.format, _strip_prefixes(net), meta, normalization)


# --------------------------------------------------------------------------- inference

#: how an architecture was found (``CheckpointInfo.arch_source``)
RECORDED, INFERRED = "the model name the file records", "inferred from the tensor shapes"


def infer_arch(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(architecture string, how it was found)`` of a state dict, or None when no family
    claims it: asked of the checkpoint detectors the model families registered. A model name
    the file records (timm's ``arch``) wins (:data:`RECORDED`); otherwise the families that
    recognise the tensor shapes (:data:`INFERRED`) must agree, and a state dict two of them
    claim is refused with both names, so a wrong guess cannot pass unnoticed."""
    claims: dict[str, str] = {}
    for family, detect, by_recorded_name in detectors():
        arch = detect(state, meta)
        if arch is not None and by_recorded_name:
            return arch, RECORDED
        if arch is not None:
            claims[family] = arch
    if len(set(claims.values())) > 1:
        raise CheckpointError(f"its tensor shapes fit {len(claims)} architectures ({', '.join(claims.values())}); "
                              "pass --arch with the right one")
    return (next(iter(claims.values())), INFERRED) if claims else None


def nearest_families(state: Mapping[str, torch.Tensor], count: int = 3) -> list[str]:
    """For a state dict no family claims: the ``count`` registered architectures (each
    family's default, and torchvision's ResNets) whose parameter names overlap it most, each
    with what did not fit (missing and unexpected keys, the first shape mismatch). Built on
    the ``meta`` device: no memory, no initialization cost."""
    head = [v for v in state.values() if v.ndim == 2]
    num_classes = int(head[-1].shape[0]) if head else 10
    candidates = [name for name in families() if name not in ("timm", "torchvision")]
    candidates += ["torchvision/resnet18", "torchvision/resnet50"]
    fits = []
    for name in candidates:
        spec = model_spec(name)
        with torch.device("meta"):
            expected = {k: v.shape for k, v in spec.builder(num_classes, **spec.defaults).state_dict().items()
                        if not k.endswith("num_batches_tracked")}
        shared = expected.keys() & state.keys()
        fits.append((len(shared) / len(expected.keys() | state.keys()), name, expected, shared))
    lines = []
    for _, name, expected, shared in sorted(fits, key=lambda fit: -fit[0])[:count]:
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected and not k.endswith("num_batches_tracked")]
        shape = next((f"{k} file {list(state[k].shape)} vs {list(expected[k])}" for k in expected
                      if k in shared and tuple(state[k].shape) != tuple(expected[k])), None)
        told = [f"{len(shared)} of {len(expected)} names match"]
        told += [f"missing e.g. {missing[0]}"] if missing else []
        told += [f"unexpected e.g. {unexpected[0]}"] if unexpected else []
        told += [f"first shape mismatch {shape}"] if shape else []
        lines.append(f"{format_arch(name, dict(model_spec(name).defaults))} ({', '.join(told)})")
    return lines


#: how an assumed normalization can be overridden, said wherever one is assumed
OVERRIDE = "assumed: the file does not say; override with --mean/--std, or --no-normalize for [0, 1] pixels"


def _pop_embedded_normalization(state: dict[str, torch.Tensor]
                                ) -> tuple[dict[str, torch.Tensor], tuple[list[float], list[float]] | None]:
    """Take out the top-level ``mu``/``sigma`` buffers (3 values each) in which RobustBench's
    models keep the per-channel normalization they apply to [0, 1] pixels inside ``forward``:
    ``(state without them, (mean, std))``, or ``(state, None)`` when the file has none."""
    mu, sigma = state.get("mu"), state.get("sigma")
    if mu is None or sigma is None or mu.numel() != 3 or sigma.numel() != 3 or not mu.is_floating_point():
        return state, None
    rest = {k: v for k, v in state.items() if k not in ("mu", "sigma")}
    return rest, (mu.flatten().tolist(), sigma.flatten().tolist())


def _default_normalization(arch_name: str) -> tuple[tuple, tuple, str]:
    """The family's usual mean/std for a file that carries none, and where they come from."""
    spec = model_spec(arch_name)
    if spec.normalization:
        source = spec.normalization
    elif spec.mean == CIFAR_MEAN and spec.std == CIFAR_STD:
        source = "the official CutMix CIFAR normalization"
    elif spec.mean == IMAGENET_MEAN and spec.std == IMAGENET_STD:
        source = "ImageNet normalization"
    else:
        source = f"the default of {arch_name}"
    return spec.mean, spec.std, f"{source} ({OVERRIDE})"


def _architecture(path: Path, parsed: _Parsed, arch: str | None) -> tuple[str, str]:
    """``(architecture string, where it came from)``: ``--arch``, our file's record, a model
    name the file records, or the tensor shapes (:func:`infer_arch`); else a one-line error
    naming the nearest families (:func:`nearest_families`)."""
    if arch:
        return arch, "--arch"
    if parsed.format == FORMAT_NAME:
        return format_arch(parsed.meta["arch"], parsed.meta.get("arch_kwargs", {})), "checkpoint"
    try:
        found = infer_arch(parsed.state_dict, parsed.meta)
    except CheckpointError as err:
        raise CheckpointError(f"cannot tell the architecture of {path}: {err}") from None
    if found is None:
        state = parsed.state_dict
        raise CheckpointError(f"cannot tell the architecture of {path}: no model family recognises its keys "
                              f"(first: {', '.join(list(state)[:3])}); nearest: {'; '.join(nearest_families(state))}. "
                              "Pass --arch NAME (see `cutmix-eval models`)")
    return found


def _normalization(parsed: _Parsed, arch_name: str, mean: Sequence[float] | None, std: Sequence[float] | None,
                   normalize: bool, embedded: tuple[list[float], list[float]] | None
                   ) -> tuple[Sequence[float], Sequence[float], str]:
    """``(mean, std, where they came from)``: ``--no-normalize``, ``--mean/--std`` (each
    completed from the file or family when only one is given), our file's record, the
    ``mu``/``sigma`` buffers of a foreign file (``embedded``), or the family's usual values,
    said to be assumed (:func:`_default_normalization`)."""
    if not normalize:
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "--no-normalize: [0, 1] pixels as they are"
    if parsed.format == FORMAT_NAME:
        file_mean, file_std, source = parsed.meta["mean"], parsed.meta["std"], "checkpoint"
    elif embedded is not None:
        file_mean, file_std = embedded
        source = "checkpoint buffers mu/sigma (the original model normalizes inside its forward)"
    elif parsed.normalization is not None:
        file_mean, file_std, source = parsed.normalization
    else:
        file_mean, file_std, source = _default_normalization(arch_name)
    if mean is not None or std is not None:
        source = "--mean/--std"
    return mean or file_mean, std or file_std, source


def _head_weight_key(model: Classifier) -> str | None:
    head = model.head
    weight = getattr(head, "weight", None)
    if weight is None and isinstance(head, nn.Sequential):
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
        weight = linears[-1].weight if linears else None
    for key, param in model.net.named_parameters():
        if param is weight:
            return key
    return None


def _check_fit(model: Classifier, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Raise a one-line error if ``state`` does not fit ``model.net`` exactly."""
    expected = model.net.state_dict()
    # files from PyTorch < 0.4.1 have no BatchNorm batch counters; they are not weights
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k}: file {list(state[k].shape)} vs model {list(v.shape)}"
                  for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if mismatched:
            parts.append(f"{len(mismatched)} of another shape (e.g. {mismatched[0]})")
        raise CheckpointError(f"checkpoint {path} does not fit architecture {model.arch}: "
                              f"{'; '.join(parts)}; pass the right --arch (see `cutmix-eval inspect`)")


def load_checkpoint(path: str | os.PathLike, *, arch: str | None = None, num_classes: int | None = None,
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    normalize: bool = True, trust: bool = False,
                    ema: bool = False) -> tuple[Classifier, CheckpointInfo]:
    """Load any supported checkpoint into a pixel-space :class:`Classifier` (on CPU, eval mode).

    ``arch`` (a registry string such as ``pyramidnet:depth=200,alpha=240``),
    ``num_classes``, ``mean`` and ``std`` (per channel, in [0, 1]) override what the file
    says or what is inferred from it; ``normalize=False`` feeds the net [0, 1] pixels as they
    are (mean 0, std 1: models that normalize inside, RobustBench's). ``trust=True`` allows full unpickling of a file that
    safe loading refuses (only for files from a source you trust; ``--trust-checkpoint``).
    ``ema=True`` loads a training checkpoint's EMA weights (timm's ``state_dict_ema``)
    when it has them, as ``--ema`` does; files without EMA weights load their only ones.
    Returns the model and a :class:`CheckpointInfo` describing the file and every
    assumption made (``info.training["weights_key"]`` names the weights loaded).
    """
    path = Path(path)
    if not normalize and (mean is not None or std is not None):
        raise CheckpointError("--no-normalize and --mean/--std contradict each other; give one of them")
    parsed = parse_checkpoint(read_checkpoint_file(path, trust=trust), ema=ema)
    if path.suffix == ".safetensors" and parsed.format == "state-dict":
        parsed.format = "safetensors"
    embedded = None
    if parsed.format != FORMAT_NAME:
        parsed.state_dict, embedded = _pop_embedded_normalization(parsed.state_dict)
    state, meta = parsed.state_dict, parsed.meta
    digest = weights_sha256(state)
    if parsed.format == FORMAT_NAME:
        stored = meta.get("weights_sha256")
        if stored and stored != digest:
            raise CheckpointError(f"checkpoint {path}: weights do not match their recorded sha256 "
                                  "(the file was modified or damaged); save it again")

    arch_string, arch_source = _architecture(path, parsed, arch)
    mean, std, norm_source = _normalization(parsed, parse_arch(arch_string)[0], mean, std, normalize, embedded)
    input_size = meta.get("input_size") if parsed.format == FORMAT_NAME else None
    model = create_model(arch_string, num_classes or 1000, mean=mean, std=std,
                         input_size=input_size)

    head_key = _head_weight_key(model)
    file_classes = int(state[head_key].shape[0]) if head_key and head_key in state else None
    if num_classes is not None and file_classes is not None and file_classes != num_classes:
        raise CheckpointError(f"checkpoint {path} has {file_classes} classes but {num_classes} were asked "
                              f"for (--num-classes or the dataset); use a checkpoint trained on this dataset")
    if num_classes is None:
        if file_classes is None:
            raise CheckpointError(f"cannot tell the class count of {path}; pass --num-classes")
        if file_classes != model.num_classes:
            model = create_model(arch_string, file_classes, mean=mean, std=std,
                                 input_size=input_size)

    _check_fit(model, state, path)
    model.net.load_state_dict(state, strict=False)  # exact fit checked above
    model.eval()

    training = {k: v for k, v in meta.items() if k in ("epoch", "best_err1", "best_err5", "weights_key", "left_out",
                                                       "train_config", "extra", "created", "global_step")}
    if "args" in meta:
        training["args"] = vars(meta["args"]) if isinstance(meta["args"], argparse.Namespace) else meta["args"]
    info = CheckpointInfo(
        path=str(path), file_sha256=file_sha256(path), format=parsed.format,
        arch=format_arch(model.arch, model.arch_kwargs), arch_source=arch_source, num_classes=model.num_classes,
        num_parameters=model.num_parameters, mean=model.mean.flatten().tolist(),
        std=model.std.flatten().tolist(), normalization_source=norm_source,
        input_size=list(model.input_size), weights_sha256=digest,
        method=meta.get("method"), dataset=meta.get("dataset") or _official_dataset(parsed.format, model),
        training=_plain_or_repr(training), versions=dict(meta.get("versions", {})))
    return model, info


def _official_dataset(fmt: str, model: Classifier) -> str | None:
    if fmt != "clovaai-cutmix":
        return None
    if model.arch in ("pyramidnet", "cifar_resnet"):
        return {10: "cifar10", 100: "cifar100"}.get(model.num_classes)
    return "imagenet" if model.num_classes == 1000 else None


def _plain_or_repr(value: Any) -> Any:
    try:
        return _plain(value)
    except TypeError:
        if isinstance(value, Mapping):
            return {str(k): _plain_or_repr(v) for k, v in value.items()}
        return repr(value)
