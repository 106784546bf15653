"""Import of an LLP-layout data folder into the label store.

Everything is read and validated first; then one transaction writes it. A bad
file therefore aborts with an error naming file, line or clip, and the database
stays exactly as it was. Re-importing the same folder changes nothing (versions
included); the human-owned sources (manual, review) are never touched.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from sqlalchemy import Engine, and_, bindparam, delete, insert, select, update

from annotation.clipname import parse_clip_name
from annotation.db import write_transaction
from annotation.errors import DataFileError
from annotation.files import present
from annotation.grid import PSEUDO_SHAPE, from_pseudo_layout, pack
from annotation.llp_csv import DenseTally, dense_grids, iter_dense_csv, read_weak_csv
from annotation.models import Clip, FeatureSet, LabelTrack, PredictionScores, Review
from annotation.predictions import pack_scores
from annotation.npyfile import npy_shape, read_npy
from annotation.store import utcnow, validate_source
from annotation.taxonomy import format_label_list

Progress = Callable[[str, int, int], None]

WEAK_FILES = {"train": "AVVP_train.csv", "val": "AVVP_val_pd.csv", "test": "AVVP_test_pd.csv"}
DENSE_FILES = {"audio": "AVVP_eval_audio.csv", "visual": "AVVP_eval_visual.csv"}
PSEUDO_DIRS = {"audio": "CLAP/segment_pseudo_labels", "visual": "CLIP/segment_pseudo_labels"}
FEATURE_DIRS = {
    "vggish": "feats/vggish",
    "res152": "feats/res152",
    "r2plus1d_18": "feats/r2plus1d_18",
    "clip": "CLIP/features",
    "clap": "CLAP/features",
}
VIDEO_DIR = "raw_videos"
EVALUATED_SPLITS = ("val", "test")


@dataclass
class ImportReport:
    clips: dict[str, int] = field(default_factory=dict)
    clips_added: int = 0
    clips_updated: int = 0
    tracks_added: int = 0
    tracks_updated: int = 0
    truth_rows: dict[str, int] = field(default_factory=dict)
    orphan_rows: dict[str, int] = field(default_factory=dict)
    pseudo_files: dict[str, int] = field(default_factory=dict)
    unmatched_pseudo_files: dict[str, int] = field(default_factory=dict)
    feature_sets: dict[str, int] = field(default_factory=dict)
    videos: int = 0


@dataclass(frozen=True)
class _ClipIn:
    filename: str
    video_id: str
    split: str
    labels: tuple[int, ...]
    source: str
    line: int


def _read_clips(data_dir: Path, report: ImportReport) -> list[_ClipIn]:
    clips: dict[str, _ClipIn] = {}
    ids: dict[str, _ClipIn] = {}
    for split, name in WEAK_FILES.items():
        path = data_dir / name
        if not present(path):
            continue
        rows = read_weak_csv(path)
        report.clips[split] = 0
        for row in rows:
            seen = clips.get(row.filename)
            if seen is not None:
                if seen.labels != row.labels or seen.split != split:
                    raise DataFileError(
                        path, f"duplicate clip with other labels or split: first at {seen.source} line {seen.line} "
                        f"({seen.split}: {format_label_list(seen.labels)}), here ({split}: {format_label_list(row.labels)})",
                        line=row.line, clip=row.filename,
                    )
                continue
            video_id = parse_clip_name(row.filename).video_id
            other = ids.get(video_id)
            if other is not None:
                raise DataFileError(
                    path, f"video id {video_id!r} already used by clip {other.filename} ({other.source} line "
                    f"{other.line}); per-clip .npy files are named by id, so ids must be unique",
                    line=row.line, clip=row.filename,
                )
            clip = _ClipIn(row.filename, video_id, split, row.labels, name, row.line)
            clips[row.filename] = ids[video_id] = clip
            report.clips[split] += 1
    if not clips:
        raise DataFileError(data_dir, f"no weak-label file found; expected at least one of {sorted(WEAK_FILES.values())}")
    return list(clips.values())


def _entries(folder: Path, suffix: str) -> dict[str, Path]:
    """{stem: path} of the `suffix` files of a folder (sub-folders aside); an entry of that name that
    is not a readable file (a dangling or looping symlink, no permission) is an error, not a file to skip."""
    found = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.endswith(suffix) and not entry.is_dir(follow_symlinks=False):
                try:
                    regular = entry.is_file()  # scandir knows regular files without a system call
                except OSError:  # a link loop
                    regular = False
                if not regular:
                    present(Path(entry.path))
                found[entry.name[: len(entry.name) - len(suffix)]] = Path(entry.path)
    return found


def load_pseudo(path: Path, clip: str) -> np.ndarray:
    """A (10, 25) pseudo-label .npy, fully validated, as a (25, 10) grid (import and training read it)."""
    expected = f"{PSEUDO_SHAPE} (segments, classes) 0/1 integers, int64 as VALOR writes"
    array = read_npy(path, shape=PSEUDO_SHAPE, kinds="iub", expected=expected, clip=clip)
    if array.size and (array.min() < 0 or array.max() > 1):
        raise DataFileError(path, f"values outside 0/1 (min {array.min()}, max {array.max()}); expected {expected}",
                            clip=clip)
    return from_pseudo_layout(array)


def _first_shape(files: dict[str, Path]) -> str | None:
    if not files:
        return None
    return str(npy_shape(next(iter(files.values())), "a feature array"))


def _read_truth(data_dir: Path, clips: list[_ClipIn], report: ImportReport) -> dict:
    """Dense truth grids by (track, 'truth'), streamed: memory holds the grids, not the rows."""
    filenames = [c.filename for c in clips]
    grids = {}
    for track, name in DENSE_FILES.items():
        path = data_dir / name
        if not present(path):
            continue
        tally = DenseTally()
        stacked = dense_grids(iter_dense_csv(path), filenames, tally)
        report.truth_rows[track], report.orphan_rows[track] = tally.rows, tally.other_rows
        # Truth exists for every clip of the evaluated splits (val/test) the dense file covers,
        # all-zero where no row names the clip, exactly as the evaluation code assumes;
        # a clip of another split gets truth only if a row names it.
        covered_splits = {c.split for c in clips if c.filename in tally.named and c.split in EVALUATED_SPLITS}
        grids[(track, "truth")] = {c.filename: stacked[i] for i, c in enumerate(clips)
                                   if c.split in covered_splits or c.filename in tally.named}
    return grids


def read_dataset(data_dir: Path, report: ImportReport, progress: Progress | None = None):
    """Read and validate everything; returns (clips, grids by (track, source) -> {filename: grid}, features, videos)."""
    note = progress or (lambda stage, done, total: None)
    clips = _read_clips(data_dir, report)
    note("weak labels", len(clips), len(clips))
    grids = _read_truth(data_dir, clips, report)
    note("truth", len(clips), len(clips))

    by_id = {c.video_id: c.filename for c in clips}
    for track, sub in PSEUDO_DIRS.items():
        folder = data_dir / sub
        if not present(folder, "folder"):
            continue
        files = _entries(folder, ".npy")
        matched = [(vid, path) for vid, path in files.items() if vid in by_id]
        report.pseudo_files[track] = len(matched)
        report.unmatched_pseudo_files[track] = len(files) - len(matched)
        loaded = {}
        for i, (vid, path) in enumerate(matched, 1):
            loaded[by_id[vid]] = load_pseudo(path, by_id[vid])
            if i % 2000 == 0 or i == len(matched):
                note(f"{track} pseudo-labels", i, len(matched))
        grids[(track, "pseudo")] = loaded

    features = {}
    for name, sub in FEATURE_DIRS.items():
        folder = data_dir / sub
        if present(folder, "folder"):
            files = _entries(folder, ".npy")
            features[name] = (folder.resolve(), len(files), _first_shape(files))
            report.feature_sets[name] = len(files)

    videos = {}
    folder = data_dir / VIDEO_DIR
    if present(folder, "folder"):
        found = {Path(name).stem: path.resolve() for name, path in _entries(folder, "").items()
                 if not name.startswith(".")}
        videos = {by_id[v]: str(p) for v, p in found.items() if v in by_id}
        report.videos = len(videos)
    return clips, grids, features, videos


def upsert_tracks(conn, grids: dict[int, np.ndarray], track: str, source: str, who: str, now) -> tuple[int, int]:
    """Insert or update (version + 1) the `source` grids of many clips in one statement each; unchanged
    grids are left alone (idempotent). Bulk writers (import, stored predictions) share it."""
    t = LabelTrack.__table__
    stored = {
        row.clip_id: (row.cells, row.version)
        for row in conn.execute(
            select(t.c.clip_id, t.c.cells, t.c.version).where(and_(t.c.track == track, t.c.source == source))
        )
    }
    adds, updates = [], []
    for clip_id, grid in grids.items():
        cells, old = pack(grid), stored.get(clip_id)
        if old is None:
            adds.append(dict(clip_id=clip_id, track=track, source=source, cells=cells,
                             positives=int(grid.sum()), version=1, updated_at=now, updated_by=who))
        elif old[0] != cells:
            updates.append(dict(_cid=clip_id, _ver=old[1], cells=cells, positives=int(grid.sum()),
                                version=old[1] + 1, updated_at=now, updated_by=who))
    if adds:
        conn.execute(insert(t), adds)
    if updates:
        conn.execute(
            update(t).where(and_(t.c.clip_id == bindparam("_cid"), t.c.track == track,
                                 t.c.source == source, t.c.version == bindparam("_ver"))),
            updates,
        )
    return len(adds), len(updates)


def store_predictions(engine: Engine, run: str, audio: dict[str, np.ndarray], visual: dict[str, np.ndarray],
                      scores: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None) -> int:
    """Binary prediction grids by filename -> source 'prediction:<run>', with the probabilities they came
    from when given (`scores`: filename -> (audio (25, 10), visual (25, 10), video-level (25,)))."""
    source = validate_source(f"prediction:{run}")
    c, p = Clip.__table__, PredictionScores.__table__
    now = utcnow()
    with write_transaction(engine) as conn:
        ids = dict(conn.execute(select(c.c.filename, c.c.id)).all())
        missing = sorted((set(audio) | set(scores or {})) - set(ids))
        if missing:
            raise DataFileError(engine.url.render_as_string(hide_password=True),
                                f"{len(missing)} predicted clip(s) are not in the database, e.g. {missing[0]}")
        for track, by_file in (("audio", audio), ("visual", visual)):
            upsert_tracks(conn, {ids[f]: g for f, g in by_file.items()}, track, source, f"run {run}", now)
        if scores:
            conn.execute(delete(p).where(and_(p.c.source == source, p.c.clip_id.in_([ids[f] for f in scores]))))
            conn.execute(insert(p), [dict(clip_id=ids[f], source=source, audio=pack_scores(a, (25, 10)),
                                          visual=pack_scores(v, (25, 10)), video=pack_scores(g, (25,)))
                                     for f, (a, v, g) in scores.items()])
    return len(audio)


def _check_id_clashes(clips: list[_ClipIn], existing: dict, data_dir: Path) -> None:
    """A new clip may not reuse the video id of another stored clip: `<id>.npy` files would collide."""
    by_id = {row.video_id: name for name, row in existing.items()}
    for clip in clips:
        other = by_id.get(clip.video_id)
        if other is not None and other != clip.filename:
            raise DataFileError(
                data_dir / clip.source, f"video id {clip.video_id!r} is already used by stored clip {other}; "
                "per-clip .npy files are named by id, so ids must be unique", line=clip.line, clip=clip.filename,
            )


def _weak_mask(labels: tuple[int, ...]) -> int:
    return sum(1 << i for i in labels)


def import_llp(engine: Engine, data_dir: str | Path, progress: Progress | None = None) -> ImportReport:
    data_dir = Path(data_dir)
    if not present(data_dir, "folder"):
        raise DataFileError(data_dir, "not a directory; expected an LLP-layout data folder")
    report = ImportReport()
    clips, grids, features, videos = read_dataset(data_dir, report, progress)
    note = progress or (lambda stage, done, total: None)
    now = utcnow()
    c, r, f = Clip.__table__, Review.__table__, FeatureSet.__table__
    with write_transaction(engine) as conn:
        existing = {row.filename: row for row in conn.execute(select(c))}
        _check_id_clashes(clips, existing, data_dir)
        new_rows, changed = [], []
        for clip in clips:
            old = existing.get(clip.filename)
            values = dict(
                filename=clip.filename, video_id=clip.video_id, split=clip.split,
                weak_labels=format_label_list(clip.labels), weak_mask=_weak_mask(clip.labels),
                # a folder without raw_videos/ keeps the paths an earlier import found
                video_path=videos.get(clip.filename, old.video_path if old is not None else None),
            )
            if old is None:
                new_rows.append(values)
            elif any(getattr(old, k) != v for k, v in values.items()):
                changed.append({"_id": old.id, **values})
        if new_rows:
            conn.execute(insert(c), new_rows)
        if changed:
            conn.execute(update(c).where(c.c.id == bindparam("_id")), changed)
        report.clips_added, report.clips_updated = len(new_rows), len(changed)
        ids = dict(conn.execute(select(c.c.filename, c.c.id)).all())
        note("clips", len(clips), len(clips))

        reviewed = set(conn.execute(select(r.c.clip_id)).scalars())
        fresh = [{"clip_id": ids[cl.filename], "status": "pending", "version": 1} for cl in clips if ids[cl.filename] not in reviewed]
        if fresh:
            conn.execute(insert(r), fresh)

        for (track, source), by_file in grids.items():
            added, updated = upsert_tracks(conn, {ids[f]: g for f, g in by_file.items()}, track, source, "import", now)
            report.tracks_added += added
            report.tracks_updated += updated
            note(f"{track} {source} tracks", len(by_file), len(by_file))

        for name, (path, count, shape) in features.items():
            conn.execute(f.delete().where(f.c.name == name))
            conn.execute(insert(f).values(name=name, path=str(path), files=count, shape=shape))
    return report



def data_folders(engine: Engine) -> list[str]:
    """The LLP-layout folders features were imported from (each feature folder sits two levels
    below its data folder: feats/vggish, CLIP/features, ...), most files first."""
    f = FeatureSet.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(f.c.path, f.c.files).order_by(f.c.files.desc())).all()
    return list(dict.fromkeys(str(Path(path).parent.parent) for path, _ in rows))
