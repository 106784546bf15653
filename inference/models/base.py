"""What every AVVP model shares: its inputs config, the output contract and its check, the losses.

See the package docstring (`inference.models`) for the contract itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from annotation.taxonomy import NUM_CLASSES, NUM_SEGMENTS
from inference.data import feature_spec
from inference.models.registry import ModelConfig

VIDEO_KEYS = ("global", "audio", "visual")  # (B, 25) probabilities
SEGMENT_KEYS = ("segment_audio", "segment_visual")  # (B, 10, 25) probabilities
OUTPUT_KEYS = VIDEO_KEYS + SEGMENT_KEYS


@dataclass
class AVVPInputs(ModelConfig):
    """What an AVVP model reads: its feature set and the (frames, dim) of each stream.

    Input sizes live here, in the model config (and so in every checkpoint): None means
    the feature set's standard shape; the trainer fills them from the data folder (VALOR's
    CLAP maps are (64, 768) where CLAP embeddings are (10, 512)), and `resolve_inputs`
    writes the concrete values back before the config is saved.
    """

    feature_set: str = "vggish"
    audio_shape: tuple[int, int] | None = None
    visual_shape: tuple[int, int] | None = None
    motion_shape: tuple[int, int] | None = None

    def check(self) -> None:
        super().check()
        feature_spec(self.feature_set)  # a ValueError naming the known sets
        for part in ("audio", "visual", "motion"):
            shape = getattr(self, f"{part}_shape")
            if shape is not None and not (1 <= shape[0] <= 1024 and 1 <= shape[1] <= 65536):
                raise ValueError(f"{part}_shape {list(shape)}; expected (frames 1..1024, dim 1..65536)")

    def resolve_inputs(self) -> dict[str, tuple[int, int]]:
        """{stream: (frames, dim)} of the feature set's streams, with None filled in place."""
        spec = feature_spec(self.feature_set)
        if self.motion_shape is not None and "motion" not in spec.folders:
            raise ValueError(f"motion_shape given, but the {self.feature_set!r} feature set has no motion stream")
        shapes = {}
        for part in spec.folders:
            shape = tuple(getattr(self, f"{part}_shape") or spec.shapes[part])
            setattr(self, f"{part}_shape", shape)
            shapes[part] = shape
        return shapes


class AVVPModel(nn.Module):
    """Base class: `forward(batch) -> outputs`, `loss(outputs, batch) -> (total, parts)`.

    Subclasses keep their config dataclass in `self.config` (saved in checkpoints).
    `uses_pseudo_labels`: the loss reads segment pseudo-labels (the trainer loads them
    for the train clips and says how many clips lack them); `needs_priors`: forward
    reads `prior_audio`/`prior_visual` (zero-shot priors, inputs in every split).
    """

    model_name: str = ""
    uses_pseudo_labels: bool = True

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config

    @property
    def needs_priors(self) -> bool:
        return False

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]):  # pragma: no cover
        raise NotImplementedError


def check_outputs(outputs: dict[str, torch.Tensor], batch_size: int) -> None:
    """Raise AssertionError unless `outputs` follows the contract (shapes, probabilities in [0, 1])."""
    for key in OUTPUT_KEYS:
        assert key in outputs, f"model output lacks {key!r}"
        shape = (batch_size, NUM_CLASSES) if key in VIDEO_KEYS else (batch_size, NUM_SEGMENTS, NUM_CLASSES)
        value = outputs[key]
        assert tuple(value.shape) == shape, f"{key} has shape {tuple(value.shape)}; expected {shape}"
        assert torch.isfinite(value).all(), f"{key} holds non-finite values"
        assert value.min() >= 0 and value.max() <= 1 + 1e-5, f"{key} is not a probability"


def video_bce(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE on video-level probabilities, clamped to [1e-7, 1 - 1e-7] as the published HAN code does."""
    return F.binary_cross_entropy(prob.clamp(1e-7, 1 - 1e-7), target)


def segment_bce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean BCE of segment logits (B, 10, 25) against 0/1 pseudo-labels.

    `mask` (B,) drops clips without pseudo-labels; the mean is then over the clips kept
    (equal to the plain mean over B x 10 x 25 when every clip has them).
    """
    if mask is None or bool(mask.all()):
        return F.binary_cross_entropy_with_logits(logits, target)
    per_clip = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=(1, 2))
    keep = mask.to(per_clip.dtype)
    return (per_clip * keep).sum() / keep.sum().clamp(min=1.0)


def weak_label_loss(outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], audio_smoothing: float = 1.0,
                    visual_smoothing: float = 0.9) -> tuple[torch.Tensor, dict[str, float]]:
    """HAN's own objective from video-level labels only (Tian et al., public main_avvp.py):

        L = BCE(global, y) + BCE(audio, s_a y + (1 - s_a) / 2) + BCE(visual, s_v y + (1 - s_v) / 2)

    the "individual guided learning" of the two modality heads with label smoothing: the
    public code uses s_a = 1.0 (no smoothing) and s_v = 0.9, since a video-level label
    often names an event that is heard but not seen. Reads `label` only.
    """
    target = batch["label"]
    video = video_bce(outputs["global"], target)
    audio = video_bce(outputs["audio"], audio_smoothing * target + (1 - audio_smoothing) * 0.5)
    visual = video_bce(outputs["visual"], visual_smoothing * target + (1 - visual_smoothing) * 0.5)
    return video + audio + visual, {"video": float(video.detach()), "audio": float(audio.detach()),
                                    "visual": float(visual.detach())}


def pseudo_label_loss(
    outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], video_weight: float = 1.0,
    segment_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The segment pseudo-label recipe of VALOR, used as is by LINK and MUG for the HAN tail.

    L = BCE(global, weak label) + BCE(segment_audio, audio pseudo-label)
        + BCE(segment_visual, visual pseudo-label)
    (LINK, Sec. II-C, Eq. 7-8: L_video + L^a_video + L^v_video, all weights 1; VALOR's
    public training code computes the two segment terms as mean BCE-with-logits over
    B x 10 x 25, which is what this does.) Needs `logits_audio`/`logits_visual` in
    `outputs` (B, 10, 25) and `label`, `pseudo_audio`, `pseudo_visual` in `batch`;
    `has_pseudo` (B,), when present, leaves clips without pseudo-labels out of the
    segment terms.
    """
    mask = batch.get("has_pseudo")
    video = video_bce(outputs["global"], batch["label"])
    seg_a = segment_bce(outputs["logits_audio"], batch["pseudo_audio"], mask)
    seg_v = segment_bce(outputs["logits_visual"], batch["pseudo_visual"], mask)
    total = video_weight * video + segment_weight * (seg_a + seg_v)
    parts = {"video": float(video.detach()), "segment_audio": float(seg_a.detach()),
             "segment_visual": float(seg_v.detach())}
    return total, parts
