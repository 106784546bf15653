"""Timeline editor of one track of one clip: an editable 25 x 10 grid with reference layers.

Drawing is a pyqtgraph scene (ImageItem cells, vector overlays) in pixel coordinates;
input is handled by the TrackTimeline widget itself (the view is transparent to the
mouse), so widget coordinates, hit tests and tests all speak the same pixels.
Edits are only requested (`edit_requested`); the session applies them as undoable
commands and calls `set_current`, which rebuilds images, never the layout.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QPainterPath, QPen
from PySide6.QtWidgets import (
    QGraphicsItem, QGraphicsPathItem, QGraphicsRectItem, QGraphicsSimpleTextItem, QSizePolicy,
    QToolTip, QVBoxLayout, QWidget,
)

from annotation.grid import GRID_SHAPE
from annotation.taxonomy import COLOURS, DISPLAY_NAMES, NUM_SEGMENTS
from ui import theme
from ui.timeline_render import (
    ADDED, BOTH, HEADER_H, LABEL_W, LAYER_NAMES, LAYER_TITLES, LEGEND_ROW_H, MINI_CELL_W, REMOVED,
    ROW_H, TOGGLE_H, CellPalette, Hit, TimelineGeometry, diff_counts, diff_image, diff_states,
    grid_image, row_order, tooltip_text,
)

TIMELINE_TRACKS = ("audio", "visual", "audio_visual")
PREVIEW_HOLD_MS = 400  # how long a released drag stays previewed if nobody calls set_current


def __getattr__(name: str):
    """`from ui.timeline import TimelinePanel` works too (it lives in ui/timeline_panel.py)."""
    if name == "TimelinePanel":
        from ui.timeline_panel import TimelinePanel

        return TimelinePanel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _colour(value: str | QColor, alpha: int | None = None) -> QColor:
    colour = QColor(value)
    if alpha is not None:
        colour.setAlpha(alpha)
    return colour


class _Canvas(pg.GraphicsView):
    """pyqtgraph view used only to draw: scene coordinates are widget pixels."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent, background=None)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)


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
        self._items: list[QGraphicsItem] = []  # every item of the current layout

        self._canvas = _Canvas(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._canvas)
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

    def _dark(self) -> bool:
        return self._palette.dark

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
        dark = self._dark()
        window = self.palette().color(self.backgroundRole())
        self._canvas.setBackground(window)
        scene = self._canvas.scene()
        for item in self._items:  # never scene.clear(): it would delete pyqtgraph's own central item
            scene.removeItem(item)  # back to Python ownership; freed with the last reference
        self._items = []
        self._header_items: list[QGraphicsSimpleTextItem] = []
        self._header_lit: int | None = None  # header number drawn as the playhead
        self._legend_counts: dict[int, QGraphicsSimpleTextItem] = {}
        self._images: dict[tuple[int, int], pg.ImageItem] = {}
        g = self._geom
        text, muted, lines = theme.text_colour(dark), theme.muted_text(dark), theme.grid_lines(dark)
        base = QFont(self.font())
        small = QFont(base)
        small.setPointSizeF(max(6.5, base.pointSizeF() * 0.86))
        self._fonts = (base, small)

        # header numbers
        for seg in range(NUM_SEGMENTS):
            item = self._add_text(str(seg), QRectF(*g.header(seg)), muted, small, "center")
            self._header_items.append(item)
        # row labels
        rows = self.visible_rows()
        for pos, cls in enumerate(rows):
            self._add_row_label(pos, cls, text if cls in self._weak_rows else muted)
        self._add_toggle(muted, lines, small)
        # main grid and its lines
        self._add_grid_images(-1, g.grid_x, g.cell_w)
        self._add_lines(g.grid_x, g.cell_w, lines)
        self._removed_item = self._add_item(QGraphicsPathItem(), z=1)
        removed = _colour(theme.REMOVED)
        self._removed_item.setPen(QPen(removed, 1.2))
        self._removed_item.setBrush(QBrush(removed, Qt.BrushStyle.BDiagPattern))
        if self._mode == "side":
            self._add_minis(muted, lines, small)
        else:
            self._add_legend(text, muted, small)
        # overlays
        self._playhead_item = self._add_item(QGraphicsRectItem(), z=3)
        self._playhead_item.setBrush(_colour(theme.PLAYHEAD, 44 if dark else 30))
        self._playhead_item.setPen(Qt.PenStyle.NoPen)
        self._selection_item = self._add_item(QGraphicsRectItem(), z=4)
        self._selection_item.setBrush(_colour(theme.ACCENT, 44))
        self._selection_item.setPen(QPen(_colour(theme.ACCENT, 170), 1))
        self._label_band = self._add_item(QGraphicsRectItem(), z=-1)
        self._label_band.setBrush(_colour(text, 20))
        self._label_band.setPen(Qt.PenStyle.NoPen)
        self._cursor_outer = self._add_item(QGraphicsRectItem(), z=6)
        self._cursor_inner = self._add_item(QGraphicsRectItem(), z=6)
        self._active_bar = self._add_item(QGraphicsRectItem(0, HEADER_H, 3, g.rows_bottom - HEADER_H), z=6)
        self._active_bar.setBrush(_colour(theme.ACCENT))
        self._active_bar.setPen(Qt.PenStyle.NoPen)
        self._refresh_cells()
        self._update_overlays()

    def _add_item(self, item: QGraphicsItem, z: float = 0) -> QGraphicsItem:
        item.setZValue(z)
        self._canvas.scene().addItem(item)
        self._items.append(item)
        return item

    def _add_text(
        self, text: str, rect: QRectF, colour: QColor, font: QFont, align: str = "left", z: float = 5
    ) -> QGraphicsSimpleTextItem:
        metrics = QFontMetrics(font)
        text = metrics.elidedText(text, Qt.TextElideMode.ElideRight, int(rect.width()))
        item = QGraphicsSimpleTextItem(text)
        item.setFont(font)
        item.setBrush(colour)
        width = metrics.horizontalAdvance(text)
        x = rect.x() + {"left": 0, "center": (rect.width() - width) / 2, "right": rect.width() - width}[align]
        item.setPos(QPointF(round(x), round(rect.y() + (rect.height() - metrics.height()) / 2)))
        return self._add_item(item, z)

    def _add_row_label(self, pos: int, cls: int, colour: QColor) -> None:
        base, small = self._fonts
        y = self._geom.row_y(pos)
        swatch = self._add_item(QGraphicsRectItem(10, y + (ROW_H - 10) / 2, 10, 10), z=5)
        swatch.setBrush(QColor(COLOURS[cls]))
        swatch.setPen(Qt.PenStyle.NoPen)
        right = LABEL_W - 8
        key = self._shortcuts.get(cls)
        if key:
            metrics = QFontMetrics(small)
            w = max(16, metrics.horizontalAdvance(key) + 8)
            badge = QRectF(right - w, y + 3, w, ROW_H - 6)
            path = QPainterPath()
            path.addRoundedRect(badge, 3, 3)
            box = self._add_item(QGraphicsPathItem(path), z=5)
            box.setPen(QPen(theme.grid_lines(self._dark()), 1))
            box.setBrush(theme.grid_background(self._dark()))
            self._add_text(key, badge, theme.muted_text(self._dark()), small, "center")
            right -= w + 6
        self._add_text(DISPLAY_NAMES[cls], QRectF(26, y, right - 26, ROW_H), colour, base)

    def _add_toggle(self, muted: QColor, lines: QColor, font: QFont) -> None:
        g = self._geom
        label = f"+ {self._hidden} other classes" if self._collapsed else "− other classes"
        rect = QRectF(10, g.toggle_y, LABEL_W - 18, TOGGLE_H)
        item = self._add_text(label, rect, muted, font)
        end = 10 + QFontMetrics(font).horizontalAdvance(label) + 8
        mid = g.toggle_y + TOGGLE_H / 2
        path = QPainterPath(QPointF(end, mid))
        path.lineTo(g.grid_x + g.grid_w, mid)
        rule = self._add_item(QGraphicsPathItem(path), z=1)
        rule.setPen(QPen(lines, 1))
        self._toggle_item = item

    def _sections(self) -> list[tuple[int, int, int]]:
        """(first row position, row count, y) of the weak and other sections."""
        g = self._geom
        return [(0, g.n_weak, g.weak_y), (g.n_weak, g.n_other, g.other_y)]

    def _add_grid_images(self, key: int, x: int, cell_w: int) -> None:
        for index, (_, count, y) in enumerate(self._sections()):
            if count:
                item = pg.ImageItem(axisOrder="row-major")
                item.setImage(np.zeros((count, NUM_SEGMENTS, 4), dtype=np.uint8), autoLevels=False)
                item.setRect(QRectF(x, y, NUM_SEGMENTS * cell_w, count * ROW_H))
                self._images[(key, index)] = self._add_item(item, z=0)

    def _add_lines(self, x: int, cell_w: int, colour: QColor) -> None:
        path = QPainterPath()
        width = NUM_SEGMENTS * cell_w
        for _, count, y in self._sections():
            if not count:
                continue
            for k in range(NUM_SEGMENTS + 1):
                path.moveTo(x + k * cell_w, y)
                path.lineTo(x + k * cell_w, y + count * ROW_H)
            for r in range(count + 1):
                path.moveTo(x, y + r * ROW_H)
                path.lineTo(x + width, y + r * ROW_H)
        item = self._add_item(QGraphicsPathItem(path), z=2)
        pen = QPen(colour, 1)
        pen.setCosmetic(True)
        item.setPen(pen)

    def _add_minis(self, muted: QColor, lines: QColor, font: QFont) -> None:
        g = self._geom
        rows = self.visible_rows()
        for slot, name in enumerate(self._slot_names()):
            x = g.mini_x(slot)
            width = NUM_SEGMENTS * MINI_CELL_W
            self._add_text(LAYER_TITLES[name], QRectF(x - 6, 0, width + 12, HEADER_H), muted, font, "center")
            grid = self._layers.get(name)
            if grid is None:
                box = self._add_item(QGraphicsRectItem(x, g.weak_y, width, g.rows_bottom - g.weak_y), z=1)
                pen = QPen(lines, 1, Qt.PenStyle.DashLine)
                box.setPen(pen)
                self._add_text("n/a", QRectF(x, g.weak_y, width, ROW_H), muted, font, "center")
                continue
            self._add_grid_images(slot, x, MINI_CELL_W)
            image = grid_image(grid, rows, self._palette)
            for index, (first, count, _) in enumerate(self._sections()):
                if count:
                    self._images[(slot, index)].setImage(image[first:first + count], autoLevels=False)
            self._add_lines(x, MINI_CELL_W, lines)

    def _add_legend(self, text: QColor, muted: QColor, font: QFont) -> None:
        g = self._geom
        x = g.legend_x
        title = f"vs {LAYER_TITLES[self._diff_ref]}"
        self._add_text(title, QRectF(x, 0, 200, HEADER_H), muted, font)
        if self._layers.get(self._diff_ref) is None:
            self._add_text(f"no {self._diff_ref} layer", QRectF(x, HEADER_H, 200, LEGEND_ROW_H), muted, font)
            return
        weak_colour = QColor(COLOURS[self._weak_rows[0]]) if self._weak_rows else text
        entries = ((BOTH, "agree", weak_colour), (ADDED, "added", _colour(theme.ADDED)),
                   (REMOVED, "removed", _colour(theme.REMOVED)))
        for i, (state, label, colour) in enumerate(entries):
            y = HEADER_H + 2 + i * LEGEND_ROW_H
            swatch = self._add_item(QGraphicsRectItem(x, y + 3, 10, 10), z=5)
            if state == REMOVED:
                swatch.setBrush(QBrush(colour, Qt.BrushStyle.BDiagPattern))
                swatch.setPen(QPen(colour, 1))
            else:
                swatch.setBrush(colour)
                swatch.setPen(Qt.PenStyle.NoPen)
            self._add_text(label, QRectF(x + 16, y, 60, LEGEND_ROW_H), text, font)
            self._legend_counts[state] = self._add_text("0", QRectF(x + 76, y, 40, LEGEND_ROW_H), muted, font, "right")

    # ----------------------------------------------------------------- cheap updates
    def _refresh_cells(self) -> None:
        """Rebuild the main-grid images (and diff marks) from the displayed grid."""
        grid = self._display_grid()
        rows = self.visible_rows()
        reference = self._layers.get(self._diff_ref)
        if self._mode == "diff":
            image = diff_image(grid, reference, rows, self._palette)
        else:
            image = grid_image(grid, rows, self._palette)
        for index, (first, count, _) in enumerate(self._sections()):
            if count:
                self._images[(-1, index)].setImage(image[first:first + count], autoLevels=False)
        path = QPainterPath()
        if self._mode == "diff" and reference is not None and rows:
            states = diff_states(grid[rows], reference[rows])
            for pos, seg in zip(*np.nonzero(states == REMOVED)):
                x, y, w, h = self._geom.cell(int(pos), int(seg))
                path.addRect(QRectF(x + 2, y + 2, w - 4, h - 4))
            counts = diff_counts(grid[rows], reference[rows])
            for state, item in self._legend_counts.items():
                item.setText(str(counts[state]))
        self._removed_item.setPath(path)

    def _update_overlays(self) -> None:
        """Playhead, selection, cursor and active bar: moved, never recreated."""
        g = self._geom
        dark = self._dark()
        height = g.rows_bottom
        if self._playhead is None:
            self._playhead_item.setVisible(False)
        else:
            self._playhead_item.setRect(QRectF(g.grid_x + self._playhead * g.cell_w, 0, g.cell_w, height))
            self._playhead_item.setVisible(True)
        if self._header_lit != self._playhead:  # restyle only the two numbers that change
            base, small = self._fonts
            bold = QFont(small)
            bold.setBold(True)
            for seg in {self._header_lit, self._playhead} - {None}:
                on = seg == self._playhead
                self._header_items[seg].setBrush(_colour(theme.PLAYHEAD) if on else theme.muted_text(dark))
                self._header_items[seg].setFont(bold if on else small)
            self._header_lit = self._playhead
        if self._selection is None:
            self._selection_item.setVisible(False)
        else:
            start, end = self._selection
            self._selection_item.setRect(
                QRectF(g.grid_x + start * g.cell_w + 0.5, 0.5, (end - start + 1) * g.cell_w - 1, height - 1)
            )
            self._selection_item.setVisible(True)
        rows = self.visible_rows()
        cls, seg = self._cursor
        show = cls in rows and self._editable
        for item in (self._cursor_outer, self._cursor_inner, self._label_band):
            item.setVisible(show)
        if show:
            x, y, w, h = g.cell(rows.index(cls), seg)
            if self._active:
                self._cursor_outer.setPen(QPen(theme.text_colour(dark), 2))
                self._cursor_inner.setPen(QPen(theme.grid_background(dark), 1))
            else:
                self._cursor_outer.setPen(QPen(theme.muted_text(dark), 1, Qt.PenStyle.DashLine))
                self._cursor_inner.setPen(Qt.PenStyle.NoPen)
            self._cursor_outer.setRect(QRectF(x + 1, y + 1, w - 2, h - 2))
            self._cursor_inner.setRect(QRectF(x + 2.5, y + 2.5, w - 5, h - 5))
            self._label_band.setRect(QRectF(4, y, LABEL_W - 8, h))
            self._label_band.setVisible(self._active)
        self._active_bar.setVisible(self._active)

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
            return tooltip_text(cls, hit.seg, self._display_grid(), self._layers)
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
