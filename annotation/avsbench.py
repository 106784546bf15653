"""The AVSBench data layouts (S4, MS3, AVSS), read exactly as the official loaders read them.

OpenNLPLab/AVSBench (avs_scripts/*/dataloader.py, color_dataloader.py):
  S4    Single-source/s4_meta_data.csv (column 0 name, column 2 category, column 'split');
        s4_data/visual_frames/SPLIT/CATEGORY/NAME/NAME_k.png (k = 1..5),
        s4_data/gt_masks/SPLIT/CATEGORY/NAME/NAME_k.png (train: k = 1 only),
        s4_data/audio_log_mel/SPLIT/CATEGORY/NAME.pkl, s4_data/audio_wav/SPLIT/CATEGORY/NAME.wav
  MS3   Multi-sources/ms3_meta_data.csv (column 0 name, column 'split');
        ms3_data/visual_frames/NAME/NAME.mp4_k.png (no split level), ms3_data/gt_masks/SPLIT/NAME/NAME_k.png,
        ms3_data/audio_log_mel/SPLIT/NAME.pkl, ms3_data/audio_wav/SPLIT/NAME.wav
  AVSS  metadata.csv (columns uid, label, split), label2idx.json (71 classes, 0 = background);
        LABEL/UID/frames/i.jpg, LABEL/UID/labels_rgb/i.png (i from 0), LABEL/UID/audio.wav;
        LABEL is v1s (5 frames, ground truth on frame 0 only in train), v1m (5) or v2 (10).
ROOT may be the AVSBench data folder (holding Single-source/, Multi-sources/) or the subset's own
folder; AVSS ships both with its label folders beside metadata.csv and one level down in a folder of
its own (AVSBench-semantic/), and both are read. Nothing here imports torch or Qt.
"""
from __future__ import annotations

import csv
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from annotation.errors import DataFileError
from annotation.files import child_path, present

SUBSETS = ("s4", "ms3", "avss")
SPLITS = ("train", "val", "test")
AVSS_CLASSES = 71
AVSS_SETS = {"v1s": 5, "v1m": 5, "v2": 10}
AVSS_FOLDER = "AVSBench-semantic"
SUBSET_FOLDERS = {"s4": "Single-source", "ms3": "Multi-sources"}
META_FILES = {"s4": "s4_meta_data.csv", "ms3": "ms3_meta_data.csv", "avss": "metadata.csv"}
AUDIO_SECONDS = {"s4": 5, "ms3": 5, "avss": 10}


@dataclass(frozen=True)
class AVSClip:
    """One clip: its frames in order, the ground-truth mask of each frame (None: not annotated)."""

    subset: str
    split: str
    name: str
    category: str  # S4: the sound category; MS3: ''; AVSS: the label folder (v1s, v1m, v2)
    frames: tuple[Path, ...]
    masks: tuple[Path | None, ...]
    audio_pkl: Path | None
    audio_wav: Path | None

    @property
    def relative_dir(self) -> Path:
        """Where this clip's masks go in the subset's gt_masks layout (also the prediction layout)."""
        if self.subset == "s4":
            return Path(self.category) / self.name
        if self.subset == "ms3":
            return Path(self.name)
        return Path(self.category) / self.name

    def mask_name(self, k: int) -> str:
        """File name of frame k's mask (k from 0) in the subset's layout."""
        return f"{k}.png" if self.subset == "avss" else f"{self.name}_{k + 1}.png"

    def folder_in(self, root: Path) -> Path:
        """ROOT/<relative_dir>, each part checked to be a plain name (names come from metadata files)."""
        folder = root
        for part in self.relative_dir.parts:
            folder = child_path(folder, part)
        return folder


@dataclass
class AVSData:
    root: Path  # the subset's folder
    subset: str
    clips: list[AVSClip]
    classes: list[str] = field(default_factory=list)  # AVSS: index -> class name

    def split(self, split: str) -> list[AVSClip]:
        return [c for c in self.clips if split in ("all", c.split)]


