"""Per-segment CLIP image and CLAP audio embeddings from raw videos, the way VALOR extracted them.

VALOR's published procedure (github.com/Franklin905/VALOR, files at HEAD 2677da9), and what is done here:

Frames (`utils/extract_frames.py` l.5-12, `utils/clip_preprocess.py` l.63-70):
- `ffmpeg -i VIDEO -y -r 8 DIR/%06d.jpg`: `-r 8` is an OUTPUT option, so ffmpeg's own constant-frame-rate
  sync (fftools `do_video_out`, VSYNC_CFR for the image2 muxer; the `fps` filter it once had for `-r` is
  disabled there by `if (ost->frame_rate.num && 0)`) duplicates and drops frames. Its choice differs from
  libavfilter's `fps=8` filter: on the real LLP clip BjCEufrlXm4 (29.917 fps, 300 frames) `-r 8` writes
  82 JPEGs, the `fps=8` filter 80, so the 10 picks differ. `rate_frames` re-implements that sync
  arithmetic on the stream's timestamps (ts offset, float pts in 1/8 s with ffmpeg's 1/2^17 nudge, the
  +-1.1 thresholds, the frame duration from the guessed rate or the packet duration, the end-of-stream
  median) and was checked frame for frame against the `ffmpeg -r 8` JPEGs of ffmpeg 5.1.9 (the same
  `do_video_out` code as VALOR's ffmpeg 4.2.2, environment.yaml) on the real clip, a demo video (12 fps)
  and test videos at 5, 12, 24, 25, 29.97, 29.917 and 60 fps with and without an audio stream
  (tests/test_extract.py repeats the check where the ffmpeg command exists). Frames are decoded by PyAV,
  from one demuxing pass: the picks come from the packets' timestamps, and only they are converted to RGB.
- the 10 frames: `round(linspace(0, N - 1, 10))` of the N JPEGs (clip_preprocess.py l.64).
- differences: no JPEG round trip (frames go from the decoder straight to the model; ffmpeg's default
  mjpeg quality would add compression noise); display-rotation metadata is not applied (ffmpeg's
  autorotate would; LLP's YouTube clips carry none).
Preprocessing (clip_preprocess.py l.52-54, torchvision 0.13.1): ToTensor, Resize((224, 224)) on the
tensor (bilinear, no antialias: torchvision 0.13 defaults antialias to False for tensors; no centre crop,
the aspect ratio is not kept), Normalize with CLIP's mean/std; done in `inference.encoders.clip`.
Embedding: `get_image_features`, then L2-normalised (l.190-191): (10, 768) for ViT-L/14.

Audio (`utils/clap_preprocess.py` l.75-100):
- `librosa.load(path, sr=48000)`: mono (channel mean) at 48 kHz. Here PyAV decodes and libswresample
  resamples (`annotation.media.decode_audio`, channel mean); librosa used audioread + soxr_hq, so samples
  differ slightly; the length N agrees on the real clip (libswresample with flush gave ceil(n * 48000 /
  rate) = 480,375 samples on BjCEufrlXm4, the size librosa's fix_length sets; not forced in general).
- segments: `samples = round(linspace(0, N, 11))`, `step = N // 10`, segment i = [samples[i],
  samples[i] + step) (`audio_bounds`; equal lengths, starts rounded half to even).
- CLAP front end (laion_clap `get_audio_embedding_from_data`): int16 quantisation, 'repeatpad' of each
  1-s segment to 10 s (480,000 samples), 'fusion' mel; see `inference.encoders.clap`.
- VALOR's own CLAP/features files are (64, 768) HTS-AT feature maps of the whole clip (l.184-215); the
  (10, 512) per-segment embeddings written here are the ones VALOR computes for its audio pseudo-labels.

Dense-event folders (UnAV-100 videos of any length, T one-second segments from dense_events.json): the
same rules with T instead of 10: `round(linspace(0, N - 1, T))` of the 8 fps frames, T equal audio parts.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from annotation.errors import DataFileError
from annotation.files import child_path, folder_lock, present, replace_file
from annotation.media import MediaError, decode_audio
from annotation.npyfile import npy_bytes, npy_shape
from inference.priors import CAPTION_FILES, CAPTIONS_JSON, FEATURE_DIRS

FPS = 8  # extract_frames.py l.8: "-r 8"
AUDIO_RATE = 48_000  # clap_preprocess.py l.86: librosa.load(..., sr=48000)
Progress = Callable[[str, int, int], None]


# --------------------------------------------------------------------------- VALOR's arithmetic


def valor_frame_indices(n_frames_8fps: int, segments: int = 10) -> np.ndarray:
    """Indices of the frames VALOR feeds to CLIP among the N frames of the 8 fps stream:
    `np.round(np.linspace(0, N - 1, segments))` (clip_preprocess.py l.64)."""
    if n_frames_8fps <= 0 or segments <= 0:
        raise ValueError(f"need n_frames_8fps > 0 and segments > 0, got {n_frames_8fps}, {segments}")
    return np.round(np.linspace(0, n_frames_8fps - 1, segments)).astype(np.int64)


def audio_bounds(num_samples: int, segments: int = 10) -> list[tuple[int, int]]:
    """[start, end) sample bounds of VALOR's audio segments (clap_preprocess.py l.89-93): starts at
    `round(linspace(0, N, segments + 1))`, each `N // segments` samples long."""
    step = num_samples // segments if segments > 0 else 0
    if step <= 0:
        raise ValueError(f"need at least one sample per segment, got {num_samples} samples for {segments} segments")
    starts = np.round(np.linspace(0, num_samples, segments + 1)).astype(np.int64)[:-1]
    return [(int(s), int(s) + step) for s in starts]


def _rescale_near(value: int, src: Fraction, dst: Fraction) -> int:
    """av_rescale_q: value * src / dst rounded to nearest, halves away from zero."""
    exact = Fraction(value) * src / dst
    return int(math.copysign(math.floor(abs(exact) + Fraction(1, 2)), exact))


def _lrintf(x: float) -> int:
    """C lrintf: to float32, then round half to even."""
    return int(np.rint(np.float32(x)))


def rate_frames(pts: Sequence[int], time_base: Fraction, *, start_time_us: int = 0,
                guessed_rate: Fraction | None = None, durations: Sequence[int | None] | None = None,
                video_only: bool = False, rate: int = FPS) -> list[int]:
    """Which input frame each frame of `ffmpeg -i VIDEO -r RATE out/%06d.jpg` shows (index into `pts`,
    which must be sorted: the decoded frames in presentation order).

    A port of ffmpeg's constant-frame-rate video sync (fftools/ffmpeg.c `do_video_out`, 4.x-5.x):
    `start_time_us` is the container's start time (ffmpeg shifts every timestamp by it), `guessed_rate`
    the stream's av_guess_frame_rate (the filter graph's frame rate), `durations` the packet durations
    in `time_base` units, `video_only` whether the file has no other stream (then VSYNC_VSCFR)."""
    enc_tb = Fraction(1, rate)
    extra_bits = max(0, min(16, 29 - int(math.log2(enc_tb.denominator))))  # av_clip(29 - av_log2(den), 0, 16)
    fine_tb = Fraction(enc_tb.numerator, enc_tb.denominator << extra_bits)
    offset = _rescale_near(-start_time_us, Fraction(1, 1_000_000), time_base)
    base_duration = float(1 / (guessed_rate * enc_tb)) if guessed_rate else 0.0
    base_duration = min(base_duration, float(1 / (rate * enc_tb)))
    sync_opts, out, last_nb0 = 0, [], [0, 0, 0]
    for k, value in enumerate(pts):
        sync_ipts = _rescale_near(value + offset, time_base, fine_tb) / (1 << extra_bits)
        sync_ipts += (1.0 if sync_ipts > 0 else -1.0) / (1 << 17)  # FFSIGN(0) is -1
        duration = base_duration
        if durations is not None and durations[k]:
            from_packet = _lrintf(durations[k] * float(time_base) / float(enc_tb))
            if from_packet > 0:
                duration = float(from_packet)
        delta0 = sync_ipts - sync_opts
        delta = delta0 + duration
        nb0, nb = 0, 1
        if delta0 < 0 < delta:  # clipping in rate conversion
            sync_ipts, duration, delta0 = float(sync_opts), duration + delta0, 0.0
        if video_only and not out and delta0 >= 0.5:  # VSYNC_VSCFR: no duplicated initial frames
            delta, delta0, sync_opts = duration, 0.0, int(np.rint(sync_ipts))
        if delta < -1.1:
            nb = 0
        elif delta > 1.1:
            nb = _lrintf(delta)
            if delta0 > 1.1:
                nb0 = _lrintf(delta0 - 0.6)
        nb0 = min(nb0, nb)
        last_nb0 = [nb0, *last_nb0[:2]]
        out.extend(k - 1 if (i < nb0 and k > 0) else k for i in range(nb))
        sync_opts += nb
    if pts:
        out.extend([len(pts) - 1] * sorted(last_nb0)[1])  # flush: mid_pred of the last three
    return out


# --------------------------------------------------------------------------- one clip


@dataclass(frozen=True)
class FramePlan:
    """The frames VALOR's procedure picks from one video."""

    fps: float  # the stream's guessed frame rate
    source_frames: int  # decoded frames
    frames_8fps: int  # JPEGs `ffmpeg -r 8` would write (N)
    picks_8fps: list[int]  # valor_frame_indices(N, T)
    source_indices: list[int]  # the decoded frame shown by each pick
    times: list[float]  # their presentation times (s, from the container start)
    pts: list[int] = field(repr=False)  # presentation timestamps of the picked frames


