"""The AVS task: audio-visual segmentation on AVSBench-layout data (S4, MS3, AVSS) with the shared trainer.

Training items carry frames, the clip's log-mel audio and the ground-truth masks of the frames that
have them (S4 train: frame 1 only, as AVSBench); evaluation items carry frames and audio only (and
which frames are real: AVSS pads its 5-frame clips to 10 with zero frames, as the official loader),
so a prediction cannot depend on a val/test clip's masks. The best checkpoint is the one with the
highest val mIoU (AVSBench's own selection; AVS-Mamba's released scripts select on test, which this
project never does). Metrics are the exact AVSBench ones (`inference.avs_metrics`), F-score grouped
by `group_videos` videos per batch (AVSBench's test batch: one video).

Inputs as the official loaders make them: S4/MS3 frames and masks at the model's `image_size` (AVSBench
feeds its 224x224 files as they are: the same at 224; other sizes are resized, bilinear / nearest); AVSS
resized for evaluation and, in training, short side resized then the centre square cut (its
`crop_resize_img`, no randomness). One difference: OpenCV's bilinear resize where AVSBench uses PIL's, whose
downscaling filter is wider (antialiased); the masks' nearest-neighbour resize is the same rule.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from annotation.avsbench import AUDIO_SECONDS, AVSS_CLASSES, AVSClip, AVSData, check_mask_size, read_image, read_truth
from annotation.errors import DataFileError
from inference.checkpoint import RunError
from inference.models import get_entry
from inference.train import to_device
from inference.typed_config import checked_fields

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
FRAMES = AUDIO_SECONDS  # frames a model sees per clip: one per second (AVSS pads its 5-frame clips to 10)


@dataclass
class AVSOptions:
    """The AVS task's training options (TrainConfig.task_options)."""

    backbone_weights: str | None = None  # a local checkpoint of the visual backbone (torchvision/whai362/timm keys)
    vggish_weights: str | None = None  # a local torchvggish checkpoint
    group_videos: int = 1  # videos per F-score batch (AVSBench's test loop: 1)
    subset: str | None = None  # the AVSBench subset the run trains on (a resume on another is refused)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AVSOptions":
        try:
            options = cls(**checked_fields(cls, data, "AVS task options"))
        except ValueError as exc:
            raise RunError(str(exc)) from None
        if options.group_videos < 1:
            raise RunError("group_videos must be >= 1")
        return options


def clip_log_mel(clip: AVSClip, cache_dir: Path | None) -> np.ndarray:
    """(seconds, 1, 96, 64) float32: the .pkl log-mel where the layout has one (read by the restricted
    unpickler), else the VGGish front end on the wav; padded as AVSBench pads (S4/MS3 5 s, AVSS 10 s)."""
    from annotation.avs_audio import cached_log_mel

    path = clip.audio_pkl or clip.audio_wav
    try:
        return cached_log_mel(path, cache_dir, seconds=AUDIO_SECONDS[clip.subset])
    except ValueError as exc:  # a refused global, a damaged file, too long a sound: the message names the file
        raise DataFileError(path, str(exc).removeprefix(f"{path}: "), clip=clip.name) from None


