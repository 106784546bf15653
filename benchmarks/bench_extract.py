"""Benchmark: `avvp-studio features` (batched, decoded in threads) vs a literal port of VALOR's scripts.

Run `python benchmarks/bench_extract.py [--clips N] [--real-sizes] [--device D] [--repeats R] [--json OUT]`.
All paths run in the same process on the same videos with the same model objects (random weights), taking
turns, best of R runs each; torch runs 1 intra-op thread in all of them unless --torch-threads says otherwise:
  ours     inference.extract.extract_features: PyAV decoding of the picked frames and of the audio, and the
           CLAP mel, in worker threads; batched CLIP and CLAP (all clips' frames / segments of a batch at once);
           it also embeds the 2 x 25 captions (timed alone too);
  literal  benchmarks/valor_literal.py: `ffmpeg -r 8` JPEG files (or PyAV's mjpeg encoder when the ffmpeg
           command is missing; the output says which), read back with PIL, per-frame preprocessing, one clip at
           a time through CLIP; CLAP one clip at a time, its mel made two ways: transformers' ClapFeatureExtractor
           (numpy, one STFT frame at a time) and laion_clap's own torchaudio mel (torch, one segment at a time).
Videos: N copies of the real LLP clip ../shared/llp/BjCEufrlXm4.mp4 (320x240, 29.9 fps, 10 s) when present,
else the synthetic demo's videos (160x128, 12 fps). Sizes: tiny random CLIP/CLAP (default) or, with
--real-sizes, random ViT-L/14 (open_clip, 428 M parameters) and HTS-AT + RoBERTa (transformers' default
ClapConfig, fusion) for a GPU machine. Equality: the same decoded frames and audio segments through both
paths' preprocessing and models (max |difference| of the L2-normalised embeddings, target <= 1e-5); the
end-to-end files also differ by the JPEG round trip, reported for information. Wall times on a shared machine
move with its load (printed); the CPU seconds (all threads, plus the ffmpeg commands) move less.
Figures: bench-results/extract.json (extract_real_sizes.json with --real-sizes) and --json OUT.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import valor_literal
from common import SHARED_LLP, save

from annotation.demo import build_demo
from annotation.taxonomy import CLASSES
from inference.extract import (
    default_workers,
    extract_features,
    read_clip,
    write_captions,
)

TARGET = 5.0
TOL = 1e-5


def real_size_encoders(device: str, seed: int = 0):
    """Random-weight encoders of the real sizes: OpenAI ViT-L/14 layout, HTS-AT + RoBERTa-base CLAP (fusion)."""
    from inference.encoders.clap import ClapEncoder, _tiny_tokenizer, _transformers
    from inference.encoders.clip import ClipEncoder
    from inference.encoders.compat import import_open_clip

    open_clip = import_open_clip()
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    transformers = _transformers()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = CLIP(768, vision_cfg=CLIPVisionCfg(layers=24, width=1024, patch_size=14, image_size=224),
                    text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=768, heads=12, layers=12),
                    quick_gelu=True)
        tokenizer = _tiny_tokenizer(transformers)
        config = transformers.ClapConfig(audio_config={"enable_fusion": True, "fusion_type": "aff_2d"},
                                         text_config={"pad_token_id": tokenizer.pad_token_id})
        clap = transformers.ClapModel(config)
    return (ClipEncoder(clip, open_clip.tokenizer.SimpleTokenizer(), "random ViT-L/14 (open_clip)", device, True),
            ClapEncoder(clap, transformers.ClapFeatureExtractor(frequency_min=50, frequency_max=14_000), tokenizer,
                        "random HTS-AT CLAP (fusion)", device, True))


def tiny_encoders(device: str, seed: int = 0):
    from inference.encoders.clap import tiny_clap
    from inference.encoders.clip import tiny_clip

    return tiny_clip(seed, device), tiny_clap(seed, device)


def make_folder(root: Path, clips: int) -> tuple[Path, str]:
    """An LLP-layout folder with `clips` videos (copies of the real clip, or the demo's)."""
    real = SHARED_LLP / "BjCEufrlXm4.mp4"
    if real.exists():
        data = root / "llp"
        (data / "raw_videos").mkdir(parents=True)
        ids = [f"bench{i:06d}" for i in range(clips)]
        for vid in ids:
            shutil.copy(real, data / "raw_videos" / f"{vid}.mp4")
        rows = "".join(f"{vid}_0_10\tSpeech,Dog\n" for vid in ids)
        (data / "AVVP_train.csv").write_text("filename\tevent_labels\n" + rows)
        return data, f"{clips} copies of the real LLP clip BjCEufrlXm4 (320x240, 29.9 fps)"
    data = root / "demo"
    build_demo(data, clips=max(3, clips), seed=0, videos=True)
    return data, f"{max(3, clips)} synthetic demo clips (160x128, 12 fps; the real clip is not at {real})"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


FRONT_ENDS = ("transformers", "torchaudio")  # the literal port's CLAP mel, see valor_literal.audio_embedding


@dataclass
class Run:
    seconds: float
    cpu: float  # all threads, plus the ffmpeg commands for the literal port
    parts: dict[str, float] = field(default_factory=dict)


def run_literal(data: Path, work: Path, clip, clap, device: str, front_end: str) -> tuple[Run, str]:
    videos = sorted((data / "raw_videos").glob("*.mp4"))
    shutil.rmtree(work, ignore_errors=True)
    sync(device)
    start, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
    how, parts = "", {}
    for video in videos:
        how = valor_literal.extract_clip(video, work / "frames", work / "literal", clip.model, clap.model,
                                         clap.extractor, clip.device, parts, front_end)
    sync(device)
    return Run(time.perf_counter() - start, time.process_time() - cpu + _children_cpu() - children, parts), how


def run_ours(data: Path, out: Path, clip, clap, device: str, batch_clips: int, workers: int) -> tuple[Run, object]:
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    report = extract_features(data, clip, clap, out=out, batch_clips=batch_clips, force=True, workers=workers)
    sync(device)
    return Run(time.perf_counter() - start, time.process_time() - cpu), report


def _children_cpu() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def equality(data: Path, out: Path, work: Path, clip, clap) -> dict:
    """Same decoded inputs through both paths; and the files of both runs (JPEG round trip included)."""
    video = min((data / "raw_videos").glob("*.mp4"))
    media = read_clip(video, 10)
    literal_v = valor_literal.image_embedding(clip.model, list(media.frames), clip.device)
    ours_a = clap.encode_audio(media.audio)
    same = {"visual": float(np.abs(clip.encode_images(media.frames) - literal_v).max())}
    for front_end in FRONT_ENDS:
        literal_a = valor_literal.audio_embedding(clap.model, clap.extractor, media.audio, clap.device, front_end)
        same[f"audio_{front_end}"] = float(np.abs(ours_a - literal_a).max())
    files = {track: float(np.abs(np.load(out / f"{folder}/features/{video.stem}.npy")
                                 - np.load(work / f"literal/{folder}/{video.stem}.npy")).max())
             for track, folder in (("visual", "CLIP"), ("audio", "CLAP"))}
    return {"same_inputs_max_abs": same, "files_max_abs": files, "same_embeddings": max(same.values()) <= TOL}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=6, help="videos to extract (default 6)")
    parser.add_argument("--real-sizes", action="store_true", help="random ViT-L/14 and HTS-AT instead of tiny models")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each path; the best counts (default 3)")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch's intra-op threads for all paths (default 1: tiny models gain nothing from more, "
                             "and the decoding thread needs the other core; 0 = torch's default)")
    parser.add_argument("--batch-clips", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: as the command)")
    parser.add_argument("--json", metavar="OUT", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    workers = args.workers or default_workers()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data, source = make_folder(root, args.clips)
        n = len(list((data / "raw_videos").glob("*.mp4")))
        started = time.perf_counter()
        clip, clap = (real_size_encoders if args.real_sizes else tiny_encoders)(device)
        build_s = time.perf_counter() - started
        size = "real sizes (ViT-L/14, HTS-AT), random weights" if args.real_sizes else "tiny random models"
        print(f"videos: {source}; models: {size}, built in {build_s:.1f} s; device {device}; "
              f"torch threads {torch.get_num_threads()}; {workers} decoding thread(s)")
        for front_end in FRONT_ENDS:  # warm-up: first calls allocate and pick kernels
            valor_literal.extract_clip(min((data / "raw_videos").glob("*.mp4")), root / "warm", root / "warm",
                                       clip.model, clap.model, clap.extractor, clip.device, None, front_end)
        run_ours(data, root / "warm-ours", clip, clap, device, args.batch_clips, workers)

        best: dict[str, Run] = {}
        how, report = "", None
        for _ in range(args.repeats):  # the paths take turns; the best time of each counts
            for front_end in FRONT_ENDS:
                run, how = run_literal(data, root / f"work-{front_end}", clip, clap, device, front_end)
                key = f"literal_{front_end}"
                best[key] = min(best.get(key, run), run, key=lambda r: r.seconds)
            run, report = run_ours(data, root / "ours", clip, clap, device, args.batch_clips, workers)
            best["ours"] = min(best.get("ours", run), run, key=lambda r: r.seconds)
        if report.failed or report.written != n:
            print(f"extraction failed: {report.failed}")
            return 1
        eq = equality(data, root / "ours", root / "work-transformers", clip, clap)
        started = time.perf_counter()
        write_captions(root / "captions", CLASSES, clip, clap)  # part of every run of ours: timed alone too
        captions_s = time.perf_counter() - started

    load = os.getloadavg()[0]
    ours = best["ours"]
    print(f"best of {args.repeats} runs of each path (taking turns); wall s, clips/s, CPU s:")
    for front_end in FRONT_ENDS:
        lit = best[f"literal_{front_end}"]
        print(f"  literal port, {front_end + ' mel':16s} {lit.seconds:7.2f} s {n / lit.seconds:6.2f}/s "
              f"{lit.cpu:7.2f} s   ({lit.parts['visual']:.1f} s frames + CLIP, {lit.parts['audio']:.1f} s audio + "
              f"CLAP)  speed-up {lit.seconds / ours.seconds:.1f} x wall, {lit.cpu / ours.cpu:.1f} x CPU")
    print(f"  avvp-studio features           {ours.seconds:7.2f} s {n / ours.seconds:6.2f}/s {ours.cpu:7.2f} s   "
          f"(batch {args.batch_clips} clips; includes the 2 x 25 caption embeddings, {captions_s:.2f} s alone)")
    print(f"  frames of the literal port: {how}")
    speedup = best["literal_transformers"].seconds / ours.seconds
    target_note = "" if not args.real_sizes and device == "cpu" else "; the target is for tiny models on CPU"
    print(f"speed-up against the port with transformers' front end: {speedup:.1f} x "
          f"({'meets' if speedup >= TARGET else 'MISSES'} the {TARGET:.0f} x target{target_note}); "
          f"load average {load:.1f} on {os.cpu_count()} CPUs (other processes share them)")
    same = eq["same_inputs_max_abs"]
    print("same decoded inputs, max |difference| of the embeddings: "
          + ", ".join(f"{k} {v:.1e}" for k, v in same.items())
          + f" ({'all <=' if eq['same_embeddings'] else 'NOT all <='} {TOL:.0e})")
    print(f"files of both runs (JPEG round trip in the literal frames), max |difference|: visual "
          f"{eq['files_max_abs']['visual']:.1e}, audio {eq['files_max_abs']['audio']:.1e}")
    figures = {"videos": source, "clips": n, "models": size, "device": device, "frames_literal": how,
               "repeats": args.repeats, "runs": {k: asdict(v) for k, v in best.items()}, "captions_s": captions_s,
               "speedup": speedup, "speedup_vs_torchaudio_front_end": best["literal_torchaudio"].seconds / ours.seconds,
               "target": TARGET, **eq, "batch_clips": args.batch_clips, "workers": workers,
               "torch_threads": torch.get_num_threads(), "load_average": load, "cpus": os.cpu_count(),
               "python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine()}
    save("extract_real_sizes" if args.real_sizes else "extract", figures)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")
    return 0 if eq["same_embeddings"] else 1


if __name__ == "__main__":
    sys.exit(main())
