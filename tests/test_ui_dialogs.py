"""Settings, import with progress and cancel, first-run path."""
from __future__ import annotations

import threading

import pytest
from PySide6.QtGui import QKeySequence

from annotation.db import open_database
from annotation.importer import import_llp
from annotation.queue import QueueFilter
from annotation.stats import dataset_stats
from tests.llp_fixtures import make_llp_dir
from tests.test_import_export import dump
from ui.main_window import MainWindow
from ui.preferences import Preferences
from ui.progress_dialog import TaskProgressDialog
from ui.settings_dialog import SettingsDialog
from ui.workers import BackgroundTask


@pytest.fixture
def prefs(tmp_path) -> Preferences:
    p = Preferences(tmp_path / "settings.ini")
    p.annotator = "tester"
    return p


def test_settings_dialog_saves_name_filter_and_keys_and_refuses_clashes(qtbot, prefs):
    dialog = SettingsDialog(prefs)
    qtbot.addWidget(dialog)
    dialog.annotator.setText("Ada")
    dialog.split.setCurrentIndex(dialog.split.findData("val"))
    dialog.status.setCurrentIndex(dialog.status.findData("any"))
    dialog.empty.setCurrentIndex(dialog.empty.findData("any"))
    editors = dict(dialog.rows)
    editors["class:3"].setKeySequence(QKeySequence("2"))  # clashes with class 1
    assert "bound to both" in dialog.clash.text()
    assert not dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled()
    editors["class:3"].setKeySequence(QKeySequence("F5"))
    assert dialog.clash.text() == ""
    dialog.accept()
    again = Preferences(prefs.path)
    assert again.annotator == "Ada"
    assert again.class_keys()[3] == "F5" and again.class_keys()[1] == "2"
    assert again.key_overrides() == {"class:3": "F5"}
    assert again.queue_filter() == QueueFilter(split="val", statuses=None, empty_visual=None)


def test_window_opens_on_the_default_filter_from_settings(qtbot, tmp_path, prefs):
    db = str(tmp_path / "w.sqlite")
    import_llp(open_database(db), make_llp_dir(tmp_path / "data"))
    prefs.set_default_filter("test", "pending", None)
    window = MainWindow(open_database(db), prefs, db)
    qtbot.addWidget(window)
    names = {window.store.clip(i).filename for i in window.queue.visible_clip_ids()}
    assert names == {"fffffffffff_0_10", "ggggggggggg_20_30"}


def test_import_runs_in_the_background_and_cancel_leaves_the_database_unchanged(qtbot, tmp_path, prefs):
    db = str(tmp_path / "c.sqlite")
    engine = open_database(db)
    import_llp(engine, make_llp_dir(tmp_path / "first"))
    before = dump(engine)
    gate = threading.Event()

    def slow_import(progress):
        def gated(stage, done, total):
            gate.wait(5)  # holds the worker until the test pressed Cancel
            progress(stage, done, total)
        return import_llp(engine, make_llp_dir(tmp_path / "second", seed=9), gated)

    task = BackgroundTask(slow_import, "Import LLP folder")
    dialog = TaskProgressDialog(task)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.start()
    assert task.isRunning()  # the GUI thread is free while the import runs
    dialog.reject()  # the Cancel button / closing the dialog
    gate.set()
    qtbot.waitUntil(lambda: dialog.outcome == "cancelled", timeout=10000)
    task.wait(5000)
    assert dump(engine) == before


def test_failed_task_is_reported_not_raised(qtbot, monkeypatch):
    shown = []
    monkeypatch.setattr("ui.progress_dialog.QMessageBox.critical", lambda *args: shown.append(args[2]))
    task = BackgroundTask(lambda progress: import_llp(open_database("sqlite://"), "/nonexistent"), "Import")
    dialog = TaskProgressDialog(task)
    qtbot.addWidget(dialog)
    dialog.start()
    qtbot.waitUntil(lambda: dialog.outcome == "failed", timeout=10000)
    assert "not a directory" in shown[0]
    assert not task.isRunning()  # the dialog waited for the thread before closing


def test_first_run_builds_and_imports_the_demo(tmp_path, monkeypatch):
    from app import gui

    monkeypatch.setenv("AVVP_STUDIO_HOME", str(tmp_path / "home"))
    engine = open_database(str(tmp_path / "empty.sqlite"))
    calls = []
    report = gui.build_demo_task(engine, lambda stage, done, total: calls.append(stage))
    assert dataset_stats(engine)["clips"] == {"train": 20, "val": 6, "test": 6}
    assert report.videos == 32 and any(stage.startswith("demo:") for stage in calls)
