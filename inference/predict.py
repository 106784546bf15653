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
from torch.utils.data import DataLoader, Dataset

from annotation.files import folder_lock
from annotation.llp_csv import write_dense_csv
from inference.checkpoint import RunError, load_checkpoint, model_from_checkpoint, read_run_config
from inference.data import AVVPDataset, FeatureStore, LabelSet, collate_items
from inference.metrics import binarize, evaluate_probabilities
from inference.devices import check_device_name
from inference.train_config import TrainConfig

THRESHOLD = 0.5
SPLITS = ("train", "val", "test", "all")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    try:
        check_device_name(name)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"device {name!r} asked for, but torch sees no CUDA device")
    if name == "cuda":
        return torch.device("cuda", local_rank)
    device = torch.device(name)
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        raise RunError(f"device {name!r} asked for, but torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def infer(model: torch.nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 64,
          num_workers: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment probabilities (V, 25, 10) audio and visual, and global probabilities (V, 25), in dataset order."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_items)
    was_training = model.training
    model.eval()
    seg_a, seg_v, glob = [], [], []
    try:
        for batch in loader:
            out = model(to_device(batch, device))
            seg_a.append(out["segment_audio"].transpose(1, 2).float().cpu().numpy())
            seg_v.append(out["segment_visual"].transpose(1, 2).float().cpu().numpy())
            glob.append(out["global"].float().cpu().numpy())
    finally:
        model.train(was_training)
    if not glob:
        empty = np.zeros((0, 25, 10), np.float32)
        return empty, empty.copy(), np.zeros((0, 25), np.float32)
    return np.concatenate(seg_a), np.concatenate(seg_v), np.concatenate(glob)


def truth_for(labels: LabelSet, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """(V, 25, 10) audio and visual truth of `indices`, or None when the split has no truth at all.

    A clip of a split with truth but without rows is all zeros (LLP evaluation semantics).
    """
    names = [labels.filenames[i] for i in indices]
    if not names or not any(n in labels.truth_audio or n in labels.truth_visual for n in names):
        return None
    zeros = np.zeros((25, 10), np.uint8)
    audio = np.stack([labels.truth_audio.get(n, zeros) for n in names])
    visual = np.stack([labels.truth_visual.get(n, zeros) for n in names])
    return audio, visual


def score(labels: LabelSet, indices: Sequence[int], probs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict | None:
    """The ten AVVP numbers of predictions `probs` (binarised by the published rule), or None without truth."""
    truth = truth_for(labels, indices)
    if truth is None:
        return None
    return evaluate_probabilities(*probs, *truth)


def load_run(run_dir: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The best model of a run (RUN_DIR/checkpoint.pt) and the checkpoint's metadata."""
    path = Path(run_dir) / "checkpoint.pt"
    if not path.exists():
        raise RunError(f"{path} not found: not a finished training run (avvp-studio train --out {run_dir})")
    checkpoint = load_checkpoint(path)
    model = model_from_checkpoint(checkpoint, path)
    meta = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    return model, meta


def predict(run_dir: str | Path, labels: LabelSet, features: FeatureStore, split: str = "test",
            device: str = "auto", batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(segment probs audio (V, 25, 10), visual (V, 25, 10), global probs (V, 25), filenames) of a split."""
    if split not in SPLITS:
        raise RunError(f"unknown split {split!r}; expected one of {SPLITS}")
    model, meta = load_run(run_dir)
    feature_set = meta["model_config"].get("feature_set", meta.get("feature_set"))
    if features.spec.name != feature_set:
        raise RunError(f"the run was trained on the {feature_set!r} features, not {features.spec.name!r}")
    indices = labels.indices(split)
    dev = resolve_device(device)
    model.to(dev)
    # the batch size the run evaluated with: same batches, same float results as metrics.json
    batch_size = batch_size or read_run_config(run_dir, TrainConfig).eval_batch_size
    features.check([labels.video_ids[i] for i in indices])
    seg_a, seg_v, glob = infer(model, AVVPDataset(labels, features, indices), dev, batch_size)
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


def predict_to_dir(run_dir: str | Path, labels: LabelSet, features: FeatureStore, split: str, out_dir: str | Path,
                   device: str = "auto") -> dict[str, Any]:
    """`predict` + `write_predictions` + predict.json; returns the summary (with scores when truth exists).
    OUT is locked meanwhile: a second prediction into it is refused, never mixed in."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, "prediction"):
        seg_a, seg_v, glob, names = predict(run_dir, labels, features, split, device)
        rows = write_predictions(out, seg_a, seg_v, glob, names)
        summary: dict[str, Any] = {"run": str(Path(run_dir).resolve()), "split": split, "clips": len(names),
                                   "threshold": THRESHOLD, "rows": rows, "scores": None}
        if names:
            summary["scores"] = score(labels, labels.indices(split), (seg_a, seg_v, glob))
        (out / "predict.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary
