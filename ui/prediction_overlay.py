"""A prediction run over the video: what the model hears and sees in the current segment, with its
confidence, against the labels as they are now; and a thin per-class strip of its probabilities.

Status of a (class, track) in a segment: "agree" (predicted and labelled), "model" (predicted,
not labelled: a candidate to add) or "label" (labelled, not predicted: a candidate to check).
"Predicted" is the run's 0/1 grid, i.e. the published rule (segment and video-level probability
>= 0.5); the confidence shown is the segment probability.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPaintEvent, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget

from annotation.predictions import ClipScores
from annotation.taxonomy import COLOURS, DISPLAY_NAMES, NUM_SEGMENTS
from ui.theme import ACCENT, current_is_dark, grid_background, grid_lines

STATUS_MARK = {"agree": "✓", "model": "+", "label": "−"}
STATUS_TEXT = {"agree": "model and label agree", "model": "model only", "label": "label only"}
STATUS_COLOUR = {"agree": "#2fbf71", "model": "#f2b134", "label": "#e5534b"}
TRACK_WORD = {"audio": "heard", "visual": "seen"}
STRIP_ROW_H = 5
MAX_STRIP_CLASSES = 8


@dataclass(frozen=True)
class OverlayItem:
    cls: int
    track: str  # "audio" (heard) or "visual" (seen)
    probability: float | None  # None: the run kept no probabilities
    status: str  # agree | model | label


def overlay_items(seg: int, predicted: dict[str, np.ndarray | None], labels: dict[str, np.ndarray],
                  scores: ClipScores | None) -> list[OverlayItem]:
    """The (class, track) pairs predicted or labelled in segment `seg`, most confident first."""
    items = []
    for track in ("audio", "visual"):
        pred = predicted.get(track)
        if pred is None:
            continue
        probs = None if scores is None else getattr(scores, track)
        for cls in np.flatnonzero(pred[:, seg] | labels[track][:, seg]).tolist():
            status = "agree" if pred[cls, seg] and labels[track][cls, seg] else "model" if pred[cls, seg] else "label"
            items.append(OverlayItem(cls, track, None if probs is None else float(probs[cls, seg]), status))
    return sorted(items, key=lambda i: (i.track, -(i.probability or 0.0), i.cls))


def item_text(item: OverlayItem) -> str:
    confidence = "" if item.probability is None else f" {100 * item.probability:.0f}%"
    return f"{STATUS_MARK[item.status]} {DISPLAY_NAMES[item.cls]} ({TRACK_WORD[item.track]}){confidence}"


def paint_overlay(painter: QPainter, area: QRectF, items: list[OverlayItem], run: str) -> None:
    """A translucent box in the frame's top-left corner: the run, then one line per item."""
    font = QFont(painter.font())
    font.setPointSizeF(max(7.0, min(11.0, area.height() / 24)))
    painter.setFont(font)
    metrics = painter.fontMetrics()
    line = metrics.height()
    lines = [(f"model {run}", "#ffffff")] + [(item_text(i), STATUS_COLOUR[i.status]) for i in items]
    if not items:
        lines.append(("nothing predicted or labelled here", "#c9d1d9"))
    width = max(metrics.horizontalAdvance(text) for text, _ in lines) + 16
    box = QRectF(area.left() + 8, area.top() + 8, min(width, area.width() - 16), line * len(lines) + 10)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(0, 0, 0, 165))
    painter.drawRoundedRect(box, 5, 5)
    for k, (text, colour) in enumerate(lines):
        painter.setPen(QColor(colour))
        painter.drawText(QRectF(box.left() + 8, box.top() + 5 + k * line, box.width() - 12, line),
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, text)


class PredictionStrip(QWidget):
    """Per class (the run's predicted classes and the labelled ones, up to MAX_STRIP_CLASSES), two thin
    rows (heard above, seen below) of ten cells whose opacity is the segment probability; the
    current segment framed. Follows the media clock through `set_segment`."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._scores: ClipScores | None = None
        self._classes: list[int] = []
        self._segment = 0
        self._cells: QPixmap | None = None  # the cells, drawn once per clip, size and theme
        self._drawn_for: tuple = ()
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.hide()

    def set_data(self, scores: ClipScores | None, classes: list[int]) -> None:
        classes = classes[:MAX_STRIP_CLASSES]
        if scores is self._scores and classes == self._classes:
            return  # the same clip and rows (a label edit elsewhere, the overlay toggled back): nothing to redo
        self._scores, self._classes, self._cells = scores, classes, None
        self.setFixedHeight(2 * STRIP_ROW_H * len(self._classes) + 2)
        self.setToolTip("Model probabilities per segment (heard above, seen below): "
                        + ", ".join(DISPLAY_NAMES[c] for c in self._classes))
        self.setVisible(scores is not None and bool(self._classes))
        self.update()

    def set_segment(self, seg: int) -> None:
        if seg != self._segment:
            self._segment = seg
            self.update()

    def cell_rect(self, row: int, track: str, seg: int) -> QRectF:
        width = self.width() / NUM_SEGMENTS
        y = 1 + row * 2 * STRIP_ROW_H + (0 if track == "audio" else STRIP_ROW_H)
        return QRectF(seg * width + 1, y, width - 2, STRIP_ROW_H - 1)

    def _draw_cells(self, dark: bool) -> QPixmap:
        pixmap = QPixmap(self.size())
        pixmap.fill(grid_background(dark))
        painter = QPainter(pixmap)
        for row, cls in enumerate(self._classes):
            for track, probs in (("audio", self._scores.audio), ("visual", self._scores.visual)):
                alphas = np.clip(probs[cls], 0.0, 1.0).tolist()
                for seg in range(NUM_SEGMENTS):
                    colour = QColor(COLOURS[cls])
                    colour.setAlphaF(alphas[seg])
                    rect = self.cell_rect(row, track, seg)
                    painter.fillRect(rect, grid_lines(dark))
                    painter.fillRect(rect, colour)
        painter.end()
        return pixmap

    def paintEvent(self, _event: QPaintEvent) -> None:
        """The cells come from a pixmap drawn once per clip (playback repaints only the segment frame)."""
        if self._scores is None:
            return
        dark = current_is_dark()
        key = (self.size(), dark)
        if self._cells is None or self._drawn_for != key:
            self._cells, self._drawn_for = self._draw_cells(dark), key
        painter = QPainter(self)
        painter.drawPixmap(0, 0, self._cells)
        width = self.width() / NUM_SEGMENTS
        painter.setPen(QColor(ACCENT))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(QRectF(self._segment * width + 0.5, 0.5, width - 1, self.height() - 1))
        painter.end()
