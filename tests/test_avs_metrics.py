"""AVSBench metrics: vectorised (inference.avs_metrics) vs the literal port of the published code
(inference.avs_metrics_reference) vs small cases worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inference import avs_metrics as avs
from inference import avs_metrics_reference as ref
from inference.avs_metrics import THRESHOLDS, binary_scores, color_scores

INF = float("inf")
REL = 1e-6  # the port computes in float32, the vectorised code in float64


# ---------------------------------------------------------------- helpers


def port_binary(logits, truth, frames_per_video, group=1) -> tuple[float, float]:
    """(mIoU, F) in percent from the literal port of test.py, fed logits as the model gives them."""
    logits = torch.as_tensor(logits, dtype=torch.float32)
    masks = torch.as_tensor(np.asarray(truth), dtype=torch.float32)
    miou, f = ref.test_binary(ref.iter_batches(logits, masks, frames_per_video, group))
    return 100 * miou, 100 * f


def vec_binary(logits, truth, frames_per_video, group=1) -> dict:
    """The vectorised scores from what a prediction file stores: the float32 sigmoid of the logits."""
    probs = torch.sigmoid(torch.as_tensor(logits, dtype=torch.float32)).numpy()
    return binary_scores(probs, truth, frames_per_video, group)


def assert_binary_agree(logits, truth, frames_per_video, group=1) -> dict:
    vec = vec_binary(logits, truth, frames_per_video, group)
    miou, f = port_binary(logits, truth, frames_per_video, group)
    assert vec["miou"] == pytest.approx(miou, rel=REL, abs=1e-9)
    assert vec["fscore"] == pytest.approx(f, rel=REL, abs=1e-9)
    return vec


def port_color(pred, truth, frames_per_video, group=1, n_classes=71) -> tuple[float, float]:
    batches = ref.iter_batches(torch.as_tensor(pred), torch.as_tensor(truth), frames_per_video, group,
                               lambda x: ref.one_hot_logits(x, n_classes))
    miou, f = ref.test_color(batches, n_classes)
    return 100 * miou, 100 * f


def assert_color_agree(pred, truth, frames_per_video, group=1, n_classes=71) -> dict:
    vec = color_scores(pred, truth, frames_per_video, group, n_classes)
    miou, f = port_color(pred, truth, frames_per_video, group, n_classes)
    assert vec["miou"] == pytest.approx(miou, rel=REL, abs=1e-9)
    assert vec["fscore"] == pytest.approx(f, rel=REL, abs=1e-9)
    return vec


def random_binary(rng, frames_per_video, h, w, empty_share=0.2, scale=3.0):
    n = sum(frames_per_video)
    logits = (rng.normal(0, scale, (n, h, w)) + rng.normal(0, 1, (n, 1, 1))).astype(np.float32)
    truth = (rng.random((n, h, w)) < rng.uniform(0.05, 0.6, (n, 1, 1))).astype(np.uint8)
    truth[rng.random(n) < empty_share] = 0
    return logits, truth


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of a few frames, so chunk borders fall inside videos and batches."""
    monkeypatch.setattr(avs, "_CHUNK_PIXELS", 600)


# ---------------------------------------------------------------- thresholds


def test_thresholds_are_torch_linspace_bit_for_bit():
    t = torch.linspace(0, 1 - 1e-10, 255)
    assert THRESHOLDS.dtype == np.float32
    assert np.array_equal(THRESHOLDS.view(np.uint32), t.numpy().view(np.uint32))
    assert THRESHOLDS[0] == 0 and THRESHOLDS[127] == 0.5 and THRESHOLDS[-1] == 1.0  # 1 - 1e-10 is 1.0 in float32


