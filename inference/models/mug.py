"""MUG: the pseudo-label augmented audio-visual Mamba network (Wang et al., "MUG", Sec. 3.3).

Pipeline (Fig. 3): HAN's input projections -> temporal-spatial attention (TSA)
per track -> adaptive Mamba fusion (AMF) -> Mamba feature enhancement (MFE) ->
PLSIM -> the HAN tail (one hybrid attention layer + attentive MMIL pooling).
The projections and the tail are HAN's own modules (`inference.models.han`),
held in `self.han`; CMRC, the data side of MUG, is `inference.cmrc`.

The paper's text lost its equations and leaves details open; the choices made
here, by section:

AMF (Sec. 3.3 "Adaptive mamba fusion", Eqs. 4-5). Per track a Vision-Mamba-like
block: LayerNorm, in_proj to (x, z), three scan branches on x, each its own
causal conv1d + selective SSM: forward, backward (flip, scan, flip back) and
dynamic order. The paper counts "four distinct branches" but names three; the
fourth is read as Mamba's SiLU(z) gate branch. Dynamic order ([28]'s dynamic
scan over "layers" = our ten segments): a linear scorer rates each segment, the
branch scans the segments from the highest to the lowest score (so a scan can
start and end at any segment) and its output, put back in time order, is weighted
by sigmoid(score) so the scorer receives gradient (a sort alone has none).
Parameter sharing: for each branch ONE `B_proj` (the input-to-state projection
that makes B) serves both tracks; A (`A_log`), C (`C_proj`), dt (`dt_in`,
`dt_proj`), D and the conv stay per track. (B is input-dependent in Mamba: what
is shared is the map that makes it, so each track's B still follows its own
features, through weights trained by both.) The learnable interaction weights are
one scalar per (track, branch): y_a^k <- y_a^k + lambda_a^k * y_v^k and
y_v^k <- y_v^k + lambda_v^k * y_a^k (init 0.1, small so that the other track
cannot swamp one at the start). Gated fusion: the three branches are summed
element by element, gated by SiLU(z), projected back (out_proj) and added to
the input (residual). Mixed feature F_m: the two outputs interleaved in time
(a_1, v_1, a_2, v_2, ...), the "concat" that keeps each segment's pair adjacent;
the "simple interaction" before it is read as the lambda cross-addition above.

MFE (Sec. 3.3 "Mamba feature enhancement"): one Mamba block scans F_m (so a
segment sees every earlier segment of both tracks) and is split back per track
as m_a, m_v. Channel enhancement: both tracks are average-pooled along the
channels (factor `mfe_pool`), multiplied segment by segment, expanded back by a
linear layer and squashed: e = sigmoid(W (pool(F_a) * pool(F_v))). Output
F_a' = F_a * (1 + e) + m_a (likewise visual): channels the tracks share are
amplified (up to 2x) relative to the others, and the Mamba-mixed stream is
added.

TSA runs after HAN's projection/pooling (it needs ten segments, and the 80
ResNet frames are pooled to ten there); MUG's temporal map is a Mamba
(`tsa_temporal="mamba"`, see `inference.models.av_blocks`).

Loss: MUG gives no equation; it is VALOR-based and "incorporates the segment-wise
pseudo labels", so the VALOR/LINK objective without S-LOSS is used: LINK Eq. 9
minus L_avss, i.e. BCE(global, label) + segment BCE per track against the
segment pseudo-labels + BCE of the track video-level outputs against the
video-level pseudo-labels. For CMRC clips `label` is the union of the two
pseudo-labels (see `inference.data.AVVPDataset.item`).

Parameters. With the recipe (VALOR's widths: hidden 512, 8 heads, feed-forward 1024)
and the vggish features: 8.23 M (HAN part 5.09 M, AMF 1.92 M, MFE 0.91 M, PLSIM
0.30 M, TSA 0.005 M; `parameter_breakdown()`). The paper reports 7.6 M without a
breakdown; HAN's own feed-forward width (512, the config default) gives 7.70 M, so
MUG's baseline probably kept it. The recipe follows VALOR, as asked of a VALOR-based
model; `--model-config '{"dim_feedforward": 512}'` gives the 7.70 M network. The Mamba
widths (expand 1, d_state 16) and the PLSIM MLP width (64) were chosen to land near
the paper's count. MUG+ (CLIP + CLAP + R(2+1)D, VALOR++ widths): 5.81 M.

Inputs: PLSIM reads zero-shot priors (see `inference.models.plsim`), never the
weak-gated pseudo-labels, which are training targets only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from inference.models.av_blocks import (
    TemporalSpatialAttention, check_captions, han_config, plsim_and_han_tail, video_pseudo_label_loss,
)
from inference.models.base import AVVPModel, pseudo_label_loss
from inference.models.han import CLIP_CLAP_VARIANTS, HAN, VALOR_RECIPE, HANNetworkConfig
from inference.models.mamba import Mamba, SelectiveSSM, resolve_dt_rank
from inference.models.plsim import build_plsim
from inference.models.registry import register_model

BRANCHES = ("fwd", "bwd", "dyn")  # forward, backward, dynamic-order scans


class ModalityScan(nn.Module):
    """One track of the AMF: in_proj, the three scan branches, the gate and out_proj."""

    def __init__(self, d_model: int, d_state: int, d_conv: int, expand: int, dt_rank: int,
                 shared_B: dict[str, nn.Linear]):
        super().__init__()
        d_inner = expand * d_model
        self.norm = nn.LayerNorm(d_model)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.branches = nn.ModuleDict({
            name: SelectiveSSM(d_inner, d_state, d_conv, dt_rank, B_proj=shared_B[name]) for name in BRANCHES
        })
        self.scorer = nn.Linear(d_model, 1)  # segment importance for the dynamic-order branch
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def scan(self, f: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """f (B, L, d_model) -> ({branch: y (B, d_inner, L) in time order}, gate input z (B, d_inner, L))."""
        h = self.norm(f)
        x, z = self.in_proj(h).transpose(1, 2).chunk(2, dim=1)
        x = x.contiguous()
        ys = {"fwd": self.branches["fwd"](x), "bwd": self.branches["bwd"](x.flip(-1)).flip(-1)}
        score = self.scorer(h).squeeze(-1)  # (B, L)
        order = score.argsort(dim=1, descending=True).unsqueeze(1).expand(-1, x.shape[1], -1)
        y_sorted = self.branches["dyn"](x.gather(2, order))
        ys["dyn"] = torch.empty_like(y_sorted).scatter(2, order, y_sorted) * torch.sigmoid(score).unsqueeze(1)
        return ys, z

    def merge(self, f: torch.Tensor, ys: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """Gated element-wise sum of the branches, out_proj, residual: (B, L, d_model)."""
        y = torch.stack(ys).sum(dim=0) * F.silu(z)
        return f + self.out_proj(y.transpose(1, 2))


class AdaptiveMambaFusion(nn.Module):
    """AMF: per-track scans with B shared across tracks and learnable cross-track weights."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 1,
                 dt_rank: int | str = "auto", interaction_init: float = 0.1):
        super().__init__()
        rank = resolve_dt_rank(d_model, dt_rank)
        d_inner = expand * d_model
        shared = {name: nn.Linear(d_inner, d_state, bias=False) for name in BRANCHES}  # one B_proj per branch
        self.audio = ModalityScan(d_model, d_state, d_conv, expand, rank, shared)
        self.visual = ModalityScan(d_model, d_state, d_conv, expand, rank, shared)
        # interaction[0, k]: weight of the visual scan in the audio track for branch k; [1, k] the reverse
        self.interaction = nn.Parameter(torch.full((2, len(BRANCHES)), float(interaction_init)))

    def shared_B(self) -> dict[str, nn.Linear]:
        """The B projection of each branch; `self.audio.branches[k].B_proj is self.visual.branches[k].B_proj`."""
        return {name: self.audio.branches[name].B_proj for name in BRANCHES}

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ya, za = self.audio.scan(audio)
        yv, zv = self.visual.scan(visual)
        w = self.interaction
        out_a = self.audio.merge(audio, [ya[k] + w[0, i] * yv[k] for i, k in enumerate(BRANCHES)], za)
        out_v = self.visual.merge(visual, [yv[k] + w[1, i] * ya[k] for i, k in enumerate(BRANCHES)], zv)
        return out_a, out_v