def subset_root(root: str | Path, subset: str) -> Path:
    """The folder holding the subset's metadata file (ROOT itself or the AVSBench folder below it)."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown AVSBench subset {subset!r}; expected one of {', '.join(SUBSETS)}")
    root = Path(root)
    if not present(root, "folder"):
        raise DataFileError(root, "no such folder")
    candidates = [root]
    if subset in SUBSET_FOLDERS:
        candidates.insert(0, root / SUBSET_FOLDERS[subset])
    else:
        candidates.append(root / AVSS_FOLDER)
    for folder in candidates:
        if present(folder / META_FILES[subset]):
            return folder
    looked = " or ".join(str(f / META_FILES[subset]) for f in candidates)
    others = [s for s in SUBSETS if s != subset and any(
        (folder / META_FILES[s]).is_file() for folder in (root, root / SUBSET_FOLDERS.get(s, AVSS_FOLDER)))]
    hint = f" (it holds AVSBench {', '.join(s.upper() for s in others)}: --subset {others[0]}?)" if others else ""
    if not hint and root.name in ("s4_data", "ms3_data"):
        hint = f" (this is the data folder inside the subset's: give its parent, {root.parent})"
    raise DataFileError(root, f"not an AVSBench {subset.upper()} folder: expected {looked}{hint}")


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except UnicodeDecodeError as exc:
        raise DataFileError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not rows:
        raise DataFileError(path, "empty file; expected a header line")
    header = [h.strip() for h in rows[0]]
    return header, [(n, [c.strip() for c in row]) for n, row in enumerate(rows[1:], start=2) if any(row)]


def _column(header: list[str], path: Path, name: str) -> int:
    if name not in header:
        raise DataFileError(path, f"no {name!r} column in the header {header}", line=1)
    return header.index(name)


def _require(path: Path, what: str, clip: str, meta: Path, line: int) -> Path:
    if not present(path):
        raise DataFileError(path, f"missing {what} of clip {clip} (listed in {meta.name} line {line})")
    return path


def _optional(path: Path) -> Path | None:
    return path if present(path) else None


def read_avsbench(root: str | Path, subset: str) -> AVSData:
    """Every clip of the subset with its files, checked to exist; the first missing file is an error
    naming it and the metadata line that lists its clip. Audio: the .pkl log-mel where the layout has
    one, else the wav; a clip with neither is an error."""
    folder = subset_root(root, subset)
    meta = folder / META_FILES[subset]
    header, rows = _read_csv(meta)
    split_col = _column(header, meta, "split")
    reader = {"s4": _s4_clip, "ms3": _ms3_clip, "avss": _avss_clip}[subset]
    context = _avss_context(folder, header, meta) if subset == "avss" else {}
    clips, seen = [], {}
    for line, row in rows:
        if len(row) != len(header):
            raise DataFileError(meta, f"{len(row)} fields; expected {len(header)} as in the header", line=line)
        split = row[split_col]
        if split not in SPLITS:
            raise DataFileError(meta, f"split {split!r}; expected one of {', '.join(SPLITS)}", line=line)
        clip = reader(folder, meta, line, row, split, **context)
        if clip.name in seen:
            raise DataFileError(meta, f"clip {clip.name} listed twice (first on line {seen[clip.name]})", line=line)
        seen[clip.name] = line
        clips.append(clip)
    if not clips:
        raise DataFileError(meta, "lists no clips")
    return AVSData(folder, subset, clips, context.get("classes", []))


def _check_name(meta: Path, line: int, name: str, what: str = "name") -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise DataFileError(meta, f"{what} {name!r} is not a plain file name", line=line)
    return name


def _s4_clip(folder: Path, meta: Path, line: int, row: list[str], split: str) -> AVSClip:
    if len(row) < 3:
        raise DataFileError(meta, "expected at least 3 columns (name, start, category, ...)", line=line)
    name, category = _check_name(meta, line, row[0]), _check_name(meta, line, row[2], "category")
    data = folder / "s4_data"
    frames = tuple(_require(data / "visual_frames" / split / category / name / f"{name}_{k}.png", f"frame {k}", name,
                            meta, line) for k in range(1, 6))
    annotated = 1 if split == "train" else 5
    masks = tuple(_require(data / "gt_masks" / split / category / name / f"{name}_{k}.png", f"mask {k}", name, meta,
                           line) if k <= annotated else None for k in range(1, 6))
    pkl = _optional(data / "audio_log_mel" / split / category / f"{name}.pkl")
    wav = _optional(data / "audio_wav" / split / category / f"{name}.wav")
    return _with_audio(AVSClip("s4", split, name, category, frames, masks, pkl, wav), meta, line)


def _ms3_clip(folder: Path, meta: Path, line: int, row: list[str], split: str) -> AVSClip:
    name = _check_name(meta, line, row[0])
    data = folder / "ms3_data"
    frames = tuple(_require(data / "visual_frames" / name / f"{name}.mp4_{k}.png", f"frame {k}", name, meta, line)
                   for k in range(1, 6))
    masks = tuple(_require(data / "gt_masks" / split / name / f"{name}_{k}.png", f"mask {k}", name, meta, line)
                  for k in range(1, 6))
    pkl = _optional(data / "audio_log_mel" / split / f"{name}.pkl")
    wav = _optional(data / "audio_wav" / split / f"{name}.wav")
    return _with_audio(AVSClip("ms3", split, name, "", frames, masks, pkl, wav), meta, line)


def _with_audio(clip: AVSClip, meta: Path, line: int) -> AVSClip:
    if clip.audio_pkl is None and clip.audio_wav is None:
        raise DataFileError(meta, f"clip {clip.name} has no audio (neither the .pkl log-mel nor the .wav)", line=line)
    return clip


def _avss_context(folder: Path, header: list[str], meta: Path) -> dict:
    labels = folder / "label2idx.json"
    if not present(labels):
        raise DataFileError(labels, "missing: AVSS needs label2idx.json beside metadata.csv")
    try:
        mapping = json.loads(labels.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataFileError(labels, f"not valid JSON: {exc}") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, int) for v in mapping.values()):
        raise DataFileError(labels, "expected an object mapping class names to integer indices")
    if sorted(mapping.values()) != list(range(AVSS_CLASSES)):
        raise DataFileError(labels, f"expected the {AVSS_CLASSES} indices 0..{AVSS_CLASSES - 1} once each, "
                                    f"found {len(mapping)} entries")
    classes = [""] * AVSS_CLASSES
    for name, index in mapping.items():
        classes[index] = name
    return {"classes": classes, "uid_col": _column(header, meta, "uid"), "label_col": _column(header, meta, "label")}


def _avss_clip(folder: Path, meta: Path, line: int, row: list[str], split: str, classes: list[str], uid_col: int,
               label_col: int) -> AVSClip:
    uid, label = _check_name(meta, line, row[uid_col], "uid"), row[label_col]
    if label not in AVSS_SETS:
        raise DataFileError(meta, f"label {label!r}; expected one of {', '.join(AVSS_SETS)}", line=line)
    base = folder / label / uid
    if not present(base, "folder"):
        raise DataFileError(base, f"missing folder of clip {uid} (listed in {meta.name} line {line})")
    count = AVSS_SETS[label]
    frames = tuple(_require(base / "frames" / f"{i}.jpg", f"frame {i}", uid, meta, line) for i in range(count))
    annotated = 1 if label == "v1s" and split == "train" else count
    masks = tuple(_require(base / "labels_rgb" / f"{i}.png", f"mask {i}", uid, meta, line) if i < annotated else None
                  for i in range(count))
    wav = _require(base / "audio.wav", "audio", uid, meta, line)
    return AVSClip("avss", split, uid, label, frames, masks, None, wav)


# ---------------------------------------------------------------- images and masks

def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    data = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if data is None:
        raise DataFileError(path, "not a readable image (PNG or JPEG expected)")
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)


def _read_raw(path: Path) -> np.ndarray:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise DataFileError(path, "not a readable PNG mask")
    if data.dtype != np.uint8:
        raise DataFileError(path, f"{data.dtype} pixels; expected 8-bit")
    return data


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from a PNG header, else by decoding; an unreadable image is an error naming it."""
    with open(path, "rb") as handle:
        head = handle.read(24)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return height, width
    return _decoded_size(path)


