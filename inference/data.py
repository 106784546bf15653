"""AVVP data: labels (weak, segment pseudo-labels, review flags) and per-clip model inputs.

Labels come from an LLP-layout folder or from the label store (`best` labels:
manual where a human edited, else pseudo; out-of-taxonomy reviews respected). The
pseudo-labels are the imported ones (the folder's CLAP/CLIP segment_pseudo_labels,
the store's 'pseudo' source) unless a named pseudo-label set is chosen: a folder
`pseudo_root` (`DIR/pseudo/<name>`, written by `avvp-studio pseudo-label`) or the
store's source 'pseudo:<name>'. A set may carry confidences (segment_pseudo_scores,
EAR's generator probabilities); where it does not, the confidence is the 0/1 label.
Inputs (features, priors) are always read from the folder (`<dir>/<video id>.npy`),
lazily, so the full LLP (7.7 GB of ResNet features) never has to fit in memory.

What a model may read, and when (the honesty rule): segment pseudo-labels and their
confidences, whichever set they come from, are training TARGETS, gated by the clip's
video-level label; they are loaded for train clips only (a set's files of val/test
clips, which exist for scoring the set, are never read here), and only for models
that train on them. A model's INPUTS are features and priors (zero-shot segment
labels over all 25 classes, never gated by a video-level label, see
`inference.priors`). Evaluation items carry inputs only, so
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
    pseudo_score_audio, pseudo_score_visual (B, 10, 25)  their confidences in [0, 1] (the set's
                            score files; the 0/1 labels where it has none or a human edited)
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

from annotation.db import has_table, snapshot
from annotation.errors import DataFileError
from annotation.exporter import select_grids
from annotation.files import child_path, present
from annotation.importer import DENSE_FILES, PSEUDO_DIRS, WEAK_FILES, load_pseudo
from annotation.llp_csv import dense_grids, iter_dense_csv, read_weak_csv
from annotation.models import PredictionScores, Review
from annotation.npyfile import npy_shape, read_npy
from annotation.predictions import SEGMENT_SHAPE, unpack_scores
from annotation.taxonomy import NUM_CLASSES, NUM_SEGMENTS, parse_label_list

PRIOR_DIRS = {"audio": "CLAP/segment_prior_labels", "visual": "CLIP/segment_prior_labels"}
# confidences beside a pseudo-label set's 0/1 files, (10, 25) float32 in [0, 1] (EAR's generator writes them)
PSEUDO_SCORE_DIRS = {"audio": "CLAP/segment_pseudo_scores", "visual": "CLIP/segment_pseudo_scores"}
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

    Pseudo-labels and their confidences are filled for train clips only (they are training
    targets); the rows of val/test clips stay zero with `has_pseudo` False. Confidences left out
    (None) are the 0/1 pseudo-labels."""

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
    pseudo_score_audio: np.ndarray | None = None  # (N, 10, 25) float32 confidences in [0, 1]
    pseudo_score_visual: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.pseudo_score_audio is None:
            self.pseudo_score_audio = self.pseudo_audio.copy()
        if self.pseudo_score_visual is None:
            self.pseudo_score_visual = self.pseudo_visual.copy()

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
        pseudo_score_audio=np.zeros((n, NUM_SEGMENTS, NUM_CLASSES), np.float32),
        pseudo_score_visual=np.zeros((n, NUM_SEGMENTS, NUM_CLASSES), np.float32),
    )


def _read_pseudo_file(path: Path, clip: str) -> np.ndarray | None:
    if not present(path):
        return None
    return load_pseudo(path, clip).T.astype(np.float32)  # back to the (segments, classes) layout


def read_pseudo_scores(path: Path, clip: str) -> np.ndarray | None:
    """A (10, 25) confidence file of a pseudo-label set (float, finite, in [0, 1]); None when absent."""
    if not present(path):
        return None
    expected = f"{PRIOR_SHAPE} (segments, classes) finite float confidences in [0, 1]"
    array = read_npy(path, shape=PRIOR_SHAPE, kinds="f", finite=True, expected=expected, clip=clip)
    if array.size and (array.min() < 0 or array.max() > 1):
        raise DataFileError(path, f"values outside [0, 1] (min {array.min():.4g}, max {array.max():.4g}); "
                                  f"expected {expected}", clip=clip)
    return array.astype(np.float32)


