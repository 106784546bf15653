"""The workstation end to end on the demo project (offscreen, pytest-qt)."""
from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from sqlalchemy import and_, select

from annotation.db import open_database
from annotation.demo import build_demo
from annotation.importer import import_llp
from annotation.models import Clip, LabelTrack, Review
from annotation.store import LabelStore
from app.cli import run_cli
from ui.main_window import MainWindow
from ui.preferences import Preferences


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    return build_demo(tmp_path_factory.mktemp("demo") / "data", clips=12, seed=3).out_dir


@pytest.fixture
def db(tmp_path, demo_dir) -> str:
    url = str(tmp_path / "studio.sqlite")
    import_llp(open_database(url), demo_dir)
    return url


@pytest.fixture
def window(qtbot, tmp_path, db):
    prefs = Preferences(tmp_path / "settings.ini")
    prefs.annotator = "tester"
    win = MainWindow(open_database(db), prefs, db)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    win.editor.setFocus()
    return win


def key(window, sequence: str | Qt.Key, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    target = window.focusWidget() or window.editor
    if isinstance(sequence, str):
        QTest.keyClicks(target, sequence, modifier)
    else:
        QTest.keyClick(target, sequence, modifier)


def empty_visual_pending_train(db: str) -> list[int]:
    engine = open_database(db)
    c, t, r = Clip.__table__, LabelTrack.__table__, Review.__table__
    with engine.connect() as conn:
        return sorted(conn.execute(
            select(c.c.id).join(t, and_(t.c.clip_id == c.c.id, t.c.source == "pseudo", t.c.track == "visual"))
            .join(r, r.c.clip_id == c.c.id)
            .where(and_(c.c.split == "train", t.c.positives == 0, r.c.status == "pending"))
        ).scalars())


def test_queue_holds_exactly_the_empty_visual_pending_train_clips(window, db):
    expected = empty_visual_pending_train(db)
    assert len(expected) >= 2
    assert sorted(window.queue.visible_clip_ids()) == expected
    window.queue.select_clip(expected[0])
    assert window.session.view.clip.id == expected[0]
    assert window.timelines.timeline("visual").current().sum() == 0  # the empty pseudo-label shows


def test_keyboard_navigation(window, qtbot):
    ids = window.queue.visible_clip_ids()
    window.queue.select_clip(ids[0])
    window.editor.setFocus()
    key(window, Qt.Key.Key_PageDown)
    assert window.session.view.clip.id == ids[1]
    key(window, Qt.Key.Key_PageUp)
    assert window.session.view.clip.id == ids[0]
    key(window, Qt.Key.Key_Right)
    key(window, Qt.Key.Key_Right)
    assert window.timelines.timeline("audio").cursor()[1] == 2
    assert window.player.current_segment() == 2
    key(window, Qt.Key.Key_Left)
    assert window.player.current_segment() == 1
    key(window, Qt.Key.Key_Tab)
    assert window.timelines.active_track() == "visual"


def test_mouse_and_key_edits_are_saved_and_undoable(window, db, qtbot):
    clip_id = window.queue.visible_clip_ids()[0]
    window.queue.select_clip(clip_id)
    visual = window.timelines.timeline("visual")
    cls = visual.visible_rows()[0]
    QTest.mouseClick(visual, Qt.MouseButton.LeftButton, pos=visual.cell_rect(cls, 4).center())
    store = LabelStore(open_database(db))
    assert store.track(clip_id, "visual", "manual").grid[cls, 4] == 1

    assert window.timelines.active_track() == "visual"  # the clicked track is the one keys edit
    assert window.timelines.timeline("visual").cursor() == (cls, 4)  # the click moved the cursor
    window.editor.setFocus()
    key(window, Qt.Key.Key_Left)
    key(window, Qt.Key.Key_Left)  # segment 2
    key(window, "2")  # class 1 (Car) on segment 2
    grid = store.track(clip_id, "visual", "manual").grid
    assert grid[1, 2] == 1 and grid[cls, 4] == 1
    key(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert store.track(clip_id, "visual", "manual").grid[1, 2] == 0
    key(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert store.track(clip_id, "visual", "manual").grid[1, 2] == 1
    key(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    key(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not store.track(clip_id, "visual", "manual").exists  # back to the untouched pseudo-label
    assert (window.timelines.timeline("visual").current() == store.track(clip_id, "visual", "pseudo").grid).all()


def test_selection_and_class_key_apply_over_a_range(window, db):
    clip_id = window.queue.visible_clip_ids()[0]
    window.queue.select_clip(clip_id)
    window.editor.setFocus()
    key(window, Qt.Key.Key_Right)
    for _ in range(3):
        key(window, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    assert window.timelines.timeline("audio").selection() == (1, 4)
    key(window, "b")  # class 24 (Clapping)
    grid = LabelStore(open_database(db)).track(clip_id, "audio", "manual").grid
    assert grid[24].tolist() == [0, 1, 1, 1, 1, 0, 0, 0, 0, 0]


def test_settings_apply_key_bindings_and_theme_without_a_restart(window, db, monkeypatch):
    from PySide6.QtWidgets import QApplication

    from ui import theme
    from ui.settings_dialog import SettingsDialog

    clip_id = window.queue.visible_clip_ids()[0]
    window.queue.select_clip(clip_id)
    was_dark, previous = theme.current_is_dark(), QApplication.instance().property("avvp_dark")

    def change(dialog: SettingsDialog) -> int:
        for name, editor in dialog.rows:
            if name == "class:24":
                editor.setKeySequence("G")  # was "B"; "G" is free
        dialog.theme.setCurrentIndex(dialog.theme.findData("light" if was_dark else "dark"))
        dialog.accept()
        return 1

    monkeypatch.setattr(SettingsDialog, "exec", change)
    window.settings_dialog()
    assert window.actions["class:24"].shortcut().toString() == "G"
    window.editor.setFocus()
    key(window, "g")  # the new key toggles Clapping on the cursor segment, no restart
    grid = LabelStore(open_database(db)).track(clip_id, "audio", "manual").grid
    assert grid[24, 0] == 1
    key(window, "b")  # the old one does nothing any more
    assert (LabelStore(open_database(db)).track(clip_id, "audio", "manual").grid == grid).all()
    # the theme flipped, and the widgets that paint their own colours followed
    now_dark = not was_dark
    assert theme.current_is_dark() == now_dark
    app = QApplication.instance()
    assert app.palette().color(app.palette().ColorRole.Window).lightness() < 128 if now_dark else \
        app.palette().color(app.palette().ColorRole.Window).lightness() > 128
    assert window.audio_view.graphics.backgroundBrush().color() == theme.grid_background(now_dark)
    assert window.timelines.timeline("audio")._palette.dark == now_dark
    assert theme.muted_text(now_dark).name() in window.queue.count_label.styleSheet()
    if previous is not None:  # back to what the other tests expect
        theme.apply_theme(QApplication.instance(), dark=bool(previous))


def test_out_of_taxonomy_is_saved_and_the_queue_moves_on(window, db):
    ids = window.queue.visible_clip_ids()
    window.queue.select_clip(ids[0])
    window.editor.setFocus()
    key(window, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    store = LabelStore(open_database(db))
    review = store.review(ids[0])
    assert (review.status, review.annotator) == ("out_of_taxonomy", "tester")
    assert window.session.view.clip.id == ids[1]
    key(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert store.review(ids[0]).status == "pending"


def test_a_new_process_finds_every_edit(window, db):
    ids = window.queue.visible_clip_ids()
    window.queue.select_clip(ids[0])
    window.session.set_cells("audio", [(0, 0), (0, 1)], 1)
    window.session.set_cells("visual", [(3, 9)], 1)
    window.session.set_review("annotated", note="dog behind fence")
    expected_audio = window.session.current("audio")
    code = (
        "import sys, json\nfrom annotation.db import open_database\nfrom annotation.store import LabelStore\n"
        f"s = LabelStore(open_database({db!r}))\n"
        f"a = s.track({ids[0]}, 'audio', 'manual'); v = s.track({ids[0]}, 'visual', 'manual'); r = s.review({ids[0]})\n"
        "print(json.dumps([a.grid.tolist(), int(v.grid[3, 9]), r.status, r.note, r.annotator]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    import json

    audio, cell, status, note, who = json.loads(out.stdout)
    assert (np.array(audio) == expected_audio).all() and cell == 1
    assert (status, note, who) == ("annotated", "dog behind fence", "tester")


def test_concurrent_write_prompts_instead_of_overwriting(window, db, qtbot, monkeypatch):
    shown = []

    def fake_exec(dialog):
        shown.append(dialog)
        return dialog.DialogCode.Rejected  # "use theirs"

    monkeypatch.setattr("ui.conflict_dialog.ConflictDialog.exec", fake_exec)
    clip_id = window.queue.visible_clip_ids()[0]
    window.queue.select_clip(clip_id)
    window.session.set_cells("visual", [(5, 5)], 1)
    other = LabelStore(open_database(db))
    theirs = np.zeros((25, 10), np.uint8)
    theirs[7, :] = 1
    other.save_track(clip_id, "visual", "manual", theirs, 1, "bob")
    window.session.set_cells("visual", [(5, 6)], 1)
    qtbot.waitUntil(lambda: len(shown) == 1)
    assert "bob" in shown[0].conflict.message
    stored = other.track(clip_id, "visual", "manual")
    assert stored.updated_by == "bob" and (stored.grid == theirs).all()
    qtbot.waitUntil(lambda: (window.timelines.timeline("visual").current() == theirs).all())


def test_export_dialog_equals_cli_export(window, db, tmp_path, qtbot):
    window.queue.select_clip(window.queue.visible_clip_ids()[0])
    window.session.set_cells("visual", [(2, 2)], 1)
    from ui.export_dialog import ExportDialog

    dialog = ExportDialog(window.engine, str(tmp_path / "gui"), window)
    qtbot.addWidget(dialog)
    dialog.source.setCurrentIndex(dialog.source.findData("best"))
    dialog.split.setCurrentIndex(dialog.split.findData("all"))
    dialog.run_export()
    assert dialog.report is not None
    assert run_cli(["export", "labels", "--out", str(tmp_path / "cli"), "--source", "best", "--db", db]) == 0
    compared = filecmp.dircmp(tmp_path / "gui", tmp_path / "cli")
    files = [p.relative_to(tmp_path / "gui") for p in (tmp_path / "gui").rglob("*") if p.is_file()]
    assert len(files) > 20
    for rel in files:
        assert (tmp_path / "cli" / rel).read_bytes() == (tmp_path / "gui" / rel).read_bytes(), rel
    assert not compared.left_only and not compared.right_only