def _decoded_size(path: Path) -> tuple[int, int]:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataFileError(path, "not a readable image (PNG or JPEG expected)")
    return image.shape[:2]


def read_binary_mask(path: Path) -> np.ndarray:
    """(H, W) uint8 in {0, 1}: foreground where the brightest channel is >= 128. AVSBench's masks are 0/255, which
    the official loaders' PIL conversions (S4 mode '1', MS3 mode 'P') read the same way; for other grey levels
    PIL would dither, which no metric should depend on. Alpha is ignored."""
    data = _read_raw(path)
    if data.ndim == 3:
        data = data[..., :3].max(axis=2)
    return (data >= 128).astype(np.uint8)


def read_truth(path: Path, subset: str) -> tuple[np.ndarray, int]:
    """A ground-truth mask of `subset` (AVSS class indices, else 0/1) and its pixels outside the palette (AVSS)."""
    return read_class_mask(path) if subset == "avss" else (read_binary_mask(path), 0)


def check_mask_size(mask_path: Path, mask: np.ndarray, frame: Path, frame_size: tuple[int, ...], clip: str) -> None:
    if mask.shape != tuple(frame_size):
        raise DataFileError(mask_path, f"mask is {mask.shape[1]}x{mask.shape[0]} but its frame {frame.name} is "
                                       f"{frame_size[1]}x{frame_size[0]}", clip=clip)


