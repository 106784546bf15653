"""Literal, loop-based port of the published AVVP evaluation (AVVP-ECCV20).

This module mirrors the published `utils/eval_metrics.py` (`segment_level`,
`event_level`, `extract_event`, `event_wise_metric`) and the evaluation loop of
the published main script: one video at a time, one class at a time, events as
explicit 0/1 vectors. It is deliberately slow and plain. It exists as the
ground truth that the vectorised `inference.metrics` is tested against, and as
the baseline of `benchmarks/bench_eval.py`. Do not optimise it.

Conventions reproduced on purpose:
- a class is *active* iff `(TP+FP) != 0 or (TP+FN) != 0`; a video's score is the
  mean F over active classes, 1.0 when no class is active (all true negatives);
- event match: `np.sum(x1*x2) >= 0.5 * np.sum(x1 + x2 - x1*x2)` (IoU >= 0.5);
- Event@AV pools counts per class: TP = TP_a + TP_v, FP = FP_a + FP_v, ...;
- per split: 100 * mean over videos; Type@AV = (av + a + v) / 3.
"""
from __future__ import annotations

import numpy as np

NUM_CLASSES = 25
NUM_SEGMENTS = 10


def _f_scores(tp, fp, fn) -> float:
    """Mean F over active classes, 1.0 when none is active (published rule)."""
    scores = []
    for ii in range(len(tp)):
        if (tp + fp)[ii] != 0 or (tp + fn)[ii] != 0:
            scores.append(2 * tp[ii] / (2 * tp[ii] + (fn + fp)[ii]))
    if len(scores) == 0:
        return 1.0  # all true negatives
    return sum(scores) / len(scores)


def segment_level(so_a, so_v, so_av, gt_a, gt_v, gt_av):
    """Segment-level F for one video: returns (f_a, f_v, f_event, f_av)."""
    tp_a = np.sum(so_a * gt_a, axis=1)
    fn_a = np.sum((1 - so_a) * gt_a, axis=1)
    fp_a = np.sum(so_a * (1 - gt_a), axis=1)

    tp_v = np.sum(so_v * gt_v, axis=1)
    fn_v = np.sum((1 - so_v) * gt_v, axis=1)
    fp_v = np.sum(so_v * (1 - gt_v), axis=1)

    tp_av = np.sum(so_av * gt_av, axis=1)
    fn_av = np.sum((1 - so_av) * gt_av, axis=1)
    fp_av = np.sum(so_av * (1 - gt_av), axis=1)

    tp = tp_a + tp_v
    fn = fn_a + fn_v
    fp = fp_a + fp_v

    f_a = _f_scores(tp_a, fp_a, fn_a)
    f_v = _f_scores(tp_v, fp_v, fn_v)
    f = _f_scores(tp, fp, fn)
    f_av = _f_scores(tp_av, fp_av, fn_av)
    return f_a, f_v, f, f_av


def to_vec(start: int, end: int) -> np.ndarray:
    """An event [start, end) as a 0/1 vector over the 10 segments."""
    x = np.zeros(NUM_SEGMENTS)
    for i in range(start, end):
        x[i] = 1
    return x


def extract_event(seq) -> list:
    """Maximal runs of 1s in a 10-segment row, each as a 0/1 vector (scan order)."""
    events = []
    i = 0
    while i < NUM_SEGMENTS:
        if seq[i] == 1:
            start = i
            j = i + 1
            while j < NUM_SEGMENTS and seq[j] == 1:
                j += 1
            events.append(to_vec(start, j))
            i = j + 1  # seq[j] is 0 (or j == 10): skip it, as the published scan does
        else:
            i += 1
    return events


def _overlaps(x1, x2) -> bool:
    return np.sum(x1 * x2) >= 0.5 * np.sum(x1 + x2 - x1 * x2)


