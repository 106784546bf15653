"""A synthetic AVSBench-layout project (S4, MS3 or AVSS) that the program makes itself.

Every clip shows two or three objects moving across a grey field, each a shape in the colour of
its class; the sound is the sum of the *sounding* objects' class sounds (the demo's class timbres,
`annotation.demo_media.class_sound`), and the ground-truth mask covers exactly the objects heard in
that second. Which of the visible objects sounds is drawn at random, so the picture alone cannot
tell which one to segment: a model that does not listen can only guess (what the audio-swap and
audio-blind benchmarks measure). S4: one object sounds throughout; MS3 and AVSS: each object's sound
switches on and off per second (frames with no sound have empty masks). The files follow the
AVSBench layouts of `annotation.avsbench` exactly, `.pkl` log-mel files included (written the way
AVSBench wrote them: `pickle.dump` of a torch tensor). SYNTHETIC: never real footage or sound.
"""
from __future__ import annotations

import csv
import io
import json
import pickle
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from annotation.avsbench import AUDIO_SECONDS, AVSS_CLASSES, META_FILES, SUBSET_FOLDERS, SUBSETS, encode_png, palette
from annotation.demo_media import class_sound
from annotation.taxonomy import CLASSES, COLOURS, hex_to_rgb

RATE = 16000  # AVSBench's wavs are 16 kHz
DEMO_CLASSES = (0, 4, 6, 11, 15, 17)  # AVVP classes whose timbres are the demo's sounds
_BACKGROUND = np.array([96, 96, 96], np.uint8)


def category(cls: int) -> str:
    return CLASSES[cls].lower().replace(" ", "_").replace(",", "")


@dataclass
class _Object:
    cls: int
    shape: int  # 0 disc, 1 square, 2 diamond
    start: np.ndarray  # (x, y) centre, fraction of the frame
    velocity: np.ndarray  # per frame, fraction of the frame
    radius: float  # fraction of the frame
    sounding: np.ndarray  # (frames,) bool


def _draw(obj: _Object, frame: int, size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    cx, cy = obj.start + frame * obj.velocity
    u, v = (x - cx) / obj.radius, (y - cy) / obj.radius
    if obj.shape == 0:
        return u**2 + v**2 <= 1
    if obj.shape == 1:
        return (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85)
    return np.abs(u) + np.abs(v) <= 1.1


def _objects(rng: np.random.Generator, subset: str, frames: int) -> list[_Object]:
    count = 2 if subset == "s4" else int(rng.integers(2, 4))
    classes = rng.choice(len(DEMO_CLASSES), size=count, replace=False)
    objects = []
    for k, index in enumerate(classes):
        start = np.array([0.2 + 0.6 * (k + 0.5) / count, rng.uniform(0.3, 0.7)])
        velocity = rng.uniform(-0.03, 0.03, size=2)
        objects.append(_Object(DEMO_CLASSES[index], int(index) % 3, start, velocity, rng.uniform(0.1, 0.16),
                               np.zeros(frames, bool)))
    if subset == "s4":
        objects[int(rng.integers(count))].sounding[:] = True
    else:
        for obj in objects:
            obj.sounding = rng.random(frames) < 0.55
        if not any(o.sounding.any() for o in objects):
            objects[0].sounding[int(rng.integers(frames))] = True
    return objects


def _frame(objects: list[_Object], k: int, size: int, rng: np.random.Generator) -> np.ndarray:
    image = np.empty((size, size, 3), np.uint8)
    image[:] = _BACKGROUND
    for obj in objects:
        image[_draw(obj, k, size)] = hex_to_rgb(COLOURS[obj.cls])
    noise = rng.normal(0, 4, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _mask(objects: list[_Object], k: int, size: int) -> np.ndarray:
    """(size, size) class index + 1 of the sounding object on top at each pixel (0: none)."""
    mask = np.zeros((size, size), np.uint8)
    for obj in objects:
        if obj.sounding[k]:
            mask[_draw(obj, k, size)] = DEMO_CLASSES.index(obj.cls) + 1
    return mask


def _binary(objects: list[_Object], k: int, size: int) -> np.ndarray:
    return np.where(_mask(objects, k, size) > 0, 255, 0).astype(np.uint8)


def _audio(objects: list[_Object], seconds: int, rng: np.random.Generator) -> np.ndarray:
    n = seconds * RATE
    wave_ = rng.normal(0, 0.003, n)
    for obj in objects:
        sound = np.roll(class_sound(obj.cls, RATE)[:n], int(rng.integers(0, RATE)))
        gate = np.repeat(obj.sounding[:seconds].astype(float), RATE)
        ramp = np.convolve(gate, np.ones(160) / 160, mode="same")  # 10 ms fades, no clicks
        wave_ = wave_ + 0.3 * sound[:n] * ramp
    return np.clip(wave_, -1, 1).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> None:
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())
    path.write_bytes(buffer.getvalue())


def _write_pkl(path: Path, samples: np.ndarray, seconds: int) -> None:
    """AVSBench's .pkl: `pickle.dump` of the (seconds, 1, 96, 64) log-mel tensor (torch imported here only)."""
    import torch

    from annotation.avs_audio import avsbench_log_mel

    with open(path, "wb") as handle:
        pickle.dump(torch.from_numpy(avsbench_log_mel(samples, seconds, sample_rate=RATE)), handle)


def _png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(image))


