"""EAR's pseudo-label generator with asymmetric temporal modelling (Sec. III-B, Eq. 3-8), stage 1 and 2.

Per modality, transformer blocks (multi-head self-attention + feed-forward, Eq. 3) turn the frozen
CLIP (visual) / CLAP (audio) segment features into temporal-aware "dynamic" features. Event
probabilities come from the cosine similarity with the class caption embeddings ("A photo of <event>",
"This is the sound of <event>"): dynamic ones from the dynamic features (Eq. 4), static ones from the raw
features (Eq. 5). Audio-visual probabilities are asymmetric (Eq. 6-7): dynamic visual x static audio, and
dynamic audio x static visual, so audio-visual supervision has to flow through the uni-modal temporal
branches. Loss (Eq. 8):

    L = BCE(P_v^d * P_a^s, Y_av) + BCE(P_a^d * P_v^s, Y_av) + lambda_a BCE(P_a^d, Y~_a) + lambda_v BCE(P_v^d, Y~_v)

with Y~ the migrated uni-modal labels (`inference.label_migration`, per batch, on the raw features), or the
human audio/visual tracks when the batch carries them (corrected LLP clips). Caption embeddings are INPUTS:
no weight depends on the class count, so a generator pre-trained on UnAV-100's 100 classes (or on LLP's
25) is applied to LLP's 25 classes (stage 2, `inference.ear_generate`).

Reconstructions (the text lost the symbols; each is an option of `EARGeneratorConfig`):
- lambda_a = 0.05, lambda_v = 0.15 (`lambda_audio`, `lambda_visual`; Sec. IV-A "set to [.], [.]"). Table
  S-XIX varies the first weight (0 / 0.1 / 0.15) holding the second at 0.15, then the second (0.05 / 0.25)
  holding the first at 0.05; the best row, on every metric, is (0.05, 0.15). Which weight is which is the
  weaker reading: the text lists "[lambda_a], [lambda_v]" in that order (as Eq. 8's terms), and "increasing
  the weights may amplify the noise in the migrated labels" fits the first being audio's: raising it lowers
  the segment audio F-score most (81.7 -> 79.9 -> 79.6; visual 75.5 -> 75.4 -> 74.2); raising the second
  to 0.25 lowers visual slightly more than audio (-2.1 vs -1.9). (Lowering the second to 0.05 lifts visual
  to 76.1 and lowers audio to 80.0, which fits either reading.) The row (0, 0.15), 72.7, is also Table V's
  first row (the full table S-XIII), i.e. the loss without one uni-modal term.
- Migration thresholds tau_a = 0.98, tau_v = 0.95 (`tau_audio`, `tau_visual`): `inference.label_migration`.
- Probability from similarity (Eq. 4-5 lost): p = sigmoid(s * cos(x, t) + b) with a learnable scale s
  (`scale_init` 10, kept positive through its logarithm; `learn_scale`) and bias b (`bias_init` -5),
  one pair per modality and per branch (dynamic / static). Why learnable: CLIP/CLAP cosines lie in a
  narrow band (about 0.1-0.4), so sigmoid(cos) would be about 0.55 everywhere, and the static branch has
  no other parameter to calibrate. With s = 10, b = -5 a cosine of 0.3 starts at p = 0.12.
- Transformer blocks (Eq. 3): `num_layers` 1 per modality (the paper writes one block; UWAV's "simple
  Transformer blocks"), post-norm (x = LN(x + MSA(x)), x = LN(x + FFN(x)), as HAN/VALOR's code), `nhead` 8,
  `dim_feedforward` 2048, ReLU, `dropout` 0.1 (PyTorch's TransformerEncoderLayer defaults). They run at
  the features' own width (`hidden` 0), so the dynamic features stay in the caption space; `hidden` > 0
  projects in and back out (tiny test models). No positional encoding (`positional` "none"; HAN-family
  code has none); "sinusoidal" adds one.
- Audio-visual probability at inference (the paper only trains the two): `av_combine` "mean" of
  P_v^d P_a^s and P_a^d P_v^s ("min", "max", "product" also), used for the val metric on AV labels.
- Pseudo-label threshold of Eq. 9 (value lost): `pseudo_threshold` 0.5, the midpoint of a probability (no
  number survives in the text; VALOR/UWAV-style segment rules use 0.5 too).
Recipe (Sec. IV-A, the generator's): AdamW, batch 64, 80 epochs with 10 warm-up epochs then cosine, peak lr
1e-4, minimum 1e-5 (5e-6 is the parser's). Weight decay and betas are not given: PyTorch's AdamW defaults
(0.01, (0.9, 0.999)), no gradient clipping.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from inference.label_migration import TAU_AUDIO, TAU_VISUAL, migrate_batch
from inference.models.registry import ModelConfig, register_model

TRACKS = ("audio", "visual")
AV_COMBINE = ("mean", "min", "max", "product")
POSITIONAL = ("none", "sinusoidal")
EPS = 1e-7  # probabilities are clamped to [EPS, 1 - EPS] in the BCE (as the project's video_bce)


@dataclass
class EARGeneratorConfig(ModelConfig):
    """The generator's widths, its loss and its pseudo-label rule (see the module docstring)."""

    audio_dim: int | None = None  # CLAP width (512); None: from the data
    visual_dim: int | None = None  # CLIP width (768); None: from the data
    hidden: int = 0  # 0: the transformer runs at the feature width (caption space)
    num_layers: int = 1
    nhead: int = 8
    dim_feedforward: int = 2048
    dropout: float = 0.1
    positional: str = "none"  # none | sinusoidal
    learn_scale: bool = True
    scale_init: float = 10.0
    bias_init: float = -5.0
    tau_audio: float = TAU_AUDIO
    tau_visual: float = TAU_VISUAL
    lambda_audio: float = 0.05
    lambda_visual: float = 0.15
    av_combine: str = "mean"  # mean | min | max | product of the two asymmetric AV probabilities
    pseudo_threshold: float = 0.5  # Eq. 9, strict >

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {"audio_dim": (1, 65536), "visual_dim": (1, 65536), "hidden": (0, 65536), "num_layers": (0, 64),
              "nhead": (1, 256), "dim_feedforward": (1, 262144), "dropout": (0.0, 0.99), "scale_init": (1e-3, 1e4),
              "bias_init": (-1e3, 1e3), "tau_audio": (-1.0, 1.0), "tau_visual": (-1.0, 1.0),
              "lambda_audio": (0.0, 1e3), "lambda_visual": (0.0, 1e3), "pseudo_threshold": (0.0, 1.0)}

    def check(self) -> None:
        super().check()
        if self.av_combine not in AV_COMBINE:
            raise ValueError(f"av_combine {self.av_combine!r}; expected one of {AV_COMBINE}")
        if self.positional not in POSITIONAL:
            raise ValueError(f"positional {self.positional!r}; expected one of {POSITIONAL}")


