"""Audio-visual segmentation in the label store: AVSBench import, masks by source, decisions, export.

Masks are PNG bytes per clip x frame x source: 'truth' (imported ground truth: 0/1 for S4/MS3,
class indices for AVSS), 'prediction:<run>' (8-bit probabilities, value = round(255 p), or class
indices for AVSS) and 'reviewed' (a person accepted or rejected a predicted frame; `origin` names
the prediction). Rows carry versions: a decision names the version it replaces and a stale one is
refused (`MaskConflictError`). The import reads and checks every file first and then writes in one
transaction: a bad file aborts it with the file named and nothing stored.
"""
from __future__ import annotations

import json
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from sqlalchemy import Engine, and_, delete, insert, select, update

from annotation.avsbench import (
    AUDIO_SECONDS, AVSClip as LayoutClip, AVSData, check_mask_size, class_mask_to_rgb, decode_png, encode_png,
    image_size, read_avsbench, read_truth,
)
from annotation.db import snapshot, write_transaction
from annotation.errors import DataFileError
from annotation.files import child_path
from annotation.models import AVSClip, AVSMask, AVSMaskEdit
from annotation.store import utcnow, validate_source

Progress = Callable[[str, int, int], None]
TRUTH, REVIEWED = "truth", "reviewed"
_CHUNK = 500  # clip ids per IN (...) list: SQLite limits bound parameters
DECISIONS = ("accepted", "rejected")


class MaskConflictError(Exception):
    """Someone else decided on this frame meanwhile."""


@dataclass(frozen=True)
class AVSRecord:
    id: int
    subset: str
    split: str
    name: str
    category: str
    frames: int
    root: Path
    files: dict

    def path(self, relative: str | None) -> Path | None:
        return None if relative is None else self.root / relative

    @property
    def frame_paths(self) -> list[Path]:
        return [self.root / p for p in self.files["frames"]]

    @property
    def mask_paths(self) -> list[Path | None]:
        return [self.path(p) for p in self.files["masks"]]

    def layout(self) -> LayoutClip:
        """The clip as the layout reader describes it (for the export layout and the task's readers)."""
        return LayoutClip(self.subset, self.split, self.name, self.category, tuple(self.frame_paths),
                          tuple(self.mask_paths), self.path(self.files.get("pkl")), self.path(self.files.get("wav")))


@dataclass(frozen=True)
class MaskRow:
    frame: int
    source: str
    kind: str
    png: bytes | None
    status: str | None
    origin: str | None
    version: int
    updated_by: str | None

    def array(self) -> np.ndarray | None:
        """(H, W) uint8: 0/1 (binary), 0..255 (probability) or class indices; None for a rejection."""
        return None if self.png is None else decode_png(self.png)


@dataclass
class AVSImportReport:
    subset: str
    clips: dict[str, int] = field(default_factory=dict)
    clips_added: int = 0
    clips_updated: int = 0
    masks_added: int = 0
    masks_updated: int = 0
    unknown_colour_pixels: int = 0  # AVSS: pixels outside the palette, read as background as the official loader does
    truth_removed: int = 0  # ground-truth masks of frames the folder no longer annotates
    clips_not_in_folder: list[str] = field(default_factory=list)  # stored clips the metadata no longer lists (kept)


def validate_mask_source(source: str) -> str:
    if source in (TRUTH, REVIEWED):
        return source
    return validate_source(source) if source.startswith("prediction:") else _bad_source(source)


def _bad_source(source: str) -> str:
    raise ValueError(f"unknown mask source {source!r}; expected 'truth', 'reviewed' or 'prediction:<run>'")


# ---------------------------------------------------------------- import

def _check_audio(clip: LayoutClip) -> None:
    if clip.audio_pkl is not None:
        from annotation.avs_audio import read_log_mel_pkl  # torch only when there are .pkl files

        try:
            read_log_mel_pkl(clip.audio_pkl, expected_shape=(AUDIO_SECONDS[clip.subset], 1, 96, 64))
        except ValueError as exc:  # refused globals, damaged files, wrong shapes: the message names the file
            raise DataFileError(clip.audio_pkl, str(exc).removeprefix(f"{clip.audio_pkl}: ")) from None
        return
    try:
        with wave.open(str(clip.audio_wav), "rb") as handle:
            if handle.getnframes() == 0:
                raise DataFileError(clip.audio_wav, "holds no audio samples")
    except (wave.Error, EOFError) as exc:
        raise DataFileError(clip.audio_wav, f"not a readable PCM WAV file ({exc})") from None


def _read_truth(clip: LayoutClip, report: AVSImportReport) -> dict[int, bytes]:
    """Frame -> PNG bytes of the frame's ground truth, each mask checked against its frame's size."""
    out = {}
    for k, (frame, mask_path) in enumerate(zip(clip.frames, clip.masks)):
        if mask_path is None:
            continue
        mask, unknown = read_truth(mask_path, clip.subset)
        report.unknown_colour_pixels += unknown
        check_mask_size(mask_path, mask, frame, image_size(frame), clip.name)
        out[k] = encode_png(mask)
    return out


def _files(data: AVSData, clip: LayoutClip) -> str:
    rel = lambda p: None if p is None else str(p.relative_to(data.root))  # noqa: E731
    return json.dumps({"frames": [rel(p) for p in clip.frames], "masks": [rel(p) for p in clip.masks],
                       "pkl": rel(clip.audio_pkl), "wav": rel(clip.audio_wav)})


def import_avsbench(engine: Engine, root: str | Path, subset: str, progress: Progress | None = None) -> AVSImportReport:
    """Import an AVSBench subset (clips and ground-truth masks); re-importing the same folder changes nothing,
    and a person's decisions ('reviewed') are never touched."""
    data = read_avsbench(root, subset)
    report = AVSImportReport(subset)
    truth: dict[str, dict[int, bytes]] = {}
    for n, clip in enumerate(data.clips, start=1):
        _check_audio(clip)
        truth[clip.name] = _read_truth(clip, report)
        report.clips[clip.split] = report.clips.get(clip.split, 0) + 1
        if progress and (n % 50 == 0 or n == len(data.clips)):
            progress("checking clips", n, len(data.clips))
    c, m = AVSClip.__table__, AVSMask.__table__
    now, root_text = utcnow(), str(data.root.resolve())
    with write_transaction(engine) as conn:
        existing = {row.name: row for row in conn.execute(select(c).where(c.c.subset == subset))}
        for clip in data.clips:
            values = dict(subset=subset, split=clip.split, name=clip.name, category=clip.category,
                          frames=len(clip.frames), root=root_text, files=_files(data, clip))
            old = existing.get(clip.name)
            if old is None:
                existing[clip.name] = conn.execute(insert(c).values(**values).returning(c.c.id)).one()
                report.clips_added += 1
            elif any(getattr(old, k) != v for k, v in values.items()):
                conn.execute(update(c).where(c.c.id == old.id).values(**values))
                report.clips_updated += 1
        ids = {name: existing[name].id for name in truth}
        stored = {(r.clip_id, r.frame): r for r in conn.execute(
            select(m.c.clip_id, m.c.frame, m.c.png, m.c.version).join(c, c.c.id == m.c.clip_id)
            .where(and_(m.c.source == TRUTH, c.c.subset == subset)))}
        kind = "classes" if subset == "avss" else "binary"
        report.clips_not_in_folder = sorted(set(existing) - set(truth))
        names = {clip_id: name for name, clip_id in ids.items()}
        gone = [(clip_id, frame) for clip_id, frame in stored if clip_id in names and frame not in truth[names[clip_id]]]
        for clip_id, frame in gone:  # the folder is the truth's source: what it no longer annotates goes
            conn.execute(delete(m).where(and_(m.c.clip_id == clip_id, m.c.frame == frame, m.c.source == TRUTH)))
        report.truth_removed = len(gone)
        for name, frames in truth.items():
            for frame, png in frames.items():
                old = stored.get((ids[name], frame))
                if old is None:
                    conn.execute(insert(m).values(clip_id=ids[name], frame=frame, source=TRUTH, kind=kind, png=png,
                                                  version=1, updated_at=now, updated_by="import"))
                    report.masks_added += 1
                elif old.png != png:
                    conn.execute(update(m).where(and_(m.c.clip_id == ids[name], m.c.frame == frame,
                                                      m.c.source == TRUTH))
                                 .values(png=png, kind=kind, version=old.version + 1, updated_at=now))
                    report.masks_updated += 1
    return report


# ---------------------------------------------------------------- reading

def _record(row) -> AVSRecord:
    return AVSRecord(row.id, row.subset, row.split, row.name, row.category, row.frames, Path(row.root),
                     json.loads(row.files))


def avs_clips(engine: Engine, subset: str | None = None, split: str | None = None) -> list[AVSRecord]:
    c = AVSClip.__table__
    query = select(c).order_by(c.c.subset, c.c.split, c.c.name)
    if subset:
        query = query.where(c.c.subset == subset)
    if split and split != "all":
        query = query.where(c.c.split == split)
    with engine.connect() as conn:
        return [_record(row) for row in conn.execute(query)]


def mask_sources(engine: Engine, subset: str | None = None) -> list[str]:
    m, c = AVSMask.__table__, AVSClip.__table__
    query = select(m.c.source).distinct()
    if subset:
        query = query.join(c, c.c.id == m.c.clip_id).where(c.c.subset == subset)
    with engine.connect() as conn:
        return sorted(conn.scalars(query))


def load_masks(engine: Engine, clip_id: int) -> dict[str, dict[int, MaskRow]]:
    """source -> frame -> row, for one clip."""
    m = AVSMask.__table__
    out: dict[str, dict[int, MaskRow]] = {}
    with engine.connect() as conn:
        for r in conn.execute(select(m).where(m.c.clip_id == clip_id)):
            out.setdefault(r.source, {})[r.frame] = MaskRow(r.frame, r.source, r.kind, r.png, r.status, r.origin,
                                                            r.version, r.updated_by)
    return out


def masks_of_source(engine: Engine, source: str, clip_ids: Iterable[int] | None = None) -> dict[int, dict[int, MaskRow]]:
    """clip id -> frame -> row of one source (in one snapshot)."""
    m = AVSMask.__table__
    query = select(m).where(m.c.source == validate_mask_source(source))
    out: dict[int, dict[int, MaskRow]] = {}
    ids = None if clip_ids is None else list(clip_ids)
    with snapshot(engine) as conn:
        for start in range(0, 1 if ids is None else len(ids), _CHUNK):
            chunk = query if ids is None else query.where(m.c.clip_id.in_(ids[start:start + _CHUNK]))
            for r in conn.execute(chunk):
                out.setdefault(r.clip_id, {})[r.frame] = MaskRow(r.frame, r.source, r.kind, r.png, r.status, r.origin,
                                                                 r.version, r.updated_by)
    return out


# ---------------------------------------------------------------- writing

def store_mask_predictions(engine: Engine, run: str, subset: str, masks: dict[str, np.ndarray], kind: str) -> int:
    """Predicted masks by clip name -> 'prediction:<run>': (T, H, W) probabilities in [0, 1] (kind 'probability',
    stored as round(255 p)) or class indices (kind 'classes'). Replaces that run's earlier masks of these clips."""
    source = validate_source(f"prediction:{run}")
    if kind not in ("probability", "classes"):
        raise ValueError(f"kind {kind!r}; expected probability or classes")
    c, m = AVSClip.__table__, AVSMask.__table__
    now = utcnow()
    with write_transaction(engine) as conn:
        rows_ = conn.execute(select(c.c.name, c.c.id, c.c.frames).where(c.c.subset == subset)).all()
        ids, frames = {r.name: r.id for r in rows_}, {r.name: r.frames for r in rows_}
        missing = sorted(set(masks) - set(ids))
        if missing:
            raise DataFileError(engine.url.render_as_string(hide_password=True),
                                f"{len(missing)} predicted clip(s) are not {subset} clips of the database, e.g. {missing[0]}")
        for name, stack in masks.items():
            if stack.ndim != 3 or len(stack) != frames[name]:
                raise ValueError(f"clip {name}: predicted masks of shape {stack.shape}; expected ({frames[name]}, H, W)")
        versions = {(r.clip_id, r.frame): r.version for r in conn.execute(
            select(m.c.clip_id, m.c.frame, m.c.version).where(and_(m.c.source == source,
                                                                   m.c.clip_id.in_([ids[n] for n in masks]))))}
        conn.execute(delete(m).where(and_(m.c.source == source, m.c.clip_id.in_([ids[n] for n in masks]))))
        rows = []
        for name, stack in masks.items():
            for frame, mask in enumerate(stack):
                png = encode_png(to_uint8(mask) if kind == "probability" else mask.astype(np.uint8))
                rows.append(dict(clip_id=ids[name], frame=frame, source=source, kind=kind, png=png, status=None,
                                 origin=None, version=versions.get((ids[name], frame), 0) + 1, updated_at=now,
                                 updated_by=f"run {run}"))
        if rows:
            conn.execute(insert(m), rows)
    return len(masks)


def to_uint8(probabilities: np.ndarray) -> np.ndarray:
    """The stored/exported form of a probability map: round(255 p)."""
    return np.rint(np.clip(probabilities, 0.0, 1.0) * 255).astype(np.uint8)


