"""Benchmark: vectorised AVSBench metrics vs the literal port of the published test code.

Run `python benchmarks/bench_avs_metrics.py [--scale S] [--avss-scale A] [--json OUT]`.
Synthetic splits of the published test layout at 224x224 (no AVSBench data needed):
  S4    740 videos x 5 frames (the S4 test split), batch size 1 (published default);
  MS3   64 videos x 5 frames (the MS3 test split), batch size 1;
  AVSS  1,554 videos x 10 frames (every video as the loop sees it, 5-frame ones padded; the
        video count is an assumed test-split size), batch size 4 (published default), 71 classes.
Masks are one or two ellipses per frame (about 2 % of S4/MS3 frames empty); S4/MS3 logits are
smooth noise plus a shifted copy of the truth, some saturated (sigmoid = 1.0 exactly); AVSS
predictions are the truth with shifted shapes and some wrong classes.
The vectorised functions run on the whole split. The literal port is slow (S4: ~25 ms a frame,
AVSS: ~55 ms a frame on one core of the project's VM), so it runs on the first `--scale` (S4, MS3) or
`--avss-scale` (AVSS) of the videos, as does a second vectorised run on that same subset: the
speed-up and the equality check use that subset; the port's full-split time is extrapolated.
Equal = relative difference <= 1e-5 (the port accumulates in float32, the vectorised in
float64). Figures: bench-results/avs_metrics.json.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import save  # noqa: E402  (common puts the repository on sys.path)

from inference import avs_metrics_reference as ref  # noqa: E402
from inference.avs_metrics import AVSS_CLASSES, binary_scores, color_scores  # noqa: E402

SIZE = 224
SPLITS = {"s4": (740, 5, 1), "ms3": (64, 5, 1)}  # videos, frames per video, published batch size
AVSS_VIDEOS, AVSS_FRAMES, AVSS_BATCH = 1554, 10, 4
REL_TOL = 1e-5


def _ellipses(gen: torch.Generator, n: int, k: int) -> torch.Tensor:
    """(n, 224, 224) bool: union of k random ellipses per frame."""
    yy, xx = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32),
                            indexing="ij")
    out = torch.zeros(n, SIZE, SIZE, dtype=torch.bool)
    for _ in range(k):
        centre = (torch.rand(2, n, 1, 1, generator=gen) * 0.6 + 0.2) * SIZE
        radius = (torch.rand(2, n, 1, 1, generator=gen) * 0.25 + 0.05) * SIZE
        out |= ((yy - centre[0]) / radius[0]) ** 2 + ((xx - centre[1]) / radius[1]) ** 2 <= 1
    return out


def make_binary(videos: int, frames: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """(logits float32 (F, H, W), truth uint8 (F, H, W)), built in blocks of 100 videos."""
    gen = torch.Generator().manual_seed(seed)
    logits, truth = [], []
    for start in range(0, videos, 100):
        n = min(100, videos - start) * frames
        gt = _ellipses(gen, n, 1) | (_ellipses(gen, n, 1) & (torch.rand(n, 1, 1, generator=gen) < 0.3))
        gt &= torch.rand(n, 1, 1, generator=gen) >= 0.02  # a few frames without object
        noise = torch.nn.functional.interpolate(torch.randn(n, 1, 28, 28, generator=gen) * 2.5, size=(SIZE, SIZE),
                                                mode="bilinear", align_corners=False)[:, 0]
        shifted = torch.roll(gt, shifts=(int(torch.randint(-6, 7, (1,), generator=gen)), 3), dims=(1, 2))
        scale = torch.rand(n, 1, 1, generator=gen) * 40 + 2  # confident frames saturate to exactly 1.0
        logits.append(noise + scale * (shifted.float() - 0.5))
        truth.append(gt.to(torch.uint8).numpy())
    return torch.cat(logits), np.concatenate(truth)


def make_color(videos: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, truth) uint8 class maps (videos * 10, H, W); 5-frame videos padded with class 0."""
    gen = torch.Generator().manual_seed(seed)
    preds, truths = [], []
    for start in range(0, videos, 50):
        v = min(50, videos - start)
        n = v * AVSS_FRAMES
        truth = torch.zeros(n, SIZE, SIZE, dtype=torch.uint8)
        pred = torch.zeros(n, SIZE, SIZE, dtype=torch.uint8)
        for _ in range(2):
            cls = torch.randint(1, AVSS_CLASSES, (v, 1, 1, 1), generator=gen)
            cls = cls.expand(v, AVSS_FRAMES, 1, 1).reshape(n, 1, 1)  # one class per object and video
            shape = _ellipses(gen, n, 1)
            truth = torch.where(shape, cls.to(torch.uint8), truth)
            wrong = torch.rand(n, 1, 1, generator=gen) < 0.15
            pcls = torch.where(wrong, torch.randint(1, AVSS_CLASSES, (n, 1, 1), generator=gen), cls).to(torch.uint8)
            pred = torch.where(torch.roll(shape, shifts=(5, -4), dims=(1, 2)), pcls, pred)
        short = (torch.rand(v, generator=gen) < 0.45).repeat_interleave(AVSS_FRAMES)  # v1s / v1m: 5 real frames
        pad = short & (torch.arange(n) % AVSS_FRAMES >= 5)
        truth[pad] = 0
        pred[pad] = 0  # the model's output on the black padding frames, taken as all background here
        preds.append(pred.numpy())
        truths.append(truth.numpy())
    return np.concatenate(preds), np.concatenate(truths)


def timed(fn, repeats: int = 1) -> tuple[float, object]:
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def rel_diff(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def bench_binary(name: str, scale: float, repeats: int) -> dict:
    videos, frames, batch = SPLITS[name]
    logits, truth = make_binary(videos, frames, seed=1 if name == "s4" else 2)
    probs = torch.sigmoid(logits).numpy()  # what a prediction file stores: the model's float32 sigmoid
    per_video = [frames] * videos
    full_s, full = timed(lambda: binary_scores(probs, truth, per_video, batch), repeats)
    grouped = {g: binary_scores(probs, truth, per_video, g)["fscore"] for g in (1, 4, 16)}

    sub_videos = max(1, round(videos * scale))
    sub_frames = sub_videos * frames
    sub_s, sub = timed(lambda: binary_scores(probs[:sub_frames], truth[:sub_frames], per_video[:sub_videos], batch),
                       repeats)
    masks = torch.from_numpy(truth[:sub_frames]).float()  # the loaders' float 0/1 masks
    ref_s, (ref_miou, ref_f) = timed(
        lambda: ref.test_binary(ref.iter_batches(logits[:sub_frames], masks, per_video[:sub_videos], batch)))
    diff = max(rel_diff(sub["miou"], 100 * ref_miou), rel_diff(sub["fscore"], 100 * ref_f))
    empty = int(np.count_nonzero(truth.reshape(len(truth), -1).max(axis=1) == 0))
    saturated = float(np.mean(probs == 1.0))
    print(f"{name.upper()}: {videos} videos x {frames} frames x {SIZE}x{SIZE}, batch {batch}; "
          f"{empty} frames without object, {100 * saturated:.1f} % of pixels at probability 1.0")
    print(f"  vectorised, whole split:      {full_s:8.3f} s   mIoU {full['miou']:.4f}  F {full['fscore']:.4f}")
    print("  F by videos per batch:        " + ", ".join(f"{g}: {f:.4f}" for g, f in grouped.items()))
    print(f"  subset for the port:          {sub_videos} videos ({100 * sub_videos / videos:.0f} %)")
    print(f"  literal port, subset:         {ref_s:8.3f} s   (whole split ~{ref_s * videos / sub_videos:.1f} s)")
    print(f"  vectorised, subset:           {sub_s:8.3f} s   speed-up {ref_s / sub_s:.1f} x")
    print(f"  same numbers on the subset:   {'yes' if diff <= REL_TOL else 'NO'} (max relative difference {diff:.1e}; "
          f"port mIoU {100 * ref_miou:.4f} F {100 * ref_f:.4f})")
    return {
        "videos": videos, "frames_per_video": frames, "size": SIZE, "batch_videos": batch,
        "vectorised_full_s": full_s, "scores": full, "fscore_by_batch_videos": grouped,
        "subset_videos": sub_videos, "reference_subset_s": ref_s, "vectorised_subset_s": sub_s,
        "reference_full_s_extrapolated": ref_s * videos / sub_videos, "speedup": ref_s / sub_s,
        "max_relative_difference": diff, "same_numbers": diff <= REL_TOL,
    }


def bench_color(scale: float, repeats: int) -> dict:
    pred, truth = make_color(AVSS_VIDEOS, seed=3)
    per_video = [AVSS_FRAMES] * AVSS_VIDEOS
    full_s, full = timed(lambda: color_scores(pred, truth, per_video, AVSS_BATCH), repeats)

    sub_videos = max(1, round(AVSS_VIDEOS * scale))
    sub_frames = sub_videos * AVSS_FRAMES
    sub_s, sub = timed(lambda: color_scores(pred[:sub_frames], truth[:sub_frames], per_video[:sub_videos],
                                            AVSS_BATCH), repeats)
    ref_s, (ref_miou, ref_f) = timed(lambda: ref.test_color(
        ref.iter_batches(torch.from_numpy(pred[:sub_frames]), torch.from_numpy(truth[:sub_frames]),
                         per_video[:sub_videos], AVSS_BATCH, ref.one_hot_logits), AVSS_CLASSES))
    diff = max(rel_diff(sub["miou"], 100 * ref_miou), rel_diff(sub["fscore"], 100 * ref_f))
    print(f"AVSS: {AVSS_VIDEOS} videos x {AVSS_FRAMES} frames x {SIZE}x{SIZE}, batch {AVSS_BATCH}, "
          f"{AVSS_CLASSES} classes")
    print(f"  vectorised, whole split:      {full_s:8.3f} s   mIoU {full['miou']:.4f}  F {full['fscore']:.4f}")
    print(f"  subset for the port:          {sub_videos} videos ({100 * sub_videos / AVSS_VIDEOS:.1f} %)")
    print(f"  literal port, subset:         {ref_s:8.3f} s   (whole split ~{ref_s * AVSS_VIDEOS / sub_videos:.0f} s; "
          f"includes building its one-hot logits and the softmax it applies)")
    print(f"  vectorised, subset:           {sub_s:8.3f} s   speed-up {ref_s / sub_s:.1f} x")
    print(f"  same numbers on the subset:   {'yes' if diff <= REL_TOL else 'NO'} (max relative difference {diff:.1e}; "
          f"port mIoU {100 * ref_miou:.4f} F {100 * ref_f:.4f})")
    return {
        "videos": AVSS_VIDEOS, "frames_per_video": AVSS_FRAMES, "size": SIZE, "batch_videos": AVSS_BATCH,
        "vectorised_full_s": full_s, "scores": full,
        "subset_videos": sub_videos, "reference_subset_s": ref_s, "vectorised_subset_s": sub_s,
        "reference_full_s_extrapolated": ref_s * AVSS_VIDEOS / sub_videos, "speedup": ref_s / sub_s,
        "max_relative_difference": diff, "same_numbers": diff <= REL_TOL,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.2,
                        help="share of the S4 and MS3 videos the literal port runs on (default 0.2; 1 = whole split)")
    parser.add_argument("--avss-scale", type=float, default=0.02,
                        help="share of the AVSS videos the literal port runs on (default 0.02)")
    parser.add_argument("--repeats", type=int, default=3, help="vectorised runs per figure (best of)")
    parser.add_argument("--json", metavar="OUT", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    for name, value in (("--scale", args.scale), ("--avss-scale", args.avss_scale)):
        if not 0 < value <= 1:
            parser.error(f"{name} must be in (0, 1], got {value}")

    torch.set_num_threads(1)  # the port as one core runs it; the vectorised code is single-threaded numpy
    figures = {name: bench_binary(name, args.scale, args.repeats) for name in SPLITS}
    figures["avss"] = bench_color(args.avss_scale, args.repeats)
    figures.update(python=platform.python_version(), numpy=np.__version__, torch=torch.__version__,
                   machine=platform.machine(), scale=args.scale, avss_scale=args.avss_scale)
    save("avs_metrics", figures)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")
    same = all(figures[k]["same_numbers"] for k in ("s4", "ms3", "avss"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