class TemporalBlock(nn.Module):
    """Eq. 3: x = LN(x + MSA(x)); x = LN(x + FFN(x)) (post-norm), padding keys masked out."""

    def __init__(self, width: int, nhead: int, feedforward: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, nhead, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(width, feedforward), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(feedforward, width))
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        attended = self.attn(x, x, x, key_padding_mask=padding, need_weights=False)[0]
        x = self.norm1(x + self.drop1(attended))
        return self.norm2(x + self.drop2(self.ffn(x)))


def sinusoidal(length: int, width: int, device: torch.device) -> torch.Tensor:
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(length, width, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)[:, : width // 2]
    return table


class TemporalBranch(nn.Module):
    """One modality's temporal modelling: features (B, T, d) -> dynamic features (B, T, d)."""

    def __init__(self, dim: int, config: EARGeneratorConfig):
        super().__init__()
        width = config.hidden or dim
        if width % config.nhead:
            raise ValueError(f"width {width} is not divisible by nhead {config.nhead}")
        self.inp = nn.Linear(dim, width) if config.hidden else nn.Identity()
        self.out = nn.Linear(width, dim) if config.hidden else nn.Identity()
        self.blocks = nn.ModuleList(TemporalBlock(width, config.nhead, config.dim_feedforward, config.dropout)
                                    for _ in range(config.num_layers))
        self.positional = config.positional == "sinusoidal"

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        x = self.inp(x)
        if self.positional:
            x = x + sinusoidal(x.shape[1], x.shape[2], x.device)
        for block in self.blocks:
            x = block(x, padding)
        return self.out(x)


class SimilarityHead(nn.Module):
    """p = sigmoid(s * cos(x, t) + b) for every segment and class (Eq. 4-5, reconstructed)."""

    def __init__(self, config: EARGeneratorConfig):
        super().__init__()
        log_scale = torch.tensor(math.log(config.scale_init))
        if config.learn_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.bias = nn.Parameter(torch.tensor(float(config.bias_init)))

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        cos = torch.einsum("btd,bcd->btc", F.normalize(x, dim=-1), F.normalize(text, dim=-1))
        return torch.sigmoid(self.log_scale.exp() * cos + self.bias)


def masked_bce(prob: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the valid segments (B, T) and every class; probabilities clamped to [EPS, 1 - EPS]."""
    loss = F.binary_cross_entropy(prob.clamp(EPS, 1 - EPS), target.to(prob.dtype), reduction="none")
    weight = valid.to(prob.dtype)[..., None]
    return (loss * weight).sum() / (weight.sum() * prob.shape[-1]).clamp(min=1.0)


def combine_av(visual_driven: torch.Tensor, audio_driven: torch.Tensor, how: str) -> torch.Tensor:
    if how == "mean":
        return (visual_driven + audio_driven) / 2
    if how == "min":
        return torch.minimum(visual_driven, audio_driven)
    if how == "max":
        return torch.maximum(visual_driven, audio_driven)
    return visual_driven * audio_driven


# Sec. IV-A (the generator's numbers); weight decay and betas: PyTorch's AdamW defaults (the paper is silent)
EAR_GENERATOR_RECIPE = {"optimizer": "adamw", "lr": 1e-4, "lr_min": 1e-5, "weight_decay": 0.01, "betas": (0.9, 0.999),
                        "scheduler": "warmup_cosine", "warmup_epochs": 10, "epochs": 80, "batch_size": 64,
                        "grad_clip": 0.0}


@register_model("ear_generator", EARGeneratorConfig, recipe=EAR_GENERATOR_RECIPE, task="dense_events")
class EARGenerator(nn.Module):
    """The generator. `forward(batch)` reads INPUTS only: audio (B, T, d_a), visual (B, T, d_v), text_audio
    (B, C, d_a) or (C, d_a), text_visual likewise, valid (B, T) (optional; False = padding). Returns
    (B, T, C) probabilities: audio / visual (dynamic, Eq. 4), static_audio / static_visual (Eq. 5),
    av_visual_driven = P_v^d P_a^s (Eq. 6), av_audio_driven = P_a^d P_v^s (Eq. 7), av (`av_combine`).
    `loss` adds the targets: label_av (B, T, C) and, when given, label_audio / label_visual (else migrated)."""

    model_name = "ear_generator"

    def __init__(self, config: EARGeneratorConfig):
        super().__init__()
        if config.audio_dim is None or config.visual_dim is None:
            raise ValueError("audio_dim and visual_dim must be given (the task fills them from the data)")
        self.config = config
        self.audio_branch = TemporalBranch(config.audio_dim, config)
        self.visual_branch = TemporalBranch(config.visual_dim, config)
        self.heads = nn.ModuleDict({f"{kind}_{track}": SimilarityHead(config)
                                    for kind in ("dynamic", "static") for track in TRACKS})

    @staticmethod
    def _text(text: torch.Tensor, batch: int) -> torch.Tensor:
        return text.float().unsqueeze(0).expand(batch, -1, -1) if text.ndim == 2 else text.float()

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        audio, visual = batch["audio"].float(), batch["visual"].float()
        b = audio.shape[0]
        text = {"audio": self._text(batch["text_audio"], b), "visual": self._text(batch["text_visual"], b)}
        valid = batch.get("valid")
        padding = None if valid is None else ~valid.bool()
        dynamic = {"audio": self.audio_branch(audio, padding), "visual": self.visual_branch(visual, padding)}
        raw = {"audio": audio, "visual": visual}
        out = {}
        for track in TRACKS:
            out[track] = self.heads[f"dynamic_{track}"](dynamic[track], text[track])
            out[f"static_{track}"] = self.heads[f"static_{track}"](raw[track], text[track])
        out["av_visual_driven"] = out["visual"] * out["static_audio"]  # Eq. 6
        out["av_audio_driven"] = out["audio"] * out["static_visual"]  # Eq. 7
        out["av"] = combine_av(out["av_visual_driven"], out["av_audio_driven"], self.config.av_combine)
        return out

    def uni_modal_targets(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's human audio/visual labels, or labels migrated from its AV labels (Eq. 1-2)."""
        if "label_audio" in batch and "label_visual" in batch:
            return batch["label_audio"].float(), batch["label_visual"].float()
        valid, av = batch.get("valid"), batch["label_av"]
        return (migrate_batch(batch["audio"], av, valid, self.config.tau_audio),
                migrate_batch(batch["visual"], av, valid, self.config.tau_visual))

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]):
        """Eq. 8 over the valid segments; parts: av_visual_driven, av_audio_driven, audio, visual (unweighted)."""
        av = batch["label_av"].float()
        valid = batch.get("valid")
        if valid is None:
            valid = torch.ones(av.shape[:2], device=av.device)
        target_a, target_v = self.uni_modal_targets(batch)
        parts = {"av_visual_driven": masked_bce(outputs["av_visual_driven"], av, valid),
                 "av_audio_driven": masked_bce(outputs["av_audio_driven"], av, valid),
                 "audio": masked_bce(outputs["audio"], target_a, valid),
                 "visual": masked_bce(outputs["visual"], target_v, valid)}
        c = self.config
        total = (parts["av_visual_driven"] + parts["av_audio_driven"] + c.lambda_audio * parts["audio"]
                 + c.lambda_visual * parts["visual"])
        return total, {k: float(v.detach()) for k, v in parts.items()}
