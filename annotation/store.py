"""The label store API: read clips and label tracks, write edits with optimistic concurrency.

A writer passes the version it last saw; if someone else committed meanwhile,
the write is refused with a `ConflictError` carrying the other version, so the
caller can show both and let a person choose. Each accepted write and its edit
history row are one transaction: once `save_track` returns, the edit survives a
crash or kill.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import Engine, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from annotation.grid import as_grid, pack, unpack, weak_grid
from annotation.models import Clip, Edit, LabelTrack, Review
from annotation.taxonomy import parse_label_list

TRACKS = ("audio", "visual")
FIXED_SOURCES = ("weak", "pseudo", "manual", "truth")
NAMED_SOURCES = ("prediction", "pseudo")  # 'prediction:<run>', 'pseudo:<set>'
REVIEW_STATUSES = ("pending", "annotated", "out_of_taxonomy", "skipped")
SPLITS = ("train", "val", "test")
_RUN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def validate_track(track: str) -> str:
    if track not in TRACKS:
        raise ValueError(f"unknown track {track!r}; expected one of {TRACKS}")
    return track


def validate_source(source: str) -> str:
    """'weak', 'pseudo', 'manual', 'truth', 'prediction:<run name>' or 'pseudo:<set name>' (a named
    pseudo-label set, `avvp-studio pseudo-label`; 'pseudo' alone is the imported one)."""
    if source in FIXED_SOURCES:
        return source
    kind, _, name = source.partition(":")
    if kind in NAMED_SOURCES and _RUN_RE.match(name):
        return source
    raise ValueError(
        f"unknown label source {source!r}; expected one of {FIXED_SOURCES}, 'prediction:<run>' or 'pseudo:<set>' "
        "(names: letters, digits, '.', '_', '-')"
    )


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class ClipRecord:
    id: int
    filename: str
    video_id: str
    split: str
    weak: tuple[int, ...]
    video_path: str | None


@dataclass(frozen=True)
class TrackState:
    grid: np.ndarray
    version: int  # 0: no such track stored yet
    updated_by: str | None = None
    updated_at: datetime | None = None

    @property
    def exists(self) -> bool:
        return self.version > 0


@dataclass(frozen=True)
class ReviewState:
    status: str
    annotator: str | None
    updated_at: datetime | None
    note: str | None
    version: int


@dataclass(frozen=True)
class EditRecord:
    id: int
    kind: str
    track: str | None
    source: str | None
    before: str | None
    after: str | None
    annotator: str | None
    at: datetime


class ConflictError(Exception):
    """Someone else committed a newer version of what the caller tried to change."""

    def __init__(self, what: str, expected_version: int, current: TrackState | ReviewState):
        self.expected_version = expected_version
        self.current = current
        who = current.updated_by if isinstance(current, TrackState) else current.annotator
        super().__init__(
            f"{what} changed meanwhile: you edited version {expected_version}, "
            f"the database holds version {current.version}" + (f" by {who}" if who else "")
        )


class NotFoundError(LookupError):
    pass


def _clip_record(row) -> ClipRecord:
    return ClipRecord(row.id, row.filename, row.video_id, row.split, tuple(parse_label_list(row.weak_labels)), row.video_path)


class LabelStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    # ---- clips -------------------------------------------------------------------------
    def clip(self, key: str | int) -> ClipRecord:
        cond = Clip.id == key if isinstance(key, int) else Clip.filename == key
        with self.engine.connect() as conn:
            row = conn.execute(select(Clip.__table__).where(cond)).first()
        if row is None:
            raise NotFoundError(f"no clip {key!r} in the database")
        return _clip_record(row)

    def clips(self, split: str | None = None) -> list[ClipRecord]:
        query = select(Clip.__table__).order_by(Clip.id)
        if split is not None and split != "all":
            query = query.where(Clip.split == split)
        with self.engine.connect() as conn:
            return [_clip_record(r) for r in conn.execute(query)]

    # ---- label tracks ------------------------------------------------------------------
    def track(self, clip_id: int, track: str, source: str) -> TrackState:
        validate_track(track)
        validate_source(source)
        if source == "weak":
            return TrackState(weak_grid(self.clip(clip_id).weak), version=0)
        with self.engine.connect() as conn:
            return self._read_track(conn, clip_id, track, source)

    def tracks(self, clip_id: int) -> dict[tuple[str, str], TrackState]:
        """Every stored layer of a clip in one query (what a viewer needs)."""
        t = LabelTrack.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.clip_id == clip_id)).all()
        return {
            (r.track, r.source): TrackState(unpack(r.cells), r.version, r.updated_by, as_utc(r.updated_at))
            for r in rows
        }

    def best(self, clip_id: int, track: str) -> TrackState:
        """Manual where a human edited, else the pseudo-label (empty grid if neither)."""
        manual = self.track(clip_id, track, "manual")
        return manual if manual.exists else self.track(clip_id, track, "pseudo")

    @staticmethod
    def _read_track(conn, clip_id: int, track: str, source: str) -> TrackState:
        t = LabelTrack.__table__
        row = conn.execute(
            select(t.c.cells, t.c.version, t.c.updated_by, t.c.updated_at).where(
                and_(t.c.clip_id == clip_id, t.c.track == track, t.c.source == source)
            )
        ).first()
        if row is None:
            return TrackState(np.zeros((25, 10), dtype=np.uint8), 0)
        return TrackState(unpack(row.cells), row.version, row.updated_by, as_utc(row.updated_at))

    def save_track(
        self, clip_id: int, track: str, source: str, grid: np.ndarray, expected_version: int, annotator: str | None
    ) -> TrackState:
        """Commit a new grid if the stored version is still `expected_version` (0: not stored yet)."""
        validate_track(track)
        if validate_source(source) == "weak":
            raise ValueError("weak labels are video-level and derived from the clip; edit 'manual' instead")
        grid = as_grid(grid)
        now = utcnow()
        t = LabelTrack.__table__
        what = f"{track} {source} labels of clip #{clip_id}"
        try:
            with self.engine.begin() as conn:
                before = self._read_track(conn, clip_id, track, source)
                if before.version != expected_version:
                    raise ConflictError(what, expected_version, before)
                values = dict(cells=pack(grid), positives=int(grid.sum()), updated_at=now, updated_by=annotator)
                if expected_version == 0:
                    conn.execute(insert(t).values(clip_id=clip_id, track=track, source=source, version=1, **values))
                else:
                    done = conn.execute(
                        update(t)
                        .where(and_(t.c.clip_id == clip_id, t.c.track == track, t.c.source == source,
                                    t.c.version == expected_version))
                        .values(version=expected_version + 1, **values)
                    )
                    if done.rowcount != 1:
                        raise ConflictError(what, expected_version, self._read_track(conn, clip_id, track, source))
                conn.execute(
                    insert(Edit.__table__).values(
                        clip_id=clip_id, kind="cells", track=track, source=source,
                        before=pack(before.grid).hex() if before.exists else None,
                        after=pack(grid).hex(), annotator=annotator, at=now,
                    )
                )
        except IntegrityError:
            # Another writer inserted the same track between our read and insert, or the clip is gone.
            with self.engine.connect() as conn:
                current = self._read_track(conn, clip_id, track, source)
            if not current.exists:
                self.clip(clip_id)  # raises NotFoundError for a missing clip
            raise ConflictError(what, expected_version, current) from None
        return TrackState(grid, expected_version + 1, annotator, now)

    def delete_track(self, clip_id: int, track: str, source: str, expected_version: int, annotator: str | None) -> None:
        """Remove a stored track (undo of a first manual edit: the clip is unedited again)."""
        validate_track(track)
        validate_source(source)
        t = LabelTrack.__table__
        what = f"{track} {source} labels of clip #{clip_id}"
        with self.engine.begin() as conn:
            before = self._read_track(conn, clip_id, track, source)
            if before.version != expected_version or not before.exists:
                raise ConflictError(what, expected_version, before)
            done = conn.execute(
                delete(t).where(and_(t.c.clip_id == clip_id, t.c.track == track, t.c.source == source,
                                     t.c.version == expected_version))
            )
            if done.rowcount != 1:
                raise ConflictError(what, expected_version, self._read_track(conn, clip_id, track, source))
            conn.execute(
                insert(Edit.__table__).values(
                    clip_id=clip_id, kind="cells", track=track, source=source,
                    before=pack(before.grid).hex(), after=None, annotator=annotator, at=utcnow(),
                )
            )

    # ---- review ------------------------------------------------------------------------
    def review(self, clip_id: int) -> ReviewState:
        with self.engine.connect() as conn:
            return self._read_review(conn, clip_id)

    @staticmethod
    def _read_review(conn, clip_id: int) -> ReviewState:
        r = Review.__table__
        row = conn.execute(select(r).where(r.c.clip_id == clip_id)).first()
        if row is None:
            return ReviewState("pending", None, None, None, 0)
        return ReviewState(row.status, row.annotator, as_utc(row.updated_at), row.note, row.version)

    def set_review(
        self, clip_id: int, status: str, annotator: str | None, expected_version: int, note: str | None = None
    ) -> ReviewState:
        """Set review status (and note) if the stored review is still `expected_version`."""
        if status not in REVIEW_STATUSES:
            raise ValueError(f"unknown review status {status!r}; expected one of {REVIEW_STATUSES}")
        r = Review.__table__
        now = utcnow()
        what = f"review of clip #{clip_id}"
        try:
            with self.engine.begin() as conn:
                before = self._read_review(conn, clip_id)
                if before.version != expected_version:
                    raise ConflictError(what, expected_version, before)
                values = dict(status=status, annotator=annotator, updated_at=now, note=note)
                if expected_version == 0:
                    conn.execute(insert(r).values(clip_id=clip_id, version=1, **values))
                else:
                    done = conn.execute(
                        update(r).where(and_(r.c.clip_id == clip_id, r.c.version == expected_version))
                        .values(version=expected_version + 1, **values)
                    )
                    if done.rowcount != 1:
                        raise ConflictError(what, expected_version, self._read_review(conn, clip_id))
                conn.execute(
                    insert(Edit.__table__).values(
                        clip_id=clip_id, kind="review",
                        before=json.dumps({"status": before.status, "note": before.note}),
                        after=json.dumps({"status": status, "note": note}), annotator=annotator, at=now,
                    )
                )
        except IntegrityError:
            with self.engine.connect() as conn:
                current = self._read_review(conn, clip_id)
            if current.version == 0:
                self.clip(clip_id)  # raises NotFoundError for a missing clip
            raise ConflictError(what, expected_version, current) from None
        return ReviewState(status, annotator, now, note, expected_version + 1)

    def versions(self, clip_id: int) -> dict[str, int]:
        """{"<track>/<source>": version, "review": version} of a clip: what a window compares with
        what it showed to notice another annotator's save (one indexed query)."""
        t, r = LabelTrack.__table__, Review.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.track, t.c.source, t.c.version).where(t.c.clip_id == clip_id)).all()
            review = conn.execute(select(r.c.version).where(r.c.clip_id == clip_id)).scalar()
        return {**{f"{row.track}/{row.source}": row.version for row in rows}, "review": review or 0}

    def last_edit(self, clip_id: int) -> EditRecord | None:
        e = Edit.__table__
        with self.engine.connect() as conn:
            r = conn.execute(select(e).where(e.c.clip_id == clip_id).order_by(e.c.id.desc()).limit(1)).first()
        return None if r is None else EditRecord(r.id, r.kind, r.track, r.source, r.before, r.after, r.annotator,
                                                 as_utc(r.at))

    def history(self, clip_id: int) -> list[EditRecord]:
        e = Edit.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(select(e).where(e.c.clip_id == clip_id).order_by(e.c.id)).all()
        return [EditRecord(r.id, r.kind, r.track, r.source, r.before, r.after, r.annotator, as_utc(r.at)) for r in rows]
