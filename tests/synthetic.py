"""Tiny in-memory AVVP batches whose segment labels are linearly readable from the features.

Why: every model must be able to overfit a handful of clips quickly; if it cannot,
its wiring (shapes, pooling, losses) is broken. Each clip has audio and visual
events on a few classes; a segment's feature is the sum of fixed random class
vectors of its active events plus a little noise (ResNet frames repeat their
segment 8 times, motion follows the visual track). Pseudo-labels and priors
equal the truth, and `label` is their union, as the batch contract of `inference.data`.
"""
from __future__ import annotations

import numpy as np
import torch

from annotation.taxonomy import NUM_CLASSES, NUM_SEGMENTS
from inference.data import FEATURE_SETS

CLASSES = (0, 1, 3, 11, 20, 24)  # Speech, Car, Dog, Singing, Acoustic_guitar, Clapping


def _timeline(rng: np.random.Generator, classes: tuple[int, ...]) -> np.ndarray:
    """(10, 25) 0/1: one or two events, each a random run of segments."""
    grid = np.zeros((NUM_SEGMENTS, NUM_CLASSES), np.float32)
    for c in rng.choice(classes, size=rng.integers(1, 3), replace=False):
        start = rng.integers(0, NUM_SEGMENTS - 2)
        grid[start:rng.integers(start + 2, NUM_SEGMENTS + 1), c] = 1
    return grid


def synthetic_batch(feature_set: str = "clip_clap", clips: int = 16, seed: int = 0, noise: float = 0.1,
                    classes: tuple[int, ...] = CLASSES) -> dict[str, torch.Tensor]:
    """A batch dict of `clips` clips in the `inference.data` batch contract."""
    rng = np.random.default_rng(seed)
    spec = FEATURE_SETS[feature_set]
    audio_grid = np.stack([_timeline(rng, classes) for _ in range(clips)])
    visual_grid = np.stack([_timeline(rng, classes) for _ in range(clips)])
    out: dict[str, torch.Tensor] = {}
    for part, (rows, dim) in spec.shapes.items():
        table = rng.normal(0, 1, (NUM_CLASSES, dim)).astype(np.float32)
        grid = audio_grid if part == "audio" else visual_grid
        feat = grid @ table + noise * rng.normal(0, 1, (clips, NUM_SEGMENTS, dim)).astype(np.float32)
        out[part] = torch.from_numpy(np.repeat(feat, rows // NUM_SEGMENTS, axis=1).astype(np.float32))
    out["pseudo_audio"] = torch.from_numpy(audio_grid)
    out["pseudo_visual"] = torch.from_numpy(visual_grid)
    out["prior_audio"], out["prior_visual"] = out["pseudo_audio"].clone(), out["pseudo_visual"].clone()
    out["label"] = torch.from_numpy(np.maximum(audio_grid.max(1), visual_grid.max(1)))
    out["has_pseudo"] = torch.ones(clips, dtype=torch.bool)
    out["index"] = torch.arange(clips)
    return out


def segment_f1(outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> tuple[float, float]:
    """Micro F1 of (audio, visual) segment predictions vs the pseudo-labels, with the published rule
    (segment probability >= 0.5 AND global probability >= 0.5)."""
    scores = []
    for track in ("audio", "visual"):
        pred = (outputs[f"segment_{track}"] >= 0.5) & (outputs["global"] >= 0.5).unsqueeze(1)
        true = batch[f"pseudo_{track}"] > 0.5
        tp = (pred & true).sum().item()
        scores.append(2 * tp / max(pred.sum().item() + true.sum().item(), 1))
    return scores[0], scores[1]


def overfit(model: torch.nn.Module, batch: dict[str, torch.Tensor], steps: int, lr: float = 2e-3) -> list[float]:
    """Full-batch Adam steps on `model.loss`; returns the losses."""
    torch.manual_seed(0)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        total, _ = model.loss(model(batch), batch)
        total.backward()
        optimizer.step()
        losses.append(float(total.detach()))
    model.eval()
    return losses
