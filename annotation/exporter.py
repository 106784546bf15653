"""Export of cleaned labels: LLP dense CSVs, review status, and the .npy pseudo-label layout.

The output folder feeds training directly: weak CSVs, `CLAP/segment_pseudo_labels`
(audio) and `CLIP/segment_pseudo_labels` (visual) of shape (10, 25) int64.
An export's own entries are built aside and swapped in as one change (see
`export_labels`); per-clip file names come from validated video ids only.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from sqlalchemy import Connection, Engine, select

from annotation.clipname import ClipNameError, check_video_id, parse_clip_name
from annotation.db import snapshot
from annotation.files import WORK, child_path, folder_lock, recover_update, staged_update, write_new
from annotation.grid import to_pseudo_layout, unpack
from annotation.importer import PSEUDO_DIRS, WEAK_FILES
from annotation.llp_csv import write_dense_csv, write_weak_csv
from annotation.models import Clip, LabelTrack, Review
from annotation.npyfile import npy_bytes
from annotation.predictions import run_scores, scored_sources
from annotation.store import SPLITS, TRACKS, as_utc, validate_source
from annotation.taxonomy import parse_label_list

Progress = Callable[[str, int, int], None]
EXPORT_SOURCES_HELP = "manual|pseudo|truth|prediction:RUN|best"
MARKER = "export.json"
# with --probabilities (prediction runs): the float32 probabilities beside the 0/1 files
PROB_DIRS = {"audio": "CLAP/segment_probabilities", "visual": "CLIP/segment_probabilities"}
VIDEO_PROB_DIR = "video_probabilities"
OWNED = ("audio.csv", "visual.csv", "status.csv", MARKER, *WEAK_FILES.values(), *PSEUDO_DIRS.values(),
         *PROB_DIRS.values(), VIDEO_PROB_DIR)


class ExportError(ValueError):
    """The export cannot be done as asked (unknown or absent source, unsafe output folder)."""


def available_sources(engine: Engine) -> list[str]:
    """'best' first, then the sources present in the store (prediction runs included)."""
    t = LabelTrack.__table__
    with engine.connect() as conn:
        present = sorted(conn.execute(select(t.c.source).distinct()).scalars())
    order = ["manual", "pseudo", "truth"]
    best = ["best"] if {"manual", "pseudo"} & set(present) else []
    return best + [s for s in order if s in present] + [s for s in present if s not in order]


def check_request(engine: Engine, source: str, split: str) -> None:
    if split != "all" and split not in SPLITS:
        raise ExportError(f"unknown split {split!r}; expected one of {SPLITS + ('all',)}")
    if source == "weak":
        raise ExportError("weak labels are video-level; they are exported as AVVP_*.csv with every export")
    if source != "best":
        try:
            validate_source(source)
        except ValueError:
            raise ExportError(f"unknown label source {source!r}; expected {EXPORT_SOURCES_HELP}") from None
    available = available_sources(engine)
    if source not in available:
        raise ExportError(f"no {source!r} labels in this database; available: {', '.join(available) or 'none'}")


def _check_target(out: Path) -> None:
    """`out` may be empty or an earlier export (other entries in it are kept); never a folder of
    other files only, where the export would be mistaken for theirs."""
    entries = [e for e in out.iterdir() if e.name != WORK]
    if entries and not (out / MARKER).exists():
        raise ExportError(f"{out} is not empty and holds no earlier export ({MARKER}); choose an empty folder")


@dataclass
class ExportReport:
    clips: int = 0
    exported: dict[str, int] = field(default_factory=dict)  # track -> clips with a grid
    missing: dict[str, int] = field(default_factory=dict)  # track -> clips without one
    rows: dict[str, int] = field(default_factory=dict)  # track -> dense CSV rows
    probabilities: int = 0  # clips whose probabilities were written (--probabilities)


def write_pseudo_npy(path: Path, grid: np.ndarray) -> None:
    """np.save of the (10, 25) int64 layout, with the constant header built once (4x faster on 20k files);
    a new file only (two clips never share a name, and a planted symlink is not followed)."""
    write_new(path, npy_bytes(to_pseudo_layout(grid)))


def select_grids(conn: Connection, source: str, split: str,
                 pseudo_source: str = "pseudo") -> tuple[list, dict[str, dict[int, np.ndarray]]]:
    """Clips of `split` and, per track, {clip_id: grid} of `source` ('best' = manual, else
    `pseudo_source`: the imported 'pseudo' or a pseudo-label set 'pseudo:<name>').
    `conn` should be a `snapshot`: the clips and the tracks are separate queries."""
    c, t = Clip.__table__, LabelTrack.__table__
    wanted = ("manual", pseudo_source) if source == "best" else (source,)
    query = select(c).order_by(c.c.id)
    if split != "all":
        query = query.where(c.c.split == split)
    clips = conn.execute(query).all()
    picked = {c.id for c in clips}
    grids: dict[str, dict[int, np.ndarray]] = {track: {} for track in TRACKS}
    # manual is read before pseudo so that 'best' keeps the human version
    for src in wanted:
        rows = conn.execute(select(t.c.clip_id, t.c.track, t.c.cells).where(t.c.source == src))
        for row in rows:
            if row.clip_id in picked and row.clip_id not in grids[row.track]:
                grids[row.track][row.clip_id] = unpack(row.cells)
    return clips, grids


def _check_names(clips: list) -> None:
    """Every per-clip file name comes from a stored video id and every CSV row from a stored
    filename; ones that do not follow the LLP grammar (imported by an older version that checked
    less) must not become paths or rows."""
    for clip in clips:
        try:
            if parse_clip_name(clip.filename).video_id != check_video_id(clip.video_id):
                raise ClipNameError(f"video id {clip.video_id!r} is not the first 11 characters of the filename")
        except ClipNameError as exc:
            raise ExportError(f"stored clip {clip.filename!r}: {exc}; refusing to write files named after it") from None


def export_labels(
    engine: Engine, out_dir: str | Path, source: str = "best", split: str = "all", progress: Progress | None = None,
    probabilities: bool = False,
) -> ExportReport:
    """Export into OUT, replacing only what an export owns there (its CSVs, export.json and the two
    pseudo-label folders) as one change: a failure (full disk, kill) at any point leaves the
    previous export as it was, and never a mix of two; anything else in OUT is left alone.
    `probabilities` (prediction runs only) adds the (10, 25) float32 segment probabilities per
    track (`CLAP/segment_probabilities`, `CLIP/segment_probabilities`) and the (25,) video-level
    ones (`video_probabilities`), named as the 0/1 files."""
    note = progress or (lambda stage, done, total: None)
    check_request(engine, source, split)
    if probabilities:
        if not source.startswith("prediction:"):
            raise ExportError(f"--probabilities: only prediction runs have probabilities, not {source!r}")
        if source not in scored_sources(engine):
            raise ExportError(f"--probabilities: the run {source!r} was stored without probabilities (runs "
                              "predicted before they were kept); predict it again with --db")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()  # a link to a folder: the export goes where it points
    with folder_lock(out, "export"):
        recover_update(out)
        _check_target(out)
        try:
            with staged_update(out, OWNED) as build:
                report = _write_export(engine, build, source, split, note, probabilities)
        except OSError as exc:
            raise ExportError(f"{out}: export failed: {exc.strerror or exc}"
                              f"{f' ({exc.filename})' if exc.filename else ''}; the previous export there is "
                              "intact") from None
    return report


def _write_probabilities(engine: Engine, out: Path, source: str, clips: list, note: Progress) -> int:
    scores = run_scores(engine, source)
    kept = [clip for clip in clips if clip.id in scores]
    for folder in (*PROB_DIRS.values(), VIDEO_PROB_DIR):
        (out / folder).mkdir(parents=True)
    for i, clip in enumerate(kept, 1):
        s = scores[clip.id]
        for track in TRACKS:
            grid = getattr(s, track)  # ClipScores' fields are named as the tracks
            write_new(child_path(out / PROB_DIRS[track], f"{clip.video_id}.npy"),
                      npy_bytes(np.ascontiguousarray(grid.T, dtype=np.float32)))
        write_new(child_path(out / VIDEO_PROB_DIR, f"{clip.video_id}.npy"), npy_bytes(s.video.astype(np.float32)))
        if i % 2000 == 0 or i == len(kept):
            note("probabilities", i, len(kept))
    return len(kept)


def _write_export(engine: Engine, out: Path, source: str, split: str, note: Progress,
                  probabilities: bool = False) -> ExportReport:
    r = Review.__table__
    with snapshot(engine) as conn:  # labels and review states of one moment
        clips, grids = select_grids(conn, source, split)
        reviews = {row.clip_id: row for row in conn.execute(select(r))}
    _check_names(clips)
    report = ExportReport(clips=len(clips))
    by_id = {clip.id: clip for clip in clips}

    for track in TRACKS:
        named = {by_id[cid].filename: grid for cid, grid in sorted(grids[track].items())}
        report.rows[track] = write_dense_csv(out / f"{track}.csv", named)
        report.exported[track] = len(named)
        report.missing[track] = len(clips) - len(named)
        folder = out / PSEUDO_DIRS[track]
        folder.mkdir(parents=True)
        for i, (cid, grid) in enumerate(grids[track].items(), 1):
            write_pseudo_npy(child_path(folder, f"{by_id[cid].video_id}.npy"), grid)
            if i % 2000 == 0 or i == len(grids[track]):
                note(f"{track} .npy", i, len(grids[track]))

    for split_name, filename in WEAK_FILES.items():
        rows = {clip.filename: parse_label_list(clip.weak_labels) for clip in clips if clip.split == split_name}
        if rows:
            write_weak_csv(out / filename, rows)

    with open(out / "status.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(("filename", "status", "annotator", "time"))
        for clip in clips:
            rev = reviews.get(clip.id)
            when = as_utc(rev.updated_at) if rev is not None else None
            writer.writerow((
                clip.filename,
                rev.status if rev is not None else "pending",
                (rev.annotator or "") if rev is not None else "",
                when.isoformat(timespec="seconds") if when else "",
            ))
    if probabilities:
        report.probabilities = _write_probabilities(engine, out, source, clips, note)
    marker = {"source": source, "split": split, "clips": report.clips, "exported": report.exported,
              "rows": report.rows, "probabilities": report.probabilities}
    (out / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
    return report
