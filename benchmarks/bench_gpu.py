"""Benchmark: one real LLP-sized training epoch per model (on a GPU, or `--device cpu`), and the
selective scan's CUDA paths.

Run `python benchmarks/bench_gpu.py [--device cuda] [--scale 1.0] [--workers 4]`. Without a
CUDA device (and without `--device cpu`) it says so and stops (exit 0): the project's CI and
developer machines have none.

- epoch: an LLP-sized data folder (`llp_data.build_llp_sized`: LLP's 10,000 / 649 / 1,200
  clips and truth, random inputs of the real shapes, 8 GB at scale 1) is written once; each
  model then trains ONE epoch through the real trainer (`inference.train.train` with
  `AVVPTask`): its paper recipe (batch size included), files read by the DataLoader
  (`--workers` processes), the input check before the epoch, validation on the 649 val
  clips, test at the end. Reported: the check, the training steps (data loading included),
  validation and test, clips/s, peak device memory;
- panel: MUG's epoch again, as the window's training panel runs it (a separate `train --db
  --events` process started by `ui.training_runner`, read in a Qt event loop);
- scan: batch 8, dim 256, N 16, variable B/C, L in {10, 20, 100, 1000, 4096}, forward and
  forward+backward: mamba_ssm's CUDA kernel (when it imports) and the chunked PyTorch scan,
  each against the sequential PyTorch reference on the same device.
Figures: bench-results/gpu.json (gpu_cpu.json for `--device cpu`).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench_scan import NAMES, make_inputs
from bench_train import sync
from common import save
from llp_data import build_llp_sized

from inference.callbacks import TrainCallback
from inference.data import labels_from_folder
from inference.ssm import cuda_unsupported_reason, selective_scan
from inference.tasks.avvp import AVVPTask
from inference.train import TrainConfig, train

MODELS = (("han", "vggish"), ("valor", "vggish"), ("mug", "vggish"), ("link", "clip_clap_r21d"))
SCAN_LENGTHS = (10, 20, 100, 1000, 4096)


class Phases(TrainCallback):
    """Wall-clock marks of a one-epoch run: start (after the input check), epoch end (after val), end."""

    def __init__(self):
        self.marks: dict[str, float] = {}
        self.train_seconds = 0.0

    def on_train_start(self, info):
        self.marks["start"] = time.perf_counter()

    def on_epoch_end(self, epoch, metrics, is_best):
        self.marks["epoch_end"] = time.perf_counter()
        self.train_seconds = metrics["seconds"]

    def on_train_end(self, result):
        self.marks["end"] = time.perf_counter()


def epoch(model: str, feature_set: str, data: Path, device: torch.device, workers: int, work: Path) -> dict:
    """One epoch of `model` with its recipe on the LLP-sized folder, through the real trainer."""
    text = {"text_audio": str(data / "text/clap_captions.npy"), "text_visual": str(data / "text/clip_captions.npy")}
    config = TrainConfig.for_model(model, model_config={"feature_set": feature_set, **(text if model in ("mug", "link")
                                                                                        else {})},
                                   epochs=1, warmup_epochs=0, device=str(device), num_workers=workers)
    labels = labels_from_folder(data, pseudo=model != "han")
    phases = Phases()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    began = time.perf_counter()
    train(config, AVVPTask(labels, data), work / model, callbacks=[phases])
    sync(device)
    m = phases.marks
    clips = len(labels.indices("train"))
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"batch": config.batch_size, "workers": workers, "train_clips": clips,
            "prepare_s": round(m["start"] - began, 1),  # model, input check of every file
            "train_s": round(phases.train_seconds, 1),  # the epoch's steps, data loading included
            "val_s": round(m["epoch_end"] - m["start"] - phases.train_seconds, 1),  # val + checkpoints
            "test_s": round(m["end"] - m["epoch_end"], 1),
            "clips_per_s": round(clips / phases.train_seconds, 1),
            "peak_memory_mib": peak and round(peak, 1)}


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


def panel_epoch(data: Path, device: torch.device, work: Path, workers: int, model: str = "mug") -> dict:
    """One epoch of `model` as the window's training panel runs it: the folder imported into a SQLite
    store, `TrainingRunner` starting `avvp-studio train --db ... --events --device D` as a separate
    process, its events read in an offscreen Qt event loop. Reported: launch to the first step event
    (process start, imports, input check), the epoch's steps, launch to the process gone."""
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from annotation.db import open_database
    from annotation.importer import import_llp
    from ui.training_runner import TrainingRunner, TrainRequest

    _app = QApplication.instance() or QApplication([])  # the event loop below needs one
    db = str(work / "panel.sqlite")
    import_llp(open_database(db), data)
    runner = TrainingRunner()
    marks: dict[str, float] = {}
    epochs: list[dict] = []

    def seen(batch: list[dict]) -> None:
        for event in batch:
            if event["event"] == "step":
                marks.setdefault("first_step", time.perf_counter())
            elif event["event"] == "epoch":
                epochs.append(event)

    loop = QEventLoop()
    result: list = []
    runner.events.connect(seen)
    runner.finished.connect(lambda status, code, tail: (result.extend([status, code, tail]), loop.quit()))
    request = TrainRequest(data=str(data), db=db, out=str(work / f"panel-{model}"), name=f"panel-{model}", model=model,
                           epochs=1, device=str(device), predict=(),
                           text_audio=str(data / "text/clap_captions.npy"), text_visual=str(data / "text/clip_captions.npy"),
                           extra=["--warmup-epochs", "0", "--num-workers", str(workers)])
    began = time.perf_counter()
    QTimer.singleShot(0, lambda: runner.start(request))
    loop.exec()
    ended = time.perf_counter()
    if result[0] != "finished":
        raise RuntimeError(f"the panel's run ended {result[0]} (exit {result[1]}):\n{result[2][-3000:]}")
    return {"model": model, "device": str(device), "launch_to_first_step_s": round(marks["first_step"] - began, 1),
            "epoch_steps_s": round(epochs[0]["seconds"], 1), "launch_to_gone_s": round(ended - began, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu")
    parser.add_argument("--scale", type=float, default=1.0, help="share of LLP's clips (1.0 = 11,849; 0.05 for a smoke run)")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader processes (default 4)")
    parser.add_argument("--models", default=",".join(m for m, _ in MODELS), help="comma-separated subset")
    parser.add_argument("--no-scan", action="store_true", help="skip the scan part")
    parser.add_argument("--data", type=Path, help="reuse this LLP-sized folder (made if absent)")
    parser.add_argument("--no-panel", action="store_true", help="skip MUG's epoch through the training panel's runner "
                        "(run only when mug is among --models)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    name = "gpu" if device.type == "cuda" else "gpu_cpu"
    if device.type == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA device (torch.cuda.is_available() is False); `--device cpu` runs the same on the CPU")
        save(name, {"skipped": "no CUDA device"})
        return 0
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {label}; torch {torch.__version__}")
    figures: dict = {"device": label, "torch": torch.__version__, "scale": args.scale, "epoch": {}}
    work = Path(tempfile.mkdtemp(prefix="avvp-bench-epoch-"))
    try:
        data = args.data or work / "data"
        wanted = [(m, fs) for m, fs in MODELS if m in args.models.split(",")]
        if not (data / "AVVP_train.csv").exists():
            began = time.perf_counter()
            build_llp_sized(data, tuple({fs for _, fs in wanted}), args.scale)
            print(f"LLP-sized folder ({args.scale:g} of LLP) written in {time.perf_counter() - began:.0f} s: {data}")
        for model, feature_set in wanted:
            result = figures["epoch"][f"{model}/{feature_set}"] = epoch(model, feature_set, data, device, args.workers, work)
            memory = f", peak {result['peak_memory_mib']:.0f} MiB" if result["peak_memory_mib"] else ""
            print(f"epoch {model:5s} {feature_set:14s} batch {result['batch']:>3}: input check {result['prepare_s']:.1f} s, "
                  f"{result['train_clips']} train clips in {result['train_s']:.1f} s ({result['clips_per_s']:.0f} "
                  f"clips/s, loading included), val {result['val_s']:.1f} s, test {result['test_s']:.1f} s{memory}")
        if not args.no_panel and "mug" in args.models.split(","):
            panel = figures["panel"] = panel_epoch(data, device, work, args.workers)
            print(f"the training panel's runner, mug on {panel['device']}: launch to first step "
                  f"{panel['launch_to_first_step_s']} s, one epoch's steps {panel['epoch_steps_s']} s, launch to the "
                  f"process gone {panel['launch_to_gone_s']} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not args.no_scan and device.type == "cuda":
        print("selective scan, batch 8, dim 256, N 16, best of runs:")
        figures["scan"] = scan_rows(device)
    save(name, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
