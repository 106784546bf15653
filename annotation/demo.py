"""A synthetic LLP-layout dataset that the project makes itself (`avvp-studio demo`).

Why: every feature of the program (import, triage, the player, training,
evaluation) can be tried and tested without downloading LLP. Each clip has a
known audio and visual timeline; the mp4 pictures and sounds, the features and
the (noisy) pseudo-labels are all derived from it, and the full truth of every
clip (train included) is kept in `demo_truth/` so pseudo-label quality can be
measured.

The folder is the LLP `data/` folder (see `build_demo`). Everything is drawn
from one numpy Generator per purpose, seeded by `seed`, so a build is
reproducible bit for bit apart from the mp4 encoder's own output.

This module writes the folder (features, pseudo-label files, CSVs, manifest);
`annotation.demo_plan` decides what the clips are and `annotation.demo_media`
draws their pictures and sounds. Their public names are importable from here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from annotation.demo_media import (  # noqa: F401 (re-exported: the demo's public API)
    AUDIO_RATE, FPS, HEIGHT, WIDTH, h264_encoder, render_audio, render_frame, write_mp4,
)
from annotation.demo_plan import DemoClip, DemoError, plan_demo, split_sizes  # noqa: F401 (re-exported)
from annotation.grid import from_pseudo_layout, to_pseudo_layout
from annotation.llp_csv import dense_grids, read_dense_csv, read_weak_csv, write_dense_csv, write_weak_csv
from annotation.taxonomy import NUM_CLASSES, NUM_SEGMENTS

FORMAT_VERSION = 2  # 2: caption embeddings (text/)
MANIFEST = "demo_manifest.json"
SPLITS = ("train", "val", "test")
WEAK_FILES = {"train": "AVVP_train.csv", "val": "AVVP_val_pd.csv", "test": "AVVP_test_pd.csv"}
# feature folder -> (rows per clip, dimension, driven by track)
FEATURES = {
    "feats/vggish": (10, 128, "audio"),
    "feats/res152": (80, 2048, "visual"),
    "feats/r2plus1d_18": (10, 512, "visual"),
    "CLIP/features": (10, 768, "visual"),
    "CLAP/features": (10, 512, "audio"),
}
PSEUDO_DIRS = {"visual": "CLIP/segment_pseudo_labels", "audio": "CLAP/segment_pseudo_labels"}
# caption embeddings of the 25 classes, as a text encoder would give them: each class row of the
# CLAP/CLIP feature table mixed with the row of one other class (a confusable partner) and blurred,
# so zero-shot priors from them are good (segment F1 about 0.7-0.8 on the 600-clip demo), not the truth
CAPTIONS = {"text/clap_captions.npy": "CLAP/features", "text/clip_captions.npy": "CLIP/features"}
CAPTION_PARTNER, CAPTION_CONFUSION, CAPTION_NOISE = 7, 0.8, 3.0  # partner of class c: (c + 7) mod 25

ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class DemoSummary:
    out_dir: Path
    train: int
    val: int
    test: int
    empty_visual_train: int
    built: bool  # False when an existing complete demo was reused


# --------------------------------------------------------------------------- features


def _features(rng: np.random.Generator, tables: dict[str, np.ndarray], clip: DemoClip) -> dict[str, np.ndarray]:
    """Per folder: sum of class embeddings active in each row + a clip background + gaussian noise."""
    out = {}
    for folder, (rows, dim, track) in FEATURES.items():
        active = (clip.audio if track == "audio" else clip.visual).T.astype(np.float32)  # (10, 25)
        active = np.repeat(active, rows // NUM_SEGMENTS, axis=0)
        background = rng.normal(0.0, 0.5, dim).astype(np.float32)
        feat = active @ tables[folder] + background + rng.normal(0.0, 0.5, (rows, dim)).astype(np.float32)
        if folder == "CLIP/features":
            feat /= np.linalg.norm(feat, axis=1, keepdims=True)
        out[folder] = feat.astype(np.float32)
    return out


# --------------------------------------------------------------------------- build


def _expected_files(plan: list[DemoClip], videos: bool = True) -> list[str]:
    files = [*WEAK_FILES.values(), "AVVP_eval_audio.csv", "AVVP_eval_visual.csv"]
    files += ["demo_truth/audio.csv", "demo_truth/visual.csv", "README.txt", *CAPTIONS]
    for clip in plan:
        vid = clip.video_id
        if videos:
            files.append(f"raw_videos/{vid}.mp4")
        files += [f"{folder}/{vid}.npy" for folder in [*FEATURES, *PSEUDO_DIRS.values()]]
    return files


def _read_manifest(out_dir: Path) -> dict | None:
    try:
        return json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_manifest(out_dir: Path, params: dict, files: list[str], complete: bool) -> None:
    data = {"generator": "avvp-studio demo", **params, "complete": complete, "files": files}
    tmp = out_dir / (MANIFEST + ".part")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out_dir / MANIFEST)


_README = """\
AVVP Studio demo dataset -- SYNTHETIC, not LLP.

