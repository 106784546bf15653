"""What a prediction run left in the store: its probabilities (beside the 0/1 grids in label_tracks),
read per clip for the overlay and per run for the queue's uncertainty sorts."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine, and_, select

from annotation.db import has_table
from annotation.models import LabelTrack, PredictionScores

SEGMENT_SHAPE = (25, 10)


def pack_scores(values: np.ndarray, shape: tuple[int, ...]) -> bytes:
    array = np.asarray(values, dtype="<f4")
    if array.shape != shape or not np.isfinite(array).all() or array.min() < -1e-5 or array.max() > 1 + 1e-5:
        raise ValueError(f"probabilities must be a finite {shape} array in [0, 1], got shape {array.shape}")
    return np.clip(array, 0, 1).tobytes()  # a float sum of weighted probabilities may pass 1 by an ulp


def unpack_scores(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    expected = int(np.prod(shape)) * 4
    if len(blob) != expected:
        raise ValueError(f"stored probabilities of {len(blob)} bytes; expected {expected} for {shape} float32")
    return np.frombuffer(blob, dtype="<f4").reshape(shape).astype(np.float32)


@dataclass(frozen=True)
class ClipScores:
    audio: np.ndarray  # (25, 10) segment probabilities
    visual: np.ndarray  # (25, 10)
    video: np.ndarray  # (25,) video-level probabilities


def _scores(row) -> ClipScores:
    return ClipScores(unpack_scores(row.audio, SEGMENT_SHAPE), unpack_scores(row.visual, SEGMENT_SHAPE),
                      unpack_scores(row.video, (25,)))


def clip_scores(engine: Engine, clip_id: int, source: str) -> ClipScores | None:
    p = PredictionScores.__table__
    with engine.connect() as conn:
        row = conn.execute(select(p).where(and_(p.c.clip_id == clip_id, p.c.source == source))).first()
    return None if row is None else _scores(row)


def run_scores(engine: Engine, source: str) -> dict[int, ClipScores]:
    """clip_id -> probabilities of every clip the run predicted."""
    p = PredictionScores.__table__
    with engine.connect() as conn:
        return {row.clip_id: _scores(row) for row in conn.execute(select(p).where(p.c.source == source))}


def scored_sources(engine: Engine) -> list[str]:
    if not has_table(engine, PredictionScores.__tablename__):  # an older schema opened read-only
        return []
    p = PredictionScores.__table__
    with engine.connect() as conn:
        return sorted(conn.execute(select(p.c.source).distinct()).scalars())


def prediction_sources(engine: Engine) -> list[str]:
    """Every stored prediction run ('prediction:<name>'), with or without probabilities."""
    t = LabelTrack.__table__
    with engine.connect() as conn:
        return sorted(conn.execute(select(t.c.source).where(t.c.source.like("prediction:%")).distinct()).scalars())
