"""LLP clip filenames: `<11-char YouTube id>_<start>_<end>`.

YouTube ids contain '_' and '-', so the id is the first 11 characters, never a
split on '_'. A few LLP rows carry decimal times (`AP0061o0Nvk_101.8_111.8`).

The grammar is strict (ASCII letters, digits, '_' and '-' in the id; ASCII digits
in the times; nothing before or after) because ids become file names
(`<id>.npy`): a name holding '/', '..', a TAB or a newline must never get that far.
Dense evaluation files also carry orphan names whose id lost characters
(`P7x4FV4lg_570_580`); they are matched by string and never become paths, so
`check_dense_filename` accepts ids of any length, same characters.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

VIDEO_ID_LENGTH = 11
_ID_CHARS = "[A-Za-z0-9_-]"
_TIME = r"[0-9]+(?:\.[0-9]+)?"
_FILENAME_RE = re.compile(rf"(?P<id>{_ID_CHARS}{{{VIDEO_ID_LENGTH}}})_(?P<start>{_TIME})_(?P<end>{_TIME})")
_DENSE_RE = re.compile(rf"{_ID_CHARS}+_{_TIME}_{_TIME}")
_VIDEO_ID_RE = re.compile(rf"{_ID_CHARS}{{{VIDEO_ID_LENGTH}}}")
GRAMMAR = "'<11-char YouTube id>_<start>_<end>' (id: A-Z a-z 0-9 _ -; times: ASCII digits, optionally .digits)"


class ClipNameError(ValueError):
    """A filename that does not follow `<11-char id>_<start>_<end>`."""


@dataclass(frozen=True)
class ClipName:
    filename: str
    video_id: str
    start: float
    end: float


def parse_clip_name(filename: str) -> ClipName:
    match = _FILENAME_RE.fullmatch(filename)
    if match is None:
        raise ClipNameError(f"bad clip filename {filename!r}: expected {GRAMMAR}")
    return ClipName(filename, match["id"], float(match["start"]), float(match["end"]))


def check_dense_filename(filename: str) -> str:
    """A filename of a dense (evaluation or prediction) row: the clip grammar with an id of any length."""
    if _DENSE_RE.fullmatch(filename) is None:
        raise ClipNameError(f"bad clip filename {filename!r}: expected {GRAMMAR}")
    return filename


def check_video_id(video_id: str) -> str:
    """A video id about to become part of a path (`<id>.npy`)."""
    if _VIDEO_ID_RE.fullmatch(video_id) is None:
        raise ClipNameError(f"bad video id {video_id!r}: expected 11 characters of A-Z a-z 0-9 _ -")
    return video_id
