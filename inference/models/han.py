"""HAN: the hybrid attention network with attentive MMIL pooling (Tian et al., ECCV 2020).

"Unified Multisensory Perception: Weakly-Supervised Audio-Visual Video Parsing";
the layer sizes and the order of operations follow the public code
(AVVP-ECCV20, nets/net_audiovisual.py, MMIL_Net):

- audio: fc_a (128 -> 512) on the ten VGGish segments;
- visual: fc_v (2048 -> 512) on the 80 ResNet-152 frames, THEN 8:1 average pooling
  to ten segments, concatenated with fc_st (R(2+1)D 512 -> 512) and fused by
  fc_fusion (1024 -> 512);
- one hybrid attention layer (self-attention + cross-modal attention, post-norm,
  d_model 512, one head, feed-forward 512, dropout 0.1) applied to BOTH tracks
  with the same weights;
- attentive MMIL pooling: fc_prob (sigmoid segment probabilities), fc_frame_att
  (softmax over time), fc_av_att (softmax over the two modalities) give the
  global, audio and visual video-level probabilities.

The CLIP + CLAP feature sets project CLAP and CLIP per segment (no pooling); with
R(2+1)D (clip_clap_r21d, as VALOR++) the motion stream is fused as above.
`HybridAttentionEncoder` and `MMILPooling` are the "HAN tail" that MUG and LINK
reuse. `HAN` trains on video-level labels only (the HAN paper); `VALOR` is the
same network trained on segment pseudo-labels, with VALOR's recipe.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from annotation.taxonomy import NUM_CLASSES, NUM_SEGMENTS
from inference.models.base import AVVPInputs, AVVPModel, pseudo_label_loss, weak_label_loss
from inference.models.registry import register_model

CLAP_MAP_FRAMES = 64  # VALOR's released CLAP features: (64, 768) maps, 2 x 32 patches


class HybridAttentionLayer(nn.Module):
    """One HAN layer for one track: x + cross_attn(x, other) + self_attn(x), norm, FFN, norm."""

    def __init__(self, d_model: int = 512, nhead: int = 1, dim_feedforward: int = 512, dropout: float = 0.1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.cm_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout11 = nn.Dropout(dropout)
        self.dropout12 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """query, other: (B, T, d_model) -> (B, T, d_model)."""
        cross = self.cm_attn(query, other, other, need_weights=False)[0]
        own = self.self_attn(query, query, query, need_weights=False)[0]
        x = self.norm1(query + self.dropout11(cross) + self.dropout12(own))
        x = x + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(x)))))
        return self.norm2(x)


class HybridAttentionEncoder(nn.Module):
    """HAN layers whose weights are shared by the audio and the visual track.

    `sequential` picks the order of the two updates in a layer. HAN's code (AVVP-ECCV20,
    nets/net_audiovisual.py, Encoder) updates both tracks from the layer's inputs; VALOR's
    (main_network.py, Encoder) updates audio first and lets visual attend to the UPDATED
    audio, in every layer."""

    def __init__(self, layer: HybridAttentionLayer, num_layers: int = 1, sequential: bool = False):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])
        self.sequential = sequential

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for layer in self.layers:
            if self.sequential:
                audio = layer(audio, visual)
                visual = layer(visual, audio)
            else:
                audio, visual = layer(audio, visual), layer(visual, audio)
        return audio, visual


class MMILPooling(nn.Module):
    """Attentive multimodal multiple-instance pooling: segment features -> the output contract."""

    def __init__(self, hidden: int = 512, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.fc_prob = nn.Linear(hidden, num_classes)
        self.fc_frame_att = nn.Linear(hidden, num_classes)
        self.fc_av_att = nn.Linear(hidden, num_classes)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> dict[str, torch.Tensor]:
        """audio, visual: (B, T, hidden) -> global/audio/visual (B, C), segment_* and logits_* (B, T, C)."""
        x = torch.stack([audio, visual], dim=2)  # (B, T, 2, hidden)
        logits = self.fc_prob(x)  # (B, T, 2, C)
        prob = torch.sigmoid(logits)
        frame_att = torch.softmax(self.fc_frame_att(x), dim=1)  # over time
        av_att = torch.softmax(self.fc_av_att(x), dim=2)  # over the two modalities
        temporal = frame_att * prob
        return {
            "global": (temporal * av_att).sum(dim=2).sum(dim=1),
            "audio": temporal[:, :, 0].sum(dim=1),
            "visual": temporal[:, :, 1].sum(dim=1),
            "segment_audio": prob[:, :, 0],
            "segment_visual": prob[:, :, 1],
            "logits_audio": logits[:, :, 0],
            "logits_visual": logits[:, :, 1],
        }


@dataclass
class HANNetworkConfig(AVVPInputs):
    """The widths of the HAN network (HAN, VALOR, and the HAN parts of MUG and LINK)."""

    hidden: int = 512
    nhead: int = 1
    dim_feedforward: int = 512
    dropout: float = 0.1
    num_layers: int = 1
    # False: HAN's layer order (both tracks read the layer's inputs); True: VALOR's (visual
    # attends to the audio this layer just updated). See HybridAttentionEncoder.
    sequential: bool = False

    RANGES = {"hidden": (1, 16384), "nhead": (1, 256), "dim_feedforward": (1, 65536), "dropout": (0.0, 0.99),
              "num_layers": (1, 64)}

    def check(self) -> None:
        super().check()
        if self.hidden % self.nhead:
            raise ValueError(f"{type(self).__name__}: hidden {self.hidden} is not a multiple of nhead {self.nhead}")


@dataclass
class HANConfig(HANNetworkConfig):
    audio_label_smoothing: float = 1.0  # HAN's public code: a = 1.0
    visual_label_smoothing: float = 0.9  # v = 0.9

    RANGES = {"audio_label_smoothing": (0.0, 1.0), "visual_label_smoothing": (0.0, 1.0)}


# The public HAN recipe (main_avvp.py): Adam, lr 3e-4, StepLR(10, 0.1), batch 16, 40 epochs; the
# network is MMIL_Net's (hidden 512, one head, feed-forward 512, one layer).
HAN_RECIPE = {"optimizer": "adam", "lr": 3e-4, "weight_decay": 0.0, "scheduler": "step", "step_size": 10,
              "gamma": 0.1, "batch_size": 16, "epochs": 40}


@register_model("han", HANConfig, recipe=HAN_RECIPE)
class HAN(AVVPModel):
    """HAN, trained as the HAN paper does: from video-level labels only (`weak_label_loss`); it
    reads no pseudo-label. Outputs follow the `inference.models` contract.

    Inputs: audio of 10 frames (VGGish, CLAP embeddings) is projected per segment; VALOR's
    CLAP maps of 64 frames (2 x 32 patches) go through VALOR's upsampling path (bicubic to
    2 x 1024, fc_a, mean over the 2 rows, adaptive average pooling to 10 segments); visual
    frames are projected, then averaged 8:1 (ResNet at 8 fps) or 1:1 (CLIP).
    Extras: `logits_audio`/`logits_visual` (B, 10, 25) pre-sigmoid segment scores and
    `feat_audio`/`feat_visual` (B, 10, hidden) features after the hybrid attention.
    """

    uses_pseudo_labels = False

    def __init__(self, config: HANNetworkConfig):
        super().__init__(config)
        shapes = config.resolve_inputs()
        (audio_frames, audio_dim), (frames, visual_dim) = shapes["audio"], shapes["visual"]
        if audio_frames not in (NUM_SEGMENTS, CLAP_MAP_FRAMES):
            raise ValueError(f"audio features of {audio_frames} frames; expected {NUM_SEGMENTS} (one per segment) "
                             f"or {CLAP_MAP_FRAMES} (VALOR's CLAP maps)")
        if frames % NUM_SEGMENTS:
            raise ValueError(f"{frames} visual frames do not pool evenly into {NUM_SEGMENTS} segments")
        self.audio_maps = audio_frames == CLAP_MAP_FRAMES
        self.pool = frames // NUM_SEGMENTS
        h = config.hidden
        self.fc_a = nn.Linear(audio_dim, h)
        self.fc_v = nn.Linear(visual_dim, h)
        self.has_motion = "motion" in shapes
        if self.has_motion:
            self.fc_st = nn.Linear(shapes["motion"][1], h)
            self.fc_fusion = nn.Linear(2 * h, h)
        layer = HybridAttentionLayer(h, config.nhead, config.dim_feedforward, config.dropout)
        self.hat_encoder = HybridAttentionEncoder(layer, config.num_layers, config.sequential)
        self.head = MMILPooling(h)

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        if not self.audio_maps:
            return self.fc_a(audio)
        b, _, dim = audio.shape  # VALOR's path for (64, 768) CLAP maps, step by step
        x = audio.permute(0, 2, 1).reshape(b, dim, 2, CLAP_MAP_FRAMES // 2)
        x = F.interpolate(x, size=(2, 1024), mode="bicubic")
        x = self.fc_a(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).mean(dim=2)  # (B, hidden, 1024)
        return F.adaptive_avg_pool1d(x, NUM_SEGMENTS).transpose(1, 2)

    def embed(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected (audio, visual) segment features, (B, 10, hidden) each."""
        audio = self.embed_audio(batch["audio"])
        visual = self.fc_v(batch["visual"])  # project first, then pool 8:1 (public code order)
        if self.pool > 1:
            b, t, h = visual.shape
            visual = visual.view(b, t // self.pool, self.pool, h).mean(dim=2)
        if self.has_motion:
            visual = self.fc_fusion(torch.cat([visual, self.fc_st(batch["motion"])], dim=-1))
        return audio, visual

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        audio, visual = self.hat_encoder(*self.embed(batch))
        out = self.head(audio, visual)
        out["feat_audio"], out["feat_visual"] = audio, visual
        return out

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]):
        return weak_label_loss(outputs, batch, self.config.audio_label_smoothing, self.config.visual_label_smoothing)


