"""What the synthetic demo clips are: ids, splits, true timelines and noisy pseudo-labels (no files).

Everything is drawn from numpy Generators seeded by `seed`, so a plan is
deterministic in (clips, seed); `annotation.demo` writes it to disk and
`annotation.demo_media` turns it into pictures and sound.
"""
from __future__ import annotations

import math
import string
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from annotation.grid import empty_grid, runs
from annotation.taxonomy import CLASS_INDEX, NUM_CLASSES, NUM_SEGMENTS


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
        # clamped so a shift never pushes the whole run off the clip (the class stays visible)
        on = min(NUM_SEGMENTS - 1, max(0, onset + shift - int(rng.integers(0, 2))))
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
