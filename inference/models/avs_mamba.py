"""AVS-Mamba: temporal and multi-modal Mamba for audio-visual segmentation (Gong et al.), and an
audio-blind baseline.

Pipeline (paper Fig. 2; released code `model/compformer_ablation.py`, `compformer_semantic.py`):
frames -> visual backbone (ResNet-50 or PVT-v2-b5, four maps at strides 4..32) -> 1x1 conv +
GroupNorm to `d_model` per scale; audio log-mel -> VGGish (frozen) -> Linear(128, d_model), one
query per frame. Multi-scale Temporal Encoder (MTE): `encoder_layers` x [VSS block across the
stride 8/16/32 scales of a frame, MixFFN, Temporal Mamba across scales and frames (8-direction
3-D selective scan)]. Modality Aggregation Decoder (MAD): `decoder_layers` x, per encoder scale,
frame-level then temporal-level vision-to-audio (V2A) fusion on the audio queries. Contextual
Integration Pyramid (CIP): an FPN from stride 32 to 4 whose levels each run a Temporal Mamba and
an audio-to-vision (A2V) fusion with the projected audio, giving the mask features. Segmentation
head: for each decoder layer's query, <mask features, query> per pixel, MLP + residual, conv
head to K classes at the network resolution; the last layer's is the prediction, the earlier
ones the intermediate masks ("aux"). The blocks are in `inference.models.avs_blocks`.

Where the paper and the released code disagree (the code is the published behaviour and is
followed unless said otherwise; each is an option):

1. Temporal Mamba "depth-wise 3-D convolution": the code's kernel is (1, 3, 3), i.e. a per-frame
   2-D conv; `temporal_conv_t` = 1 (code), 3 for a real 3-D kernel (paper's words).
2. MTE: the paper describes VSS block + Temporal Mamba; the code adds a MixFFN (fc, 3x3 dw conv,
   GELU, fc) after the VSS block. `encoder_ffn` = True (code). The MTE runs on strides 8-32 only;
   the stride-4 map goes straight to the CIP (code; the paper does not say).
3. CIP: the paper gives every scale its own Context Fusion Block; the code's stride-4 level reuses
   the stride-8 level's Temporal Mamba (a loop variable left over) and builds none of its own.
   `cip_own_stride4_temporal` = False (code: shared weights, no unused module).
4. Loss, AVSBench-object: the paper says "dice loss"; the code's criterion is Dice on the final
   mask + Dice on each intermediate mask (weights dice 1, interm 1, BCE 0, the "mix" term on the
   mean mask feature 0). Dice = 1 - 2 sum(p g) / (sum p^2 + 0.001 + sum g^2 + 0.001), p = sigmoid,
   per frame, mean over frames with ground truth. Followed: `dice_weight` 1, `aux_weight` 1,
   `bce_weight` 0. ("Intermediate mask" in the paper's head description is the <mask features,
   query> product; in the code's loss, and here, it is the mask of an earlier decoder layer.)
5. Loss, AVSBench-semantic: the paper says "binary cross-entropy"; the code's criterion is the
   71-way softmax cross-entropy (named bce_loss), per-pixel mean per frame, averaged over frames
   with ground truth, on the final and the intermediate masks. `semantic_loss` = "ce" (code);
   "bce" is one-vs-rest BCE over the K class channels (paper's words).
6. Resolution: the code's S4/MS3 loaders resize the 224x224 frames to 512x512 and the masks
   bilinearly to 512 (soft masks; PIL bilinear upsampling), and the loss compares there; AVSS
   crops/resizes to 224 with nearest masks. `upsample_size` (512 for binary full models, 0 = the
   input size for AVSS and tiny; -1 picks that) resizes frames inside the model; with
   `loss_resolution` "network" (code) the loss compares the network-resolution logits with the
   masks resized bilinearly (binary: soft) or nearest (class ids); "input" compares at the
   input resolution. `logits` are always returned at the input resolution (bilinear).
7. Optimiser: AdamW, lr 2e-5 (both); the code calls `AdamW(model.parameters(), lr)`, so weight
   decay is AdamW's default 0.01 on every parameter (its comment says "no weight decay"): 0.01
   followed. No schedule (constant lr), no clipping (code).
8. Epochs and batch: paper S4 60 epochs / MS3 120 / AVSS 50, batch 2 (object) and 6 (semantic);
   the code's argparse defaults are 120 epochs batch 2 (MS3 script) and 30 epochs batch 4
   (semantic). The paper's numbers are followed (`RECIPES`), the defaults being overridable CLI
   values of unpublished launch scripts.
9. Visual backbone freezing: the paper is silent; the S4/MS3 code trains with the visual backbone
   frozen for the first 20 epochs (`unfreeze_epoch`), the AVSS code unfreezes it at epoch 0.
   `visual_frozen_epochs` freezes it for that many epochs (the trainer calls `model.set_epoch(epoch)`
   at each epoch start, epochs from 1): the S4/MS3 recipes set the code's 20, the AVSS recipe 0.
   VGGish is frozen (`freeze_audio_backbone` True) and run under no_grad, as in the code
   (`freeze_audio_extractor=True`); AVSBench freezes it too.
10. Padded AVSS frames: the semantic code multiplies the backbone features and the output masks
   by the frame-validity flag; so does this model with `frame_valid` (an input).

Loss extras (off by default = published behaviour): `silent_loss_weight` teaches empty masks on
frames whose audio is silent. A frame is silent when its VGGish example's mean log-mel is below
log(0.01) + `silent_margin`: VGGish's log-mel is log(mel + 0.01), so digital silence is exactly
log(0.01) = -4.605 in every bin; the margin (0.1 nats) admits near-silence (mean log(1 + 100 mel)
< 0.1) but not AVSS's zero-padded examples (all 0 > -4.5) nor any audible sound. The term pulls
the final logits towards an all-background mask (binary: per-pixel BCE against 0; semantic:
cross-entropy against class 0), averaged over the silent real frames (`frame_valid`); with `silent_on_unlabelled` (default) it also covers
real frames without ground truth (the target comes from the input audio, not from a label),
otherwise only frames with `mask_valid`.

Parameters (`parameter_breakdown()`; full widths: d_model 256, d_state 16, expand 2, two encoder
and two decoder layers, head MLP 2048). PVT-v2-b5: 179.27 M in all, 107.13 M trainable (visual
backbone 81.44 M, VGGish 72.14 M frozen, input projections 0.30 M, MTE 3.68 M, MAD 8.42 M, CIP
8.23 M, head 5.06 M). ResNet-50: 122.06 M, 49.91 M trainable (backbone 23.51 M, projections
1.02 M, the rest as above). `avs_visual_only`: 85.25 M (PVT-v2-b5) / 28.04 M (ResNet-50).
The paper's text gives no parameter count to compare with.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from inference.models.avs_blocks import (
    ContextualIntegrationPyramid,
    EncoderLayer,
    MaskHead,
    ModalityAggregationDecoder,
    MultiDirectionSSM,
    SegmentationHead,
    c2_xavier_fill,
    group_count,
)
from inference.models.registry import ModelConfig, register_model

BACKBONES = ("resnet50", "pvt_v2_b5")
SIZES = ("tiny", "full")
LOG_MEL_FLOOR = math.log(0.01)  # VGGish's log(mel + 0.01) of digital silence
DICE_EPS = 0.001  # the code's smoothing, added to each of the two denominators' sums

# widths per size; a config value of 0 (or -1 for upsample_size) takes these
PRESETS: dict[str, dict[str, int]] = {
    "full": {"d_model": 256, "d_state": 16, "expand": 2, "encoder_layers": 2, "decoder_layers": 2, "ffn_ratio": 4,
             "head_hidden": 2048, "head_mid": 128, "head_low": 32, "image_size": 224},
    "tiny": {"d_model": 16, "d_state": 4, "expand": 1, "encoder_layers": 1, "decoder_layers": 2, "ffn_ratio": 2,
             "head_hidden": 16, "head_mid": 8, "head_low": 8, "image_size": 64},
}


@dataclass
class AVSConfig(ModelConfig):
    """What every AVS model shares: sizes, inputs, resolution and the segmentation loss."""

    size: str = "full"  # full | tiny (tiny: the same code with tiny widths and tiny backbones, for CPU tests)
    backbone: str = "pvt_v2_b5"  # pvt_v2_b5 | resnet50
    num_classes: int = 1  # 1: binary (S4, MS3); 71: AVSS (class 0 = background)
    frames: int = 5  # T the task loads per clip (S4/MS3 5, AVSS 10 padded)
    image_size: int = 0  # frame size the task feeds (0: 224 full, 64 tiny)
    upsample_size: int = -1  # network resolution: -1 auto (512 binary full, else input size), 0 input size
    loss_resolution: str = "network"  # network (code) | input
    d_model: int = 0  # 0: from size (256 full, 16 tiny)
    head_mid: int = 0
    head_low: int = 0
    backbone_drop_path: float = 0.1  # PVT-v2's stochastic depth (the code's pvt_v2_b5 default)
    visual_frozen_epochs: int = 0  # code S4/MS3: 20 (needs the trainer to call set_epoch); see the docstring
    freeze_audio_backbone: bool = True
    # loss
    dice_weight: float = 1.0
    bce_weight: float = 0.0
    ce_weight: float = 1.0
    aux_weight: float = 1.0
    semantic_loss: str = "ce"  # ce (code) | bce (paper's words)
    silent_loss_weight: float = 0.0
    silent_margin: float = 0.1
    silent_on_unlabelled: bool = True

    RANGES = {"num_classes": (1, 1000), "frames": (1, 64), "image_size": (16, 4096), "upsample_size": (0, 4096),
              "d_model": (1, 4096), "head_mid": (1, 4096), "head_low": (1, 4096), "backbone_drop_path": (0.0, 0.99),
              "visual_frozen_epochs": (0, 100_000), "dice_weight": (0.0, 1e6), "bce_weight": (0.0, 1e6),
              "ce_weight": (0.0, 1e6), "aux_weight": (0.0, 1e6), "silent_loss_weight": (0.0, 1e6),
              "silent_margin": (0.0, 10.0)}

    def __post_init__(self) -> None:
        preset = PRESETS.get(self.size)
        if preset is None:
            raise ValueError(f"size {self.size!r}; expected one of {list(SIZES)}")
        for name, value in preset.items():
            if hasattr(self, name) and getattr(self, name) == 0:
                setattr(self, name, value)
        if self.upsample_size == -1:
            self.upsample_size = 512 if (self.size == "full" and self.num_classes == 1) else 0

    def check(self) -> None:
        super().check()
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone {self.backbone!r}; expected one of {list(BACKBONES)}")
        if self.num_classes == 2:
            raise ValueError("num_classes 2: use 1 for binary masks (a sigmoid), or the number of classes "
                             "including background for semantic masks")
        if self.upsample_size and self.upsample_size % 32:
            raise ValueError(f"upsample_size {self.upsample_size} must be a multiple of 32 (the backbone's stride)")
        if self.loss_resolution not in ("network", "input"):
            raise ValueError(f"loss_resolution {self.loss_resolution!r}; expected network or input")
        if self.semantic_loss not in ("ce", "bce"):
            raise ValueError(f"semantic_loss {self.semantic_loss!r}; expected ce or bce")


@dataclass
class AVSMambaConfig(AVSConfig):
    d_state: int = 0  # 0: from size (16 full, 4 tiny)
    expand: int = 0  # d_inner = expand * d_model (2 full)
    encoder_layers: int = 0  # MTE layers (2, paper and code)
    decoder_layers: int = 0  # MAD layers (2); every layer but the last gives an intermediate mask
    ffn_ratio: int = 0  # MixFFN width / d_model (4)
    head_hidden: int = 0  # the head MLP's hidden width (2048 in the code)
    drop_path: float = 0.1  # the code's stochastic depth in every Mamba block
    temporal_directions: int = 8  # 3-D scan directions: 2 thw, 4 +twh, 6 +hwt, 8 +wht (each both ways)
    temporal_conv_t: int = 1  # temporal extent of the "3-D" depth-wise conv (code 1; paper's words 3)
    encoder_ffn: bool = True  # MixFFN after the VSS block (code; not in the paper's text)
    cip_own_stride4_temporal: bool = False  # the code reuses the stride-8 Temporal Mamba at stride 4
    # ablations (paper Tables III-VI)
    use_encoder: bool = True
    use_frame_level: bool = True
    use_temporal_level: bool = True
    use_cip_temporal: bool = True
    use_cip_a2v: bool = True

    RANGES = {"d_state": (1, 256), "expand": (1, 16), "encoder_layers": (0, 16), "decoder_layers": (1, 16),
              "ffn_ratio": (1, 16), "head_hidden": (1, 65536), "drop_path": (0.0, 0.99),
              "temporal_conv_t": (1, 15)}

    def check(self) -> None:
        super().check()
        if self.temporal_directions not in (2, 4, 6, 8):
            raise ValueError(f"temporal_directions {self.temporal_directions}; expected 2, 4, 6 or 8")
        if self.temporal_conv_t % 2 == 0:
            raise ValueError(f"temporal_conv_t {self.temporal_conv_t} must be odd (a centred kernel)")
        if not (self.use_frame_level or self.use_temporal_level):
            raise ValueError("the decoder needs use_frame_level or use_temporal_level (the code refuses neither)")


@dataclass
class AVSVisualOnlyConfig(AVSConfig):
    pass


# TrainConfig fields per AVSBench subset (paper V-B, code defaults where the paper is silent; see
# the docstring, items 7-9), registered as the recipe (S4) and its subset variants (`avs train
# --subset` picks one). The model_config holds no num_classes/frames: the AVS task sets those per
# subset (a recipe value would override its defaults). S4/MS3 freeze a pretrained visual backbone for
# 20 epochs as their code does (the AVS task drops the freeze when no backbone weights are loaded:
# a random backbone has nothing to protect).
_COMMON = {"optimizer": "adamw", "lr": 2e-5, "weight_decay": 0.01, "betas": (0.9, 0.999), "scheduler": "none",
           "grad_clip": 0.0}
_FULL = {"size": "full", "backbone": "pvt_v2_b5"}
RECIPES: dict[str, dict[str, Any]] = {
    "s4": {**_COMMON, "epochs": 60, "batch_size": 2, "eval_batch_size": 1,
           "model_config": {**_FULL, "visual_frozen_epochs": 20}},
    "ms3": {**_COMMON, "epochs": 120, "batch_size": 2, "eval_batch_size": 1,
            "model_config": {**_FULL, "visual_frozen_epochs": 20}},
    "avss": {**_COMMON, "epochs": 50, "batch_size": 6, "eval_batch_size": 16, "model_config": dict(_FULL)},
}
_VARIANTS = {subset: recipe for subset, recipe in RECIPES.items() if subset != "s4"}


# ------------------------------------------------------------------ losses

def _frame_mean(per_frame: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean of per-frame values; 0 (with gradient) when no frame has weight (a batch
    without ground truth; the code would divide by zero)."""
    return (per_frame * weight).sum() / weight.sum().clamp(min=1.0)


