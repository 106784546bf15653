"""Per-frame and per-clip IoU of a predicted segmentation mask against the ground truth (no Qt here:
the worst-IoU queue computes these in a worker thread).

Binary (S4, MS3): the prediction is foreground where p >= 0.5 (stored value >= 128; a 'binary' mask, e.g.
an accepted one, where it is 1), the truth where it is 1; IoU = |P ∩ T| / |P ∪ T|, and 1.0 when both are
empty (nothing sounds and nothing is predicted: they agree).
AVSS (class indices, 0 = background): the mean over the classes present in the truth or the prediction
(background included, as AVSBench's per-frame sums do) of each class's IoU.
A prediction of another size than its truth is compared after a nearest-neighbour resize to the truth.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np
from sqlalchemy import Engine

from annotation.avs_store import MaskRow, avs_clips, masks_of_source

THRESHOLD = 128  # stored probability value of p = 0.5 (round(255 * 0.5) = 128)
CHUNK_CLIPS = 64  # clips read per query in `clip_scores`


def foreground(array: np.ndarray, kind: str) -> np.ndarray:
    """bool (H, W): the pixels a mask of `kind` calls sounding."""
    return array >= THRESHOLD if kind == "probability" else array > 0


def fit(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`array` at `shape` (nearest neighbour: classes and thresholds keep their values)."""
    if array.shape[:2] == tuple(shape):
        return array
    return cv2.resize(array, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


@dataclass(frozen=True)
class FrameIoU:
    iou: float
    inter: int  # binary: pixels; AVSS: summed over the classes counted
    union: int
    classes: tuple[int, ...] = ()  # AVSS: the classes averaged over


def binary_iou(pred: np.ndarray, truth: np.ndarray) -> FrameIoU:
    inter = int(np.count_nonzero(pred & truth))
    union = int(np.count_nonzero(pred | truth))
    return FrameIoU(1.0 if union == 0 else inter / union, inter, union)


def class_iou(pred: np.ndarray, truth: np.ndarray) -> FrameIoU:
    present = np.union1d(np.unique(pred), np.unique(truth)).astype(int)
    ious, inter_sum, union_sum = [], 0, 0
    for cls in present.tolist():
        p, t = pred == cls, truth == cls
        inter, union = int(np.count_nonzero(p & t)), int(np.count_nonzero(p | t))
        ious.append(inter / union)
        inter_sum, union_sum = inter_sum + inter, union_sum + union
    return FrameIoU(float(np.mean(ious)) if ious else 1.0, inter_sum, union_sum, tuple(present.tolist()))


def frame_iou(pred: np.ndarray, pred_kind: str, truth: np.ndarray, truth_kind: str) -> FrameIoU:
    """IoU of one predicted mask against its truth (see the module docstring)."""
    pred = fit(pred, truth.shape)
    if pred_kind == "classes" and truth_kind == "classes":
        return class_iou(pred, truth)
    return binary_iou(foreground(pred, pred_kind), foreground(truth, truth_kind))


def row_iou(pred: MaskRow | None, truth: MaskRow | None) -> FrameIoU | None:
    """None when either mask is missing (or the prediction was a rejection without a mask)."""
    if pred is None or truth is None or pred.png is None or truth.png is None:
        return None
    return frame_iou(pred.array(), pred.kind, truth.array(), truth.kind)


@dataclass
class ClipScore:
    """A clip's IoU against the truth for one prediction source."""

    frames: dict[int, float] = field(default_factory=dict)  # frame -> IoU, frames with truth and prediction

    @property
    def mean(self) -> float | None:
        return float(np.mean(list(self.frames.values()))) if self.frames else None


@dataclass
class QueueScores:
    source: str | None
    clips: dict[int, ClipScore]  # clip id -> score (clips without a scored frame have an empty one)
    reviewed: dict[int, dict[int, str]]  # clip id -> frame -> accepted / rejected


def clip_scores(engine: Engine, source: str | None, clip_ids: list[int] | None = None,
                progress: Callable[[str, int, int], None] | None = None) -> QueueScores:
    """Every clip's per-frame IoU for `source` (None: none, only the review states), read in chunks so a
    worker can report progress and be cancelled between them."""
    ids = [r.id for r in avs_clips(engine)] if clip_ids is None else list(clip_ids)
    scores: dict[int, ClipScore] = {}
    reviewed: dict[int, dict[int, str]] = {}
    for start in range(0, len(ids), CHUNK_CLIPS):
        chunk = ids[start:start + CHUNK_CLIPS]
        if progress:
            progress("scoring clips", start, len(ids))
        for clip_id, frames in masks_of_source(engine, "reviewed", chunk).items():
            reviewed[clip_id] = {f: row.status for f, row in frames.items() if row.status}
        if source is None:
            continue
        truth = masks_of_source(engine, "truth", chunk)
        predicted = masks_of_source(engine, source, chunk)
        for clip_id in chunk:
            score = ClipScore()
            for frame, pred in predicted.get(clip_id, {}).items():
                result = row_iou(pred, truth.get(clip_id, {}).get(frame))
                if result is not None:
                    score.frames[frame] = result.iou
            scores[clip_id] = score
    if progress:
        progress("scoring clips", len(ids), len(ids))
    return QueueScores(source, scores, reviewed)


def worst_first(clip_ids: list[int], scores: QueueScores) -> list[int]:
    """Clips by ascending mean IoU (the worst first); clips without a scored frame last, in their order."""
    def key(item: tuple[int, int]) -> tuple[bool, float, int]:
        position, clip_id = item
        score = scores.clips.get(clip_id)
        mean = score.mean if score is not None else None
        return (mean is None, 0.0 if mean is None else mean, position)

    return [clip_id for _, clip_id in sorted(enumerate(clip_ids), key=key)]
