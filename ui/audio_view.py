"""Waveform and spectrogram of a clip's sound, with segment lines and a playhead.

Both plots share one fixed x axis, 0..duration seconds, so a click anywhere
seeks to that time; zooming and panning are off (the clip is ten seconds).
The numbers behind the pictures (`compute_audio_view`) are plain numpy, cheap
enough (a few ms for 10 s at 16 kHz) to run on the GUI thread or in a worker.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QVBoxLayout, QWidget

from annotation.media import CLIP_SECONDS, MediaError, decode_audio, time_to_segment
from annotation.taxonomy import NUM_SEGMENTS
from ui.theme import ACCENT, PLAYHEAD, current_is_dark, grid_background, grid_lines, muted_text, text_colour

VIEW_RATE = 16000  # the view's decode rate: 8 kHz of spectrum is plenty to see events
N_FFT = 512  # 32 ms windows at 16 kHz
HOP_SECONDS = 0.01
DYNAMIC_RANGE_DB = 80.0
NO_AUDIO = "No audio track"
NO_VIDEO_FILE = "No video file for this clip"
MIN_WINDOW_SECONDS = 0.25  # the deepest time zoom
MIN_FREQUENCY_KHZ = 0.5  # the deepest frequency zoom
WHEEL_ZOOM = 1.25  # zoom factor per wheel step
AXIS_WIDTH = 44


@dataclass(frozen=True, eq=False)
class AudioViewData:
    """What the view draws: samples (for the envelope at any width) and the spectrogram.

    `spectrogram` is uint8 (freq bins, frames), 0..255 over the top DYNAMIC_RANGE_DB
    of log magnitude, row 0 the lowest frequency; it spans `audio_seconds` x `top_hz`.
    """

    samples: np.ndarray
    rate: int
    duration: float
    spectrogram: np.ndarray
    top_hz: float

    @property
    def audio_seconds(self) -> float:
        return len(self.samples) / self.rate


def envelope(samples: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) of the samples in each of `columns` equal slices (empty slices give 0)."""
    n = len(samples)
    columns = max(1, min(int(columns), max(1, n)))
    if n == 0:
        return np.zeros(columns, np.float32), np.zeros(columns, np.float32)
    edges = np.linspace(0, n, columns + 1).astype(np.int64)
    starts = edges[:-1]
    return np.minimum.reduceat(samples, starts).astype(np.float32), np.maximum.reduceat(samples, starts).astype(np.float32)


