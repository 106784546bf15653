"""Dense-event folders: per-second event labels of untrimmed videos (UnAV-100 and the like).

Why a folder of its own: EAR pre-trains its pseudo-label generator on dense audio-visual
events of videos of any length, not on LLP's 10-s clips, so neither the LLP layout nor the
label store (25 x 10 grids) can hold them. Layout (fixed by the issue-13 interfaces):

    DIR/dense_events.json   {"format": 1, "source": str, "classes": [C names], "tracks": "av",
                             "clips": [{"video_id": str, "split": "train"|"val"|"test",
                                        "segments": T, "video": absolute path | null}],
                             "excluded": {...counts and reasons...}, ...}
    DIR/labels/<track>/<video_id>.npy   (T, C) uint8 0/1, one row per 1-s segment
    DIR/CLIP/features, DIR/CLAP/features, DIR/text/   written by `avvp-studio features`, not here

Tracks: `tracks` lists, comma-separated, the label folders every clip has ("av" for UnAV-100).
A folder may also carry uni-modal labels in labels/audio and labels/visual: a track not listed
is optional, and `load_event_labels` returns it for the clips whose file exists. Other keys of
the JSON (an importer's "import" section) are kept for people and ignored by the reader.

Writing (`write_dense_events`) owns dense_events.json and labels/: they are replaced as one
change (`files.staged_update`), so a re-import removes the label files of clips it no longer
imports and a crash leaves the old version or the new one; features and captions that another
command wrote into the folder stay. A non-empty folder without dense_events.json is refused,
so a data folder is never written into by mistake.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from annotation.errors import DataFileError
from annotation.files import WORK, child_path, folder_lock, present, recover_update, staged_update, write_new
from annotation.npyfile import npy_bytes, read_npy

FORMAT = 1
INDEX_FILE = "dense_events.json"
LABEL_DIR = "labels"
TRACK_NAMES = ("av", "audio", "visual")
SPLITS = ("train", "val", "test")
OWNED = (INDEX_FILE, LABEL_DIR)
MAX_INDEX_BYTES = 256 << 20  # UnAV-100's 10,790 clips take about 1 MB
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")  # ids become file names: <id>.npy
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DenseClip:
    video_id: str
    split: str
    segments: int  # T, one per second
    video: str | None  # absolute path of the video file; None when the importer found none


@dataclass
class DenseEvents:
    root: Path
    source: str
    classes: list[str]
    tracks: str
    clips: list[DenseClip]
    excluded: dict = field(default_factory=dict)

    @property
    def track_names(self) -> tuple[str, ...]:
        return tuple(self.tracks.split(","))

    def clip(self, video_id: str) -> DenseClip:
        for clip in self.clips:
            if clip.video_id == video_id:
                return clip
        raise KeyError(f"no clip {video_id!r} in {self.root / INDEX_FILE}")


def _fail(path: Path, where: str, message: str, clip: str | None = None) -> DataFileError:
    return DataFileError(path, f"{where}: {message}", clip=clip)


def parse_tracks(tracks: str | Iterable[str]) -> tuple[str, ...]:
    """'av' or 'av,audio,visual' (or a sequence of names) -> the checked names."""
    names = tuple(tracks.split(",")) if isinstance(tracks, str) else tuple(tracks)
    if not names or any(n not in TRACK_NAMES for n in names) or len(set(names)) != len(names):
        raise ValueError(f"tracks {','.join(names)!r}: expected distinct names of {TRACK_NAMES}, comma-separated")
    return names


def _check_classes(path: Path, classes) -> list[str]:
    if not isinstance(classes, list) or not classes:
        raise _fail(path, "classes", f"found {type(classes).__name__}; expected a non-empty list of class names")
    for i, name in enumerate(classes):
        if not isinstance(name, str) or not name.strip():
            raise _fail(path, f"classes[{i}]", f"found {name!r}; expected a non-empty string")
    if len(set(classes)) != len(classes):
        dup = next(n for n in classes if classes.count(n) > 1)
        raise _fail(path, "classes", f"{dup!r} is listed twice; expected distinct names")
    return list(classes)


def _check_clip(path: Path, i: int, item) -> DenseClip:
    where = f"clips[{i}]"
    if not isinstance(item, dict):
        raise _fail(path, where, f"found {type(item).__name__}; expected an object")
    vid = item.get("video_id")
    if not isinstance(vid, str) or not _ID_RE.fullmatch(vid):
        raise _fail(path, f"{where}.video_id", f"found {vid!r}; expected 1-128 characters of A-Z a-z 0-9 _ -")
    split, segments, video = item.get("split"), item.get("segments"), item.get("video", None)
    if split not in SPLITS:
        raise _fail(path, f"{where}.split", f"found {split!r}; expected one of {SPLITS}", vid)
    if isinstance(segments, bool) or not isinstance(segments, int) or segments < 1:
        raise _fail(path, f"{where}.segments", f"found {segments!r}; expected a whole number of 1-s segments >= 1", vid)
    if video is not None and (not isinstance(video, str) or not os.path.isabs(video)):
        raise _fail(path, f"{where}.video", f"found {video!r}; expected an absolute path or null", vid)
    return DenseClip(vid, split, segments, video)


def _load_json(path: Path, expected: str):
    if not present(path):
        raise DataFileError(path, f"not found; expected {expected}")
    if path.stat().st_size > MAX_INDEX_BYTES:
        raise DataFileError(path, f"{path.stat().st_size} bytes; expected {expected} of at most "
                                  f"{MAX_INDEX_BYTES} bytes")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFileError(path, f"not UTF-8 text (byte {exc.start}); expected {expected}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFileError(path, f"not valid JSON ({exc.msg}, column {exc.colno}); expected {expected}",
                            line=exc.lineno) from None
    except RecursionError:
        raise DataFileError(path, f"JSON nested too deeply; expected {expected}") from None


def read_dense_events(root: str | Path) -> DenseEvents:
    """The folder's index, checked (format, classes, tracks, every clip); labels are read per clip."""
    root = Path(root)
    path = root / INDEX_FILE
    data = _load_json(path, "a dense-event index (dense_events.json)")
    if not isinstance(data, dict):
        raise DataFileError(path, f"found a JSON {type(data).__name__}; expected an object with format, classes, clips")
    if data.get("format") != FORMAT or isinstance(data.get("format"), bool):
        raise _fail(path, "format", f"found {data.get('format')!r}; expected {FORMAT} (a newer program may have "
                                    "written this folder)")
    source = data.get("source")
    if not isinstance(source, str):
        raise _fail(path, "source", f"found {source!r}; expected a string")
    classes = _check_classes(path, data.get("classes"))
    try:
        tracks = ",".join(parse_tracks(data.get("tracks") if isinstance(data.get("tracks"), str) else ""))
    except ValueError as exc:
        raise _fail(path, "tracks", f"found {data.get('tracks')!r}; {exc}") from None
    items = data.get("clips")
    if not isinstance(items, list):
        raise _fail(path, "clips", f"found {type(items).__name__}; expected a list of clips")
    clips, seen = [], {}
    for i, item in enumerate(items):
        clip = _check_clip(path, i, item)
        if clip.video_id in seen:
            raise _fail(path, f"clips[{i}].video_id", f"{clip.video_id!r} also at clips[{seen[clip.video_id]}]; "
                        "expected each video once (labels are named by id)", clip.video_id)
        seen[clip.video_id] = i
        clips.append(clip)
    excluded = data.get("excluded", {})
    if not isinstance(excluded, dict):
        raise _fail(path, "excluded", f"found {type(excluded).__name__}; expected an object")
    return DenseEvents(root, source, classes, tracks, clips, excluded)