def test_threshold_counts_exact_next_to_every_threshold():
    # every float32 within 40 ulps of each threshold, 0, 1, and a dense grid: k = #(thresholds <= p)
    bits = THRESHOLDS.view(np.int32)[:, None] + np.arange(-40, 41, dtype=np.int32)
    near = bits.ravel().view(np.float32)
    grid = np.linspace(0, 1, 200_001, dtype=np.float32)
    p = np.concatenate([near, grid, np.float32([0, 1, np.nextafter(np.float32(1), np.float32(0))])])
    p = p[(p >= 0) & (p <= 1)]
    k = avs._threshold_counts(p[None])[0]
    assert np.array_equal(k, np.searchsorted(THRESHOLDS, p, side="right"))


# ---------------------------------------------------------------- hand-computed, S4/MS3
#
# Two 2x2 frames, beta^2 = 0.3, F = (1+b) P R / (b P + R) = (1+b) tp / (b |gt| + |pred|).
# Probabilities come from logits +inf, 0, -inf: exactly 1.0, 0.5, 0.0.
#
# Frame A  truth [[1, 1],    probs [[1.0, 0.5],
#                 [0, 0]]           [0.5, 0.0]]
#   IoU (prob > 0.5 -> only the 1.0 pixel): inter 1, union 2 -> 1/2
#   threshold t = 0        : pred 4 px, tp 2: F = 1.3*2 / (0.3*2 + 4) = 2.6/4.6 = 13/23
#   0 < t <= 0.5 (t_1..t_127, t_127 = 0.5 exactly): pred 3 px, tp 2: F = 2.6/3.6 = 13/18
#   0.5 < t <= 1 (t_128..t_254): pred 1 px, tp 1: F = 1.3 / (0.6 + 1) = 13/16
# Frame B  truth [[0, 0],    probs [[0.5, 0.0],
#                 [0, 1]]           [0.0, 0.5]]
#   IoU: 0.5 is not > 0.5, pred empty: inter 0, union 1 -> 0
#   t = 0: pred 4, tp 1: F = 1.3 / (0.3 + 4) = 13/43
#   0 < t <= 0.5: pred 2, tp 1: F = 1.3 / 2.3 = 13/23
#   t > 0.5: pred 0, tp 0: 0/0 -> 0
# One video [A, B] (one batch): mean per threshold (13/23 + 13/43)/2, (13/18 + 13/23)/2, (13/16)/2;
#   the max is the middle one: F = (13/18 + 13/23) / 2 = 533/828; mIoU = (1/2 + 0) / 2 = 1/4.
# Two videos [A], [B] (two batches): F = (13/16 + 13/23) / 2 (mean of the per-batch maxima).

A_LOGITS = [[INF, 0.0], [0.0, -INF]]
A_TRUTH = [[1, 1], [0, 0]]
B_LOGITS = [[0.0, -INF], [-INF, 0.0]]
B_TRUTH = [[0, 0], [0, 1]]
E_LOGITS = [[-INF, -INF], [INF, -INF]]  # empty truth, one predicted pixel
E_TRUTH = [[0, 0], [0, 0]]


def _frames(*frames):
    return np.array(frames, dtype=np.float32)


@pytest.mark.parametrize("implementation", ["port", "vectorised"])
def test_hand_example_one_video(implementation):
    logits, truth = _frames(A_LOGITS, B_LOGITS), _frames(A_TRUTH, B_TRUTH)
    if implementation == "port":
        miou, f = port_binary(logits, truth, [2])
    else:
        scores = vec_binary(logits, truth, [2])
        miou, f = scores["miou"], scores["fscore"]
    assert miou == pytest.approx(100 * (1 / (2 + 1e-7) + 0) / 2, rel=1e-7)
    assert f == pytest.approx(100 * 533 / 828, rel=1e-6)


