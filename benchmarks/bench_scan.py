"""Benchmark: the fast CPU selective scans vs the sequential reference.

Run `python benchmarks/bench_scan.py [--threads N] [--quick]`. Shapes of the issue:
batch 8, dim 256, N 16, variable B/C (batch, N, L), L in {10, 20, 100, 1000, 4096}, with D, z,
delta_bias and softplus as a Mamba layer calls it; forward (no grad) and forward+backward
(gradients of all eight inputs). Fast backends: "native" (the C kernel, what
`selective_scan` runs on a CPU) and "chunked" (PyTorch, the fallback without a C
compiler). Target: the CPU default >= 5x faster than the reference at L >= 100; the
chunked figures are reported beside it. Ratios use the best of N runs of each side
(medians are saved too): the project's machines are shared, and a descheduled thread
stalls a run by milliseconds. The reference's forward+backward at L=4096 (GBs of autograd
state) is run once. Also reported: the peak resident-memory growth of one
forward+backward at L=4096, and the chunked scan's forward+backward at L=1000 for a few
block sizes. Then the shapes the parsers really scan (MUG, batch 64: the AMF branches over
the 10 segments, d_inner 512; MFE over the 20 interleaved segments; TSA's small temporal
Mamba, d_inner 32, N 8), forward+backward, each backend, and where the C kernel pays off.
Figures: bench-results/scan.json.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time

import torch

from common import save, verdict  # noqa: E402  (common puts the repository on sys.path)

from inference.ssm import (  # noqa: E402
    native_unavailable_reason, selective_scan_chunked, selective_scan_native, selective_scan_ref,
)
from inference.ssm.chunked import DEFAULT_BLOCK_ELEMENTS, plan_blocks  # noqa: E402

BATCH, DIM, DSTATE = 8, 256, 16
LENGTHS = (10, 20, 100, 1000, 4096)
# (what, batch, d_inner, N, L) of the scans MUG runs with its recipe (batch 64, hidden 512, expand 1)
PARSER_SHAPES = (("MUG AMF branch", 64, 512, 16, 10), ("MUG MFE", 64, 512, 16, 20), ("MUG TSA", 64, 32, 8, 10))
TARGET = 5.0
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(length: int, seed: int = 0, batch: int = BATCH, dim: int = DIM,
                dstate: int = DSTATE) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "u": torch.randn(batch, dim, length, generator=gen),
        "delta": torch.randn(batch, dim, length, generator=gen) * 0.5 - 2.0,  # softplus -> ~0.13
        "A": -torch.arange(1, dstate + 1, dtype=torch.float32).repeat(dim, 1),  # Mamba's S4D-real init
        "B": torch.randn(batch, dstate, length, generator=gen),
        "C": torch.randn(batch, dstate, length, generator=gen),
        "D": torch.ones(dim),
        "z": torch.randn(batch, dim, length, generator=gen),
        "delta_bias": torch.rand(dim, generator=gen) * 0.1,
    }


def timed(fn, repeat: int, memory: dict | None = None, key: str = "") -> tuple[dict, object]:
    """{"best", "median"} wall times of `repeat` runs after one warm-up run (when repeat > 1);
    with `memory`, the peak RSS growth of the last run is stored under `key`."""
    result = fn() if repeat > 1 else None
    times = []
    for i in range(repeat):
        result = None  # let the previous result go before measuring
        start = time.perf_counter()
        if memory is not None and i == repeat - 1:
            memory[key], result = peak_growth_mib(fn)
        else:
            result = fn()
        times.append(time.perf_counter() - start)
    return {"best": min(times), "median": statistics.median(times), "runs": repeat}, result


def forward(scan, inputs):
    def run():
        with torch.no_grad():
            return scan(*(inputs[k] for k in NAMES), delta_softplus=True)
    return run


def forward_backward(scan, inputs):
    leaves = [inputs[k].clone().requires_grad_() for k in NAMES]
    weight = torch.randn(*inputs["u"].shape, generator=torch.Generator().manual_seed(1))

    def run():
        out = scan(*leaves, delta_softplus=True)
        return out.detach(), torch.autograd.grad(out, leaves, weight)
    return run


def _status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_growth_mib(fn) -> tuple[float, object]:
    """Run fn; return how far the process' resident set peaked above where it started (MiB).

    Resets the kernel's high-water mark first (/proc/self/clear_refs, Linux >= 4.0) so the
    figure is this call's own; elsewhere falls back to the growth of ru_maxrss."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before, result = _status_mib("VmRSS"), fn()
        return _status_mib("VmHWM") - before, result
    except (OSError, TypeError):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = fn()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, result