_INDEX_CACHE: dict[Path, tuple[tuple[int, int, int], DenseEvents]] = {}


def _cached_index(root: Path) -> DenseEvents:
    """read_dense_events, memoised on the index file's identity: callers load the labels of
    thousands of clips by folder path, and the index is parsed once."""
    path = root / INDEX_FILE
    try:
        info = path.stat()
    except OSError:
        return read_dense_events(root)  # raises the precise error
    key = (info.st_ino, info.st_size, info.st_mtime_ns)
    hit = _INDEX_CACHE.get(path.resolve())
    if hit is not None and hit[0] == key:
        return hit[1]
    events = read_dense_events(root)
    _INDEX_CACHE.clear()
    _INDEX_CACHE[path.resolve()] = (key, events)
    return events


def label_path(root: str | Path, track: str, video_id: str) -> Path:
    return child_path(Path(root) / LABEL_DIR / track, f"{video_id}.npy")


def load_event_labels(root: str | Path | DenseEvents, clip: DenseClip) -> dict[str, np.ndarray]:
    """{track: (T, C) uint8 0/1} of one clip: every listed track (missing file: an error), plus an
    unlisted one of TRACK_NAMES whose file exists. `root` may be the folder or its read index."""
    events = root if isinstance(root, DenseEvents) else _cached_index(Path(root))
    shape = (clip.segments, len(events.classes))
    expected = f"{shape} (segments, classes) 0/1 event labels, uint8"
    listed = events.track_names
    out = {}
    for track in TRACK_NAMES:
        path = label_path(events.root, track, clip.video_id)
        if track not in listed and not present(path):
            continue
        array = read_npy(path, shape=shape, kinds="iub", expected=expected, clip=clip.video_id)
        if array.size and (array.min() < 0 or array.max() > 1):
            raise DataFileError(path, f"values outside 0/1 (min {array.min()}, max {array.max()}); expected {expected}",
                                clip=clip.video_id)
        out[track] = array.astype(np.uint8, copy=False)
    return out