def palette(classes: int = AVSS_CLASSES) -> np.ndarray:
    """(classes, 3) uint8 RGB: AVSBench's unified palette (the PASCAL VOC bit-interleaved colour map)."""
    colours = np.zeros((classes, 3), np.uint8)
    for index in range(classes):
        label, shift = index, 7
        while label > 0:
            for channel in range(3):
                colours[index, channel] |= ((label >> channel) & 1) << shift
            label >>= 3
            shift -= 1
    return colours


_PALETTE = palette()
_COLOUR_KEY = {int(r) << 16 | int(g) << 8 | int(b): i for i, (r, g, b) in enumerate(_PALETTE)}


def read_class_mask(path: Path) -> tuple[np.ndarray, int]:
    """(H, W) uint8 class indices of an AVSS colour mask, and how many pixels had a colour outside the
    palette (the official loader's argmax over all-false matches makes those background, class 0)."""
    data = _read_raw(path)
    if data.ndim == 2:
        data = np.repeat(data[..., None], 3, axis=2)
    rgb = cv2.cvtColor(np.ascontiguousarray(data[..., :3]), cv2.COLOR_BGR2RGB).astype(np.int64)
    keys = rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]
    lookup_keys = np.array(sorted(_COLOUR_KEY), np.int64)
    lookup_vals = np.array([_COLOUR_KEY[k] for k in lookup_keys], np.uint8)
    pos = np.clip(np.searchsorted(lookup_keys, keys), 0, len(lookup_keys) - 1)
    known = lookup_keys[pos] == keys
    return np.where(known, lookup_vals[pos], 0).astype(np.uint8), int((~known).sum())


def class_mask_to_rgb(classes: np.ndarray) -> np.ndarray:
    return _PALETTE[classes]


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of (H, W) grey or (H, W, 3) RGB uint8."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise ValueError("PNG encoding failed")
    return data.tobytes()


def decode_png(data: bytes, colour: bool = False) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError("stored mask is not a PNG")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if colour else image
