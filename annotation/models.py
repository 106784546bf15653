"""SQLAlchemy 2 schema of the label store.

Grids are stored packed (32 bytes for 25 x 10 bits) with their positive-cell
count beside them, so "empty visual pseudo-label" is a plain indexed SQL filter.
Every mutable row carries a `version` for optimistic concurrency: writers say
which version they edited and a stale write is refused, never merged silently.
The alembic migrations in `annotation/migrations` create exactly this schema
(a test compares them).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Clip(Base):
    __tablename__ = "clips"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    filename: Mapped[str] = mapped_column(String(128), unique=True)
    video_id: Mapped[str] = mapped_column(String(11), index=True)
    split: Mapped[str] = mapped_column(String(16), index=True)
    weak_labels: Mapped[str] = mapped_column(String(512))
    weak_mask: Mapped[int] = mapped_column(Integer)
    video_path: Mapped[str | None] = mapped_column(Text, nullable=True)


class LabelTrack(Base):
    __tablename__ = "label_tracks"
    __table_args__ = (
        UniqueConstraint("clip_id", "track", "source", name="uq_label_track"),
        Index("ix_label_tracks_source_track", "source", "track", "positives"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id", ondelete="CASCADE"))
    track: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(80))
    cells: Mapped[bytes] = mapped_column(LargeBinary)
    positives: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_by: Mapped[str | None] = mapped_column(String(128), nullable=True)


class Review(Base):
    __tablename__ = "reviews"

    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    annotator: Mapped[str | None] = mapped_column(String(128), nullable=True)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)


class Edit(Base):
    """One committed change, kept for audit and for undo across sessions."""

    __tablename__ = "edits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    track: Mapped[str | None] = mapped_column(String(8), nullable=True)
    source: Mapped[str | None] = mapped_column(String(80), nullable=True)
    before: Mapped[str | None] = mapped_column(Text, nullable=True)
    after: Mapped[str | None] = mapped_column(Text, nullable=True)
    annotator: Mapped[str | None] = mapped_column(String(128), nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FeatureSet(Base):
    """A folder of per-clip feature files (`<id>.npy`) found at import."""

    __tablename__ = "feature_sets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    files: Mapped[int] = mapped_column(Integer)
    shape: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Presence(Base):
    """Who has which clip open right now: one row per running window, refreshed by a heartbeat
    (rows older than the stale limit are ignored and swept), so a team sees "being edited by"."""

    __tablename__ = "presence"

    session: Mapped[str] = mapped_column(String(64), primary_key=True)
    annotator: Mapped[str] = mapped_column(String(128))
    clip_id: Mapped[int | None] = mapped_column(ForeignKey("clips.id", ondelete="SET NULL"), nullable=True, index=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Run(Base):
    """A training run, from the window or `train --db`: what was trained on what, its state, and its
    val/test numbers (JSON as in the run's metrics.json), so runs can be listed and compared."""

    __tablename__ = "runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(32))
    task: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)  # running | finished | stopped | failed
    config: Mapped[str] = mapped_column(Text)  # TrainConfig JSON
    data_dir: Mapped[str] = mapped_column(Text)
    run_dir: Mapped[str] = mapped_column(Text)
    device: Mapped[str | None] = mapped_column(String(64), nullable=True)
    started_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    best_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metrics: Mapped[str | None] = mapped_column(Text, nullable=True)  # {"val", "test", "per_class"} JSON
    checkpoint: Mapped[str | None] = mapped_column(Text, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it failed or stopped


class PredictionScores(Base):
    """The probabilities behind a prediction run's 0/1 grids: (25, 10) float32 segment probabilities per
    track and the (25,) video-level ones (the 0/1 grid is what the published rule derives from them)."""

    __tablename__ = "prediction_scores"

    clip_id: Mapped[int] = mapped_column(ForeignKey("clips.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(String(80), primary_key=True, index=True)
    audio: Mapped[bytes] = mapped_column(LargeBinary)
    visual: Mapped[bytes] = mapped_column(LargeBinary)
    video: Mapped[bytes] = mapped_column(LargeBinary)


class AVSClip(Base):
    """An audio-visual segmentation clip of an AVSBench-layout folder (S4, MS3, AVSS): its files stay there
    (`files`: JSON of the frame, mask and audio paths relative to `root`); its masks live in `avs_masks`."""

    __tablename__ = "avs_clips"
    __table_args__ = (UniqueConstraint("subset", "name", name="uq_avs_clip"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subset: Mapped[str] = mapped_column(String(8))
    split: Mapped[str] = mapped_column(String(16), index=True)
    name: Mapped[str] = mapped_column(String(128))
    category: Mapped[str] = mapped_column(String(64))
    frames: Mapped[int] = mapped_column(Integer)
    root: Mapped[str] = mapped_column(Text)
    files: Mapped[str] = mapped_column(Text)


class AVSMask(Base):
    """One frame's mask from one source: 'truth', 'prediction:<run>' (8-bit probabilities, or class indices for
    AVSS) or 'reviewed' (a person's decision on a predicted mask: status accepted/rejected, `origin` the
    prediction source decided on). PNG bytes; versioned like label tracks."""

    __tablename__ = "avs_masks"
    __table_args__ = (
        UniqueConstraint("clip_id", "frame", "source", name="uq_avs_mask"),
        Index("ix_avs_masks_source", "source"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("avs_clips.id", ondelete="CASCADE"))
    frame: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(12))  # binary | probability | classes
    png: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    status: Mapped[str | None] = mapped_column(String(12), nullable=True)
    origin: Mapped[str | None] = mapped_column(String(80), nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_by: Mapped[str | None] = mapped_column(String(128), nullable=True)


class AVSMaskEdit(Base):
    """One committed mask decision (before and after), for audit and for undo across sessions."""

    __tablename__ = "avs_mask_edits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("avs_clips.id", ondelete="CASCADE"), index=True)
    frame: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(80))
    before: Mapped[str | None] = mapped_column(String(12), nullable=True)  # status before (None: no row)
    after: Mapped[str | None] = mapped_column(String(12), nullable=True)
    origin: Mapped[str | None] = mapped_column(String(80), nullable=True)
    annotator: Mapped[str | None] = mapped_column(String(128), nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
