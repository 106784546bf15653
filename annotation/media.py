"""The project's one decode path: video frames by OpenCV, audio by PyAV.

It also holds the one mapping time -> frame -> segment. The player, the
timelines, export, feature extraction and training all go through these
functions, so a frame shown on screen is the frame a segment label refers to.

Conventions:
- frame i covers [i / fps, (i + 1) / fps); `frame_to_time` gives its start;
- segment t of a 10 s clip covers [t, t + 1); times before 0 fall in segment 0
  and times at or past the end fall in the last segment (LLP clips run a few
  milliseconds past 10 s, e.g. 10.03 s; those frames belong to segment 9).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import av
import cv2
import numpy as np

from annotation.taxonomy import NUM_SEGMENTS

CLIP_SECONDS = 10.0
# Guards floor() against values like (i / fps) * fps == i - 1 ulp.
_EPS = 1e-9
# A forward jump of at most this many frames decodes through (grab) instead of seeking.
_MAX_GRAB_AHEAD = 16


class MediaError(ValueError):
    """A media file that cannot be opened or decoded; the message names the file."""

    def __init__(self, path: str | Path, message: str):
        self.path = Path(path)
        self.detail = message
        super().__init__(f"{self.path}: {message}")


@dataclass(frozen=True)
class MediaInfo:
    """Facts of one media file.

    fps, frame_count, width and height come from OpenCV (the frame decoder);
    audio facts from PyAV (the audio decoder). `duration` is the longer of the
    video duration (frame_count / fps) and the audio stream duration, so that
    neither track is cut off by the player; it is 0.0 when neither is known.
    """

    path: Path
    fps: float
    frame_count: int
    duration: float
    width: int
    height: int
    has_audio: bool
    audio_rate: int
    audio_channels: int

    @property
    def has_video(self) -> bool:
        return self.frame_count > 0 and self.fps > 0


# --------------------------------------------------------------------------- mapping


def time_to_frame(t: float, fps: float, frame_count: int) -> int:
    """Index of the frame shown at time t (seconds), clamped to [0, frame_count - 1]."""
    if fps <= 0 or frame_count <= 0:
        raise ValueError(f"need fps > 0 and frame_count > 0, got fps={fps}, frame_count={frame_count}")
    if math.isnan(t):
        raise ValueError("time is NaN")
    if t <= 0:
        return 0
    return int(min(frame_count - 1, math.floor(t * fps + _EPS)))


def frame_to_time(index: int, fps: float) -> float:
    """Start time (seconds) of frame `index`."""
    if fps <= 0:
        raise ValueError(f"need fps > 0, got {fps}")
    return index / fps


def time_to_segment(t: float, duration: float = CLIP_SECONDS, segments: int = NUM_SEGMENTS) -> int:
    """Segment holding time t: segment k covers [k, k + 1) * duration / segments, clamped."""
    if duration <= 0 or segments <= 0:
        raise ValueError(f"need duration > 0 and segments > 0, got {duration}, {segments}")
    if math.isnan(t):
        raise ValueError("time is NaN")
    if t <= 0:
        return 0
    return int(min(segments - 1, math.floor(t * segments / duration + _EPS)))


def frame_to_segment(index: int, fps: float, duration: float = CLIP_SECONDS, segments: int = NUM_SEGMENTS) -> int:
    """Segment of a frame, by the start time of the frame."""
    return time_to_segment(frame_to_time(index, fps), duration, segments)


def segment_to_frame_range(
    seg: int, fps: float, frame_count: int, duration: float = CLIP_SECONDS, segments: int = NUM_SEGMENTS
) -> range:
    """Frames whose segment (by `frame_to_segment`) is `seg`.

    The ranges of all segments partition range(frame_count): frames past the end
    of the clip belong to the last segment. Derived from the same mapping, so
    `frame_to_segment(i) == seg` for every i in the range.
    """
    if not 0 <= seg < segments:
        raise ValueError(f"segment {seg} outside 0..{segments - 1}")
    if fps <= 0 or frame_count < 0:
        raise ValueError(f"need fps > 0 and frame_count >= 0, got fps={fps}, frame_count={frame_count}")

    def first_frame_at_or_after(s: int) -> int:
        """Smallest frame index whose segment is >= s (frame_count if none)."""
        if s <= 0:
            return 0
        if s >= segments:
            return frame_count
        i = min(frame_count, max(0, math.ceil(s * duration / segments * fps)))
        while i > 0 and frame_to_segment(i - 1, fps, duration, segments) >= s:
            i -= 1
        while i < frame_count and frame_to_segment(i, fps, duration, segments) < s:
            i += 1
        return i

    return range(first_frame_at_or_after(seg), first_frame_at_or_after(seg + 1))


def sample_frame_indices(frame_count: int, count: int = 10) -> list[int]:
    """`round(linspace(0, N - 1, count))`: the frames VALOR's CLIP pseudo-labelling looks at."""
    if frame_count <= 0:
        raise ValueError(f"need frame_count > 0, got {frame_count}")
    return [int(i) for i in np.round(np.linspace(0, frame_count - 1, count))]


