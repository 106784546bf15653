"""EAR's parser (Li et al., "EAR: Enhancing Uni-Modal Representations for Weakly Supervised AVVP", Sec. III-C).

Pipeline: HAN's input projections (the static features) -> asymmetric audio/visual-driven
fusion (AMDF, Eqs. 10-12) -> cross-modal aggregation into class-wise event features
(Eqs. 13-14) -> multi-event relationship modelling (ERM, Eq. 15) -> a class-wise classifier
and HAN's attentive MMIL pooling [46] -> the `inference.models` contract. Losses (Eq. 16,
supplementary Eqs. S-22..S-28) are UWAV's [25], which EAR says it follows.

The paper's text lost its symbols and several values; each reading below is a config
option (EARConfig), with its evidence. "UWAV code" is the released UWAV implementation
(README "official repository of CVPR 2025 paper UWAV"; read as the public fork
ysiqi0785-ops/UWAV, model/HAN.py, main.py, dataloader.py, scripts/train_han.sh). No
public EAR code was found.

AMDF (Eqs. 10-12)
- Static features F_a^s, F_v^s: the projected inputs, HAN's own projections (fc_a; fc_v
  then 8:1 pooling of the ResNet frames; R(2+1)D through fc_st + fc_fusion), so every
  feature set of the registry works. (UWAV's code uses a 2-layer MLP for audio and one
  linear map on [pooled ResNet; R(2+1)D] instead: a deviation, kept to reuse HAN.)
- Dynamic features (Eq. 10): `temporal_layers` (1) post-norm Transformer encoder blocks
  (MSA + FFN) per modality, own weights per modality. Eq. 10 is one application giving a
  "preliminary" focus; UWAV's blocks are post-norm LN(x + Attn), LN(x + FFN).
- Audio-driven fusion (Eq. 11): F_a^AV = FFN-block(LN(F_a^d + MCA(Q=F_a^d, K=V=F_v^s))),
  post-norm with the query as residual; visual-driven (Eq. 12) likewise with the roles
  swapped. `num_layers` (1) such units are stacked; the keys stay the static features.
- `fusion` reproduces Table VIII/VII: "amdf" (ours), "msa_mca" (self-attention, then
  cross-attention between the DYNAMIC features: the direct fusion EAR contrasts with),
  "han" (HAN's hybrid attention, `inference.models.han.HybridAttentionEncoder`, UWAV's
  layer order), "none" (no AMDF: ERM reads the static features).
- Widths hidden 512, nhead 16, dim_feedforward 2048, dropout 0.1: EAR states none; these
  are UWAV's inference model (scripts/train_han.sh), which EAR follows ([25]).

Cross-modal aggregation (Eqs. 13-14), `event_dim` e = 128, `aggregation` "concat"
- E_a = ReLU(W_a [F_a^AV ; F_v^AV]), E_v = ReLU(W_v [F_v^AV ; F_a^AV]), each reshaped to
  one e-dim feature PER CLASS PER SEGMENT, (B, 10, 25, e). Per segment, not per clip:
  the classifier turns the relation-aware features into SEGMENT probabilities (Sec.
  III-C) and the mixup mixes the features of two segments (S-25). The per-class
  decoding follows [64] (MM-CSE, cited by EAR for decoupling class features), whose
  code gives each class a 128-d feature. "self": each track decodes only its own
  features (no aggregation).

ERM (Eq. 15), `erm_layers` L = 3 (IV-A; Table S-XX: 2 -> 63.4, 3 -> 63.7, 4 -> 62.9 avg)
- One relationship module: convolution -> learnable adjacency over the event nodes ->
  BatchNorm -> LeakyReLU (the four parts EAR lists). The convolution is a Conv1d over
  time on each node's channels, kernel `erm_kernel` (1: the node-wise GCN weight, as
  ADD-GCN implements it); the adjacency is a free (nodes x nodes) matrix, initialised to
  the identity (no cross-event mixing at the start); BatchNorm1d over the e channels;
  LeakyReLU slope `erm_slope` 0.2 (ML-GCN/ADD-GCN). `erm_residual` (False: EAR lists no
  skip connection) adds one.
- Uni-modal modules R_u: one 25 x 25 adjacency per track (Fig. 4 shows different audio
  and visual dependencies); multi-modal R_m: one 50 x 50 adjacency over [audio; visual]
  nodes (Fig. 5: its upper-left/lower-right blocks are the uni-modal parts).
- "Alternately" (Eq. 15, Table IX): layer l = R_u then R_m, L times; `erm_order`
  "uni_then_multi" is Table IX's "ERM A/V-AV" (L R_u layers, then L R_m layers);
  `erm_unimodal`/`erm_multimodal` False are "ERM w/o A/V" / "ERM w/o AV"; L = 0 is
  Table VII without ERM.

Classifier and pooling: the relation-aware features go through one class-wise linear
classifier shared by both tracks (HAN and UWAV share fc_prob across modalities): logit
[t, c] = <X[t, c], w_c> + b_c; HAN's MMILPooling does the pooling, with its frame and
modality attention heads made class-wise the same way (`EventMMILPooling`).

Losses (Eq. 16 = UWAV Eq. 20, weights `*_loss_weight` all 1: UWAV's code defaults)
- L_w-soft (S-22..S-24 = UWAV Eqs. 17-19), per track m: element-wise BCE of the segment
  logits against the soft pseudo-label p^m, times w_pos^m where the class is in the
  video-level label y and w_neg^m where it is not, averaged over B x 10 x 25 (UWAV code:
  `torch.where(weak == 1, neg_freq * pos_weight, pos_freq)`, then `.mean()`).
  With f_c^m the share of the TRAIN clips' segments whose 0/1 pseudo-label of track m
  holds class c (UWAV dataloader `get_class_freq`, over the train CSV), UWAV's code uses
  w_pos^m = W (C - sum_c f_c^m) and w_neg^m = sum_c f_c^m; the printed Eqs. (sums over
  i, t, c divided by N T C) are the same divided by C, which makes the segment terms C
  times weaker against L_video. `balance_divide_by_classes` False (default) is the code,
  True the printed equations.
  `balance_weight` W = 0.5 (UWAV Sec. 5.1 and Fig. A5; train_han.sh --pos_weight 0.5).
  The statistics are buffers (so in every checkpoint), set by `fit_train_labels`, which
  the AVVP task calls with the train clips' pseudo-labels before training.
  `class_balance` False is UWAV Table 4 without re-weighting.
- Soft pseudo-labels (EAR Eq. 9, UWAV Eq. 12): p = confidence * y, the confidences from
  the batch's `pseudo_score_audio`/`pseudo_score_visual` (the generator's probability),
  else the 0/1 pseudo-labels (`soft_labels` False: always the 0/1 labels, UWAV "Binary").
  The gate by `label` keeps a confidence file that is not gated from teaching classes
  outside the video-level label. (For the makers of those files: UWAV's code computes
  them as sigmoid((logit - threshold) / 2) on the weak-positive classes, a temperature 2
  its Eq. 12 does not print.)
- L_mix (S-25..S-27 = UWAV Eqs. 14-16), per track: all segments of the batch's clips
  with pseudo-labels, paired by one random permutation, mixed with one
  lambda ~ Beta(alpha, alpha) per batch and track on the classifier's inputs (the
  relation-aware class-node features), through the classifier, BCE against
  lambda p_i + (1 - lambda) p_j (UWAV code's lambda-weighted pair of BCEs, the same
  value). Not re-weighted (UWAV code). `mixup_alpha` 1.7 (UWAV Sec. 5.1, Fig. A4,
  train_han.sh --alpha 1.7).
- L_video (S-28): BCE of the MMIL global probabilities against y.
Clips without pseudo-labels (`has_pseudo` False) are left out of both segment terms.

Size with the recipe's widths (vggish): 21.2 M parameters (projections 1.9 M, AMDF 12.6 M,
decoders 6.6 M, ERM 0.16 M, head 0.01 M); EAR gives no count; UWAV's 5-layer HAN at the
same widths is about as large.

Honesty: forward reads features only; pseudo-labels, confidences, labels and the train
statistics enter the loss alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from annotation.taxonomy import NUM_CLASSES
from inference.models.av_blocks import han_config
from inference.models.base import AVVPModel, video_bce
from inference.models.han import (
    HAN,
    HANNetworkConfig,
    HybridAttentionEncoder,
    HybridAttentionLayer,
    MMILPooling,
)
from inference.models.registry import register_model

FUSIONS = ("amdf", "msa_mca", "han", "none")
AGGREGATIONS = ("concat", "self")
ERM_ORDERS = ("alternate", "uni_then_multi")
TRACKS = ("audio", "visual")


class CrossModalBlock(nn.Module):
    """One fusion unit (Eqs. 11-12): multi-head cross-attention of the query track on the key track,
    then a feed-forward network, post-norm, the query as residual."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d_model, dim_feedforward), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(dim_feedforward, d_model))
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        x = self.norm1(query + self.drop1(self.attn(query, key, key, need_weights=False)[0]))
        return self.norm2(x + self.drop2(self.ffn(x)))


