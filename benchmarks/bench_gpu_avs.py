"""Benchmark: AVS-Mamba at full width on a GPU: forward+backward step time and peak memory at the
paper's batch sizes, and scan parity of the model's own scans on CUDA.

Run `python benchmarks/bench_gpu_avs.py [--device cuda] [--steps 5]`. Without a CUDA device (and
without `--device cpu`) it says so and stops (exit 0).

- step: `avs_mamba` full (PVT-v2-b5 and ResNet-50 backbones, random weights; VGGish frozen as in
  the code), AdamW at the recipe's lr, random frames/audio/masks of AVSBench's shapes: S4 and MS3
  batch 2 x 5 frames x 224x224 (network upsampled to 512 as the code), AVSS batch 6 x 10 frames x
  224x224 with 71 classes; median step time of `--steps` steps after one warm-up, peak memory;
- scan parity: the model's forward and its gradients with every Mamba block on the sequential
  reference scan vs the automatic backend (mamba_ssm's CUDA kernel when it imports, else the
  chunked PyTorch scan), tiny config on the device: max abs difference.
Figures: bench-results/gpu_avs.json (gpu_avs_cpu.json for `--device cpu`).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from common import save

from inference.models import create_model, model_recipe

SETTINGS = {"s4": (2, 5, 1), "ms3": (2, 5, 1), "avss": (6, 10, 71)}  # batch, frames, classes


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batch(subset: str, device: torch.device, size: int = 224) -> dict[str, torch.Tensor]:
    b, t, k = SETTINGS[subset]
    mask = torch.randint(0, k, (b, t, size, size)) if k > 1 else (torch.rand(b, t, size, size) > 0.7).float()
    return {"frames": torch.randn(b, t, 3, size, size, device=device),
            "audio": torch.randn(b, t, 1, 96, 64, device=device), "frame_valid": torch.ones(b, t, device=device),
            "mask": mask.to(device), "mask_valid": torch.ones(b, t, device=device)}


def step_figures(subset: str, backbone: str, device: torch.device, steps: int) -> dict:
    _, frames, classes = SETTINGS[subset]
    model = create_model("avs_mamba", size="full", backbone=backbone, num_classes=classes, frames=frames).to(device)
    recipe = model_recipe("avs_mamba", subset)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe["lr"],
                                  weight_decay=recipe["weight_decay"])
    data = batch(subset, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(steps + 1):
        sync(device)
        began = time.perf_counter()
        loss, _ = model.loss(model(data), data)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)
        if i:  # the first step is the warm-up (kernel builds, allocator)
            times.append(time.perf_counter() - began)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"subset": subset, "backbone": backbone, "batch": SETTINGS[subset][0], "frames": frames,
            "step_seconds": round(statistics.median(times), 4), "peak_memory_gib": None if peak is None else round(peak, 2)}


def scan_parity(device: torch.device) -> dict:
    torch.manual_seed(0)
    model = create_model("avs_mamba", size="tiny", image_size=64).to(device).eval()  # no drop-path noise
    data = batch("s4", device, size=64)
    outs = {}
    for backend in ("reference", "auto"):
        model.set_scan_backend(backend)
        model.zero_grad(set_to_none=True)
        out = model(data)["logits"]
        out.float().square().mean().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        outs[backend] = (out.detach(), grads)
    return {"forward_max_abs_diff": float((outs["reference"][0] - outs["auto"][0]).abs().max()),
            "grad_max_abs_diff": float((outs["reference"][1] - outs["auto"][1]).abs().max())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("skipped: no CUDA device (run with --device cpu to time the CPU)")
        return 0
    device = torch.device(args.device)
    figures = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "scan_parity": scan_parity(device), "steps": []}
    print(f"scan parity (reference vs auto): {figures['scan_parity']}", flush=True)
    for subset in ("s4", "ms3", "avss"):
        for backbone in ("pvt_v2_b5", "resnet50"):
            row = step_figures(subset, backbone, device, args.steps)
            figures["steps"].append(row)
            print(f"{subset} {backbone}: batch {row['batch']} x {row['frames']} frames: {row['step_seconds']:.3f} s/step, "
                  f"peak {row['peak_memory_gib']} GiB", flush=True)
    save("gpu_avs" if device.type == "cuda" else "gpu_avs_cpu", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
