"""UnAV-100 import: its annotation JSON -> a dense-event folder (annotation/dense_events.py).

The layout, as found in the official code (github ttgeng233/UnAV):
- `libs/datasets/unav100.py` (main @ 1609deb), `_load_json_db` (lines 118-171): the file is
  `{"database": {video_id: {"subset", "duration", "annotations": [{"segment": [start, end],
  "label", "label_id"}]}}}`; the subset is compared lower-cased (line 135) with the split names
  of `libs/core/config.py` lines 10-12: 'train', 'validation', 'test'; a missing duration
  becomes 1e8 (line 150); label ids come from the label names (lines 129, 160); num_classes 100
  (config.py line 21). Features are named `<video_id>_rgb/_flow/_vggish.npy` (`__getitem__`).
- `scripts/video_download.py`: each video is cut from its YouTube video with ffmpeg and saved
  as `<video_id>.mp4`, where video_id is the YouTube id (`watch?v=<id>`).
- The annotation file itself (`data/unav100_annotations.json`, commit 60144ed, 2,991,422
  bytes; main now points to the project page for it): top-level keys "version" ("unav100") and
  "database"; 10,790 videos (train 6,489, validation 2,134, test 2,167), every id a plain
  11-character YouTube id (no suffix), every video with "duration" (10 to 60 s, 3,736 of them
  fractional) and at least one of its 30,059 events; 100 labels, one name per id 0..99, no
  segment with end < start or past the duration. `UNAV_CLASSES` below is that id -> name table.
  41 of its ids are ids of LLP val/test clips (20 val, 21 test), 237 of LLP train clips.

Readings and decisions (each an option where it is a choice):
- Segments: segment i is the second [i, i + 1). T = floor(duration), plus one for a trailing
  part of a second when the video covers at least `min_overlap` of it (so 47.68 s -> 48,
  38.04 s -> 38), at least 1. The same rule decides an event's segments.
- An event marks segment i when it covers at least `min_overlap` (default 0.5, 1e-6 slack) of
  it; `min_overlap` 0 means any overlap. An event too short to reach that anywhere (295 of the
  30,059 with 0.5) marks instead the segment it overlaps most (the first on a tie), so no
  annotated event vanishes; `keep_short_events=False` drops them. An event inside a trailing
  part of a second that is no segment marks nothing (1 of the 30,059). Both counts are reported.
- Classes: the embedded UNAV_CLASSES (a file where only some classes appear still gives all
  100 columns in label_id order; a name that disagrees with its id is an error), or, with
  `classes="json"`, the table the file itself defines (ids 0..C-1, each named consistently).
- Subsets: train -> train, validation (or val) -> val, test -> test, case-insensitive.
- Videos: <id> plus one of VIDEO_EXTENSIONS (.mp4 first) in the --videos folder (not its
  sub-folders); nothing is decoded. A video without a file is excluded ("video_missing", listed):
  no features can be extracted for it, and the generator's training reads features for every
  clip of the folder. `keep_missing_videos` keeps such clips with "video": null instead (for
  features made elsewhere, or videos added before `features` runs).
- LLP overlap: a video whose YouTube id is the id of an LLP val or test clip is excluded, so a
  generator pre-trained here never saw the videos its pseudo-labels are scored on (LLP's file
  name is <11-char id>_<start>_<end>; only the id is compared, whatever the times). The ids
  come from an LLP folder and/or a database; with neither the import is refused unless
  `keep_llp_overlap`, which keeps them and reports them. LLP train ids are not excluded.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from annotation.clipname import ClipNameError, check_video_id, parse_clip_name
from annotation.dense_events import DenseClip, write_dense_events
from annotation.errors import DataFileError
from annotation.files import present
from annotation.importer import DENSE_FILES, WEAK_FILES
from annotation.llp_csv import iter_dense_csv, read_weak_csv
from annotation.store import LabelStore

UNAV_CLASSES: tuple[str, ...] = (
    "man speaking", "woman speaking", "kid speaking", "male singing", "people laughing", "car passing by",
    "baby laughter", "wind noise", "people clapping", "people shouting", "people crowd", "female singing",
    "dog barking", "playing acoustic guitar", "people eating", "people cheering", "basketball bounce",
    "engine knocking", "playing tennis", "baby babbling", "striking bowling", "playing badminton", "cat meowing",
    "people slapping", "playing piano", "baby crying", "people burping", "orchestra", "playing drum kit",
    "playing violin", "machine gun shooting", "child singing", "people nose blowing", "playing electronic organ",
    "people sneezing", "dog howling", "skateboarding", "playing base guitar", "auto racing", "sea waves",
    "playing table tennis", "people coughing", "people whispering", "playing ukulele", "sheep bleating",
    "playing tabla", "fire truck siren", "playing volleyball", "beat boxing", "playing trumpet", "thunder",
    "playing cello", "playing harp", "hammering nails", "people running", "sailing", "telephone bell ringing",
    "frog croaking", "driving motorcycle", "playing cornet", "playing clarinet", "train wheels squealing",
    "playing flute", "playing trombone", "playing erhu", "bull bellowing", "raining", "skidding",
    "chainsawing trees", "police car siren", "playing saxophone", "fireworks banging", "driving buses",
    "tap dancing", "airplane flyby", "people whistling", "train horning", "vacuum cleaner cleaning floors",
    "playing accordion", "bird chirping", "vehicle honking", "church bell ringing", "playing snare drum",
    "playing synthesizer", "typing on computer keyboard", "singing choir", "lions roaring", "people slurping",
    "helicopter", "horse clip-clop", "water burbling", "lawn mowing", "playing banjo", "playing zither",
    "playing harmonica", "people battle cry", "people sobbing", "ambulance siren", "rope skipping",
    "hair dryer drying",
)
SUBSETS = {"train": "train", "validation": "val", "val": "val", "test": "test"}
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
DEFAULT_MIN_OVERLAP = 0.5
EPS = 1e-6
END_TOLERANCE = 0.01  # seconds an event may end past the duration (rounded durations); clipped there
MAX_JSON_BYTES = 512 << 20  # the real file is 3 MB
MAX_DURATION = 86400.0  # seconds (UnAV-100's longest video is 60 s); a (T, C) grid per video is built in memory
SOURCE = "UnAV-100"
MISSING_REASON = "no video file in the videos folder, so no features can be extracted for it"
OVERLAP_REASON = ("shares its YouTube id with an LLP val/test clip: a generator pre-trained on it would have "
                  "seen videos its pseudo-labels are scored on")
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class UnavVideo:
    video_id: str
    split: str
    duration: float
    starts: tuple[float, ...]
    ends: tuple[float, ...]
    labels: tuple[int, ...]


@dataclass
class UnavAnnotations:
    path: Path
    version: str | None
    classes: list[str]
    classes_from: str  # "unav100" or "json"
    videos: list[UnavVideo]


@dataclass
class UnavReport:
    out: str = ""
    videos_in_file: int = 0
    clips: dict[str, int] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    excluded_videos: dict[str, str] = field(default_factory=dict)
    llp_sources: list[str] = field(default_factory=list)
    llp_heldout_ids: int = 0
    llp_overlap_kept: list[str] = field(default_factory=list)
    videos_found: int = 0
    videos_missing: int = 0
    missing_videos: list[str] = field(default_factory=list)
    events: int = 0
    events_best_segment: int = 0
    events_dropped: int = 0
    positives: int = 0
    classes: int = 0
    classes_with_events: int = 0
    min_overlap: float = DEFAULT_MIN_OVERLAP


# ---------------------------------------------------------------------------- reading the JSON


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise _DuplicateKey(dup)
    return dict(pairs)


class _DuplicateKey(ValueError):
    pass


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _load(path: Path):
    if not present(path):
        raise DataFileError(path, "not found; expected UnAV-100's annotation JSON (unav100_annotations.json)")
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise DataFileError(path, f"{size} bytes; expected an annotation JSON of at most {MAX_JSON_BYTES} bytes")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFileError(path, f"not UTF-8 text (byte {exc.start}); expected a JSON file") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise DataFileError(path, f"not valid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno) from None
    except _DuplicateKey as exc:
        raise DataFileError(path, f"key {exc.args[0]!r} appears twice in one JSON object (a video listed twice?); "
                                  "expected distinct keys") from None
    except RecursionError:
        raise DataFileError(path, "JSON nested too deeply; expected UnAV-100's annotation layout") from None


def _event(path: Path, where: str, vid: str, item, duration: float) -> tuple[float, float, int, str]:
    if not isinstance(item, dict):
        raise DataFileError(path, f"{where}: found {type(item).__name__}; expected an object with segment, "
                                  "label, label_id", clip=vid)
    seg = item.get("segment")
    if not isinstance(seg, list) or len(seg) != 2 or not all(_number(v) for v in seg):
        raise DataFileError(path, f"{where}.segment: found {seg!r}; expected [start, end] in seconds", clip=vid)
    start, end = float(seg[0]), float(seg[1])
    if start < 0 or end <= start:
        raise DataFileError(path, f"{where}.segment: found [{seg[0]}, {seg[1]}]; expected 0 <= start < end", clip=vid)
    if end > duration + END_TOLERANCE:
        raise DataFileError(path, f"{where}.segment: ends at {seg[1]} s, past the video's duration {duration} s",
                            clip=vid)
    label, label_id = item.get("label"), item.get("label_id")
    if not isinstance(label, str) or not label:
        raise DataFileError(path, f"{where}.label: found {label!r}; expected a class name", clip=vid)
    if isinstance(label_id, bool) or not isinstance(label_id, int):
        raise DataFileError(path, f"{where}.label_id: found {label_id!r}; expected an integer class id", clip=vid)
    return start, min(end, duration), label_id, label


def _class_table(path: Path, named: dict[int, tuple[str, str]], classes: str) -> list[str]:
    """The class list: the embedded UnAV-100 table (checked against the file) or the file's own."""
    if classes == "unav100":
        for label_id, (label, where) in named.items():
            if not 0 <= label_id < len(UNAV_CLASSES):
                raise DataFileError(path, f"{where}.label_id: {label_id} is outside 0..{len(UNAV_CLASSES) - 1} "
                                          "(UnAV-100's 100 classes); pass --classes json for another class table")
            if UNAV_CLASSES[label_id] != label:
                raise DataFileError(path, f"{where}: label {label!r} with label_id {label_id}, but UnAV-100's class "
                                          f"{label_id} is {UNAV_CLASSES[label_id]!r}; expected the name of its id")
        return list(UNAV_CLASSES)
    if classes != "json":
        raise ValueError(f"classes {classes!r}: expected 'unav100' or 'json'")
    if not named:
        raise DataFileError(path, "no event in the file, so it defines no class; expected at least one event")
    if min(named) < 0 or max(named) != len(named) - 1:  # ids 0..C-1, each named (C distinct ids)
        missing = [i for i in range(min(max(named), len(named) + 10) + 1) if i not in named][:10]
        raise DataFileError(path, f"label ids {min(named)}..{max(named)} ({len(named)} distinct): expected every id "
                                  f"of 0..{max(named)} named by some event (missing: {missing})")
    return [named[i][0] for i in range(len(named))]


