"""Timeline editor of one track of one clip: an editable 25 x 10 grid with reference layers.

Drawing is a pyqtgraph scene (ImageItem cells, vector overlays) in pixel coordinates,
built and updated by `TimelineScene` (ui/timeline_scene.py); input is handled by the
TrackTimeline widget itself (the view is transparent to the mouse), so widget
coordinates, hit tests and tests all speak the same pixels.
Edits are only requested (`edit_requested`); the session applies them as undoable
commands and calls `set_current`, which rebuilds images, never the layout.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRect, Qt, QTimer, Signal
from PySide6.QtWidgets import QSizePolicy, QToolTip, QVBoxLayout, QWidget

from annotation.grid import GRID_SHAPE
from annotation.taxonomy import DISPLAY_NAMES, NUM_SEGMENTS
from ui import theme
from ui.timeline_render import LAYER_NAMES, TOGGLE_H, CellPalette, Hit, TimelineGeometry, row_order, tooltip_text
from ui.timeline_scene import SceneLayout, TimelineScene

TIMELINE_TRACKS = ("audio", "visual", "audio_visual")
PREVIEW_HOLD_MS = 400  # how long a released drag stays previewed if nobody calls set_current


def __getattr__(name: str):
    """`from ui.timeline import TimelinePanel` works too (it lives in ui/timeline_panel.py)."""
    if name == "TimelinePanel":
        from ui.timeline_panel import TimelinePanel

        return TimelinePanel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class TrackTimeline(QWidget):
    """Editable class x segment grid of one track, with reference layers side by side or as a diff."""

    edit_requested = Signal(list, int)  # [(cls, seg), ...], value
    segment_clicked = Signal(int)
    selection_changed = Signal(int, int)
    cursor_moved = Signal(int, int)
    selection_cleared = Signal()
    others_collapsed_changed = Signal(bool)
    activated = Signal()  # a mouse press on an editable timeline (the panel makes it active)

    def __init__(self, track: str, editable: bool = True, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        if track not in TIMELINE_TRACKS:
            raise ValueError(f"track must be one of {TIMELINE_TRACKS}, got {track!r}")
        self.track = track
        self._editable = editable and track != "audio_visual"
        self._weak: list[int] = []
        self._current = np.zeros(GRID_SHAPE, dtype=np.uint8)
        self._layers: dict[str, np.ndarray | None] = {}
        self._slots: list[str] | None = None  # None: the available layers
        self._titles: dict[str, str] = {}  # layer -> title where not the default (which pseudo source is shown)
        self._shortcuts: dict[int, str] = {}
        self._collapsed = True
        self._keep: set[int] = set()  # other rows shown while collapsed stay put until re-collapse
        self._mode = "side"
        self._diff_ref = "pseudo"
        self._playhead: int | None = None
        self._cursor = (0, 0)
        self._selection: tuple[int, int] | None = None
        self._anchor: int | None = None
        self._active = False
        self._weak_rows: list[int] = []
        self._other_rows: list[int] = []
        self._hidden = 0
        # mouse painting
        self._paint_value: int | None = None
        self._painted: list[tuple[int, int]] = []
        self._last_cell: tuple[int, int] | None = None
        self._preview: np.ndarray | None = None
        self._header_drag = False
        self._set_current_called = False
        self._preview_timer = QTimer(self, singleShot=True, interval=PREVIEW_HOLD_MS)
        self._preview_timer.timeout.connect(self._drop_preview)
        self._theme_pending = False
        self._building = False

        self._scene = TimelineScene(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._scene.canvas)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMouseTracking(True)
        self._palette = CellPalette.build(theme.current_is_dark())
        self._geom = self._make_geometry(max(self.width(), 1))
        self._rebuild()

    # ----------------------------------------------------------------- public API
    def is_editable(self) -> bool:
        return self._editable

    def set_clip(
        self, weak: Sequence[int], current: np.ndarray, layers: Mapping[str, np.ndarray | None] | None = None
    ) -> None:
        """Show a new clip: weak classes first, then the others (collapsible)."""
        self._weak = sorted({int(c) for c in weak})
        self._current = self._checked(current)
        self._layers = {
            name: (None if (layers or {}).get(name) is None else self._checked(layers[name]))
            for name in LAYER_NAMES
        }
        self._keep = set()
        self._preview = None
        self._cancel_paint()
        self._selection = None
        self._anchor = None
        self._rebuild()
        rows = self.visible_rows()
        if rows and self._cursor[0] not in rows:
            self._cursor = (rows[0], self._cursor[1])
            self._update_overlays()

    def set_layers(self, layers: Mapping[str, np.ndarray | None]) -> None:
        """Other reference layers on the same clip (another pseudo-label source picked): the cursor, the
        selection and an edit in progress stay."""
        self._layers = {name: (None if layers.get(name) is None else self._checked(layers[name]))
                        for name in LAYER_NAMES}
        self._rebuild()

    def set_current(self, grid: np.ndarray) -> None:
        """Redraw after an edit: only the images, unless a new row must become visible."""
        self._current = self._checked(grid)
        self._set_current_called = True
        self._preview_timer.stop()
        self._preview = None
        if self._paint_value is not None:  # mid-drag: keep painting on top of the new grid
            self._preview = self._current.copy()
            for cell in self._painted:
                self._preview[cell] = self._paint_value
        if self._rows_changed():
            self._rebuild()
        else:
            self._refresh_cells()

    def current(self) -> np.ndarray:
        return self._current.copy()

    def layers(self) -> dict[str, np.ndarray | None]:
        return dict(self._layers)

    def set_others_collapsed(self, collapsed: bool) -> None:
        collapsed = bool(collapsed)
        if collapsed == self._collapsed:
            return
        self._collapsed = collapsed
        self._keep = set()
        self._rebuild()

    def others_collapsed(self) -> bool:
        return self._collapsed

    def set_shortcuts(self, shortcuts: Mapping[int, str]) -> None:
        self._shortcuts = {int(k): str(v) for k, v in shortcuts.items()}
        self._rebuild()

    def set_view_mode(self, mode: str) -> None:
        if mode not in ("side", "diff"):
            raise ValueError(f"view mode must be 'side' or 'diff', got {mode!r}")
        if mode != self._mode:
            self._mode = mode
            self._rebuild()

    def view_mode(self) -> str:
        return self._mode

    def set_diff_reference(self, name: str) -> None:
        if name not in LAYER_NAMES:
            raise ValueError(f"reference must be one of {LAYER_NAMES}, got {name!r}")
        if name != self._diff_ref:
            self._diff_ref = name
            self._rebuild()

    def diff_reference(self) -> str:
        return self._diff_ref

    def set_layer_titles(self, titles: Mapping[str, str], rebuild: bool = True) -> None:
        """Titles of reference layers over their mini grids and in the diff legend (default: LAYER_TITLES);
        `rebuild=False` when a `set_clip` or `set_layers` follows at once (one rebuild, not two)."""
        titles = {str(k): str(v) for k, v in titles.items()}
        if titles != self._titles:
            self._titles = titles
            if rebuild:
                self._rebuild()

    def set_reference_slots(self, names: Sequence[str] | None) -> None:
        """Mini grids to reserve in side mode (None: the available layers); keeps tracks aligned."""
        slots = None if names is None else [n for n in LAYER_NAMES if n in set(names)]
        if slots != self._slots:
            self._slots = slots
            self._rebuild()

    def set_playhead_segment(self, seg: int | None) -> None:
        seg = None if seg is None or not 0 <= int(seg) < NUM_SEGMENTS else int(seg)
        if seg != self._playhead:
            self._playhead = seg
            self._update_overlays()

    def playhead_segment(self) -> int | None:
        return self._playhead

    def set_cursor(self, cls: int, seg: int) -> None:
        self._cursor = (int(cls), int(np.clip(seg, 0, NUM_SEGMENTS - 1)))
        self._update_overlays()

    def cursor(self) -> tuple[int, int]:
        return self._cursor

    def set_selection(self, start: int, end: int) -> None:
        start, end = sorted((int(np.clip(start, 0, 9)), int(np.clip(end, 0, 9))))
        self._selection = (start, end)
        self._update_overlays()

    def selection(self) -> tuple[int, int] | None:
        return self._selection

    def clear_selection(self) -> None:
        self._selection = None
        self._update_overlays()

    def set_active(self, active: bool) -> None:
        self._active = bool(active)
        self._update_overlays()

    def is_active(self) -> bool:
        return self._active

    def visible_rows(self) -> list[int]:
        """Class indices in display order (the main window walks them with the keyboard)."""
        return self._weak_rows + self._other_rows

    def cell_rect(self, cls: int, seg: int) -> QRect:
        rows = self.visible_rows()
        if cls not in rows or not 0 <= seg < NUM_SEGMENTS:
            return QRect()
        return QRect(*self._geom.cell(rows.index(cls), seg))

    def header_rect(self, seg: int) -> QRect:
        return QRect(*self._geom.header(seg))

    def toggle_rect(self) -> QRect:
        g = self._geom
        return QRect(0, g.toggle_y, g.grid_x + g.grid_w, TOGGLE_H)

    def refresh_theme(self) -> None:
        """Rebuild colours from ui.theme (dark or light)."""
        self._theme_pending = False
        self._palette = CellPalette.build(theme.current_is_dark())
        self._rebuild()

    # ----------------------------------------------------------------- state helpers
    @staticmethod
    def _checked(grid: np.ndarray) -> np.ndarray:
        arr = np.asarray(grid)
        if arr.shape != GRID_SHAPE:
            raise ValueError(f"grid must have shape {GRID_SHAPE}, got {arr.shape}")
        return (arr != 0).astype(np.uint8)

    def _display_grid(self) -> np.ndarray:
        return self._current if self._preview is None else self._preview

    def _available(self) -> list[str]:
        return [n for n in LAYER_NAMES if self._layers.get(n) is not None]

    def _slot_names(self) -> list[str]:
        return self._available() if self._slots is None else list(self._slots)

    def _compute_rows(self) -> tuple[list[int], list[int], int]:
        grids = [self._current, *self._layers.values()]
        return row_order(self._weak, grids, self._collapsed, keep=self._keep)

    def _rows_changed(self) -> bool:
        weak, others, _ = self._compute_rows()
        return weak != self._weak_rows or others != self._other_rows

    def _make_geometry(self, width: int) -> TimelineGeometry:
        return TimelineGeometry(
            width=width, n_weak=len(self._weak_rows), n_other=len(self._other_rows),
            mode=self._mode, n_slots=len(self._slot_names()),
        )

    # ----------------------------------------------------------------- scene building
    def _rebuild(self) -> None:
        """Recreate every scene item (new clip, rows, mode, size or theme)."""
        self._building = True  # setFixedHeight may resize (and re-enter) synchronously
        try:
            self._build_scene()
        finally:
            self._building = False

    def _build_scene(self) -> None:
        self._weak_rows, self._other_rows, self._hidden = self._compute_rows()
        if self._collapsed:
            self._keep.update(self._other_rows)
        self._geom = self._make_geometry(max(self.width(), 1))
        self.setFixedHeight(self._geom.height)
        self.setMinimumWidth(self._geom.min_width)
        layout = SceneLayout(
            geom=self._geom, palette=self._palette, weak_rows=self._weak_rows, other_rows=self._other_rows,
            hidden=self._hidden, collapsed=self._collapsed, shortcuts=self._shortcuts, mode=self._mode,
            slots=self._slot_names(), layers=self._layers, diff_ref=self._diff_ref, titles=self._titles,
        )
        self._scene.build(layout, self.font(), self.palette().color(self.backgroundRole()))
        self._refresh_cells()
        self._update_overlays()

    # ----------------------------------------------------------------- cheap updates
    def _refresh_cells(self) -> None:
        """Rebuild the main-grid images (and diff marks) from the displayed grid."""
        self._scene.refresh_cells(self._display_grid())

    def _update_overlays(self) -> None:
        """Playhead, selection, cursor and active bar: moved, never recreated."""
        self._scene.update_overlays(self._playhead, self._selection, self._cursor, self._editable, self._active)

    # ----------------------------------------------------------------- mouse input
    def _hit(self, pos: QPointF) -> Hit | None:
        return self._geom.hit(pos.x(), pos.y())

    def mousePressEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if event.button() != Qt.MouseButton.LeftButton:
            event.ignore()
            return
        pos = event.position()
        hit = self._hit(pos)
        if self._editable:
            self.activated.emit()
        if hit is None:
            return
        if hit.kind == "header":
            self._header_press(hit.seg, bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier))
        elif hit.kind == "toggle":
            self.set_others_collapsed(not self._collapsed)
            self.others_collapsed_changed.emit(self._collapsed)
        elif hit.kind == "cell" and self._editable:
            cls = self.visible_rows()[hit.row]
            self._preview_timer.stop()
            self._paint_value = 1 - int(self._display_grid()[cls, hit.seg])
            self._preview = self._display_grid().copy()
            self._painted = []
            self._last_cell = None
            self._paint_to(hit.row, hit.seg)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        pos = event.position()
        if self._paint_value is not None:
            self._paint_to(*self._geom.nearest_cell(pos.x(), pos.y()))
        elif self._header_drag:
            seg = self._geom.header_seg(pos.x())
            if self._anchor is not None and (seg != self._anchor or self._selection is not None):
                self._select(self._anchor, seg)
        else:
            hit = self._hit(pos)
            clickable = hit is not None and (hit.kind in ("header", "toggle") or (hit.kind == "cell" and self._editable))
            self.setCursor(Qt.CursorShape.PointingHandCursor if clickable else Qt.CursorShape.ArrowCursor)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if event.button() != Qt.MouseButton.LeftButton:
            return
        self._header_drag = False
        if self._paint_value is None:
            return
        cells, value = list(self._painted), self._paint_value
        self._paint_value, self._painted, self._last_cell = None, [], None
        self._set_current_called = False
        self.edit_requested.emit(cells, value)
        if not self._set_current_called and self._preview is not None:
            self._preview_timer.start()  # nobody applied it (yet): fall back to the current grid soon

    def _paint_to(self, row: int, seg: int) -> None:
        """Paint every cell on the way from the last painted cell (fast drags skip cells)."""
        if row < 0 or self._preview is None or self._paint_value is None:
            return
        rows = self.visible_rows()
        start = self._last_cell or (row, seg)
        steps = max(abs(row - start[0]), abs(seg - start[1]), 1)
        changed = False
        for i in range(1, steps + 1) if self._last_cell else (steps,):
            r = round(start[0] + (row - start[0]) * i / steps)
            s = round(start[1] + (seg - start[1]) * i / steps)
            cell = (rows[r], s)
            if cell not in self._painted:
                self._painted.append(cell)
                self._preview[cell] = self._paint_value
                changed = True
        self._last_cell = (row, seg)
        if changed:
            self._refresh_cells()
        if self._cursor != (rows[row], seg):
            self._cursor = (rows[row], seg)
            self._update_overlays()
            self.cursor_moved.emit(*self._cursor)

    def _cancel_paint(self) -> None:
        self._paint_value, self._painted, self._last_cell = None, [], None
        self._header_drag = False

    def _drop_preview(self) -> None:
        if self._paint_value is None and self._preview is not None:
            self._preview = None
            self._refresh_cells()

    def _header_press(self, seg: int, shift: bool) -> None:
        self._header_drag = True
        if shift:
            anchor = self._anchor if self._anchor is not None else (self._playhead if self._playhead is not None else seg)
            self._anchor = anchor
            self._select(anchor, seg)
            return
        self._anchor = seg
        if self._selection is not None:
            self.clear_selection()
            self.selection_cleared.emit()
        self.segment_clicked.emit(seg)

    def _select(self, a: int, b: int) -> None:
        selection = (min(a, b), max(a, b))
        if selection != self._selection:
            self._selection = selection
            self._update_overlays()
            self.selection_changed.emit(*selection)

    # ----------------------------------------------------------------- Qt events
    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip:
            text = self._tooltip(self._hit(event.position() if hasattr(event, "position") else QPointF(event.pos())))
            if text:
                QToolTip.showText(event.globalPos(), text, self)
            else:
                QToolTip.hideText()
                event.ignore()
            return True
        return super().event(event)

    def _tooltip(self, hit: Hit | None) -> str:
        if hit is None:
            return ""
        if hit.kind in ("cell", "mini", "label"):
            cls = self.visible_rows()[hit.row]
            if hit.kind == "label":
                return DISPLAY_NAMES[cls] + ("" if cls in self._weak_rows else " (not in the weak label)")
            text = tooltip_text(cls, hit.seg, self._display_grid(), self._layers)
            return text + ("\nClick to toggle · drag to paint" if self._editable and hit.kind == "cell" else "")
        if hit.kind == "header":
            return f"Segment {hit.seg} ({hit.seg}–{hit.seg + 1} s): click to seek, shift-click or drag to select"
        return "Show or hide the classes outside the weak label"

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if event.size().width() != self._geom.width and not self._building:
            self._rebuild()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802
        super().changeEvent(event)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            if not self._theme_pending:  # apply_theme sets the dark flag after the palette
                self._theme_pending = True
                QTimer.singleShot(0, self.refresh_theme)
