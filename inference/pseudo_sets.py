"""Pseudo-label sets: named segment labels of every clip from a generator (zero-shot, EAR), as files
in the LLP layout and as a label source of the store, scored against the truth like predictions.

A set NAME (letters, digits, '.', '_', '-') lives in DIR/pseudo/NAME/ (or another root R):
    R/CLAP/segment_pseudo_labels/<id>.npy, R/CLIP/segment_pseudo_labels/<id>.npy  (10, 25) int64 0/1
    R/CLAP/segment_pseudo_scores/<id>.npy, R/CLIP/segment_pseudo_scores/<id>.npy  (10, 25) float32 in
        [0, 1], optional (EAR: the generator's probability)
    R/pseudo_labels.json  the report (method, name, thresholds and how chosen, gating, counts, quality)
for every clip of the weak CSVs (train, val, test), gated by the clip's weak label. The val/test
files exist to score the set; training reads the train clips' files only (`inference.data`).

Why the writes look the way they do: a set is replaced as one change (`annotation.files.staged_update`
under the set folder's lock, the exporter's way): a stop or crash before the commit leaves the
previous set as it was, one after it is rolled forward by the next writer. `write_pseudo_set` can run
the store transaction inside the staged update, so an interrupted store also leaves the old files.
In the store the set is the source 'pseudo:NAME' (same tracks table as the imported 'pseudo', which
is never touched, nor are human 'manual' tracks); confidences go to the prediction_scores table under
the same source name.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, and_, delete, insert, select

from annotation.db import write_transaction
from annotation.errors import DataFileError
from annotation.files import WORK, child_path, folder_lock, present, recover_update, staged_update, write_new
from annotation.importer import PSEUDO_DIRS, upsert_tracks
from annotation.models import Clip, LabelTrack, PredictionScores
from annotation.npyfile import npy_bytes
from annotation.predictions import pack_scores
from annotation.store import utcnow, validate_source
from annotation.taxonomy import NUM_CLASSES, NUM_SEGMENTS
from inference.data import PSEUDO_SCORE_DIRS, LabelSet

Progress = Callable[[str, int, int], None]
SETS_DIR = "pseudo"  # DIR/pseudo/<name>
REPORT = "pseudo_labels.json"
FORMAT = 1
GATING = "gated by the weak label (VALOR/EAR protocol)"
QUALITY_NOTE = ("pseudo-labels scored as predictions against the dense truth with the AVVP metrics; they are "
                f"{GATING}, so they know each clip's video-level label: not comparable with a parser's numbers")
OWNED = (*PSEUDO_DIRS.values(), *PSEUDO_SCORE_DIRS.values(), REPORT)
SHAPE = (NUM_SEGMENTS, NUM_CLASSES)
TRACKS = ("audio", "visual")


class PseudoSetError(ValueError):
    """A set that breaks the contract (bad name, clips missing, labels outside the weak label)."""


@dataclass
class PseudoSet:
    """Segment pseudo-labels of clips by video id, in the (segments, classes) = (10, 25) layout."""

    name: str
    method: str
    audio: dict[str, np.ndarray]  # video id -> (10, 25) uint8 0/1
    visual: dict[str, np.ndarray]
    scores_audio: dict[str, np.ndarray] | None = None  # video id -> (10, 25) float32 in [0, 1]
    scores_visual: dict[str, np.ndarray] | None = None
    report: dict[str, Any] = field(default_factory=dict)

    def tracks(self) -> dict[str, dict[str, np.ndarray]]:
        return {"audio": self.audio, "visual": self.visual}

    def scores(self) -> dict[str, dict[str, np.ndarray]] | None:
        if self.scores_audio is None or self.scores_visual is None:
            return None
        return {"audio": self.scores_audio, "visual": self.scores_visual}


def check_set_name(name: str) -> str:
    """A set name is the part after 'pseudo:' of a store source; ValueError otherwise."""
    try:
        validate_source(f"pseudo:{name}")
    except ValueError:
        raise PseudoSetError(f"bad pseudo-label set name {name!r}: use letters, digits, '.', '_', '-' (at most 64, "
                         "starting with a letter or digit)") from None
    return name


def set_root(data_dir: str | Path, name: str) -> Path:
    return Path(data_dir) / SETS_DIR / check_set_name(name)


def list_sets(data_dir: str | Path) -> list[str]:
    """Names of the sets under DIR/pseudo (folders holding a report)."""
    folder = Path(data_dir) / SETS_DIR
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and (p / REPORT).is_file())


def read_report(root: str | Path) -> dict | None:
    """The report of the set at `root`, None when there is none."""
    path = Path(root) / REPORT
    if not present(path):
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFileError(path, f"not valid JSON ({exc}); expected a pseudo-label set report") from None
    if not isinstance(data, dict):
        raise DataFileError(path, "expected a JSON object (a pseudo-label set report)")
    return data


def check_replace(root: str | Path, method: str, force: bool = False) -> None:
    """Refuse to replace a set made by another method (a zero-shot set named like an EAR one is a
    mistake more often than a wish) unless `force`; the same method re-running replaces it."""
    report = read_report(root)
    if report is not None and report.get("method") != method and not force:
        raise DataFileError(Path(root) / REPORT, f"holds a set made by method {report.get('method')!r}, not "
                                                 f"{method!r}; choose another --name, or --force to replace it")


def check_pseudo_set(pset: PseudoSet, labels: LabelSet) -> None:
    """The set covers exactly the clips of `labels`, with 0/1 (10, 25) labels gated by each clip's
    weak label and confidences (if any) finite in [0, 1]: a generator that broke the contract is
    stopped before anything is written."""
    check_set_name(pset.name)
    ids = set(labels.video_ids)
    weak = dict(zip(labels.video_ids, labels.weak))
    scores = pset.scores()
    if (pset.scores_audio is None) != (pset.scores_visual is None):
        raise PseudoSetError(f"pseudo-label set {pset.name}: confidences for one track only")
    for track, grids in pset.tracks().items():
        if set(grids) != ids:
            extra, lacking = sorted(set(grids) - ids), sorted(ids - set(grids))
            raise PseudoSetError(f"pseudo-label set {pset.name}: {track} labels must cover every clip of the data "
                             f"folder; {len(lacking)} missing (e.g. {lacking[:1]}), {len(extra)} unknown "
                             f"(e.g. {extra[:1]})")
        for vid, grid in grids.items():
            g = np.asarray(grid)
            if g.shape != SHAPE or not np.isin(g, (0, 1)).all():
                raise PseudoSetError(f"pseudo-label set {pset.name}: {track} labels of {vid} must be {SHAPE} 0/1, "
                                 f"got shape {g.shape}")
            if (g.max(axis=0) > weak[vid]).any():
                raise PseudoSetError(f"pseudo-label set {pset.name}: {track} labels of {vid} hold a class outside the "
                                 f"clip's weak label; sets are {GATING}")
        if scores is not None:
            if set(scores[track]) != ids:
                raise PseudoSetError(f"pseudo-label set {pset.name}: {track} confidences must cover the same clips")
            for vid, value in scores[track].items():
                v = np.asarray(value)
                if v.shape != SHAPE or not np.isfinite(v).all() or v.min() < 0 or v.max() > 1:
                    raise PseudoSetError(f"pseudo-label set {pset.name}: {track} confidences of {vid} must be finite "
                                     f"{SHAPE} values in [0, 1]")


def summarize(pset: PseudoSet, labels: LabelSet) -> dict[str, dict[str, int]]:
    """Per split: clips, positive cells per track, clips with an all-zero track (MUG's manual step
    concerns the train clips whose visual pseudo-label is empty)."""
    out = {}
    for split in ("train", "val", "test"):
        vids = [labels.video_ids[i] for i in labels.indices(split)]
        if not vids:
            continue
        row: dict[str, int] = {"clips": len(vids)}
        for track, grids in pset.tracks().items():
            row[f"{track}_positives"] = int(sum(int(np.asarray(grids[v]).sum()) for v in vids))
            row[f"{track}_empty"] = int(sum(not np.asarray(grids[v]).any() for v in vids))
        out[split] = row
    return out


def score_pseudo_set(pset: PseudoSet, labels: LabelSet) -> dict[str, dict | None]:
    """{"val": ten AVVP numbers | None, "test": ...}: the set scored as 0/1 predictions against the
    truth (exact AVVP metrics, `inference.metrics.evaluate`); None for a split without truth."""
    from inference.metrics import evaluate
    from inference.tasks.avvp import truth_for

    out: dict[str, dict | None] = {}
    for split in ("val", "test"):
        indices = labels.indices(split)
        truth = truth_for(labels, indices)
        if truth is None:
            out[split] = None
            continue
        pred = [np.stack([np.asarray(grids[labels.video_ids[i]]).T for i in indices]).astype(np.uint8)
                for grids in (pset.audio, pset.visual)]
        out[split] = evaluate(pred[0], pred[1], *truth)
    return out


def _report(data_dir: str | Path, pset: PseudoSet) -> dict:
    """The generator's report with the set's own facts over it (a generator cannot rename the set)."""
    return {**pset.report, "format": FORMAT, "name": pset.name, "method": pset.method, "gating": GATING,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "data": str(Path(data_dir).resolve()), "clips": len(pset.audio),
            "confidences": pset.scores() is not None}


def _check_target(root: Path) -> None:
    """`root` may be new, empty or an earlier set (its own entries are replaced, others kept); never a
    folder of other files, such as a data folder whose own pseudo-labels a set would replace."""
    entries = [e for e in root.iterdir() if e.name != WORK]
    if entries and not (root / REPORT).exists():
        raise DataFileError(root, f"not empty and holds no pseudo-label set ({REPORT}); choose an empty or new "
                                  "folder (a data folder's own pseudo-labels are never replaced)")


def write_pseudo_set(data_dir: str | Path, pset: PseudoSet, out: str | Path | None = None, force: bool = False,
                     progress: Progress | None = None, then: Callable[[], Any] | None = None) -> Path:
    """Write the set under `out` (default DIR/pseudo/NAME) as one change; returns the root. `then` runs
    after every label file is built and before they replace the previous set (e.g. the store
    transaction; what it returns is the report's "stored"): if it fails or is interrupted, the
    previous set stays. `force`: see `check_replace`."""
    note = progress or (lambda stage, done, total: None)
    root = Path(out) if out is not None else set_root(data_dir, pset.name)
    created = not os.path.lexists(root)
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    try:
        with folder_lock(root, "pseudo-label writer"):
            recover_update(root)
            _check_target(root)
            check_replace(root, pset.method, force)
            with staged_update(root, OWNED) as build:
                _write_files(build, pset, note)
                stored = then() if then is not None else None
                report = _report(data_dir, pset) | ({"stored": stored} if stored is not None else {})
                write_new(build / REPORT, (json.dumps(report, indent=1) + "\n").encode("utf-8"))
    except BaseException:
        if created:
            shutil.rmtree(root / WORK, ignore_errors=True)
            if not any(root.iterdir()):
                root.rmdir()  # nothing of a set that was never written stays behind
        raise
    return root


def _write_files(build: Path, pset: PseudoSet, note: Progress) -> None:
    scores = pset.scores()
    for track, grids in pset.tracks().items():
        folders = {"labels": build / PSEUDO_DIRS[track]}
        if scores is not None:
            folders["scores"] = build / PSEUDO_SCORE_DIRS[track]
        for folder in folders.values():
            folder.mkdir(parents=True)
        for i, (vid, grid) in enumerate(sorted(grids.items()), 1):
            write_new(child_path(folders["labels"], f"{vid}.npy"),
                      npy_bytes(np.ascontiguousarray(grid, dtype=np.int64)))
            if scores is not None:
                write_new(child_path(folders["scores"], f"{vid}.npy"),
                          npy_bytes(np.ascontiguousarray(scores[track][vid], dtype=np.float32)))
            if i % 2000 == 0 or i == len(grids):
                note(f"writing {track}", i, len(grids))


def store_pseudo_set(engine: Engine, pset: PseudoSet, labels: LabelSet, annotator: str | None) -> dict:
    """The set as label source 'pseudo:NAME' of every clip (one transaction): tracks inserted or updated
    (version + 1 where the grid changed, as the store's bulk writers do), tracks of clips no longer in
    the set removed, confidences replaced. Clips are matched by full filename (`labels`)."""
    source = validate_source(f"pseudo:{check_set_name(pset.name)}")
    filenames = dict(zip(labels.video_ids, labels.filenames))
    unknown = sorted(set(pset.audio) - set(filenames))
    if unknown:
        raise PseudoSetError(f"pseudo-label set {pset.name}: {len(unknown)} clip(s) not among the data folder's, "
                         f"e.g. {unknown[0]}")
    c, t, p = Clip.__table__, LabelTrack.__table__, PredictionScores.__table__
    now, who = utcnow(), annotator or f"pseudo-label {pset.method}"
    result = {"source": source, "clips": len(pset.audio), "added": 0, "updated": 0, "removed": 0, "scores": 0}
    with write_transaction(engine) as conn:
        ids = dict(conn.execute(select(c.c.filename, c.c.id)).all())
        absent = sorted(filenames[v] for v in pset.audio if filenames[v] not in ids)
        if absent:
            raise DataFileError(engine.url.render_as_string(hide_password=True),
                                f"{len(absent)} clip(s) of the set are not in the database, e.g. {absent[0]}; "
                                "import the data folder first (avvp-studio import llp)")
        kept = {ids[filenames[v]] for v in pset.audio}
        for track, grids in pset.tracks().items():
            added, updated = upsert_tracks(conn, {ids[filenames[v]]: np.ascontiguousarray(np.asarray(g).T)
                                                  for v, g in grids.items()}, track, source, who, now)
            stored = set(conn.execute(select(t.c.clip_id).where(and_(t.c.source == source, t.c.track == track)))
                         .scalars())
            stale = sorted(stored - kept)
            for start in range(0, len(stale), 5000):
                conn.execute(delete(t).where(and_(t.c.source == source, t.c.track == track,
                                                  t.c.clip_id.in_(stale[start:start + 5000]))))
            result["added"] += added
            result["updated"] += updated
            result["removed"] += len(stale)
        conn.execute(delete(p).where(p.c.source == source))
        scores = pset.scores()
        if scores is not None:
            rows = []
            for vid in pset.audio:
                a, v = (np.asarray(scores[k][vid], np.float32).T for k in TRACKS)
                rows.append({"clip_id": ids[filenames[vid]], "source": source, "audio": pack_scores(a, (25, 10)),
                             "visual": pack_scores(v, (25, 10)),
                             "video": pack_scores(np.maximum(a, v).max(axis=1), (25,))})
            if rows:
                conn.execute(insert(p), rows)
            result["scores"] = len(rows)
    return result


def check_store_clips(engine: Engine, labels: LabelSet) -> None:
    """Every clip of `labels` is in the store under its full filename (checked before a set is
    computed, so a wrong --db fails at once, not after the work)."""
    c = Clip.__table__
    with engine.connect() as conn:
        stored = set(conn.execute(select(c.c.filename)).scalars())
    absent = [f for f in labels.filenames if f not in stored]
    if absent:
        raise DataFileError(engine.url.render_as_string(hide_password=True),
                            f"{len(absent)} of the data folder's {len(labels)} clips are not in the database, e.g. "
                            f"{absent[0]}; import the data folder first (avvp-studio import llp)")


def stored_sets(engine: Engine) -> list[str]:
    """Names of the sets stored as 'pseudo:<name>' sources."""
    t = LabelTrack.__table__
    with engine.connect() as conn:
        sources = conn.execute(select(t.c.source).where(t.c.source.like("pseudo:%")).distinct()).scalars()
        return sorted(s.split(":", 1)[1] for s in sources)