def read_unav_json(path: str | Path, classes: str = "unav100") -> UnavAnnotations:
    """The whole file, validated before anything is written: errors name the key path
    (database["<id>"].annotations[i].segment), what was found and what was expected."""
    path = Path(path)
    data = _load(path)
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        found = type(data.get("database")).__name__ if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        raise DataFileError(path, f"database: found {found}; expected UnAV-100's layout "
                                  '{"database": {video_id: {"subset", "duration", "annotations"}}}')
    version = data.get("version")
    database = data["database"]
    if not database:
        raise DataFileError(path, "database: empty; expected at least one video")
    videos, name_of, id_of = [], {}, {}
    for vid, entry in database.items():
        where = f"database[{json.dumps(vid)}]"
        try:
            check_video_id(vid)
        except ClipNameError as exc:
            raise DataFileError(path, f"{where}: {exc} (UnAV-100's ids are YouTube ids)") from None
        if not isinstance(entry, dict):
            raise DataFileError(path, f"{where}: found {type(entry).__name__}; expected an object", clip=vid)
        subset = entry.get("subset")
        split = SUBSETS.get(subset.lower()) if isinstance(subset, str) else None
        if split is None:
            raise DataFileError(path, f"{where}.subset: found {subset!r}; expected 'train', 'validation' or 'test'",
                                clip=vid)
        duration = entry.get("duration")
        if not _number(duration) or not 0 < duration <= MAX_DURATION:
            missing = " (missing)" if "duration" not in entry else ""
            raise DataFileError(path, f"{where}.duration: found {duration!r}{missing}"
                                f"; expected the video's length in seconds (0 < d <= {MAX_DURATION})", clip=vid)
        events = entry.get("annotations", [])  # the official loader also takes a missing list as no event
        if not isinstance(events, list):
            raise DataFileError(path, f"{where}.annotations: found {type(events).__name__}; expected a list", clip=vid)
        starts, ends, labels = [], [], []
        for i, item in enumerate(events):
            ewhere = f"{where}.annotations[{i}]"
            start, end, label_id, label = _event(path, ewhere, vid, item, float(duration))
            if name_of.get(label_id, (label,))[0] != label:
                first, at = name_of[label_id]
                raise DataFileError(path, f"{ewhere}: label_id {label_id} is {label!r} here but {first!r} at {at}; "
                                          "expected one name per id")
            if id_of.get(label, label_id) != label_id:
                raise DataFileError(path, f"{ewhere}: label {label!r} has id {label_id} here but {id_of[label]} "
                                          "elsewhere; expected one id per name")
            name_of.setdefault(label_id, (label, ewhere))
            id_of.setdefault(label, label_id)
            starts.append(start)
            ends.append(end)
            labels.append(label_id)
        videos.append(UnavVideo(vid, split, float(duration), tuple(starts), tuple(ends), tuple(labels)))
    table = _class_table(path, name_of, classes)
    return UnavAnnotations(path, version if isinstance(version, str) else None, table, classes, videos)


