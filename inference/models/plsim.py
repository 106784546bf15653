"""PLSIM: the pseudo-label semantic interaction module (MUG Sec. 3.3 Eqs. 6-10, LINK Sec. II-D Eqs. 13-17).

Why: the text of the events a segment's label names is a prior that lets each
track keep its own events and ignore the other modality's noise. Which label:
both papers say they remove the video-level mask from the pseudo-labels they feed
here at test time (MUG Sec. 3.3, LINK Sec. II-D). A label the model reads must not
depend on a clip's video-level label in any split (at val/test time that label
comes from the ground truth), so PLSIM reads PRIORS, in training and at test time:
zero-shot CLIP/CLAP segment labels over all 25 classes, never gated
(`inference.priors`, `avvp-studio prior`). Each
class has a caption embedding ("this is a sound of <class>" through the frozen
CLAP text encoder for audio, "A photo of <class>." through CLIP for visual);
four MLPs map them to a scale and a bias per track (LINK Eqs. 14-15:
gamma_a1, gamma_a2 for audio, rho_v1, rho_v2 for visual) and the features
become (Eqs. 16-17)

    F_a = f_a * gamma_a1 + gamma_a2 + f_a,    F_v = f_v * rho_v1 + rho_v2 + f_v.

Reading of "the features of the classes active in a segment's pseudo-label":
the MLPs are applied to every class caption and segment t gets the MEAN of the
scales/biases of the classes active in its prior (exactly Eq. 16 when one class
is active; the mean keeps the size independent of the number of events). A
segment with an empty prior gets scale 0 and bias 0, i.e. its features pass
through unchanged, so the module can never inject a class the prior does not
name. For CMRC clips the audio prior belongs to the audio source and the visual
one to the visual source, so the "expansion" MUG mentions is automatic.

Caption embeddings come from a (25, d) float .npy file per track (rows in the
canonical class order of `annotation.taxonomy`); real use passes the CLAP (512)
and CLIP ViT-L/14 (768) text embeddings of the captions above. Only when asked
(`random_text`) a fixed, seeded random unit-norm matrix stands in: the module then
still works as a learned per-class scale/bias, only without the language prior.
The matrices are buffers, so checkpoints carry them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from annotation.npyfile import read_npy
from annotation.taxonomy import NUM_CLASSES

MAX_TEXT_DIM = 65536  # wider than any text encoder; a larger header is refused before reading


def caption_embeddings(path: str | Path | None, dim: int, seed: int) -> torch.Tensor:
    """The (25, d) caption embedding matrix from `path`, or a seeded random unit-norm (25, dim) one."""
    if path is None or str(path) == "":
        gen = torch.Generator().manual_seed(int(seed))
        table = torch.randn(NUM_CLASSES, dim, generator=gen)
        return table / table.norm(dim=1, keepdim=True)
    array = read_npy(path, shape=lambda s: len(s) == 2 and s[0] == NUM_CLASSES and 0 < s[1] <= MAX_TEXT_DIM,
                     kinds="f", finite=True, expected=f"caption embeddings, a finite float ({NUM_CLASSES}, d) array")
    return torch.from_numpy(array.astype(np.float32))


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


class PLSIM(nn.Module):
    """Prior-conditioned scale and bias on the audio and visual segment features."""

    def __init__(self, dim: int, text_audio: torch.Tensor, text_visual: torch.Tensor, hidden: int = 64):
        super().__init__()
        self.register_buffer("text_audio", text_audio.float().clone())  # (25, e_a), frozen
        self.register_buffer("text_visual", text_visual.float().clone())  # (25, e_v), frozen
        ea, ev = text_audio.shape[1], text_visual.shape[1]
        self.gamma_a1, self.gamma_a2 = _mlp(ea, hidden, dim), _mlp(ea, hidden, dim)  # LINK Eq. 14
        self.rho_v1, self.rho_v2 = _mlp(ev, hidden, dim), _mlp(ev, hidden, dim)  # LINK Eq. 15

    @staticmethod
    def _per_segment(labels: torch.Tensor, per_class: torch.Tensor) -> torch.Tensor:
        """Mean over the active classes of (25, d) class parameters: (B, T, 25) -> (B, T, d)."""
        labels = labels.to(per_class.dtype)
        return labels @ per_class / labels.sum(dim=-1, keepdim=True).clamp(min=1.0)

    def forward(self, audio: torch.Tensor, visual: torch.Tensor, prior_audio: torch.Tensor,
                prior_visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio, visual (B, T, d); prior_* (B, T, 25) 0/1 -> (F_a, F_v) (B, T, d), Eqs. 16-17."""
        scale_a = self._per_segment(prior_audio, self.gamma_a1(self.text_audio))
        bias_a = self._per_segment(prior_audio, self.gamma_a2(self.text_audio))
        scale_v = self._per_segment(prior_visual, self.rho_v1(self.text_visual))
        bias_v = self._per_segment(prior_visual, self.rho_v2(self.text_visual))
        return audio * scale_a + bias_a + audio, visual * scale_v + bias_v + visual


def build_plsim(config, dim: int) -> PLSIM:
    """PLSIM from a model config's text_* fields (shared by MUG and LINK)."""
    audio = caption_embeddings(config.text_audio, config.text_dim_audio, config.text_seed)
    visual = caption_embeddings(config.text_visual, config.text_dim_visual, config.text_seed + 1)
    return PLSIM(dim, audio, visual, config.plsim_hidden)
