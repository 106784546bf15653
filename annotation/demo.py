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
"""
from __future__ import annotations

import json
import math
import string
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

import av
import numpy as np

from annotation.grid import empty_grid, from_pseudo_layout, runs, to_pseudo_layout
from annotation.llp_csv import dense_grids, read_dense_csv, read_weak_csv, write_dense_csv, write_weak_csv
from annotation.media import frame_to_segment
from annotation.taxonomy import CLASS_INDEX, COLOURS, NUM_CLASSES, NUM_SEGMENTS, hex_to_rgb

FORMAT_VERSION = 1
MANIFEST = "demo_manifest.json"
SPLITS = ("train", "val", "test")
WEAK_FILES = {"train": "AVVP_train.csv", "val": "AVVP_val_pd.csv", "test": "AVVP_test_pd.csv"}
WIDTH, HEIGHT, FPS = 160, 128, 12
AUDIO_RATE = 22050
# feature folder -> (rows per clip, dimension, driven by track)
FEATURES = {
    "feats/vggish": (10, 128, "audio"),
    "feats/res152": (80, 2048, "visual"),
    "feats/r2plus1d_18": (10, 512, "visual"),
    "CLIP/features": (10, 768, "visual"),
    "CLAP/features": (10, 512, "audio"),
}
PSEUDO_DIRS = {"visual": "CLIP/segment_pseudo_labels", "audio": "CLAP/segment_pseudo_labels"}

ProgressFn = Callable[[int, int, str], None]


class DemoError(ValueError):
    """The demo cannot be built where asked (e.g. a non-empty folder that is not a demo)."""


@dataclass(frozen=True, eq=False)
class DemoClip:
    """One synthetic clip: its true timelines and its pseudo-labels, all (25, 10) uint8 grids."""

    filename: str
    split: str
    audio: np.ndarray
    visual: np.ndarray
    audio_pseudo: np.ndarray
    visual_pseudo: np.ndarray

    @property
    def video_id(self) -> str:
        return self.filename[:11]

    @property
    def weak(self) -> tuple[int, ...]:
        """Weak label = union of the classes on either track."""
        return tuple(int(c) for c in np.flatnonzero((self.audio | self.visual).any(axis=1)))


@dataclass(frozen=True)
class DemoSummary:
    out_dir: Path
    train: int
    val: int
    test: int
    empty_visual_train: int
    built: bool  # False when an existing complete demo was reused


# --------------------------------------------------------------------------- plan


def split_sizes(clips: int) -> tuple[int, int, int, int]:
    """(train, val, test, empty-visual-pseudo train clips); 32 -> (20, 6, 6, 4)."""
    if clips < 3:
        raise DemoError(f"need at least 3 clips (one per split), got {clips}")
    held_out = max(1, round(clips * 6 / 32))
    train = clips - 2 * held_out
    return train, held_out, held_out, max(1, math.ceil(train * 0.2))


def _video_ids(rng: np.random.Generator, count: int) -> list[str]:
    """Unique 11-char ids; some carry '_' and '-' (one starts with '-', one ends with '_')."""
    plain = string.ascii_letters + string.digits
    ids: list[str] = []
    while len(ids) < count:
        i = len(ids)
        chars = list(rng.choice(list(plain), 11))
        if i % 3 == 0:
            chars[int(rng.integers(1, 10))] = "_"
        if i % 4 == 1:
            chars[int(rng.integers(1, 10))] = "-"
        if i == 1:
            chars[0] = "-"
        if i == 2:
            chars[10] = "_"
        vid = "".join(chars)
        if vid not in ids:
            ids.append(vid)
    return ids


def _random_row(rng: np.random.Generator, shortest: int, longest: int) -> np.ndarray:
    row = np.zeros(NUM_SEGMENTS, np.uint8)
    for _ in range(1 if rng.random() < 0.7 else 2):
        length = int(rng.integers(shortest, longest + 1))
        onset = int(rng.integers(0, NUM_SEGMENTS - length + 1))
        row[onset : onset + length] = 1
    return row


def _misaligned(rng: np.random.Generator, row: np.ndarray) -> np.ndarray:
    """The visual run of a sound source: often seen a little before/after it is heard, sometimes shifted."""
    if rng.random() < 0.3:
        return row.copy()
    out = np.zeros_like(row)
    for onset, offset in runs(row):
        shift = int(rng.integers(-2, 3)) if rng.random() < 0.3 else 0
        on = max(0, onset + shift - int(rng.integers(0, 2)))
        off = min(NUM_SEGMENTS, offset + shift + int(rng.integers(0, 3)))
        out[on : max(off, on + 1)] = 1
    return out


def _timeline(rng: np.random.Generator, visual_gap: bool) -> tuple[np.ndarray, np.ndarray]:
    """True (audio, visual) grids: 1-3 classes per track, shared and track-only classes."""
    n_shared = int(rng.choice([0, 1, 2], p=[0.2, 0.55, 0.25]))
    n_audio_only = int(rng.random() < 0.5)
    n_visual_only = int(rng.random() < 0.35)
    if n_shared + n_audio_only == 0:
        n_audio_only = 1
    if n_shared + n_visual_only == 0:
        n_visual_only = 1
    pool = [int(c) for c in rng.permutation(NUM_CLASSES)]
    speech = CLASS_INDEX["Speech"]
    if n_audio_only and rng.random() < 0.5:  # Speech heard but not seen, as so often in LLP
        pool.remove(speech)
        pool.insert(n_shared, speech)
    shared = pool[:n_shared]
    audio_only = pool[n_shared : n_shared + n_audio_only]
    visual_only = pool[n_shared + n_audio_only : n_shared + n_audio_only + n_visual_only]

    audio, visual = empty_grid(), empty_grid()
    for cls in shared:
        audio[cls] = _random_row(rng, 1, 6)
        visual[cls] = _misaligned(rng, audio[cls])
    for cls in audio_only:
        audio[cls] = _random_row(rng, 1, 6)
    for cls in visual_only:
        visual[cls] = _random_row(rng, 3, 10)
    _blank(rng, audio, 1, 3)  # every clip has a silent stretch
    if visual_gap:
        _blank(rng, visual, 1, 2)
    return audio, visual


def _blank(rng: np.random.Generator, grid: np.ndarray, shortest: int, longest: int) -> None:
    """Blank all classes over a random stretch; a class left with nothing keeps one segment outside it."""
    present = np.flatnonzero(grid.any(axis=1))
    length = int(rng.integers(shortest, longest + 1))
    onset = int(rng.integers(0, NUM_SEGMENTS - length + 1))
    grid[:, onset : onset + length] = 0
    outside = [t for t in range(NUM_SEGMENTS) if not onset <= t < onset + length]
    for cls in present:
        if not grid[cls].any():
            grid[cls, int(rng.choice(outside))] = 1


def _noisy_pseudo(
    rng: np.random.Generator,
    truth: np.ndarray,
    weak: np.ndarray,
    other_only: Iterable[int],
    miss_class: float,
    miss_segment: float,
    false_pos: float,
) -> np.ndarray:
    """Truth degraded like real CLIP/CLAP pseudo-labels, then masked by the weak label (VALOR rule)."""
    out = empty_grid()
    for cls in np.flatnonzero(truth.any(axis=1)):
        if rng.random() < miss_class:
            continue
        for onset, offset in runs(truth[cls]):
            on = min(NUM_SEGMENTS - 1, max(0, onset + int(rng.choice([-1, 0, 0, 1]))))
            off = min(NUM_SEGMENTS, max(on + 1, offset + int(rng.choice([-1, 0, 0, 1]))))
            out[cls, on:off] = 1
        out[cls] &= (rng.random(NUM_SEGMENTS) >= miss_segment).astype(np.uint8)
    for cls in other_only:  # the class is in the weak label but happens on the other track
        if rng.random() < false_pos:
            length = int(rng.integers(1, 4))
            onset = int(rng.integers(0, NUM_SEGMENTS - length + 1))
            out[cls, onset : onset + length] = 1
    return out & weak


def plan_demo(clips: int = 32, seed: int = 0) -> list[DemoClip]:
    """Ids, splits, true timelines and pseudo-labels of every clip (no files); deterministic in (clips, seed)."""
    n_train, n_val, n_test, n_empty = split_sizes(clips)
    timeline_rng, pseudo_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    ids = _video_ids(timeline_rng, clips)
    splits = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    empty_visual = {int(i) for i in pseudo_rng.choice(n_train, n_empty, replace=False)}
    plan = []
    for i, (vid, split) in enumerate(zip(ids, splits)):
        start = int(timeline_rng.integers(0, 30)) * 10
        audio, visual = _timeline(timeline_rng, visual_gap=i % 2 == 0)
        weak = np.repeat((audio | visual).any(axis=1, keepdims=True), NUM_SEGMENTS, axis=1).astype(np.uint8)
        a_cls, v_cls = set(np.flatnonzero(audio.any(axis=1))), set(np.flatnonzero(visual.any(axis=1)))
        a_pseudo = _noisy_pseudo(pseudo_rng, audio, weak, sorted(v_cls - a_cls), 0.12, 0.08, 0.3)
        v_pseudo = _noisy_pseudo(pseudo_rng, visual, weak, sorted(a_cls - v_cls), 0.1, 0.1, 0.35)
        if i in empty_visual:
            v_pseudo = empty_grid()  # CLIP saw nothing: the clips annotators fix (MUG)
        elif not v_pseudo.any():
            cls = min(v_cls)
            v_pseudo[cls] = visual[cls]
        plan.append(DemoClip(f"{vid}_{start}_{start + 10}", split, audio, visual, a_pseudo, v_pseudo))
    return plan


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


# --------------------------------------------------------------------------- audio


# class -> (kind, frequency Hz, modulation Hz): a distinct timbre per class.
_TIMBRES: tuple[tuple[str, float, float], ...] = (
    ("tone", 140, 4.0), ("noise", 300, 0.5), ("noise", 1500, 3.0), ("pulse", 450, 1.7), ("tone", 700, 1.5),
    ("noise", 5000, 9.0), ("thump", 150, 2.0), ("tone", 3100, 2.0), ("tone", 110, 0.0), ("tone", 130, 5.0),
    ("pulse", 392, 4.0), ("tone", 330, 5.5), ("tone", 900, 0.8), ("tone", 660, 6.0), ("noise", 2500, 0.0),
    ("pulse", 500, 5.0), ("tone", 262, 0.0), ("tone", 60, 0.0), ("tone", 90, 20.0), ("noise", 200, 12.0),
    ("pulse", 196, 3.0), ("tone", 1200, 20.0), ("tone", 450, 1.0), ("noise", 1000, 25.0), ("thump", 2000, 3.0),
)


@lru_cache(maxsize=NUM_CLASSES)
def _class_sound(cls: int, rate: int = AUDIO_RATE) -> np.ndarray:
    """A 10 s loop of class `cls`'s sound at a common loudness (fixed per class, independent of the seed)."""
    kind, freq, mod = _TIMBRES[cls]
    n = int(NUM_SEGMENTS * rate)
    t = np.arange(n) / rate
    rng = np.random.default_rng(1000 + cls)
    if kind == "tone":  # harmonic tone, class-specific pitch, vibrato and tremolo
        vibrato = 1.0 + 0.01 * np.sin(2 * np.pi * 5.0 * t)
        phase = 2 * np.pi * freq * np.cumsum(vibrato) / rate
        n_harm = max(1, min(8, int(4000 // freq)))
        wave = sum(np.sin(k * phase) / k for k in range(1, n_harm + 1))
        if mod:
            wave = wave * (0.6 + 0.4 * np.sin(2 * np.pi * mod * t))
    elif kind == "noise":  # band-passed noise around `freq`, amplitude-modulated
        spectrum = np.fft.rfft(rng.normal(size=n))
        f = np.fft.rfftfreq(n, 1 / rate)
        spectrum *= np.exp(-0.5 * ((f - freq) / (0.4 * freq)) ** 2)
        wave = np.fft.irfft(spectrum, n)
        if mod:
            wave = wave * (0.6 + 0.4 * np.sin(2 * np.pi * mod * t))
    else:  # repeated decaying bursts: plucks/barks ("pulse") or knocks/claps ("thump")
        since = (t * mod) % 1.0 / mod
        decay = np.exp(-since * (25.0 if kind == "pulse" else 20.0))
        carrier = np.sin(2 * np.pi * freq * t) if kind == "pulse" else rng.normal(size=n)
        wave = carrier * decay
    wave = np.asarray(wave, np.float64)
    # Same loudness for every class (RMS 0.3), peaks softly limited to 1.
    return np.tanh(wave * (0.3 / np.sqrt(np.mean(wave**2)))).astype(np.float32)


def _envelope(row: np.ndarray, rate: int) -> np.ndarray:
    """0/1 per segment -> per sample, with 10 ms linear ramps at the boundaries so onsets do not click."""
    half = rate // 200
    knots = np.arange(NUM_SEGMENTS) * rate
    xp = np.stack([knots + half, knots + rate - half], axis=1).ravel()
    fp = np.repeat(row.astype(np.float32), 2)
    return np.interp(np.arange(NUM_SEGMENTS * rate), xp, fp).astype(np.float32)


def render_audio(rng: np.random.Generator, audio: np.ndarray, rate: int = AUDIO_RATE) -> np.ndarray:
    """Mono waveform following the audio timeline; a low noise floor where nothing sounds."""
    n = NUM_SEGMENTS * rate
    wave = rng.normal(0.0, 0.002, n).astype(np.float32)
    for cls in np.flatnonzero(audio.any(axis=1)):
        sound = np.roll(_class_sound(int(cls), rate), int(rng.integers(0, n)))
        wave += 0.25 * sound * _envelope(audio[cls], rate)
    return np.clip(wave, -1.0, 1.0)


# --------------------------------------------------------------------------- video

_BACKGROUND = np.array((32, 32, 40), np.uint8)
_TICK_ON, _TICK_OFF = np.array((72, 72, 84), np.uint8), np.array((44, 44, 52), np.uint8)
_CELL_W, _CELL_H = WIDTH // 5, (HEIGHT - 8) // 5  # 5 x 5 class cells above an 8-px segment counter


@lru_cache(maxsize=None)
def _shape_mask(cls: int) -> np.ndarray:
    """A (CELL_H - 4, CELL_W - 6) mask: circle, square, triangle, diamond or cross, varying by class."""
    h, w = _CELL_H - 4, _CELL_W - 6
    y, x = np.mgrid[0:h, 0:w]
    u, v = (x - (w - 1) / 2) / (w / 2), (y - (h - 1) / 2) / (h / 2)  # -1..1
    kind = (cls + cls // 5) % 5
    if kind == 0:
        mask = u**2 + v**2 <= 1.0
    elif kind == 1:
        mask = np.ones((h, w), bool)
    elif kind == 2:
        mask = np.abs(u) <= (v + 1) / 2
    elif kind == 3:
        mask = np.abs(u) + np.abs(v) <= 1.0
    else:
        mask = (np.abs(u) <= 0.35) | (np.abs(v) <= 0.35)
    return mask


def render_frame(visible: Iterable[int], segment: int, t: float) -> np.ndarray:
    """RGB (HEIGHT, WIDTH, 3): each visible class as its shape in its cell and colour, gently swaying."""
    frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    frame[:] = _BACKGROUND
    for cls in visible:
        mask = _shape_mask(cls)
        dx = int(round(2 * math.sin(2 * math.pi * 0.5 * t + cls)))
        y0 = (cls // 5) * _CELL_H + 2
        x0 = (cls % 5) * _CELL_W + 3 + dx
        frame[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]][mask] = hex_to_rgb(COLOURS[cls])
    tick_w = WIDTH // NUM_SEGMENTS
    for s in range(NUM_SEGMENTS):
        frame[HEIGHT - 6 : HEIGHT - 2, s * tick_w + 1 : (s + 1) * tick_w - 1] = _TICK_ON if s <= segment else _TICK_OFF
    return frame


@lru_cache(maxsize=1)
def h264_encoder() -> str:
    """The first H.264 encoder of this PyAV build that actually opens (libx264 where present)."""
    candidates = ("libx264", "libopenh264", "h264_videotoolbox", "h264_mf", "h264_nvenc", "h264_qsv", "h264_amf", "h264_v4l2m2m")
    for name in candidates:
        if name not in av.codecs_available:
            continue
        try:
            ctx = av.CodecContext.create(name, "w")
            ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = WIDTH, HEIGHT, "yuv420p", Fraction(1, FPS)
            ctx.open()
            return name
        except Exception:  # hardware encoders fail to open without their device
            continue
    raise DemoError("this PyAV build has no working H.264 encoder (tried " + ", ".join(candidates) + ")")


def write_mp4(path: Path, visual: np.ndarray, wave: np.ndarray, rate: int = AUDIO_RATE) -> None:
    """H.264 + AAC mp4 of the visual timeline and the waveform, packets interleaved by time."""
    encoder = h264_encoder()
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), "w", format="mp4") as container:
        vstream = container.add_stream(encoder, rate=FPS)
        vstream.width, vstream.height, vstream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        vstream.gop_size = 2 * FPS
        if encoder == "libx264":
            vstream.options = {"crf": "20", "preset": "veryfast"}
        astream = container.add_stream("aac", rate=rate, layout="mono")
        astream.bit_rate = 48000
        chunk = 1024
        n_frames, next_sample = NUM_SEGMENTS * FPS, 0
        for i in range(n_frames + 1):
            until = len(wave) if i == n_frames else int(i * rate / FPS)
            while next_sample < until:  # audio up to this frame's time first
                piece = np.ascontiguousarray(wave[None, next_sample : next_sample + chunk])
                frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout="mono")
                frame.rate, frame.pts, frame.time_base = rate, next_sample, Fraction(1, rate)
                container.mux(astream.encode(frame))
                next_sample += piece.shape[1]
            if i < n_frames:
                seg = frame_to_segment(i, FPS)
                image = render_frame(np.flatnonzero(visual[:, seg]), seg, i / FPS)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, FPS)
                container.mux(vstream.encode(frame))
        container.mux(vstream.encode(None))
        container.mux(astream.encode(None))
    tmp.replace(path)


