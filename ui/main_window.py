"""The annotation workstation: queue dock, player, audio view, timelines, clip panel.

Wiring only: the session owns edits, the widgets own drawing, workers own long jobs.
"""
from __future__ import annotations

import os
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QApplication, QFileDialog, QInputDialog, QLabel, QMainWindow, QMessageBox, QSplitter, QVBoxLayout, QWidget,
)
from sqlalchemy import Engine, make_url
from sqlalchemy.exc import ArgumentError

from annotation.importer import data_folders, import_llp
from annotation.predictions import prediction_sources
from annotation.queue import QueueFilter, ReviewQueue
from annotation.runs import list_runs
from annotation.store import LabelStore, NotFoundError
from annotation.taxonomy import DISPLAY_NAMES
from ui.agreement_dialog import AgreementDialog
from ui.audio_view import NO_AUDIO, AudioView, load_audio
from ui.avs_view import install_avs_menu
from ui.clip_panel import ClipPanel
from ui.conflict_dialog import ConflictDialog
from ui.database_dialog import open_or_choose, pick_in_dialog
from ui.editor_keys import EditorKeys
from ui.export_dialog import ExportDialog
from ui.history_dialog import HistoryDialog
from ui.keymap import ACTIONS
from ui.player import PlayerWidget
from ui.prediction_overlay import overlay_items
from ui.preferences import Preferences
from ui.progress_dialog import TaskProgressDialog
from ui.pseudo_dialog import PseudoLabelDialog
from ui.queue_dock import QueueDock
from ui.session import IMPORTED_PSEUDO, ClipSession, ClipView, Conflict
from ui.runs_dialog import RunsDialog
from ui.settings_dialog import SettingsDialog
from ui.team_watch import Poll, TeamWatch
from ui.theme import apply_theme, dark_for
from ui.timeline import TimelinePanel
from ui.training_panel import TrainingPanel
from ui.workers import BackgroundTask

NOTICE_SECONDS = 15.0
PRESENCE_DELAY_MS = 250  # the first poll of a clip waits until it is drawn (a thread start competes for the GIL)
AUDIO_VIEW_HEIGHT = 150
MIN_VIDEO_HEIGHT = 240
# actions that only make sense while the editor area (not a text field or the queue) has focus
EDITOR_SCOPED = {"segment_prev", "segment_next", "select_prev", "select_next", "row_up", "row_down",
                 "toggle_cell", "switch_track"}
NEXT_PSEUDO_KEY = "Ctrl+Shift+P"  # the next pseudo-label source of the clip in the timelines' picker
PSEUDO_SAVE_MS = 1500  # the picked pseudo source reaches the settings file once the reviewer stops switching


