"""EAR's similarity-based uni-modal label migration (Sec. III-B, Eq. 1-2, supplementary S-VI-A, Eq. S-17..S-21).

Why: dense audio-visual event data (UnAV-100) labels only events that are heard AND seen. EAR turns it
into AVVP-like data by giving a segment the audio-visual labels of the segments it closely resembles, per
modality, so the pseudo-label generator is also taught uni-modal events during pre-training.

The equations' symbols were lost from the paper's text; reconstructed from the prose and Fig. S-6:

    S   = cos(F_i, F_j)                 cosine similarity between ALL segments of the batch (Eq. 1; the frozen
                                        CLIP features for the visual track, CLAP for the audio track)
    M   = 1[S > tau]                    "only retain the portions with high similarity" (strict >)
    S^  = S * M                         the masked similarity matrix
    Y~  = S^ @ Y_av                     Eq. 2 / S-18: the migrated label (values above 1 where several similar
                                        segments carry the same event, the 1.8 of Fig. S-6)
    N   = M @ Y_av                      S-19: how many times each entry was labelled
    Y-  = Y~ / N   (0 where N = 0)      S-20: duplicates averaged, i.e. the mean similarity over the
                                        matching labelled segments
    Y   = max(Y-, Y_av)                 S-21: entries originally labelled 1 stay 1
A segment always matches itself (cos = 1), so its own labels enter Y~ and N; the maximum keeps them at 1.
The result is a soft label: the similarity is the confidence of a migrated entry (in (tau, 1]).

Thresholds (the values in Sec. IV-A were lost: "set to [.] for audio features and [.] for visual
features"), reconstructed from Table S-XVIII, whose rows vary one threshold while holding the other:
(0.97, 0.95) 72.5, (0.99, 0.95) 72.0, (0.98, 0.92) 71.0, (0.98, 0.94) 71.5, (0.98, 0.96) 72.8,
(0.98, 0.98) 70.2, and the best, (0.98, 0.95) 73.2 (Avg.). Which column is which: a threshold that is off
hurts its own modality. Changing the first column lowers the segment audio F-score (81.7 -> 80.4 / 80.0)
while visual holds or rises (75.5 -> 76.0 / 75.5), the supplementary's "an inappropriate [tau_a] reduces
the audio parsing capability ... while conversely enhancing the visual"; changing the second lowers visual
in every row (75.5 -> 73.9 / 72.6 / 74.8 / 72.6), audio less (81.7 -> 80.0 / 81.4 / 81.7 / 79.9). The text
also names audio first ("[tau_a] and [tau_v]", "for audio features and ... for visual features"). Hence
tau_a = 0.98, tau_v = 0.95 (`inference.models.ear_generator.EARGeneratorConfig.tau_audio` / `tau_visual`).

Zero feature rows (a silent clip's embedding of zeros) have cosine 0 with everything, themselves included:
they take no migrated label and keep their own.
"""
from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

TAU_AUDIO = 0.98  # Table S-XVIII, see the module docstring
TAU_VISUAL = 0.95

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def migrate_from_similarity(similarity: torch.Tensor, av_labels: torch.Tensor, threshold: float) -> torch.Tensor:
    """Eq. 1-2 and the post-processing (S-18..S-21) on a given (S, S) similarity matrix and (S, C) 0/1
    audio-visual labels; returns (S, C) float32 soft uni-modal labels."""
    sim = similarity.float()
    labels = av_labels.float()
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1] or labels.ndim != 2 or labels.shape[0] != sim.shape[0]:
        raise ValueError(f"similarity {tuple(sim.shape)} and labels {tuple(labels.shape)}; expected (S, S) and (S, C)")
    mask = (sim > threshold).float()  # M, Eq. 1 (strict >)
    migrated = (sim * mask) @ labels  # Y~ = S^ Y_av, Eq. 2 / S-18
    counts = mask @ labels  # N, S-19
    averaged = torch.where(counts > 0, migrated / counts.clamp(min=1.0), torch.zeros_like(migrated))  # S-20
    return torch.maximum(averaged, labels)  # S-21: entries labelled 1 stay 1


def cosine_matrix(features: torch.Tensor) -> torch.Tensor:
    """(S, S) cosine similarities of the rows of `features` (S, d), clipped to [-1, 1]."""
    unit = F.normalize(features.float(), dim=1)
    return (unit @ unit.T).clamp(-1.0, 1.0)


def migrate_labels(features: Array, av_labels: Array, threshold: float) -> Array:
    """Soft uni-modal labels (S, C) float32 of S segments from their features (S, d) and audio-visual labels
    (S, C): numpy in, numpy out; torch in, torch out (on the features' device)."""
    as_numpy = isinstance(features, np.ndarray)
    feats = torch.from_numpy(np.asarray(features)) if as_numpy else features
    labels = torch.from_numpy(np.asarray(av_labels)) if isinstance(av_labels, np.ndarray) else av_labels
    if feats.ndim != 2:
        raise ValueError(f"features of shape {tuple(feats.shape)}; expected (segments, dim)")
    with torch.no_grad():
        out = migrate_from_similarity(cosine_matrix(feats), labels.to(feats.device), threshold)
    return out.cpu().numpy().astype(np.float32) if as_numpy else out


def migrate_batch(features: torch.Tensor, av_labels: torch.Tensor, valid: torch.Tensor | None,
                  threshold: float) -> torch.Tensor:
    """Migration over every valid segment of a batch of windows: features (B, T, d), labels (B, T, C), valid
    (B, T) (padding left out: it neither gives nor takes labels). Returns (B, T, C), zeros at padding."""
    b, t, c = av_labels.shape
    keep = torch.ones(b, t, dtype=torch.bool, device=features.device) if valid is None else valid.bool()
    out = torch.zeros(b, t, c, dtype=torch.float32, device=features.device)
    if bool(keep.any()):
        out[keep] = migrate_labels(features[keep].detach(), av_labels[keep].detach(), threshold)
    return out