def decide(engine: Engine, clip_id: int, frame: int, status: str | None, origin: str, expected_version: int,
           annotator: str | None) -> int:
    """Accept or reject the mask of `origin` on one frame (status None withdraws the decision: undo). The
    'reviewed' row keeps the accepted mask itself (the prediction thresholded at 0.5, or its classes), so a
    later re-prediction does not change what a person accepted. A withdrawn decision keeps its row (status
    None) so versions only grow: a colleague's stale undo after ours is refused, never taken for version 0.
    Returns the row's new version; a stale `expected_version` raises MaskConflictError and changes nothing."""
    if status is not None and status not in DECISIONS:
        raise ValueError(f"decision {status!r}; expected one of {DECISIONS} or None")
    if not origin.startswith("prediction:"):
        raise ValueError(f"decisions are on predicted masks: origin {origin!r} is not 'prediction:<run>'")
    validate_source(origin)
    m, e = AVSMask.__table__, AVSMaskEdit.__table__
    now = utcnow()
    where = and_(m.c.clip_id == clip_id, m.c.frame == frame, m.c.source == REVIEWED)
    with write_transaction(engine) as conn:
        current = conn.execute(select(m.c.version, m.c.status, m.c.updated_by).where(where)).first()
        version = current.version if current else 0
        if version != expected_version:
            who = f" by {current.updated_by}" if current and current.updated_by else ""
            raise MaskConflictError(f"frame {frame}: the decision changed meanwhile: you saw version "
                                    f"{expected_version}, the database holds version {version}{who}")
        if status is None and (current is None or current.status is None):
            return version  # nothing to withdraw
        pred = conn.execute(select(m.c.png, m.c.kind).where(and_(m.c.clip_id == clip_id, m.c.frame == frame,
                                                                 m.c.source == origin))).first()
        kind = "classes" if pred is not None and pred.kind == "classes" else "binary"
        png = None
        if status == "accepted":
            if pred is None:
                raise ValueError(f"frame {frame} has no mask from {origin} to accept")
            cut = 128 if pred.kind == "probability" else 1  # p >= 0.5 as stored, or a 0/1 mask
            png = pred.png if kind == "classes" else encode_png((decode_png(pred.png) >= cut).astype(np.uint8))
        if current is None:
            conn.execute(insert(m).values(clip_id=clip_id, frame=frame, source=REVIEWED, kind=kind, png=png,
                                          status=status, origin=origin, version=1, updated_at=now, updated_by=annotator))
            new_version = 1
        else:
            new_version = version + 1
            conn.execute(update(m).where(where).values(kind=kind, png=png, status=status, origin=origin,
                                                       version=new_version, updated_at=now, updated_by=annotator))
        conn.execute(insert(e).values(clip_id=clip_id, frame=frame, source=REVIEWED,
                                      before=current.status if current else None, after=status, origin=origin,
                                      annotator=annotator, at=now))
    return new_version


# ---------------------------------------------------------------- export

def export_masks(engine: Engine, out_dir: str | Path, subset: str, source: str, split: str = "all") -> dict[str, int]:
    """Masks of `source` in the AVSBench gt_masks layout under OUT_DIR/SPLIT/...: binary as 0/255, probabilities as
    round(255 p), AVSS classes as palette colours; 'reviewed' exports the accepted frames (rejections are
    counted, not written). Existing files are replaced, nothing outside OUT_DIR is written."""
    validate_mask_source(source)
    out = Path(out_dir)
    records = avs_clips(engine, subset, split)
    rows = masks_of_source(engine, source, [r.id for r in records])
    counts = {"clips": 0, "masks": 0, "rejected": 0}  # reviewed: withdrawn decisions (status None) are skipped
    for record in records:
        frames = {k: r for k, r in rows.get(record.id, {}).items() if r.png is not None or r.status == "rejected"}
        if not frames:
            continue
        counts["clips"] += 1
        clip = record.layout()
        folder = clip.folder_in(out / record.split)
        folder.mkdir(parents=True, exist_ok=True)
        for frame, row in sorted(frames.items()):
            if row.png is None:
                counts["rejected"] += row.status == "rejected"
                continue
            array = row.array()
            image = class_mask_to_rgb(array) if row.kind == "classes" else array * 255 if row.kind == "binary" else array
            child_path(folder, clip.mask_name(frame)).write_bytes(encode_png(image.astype(np.uint8)))
            counts["masks"] += 1
    return counts
