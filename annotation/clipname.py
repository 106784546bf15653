"""LLP clip filenames: `<11-char YouTube id>_<start>_<end>`.

YouTube ids contain '_' and '-', so the id is the first 11 characters, never a
split on '_'. A few LLP rows carry decimal times (`AP0061o0Nvk_101.8_111.8`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

VIDEO_ID_LENGTH = 11
_TIME = r"\d+(?:\.\d+)?"
_FILENAME_RE = re.compile(rf"^(?P<id>.{{{VIDEO_ID_LENGTH}}})_(?P<start>{_TIME})_(?P<end>{_TIME})$")


class ClipNameError(ValueError):
    """A filename that does not follow `<11-char id>_<start>_<end>`."""


@dataclass(frozen=True)
class ClipName:
    filename: str
    video_id: str
    start: float
    end: float


def parse_clip_name(filename: str) -> ClipName:
    match = _FILENAME_RE.match(filename)
    if match is None:
        raise ClipNameError(
            f"bad clip filename {filename!r}: expected '<11-char YouTube id>_<start>_<end>'"
        )
    return ClipName(filename, match["id"], float(match["start"]), float(match["end"]))


def video_id_of(filename: str) -> str:
    return parse_clip_name(filename).video_id
