"""What every AVVP model shares: the output contract, its check, and the pseudo-label loss.

See the package docstring (`inference.models`) for the contract itself.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from annotation.taxonomy import NUM_CLASSES, NUM_SEGMENTS

VIDEO_KEYS = ("global", "audio", "visual")  # (B, 25) probabilities
SEGMENT_KEYS = ("segment_audio", "segment_visual")  # (B, 10, 25) probabilities
OUTPUT_KEYS = VIDEO_KEYS + SEGMENT_KEYS


class AVVPModel(nn.Module):
    """Base class: `forward(batch) -> outputs`, `loss(outputs, batch) -> (total, parts)`.

    Subclasses keep their config dataclass in `self.config` (saved in checkpoints).
    """

    model_name: str = ""

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config

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