@pytest.mark.parametrize("implementation", ["port", "vectorised"])
def test_hand_example_batching_changes_f(implementation):
    logits, truth = _frames(A_LOGITS, B_LOGITS), _frames(A_TRUTH, B_TRUTH)
    expected = {1: (13 / 16 + 13 / 23) / 2, 2: 533 / 828}  # videos per batch -> F
    for group, value in expected.items():
        if implementation == "port":
            _, f = port_binary(logits, truth, [1, 1], group)
        else:
            f = vec_binary(logits, truth, [1, 1], group)["fscore"]
        assert f == pytest.approx(100 * value, rel=1e-6)


@pytest.mark.parametrize("implementation", ["port", "vectorised"])
def test_hand_example_batch_without_object_scores_zero_f(implementation):
    # Frame E: empty truth, one pixel predicted: IoU = 3 background-in-both pixels / (H*W = 4).
    # Its batch has no frame with an object: Eval_Fmeasure returns max(zeros(255)) = 0.
    logits, truth = _frames(A_LOGITS, E_LOGITS), _frames(A_TRUTH, E_TRUTH)
    if implementation == "port":
        miou, f = port_binary(logits, truth, [1, 1])
    else:
        scores = vec_binary(logits, truth, [1, 1])
        miou, f = scores["miou"], scores["fscore"]
    assert miou == pytest.approx(100 * (1 / (2 + 1e-7) + 3 / (4 + 1e-7)) / 2, rel=1e-7)
    assert f == pytest.approx(100 * (13 / 16 + 0) / 2, rel=1e-6)


# ---------------------------------------------------------------- hand-computed, AVSS
#
# 4 classes, 2x2.  Frame 1 truth [[0, 1], [1, 2]], prediction [[0, 1], [2, 2]]:
#   class 0: pred 1, true 1, inter 1 -> IoU 1,   F 1
#   class 1: pred 1, true 2, inter 1 -> IoU 1/2, P 1,   R 1/2: F = 1.3*0.5 / (0.3 + 0.5)  = 13/16
#   class 2: pred 2, true 1, inter 1 -> IoU 1/2, P 1/2, R 1:   F = 1.3*0.5 / (0.15 + 1)  = 13/23
#   class 3: absent.
# Frame 2 (a zero-padded frame: truth 0, prediction 0): class 0 IoU 1, F 1; other classes absent.
# Per class: sum / frames where predicted or true: c0 (1+1)/2, c1 (1/2)/1, c2 (1/2)/1, c3 0 (never: 0/0 -> 0).
# mIoU = (1 + 1/2 + 1/2 + 0) / 4 = 1/2;  F = (1 + 13/16 + 13/23 + 0) / 4.

COLOR_PRED = np.array([[[0, 1], [2, 2]], [[0, 0], [0, 0]]])
COLOR_TRUTH = np.array([[[0, 1], [1, 2]], [[0, 0], [0, 0]]])


@pytest.mark.parametrize("implementation", ["port", "vectorised"])
def test_hand_example_color(implementation):
    if implementation == "port":
        miou, f = port_color(COLOR_PRED, COLOR_TRUTH, [2], 1, n_classes=4)
    else:
        scores = color_scores(COLOR_PRED, COLOR_TRUTH, [2], 1, num_classes=4)
        miou, f = scores["miou"], scores["fscore"]
        assert scores == {**scores, "videos": 1, "frames": 2, "batches": 1, "group_videos": 1}
    assert miou == pytest.approx(50.0, rel=1e-6)
    assert f == pytest.approx(100 * (1 + 13 / 16 + 13 / 23) / 4, rel=1e-6)


def test_color_padded_frames_count():
    # The padded frame is scored like any other: one padding pixel predicted as class 3 drops
    # class 0 on that frame to IoU 3/4 and brings class 3 in with IoU 0 over 1 frame:
    # mIoU = ((1 + 3/4)/2 + 1/2 + 1/2 + 0) / 4 = 15/32.
    pred = COLOR_PRED.copy()
    pred[1, 0, 0] = 3
    scores = color_scores(pred, COLOR_TRUTH, [2], num_classes=4)
    assert scores["miou"] == pytest.approx(100 * 15 / 32, rel=1e-6)
    assert scores["miou"] == pytest.approx(port_color(pred, COLOR_TRUTH, [2], 1, 4)[0], rel=REL)


