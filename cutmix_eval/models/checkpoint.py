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
training checkpoints (``state_dict`` / ``state_dict_ema`` / ``model``),
kuangliu/pytorch-cifar's ``{"net": ..., "acc": ..., "epoch": ...}`` (format
``pytorch-cifar``; a whole network pickled there, as facebookresearch/mixup-cifar10 saves
it, loads with ``trust``), raw state dicts (torchvision's included), with ``module.`` and
``_orig_mod.`` prefixes stripped. RobustBench-style ``mu``/``sigma`` buffers (the
normalization a model applies inside its ``forward``) become the file's mean/std. For
official PyramidNet/ResNet state dicts the depth, alpha, bottleneck and class count are
inferred from tensor shapes; the kuangliu ResNets, Wide ResNets and torchvision ResNets
(the official CutMix ImageNet models) likewise: each model family registers the detector of its
checkpoints with itself (:func:`infer_arch`). ``arch``/``num_classes``/``mean``/``std``
arguments override what is detected.

**Safety**: files are read with ``weights_only=True`` (plus argparse ``Namespace``
and NumPy scalars, which timm checkpoints pickle and which cannot run code). A file
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
                                         create_model, detectors, format_arch, model_spec, parse_arch)
from cutmix_eval.versions import package_versions

FORMAT_NAME = "cutmix-eval"
FORMAT_VERSION = 1
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
#: file suffixes checkpoints are saved under (``.tar`` covers ``.pth.tar``)
CHECKPOINT_SUFFIXES = (".pth", ".tar", ".pt", ".ckpt", ".bin")
# harmless types that timm and other training scripts pickle next to the weights
_NP_CORE = getattr(np, "_core", None) or np.core
_EXTRA_SAFE_GLOBALS = [argparse.Namespace, np.dtype, _NP_CORE.multiarray.scalar,
                       np.dtypes.Float64DType, np.dtypes.Float32DType, np.dtypes.Int64DType]


