"""The AVVP task: LLP-style labels and inputs, CMRC, the exact AVVP metrics, val segment Type@AV.

Honesty is structural here: training items carry targets (weak label, segment
pseudo-labels of train clips); evaluation items carry inputs only (features, and
priors for the models that read them), so a prediction cannot depend on a val/test
clip's video-level label, truth or human edits. The best checkpoint is the one
with the highest val segment Type@AV (HAN's and VALOR's selection); test is scored
once, with that checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from annotation.errors import DataFileError
from annotation.importer import PSEUDO_DIRS
from inference.checkpoint import RunError
from inference.data import (
    PRIOR_COMMAND, PRIOR_DIRS, PRIOR_SHAPE, AVVPDataset, FeatureStore, LabelSet, collate_items, detect_shapes, feature_parts,
    prior_parts,
)
from inference.metrics import evaluate_probabilities
from inference.models import AVVPModel, get_entry
from inference.train import to_device
from inference.typed_config import checked_fields

CACHE_LIMIT = 4000  # clips; smaller datasets keep their inputs in memory


@dataclass
class AVVPOptions:
    """The AVVP task's training options (TrainConfig.task_options)."""

    cmrc: int = 0  # cross-modal random combination clips added to the train split (0 = off)
    cmrc_min_label_count: int = 50  # label sets must be seen more often than this (MUG: 50; tiny data: 0)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AVVPOptions":
        try:
            options = cls(**checked_fields(cls, data, "AVVP task options"))
        except ValueError as exc:
            raise RunError(str(exc)) from None
        if options.cmrc < 0 or options.cmrc_min_label_count < 0:
            raise RunError("cmrc and cmrc_min_label_count must be >= 0")
        return options


@torch.no_grad()
def infer(model: torch.nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 64,
          zero_priors: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment probabilities (V, 25, 10) audio and visual, and global probabilities (V, 25), in dataset
    order. `zero_priors` feeds all-zero priors (an ablation: how much the model leans on them)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_items)
    was_training = model.training
    model.eval()
    seg_a, seg_v, glob = [], [], []
    try:
        for batch in loader:
            if zero_priors:  # the prior files are not read at all: all-zero priors instead
                rows = len(next(iter(batch.values())))
                batch.update({f"prior_{t}": torch.zeros(rows, *PRIOR_SHAPE) for t in ("audio", "visual")})
            out = model(to_device(batch, device))
            seg_a.append(out["segment_audio"].transpose(1, 2).float().cpu().numpy())
            seg_v.append(out["segment_visual"].transpose(1, 2).float().cpu().numpy())
            glob.append(out["global"].float().cpu().numpy())
    finally:
        model.train(was_training)
    if not glob:
        empty = np.zeros((0, 25, 10), np.float32)
        return empty, empty.copy(), np.zeros((0, 25), np.float32)
    return np.concatenate(seg_a), np.concatenate(seg_v), np.concatenate(glob)