def interleave(audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
    """(B, T, d) x 2 -> (B, 2T, d) ordered a_1, v_1, a_2, v_2, ..."""
    return torch.stack([audio, visual], dim=2).flatten(1, 2)


class MambaFeatureEnhancement(nn.Module):
    """MFE: Mamba over the interleaved mixed sequence + a shared-channel enhancement vector."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 1,
                 dt_rank: int | str = "auto", pool: int = 4):
        super().__init__()
        if d_model % pool:
            raise ValueError(f"mfe_pool {pool} does not divide the hidden size {d_model}")
        self.pool = pool
        self.norm = nn.LayerNorm(d_model)
        self.mamba = Mamba(d_model, d_state, d_conv, expand, dt_rank)
        self.expand_gate = nn.Linear(d_model // pool, d_model)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, d = audio.shape
        mixed = self.mamba(self.norm(interleave(audio, visual))).view(b, t, 2, d)
        shared = F.avg_pool1d(audio, self.pool) * F.avg_pool1d(visual, self.pool)  # pools the channel axis
        e = torch.sigmoid(self.expand_gate(shared))
        return audio * (1 + e) + mixed[:, :, 0], visual * (1 + e) + mixed[:, :, 1]


@dataclass
class MUGConfig(HANNetworkConfig):
    sequential: bool = True  # built on VALOR's network, so VALOR's layer order (han.HybridAttentionEncoder)
    # Mamba parts (AMF, MFE)
    d_state: int = 16
    d_conv: int = 4
    expand: int = 1
    dt_rank: int | str = "auto"  # "auto": ceil(hidden / 16)
    interaction_init: float = 0.1
    mfe_pool: int = 4
    # TSA
    tsa_temporal: str = "mamba"
    tsa_kernel: int = 7
    # PLSIM: (25, d) caption embedding .npy files (CLAP text for audio, CLIP text for visual)
    text_audio: str | None = None
    text_visual: str | None = None
    random_text: bool = False  # a seeded random stand-in instead of the files (no language prior)
    text_dim_audio: int = 512  # used only with random_text
    text_dim_visual: int = 768
    text_seed: int = 0
    plsim_hidden: int = 64
    # ablations (MUG Table 2)
    use_tsa: bool = True
    use_amf: bool = True
    use_mfe: bool = True
    use_plsim: bool = True
    # loss weights (all 1 in the paper)
    video_loss_weight: float = 1.0
    segment_loss_weight: float = 1.0
    label_loss_weight: float = 1.0

    RANGES = {"d_state": (1, 256), "d_conv": (1, 64), "expand": (1, 16), "mfe_pool": (1, 16384), "tsa_kernel": (1, 63),
              "text_dim_audio": (1, 65536), "text_dim_visual": (1, 65536), "plsim_hidden": (1, 16384)}


# MUG Sec. 4.1 states AdamW, batch 64 and 20 epochs on VGGish + ResNet-152 + R(2+1)D; its
# learning rate did not survive in the text. MUG builds on VALOR (it compares with it and uses
# its pseudo-labels), so what the paper leaves open is VALOR's (scripts/train_valor.sh): lr 1e-4
# to 1e-6, betas (0.5, 0.999), weight decay 1e-3, gradient clipping 1.0, 8 heads, feed-forward
# 1024, hidden 512, one layer; VALOR's warm-up of 10 of 60 epochs becomes 3 of MUG's 20 (same
# share). MUG+ (CLIP + CLAP) takes VALOR++'s widths and rates, as VALOR++ does.
MUG_RECIPE = {**VALOR_RECIPE, "warmup_epochs": 3, "epochs": 20}


@register_model("mug", MUGConfig, recipe=MUG_RECIPE, variants=CLIP_CLAP_VARIANTS)
class MUG(AVVPModel):
    """MUG's AV-Mamba network. With PLSIM, forward reads the zero-shot priors `prior_audio`/`prior_visual`.

    Extras in the outputs: logits_audio/logits_visual (B, 10, 25), feat_audio/feat_visual
    (B, 10, hidden) after the HAN tail.
    """

    def __init__(self, config: MUGConfig):
        super().__init__(config)
        check_captions(config, "MUG")
        self.han = HAN(han_config(config))  # projections (embed), hat_encoder, head
        config.resolve_inputs()
        h, c = config.hidden, config
        self.tsa_audio = TemporalSpatialAttention(temporal=c.tsa_temporal, kernel=c.tsa_kernel) if c.use_tsa else None
        self.tsa_visual = TemporalSpatialAttention(temporal=c.tsa_temporal, kernel=c.tsa_kernel) if c.use_tsa else None
        self.fusion = (AdaptiveMambaFusion(h, c.d_state, c.d_conv, c.expand, c.dt_rank, c.interaction_init)
                       if c.use_amf else None)
        self.mfe = (MambaFeatureEnhancement(h, c.d_state, c.d_conv, c.expand, c.dt_rank, c.mfe_pool)
                    if c.use_mfe else None)
        self.plsim = build_plsim(c, h) if c.use_plsim else None

    @property
    def needs_priors(self) -> bool:
        return self.plsim is not None

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        audio, visual = self.han.embed(batch)
        if self.tsa_audio is not None:
            audio, visual = self.tsa_audio(audio), self.tsa_visual(visual)
        if self.fusion is not None:
            audio, visual = self.fusion(audio, visual)
        if self.mfe is not None:
            audio, visual = self.mfe(audio, visual)
        return plsim_and_han_tail(self, batch, audio, visual)

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]):
        """LINK Eq. 9 without L_avss (VALOR's objective with segment and video-level pseudo-labels)."""
        c = self.config
        total, parts = pseudo_label_loss(outputs, batch, c.video_loss_weight, c.segment_loss_weight)
        label = video_pseudo_label_loss(outputs, batch)
        parts["label"] = float(label.detach())
        return total + c.label_loss_weight * label, parts

    def parameter_breakdown(self) -> dict[str, int]:
        """Parameter counts per part (shared tensors counted once)."""
        parts = {"han": self.han, "tsa": nn.ModuleList([m for m in (self.tsa_audio, self.tsa_visual) if m is not None]),
                 "amf": self.fusion, "mfe": self.mfe, "plsim": self.plsim}
        return {k: sum(p.numel() for p in m.parameters()) if m is not None else 0 for k, m in parts.items()}
