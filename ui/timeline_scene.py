"""The drawing of one track timeline: every scene item, built once per layout and then updated in place.

`TrackTimeline` (ui/timeline.py) owns the state and the mouse; it hands this scene a
`SceneLayout` whenever the rows, view mode, size or theme change (`build`), the
displayed grid after an edit (`refresh_cells`), and the playhead, selection and
cursor (`update_overlays`). The cell images come from ui/timeline_render.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPathItem, QGraphicsRectItem, QGraphicsSimpleTextItem, QWidget

from annotation.taxonomy import COLOURS, DISPLAY_NAMES, NUM_SEGMENTS
from ui import theme
from ui.timeline_render import (
    ADDED, BOTH, HEADER_H, LABEL_W, LAYER_TITLES, LEGEND_ROW_H, MINI_CELL_W, REMOVED, ROW_H, TOGGLE_H,
    CellPalette, TimelineGeometry, diff_counts, diff_image, diff_states, grid_image,
)

ADDED_PATTERN = QColor(0, 0, 0, 150)  # the cross drawn over "added" cells of the diff view


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


@dataclass(frozen=True, eq=False)
class SceneLayout:
    """What one layout shows; anything here changing means a new `build`."""

    geom: TimelineGeometry
    palette: CellPalette
    weak_rows: Sequence[int]
    other_rows: Sequence[int]
    hidden: int  # other classes hidden while collapsed
    collapsed: bool
    shortcuts: Mapping[int, str]  # class -> key shown as a badge on its row label
    mode: str  # "side" or "diff"
    slots: Sequence[str]  # reference layers given a mini grid in side mode
    layers: Mapping[str, np.ndarray | None]
    diff_ref: str
    titles: Mapping[str, str] | None = None  # layer -> its title where not LAYER_TITLES' (the pseudo source shown)

    def title(self, name: str) -> str:
        return (self.titles or {}).get(name) or LAYER_TITLES[name]

    @property
    def rows(self) -> list[int]:
        """Class indices in display order."""
        return [*self.weak_rows, *self.other_rows]


class TimelineScene:
    """The scene items of one timeline: cells, labels, reference layers and overlays."""

    def __init__(self, parent: QWidget) -> None:
        self.canvas = _Canvas(parent)
        self._items: list[QGraphicsItem] = []  # every item of the current layout
        self._layout: SceneLayout | None = None

    # ----------------------------------------------------------------- building
    def build(self, layout: SceneLayout, font: QFont, background: QColor) -> None:
        """Recreate every item for `layout`; call `refresh_cells` and `update_overlays` next."""
        self._layout = layout
        dark = layout.palette.dark
        self.canvas.setBackground(background)
        scene = self.canvas.scene()
        for item in self._items:  # never scene.clear(): it would delete pyqtgraph's own central item
            scene.removeItem(item)  # back to Python ownership; freed with the last reference
        self._items = []
        self._header_items: list[QGraphicsSimpleTextItem] = []
        self._header_lit: int | None = None  # header number drawn as the playhead
        self._legend_counts: dict[int, QGraphicsSimpleTextItem] = {}
        self._images: dict[tuple[int, int], pg.ImageItem] = {}
        g = layout.geom
        text, muted, lines = theme.text_colour(dark), theme.muted_text(dark), theme.grid_lines(dark)
        base = QFont(font)
        small = QFont(base)
        small.setPointSizeF(max(6.5, base.pointSizeF() * 0.86))
        self._fonts = (base, small)

        # header numbers
        for seg in range(NUM_SEGMENTS):
            item = self._add_text(str(seg), QRectF(*g.header(seg)), muted, small, "center")
            self._header_items.append(item)
        # row labels
        for pos, cls in enumerate(layout.rows):
            self._add_row_label(pos, cls, text if cls in layout.weak_rows else muted)
        self._add_toggle(muted, lines, small)
        # main grid and its lines
        self._add_grid_images(-1, g.grid_x, g.cell_w)
        self._add_lines(g.grid_x, g.cell_w, lines)
        self._removed_item = self._add_item(QGraphicsPathItem(), z=1)
        removed = _colour(theme.REMOVED)
        self._removed_item.setPen(QPen(removed, 1.2))
        self._removed_item.setBrush(QBrush(removed, Qt.BrushStyle.BDiagPattern))
        # added cells: the green fill plus a cross pattern, so "added" never reads as a green class
        self._added_item = self._add_item(QGraphicsPathItem(), z=1)
        self._added_item.setPen(Qt.PenStyle.NoPen)
        self._added_item.setBrush(QBrush(ADDED_PATTERN, Qt.BrushStyle.CrossPattern))
        if layout.mode == "side":
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

    def _add_item(self, item: QGraphicsItem, z: float = 0) -> QGraphicsItem:
        item.setZValue(z)
        self.canvas.scene().addItem(item)
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
        dark = self._layout.palette.dark
        y = self._layout.geom.row_y(pos)
        swatch = self._add_item(QGraphicsRectItem(10, y + (ROW_H - 10) / 2, 10, 10), z=5)
        swatch.setBrush(QColor(COLOURS[cls]))
        swatch.setPen(Qt.PenStyle.NoPen)
        right = LABEL_W - 8
        key = self._layout.shortcuts.get(cls)
        if key:
            metrics = QFontMetrics(small)
            w = max(16, metrics.horizontalAdvance(key) + 8)
            badge = QRectF(right - w, y + 3, w, ROW_H - 6)
            path = QPainterPath()
            path.addRoundedRect(badge, 3, 3)
            box = self._add_item(QGraphicsPathItem(path), z=5)
            box.setPen(QPen(theme.grid_lines(dark), 1))
            box.setBrush(theme.grid_background(dark))
            self._add_text(key, badge, theme.muted_text(dark), small, "center")
            right -= w + 6
        self._add_text(DISPLAY_NAMES[cls], QRectF(26, y, right - 26, ROW_H), colour, base)

    def _add_toggle(self, muted: QColor, lines: QColor, font: QFont) -> None:
        g = self._layout.geom
        label = f"+ {self._layout.hidden} other classes" if self._layout.collapsed else "− other classes"
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
        g = self._layout.geom
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
        layout = self._layout
        g = layout.geom
        rows = layout.rows
        for slot, name in enumerate(layout.slots):
            x = g.mini_x(slot)
            width = NUM_SEGMENTS * MINI_CELL_W
            self._add_text(layout.title(name), QRectF(x - 6, 0, width + 12, HEADER_H), muted, font, "center")
            grid = layout.layers.get(name)
            if grid is None:
                box = self._add_item(QGraphicsRectItem(x, g.weak_y, width, g.rows_bottom - g.weak_y), z=1)
                pen = QPen(lines, 1, Qt.PenStyle.DashLine)
                box.setPen(pen)
                self._add_text("n/a", QRectF(x, g.weak_y, width, ROW_H), muted, font, "center")
                continue
            self._add_grid_images(slot, x, MINI_CELL_W)
            image = grid_image(grid, rows, layout.palette)
            for index, (first, count, _) in enumerate(self._sections()):
                if count:
                    self._images[(slot, index)].setImage(image[first:first + count], autoLevels=False)
            self._add_lines(x, MINI_CELL_W, lines)

    def _add_legend(self, text: QColor, muted: QColor, font: QFont) -> None:
        layout = self._layout
        x = layout.geom.legend_x
        title = f"vs {layout.title(layout.diff_ref)}"
        self._add_text(title, QRectF(x, 0, 200, HEADER_H), muted, font)
        if layout.layers.get(layout.diff_ref) is None:
            self._add_text(f"no {layout.diff_ref} layer", QRectF(x, HEADER_H, 200, LEGEND_ROW_H), muted, font)
            return
        weak_colour = QColor(COLOURS[layout.weak_rows[0]]) if layout.weak_rows else text
        entries = ((BOTH, "agree", weak_colour), (ADDED, "added", _colour(theme.ADDED)),
                   (REMOVED, "removed", _colour(theme.REMOVED)))
        for i, (state, label, colour) in enumerate(entries):
            y = HEADER_H + 2 + i * LEGEND_ROW_H
            swatch = self._add_item(QGraphicsRectItem(x, y + 3, 10, 10), z=5)
            if state == REMOVED:
                swatch.setBrush(QBrush(colour, Qt.BrushStyle.BDiagPattern))
                swatch.setPen(QPen(colour, 1))
            elif state == ADDED:
                swatch.setBrush(colour)
                swatch.setPen(Qt.PenStyle.NoPen)
                pattern = self._add_item(QGraphicsRectItem(x, y + 3, 10, 10), z=6)
                pattern.setBrush(QBrush(ADDED_PATTERN, Qt.BrushStyle.CrossPattern))
                pattern.setPen(Qt.PenStyle.NoPen)
            else:
                swatch.setBrush(colour)
                swatch.setPen(Qt.PenStyle.NoPen)
            self._add_text(label, QRectF(x + 16, y, 60, LEGEND_ROW_H), text, font)
            self._legend_counts[state] = self._add_text("0", QRectF(x + 76, y, 40, LEGEND_ROW_H), muted, font, "right")

    # ----------------------------------------------------------------- cheap updates
    def refresh_cells(self, grid: np.ndarray) -> None:
        """Rebuild the main-grid images (and diff marks) from the displayed grid."""
        layout = self._layout
        rows = layout.rows
        reference = layout.layers.get(layout.diff_ref)
        if layout.mode == "diff":
            image = diff_image(grid, reference, rows, layout.palette)
        else:
            image = grid_image(grid, rows, layout.palette)
        for index, (first, count, _) in enumerate(self._sections()):
            if count:
                self._images[(-1, index)].setImage(image[first:first + count], autoLevels=False)
        paths = {REMOVED: QPainterPath(), ADDED: QPainterPath()}
        if layout.mode == "diff" and reference is not None and rows:
            states = diff_states(grid[rows], reference[rows])
            for state, path in paths.items():
                for pos, seg in zip(*np.nonzero(states == state)):
                    x, y, w, h = layout.geom.cell(int(pos), int(seg))
                    path.addRect(QRectF(x + 2, y + 2, w - 4, h - 4))
            counts = diff_counts(grid[rows], reference[rows])
            for state, item in self._legend_counts.items():
                item.setText(str(counts[state]))
        self._removed_item.setPath(paths[REMOVED])
        self._added_item.setPath(paths[ADDED])

    def update_overlays(
        self, playhead: int | None, selection: tuple[int, int] | None, cursor: tuple[int, int], editable: bool,
        active: bool,
    ) -> None:
        """Playhead, selection, cursor and active bar: moved, never recreated."""
        layout = self._layout
        g = layout.geom
        dark = layout.palette.dark
        height = g.rows_bottom
        if playhead is None:
            self._playhead_item.setVisible(False)
        else:
            self._playhead_item.setRect(QRectF(g.grid_x + playhead * g.cell_w, 0, g.cell_w, height))
            self._playhead_item.setVisible(True)
        if self._header_lit != playhead:  # restyle only the two numbers that change
            base, small = self._fonts
            bold = QFont(small)
            bold.setBold(True)
            for seg in {self._header_lit, playhead} - {None}:
                on = seg == playhead
                self._header_items[seg].setBrush(_colour(theme.PLAYHEAD) if on else theme.muted_text(dark))
                self._header_items[seg].setFont(bold if on else small)
            self._header_lit = playhead
        if selection is None:
            self._selection_item.setVisible(False)
        else:
            start, end = selection
            self._selection_item.setRect(
                QRectF(g.grid_x + start * g.cell_w + 0.5, 0.5, (end - start + 1) * g.cell_w - 1, height - 1)
            )
            self._selection_item.setVisible(True)
        rows = layout.rows
        cls, seg = cursor
        show = cls in rows and editable
        for item in (self._cursor_outer, self._cursor_inner, self._label_band):
            item.setVisible(show)
        if show:
            x, y, w, h = g.cell(rows.index(cls), seg)
            if active:
                self._cursor_outer.setPen(QPen(theme.text_colour(dark), 2))
                self._cursor_inner.setPen(QPen(theme.grid_background(dark), 1))
            else:
                self._cursor_outer.setPen(QPen(theme.muted_text(dark), 1, Qt.PenStyle.DashLine))
                self._cursor_inner.setPen(Qt.PenStyle.NoPen)
            self._cursor_outer.setRect(QRectF(x + 1, y + 1, w - 2, h - 2))
            self._cursor_inner.setRect(QRectF(x + 2.5, y + 2.5, w - 5, h - 5))
            self._label_band.setRect(QRectF(4, y, LABEL_W - 8, h))
            self._label_band.setVisible(active)
        self._active_bar.setVisible(active)
