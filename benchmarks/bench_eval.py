"""Benchmark: vectorised AVVP evaluation vs the literal port of the published code.

Run `python benchmarks/bench_eval.py [--json OUT]` from anywhere. Uses the real
LLP test split (1,200 videos) from ../shared/llp next to the repository and the
weak-label predictor (weak label on all 10 segments, audio and visual), checks
that both implementations give the same ten numbers, and reports the times.
Exits 0 with a message when the LLP files are absent.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LLP_DIR = REPO.parent / "shared" / "llp"
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from annotation.grid import weak_grid  # noqa: E402
from annotation.llp_csv import dense_grids, read_dense_csv, read_weak_csv, write_dense_csv  # noqa: E402
from inference.metrics import evaluate, evaluate_csv  # noqa: E402
from inference.metrics_reference import evaluate_reference  # noqa: E402

TARGET_SPEEDUP = 20.0
NEEDED = ("AVVP_test_pd.csv", "AVVP_eval_audio.csv", "AVVP_eval_visual.csv")


def timed(fn, repeats: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def max_abs_diff(a: dict, b: dict) -> float:
    return max(abs(a[level][key] - b[level][key]) for level in a for key in a[level])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="OUT", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--repeats", type=int, default=21, help="repeats of the vectorised evaluate (median)")
    parser.add_argument("--reference-repeats", type=int, default=2, help="repeats of the reference (median)")
    args = parser.parse_args(argv)

    missing = [name for name in NEEDED if not (LLP_DIR / name).exists()]
    if missing:
        print(f"bench_eval: LLP files not found in {LLP_DIR} ({', '.join(missing)}); nothing to benchmark.")
        return 0

    weak = read_weak_csv(LLP_DIR / "AVVP_test_pd.csv")
    filenames = [row.filename for row in weak]
    gt_a = dense_grids(read_dense_csv(LLP_DIR / "AVVP_eval_audio.csv"), filenames)
    gt_v = dense_grids(read_dense_csv(LLP_DIR / "AVVP_eval_visual.csv"), filenames)
    pred = np.stack([weak_grid(row.labels) for row in weak])
    print(f"test split: {len(filenames)} videos, weak-label predictor on all 10 segments (audio and visual)")

    evaluate(pred, pred, gt_a, gt_v)  # warm-up
    vec_times, vec_scores = timed(lambda: evaluate(pred, pred, gt_a, gt_v), args.repeats)
    ref_times, ref_scores = timed(lambda: evaluate_reference(pred, pred, gt_a, gt_v), args.reference_repeats)

    with tempfile.TemporaryDirectory() as tmp:
        pred_csv = Path(tmp) / "pred.csv"
        write_dense_csv(pred_csv, dict(zip(filenames, pred)))
        csv_times, csv_scores = timed(
            lambda: evaluate_csv(
                LLP_DIR / "AVVP_eval_audio.csv", LLP_DIR / "AVVP_eval_visual.csv",
                pred_csv, pred_csv, LLP_DIR / "AVVP_test_pd.csv",
            ),
            5,
        )

    vec_s, ref_s, csv_s = statistics.median(vec_times), statistics.median(ref_times), statistics.median(csv_times)
    speedup = ref_s / vec_s
    diff = max(max_abs_diff(vec_scores, ref_scores), max_abs_diff(csv_scores, ref_scores))
    same = diff <= 1e-9

    print(f"evaluate (vectorised):     {vec_s * 1e3:9.2f} ms  (median of {args.repeats}, min {min(vec_times) * 1e3:.2f} ms)")
    print(f"evaluate_reference (loop): {ref_s * 1e3:9.2f} ms  (median of {args.reference_repeats})")
    print(f"speed-up:                  {speedup:9.1f} x  (target >= {TARGET_SPEEDUP:.0f} x: "
          f"{'met' if speedup >= TARGET_SPEEDUP else 'NOT met'})")
    print(f"evaluate_csv end-to-end:   {csv_s * 1e3:9.2f} ms  (median of 5; reads 5 CSVs, builds grids, evaluates)")
    print(f"same numbers:              {'yes' if same else 'NO'} (max |difference| {diff:.2e})")
    s, e = vec_scores["segment"], vec_scores["event"]
    print(f"scores: segment a/v/av/type/event {s['audio']:.2f}/{s['visual']:.2f}/{s['audio_visual']:.2f}/"
          f"{s['type']:.2f}/{s['event']:.2f}; event {e['audio']:.2f}/{e['visual']:.2f}/{e['audio_visual']:.2f}/"
          f"{e['type']:.2f}/{e['event']:.2f}")

    if args.json:
        figures = {
            "videos": len(filenames),
            "evaluate_s": vec_s,
            "evaluate_times_s": vec_times,
            "evaluate_reference_s": ref_s,
            "evaluate_reference_times_s": ref_times,
            "speedup": speedup,
            "target_speedup": TARGET_SPEEDUP,
            "evaluate_csv_s": csv_s,
            "evaluate_csv_times_s": csv_times,
            "max_abs_difference": diff,
            "same_numbers": same,
            "scores": vec_scores,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "machine": platform.machine(),
            "processor": platform.processor(),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
