"""AVVP data: labels (weak, segment pseudo-labels, review flags) and per-clip model inputs.

Labels come from an LLP-layout folder or from the label store (`best` labels:
manual where a human edited, else pseudo; out-of-taxonomy reviews respected).
Inputs (features, priors) are always read from the folder (`<dir>/<video id>.npy`),
lazily, so the full LLP (7.7 GB of ResNet features) never has to fit in memory.

What a model may read, and when (the honesty rule): segment pseudo-labels are
training TARGETS, gated by the clip's video-level label; they are loaded for train
clips only, and only for models that train on them. A model's INPUTS are features
and priors (zero-shot segment labels over all 25 classes, never gated by a
video-level label, see `inference.priors`). Evaluation items carry inputs only, so
nothing derived from a val/test clip's weak label, truth or human edits can reach
a prediction.

Batch contract shared by every model (B = batch, 10 segments, 25 classes):
    audio  (B, Ta, Da)      VGGish (10, 128), CLAP (10, 512) or VALOR's CLAP maps (64, 768)
    visual (B, Tv, Dv)      ResNet-152 (80, 2048) or CLIP (10, 768)
    motion (B, 10, 512)     R(2+1)D, for the feature sets that have it
    prior_audio, prior_visual (B, 10, 25)  zero-shot priors, 0/1 float (models that read them)
    index  (B,)             row in the LabelSet
  training items add the targets:
    label  (B, 25)          weak (video-level) label, 0/1 float
    pseudo_audio, pseudo_visual (B, 10, 25)  segment pseudo-labels, 0/1 float
    has_pseudo (B,)         bool: both pseudo-labels exist (segment losses skip the others)
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
from annotation.npyfile import npy_shape, read_npy
from annotation.taxonomy import NUM_CLASSES, NUM_SEGMENTS, parse_label_list

PRIOR_DIRS = {"audio": "CLAP/segment_prior_labels", "visual": "CLIP/segment_prior_labels"}
PRIOR_SHAPE = (NUM_SEGMENTS, NUM_CLASSES)
AUDIO_SIDE = frozenset({"audio", "prior_audio"})  # parts a CMRC clip takes from its audio source
PRIOR_COMMAND = ("avvp-studio prior --data DIR --text-audio CLAP_TEXT.npy --text-visual CLIP_TEXT.npy "
                 "(written into DIR, where they are read)")


@dataclass(frozen=True)
class FeatureSpec:
    """A feature set: the folder of each input stream and its standard (frames, dim).

    The shapes a model reads live in its config (`inference.models.base.AVVPInputs`);
    these are the defaults, and what a data folder holds is detected from its files.
    """

    name: str
    folders: dict[str, str]
    shapes: dict[str, tuple[int, int]]


FEATURE_SETS: dict[str, FeatureSpec] = {
    # HAN/VALOR/MUG: VGGish + ResNet-152 (8 fps) + R(2+1)D
    "vggish": FeatureSpec("vggish", {"audio": "feats/vggish", "visual": "feats/res152", "motion": "feats/r2plus1d_18"},
                          {"audio": (10, 128), "visual": (80, 2048), "motion": (10, 512)}),
    # CLAP + CLIP only (what `avvp-studio features` extracts)
    "clip_clap": FeatureSpec("clip_clap", {"audio": "CLAP/features", "visual": "CLIP/features"},
                             {"audio": (10, 512), "visual": (10, 768)}),
    # VALOR++ / LINK: CLAP + CLIP + R(2+1)D (VALOR's scripts read the motion stream here too)
    "clip_clap_r21d": FeatureSpec(
        "clip_clap_r21d", {"audio": "CLAP/features", "visual": "CLIP/features", "motion": "feats/r2plus1d_18"},
        {"audio": (10, 512), "visual": (10, 768), "motion": (10, 512)}),
}


def feature_spec(name: str) -> FeatureSpec:
    if name not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {name!r}; expected one of {sorted(FEATURE_SETS)}")
    return FEATURE_SETS[name]


def detect_shapes(data_dir: str | Path, feature_set: str) -> dict[str, tuple[int, int]]:
    """(frames, dim) of each stream as the folder's first file declares it (header only), so a
    folder of VALOR's CLAP maps (64, 768) is read as such; every other file is checked later."""
    spec, found = feature_spec(feature_set), {}
    for part, sub in spec.folders.items():
        folder = Path(data_dir) / sub
        if not present(folder, "folder"):
            raise DataFileError(folder, f"missing {part} feature folder of the '{feature_set}' feature set")
        first = min((p for p in folder.iterdir() if p.suffix == ".npy"), default=None)
        if first is None:
            raise DataFileError(folder, f"no .npy files; expected the {part} features of the '{feature_set}' set")
        shape = npy_shape(first, f"({part} frames, dim) features")
        if len(shape) != 2:
            raise DataFileError(first, f"shape {shape}; expected (frames, dim) {part} features")
        found[part] = shape
    return found


