"""Prediction with a trained run: probabilities, binary predictions, and the files `avvp-studio eval` reads.

`write_predictions(out, ...)` lays out OUT as:
    segment_probs_audio.npy   (V, 25, 10) float32  segment probabilities (classes x segments)
    segment_probs_visual.npy  (V, 25, 10) float32
    global_probs.npy          (V, 25)     float32  video-level probabilities
    filenames.txt             V lines, the clip filenames in row order
    audio.csv, visual.csv     dense binary predictions (published rule: segment >= 0.5 AND global >= 0.5)
    predict.json              run, split, count, threshold (and the ten numbers when truth exists)
The CSVs scored by `avvp-studio eval` against the split's truth give exactly the
test numbers of the run's metrics.json (same probabilities, same rule, same protocol).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from annotation.files import folder_lock, present
from annotation.llp_csv import write_dense_csv
from inference.checkpoint import RunError, load_checkpoint, model_from_checkpoint, read_run_config
from inference.data import LabelSet
from inference.metrics import binarize
from inference.models.plsim import caption_embeddings
from inference.tasks.avvp import AVVPTask, score
from inference.train import resolve_device
from inference.train_config import TrainConfig

THRESHOLD = 0.5
SPLITS = ("train", "val", "test", "all")


def load_run(run_dir: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The best model of a run (RUN_DIR/checkpoint.pt) and the checkpoint's metadata."""
    path = Path(run_dir) / "checkpoint.pt"
    if not present(path):
        raise RunError(f"{path} not found: not a finished training run (avvp-studio train --out {run_dir})")
    checkpoint = load_checkpoint(path)
    model = model_from_checkpoint(checkpoint, path)
    meta = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    return model, meta


def check_captions(model: torch.nn.Module, run_dir: str | Path, text_audio: str | None, text_visual: str | None) -> None:
    """Caption embeddings given at prediction time must be the ones the run was trained with (the
    checkpoint carries them): another text encoder's rows would mean other classes to PLSIM."""
    plsim = getattr(model, "plsim", None)
    for track, path in (("audio", text_audio), ("visual", text_visual)):
        if path is None:
            continue
        if plsim is None:
            raise RunError(f"--text-{track}: the model of {run_dir} reads no caption embeddings")
        given, stored = caption_embeddings(path, 0, 0), getattr(plsim, f"text_{track}")
        if given.shape != stored.shape or not torch.equal(given, stored):
            raise RunError(f"--text-{track} {path}: not the caption embeddings the run {run_dir} was trained with "
                           f"({tuple(given.shape)} vs the checkpoint's {tuple(stored.shape)}"
                           f"{', other values' if given.shape == stored.shape else ''})")


def predict(run_dir: str | Path, labels: LabelSet, data_dir: str | Path, split: str = "test", device: str = "auto",
            batch_size: int | None = None, zero_priors: bool = False, text_audio: str | None = None,
            text_visual: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(segment probs audio (V, 25, 10), visual (V, 25, 10), global probs (V, 25), filenames) of a split.

    Reads the clips' inputs only (features, priors); `zero_priors` feeds all-zero priors instead."""
    if split not in SPLITS:
        raise RunError(f"unknown split {split!r}; expected one of {SPLITS}")
    model, meta = load_run(run_dir)
    if meta.get("task", AVVPTask.name) != AVVPTask.name:
        raise RunError(f"{run_dir} holds a {meta['task']} run, not an AVVP parser")
    check_captions(model, run_dir, text_audio, text_visual)
    task = AVVPTask(labels, data_dir, zero_priors=zero_priors)
    task.attach(model)
    indices = labels.indices(split)
    task.check_inputs(indices)
    dev = resolve_device(device)
    model.to(dev)
    # the batch size the run evaluated with: same batches, same float results as metrics.json
    batch_size = batch_size or read_run_config(run_dir, TrainConfig).eval_batch_size
    seg_a, seg_v, glob = task.predict_split(model, indices, dev, batch_size)
    return seg_a, seg_v, glob, [labels.filenames[i] for i in indices]


def write_predictions(out_dir: str | Path, seg_a: np.ndarray, seg_v: np.ndarray, glob: np.ndarray,
                      filenames: Sequence[str], threshold: float = THRESHOLD) -> dict[str, int]:
    """Write the layout of the module docstring; returns the dense row counts {"audio": n, "visual": n}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "segment_probs_audio.npy", np.asarray(seg_a, np.float32))
    np.save(out / "segment_probs_visual.npy", np.asarray(seg_v, np.float32))
    np.save(out / "global_probs.npy", np.asarray(glob, np.float32))
    (out / "filenames.txt").write_text("".join(f"{f}\n" for f in filenames), encoding="utf-8")
    rows = {"audio": 0, "visual": 0}
    if len(filenames):
        pred_a, pred_v = binarize(seg_a, seg_v, glob, threshold)
    else:
        pred_a = pred_v = np.zeros((0, 25, 10), np.uint8)
    for track, pred in (("audio", pred_a), ("visual", pred_v)):
        rows[track] = write_dense_csv(out / f"{track}.csv", dict(zip(filenames, pred)))
    return rows


def predict_to_dir(run_dir: str | Path, labels: LabelSet, data_dir: str | Path, split: str, out_dir: str | Path,
                   device: str = "auto", **options: Any) -> dict[str, Any]:
    """`predict` + `write_predictions` + predict.json; returns the summary (with scores when truth exists).
    OUT is locked meanwhile: a second prediction into it is refused, never mixed in."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, "prediction"):
        seg_a, seg_v, glob, names = predict(run_dir, labels, data_dir, split, device, **options)
        rows = write_predictions(out, seg_a, seg_v, glob, names)
        summary: dict[str, Any] = {"run": str(Path(run_dir).resolve()), "split": split, "clips": len(names),
                                   "threshold": THRESHOLD, "rows": rows, "scores": None,
                                   "zero_priors": bool(options.get("zero_priors"))}
        if names:
            summary["scores"] = score(labels, labels.indices(split), (seg_a, seg_v, glob))
        (out / "predict.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary
