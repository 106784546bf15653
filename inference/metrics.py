"""AVVP evaluation (segment- and event-level F), vectorised over videos and classes.

Gives the same numbers as the published AVVP evaluation code (ported literally
in `inference.metrics_reference`, which the tests compare against), but computes
all videos and classes at once with numpy, so a full split takes milliseconds
and the app can re-evaluate after every edit.

Layout everywhere: (V, 25, 10) = (videos, classes in canonical order, 1-second
segments), values 0/1, the layout of `annotation.grid` and of the evaluation code.
Protocol: docs section "Evaluation protocol"; in short, per video and modality
the mean F over *active* classes (TP+FP+FN > 0, 1.0 if none), Event@AV pooling
the audio and visual counts per class, events as maximal runs matched at
IoU >= 0.5, and each reported number 100 x the mean over videos.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from annotation.errors import DataFileError
from annotation.llp_csv import DenseTally, dense_grids, iter_dense_csv, read_weak_csv
from annotation.taxonomy import NUM_CLASSES, NUM_SEGMENTS

LEVELS = ("segment", "event")
KEYS = ("audio", "visual", "audio_visual", "type", "event")
COLUMN_TITLES = ("audio", "visual", "audio-visual", "Type@AV", "Event@AV")
SHORT_TITLES = dict(zip(KEYS, ("A", "V", "AV", "Type", "Event")))  # for narrow columns and legends

# ---------------------------------------------------------------- row codes
#
# Each class row of 10 segments is packed into a 10-bit code (bit t = segment t).
# Segment counts are then popcounts of bitwise combinations, and the events of a
# row come from tables indexed by its code: every step works on (V, 25) arrays.

_ALL = (1 << NUM_SEGMENTS) - 1
_CODES = np.arange(1 << NUM_SEGMENTS)
_BITS = ((_CODES[:, None] >> np.arange(NUM_SEGMENTS)) & 1).astype(np.int8)  # (1024, 10)
_POPCOUNT = _BITS.sum(axis=1).astype(np.int32)
_RISING = _CODES & ~(_CODES << 1) & _ALL  # first segment of each run
_N_RUNS = _POPCOUNT[_RISING]  # events per row


def _event_table():
    """Start and end (exclusive) of the k-th run of every code, (1024, 5) each; 0 where none."""
    max_runs = (NUM_SEGMENTS + 1) // 2  # 1010101010
    edges = np.diff(np.pad(_BITS, ((0, 0), (1, 1))), axis=1)  # +1 at a start, -1 at an end
    slot = np.cumsum(edges == 1, axis=1) - 1  # run index of each edge
    start = np.zeros((len(_CODES), max_runs), dtype=np.int8)
    end = np.zeros((len(_CODES), max_runs), dtype=np.int8)
    rows, pos = np.nonzero(edges == 1)
    start[rows, slot[rows, pos]] = pos
    rows, pos = np.nonzero(edges == -1)
    end[rows, slot[rows, pos]] = pos
    return start, end


_RUN_START, _RUN_END = _event_table()


def _check_binary(name: str, arr, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """(V, 25, 10) array of 0/1 -> (V, 25) row codes; clear ValueError otherwise."""
    a = np.asarray(arr)
    if a.ndim != 3 or a.shape[1:] != (NUM_CLASSES, NUM_SEGMENTS):
        raise ValueError(
            f"{name} must have shape (videos, {NUM_CLASSES}, {NUM_SEGMENTS}) = (V, classes, segments), "
            f"got {a.shape}"
        )
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape} but the first array has {shape}: one row per video in each")
    if a.shape[0] == 0:
        raise ValueError(f"{name} holds no video; the scores are a mean over videos")
    if a.dtype != bool:
        if np.issubdtype(a.dtype, np.integer):
            ok = a.min() >= 0 and a.max() <= 1
        elif np.issubdtype(a.dtype, np.floating):
            ok = bool(((a == 0) | (a == 1)).all())
        else:
            raise ValueError(f"{name} must be a 0/1 integer or bool array, got dtype {a.dtype}")
        if not ok:
            raise ValueError(
                f"{name} must contain only 0 and 1; binarize probabilities first (inference.metrics.binarize)"
            )
        if a.dtype.itemsize != 1:
            a = a != 0
    wide = np.zeros(a.shape[:-1] + (16,), dtype=np.uint8)  # pad each row to 16 bits
    wide[..., :NUM_SEGMENTS] = a
    return np.packbits(wide.reshape(-1), bitorder="little").view("<u2").reshape(a.shape[:-1])


# ---------------------------------------------------------------- counting

def _f_mean(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Per-video mean F over active classes, 1.0 where none is active. Counts (V, 25)."""
    denom = 2 * tp + fp + fn
    active = denom != 0  # counts are >= 0: same as (TP+FP) != 0 or (TP+FN) != 0
    f = np.divide(2 * tp, denom, out=np.zeros(denom.shape), where=active)
    n_active = np.count_nonzero(active, axis=-1)
    return np.where(n_active > 0, f.sum(axis=-1) / np.maximum(n_active, 1), 1.0)


