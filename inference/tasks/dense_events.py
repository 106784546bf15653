"""The dense-event task: pre-training EAR's pseudo-label generator (stage 1) with the shared trainer.

Two data sources, one task:
- a dense-event folder (`avvp-studio import unav`, read by `annotation.dense_events`): audio-visual labels
  only; the uni-modal labels are migrated per batch from them (`inference.label_migration`, in the model's
  loss). Validation on the folder's val split (UnAV-100's 'validation' subset), test on its test split.
- the train clips a person corrected in a label store: clips whose audio AND visual tracks are 'manual'.
  Their features and captions come from the LLP data folder; the uni-modal labels are the human tracks,
  the audio-visual label is audio AND visual. Only train clips are ever read (edits of val/test clips would
  leak human judgement into LLP scores); validation is a seeded held-out `val_fraction` of them (at least
  one), there is no test split.

Clips of any length are cut into windows of `window` consecutive segments (default 10, LLP's clip length,
the length the generator is applied to in stage 2): non-overlapping, the last one shorter and padded, its
padding masked in attention, loss and metrics. Training items carry features, captions and labels; the
generator's forward reads features, captions and the padding mask only. Evaluation runs the same windows.

Metrics (the paper reports none for pre-training), for every track with labels (AV: the generator's `av`
probability, `av_combine` of Eq. 6-7; audio / visual: the dynamic probabilities): segment-level average
precision per class, averaged over the classes with a positive segment in the split (mAP; ties as
scikit-learn's average_precision_score), and micro precision / recall / F1 of p > `pseudo_threshold`.
The checkpoint is chosen on the val split by
- dense-event data (AV labels only): the AV mAP. Threshold-free: AV probabilities are products of two
  probabilities, so a 0.5 cut says little about them.
- corrected clips (human audio and visual labels): the mean of the audio and visual F1 of the stage-2 rule
  itself (Eq. 9: p > pseudo_threshold AND the clip's classes, the union of its audio and visual labels, as
  an LLP weak label is), i.e. the quality of the pseudo-labels the generator will give. (The mAP of the
  synthetic demo reaches 1.0 within a few epochs while this F1 still improves.)
LLP's own val/test data is never read.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from annotation.errors import DataFileError
from annotation.files import child_path, present
from annotation.npyfile import npy_shape, read_npy
from inference.checkpoint import RunError
from inference.models import get_entry
from inference.priors import CAPTION_FILES, FEATURE_DIRS
from inference.train import to_device
from inference.typed_config import checked_fields

TASK = "dense_events"
WINDOW = 10  # LLP's clip length
CACHE_CLIPS = 4000  # smaller sets keep their features in memory
DIM_FIELDS = {"audio": "audio_dim", "visual": "visual_dim"}


def features_command(root: Path) -> str:
    return f"avvp-studio features --data {root} --set clip_clap"


@dataclass
class DenseEventOptions:
    """The task's training options (TrainConfig.task_options)."""

    source: str | None = None  # dense | store: a resume on the other kind of data is refused
    window: int = WINDOW
    val_fraction: float = 0.1  # corrected clips held out for validation (store source)
    # videos of the dense folder sharing a YouTube id with LLP val/test clips that its import kept
    # (--keep-llp-overlap): every pseudo-label set of the generator reports and warns about them
    llp_overlap_kept: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DenseEventOptions:
        try:
            options = cls(**checked_fields(cls, data, "dense-event task options"))
        except ValueError as exc:
            raise RunError(str(exc)) from None
        if options.source not in (None, "dense", "store"):
            raise RunError(f"source {options.source!r}; expected dense or store")
        if not 1 <= options.window <= 4096:
            raise RunError(f"window {options.window}; expected 1..4096 segments")
        if not 0 < options.val_fraction < 1:
            raise RunError(f"val_fraction {options.val_fraction}; expected a fraction between 0 and 1")
        return options


@dataclass
class EventClip:
    key: str  # file stem of its features (video id)
    split: str  # train | val | test
    segments: int
    labels: dict[str, np.ndarray]  # "av" (T, C) and, for human labels, "audio", "visual"; uint8 0/1


@dataclass
class EventData:
    """Clips, labels and captions of one source, checked for presence (files are read by the task)."""

    root: Path  # the folder of the features and captions
    source: str  # dense | store
    what: str  # for people
    classes: list[str]
    clips: list[EventClip]
    captions: dict[str, np.ndarray]  # track -> (C, d) float32
    uni_modal: bool  # labels hold human audio/visual tracks (else migrated in the loss)
    notes: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[EventClip]:
        return [c for c in self.clips if c.split == name]


