"""Load published backbone checkpoints from local files, safely and strictly.

Files are read with ``torch.load(path, map_location="cpu", weights_only=True)``
only: tensors and plain containers, never arbitrary Python objects. The one
widening is for numpy arrays (torchvggish's PCA file, ``vggish_pca_params-*.pth``,
holds numpy arrays, see harritaylor/torchvggish#11): when, and only when, the
weights-only unpickler stops at a numpy global, the load is retried, still with
``weights_only=True``, allowing just numpy's array reconstruction
(``_reconstruct``, ``ndarray``, ``dtype`` and the numeric dtype classes); object
arrays are refused afterwards.

Checkpoints wrapping the state dict under ``"state_dict"`` or ``"model"`` are
unwrapped, and a ``"module."`` prefix on every key (DataParallel) is dropped.

Published key formats (``fmt``):

``torchvision_resnet``
    torchvision's ``resnet50`` state dict (``conv1.weight``, ``bn1.*``,
    ``layer1.0.conv1.weight`` ... ``layer4.2.bn3.*``, ``layerN.0.downsample.0/1.*``);
    ``fc.*`` is ignored; ``*.num_batches_tracked`` may be absent (2017 files).
``pvt_v2``
    whai362/PVT ``pvt_v2_b5.pth`` (``patch_embed1.proj.weight``,
    ``block1.0.attn.q.weight``, ``block1.0.attn.kv.weight``, ``block1.0.attn.sr.weight``,
    ``block1.0.mlp.dwconv.dwconv.weight``, ``norm1.weight``); ``head.*`` is ignored.
``timm_pvt_v2``
    timm's ``pvt_v2_b5`` (``patch_embed.proj.*`` for stage 1,
    ``stages.{i}.downsample.proj/norm.*`` for stages 2-4, ``stages.{i}.blocks.{j}.*``
    with ``mlp.dwconv.*`` (no second ``dwconv``), ``stages.{i}.norm.*``): the inverse of
    timm's ``_checkpoint_filter_fn``; ``head.*`` is ignored.
``torchvggish``
    ``vggish-10086976.pth`` (``features.{0,3,6,8,11,13}.*``, ``embeddings.{0,2,4}.*``)
    and/or ``vggish_pca_params-970ea276.pth`` (``pca_eigen_vectors`` (128, 128),
    ``pca_means`` (128,) or (128, 1)); ``pproc.`` prefixed PCA keys (AVSBench's
    Postprocessor) are accepted. Each of the two groups must be complete when the
    file has any of its keys; a group the file lacks keeps the module's values.
    PCA keys are ignored by a ``VGGish(postprocess=False)``.

Anything else (missing keys, unexpected keys, shape mismatches, a file that is not
a weights file, one the weights-only unpickler refuses) raises ``ValueError``
naming the file and the format.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from .pvt_v2 import PyramidVisionTransformerV2
from .resnet import ResNet
from .vggish import VGGish

__all__ = [
    "FORMATS", "LoadReport", "WeightsFileError", "UnsafeWeightsError", "read_state_dict", "detect_format",
    "load_backbone_weights",
]

FORMATS: tuple[str, ...] = ("torchvision_resnet", "pvt_v2", "timm_pvt_v2", "torchvggish")
_TARGETS: dict[str, type[nn.Module]] = {
    "torchvision_resnet": ResNet,
    "pvt_v2": PyramidVisionTransformerV2,
    "timm_pvt_v2": PyramidVisionTransformerV2,
    "torchvggish": VGGish,
}
_SHOW = 5  # offending keys named in an error message, per kind
_PCA_KEYS = ("pca_eigen_vectors", "pca_means")


class WeightsFileError(ValueError):
    """The file cannot be used as a backbone weights file."""


class UnsafeWeightsError(WeightsFileError):
    """``torch.load(weights_only=True)`` refused the file (it asks for more than tensors)."""


@dataclass(frozen=True)
class LoadReport:
    path: str
    format: str
    loaded: tuple[str, ...]  # module state keys written from the file
    ignored: tuple[str, ...] = ()  # file keys deliberately left out (classifier head, unused PCA)
    kept: tuple[str, ...] = field(default=())  # module state keys the file does not carry (values kept)

    def __str__(self) -> str:
        text = f"{os.path.basename(self.path)} [{self.format}]: loaded {len(self.loaded)} tensors"
        if self.ignored:
            text += f", ignored {len(self.ignored)} ({_preview(self.ignored)})"
        if self.kept:
            text += f", kept {len(self.kept)} of the module's own ({_preview(self.kept)})"
        return text


def _preview(keys, n: int = 3) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


# --------------------------------------------------------------------------- reading


def _numpy_safe_globals() -> list:
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    rebuild = multiarray._reconstruct
    dtypes = {type(np.dtype(c)) for c in ("?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8")}
    return [(rebuild, "numpy.core.multiarray._reconstruct"), (rebuild, "numpy._core.multiarray._reconstruct"),
            np.ndarray, np.dtype, *sorted(dtypes, key=lambda t: t.__name__)]


def _unpickler_reason(exc: BaseException) -> str:
    msg = str(exc)
    if "WeightsUnpickler error:" in msg:
        msg = msg.split("WeightsUnpickler error:", 1)[1]
    msg = msg.split("Please use", 1)[0].split("Check the documentation", 1)[0]
    return " ".join(msg.split()).strip().rstrip(".") or type(exc).__name__


def _torch_load(path: str):
    def load():
        return torch.load(path, map_location="cpu", weights_only=True)

    def refused(exc: BaseException) -> UnsafeWeightsError:
        return UnsafeWeightsError(
            f"{path}: refused: torch.load(weights_only=True) will not read it ({_unpickler_reason(exc)}); "
            "a weights file holds tensors in plain containers, and this one was not unpickled further")

    try:
        return load()
    except pickle.UnpicklingError as exc:
        reason = _unpickler_reason(exc)
        if "Unsupported global" in reason and "GLOBAL numpy" in reason:
            try:
                with torch.serialization.safe_globals(_numpy_safe_globals()):
                    return load()
            except pickle.UnpicklingError as exc2:
                raise refused(exc2) from None
            except Exception as exc2:  # noqa: BLE001 - anything else: not a weights file
                raise WeightsFileError(f"{path}: not a PyTorch weights file ({type(exc2).__name__}: "
                                       f"{_unpickler_reason(exc2)})") from None
        raise refused(exc) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises KeyError/EOFError/RuntimeError on foreign files
        detail = " ".join(str(exc).split())[:200]
        hint = ("; .safetensors files are not read here: convert with safetensors.torch.load_file and torch.save"
                if path.endswith(".safetensors") else "")
        raise WeightsFileError(
            f"{path}: not a PyTorch weights file (torch.load failed: {type(exc).__name__}: {detail}){hint}") from None


def _as_tensor(path: str, key: str, value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise WeightsFileError(f"{path}: entry {key!r} is a numpy array of dtype {value.dtype}, not numbers")
        return torch.from_numpy(np.ascontiguousarray(value))
    raise WeightsFileError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor: not a weights file")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a local checkpoint safely and return its flat state dict (unwrapped, ``module.`` dropped)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    obj = _torch_load(path)
    for _ in range(2):  # e.g. {"model": {...}} or {"state_dict": {...}, "meta": ...}
        if isinstance(obj, dict) and not _looks_flat(obj):
            inner = next((obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict):
        raise WeightsFileError(f"{path}: holds a {type(obj).__name__}, not a state dict: not a weights file")
    if not obj:
        raise WeightsFileError(f"{path}: the state dict is empty")
    bad = [k for k in obj if not isinstance(k, str)]
    if bad:
        raise WeightsFileError(f"{path}: state dict keys must be strings, found {bad[:_SHOW]!r}")
    state = {k: _as_tensor(path, k, v) for k, v in obj.items()}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _looks_flat(obj: dict) -> bool:
    return bool(obj) and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in obj.values())


# --------------------------------------------------------------------------- formats


def detect_format(keys) -> str | None:
    """The published format a set of state-dict keys is in, or None."""
    keys = set(keys)
    if "layer1.0.conv1.weight" in keys or ("conv1.weight" in keys and "bn1.weight" in keys):
        return "torchvision_resnet"
    if "patch_embed1.proj.weight" in keys or any(k.startswith("block1.") for k in keys):
        return "pvt_v2"
    if "patch_embed.proj.weight" in keys or any(k.startswith("stages.") and ".blocks." in k for k in keys):
        return "timm_pvt_v2"
    vgg = ("features.0.weight", "embeddings.0.weight", *_PCA_KEYS, *(f"pproc.{k}" for k in _PCA_KEYS))
    if any(k in keys for k in vgg):
        return "torchvggish"
    return None


def _map_resnet(key: str, module: nn.Module) -> str | None:
    return None if key.startswith("fc.") else key


def _map_pvt(key: str, module: nn.Module) -> str | None:
    return None if key.startswith("head.") else key


_TIMM_BLOCK = re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\.(.+)$")
_TIMM_DOWN = re.compile(r"^stages\.(\d+)\.downsample\.(.+)$")
_TIMM_NORM = re.compile(r"^stages\.(\d+)\.norm\.(.+)$")


def _map_timm_pvt(key: str, module: nn.Module) -> str | None:
    if key.startswith("head."):
        return None
    if key.startswith("patch_embed."):
        return "patch_embed1." + key[len("patch_embed."):]
    m = _TIMM_BLOCK.match(key)
    if m:
        rest = m.group(3)
        if rest.startswith("mlp.dwconv."):
            rest = "mlp.dwconv.dwconv." + rest[len("mlp.dwconv."):]
        return f"block{int(m.group(1)) + 1}.{m.group(2)}.{rest}"
    m = _TIMM_DOWN.match(key)
    if m and int(m.group(1)) > 0:  # stage 0 has no downsample in timm: its embed is patch_embed
        return f"patch_embed{int(m.group(1)) + 1}.{m.group(2)}"
    m = _TIMM_NORM.match(key)
    if m:
        return f"norm{int(m.group(1)) + 1}.{m.group(2)}"
    return key  # unknown: reported as unexpected under its own name


def _map_vggish(key: str, module: nn.Module) -> str | None:
    if key.startswith("pproc."):
        key = key[len("pproc."):]
    if key in _PCA_KEYS and not getattr(module, "postprocess", False):
        return None
    return key


_MAPPERS: dict[str, Callable[[str, nn.Module], str | None]] = {
    "torchvision_resnet": _map_resnet,
    "pvt_v2": _map_pvt,
    "timm_pvt_v2": _map_timm_pvt,
    "torchvggish": _map_vggish,
}


def _expected_keys(fmt: str, module_state: dict[str, torch.Tensor], mapped: dict[str, object]) -> set[str]:
    """Module keys the file must provide."""
    keys = {k for k in module_state if not k.endswith("num_batches_tracked")}
    if fmt == "torchvggish":  # two files, two groups: a group is required once the file has any of it
        groups = [{k for k in keys if k in _PCA_KEYS}, {k for k in keys if k not in _PCA_KEYS}]
        keys = set().union(*(g for g in groups if g & set(mapped)))
    return keys


def _fit_value(fmt: str, key: str, value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if fmt == "torchvggish" and key == "pca_means" and value.dim() == 1 and value.numel() == target.numel():
        return value.reshape(target.shape)  # the published file stores (128,), the Postprocessor uses (128, 1)
    return value


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def load_backbone_weights(module: nn.Module, path: str | os.PathLike, fmt: str = "auto") -> LoadReport:
    """Load a published checkpoint into a backbone of this package; strict, with a clear error.

    ``fmt`` is one of ``FORMATS`` or ``"auto"`` (detected from the keys).
    """
    path = os.fspath(path)
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"unknown weights format {fmt!r}; choose 'auto' or one of {list(FORMATS)}")
    state = read_state_dict(path)
    detected = fmt
    if fmt == "auto":
        detected = detect_format(state)
        if detected is None:
            raise WeightsFileError(
                f"{path}: cannot tell the weights format from its keys (first: {_preview(sorted(state), _SHOW)}); "
                f"known formats: {list(FORMATS)}")
    target = _TARGETS[detected]
    if not isinstance(module, target):
        raise ValueError(f"{path}: format {detected!r} holds weights for a {target.__name__}, "
                         f"but the module is a {type(module).__name__}")

    module_state = module.state_dict()
    mapper = _MAPPERS[detected]
    mapped: dict[str, tuple[str, torch.Tensor]] = {}
    ignored: list[str] = []
    duplicates: list[str] = []
    for key, value in state.items():
        name = mapper(key, module)
        if name is None:
            ignored.append(key)
            continue
        if name in mapped:
            duplicates.append(f"{mapped[name][0]!r} and {key!r} -> {name!r}")
        if name in module_state:
            value = _fit_value(detected, name, value, module_state[name])
        mapped[name] = (key, value)

    expected = _expected_keys(detected, module_state, mapped)
    # offending keys in network order (module order, then file order)
    missing = [k for k in module_state if k in expected and k not in mapped]
    unexpected = [k for k in mapped if k not in module_state]
    mismatched = [k for k in module_state if k in mapped and mapped[k][1].shape != module_state[k].shape]

    problems = []
    if duplicates:
        problems.append(f"keys mapping to the same parameter ({len(duplicates)}): {'; '.join(duplicates[:_SHOW])}")
    if missing:
        shown = [f"{k} (expected {_shape(module_state[k])})" for k in missing[:_SHOW]]
        problems.append(f"missing ({len(missing)}): " + ", ".join(shown) + (", ..." if len(missing) > _SHOW else ""))
    if unexpected:
        shown = []
        for k in unexpected[:_SHOW]:
            src, v = mapped[k]
            shown.append(f"{src} (found {_shape(v)})" if src == k else f"{src} -> {k} (found {_shape(v)})")
        problems.append(f"unexpected ({len(unexpected)}): " + ", ".join(shown)
                        + (", ..." if len(unexpected) > _SHOW else ""))
    if mismatched:
        shown = []
        for k in mismatched[:_SHOW]:
            src, v = mapped[k]
            where = "" if src == k else f" (file key {src})"
            shown.append(f"{k}: expected {_shape(module_state[k])}, found {_shape(v)}{where}")
        problems.append(f"shape mismatch ({len(mismatched)}): " + "; ".join(shown)
                        + ("; ..." if len(mismatched) > _SHOW else ""))
    if problems:
        raise ValueError(f"{path}: weights in format {detected!r} do not fit this {type(module).__name__}:\n  "
                         + "\n  ".join(problems))
    if not mapped:
        raise ValueError(f"{path}: format {detected!r}: nothing in the file applies to this "
                         f"{type(module).__name__} (ignored: {_preview(ignored, _SHOW)})")

    result = module.load_state_dict({k: v for k, (_, v) in mapped.items()}, strict=False)
    if result.unexpected_keys:  # pragma: no cover - ruled out above
        raise ValueError(f"{path}: unexpected keys {result.unexpected_keys[:_SHOW]}")
    kept = tuple(sorted(k for k in module_state if k not in mapped))
    return LoadReport(path=path, format=detected, loaded=tuple(sorted(mapped)), ignored=tuple(ignored), kept=kept)