@dataclass(frozen=True)
class _Video:
    """One video stream's packets (demuxed once) and the facts ffmpeg's frame-rate sync reads."""

    packets: list  # av.Packet in decoding order, discarded ones left out
    decoder: object  # the stream's codec context
    time_base: Fraction
    start_us: int  # container start time (ffmpeg shifts all timestamps by it)
    guessed: Fraction | None  # av_guess_frame_rate
    video_only: bool  # no other stream: ffmpeg then uses VSYNC_VSCFR

    def timestamps(self) -> list[tuple[int, int | None]]:
        return sorted((p.pts, p.duration) for p in self.packets if p.pts is not None)


def _demux(container, path: str | Path) -> _Video:
    if not container.streams.video:
        raise MediaError(path, "no video stream")
    stream = container.streams.video[0]
    packets = [p for p in container.demux(stream) if p.size and not p.is_discard]
    return _Video(packets, stream.codec_context, Fraction(stream.time_base), container.start_time or 0,
                  Fraction(stream.guessed_rate) if stream.guessed_rate else None, len(container.streams) == 1)


def plan_frames(path: str | Path, segments: int) -> FramePlan:
    """Read the timestamps (no decoding) and apply VALOR's frame choice."""
    try:
        with av.open(str(path)) as container:
            video = _demux(container, path)
            return _plan(video.timestamps(), video, segments)
    except av.FFmpegError as exc:
        raise MediaError(path, f"cannot read its video ({exc})") from None


