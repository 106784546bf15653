"""Export of cleaned labels: LLP dense CSVs, review status, and the .npy pseudo-label layout.

The output folder feeds training directly: weak CSVs, `CLAP/segment_pseudo_labels`
(audio) and `CLIP/segment_pseudo_labels` (visual) of shape (10, 25) int64.
CSV files are written atomically (temp file + rename) so a crash never leaves
a half-written file under the final name.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from sqlalchemy import Connection, Engine, and_, select

from annotation.db import snapshot
from annotation.grid import to_pseudo_layout, unpack
from annotation.importer import PSEUDO_DIRS, WEAK_FILES
from annotation.llp_csv import write_dense_csv, write_weak_csv
from annotation.models import Clip, LabelTrack, Review
from annotation.store import SPLITS, TRACKS, as_utc, validate_source
from annotation.taxonomy import parse_label_list

Progress = Callable[[str, int, int], None]
EXPORT_SOURCES_HELP = "manual|pseudo|truth|prediction:RUN|best"
MARKER = "export.json"
CSV_NAMES = ("audio.csv", "visual.csv", "status.csv", *WEAK_FILES.values())
_UMASK = os.umask(0)
os.umask(_UMASK)


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


def prepare_folder(out: Path) -> None:
    """Create `out`, or clear an earlier export there; never mix with, or delete, other files."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise ExportError(f"{out} is not empty and holds no earlier export ({MARKER}); choose an empty folder")
        for name in CSV_NAMES:
            (out / name).unlink(missing_ok=True)
        for sub in PSEUDO_DIRS.values():
            if (out / sub).is_dir():
                for npy in (out / sub).glob("*.npy"):
                    npy.unlink()
    out.mkdir(parents=True, exist_ok=True)


@dataclass
class ExportReport:
    clips: int = 0
    exported: dict[str, int] = field(default_factory=dict)  # track -> clips with a grid
    missing: dict[str, int] = field(default_factory=dict)  # track -> clips without one
    rows: dict[str, int] = field(default_factory=dict)  # track -> dense CSV rows


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


_PSEUDO_HEADER = _npy_header((10, 25), np.dtype(np.int64))


def write_pseudo_npy(path: Path, grid: np.ndarray) -> None:
    """np.save of the (10, 25) int64 layout, with the constant header built once (4x faster on 20k files)."""
    with open(path, "wb") as handle:
        handle.write(_PSEUDO_HEADER)
        handle.write(to_pseudo_layout(grid).tobytes())


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; exports are shared like any file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def select_grids(conn: Connection, source: str, split: str) -> tuple[list, dict[str, dict[int, np.ndarray]]]:
    """Clips of `split` and, per track, {clip_id: grid} of `source` ('best' = manual, else pseudo).
    `conn` should be a `snapshot`: the clips and the tracks are separate queries."""
    c, t = Clip.__table__, LabelTrack.__table__
    wanted = ("manual", "pseudo") if source == "best" else (source,)
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


def export_labels(
    engine: Engine, out_dir: str | Path, source: str = "best", split: str = "all", progress: Progress | None = None
) -> ExportReport:
    note = progress or (lambda stage, done, total: None)
    out = Path(out_dir)
    check_request(engine, source, split)
    prepare_folder(out)
    r = Review.__table__
    with snapshot(engine) as conn:  # labels and review states of one moment
        clips, grids = select_grids(conn, source, split)
        reviews = {row.clip_id: row for row in conn.execute(select(r))}
    report = ExportReport(clips=len(clips))
    by_id = {clip.id: clip for clip in clips}

    for track in TRACKS:
        named = {by_id[cid].filename: grid for cid, grid in sorted(grids[track].items())}
        with atomic_path(out / f"{track}.csv") as tmp:
            report.rows[track] = write_dense_csv(tmp, named)
        report.exported[track] = len(named)
        report.missing[track] = len(clips) - len(named)
        folder = out / PSEUDO_DIRS[track]
        folder.mkdir(parents=True, exist_ok=True)
        for i, (cid, grid) in enumerate(grids[track].items(), 1):
            write_pseudo_npy(folder / f"{by_id[cid].video_id}.npy", grid)
            if i % 2000 == 0 or i == len(grids[track]):
                note(f"{track} .npy", i, len(grids[track]))

    for split_name, filename in WEAK_FILES.items():
        rows = {clip.filename: parse_label_list(clip.weak_labels) for clip in clips if clip.split == split_name}
        if rows:
            with atomic_path(out / filename) as tmp:
                write_weak_csv(tmp, rows)

    with atomic_path(out / "status.csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
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
    marker = {"source": source, "split": split, "clips": report.clips, "exported": report.exported,
              "rows": report.rows}
    with atomic_path(out / MARKER) as tmp:
        tmp.write_text(json.dumps(marker, indent=2))
    return report
