"""Pieces MUG and LINK share: temporal-spatial attention (TSA), the video-level pseudo-label term,
the HAN config of their HAN projections/tail, PLSIM's prior input, and their caption embeddings.

TSA (LINK Sec. II-B Eqs. 1-3, MUG Sec. 3.3 Eqs. 1-3) is CBAM (Woo et al.) turned
to a (segments x channels) feature map:

- temporal attention W (one weight per segment, Eq. 1): average and max over the
  channels of each segment give two T-vectors, a SHARED map turns each into T
  scores, W = sigmoid(map(avg) + map(max)). LINK's map is an MLP over the
  segment axis (CBAM's channel MLP with segments as channels). MUG says its TSA
  is "implemented using Mamba"; there the shared map is a small Mamba scanning
  the ten segment descriptors in time order (`temporal="mamba"`).
- spatial attention S (one weight per channel, Eq. 2): average and max over the
  segments of W*f, stacked as two rows and reduced to one by CBAM's convolution
  (kernel 7 along the channel axis), then a sigmoid. The papers' Eq. 2 writes only
  the concatenation; some reduction from 2 rows to 1 is needed and CBAM's is used.
- output (Eq. 3, whose second factor has an f^a typo for f^m): S(W*f) * (W*f).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from annotation.taxonomy import NUM_SEGMENTS
from inference.models.base import video_bce
from inference.models.han import HANNetworkConfig
from inference.models.mamba import Mamba


class _SegmentMamba(nn.Module):
    """Scores for a (B, T) descriptor sequence: lift to `hidden`, one Mamba block, project to one."""

    def __init__(self, hidden: int, d_state: int):
        super().__init__()
        self.lift = nn.Linear(1, hidden)
        self.mamba = Mamba(hidden, d_state=d_state, d_conv=4, expand=2)
        self.out = nn.Linear(hidden, 1)

    def forward(self, desc: torch.Tensor) -> torch.Tensor:
        return self.out(self.mamba(self.lift(desc.unsqueeze(-1)))).squeeze(-1)


class TemporalSpatialAttention(nn.Module):
    """TSA on (B, T, D) segment features of one modality (see module doc)."""

    def __init__(self, segments: int = NUM_SEGMENTS, temporal: str = "mlp", reduction: int = 2, kernel: int = 7,
                 mamba_hidden: int = 16, mamba_state: int = 8):
        super().__init__()
        self.segments = segments
        if temporal == "mlp":
            hidden = max(segments // reduction, 1)
            self.temporal = nn.Sequential(nn.Linear(segments, hidden), nn.ReLU(), nn.Linear(hidden, segments))
        elif temporal == "mamba":
            self.temporal = _SegmentMamba(mamba_hidden, mamba_state)
        else:
            raise ValueError(f"temporal attention must be 'mlp' or 'mamba', not {temporal!r}")
        self.spatial = nn.Conv1d(2, 1, kernel, padding=kernel // 2)

    def weights(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(W (B, T, 1), S (B, 1, D)) for features f (B, T, D)."""
        if f.shape[1] != self.segments:
            raise ValueError(f"TSA expects {self.segments} segments, got {f.shape[1]}")
        w = torch.sigmoid(self.temporal(f.mean(dim=2)) + self.temporal(f.amax(dim=2))).unsqueeze(-1)
        fw = f * w
        s = torch.sigmoid(self.spatial(torch.stack([fw.mean(dim=1), fw.amax(dim=1)], dim=1)))
        return w, s

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        w, s = self.weights(f)
        return f * w * s


def video_pseudo_label_loss(outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """L_label of LINK Eqs. 9-10: BCE of the modality video-level probabilities against Y^m.

    Y^m, the video-level pseudo-label of track m, holds every class that occurs in
    some segment of its segment pseudo-label (LINK: "the event will be included in
    the video-level pseudo-labels as long as the event occurs in the temporal
    segments"). Eq. 10 writes BCE(Y, y); a BCE between two fixed labels has no
    gradient, so it is read as the model's audio/visual video-level outputs against
    Y^a/Y^v (VALOR's modality-wise video loss). Clips without pseudo-labels
    (`has_pseudo` False) are left out.
    """
    mask = batch.get("has_pseudo")
    terms = []
    for track in ("audio", "visual"):
        prob, target = outputs[track], batch[f"pseudo_{track}"].amax(dim=1)
        if mask is None or bool(mask.all()):
            terms.append(video_bce(prob, target))
        else:
            per_clip = F.binary_cross_entropy(prob.clamp(1e-7, 1 - 1e-7), target, reduction="none").mean(dim=1)
            keep = mask.to(per_clip.dtype)
            terms.append((per_clip * keep).sum() / keep.sum().clamp(min=1.0))
    return terms[0] + terms[1]


def han_config(config) -> HANNetworkConfig:
    """The HAN network config of a MUG/LINK config (same field names): their projections and HAN tail."""
    names = [f.name for f in dataclasses.fields(HANNetworkConfig)]
    return HANNetworkConfig(**{name: getattr(config, name) for name in names})


def check_captions(config, model: str) -> None:
    """PLSIM needs the (25, d) caption embeddings of the classes; a seeded random stand-in is
    only taken when asked for (`random_text`), never silently."""
    if config.use_plsim and not config.random_text and not (config.text_audio and config.text_visual):
        raise ValueError(f"{model} needs the caption embeddings of the 25 classes: --text-audio (CLAP text, "
                         "'this is a sound of <class>') and --text-visual (CLIP text, 'A photo of <class>.'), "
                         "(25, d) .npy files; or --random-text for a seeded random stand-in (no language prior)")


def plsim_and_han_tail(model: nn.Module, batch: dict[str, torch.Tensor], audio: torch.Tensor,
                       visual: torch.Tensor) -> dict[str, torch.Tensor]:
    """The common end of MUG and LINK: PLSIM on the zero-shot priors (when the model has one),
    then HAN's hybrid attention and MMIL head; the features the classifier reads are returned
    for S-LOSS. The priors are inputs in every split (never gated by a video-level label)."""
    if model.plsim is not None:
        audio, visual = model.plsim(audio, visual, batch["prior_audio"].to(audio.dtype),
                                    batch["prior_visual"].to(visual.dtype))
    audio, visual = model.han.hat_encoder(audio, visual)
    out = model.han.head(audio, visual)
    out["feat_audio"], out["feat_visual"] = audio, visual
    return out