def _plan(timestamps: list[tuple[int, int | None]], video: _Video, segments: int) -> FramePlan:
    pts = [p for p, _ in timestamps]
    if not pts:
        raise ValueError("no video frames")
    shown = rate_frames(pts, video.time_base, start_time_us=video.start_us, guessed_rate=video.guessed,
                        durations=[d for _, d in timestamps], video_only=video.video_only)
    picks = valor_frame_indices(len(shown), segments)
    source = [shown[i] for i in picks]
    offset = Fraction(video.start_us, 1_000_000)
    return FramePlan(float(video.guessed or 0), len(pts), len(shown), [int(i) for i in picks], source,
                     [float(pts[i] * video.time_base - offset) for i in source], [pts[i] for i in source])


def read_frames(path: str | Path, segments: int) -> tuple[np.ndarray, FramePlan]:
    """The picked frames as (segments, H, W, 3) RGB uint8 and the plan, from one pass over the file.
    Timestamps come from the packets; if the decoder's frames turn out to differ from them, the plan is
    redone on the decoded frames and the packets decoded again. H.264 pictures nobody references and
    nobody picked are not decoded (`_skippable`); any surprise in what comes out falls back to decoding all."""
    try:
        with av.open(str(path)) as container:
            video = _demux(container, path)
            plan = _plan(video.timestamps(), video, segments)
            wanted = set(plan.pts)
            skip = _skippable(video, wanted)
            frames, decoded = _decode_picks(video, wanted, skip)
            expected = [p for p, _ in video.timestamps() if p not in skip]
            if skip and ([p for p, _ in decoded] != expected or any(p not in frames for p in wanted)):
                video.decoder.flush_buffers()
                frames, decoded = _decode_picks(video, wanted, set())
                expected = [p for p, _ in video.timestamps()]
            if [p for p, _ in decoded] != expected or any(p not in frames for p in wanted):
                plan = _plan(decoded, video, segments)
                video.decoder.flush_buffers()
                frames, _ = _decode_picks(video, set(plan.pts), set())
    except av.FFmpegError as exc:
        raise MediaError(path, f"cannot decode its video ({exc})") from None
    return np.stack([frames[p] for p in plan.pts]), plan


