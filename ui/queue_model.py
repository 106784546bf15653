"""The review-queue table: its model (rows built on demand) and the painting of its cells.

The model holds only a numpy array of queue positions; rows are built on demand
by `ReviewQueue.row_at`, so showing 10,000 clips costs one filter pass and one
model reset, never 10,000 items. `WeakChipsDelegate` draws the weak labels as
class-coloured chips; `dot_icon` is the status dot of the table and of the dock's
status filter.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from annotation.queue import QueueRow, ReviewQueue
from annotation.taxonomy import DISPLAY_NAMES
from ui.theme import ACCENT, ADDED, class_colour, current_is_dark, muted_text

CLIP, SPLIT, WEAK, STATUS, DISAGREEMENT = range(5)
HEADERS = ("Clip", "Split", "Weak labels", "Status", "A/V diff")
WEAK_ROLE = Qt.ItemDataRole.UserRole + 1
STATUS_COLOURS = {"pending": ACCENT, "annotated": ADDED, "out_of_taxonomy": "#f5a524", "skipped": "#8c959f"}


def _icon(size: int, draw: Callable[[QPainter], None]) -> QIcon:
    """A transparent square icon; `draw` paints on it with antialiasing and no pen."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    draw(painter)
    painter.end()
    return QIcon(pixmap)


def dot_icon(colour: str | QColor, size: int = 10) -> QIcon:
    """A round dot: the status of a clip."""
    def draw(painter: QPainter) -> None:
        painter.setBrush(QColor(colour))
        painter.drawEllipse(1, 1, size - 2, size - 2)

    return _icon(size, draw)


def swatch_icon(index: int, size: int = 12) -> QIcon:
    """A rounded square in the colour of class `index`."""
    def draw(painter: QPainter) -> None:
        painter.setBrush(class_colour(index))
        painter.drawRoundedRect(0, 0, size, size, 3, 3)

    return _icon(size, draw)


class QueueTableModel(QAbstractTableModel):
    """Rows = a numpy array of queue positions; reset only when the filter or sort changes."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._queue = ReviewQueue()
        self._positions = np.zeros(0, dtype=np.int64)
        self._icons: dict[str, QIcon] = {}
        self._muted = QBrush(muted_text(current_is_dark()))
        self._italic = QFont()
        self._italic.setItalic(True)

    # ---- contents ---------------------------------------------------------------------
    def set_contents(self, queue: ReviewQueue, positions: np.ndarray) -> None:
        self.beginResetModel()
        self._queue, self._positions = queue, np.asarray(positions, dtype=np.int64)
        self._muted = QBrush(muted_text(current_is_dark()))
        self.endResetModel()

    def refresh_theme(self) -> None:
        """Muted text in the current theme (after a live theme change)."""
        self._muted = QBrush(muted_text(current_is_dark()))
        if self.rowCount():
            self.dataChanged.emit(self.index(0, 0), self.index(self.rowCount() - 1, self.columnCount() - 1))

    def row_data(self, row: int) -> QueueRow:
        return self._queue.row_at(int(self._positions[row]))

    def clip_id_at(self, row: int) -> int:
        return int(self._queue.clip_ids(self._positions[row]))

    def row_of(self, clip_id: int) -> int | None:
        hits = np.flatnonzero(self._queue.clip_ids(self._positions) == clip_id)
        return int(hits[0]) if len(hits) else None

    def refresh_row(self, row: int) -> None:
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(HEADERS) - 1))

    # ---- Qt model interface -----------------------------------------------------------
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._positions)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal:
            if role == Qt.ItemDataRole.DisplayRole:
                return HEADERS[section]
            if role == Qt.ItemDataRole.ToolTipRole and section == DISAGREEMENT:
                return "Share of the weak-class cells (x 10 segments) where the audio and visual pseudo-labels differ"
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row, col = self.row_data(index.row()), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == CLIP:
                return row.filename
            if col == SPLIT:
                return row.split
            if col == WEAK:
                return ", ".join(DISPLAY_NAMES[i] for i in row.weak)
            if col == STATUS:
                return row.status.replace("_", " ")
            return f"{row.disagreement * 100:.0f} %"
        if role == WEAK_ROLE:
            return row.weak
        if role == Qt.ItemDataRole.DecorationRole and col == STATUS:
            icon = self._icons.get(row.status)
            if icon is None:
                icon = self._icons[row.status] = dot_icon(STATUS_COLOURS.get(row.status, "#8c959f"))
            return icon
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row, col)
        if role == Qt.ItemDataRole.TextAlignmentRole and col == DISAGREEMENT:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and col == SPLIT:
            return self._muted
        if role == Qt.ItemDataRole.FontRole and col == CLIP and row.has_manual:
            return self._italic
        return None

    @staticmethod
    def _tooltip(row: QueueRow, col: int) -> str:
        if col == WEAK:
            return "\n".join(DISPLAY_NAMES[i] for i in row.weak) or "no weak label"
        if col == DISAGREEMENT:
            return "audio and visual pseudo-labels differ on this share of the weak-class cells"
        lines = [f"{row.filename}  (#{row.clip_id}, {row.split})"]
        visual = {None: "no visual pseudo-label", True: "visual pseudo-label empty",
                  False: "visual pseudo-label present"}[row.empty_visual]
        lines.append(visual + (" · manual labels saved (italic)" if row.has_manual else ""))
        status = row.status.replace("_", " ")
        if row.annotator or row.reviewed_at:
            when = row.reviewed_at.astimezone().strftime("%Y-%m-%d %H:%M") if row.reviewed_at else ""
            status += f" by {row.annotator or 'unknown'} {when}".rstrip()
        lines.append(status)
        return "\n".join(lines)


class WeakChipsDelegate(QStyledItemDelegate):
    """Paints the weak labels as small rounded chips tinted with the class colours."""

    PAD, GAP = 5, 3

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        style = opt.widget.style() if opt.widget is not None else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        classes = index.data(WEAK_ROLE) or ()
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        text_colour = option.palette.highlightedText().color() if selected else option.palette.text().color()
        metrics = option.fontMetrics
        rect = option.rect.adjusted(4, 3, -4, -3)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        x = rect.left()
        for n, cls in enumerate(classes):
            name = DISPLAY_NAMES[cls]
            width = metrics.horizontalAdvance(name) + 2 * self.PAD
            rest = len(classes) - n
            more = f"+{rest}"
            if x + width > rect.right() and n > 0:
                painter.setPen(text_colour)
                painter.drawText(QRect(x, rect.top(), rect.right() - x, rect.height()),
                                 Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, more)
                break
            width = min(width, rect.right() - x)
            fill = class_colour(cls)
            fill.setAlpha(90 if selected else 60)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(fill)
            chip = QRect(x, rect.top(), width, rect.height())
            painter.drawRoundedRect(chip, 4, 4)
            painter.setBrush(class_colour(cls))
            painter.drawRect(QRect(x, rect.top() + 2, 2, rect.height() - 4))  # a solid edge names the colour
            painter.setPen(text_colour)
            painter.drawText(chip.adjusted(self.PAD, 0, -2, 0), Qt.AlignmentFlag.AlignVCenter,
                             metrics.elidedText(name, Qt.TextElideMode.ElideRight, width - self.PAD - 2))
            x += width + self.GAP
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        return QSize(160, option.fontMetrics.height() + 8)

