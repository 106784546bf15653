"""Training data: labels (weak, segment pseudo-labels, review flags) and per-clip features.

Labels come from an LLP-layout folder or from the label store (`best` labels:
manual where a human edited, else pseudo; out-of-taxonomy reviews respected).
Features are always read from the folder (`<set dir>/<video id>.npy`), lazily,
so the full LLP (7.7 GB of ResNet features) never has to fit in memory.

Batch contract shared by every model (B = batch, 10 segments, 25 classes):
    audio  (B, 10, Da)      VGGish (128) or CLAP (512) features
    visual (B, Tv, Dv)      ResNet-152 (80, 2048) or CLIP (10, 768)
    motion (B, 10, 512)     R(2+1)D, only for the "vggish" feature set
    label  (B, 25)          weak (video-level) label, 0/1 float
    pseudo_audio, pseudo_visual (B, 10, 25)  segment pseudo-labels, 0/1 float
    has_pseudo (B,)         bool: both pseudo-labels exist (segment losses skip the others)
    index  (B,)             row in the LabelSet
Batches are collated by `collate_items` (keys common to all items of a batch).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from sqlalchemy import select
from torch.utils.data import Dataset, default_collate

from annotation.db import snapshot
from annotation.errors import DataFileError
from annotation.exporter import select_grids
from annotation.files import child_path, present
from annotation.importer import DENSE_FILES, PSEUDO_DIRS, WEAK_FILES, load_pseudo
from annotation.llp_csv import dense_grids, iter_dense_csv, read_weak_csv
from annotation.models import Review
from annotation.npyfile import read_npy
from annotation.taxonomy import NUM_CLASSES, NUM_SEGMENTS, parse_label_list


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    audio: tuple[str, tuple[int, int]]
    visual: tuple[str, tuple[int, int]]
    motion: tuple[str, tuple[int, int]] | None = None

    def parts(self) -> dict[str, tuple[str, tuple[int, int]]]:
        parts = {"audio": self.audio, "visual": self.visual}
        if self.motion is not None:
            parts["motion"] = self.motion
        return parts


FEATURE_SETS: dict[str, FeatureSpec] = {
    "vggish": FeatureSpec("vggish", ("feats/vggish", (10, 128)), ("feats/res152", (80, 2048)),
                          ("feats/r2plus1d_18", (10, 512))),
    "clip_clap": FeatureSpec("clip_clap", ("CLAP/features", (10, 512)), ("CLIP/features", (10, 768))),
}


@dataclass
class LabelSet:
    """Column-wise labels of N clips (index i is the same clip in every array)."""

    filenames: list[str]
    video_ids: list[str]
    splits: np.ndarray  # (N,) str
    weak: np.ndarray  # (N, 25) float32
    pseudo_audio: np.ndarray  # (N, 10, 25) float32, zeros where missing
    pseudo_visual: np.ndarray  # (N, 10, 25) float32
    has_pseudo: np.ndarray  # (N,) bool: both pseudo-labels present
    out_of_taxonomy: np.ndarray  # (N,) bool: reviewed as outside the 25 classes
    truth_audio: dict[str, np.ndarray] = field(default_factory=dict)  # filename -> (25, 10) for val/test
    truth_visual: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.filenames)

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split) if split != "all" else np.arange(len(self))


def _read_pseudo_file(path: Path, clip: str) -> np.ndarray | None:
    if not present(path):
        return None
    return load_pseudo(path, clip).T.astype(np.float32)  # back to the (segments, classes) layout


def labels_from_folder(data_dir: str | Path) -> LabelSet:
    data_dir = Path(data_dir)
    rows = [(split, row) for split, name in WEAK_FILES.items() if present(data_dir / name)
            for row in read_weak_csv(data_dir / name)]
    if not rows:
        raise DataFileError(data_dir, f"no weak-label file; expected some of {sorted(WEAK_FILES.values())}")
    n = len(rows)
    labels = LabelSet(
        filenames=[r.filename for _, r in rows], video_ids=[r.filename[:11] for _, r in rows],
        splits=np.array([s for s, _ in rows]), weak=np.zeros((n, NUM_CLASSES), np.float32),
        pseudo_audio=np.zeros((n, NUM_SEGMENTS, NUM_CLASSES), np.float32),
        pseudo_visual=np.zeros((n, NUM_SEGMENTS, NUM_CLASSES), np.float32),
        has_pseudo=np.zeros(n, bool), out_of_taxonomy=np.zeros(n, bool),
    )
    for i, (_, row) in enumerate(rows):
        labels.weak[i, list(row.labels)] = 1
        audio = _read_pseudo_file(data_dir / PSEUDO_DIRS["audio"] / f"{row.filename[:11]}.npy", row.filename)
        visual = _read_pseudo_file(data_dir / PSEUDO_DIRS["visual"] / f"{row.filename[:11]}.npy", row.filename)
        if audio is not None:
            labels.pseudo_audio[i] = audio
        if visual is not None:
            labels.pseudo_visual[i] = visual
        labels.has_pseudo[i] = audio is not None and visual is not None
    _attach_truth(labels, data_dir)
    return labels


def _attach_truth(labels: LabelSet, data_dir: Path) -> None:
    evaluated = [f for f, s in zip(labels.filenames, labels.splits) if s in ("val", "test")]
    for track, name in DENSE_FILES.items():
        path = data_dir / name
        if present(path) and evaluated:
            grids = dense_grids(iter_dense_csv(path), evaluated)
            target = labels.truth_audio if track == "audio" else labels.truth_visual
            target.update(zip(evaluated, grids))


def labels_from_store(engine) -> LabelSet:
    """The cleaned labels of the database: best grids per track, out-of-taxonomy from reviews, truth."""
    with snapshot(engine) as conn:  # one moment's labels, truth and reviews, while annotators save edits
        clips, grids = select_grids(conn, "best", "all")
        _, truth = select_grids(conn, "truth", "all")
        oot = set(conn.execute(select(Review.clip_id).where(Review.status == "out_of_taxonomy")).scalars())
    n = len(clips)
    labels = LabelSet(
        filenames=[c.filename for c in clips], video_ids=[c.video_id for c in clips],
        splits=np.array([c.split for c in clips]), weak=np.zeros((n, NUM_CLASSES), np.float32),
        pseudo_audio=np.zeros((n, NUM_SEGMENTS, NUM_CLASSES), np.float32),
        pseudo_visual=np.zeros((n, NUM_SEGMENTS, NUM_CLASSES), np.float32),
        has_pseudo=np.zeros(n, bool), out_of_taxonomy=np.array([c.id in oot for c in clips], bool),
    )
    for i, clip in enumerate(clips):
        labels.weak[i, parse_label_list(clip.weak_labels)] = 1
        audio, visual = grids["audio"].get(clip.id), grids["visual"].get(clip.id)
        if audio is not None:
            labels.pseudo_audio[i] = audio.T
        if visual is not None:
            labels.pseudo_visual[i] = visual.T
        labels.has_pseudo[i] = audio is not None and visual is not None
        if clip.id in truth["audio"]:
            labels.truth_audio[clip.filename] = truth["audio"][clip.id]
        if clip.id in truth["visual"]:
            labels.truth_visual[clip.filename] = truth["visual"][clip.id]
    return labels


class FeatureStore:
    """Per-clip feature arrays of one feature set, checked (shape, float dtype, finite) on every read."""

    def __init__(self, data_dir: str | Path, spec: FeatureSpec, cache: bool = False):
        self.root = Path(data_dir)
        self.spec = spec
        self.cache: dict[tuple[str, str], np.ndarray] | None = {} if cache else None
        for part, (sub, _) in spec.parts().items():
            if not present(self.root / sub, "folder"):
                raise DataFileError(self.root / sub, f"missing {part} feature folder of the '{spec.name}' feature set")

    def load(self, part: str, video_id: str) -> np.ndarray:
        key = (part, video_id)
        if self.cache is not None and key in self.cache:
            return self.cache[key]
        sub, shape = self.spec.parts()[part]
        array = read_npy(child_path(self.root / sub, f"{video_id}.npy"), shape=shape, kinds="f", finite=True,
                         expected=f"finite float {shape} {self.spec.name} {part} features of clip id {video_id}")
        array = array.astype(np.float32, copy=False)
        if self.cache is not None:
            self.cache[key] = array
        return array

    def check(self, video_ids: Sequence[str], workers: int = 4) -> int:
        """Read every feature file of these clips once (shape, dtype, finite), so a bad file stops a
        run before its first epoch, not when it is reached hours later; returns the files checked.
        Cached stores keep what they read."""
        jobs = [(part, vid) for vid in dict.fromkeys(video_ids) for part in self.spec.parts()]
        pool = ThreadPoolExecutor(max_workers=workers)  # reads and isfinite release the GIL
        try:
            for _ in pool.map(lambda job: self.load(*job), jobs):
                pass
        finally:
            pool.shutdown(cancel_futures=True)  # the first bad file ends the check
        return len(jobs)


class AVVPDataset(Dataset):
    """Clips `indices` of a LabelSet with their features, as dicts of tensors (see module doc)."""

    def __init__(self, labels: LabelSet, features: FeatureStore, indices: np.ndarray | None = None):
        self.labels = labels
        self.features = features
        self.indices = np.arange(len(labels)) if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def item(self, i: int, audio_from: int | None = None) -> dict[str, torch.Tensor]:
        """Clip i; with `audio_from`, the audio features and audio pseudo-label of another clip (CMRC)."""
        a = i if audio_from is None else audio_from
        lab = self.labels
        out = {
            "audio": torch.from_numpy(self.features.load("audio", lab.video_ids[a])),
            "visual": torch.from_numpy(self.features.load("visual", lab.video_ids[i])),
            "pseudo_audio": torch.from_numpy(lab.pseudo_audio[a]),
            "pseudo_visual": torch.from_numpy(lab.pseudo_visual[i]),
            "has_pseudo": torch.tensor(bool(lab.has_pseudo[i] and lab.has_pseudo[a])),
            "index": torch.tensor(i),
        }
        if self.features.spec.motion is not None:
            out["motion"] = torch.from_numpy(self.features.load("motion", lab.video_ids[i]))
        if audio_from is None:
            out["label"] = torch.from_numpy(lab.weak[i])
        else:  # a combined clip's label: union of the two unimodal pseudo-labels (MUG, CMRC)
            out["label"] = torch.from_numpy(np.maximum(lab.pseudo_audio[a].max(0), lab.pseudo_visual[i].max(0)))
        return out

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        return self.item(int(self.indices[k]))


def collate_items(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack a list of item dicts; only keys every item has (plain and combined clips may differ)."""
    keys = [k for k in items[0] if all(k in item for item in items[1:])]
    return {k: default_collate([item[k] for item in items]) for k in keys}
