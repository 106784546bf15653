"""Audio-visual segmentation on the SYNTHETIC AVS demo (never comparable with AVSBench numbers).

- For S4 and MS3 demos: the tiny AVS-Mamba trained through the shared trainer (checkpoint chosen on
  val mIoU; AdamW at lr 1e-3 instead of the recipe's 2e-5, which is for pretrained backbones; random
  backbones are trained, not frozen), its test mIoU / F-score, the same checkpoint with every test clip's audio swapped for the
  next test clip's (a model that uses sound must lose a lot), and the audio-blind baseline
  (`avs_visual_only`, no audio input at all) trained the same way in the same run.
- CPU inference time per 5-frame clip at full width (224 x 224, the full configuration with each
  backbone, random weights), as a ratio to the tiny configuration at the same input.
Options: --clips N (demo size), --epochs E, --skip-full.
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import torch

from common import save

from annotation.avs_demo import build_avs_demo
from annotation.avsbench import read_avsbench
from inference.avs_commands import cache_dir
from inference.models import create_model
from inference.predict import load_run
from inference.tasks.avs import AVSDataset, AVSTask, infer, score_masks, truth_stack
from inference.train import TrainConfig, train


LR = 1e-3  # the recipe's 2e-5 fine-tunes pretrained backbones; the tiny model starts from random weights


def _swapped(clips):
    """Each clip with the audio of the next clip that sounds different (S4: another category; MS3 has no category,
    so the next clip: its sounds and their seconds differ by chance)."""
    out = []
    for i, clip in enumerate(clips):
        donor = next((clips[(i + k) % len(clips)] for k in range(1, len(clips))
                      if not clip.category or clips[(i + k) % len(clips)].category != clip.category),
                     clips[(i + 1) % len(clips)])
        out.append(dataclasses.replace(clip, audio_pkl=donor.audio_pkl, audio_wav=donor.audio_wav))
    return out


def _score(model, data, clips, size: int) -> dict:
    dataset = AVSDataset(clips, data.subset, size, False, cache_dir())
    pred = infer(model, dataset, torch.device("cpu"), 8)
    truth, has = truth_stack(AVSDataset(data.split("test"), data.subset, size, True, None))
    return score_masks(data.subset, pred, truth, has, 1)


def quality(subset: str, clips: int, epochs: int, work: Path) -> dict:
    root = work / subset
    build_avs_demo(root, subset, clips=clips, size=64, seed=0)
    data = read_avsbench(root, subset)
    rows = {}
    for model in ("avs_mamba", "avs_visual_only"):
        config = TrainConfig.for_model(model, model_config={"size": "tiny", "image_size": 64}, epochs=epochs,
                                       device="cpu", seed=1, batch_size=4, lr=LR, variant=subset)
        began = time.perf_counter()
        result = train(config, AVSTask(data, cache_dir()), work / f"{subset}-{model}")
        trained, _ = load_run(work / f"{subset}-{model}")
        rows[model] = {"test": result.test, "best_epoch": result.best_epoch,
                       "train_seconds": round(time.perf_counter() - began, 1)}
        if model == "avs_mamba":
            rows["avs_mamba, test audio swapped"] = {"test": _score(trained, data, _swapped(data.split("test")), 64)}
    return rows


def inference_time(repeat: int = 3) -> dict:
    torch.set_grad_enabled(False)
    batch = {"frames": torch.randn(1, 5, 3, 224, 224), "audio": torch.randn(1, 5, 1, 96, 64),
             "frame_valid": torch.ones(1, 5)}
    out = {}
    for name, options in (("tiny resnet50", {"size": "tiny", "backbone": "resnet50"}),
                          ("full resnet50", {"size": "full", "backbone": "resnet50"}),
                          ("full pvt_v2_b5", {"size": "full", "backbone": "pvt_v2_b5"})):
        model = create_model("avs_mamba", image_size=224, **options).eval()
        model(batch)  # warm-up
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            model(batch)
            times.append(time.perf_counter() - began)
        out[name] = {"seconds_per_clip": round(sorted(times)[len(times) // 2], 3),
                     "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1)}
    base = out["tiny resnet50"]["seconds_per_clip"]
    for row in out.values():
        row["ratio_to_tiny"] = round(row["seconds_per_clip"] / base, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-avs-"))
    figures = {"data": f"SYNTHETIC AVS demo, {args.clips} clips per subset, 64x64, {args.epochs} epochs"}
    try:
        for subset in ("s4", "ms3"):
            rows = quality(subset, args.clips, args.epochs, work)
            figures[subset] = rows
            print(f"\n{subset.upper()} (SYNTHETIC demo; test split; F-score batches of 1 video)")
            print(f"  {'model':<34} {'mIoU':>6} {'F':>6}")
            for name, row in rows.items():
                print(f"  {name:<34} {row['test']['miou']:6.2f} {row['test']['fscore']:6.2f}")
        if not args.skip_full:
            figures["cpu_inference_per_clip"] = inference_time()
            print("\nCPU inference, one 5-frame clip at 224x224 (random weights):")
            for name, row in figures["cpu_inference_per_clip"].items():
                print(f"  {name:<16} {row['seconds_per_clip']:7.3f} s  x{row['ratio_to_tiny']:<6} "
                      f"{row['parameters_M']} M parameters")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    save("avs", figures)


if __name__ == "__main__":
    main()