@dataclass
class VALORConfig(HANNetworkConfig):
    sequential: bool = True  # VALOR's Encoder order
    video_loss_weight: float = 1.0
    segment_loss_weight: float = 1.0


# VALOR's public scripts (Franklin905/VALOR, scripts/train_valor.sh and train_valor++.sh): AdamW
# (betas 0.5/0.999, eps 1e-8, weight decay 1e-3), warm-up (10 epochs) then cosine to lr_min,
# gradient norm clipped at 1.0, batch 64, 60 epochs, 8 heads, feed-forward 1024, post-norm.
# VALOR (VGGish + ResNet + R(2+1)D): hidden 512, one layer, lr 1e-4 -> 1e-6.
# VALOR++ (CLIP + CLAP + R(2+1)D): hidden 256, four layers, lr 3e-4 -> 3e-6.
VALOR_RECIPE = {"optimizer": "adamw", "lr": 1e-4, "lr_min": 1e-6, "weight_decay": 1e-3, "betas": (0.5, 0.999),
                "scheduler": "warmup_cosine", "warmup_epochs": 10, "epochs": 60, "batch_size": 64, "grad_clip": 1.0,
                "model_config": {"hidden": 512, "nhead": 8, "dim_feedforward": 1024, "num_layers": 1}}
VALOR_PLUS_PLUS = {"lr": 3e-4, "lr_min": 3e-6, "model_config": {"hidden": 256, "num_layers": 4}}
CLIP_CLAP_VARIANTS = {"clip_clap": VALOR_PLUS_PLUS, "clip_clap_r21d": VALOR_PLUS_PLUS}


@register_model("valor", VALORConfig, recipe=VALOR_RECIPE, variants=CLIP_CLAP_VARIANTS)
class VALOR(HAN):
    """VALOR (Lai et al., NeurIPS 2023): the HAN network trained on segment pseudo-labels
    (`pseudo_label_loss`: BCE of the global output against the video-level label + BCE of
    the segment logits of each track against its pseudo-label). With CLIP + CLAP features
    and the VALOR++ widths (the clip_clap variants of the recipe) it is VALOR++."""

    uses_pseudo_labels = True

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]):
        return pseudo_label_loss(outputs, batch, self.config.video_loss_weight, self.config.segment_loss_weight)