# ---------------------------------------------------------------- S4/MS3 edge cases, vectorised == port


def _edge_cases():
    rng = np.random.default_rng(7)
    shape = (4, 5, 6)
    logits, truth = random_binary(rng, [2, 2], 5, 6, empty_share=0.0)
    cases = {
        "all-empty truth": (logits, np.zeros(shape, np.uint8), [2, 2]),
        "all-empty prediction": (np.full(shape, -INF, np.float32), truth, [2, 2]),
        "empty prediction and truth": (np.full(shape, -INF, np.float32), np.zeros(shape, np.uint8), [2, 2]),
        "full masks": (np.full(shape, INF, np.float32), np.ones(shape, np.uint8), [2, 2]),
        "full prediction, empty truth": (np.full(shape, INF, np.float32), np.zeros(shape, np.uint8), [1, 3]),
        "saturated logits": (logits * 20, truth, [2, 2]),
        "probabilities exactly 0.5": (np.zeros(shape, np.float32), truth, [2, 2]),
        "mixed 0.5": (np.where(rng.random(shape) < 0.5, 0.0, logits).astype(np.float32), truth, [3, 1]),
        "single pixel, on": (np.full((3, 1, 1), INF, np.float32), np.ones((3, 1, 1), np.uint8), [1, 1, 1]),
        "single pixel, mixed": (np.float32([[[2.0]], [[-1.0]], [[0.0]]]), np.uint8([[[1]], [[1]], [[0]]]), [2, 1]),
        "not square": (*random_binary(rng, [3, 2], 3, 11), [3, 2]),
    }
    no_object = truth.copy()
    no_object[2:] = 0  # second video: no frame with an object
    cases["a batch without any object"] = (logits, no_object, [2, 2])
    return cases


EDGE_CASES = _edge_cases()