# --------------------------------------------------------------------------- build


def _expected_files(plan: list[DemoClip]) -> list[str]:
    files = [*WEAK_FILES.values(), "AVVP_eval_audio.csv", "AVVP_eval_visual.csv"]
    files += ["demo_truth/audio.csv", "demo_truth/visual.csv", "README.txt"]
    for clip in plan:
        vid = clip.video_id
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
"""


def build_demo(
    out_dir: str | Path, clips: int = 32, seed: int = 0, progress: ProgressFn | None = None, force: bool = False
) -> DemoSummary:
    """Write the demo dataset into `out_dir` (the LLP `data/` folder); reuse it if already complete.

    Refuses a non-empty folder that is not a demo, so real data is never overwritten.
    """
    out_dir = Path(out_dir)
    plan = plan_demo(clips, seed)
    n_train, n_val, n_test, n_empty = split_sizes(clips)
    summary = DemoSummary(out_dir, n_train, n_val, n_test, n_empty, built=True)
    params = {"format": FORMAT_VERSION, "clips": clips, "seed": seed}
    files = _expected_files(plan)
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
    for folder in ["raw_videos", "demo_truth", *FEATURES, *PSEUDO_DIRS.values()]:
        (out_dir / folder).mkdir(parents=True, exist_ok=True)

    table_rng, feature_rng, media_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, 1]).spawn(3))
    tables = {folder: table_rng.normal(0.0, 1.0, (NUM_CLASSES, dim)).astype(np.float32) for folder, (_, dim, _) in FEATURES.items()}
    total = len(plan) + 1
    for done, clip in enumerate(plan):
        vid = clip.video_id
        for folder, feat in _features(feature_rng, tables, clip).items():
            np.save(out_dir / folder / f"{vid}.npy", feat)
        np.save(out_dir / PSEUDO_DIRS["audio"] / f"{vid}.npy", to_pseudo_layout(clip.audio_pseudo))
        np.save(out_dir / PSEUDO_DIRS["visual"] / f"{vid}.npy", to_pseudo_layout(clip.visual_pseudo))
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
