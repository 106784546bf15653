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