# ---------------------------------------------------------------------------- labels per second


def _covers(overlap: np.ndarray, min_overlap: float) -> np.ndarray:
    return (overlap > EPS) & (overlap >= min_overlap - EPS)


def segment_count(duration: float, min_overlap: float = DEFAULT_MIN_OVERLAP) -> int:
    """Whole seconds, plus a trailing part of a second the video covers at least `min_overlap` of."""
    whole = math.floor(duration + EPS)
    tail = duration - whole
    return max(1, whole + int(bool(_covers(np.float64(tail), min_overlap))))


def event_labels(video: UnavVideo, num_classes: int, min_overlap: float = DEFAULT_MIN_OVERLAP,
                 keep_short_events: bool = True) -> tuple[np.ndarray, int, int]:
    """(T, C) uint8 labels of one video, the number of events marked by their best segment only
    (too short for `min_overlap`) and the number that mark nothing (dropped, or outside the T segments)."""
    segments = segment_count(video.duration, min_overlap)
    grid = np.zeros((segments, num_classes), dtype=np.uint8)
    if not video.labels:
        return grid, 0, 0
    starts, ends = np.asarray(video.starts)[:, None], np.asarray(video.ends)[:, None]
    lows = np.arange(segments, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(ends, lows + 1.0) - np.maximum(starts, lows), 0.0, None)  # (E, T) seconds
    marks = _covers(overlap, min_overlap)
    unmarked = ~marks.any(axis=1)
    best = unmarked & (overlap.max(axis=1) > EPS) if keep_short_events else np.zeros_like(unmarked)
    rows = np.flatnonzero(best)
    marks[rows, overlap[rows].argmax(axis=1)] = True
    event, second = np.nonzero(marks)
    grid[second, np.asarray(video.labels)[event]] = 1
    return grid, int(best.sum()), int((unmarked & ~best).sum())