@dataclass
class CheckpointInfo:
    """What was found in a checkpoint file and how it was interpreted."""

    path: str
    file_sha256: str
    format: str  # "cutmix-eval", "clovaai-cutmix", "timm", "pytorch-cifar", "state-dict", "pickled-module"
    arch: str  # registry name with keyword arguments, e.g. "pyramidnet:depth=56,alpha=48,bottleneck=true"
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
    (:func:`recipe_identity`). The report pools records as seeds only when label,
    architecture, training data and recipe all agree."""
    return {"checkpoint": info.path, "checkpoint_sha256": info.file_sha256, "arch": info.arch,
            "method": label or info.method, "training_data": info.dataset,
            "weights_sha256": info.weights_sha256, "recipe": recipe_identity(info)}


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
    try:
        with torch.serialization.safe_globals(_EXTRA_SAFE_GLOBALS), warnings.catch_warnings():
            # plain pickles (not torch.save) trip a torch warning about the protocol; the
            # safe unpickler's verdict is what matters
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower() and "weights_only" not in str(err).lower():
            raise _unreadable(path, err) from err
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
    """Drop ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) prefixes."""
    state = dict(state_dict)
    changed = True
    while changed and state:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


@dataclass
class _Parsed:
    format: str
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]


def parse_checkpoint(obj: Any, *, ema: bool = False) -> _Parsed:
    """Tell which format a loaded checkpoint object is and pull out its state dict
    (``ema``: prefer a training checkpoint's EMA weights, ``state_dict_ema`` / ``model_ema``)."""
    if isinstance(obj, nn.Module):
        return _Parsed("pickled-module", _strip_prefixes(obj.state_dict()), {})
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint holds a {type(obj).__name__}, not a dict of weights")
    if obj.get("format") == FORMAT_NAME:
        return _Parsed(FORMAT_NAME, dict(obj["state_dict"]), {k: v for k, v in obj.items() if k != "state_dict"})
    if _is_state_dict(obj):
        return _Parsed("state-dict", _strip_prefixes(obj), {})
    keys = ["state_dict_ema", "model_ema", "state_dict", "model", "net"] if ema else \
        ["state_dict", "model", "net", "state_dict_ema", "model_ema"]
    for key in keys:
        weights = obj.get(key)
        pickled = isinstance(weights, nn.Module)  # a whole network pickled under the key (read with trust)
        if pickled:
            weights = weights.state_dict()
        if _is_state_dict(weights):
            meta = {k: v for k, v in obj.items()
                    if not _is_state_dict(v) and not isinstance(v, nn.Module) and k != "optimizer"}
            official = key == "state_dict" and obj.get("arch") in ("pyramidnet", "resnet") and "best_err1" in obj
            meta["weights_key"] = key
            fmt = "clovaai-cutmix" if official else "pickled-module" if pickled else \
                "pytorch-cifar" if key == "net" else "timm"
            return _Parsed(fmt, _strip_prefixes(weights), meta)
    raise CheckpointError("checkpoint is a dict without weights (no 'state_dict', 'state_dict_ema', 'model', "
                          f"'net' or tensor values; keys: {', '.join(map(str, list(obj)[:8]))})")


# --------------------------------------------------------------------------- inference

def infer_arch(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str | None:
    """Guess the architecture string of a state dict, or None: the first answer of the
    checkpoint detectors the model families registered, asked in registration order (timm's
    first, so a timm model name recorded in the file wins)."""
    for detect in detectors():
        arch = detect(state, meta)
        if arch is not None:
            return arch
    return None


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
    spec = model_spec(arch_name)
    if spec.normalization:
        source = f"{spec.normalization} (assumed; override with --mean/--std)"
    elif spec.mean == CIFAR_MEAN and spec.std == CIFAR_STD:
        source = "official CutMix CIFAR normalization (assumed; override with --mean/--std)"
    elif spec.mean == IMAGENET_MEAN and spec.std == IMAGENET_STD:
        source = "ImageNet normalization (assumed; override with --mean/--std)"
    else:
        source = f"default of {arch_name} (assumed; override with --mean/--std)"
    return spec.mean, spec.std, source


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
                    trust: bool = False, ema: bool = False) -> tuple[Classifier, CheckpointInfo]:
    """Load any supported checkpoint into a pixel-space :class:`Classifier` (on CPU, eval mode).

    ``arch`` (a registry string such as ``pyramidnet:depth=200,alpha=240``),
    ``num_classes``, ``mean`` and ``std`` (per channel, in [0, 1]) override what the file
    says or what is inferred from it. ``trust=True`` allows full unpickling of a file that
    safe loading refuses (only for files from a source you trust; ``--trust-checkpoint``).
    ``ema=True`` loads a training checkpoint's EMA weights (timm's ``state_dict_ema``)
    when it has them, as ``--ema`` does; files without EMA weights load their only ones.
    Returns the model and a :class:`CheckpointInfo` describing the file and every
    assumption made (``info.training["weights_key"]`` names the weights loaded).
    """
    path = Path(path)
    parsed = parse_checkpoint(read_checkpoint_file(path, trust=trust), ema=ema)
    state, meta = parsed.state_dict, parsed.meta
    embedded_norm = None
    if parsed.format != FORMAT_NAME:
        state, embedded_norm = _pop_embedded_normalization(state)
    digest = weights_sha256(state)
    if parsed.format == FORMAT_NAME:
        stored = meta.get("weights_sha256")
        if stored and stored != digest:
            raise CheckpointError(f"checkpoint {path}: weights do not match their recorded sha256 "
                                  "(the file was modified or damaged); save it again")

    arch_string = arch or (format_arch(meta["arch"], meta.get("arch_kwargs", {}))
                           if parsed.format == FORMAT_NAME else infer_arch(state, meta))
    if arch_string is None:
        raise CheckpointError(f"cannot tell the architecture of {path} from its keys "
                              f"(first: {', '.join(list(state)[:3])}); pass --arch NAME "
                              "(see `cutmix-eval models`)")
    arch_name, _ = parse_arch(arch_string)

    if parsed.format == FORMAT_NAME:
        file_mean, file_std = meta["mean"], meta["std"]
        norm_source, input_size = "checkpoint", meta.get("input_size")
    else:
        file_mean, file_std, norm_source = _default_normalization(arch_name)
        if embedded_norm is not None:
            file_mean, file_std = embedded_norm
            norm_source = "checkpoint buffers mu/sigma (the original model normalizes inside its forward)"
        input_size = None
    if mean is not None or std is not None:
        norm_source = "--mean/--std"
    model = create_model(arch_string, num_classes or 1000, mean=mean or file_mean, std=std or file_std,
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
            model = create_model(arch_string, file_classes, mean=mean or file_mean, std=std or file_std,
                                 input_size=input_size)

    _check_fit(model, state, path)
    model.net.load_state_dict(state, strict=False)  # exact fit checked above
    model.eval()

    training = {k: v for k, v in meta.items() if k in ("epoch", "best_err1", "best_err5", "weights_key",
                                                       "train_config", "extra", "created")}
    if "args" in meta:
        training["args"] = vars(meta["args"]) if isinstance(meta["args"], argparse.Namespace) else meta["args"]
    info = CheckpointInfo(
        path=str(path), file_sha256=file_sha256(path), format=parsed.format,
        arch=format_arch(model.arch, model.arch_kwargs), num_classes=model.num_classes,
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