def _check_target(out: Path) -> None:
    """Write only into an empty folder or one that already holds a dense-event index."""
    names = [n for n in os.listdir(out) if n != WORK]
    if not names:
        return
    index = out / INDEX_FILE
    if INDEX_FILE not in names:
        raise DataFileError(out, f"not empty and holds no {INDEX_FILE}, so it is not a dense-event folder; "
                                 "choose an empty or new folder")
    try:
        data = json.loads(index.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        data = None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataFileError(index, f"not a dense-event index of format {FORMAT}; refusing to replace it (remove it "
                                   "yourself if this folder may be overwritten)")


def write_dense_events(out_dir: str | Path, *, source: str, classes: list[str], clips: list[DenseClip],
                       labels: Callable[[DenseClip], dict[str, np.ndarray]], tracks: str | Iterable[str] = "av",
                       excluded: dict | None = None, extra: dict | None = None,
                       progress: Progress | None = None) -> Path:
    """Write (or replace) a dense-event folder; returns its absolute path.

    `labels(clip)` gives the clip's {track: (T, C) 0/1 array}, every listed track included.
    The JSON holds no time stamp, so importing the same input twice writes the same bytes."""
    note = progress or (lambda stage, done, total: None)
    names = parse_tracks(tracks)
    classes = list(classes)
    if not classes or len(set(classes)) != len(classes):
        raise ValueError("classes: expected a non-empty list of distinct names")
    seen: set[str] = set()
    for clip in clips:
        if not _ID_RE.fullmatch(clip.video_id) or clip.video_id in seen:
            raise ValueError(f"clip id {clip.video_id!r}: expected distinct ids of A-Z a-z 0-9 _ -")
        if clip.split not in SPLITS or clip.segments < 1:
            raise ValueError(f"clip {clip.video_id}: split {clip.split!r} / segments {clip.segments}")
        seen.add(clip.video_id)
    payload = {"format": FORMAT, "source": source, "classes": classes, "tracks": ",".join(names),
               "clips": [asdict(c) for c in clips], "excluded": excluded or {}}
    for key, value in (extra or {}).items():
        if key in payload:
            raise ValueError(f"extra key {key!r} would overwrite a field of the index")
        payload[key] = value

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()
    with folder_lock(out, "dense-event import"):
        recover_update(out)
        _check_target(out)
        with staged_update(out, OWNED) as build:
            for track in names:
                (build / LABEL_DIR / track).mkdir(parents=True)
            for i, clip in enumerate(clips, 1):
                arrays = labels(clip)
                for track, array in arrays.items():
                    _write_label(build, track, names, clip, array, len(classes))
                lacking = [t for t in names if t not in arrays]
                if lacking:
                    raise ValueError(f"clip {clip.video_id}: no {lacking[0]!r} labels given")
                if i % 2000 == 0 or i == len(clips):
                    note("event labels", i, len(clips))
            write_new(build / INDEX_FILE, _index_text(payload).encode("utf-8"))
    return out


def _index_text(payload: dict) -> str:
    """One top-level key per line and one clip per line: readable, and diffs of two imports stay small."""
    def dump(value) -> str:
        return json.dumps(value, ensure_ascii=False)

    fields = [f" {dump(k)}: " + ("[\n" + ",\n".join(f"  {dump(c)}" for c in v) + "\n ]" if k == "clips" and v
                                 else dump(v)) for k, v in payload.items()]
    return "{\n" + ",\n".join(fields) + "\n}\n"


def _write_label(build: Path, track: str, listed: tuple[str, ...], clip: DenseClip, array: np.ndarray,
                 num_classes: int) -> None:
    array = np.asarray(array)
    if track not in TRACK_NAMES:
        raise ValueError(f"clip {clip.video_id}: unknown label track {track!r}; expected one of {TRACK_NAMES}")
    if array.shape != (clip.segments, num_classes) or array.dtype.kind not in "iub":
        raise ValueError(f"clip {clip.video_id} {track}: shape {array.shape} dtype {array.dtype}; expected "
                         f"({clip.segments}, {num_classes}) integers")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(f"clip {clip.video_id} {track}: values outside 0/1")
    folder = build / LABEL_DIR / track
    if track not in listed:
        folder.mkdir(parents=True, exist_ok=True)
    write_new(child_path(folder, f"{clip.video_id}.npy"), npy_bytes(array.astype(np.uint8)))