# ---------------------------------------------------------------- reading

def read_captions(root: Path, classes: int) -> dict[str, np.ndarray]:
    """The (C, d) caption embeddings of both tracks; their row count must be the label's class count."""
    out = {}
    for track, rel in CAPTION_FILES.items():
        path = root / rel
        if not present(path):
            raise DataFileError(path, f"missing {track} caption embeddings ({classes}, d); they are written with the "
                                      f"features: {features_command(root)}")
        array = read_npy(path, shape=lambda s: len(s) == 2, kinds="f", finite=True,
                         expected=f"({classes}, d) float {track} caption embeddings")
        if array.shape[0] != classes:
            raise DataFileError(path, f"{array.shape[0]} caption rows, but the labels have {classes} classes; the "
                                      "captions must be of the same classes, in the same order")
        out[track] = array.astype(np.float32)
    return out


def check_feature_files(root: Path, keys: Sequence[str]) -> None:
    """Every clip has both feature files (a stat per file; the contents are read in `prepare`)."""
    for track, rel in FEATURE_DIRS.items():
        for key in keys:
            path = child_path(root / rel, f"{key}.npy")
            if not present(path):
                raise DataFileError(path, f"missing {track} features of clip {key}; extract them with: "
                                          f"{features_command(root)}")


def dense_event_data(folder: str | Path) -> EventData:
    """A dense-event folder (`avvp-studio import unav` + `avvp-studio features`)."""
    from annotation.dense_events import load_event_labels, read_dense_events

    events = read_dense_events(folder)
    root = Path(events.root)
    if "av" not in events.track_names:
        raise DataFileError(root / "dense_events.json", f"tracks {events.tracks!r}; expected audio-visual labels (av)")
    clips = []
    for clip in events.clips:  # the reader checked ids, splits and segments >= 1
        av = load_event_labels(events, clip)["av"]
        clips.append(EventClip(clip.video_id, clip.split, clip.segments, {"av": av}))
    if not any(c.split == "train" for c in clips):
        raise DataFileError(root / "dense_events.json", "no train clips; expected some clips with split 'train'")
    check_feature_files(root, [c.key for c in clips])
    captions = read_captions(root, len(events.classes))
    return EventData(root, "dense", f"{events.source} dense-event folder {root}", list(events.classes), clips,
                     captions, uni_modal=False)


@dataclass(frozen=True)
class _Names:
    """The clip names `inference.data.check_same_clips` compares with the folder's weak-label files."""

    filenames: list[str]
    video_ids: list[str]


def _manual_counts(conn) -> dict[str, int]:
    from sqlalchemy import select

    from annotation.models import Clip, LabelTrack

    t, c = LabelTrack.__table__, Clip.__table__
    rows = conn.execute(select(t.c.clip_id, t.c.track, c.c.split).join(c, c.c.id == t.c.clip_id)
                        .where(t.c.source == "manual")).all()
    tracks: dict[int, set[str]] = {}
    splits: dict[int, str] = {}
    for row in rows:
        tracks.setdefault(row.clip_id, set()).add(row.track)
        splits[row.clip_id] = row.split
    train = [k for k in tracks if splits[k] == "train"]
    return {"clips": len(tracks), "train_both": sum(len(tracks[k]) == 2 for k in train),
            "train_audio_only": sum(tracks[k] == {"audio"} for k in train),
            "train_visual_only": sum(tracks[k] == {"visual"} for k in train),
            "not_train": sum(splits[k] != "train" for k in tracks)}


