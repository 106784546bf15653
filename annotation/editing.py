"""Pure label-grid operations behind every edit the annotator can make.

They return new grids and never mutate their input, so an undo command can
keep the grid before and after without copies of its own.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from annotation.grid import as_grid


def set_cells(grid: np.ndarray, cells: Iterable[tuple[int, int]], value: int) -> np.ndarray:
    out = as_grid(grid)
    for cls, seg in cells:
        out[cls, seg] = 1 if value else 0
    return out


def toggle_class(grid: np.ndarray, cls: int, start: int, end: int) -> np.ndarray:
    """Apply class `cls` over segments start..end (inclusive), or clear it if it is already on over all of them."""
    start, end = min(start, end), max(start, end)
    out = as_grid(grid)
    out[cls, start:end + 1] = 0 if out[cls, start:end + 1].all() else 1
    return out


def copy_rows(source: np.ndarray, target: np.ndarray, classes: Iterable[int] | None = None) -> np.ndarray:
    """Target grid with the given class rows (all if None) copied from source."""
    out = as_grid(target)
    rows = list(range(out.shape[0])) if classes is None else list(classes)
    out[rows] = as_grid(source)[rows]
    return out


def clear(grid: np.ndarray) -> np.ndarray:
    return np.zeros_like(as_grid(grid))


def audio_visual(audio: np.ndarray, visual: np.ndarray) -> np.ndarray:
    """Audio-visual events: heard AND seen."""
    return (as_grid(audio) & as_grid(visual)).astype(np.uint8)