# ---------------------------------------------------------------------------- LLP val/test ids


def llp_heldout_ids(llp_dir: str | Path) -> dict[str, str]:
    """{YouTube id: where it was found} of the val/test clips of an LLP data folder: the weak
    files of val and test and the dense evaluation files (their names that do not parse as an
    LLP clip name, LLP's orphans with truncated ids, name no video and are skipped)."""
    llp_dir = Path(llp_dir)
    if not present(llp_dir, "folder"):
        raise DataFileError(llp_dir, "not a directory; expected an LLP data folder (AVVP_val_pd.csv, AVVP_test_pd.csv)")
    ids: dict[str, str] = {}
    found = []
    for split in ("val", "test"):
        path = llp_dir / WEAK_FILES[split]
        if present(path):
            found.append(path.name)
            for row in read_weak_csv(path):
                ids.setdefault(row.filename[:11], f"LLP {split} clip {row.filename} ({path.name} line {row.line})")
    for name in DENSE_FILES.values():
        path = llp_dir / name
        if present(path):
            found.append(path.name)
            for row in iter_dense_csv(path):
                try:
                    clip = parse_clip_name(row.filename)
                except ClipNameError:
                    continue
                ids.setdefault(clip.video_id, f"LLP evaluated clip {row.filename} ({path.name} line {row.line})")
    if not found:
        expected = [WEAK_FILES["val"], WEAK_FILES["test"], *DENSE_FILES.values()]
        raise DataFileError(llp_dir, f"holds none of {expected}; expected the LLP folder whose val/test clips "
                                     "must stay out of UnAV-100")
    return ids


