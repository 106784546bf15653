"""Pure parts of the track timeline: row order, cell images, geometry, hit tests, tooltips.

Kept free of widgets so the image building (called on every edit) stays cheap and
can be tested and timed without a window; ui/timeline.py only places the results.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from annotation.taxonomy import COLOURS, DISPLAY_NAMES, NUM_CLASSES, NUM_SEGMENTS, hex_to_rgb
from ui import theme

LAYER_NAMES: tuple[str, ...] = ("pseudo", "truth", "prediction")
LAYER_TITLES: dict[str, str] = {"pseudo": "Pseudo", "truth": "Truth", "prediction": "Prediction"}

# Geometry in widget pixels; integers so cells and grid lines stay crisp.
LABEL_W = 184  # class name column (active bar, swatch, name, shortcut badge)
HEADER_H = 22  # segment numbers and mini-grid titles
ROW_H = 20
SECTION_GAP = 6  # space above the "other classes" toggle row
TOGGLE_H = 20
BOTTOM_PAD = 4
CELL_W_MIN = 18
CELL_W_MAX = 60
MINI_CELL_W = 8
MINI_GAP = 14
LEGEND_W = 132
LEGEND_ROW_H = 16
RIGHT_PAD = 8

# Diff states of one cell against a reference layer.
OFF, ADDED, REMOVED, BOTH = 0, 1, 2, 3


def _rgba(colour: str, alpha: int = 255) -> np.ndarray:
    return np.array([*hex_to_rgb(colour), alpha], dtype=np.uint8)


def _mix(top: np.ndarray, bottom: np.ndarray, amount: float) -> np.ndarray:
    """Opaque blend: `amount` of top over bottom (tints need no alpha in the image)."""
    mixed = amount * top[:3].astype(float) + (1 - amount) * bottom[:3].astype(float)
    return np.array([*np.round(mixed).astype(int), 255], dtype=np.uint8)


@dataclass(frozen=True)
class CellPalette:
    """RGBA colours of cells for one theme; built once per theme, not per edit."""

    dark: bool
    background: np.ndarray  # (4,) off cell
    classes: np.ndarray  # (25, 4) on cell
    added: np.ndarray  # (4,)
    removed_fill: np.ndarray  # (4,) tint under the hatch of removed cells
    removed: np.ndarray  # (4,) hatch and outline of removed cells

    @classmethod
    def build(cls, dark: bool) -> "CellPalette":
        background = _rgba(theme.grid_background(dark).name())
        removed = _rgba(theme.REMOVED)
        return cls(
            dark=dark,
            background=background,
            classes=np.stack([_rgba(c) for c in COLOURS]),
            added=_rgba(theme.ADDED),
            removed_fill=_mix(removed, background, 0.28 if dark else 0.22),
            removed=removed,
        )


def row_order(
    weak: Sequence[int], grids: Sequence[np.ndarray | None], collapsed: bool, keep: Sequence[int] = ()
) -> tuple[list[int], list[int], int]:
    """(weak rows, shown other rows, number of hidden other classes).

    Other classes with a positive cell in any of `grids` (or listed in `keep`) stay
    visible while collapsed, so nothing that is set can be hidden from the annotator.
    """
    weak_rows = sorted({int(c) for c in weak})
    weak_set = set(weak_rows)
    others = [c for c in range(NUM_CLASSES) if c not in weak_set]
    if not collapsed:
        return weak_rows, others, 0
    positive = np.zeros(NUM_CLASSES, dtype=bool)
    for grid in grids:
        if grid is not None:
            positive |= np.asarray(grid).any(axis=1)
    forced = {int(c) for c in keep} | set(np.flatnonzero(positive).tolist())
    shown = [c for c in others if c in forced]
    return weak_rows, shown, len(others) - len(shown)


def grid_image(grid: np.ndarray, rows: Sequence[int], palette: CellPalette) -> np.ndarray:
    """(len(rows), 10, 4) RGBA: class colour where on, background where off."""
    rows = np.asarray(rows, dtype=np.intp)
    on = np.asarray(grid)[rows].astype(bool)[..., None]
    return np.where(on, palette.classes[rows][:, None, :], palette.background).astype(np.uint8)


def diff_states(current: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
    """Per cell: OFF, ADDED (only current), REMOVED (only reference) or BOTH.

    The state constants are chosen so that the state is simply current + 2 * reference.
    """
    cur = np.asarray(current).astype(np.uint8)
    if reference is None:
        return cur.copy()
    return cur + 2 * np.asarray(reference).astype(np.uint8)


def diff_image(
    current: np.ndarray, reference: np.ndarray | None, rows: Sequence[int], palette: CellPalette
) -> np.ndarray:
    """(len(rows), 10, 4) RGBA of the agreement of current with a reference layer.

    Without a reference every on cell keeps its class colour (nothing to compare).
    """
    rows = np.asarray(rows, dtype=np.intp)
    states = diff_states(np.asarray(current)[rows], None if reference is None else np.asarray(reference)[rows])
    if reference is None:
        states = np.where(states == ADDED, BOTH, states)
    image = np.empty((len(rows), NUM_SEGMENTS, 4), dtype=np.uint8)
    image[:] = palette.background
    both = states == BOTH
    image[both] = np.broadcast_to(palette.classes[rows][:, None, :], image.shape)[both]
    image[states == ADDED] = palette.added
    image[states == REMOVED] = palette.removed_fill
    return image


def diff_counts(current: np.ndarray, reference: np.ndarray | None) -> dict[int, int]:
    if reference is None:
        return {ADDED: 0, REMOVED: 0, BOTH: int(np.asarray(current).sum())}
    states = diff_states(current, reference)
    return {s: int((states == s).sum()) for s in (ADDED, REMOVED, BOTH)}


def tooltip_text(cls: int, seg: int, current: np.ndarray, layers: Mapping[str, np.ndarray | None]) -> str:
    """'Dog · segment 3 (3–4 s): on in current, off in pseudo' (available layers only)."""
    parts = [f"{'on' if current[cls, seg] else 'off'} in current"]
    for name in LAYER_NAMES:
        grid = layers.get(name)
        if grid is not None:
            parts.append(f"{'on' if grid[cls, seg] else 'off'} in {name}")
    return f"{DISPLAY_NAMES[cls]} · segment {seg} ({seg}–{seg + 1} s): {', '.join(parts)}"


@dataclass(frozen=True)
class Hit:
    """What a widget point falls on: kind is 'cell', 'mini', 'header', 'toggle' or 'label'."""

    kind: str
    row: int = -1  # position in the visible rows
    seg: int = -1
    slot: int = -1  # mini-grid index


@dataclass(frozen=True)
class TimelineGeometry:
    """Pixel layout of one timeline; the same inputs give the same columns in every track."""

    width: int
    n_weak: int
    n_other: int
    mode: str  # "side" or "diff"
    n_slots: int  # mini grids shown in side mode

    @property
    def right_width(self) -> int:
        if self.mode == "diff":
            return MINI_GAP + LEGEND_W
        return self.n_slots * (MINI_GAP + NUM_SEGMENTS * MINI_CELL_W)

    @property
    def cell_w(self) -> int:
        avail = (self.width - LABEL_W - self.right_width - RIGHT_PAD) / NUM_SEGMENTS
        return int(min(CELL_W_MAX, max(CELL_W_MIN, avail)))

    @property
    def grid_x(self) -> int:
        return LABEL_W

    @property
    def grid_w(self) -> int:
        return NUM_SEGMENTS * self.cell_w

    @property
    def weak_y(self) -> int:
        return HEADER_H

    @property
    def toggle_y(self) -> int:
        return HEADER_H + self.n_weak * ROW_H + SECTION_GAP

    @property
    def other_y(self) -> int:
        return self.toggle_y + TOGGLE_H

    @property
    def rows_bottom(self) -> int:
        return self.other_y + self.n_other * ROW_H

    @property
    def height(self) -> int:
        bottom = self.rows_bottom + BOTTOM_PAD
        if self.mode == "diff":  # the legend needs its three lines
            bottom = max(bottom, HEADER_H + 3 * LEGEND_ROW_H + 2 * BOTTOM_PAD)
        return bottom

    @property
    def min_width(self) -> int:
        return LABEL_W + NUM_SEGMENTS * CELL_W_MIN + self.right_width + RIGHT_PAD

    def row_y(self, row: int) -> int:
        if row < self.n_weak:
            return self.weak_y + row * ROW_H
        return self.other_y + (row - self.n_weak) * ROW_H

    def cell(self, row: int, seg: int) -> tuple[int, int, int, int]:
        return (self.grid_x + seg * self.cell_w, self.row_y(row), self.cell_w, ROW_H)

    def header(self, seg: int) -> tuple[int, int, int, int]:
        return (self.grid_x + seg * self.cell_w, 0, self.cell_w, HEADER_H)

    def mini_x(self, slot: int) -> int:
        return self.grid_x + self.grid_w + MINI_GAP + slot * (MINI_GAP + NUM_SEGMENTS * MINI_CELL_W)

    @property
    def legend_x(self) -> int:
        return self.grid_x + self.grid_w + MINI_GAP

    def _row_at(self, y: float) -> int:
        if self.weak_y <= y < self.weak_y + self.n_weak * ROW_H:
            return int((y - self.weak_y) // ROW_H)
        if self.other_y <= y < self.rows_bottom:
            return self.n_weak + int((y - self.other_y) // ROW_H)
        return -1

    def hit(self, x: float, y: float) -> Hit | None:
        if y < 0 or x < 0:
            return None
        if y < HEADER_H:
            if self.grid_x <= x < self.grid_x + self.grid_w:
                return Hit("header", seg=int((x - self.grid_x) // self.cell_w))
            return None
        if self.toggle_y <= y < self.other_y and x < self.grid_x + self.grid_w:
            return Hit("toggle")
        row = self._row_at(y)
        if row < 0:
            return None
        if x < self.grid_x:
            return Hit("label", row=row)
        if x < self.grid_x + self.grid_w:
            return Hit("cell", row=row, seg=int((x - self.grid_x) // self.cell_w))
        if self.mode == "side":
            for slot in range(self.n_slots):
                rel = x - self.mini_x(slot)
                if 0 <= rel < NUM_SEGMENTS * MINI_CELL_W:
                    return Hit("mini", row=row, seg=int(rel // MINI_CELL_W), slot=slot)
        return None

    def nearest_cell(self, x: float, y: float) -> tuple[int, int]:
        """Clamped (row, seg) for a drag that wanders off the grid or over the section gap."""
        seg = int(np.clip((x - self.grid_x) // self.cell_w, 0, NUM_SEGMENTS - 1))
        n_rows = self.n_weak + self.n_other
        row = self._row_at(y)
        if row < 0:
            centres = [self.row_y(r) + ROW_H / 2 for r in range(n_rows)]
            row = int(np.argmin([abs(c - y) for c in centres])) if centres else -1
        return row, seg

    def header_seg(self, x: float) -> int:
        return int(np.clip((x - self.grid_x) // self.cell_w, 0, NUM_SEGMENTS - 1))