Made by `avvp-studio demo` (clips={clips}, seed={seed}). The layout is the one of the
LLP `data/` folder used by the public AVVP code, so every part of AVVP Studio can be
tried without downloading LLP. Nothing here is real footage or real sound:

- raw_videos/<id>.mp4: H.264 + AAC, {w}x{h} at {fps} fps, 10 s. Each visible class is a
  shape in its own cell, drawn in its AVVP Studio colour; each audible class is a
  synthetic sound with its own timbre (tone, filtered noise or bursts).
- AVVP_train.csv, AVVP_val_pd.csv, AVVP_test_pd.csv: weak labels (union of both tracks).
- AVVP_eval_audio.csv, AVVP_eval_visual.csv: dense truth of the val and test clips.
- demo_truth/audio.csv, demo_truth/visual.csv: dense truth of EVERY clip (train too),
  to measure pseudo-label quality.
- feats/, CLIP/features, CLAP/features: class embeddings of the active classes + noise.
- CLIP/ and CLAP/segment_pseudo_labels: truth degraded by jitter, misses and false
  positives, restricted to the weak label (VALOR rule); {empty} train clips have an
  all-zero visual pseudo-label, the case annotators fix by hand.
- text/clap_captions.npy, text/clip_captions.npy: (25, d) caption embeddings of the
  classes (the feature tables' class rows, blurred), for PLSIM and for zero-shot priors:
  avvp-studio prior --data DIR --text-audio DIR/text/clap_captions.npy --text-visual DIR/text/clip_captions.npy
"""


def build_demo(
    out_dir: str | Path, clips: int = 32, seed: int = 0, progress: ProgressFn | None = None, force: bool = False,
    videos: bool = True,
) -> DemoSummary:
    """Write the demo dataset into `out_dir` (the LLP `data/` folder); reuse it if already complete.

    Refuses a non-empty folder that is not a demo, so real data is never overwritten.
    `videos=False` skips the mp4 files (most of the build time): a training-sized demo
    of hundreds of clips then builds in seconds.
    """
    out_dir = Path(out_dir)
    plan = plan_demo(clips, seed)
    n_train, n_val, n_test, n_empty = split_sizes(clips)
    summary = DemoSummary(out_dir, n_train, n_val, n_test, n_empty, built=True)
    params = {"format": FORMAT_VERSION, "clips": clips, "seed": seed, "videos": videos}
    files = _expected_files(plan, videos)
    manifest = _read_manifest(out_dir)
    if manifest is None:
        if out_dir.exists() and any(out_dir.iterdir()):
            raise DemoError(f"{out_dir} is not empty and holds no demo ({MANIFEST}); choose an empty or new folder")
    elif not force and manifest.get("complete") and all(manifest.get(k) == v for k, v in params.items()):
        if all((out_dir / f).is_file() for f in files):
            return DemoSummary(out_dir, n_train, n_val, n_test, n_empty, built=False)
    if manifest is not None:  # remove what an earlier demo build wrote, nothing else
        for rel in manifest.get("files", []):
            target = out_dir / rel
            if target.is_file() and out_dir.resolve() in target.resolve().parents:
                target.unlink()

    out_dir.mkdir(parents=True, exist_ok=True)
    _write_manifest(out_dir, params, files, complete=False)
    for folder in ["raw_videos"] * videos + ["demo_truth", "text", *FEATURES, *PSEUDO_DIRS.values()]:
        (out_dir / folder).mkdir(parents=True, exist_ok=True)

    table_rng, feature_rng, media_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, 1]).spawn(3))
    tables = {folder: table_rng.normal(0.0, 1.0, (NUM_CLASSES, dim)).astype(np.float32) for folder, (_, dim, _) in FEATURES.items()}
    caption_rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    for name, folder in CAPTIONS.items():
        table = tables[folder]
        mixed = table + CAPTION_CONFUSION * np.roll(table, -CAPTION_PARTNER, axis=0)
        np.save(out_dir / name, (mixed + caption_rng.normal(0.0, CAPTION_NOISE, table.shape)).astype(np.float32))
    total = len(plan) + 1
    for done, clip in enumerate(plan):
        vid = clip.video_id
        for folder, feat in _features(feature_rng, tables, clip).items():
            np.save(out_dir / folder / f"{vid}.npy", feat)
        np.save(out_dir / PSEUDO_DIRS["audio"] / f"{vid}.npy", to_pseudo_layout(clip.audio_pseudo))
        np.save(out_dir / PSEUDO_DIRS["visual"] / f"{vid}.npy", to_pseudo_layout(clip.visual_pseudo))
        if videos:
            write_mp4(out_dir / "raw_videos" / f"{vid}.mp4", clip.visual, render_audio(media_rng, clip.audio))
        if progress is not None:
            progress(done + 1, total, f"clip {clip.filename} ({clip.split})")

    for split, name in WEAK_FILES.items():
        write_weak_csv(out_dir / name, {c.filename: c.weak for c in plan if c.split == split})
    held_out = [c for c in plan if c.split != "train"]
    write_dense_csv(out_dir / "AVVP_eval_audio.csv", {c.filename: c.audio for c in held_out})
    write_dense_csv(out_dir / "AVVP_eval_visual.csv", {c.filename: c.visual for c in held_out})
    write_dense_csv(out_dir / "demo_truth/audio.csv", {c.filename: c.audio for c in plan})
    write_dense_csv(out_dir / "demo_truth/visual.csv", {c.filename: c.visual for c in plan})
    (out_dir / "README.txt").write_text(
        _README.format(clips=clips, seed=seed, w=WIDTH, h=HEIGHT, fps=FPS, empty=n_empty), encoding="utf-8"
    )
    _write_manifest(out_dir, params, files, complete=True)
    if progress is not None:
        progress(total, total, "CSV files")
    return summary


def read_demo_truth(out_dir: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(audio, visual) true grids of every demo clip by filename, from demo_truth/ and the train CSV.

    Clips without rows on a track get an all-zero grid.
    """
    out_dir = Path(out_dir)
    names = [row.filename for name in WEAK_FILES.values() for row in read_weak_csv(out_dir / name)]
    grids = []
    for track in ("audio", "visual"):
        rows = read_dense_csv(out_dir / "demo_truth" / f"{track}.csv")
        grids.append(dict(zip(names, dense_grids(rows, names))))
    return grids[0], grids[1]


def read_pseudo(out_dir: str | Path, video_id: str, track: str) -> np.ndarray:
    """A demo pseudo-label file back as a (25, 10) grid."""
    return from_pseudo_layout(np.load(Path(out_dir) / PSEUDO_DIRS[track] / f"{video_id}.npy"))