@dataclass(frozen=True)
class InputPart:
    """One per-clip input file kind: `<folder>/<video id>.npy` of `shape`."""

    folder: str
    shape: tuple[int, ...]
    kinds: str  # allowed dtype kinds
    what: str  # for errors: "vggish audio features", "audio priors"


def feature_parts(feature_set: str, shapes: dict[str, tuple[int, int]]) -> dict[str, InputPart]:
    spec = feature_spec(feature_set)
    return {part: InputPart(sub, tuple(shapes[part]), "f", f"{feature_set} {part} features")
            for part, sub in spec.folders.items()}


def prior_parts() -> dict[str, InputPart]:
    return {f"prior_{track}": InputPart(sub, PRIOR_SHAPE, "iub", f"{track} prior (0/1 zero-shot segment labels)")
            for track, sub in PRIOR_DIRS.items()}


@dataclass
class LabelSet:
    """Column-wise labels of N clips (index i is the same clip in every array).

    Pseudo-labels are filled for train clips only (they are training targets); the
    rows of val/test clips stay zero with `has_pseudo` False."""

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


def _empty_labels(filenames: list[str], video_ids: list[str], splits: list[str], out_of_taxonomy) -> LabelSet:
    n = len(filenames)
    return LabelSet(
        filenames=filenames, video_ids=video_ids, splits=np.array(splits), weak=np.zeros((n, NUM_CLASSES), np.float32),
        pseudo_audio=np.zeros((n, NUM_SEGMENTS, NUM_CLASSES), np.float32),
        pseudo_visual=np.zeros((n, NUM_SEGMENTS, NUM_CLASSES), np.float32),
        has_pseudo=np.zeros(n, bool), out_of_taxonomy=np.asarray(out_of_taxonomy, bool),
    )


def _read_pseudo_file(path: Path, clip: str) -> np.ndarray | None:
    if not present(path):
        return None
    return load_pseudo(path, clip).T.astype(np.float32)  # back to the (segments, classes) layout


def labels_from_folder(data_dir: str | Path, pseudo: bool = True) -> LabelSet:
    """Weak labels, truth and (with `pseudo`) the train clips' pseudo-label files of a data folder."""
    data_dir = Path(data_dir)
    rows = [(split, row) for split, name in WEAK_FILES.items() if present(data_dir / name)
            for row in read_weak_csv(data_dir / name)]
    if not rows:
        raise DataFileError(data_dir, f"no weak-label file; expected some of {sorted(WEAK_FILES.values())}")
    labels = _empty_labels([r.filename for _, r in rows], [r.filename[:11] for _, r in rows], [s for s, _ in rows],
                           np.zeros(len(rows), bool))
    for i, (split, row) in enumerate(rows):
        labels.weak[i, list(row.labels)] = 1
        if not (pseudo and split == "train"):
            continue
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


def labels_from_store(engine, pseudo: bool = True) -> LabelSet:
    """The cleaned labels of the database: best grids of the train clips (manual where edited, else
    pseudo), out-of-taxonomy from reviews, truth. Manual labels of val/test clips are never read."""
    with snapshot(engine) as conn:  # one moment's labels, truth and reviews, while annotators save edits
        grids = select_grids(conn, "best", "train")[1] if pseudo else {"audio": {}, "visual": {}}
        everything, truth = select_grids(conn, "truth", "all")
        oot = set(conn.execute(select(Review.clip_id).where(Review.status == "out_of_taxonomy")).scalars())
    labels = _empty_labels([c.filename for c in everything], [c.video_id for c in everything],
                           [c.split for c in everything], [c.id in oot for c in everything])
    for i, clip in enumerate(everything):
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