def _split(index: int, clips: int) -> str:
    fraction = index / clips
    return "train" if fraction < 0.6 else "val" if fraction < 0.8 else "test"


_README = """\
AVVP Studio AVS demo -- SYNTHETIC, not AVSBench.

Made by `avvp-studio avs demo` (subset={subset}, clips={clips}, size={size}, seed={seed}) in the
AVSBench {subset_upper} layout. Each clip shows two or three coloured shapes (one colour and shape per
class) moving over a grey field; the sound is the sum of the sounding objects' class sounds, and the
masks cover exactly the objects heard in that second. Which object sounds is random, so only a model
that listens can tell. Numbers measured on this data are synthetic and never comparable with AVSBench.
"""


def build_avs_demo(out_dir: str | Path, subset: str = "s4", clips: int = 40, size: int = 224, seed: int = 0,
                   progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the demo into `out_dir` (the AVSBench data root); returns the subset's folder."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r}; expected one of {', '.join(SUBSETS)}")
    if clips < 5:
        raise ValueError("clips must be >= 5 (train, val and test each need clips)")
    if not 32 <= size <= 1024:
        raise ValueError("size must be within 32..1024 pixels")
    out = Path(out_dir)
    folder = out / SUBSET_FOLDERS[subset] if subset in SUBSET_FOLDERS else out
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(clips):
        split = _split(index, clips)
        sets = "v2" if subset == "avss" and index % 3 else "v1m"
        frames = 10 if sets == "v2" else 5
        seconds = AUDIO_SECONDS[subset] if subset != "avss" else frames
        objects = _objects(rng, subset, frames)
        name = f"demo{index:04d}"
        samples = _audio(objects, seconds, rng)
        writer = {"s4": _write_s4, "ms3": _write_ms3, "avss": _write_avss}[subset]
        rows.append(writer(folder, name, split, sets, objects, samples, size, rng))
        if progress:
            progress(index + 1, clips)
    header = {"s4": ["name", "start", "category", "split"], "ms3": ["video_id", "start", "split"],
              "avss": ["vid", "uid", "s_min", "s_sec", "a_obj", "split", "label"]}[subset]
    with open(folder / META_FILES[subset], "w", newline="", encoding="utf-8") as handle:
        writer_ = csv.writer(handle)
        writer_.writerow(header)
        writer_.writerows(rows)
    if subset == "avss":
        names = ["background", *(category(c) for c in DEMO_CLASSES)]
        names += [f"unused_{i}" for i in range(len(names), AVSS_CLASSES)]
        (folder / "label2idx.json").write_text(json.dumps({n: i for i, n in enumerate(names)}, indent=1) + "\n",
                                                encoding="utf-8")
    (folder / "README.txt").write_text(_README.format(subset=subset, subset_upper=subset.upper(), clips=clips,
                                                      size=size, seed=seed), encoding="utf-8")
    return folder


def _write_s4(folder: Path, name: str, split: str, _sets: str, objects: list[_Object], samples: np.ndarray, size: int,
              rng: np.random.Generator) -> list[str]:
    sounding = next(o for o in objects if o.sounding.any())
    cat, data = category(sounding.cls), folder / "s4_data"
    for k in range(5):
        _png(data / "visual_frames" / split / cat / name / f"{name}_{k + 1}.png", _frame(objects, k, size, rng))
        if k == 0 or split != "train":
            _png(data / "gt_masks" / split / cat / name / f"{name}_{k + 1}.png", _binary(objects, k, size))
    _audio_files(data / "audio_wav" / split / cat / f"{name}.wav", data / "audio_log_mel" / split / cat / f"{name}.pkl",
                 samples, 5)
    return [name, "0", cat, split]


def _write_ms3(folder: Path, name: str, split: str, _sets: str, objects: list[_Object], samples: np.ndarray, size: int,
               rng: np.random.Generator) -> list[str]:
    data = folder / "ms3_data"
    for k in range(5):
        _png(data / "visual_frames" / name / f"{name}.mp4_{k + 1}.png", _frame(objects, k, size, rng))
        _png(data / "gt_masks" / split / name / f"{name}_{k + 1}.png", _binary(objects, k, size))
    _audio_files(data / "audio_wav" / split / f"{name}.wav", data / "audio_log_mel" / split / f"{name}.pkl", samples, 5)
    return [name, "0", split]


def _write_avss(folder: Path, name: str, split: str, sets: str, objects: list[_Object], samples: np.ndarray, size: int,
                rng: np.random.Generator) -> list[str]:
    base, colours = folder / sets / name, palette()
    frames = len(objects[0].sounding)
    for k in range(frames):
        path = base / "frames" / f"{k}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(_frame(objects, k, size, rng), cv2.COLOR_RGB2BGR))
        path.write_bytes(jpg.tobytes())
        _png(base / "labels_rgb" / f"{k}.png", colours[_mask(objects, k, size)])
    write_wav(base / "audio.wav", samples)
    return [name, name, "0", "0", "", split, sets]


def _audio_files(wav: Path, pkl: Path, samples: np.ndarray, seconds: int) -> None:
    wav.parent.mkdir(parents=True, exist_ok=True)
    pkl.parent.mkdir(parents=True, exist_ok=True)
    write_wav(wav, samples)
    _write_pkl(pkl, samples, seconds)