def store_heldout_ids(engine: Engine) -> dict[str, str]:
    """{YouTube id: where} of the database's val and test clips."""
    store = LabelStore(engine)
    return {c.video_id: f"LLP {c.split} clip {c.filename} (database)" for split in ("val", "test")
            for c in store.clips(split)}


# ---------------------------------------------------------------------------- import


def find_videos(videos_dir: str | Path) -> dict[str, Path]:
    """{stem: absolute path} of the video files directly in `videos_dir` (.mp4 preferred when an
    id has several); an entry of such a name that is not a readable file is an error."""
    folder = Path(videos_dir)
    if not present(folder, "folder"):
        raise DataFileError(folder, "not a directory; expected the folder of UnAV-100's <video_id>.mp4 files")
    rank = {ext: i for i, ext in enumerate(VIDEO_EXTENSIONS)}
    found: dict[str, tuple[int, Path]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            ext = ext.lower()
            if ext not in rank or entry.name.startswith("."):
                continue
            path = Path(entry.path)
            present(path)  # a dangling link or a folder named like a video: an error, not a missing video
            if stem not in found or rank[ext] < found[stem][0]:
                found[stem] = (rank[ext], path.resolve())
    return {stem: path for stem, (_, path) in found.items()}


def import_unav(annotations: str | Path, videos_dir: str | Path, out_dir: str | Path, *,
                heldout: dict[str, str] | None, heldout_sources: list[str] | None = None,
                keep_llp_overlap: bool = False, min_overlap: float = DEFAULT_MIN_OVERLAP,
                keep_short_events: bool = True, keep_missing_videos: bool = False, classes: str = "unav100",
                progress: Progress | None = None) -> UnavReport:
    """Read and check everything, then write OUT as one change (see annotation.dense_events).

    `heldout`: {YouTube id: where} of LLP val/test clips (llp_heldout_ids / store_heldout_ids);
    None means nobody checked, which is refused unless `keep_llp_overlap`."""
    if not 0.0 <= min_overlap <= 1.0:
        raise ValueError(f"min_overlap {min_overlap}: expected a fraction of a second in [0, 1]")
    if heldout is None and not keep_llp_overlap:
        raise ValueError("no LLP val/test ids to exclude: pass the LLP folder or database, or keep_llp_overlap")
    note = progress or (lambda stage, done, total: None)
    data = read_unav_json(annotations, classes)
    note("annotations", len(data.videos), len(data.videos))
    videos = find_videos(videos_dir)
    report = UnavReport(videos_in_file=len(data.videos), classes=len(data.classes), min_overlap=min_overlap,
                        llp_sources=list(heldout_sources or []), llp_heldout_ids=len(heldout or {}))
    report.clips = {"train": 0, "val": 0, "test": 0}
    excluded: dict[str, dict] = {}

    def exclude(reason: str, text: str, video: UnavVideo, why: str) -> None:
        entry = excluded.setdefault(reason, {"reason": text, "count": 0, "by_split": {}, "videos": {}})
        entry["count"] += 1
        entry["by_split"][video.split] = entry["by_split"].get(video.split, 0) + 1
        entry["videos"][video.video_id] = why
        report.excluded_videos[video.video_id] = why

    kept: list[tuple[DenseClip, np.ndarray]] = []
    seen_classes = np.zeros(len(data.classes), dtype=bool)
    for done, video in enumerate(sorted(data.videos, key=lambda v: v.video_id), 1):
        if done % 2000 == 0 or done == len(data.videos):
            note("event grids", done, len(data.videos))
        where = (heldout or {}).get(video.video_id)
        if where is not None and not keep_llp_overlap:
            exclude("llp_overlap", OVERLAP_REASON, video, where)
            continue
        if where is not None:
            report.llp_overlap_kept.append(video.video_id)
        path = videos.get(video.video_id)
        if path is None:
            report.missing_videos.append(video.video_id)
            if not keep_missing_videos:
                exclude("video_missing", MISSING_REASON, video,
                        f"no {video.video_id}.mp4 (or {', '.join(VIDEO_EXTENSIONS[1:])}) in {Path(videos_dir)}")
                continue
        grid, best, dropped = event_labels(video, len(data.classes), min_overlap, keep_short_events)
        report.events += len(video.labels)
        report.events_best_segment += best
        report.events_dropped += dropped
        report.positives += int(grid.sum())
        seen_classes |= grid.any(axis=0)
        report.clips[video.split] += 1
        kept.append((DenseClip(video.video_id, video.split, grid.shape[0], str(path) if path else None), grid))
    report.excluded = {reason: entry["count"] for reason, entry in excluded.items()}
    report.videos_missing = len(report.missing_videos)
    report.videos_found = sum(1 for clip, _ in kept if clip.video is not None)
    report.classes_with_events = int(seen_classes.sum())
    if not kept:
        hint = f"; is {videos_dir} the folder of the <video_id>.mp4 files?" if "video_missing" in excluded else ""
        raise DataFileError(data.path, f"all {len(data.videos)} videos were excluded ({report.excluded}), nothing to "
                                       f"import{hint}")

    grids = {clip.video_id: grid for clip, grid in kept}
    extra = {"import": {
        "annotations": str(data.path.resolve()), "version": data.version, "classes_from": data.classes_from,
        "videos_dir": str(Path(videos_dir).resolve()), "min_overlap": min_overlap,
        "segments": "T = whole seconds of the duration, plus a trailing part covered for at least min_overlap",
        "event_rule": "an event marks each 1-s segment it covers for at least min_overlap of a second; "
                      + ("one too short for that marks the segment it overlaps most" if keep_short_events
                         else "one too short for that marks nothing"),
        "llp_check": {"sources": report.llp_sources, "heldout_ids": report.llp_heldout_ids,
                      "overlap_kept": report.llp_overlap_kept},
        "counts": {"clips": report.clips, "videos_missing": report.videos_missing, "events": report.events,
                   "events_best_segment": report.events_best_segment, "events_dropped": report.events_dropped,
                   "classes_with_events": report.classes_with_events},
    }}
    out = write_dense_events(out_dir, source=SOURCE if data.classes_from == "unav100" else f"{SOURCE} layout",
                             classes=data.classes, clips=[clip for clip, _ in kept],
                             labels=lambda clip: {"av": grids[clip.video_id]}, tracks="av",
                             excluded=excluded, extra=extra, progress=progress)
    report.out = str(out)
    return report
