"""LINK: Learning Interaction method for Non-aligned Knowledge (Wang et al., LINK, Sec. II).

Pipeline (Fig. 2): HAN's input projections -> TSAM (temporal-spatial attention per
track + the cross-modal interaction module CMIM) -> PLSIM -> the HAN tail (hybrid
attention layer + attentive MMIL pooling), trained with VALOR's pseudo-label
objective plus S-LOSS. The projections and the tail are HAN's modules
(`inference.models.han`, held in `self.han`); TSA and PLSIM are shared with MUG.

Choices where the paper is open:

- CMIM (Eqs. 4-6), after the AV-Adapter it cites ([11]): Softmax(f_a f_v) is
  read as attention between the ten segments, softmax over the key segments
  of (f_a f_v^T) / sqrt(d) (the 1/sqrt(d) keeps 512-d dot products from
  saturating the softmax; the equation omits it). Then, as written,
  f_ac = f_a + alpha_2 * A_av (beta_2 * f_v), f_vc = f_v + alpha_1 * A_va (beta_1 * f_a),
  f_aout = f_a + f_ac, f_vout = f_v + f_vc. alpha init 0.1 (a weak start for the
  other track), beta init 1.
- S-LOSS (Sec. II-C, Eqs. 10-12): s is the (10 x 10) cosine similarity of every
  audio segment with every visual segment of a clip, taken on the segment
  features the classifier reads (the HAN tail's output); r is the IoU of the
  audio pseudo-label of segment i and the visual pseudo-label of segment j.
  Pairs where both are empty (IoU undefined) are left out. lambda follows Eq. 11
  exactly, per pair, from the detached s (a weight must not be a path for s to
  escape its target) with the trainable mu. Note: lambda is >= 1 and grows with
  |1 - mu|, so minimising the loss drives mu towards 1 (all weights -> 1);
  `train_mu=False` freezes mu at `mu_init` (default 0: weight e in (-0.2, 0)).
- Total (Eq. 12): L_video + L^a_video + L^v_video + L_label + lambda * L_avss; the
  first three are `inference.models.base.pseudo_label_loss` (segment terms as
  mean BCE, VALOR's code), L_label is `av_blocks.video_pseudo_label_loss`.

Recipe and inputs: VALOR++'s (see LINK_RECIPE): CLIP + CLAP + R(2+1)D, hidden 256, four
layers, 8 heads; 5.05 M parameters (LINK gives no count). PLSIM reads zero-shot priors,
never the weak-gated pseudo-labels (both papers remove the video-level mask at test
time; here it is never there).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from inference.models.av_blocks import (
    TemporalSpatialAttention, check_captions, han_config, plsim_and_han_tail, video_pseudo_label_loss,
)
from inference.models.base import AVVPModel, pseudo_label_loss
from inference.models.han import HAN, VALOR_PLUS_PLUS, VALOR_RECIPE, HANNetworkConfig
from inference.models.plsim import build_plsim
from inference.models.registry import register_model


class CrossModalInteraction(nn.Module):
    """CMIM: segment cross-attention between the tracks with four learnable weights (Eqs. 4-6)."""

    def __init__(self, alpha_init: float = 0.1, beta_init: float = 1.0):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((2,), float(alpha_init)))  # alpha_1 (visual), alpha_2 (audio)
        self.beta = nn.Parameter(torch.full((2,), float(beta_init)))  # beta_1 (scales f_a), beta_2 (scales f_v)

    @staticmethod
    def _attend(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return torch.softmax(query @ key.transpose(1, 2) / math.sqrt(query.shape[-1]), dim=-1)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a1, a2 = self.alpha
        b1, b2 = self.beta
        audio_c = audio + a2 * self._attend(audio, visual) @ (b2 * visual)  # Eq. 4
        visual_c = visual + a1 * self._attend(visual, audio) @ (b1 * audio)  # Eq. 5
        return audio + audio_c, visual + visual_c  # Eq. 6


class SegmentSimilarityLoss(nn.Module):
    """S-LOSS: lambda(s; mu) * MSE(s, r) over all audio-visual segment pairs (Eqs. 10-11)."""

    def __init__(self, mu_init: float = 0.0, trainable: bool = True):
        super().__init__()
        self.mu = nn.Parameter(torch.tensor(float(mu_init)), requires_grad=trainable)

    def weight(self, s: torch.Tensor) -> torch.Tensor:
        """Eq. 11: 1 for s <= -0.2; e^|1-mu| on (-0.2, 0); e^|1-mu| + (1 - e^|1-mu|) s for s >= 0."""
        peak = torch.exp((1 - self.mu).abs())
        return torch.where(s <= -0.2, torch.ones_like(s), torch.where(s < 0, peak.expand_as(s), peak + (1 - peak) * s))

    @staticmethod
    def targets(pseudo_audio: torch.Tensor, pseudo_visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(r, valid): IoU of audio segment i's and visual segment j's label sets, (B, T, T) each."""
        pa, pv = pseudo_audio.float(), pseudo_visual.float()
        inter = pa @ pv.transpose(1, 2)
        union = pa.sum(-1).unsqueeze(2) + pv.sum(-1).unsqueeze(1) - inter
        return inter / union.clamp(min=1.0), union > 0

    @staticmethod
    def similarity(audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of every audio segment with every visual segment: (B, T, T)."""
        return F.normalize(audio, dim=-1) @ F.normalize(visual, dim=-1).transpose(1, 2)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor, pseudo_audio: torch.Tensor,
                pseudo_visual: torch.Tensor, has_pseudo: torch.Tensor | None = None) -> torch.Tensor:
        """`has_pseudo` (B,) leaves out clips lacking a pseudo-label file (their zero rows are not labels)."""
        s = self.similarity(audio, visual)
        r, valid = self.targets(pseudo_audio, pseudo_visual)
        if has_pseudo is not None:
            valid = valid & has_pseudo.view(-1, 1, 1).bool()
        per_pair = self.weight(s.detach()) * (s - r.to(s.dtype)) ** 2
        keep = valid.to(s.dtype)
        return (per_pair * keep).sum() / keep.sum().clamp(min=1.0)


@dataclass
class LINKConfig(HANNetworkConfig):
    sequential: bool = True  # built on VALOR's network, so VALOR's layer order (han.HybridAttentionEncoder)
    feature_set: str = "clip_clap"  # the paper uses CLIP + CLAP features
    # TSAM
    tsa_reduction: int = 2
    tsa_kernel: int = 7
    alpha_init: float = 0.1
    beta_init: float = 1.0
    # S-LOSS
    mu_init: float = 0.0
    train_mu: bool = True
    # PLSIM (see inference.models.plsim)
    text_audio: str | None = None
    text_visual: str | None = None
    random_text: bool = False  # a seeded random stand-in instead of the files (no language prior)
    text_dim_audio: int = 512
    text_dim_visual: int = 768
    text_seed: int = 0
    plsim_hidden: int = 64
    # ablations (LINK Table II)
    use_tsa: bool = True
    use_cmim: bool = True
    use_plsim: bool = True
    use_sloss: bool = True
    # loss weights (all 1 in the paper)
    video_loss_weight: float = 1.0
    segment_loss_weight: float = 1.0
    label_loss_weight: float = 1.0

    RANGES = {"tsa_reduction": (1, 64), "tsa_kernel": (1, 63), "text_dim_audio": (1, 65536),
              "text_dim_visual": (1, 65536), "plsim_hidden": (1, 16384)}


# LINK states no optimiser, schedule or widths; its baseline and code base is VALOR++ (CLIP +
# CLAP, with VALOR's R(2+1)D stream: scripts/train_valor++.sh), so those are VALOR++'s: AdamW
# 3e-4 -> 3e-6 (betas 0.5/0.999, weight decay 1e-3), 10 warm-up epochs then cosine, 60 epochs,
# batch 64, clipping 1.0, hidden 256, 4 layers, 8 heads, feed-forward 1024. On VGGish + ResNet
# the VALOR widths and rates apply instead.
LINK_RECIPE = {**VALOR_RECIPE, **VALOR_PLUS_PLUS,
               "model_config": {**VALOR_RECIPE["model_config"], **VALOR_PLUS_PLUS["model_config"],
                                "feature_set": "clip_clap_r21d"}}
LINK_VARIANTS = {"vggish": {"lr": VALOR_RECIPE["lr"], "lr_min": VALOR_RECIPE["lr_min"],
                            "model_config": dict(VALOR_RECIPE["model_config"])}}


@register_model("link", LINKConfig, recipe=LINK_RECIPE, variants=LINK_VARIANTS)
class LINK(AVVPModel):
    """LINK. With PLSIM, forward reads the zero-shot priors `prior_audio`/`prior_visual`.

    Extras: logits_audio/logits_visual (B, 10, 25), feat_audio/feat_visual (B, 10, hidden).
    """

    def __init__(self, config: LINKConfig):
        super().__init__(config)
        c = config
        check_captions(c, "LINK")
        self.han = HAN(han_config(c))
        c.resolve_inputs()
        self.tsa_audio = TemporalSpatialAttention(temporal="mlp", reduction=c.tsa_reduction,
                                                  kernel=c.tsa_kernel) if c.use_tsa else None
        self.tsa_visual = TemporalSpatialAttention(temporal="mlp", reduction=c.tsa_reduction,
                                                   kernel=c.tsa_kernel) if c.use_tsa else None
        self.cmim = CrossModalInteraction(c.alpha_init, c.beta_init) if c.use_cmim else None
        self.plsim = build_plsim(c, c.hidden) if c.use_plsim else None
        self.s_loss = SegmentSimilarityLoss(c.mu_init, c.train_mu) if c.use_sloss else None

    @property
    def needs_priors(self) -> bool:
        return self.plsim is not None

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        audio, visual = self.han.embed(batch)
        if self.tsa_audio is not None:
            audio, visual = self.tsa_audio(audio), self.tsa_visual(visual)
        if self.cmim is not None:
            audio, visual = self.cmim(audio, visual)
        return plsim_and_han_tail(self, batch, audio, visual)

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]):
        """LINK Eq. 12: L_video + L^a_video + L^v_video + L_label + lambda * L_avss."""
        c = self.config
        total, parts = pseudo_label_loss(outputs, batch, c.video_loss_weight, c.segment_loss_weight)
        label = video_pseudo_label_loss(outputs, batch)
        total = total + c.label_loss_weight * label
        parts["label"] = float(label.detach())
        if self.s_loss is not None:
            avss = self.s_loss(outputs["feat_audio"], outputs["feat_visual"], batch["pseudo_audio"],
                               batch["pseudo_visual"], batch.get("has_pseudo"))
            total = total + avss
            parts["avss"], parts["mu"] = float(avss.detach()), float(self.s_loss.mu.detach())
        return total, parts
