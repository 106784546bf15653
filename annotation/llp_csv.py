"""Reading and writing the LLP CSV files (TAB-separated, header row, LF endings).

Readers stream the file line by line (memory does not grow with its size beyond
the rows kept) and raise `DataFileError` naming file, line and what was expected.
LLP quirks (degenerate intervals, duplicate or orphan dense rows, classes outside
the weak label) are data, not errors, and are kept as they are.

Strictness that protects the data:
- fields are split on TAB with no CSV quoting (LLP files have none), so a quoted
  field can never smuggle a TAB or a newline into a clip name;
- a file whose last line does not end with a newline is refused: a copy cut short
  between two class names (`Cheering,Acoustic_guitar` -> `Cheering`) or two digits
  (`10` -> `1`) still parses, so no check of the last line could make it safe;
- onsets and offsets are ASCII digits only (`int()` would take ' 2', '1_0', '٣').
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from annotation.clipname import ClipNameError, check_dense_filename, parse_clip_name
from annotation.errors import DataFileError
from annotation.grid import GRID_SHAPE, batch_intervals
from annotation.taxonomy import CLASSES, NUM_SEGMENTS, UnknownClassError, class_index, parse_label_list

WEAK_HEADER = ("filename", "event_labels")
DENSE_HEADER = ("filename", "onset", "offset", "event_labels")
MAX_LINE_BYTES = 65536  # an LLP row is under 200 bytes; a longer "line" is not a CSV row
_SECOND = re.compile(r"[0-9]{1,2}")
_CHUNK = 65536  # dense rows turned into grid cells per numpy step


@dataclass(frozen=True, slots=True)
class WeakRow:
    filename: str
    labels: tuple[int, ...]
    line: int


@dataclass(frozen=True, slots=True)
class DenseRow:
    filename: str
    cls: int
    onset: int
    offset: int
    line: int


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text without its line end) of a UTF-8 text file, streamed."""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise DataFileError(path, f"cannot open: {exc.strerror}") from None
    number = 0
    with handle:
        while True:
            try:
                raw = handle.readline(MAX_LINE_BYTES + 1)
            except OSError as exc:
                raise DataFileError(path, f"read error: {exc.strerror}", line=number + 1) from None
            if not raw:
                break
            number += 1
            if len(raw) > MAX_LINE_BYTES:
                raise DataFileError(path, f"line longer than {MAX_LINE_BYTES} bytes; expected a short TAB-separated row",
                                    line=number)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataFileError(path, f"not UTF-8 text (byte {raw[exc.start]:#04x}); expected a TAB-separated CSV",
                                    line=number) from None
            if not raw.endswith(b"\n"):  # only the last line can lack one
                raise DataFileError(path, "the last line does not end with a newline, so the file may be cut short "
                                          "(an interrupted copy or download); expected every line to end with LF",
                                    line=number)
            yield number, text[:-2] if text.endswith("\r\n") else text[:-1]


def _read_table(path: Path, header: Sequence[str]) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) after checking the header; blank lines are skipped."""
    lines = _lines(path)
    first = next(lines, None)
    if first is None:
        raise DataFileError(path, f"empty file; expected a header {'<TAB>'.join(header)}")
    names = first[1].split("\t")
    if tuple(h.strip() for h in names) != tuple(header):
        raise DataFileError(path, f"header is {names!r}; expected the TAB-separated columns {list(header)}", line=1)
    for line, text in lines:
        if not text:
            continue
        fields = text.split("\t")
        if len(fields) != len(header):
            raise DataFileError(
                path, f"{len(fields)} column(s); expected {len(header)} TAB-separated columns {list(header)}", line=line)
        yield line, fields


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


def _second(path: Path, line: int, name: str, text: str) -> int:
    if not _SECOND.fullmatch(text):
        raise DataFileError(path, f"{name} {text!r} is not an integer second 0..{NUM_SEGMENTS} (ASCII digits only)",
                            line=line)
    value = int(text)
    if value > NUM_SEGMENTS:
        raise DataFileError(path, f"{name} {value} outside 0..{NUM_SEGMENTS}", line=line)
    return value


def iter_dense_csv(path: str | Path) -> Iterator[DenseRow]:
    """The rows of a dense evaluation file (AVVP_eval_audio.csv / AVVP_eval_visual.csv) or a prediction CSV.

    Filenames are kept verbatim (orphans and typos included): evaluation matches by string.
    """
    path = Path(path)
    for line, (filename, onset, offset, label) in _read_table(path, DENSE_HEADER):
        try:
            check_dense_filename(filename)
            cls = class_index(label)
        except (ClipNameError, UnknownClassError) as exc:
            raise DataFileError(path, str(exc), line=line) from None
        yield DenseRow(filename, cls, _second(path, line, "onset", onset), _second(path, line, "offset", offset), line)


def read_dense_csv(path: str | Path) -> list[DenseRow]:
    return list(iter_dense_csv(path))


@dataclass
class DenseTally:
    """What `dense_grids` saw besides the grids: all rows, the wanted clips some row names, and
    the rows of other clips (LLP's orphans, or predictions of other splits); their distinct names
    only when `other_names` is a set to fill (they are unbounded in a hostile file)."""

    rows: int = 0
    named: set[str] = field(default_factory=set)
    other_rows: int = 0
    other_names: set[str] | None = None
    name_limit: int = 10000  # distinct other names kept at most (then `names_capped`)
    names_capped: bool = False


def dense_grids(rows: Iterable[DenseRow], filenames: Sequence[str], tally: DenseTally | None = None) -> np.ndarray:
    """Dense rows -> (len(filenames), 25, 10) uint8 grids; rows of other filenames are ignored.

    Vectorised `grid[c, onset:offset] = 1` (nothing for onset >= offset), in chunks, so a
    stream of any length needs memory for the grids only.
    """
    index = {name: i for i, name in enumerate(filenames)}
    grids = np.zeros((len(filenames), *GRID_SHAPE), dtype=np.uint8)
    seg = np.arange(NUM_SEGMENTS)
    picked: list[tuple[int, int, int, int]] = []

    def flush() -> None:
        if picked:
            arr = np.asarray(picked, dtype=np.int64)
            cells = (seg[None, :] >= arr[:, 2:3]) & (seg[None, :] < arr[:, 3:4])
            np.logical_or.at(grids, (arr[:, 0], arr[:, 1]), cells.astype(np.uint8))
            picked.clear()

    for r in rows:
        i = index.get(r.filename)
        if tally is not None:
            tally.rows += 1
            if i is None:
                tally.other_rows += 1
                if tally.other_names is not None:
                    if len(tally.other_names) < tally.name_limit:
                        tally.other_names.add(r.filename)
                    elif r.filename not in tally.other_names:
                        tally.names_capped = True
            else:
                tally.named.add(r.filename)
        if i is not None:
            picked.append((i, r.cls, r.onset, r.offset))
            if len(picked) >= _CHUNK:
                flush()
    flush()
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