def truth_for(labels: LabelSet, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """(V, 25, 10) audio and visual truth of `indices`, or None when the split has no truth at all.

    A clip of a split with truth but without rows is all zeros (LLP evaluation semantics).
    """
    names = [labels.filenames[i] for i in indices]
    if not names or not any(n in labels.truth_audio or n in labels.truth_visual for n in names):
        return None
    zeros = np.zeros((25, 10), np.uint8)
    audio = np.stack([labels.truth_audio.get(n, zeros) for n in names])
    visual = np.stack([labels.truth_visual.get(n, zeros) for n in names])
    return audio, visual


def score(labels: LabelSet, indices: Sequence[int], probs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict | None:
    """The ten AVVP numbers of predictions `probs` (binarised by the published rule), or None without truth."""
    truth = truth_for(labels, indices)
    if truth is None:
        return None
    return evaluate_probabilities(*probs, *truth)


class AVVPTask:
    """Audio-visual video parsing on an LLP-layout data folder (labels from the folder or the store)."""

    name = "avvp"
    selection = "val segment Type@AV"

    def __init__(self, labels: LabelSet, data_dir: str | Path, cache: bool | None = None, zero_priors: bool = False):
        self.labels, self.data_dir = labels, Path(data_dir)
        self.cache = len(labels) <= CACHE_LIMIT if cache is None else cache
        self.zero_priors = zero_priors
        self.features: FeatureStore | None = None
        self.model: AVVPModel | None = None

    # ------------------------------------------------------------ model and inputs

    def build_model(self, config) -> AVVPModel:
        """The model of `config`, its input shapes taken from the data folder where the config
        leaves them open (so VALOR's (64, 768) CLAP maps are read as maps)."""
        entry = get_entry(config.model)
        if entry.task != self.name:
            raise RunError(f"{config.model!r} is a {entry.task} model, not an AVVP parser")
        model_config = dict(config.model_config)
        feature_set = model_config.setdefault("feature_set", entry.config_cls().feature_set)
        try:
            for part, shape in detect_shapes(self.data_dir, feature_set).items():
                if model_config.get(f"{part}_shape") is None:
                    model_config[f"{part}_shape"] = shape
            model = entry.model_cls(entry.config_cls.from_dict(model_config))
        except DataFileError:
            raise
        except (ValueError, TypeError, RuntimeError, AssertionError) as exc:
            raise RunError(f"model {config.model}: {exc}") from None
        self.attach(model)
        return model

    def attach(self, model: AVVPModel) -> None:
        """Read the inputs `model` takes (its feature set and shapes; priors if it reads them)."""
        parts = feature_parts(model.config.feature_set, model.config.resolve_inputs())
        if self.zero_priors and not model.needs_priors:
            raise RunError(f"--zero-priors: the {model.model_name} model reads no priors")
        if model.needs_priors and not self.zero_priors:
            parts.update(prior_parts())
        self.features = FeatureStore(self.data_dir, parts, cache=self.cache)
        self.model = model

    def check_inputs(self, indices: Sequence[int]) -> int:
        """Refuse missing priors (naming the command that makes them), then read every input file
        of these clips once (shape, dtype, finite); returns the files checked."""
        ids = [self.labels.video_ids[i] for i in indices]
        for track, folder in PRIOR_DIRS.items():
            part = f"prior_{track}"
            if part in self.features.parts:
                missing = self.features.missing(part, ids)
                if missing:
                    raise RunError(f"{len(missing)} of {len(ids)} clips have no {track} prior in "
                                   f"{self.data_dir / folder} (e.g. {missing[0]}.npy); the {self.model.model_name} "
                                   f"model reads priors (zero-shot segment labels); make them with: {PRIOR_COMMAND}")
        return self.features.check(ids)

    def prepare(self, model: AVVPModel) -> list[str]:
        notes = []
        train = self.labels.indices("train")
        if len(train) == 0:
            raise RunError("the data has no train clips")
        if model.uses_pseudo_labels:
            lacking = int((~self.labels.has_pseudo[train]).sum())
            where = f"{PSEUDO_DIRS['audio']} and {PSEUDO_DIRS['visual']}"
            if lacking == len(train):
                raise RunError(f"none of the {len(train)} train clips has segment pseudo-labels ({where}); the "
                               f"{model.model_name} model trains on them (han trains on video-level labels only)")
            if lacking:
                notes.append(f"{lacking} of {len(train)} train clips have no segment pseudo-labels ({where}); "
                             "their segment terms are left out")
            if hasattr(model, "fit_train_labels"):
                # a loss that needs statistics of the training targets (EAR's class-balance weights) gets them
                # from the TRAIN clips' pseudo-labels only; the model keeps them as buffers (in checkpoints)
                kept = train[self.labels.has_pseudo[train]]
                notes.append(model.fit_train_labels(self.labels.pseudo_audio[kept], self.labels.pseudo_visual[kept]))
        checked = self.check_inputs(self.labels.indices("all"))
        notes.append(f"inputs: {checked} files of {len(self.labels)} clips checked (shape, dtype, finite)")
        return notes

    # ------------------------------------------------------------ data

    def train_dataset(self, config) -> Dataset:
        options = AVVPOptions.from_dict(config.task_options)
        dataset: Dataset = AVVPDataset(self.labels, self.features, self.labels.indices("train"))
        if options.cmrc > 0:
            from inference import cmrc  # only needed with --cmrc

            try:
                combined = cmrc.build_cmrc_dataset(dataset, options.cmrc, config.seed,
                                                   min_label_count=options.cmrc_min_label_count)
            except cmrc.NoEligibleLabelSetError as exc:
                raise RunError(f"--cmrc {options.cmrc}: {exc}") from None
            dataset = ConcatDataset([dataset, combined])
        return dataset

    @staticmethod
    def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return collate_items(items)

    def split_sizes(self) -> dict[str, int]:
        return {split: len(self.labels.indices(split)) for split in ("val", "test")}

    # ------------------------------------------------------------ evaluation

    def predict_split(self, model: torch.nn.Module, indices: Sequence[int], device: torch.device,
                      batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dataset = AVVPDataset(self.labels, self.features, np.asarray(indices, dtype=np.int64), targets=False)
        return infer(model, dataset, device, batch_size, self.zero_priors)

    def evaluate(self, model: torch.nn.Module, split: str, device: torch.device, batch_size: int) -> dict | None:
        indices = self.labels.indices(split)
        if len(indices) == 0 or truth_for(self.labels, indices) is None:
            return None
        return score(self.labels, indices, self.predict_split(model, indices, device, batch_size))

    @staticmethod
    def selection_score(metrics: dict) -> float:
        return metrics["segment"]["type"]

    @staticmethod
    def describe(metrics: dict) -> str:
        return f"segment Type@AV {metrics['segment']['type']:.3f}"
