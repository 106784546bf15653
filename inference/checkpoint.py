"""Run files: checkpoints and config.json, read with checks and written as one atomic set.

Reading. Checkpoints come from other people's machines: `torch.load(weights_only=True)`
never runs code, and everything it can refuse (a pickle of other objects, a truncated
or empty file, a text file), every missing key or value of the wrong type, a model
name not registered, a model config the model refuses, and weights that do not fit
the architecture, becomes one `RunError` line naming the file and what was expected.
None of them ever suggests loading with `weights_only=False`.

Writing. At the end of an epoch the best checkpoint, last.pt and the JSON files must
agree. `save_set` writes every file of the set to a `.part` file first and renames
only when all were written: a full disk or a kill while writing leaves the previous
set intact (a full disk removes its `.part` files; a kill may leave one, which nothing
reads and the next save overwrites). Renames follow the order given (checkpoint.pt
before last.pt): a kill between two renames leaves a best checkpoint of the newer
epoch beside a last.pt of the previous one, which resuming recomputes identically.
"""
from __future__ import annotations

import errno
import io
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch

from annotation.files import present
from inference.models import UnknownModelError, create_model
from inference.typed_config import checked_fields

FORMAT = 1
EXPECTED = "a checkpoint written by avvp-studio train"
BEST_KEYS = {"format": int, "model": str, "model_config": dict, "state_dict": dict, "epoch": int}
LAST_KEYS = {**BEST_KEYS, "train_config": dict, "optimizer": dict, "scheduler": dict, "best_epoch": int,
             "history": list, "rng": dict}


class RunError(ValueError):
    """A training or prediction run cannot go ahead as asked; the message says why."""


def _load_reason(exc: BaseException) -> str:
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return (f"it holds a Python object ({found.group(1)}) besides tensors and plain data, and such "
                "objects are never unpickled")
    if "Weights only load failed" in text:
        return "it is not a PyTorch checkpoint of tensors and plain data"
    if isinstance(exc, EOFError):
        return "the file ends early"
    if "central directory" in text or "zip archive" in text:
        return "the file is truncated or corrupt (incomplete zip archive)"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"unreadable ({first[:200]})"


def load_checkpoint(path: str | Path, required: Mapping[str, type] = BEST_KEYS) -> dict[str, Any]:
    """A checkpoint dict after the checks of the module docstring (`required`: key -> type)."""
    path = Path(path)
    try:
        if not present(path):
            raise RunError(f"{path}: not found; expected {EXPECTED}")
    except ValueError as exc:  # DataFileError: a broken entry
        raise RunError(str(exc)) from None
    if path.stat().st_size == 0:
        raise RunError(f"{path}: empty file (0 bytes); expected {EXPECTED}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse untrusted bytes is a refusal
        raise RunError(f"{path}: refused: {_load_reason(exc)}; expected {EXPECTED}") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: holds a {type(data).__name__}; expected {EXPECTED} (a dict)")
    missing = [k for k in required if k not in data]
    if missing:
        raise RunError(f"{path}: missing key(s) {missing}; expected {EXPECTED}")
    for key, kind in required.items():
        value = data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise RunError(f"{path}: {key} is of type {type(value).__name__}; expected {kind.__name__}")
    if data["format"] != FORMAT:
        raise RunError(f"{path}: checkpoint format {data['format']}; this program reads format {FORMAT}")
    bad = [k for k, v in data["state_dict"].items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise RunError(f"{path}: state_dict entry {bad[0]!r} is not a named tensor")
    return data


def _fit_message(exc: RuntimeError) -> str:
    text = str(exc)
    parts = []
    for label in ("Missing key(s)", "Unexpected key(s)"):
        found = re.search(re.escape(label) + r" in state_dict: (.*?)(?:\.\s*$|\.\s*\n)", text, re.S | re.M)
        if found:
            keys = re.findall(r'"([^"]+)"', found.group(1))
            parts.append(f"{label.lower()} {', '.join(keys[:3])}{f' and {len(keys) - 3} more' if len(keys) > 3 else ''}")
    mismatch = re.findall(r"size mismatch for ([\w.]+)", text)
    if mismatch:
        parts.append(f"size mismatch for {', '.join(mismatch[:3])}{' ...' if len(mismatch) > 3 else ''}")
    return "; ".join(parts) or text.strip().splitlines()[0][:200]


def model_from_checkpoint(checkpoint: dict[str, Any], path: str | Path = "checkpoint") -> torch.nn.Module:
    """The model with the checkpoint's weights. PLSIM's caption embeddings are buffers of the
    state dict, so the .npy files they were read from at training time are not needed (nor
    read: they may have moved, or be on another machine); only their widths are taken."""
    config, state = dict(checkpoint["model_config"]), checkpoint["state_dict"]
    for track in ("audio", "visual"):
        table = state.get(f"plsim.text_{track}")
        if table is not None and f"text_{track}" in config:  # the stand-in is overwritten by the stored table
            if table.ndim != 2:
                raise RunError(f"{path}: plsim.text_{track} has shape {tuple(table.shape)}; expected (25, d)")
            config[f"text_{track}"], config[f"text_dim_{track}"] = None, int(table.shape[1])
            config["random_text"] = True
    try:
        model = create_model(checkpoint["model"], **config)
    except UnknownModelError as exc:
        raise RunError(f"{path}: {exc}") from None
    except (ValueError, TypeError, RuntimeError, AssertionError, IndexError) as exc:
        raise RunError(f"{path}: the {checkpoint['model']} model refuses its model_config: {exc}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise RunError(f"{path}: the weights do not fit the {checkpoint['model']} model of its model_config: "
                       f"{_fit_message(exc)}") from None
    return model


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object file; errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunError(f"{path}: not found; expected {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: unreadable ({getattr(exc, 'strerror', None) or exc}); expected {what}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}); expected {what}") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: holds a JSON {type(data).__name__}; expected {what}")
    return data


def read_run_config(run_dir: str | Path, config_cls: type) -> Any:
    """The TrainConfig (`config_cls`) stored in RUN_DIR/config.json, every option type-checked."""
    path = Path(run_dir) / "config.json"
    data = read_json(path, "the config.json of an avvp-studio training run")
    train = data.get("train")
    if not isinstance(train, dict):
        raise RunError(f"{path}: no 'train' object; expected the config.json of an avvp-studio training run")
    try:
        return config_cls.from_dict(train)
    except RunError as exc:
        raise RunError(f"{path}: {exc}") from None


def _encode(path: Path, obj: Any) -> bytes:
    if path.suffix == ".json":
        return (json.dumps(obj, indent=1) + "\n").encode("utf-8")
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> None:
    """Write and fsync, so a full disk is an OSError here, not a short file discovered later."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def save_set(files: Mapping[Path, Any], what: str) -> None:
    """Write `files` ({path: dict}) as one set (see the module docstring); `what` names it in errors."""
    parts = {path: path.with_name(path.name + ".part") for path in files}
    try:
        for path, obj in files.items():
            _write(parts[path], _encode(path, obj))
    except OSError as exc:
        for part in parts.values():
            part.unlink(missing_ok=True)
        reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
        folder = next(iter(files)).parent
        raise RunError(f"{folder}: cannot save {what}: {reason}; the files of the previous save are intact") from None
    for path, part in parts.items():
        os.replace(part, path)


def checked_train_values(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """TrainConfig keyword arguments from a plain dict (config.json, a checkpoint), type-checked."""
    try:
        return checked_fields(cls, data, "training options")
    except ValueError as exc:
        raise RunError(str(exc)) from None
