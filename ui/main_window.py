"""The annotation workstation: queue dock, player, audio view, timelines, clip panel.

Wiring only: the session owns edits, the widgets own drawing, workers own long jobs.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QApplication, QFileDialog, QInputDialog, QLabel, QMainWindow, QMessageBox, QSplitter, QVBoxLayout, QWidget,
)
from sqlalchemy import Engine

from annotation.db import DatabaseError, open_database
from annotation.importer import import_llp
from annotation.queue import ReviewQueue
from annotation.store import LabelStore, NotFoundError
from annotation.taxonomy import DISPLAY_NAMES
from ui.audio_view import AudioView, load_audio
from ui.clip_panel import ClipPanel
from ui.conflict_dialog import ConflictDialog
from ui.editor_keys import EditorKeys
from ui.export_dialog import ExportDialog
from ui.keymap import ACTIONS
from ui.player import PlayerWidget
from ui.preferences import Preferences
from ui.progress_dialog import TaskProgressDialog
from ui.queue_dock import QueueDock
from ui.session import ClipSession, Conflict
from ui.settings_dialog import SettingsDialog
from ui.theme import apply_theme, dark_for
from ui.timeline import TimelinePanel
from ui.workers import BackgroundTask

# actions that only make sense while the editor area (not a text field or the queue) has focus
EDITOR_SCOPED = {"segment_prev", "segment_next", "select_prev", "select_next", "row_up", "row_down",
                 "toggle_cell", "switch_track"}


class MainWindow(QMainWindow):
    def __init__(self, engine: Engine, prefs: Preferences, db_label: str = ""):
        super().__init__()
        self.prefs = prefs
        self.setWindowTitle("AVVP Studio")
        self.resize(1440, 920)
        self._audio_cache: OrderedDict[str | None, tuple[np.ndarray | None, int]] = OrderedDict()
        self.last_open_ms: float | None = None

        self.player = PlayerWidget()
        self.audio_view = AudioView()
        self.timelines = TimelinePanel()
        self.clip_panel = ClipPanel()
        self.queue = QueueDock(self)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.queue)
        self.resizeDocks([self.queue], [430], Qt.Orientation.Horizontal)

        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.player)
        top.addWidget(self.clip_panel)
        top.setStretchFactor(0, 3)
        top.setStretchFactor(1, 2)
        media = QSplitter(Qt.Orientation.Vertical)
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
        self.session: ClipSession | None = None
        self.keys: EditorKeys | None = None
        self._build_menus()
        self._connect_widgets()
        hints = QGuiApplication.styleHints()
        if hasattr(hints, "colorSchemeChanged"):  # Qt >= 6.5: the desktop switched dark/light
            hints.colorSchemeChanged.connect(self._system_scheme_changed)
        self.set_database(engine, db_label)

    # ---- database ----------------------------------------------------------------------
    def set_database(self, engine: Engine, label: str = "") -> None:
        self.engine = engine
        self.store = LabelStore(engine)
        if self.session is not None:
            self.session.deleteLater()
        self.session = ClipSession(self.store, self.prefs.annotator or "anonymous", self)
        self.session.grid_changed.connect(self._on_grid_changed)
        self.session.review_changed.connect(self._on_review_changed)
        self.session.saved.connect(self.saved_label.setText)
        self.session.conflict.connect(self._on_conflict)
        self.keys = EditorKeys(self.session, self.timelines, self._seek_segment)
        self._rebind_undo()
        queue = ReviewQueue()
        queue.load(engine)
        self.queue.set_annotator(self.session.annotator)
        self.queue.set_queue(queue)
        self.queue.set_filter(self.prefs.queue_filter())
        first = self.queue.visible_clip_ids()[:1]
        if first and self.queue.current_clip_id() is None:
            self.queue.select_clip(first[0])  # open on the first clip to review, ready for the keyboard
        self.db_label.setText(label)
        self.statusBar().showMessage(f"{len(queue)} clips in the database", 6000)

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
        for name in ("accept", "out_of_taxonomy", "skip", "note", "next_clip", "prev_clip"):
            clip_menu.addAction(self._action(name, lambda _=False, n=name: self.review_action(n)))
        play_menu = bar.addMenu("&Playback")
        play_menu.addAction(self._action("play", self.player.toggle_play))
        play_menu.addAction(self._action("frame_prev", lambda: self.player.step_frame(-1)))
        play_menu.addAction(self._action("frame_next", lambda: self.player.step_frame(1)))
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
        self.timelines.edit_requested.connect(lambda track, cells, value: self.session.set_cells(track, cells, value))
        self.timelines.segment_clicked.connect(self._seek_segment)
        self.audio_view.seek_requested.connect(self.player.seek)
        self.player.position_changed.connect(self.audio_view.set_position)
        self.player.segment_changed.connect(self._on_segment)
        self.player.notice.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.clip_panel.action_requested.connect(self.review_action)

    # ---- clip display ------------------------------------------------------------------
    def show_clip(self, clip_id: int) -> None:
        started = time.perf_counter()
        try:
            view = self.session.open_clip(clip_id)
        except NotFoundError as exc:
            self.statusBar().showMessage(str(exc), 8000)
            return
        clip = view.clip
        self.timelines.set_clip(clip.weak, view.current, view.layers)
        self.keys.reset()
        self.clip_panel.show_clip(clip, view.review, view.edited)
        self.player.load(clip.video_path)
        samples, rate = self._audio(clip.video_path)
        self.audio_view.set_audio(samples, rate, self.player.duration())
        self.timelines.set_playhead_segment(0)
        self.last_open_ms = (time.perf_counter() - started) * 1000
        self.statusBar().showMessage(f"{clip.filename} · opened in {self.last_open_ms:.0f} ms", 4000)

    def _audio(self, path: str | None) -> tuple[np.ndarray | None, int]:
        """The audio view's samples (None: no file or no track), kept for the last 16 clips visited."""
        if path not in self._audio_cache:
            samples, rate, _ = load_audio(path)
            self._audio_cache[path] = (samples, rate)
            while len(self._audio_cache) > 16:
                self._audio_cache.popitem(last=False)
        return self._audio_cache[path]

    def _seek_segment(self, seg: int) -> None:
        self.player.seek(float(seg))

    def _on_segment(self, seg: int) -> None:
        self.timelines.set_playhead_segment(seg)
        if self.keys is not None:
            self.keys.set_segment(seg)

    def _on_grid_changed(self, clip_id: int, track: str, grid: np.ndarray) -> None:
        view = self.session.view
        if view is not None and view.clip.id == clip_id:
            self.timelines.set_current(track, grid)
            self.clip_panel.show_clip(view.clip, view.review, view.edited)
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
        dialog = ConflictDialog(conflict, weak, fallback, self)
        self.last_conflict_dialog = dialog
        keep_mine = dialog.exec() == ConflictDialog.DialogCode.Accepted
        self.session.resolve(conflict, keep_mine=keep_mine)
        if not keep_mine and conflict.track is not None and self.session.view is not None:
            self.show_clip(self.session.view.clip.id)

    # ---- actions -----------------------------------------------------------------------
    def review_action(self, name: str) -> None:
        if name == "next_clip":
            self.queue.select_next()
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
        path, _ = QFileDialog.getOpenFileName(self, "Open database", str(Path.home()),
                                              "SQLite databases (*.sqlite *.db);;All files (*)")
        if not path:
            return
        try:
            engine = open_database(path)
        except DatabaseError as exc:  # a bad file must not kill the window
            QMessageBox.critical(self, "Cannot open database", f"{path}:\n{exc}")
            return
        self.set_database(engine, path)

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
            self.queue.set_annotator(self.session.annotator)
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

    def show_shortcuts(self) -> None:
        shortcuts = self.prefs.shortcuts()
        rows = "".join(f"<tr><td>{ACTIONS[n][0]}</td><td><b>{shortcuts[n]}</b></td></tr>" for n in ACTIONS)
        keys = self.prefs.class_keys()
        rows += "".join(f"<tr><td>Toggle {DISPLAY_NAMES[i]}</td><td><b>{k}</b></td></tr>" for i, k in enumerate(keys))
        QMessageBox.information(self, "Keyboard shortcuts", f"<table cellspacing=4>{rows}</table>")

    def closeEvent(self, event) -> None:
        self.player.unload()
        super().closeEvent(event)