class AsymmetricFusion(nn.Module):
    """AMDF (Eqs. 10-12) and the Table VIII alternatives: (static a, static v) -> (F_a^AV, F_v^AV)."""

    def __init__(self, c: EARConfig):
        super().__init__()
        self.kind = c.fusion
        h = c.hidden

        def blocks(make, n: int) -> nn.ModuleList:
            return nn.ModuleList([make() for _ in range(n)])

        if self.kind in ("amdf", "msa_mca"):
            def temporal() -> nn.Module:
                return nn.TransformerEncoderLayer(h, c.nhead, c.dim_feedforward, c.dropout, batch_first=True)

            def cross() -> nn.Module:
                return CrossModalBlock(h, c.nhead, c.dim_feedforward, c.dropout)

            self.temporal = nn.ModuleDict({t: blocks(temporal, c.temporal_layers) for t in TRACKS})
            self.cross = nn.ModuleDict({t: blocks(cross, c.num_layers) for t in TRACKS})
        elif self.kind == "han":
            layer = HybridAttentionLayer(h, c.nhead, c.dim_feedforward, c.dropout)
            self.hybrid = HybridAttentionEncoder(layer, c.num_layers, c.sequential)

    def dynamic(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 10: uni-modal temporal modelling of each track."""
        out = []
        for track, x in zip(TRACKS, (audio, visual)):
            for block in self.temporal[track]:
                x = block(x)
            out.append(x)
        return out[0], out[1]

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "none":
            return audio, visual
        if self.kind == "han":
            return self.hybrid(audio, visual)
        dyn_a, dyn_v = self.dynamic(audio, visual)
        # amdf: dynamic queries read the OTHER track's static features; msa_mca: its dynamic ones
        key_a, key_v = (visual, audio) if self.kind == "amdf" else (dyn_v, dyn_a)
        fa, fv = dyn_a, dyn_v
        for block_a, block_v in zip(self.cross["audio"], self.cross["visual"]):
            fa, fv = block_a(fa, key_a), block_v(fv, key_v)
        return fa, fv


class EventDecoder(nn.Module):
    """Eqs. 13-14: aggregated segment features (B, T, k * hidden) -> class-wise event features (B, T, C, e)."""

    def __init__(self, in_dim: int, event_dim: int, dropout: float, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.num_classes, self.event_dim = num_classes, event_dim
        self.fc = nn.Linear(in_dim, num_classes * event_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(F.relu(self.fc(x)))
        return out.view(*x.shape[:-1], self.num_classes, self.event_dim)


class EventRelation(nn.Module):
    """One relationship module of ERM: conv -> learnable adjacency over the nodes -> BatchNorm -> LeakyReLU.

    Input and output (B, T, N, e): N event nodes, each with an e-dim feature per segment."""

    def __init__(self, nodes: int, dim: int, kernel: int = 1, slope: float = 0.2, residual: bool = False):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2)
        self.adjacency = nn.Parameter(torch.eye(nodes))
        self.norm = nn.BatchNorm1d(dim)
        self.slope, self.residual = slope, residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, n, e = x.shape
        h = self.conv(x.permute(0, 2, 3, 1).reshape(b * n, e, t)).view(b, n, e, t)  # over time, per node
        h = torch.einsum("mn,bnet->bemt", self.adjacency, h)  # mix the nodes; channels first for the norm
        h = F.leaky_relu(self.norm(h.reshape(b, e, n * t)), self.slope)
        h = h.view(b, e, n, t).permute(0, 3, 2, 1)
        return x + h if self.residual else h


class EventRelationModel(nn.Module):
    """ERM (Eq. 15): L layers of uni-modal (per track, 25 nodes) and multi-modal (50 nodes) relation modules."""

    def __init__(self, c: EARConfig, num_classes: int = NUM_CLASSES):
        super().__init__()

        def module(nodes: int) -> EventRelation:
            return EventRelation(nodes, c.event_dim, c.erm_kernel, c.erm_slope, c.erm_residual)

        n = c.erm_layers
        self.order = c.erm_order
        self.uni = nn.ModuleList([nn.ModuleDict({t: module(num_classes) for t in TRACKS})
                                  for _ in range(n if c.erm_unimodal else 0)])
        self.multi = nn.ModuleList([module(2 * num_classes) for _ in range(n if c.erm_multimodal else 0)])

    def steps(self) -> list[nn.Module]:
        """The relation modules in the order they apply."""
        if self.order == "uni_then_multi" or not self.uni or not self.multi:
            return [*self.uni, *self.multi]
        return [m for pair in zip(self.uni, self.multi) for m in pair]

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for step in self.steps():
            if isinstance(step, nn.ModuleDict):
                audio, visual = step["audio"](audio), step["visual"](visual)
            else:
                both = step(torch.cat([audio, visual], dim=2))
                audio, visual = both[:, :, : audio.shape[2]], both[:, :, audio.shape[2]:]
        return audio, visual


class ClassWiseLinear(nn.Module):
    """(..., C, e) -> (..., C): one linear map per class on that class's feature."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        bound = 1 / math.sqrt(dim)  # nn.Linear(dim, 1)'s initialisation, per class
        self.weight = nn.Parameter(torch.empty(num_classes, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_classes).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).sum(-1) + self.bias


class EventMMILPooling(MMILPooling):
    """HAN's attentive MMIL pooling on class-node features (B, T, C, e): its classifier and its frame
    and modality attention heads become class-wise linear maps; the pooling itself is HAN's."""

    def __init__(self, dim: int, num_classes: int = NUM_CLASSES):
        super().__init__(dim, num_classes)
        self.fc_prob = ClassWiseLinear(num_classes, dim)
        self.fc_frame_att = ClassWiseLinear(num_classes, dim)
        self.fc_av_att = ClassWiseLinear(num_classes, dim)


@dataclass
class EARConfig(HANNetworkConfig):
    """EAR's options; see the module docstring for each reading and its evidence."""

    # widths: UWAV's inference model (scripts/train_han.sh)
    hidden: int = 512
    nhead: int = 16
    dim_feedforward: int = 2048
    dropout: float = 0.1
    num_layers: int = 1  # fusion units (AMDF, MSA+MCA) or hybrid attention layers (fusion "han")
    sequential: bool = True  # fusion "han": UWAV's/VALOR's layer order
    # AMDF
    fusion: str = "amdf"  # amdf | msa_mca | han | none (Tables VII-VIII)
    temporal_layers: int = 1
    # cross-modal aggregation and ERM
    aggregation: str = "concat"  # concat | self
    event_dim: int = 128
    erm_layers: int = 3
    erm_order: str = "alternate"  # alternate | uni_then_multi (Table IX "ERM A/V-AV")
    erm_unimodal: bool = True
    erm_multimodal: bool = True
    erm_kernel: int = 1
    erm_slope: float = 0.2
    erm_residual: bool = False
    # losses (Eq. 16, S-22..S-28)
    soft_labels: bool = True
    class_balance: bool = True
    balance_weight: float = 0.5  # W
    balance_divide_by_classes: bool = False  # False: UWAV's code; True: the printed Eqs. (S-23, S-24)
    mixup_alpha: float = 1.7
    video_loss_weight: float = 1.0
    segment_loss_weight: float = 1.0
    mixup_loss_weight: float = 1.0

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "temporal_layers": (1, 64), "event_dim": (1, 4096), "erm_layers": (0, 64), "erm_kernel": (1, 9),
        "erm_slope": (0.0, 1.0), "balance_weight": (0.0, 1e3), "mixup_alpha": (1e-3, 1e3),
        "video_loss_weight": (0.0, 1e3), "segment_loss_weight": (0.0, 1e3), "mixup_loss_weight": (0.0, 1e3)}

    def check(self) -> None:
        super().check()
        for name, allowed in (("fusion", FUSIONS), ("aggregation", AGGREGATIONS), ("erm_order", ERM_ORDERS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"EARConfig: option {name} is {getattr(self, name)!r}; expected one of {allowed}")
        if self.erm_kernel % 2 == 0:
            raise ValueError(f"EARConfig: erm_kernel {self.erm_kernel} must be odd (the segments keep their places)")


# EAR Sec. IV-A: AdamW, batch 64, 80 epochs, 10 warm-up epochs then cosine annealing, peak lr 1e-4,
# minimum 5e-6 (the parser's; 1e-5 is the generator's), one recipe for both feature sets (VGGish +
# ResNet-152 + R(2+1)D, and CLIP + CLAP), so no feature-set variant changes it. What EAR leaves out is
# UWAV's (supplementary Sec. 8 and scripts/train_han.sh): gradient norm clipped at 1.0, weight decay
# 1e-4, betas (0.9, 0.999); the widths are in EARConfig.
EAR_RECIPE = {"optimizer": "adamw", "lr": 1e-4, "lr_min": 5e-6, "weight_decay": 1e-4, "betas": (0.9, 0.999),
              "scheduler": "warmup_cosine", "warmup_epochs": 10, "epochs": 80, "batch_size": 64, "grad_clip": 1.0,
              "model_config": {"hidden": 512, "nhead": 16, "dim_feedforward": 2048, "dropout": 0.1}}


@register_model("ear", EARConfig, recipe=EAR_RECIPE)
class EAR(AVVPModel):
    """EAR's parser. Outputs: the contract, logits_audio/logits_visual (B, 10, 25), and
    feat_audio/feat_visual (B, 10, 25, event_dim), the relation-aware class-node features the
    classifier reads (the mixup loss mixes them)."""

    def __init__(self, config: EARConfig):
        super().__init__(config)
        c = config
        self.proj = HAN(han_config(c))  # HAN's projections only: its attention layers and head are not EAR's
        del self.proj.hat_encoder, self.proj.head
        c.resolve_inputs()
        self.fusion = AsymmetricFusion(c)
        width = 2 * c.hidden if c.aggregation == "concat" else c.hidden
        self.decoder = nn.ModuleDict({t: EventDecoder(width, c.event_dim, c.dropout) for t in TRACKS})
        self.erm = EventRelationModel(c)
        self.head = EventMMILPooling(c.event_dim)
        # UWAV's class-balance statistics: share of positive cells per class in the train pseudo-labels
        self.register_buffer("pseudo_freq", torch.zeros(2, NUM_CLASSES))
        self.register_buffer("pseudo_fitted", torch.tensor(False))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        audio, visual = self.fusion(*self.proj.embed(batch))
        if self.config.aggregation == "concat":
            audio, visual = torch.cat([audio, visual], -1), torch.cat([visual, audio], -1)
        audio, visual = self.erm(self.decoder["audio"](audio), self.decoder["visual"](visual))
        out = self.head(audio, visual)
        out["feat_audio"], out["feat_visual"] = audio, visual
        return out

    # ------------------------------------------------------------ the train statistics

    @torch.no_grad()
    def fit_train_labels(self, pseudo_audio, pseudo_visual) -> str:
        """Store the class-balance statistics of the TRAIN clips' 0/1 pseudo-labels, (N, 10, 25) each
        (clips with pseudo-labels only); returns a note for the run log."""
        freqs = []
        for track, labels in zip(TRACKS, (pseudo_audio, pseudo_visual)):
            labels = (labels.detach().cpu() if isinstance(labels, torch.Tensor) else torch.from_numpy(
                np.asarray(labels))).to(torch.float32)
            if labels.ndim != 3 or labels.shape[0] == 0 or labels.shape[2] != NUM_CLASSES:
                raise ValueError(f"{track} pseudo-labels of shape {tuple(labels.shape)}; expected (clips >= 1, "
                                 f"segments, {NUM_CLASSES})")
            freqs.append(labels.mean(dim=(0, 1)))
        self.pseudo_freq.copy_(torch.stack(freqs))
        self.pseudo_fitted.fill_(True)
        weights = ", ".join(f"{t} w_pos {p:.3g} w_neg {n:.3g}" for t, (p, n) in zip(TRACKS, self.balance_weights()))
        return (f"ear: class-balance weights from the pseudo-labels of {len(pseudo_audio)} train clips: {weights}"
                + ("" if self.config.class_balance else " (class_balance off: not used)"))

    def balance_weights(self) -> list[tuple[float, float]]:
        """[(w_pos, w_neg)] of audio and visual (S-23, S-24 / UWAV Eqs. 18-19, see the module doc)."""
        if not bool(self.pseudo_fitted):
            raise RuntimeError("EAR's class-balanced loss needs the statistics of the train pseudo-labels: call "
                               "fit_train_labels(pseudo_audio, pseudo_visual) first (the AVVP task does)")
        c = self.config
        scale = 1.0 / NUM_CLASSES if c.balance_divide_by_classes else 1.0
        out = []
        for track in range(2):
            positive = float(self.pseudo_freq[track].sum()) * scale  # UWAV code: class_freq.sum()
            negative = NUM_CLASSES * scale - positive
            out.append((c.balance_weight * negative, positive))
        return out

    # ------------------------------------------------------------ losses

    def soft_targets(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per track, the (B, 10, 25) targets: confidences gated by the video-level label (Eq. 9), or
        the 0/1 pseudo-labels where there are no confidences or `soft_labels` is off."""
        gate = batch["label"].unsqueeze(1)
        out = {}
        for track in TRACKS:
            score = batch.get(f"pseudo_score_{track}") if self.config.soft_labels else None
            out[track] = batch[f"pseudo_{track}"] if score is None else score.to(gate.dtype) * gate
        return out

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]):
        """Eq. 16: L_w-soft (audio + visual) + L_mix (audio + visual) + L_video."""
        c = self.config
        mask = batch.get("has_pseudo")
        keep = torch.ones(len(batch["label"]), dtype=torch.bool, device=batch["label"].device) if mask is None \
            else mask.bool()
        targets = self.soft_targets(batch)
        weights = self.balance_weights() if c.class_balance else [(1.0, 1.0)] * 2
        video = video_bce(outputs["global"], batch["label"])
        total, parts = c.video_loss_weight * video, {"video": float(video.detach())}
        for track, (w_pos, w_neg) in zip(TRACKS, weights):
            seg = weighted_segment_bce(outputs[f"logits_{track}"], targets[track], batch["label"], keep, w_pos, w_neg)
            mix = self.mixup_loss(outputs[f"feat_{track}"], targets[track], keep) if c.mixup_loss_weight > 0 \
                else seg.new_zeros(())
            total = total + c.segment_loss_weight * seg + c.mixup_loss_weight * mix
            parts[f"segment_{track}"], parts[f"mixup_{track}"] = float(seg.detach()), float(mix.detach())
        return total, parts

    def mixup_loss(self, features: torch.Tensor, targets: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """S-25..S-27: mix random pairs of segments (features (B, T, C, e), targets (B, T, C)) of the kept
        clips with one lambda ~ Beta(alpha, alpha); BCE of the classifier on the mix against the mixed targets."""
        feats, target = features[keep].flatten(0, 1), targets[keep].flatten(0, 1).to(features.dtype)
        if len(feats) == 0:
            return features.new_zeros(())
        alpha = torch.tensor(float(self.config.mixup_alpha))
        lam = float(torch.distributions.Beta(alpha, alpha).sample())  # the CPU generator: same on every device
        perm = torch.randperm(len(feats)).to(feats.device)
        mixed = lam * feats + (1 - lam) * feats[perm]
        return F.binary_cross_entropy_with_logits(self.head.fc_prob(mixed), lam * target + (1 - lam) * target[perm])


def weighted_segment_bce(logits: torch.Tensor, target: torch.Tensor, label: torch.Tensor, keep: torch.Tensor,
                         w_pos: float, w_neg: float) -> torch.Tensor:
    """S-22: element-wise BCE of segment logits (B, T, C) against soft targets, weighted w_pos where the
    class is in the video-level label `label` (B, C) and w_neg elsewhere; mean over the kept clips' cells."""
    per = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
    weight = torch.where(label.unsqueeze(1) > 0, per.new_tensor(w_pos), per.new_tensor(w_neg))
    per_clip = (per * weight).mean(dim=(1, 2))
    kept = keep.to(per_clip.dtype)
    return (per_clip * kept).sum() / kept.sum().clamp(min=1.0)
