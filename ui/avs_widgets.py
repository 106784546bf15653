"""The segmentation window's drawing widgets: the frame with its masks, and the strip of a clip's frames."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from ui.theme import ACCENT, current_is_dark, grid_background, grid_lines, muted_text, text_colour

DECISION_MARK = {"accepted": "✓", "rejected": "✗"}
DECISION_COLOUR = {"accepted": "#2fbf71", "rejected": "#e5534b"}
_IOU_STOPS = ((0.0, (229, 83, 75)), (0.5, (242, 177, 52)), (1.0, (47, 191, 113)))


def iou_colour(iou: float | None) -> QColor:
    """Red (0) through amber (0.5) to green (1); grey when there is no IoU."""
    if iou is None:
        return QColor("#7d8590")
    iou = min(1.0, max(0.0, float(iou)))
    for (a, ca), (b, cb) in zip(_IOU_STOPS, _IOU_STOPS[1:]):
        if iou <= b:
            t = (iou - a) / (b - a)
            return QColor(*(int(round(x + (y - x) * t)) for x, y in zip(ca, cb)))
    return QColor(*_IOU_STOPS[-1][1])


def to_qimage(rgb: np.ndarray) -> QImage:
    """A QImage that owns a copy of (H, W, 3) uint8 RGB."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class MaskView(QWidget):
    """The composite (frame and masks, `ui.avs_render`) scaled to fit, a corner caption and a decision badge."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._image: QImage | None = None
        self._factor = 1
        self._text = ""
        self._caption = ""
        self._badge: tuple[str, str] | None = None  # (status, text)
        self.setMinimumSize(240, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)

    def set_composite(self, rgb: np.ndarray, factor: int) -> None:
        self._image, self._factor, self._text = to_qimage(rgb), factor, ""
        self.update()

    def set_placeholder(self, text: str) -> None:
        self._image, self._text = None, text
        self.update()

    def set_caption(self, text: str) -> None:
        self._caption = text
        self.update()

    def set_badge(self, status: str | None, text: str = "") -> None:
        self._badge = None if status is None else (status, text)
        self.update()

    @property
    def placeholder(self) -> str:
        return self._text

    @property
    def badge(self) -> tuple[str, str] | None:
        return self._badge

    def image_rect(self) -> QRectF:
        """Where the composite is drawn: as large as fits, aspect kept, centred."""
        if self._image is None:
            return QRectF()
        w, h = self._image.width(), self._image.height()
        scale = min(self.width() / w, self.height() / h)
        return QRectF((self.width() - w * scale) / 2, (self.height() - h * scale) / 2, w * scale, h * scale)

    def widget_point(self, x: int, y: int) -> QPoint:
        """The widget pixel at the centre of mask pixel (x, y) of the frame."""
        rect = self.image_rect()
        scale = rect.width() / self._image.width() * self._factor
        return QPoint(int(rect.left() + (x + 0.5) * scale), int(rect.top() + (y + 0.5) * scale))

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        dark = current_is_dark()
        painter.fillRect(self.rect(), QColor("#101216") if dark else QColor("#2b2f36"))
        if self._image is None:
            painter.setPen(QColor("#c9d1d9"))
            painter.drawText(self.rect().adjusted(24, 24, -24, -24),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._text)
            painter.end()
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        rect = self.image_rect()
        painter.drawImage(rect, self._image)
        font = QFont(painter.font())
        font.setPointSizeF(max(8.0, min(12.0, rect.height() / 40)))
        font.setBold(True)
        painter.setFont(font)
        metrics = painter.fontMetrics()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if self._caption:
            box = QRectF(rect.left() + 8, rect.top() + 8, metrics.horizontalAdvance(self._caption) + 16,
                         metrics.height() + 8)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(0, 0, 0, 165))
            painter.drawRoundedRect(box, 5, 5)
            painter.setPen(QColor("#ffffff"))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, self._caption)
        if self._badge is not None:
            status, text = self._badge
            label = f"{DECISION_MARK[status]} {text}"
            width = metrics.horizontalAdvance(label) + 20
            box = QRectF(rect.right() - 8 - width, rect.top() + 8, width, metrics.height() + 10)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(DECISION_COLOUR[status]))
            painter.drawRoundedRect(box, box.height() / 2, box.height() / 2)
            painter.setPen(QColor("#ffffff"))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, label)
        painter.end()


class FrameStrip(QWidget):
    """One cell per frame of the clip: a thumbnail, the frame's IoU as a coloured bar with its value, the
    decision (✓ / ✗) in the corner; the current frame framed. A click picks a frame."""

    frame_clicked = Signal(int)
    CELL_HEIGHT = 92

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._thumbs: list[QImage | None] = []
        self._ious: list[float | None] = []
        self._decisions: list[str | None] = []
        self._truth: list[bool] = []
        self._current = 0
        self.setFixedHeight(self.CELL_HEIGHT)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def sizeHint(self) -> QSize:
        return QSize(600, self.CELL_HEIGHT)

    def set_frames(self, thumbs: list[np.ndarray | None], ious: list[float | None], decisions: list[str | None],
                   truth: list[bool]) -> None:
        self._thumbs = [None if t is None else to_qimage(t) for t in thumbs]
        self._ious, self._decisions, self._truth = list(ious), list(decisions), list(truth)
        self.update()

    def set_decisions(self, decisions: list[str | None]) -> None:
        self._decisions = list(decisions)
        self.update()

    def set_current(self, frame: int) -> None:
        self._current = frame
        self.update()

    @property
    def decisions(self) -> list[str | None]:
        return list(self._decisions)

    def cell_rect(self, frame: int) -> QRectF:
        count = max(1, len(self._thumbs))
        width = self.width() / count
        return QRectF(frame * width + 2, 2, width - 4, self.height() - 4)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        for frame in range(len(self._thumbs)):
            if self.cell_rect(frame).contains(event.position()):
                self.frame_clicked.emit(frame)
                return

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        dark = current_is_dark()
        painter.fillRect(self.rect(), grid_background(dark))
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        font = QFont(painter.font())
        font.setPointSizeF(8.5)
        painter.setFont(font)
        bar_h = painter.fontMetrics().height() + 2
        for frame, thumb in enumerate(self._thumbs):
            cell = self.cell_rect(frame)
            painter.fillRect(cell, grid_lines(dark))
            picture = QRectF(cell.left() + 2, cell.top() + 2, cell.width() - 4, cell.height() - bar_h - 4)
            if thumb is not None:
                scale = min(picture.width() / thumb.width(), picture.height() / thumb.height())
                w, h = thumb.width() * scale, thumb.height() * scale
                painter.drawImage(QRectF(picture.center().x() - w / 2, picture.top() + (picture.height() - h) / 2,
                                         w, h), thumb)
            painter.setPen(QColor("#ffffff"))
            painter.fillRect(QRectF(picture.left(), picture.top(), 22, 16), QColor(0, 0, 0, 150))
            painter.drawText(QRectF(picture.left(), picture.top(), 22, 16), Qt.AlignmentFlag.AlignCenter,
                             str(frame + 1))
            iou = self._ious[frame] if frame < len(self._ious) else None
            bar = QRectF(cell.left() + 2, cell.bottom() - bar_h - 1, cell.width() - 4, bar_h)
            if iou is not None:
                painter.fillRect(bar, iou_colour(iou))
                painter.setPen(QColor("#101216"))
                text = f"IoU {iou:.2f}"
            else:
                painter.setPen(muted_text(dark))
                text = "no truth" if frame < len(self._truth) and not self._truth[frame] else "no prediction"
            painter.drawText(bar, Qt.AlignmentFlag.AlignCenter, text)
            status = self._decisions[frame] if frame < len(self._decisions) else None
            if status is not None:
                r = 10.0
                centre = QPointF(picture.right() - r - 2, picture.top() + r + 2)
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(QColor(DECISION_COLOUR[status]))
                painter.drawEllipse(centre, r, r)
                painter.setPen(QColor("#ffffff"))
                painter.drawText(QRectF(centre.x() - r, centre.y() - r, 2 * r, 2 * r), Qt.AlignmentFlag.AlignCenter,
                                 DECISION_MARK[status])
            if frame == self._current:
                painter.setPen(QPen(QColor(ACCENT), 3))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRoundedRect(cell.adjusted(1, 1, -1, -1), 3, 3)
        if not self._thumbs:
            painter.setPen(text_colour(dark))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No clip")
        painter.end()
