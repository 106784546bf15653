"""Benchmark on a GPU: one training epoch per model, and the selective scan's CUDA paths.

Run `python benchmarks/bench_gpu.py [--device cuda] [--clips 10000] [--batch 16]`. Without a
CUDA device it says so and stops (exit 0): the project's CI and developer machines have
none; `--device cpu --clips 64` runs the same code on the CPU as a smoke test.

- epoch: `--clips` LLP-shaped random clips (batches made once on the device and cycled,
  so the figure is the model's, not a disk's) through forward + loss + backward + Adam, for
  HAN (VGGish + ResNet + R(2+1)D), MUG (same features) and LINK (CLAP + CLIP): seconds,
  clips/s, and peak device memory (`bench_train.train_steps`);
- scan: batch 8, dim 256, N 16, variable B/C, L in {100, 1000, 4096}, forward and
  forward+backward: mamba_ssm's CUDA kernel (when it imports) and the chunked PyTorch scan,
  each against the sequential PyTorch reference on the same device.
Figures: bench-results/gpu.json.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from bench_scan import NAMES, make_inputs
from bench_train import sync, train_steps
from common import save

from inference.ssm import cuda_unsupported_reason, selective_scan

MODELS = (("han", "vggish"), ("mug", "vggish"), ("link", "clip_clap"))
SCAN_LENGTHS = (100, 1000, 4096)


def epoch(name: str, feature_set: str, clips: int, batch: int, device: torch.device) -> dict:
    """One pass over `clips` clips (bench_train's timed training steps on this device)."""
    return train_steps(name, feature_set, max(1, -(-clips // batch)), batch, device)


def scan_time(backend: str, inputs: dict[str, torch.Tensor], backward: bool, repeat: int) -> float:
    """Best wall time of `repeat` runs (after one warm-up), synchronised."""
    device = inputs["u"].device
    leaves = [inputs[k].clone().requires_grad_(backward) for k in NAMES]
    weight = torch.randn_like(inputs["u"])
    times = []
    for i in range(repeat + 1):
        sync(device)
        start = time.perf_counter()
        with torch.set_grad_enabled(backward):
            out = selective_scan(*leaves, delta_softplus=True, backend=backend)
            if backward:
                torch.autograd.grad(out, leaves, weight)
        sync(device)
        if i:
            times.append(time.perf_counter() - start)
    return min(times)


def scan_rows(device: torch.device) -> list[dict]:
    rows = []
    for length in SCAN_LENGTHS:
        inputs = {k: v.to(device) for k, v in make_inputs(length).items()}
        reason = cuda_unsupported_reason(*(inputs[k] for k in NAMES))
        backends = ["chunked"] + (["cuda"] if reason is None else [])
        row: dict = {"L": length, "cuda_kernel": reason or "used"}
        for backward in (False, True):
            kind = "fwdbwd" if backward else "fwd"
            ref_repeat = 1 if length >= 1000 and backward else 3
            row[f"reference_{kind}_s"] = scan_time("reference", inputs, backward, ref_repeat)
            for backend in backends:
                t = scan_time(backend, inputs, backward, 5)
                row[f"{backend}_{kind}_s"] = t
                row[f"{backend}_{kind}_vs_reference"] = round(row[f"reference_{kind}_s"] / t, 1)
        rows.append(row)
        parts = [f"L={length:>5}"]
        for backend in ["reference", *backends]:
            parts.append(f"{backend} fwd {row[f'{backend}_fwd_s'] * 1e3:8.2f} ms, f+b {row[f'{backend}_fwdbwd_s'] * 1e3:8.2f} ms")
        print("  " + " | ".join(parts))
        if reason:
            print(f"           (mamba_ssm's kernel not measured: {reason})")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a smoke run")
    parser.add_argument("--clips", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--no-scan", action="store_true", help="skip the scan part")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA device (torch.cuda.is_available() is False); "
              "`--device cpu --clips 64` runs the same code on the CPU")
        save("gpu", {"skipped": "no CUDA device"})
        return 0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}")
    figures: dict = {"device": name, "torch": torch.__version__, "epoch": {}}
    for model, feature_set in MODELS:
        result = figures["epoch"][f"{model}/{feature_set}"] = epoch(model, feature_set, args.clips, args.batch, device)
        memory = f", peak {result['peak_memory_mib']:.0f} MiB" if result["peak_memory_mib"] else ""
        print(f"epoch {model:4s} {feature_set:9s}: {result['clips']} clips in {result['seconds']:.1f} s "
              f"({result['clips_per_s']:.0f} clips/s{memory})")
    if not args.no_scan:
        print("selective scan, batch 8, dim 256, N 16, best of runs:")
        figures["scan"] = scan_rows(device)
    save("gpu", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