def dice_per_frame(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The code's Dice loss per frame: logits/target (N, H, W) -> (N,)."""
    p = torch.sigmoid(logits.float()).flatten(1)
    g = target.float().flatten(1)
    return 1 - 2 * (p * g).sum(-1) / ((p * p).sum(-1) + DICE_EPS + (g * g).sum(-1) + DICE_EPS)


def bce_per_frame(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel binary cross-entropy per frame: (N, [K,] H, W) -> (N,)."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none").flatten(1).mean(-1)


def ce_per_frame(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel softmax cross-entropy per frame: logits (N, K, H, W), ids (N, H, W) -> (N,)."""
    return F.cross_entropy(logits.float(), target.long(), reduction="none").flatten(1).mean(-1)


def silent_frames(audio: torch.Tensor, margin: float) -> torch.Tensor:
    """(B, T, 1, 96, 64) log-mel -> (B, T) float, 1 where the example's mean log-mel is below
    log(0.01) + margin (see the module docstring)."""
    return (audio.flatten(2).mean(-1) < LOG_MEL_FLOOR + margin).float()


def resize_masks(mask: torch.Tensor, size: tuple[int, int], binary: bool) -> torch.Tensor:
    """(B, T, H, W) masks to `size`: bilinear soft masks (binary) or nearest class ids."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    b, t = mask.shape[:2]
    if binary:
        out = F.interpolate(mask.float().flatten(0, 1).unsqueeze(1), size=size, mode="bilinear", align_corners=False)
        return out.squeeze(1).unflatten(0, (b, t))
    out = F.interpolate(mask.flatten(0, 1).unsqueeze(1).float(), size=size, mode="nearest")
    return out.squeeze(1).round().long().unflatten(0, (b, t))


def _resize_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, T, K, h, w) -> (B, T, K, *size), bilinear."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    b, t = logits.shape[:2]
    out = F.interpolate(logits.flatten(0, 1), size=size, mode="bilinear", align_corners=False)
    return out.unflatten(0, (b, t))


def segmentation_loss(config: AVSConfig, outputs: dict[str, Any], batch: dict[str, torch.Tensor]):
    """The AVS-Mamba criterion (docstring items 4-6) + the optional silent-frame term.

    Terms are over frames with `mask_valid` (B, T) only (S4 train: frame 0); the final mask
    is `outputs["logits_net"]` (network resolution) or `outputs["logits"]` (input resolution)
    per `loss_resolution`, the intermediate ones `outputs["aux"]`.
    """
    if config.loss_resolution == "network":
        final, aux = outputs["logits_net"], list(outputs["aux"])
    else:
        final = outputs["logits"]
        aux = [_resize_logits(a, tuple(final.shape[-2:])) for a in outputs["aux"]]
    size = tuple(final.shape[-2:])
    binary = config.num_classes == 1
    mask = resize_masks(batch["mask"], size, binary)
    valid = batch["mask_valid"].float().flatten()  # (B*T,)
    target = mask.flatten(0, 1)  # (B*T, h, w)
    parts: dict[str, float] = {}

    def frame_terms(logits: torch.Tensor) -> dict[str, torch.Tensor]:
        x = logits.flatten(0, 1)  # (B*T, K, h, w)
        if binary:
            terms = {"dice": (config.dice_weight, dice_per_frame(x[:, 0], target))}
            if config.bce_weight:
                terms["bce"] = (config.bce_weight, bce_per_frame(x[:, 0], target))
        elif config.semantic_loss == "ce":
            terms = {"ce": (config.ce_weight, ce_per_frame(x, target))}
        else:
            onehot = F.one_hot(target.long(), config.num_classes).permute(0, 3, 1, 2)
            terms = {"bce": (config.ce_weight, bce_per_frame(x, onehot))}
        return {k: w * _frame_mean(v, valid) for k, (w, v) in terms.items()}

    final_terms = frame_terms(final)
    total = sum(final_terms.values())
    parts.update({k: float(v.detach()) for k, v in final_terms.items()})
    if aux and config.aux_weight:
        aux_total = sum(sum(frame_terms(a).values()) for a in aux)
        total = total + config.aux_weight * aux_total
        parts["aux"] = float(aux_total.detach())
    if config.silent_loss_weight:
        silent = silent_frames(batch["audio"], config.silent_margin) * batch["frame_valid"].float()
        if not config.silent_on_unlabelled:
            silent = silent * batch["mask_valid"].float()
        x = final.flatten(0, 1)
        if binary:
            per_frame = bce_per_frame(x[:, 0], torch.zeros_like(x[:, 0]))
        else:
            per_frame = ce_per_frame(x, torch.zeros(x.shape[0], *x.shape[2:], dtype=torch.long, device=x.device))
        term = _frame_mean(per_frame, silent.flatten())
        total = total + config.silent_loss_weight * term
        parts["silent"] = float(term.detach())
    return total, parts


# ------------------------------------------------------------------ models

class AVSModel(nn.Module):
    """Base of the AVS models: `forward(batch) -> {"logits", "aux", ...}`, `loss(outputs, batch)`.

    forward reads `frames` (B, T, 3, H, W), `audio` (B, T, 1, 96, 64) (audio models) and
    `frame_valid` (B, T) only; returns `logits` (B, T, K, H, W) at the input resolution, `aux`
    (intermediate logits (B, T, K, h, w) at the network resolution) and `logits_net` (the final
    logits at the network resolution, the same tensor as `logits` when it is the input's).
    """

    model_name: str = ""
    config: AVSConfig

    def __init__(self, config: AVSConfig, uses_audio: bool):
        super().__init__()
        from inference.backbones import VGGish, build_visual_backbone

        self.config = config
        options = {"drop_path_rate": config.backbone_drop_path} if config.backbone == "pvt_v2_b5" else {}
        self.visual_backbone = build_visual_backbone(config.backbone, size=config.size, **options)
        self.audio_backbone = VGGish(size=config.size) if uses_audio else None
        if self.audio_backbone is not None and config.freeze_audio_backbone:
            self.audio_backbone.requires_grad_(False)
        d = config.d_model
        self.input_proj = nn.ModuleList(nn.Sequential(nn.Conv2d(c, d, 1), nn.GroupNorm(group_count(d), d))
                                        for c in self.visual_backbone.channels)
        self.set_epoch(1)

    def set_epoch(self, epoch: int) -> None:
        """Freeze the visual backbone during the first `visual_frozen_epochs` epochs (counted from 1)."""
        self.visual_backbone.requires_grad_(epoch > self.config.visual_frozen_epochs)

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        s = self.config.upsample_size
        return (s, s) if s else (height, width)

    def visual_features(self, batch: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """The four projected maps (B*T, d, h_i, w_i) of the frames resized to the network size."""
        frames = batch["frames"]
        b, t = frames.shape[:2]
        x = frames.flatten(0, 1)
        size = self.network_size(*x.shape[-2:])
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        valid = batch["frame_valid"].to(x.dtype).reshape(b * t, 1, 1, 1)
        maps = self.visual_backbone(x)
        return [proj(m * valid) for proj, m in zip(self.input_proj, maps)], size

    def audio_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, T, 128) VGGish embeddings, under no_grad when the audio backbone is frozen."""
        audio = batch["audio"]
        b, t = audio.shape[:2]
        x = audio.flatten(0, 1)
        assert self.audio_backbone is not None
        if self.config.freeze_audio_backbone:
            with torch.no_grad():
                emb = self.audio_backbone(x)
        else:
            emb = self.audio_backbone(x)
        return emb.reshape(b, t, -1)

    def finish(self, logits: list[torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Per-layer logits (B*T, K, h, w) -> the output dict (zeroed on padded frames, as the code)."""
        frames = batch["frames"]
        b, t = frames.shape[:2]
        valid = batch["frame_valid"].to(logits[-1].dtype).reshape(b, t, 1, 1, 1)
        per_layer = [x.unflatten(0, (b, t)) * valid for x in logits]
        net = per_layer[-1]
        return {"logits": _resize_logits(net, tuple(frames.shape[-2:])), "logits_net": net, "aux": per_layer[:-1]}

    def loss(self, outputs: dict[str, Any], batch: dict[str, torch.Tensor]):
        return segmentation_loss(self.config, outputs, batch)

    def set_scan_backend(self, backend: str) -> None:
        """Pin the selective-scan backend of every Mamba block ("auto", "reference", ...); for tests."""
        for module in self.modules():
            if isinstance(module, MultiDirectionSSM):
                module.backend = backend


@register_model("avs_mamba", AVSMambaConfig, recipe=RECIPES["s4"], variants=_VARIANTS, task="avs")
class AVSMamba(AVSModel):
    """AVS-Mamba (see the module docstring)."""

    hears = True  # reads the audio (has a VGGish)

    def __init__(self, config: AVSMambaConfig):
        super().__init__(config, uses_audio=self.hears)
        c, d = config, config.d_model
        self.audio_proj = nn.Linear(128, d)
        self.encoder = nn.ModuleList(
            EncoderLayer(d, c.d_state, c.expand, c.ffn_ratio, c.drop_path, c.temporal_directions, c.temporal_conv_t,
                         use_ffn=c.encoder_ffn)
            for _ in range(c.encoder_layers if c.use_encoder else 0))
        self.decoder = ModalityAggregationDecoder(d, c.d_state, c.expand, c.drop_path, c.decoder_layers,
                                                  frame_level=c.use_frame_level, temporal_level=c.use_temporal_level)
        self.pyramid = ContextualIntegrationPyramid(d, c.d_state, c.expand, c.drop_path, c.temporal_directions,
                                                    c.temporal_conv_t, own_stride4_temporal=c.cip_own_stride4_temporal,
                                                    temporal=c.use_cip_temporal, a2v=c.use_cip_a2v)
        self.head = SegmentationHead(d, c.head_hidden, c.head_mid, c.head_low, c.num_classes)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        t = batch["frames"].shape[1]
        maps, size = self.visual_features(batch)
        audio = self.audio_proj(self.audio_features(batch))  # (B, T, d)
        srcs = [m.permute(0, 2, 3, 1) for m in maps[1:]]  # strides 8, 16, 32, channels-last
        for layer in self.encoder:
            srcs = layer(srcs, t)
        queries = self.decoder(srcs, audio)
        mask_features = self.pyramid(audio, [s.permute(0, 3, 1, 2) for s in srcs], maps[0])
        logits = [self.head(mask_features, q.flatten(0, 1), size) for q in queries]
        return self.finish(logits, batch)

    def parameter_breakdown(self) -> dict[str, int]:
        parts = {"visual_backbone": self.visual_backbone, "audio_backbone": self.audio_backbone,
                 "input_proj": nn.ModuleList([self.input_proj, self.audio_proj]), "encoder": self.encoder,
                 "decoder": self.decoder, "pyramid": self.pyramid, "head": self.head}
        return {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}


@register_model("avs_visual_only", AVSVisualOnlyConfig, recipe=RECIPES["s4"], variants=_VARIANTS, task="avs")
class AVSVisualOnly(AVSModel):
    """Audio-blind baseline: the same backbone and input projections, a plain FPN (1x1 laterals,
    nearest top-down sums, 3x3 conv + ReLU per level, 3x3 mask-feature conv) and AVS-Mamba's conv
    head. It has no audio backbone and never reads `audio`: what it scores is what the frames
    alone give, so the gap to `avs_mamba` measures how much the sound matters."""

    hears = False

    def __init__(self, config: AVSVisualOnlyConfig):
        super().__init__(config, uses_audio=self.hears)
        d = config.d_model
        self.lateral = nn.ModuleList(nn.Conv2d(d, d, 1, bias=False) for _ in range(4))
        self.output = nn.ModuleList(nn.Conv2d(d, d, 3, padding=1, bias=False) for _ in range(4))
        self.mask_features = nn.Conv2d(d, d, 3, padding=1)
        for conv in [*self.lateral, *self.output, self.mask_features]:
            c2_xavier_fill(conv)
        self.fc = MaskHead(d, config.head_mid, config.head_low, config.num_classes)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        maps, size = self.visual_features(batch)
        y = None
        for level, feat in enumerate(reversed(maps)):
            x = self.lateral[level](feat)
            if y is not None:
                x = x + F.interpolate(y, size=x.shape[-2:], mode="nearest")
            y = F.relu(self.output[level](x))
        return self.finish([self.fc(self.mask_features(y), size)], batch)