def spectrogram(samples: np.ndarray, rate: int, n_fft: int = N_FFT, hop: int | None = None) -> np.ndarray:
    """Log-magnitude STFT (dB) as (n_fft // 2 + 1, frames), frames centred every `hop` samples."""
    hop = hop or max(1, int(round(rate * HOP_SECONDS)))
    x = np.asarray(samples, np.float32)
    x = np.pad(x, (n_fft // 2, n_fft // 2 + hop))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[:: hop][: max(1, (len(samples) + hop - 1) // hop)]
    window = np.hanning(n_fft).astype(np.float32)
    magnitude = np.abs(np.fft.rfft(frames * window, axis=1)).astype(np.float32)
    return (20.0 * np.log10(magnitude + 1e-6)).T


def to_uint8_levels(db: np.ndarray, dynamic_range: float = DYNAMIC_RANGE_DB) -> np.ndarray:
    """dB -> 0..255 over [max - dynamic_range, max] (silence is all zeros)."""
    top = float(db.max()) if db.size else 0.0
    scaled = (db - (top - dynamic_range)) * (255.0 / dynamic_range)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def compute_audio_view(samples: np.ndarray, rate: int, duration: float) -> AudioViewData:
    """Everything the view needs, from mono float samples."""
    samples = np.asarray(samples, np.float32)
    return AudioViewData(
        samples=samples,
        rate=int(rate),
        duration=float(duration),
        spectrogram=np.ascontiguousarray(to_uint8_levels(spectrogram(samples, rate))),
        top_hz=rate / 2,
    )


def load_audio(path: str | Path | None, rate: int = VIEW_RATE) -> tuple[np.ndarray | None, int, str | None]:
    """(samples, rate, None), or (None, rate, why): no video file for the clip, the file is
    missing, it has no audio track, or it cannot be read (each says which)."""
    if path is None:
        return None, rate, NO_VIDEO_FILE
    try:
        samples, rate = decode_audio(path, rate=rate, mono=True)
    except MediaError as exc:
        if exc.detail == "no audio stream":
            return None, rate, NO_AUDIO
        if exc.detail == "no such file":
            return None, rate, f"Video file not found: {Path(path).name}"
        return None, rate, f"Cannot read the audio: {exc.detail}"
    return samples, rate, None


class _SeekViewBox(pg.ViewBox):
    """A ViewBox whose left click and drag ask for a seek, and whose wheel asks the AudioView to
    zoom or pan (it does neither itself, so the two plots always show the same time)."""

    seek = Signal(float)
    wheel = Signal(float, float, float, object)  # steps (+ = away from the user), x (s), y, modifiers

    def __init__(self) -> None:
        super().__init__(enableMenu=False)
        self.setMouseEnabled(x=False, y=False)

    def _emit(self, scene_pos) -> None:
        self.seek.emit(float(self.mapSceneToView(scene_pos).x()))

    def mouseClickEvent(self, ev) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self._emit(ev.scenePos())
        else:
            ev.ignore()

    def mouseDragEvent(self, ev, axis=None) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self._emit(ev.scenePos())
        else:
            ev.ignore()

    def wheelEvent(self, ev, axis=None) -> None:
        ev.accept()
        point = self.mapSceneToView(ev.scenePos())
        self.wheel.emit(ev.delta() / 120, float(point.x()), float(point.y()), ev.modifiers())


class AudioView(QWidget):
    """Waveform over spectrogram; `seek_requested(t)` on click or drag.

    Zoom and pan (time, both plots together): the wheel zooms around the pointer, Shift+wheel
    pans, `zoom`/`pan`/`reset_zoom` do the same from keys; Ctrl+wheel over the spectrogram
    zooms its frequency axis. While playing, the window pages along with the playhead."""

    seek_requested = Signal(float)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        dark = current_is_dark()
        self._data: AudioViewData | None = None
        self._duration = CLIP_SECONDS
        self._window = (0.0, CLIP_SECONDS)  # the time shown (zoom)
        self._segment = -1
        self._drawn_columns = 0
        self.graphics = pg.GraphicsLayoutWidget(self)
        self.graphics.setBackground(grid_background(dark))
        self.graphics.ci.layout.setSpacing(0)
        self.graphics.ci.setContentsMargins(0, 2, 4, 0)
        self.wave_plot = self.graphics.addPlot(row=0, col=0, viewBox=_SeekViewBox())
        self.spec_plot = self.graphics.addPlot(row=1, col=0, viewBox=_SeekViewBox())
        self.graphics.ci.layout.setRowStretchFactor(0, 2)
        self.graphics.ci.layout.setRowStretchFactor(1, 3)
        self.spec_plot.setXLink(self.wave_plot)
        self.wave_plot.vb.sigResized.connect(self._on_resized)
        self.playheads: list[pg.InfiniteLine] = []
        self.regions: list[pg.LinearRegionItem] = []
        self._boundaries: list[tuple[pg.PlotItem, pg.InfiniteLine]] = []
        for plot in (self.wave_plot, self.spec_plot):
            self._style_plot(plot, dark)
            plot.vb.seek.connect(self._on_seek)
            plot.vb.wheel.connect(lambda steps, x, y, mods, p=plot: self._on_wheel(p, steps, x, y, mods))
            region = pg.LinearRegionItem((0, 1), movable=False, brush=self._colour(ACCENT, 40), pen=pg.mkPen(None))
            region.setZValue(5)
            plot.addItem(region, ignoreBounds=True)
            self.regions.append(region)
            playhead = pg.InfiniteLine(0.0, angle=90, movable=False, pen=pg.mkPen(PLAYHEAD, width=1.5))
            playhead.setZValue(20)
            plot.addItem(playhead, ignoreBounds=True)
            self.playheads.append(playhead)
        self.wave_plot.getAxis("bottom").setStyle(showValues=False)
        self.wave_plot.getAxis("bottom").setHeight(0)
        self.wave_plot.getAxis("left").setStyle(showValues=False)
        self.spec_plot.setLabel("left", "kHz")
        self.spec_plot.setLabel("bottom", "s")

        self.waveform_item = pg.PlotDataItem(connect="pairs", pen=pg.mkPen(ACCENT, width=1))
        self.waveform_item.setZValue(10)
        self.wave_plot.addItem(self.waveform_item)
        self.spectrogram_item = pg.ImageItem(axisOrder="row-major")
        self.spectrogram_item.setColorMap(pg.colormap.get("inferno"))
        self.spectrogram_item.setZValue(0)
        self.spec_plot.addItem(self.spectrogram_item)
        self.message = pg.TextItem(NO_AUDIO, color=muted_text(dark), anchor=(0.5, 0.5))
        self.message.setZValue(30)
        self.wave_plot.addItem(self.message, ignoreBounds=True)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        self.setMinimumHeight(120)
        self.clear()

    # ------------------------------------------------------------------ look

    @staticmethod
    def _colour(hex_colour: str, alpha: int) -> QColor:
        colour = QColor(hex_colour)
        colour.setAlpha(alpha)
        return colour

    def refresh_theme(self) -> None:
        """Colours from ui.theme again, after the theme changed while the window is open."""
        dark = current_is_dark()
        self.graphics.setBackground(grid_background(dark))
        for plot in (self.wave_plot, self.spec_plot):
            self._style_plot(plot, dark)
        self.message.setColor(muted_text(dark))
        position = self.playheads[0].value()
        self._set_span(self._duration)  # the segment lines
        self.set_position(position)

    def _style_plot(self, plot: pg.PlotItem, dark: bool) -> None:
        plot.setMenuEnabled(False)
        plot.hideButtons()
        plot.setMouseEnabled(x=False, y=False)
        plot.vb.disableAutoRange()
        for name in ("left", "bottom"):
            axis = plot.getAxis(name)
            axis.setPen(grid_lines(dark))
            axis.setTextPen(text_colour(dark))
        plot.getAxis("left").setWidth(AXIS_WIDTH)

    def set_axis_width(self, pixels: int) -> None:
        """Left axis width, so the time axis can line up with the timelines beside it."""
        for plot in (self.wave_plot, self.spec_plot):
            plot.getAxis("left").setWidth(pixels)

    def _set_span(self, duration: float) -> None:
        """Fix the x view to 0..duration (the whole clip) and redraw the per-second segment lines."""
        self._duration = duration if duration > 0 else CLIP_SECONDS
        for plot in (self.wave_plot, self.spec_plot):
            plot.vb.setLimits(xMin=0, xMax=self._duration)
        self._show_window(0.0, self._duration)
        for plot, line in self._boundaries:
            plot.removeItem(line)
        self._boundaries.clear()
        pen = pg.mkPen(self._colour(muted_text(current_is_dark()).name(), 70), width=1)
        for plot in (self.wave_plot, self.spec_plot):
            for second in range(1, int(np.ceil(self._duration - 1e-6))):
                line = pg.InfiniteLine(float(second), angle=90, movable=False, pen=pen)
                line.setZValue(15)
                plot.addItem(line, ignoreBounds=True)
                self._boundaries.append((plot, line))
        self._segment = -1

    # ------------------------------------------------------------------ data

    def set_audio(self, samples: np.ndarray | None, rate: int, duration: float, reason: str = NO_AUDIO) -> None:
        """Show a clip's sound (mono float samples); None shows `reason` (why there is none)."""
        if samples is None or len(samples) == 0 or rate <= 0:
            self.clear(duration, reason)
            return
        self.set_data(compute_audio_view(samples, rate, duration))

    def set_data(self, data: AudioViewData) -> None:
        """Show precomputed numbers (see `compute_audio_view`)."""
        self._data = data
        self._set_span(data.duration if data.duration > 0 else data.audio_seconds)
        self.message.hide()
        self.spectrogram_item.setImage(data.spectrogram, levels=(0, 255), autoLevels=False)
        self.spectrogram_item.setRect(QRectF(0.0, 0.0, data.audio_seconds, data.top_hz / 1000))
        self.spectrogram_item.show()
        self.spec_plot.setYRange(0, data.top_hz / 1000, padding=0)
        self.set_position(self.playheads[0].value())

    def clear(self, duration: float = CLIP_SECONDS, reason: str = NO_AUDIO) -> None:
        """No sound: empty plots with `reason` written over them, span 0..duration."""
        self.message.setText(reason)
        self._data = None
        self._set_span(duration)
        self.waveform_item.setData([], [])
        self.spectrogram_item.clear()
        self.spectrogram_item.hide()
        self.wave_plot.setYRange(-1, 1, padding=0)
        self.spec_plot.setYRange(0, VIEW_RATE / 2000, padding=0)
        self.message.setPos(self._duration / 2, 0)
        self.message.show()
        self.set_position(0.0)

    @property
    def data(self) -> AudioViewData | None:
        return self._data

    @property
    def duration(self) -> float:
        return self._duration

    def _columns(self) -> int:
        return max(200, int(self.wave_plot.vb.width()) or self.width())

    def _on_resized(self) -> None:
        if self._data is not None and self._columns() != self._drawn_columns:
            self._draw_waveform()  # one envelope column per pixel

    def _draw_waveform(self) -> None:
        """One envelope column per pixel of the time window shown (zoomed in, the detail grows)."""
        data = self._data
        if data is None:
            return
        columns = self._drawn_columns = self._columns()
        start, end = self._window
        rate = len(data.samples) / data.audio_seconds if data.audio_seconds else 0
        first, last = int(start * rate), max(int(start * rate) + 1, min(len(data.samples), int(np.ceil(end * rate))))
        low, high = envelope(data.samples[first:last], columns)
        x = np.repeat(np.linspace(first / rate, last / rate, len(low)), 2) if rate else np.zeros(2 * len(low))
        y = np.empty(2 * len(low), np.float32)
        y[0::2], y[1::2] = low, high
        self.waveform_item.setData(x, y)
        peak = max(float(np.max(np.abs(data.samples))) if len(data.samples) else 0.0, 1e-3)
        self.wave_plot.setYRange(-peak, peak, padding=0.05)

    # ------------------------------------------------------------------ playhead

    def set_position(self, t: float) -> None:
        for line in self.playheads:
            line.setValue(t)
        self._follow(t)
        seg = time_to_segment(t)
        if seg != self._segment:
            self._segment = seg
            end = self._duration if seg == NUM_SEGMENTS - 1 else seg + 1.0
            for region in self.regions:
                region.setRegion((float(seg), max(float(seg), min(end, self._duration))))

    def _on_seek(self, x: float) -> None:
        self.seek_requested.emit(min(self._duration, max(0.0, x)))

    # ------------------------------------------------------------------ zoom and pan

    @property
    def window(self) -> tuple[float, float]:
        return self._window

    def _show_window(self, start: float, end: float) -> None:
        width = min(self._duration, max(MIN_WINDOW_SECONDS, end - start))
        start = min(max(0.0, start), self._duration - width)
        self._window = (start, start + width)
        self.wave_plot.setXRange(start, start + width, padding=0)  # the spectrogram is x-linked
        self._draw_waveform()

    def zoom(self, factor: float, center: float | None = None) -> None:
        """Show 1/factor of the current time window, `center` (default: the playhead) kept in place."""
        start, end = self._window
        center = self.playheads[0].value() if center is None else center
        width = min(self._duration, max(MIN_WINDOW_SECONDS, (end - start) / factor))
        share = (center - start) / (end - start) if end > start else 0.5
        self._show_window(center - share * width, center - share * width + width)

    def pan(self, seconds: float) -> None:
        start, end = self._window
        self._show_window(start + seconds, end + seconds)

    def reset_zoom(self) -> None:
        self._show_window(0.0, self._duration)
        if self._data is not None:
            self.spec_plot.setYRange(0, self._data.top_hz / 1000, padding=0)

    def zoom_frequency(self, factor: float, center_khz: float) -> None:
        """Show 1/factor of the spectrogram's frequency range around `center_khz`."""
        top = (self._data.top_hz if self._data is not None else VIEW_RATE / 2) / 1000
        low, high = self.spec_plot.vb.viewRange()[1]
        height = min(top, max(MIN_FREQUENCY_KHZ, (high - low) / factor))
        share = (center_khz - low) / (high - low) if high > low else 0.5
        low = min(max(0.0, center_khz - share * height), top - height)
        self.spec_plot.setYRange(low, low + height, padding=0)

    def _on_wheel(self, plot: pg.PlotItem, steps: float, x: float, y: float, modifiers) -> None:
        factor = WHEEL_ZOOM ** steps
        if modifiers & Qt.KeyboardModifier.ShiftModifier:
            start, end = self._window
            self.pan(-steps * 0.1 * (end - start))
        elif modifiers & Qt.KeyboardModifier.ControlModifier and plot is self.spec_plot:
            self.zoom_frequency(factor, y)
        else:
            self.zoom(factor, x)

    def _follow(self, t: float) -> None:
        """Page the zoomed window along with the playhead."""
        start, end = self._window
        if end - start < self._duration - 1e-9 and not start <= t <= end:
            self._show_window(t - 0.05 * (end - start), t + 0.95 * (end - start))
