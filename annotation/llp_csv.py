"""Reading and writing the LLP CSV files (TAB-separated, header row, LF endings).

Readers validate every line and raise `DataFileError` naming file, line and what
was expected. LLP quirks (degenerate intervals, duplicate or orphan dense rows,
classes outside the weak label) are data, not errors, and are kept as they are.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from annotation.clipname import ClipNameError, parse_clip_name
from annotation.errors import DataFileError
from annotation.grid import GRID_SHAPE, batch_intervals
from annotation.taxonomy import CLASSES, NUM_SEGMENTS, UnknownClassError, class_index, parse_label_list

WEAK_HEADER = ("filename", "event_labels")
DENSE_HEADER = ("filename", "onset", "offset", "event_labels")


@dataclass(frozen=True)
class WeakRow:
    filename: str
    labels: tuple[int, ...]
    line: int


@dataclass(frozen=True)
class DenseRow:
    filename: str
    cls: int
    onset: int
    offset: int
    line: int


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataFileError(path, f"cannot open: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataFileError(path, f"not UTF-8 text (byte {raw[exc.start]:#04x}); expected a TAB-separated CSV",
                            line=line) from None


def _read_table(path: Path, header: Sequence[str]) -> Iterable[tuple[int, list[str]]]:
    """Yield (line number, fields) after checking the header; line numbers are 1-based."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), delimiter="\t")
    try:
        first = next(reader)
    except StopIteration:
        raise DataFileError(path, f"empty file; expected a header {'<TAB>'.join(header)}") from None
    if tuple(h.strip() for h in first) != tuple(header):
        raise DataFileError(path, f"header is {first!r}; expected the TAB-separated columns {list(header)}", line=1)
    for fields in reader:
        if not fields or fields == [""]:
            continue
        if len(fields) != len(header):
            raise DataFileError(
                path, f"{len(fields)} column(s); expected {len(header)} TAB-separated columns {list(header)}",
                line=reader.line_num,
            )
        yield reader.line_num, fields


def read_weak_csv(path: str | Path) -> list[WeakRow]:
    """A weak-label file (AVVP_train.csv, AVVP_val_pd.csv, AVVP_test_pd.csv)."""
    path = Path(path)
    rows = []
    for line, (filename, labels) in _read_table(path, WEAK_HEADER):
        try:
            parse_clip_name(filename)
            indices = parse_label_list(labels)
        except (ClipNameError, UnknownClassError) as exc:
            raise DataFileError(path, str(exc), line=line) from None
        if not indices:
            raise DataFileError(path, "no event label; expected at least one class", line=line, clip=filename)
        rows.append(WeakRow(filename, tuple(indices), line))
    return rows


def _int_field(path: Path, line: int, name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise DataFileError(path, f"{name} {text!r} is not an integer second 0..{NUM_SEGMENTS}", line=line) from None
    if not 0 <= value <= NUM_SEGMENTS:
        raise DataFileError(path, f"{name} {value} outside 0..{NUM_SEGMENTS}", line=line)
    return value


def read_dense_csv(path: str | Path) -> list[DenseRow]:
    """A dense evaluation file (AVVP_eval_audio.csv / AVVP_eval_visual.csv) or a prediction CSV.

    Filenames are kept verbatim (orphans and typos included): evaluation matches by string.
    """
    path = Path(path)
    rows = []
    for line, (filename, onset, offset, label) in _read_table(path, DENSE_HEADER):
        try:
            cls = class_index(label)
        except UnknownClassError as exc:
            raise DataFileError(path, str(exc), line=line) from None
        rows.append(
            DenseRow(filename, cls, _int_field(path, line, "onset", onset), _int_field(path, line, "offset", offset), line)
        )
    return rows


def dense_grids(rows: Iterable[DenseRow], filenames: Sequence[str]) -> np.ndarray:
    """Dense rows -> (len(filenames), 25, 10) uint8 grids; rows of other filenames are ignored.

    Vectorised `grid[c, onset:offset] = 1` (nothing for onset >= offset).
    """
    index = {name: i for i, name in enumerate(filenames)}
    grids = np.zeros((len(filenames), *GRID_SHAPE), dtype=np.uint8)
    picked = [(index[r.filename], r.cls, r.onset, r.offset) for r in rows if r.filename in index]
    if picked:
        arr = np.asarray(picked, dtype=np.int64)
        seg = np.arange(NUM_SEGMENTS)
        cells = (seg[None, :] >= arr[:, 2:3]) & (seg[None, :] < arr[:, 3:4])
        np.logical_or.at(grids, (arr[:, 0], arr[:, 1]), cells.astype(np.uint8))
    return grids


def write_dense_csv(path: str | Path, grids: Mapping[str, np.ndarray]) -> int:
    """Grids -> dense CSV, one row per maximal run; returns the number of rows written."""
    path = Path(path)
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(DENSE_HEADER)
        names = list(grids)
        if names:
            rows = batch_intervals(np.stack([grids[n] for n in names]))
            writer.writerows((names[v], on, off, CLASSES[c]) for v, c, on, off in rows.tolist())
            count = len(rows)
    return count


def write_weak_csv(path: str | Path, labels: Mapping[str, Iterable[int]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(WEAK_HEADER)
        for filename, indices in labels.items():
            writer.writerow((filename, ",".join(CLASSES[i] for i in sorted(set(indices)))))
