"""The three timelines of a clip, stacked: heard (audio), seen (visual), heard and seen (A AND V).

One panel owns the shared view settings (side by side or diff, diff reference,
other classes collapsed) so the three grids always line up column for column, and
knows which track keyboard edits go to (the active one).

The pseudo-source picker (on the audio title row) chooses which pseudo-label source the
read-only 'pseudo' layer shows on both tracks (the imported one, or a generated set
'pseudo:<name>'), so a reviewer can compare sources on a clip; each track's title row says
how many cells of that source differ from its grid. A clip without the chosen source says
so; no other source stands in.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QColor
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
IMPORTED_PSEUDO = "pseudo"  # = ui.session.IMPORTED_PSEUDO: the imported pseudo-labels' source
MISSING = "(none on this clip)"
MISSING_COLOUR = "#e5534b"
PICKER_KEYS = (Qt.Key.Key_Up, Qt.Key.Key_Down, Qt.Key.Key_Home, Qt.Key.Key_End, Qt.Key.Key_PageUp, Qt.Key.Key_PageDown)
LEAVE_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape)


def pseudo_title(source: str) -> str:
    """What the picker calls a source: 'imported' for the imported pseudo-labels, a generated set by its name."""
    return "imported" if source == IMPORTED_PSEUDO else source.split(":", 1)[-1]


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
    pseudo_chosen = Signal(str)  # 'pseudo' or 'pseudo:<name>'
    picker_left = Signal()  # Return or Escape in the focused pseudo picker: the keyboard goes back to the grids

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._timelines = {t: TrackTimeline(t, editable=t in EDITABLE_TRACKS) for t in TIMELINE_TRACKS}
        self._titles: dict[str, QLabel] = {}
        self._active = "audio"
        self._current = {t: np.zeros(GRID_SHAPE, dtype=np.uint8) for t in EDITABLE_TRACKS}
        self._layers: dict[str, dict[str, np.ndarray | None]] = {}  # per track (derived AV too), as shown
        self._pseudo_sources: list[str] | None = None  # the clip's (None: no clip)
        self._pseudo_choice = IMPORTED_PSEUDO
        self._theme_pending = False

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(4)
        outer.addLayout(self._build_toolbar())
        body = QWidget()
        column = QVBoxLayout(body)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        self.pseudo_diff: dict[str, QLabel] = {}
        for track, timeline in self._timelines.items():
            title = QLabel()
            title.setTextFormat(Qt.TextFormat.RichText)
            title.setContentsMargins(10, 8, 0, 0)
            self._titles[track] = title
            if track in EDITABLE_TRACKS:  # the title row also holds the pseudo picker (audio) and its differences
                column.addLayout(self._title_row(track, title))
            else:
                column.addWidget(title)
            column.addWidget(timeline)
            self._connect(track, timeline)
        column.addStretch(1)
        self.set_pseudo_sources(None, IMPORTED_PSEUDO)
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

    def _title_row(self, track: str, title: QLabel) -> QHBoxLayout:
        """A track's title, then (right) how many cells of the shown pseudo source differ from its grid; the audio
        row also holds the pseudo picker (the toolbar has no room left in a 1280-pixel window)."""
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 12, 0)
        row.setSpacing(6)
        row.addWidget(title, 0, Qt.AlignmentFlag.AlignBottom)
        row.addStretch(1)
        if track == "audio":
            self._build_pseudo_picker(row)
        diff = QLabel("")
        diff.setEnabled(False)  # dim: a count, not a control
        diff.setToolTip("Cells (class × second) where the pseudo source shown differs from this track's grid")
        row.addWidget(diff, 0, Qt.AlignmentFlag.AlignBottom)
        self.pseudo_diff[track] = diff
        return row

    def _build_pseudo_picker(self, row: QHBoxLayout) -> None:
        label = QLabel("P&seudo layer")
        self.pseudo_combo = QComboBox(toolTip=(
            "The pseudo-label source the read-only 'Pseudo' layer shows on both tracks, kept from clip to clip: "
            "'imported' (the imported pseudo-labels) or a generated set (Model > Generate pseudo-labels…). "
            "The grid you edit stays your labels, else the imported pseudo-labels. Alt+S or Ctrl+Shift+P "
            "(next source) from the keyboard; the diff view (Ctrl+E) against Pseudo shows the differences"))
        self.pseudo_combo.setFocusPolicy(Qt.FocusPolicy.ClickFocus)  # Tab stays the editor's track switch
        self.pseudo_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.pseudo_combo.currentIndexChanged.connect(lambda _: self._pseudo_activated())
        self.pseudo_combo.installEventFilter(self)  # its arrow keys are its own, not the editor's shortcuts
        label.setBuddy(self.pseudo_combo)
        row.addWidget(label, 0, Qt.AlignmentFlag.AlignBottom)
        row.addWidget(self.pseudo_combo, 0, Qt.AlignmentFlag.AlignBottom)
        row.addSpacing(6)

    def eventFilter(self, watched, event) -> bool:
        """The focused pseudo picker keeps the keys that walk its list (the editor binds the arrows to its
        cursor), so arrows switch sources at once; Return or Escape hand the keyboard back."""
        if watched is self.pseudo_combo and event.type() in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress):
            key = event.key()
            plain = not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
            if plain and key in PICKER_KEYS + LEAVE_KEYS:
                if event.type() == QEvent.Type.ShortcutOverride:
                    event.accept()
                    return True
                if key in LEAVE_KEYS:
                    self.picker_left.emit()
                    return True
        return super().eventFilter(watched, event)

    def _pseudo_activated(self) -> None:
        source = self.pseudo_combo.currentData()
        if source is not None and source != self._pseudo_choice:
            self._pseudo_choice = source
            self.pseudo_chosen.emit(source)

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

    def set_pseudo_sources(self, sources: list[str] | None, chosen: str) -> None:
        """The clip's pseudo sources to pick from (None: no clip on screen), `chosen` selected and marked
        "(none on this clip)" when the clip lacks it; no signal. Call before `set_clip`/`set_layers`."""
        self._pseudo_sources = None if sources is None else list(sources)
        self._pseudo_choice = chosen
        combo = self.pseudo_combo
        combo.blockSignals(True)
        combo.clear()
        for source in sources or []:
            combo.addItem(pseudo_title(source), source)
        if sources is not None and chosen not in sources:
            combo.addItem(f"{pseudo_title(chosen)} {MISSING}", chosen)
            combo.setItemData(combo.count() - 1, QColor(MISSING_COLOUR), Qt.ItemDataRole.ForegroundRole)
        if sources is None:
            combo.addItem(pseudo_title(chosen), chosen)
        combo.setCurrentIndex(max(combo.findData(chosen), 0))
        combo.setEnabled(bool(sources))
        missing = sources is not None and chosen not in sources
        combo.setStyleSheet(f"QComboBox {{ color: {MISSING_COLOUR}; }}" if missing else "")
        combo.blockSignals(False)
        self._update_pseudo_diff()

    def pseudo_source(self) -> str:
        """The pseudo source the 'pseudo' layer shows."""
        return self._pseudo_choice

    def pseudo_missing(self) -> bool:
        """True while the clip on screen lacks the chosen pseudo source (its layer reads "n/a")."""
        return self._pseudo_sources is not None and self._pseudo_choice not in self._pseudo_sources

    def next_pseudo_source(self) -> str | None:
        """The clip's pseudo source after the chosen one (wrapping), chosen and announced; None: nothing else."""
        sources = [s for s in (self._pseudo_sources or []) if s != self._pseudo_choice]
        if not sources:
            return None
        ordered = self._pseudo_sources or []
        after = (ordered.index(self._pseudo_choice) + 1) if self._pseudo_choice in ordered else 0
        source = ordered[after % len(ordered)]
        self.pseudo_combo.setCurrentIndex(self.pseudo_combo.findData(source))
        self._pseudo_activated()
        return source

    def _update_pseudo_diff(self) -> None:
        """Per track, 'zs differs in 3 cells': the chosen pseudo source against the grid being edited."""
        name = pseudo_title(self._pseudo_choice)
        for track, count in self.pseudo_differences().items():
            text = "" if count is None or self._pseudo_sources is None else (
                f"{name} agrees" if count == 0 else f"{name} differs in {count} cell{'s' * (count != 1)}")
            self.pseudo_diff[track].setText(text)

    def pseudo_differences(self) -> dict[str, int | None]:
        """Per track, the cells where the shown pseudo layer differs from the grid being edited (None: no layer)."""
        out: dict[str, int | None] = {}
        for track in EDITABLE_TRACKS:
            grid = self._layers.get(track, {}).get("pseudo")
            out[track] = None if grid is None else int((grid != self._current[track]).sum())
        return out

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
        self._current = {t: np.asarray(current[t]).astype(np.uint8) for t in EDITABLE_TRACKS}
        per_track, slots = self._per_track(layers or {})
        grids = {**self._current, "audio_visual": self._derived()}
        for track, timeline in self._timelines.items():
            timeline.set_reference_slots(slots)
            timeline.set_layer_titles(self._layer_titles(), rebuild=False)
            timeline.set_clip(weak, grids[track], per_track[track])
        self._update_pseudo_diff()

    def set_layers(self, layers: Mapping[str, Mapping[str, np.ndarray | None]]) -> None:
        """Other reference layers on the clip on screen (another pseudo source picked): grids, cursor and
        selection stay."""
        per_track, slots = self._per_track(layers)
        for track, timeline in self._timelines.items():
            timeline.set_reference_slots(slots)
            timeline.set_layer_titles(self._layer_titles(), rebuild=False)
            timeline.set_layers(per_track[track])
        self._update_pseudo_diff()

    def _layer_titles(self) -> dict[str, str]:
        """A generated pseudo source's name over its layer and in the diff legend (the imported one: "Pseudo")."""
        return {} if self._pseudo_choice == IMPORTED_PSEUDO else {"pseudo": pseudo_title(self._pseudo_choice)}

    def _per_track(self, layers: Mapping[str, Mapping[str, np.ndarray | None]]):
        """(layers per timeline, the derived heard-and-seen one included; the mini-grid slots to reserve). The
        pseudo slot stays, reading "n/a", when a chosen pseudo source is missing on this clip but another is
        there or one was picked: the reviewer sees the absence, not a layout that silently changed."""
        per_track = {t: {n: (layers.get(t) or {}).get(n) for n in LAYER_NAMES} for t in EDITABLE_TRACKS}
        per_track["audio_visual"] = {
            n: derive_av(per_track["audio"][n], per_track["visual"][n]) for n in LAYER_NAMES
        }
        self._layers = per_track
        keep_pseudo = self.pseudo_missing() and (bool(self._pseudo_sources) or self._pseudo_choice != IMPORTED_PSEUDO)
        slots = [n for n in LAYER_NAMES if any(per_track[t][n] is not None for t in EDITABLE_TRACKS)
                 or (n == "pseudo" and keep_pseudo)]
        return per_track, slots

    def set_current(self, track: str, grid: np.ndarray) -> None:
        """Redraw one edited track and the derived heard-and-seen row."""
        if track not in EDITABLE_TRACKS:
            raise ValueError(f"only {EDITABLE_TRACKS} are editable, got {track!r}")
        self._current[track] = np.asarray(grid).astype(np.uint8)
        self._timelines[track].set_current(self._current[track])
        self._timelines["audio_visual"].set_current(self._derived())
        self._update_pseudo_diff()

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