def labels_from_folder(data_dir: str | Path, pseudo: bool = True, pseudo_root: str | Path | None = None) -> LabelSet:
    """Weak labels, truth and (with `pseudo`) the train clips' pseudo-label files of a data folder:
    those under `pseudo_root` (a pseudo-label set, e.g. DIR/pseudo/<name>) when given, else the
    folder's own; with their confidence files (segment_pseudo_scores) where present."""
    data_dir = Path(data_dir)
    root = data_dir if pseudo_root is None else Path(pseudo_root)
    if pseudo and pseudo_root is not None and not present(root, "folder"):
        raise DataFileError(root, f"no pseudo-label set here; expected {PSEUDO_DIRS['audio']} and "
                                  f"{PSEUDO_DIRS['visual']} inside (avvp-studio pseudo-label writes them)")
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
        vid, found = row.filename[:11], 0
        for track, target, scores in (("audio", labels.pseudo_audio, labels.pseudo_score_audio),
                                      ("visual", labels.pseudo_visual, labels.pseudo_score_visual)):
            grid = _read_pseudo_file(root / PSEUDO_DIRS[track] / f"{vid}.npy", row.filename)
            if grid is not None:
                target[i] = grid
                score = read_pseudo_scores(root / PSEUDO_SCORE_DIRS[track] / f"{vid}.npy", row.filename)
                scores[i] = grid if score is None else score
                found += 1
        labels.has_pseudo[i] = found == 2
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


def labels_from_store(engine, pseudo: bool = True, pseudo_source: str = "pseudo") -> LabelSet:
    """The cleaned labels of the database: best grids of the train clips (manual where edited, else
    `pseudo_source`: the imported 'pseudo' or a set 'pseudo:<name>'), with the set's stored
    confidences (manual grids are their own), out-of-taxonomy from reviews, truth. Manual labels of
    val/test clips are never read."""
    with snapshot(engine) as conn:  # one moment's labels, truth and reviews, while annotators save edits
        if pseudo:
            grids = select_grids(conn, "best", "train", pseudo_source=pseudo_source)[1]
            manual = select_grids(conn, "manual", "train")[1]
            scores = _stored_scores(conn, pseudo_source)
        else:
            grids, manual, scores = {"audio": {}, "visual": {}}, {"audio": {}, "visual": {}}, {}
        everything, truth = select_grids(conn, "truth", "all")
        oot = set(conn.execute(select(Review.clip_id).where(Review.status == "out_of_taxonomy")).scalars())
    labels = _empty_labels([c.filename for c in everything], [c.video_id for c in everything],
                           [c.split for c in everything], [c.id in oot for c in everything])
    for i, clip in enumerate(everything):
        labels.weak[i, parse_label_list(clip.weak_labels)] = 1
        audio, visual = grids["audio"].get(clip.id), grids["visual"].get(clip.id)
        for track, grid, target, confidence in (("audio", audio, labels.pseudo_audio, labels.pseudo_score_audio),
                                                ("visual", visual, labels.pseudo_visual, labels.pseudo_score_visual)):
            if grid is None:
                continue
            target[i] = grid.T
            stored = scores.get(clip.id)
            human = clip.id in manual[track]
            confidence[i] = grid.T if stored is None or human else stored[0 if track == "audio" else 1].T
        labels.has_pseudo[i] = audio is not None and visual is not None
        if clip.id in truth["audio"]:
            labels.truth_audio[clip.filename] = truth["audio"][clip.id]
        if clip.id in truth["visual"]:
            labels.truth_visual[clip.filename] = truth["visual"][clip.id]
    return labels


def _stored_scores(conn, source: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """clip_id -> ((25, 10) audio, (25, 10) visual) confidences stored with a pseudo-label set."""
    if source == "pseudo" or not has_table(conn, PredictionScores.__tablename__):
        return {}
    p = PredictionScores.__table__
    rows = conn.execute(select(p.c.clip_id, p.c.audio, p.c.visual).where(p.c.source == source))
    return {row.clip_id: (unpack_scores(row.audio, SEGMENT_SHAPE), unpack_scores(row.visual, SEGMENT_SHAPE))
            for row in rows}


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
            out["pseudo_score_audio"] = torch.from_numpy(lab.pseudo_score_audio[a])
            out["pseudo_score_visual"] = torch.from_numpy(lab.pseudo_score_visual[i])
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