def _nal_length_size(video: _Video) -> int | None:
    """Bytes of each NAL unit's length prefix in an MP4-style H.264 stream (avcC extradata), else None."""
    extra = video.decoder.extradata if video.decoder.name == "h264" else None
    return (extra[4] & 3) + 1 if extra and len(extra) > 6 and extra[0] == 1 else None


def _skippable(video: _Video, wanted: set[int]) -> set[int]:
    """pts of the packets the decoder may skip: unpicked H.264 pictures whose every slice has nal_ref_idc 0.
    Such a picture is by definition (H.264 7.4.1) never used to predict another, so the other pictures
    decode to the same pixels without it; the decoder is told to skip it (`skip_frame` NONREF for that
    packet only), so it still reads any parameter sets the packet carries. Only length-prefixed streams
    are parsed; anything else skips nothing."""
    size = _nal_length_size(video)
    if size is None:
        return set()
    skip = set()
    for packet in video.packets:
        if packet.pts is None or packet.pts in wanted:
            continue
        data, i, refs = bytes(packet), 0, []
        while i + size < len(data):
            length = int.from_bytes(data[i:i + size], "big")
            header = data[i + size]
            if header & 0x1F in (1, 5):  # coded slice (non-IDR, IDR); 2-4 (partitions) are never skipped
                refs.append(header & 0x60)
            elif header & 0x1F in (2, 3, 4):
                refs.append(1)
            i += size + length
        if refs and not any(refs) and i == len(data):
            skip.add(packet.pts)
    return skip


def _decode_picks(video: _Video, wanted: set[int],
                  skip: set[int]) -> tuple[dict[int, np.ndarray], list[tuple[int, int | None]]]:
    """The wanted frames (by pts) as RGB arrays, and (pts, duration) of every decoded frame; packets whose
    pts is in `skip` are decoded with skip_frame NONREF (see `_skippable`)."""
    frames, decoded = {}, []
    decoder, mode = video.decoder, "DEFAULT"
    try:
        for packet in [*video.packets, None]:  # None drains the decoder
            if skip:
                new = "NONREF" if packet is not None and packet.pts in skip else "DEFAULT"
                if new != mode:
                    decoder.skip_frame = mode = new
            for frame in decoder.decode(packet):
                if frame.pts is None:
                    continue
                decoded.append((frame.pts, frame.duration))
                if frame.pts in wanted and frame.pts not in frames:
                    frames[frame.pts] = frame.to_ndarray(format="rgb24")
    finally:
        if mode != "DEFAULT":
            decoder.skip_frame = "DEFAULT"
    return frames, sorted(decoded)


@dataclass(frozen=True)
class ClipMedia:
    """What the encoders need of one clip: its T frames and T audio segments (48 kHz mono float32)."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    audio: list[np.ndarray]  # T arrays of N // T samples
    plan: FramePlan
    num_samples: int  # N, the 48 kHz mono length
    bounds: list[tuple[int, int]]


def read_clip(path: str | Path, segments: int) -> ClipMedia:
    """Frames and audio segments of one video by VALOR's rules; MediaError names what failed."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "no such file")
    try:
        frames, plan = read_frames(path, segments)
    except ValueError as exc:
        raise MediaError(path, str(exc)) from None
    wave, _ = decode_audio(path, rate=AUDIO_RATE, mono=True)
    try:
        bounds = audio_bounds(len(wave), segments)
    except ValueError as exc:
        raise MediaError(path, f"audio too short: {exc}") from None
    return ClipMedia(frames, [wave[a:b] for a, b in bounds], plan, len(wave), bounds)


# --------------------------------------------------------------------------- a folder


@dataclass(frozen=True)
class Job:
    video_id: str
    video: Path | None
    segments: int


@dataclass
class FolderClips:
    kind: str  # "llp" or "dense"
    classes: list[str]
    jobs: list[Job]