def store_event_data(engine, data_dir: str | Path, val_fraction: float = 0.1, seed: int = 1) -> EventData:
    """The train clips of the store whose two tracks a person corrected, with the LLP folder's features."""
    from annotation.db import snapshot
    from annotation.exporter import select_grids
    from annotation.taxonomy import CLASSES, NUM_SEGMENTS
    from inference.data import check_same_clips

    root = Path(data_dir)
    with snapshot(engine) as conn:
        clips, grids = select_grids(conn, "manual", "train")
        counts = _manual_counts(conn)
    corrected = [c for c in clips if c.id in grids["audio"] and c.id in grids["visual"]]
    if len(corrected) < 2:
        raise RunError(
            f"the database has {len(corrected)} corrected train clip(s); EAR pre-training on corrected clips needs at "
            f"least 2 (one is held out for validation), and a clip counts only when a person edited BOTH its audio "
            f"and its visual track. Clips with manual tracks: {counts['clips']} (train: {counts['train_both']} both, "
            f"{counts['train_audio_only']} audio only, {counts['train_visual_only']} visual only; "
            f"{counts['not_train']} val/test clip(s), never used for training)")
    check_same_clips(_Names([c.filename for c in corrected], [c.video_id for c in corrected]), root)
    order = np.random.default_rng(seed).permutation(len(corrected))
    held = {int(i) for i in order[: min(len(corrected) - 1, max(1, round(len(corrected) * val_fraction)))]}
    out = []
    for i, clip in enumerate(corrected):
        audio, visual = grids["audio"][clip.id].T.astype(np.uint8), grids["visual"][clip.id].T.astype(np.uint8)
        out.append(EventClip(clip.video_id, "val" if i in held else "train", NUM_SEGMENTS,
                             {"av": audio & visual, "audio": audio, "visual": visual}))
    check_feature_files(root, [c.key for c in out])
    captions = read_captions(root, len(CLASSES))
    note = (f"{len(corrected)} corrected train clips (audio and visual tracks edited by a person): "
            f"{len(corrected) - len(held)} train, {len(held)} held out for validation (seed {seed}); "
            "uni-modal labels from the human tracks, audio-visual = audio AND visual; val/test edits never read")
    return EventData(root, "store", f"corrected train clips with features in {root}", list(CLASSES), out, captions,
                     uni_modal=True, notes=[note])


class ClipFeatures:
    """Per-clip (T, d) features of both tracks, checked (shape, dtype, finite) on every read."""

    def __init__(self, root: Path, dims: dict[str, int], cache: bool):
        self.root, self.dims = root, dims
        self.cache: dict[tuple[str, str], np.ndarray] | None = {} if cache else None

    def path(self, track: str, key: str) -> Path:
        return child_path(self.root / FEATURE_DIRS[track], f"{key}.npy")

    def load(self, track: str, clip: EventClip) -> np.ndarray:
        if self.cache is not None and (track, clip.key) in self.cache:
            return self.cache[(track, clip.key)]
        shape = (clip.segments, self.dims[track])
        array = read_npy(self.path(track, clip.key), shape=shape, kinds="f", finite=True,
                         expected=f"finite float {shape} {track} features of clip {clip.key} (one row per segment)")
        array = array.astype(np.float32, copy=False)
        if self.cache is not None:
            self.cache[(track, clip.key)] = array
        return array


def detect_dims(root: Path, key: str) -> dict[str, int]:
    dims = {}
    for track, rel in FEATURE_DIRS.items():
        path = child_path(root / rel, f"{key}.npy")
        shape = npy_shape(path, f"(segments, dim) {track} features")
        if len(shape) != 2:
            raise DataFileError(path, f"shape {shape}; expected (segments, dim) {track} features")
        dims[track] = shape[1]
    return dims


# ---------------------------------------------------------------- items

class WindowDataset(Dataset):
    """Windows of `window` segments of `clips` (padded; `valid` marks real segments), with the labels when
    `targets`."""

    def __init__(self, clips: Sequence[EventClip], features: ClipFeatures, window: int, targets: bool):
        self.clips, self.features, self.window, self.targets = list(clips), features, window, targets
        self.windows = [(i, start, min(window, clip.segments - start))
                        for i, clip in enumerate(self.clips) for start in range(0, clip.segments, window)]

    def __len__(self) -> int:
        return len(self.windows)

    def _pad(self, array: np.ndarray, start: int, length: int) -> torch.Tensor:
        out = np.zeros((self.window, array.shape[1]), np.float32)
        out[:length] = array[start: start + length]
        return torch.from_numpy(out)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        i, start, length = self.windows[k]
        clip = self.clips[i]
        item = {track: self._pad(self.features.load(track, clip), start, length) for track in FEATURE_DIRS}
        valid = torch.zeros(self.window, dtype=torch.bool)
        valid[:length] = True
        item["valid"] = valid
        if self.targets:
            for name, labels in clip.labels.items():
                item[f"label_{name}"] = self._pad(labels, start, length)
        return item

    def truth(self, track: str) -> np.ndarray:
        """(segments, C) labels of every real segment, in window order."""
        return np.concatenate([self.clips[i].labels[track][s: s + n] for i, s, n in self.windows])

    def clip_classes(self) -> np.ndarray:
        """(segments, C): for every real segment, the classes of its clip (any track, any segment), the gate of
        Eq. 9 as an LLP weak label would give it."""
        present = [np.logical_or.reduce([lab.any(axis=0) for lab in clip.labels.values()]) for clip in self.clips]
        return np.concatenate([np.broadcast_to(present[i], (n, len(present[i]))) for i, _, n in self.windows])