# --------------------------------------------------------------------------- probing


def _reason(exc: BaseException) -> str:
    """The decoder's own words without the file name it repeats."""
    return getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__


def _probe_audio(path: Path) -> tuple[bool, int, int, float]:
    """(has_audio, rate, channels, duration) by PyAV; raises MediaError if PyAV cannot open it."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return False, 0, 0, 0.0
            stream = container.streams.audio[0]
            duration = 0.0
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            return True, int(stream.rate or 0), int(stream.channels or 0), duration
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(path, f"not a readable media file ({_reason(exc)})") from None


def probe(path: str | Path) -> MediaInfo:
    """Open the file once with each decoder and report its facts."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "no such file")
    has_audio, rate, channels, audio_duration = _probe_audio(path)
    cap = cv2.VideoCapture(str(path))
    try:
        if cap.isOpened():
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            frame_count = max(0, int(round(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)))
            width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
            height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        else:
            fps, frame_count, width, height = 0.0, 0, 0, 0
    finally:
        cap.release()
    if (fps <= 0 or frame_count <= 0) and not has_audio:
        raise MediaError(path, "no decodable video or audio stream")
    video_duration = frame_count / fps if fps > 0 else 0.0
    return MediaInfo(
        path=path,
        fps=fps,
        frame_count=frame_count if fps > 0 else 0,
        duration=max(video_duration, audio_duration),
        width=width,
        height=height,
        has_audio=has_audio,
        audio_rate=rate,
        audio_channels=channels,
    )


# --------------------------------------------------------------------------- frames


class FrameReader:
    """Random and sequential access to the frames of one video, opened once.

    Reading the next frame (playback) decodes on; a short jump ahead decodes
    through the gap; anything else seeks with CAP_PROP_POS_FRAMES, which lands on
    the exact frame. The last frame read is cached, so asking again is free.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise MediaError(self.path, "OpenCV cannot open it as a video")
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.frame_count = max(0, int(round(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)))
        if self.fps <= 0 or self.frame_count <= 0:
            self._cap.release()
            raise MediaError(self.path, "no video frames")
        self._next = 0  # index of the frame the next cap.read() returns
        self._last_index: int | None = None
        self._last_frame: np.ndarray | None = None
        self.seeks = 0  # how many times read() had to seek (diagnostics, tests)

    def read(self, index: int) -> np.ndarray:
        """Frame `index` as RGB uint8 (H, W, 3); a fresh array the caller may keep."""
        if self._cap is None:
            raise MediaError(self.path, "reader is closed")
        index = int(index)
        if not 0 <= index < self.frame_count:
            raise IndexError(f"frame {index} outside 0..{self.frame_count - 1} of {self.path}")
        if index == self._last_index and self._last_frame is not None:
            return self._last_frame.copy()
        if not self._next <= index <= self._next + _MAX_GRAB_AHEAD:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            self._next = index
            self.seeks += 1
        while self._next < index:
            if not self._cap.grab():
                raise MediaError(self.path, f"cannot decode frame {self._next}")
            self._next += 1
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            self._last_index = None
            raise MediaError(self.path, f"cannot decode frame {index}")
        self._next = index + 1
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        self._last_index, self._last_frame = index, rgb
        return rgb.copy()

    def read_at(self, t: float) -> np.ndarray:
        """The frame shown at time t (seconds)."""
        return self.read(time_to_frame(t, self.fps, self.frame_count))

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
            self._last_frame = None

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def sample_frames(path: str | Path, count: int = 10, indices: Sequence[int] | None = None) -> np.ndarray:
    """Frames at `sample_frame_indices` (or the given indices) as (count, H, W, 3) RGB uint8."""
    with FrameReader(path) as reader:
        picks = list(indices) if indices is not None else sample_frame_indices(reader.frame_count, count)
        return np.stack([reader.read(i) for i in picks])


# --------------------------------------------------------------------------- audio


def decode_audio(path: str | Path, rate: int = 16000, mono: bool = True) -> tuple[np.ndarray, int]:
    """Decode the first audio stream resampled to `rate`, float32.

    Samples are nominally in [-1, 1]; lossy codecs and resampling may overshoot
    a little, and they are not clipped (features see what the decoder gives).

    Returns shape (n,) when mono (the plain mean of the channels; PyAV's own
    down-mix would scale by 1/sqrt(2)), else (channels, n).
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "no such file")
    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(path, "no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=rate)
            for frame in container.decode(stream):
                chunks.extend(f.to_ndarray() for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray() for f in resampler.resample(None))
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(path, f"cannot decode its audio ({_reason(exc)})") from None
    channels = max(1, int(stream.channels or 1))
    audio = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    audio = audio.astype(np.float32, copy=False)
    if mono:
        return audio.mean(axis=0, dtype=np.float32), rate
    return audio, rate