def folder_clips(data_dir: str | Path) -> FolderClips:
    """The clips of a data folder: a dense-event folder (dense_events.json: its clips, T and video
    paths) or an LLP folder (the weak CSVs' clips, 10 segments, DIR/raw_videos/<id>.mp4)."""
    from annotation.dense_events import INDEX_FILE, read_dense_events

    root = Path(data_dir)
    if not present(root, "folder"):
        raise DataFileError(root, "no such folder; expected an LLP data folder or a dense-event folder")
    if present(root / INDEX_FILE):
        events = read_dense_events(root)
        jobs = [Job(c.video_id, Path(c.video) if c.video else None, c.segments) for c in events.clips]
        return FolderClips("dense", list(events.classes), jobs)
    from annotation.importer import WEAK_FILES
    from annotation.llp_csv import read_weak_csv
    from annotation.taxonomy import CLASSES, NUM_SEGMENTS

    names = [name for name in WEAK_FILES.values() if present(root / name)]
    if not names:
        raise DataFileError(root, f"no {INDEX_FILE} and none of the weak-label files {list(WEAK_FILES.values())}; "
                                  "expected an LLP data folder or a dense-event folder")
    ids = dict.fromkeys(row.filename[:11] for name in names for row in read_weak_csv(root / name))
    videos = root / "raw_videos"
    return FolderClips("llp", list(CLASSES), [Job(vid, child_path(videos, f"{vid}.mp4"), NUM_SEGMENTS) for vid in ids])


@dataclass
class ExtractReport:
    out: str
    kind: str
    clips: int  # in the folder
    written: int  # extracted by this run
    already_done: int  # skipped: both files present with the right shape
    failed: dict[str, str]  # video id -> why (missing or unreadable video)
    visual_encoder: str
    audio_encoder: str
    random_weights: bool
    seconds: float
    captions: dict = field(default_factory=dict)

    @property
    def clips_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "clips_per_second": self.clips_per_second}


def _done(out: Path, job: Job, dims: dict[str, int]) -> bool:
    for track, folder in FEATURE_DIRS.items():
        path = out / folder / f"{job.video_id}.npy"
        try:
            if not present(path) or npy_shape(path, "features") != (job.segments, dims[track]):
                return False
        except DataFileError:
            return False
    return True


def _write(out: Path, video_id: str, track: str, array: np.ndarray) -> None:
    replace_file(child_path(out / FEATURE_DIRS[track], f"{video_id}.npy"), npy_bytes(array.astype(np.float32)))


def _check_same_encoders(root: Path, clip_encoder, clap_encoder) -> None:
    """A clip is only skipped as done when its features come from the encoders asked for now: the caption
    files are rewritten at the end, and features of one encoder against captions of another would give
    zero-shot labels, priors and EAR's generator meaningless similarities without any error."""
    path = root / CAPTIONS_JSON
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
        before = {track: previous[track]["encoder"] for track in ("visual", "audio")}
    except (OSError, ValueError, KeyError, TypeError):
        before = None
    now = {"visual": clip_encoder.name, "audio": clap_encoder.name}
    if before != now:
        found = "no record of the encoders that made them" if before is None else (
            f"they were made by {before['visual']!r} / {before['audio']!r}")
        raise DataFileError(path, f"features exist in {root} but {found}; asked for {now['visual']!r} / "
                                  f"{now['audio']!r}: pass --force to extract every clip again with these, or --out "
                                  "another folder")


