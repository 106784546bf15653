"""Errors that point at the exact place of bad input."""
from __future__ import annotations

from pathlib import Path


class DataFileError(ValueError):
    """Bad input data: says which file, which line (or clip) and what was expected."""

    def __init__(self, path: str | Path, message: str, line: int | None = None, clip: str | None = None):
        self.path = Path(path)
        self.line = line
        self.clip = clip
        self.detail = message
        where = str(self.path)
        if line is not None:
            where += f", line {line}"
        if clip is not None:
            where += f", clip {clip}"
        super().__init__(f"{where}: {message}")