def parser_shape_rows(fast: dict, repeat: int) -> list[dict]:
    """Forward+backward of the scans MUG runs, each backend, best of `repeat`."""
    rows = []
    for what, batch, dim, dstate, length in PARSER_SHAPES:
        inputs = make_inputs(length, batch=batch, dim=dim, dstate=dstate)
        row = {"what": what, "batch": batch, "dim": dim, "dstate": dstate, "L": length}
        for name, scan in {"reference": selective_scan_ref, **fast}.items():
            row[name] = timed(forward_backward(scan, inputs), repeat)[0]["best"]
        row["fastest"] = min(("reference", *fast), key=lambda name: row[name])
        rows.append(row)
    return rows


def repeats(length: int, reference: bool, backward: bool) -> int:
    if length <= 10:
        return 20
    if length <= 100:
        return 7
    if length <= 1000:
        return 2 if reference and backward else 3
    return 1 if reference and backward else (2 if reference else 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: all)")
    parser.add_argument("--quick", action="store_true", help="L in {10, 20, 100} only (smoke run)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lengths = LENGTHS[:3] if args.quick else LENGTHS
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    print(f"selective scan, CPU, batch {BATCH}, dim {DIM}, N {DSTATE}, variable B/C, D+z+delta_bias+softplus; "
          f"{args.threads} threads, load average {load_before:.2f}")

    reason = native_unavailable_reason()
    fast = {"chunked": selective_scan_chunked} if reason else {"native": selective_scan_native,
                                                               "chunked": selective_scan_chunked}
    default = next(iter(fast)) if reason else "native"
    if reason:
        print(f"native kernel unavailable ({reason}): the CPU default is the chunked scan")
    rows: dict[int, dict] = {}
    memory: dict[str, float] = {}
    for length in lengths:  # all fast runs first: the reference's GBs would blur the memory figure
        inputs = make_inputs(length)
        row = rows[length] = {"L": length, "block_len": plan_blocks(BATCH, DIM, DSTATE, length)[0], "_out": {},
                              "_grads": {}}
        for name, scan in fast.items():
            mem = memory if length == 4096 else None
            fwd, out = timed(forward(scan, inputs), repeats(length, False, False))
            fb, (_, grads) = timed(forward_backward(scan, inputs), repeats(length, False, True), mem,
                                   f"{name}_fwdbwd_L4096")
            row[f"{name}_fwd_s"], row[f"{name}_fwdbwd_s"] = fwd, fb
            row["_out"][name], row["_grads"][name] = out, grads
    for length in lengths:
        inputs = make_inputs(length)
        row = rows[length]
        fwd, out = timed(forward(selective_scan_ref, inputs), repeats(length, True, False))
        mem = memory if length == 4096 else None
        fb, (_, grads) = timed(forward_backward(selective_scan_ref, inputs), repeats(length, True, True),
                               mem, "reference_fwdbwd_L4096")
        row.update(reference_fwd_s=fwd, reference_fwdbwd_s=fb)
        outs, all_grads = row.pop("_out"), row.pop("_grads")
        for name in fast:
            row[f"{name}_max_abs_diff_out"] = (outs[name] - out).abs().max().item()
            row[f"{name}_max_rel_diff_grads"] = max(
                ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item() for a, b in zip(all_grads[name], grads)
            )
            row[f"{name}_ratio_fwd"] = fwd["best"] / row[f"{name}_fwd_s"]["best"]
            row[f"{name}_ratio_fwdbwd"] = fb["best"] / row[f"{name}_fwdbwd_s"]["best"]

    parser_rows = parser_shape_rows(fast, 2 if args.quick else 10)

    sweep = {}
    if not args.quick:  # how the block size trades per-op overhead against cache footprint
        inputs = make_inputs(1000)
        for elements in (1 << 18, 1 << 19, 1 << 20, 1 << 21):
            block_len, _ = plan_blocks(BATCH, DIM, DSTATE, 1000, elements)
            scan = lambda *a, e=elements, **k: selective_scan_chunked(*a, block_elements=e, **k)  # noqa: E731
            sweep[block_len] = timed(forward_backward(scan, inputs), 3)[0]["best"]

    print(f"\nbest of N runs each; ratio = reference time / backend time; CPU default: {default}")
    print(f"{'L':>5} {'backend':>8} {'ref fwd':>9} {'fwd':>9} {'ratio':>6}   {'ref f+b':>9} {'f+b':>9} {'ratio':>6}   "
          f"{'max|dout|':>9} {'grad rel':>8}")
    ok = True
    for row in rows.values():
        for name in fast:
            ms = {k: row[k]["best"] * 1e3 for k in ("reference_fwd_s", f"{name}_fwd_s", "reference_fwdbwd_s",
                                                      f"{name}_fwdbwd_s")}
            print(f"{row['L']:>5} {name:>8} {ms['reference_fwd_s']:>7.1f}ms {ms[f'{name}_fwd_s']:>7.1f}ms "
                  f"{row[f'{name}_ratio_fwd']:>5.1f}x   {ms['reference_fwdbwd_s']:>7.0f}ms "
                  f"{ms[f'{name}_fwdbwd_s']:>7.1f}ms {row[f'{name}_ratio_fwdbwd']:>5.1f}x   "
                  f"{row[f'{name}_max_abs_diff_out']:>9.1e} {row[f'{name}_max_rel_diff_grads']:>8.1e}")
        if row["L"] >= 100:
            row_ok = min(row[f"{default}_ratio_fwd"], row[f"{default}_ratio_fwdbwd"]) >= TARGET
            ok &= row_ok
            print(f"      L={row['L']}: {default} >= {TARGET:.0f}x forward and forward+backward: {verdict(row_ok)}")
    print("\nscans the parsers run (forward+backward, best of runs):")
    for row in parser_rows:
        times = ", ".join(f"{name} {row[name] * 1e3:.2f} ms" for name in ("reference", *fast))
        print(f"  {row['what']:<15} (B {row['batch']}, D {row['dim']}, N {row['dstate']}, L {row['L']}): {times}; "
              f"fastest: {row['fastest']} ({row['reference'] / row[row['fastest']]:.1f}x the reference)")
    pays = [row["what"] for row in parser_rows if row["fastest"] == "native"]
    print(f"  the C kernel pays off (fastest) for: {', '.join(pays) or 'none of them'}"
          + ("" if reason is None else f" (not available: {reason})"))
    if sweep:
        print("block size at L=1000, forward+backward: "
              + ", ".join(f"{b} steps {t * 1e3:.0f}ms" for b, t in sweep.items())
              + f" (chunked scan; default: {plan_blocks(BATCH, DIM, DSTATE, 1000)[0]} steps)")
    if memory:
        print("peak RSS growth of one forward+backward at L=4096 (outputs and gradients included): "
              + ", ".join(f"{k.split('_')[0]} {v:.0f} MiB" for k, v in memory.items()))
    load_after = os.getloadavg()[0]
    if max(load_before, load_after) > 0.5 * (os.cpu_count() or 1):
        print(f"note: load average {load_before:.2f} -> {load_after:.2f} on {os.cpu_count()} CPUs: other processes "
              "competed for the cores; rerun on a quiet machine (or with --threads 1) for stable figures")
    elapsed = time.perf_counter() - started
    print(f"overall: {verdict(ok)} (target >= {TARGET:.0f}x at L >= 100, {default}); {elapsed:.0f} s; "
          f"load average {load_after:.2f}")
    save("scan", {
        "shape": {"batch": BATCH, "dim": DIM, "dstate": DSTATE, "B_C": "variable (batch, N, L)",
                  "options": "D, z, delta_bias, delta_softplus"},
        "cpu_default": default, "native_unavailable_reason": reason,
        "threads": args.threads, "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__, "default_block_elements": DEFAULT_BLOCK_ELEMENTS,
        "load_average": [load_before, load_after], "seconds": elapsed,
        "rows": list(rows.values()), "target_ratio": TARGET, "meets_target": ok,
        "block_sweep_L1000_fwdbwd_s": sweep, "parser_shapes_fwdbwd_s": parser_rows,
        "peak_rss_growth_mib": memory,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