def write_captions(out: str | Path, classes: Sequence[str], clip_encoder, clap_encoder) -> dict:
    """text/clip_captions.npy, text/clap_captions.npy ((C, d) float32, L2-normalised rows, in the order of
    `classes`) and text/captions.json (prompts, logit scale, encoder of each), each replaced whole."""
    from inference.encoders import class_prompts

    out = Path(out)
    (out / "text").mkdir(parents=True, exist_ok=True)
    visual, audio, template = class_prompts(classes)
    meta = {"classes": list(classes), "template": template}
    for track, encoder, prompts in (("visual", clip_encoder, visual), ("audio", clap_encoder, audio)):
        replace_file(out / CAPTION_FILES[track], npy_bytes(encoder.encode_text(prompts).astype(np.float32)))
        meta[track] = {"prompts": prompts, "logit_scale": float(encoder.logit_scale), "encoder": encoder.name,
                       "random_weights": bool(encoder.random_weights)}
    replace_file(out / CAPTIONS_JSON, (json.dumps(meta, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    return meta


def default_workers() -> int:
    """Decoding threads (PyAV and torch release the GIL, so they run in parallel): one per core but one,
    at least 2 (decoding and the mel take ~6x the tiny models' time), at most 4."""
    return max(2, min(4, (os.cpu_count() or 2) - 1))


def extract_features(data_dir: str | Path, clip_encoder, clap_encoder, *, out: str | Path | None = None,
                     batch_clips: int = 8, force: bool = False, workers: int | None = None,
                     progress: Progress | None = None) -> ExtractReport:
    """Write the caption files, then DIR/CLIP/features/<id>.npy (T, d_v) and DIR/CLAP/features/<id>.npy (T, d_a)
    for every clip with a readable video (into `out` instead of DIR when given).

    Resumable: a clip whose two files exist with the right shape is skipped unless `force`, and only when
    text/captions.json says the same encoders made them (else refused: `force` re-extracts all); each file is
    replaced whole, so a killed run leaves finished clips done and no partial file. Videos are decoded
    by `workers` threads (default: `default_workers()`) ahead of the models; `batch_clips` clips go through each model at once. A
    missing or unreadable video is skipped and reported in `failed`."""
    started = time.monotonic()
    clips = folder_clips(data_dir)
    root = Path(out) if out is not None else Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    note = progress or (lambda stage, done, total: None)
    dims = {"visual": clip_encoder.dim, "audio": clap_encoder.dim}
    report = ExtractReport(str(root), clips.kind, len(clips.jobs), 0, 0, {}, clip_encoder.name, clap_encoder.name,
                           bool(clip_encoder.random_weights or clap_encoder.random_weights), 0.0)
    with folder_lock(root, "feature extraction"):
        for folder in FEATURE_DIRS.values():
            (root / folder).mkdir(parents=True, exist_ok=True)
        todo = []
        for job in clips.jobs:
            if not force and _done(root, job, dims):
                report.already_done += 1
                _check_same_encoders(root, clip_encoder, clap_encoder)
            elif job.video is None:
                report.failed[job.video_id] = "no video file (the dense-event index has none for it)"
            else:
                todo.append(job)
        if force:  # the caption record below names the new encoders: no older feature may stay beside it
            for job in todo:
                for folder in FEATURE_DIRS.values():
                    (root / folder / f"{job.video_id}.npy").unlink(missing_ok=True)
        # captions first: they are the record of which encoders wrote this folder's features, so a run
        # stopped half-way resumes (the same encoders) or is refused (others) on the next call
        report.captions = write_captions(root, clips.classes, clip_encoder, clap_encoder)
        total = len(todo)
        note("features", 0, total)
        finished = 0
        workers = workers or default_workers()
        for batch in _batches(_decoded(todo, clip_encoder, clap_encoder, workers, batch_clips), batch_clips):
            ok = [(job, item) for job, item in batch if not isinstance(item, str)]
            for job, item in batch:
                if isinstance(item, str):
                    report.failed[job.video_id] = item
            if ok:
                visual = clip_encoder.embed_pixels(np.concatenate([item[0] for _, item in ok]))
                audio = clap_encoder.embed_features(np.concatenate([item[1] for _, item in ok]))
                row = 0
                for job, _ in ok:
                    _write(root, job.video_id, "visual", visual[row:row + job.segments])
                    _write(root, job.video_id, "audio", audio[row:row + job.segments])
                    row += job.segments
                report.written += len(ok)
            finished += len(batch)
            note("features", finished, total)
    report.seconds = time.monotonic() - started
    return report


def _prepare(job: Job, clip_encoder, clap_encoder):
    """Worker: the clip's model inputs (pixels, mel features) or the reason it cannot be read."""
    try:
        media = read_clip(job.video, job.segments)
    except MediaError as exc:
        return str(exc)
    try:
        audio = clap_encoder.features(media.audio)
    except ValueError as exc:  # e.g. segments longer than the CLAP window (a T far too small for the video)
        return f"{job.video}: {len(media.audio[0]) / AUDIO_RATE:.2f}-s audio segments for T = {job.segments}: {exc}"
    return clip_encoder.preprocess(media.frames), audio


def _decoded(jobs: list[Job], clip_encoder, clap_encoder, workers: int, batch_clips: int) -> Iterator[tuple[Job, object]]:
    """(job, prepared inputs or error text) in job order, decoded by a bounded pool of threads."""
    ahead = max(2, 2 * batch_clips)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: list[tuple[Job, Future]] = []
        try:
            for job in jobs:
                pending.append((job, pool.submit(_prepare, job, clip_encoder, clap_encoder)))
                if len(pending) >= ahead:
                    first, fut = pending.pop(0)
                    yield first, fut.result()
            for job, fut in pending:
                yield job, fut.result()
        except BaseException:
            for _, fut in pending:
                fut.cancel()
            raise


def _batches(items: Iterator[tuple[Job, object]], size: int) -> Iterator[list[tuple[Job, object]]]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