def _segment_counts(pred: np.ndarray, gt: np.ndarray):
    """TP, FP, FN per (video, class), counted over segments, from row codes."""
    return _POPCOUNT[pred & gt], _POPCOUNT[pred & ~gt & _ALL], _POPCOUNT[~pred & gt & _ALL]


def _event_counts(pred: np.ndarray, gt: np.ndarray):
    """TP, FP, FN of events per (video, class), from row codes.

    Predicted events of a class without true events are all FP (and conversely
    FN), so only rows where both have events need pairing; those are paired all
    at once, every predicted slot against every true slot. A pair matches iff
    inter >= 0.5 * union (the published test), i.e. 2 * inter >= union.
    """
    n_pred = _N_RUNS[pred]
    n_gt = _N_RUNS[gt]
    tp = np.zeros(pred.shape, dtype=np.int32)
    gt_matched = np.zeros(pred.shape, dtype=np.int32)
    both = (pred != 0) & (gt != 0)
    if both.any():
        bp, bg = pred[both], gt[both]
        kp, kg = int(n_pred[both].max()), int(n_gt[both].max())
        ps, pe = _RUN_START[bp, :kp, None], _RUN_END[bp, :kp, None]  # (rows, kp, 1)
        gs, ge = _RUN_START[bg, None, :kg], _RUN_END[bg, None, :kg]  # (rows, 1, kg)
        inter = np.maximum(np.minimum(pe, ge) - np.maximum(ps, gs), 0)
        union = (pe - ps) + (ge - gs) - inter
        valid = (np.arange(kp) < n_pred[both][:, None])[:, :, None] & (np.arange(kg) < n_gt[both][:, None])[:, None, :]
        match = (2 * inter >= union) & valid
        tp[both] = np.count_nonzero(match.any(axis=2), axis=1)
        gt_matched[both] = np.count_nonzero(match.any(axis=1), axis=1)
    return tp, n_pred - tp, n_gt - gt_matched


def _per_video(pred_a, pred_v, gt_a, gt_v, counts) -> dict[str, np.ndarray]:
    tp_a, fp_a, fn_a = counts(pred_a, gt_a)
    tp_v, fp_v, fn_v = counts(pred_v, gt_v)
    tp_av, fp_av, fn_av = counts(pred_a & pred_v, gt_a & gt_v)  # audio-visual = a AND v
    a = _f_mean(tp_a, fp_a, fn_a)
    v = _f_mean(tp_v, fp_v, fn_v)
    av = _f_mean(tp_av, fp_av, fn_av)
    return {
        "audio": a,
        "visual": v,
        "audio_visual": av,
        "type": (av + a + v) / 3.0,
        "event": _f_mean(tp_a + tp_v, fp_a + fp_v, fn_a + fn_v),  # Event@AV pools the counts
    }


# ---------------------------------------------------------------- public API

def per_video_scores(pred_audio, pred_visual, gt_audio, gt_visual) -> dict[str, dict[str, np.ndarray]]:
    """Per-video F in [0, 1]: {"segment"|"event": {key: (V,) float64}}.

    For ranking videos (e.g. where a model and the truth disagree most); the
    split scores of `evaluate` are 100 x the mean of these (Type@AV excepted,
    which there is computed from the three means, equal up to rounding).
    """
    shape = np.shape(pred_audio)
    pa = _check_binary("pred_audio", pred_audio)
    pv = _check_binary("pred_visual", pred_visual, shape)
    ga = _check_binary("gt_audio", gt_audio, shape)
    gv = _check_binary("gt_visual", gt_visual, shape)
    return {
        "segment": _per_video(pa, pv, ga, gv, _segment_counts),
        "event": _per_video(pa, pv, ga, gv, _event_counts),
    }


def evaluate(pred_audio, pred_visual, gt_audio, gt_visual) -> dict[str, dict[str, float]]:
    """The ten AVVP numbers, in percent, for (V, 25, 10) 0/1 predictions and truth.

    Audio-visual = audio AND visual for both predictions and truth. Returns
    {"segment": {"audio", "visual", "audio_visual", "type", "event"}, "event": {...}}.
    """
    per_video = per_video_scores(pred_audio, pred_visual, gt_audio, gt_visual)
    scores = {}
    for level in LEVELS:
        pv = per_video[level]
        a = 100 * np.mean(pv["audio"])
        v = 100 * np.mean(pv["visual"])
        av = 100 * np.mean(pv["audio_visual"])
        scores[level] = {
            "audio": float(a),
            "visual": float(v),
            "audio_visual": float(av),
            "type": float((av + a + v) / 3.0),  # order of the published script
            "event": float(100 * np.mean(pv["event"])),
        }
    return scores


