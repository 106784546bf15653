"""Label grids: 25 classes x 10 segments of 0/1 for one track of one clip.

In memory a grid is a numpy uint8 array of shape (25, 10) (classes, segments),
the layout of the evaluation code. Pseudo-label .npy files use the transposed
(10, 25) layout; conversions live here and nowhere else.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from annotation.taxonomy import NUM_CLASSES, NUM_SEGMENTS

GRID_SHAPE = (NUM_CLASSES, NUM_SEGMENTS)
PSEUDO_SHAPE = (NUM_SEGMENTS, NUM_CLASSES)
PACKED_BYTES = (NUM_CLASSES * NUM_SEGMENTS + 7) // 8
TRACKS = ("audio", "visual")


def empty_grid() -> np.ndarray:
    return np.zeros(GRID_SHAPE, dtype=np.uint8)


def as_grid(values: np.ndarray) -> np.ndarray:
    """Validate and normalise anything grid-like to a (25, 10) uint8 0/1 array."""
    arr = np.asarray(values)
    if arr.shape != GRID_SHAPE:
        raise ValueError(f"grid must have shape {GRID_SHAPE}, got {arr.shape}")
    if not np.isin(arr, (0, 1)).all():
        raise ValueError("grid values must be 0 or 1")
    return arr.astype(np.uint8, copy=True)


def weak_grid(class_indices: Iterable[int]) -> np.ndarray:
    """The weak (video-level) label spread over all 10 segments."""
    grid = empty_grid()
    grid[list(class_indices), :] = 1
    return grid


def grid_from_intervals(intervals: Iterable[tuple[int, int, int]]) -> np.ndarray:
    """(class, onset, offset) rows -> grid; onset inclusive, offset exclusive.

    onset >= offset sets nothing, exactly like `grid[c, onset:offset] = 1` in the
    published evaluation code (LLP has such rows).
    """
    grid = empty_grid()
    for cls, onset, offset in intervals:
        grid[cls, onset:offset] = 1
    return grid


def runs(row: np.ndarray) -> Iterator[tuple[int, int]]:
    """Maximal runs of 1s in a 0/1 row as (onset, offset) pairs."""
    padded = np.concatenate(([0], np.asarray(row, dtype=np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    for onset, offset in zip(edges[0::2], edges[1::2]):
        yield int(onset), int(offset)


def batch_intervals(grids: np.ndarray) -> np.ndarray:
    """(V, 25, 10) grids -> int array of (video, class, onset, offset) rows, one per maximal run.

    Ordered by video, then class, then onset. Vectorised: exports write ~20k grids.
    """
    grids = np.asarray(grids)
    padded = np.zeros((*grids.shape[:-1], grids.shape[-1] + 2), dtype=np.int8)
    padded[..., 1:-1] = grids
    video, cls, pos = np.nonzero(np.diff(padded, axis=-1))
    # edges alternate rise/fall within every row, and nonzero walks rows in order
    return np.stack([video[0::2], cls[0::2], pos[0::2], pos[1::2]], axis=1)


def grid_to_intervals(grid: np.ndarray) -> list[tuple[int, int, int]]:
    """Grid -> (class, onset, offset), one row per maximal run, class-major order."""
    return [tuple(row) for row in batch_intervals(grid[None])[:, 1:].tolist()]


def pack(grid: np.ndarray) -> bytes:
    """Grid -> 32 bytes for storage."""
    return np.packbits(grid.reshape(-1).astype(np.uint8)).tobytes()


def unpack(blob: bytes) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(blob, dtype=np.uint8))[: NUM_CLASSES * NUM_SEGMENTS]
    return bits.reshape(GRID_SHAPE).astype(np.uint8)


def from_pseudo_layout(array: np.ndarray) -> np.ndarray:
    """(10, 25) pseudo-label array -> (25, 10) grid."""
    return np.ascontiguousarray(np.asarray(array).T).astype(np.uint8)


def to_pseudo_layout(grid: np.ndarray) -> np.ndarray:
    """(25, 10) grid -> (10, 25) int64 array, the dtype of the VALOR pseudo-label files."""
    return np.ascontiguousarray(grid.T).astype(np.int64)