def check_same_clips(labels: LabelSet, data_dir: str | Path) -> None:
    """Features are read by video id (`<id>.npy`), but a clip is a video id AND a time window: the
    data folder must hold the database's clips under the same full names, or its features belong
    to other clips (`<id>_30_40` is not `<id>_10_20`). Refuses the first clip that differs."""
    data_dir = Path(data_dir)
    folder: dict[str, str] = {}
    for split, name in WEAK_FILES.items():
        if present(data_dir / name):
            folder.update((row.filename[:11], row.filename) for row in read_weak_csv(data_dir / name))
    if not folder:
        raise DataFileError(data_dir, f"no weak-label file ({', '.join(sorted(WEAK_FILES.values()))}) to match the "
                                      "database's clips with: features are only read for clips the folder names")
    for filename, video_id in zip(labels.filenames, labels.video_ids):
        theirs = folder.get(video_id)
        if theirs is None:
            raise DataFileError(data_dir, f"the database's clip {filename} is not among the data folder's clips "
                                          "(its weak-label CSVs); features would be missing or another clip's")
        if theirs != filename:
            raise DataFileError(data_dir, f"the database's clip {filename} is {theirs} in the data folder: same video "
                                          f"id {video_id}, another time window, so {video_id}.npy holds another "
                                          "clip's features; use the data folder the database was imported from")


class FeatureStore:
    """Per-clip input arrays (`parts`: name -> InputPart), checked (shape, dtype, finite) on every
    read; 0/1 priors come back as float32 like the features."""

    def __init__(self, data_dir: str | Path, parts: dict[str, InputPart], cache: bool = False):
        self.root = Path(data_dir)
        self.parts = dict(parts)
        self.cache: dict[tuple[str, str], np.ndarray] | None = {} if cache else None
        for name, part in self.parts.items():
            if not present(self.root / part.folder, "folder"):
                hint = f"; make them with: {PRIOR_COMMAND}" if name.startswith("prior_") else ""
                raise DataFileError(self.root / part.folder, f"missing folder of the {part.what}{hint}")

    def path(self, part: str, video_id: str) -> Path:
        return child_path(self.root / self.parts[part].folder, f"{video_id}.npy")

    def load(self, part: str, video_id: str) -> np.ndarray:
        key = (part, video_id)
        if self.cache is not None and key in self.cache:
            return self.cache[key]
        spec = self.parts[part]
        array = read_npy(self.path(part, video_id), shape=spec.shape, kinds=spec.kinds, finite=True,
                         expected=f"{'finite float ' if spec.kinds == 'f' else ''}{spec.shape} {spec.what} of "
                                  f"clip id {video_id}")
        if spec.kinds != "f" and array.size and (array.min() < 0 or array.max() > 1):
            raise DataFileError(self.path(part, video_id), f"values outside 0/1; expected {spec.what}")
        array = array.astype(np.float32, copy=False)
        if self.cache is not None:
            self.cache[key] = array
        return array

    def missing(self, part: str, video_ids: Sequence[str]) -> list[str]:
        """The ids among `video_ids` that have no file of `part`."""
        return [vid for vid in video_ids if not present(self.path(part, vid))]

    def check(self, video_ids: Sequence[str], workers: int = 4) -> int:
        """Read every input file of these clips once (shape, dtype, finite), so a bad file stops a
        run before its first epoch, not when it is reached hours later; returns the files checked.
        Cached stores keep what they read."""
        jobs = [(part, vid) for vid in dict.fromkeys(video_ids) for part in self.parts]
        pool = ThreadPoolExecutor(max_workers=workers)  # reads and isfinite release the GIL
        try:
            for _ in pool.map(lambda job: self.load(*job), jobs):
                pass
        finally:
            pool.shutdown(cancel_futures=True)  # the first bad file ends the check
        return len(jobs)


class AVVPDataset(Dataset):
    """Clips `indices` of a LabelSet with their inputs, as dicts of tensors (see module doc);
    `targets=False` (evaluation, prediction) leaves every label out of the items."""

    def __init__(self, labels: LabelSet, features: FeatureStore, indices: np.ndarray | None = None,
                 targets: bool = True):
        self.labels = labels
        self.features = features
        self.indices = np.arange(len(labels)) if indices is None else np.asarray(indices)
        self.targets = targets

    def __len__(self) -> int:
        return len(self.indices)

    def item(self, i: int, audio_from: int | None = None) -> dict[str, torch.Tensor]:
        """Clip i; with `audio_from`, the audio-side inputs and targets of another clip (CMRC)."""
        a = i if audio_from is None else audio_from
        lab = self.labels
        out = {part: torch.from_numpy(self.features.load(part, lab.video_ids[a if part in AUDIO_SIDE else i]))
               for part in self.features.parts}
        out["index"] = torch.tensor(i)
        if self.targets:
            out["pseudo_audio"] = torch.from_numpy(lab.pseudo_audio[a])
            out["pseudo_visual"] = torch.from_numpy(lab.pseudo_visual[i])
            out["has_pseudo"] = torch.tensor(bool(lab.has_pseudo[i] and lab.has_pseudo[a]))
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
