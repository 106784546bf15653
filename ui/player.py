"""The video player of the workstation: frame view, transport, segment bar.

Frames come from `annotation.media.FrameReader` (the project's one decoder),
time from `MediaClock`; the frame shown is always the frame of the clock's
time by `time_to_frame`, the segment by `time_to_segment`, so what the user
sees is what a segment label refers to. Playback decodes on the GUI thread:
sequential reads cost about a millisecond for LLP-sized video, and a player
that falls behind shows the frame for the clock's time (decoding through or
seeking) instead of queueing frames.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSignalBlocker, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QMouseEvent, QPainter, QPaintEvent, QPixmap, QPolygonF
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from annotation.media import (
    CLIP_SECONDS,
    FrameReader,
    MediaError,
    MediaInfo,
    decode_audio,
    frame_to_time,
    probe,
    time_to_frame,
    time_to_segment,
)
from annotation.taxonomy import NUM_SEGMENTS
from ui.audio_output import NO_TRACK, SOUND_OFF, audio_unavailable_reason
from ui.media_clock import SPEEDS, MediaClock
from ui.prediction_overlay import PredictionStrip, paint_overlay
from ui.theme import ACCENT, current_is_dark, grid_background, grid_lines, muted_text, text_colour

PLAYBACK_RATE = 22050  # sound decoded for the speakers (the waveform view uses 16 kHz)
NOMINAL_FPS = 25.0  # frame steps when there is no video
SOUND_DECODE_DELAY_MS = 40  # after load(): lets the first frame's paint go first (decode ~25 ms)
BACK_TO_SEGMENT_START = 0.3  # "previous segment" within this much of a start goes one further back
NO_VIDEO = "No video for this clip"


def format_time(t: float) -> str:
    """mm:ss.ff (hundredths)."""
    hundredths = int(round(max(0.0, t) * 100))
    minutes, rest = divmod(hundredths, 6000)
    return f"{minutes:02d}:{rest // 100:02d}.{rest % 100:02d}"


def segment_start(seg: int) -> float:
    return seg * CLIP_SECONDS / NUM_SEGMENTS


def transport_icon(kind: str, colour: QColor, size: int = 32) -> QIcon:
    """Flat transport glyphs in the theme's text colour (the style's own are dark on dark)."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(colour)
    u = size / 16

    def triangle(x: float, forward: bool, width: float = 6) -> None:
        tip, base = (x + width, x) if forward else (x, x + width)
        painter.drawPolygon(QPolygonF([QPointF(base * u, 3 * u), QPointF(base * u, 13 * u), QPointF(tip * u, 8 * u)]))

    if kind == "play":
        triangle(4.5, True, 8)
    elif kind == "pause":
        painter.drawRect(QRectF(4 * u, 3 * u, 3 * u, 10 * u))
        painter.drawRect(QRectF(9 * u, 3 * u, 3 * u, 10 * u))
    elif kind in ("frame_back", "frame_forward"):
        forward = kind == "frame_forward"
        triangle(4 if forward else 6, forward)
        painter.drawRect(QRectF((11 if forward else 3) * u, 3 * u, 2 * u, 10 * u))
    elif kind == "muted":  # a loudspeaker, crossed out
        painter.drawRect(QRectF(2 * u, 6 * u, 3 * u, 4 * u))
        painter.drawPolygon(QPolygonF([QPointF(5 * u, 6 * u), QPointF(9 * u, 3 * u), QPointF(9 * u, 13 * u),
                                       QPointF(5 * u, 10 * u)]))
        pen = painter.pen()
        pen.setStyle(Qt.PenStyle.SolidLine)
        pen.setColor(colour)
        pen.setWidthF(1.5 * u)
        painter.setPen(pen)
        painter.drawLine(QPointF(10.5 * u, 5.5 * u), QPointF(14.5 * u, 10.5 * u))
        painter.drawLine(QPointF(14.5 * u, 5.5 * u), QPointF(10.5 * u, 10.5 * u))
    else:  # segment_back / segment_forward: double triangle
        forward = kind == "segment_forward"
        triangle(2, forward)
        triangle(8, forward)
    painter.end()
    return QIcon(pixmap)


