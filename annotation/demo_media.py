"""Pictures, sounds and mp4 files of the synthetic demo clips (`annotation.demo`).

Each visible class is a shape in its own cell, drawn in its AVVP Studio colour;
each audible class is a synthetic sound with its own timbre. The sounds are
fixed per class; only the placement noise comes from the caller's Generator.
"""
from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import av
import numpy as np

from annotation.demo_plan import DemoError
from annotation.media import frame_to_segment
from annotation.taxonomy import COLOURS, NUM_CLASSES, NUM_SEGMENTS, hex_to_rgb

WIDTH, HEIGHT, FPS = 160, 128, 12
AUDIO_RATE = 22050


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
def class_sound(cls: int, rate: int = AUDIO_RATE) -> np.ndarray:
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
        sound = np.roll(class_sound(int(cls), rate), int(rng.integers(0, n)))
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
