"""Training: throughput of each parser on LLP-shaped inputs (CPU), parameter counts, and the
demo end to end (its predictions against its pseudo-labels on the demo truth).

- throughput: forward + loss + backward + Adam step on random LLP-shaped batches of 16
  (VGGish 10x128 + ResNet 80x2048 + R(2+1)D 10x512, or CLAP 10x512 + CLIP 10x768 + R(2+1)D),
  each model with its recipe's widths, clips/s; HAN is the baseline the others are compared
  with in the same run (the full epoch with data loading: bench_gpu.py);
- demo: `build_demo(clips=600, videos=False)` (376 train clips), HAN for 10 epochs,
  test segment Type@AV of its predictions vs that of the demo pseudo-labels.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import save, verdict

from annotation.demo import build_demo
from inference.data import FEATURE_SETS, labels_from_folder
from inference.metrics import evaluate
from inference.models import create_model
from inference.tasks.avvp import AVVPTask
from inference.train import TrainConfig, train

PAPER_PARAMS = {"mug": "7.6 M (MUG paper)", "han": "not reported", "valor": "not reported", "link": "not reported"}
MODELS = (("han", "vggish"), ("valor", "vggish"), ("valor", "clip_clap_r21d"), ("mug", "vggish"),
          ("link", "clip_clap_r21d"))


def random_batch(feature_set: str, batch: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    out = {part: torch.from_numpy(rng.normal(0, 1, (batch, *shape)).astype(np.float32))
           for part, shape in FEATURE_SETS[feature_set].shapes.items()}
    pseudo = lambda: torch.from_numpy((rng.random((batch, 10, 25)) < 0.08).astype(np.float32))  # noqa: E731
    out["pseudo_audio"], out["pseudo_visual"] = pseudo(), pseudo()
    out["prior_audio"], out["prior_visual"] = pseudo(), pseudo()
    out["label"] = torch.maximum(out["pseudo_audio"].amax(1), out["pseudo_visual"].amax(1))
    out["has_pseudo"] = torch.ones(batch, dtype=torch.bool)
    out["index"] = torch.arange(batch)
    return out


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that wall times measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_steps(name: str, feature_set: str, steps: int, batch: int, device: torch.device | None = None) -> dict:
    """`steps` training steps (forward + loss + backward + Adam) of batches made once on the
    device and cycled, after two untimed warm-up steps (allocator, kernel choices); bench_gpu's
    epoch uses it too."""
    device = device or torch.device("cpu")
    torch.manual_seed(0)
    recipe = TrainConfig.for_model(name, model_config={"feature_set": feature_set})  # the paper's widths
    model = create_model(name, **{**recipe.model_config, **({"random_text": True} if name in ("mug", "link") else {})})
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    rng = np.random.default_rng(0)
    pool = [{k: v.to(device) for k, v in random_batch(feature_set, batch, rng).items()} for _ in range(3)]

    def step(i: int) -> None:
        loss, _ = model.loss(model(pool[i % len(pool)]), pool[i % len(pool)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for i in range(2):
        step(i)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"clips": steps * batch, "batch": batch, "seconds": round(seconds, 3),
            "clips_per_s": round(steps * batch / seconds, 1), "peak_memory_mib": peak and round(peak, 1),
            "params": sum(p.numel() for p in model.parameters())}


def throughput(name: str, feature_set: str, steps: int = 12, batch: int = 16) -> tuple[float, int]:
    result = train_steps(name, feature_set, steps, batch)
    return result["clips_per_s"], result["params"]


def demo_end_to_end(work: Path) -> dict:
    """VALOR's objective with HAN's short CPU schedule, as the test of the same name."""
    from annotation.demo import read_pseudo

    start = time.perf_counter()
    data = build_demo(work / "demo", clips=600, seed=0, videos=False).out_dir
    built = time.perf_counter() - start
    labels = labels_from_folder(data)
    config = TrainConfig.for_model("valor", model_config={"nhead": 1, "dim_feedforward": 512}, epochs=10, seed=1,
                                   optimizer="adam", lr=3e-4, weight_decay=0.0, betas=(0.9, 0.999), scheduler="step",
                                   step_size=10, gamma=0.1, grad_clip=0.0, warmup_epochs=0, lr_min=0.0, batch_size=16)
    start = time.perf_counter()
    result = train(config, AVVPTask(labels, data, cache=True), work / "run")
    trained = time.perf_counter() - start
    test = labels.indices("test")
    names, ids = [labels.filenames[i] for i in test], [labels.video_ids[i] for i in test]
    pseudo = evaluate(np.stack([read_pseudo(data, v, "audio") for v in ids]),
                      np.stack([read_pseudo(data, v, "visual") for v in ids]),
                      np.stack([labels.truth_audio[n] for n in names]), np.stack([labels.truth_visual[n] for n in names]))
    return {"build_s": round(built, 1), "train_s": round(trained, 1), "best_epoch": result.best_epoch,
            "valor_test_segment_type": round(result.test["segment"]["type"], 2),
            "pseudo_test_segment_type": round(pseudo["segment"]["type"], 2),
            "valor_test_event_type": round(result.test["event"]["type"], 2),
            "pseudo_test_event_type": round(pseudo["event"]["type"], 2)}


def main() -> None:
    figures: dict = {"threads": torch.get_num_threads(), "models": {}}
    base = None
    for name, feature_set in MODELS:
        rate, params = throughput(name, feature_set)
        base = base or rate
        figures["models"][f"{name}/{feature_set}"] = {"clips_per_s": round(rate, 1), "params": params,
                                                      "vs_han_vggish": round(rate / base, 2)}
        print(f"{name:5s} {feature_set:14s}: {rate:7.1f} clips/s train (x{rate / base:.2f} of HAN/vggish), "
              f"{params / 1e6:.2f} M parameters (paper: {PAPER_PARAMS[name]})")
    work = Path(tempfile.mkdtemp(prefix="avvp-bench-train-"))
    try:
        demo = demo_end_to_end(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures["demo"] = demo
    beats = demo["valor_test_segment_type"] > demo["pseudo_test_segment_type"]
    print(f"demo (600 clips, no videos): built in {demo['build_s']} s, VALOR's objective with HAN's schedule, "
          f"10 epochs in {demo['train_s']} s; "
          f"test segment Type@AV {demo['valor_test_segment_type']} vs pseudo-labels {demo['pseudo_test_segment_type']}, "
          f"event Type@AV {demo['valor_test_event_type']} vs {demo['pseudo_test_event_type']} "
          f"(predictions beat pseudo-labels: {verdict(beats)})")
    print("a real LLP-sized epoch (data loading, validation) and the scan's CUDA paths: benchmarks/bench_gpu.py "
          "(on a GPU, or --device cpu)")
    save("train", figures)


if __name__ == "__main__":
    main()