class FrameView(QWidget):
    """One RGB frame scaled to fit (aspect kept), or a centred placeholder text."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._frame: np.ndarray | None = None
        self._image: QImage | None = None
        self._text = ""
        self._overlay: tuple[list, str] | None = None  # (OverlayItems, run name) drawn over the frame
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)

    def set_frame(self, rgb: np.ndarray) -> None:
        """Show `rgb` (H, W, 3) uint8; the QImage wraps the array, no copy."""
        rgb = np.ascontiguousarray(rgb)
        h, w = rgb.shape[:2]
        self._frame = rgb
        self._image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
        self._text = ""
        self.update()

    def set_placeholder(self, text: str) -> None:
        self._frame, self._image, self._text = None, None, text
        self.update()

    def set_overlay(self, items: list | None, run: str = "") -> None:
        """A prediction run's events of the current segment over the frame (None: nothing)."""
        overlay = None if items is None else (items, run)
        if overlay != self._overlay:
            self._overlay = overlay
            self.update()

    @property
    def overlay(self) -> tuple[list, str] | None:
        return self._overlay

    @property
    def frame(self) -> np.ndarray | None:
        return self._frame

    @property
    def placeholder(self) -> str:
        return self._text

    def image_rect(self) -> QRectF:
        """Where the frame is drawn: the largest rect of its aspect centred in the widget."""
        if self._image is None:
            return QRectF()
        iw, ih = self._image.width(), self._image.height()
        scale = min(self.width() / iw, self.height() / ih)
        w, h = iw * scale, ih * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def sizeHint(self) -> QSize:
        return QSize(480, 360)

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#000000") if self._image is not None else grid_background(current_is_dark()))
        if self._image is not None:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(self.image_rect(), self._image)
            if self._overlay is not None:
                paint_overlay(painter, self.image_rect(), *self._overlay)
        elif self._text:
            painter.setPen(muted_text(current_is_dark()))
            painter.drawText(self.rect().adjusted(12, 12, -12, -12), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._text)
        painter.end()