def binarize(segment_prob_audio, segment_prob_visual, global_prob, threshold: float = 0.5):
    """Model outputs -> 0/1 predictions (pred_audio, pred_visual), each (V, 25, 10) uint8.

    The published rule: a segment is positive iff its segment probability >= threshold
    AND the class's video-level (global) probability >= threshold, which removes
    classes the model does not predict for the video at all.
    Shapes: segment probabilities (V, 25, 10) = (videos, classes, segments); note
    models often emit (V, 10, 25), transpose those first. Global probability (V, 25).
    """
    sa = np.asarray(segment_prob_audio)
    sv = np.asarray(segment_prob_visual)
    g = np.asarray(global_prob)
    for name, arr in (("segment_prob_audio", sa), ("segment_prob_visual", sv)):
        if arr.ndim != 3 or arr.shape[1:] != (NUM_CLASSES, NUM_SEGMENTS):
            hint = " (transpose (V, 10, 25) to (V, 25, 10))" if arr.shape[1:] == (NUM_SEGMENTS, NUM_CLASSES) else ""
            raise ValueError(
                f"{name} must have shape (V, {NUM_CLASSES}, {NUM_SEGMENTS}) = (videos, classes, segments), "
                f"got {arr.shape}{hint}"
            )
    if sv.shape != sa.shape:
        raise ValueError(f"segment_prob_visual has shape {sv.shape}, segment_prob_audio {sa.shape}; they must match")
    if g.shape != sa.shape[:2]:
        raise ValueError(f"global_prob must have shape (V, {NUM_CLASSES}) = {sa.shape[:2]}, got {g.shape}")
    keep = (g >= threshold)[..., None]
    return ((sa >= threshold) & keep).astype(np.uint8), ((sv >= threshold) & keep).astype(np.uint8)


def evaluate_probabilities(seg_prob_a, seg_prob_v, global_prob, gt_a, gt_v, threshold: float = 0.5):
    """`binarize` then `evaluate`: the numbers a model's probabilities score."""
    pred_a, pred_v = binarize(seg_prob_a, seg_prob_v, global_prob, threshold)
    return evaluate(pred_a, pred_v, gt_a, gt_v)


def per_class_f1(pred_audio, pred_visual, gt_audio, gt_visual) -> dict[str, list[float | None]]:
    """Segment-level F1 (percent) of each class and track, pooled over every (clip, segment) cell of
    the split: which events a model gets and which it misses (None: the class is neither in the
    truth nor predicted). Not one of the ten published numbers; for comparing runs per class."""
    out = {}
    for track, pred, gt in (("audio", pred_audio, gt_audio), ("visual", pred_visual, gt_visual)):
        p, g = np.asarray(pred, bool), np.asarray(gt, bool)
        tp = (p & g).sum(axis=(0, 2))
        fp = (p & ~g).sum(axis=(0, 2))
        fn = (~p & g).sum(axis=(0, 2))
        denominator = 2 * tp + fp + fn
        out[track] = [None if d == 0 else round(float(200 * t / d), 2) for t, d in zip(tp, denominator)]
    return out


def _grids_for(path, filenames: list[str], tally: DenseTally | None = None) -> np.ndarray:
    """Grids in video order; a repeated video gets its rows each time, as in the published loop."""
    unique = list(dict.fromkeys(filenames))
    grids = dense_grids(iter_dense_csv(Path(path)), unique, tally)
    if len(unique) == len(filenames):
        return grids
    position = {name: i for i, name in enumerate(unique)}
    return grids[[position[name] for name in filenames]]


def evaluate_csv(gt_audio_csv, gt_visual_csv, pred_audio_csv, pred_visual_csv, videos_csv,
                 tallies: dict[str, DenseTally] | None = None) -> dict:
    """Evaluate dense prediction CSVs against dense truth CSVs on the videos of a weak CSV.

    The weak CSV (e.g. AVVP_test_pd.csv) defines the videos and their order; dense
    rows are matched by the full filename string and rows of other filenames are
    ignored, exactly like the published script. A video without rows is all zeros.
    Files are streamed (memory holds the grids). `tallies`, if given, receives what each
    prediction file held besides the grids ("audio", "visual"), for the caller's notes.
    Raises `DataFileError` for unreadable or malformed files.
    """
    filenames = [row.filename for row in read_weak_csv(Path(videos_csv))]
    if not filenames:
        raise DataFileError(videos_csv, "no video rows; expected at least one filename")
    tallies = {} if tallies is None else tallies
    tallies.update(audio=DenseTally(other_names=set()), visual=DenseTally(other_names=set()))
    return evaluate(
        _grids_for(pred_audio_csv, filenames, tallies["audio"]),
        _grids_for(pred_visual_csv, filenames, tallies["visual"]),
        _grids_for(gt_audio_csv, filenames),
        _grids_for(gt_visual_csv, filenames),
    )


def format_table(scores: dict) -> str:
    """The ten numbers as an aligned text table (2 decimals), as papers report them."""
    corner = "F1 (%)"
    label_width = max(len(corner), *(len(level) for level in LEVELS))
    widths = [max(len(t), 6) for t in COLUMN_TITLES]
    lines = [corner.ljust(label_width) + "  " + "  ".join(t.rjust(w) for t, w in zip(COLUMN_TITLES, widths))]
    for level in LEVELS:
        cells = [f"{scores[level][k]:.2f}".rjust(w) for k, w in zip(KEYS, widths)]
        lines.append(level.ljust(label_width) + "  " + "  ".join(cells))
    return "\n".join(lines)