def event_wise_metric(event_p, event_gt):
    """(TP, FP, FN) for one class row; `None` stands for a row without events.

    A predicted event is a TP if it overlaps (IoU >= 0.5) some true event, else
    an FP; a true event that overlaps no predicted event is an FN.
    """
    tp = 0
    fp = 0
    fn = 0
    if event_p is not None:
        for x1 in event_p:
            if event_gt is not None:
                matched = False
                for x2 in event_gt:
                    if _overlaps(x1, x2):
                        tp += 1
                        matched = True
                        break
                if not matched:
                    fp += 1
            else:
                fp += 1
    if event_gt is not None:
        for x1 in event_gt:
            if event_p is not None:
                matched = False
                for x2 in event_p:
                    if _overlaps(x1, x2):
                        matched = True
                        break
                if not matched:
                    fn += 1
            else:
                fn += 1
    return tp, fp, fn


def event_level(so_a, so_v, so_av, gt_a, gt_v, gt_av):
    """Event-level F for one video: returns (f_a, f_v, f_event, f_av)."""
    n = NUM_CLASSES
    tp_a, fp_a, fn_a = np.zeros(n), np.zeros(n), np.zeros(n)
    tp_v, fp_v, fn_v = np.zeros(n), np.zeros(n), np.zeros(n)
    tp_av, fp_av, fn_av = np.zeros(n), np.zeros(n), np.zeros(n)

    def events_or_none(seq):
        return extract_event(seq) if np.sum(seq) != 0 else None

    for c in range(n):
        tp, fp, fn = event_wise_metric(events_or_none(so_a[c, :]), events_or_none(gt_a[c, :]))
        tp_a[c] += tp
        fp_a[c] += fp
        fn_a[c] += fn

        tp, fp, fn = event_wise_metric(events_or_none(so_v[c, :]), events_or_none(gt_v[c, :]))
        tp_v[c] += tp
        fp_v[c] += fp
        fn_v[c] += fn

        tp, fp, fn = event_wise_metric(events_or_none(so_av[c, :]), events_or_none(gt_av[c, :]))
        tp_av[c] += tp
        fp_av[c] += fp
        fn_av[c] += fn

    tp = tp_a + tp_v
    fn = fn_a + fn_v
    fp = fp_a + fp_v

    f_a = _f_scores(tp_a, fp_a, fn_a)
    f_v = _f_scores(tp_v, fp_v, fn_v)
    f = _f_scores(tp, fp, fn)
    f_av = _f_scores(tp_av, fp_av, fn_av)
    return f_a, f_v, f, f_av


def evaluate_reference(pred_a, pred_v, gt_a, gt_v) -> dict:
    """The published evaluation loop over videos; inputs are (V, 25, 10) 0/1 arrays.

    Returns the same structure as `inference.metrics.evaluate`.
    """
    f_seg_a, f_seg_v, f_seg, f_seg_av = [], [], [], []
    f_event_a, f_event_v, f_event, f_event_av = [], [], [], []
    for k in range(len(pred_a)):
        # the published script builds truth as float zeros and predictions as ints
        GT_a = np.asarray(gt_a[k], dtype=np.float64)
        GT_v = np.asarray(gt_v[k], dtype=np.float64)
        GT_av = GT_a * GT_v
        SO_a = np.asarray(pred_a[k]).astype(np.int_)
        SO_v = np.asarray(pred_v[k]).astype(np.int_)
        SO_av = SO_a * SO_v

        f_a, f_v, f, f_av = segment_level(SO_a, SO_v, SO_av, GT_a, GT_v, GT_av)
        f_seg_a.append(f_a)
        f_seg_v.append(f_v)
        f_seg.append(f)
        f_seg_av.append(f_av)

        f_a, f_v, f, f_av = event_level(SO_a, SO_v, SO_av, GT_a, GT_v, GT_av)
        f_event_a.append(f_a)
        f_event_v.append(f_v)
        f_event.append(f)
        f_event_av.append(f_av)

    def level(fa, fv, fav, fe):
        a = 100 * np.mean(np.array(fa))
        v = 100 * np.mean(np.array(fv))
        av = 100 * np.mean(np.array(fav))
        return {
            "audio": float(a),
            "visual": float(v),
            "audio_visual": float(av),
            "type": float((av + a + v) / 3.0),
            "event": float(100 * np.mean(np.array(fe))),
        }

    return {
        "segment": level(f_seg_a, f_seg_v, f_seg_av, f_seg),
        "event": level(f_event_a, f_event_v, f_event_av, f_event),
    }