class SegmentBar(QWidget):
    """Ten thin cells, one per one-second segment; the current one highlighted; click = go there."""

    segment_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None, segments: int = NUM_SEGMENTS):
        super().__init__(parent)
        self._segments = segments
        self._current = 0
        self.setFixedHeight(12)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Segments (one second each): click to go to a segment's start")

    def set_current(self, seg: int) -> None:
        if seg != self._current:
            self._current = seg
            self.update()

    def cell_rect(self, seg: int) -> QRectF:
        width = self.width() / self._segments
        return QRectF(seg * width + 1, 0, width - 2, self.height())

    def segment_at(self, x: float) -> int:
        return int(min(self._segments - 1, max(0, x * self._segments // max(1, self.width()))))

    def paintEvent(self, _event: QPaintEvent) -> None:
        dark = current_is_dark()
        painter = QPainter(self)
        for seg in range(self._segments):
            colour = QColor(ACCENT) if seg == self._current else grid_lines(dark)
            painter.fillRect(self.cell_rect(seg), colour)
        painter.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.segment_clicked.emit(self.segment_at(event.position().x()))
            event.accept()
        else:
            super().mousePressEvent(event)


class PlayerWidget(QWidget):
    """Video frame + transport + segment bar, driven by one MediaClock.

    `sound=False` never opens an audio output (the picture runs on the timer);
    tests use it for timing that does not depend on a machine's sound device.
    """

    position_changed = Signal(float)
    segment_changed = Signal(int)  # only when it changes
    playing_changed = Signal(bool)
    notice = Signal(str)  # why there is no sound, media errors
    frame_shown = Signal(int)  # index of the frame now on screen; -1: the placeholder

    def __init__(self, parent: QWidget | None = None, *, sound: bool = True):
        super().__init__(parent)
        self._info: MediaInfo | None = None
        self._reader: FrameReader | None = None
        self._duration = CLIP_SECONDS
        self._shown = -1
        self._segment = 0
        self._load_token = 0
        self._sound = sound
        self.clock = MediaClock(self, sound=sound)
        self.clock.duration = self._duration
        self.clock.ticked.connect(self._on_tick)
        self.clock.playing_changed.connect(self._on_playing_changed)
        self.clock.notice.connect(self._show_sound_state)  # the clock lost the sound device while playing
        self._build()
        self._show_placeholder("No clip")
        self._refresh_labels(0.0)

    # ------------------------------------------------------------------ layout

    def refresh_theme(self) -> None:
        """Icons and painted parts in the current theme's colours (after a live theme change)."""
        colour = text_colour(current_is_dark())
        for button, icon in self._icons.items():
            button.setIcon(transport_icon(icon, colour))
        self.sound_label.setPixmap(transport_icon("muted", colour).pixmap(20, 20))
        self._on_playing_changed(self.is_playing())
        self.view.update()
        self.segment_bar.update()

    def _button(self, icon: str, tip: str, slot) -> QToolButton:
        button = QToolButton(self)
        self._icons[button] = icon
        button.setIcon(transport_icon(icon, text_colour(current_is_dark())))
        button.setToolTip(tip)
        button.setAutoRaise(True)
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys belong to the window's shortcuts
        button.clicked.connect(slot)
        return button

    def _build(self) -> None:
        self._icons: dict[QToolButton, str] = {}
        self.view = FrameView(self)
        self.prediction_strip = PredictionStrip(self)
        self.segment_bar = SegmentBar(self)
        self.segment_bar.segment_clicked.connect(lambda seg: self.seek(segment_start(seg)))
        self.segment_back = self._button("segment_back", "Previous segment", lambda: self.step_segment(-1))
        self.frame_back = self._button("frame_back", "Previous frame", lambda: self.step_frame(-1))
        self.play_button = self._button("play", "Play / pause", self.toggle_play)
        self.frame_forward = self._button("frame_forward", "Next frame", lambda: self.step_frame(1))
        self.segment_forward = self._button("segment_forward", "Next segment", lambda: self.step_segment(1))
        self.time_label = QLabel(self)
        self.segment_label = QLabel(self)
        self.sound_label = QLabel(self)  # shown while there is no sound, the reason in its tooltip
        self.sound_label.setPixmap(transport_icon("muted", text_colour(current_is_dark())).pixmap(20, 20))
        self.sound_label.hide()
        self.speed_combo = QComboBox(self)
        for speed in SPEEDS:
            self.speed_combo.addItem(f"{speed:g}×", speed)
        self.speed_combo.setCurrentIndex(SPEEDS.index(1.0))
        self.speed_combo.setToolTip("Playback speed ([ slower, ] faster); the pitch moves with it")
        self.speed_combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.speed_combo.currentIndexChanged.connect(lambda i: self.set_speed(SPEEDS[i]))
        self.loop_button = QToolButton(self)
        self.loop_button.setText("⟲ Loop")
        self.loop_button.setCheckable(True)
        self.loop_button.setAutoRaise(True)
        self.loop_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.loop_button.setToolTip("Loop the selected segments, or the current segment (L)")
        self.loop_button.toggled.connect(self._loop_toggled)
        for label in (self.time_label, self.segment_label):
            label.setTextFormat(Qt.TextFormat.PlainText)
        font = self.time_label.font()
        font.setStyleHint(font.StyleHint.Monospace)
        font.setFamily("monospace")
        self.time_label.setFont(font)

        controls = QHBoxLayout()
        controls.setContentsMargins(4, 0, 4, 0)
        controls.setSpacing(2)
        for button in (self.segment_back, self.frame_back, self.play_button, self.frame_forward, self.segment_forward):
            controls.addWidget(button)
        controls.addSpacing(8)
        controls.addWidget(self.time_label)
        controls.addSpacing(6)
        controls.addWidget(self.sound_label)
        controls.addStretch(1)
        # a second row keeps the player narrow enough for a 1280-pixel screen beside the clip panel
        playback = QHBoxLayout()
        playback.setContentsMargins(4, 0, 4, 0)
        playback.setSpacing(2)
        playback.addWidget(self.segment_label)
        playback.addStretch(1)
        playback.addWidget(self.loop_button)
        playback.addWidget(self.speed_combo)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(3)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.prediction_strip)
        layout.addWidget(self.segment_bar)
        layout.addLayout(controls)
        layout.addLayout(playback)

    # ------------------------------------------------------------------ media

    @property
    def info(self) -> MediaInfo | None:
        return self._info

    def load(self, video_path: str | Path | None) -> None:
        """Open a clip and show its first frame now; a missing or bad file shows why instead."""
        self._close()
        self._load_token += 1
        self._show_sound_state(None)
        if video_path is None:
            self._start_media(CLIP_SECONDS, NO_VIDEO)
            self._show_sound_state(NO_VIDEO)
            return
        try:
            info = probe(video_path)
            reader = FrameReader(info.path) if info.has_video else None
        except MediaError as exc:
            self._start_media(CLIP_SECONDS, f"Cannot play this clip\n{exc.detail}\n{Path(video_path).name}")
            self._show_sound_state(str(exc))
            return
        self._info, self._reader = info, reader
        self._start_media(info.duration if info.duration > 0 else CLIP_SECONDS, None if reader else NO_VIDEO)
        if not info.has_audio:
            self._set_silent(NO_TRACK)
        elif not self._sound:
            self.clock.set_audio(None, 0, SOUND_OFF)  # chosen, not a problem: no notice
        elif (reason := audio_unavailable_reason()) is not None:
            self._set_silent(reason)
        else:  # decode the sound once the first frame has been painted
            token = self._load_token
            QTimer.singleShot(SOUND_DECODE_DELAY_MS, lambda: self._load_sound(info.path, token))

    def unload(self) -> None:
        self._close()
        self._load_token += 1
        self.clock.clear()
        self._end_range()
        self._duration = CLIP_SECONDS
        self.clock.duration = self._duration
        self._show_placeholder("No clip")
        self._show_time(0.0)

    def _close(self) -> None:
        self.clock.pause()
        if self._reader is not None:
            self._reader.close()
        self._reader, self._info, self._shown = None, None, -1

    def _start_media(self, duration: float, placeholder: str | None) -> None:
        self.clock.clear()
        self._end_range()
        self._duration = duration
        self.clock.duration = duration
        if placeholder is not None:
            self._show_placeholder(placeholder)
        self._show_time(0.0)

    def _set_silent(self, why: str) -> None:
        self.clock.set_audio(None, 0, why)
        self._show_sound_state(why)

    def _show_sound_state(self, why: str | None) -> None:
        """The muted icon beside the transport while there is no sound (why: its tooltip), and a notice."""
        self.sound_label.setVisible(why is not None)
        self.sound_label.setToolTip(why or "")
        if why is not None:
            self.notice.emit(why)

    def _load_sound(self, path: Path, token: int) -> None:
        if token != self._load_token:
            return  # another clip was loaded meanwhile
        try:
            samples, rate = decode_audio(path, rate=PLAYBACK_RATE, mono=True)
        except MediaError as exc:
            self._set_silent(f"No sound: {exc.detail}")
            return
        self.clock.set_audio(samples, rate)
        self._show_sound_state(self.clock.audio_notice)

    # ------------------------------------------------------------------ transport

    def play(self) -> None:
        self.clock.play()

    def pause(self) -> None:
        self.clock.pause()

    def toggle_play(self) -> None:
        self.clock.toggle()

    def is_playing(self) -> bool:
        return self.clock.is_playing()

    def seek(self, t: float) -> None:
        """Go to time t (a seek ends a loop or a play-once range)."""
        t = min(self._duration, max(0.0, float(t)))
        self._end_range()
        self.clock.seek(t)
        self._show_time(t)

    # ------------------------------------------------------------------ speed and ranges (ELAN / VIA habits)

    def speed(self) -> float:
        return self.clock.speed

    def set_speed(self, speed: float) -> None:
        self.clock.set_speed(speed)
        index = SPEEDS.index(self.clock.speed) if self.clock.speed in SPEEDS else -1
        if index >= 0 and index != self.speed_combo.currentIndex():
            with QSignalBlocker(self.speed_combo):
                self.speed_combo.setCurrentIndex(index)

    def step_speed(self, step: int) -> None:
        """The next slower (-1) or faster (+1) of SPEEDS."""
        current = min(range(len(SPEEDS)), key=lambda i: abs(SPEEDS[i] - self.clock.speed))
        self.set_speed(SPEEDS[min(len(SPEEDS) - 1, max(0, current + step))])

    def play_segments(self, first: int, last: int, loop: bool) -> None:
        """Play segments first..last once (then stop at their end), or loop them until stopped."""
        with QSignalBlocker(self.loop_button):
            self.loop_button.setChecked(loop)
        self.clock.play_range(segment_start(first), segment_start(last + 1), loop)
        self._show_time(self.clock.position())

    def looping(self) -> bool:
        range_ = self.clock.range
        return range_ is not None and range_[2]

    def _loop_toggled(self, on: bool) -> None:
        if on:
            seg = self.current_segment()
            self.play_segments(seg, seg, loop=True)
        else:
            self._end_range()

    def _end_range(self) -> None:
        self.clock.clear_range()
        with QSignalBlocker(self.loop_button):
            self.loop_button.setChecked(False)

    def step_frame(self, n: int) -> None:
        """n frames on (or back); pauses, as frame stepping is for looking closely."""
        self.pause()
        if self._reader is None:
            self.seek(self.position() + n / NOMINAL_FPS)
            return
        index = min(self._reader.frame_count - 1, max(0, self.current_frame_index() + int(n)))
        self.seek(frame_to_time(index, self._reader.fps))

    def step_segment(self, n: int) -> None:
        """To the start of the n-th next (n > 0) or previous (n < 0) segment (past the last: the end).

        Going back from more than BACK_TO_SEGMENT_START into a segment first goes to
        its own start, like the "previous" button of media players.
        """
        t = self.position()
        seg = self.current_segment()
        if n < 0 and t - segment_start(seg) > BACK_TO_SEGMENT_START:
            n += 1
        target = max(0, seg + int(n))
        self.seek(segment_start(target) if target < NUM_SEGMENTS else self._duration)

    def position(self) -> float:
        return self.clock.position()

    def duration(self) -> float:
        return self._duration

    def current_frame_index(self) -> int:
        """Frame of the current time; -1 when there is no video."""
        if self._reader is None:
            return -1
        return time_to_frame(self.position(), self._reader.fps, self._reader.frame_count)

    def current_segment(self) -> int:
        return time_to_segment(self.position())

    def displayed_frame(self) -> np.ndarray | None:
        """A copy of the RGB frame on screen (None for the placeholder)."""
        frame = self.view.frame
        return None if frame is None else frame.copy()

    # ------------------------------------------------------------------ updates

    def _on_tick(self, t: float) -> None:
        self._show_time(t)

    def _on_playing_changed(self, playing: bool) -> None:
        self.play_button.setIcon(transport_icon("pause" if playing else "play", text_colour(current_is_dark())))
        if not playing:
            self._show_time(self.clock.position())  # the exact paused frame
        self.playing_changed.emit(playing)

    def _show_time(self, t: float) -> None:
        """Frame, labels and signals for time t."""
        self._show_frame_at(t)
        self._refresh_labels(t)
        self.position_changed.emit(t)
        seg = time_to_segment(t)
        if seg != self._segment:
            self._segment = seg
            self.segment_bar.set_current(seg)
            self.prediction_strip.set_segment(seg)
            self.segment_changed.emit(seg)

    def _show_frame_at(self, t: float) -> None:
        if self._reader is None:
            return
        index = time_to_frame(t, self._reader.fps, self._reader.frame_count)
        if index == self._shown:
            return
        try:
            frame = self._reader.read(index)
        except (MediaError, IndexError) as exc:
            self._reader.close()
            self._reader = None
            self._show_placeholder(f"Cannot decode this video\n{exc}")
            self.notice.emit(str(exc))
            return
        self.view.set_frame(frame)
        self._shown = index
        self.frame_shown.emit(index)

    def _show_placeholder(self, text: str) -> None:
        self.view.set_placeholder(text)
        self._shown = -1
        self.frame_shown.emit(-1)

    def _refresh_labels(self, t: float) -> None:
        self.time_label.setText(f"{format_time(t)} / {format_time(self._duration)}")
        seg = time_to_segment(t)  # numbered 0-9 like the timelines' columns and the CSVs' onsets
        self.segment_label.setText(f"segment {seg} · {segment_start(seg):g}–{segment_start(seg + 1):g} s")
        self.segment_label.setToolTip(f"Segment {seg} of 0–{NUM_SEGMENTS - 1}: the timelines' column {seg}, "
                                      f"onset {seg} in the dense CSVs")