class AVSDataset(Dataset):
    """Clips as model inputs (and targets when `targets`), frames resized to `size` x `size`."""

    def __init__(self, clips: Sequence[AVSClip], subset: str, size: int, targets: bool, cache_dir: Path | None,
                 extra_masks: dict[str, dict[int, np.ndarray]] | None = None, crop: bool = False):
        self.clips, self.subset, self.size, self.targets, self.cache_dir = list(clips), subset, size, targets, cache_dir
        self.extra = extra_masks or {}  # clip name -> frame -> mask added to the truth (accepted reviews of train clips)
        self.frames = FRAMES[subset]
        self.crop = crop  # AVSS training: short side to `size`, then the centre square (the official crop_resize_img)

    def __len__(self) -> int:
        return len(self.clips)

    def _fit(self, image: np.ndarray, interpolation: int) -> np.ndarray:
        """`size` x `size`: resized (evaluation, S4/MS3), or short side resized and centre-cropped (`crop`)."""
        s = self.size
        if image.shape[:2] == (s, s):
            return image
        if not self.crop:
            return cv2.resize(image, (s, s), interpolation=interpolation)
        h, w = image.shape[:2]
        ow, oh = (int(w * s / h), s) if w > h else (s, int(h * s / w))
        image = cv2.resize(image, (ow, oh), interpolation=interpolation)
        x, y = int(round((ow - s) / 2.0)), int(round((oh - s) / 2.0))
        return image[y : y + s, x : x + s]

    def _image(self, path: Path) -> np.ndarray:
        image = self._fit(read_image(path), cv2.INTER_LINEAR)
        return ((image.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)

    def _mask(self, path: Path) -> np.ndarray:
        return self.resize_mask(read_truth(path, self.subset)[0])

    def resize_mask(self, mask: np.ndarray) -> np.ndarray:
        return self._fit(mask, cv2.INTER_NEAREST)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clip = self.clips[index]
        t, s = self.frames, self.size
        frames = np.zeros((t, 3, s, s), np.float32)
        for k, path in enumerate(clip.frames):
            frames[k] = self._image(path)
        valid = np.zeros(t, np.float32)
        valid[: len(clip.frames)] = 1
        audio = clip_log_mel(clip, self.cache_dir).astype(np.float32)
        item = {"frames": torch.from_numpy(frames), "audio": torch.from_numpy(audio[:t]),
                "frame_valid": torch.from_numpy(valid)}
        if self.targets:
            masks, has = self.truth(index)
            masks = masks.astype(np.int64) if self.subset == "avss" else masks  # class targets of the loss
            item.update(mask=torch.from_numpy(masks), mask_valid=torch.from_numpy(has))
        return item

    def truth(self, index: int, padding: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(T, size, size) ground truth of clip `index` and (T,) which frames have it. `padding`: AVSS's
        zero frames count as background truth (its evaluation does; its loss leaves them out)."""
        clip, t, s = self.clips[index], self.frames, self.size
        masks = np.zeros((t, s, s), np.uint8 if self.subset == "avss" else np.float32)
        has = np.zeros(t, np.float32)
        extra = self.extra.get(clip.name, {})
        for k in range(len(clip.frames)):
            if clip.masks[k] is not None:
                masks[k], has[k] = self._mask(clip.masks[k]), 1
            elif k in extra:
                masks[k], has[k] = self.resize_mask(extra[k]), 1
        if padding:
            has[len(clip.frames):] = 1
        return masks, has


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


@torch.no_grad()
def infer(model: torch.nn.Module, dataset: AVSDataset, device: torch.device, batch_size: int) -> np.ndarray:
    """(V, T, H, W): sigmoid probabilities (float32) for binary subsets, argmax classes (uint8) for AVSS."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    was_training = model.training
    model.eval()
    out = []
    try:
        for batch in loader:
            inputs = {k: batch[k] for k in ("frames", "audio", "frame_valid")}
            logits = model(to_device(inputs, device))["logits"].float()
            if logits.shape[2] == 1:
                out.append(torch.sigmoid(logits[:, :, 0]).cpu().numpy())
            else:
                out.append(logits.argmax(dim=2).to(torch.uint8).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, dataset.frames, dataset.size, dataset.size), np.float32)


def truth_stack(dataset: AVSDataset) -> tuple[np.ndarray, np.ndarray]:
    """(V, T, H, W) ground truth at the dataset's size and (V, T) which frames have it (masks only)."""
    pairs = [dataset.truth(i, padding=dataset.subset == "avss") for i in range(len(dataset))]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def score_masks(subset: str, pred: np.ndarray, truth: np.ndarray, has_truth: np.ndarray, group_videos: int) -> dict:
    """The AVSBench numbers of predictions `pred` (V, T, H, W) on the frames with truth."""
    from inference.avs_metrics import binary_scores, color_scores

    keep = has_truth.astype(bool)
    per_video = keep.sum(axis=1).tolist()
    scores = (color_scores if subset == "avss" else binary_scores)(pred[keep], truth[keep], per_video,
                                                                    group_videos=group_videos)
    return {**scores, "size": list(pred.shape[-2:])}


class AVSTask:
    """Audio-visual segmentation on an AVSBench-layout folder (`annotation.avsbench.read_avsbench`)."""

    name = "avs"
    selection = "val mIoU"

    def __init__(self, data: AVSData, cache_dir: str | Path | None = None,
                 extra_masks: dict[str, dict[int, np.ndarray]] | None = None):
        self.data, self.subset = data, data.subset
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.extra = extra_masks  # None: no database to read decisions from
        self.model: torch.nn.Module | None = None
        self.options = AVSOptions()
        self.notes: list[str] = []

    def build_model(self, config) -> torch.nn.Module:
        entry = get_entry(config.model)
        if entry.task != self.name:
            raise RunError(f"{config.model!r} is a {entry.task} model, not an audio-visual segmentation model")
        self.options = AVSOptions.from_dict(config.task_options)
        if self.options.subset not in (None, self.subset):
            raise RunError(f"the run trains on {self.options.subset.upper()}, the data is {self.subset.upper()}")
        model_config = dict(config.model_config)
        model_config.setdefault("num_classes", AVSS_CLASSES if self.subset == "avss" else 1)
        model_config.setdefault("frames", FRAMES[self.subset])
        # The code freezes pretrained backbones; a randomly initialised one has nothing to protect and frozen
        # it would stay random, so without weights files the freezes are dropped (said in train.log).
        if model_config.get("visual_frozen_epochs") and not self.options.backbone_weights:
            self.notes.append(f"visual_frozen_epochs {model_config['visual_frozen_epochs']} -> 0: the code freezes a "
                              "pretrained backbone, and no --backbone-weights were given")
            model_config["visual_frozen_epochs"] = 0
        fields = {f.name: f.default for f in dataclasses.fields(entry.config_cls)}
        if entry.model_cls.hears and model_config.get("freeze_audio_backbone", fields.get("freeze_audio_backbone")) \
                and not self.options.vggish_weights:
            self.notes.append("freeze_audio_backbone -> false: the code freezes a pretrained VGGish, and no "
                              "--vggish-weights were given")
            model_config["freeze_audio_backbone"] = False
        try:
            model = entry.model_cls(entry.config_cls.from_dict(model_config))
        except (ValueError, TypeError, RuntimeError, AssertionError) as exc:
            raise RunError(f"model {config.model}: {exc}") from None
        expected = (AVSS_CLASSES if self.subset == "avss" else 1, FRAMES[self.subset])
        if (model.config.num_classes, model.config.frames) != expected:
            raise RunError(f"{self.subset.upper()} needs num_classes {expected[0]} and frames {expected[1]}; the model "
                           f"config has {model.config.num_classes} and {model.config.frames}")
        self._load_backbones(model)
        self.model = model
        return model

    def _load_backbones(self, model: torch.nn.Module) -> None:
        from inference.backbones import load_backbone_weights

        for path, part in ((self.options.backbone_weights, "visual_backbone"),
                           (self.options.vggish_weights, "audio_backbone")):
            if path is None:
                continue
            module = getattr(model, part, None)
            if module is None:
                raise RunError(f"the {config_name(model)} model has no {part.replace('_', ' ')} to load {path} into")
            try:
                load_backbone_weights(module, path)
            except (ValueError, OSError) as exc:  # the message names the file
                raise RunError(str(exc)) from None

    @property
    def size(self) -> int:
        return int(self.model.config.image_size)

    def _dataset(self, split: str, targets: bool) -> AVSDataset:
        train = split == "train"
        return AVSDataset(self.data.split(split), self.subset, self.size, targets, self.cache_dir,
                          self.extra if train else None, crop=train and self.subset == "avss")

    def prepare(self, model: torch.nn.Module) -> list[str]:
        """Refuse an empty train split; read every input file once before the first epoch (audio into the
        cache; frames and masks decoded, each mask against its frame's size), so a bad file stops the run
        at the start with its name, not after hours."""
        train = self.data.split("train")
        if not train:
            raise RunError("the data has no train clips")
        files = 0
        for clip in self.data.clips:
            clip_log_mel(clip, self.cache_dir)
            for frame, mask in zip(clip.frames, clip.masks):
                size = read_image(frame).shape[:2]
                files += 1
                if mask is not None:
                    check_mask_size(mask, read_truth(mask, self.subset)[0], frame, size, clip.name)
                    files += 1
        notes = [*self.notes, f"inputs: audio of {len(self.data.clips)} clips and {files} frames and masks checked; "
                              f"frames resized to {self.size}x{self.size}"]
        if self.extra is not None:
            frames = sum(len(v) for v in self.extra.values())
            notes.append(f"{frames} accepted predicted masks of {len(self.extra)} train clips added as ground truth "
                         "(masks accepted on train frames without it; decisions on val/test clips are never used)")
        return notes

    def train_dataset(self, config) -> Dataset:
        return self._dataset("train", targets=True)

    @staticmethod
    def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return collate(items)

    def split_sizes(self) -> dict[str, int]:
        return {split: len(self.data.split(split)) for split in ("val", "test")}

    def predict_split(self, model: torch.nn.Module, split: str, device: torch.device, batch_size: int) -> np.ndarray:
        return infer(model, self._dataset(split, targets=False), device, batch_size)

    def evaluate(self, model: torch.nn.Module, split: str, device: torch.device, batch_size: int) -> dict | None:
        clips = self.data.split(split)
        if not clips or not any(m is not None for c in clips for m in c.masks):
            return None
        pred = self.predict_split(model, split, device, batch_size)
        truth, has = truth_stack(self._dataset(split, targets=True))
        return score_masks(self.subset, pred, truth, has, self.options.group_videos)

    @staticmethod
    def selection_score(metrics: dict) -> float:
        return metrics["miou"]

    @staticmethod
    def describe(metrics: dict) -> str:
        return f"mIoU {metrics['miou']:.2f} F {metrics['fscore']:.2f} (F batches of {metrics['group_videos']} video(s))"


def config_name(model: torch.nn.Module) -> str:
    return getattr(model, "model_name", type(model).__name__)