class MainWindow(QMainWindow):
    def __init__(self, engine: Engine, prefs: Preferences, db_label: str = ""):
        super().__init__()
        self.prefs = prefs
        self.setWindowTitle("AVVP Studio")
        self.resize(1440, 920)
        self._audio_cache: OrderedDict[tuple, tuple[np.ndarray | None, int, str | None]] = OrderedDict()
        self.last_open_ms: float | None = None
        self._laid_out = False
        self._told: set[str] = set()  # player notices already shown in the status bar
        self.overlay_on = True  # the prediction run over the video (M)
        self._notice_until = 0.0

        self.player = PlayerWidget()
        self.audio_view = AudioView()
        self.timelines = TimelinePanel()
        self.clip_panel = ClipPanel()
        self.queue = QueueDock(self)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.queue)
        self.resizeDocks([self.queue], [430], Qt.Orientation.Horizontal)
        self.training = TrainingPanel(prefs.path.parent / "runs", self)
        self.training.remember_folder = lambda db, folder: self.prefs.set_recent_value(
            f"features/{self._workspace_key()}", folder)
        self.training.remember_avs_folder = lambda db, subset, folder: self.prefs.set_recent_value(
            f"avs-data/{subset}/{self._workspace_key()}", folder)
        self.training.recall_avs_folder = lambda db, subset: self.prefs.recent_value(
            f"avs-data/{subset}/{self._workspace_key()}")
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.training)
        self.tabifyDockWidget(self.queue, self.training)  # beside the queue, one click away
        self.queue.raise_()

        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.player)
        top.addWidget(self.clip_panel)
        top.setStretchFactor(0, 3)
        top.setStretchFactor(1, 2)
        media = self.media_splitter = QSplitter(Qt.Orientation.Vertical)
        media.setObjectName("mediaSplitter")
        top.setObjectName("topSplitter")
        self.top_splitter = top
        media.addWidget(top)
        media.addWidget(self.audio_view)
        media.addWidget(self.timelines)
        media.setStretchFactor(0, 4)
        media.setStretchFactor(1, 2)
        media.setStretchFactor(2, 5)
        self.editor = QWidget()
        layout = QVBoxLayout(self.editor)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(media)
        self.editor.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setCentralWidget(self.editor)

        self.saved_label = QLabel("")
        self.db_label = QLabel(db_label)
        self.db_label.setEnabled(False)
        self.statusBar().addPermanentWidget(self.saved_label)
        self.statusBar().addPermanentWidget(self.db_label)

        self.actions: dict[str, QAction] = {}
        self.engine: Engine | None = None
        self.pseudo_dialog: PseudoLabelDialog | None = None  # Model > Generate pseudo-labels… (kept while it runs)
        self._pseudo_unsaved: dict[str, str] = {}  # database -> pseudo source chosen, not yet in the settings file
        self._pseudo_save = QTimer(self, singleShot=True, interval=PSEUDO_SAVE_MS)
        self._pseudo_save.timeout.connect(self._save_pseudo_choice)
        self.session: ClipSession | None = None
        self.keys: EditorKeys | None = None
        self._build_menus()
        self._connect_widgets()
        hints = QGuiApplication.styleHints()
        if hasattr(hints, "colorSchemeChanged"):  # Qt >= 6.5: the desktop switched dark/light
            hints.colorSchemeChanged.connect(self._system_scheme_changed)
        self.set_database(engine, db_label, open_first=False)
        self.restore_workspace()  # the last clip of this database, if it is still there
        self.open_first_clip()

    # ---- database ----------------------------------------------------------------------
    def set_database(self, engine: Engine, label: str = "", open_first: bool = True) -> None:
        self.engine = engine
        self.store = LabelStore(engine)
        if self.session is not None:
            self.session.deleteLater()
        self.session = ClipSession(self.store, self.prefs.annotator or "anonymous", self)
        self.session.grid_changed.connect(self._on_grid_changed)
        self.session.review_changed.connect(self._on_review_changed)
        self.session.saved.connect(self.saved_label.setText)
        self.session.conflict.connect(self._on_conflict)
        self.session.show_requested.connect(self._show_for_undo)
        self.session.applied.connect(lambda text: self.statusBar().showMessage(text, 10000))
        self.keys = EditorKeys(self.session, self.timelines, self._seek_segment)
        if getattr(self, "team", None) is not None:
            self.team.stop()
        self.team = TeamWatch(self.store, self.session.annotator, lambda: self.session.writes, self)
        self.team.polled.connect(self._on_poll)
        self.team.start()
        self._rebind_undo()
        queue = ReviewQueue()
        queue.load(engine)
        self.queue.set_annotator(self.session.annotator)
        self.queue.set_queue(queue)
        self.queue.set_filter(self.prefs.queue_filter())
        self.db_label.setText(label)
        key = self._workspace_key()
        self.session.pseudo_choice = self._pseudo_unsaved.get(key) or self.prefs.recent_value(
            f"pseudo-source/{key}", IMPORTED_PSEUDO)
        self.timelines.set_pseudo_sources(None, self.session.pseudo_choice)
        self.refresh_runs()
        remembered = self.prefs.recent_value(f"features/{self._workspace_key()}")
        self.training.set_database(engine, label, self.session.annotator,
                                   remembered or next(iter(data_folders(engine)), ""))
        if open_first:
            self.open_first_clip()
        self._transient(f"{len(queue)} clips in the database", 6000)

    def open_first_clip(self) -> None:
        """Unless a clip is on screen: the first clip to review, ready for the keyboard."""
        first = self.queue.visible_clip_ids()[:1]
        if not first or self.session.view is not None:
            return
        if self.queue.current_clip_id() == first[0]:  # already selected (another database's clip id)
            self.show_clip(first[0])
        else:
            self.queue.select_clip(first[0])

    # ---- prediction runs ------------------------------------------------------------------
    def refresh_runs(self, prefer: str | None = None) -> None:
        """The runs to pick from (after a training run stored its predictions): `prefer`, else the one
        picked before, else the newest recorded run; the layer, overlay and model sorts follow."""
        sources = prediction_sources(self.engine)
        recorded = [r.source for r in list_runs(self.engine)] if sources else []
        chosen = next((s for s in (prefer, self.session.prediction_run, *recorded) if s in sources),
                      sources[-1] if sources else None)
        self.timelines.set_runs(sources, chosen)
        self._choose_run(chosen)

    def _choose_run(self, source: str | None) -> None:
        self.session.prediction_run = source
        self.queue.set_run(self.engine, source)
        view = self.session.view
        if view is not None:
            self._show_labels(self.session.open_clip(view.clip.id))
            self.update_overlay()

    def _show_labels(self, view: ClipView) -> None:
        """The clip's grids and layers in the timelines, the pseudo-source picker with them."""
        self.timelines.set_pseudo_sources(view.pseudo_sources, view.pseudo_source)
        self.timelines.set_clip(view.clip.weak, view.current, view.layers)

    # ---- pseudo-label sources ----------------------------------------------------------------
    def _choose_pseudo(self, source: str) -> None:
        """The timelines' 'pseudo' layer shows `source` on this clip (switched in memory, at once) and the
        next ones; remembered for this database."""
        self._remember_pseudo(source)
        view = self.session.choose_pseudo(source)
        if view is None:
            self.timelines.set_pseudo_sources(None, source)
            return
        self.timelines.set_pseudo_sources(view.pseudo_sources, source)
        self.timelines.set_layers(view.layers)
        title = self.timelines.pseudo_combo.currentText()
        if self.timelines.pseudo_missing():
            self.statusBar().showMessage(f"Pseudo layer: {title}", 6000)
        else:
            diff = self.timelines.pseudo_differences()
            self.statusBar().showMessage(f"Pseudo layer: {title} · differs from the labels in {diff['audio']} audio "
                                         f"and {diff['visual']} visual cells", 6000)

    def _remember_pseudo(self, source: str) -> None:
        """Kept for this database (the settings file is written once the switching stops: a sync per key press
        would cost more than the switch)."""
        self._pseudo_unsaved[self._workspace_key()] = source
        self._pseudo_save.start()

    def _save_pseudo_choice(self) -> None:
        self._pseudo_save.stop()
        for key, source in self._pseudo_unsaved.items():
            self.prefs.set_recent_value(f"pseudo-source/{key}", source)
        self._pseudo_unsaved.clear()

    def next_pseudo_source(self) -> None:
        if self.timelines.next_pseudo_source() is None:
            self.statusBar().showMessage("This clip has no other pseudo-label source (Model > Generate "
                                         "pseudo-labels… makes one)", 6000)

    def show_pseudo_dialog(self) -> PseudoLabelDialog:
        """Model > Generate pseudo-labels…: the dialog (the same one while a generation goes on)."""
        dialog = self.pseudo_dialog
        if dialog is None:
            dialog = self.pseudo_dialog = PseudoLabelDialog(self.engine, self.db_label.text(),
                                                            self.session.annotator, self)
            dialog.source_stored.connect(self._pseudo_stored)
        elif not dialog.runner.running():
            dialog.set_database(self.engine, self.db_label.text(), self.session.annotator)
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
        return dialog

    def _pseudo_stored(self, source: str) -> None:
        """A generated set was stored: the clip on screen is read again and shows it in the picker, chosen
        (unless another database was opened meanwhile)."""
        dialog = self.pseudo_dialog
        if dialog is None or dialog.engine is not self.engine:
            return
        self._remember_pseudo(source)
        self.session.pseudo_choice = source
        view = self.session.view
        if view is not None:
            self._show_labels(self.session.open_clip(view.clip.id))
        else:
            self.timelines.set_pseudo_sources(None, source)
        self.statusBar().showMessage(f"Pseudo-labels stored as {source}: shown by the timelines' Pseudo layer box",
                                     10000)

    def toggle_overlay(self) -> None:
        self.overlay_on = not self.overlay_on
        self.update_overlay()
        self.statusBar().showMessage("Model over the video: " + ("on" if self.overlay_on else "off") + " (M)", 3000)

    def update_overlay(self) -> None:
        """The run's events of the current segment over the frame and its probability strip under it,
        against the labels as they are now (called on clip, label and run changes)."""
        view = self.session.view if self.session is not None else None
        if not self._overlay_frame(view):
            self.player.prediction_strip.set_data(None, [])
            return
        predicted = {t: view.layers[t]["prediction"] for t in ("audio", "visual")}
        rows = set()
        for t in ("audio", "visual"):
            rows |= set(np.flatnonzero(view.current[t].any(axis=1)).tolist())
            if predicted[t] is not None:
                rows |= set(np.flatnonzero(predicted[t].any(axis=1)).tolist())
        if view.scores is not None:
            peak = np.maximum(view.scores.audio.max(axis=1), view.scores.visual.max(axis=1))
            rows = sorted(rows, key=lambda c: -peak[c])
        self.player.prediction_strip.set_data(view.scores, sorted(rows) if view.scores is None else list(rows))

    def _overlay_frame(self, view) -> bool:
        """The overlay over the frame for the current segment (a segment change needs only this: the
        strip's rows follow the clip, not the playhead); False when there is none to show."""
        if not (self.overlay_on and view is not None and view.prediction_source is not None):
            self.player.view.set_overlay(None)
            return False
        predicted = {t: view.layers[t]["prediction"] for t in ("audio", "visual")}
        run = view.prediction_source.split(":", 1)[1]
        self.player.view.set_overlay(overlay_items(self.player.current_segment(), predicted, view.current,
                                                   view.scores), run)
        return True

    def _rebind_undo(self) -> None:
        for name in ("undo", "redo"):
            old = self.actions.pop(name, None)
            if old is not None:
                self.edit_menu.removeAction(old)
        undo = self.session.undo_stack.createUndoAction(self, "Undo")
        undo.setShortcut(QKeySequence.StandardKey.Undo)
        redo = self.session.undo_stack.createRedoAction(self, "Redo")
        redo_keys = QKeySequence.keyBindings(QKeySequence.StandardKey.Redo)
        redo_keys += [QKeySequence(k) for k in ("Ctrl+Shift+Z", "Ctrl+Y") if QKeySequence(k) not in redo_keys]
        redo.setShortcuts(redo_keys)
        first = self.edit_menu.actions()[0] if self.edit_menu.actions() else None
        self.edit_menu.insertAction(first, undo)
        self.edit_menu.insertAction(first, redo)
        self.actions["undo"], self.actions["redo"] = undo, redo

    # ---- menus and shortcuts -----------------------------------------------------------
    def _action(self, name: str, handler) -> QAction:
        """An action of ui.keymap.ACTIONS; its key comes from apply_key_bindings."""
        text, _, tip = ACTIONS.get(name, (name, "", ""))
        action = QAction(text, self)
        action.setToolTip(tip)
        action.setStatusTip(tip)
        if name in EDITOR_SCOPED:
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.editor.addAction(action)
        else:
            self.addAction(action)
        action.triggered.connect(handler)
        self.actions[name] = action
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        for text, handler, key in (
            ("Open database…", self.open_database_dialog, "Ctrl+O"),
            ("Import LLP folder…", self.import_dialog, "Ctrl+I"),
            ("Export labels…", self.export_dialog, "Ctrl+Shift+E"),
            ("Settings…", self.settings_dialog, "Ctrl+,"),
            ("Quit", self.close, "Ctrl+Q"),
        ):
            action = QAction(text, self)
            action.setShortcut(QKeySequence(key))
            action.triggered.connect(handler)
            file_menu.addAction(action)
        self.edit_menu = bar.addMenu("&Edit")
        for name in ("toggle_cell", "copy_row", "copy_audio_to_visual", "copy_visual_to_audio", "clear_track"):
            self.edit_menu.addAction(self._action(name, getattr(self, f"_do_{name}")))
        clip_menu = bar.addMenu("&Clip")
        for name in ("accept", "out_of_taxonomy", "skip", "note", "next_clip", "prev_clip", "next_unreviewed"):
            clip_menu.addAction(self._action(name, lambda _=False, n=name: self.review_action(n)))
        clip_menu.addSeparator()
        clip_menu.addAction(self._action("history", lambda: self.show_history()))
        model_menu = bar.addMenu("&Model")
        train = QAction("Train…", self)
        train.setStatusTip("The training panel: retrain a parser on this database's labels in the background")
        train.triggered.connect(self.show_training)
        model_menu.addAction(train)
        compare = QAction("Compare runs…", self)
        compare.setStatusTip("The ten numbers of every run side by side, per-class F1 bars")
        compare.triggered.connect(self.runs_dialog)
        model_menu.addAction(compare)
        generate = QAction("Generate pseudo-labels…", self)
        generate.setStatusTip("Zero-shot (VALOR) or EAR pseudo-labels for every clip, in a separate process, stored "
                              "as a pseudo source the timelines can show")
        generate.triggered.connect(self.show_pseudo_dialog)
        model_menu.addAction(generate)
        install_avs_menu(self, model_menu)  # AVS: Model > Segmentation masks… (ui/avs_view.py)
        team_menu = bar.addMenu("&Team")
        agreement = QAction("Inter-annotator agreement…", self)
        agreement.setStatusTip("Cohen's kappa per class for clips two annotators labelled")
        agreement.triggered.connect(self.agreement_dialog)
        team_menu.addAction(agreement)
        play_menu = bar.addMenu("&Playback")
        play_menu.addAction(self._action("play", self.player.toggle_play))
        play_menu.addAction(self._action("frame_prev", lambda: self.player.step_frame(-1)))
        play_menu.addAction(self._action("frame_next", lambda: self.player.step_frame(1)))
        play_menu.addAction(self._action("speed_down", lambda: self.player.step_speed(-1)))
        play_menu.addAction(self._action("speed_up", lambda: self.player.step_speed(1)))
        play_menu.addAction(self._action("loop", lambda: self.play_selection(loop=True)))
        play_menu.addAction(self._action("play_once", lambda: self.play_selection(loop=False)))
        for name, step, extend in (("segment_prev", -1, False), ("segment_next", 1, False),
                                   ("select_prev", -1, True), ("select_next", 1, True)):
            play_menu.addAction(self._action(name, lambda _=False, s=step, e=extend: self.keys.move_segment(s, e)))
        self._action("row_up", lambda: self.keys.move_row(-1))
        self._action("row_down", lambda: self.keys.move_row(1))
        self._action("switch_track", lambda: self.keys.switch_track())
        view_menu = bar.addMenu("&View")
        view_menu.addAction(self.queue.toggleViewAction())
        view_menu.addAction(self._action("toggle_view", self._toggle_view))
        view_menu.addAction(self._action("toggle_others", self._toggle_others))
        view_menu.addAction(self._action("overlay", self.toggle_overlay))
        next_pseudo = QAction("Next pseudo-label source", self)
        next_pseudo.setShortcut(QKeySequence(NEXT_PSEUDO_KEY))
        next_pseudo.setStatusTip("Show the clip's next pseudo-label source as the timelines' Pseudo layer")
        next_pseudo.triggered.connect(self.next_pseudo_source)
        view_menu.addAction(next_pseudo)
        view_menu.addAction(self._action("zoom_in", lambda: self.audio_view.zoom(2.0)))
        view_menu.addAction(self._action("zoom_out", lambda: self.audio_view.zoom(0.5)))
        view_menu.addAction(self._action("zoom_reset", self.audio_view.reset_zoom))
        for index, name in enumerate(DISPLAY_NAMES):
            action = QAction(f"Toggle {name}", self)
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            action.triggered.connect(lambda _=False, c=index: self.keys.toggle_class(c))
            self.editor.addAction(action)
            self.actions[f"class:{index}"] = action
        self.apply_key_bindings()
        help_menu = bar.addMenu("&Help")
        shortcuts = QAction("Keyboard shortcuts", self)
        shortcuts.setShortcut(QKeySequence("F1"))
        shortcuts.triggered.connect(self.show_shortcuts)
        help_menu.addAction(shortcuts)

    def _connect_widgets(self) -> None:
        self.queue.clip_activated.connect(self.show_clip)
        self.queue.emptied.connect(self._on_queue_emptied)
        self.timelines.edit_requested.connect(lambda track, cells, value: self.session.set_cells(track, cells, value))
        self.timelines.segment_clicked.connect(self._seek_segment)
        self.audio_view.seek_requested.connect(self.player.seek)
        self.player.position_changed.connect(self.audio_view.set_position)
        self.player.segment_changed.connect(self._on_segment)
        self.player.notice.connect(self._on_player_notice)
        self.clip_panel.action_requested.connect(self.review_action)
        self.timelines.run_chosen.connect(self._choose_run)
        self.timelines.pseudo_chosen.connect(self._choose_pseudo)
        self.timelines.picker_left.connect(self.editor.setFocus)
        self.training.run_finished.connect(self._training_finished)
        self.training.masks_stored.connect(self._masks_stored)

    # ---- clip display ------------------------------------------------------------------
    def show_clip(self, clip_id: int) -> None:
        started = time.perf_counter()
        try:
            view = self.session.open_clip(clip_id)
        except NotFoundError as exc:
            self.statusBar().showMessage(str(exc), 8000)
            return
        clip = view.clip
        self._show_labels(view)
        self.keys.reset()
        self.clip_panel.show_clip(clip, view.review, view.edited)
        self.player.load(clip.video_path)
        samples, rate, reason = self._audio(clip.video_path)
        self.audio_view.set_audio(samples, rate, self.player.duration(), reason or "")
        self.timelines.set_playhead_segment(0)
        self.update_overlay()
        self.clip_panel.show_presence([])
        self.team.watch(clip.id)
        QTimer.singleShot(PRESENCE_DELAY_MS, self.team.poll)  # who else has it open, once the clip is drawn
        if QApplication.focusWidget() not in (self.queue.search_edit, self.queue.view):
            self.editor.setFocus()  # the keyboard edits the clip that just opened
        self.last_open_ms = (time.perf_counter() - started) * 1000
        self._transient(f"{clip.filename} · opened in {self.last_open_ms:.0f} ms", 4000)

    def _transient(self, text: str, ms: int) -> None:
        """A passing message (timings, counts): never over a notice still on screen."""
        if time.monotonic() >= self._notice_until:
            self.statusBar().showMessage(text, ms)

    def _on_player_notice(self, text: str) -> None:
        """Why there is no sound (or a media error): the player keeps an icon with the reason; the
        status bar says it once per reason, and nothing overwrites it for NOTICE_SECONDS."""
        if text in self._told:
            return
        self._told.add(text)
        self._notice_until = time.monotonic() + NOTICE_SECONDS
        self.statusBar().showMessage(text, int(NOTICE_SECONDS * 1000))

    def _on_queue_emptied(self) -> None:
        """The list shows no clip: nothing stays on screen that the list does not hold, and a finished
        queue says what comes next."""
        if self.session is None:
            return
        self.session.close_clip()
        self.team.watch(None)
        self.player.unload()
        self.audio_view.clear(reason="")
        self.timelines.set_pseudo_sources(None, self.session.pseudo_choice)
        self.timelines.set_clip((), {t: np.zeros((25, 10), np.uint8) for t in ("audio", "visual")})
        progress = self.queue.progress()
        if progress.total and progress.remaining == 0:
            message = (f"All {progress.total} clips of this list are reviewed. Next: export the labels (File > "
                       "Export labels, Ctrl+Shift+E) for training, or list other clips with the queue's filters.")
        else:
            message = "No clip passes the queue's filters: widen them (status, split, class, search) to list clips."
        self.clip_panel.show_empty(message)
        self.statusBar().showMessage(message, 10000)

    def _on_poll(self, poll: Poll) -> None:
        """Another annotator's save to the clip on screen appears without reopening it (the video
        keeps playing), the status bar says whose it was; who else has the clip open is shown."""
        view = self.session.view
        if view is None or view.clip.id != poll.clip_id:
            return
        self.clip_panel.show_presence(poll.others)
        if poll.stamp != self.session.writes:
            return  # the round raced one of this window's own saves; the next one is current
        changed = self.session.changed_elsewhere(poll.clip_id, poll.versions)
        if not changed:
            return
        kept = {t: (self.timelines.timeline(t).cursor(), self.timelines.timeline(t).selection())
                for t in ("audio", "visual")}
        view = self.session.reload_changed(poll.clip_id)
        self._show_labels(view)
        for track, (cursor, selection) in kept.items():  # the annotator's place survives a colleague's save
            self.timelines.timeline(track).set_cursor(*cursor)
            if selection is not None:
                self.timelines.timeline(track).set_selection(*selection)
        self.update_overlay()
        self.clip_panel.show_clip(view.clip, view.review, view.edited)
        self.queue.update_clip(self.engine, poll.clip_id)
        edit = poll.last_edit
        who = (edit.annotator or "someone") if edit is not None else "someone"
        what = ", ".join(part.replace("/manual", " labels").replace("/", " ") for part in changed)
        when = f" at {edit.at.astimezone():%H:%M:%S}" if edit is not None else ""
        self.statusBar().showMessage(f"{who} saved {what} of this clip{when}: shown now", 10000)

    def show_history(self, restore: bool = True) -> HistoryDialog | None:
        """The clip's edit history; "Restore this version" is an undoable edit."""
        view = self.session.view
        if view is None:
            return None
        dialog = HistoryDialog(self.store, view.clip, self._restore if restore else None, self)
        self.last_history_dialog = dialog
        dialog.exec()
        return dialog

    def _restore(self, edit) -> None:
        if self.session.restore(edit):
            self.statusBar().showMessage(f"Restored the version of {edit.at.astimezone():%H:%M:%S} (Ctrl+Z undoes)",
                                         8000)
        else:
            self.statusBar().showMessage("That version is what the clip shows already", 6000)

    def show_training(self) -> None:
        self.training.show()
        self.training.raise_()

    def _masks_stored(self, subset: str, source: str) -> None:
        """An AVS run stored predicted masks: an open segmentation window shows them at once (a closed one reads
        them when it opens)."""
        self._avs_source = source
        window = getattr(self, "avs_window", None)
        if window is not None and window.engine is self.engine:
            window.show_source(source)

    def _training_finished(self, status: str, source: str) -> None:
        if source and source == getattr(self, "_avs_source", None):
            self._avs_source = None
            self.statusBar().showMessage(f"Training {status}: masks stored as {source} (Model > Segmentation masks…)",
                                         10000)
        elif source:
            self.refresh_runs(prefer=source)  # the new predictions: layer, overlay and model sorts
            self.statusBar().showMessage(f"Training {status}: {source} is shown (Model box above the timelines)",
                                         10000)
        else:
            self.statusBar().showMessage(f"Training {status}", 8000)

    def runs_dialog(self) -> RunsDialog:
        dialog = RunsDialog(list_runs(self.engine), self)
        self.last_runs_dialog = dialog
        dialog.exec()
        return dialog

    def agreement_dialog(self) -> AgreementDialog:
        dialog = AgreementDialog(self.engine, self)
        self.last_agreement_dialog = dialog
        dialog.exec()
        return dialog

    def _show_for_undo(self, clip_id: int) -> None:
        """An undo/redo of an edit of another clip: that clip comes on screen (and into the list, even if
        its filter hides it) before it changes."""
        self.queue.reveal(clip_id)
        if self.session.view is None or self.session.view.clip.id != clip_id:  # not in the loaded queue
            self.show_clip(clip_id)

    def _audio(self, path: str | None) -> tuple[np.ndarray | None, int, str | None]:
        """The audio view's (samples, rate, why there are none), kept for the last 16 files visited.
        Keyed by the file's size and time, and a failure to read is never kept: a file that comes
        back, or is replaced, is read again."""
        try:
            stat = os.stat(path) if path is not None else None
        except OSError:
            stat = None
        key = (path, stat.st_size, stat.st_mtime_ns) if stat is not None else None
        if key is not None and key in self._audio_cache:
            return self._audio_cache[key]
        result = load_audio(path)
        if key is not None and (result[0] is not None or result[2] == NO_AUDIO):
            self._audio_cache[key] = result
            while len(self._audio_cache) > 16:
                self._audio_cache.popitem(last=False)
        return result

    def _seek_segment(self, seg: int) -> None:
        self.player.seek(float(seg))

    def _on_segment(self, seg: int) -> None:
        self.timelines.set_playhead_segment(seg)
        self._overlay_frame(self.session.view if self.session is not None else None)
        if self.keys is not None:
            self.keys.set_segment(seg)

    def _on_grid_changed(self, clip_id: int, track: str, grid: np.ndarray) -> None:
        view = self.session.view
        if view is not None and view.clip.id == clip_id:
            self.timelines.set_current(track, grid)
            self.clip_panel.show_clip(view.clip, view.review, view.edited)
            self.update_overlay()
        self.queue.update_clip(self.engine, clip_id)

    def _on_review_changed(self, clip_id: int, review) -> None:
        view = self.session.view
        if view is not None and view.clip.id == clip_id:
            self.clip_panel.show_review(review)
        self.queue.update_clip(self.engine, clip_id)

    def _on_conflict(self, conflict: Conflict) -> None:
        view = self.session.view
        weak = view.clip.weak if view is not None and view.clip.id == conflict.clip_id else ()
        fallback = None
        if conflict.track is not None:
            fallback = self.store.track(conflict.clip_id, conflict.track, "pseudo").grid
        # shown after the current edit returns, so the undo stack is settled
        QTimer.singleShot(0, lambda: self._ask_conflict(conflict, weak, fallback))

    def _ask_conflict(self, conflict: Conflict, weak, fallback) -> None:
        dialog = ConflictDialog(conflict, weak, fallback, self, history=lambda: self.show_history(restore=False))
        self.last_conflict_dialog = dialog
        keep_mine = dialog.exec() == ConflictDialog.DialogCode.Accepted
        self.session.resolve(conflict, keep_mine=keep_mine)
        if not keep_mine and conflict.track is not None and self.session.view is not None:
            self.show_clip(self.session.view.clip.id)

    # ---- actions -----------------------------------------------------------------------
    def play_selection(self, loop: bool) -> None:
        """Loop (again: stop) or play once the selected segments of the active track, else the current one."""
        if loop and self.player.looping():
            self.player.loop_button.setChecked(False)
            return
        timeline = self.timelines.timeline(self.keys.track)
        first, last = timeline.selection() or (timeline.cursor()[1],) * 2
        self.player.play_segments(first, last, loop)

    def review_action(self, name: str) -> None:
        if name == "history":
            self.show_history()
            return
        if name == "next_clip":
            if self.queue.select_next() is None:
                self.queue.drop_stale()  # at the end: a reviewed last clip leaves, a finished list says so
            return
        if name == "next_unreviewed":
            if self.queue.select_next_pending() is None:
                self.statusBar().showMessage("No pending clip after this one in the list", 6000)
            return
        if name == "prev_clip":
            self.queue.select_previous()
            return
        if self.session.view is None:
            return
        if name == "note":
            review = self.session.view.review
            text, ok = QInputDialog.getMultiLineText(self, "Note", "Note on this clip:", review.note or "")
            if ok:
                self.session.set_review(review.status, note=text.strip() or None, keep_note=False)
            return
        status = {"accept": "annotated", "out_of_taxonomy": "out_of_taxonomy", "skip": "skipped"}[name]
        current = self.session.view.clip.id
        following = self.queue.next_clip_id(current)
        self.session.set_review(status)
        if following is not None:
            self.queue.select_clip(following)
        else:
            self.queue.drop_stale()
        self.editor.setFocus()

    def _do_toggle_cell(self) -> None:
        self.keys.toggle_cursor()

    def _do_copy_row(self) -> None:
        self.keys.copy_row()

    def _do_copy_audio_to_visual(self) -> None:
        if self.session.view is not None:
            self.session.copy_track("audio", "visual")

    def _do_copy_visual_to_audio(self) -> None:
        if self.session.view is not None:
            self.session.copy_track("visual", "audio")

    def _do_clear_track(self) -> None:
        if self.session.view is not None:
            self.session.clear_track(self.keys.track)

    def _toggle_view(self) -> None:
        self.timelines.toggle_view_mode()

    def _toggle_others(self) -> None:
        self.timelines.toggle_others()

    # ---- dialogs -----------------------------------------------------------------------
    def open_database_dialog(self) -> None:
        path = pick_in_dialog(self)("open")
        if not path:
            return
        opened = open_or_choose(path, self)  # a bad file is explained, never kills the window
        if opened is not None:
            self.set_database(*opened)

    def import_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Import an LLP-layout folder",
                                                  self.prefs.recent_value("import_dir", str(Path.home())))
        if folder:
            self.prefs.set_recent_value("import_dir", folder)
            self.run_import(folder)

    def run_import(self, folder: str, wait: bool = True) -> TaskProgressDialog:
        engine = self.engine
        task = BackgroundTask(lambda progress: import_llp(engine, folder, progress), "Import LLP folder", self)
        dialog = TaskProgressDialog(task, self)
        task.succeeded.connect(lambda report: self._after_import(report))
        dialog.start()
        if wait:
            dialog.exec()
        else:
            dialog.show()
        return dialog

    def _after_import(self, report) -> None:
        queue = ReviewQueue()
        queue.load(self.engine)
        self.queue.set_queue(queue)
        total = sum(report.clips.values())
        self.statusBar().showMessage(f"Imported {total} clips: {report.clips_added} new, {report.clips_updated} changed", 8000)

    def export_dialog(self) -> ExportDialog:
        dialog = ExportDialog(self.engine, self.prefs.recent_value("export_dir", ""), self)
        self.last_export_dialog = dialog
        if dialog.exec() and dialog.report is not None:
            self.prefs.set_recent_value("export_dir", dialog.options()[2])
            report = dialog.report
            self.statusBar().showMessage(
                f"Exported {report.exported['audio']} audio and {report.exported['visual']} visual grids", 8000)
        return dialog

    def settings_dialog(self) -> None:
        dialog = SettingsDialog(self.prefs, self)
        self.last_settings_dialog = dialog
        if dialog.exec():
            self.session.annotator = self.prefs.annotator or "anonymous"
            self.team.annotator = self.session.annotator
            self.queue.set_annotator(self.session.annotator)
            self.queue.set_filter(self.prefs.queue_filter())  # the default just chosen, now (and kept on close)
            self.apply_key_bindings()
            self.apply_theme_preference()
            self.statusBar().showMessage("Settings saved", 6000)

    def apply_key_bindings(self) -> None:
        """The key bindings of the preferences, on every action now (no restart)."""
        shortcuts = self.prefs.shortcuts()
        for name, keys in shortcuts.items():
            if name in self.actions:
                self.actions[name].setShortcut(QKeySequence(keys))
        class_keys = self.prefs.class_keys()
        for index, key in enumerate(class_keys):
            self.actions[f"class:{index}"].setShortcut(QKeySequence(key))
        self.timelines.set_shortcuts(dict(enumerate(class_keys)))

    def apply_theme_preference(self) -> None:
        """Dark, light or the system's scheme, as the preferences say, on every widget now."""
        apply_theme(QApplication.instance(), dark_for(self.prefs.theme))
        self.timelines.refresh_theme()
        for widget in (self.audio_view, self.player, self.queue):
            widget.refresh_theme()

    def _system_scheme_changed(self, *_args) -> None:
        if dark_for(self.prefs.theme) is None:  # following the system
            self.apply_theme_preference()

    def shortcut_rows(self) -> list[tuple[str, str]]:
        """(what, keys) of every action that has a key: the menus' (File, Undo/Redo included),
        then the editor's own, then the class keys; what F1 lists."""
        rows, seen = [], set()

        def add(action: QAction) -> None:
            keys = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts())
            if keys and id(action) not in seen:
                seen.add(id(action))
                rows.append((action.text().replace("&", "").rstrip("…"), keys))

        for menu_action in self.menuBar().actions():
            for action in menu_action.menu().actions():
                add(action)
        for name, action in self.actions.items():
            if not name.startswith("class:"):
                add(action)
        return rows + [(f"Toggle {DISPLAY_NAMES[i]}", key) for i, key in enumerate(self.prefs.class_keys())]

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td>{what}</td><td><b>{keys}</b></td></tr>" for what, keys in self.shortcut_rows())
        QMessageBox.information(self, "Keyboard shortcuts", f"<table cellspacing=4>{rows}</table>")

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._laid_out:
            self._laid_out = True
            self.fit_timelines()

    def fit_timelines(self) -> None:
        """Give the timelines the height that shows all three tracks (audio, visual, heard and seen)
        without scrolling, the audio view a strip, and the video the rest (down to a minimum)."""
        total = sum(self.media_splitter.sizes()) or self.media_splitter.height()
        audio = AUDIO_VIEW_HEIGHT
        timelines = min(self.timelines.preferred_height(), max(total - audio - MIN_VIDEO_HEIGHT, 0))
        self.media_splitter.setSizes([total - audio - timelines, audio, timelines])

    # ---- workspace: the window comes back as it was left ---------------------------------
    def save_workspace(self) -> None:
        self._save_pseudo_choice()
        sort, descending = self.queue.sort()
        last = dict(self.prefs.workspace().get("last_clip", {}))
        if self.session is not None and self.session.view is not None:
            last[self._workspace_key()] = self.session.view.clip.filename
        self.prefs.set_workspace({
            "geometry": self.saveGeometry(), "dock_state": self.saveState(),
            "media_splitter": self.media_splitter.saveState(), "top_splitter": self.top_splitter.saveState(),
            "filter": self.queue.filter().to_dict(), "sort": sort, "descending": descending,
            "view_mode": self.timelines.view_mode(), "diff_reference": self.timelines.diff_reference(),
            "others_collapsed": self.timelines.others_collapsed(), "speed": self.player.speed(), "last_clip": last,
            "overlay": self.overlay_on,
        })

    def restore_workspace(self) -> None:
        """Docks, splitters, queue filter and sort, view mode, speed and the last clip of this
        database, as they were; anything unreadable keeps its default."""
        saved = self.prefs.workspace()
        if not saved:
            return
        if "geometry" in saved:
            self.restoreGeometry(saved["geometry"])
        if "dock_state" in saved:
            self.restoreState(saved["dock_state"])
        if "media_splitter" in saved and self.media_splitter.restoreState(saved["media_splitter"]):
            self._laid_out = True
        if "top_splitter" in saved:
            self.top_splitter.restoreState(saved["top_splitter"])
        try:
            self.queue.set_sort(saved.get("sort", "id"), bool(saved.get("descending", False)))
            self.queue.set_filter(QueueFilter.from_dict(saved.get("filter") or {}))
            self.timelines.set_view_mode(saved.get("view_mode", "side"))
            self.timelines.set_diff_reference(saved.get("diff_reference", "pseudo"))
            self.timelines.set_others_collapsed(bool(saved.get("others_collapsed", True)))
            self.player.set_speed(float(saved.get("speed", 1.0)))
            self.overlay_on = bool(saved.get("overlay", True))
        except (ValueError, TypeError, KeyError):
            pass
        filename = (saved.get("last_clip") or {}).get(self._workspace_key())
        if not filename:
            return
        try:
            self.queue.select_clip(self.store.clip(str(filename)).id)
        except NotFoundError:
            pass

    def _workspace_key(self) -> str:
        """The database, as settings.ini may hold it: a URL's password is never written there."""
        try:
            return make_url(self.db_label.text()).render_as_string(hide_password=True)
        except ArgumentError:  # a plain SQLite path
            return self.db_label.text()

    def closeEvent(self, event) -> None:
        pseudo = self.pseudo_dialog
        if pseudo is not None and pseudo.runner.running():
            answer = QMessageBox.question(
                self, "Pseudo-labels are being generated", "A pseudo-label generation is going. Stop it (nothing "
                "is stored) and quit?")
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
            pseudo.stop_for_quit()
        if self.training.runner.running():
            answer = QMessageBox.question(
                self, "Training is running", "A training run is going. Stop it (the best checkpoint is kept; "
                "Resume continues it) and quit?")
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
            self.training.stop_for_quit()
        self.save_workspace()
        self.team.stop()
        self.player.unload()
        super().closeEvent(event)
