"""AVSBench evaluation (S4, MS3: mIoU and F-score; AVSS: class mIoU and F), vectorised.

Gives the numbers of the published test scripts (OpenNLPLab/AVSBench, ported literally in
`inference.avs_metrics_reference`, which the tests compare against) from per-pixel counts:
numpy over frames and thresholds at once, in chunks of frames so memory stays bounded
whatever the split size, and exact (integer counts; ratios in float64).

Published protocol, as the code does it (not as the paper words it):

S4 / MS3 (`avs_s4/test.py`, `avs_ms3/test.py`, `utils/utility.py`): the test DataLoader
yields `test_batch_size` videos (default 1) per batch, i.e. B*5 frames, and each batch gives
- mIoU: mean over its frames of inter / (union + 1e-7), prediction = sigmoid(logit) > 0.5;
  a frame with empty truth scores #(pixels background in both) / (H*W);
- F: for each of 255 thresholds linspace(0, 1 - 1e-10, 255) (prediction = prob >= t), the F
  (beta^2 = 0.3) of each frame with non-empty truth, averaged over those frames of the batch,
  then the max over thresholds; a batch without such a frame gives 0.0.
The reported numbers are the unweighted means of these over batches. The F depends on how
frames are batched (max of a mean), hence `group_videos`.

AVSS (`avss/test.py`, `utils/compute_color_metrics.py`): per frame and class (71, index 0 =
background), IoU = inter / (union + 2.22e-16) and F (beta^2 = 0.3; 0 where undefined), summed
over all frames where the class is predicted or true, divided by that frame count; a class
that never occurs scores 0 and still counts in the mean over all 71 classes. Every frame the
loop sees counts, including the zero-padded frames 5..9 of 5-frame videos (truth all class 0,
prediction = the model's output on the zero (mean-colour) padding frame): the test applies no valid-frame
mask to the metric. Batching does not change these numbers (pure per-frame sums).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BETA2 = 0.3  # F-measure beta^2 of both published scripts
IOU_EPS = 1e-7  # mask_iou
COLOR_IOU_EPS = 2.220446049250313e-16  # _batch_miou_fscore
PR_NUM = 255  # Eval_Fmeasure thresholds
AVSS_CLASSES = 71
_CHUNK_PIXELS = 1 << 18  # pixels per chunk of frames: temporaries of a few MB, reused by the allocator


def _thresholds(num: int = PR_NUM) -> np.ndarray:
    """float32 values of torch.linspace(0, 1 - 1e-10, num), bit for bit.

    torch computes step = (end - start) / (num - 1) in float32, then start + step * i for the
    first half and end - step * (num - 1 - i) for the second, each with one rounding (its CPU
    kernel fuses the multiply-add; the CUDA kernel of the published run has the same formula,
    and nvcc fuses by default: assumed, not checked here); 1 - 1e-10 is 1.0 in float32.
    Reproduced in float64 (exact for these products) and rounded once; the tests pin it to
    torch.linspace on CPU. It matters only for probabilities within an ulp of a threshold.
    """
    f32 = np.float32
    start, end = f32(0.0), f32(1 - 1e-10)
    step = np.float64(f32((np.float64(end) - np.float64(start)) / np.float64(f32(num - 1))))
    i = np.arange(num, dtype=np.float64)
    low = (np.float64(start) + step * i).astype(f32)
    high = (np.float64(end) - step * (num - 1 - i)).astype(f32)
    return np.where(np.arange(num) < num // 2, low, high).astype(f32)


THRESHOLDS = _thresholds()


# ---------------------------------------------------------------- validation


def _check_videos(frames_per_video, n_frames: int, group_videos) -> np.ndarray:
    counts = np.asarray(frames_per_video)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError("frames_per_video must be a non-empty sequence of per-video frame counts, in order")
    if not np.issubdtype(counts.dtype, np.integer):
        if not np.issubdtype(counts.dtype, np.floating) or not np.all(counts == np.round(counts)):
            raise ValueError(f"frames_per_video must hold whole numbers, got {counts.tolist()[:10]}")
        counts = counts.astype(np.int64)
    if counts.min() < 1:
        raise ValueError("frames_per_video must hold counts >= 1 (a video without frames is not in a test batch)")
    if int(counts.sum()) != n_frames:
        raise ValueError(
            f"frames_per_video sums to {int(counts.sum())} frames but the arrays hold {n_frames}; "
            "give one count per video, in the order of the frames"
        )
    if isinstance(group_videos, bool) or not isinstance(group_videos, (int, np.integer)) or group_videos < 1:
        raise ValueError(f"group_videos must be an integer >= 1 (the test batch size in videos), got {group_videos!r}")
    return counts.astype(np.int64)


def _check_frames(name: str, arr) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim != 3:
        raise ValueError(f"{name} must have shape (frames, H, W), got {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0:
        raise ValueError(f"{name} has an empty dimension {a.shape}; need at least one frame of at least 1x1 pixel")
    return a


def _check_same_shape(name: str, a: np.ndarray, first: str, shape) -> None:
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape} but {first} has {shape}; one mask per frame in each")


def _frame_batches(counts: np.ndarray, group_videos: int) -> tuple[np.ndarray, int]:
    """Batch index of every frame, and the number of batches (consecutive videos, last one short)."""
    video_batch = np.arange(len(counts)) // group_videos
    return np.repeat(video_batch, counts), int(video_batch[-1]) + 1


def _chunks(n_frames: int, cells_per_frame: int):
    """Consecutive frame ranges of about _CHUNK_PIXELS cells (pixels or histogram bins) each."""
    step = max(1, _CHUNK_PIXELS // cells_per_frame)
    for start in range(0, n_frames, step):
        yield start, min(start + step, n_frames)


# ---------------------------------------------------------------- S4 / MS3


def _threshold_counts(p: np.ndarray) -> np.ndarray:
    """Number of thresholds <= p (1..255, uint8) for each float32 p in [0, 1], exactly.

    THRESHOLDS[i] is i/254 to within an ulp, so floor(p * 254) + 1 is right except within a
    few ulps of a threshold; the pixels whose p * 254 lies within 1e-3 of an integer in 1..253
    (at 0 and 254 the guess holds) are settled with searchsorted. Checked against searchsorted
    on every float32 in [0, 1] once (16 s); the tests check the neighbourhood of each threshold.
    """
    r = p * np.float32(PR_NUM - 1)
    whole = np.floor(r)
    k = whole.astype(np.uint8)
    frac = r - whole
    frac -= np.float32(0.5)
    np.abs(frac, out=frac)
    near = frac > np.float32(0.499)
    near &= r > np.float32(0.5)
    near &= r < np.float32(PR_NUM - 1.5)
    k += 1
    fix = np.flatnonzero(near)
    if fix.size:
        flat = k.reshape(-1)
        flat[fix] = np.searchsorted(THRESHOLDS, p.reshape(-1)[fix], side="right")
    return k


def _binary_chunk(probs, truth):
    """One chunk of frames, checked and cast: (float32 probabilities, uint8 0/1 truth), (n, H*W)."""
    n = probs.shape[0]
    p, g = probs.reshape(n, -1), truth.reshape(n, -1)
    if p.dtype != bool and not (p.min() >= 0 and p.max() <= 1):  # NaN fails both
        bad = ~((p >= 0) & (p <= 1))
        raise ValueError(
            "probs must be probabilities in [0, 1] (apply the sigmoid to logits first); "
            f"{int(np.count_nonzero(bad))} values are not, e.g. {p[bad][0]!r}"
        )
    if g.dtype != bool:
        if np.issubdtype(g.dtype, np.integer):
            ok = g.min() >= 0 and g.max() <= 1
        else:
            ok = bool(np.all((g == 0) | (g == 1)))
        if not ok:
            raise ValueError("truth must contain only 0 and 1 (foreground = 1)")
        g = g != 0
    return p.astype(np.float32, copy=False), g.view(np.uint8)


def _binary_sums(probs: np.ndarray, truth: np.ndarray, batch_of_frame: np.ndarray, n_batches: int):
    """Per frame the IoU term; per batch the sum over its non-empty frames of the 255 F values, and their count."""
    n_frames = probs.shape[0]
    hw = probs.shape[1] * probs.shape[2]
    frame_iou = np.empty(n_frames)
    f_sum = np.zeros((n_batches, PR_NUM))
    f_count = np.zeros(n_batches, dtype=np.int64)
    for a, b in _chunks(n_frames, max(hw, 2 * (PR_NUM + 1))):
        p, g = _binary_chunk(probs[a:b], truth[a:b])
        n_true = np.count_nonzero(g, axis=1)
        above = p > np.float32(0.5)
        n_pred = np.count_nonzero(above, axis=1)
        inter = np.count_nonzero(above & g.view(bool), axis=1)
        empty = n_true == 0
        # mask_iou: empty truth -> pixels background in both, over H*W
        inter = np.where(empty, hw - n_pred, inter)
        union = np.where(empty, hw, n_pred + n_true - inter)
        frame_iou[a:b] = inter / (union + IOU_EPS)
        keep = np.flatnonzero(~empty)
        if keep.size == 0:
            continue
        # Eval_Fmeasure on the non-empty frames: pixel counts per (frame, truth, thresholds <= p)
        keys = np.empty((keep.size, hw, 2), dtype=np.uint8)  # little-endian uint16 k + 256 * truth
        keys[..., 0] = _threshold_counts(p[keep])
        keys[..., 1] = g[keep]
        keys = keys.view("<u2")[..., 0]
        hist = np.stack([np.bincount(row, minlength=2 * (PR_NUM + 1)) for row in keys])
        hist = hist.reshape(keep.size, 2, PR_NUM + 1)
        # the pixels predicted at threshold i are those in buckets > i
        pred_i = hist.sum(axis=1)[:, ::-1].cumsum(axis=1)[:, ::-1][:, 1:]  # (n, 255)
        tp_i = hist[:, 1, ::-1].cumsum(axis=1)[:, ::-1][:, 1:]
        n_gt = n_true[keep][:, None].astype(np.float64)
        # (1+b) P R / (b P + R) with P = tp/pred, R = tp/gt is (1+b) tp / (b gt + pred); NaN (tp = 0) -> 0.
        # The published 1e-20 guards vanish next to counts >= 1.
        f = np.where(tp_i > 0, (1 + BETA2) * tp_i / np.maximum(BETA2 * n_gt + pred_i, 1e-300), 0.0)
        np.add.at(f_sum, batch_of_frame[a + keep], f)
        f_count += np.bincount(batch_of_frame[a + keep], minlength=n_batches)
    return frame_iou, f_sum, f_count


def binary_scores(probs, truth, frames_per_video: Sequence[int], group_videos: int = 1) -> dict:
    """S4/MS3 mIoU and F-score in percent, as the published test loop with batch size `group_videos`.

    probs: (F, H, W) probabilities in [0, 1], the model's sigmoid(logits); compared as float32,
        the dtype of the published run (a float64 input is rounded to float32 first), with
        > 0.5 for the IoU and >= each threshold for the F. Feeding sigmoid(logits) here equals
        feeding the logits to the published code, which applies the sigmoid itself.
    truth: (F, H, W) 0/1 (bool, integer or float).
    frames_per_video: frames of each video in order (sum = F); 5 each for S4/MS3 test.
    group_videos: videos per batch (the published `--test_batch_size`, default 1).
    Returns {"miou", "fscore", "group_videos", "videos", "frames", "batches"}.
    """
    p = _check_frames("probs", probs)
    g = _check_frames("truth", truth)
    _check_same_shape("truth", g, "probs", p.shape)
    counts = _check_videos(frames_per_video, p.shape[0], group_videos)
    if not (np.issubdtype(p.dtype, np.floating) or np.issubdtype(p.dtype, np.integer) or p.dtype == bool):
        raise ValueError(f"probs must be a float array of probabilities, got dtype {p.dtype}")
    if not (g.dtype == bool or np.issubdtype(g.dtype, np.integer) or np.issubdtype(g.dtype, np.floating)):
        raise ValueError(f"truth must be a 0/1 array, got dtype {g.dtype}")

    batch_of_frame, n_batches = _frame_batches(counts, group_videos)
    frame_iou, f_sum, f_count = _binary_sums(p, g, batch_of_frame, n_batches)

    # mask_iou: mean over the batch's frames
    frames_in_batch = np.bincount(batch_of_frame, minlength=n_batches)
    batch_miou = np.bincount(batch_of_frame, weights=frame_iou, minlength=n_batches) / frames_in_batch
    # Eval_Fmeasure: max over thresholds of the mean over the batch's non-empty frames; 0.0 without any
    batch_f = np.where(f_count > 0, (f_sum / np.maximum(f_count, 1)[:, None]).max(axis=1), 0.0)

    return {
        "miou": float(100 * batch_miou.mean()),
        "fscore": float(100 * batch_f.mean()),
        "group_videos": int(group_videos),
        "videos": len(counts),
        "frames": int(p.shape[0]),
        "batches": n_batches,
    }


# ---------------------------------------------------------------- AVSS


def color_scores(
    pred_classes,
    truth_classes,
    frames_per_video: Sequence[int],
    group_videos: int = 1,
    num_classes: int = AVSS_CLASSES,
) -> dict:
    """AVSS mIoU and F-score in percent over all `num_classes` classes, as avss/test.py.

    pred_classes: (F, H, W) integer class maps = argmax over classes of the model output. The
        published code takes argmax(softmax(logits)); that is argmax(logits) except where float
        rounding makes softmax values tie, so store argmax(softmax(logits)) for an exact match.
    truth_classes: (F, H, W) integer class maps in [0, num_classes), 0 = background.
    frames_per_video: frames of each video in order. To reproduce the published number pass
        what its loop sees: every video as 10 frames, 5-frame (v1s, v1m) videos padded with 5
        frames of truth 0 and the model's prediction on the zero (mean-colour) padding frame; those frames
        count (the test applies no valid-frame mask). Real frames only gives a different number.
    group_videos: videos per batch (published default 4); no effect on the scores, which are
        per-frame sums, only on "batches".
    Returns {"miou", "fscore", "group_videos", "videos", "frames", "batches"}.
    """
    pred = _check_frames("pred_classes", pred_classes)
    truth = _check_frames("truth_classes", truth_classes)
    _check_same_shape("truth_classes", truth, "pred_classes", pred.shape)
    counts = _check_videos(frames_per_video, pred.shape[0], group_videos)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    for name, a in (("pred_classes", pred), ("truth_classes", truth)):
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must be an integer class map (argmax over classes), got dtype {a.dtype}")
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name} must hold class indices in [0, {num_classes}), found values in [{lo}, {hi}]")

    n_frames = pred.shape[0]
    hw = pred.shape[1] * pred.shape[2]
    n_pairs = num_classes * num_classes
    key_type = np.uint16 if n_pairs <= 1 << 16 else np.int64
    iou_sum = np.zeros(num_classes)
    f_sum = np.zeros(num_classes)
    cls_count = np.zeros(num_classes, dtype=np.int64)
    for a, b in _chunks(n_frames, max(hw, n_pairs)):
        n = b - a
        # one confusion matrix per frame: pixels per (predicted class, true class)
        key = pred[a:b].reshape(n, hw).astype(key_type)
        key *= num_classes
        key += truth[a:b].reshape(n, hw).astype(key_type, copy=False)
        confusion = np.stack([np.bincount(row, minlength=n_pairs) for row in key]).reshape(n, num_classes, num_classes)
        area_pred = confusion.sum(axis=2)  # histc of the prediction (target + 1 > 0 everywhere)
        area_lab = confusion.sum(axis=1)
        area_inter = np.diagonal(confusion, axis1=1, axis2=2)
        area_union = area_pred + area_lab - area_inter
        iou_sum += (area_inter / (COLOR_IOU_EPS + area_union)).sum(axis=0)
        cls_count += np.count_nonzero(area_union, axis=0)
        # (1+b) P R / (b P + R) = (1+b) inter / (b lab + pred); NaN (any 0/0) -> 0, i.e. 0 unless inter > 0
        f = np.where(
            area_inter > 0,
            (1 + BETA2) * area_inter / np.maximum(BETA2 * area_lab + area_pred, 1e-300),
            0.0,
        )
        f_sum += f.sum(axis=0)

    seen = cls_count > 0
    miou_pc = np.where(seen, iou_sum / np.maximum(cls_count, 1), 0.0)
    f_pc = np.where(seen, f_sum / np.maximum(cls_count, 1), 0.0)
    _, n_batches = _frame_batches(counts, group_videos)
    return {
        "miou": float(100 * miou_pc.mean()),  # torch.mean over all classes, never-seen ones as 0
        "fscore": float(100 * f_pc.mean()),
        "group_videos": int(group_videos),
        "videos": len(counts),
        "frames": int(n_frames),
        "batches": n_batches,
    }
