"""The three timelines of a clip, stacked: heard (audio), seen (visual), heard and seen (A AND V).

One panel owns the shared view settings (side by side or diff, diff reference,
other classes collapsed) so the three grids always line up column for column, and
knows which track keyboard edits go to (the active one).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QButtonGroup, QComboBox, QFrame, QHBoxLayout, QLabel, QScrollArea, QSizePolicy, QToolButton, QVBoxLayout,
    QWidget,
)

from annotation.grid import GRID_SHAPE
from ui import theme
from ui.timeline import TIMELINE_TRACKS, TrackTimeline
from ui.timeline_render import LAYER_NAMES, LAYER_TITLES

TITLES = {"audio": "Heard (audio)", "visual": "Seen (visual)", "audio_visual": "Heard and seen"}
SUBTITLES = {"audio": "", "visual": "", "audio_visual": "audio AND visual, read-only"}
EDITABLE_TRACKS = ("audio", "visual")


def derive_av(audio: np.ndarray | None, visual: np.ndarray | None) -> np.ndarray | None:
    """Audio-visual events: heard and seen in the same segment (None if either is missing)."""
    if audio is None or visual is None:
        return None
    return (np.asarray(audio) & np.asarray(visual)).astype(np.uint8)


EDIT_HINT = "Click a cell: toggle · drag: paint · click a second: seek"


class TimelinePanel(QWidget):
    """Audio, visual and derived audio-visual timelines with one view switch; re-emits their signals."""

    edit_requested = Signal(str, list, int)  # track, [(cls, seg), ...], value
    segment_clicked = Signal(int)
    selection_changed = Signal(str, int, int)
    cursor_moved = Signal(str, int, int)
    active_track_changed = Signal(str)
    run_chosen = Signal(object)  # 'prediction:<run>' (None: there is none)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._timelines = {t: TrackTimeline(t, editable=t in EDITABLE_TRACKS) for t in TIMELINE_TRACKS}
        self._titles: dict[str, QLabel] = {}
        self._active = "audio"
        self._current = {t: np.zeros(GRID_SHAPE, dtype=np.uint8) for t in EDITABLE_TRACKS}
        self._theme_pending = False

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(4)
        outer.addLayout(self._build_toolbar())
        body = QWidget()
        column = QVBoxLayout(body)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        for track, timeline in self._timelines.items():
            title = QLabel()
            title.setTextFormat(Qt.TextFormat.RichText)
            title.setContentsMargins(10, 8, 0, 0)
            self._titles[track] = title
            column.addWidget(title)
            column.addWidget(timeline)
            self._connect(track, timeline)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(body)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        outer.addWidget(scroll, 1)
        self._scroll = scroll
        self.set_active_track("audio")

    def _build_toolbar(self) -> QHBoxLayout:
        bar = QHBoxLayout()
        bar.setContentsMargins(8, 6, 8, 0)
        bar.setSpacing(6)
        bar.addWidget(QLabel("View"))
        self._mode_group = QButtonGroup(self)
        self._mode_buttons: dict[str, QToolButton] = {}
        for mode, text, tip in (
            ("side", "Side by side", "Current grid with the reference layers next to it"),
            ("diff", "Diff", "One grid coloured by agreement with a reference layer"),
        ):
            button = QToolButton(text=text, checkable=True, toolTip=tip)
            button.setAutoRaise(False)
            self._mode_group.addButton(button)
            self._mode_buttons[mode] = button
            bar.addWidget(button)
            button.clicked.connect(lambda _=False, m=mode: self.set_view_mode(m))
        self._mode_buttons["side"].setChecked(True)
        self._reference = QComboBox(toolTip="Reference layer of the diff view")
        for name in LAYER_NAMES:
            self._reference.addItem(f"vs {LAYER_TITLES[name]}", name)
        self._reference.setEnabled(False)
        self._reference.currentIndexChanged.connect(
            lambda _: self.set_diff_reference(self._reference.currentData())
        )
        bar.addWidget(self._reference)
        bar.addSpacing(10)
        bar.addWidget(QLabel("Model"))
        self.run_combo = QComboBox(toolTip="The prediction run shown as the 'prediction' layer, over the video "
                                           "(M) and by the queue's model sorts")
        self.run_combo.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.run_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.run_combo.currentIndexChanged.connect(lambda _: self.run_chosen.emit(self.run_combo.currentData()))
        bar.addWidget(self.run_combo)
        self.set_runs([], None)
        bar.addSpacing(10)
        self.edit_hint = QLabel(EDIT_HINT)
        self.edit_hint.setEnabled(False)  # dim: a reminder, not a control
        self.edit_hint.setToolTip("Click a cell to toggle it, drag to paint a run, click a second's number to seek")
        self.edit_hint.setMinimumWidth(0)  # gives way to the controls in a narrow window
        self.edit_hint.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        bar.addWidget(self.edit_hint, 1)
        self._others = QToolButton(text="All classes", checkable=True)
        self._others.setToolTip("Show all 25 classes, not only the weak label and the ones set")
        self._others.toggled.connect(lambda on: self.set_others_collapsed(not on))
        bar.addWidget(self._others)
        return bar

    def _connect(self, track: str, timeline: TrackTimeline) -> None:
        timeline.edit_requested.connect(lambda cells, value, t=track: self.edit_requested.emit(t, cells, value))
        timeline.segment_clicked.connect(self.segment_clicked)
        timeline.selection_changed.connect(lambda a, b, t=track: self._on_selection(t, a, b))
        timeline.cursor_moved.connect(lambda c, s, t=track: self.cursor_moved.emit(t, c, s))
        timeline.others_collapsed_changed.connect(self.set_others_collapsed)
        if track in EDITABLE_TRACKS:
            timeline.activated.connect(lambda t=track: self.set_active_track(t))

    # ----------------------------------------------------------------- public API
    def set_runs(self, sources: list[str], chosen: str | None) -> None:
        """The prediction runs to pick from (sources 'prediction:<run>'), `chosen` selected; no signal."""
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        if not sources:
            self.run_combo.addItem("no prediction run", None)
        for source in sources:
            self.run_combo.addItem(source.split(":", 1)[1], source)
        self.run_combo.setCurrentIndex(max(self.run_combo.findData(chosen), 0))
        self.run_combo.setEnabled(bool(sources))
        self.run_combo.blockSignals(False)

    def preferred_height(self) -> int:
        """Height that shows the toolbar and all three tracks (weak rows) without scrolling."""
        return self.layout().itemAt(0).sizeHint().height() + self._scroll.widget().sizeHint().height() + 12

    def timeline(self, track: str) -> TrackTimeline:
        return self._timelines[track]

    def set_clip(
        self,
        weak: Sequence[int],
        current: Mapping[str, np.ndarray],
        layers: Mapping[str, Mapping[str, np.ndarray | None]] | None = None,
    ) -> None:
        """Show a clip: current grids and reference layers per track ('audio', 'visual')."""
        layers = layers or {}
        self._current = {t: np.asarray(current[t]).astype(np.uint8) for t in EDITABLE_TRACKS}
        per_track = {t: {n: (layers.get(t) or {}).get(n) for n in LAYER_NAMES} for t in EDITABLE_TRACKS}
        per_track["audio_visual"] = {
            n: derive_av(per_track["audio"][n], per_track["visual"][n]) for n in LAYER_NAMES
        }
        slots = [n for n in LAYER_NAMES if any(per_track[t][n] is not None for t in EDITABLE_TRACKS)]
        grids = {**self._current, "audio_visual": self._derived()}
        for track, timeline in self._timelines.items():
            timeline.set_reference_slots(slots)
            timeline.set_clip(weak, grids[track], per_track[track])

    def set_current(self, track: str, grid: np.ndarray) -> None:
        """Redraw one edited track and the derived heard-and-seen row."""
        if track not in EDITABLE_TRACKS:
            raise ValueError(f"only {EDITABLE_TRACKS} are editable, got {track!r}")
        self._current[track] = np.asarray(grid).astype(np.uint8)
        self._timelines[track].set_current(self._current[track])
        self._timelines["audio_visual"].set_current(self._derived())

    def _derived(self) -> np.ndarray:
        return derive_av(self._current["audio"], self._current["visual"])

    def set_playhead_segment(self, seg: int | None) -> None:
        for timeline in self._timelines.values():
            timeline.set_playhead_segment(seg)

    def set_shortcuts(self, shortcuts: Mapping[int, str]) -> None:
        for timeline in self._timelines.values():
            timeline.set_shortcuts(shortcuts)

    def set_view_mode(self, mode: str) -> None:
        for timeline in self._timelines.values():
            timeline.set_view_mode(mode)
        self._mode_buttons[mode].setChecked(True)
        self._reference.setEnabled(mode == "diff")

    def view_mode(self) -> str:
        return self._timelines["audio"].view_mode()

    def toggle_view_mode(self) -> None:
        """Side by side <-> diff (a main-window shortcut)."""
        self.set_view_mode("side" if self.view_mode() == "diff" else "diff")

    def set_diff_reference(self, name: str) -> None:
        for timeline in self._timelines.values():
            timeline.set_diff_reference(name)
        index = self._reference.findData(name)
        if index != self._reference.currentIndex():
            self._reference.setCurrentIndex(index)

    def diff_reference(self) -> str:
        return self._timelines["audio"].diff_reference()

    def set_others_collapsed(self, collapsed: bool) -> None:
        for timeline in self._timelines.values():
            timeline.set_others_collapsed(collapsed)
        if self._others.isChecked() == collapsed:
            self._others.setChecked(not collapsed)

    def others_collapsed(self) -> bool:
        return self._timelines["audio"].others_collapsed()

    def toggle_others(self) -> None:
        self.set_others_collapsed(not self.others_collapsed())

    def active_track(self) -> str:
        return self._active

    def set_active_track(self, track: str) -> None:
        """Keyboard edits go to the active track; only audio and visual can be active."""
        if track not in EDITABLE_TRACKS:
            raise ValueError(f"active track must be one of {EDITABLE_TRACKS}, got {track!r}")
        changed = track != self._active
        self._active = track
        for name, timeline in self._timelines.items():
            timeline.set_active(name == track)
        self._style_titles()
        if changed:
            self.active_track_changed.emit(track)

    def _on_selection(self, track: str, start: int, end: int) -> None:
        """One time range at a time: a new selection clears the other tracks' bands."""
        for name, timeline in self._timelines.items():
            if name != track and timeline.selection() is not None:
                timeline.clear_selection()
        self.selection_changed.emit(track, start, end)

    # ----------------------------------------------------------------- look
    def _style_titles(self) -> None:
        """Title colours and the segmented view buttons (checked = accent), from ui.theme."""
        dark = theme.current_is_dark()
        lines, base = theme.grid_lines(dark).name(), theme.grid_background(dark).name()
        self._toolbar_style = (
            f"QToolButton {{ padding: 2px 9px; border: 1px solid {lines}; border-radius: 3px;"
            f" background: {base}; color: {theme.text_colour(dark).name()}; }}"
            f" QToolButton:checked {{ background: {theme.ACCENT}; border-color: {theme.ACCENT}; color: white; }}"
        )
        for button in (*self._mode_buttons.values(), self._others):
            button.setStyleSheet(self._toolbar_style)
        text, muted = theme.text_colour(dark).name(), theme.muted_text(dark).name()
        for track, label in self._titles.items():
            active = track == self._active
            colour = theme.ACCENT if active else text
            note = "editing" if active else SUBTITLES[track]
            extra = f'&nbsp;&nbsp;<span style="color:{muted}; font-weight:normal">{note}</span>' if note else ""
            label.setText(f'<span style="color:{colour}; font-weight:600">{TITLES[track]}</span>{extra}')

    def refresh_theme(self) -> None:
        self._theme_pending = False
        self._style_titles()
        for timeline in self._timelines.values():
            timeline.refresh_theme()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt name)
        super().changeEvent(event)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            if not self._theme_pending:
                self._theme_pending = True
                QTimer.singleShot(0, self._style_titles_later)

    def _style_titles_later(self) -> None:
        self._theme_pending = False
        self._style_titles()