@pytest.mark.parametrize("name", list(EDGE_CASES))
@pytest.mark.parametrize("group", [1, 2])
def test_binary_edge_cases_match_port(name, group):
    logits, truth, per_video = EDGE_CASES[name]
    scores = assert_binary_agree(logits, truth, per_video, group)
    assert scores["frames"] == len(truth) and scores["videos"] == len(per_video)
    assert scores["batches"] == -(-len(per_video) // group)


def test_binary_edge_values():
    shape = (2, 3, 4)
    ones, zeros = np.ones(shape, np.uint8), np.zeros(shape, np.uint8)
    # perfect prediction: IoU 1 (up to eps), F 1
    perfect = binary_scores(ones.astype(np.float32), ones, [2])
    assert perfect["miou"] == pytest.approx(100.0) and perfect["fscore"] == pytest.approx(100.0)
    # empty truth, empty prediction: IoU = H*W / (H*W + 1e-7), no F frame -> 0
    blank = binary_scores(np.zeros(shape, np.float32), zeros, [1, 1])
    assert blank["miou"] == pytest.approx(100.0) and blank["fscore"] == 0.0
    # empty truth, full prediction: no pixel background in both -> IoU 0
    assert binary_scores(np.ones(shape, np.float32), zeros, [2])["miou"] == 0.0
    # 0.5 exactly is background for the IoU (> 0.5) but foreground at thresholds <= 0.5 (>=)
    half = binary_scores(np.full(shape, 0.5, np.float32), ones, [2])
    assert half["miou"] == 0.0 and half["fscore"] == pytest.approx(100.0)


@pytest.mark.parametrize("seed", range(4))
def test_binary_random_match_port(seed, small_chunks):
    rng = np.random.default_rng(seed)
    per_video = list(rng.integers(1, 6, size=7))
    logits, truth = random_binary(rng, per_video, int(rng.integers(2, 9)), int(rng.integers(2, 9)))
    for group in (1, 2, 3, 7, 10):
        assert_binary_agree(logits, truth, per_video, group)


def test_binary_chunking_is_exact(monkeypatch):
    rng = np.random.default_rng(11)
    logits, truth = random_binary(rng, [5] * 6, 16, 20)
    probs = torch.sigmoid(torch.from_numpy(logits)).numpy()
    whole = binary_scores(probs, truth, [5] * 6, 2)
    for cells in (1, 320, 700, 2000):  # one frame per chunk, exactly one frame, borders inside videos
        monkeypatch.setattr(avs, "_CHUNK_PIXELS", cells)
        assert binary_scores(probs, truth, [5] * 6, 2) == whole


def test_binary_inputs_any_dtype():
    rng = np.random.default_rng(3)
    logits, truth = random_binary(rng, [2, 2], 4, 4)
    probs = torch.sigmoid(torch.from_numpy(logits))
    base = binary_scores(probs.numpy(), truth, [2, 2])
    assert binary_scores(probs, torch.from_numpy(truth), (2, 2)) == base  # torch tensors
    assert binary_scores(probs.numpy(), truth.astype(bool), np.array([2, 2])) == base
    assert binary_scores(probs.numpy(), truth.astype(np.float64), [2, 2]) == base
    # float64 probabilities are compared as float32, like the published run: 0.5 + 1e-12 is 0.5
    p64 = probs.numpy().astype(np.float64)
    p64[p64 == 0.5] += 1e-12
    assert binary_scores(p64, truth, [2, 2]) == binary_scores(p64.astype(np.float32), truth, [2, 2])


# ---------------------------------------------------------------- AVSS, vectorised == port


def _color_cases():
    rng = np.random.default_rng(5)
    c = 6
    pred = rng.integers(0, c, (6, 4, 5))
    truth = np.where(rng.random((6, 4, 5)) < 0.6, pred, rng.integers(0, c, (6, 4, 5)))
    padded_truth, padded_pred = truth.copy(), pred.copy()
    padded_truth[3:], padded_pred[3:] = 0, 0
    return {
        "random": (pred, truth, [3, 3], c),
        "all background": (np.zeros((4, 3, 3), int), np.zeros((4, 3, 3), int), [2, 2], c),
        "prediction all background": (np.zeros_like(truth), truth, [3, 3], c),
        "truth all background": (pred, np.zeros_like(pred), [3, 3], c),
        "padded frames": (padded_pred, padded_truth, [6], c),
        "single pixel": (np.array([[[1]], [[2]]]), np.array([[[1]], [[0]]]), [1, 1], 3),
        "not square": (rng.integers(0, 4, (3, 2, 9)), rng.integers(0, 4, (3, 2, 9)), [1, 2], 4),
        "71 classes, most absent": (rng.integers(0, 5, (4, 6, 6)), rng.integers(0, 5, (4, 6, 6)), [2, 2], 71),
        "last class only": (np.full((2, 2, 2), 70), np.full((2, 2, 2), 70), [2], 71),
    }


COLOR_CASES = _color_cases()


@pytest.mark.parametrize("name", list(COLOR_CASES))
def test_color_cases_match_port(name):
    pred, truth, per_video, n_classes = COLOR_CASES[name]
    for group in (1, 2, 4):
        scores = assert_color_agree(pred, truth, per_video, group, n_classes)
        assert scores["batches"] == -(-len(per_video) // group)


def test_color_random_grouping_and_chunks(small_chunks):
    rng = np.random.default_rng(9)
    per_video = [10, 10, 10, 5]
    n = sum(per_video)
    truth = rng.integers(0, 71, (n, 7, 6)).astype(np.uint8)
    pred = np.where(rng.random((n, 7, 6)) < 0.5, truth, rng.integers(0, 71, (n, 7, 6))).astype(np.uint8)
    values = {assert_color_agree(pred, truth, per_video, g)["miou"] for g in (1, 4)}
    assert len(values) == 1  # the AVSS numbers do not depend on batching


def test_color_perfect_and_absent_classes():
    truth = np.array([[[0, 1], [1, 2]]])
    scores = color_scores(truth, truth, [1], num_classes=4)
    assert scores["miou"] == pytest.approx(75.0) and scores["fscore"] == pytest.approx(75.0)  # class 3: 0


# ---------------------------------------------------------------- invalid input


@pytest.mark.parametrize(
    "probs, truth, per_video, group, message",
    [
        (np.zeros((2, 3, 3)), np.zeros((2, 3, 4)), [2], 1, "shape"),
        (np.zeros((2, 3, 3)), np.zeros((3, 3, 3)), [2], 1, "shape"),
        (np.zeros((3, 3)), np.zeros((3, 3)), [3], 1, r"\(frames, H, W\)"),
        (np.zeros((0, 3, 3)), np.zeros((0, 3, 3)), [1], 1, "empty dimension"),
        (np.full((2, 3, 3), 1.5), np.zeros((2, 3, 3)), [2], 1, r"\[0, 1\]"),
        (np.full((2, 3, 3), -0.1), np.zeros((2, 3, 3)), [2], 1, "sigmoid"),
        (np.full((2, 3, 3), np.nan), np.zeros((2, 3, 3)), [2], 1, "probabilities"),
        (np.zeros((2, 3, 3)), np.full((2, 3, 3), 2), [2], 1, "only 0 and 1"),
        (np.zeros((2, 3, 3)), np.full((2, 3, 3), 0.5), [2], 1, "only 0 and 1"),
        (np.zeros((4, 3, 3)), np.zeros((4, 3, 3)), [2, 3], 1, "sums to 5 frames but the arrays hold 4"),
        (np.zeros((4, 3, 3)), np.zeros((4, 3, 3)), [4, 0], 1, ">= 1"),
        (np.zeros((4, 3, 3)), np.zeros((4, 3, 3)), [], 1, "non-empty"),
        (np.zeros((4, 3, 3)), np.zeros((4, 3, 3)), [2.5, 1.5], 1, "whole numbers"),
        (np.zeros((4, 3, 3)), np.zeros((4, 3, 3)), [4], 0, "group_videos"),
        (np.zeros((4, 3, 3)), np.zeros((4, 3, 3)), [4], 1.0, "group_videos"),
    ],
)
def test_binary_invalid_input(probs, truth, per_video, group, message):
    with pytest.raises(ValueError, match=message):
        binary_scores(probs, truth, per_video, group)


@pytest.mark.parametrize(
    "pred, truth, per_video, kwargs, message",
    [
        (np.zeros((2, 3, 3), int), np.zeros((2, 4, 3), int), [2], {}, "shape"),
        (np.full((2, 3, 3), 71), np.zeros((2, 3, 3), int), [2], {}, r"\[0, 71\)"),
        (np.zeros((2, 3, 3), int), np.full((2, 3, 3), -1), [2], {}, "class indices"),
        (np.zeros((2, 3, 3), int), np.full((2, 3, 3), 4), [2], {"num_classes": 4}, r"\[0, 4\)"),
        (np.zeros((2, 3, 3)), np.zeros((2, 3, 3), int), [2], {}, "integer class map"),
        (np.zeros((2, 3, 3), int), np.zeros((2, 3, 3), int), [1], {}, "sums to 1 frames but the arrays hold 2"),
        (np.zeros((2, 3, 3), int), np.zeros((2, 3, 3), int), [2], {"num_classes": 0}, "num_classes"),
    ],
)
def test_color_invalid_input(pred, truth, per_video, kwargs, message):
    with pytest.raises(ValueError, match=message):
        color_scores(pred, truth, per_video, **kwargs)