# ---------------------------------------------------------------- metrics

def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """AP of one class: sum over distinct thresholds of (recall step) x precision (ties grouped, as
    scikit-learn's average_precision_score). `truth` must hold a positive."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], truth[order].astype(np.float64)
    tp, fp = np.cumsum(y), np.cumsum(1 - y)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    precision = tp[last] / (tp[last] + fp[last])
    recall = tp[last] / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def f1_counts(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """Micro (precision, recall, F1) of boolean arrays; 0 where undefined."""
    tp, npred, ntrue = int((pred & truth).sum()), int(pred.sum()), int(truth.sum())
    return (tp / npred if npred else 0.0, tp / ntrue if ntrue else 0.0,
            2 * tp / (npred + ntrue) if npred + ntrue else 0.0)


def track_scores(prob: np.ndarray, truth: np.ndarray, threshold: float,
                 allowed: np.ndarray | None = None) -> dict[str, float]:
    """Segment mAP over the classes with a positive, micro precision/recall/F1 of prob > threshold, and with
    `allowed` (segments, C) the F1 of (prob > threshold) AND allowed ("f1_gated", Eq. 9's rule)."""
    truth = truth.astype(bool)
    classes = [c for c in range(truth.shape[1]) if truth[:, c].any()]
    ap = [average_precision(prob[:, c], truth[:, c]) for c in classes]
    pred = prob > threshold
    precision, recall, f1 = f1_counts(pred, truth)
    out = {"map": float(np.mean(ap)) if ap else 0.0, "classes_scored": len(classes), "precision": precision,
           "recall": recall, "f1": f1}
    if allowed is not None:
        out["f1_gated"] = f1_counts(pred & allowed, truth)[2]
    return out


def collate_windows(items: list[dict[str, torch.Tensor]], captions: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    batch = {key: torch.stack([item[key] for item in items]) for key in items[0]}
    for track, table in captions.items():  # the same captions for every window: a view, not B copies
        batch[f"text_{track}"] = table.unsqueeze(0).expand(len(items), -1, -1)
    return batch


@torch.no_grad()
def infer(model: torch.nn.Module, dataset: WindowDataset, captions: dict[str, torch.Tensor], device: torch.device,
          batch_size: int) -> dict[str, np.ndarray]:
    """(segments, C) probabilities of every real segment, in window order: audio, visual (dynamic) and av."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                        collate_fn=lambda items: collate_windows(items, captions))
    was_training = model.training
    model.eval()
    out: dict[str, list[np.ndarray]] = {"audio": [], "visual": [], "av": []}
    try:
        for batch in loader:
            valid = batch["valid"]
            probs = model(to_device(batch, device))
            for key, parts in out.items():
                parts.append(probs[key].float().cpu()[valid].numpy())
    finally:
        model.train(was_training)
    return {k: np.concatenate(v) if v else np.zeros((0, 0), np.float32) for k, v in out.items()}


# ---------------------------------------------------------------- the task

class DenseEventTask:
    """EAR generator pre-training on `EventData` (see the module docstring)."""

    name = TASK
    SELECTIONS: ClassVar[dict[bool, str]] = {
        False: "val segment AV mAP", True: "val mean audio/visual F1 of the gated pseudo-label rule (Eq. 9)"}

    def __init__(self, data: EventData, cache: bool | None = None):
        self.data = data
        self.selection = self.SELECTIONS[data.uni_modal]
        self.cache = len(data.clips) <= CACHE_CLIPS if cache is None else cache
        self.options = DenseEventOptions()
        self.model: torch.nn.Module | None = None
        self.features: ClipFeatures | None = None
        self.captions = {track: torch.from_numpy(table) for track, table in data.captions.items()}

    def build_model(self, config) -> torch.nn.Module:
        entry = get_entry(config.model)
        if entry.task != self.name:
            raise RunError(f"{config.model!r} is a {entry.task} model, not a dense-event pseudo-label generator")
        self.options = DenseEventOptions.from_dict(config.task_options)
        if self.options.source not in (None, self.data.source):
            raise RunError(f"the run was trained on {self.options.source} data; this is {self.data.what}")
        dims = detect_dims(self.data.root, self.data.split("train")[0].key)
        for track, table in self.data.captions.items():
            if table.shape[1] != dims[track]:
                raise DataFileError(self.data.root / CAPTION_FILES[track],
                                    f"{table.shape[1]}-d captions, but the {track} features are {dims[track]}-d; "
                                    "captions and features must come from the same encoder")
        model_config = dict(config.model_config)
        for track, key in DIM_FIELDS.items():
            if model_config.get(key) is None:
                model_config[key] = dims[track]
            elif model_config[key] != dims[track]:
                raise RunError(f"the model reads {model_config[key]}-d {track} features ({key}); the data's are "
                               f"{dims[track]}-d")
        try:
            model = entry.model_cls(entry.config_cls.from_dict(model_config))
        except (ValueError, TypeError, RuntimeError) as exc:
            raise RunError(f"model {config.model}: {exc}") from None
        self.features = ClipFeatures(self.data.root, dims, self.cache)
        self.model = model
        return model

    def prepare(self, model: torch.nn.Module) -> list[str]:
        """Read every feature file once (shape, dtype, finite) before the first epoch."""
        for clip in self.data.clips:
            for track in FEATURE_DIRS:
                self.features.load(track, clip)
        train = self.data.split("train")
        count = len(WindowDataset(train, self.features, self.options.window, targets=False))
        c = model.config
        labels = ("uni-modal labels from the human tracks" if self.data.uni_modal else
                  f"uni-modal labels migrated per batch (tau_audio {c.tau_audio:g}, tau_visual {c.tau_visual:g})")
        data = (f"data: {self.data.what}, {len(self.data.classes)} classes; inputs: features of "
                f"{len(self.data.clips)} clips checked (shape, dtype, finite)")
        windows = (f"train: {count} windows of up to {self.options.window} segments from {len(train)} clips; "
                   f"{labels}; loss weights lambda_audio {c.lambda_audio:g}, lambda_visual {c.lambda_visual:g}")
        return [*self.data.notes, data, windows]

    def train_dataset(self, config) -> Dataset:
        return WindowDataset(self.data.split("train"), self.features, self.options.window, targets=True)

    def collate(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return collate_windows(items, self.captions)

    def split_sizes(self) -> dict[str, int]:
        return {split: len(self.data.split(split)) for split in ("val", "test")}

    def evaluate(self, model: torch.nn.Module, split: str, device: torch.device, batch_size: int) -> dict | None:
        clips = self.data.split(split)
        if not clips:
            return None
        dataset = WindowDataset(clips, self.features, self.options.window, targets=False)
        probs = infer(model, dataset, self.captions, device, batch_size)
        threshold = float(model.config.pseudo_threshold)
        if self.data.uni_modal:
            allowed = dataset.clip_classes()
            scores = {track: track_scores(probs[track], dataset.truth(track), threshold, allowed)
                      for track in ("audio", "visual")}
            scores["av"] = track_scores(probs["av"], dataset.truth("av"), threshold)
            score = (scores["audio"]["f1_gated"] + scores["visual"]["f1_gated"]) / 2
        else:
            scores = {"av": track_scores(probs["av"], dataset.truth("av"), threshold)}
            score = scores["av"]["map"]
        return {"score": score, "selection": self.selection, "tracks": scores, "threshold": threshold,
                "clips": len(clips), "segments": len(probs["av"])}

    @staticmethod
    def selection_score(metrics: dict) -> float:
        return metrics["score"]

    @staticmethod
    def describe(metrics: dict) -> str:
        def name(track: str) -> str:
            return "AV" if track == "av" else track

        tracks = metrics["tracks"].items()
        maps = ", ".join(f"{name(t)} {s['map']:.3f}" for t, s in tracks)
        f1 = ", ".join(f"{name(t)} {s['f1']:.3f}" for t, s in tracks)
        gated = "".join(f", gated {name(t)} {s['f1_gated']:.3f}" for t, s in tracks if "f1_gated" in s)
        return f"score {metrics['score']:.3f}; segment mAP {maps}; F1@>{metrics['threshold']:g} {f1}{gated}"
