"""The window as a new annotator meets it (issue 10): the defects they hit and the habits of
professional annotation tools, in a real window (offscreen, pytest-qt)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QBrush
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QComboBox

from annotation.agreement import agreement, cohen_kappa
from annotation.db import open_database
from annotation.demo import build_demo
from annotation.importer import import_llp
from annotation.presence import heartbeat
from annotation.stats import dataset_stats, format_stats
from annotation.store import LabelStore
from app.cli import run_cli
from ui import player as player_module
from ui.agreement_dialog import AgreementDialog
from ui.audio_output import NO_DEVICE
from ui.conflict_dialog import ConflictDialog
from ui.database_dialog import open_or_choose
from ui.history_dialog import HistoryDialog
from ui.main_window import MainWindow
from ui.preferences import Preferences
from ui.timeline_scene import ADDED_PATTERN


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    return build_demo(tmp_path_factory.mktemp("demo") / "data", clips=12, seed=3).out_dir


@pytest.fixture
def db(tmp_path, demo_dir) -> str:
    url = str(tmp_path / "studio.sqlite")
    import_llp(open_database(url), demo_dir)
    return url


@pytest.fixture(autouse=True)
def no_sound_device(monkeypatch):
    """The same reason on every machine (with or without a sound server)."""
    monkeypatch.setattr(player_module, "audio_unavailable_reason", lambda: NO_DEVICE)


def make_window(qtbot, tmp_path, db, settings: str = "settings.ini", focus: bool = False) -> MainWindow:
    prefs = Preferences(tmp_path / settings)
    prefs.annotator = "ann"
    win = MainWindow(open_database(db), prefs, db)
    qtbot.addWidget(win)
    win.team.timer.stop()  # tests poll by hand
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    if focus:
        win.editor.setFocus()
    return win


@pytest.fixture
def window(qtbot, tmp_path, db) -> MainWindow:
    return make_window(qtbot, tmp_path, db)


def press(window: MainWindow, key, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    target = QApplication.focusWidget() or window.editor
    QTest.keyClick(target, key, modifier)


def poll_now(qtbot, window: MainWindow):
    """One fresh query round (a round already running may have started before the change under test)."""
    qtbot.waitUntil(lambda: window.team._task is None, timeout=5000)
    with qtbot.waitSignal(window.team.polled, timeout=5000) as blocker:
        assert window.team.poll() is not None
    return blocker.args[0]


def grid_of(db: str, clip_id: int, track: str) -> np.ndarray:
    return LabelStore(open_database(db)).track(clip_id, track, "manual").grid


# ---------------------------------------------------------------- defects


def test_the_editor_owns_the_keyboard_at_start_up_and_queue_combos_do_not_take_arrows(window):
    """Defect 1: no explicit setFocus; Down moves the class cursor, never the split or status filter."""
    focused = QApplication.focusWidget()
    assert focused is not None and (focused is window.editor or window.editor.isAncestorOf(focused))
    before = window.queue.filter()
    row, _ = window.timelines.timeline("audio").cursor()
    press(window, Qt.Key.Key_Down)
    press(window, Qt.Key.Key_Right)
    assert window.queue.filter() == before  # no combo box moved
    assert window.timelines.timeline("audio").cursor() == (window.timelines.timeline("audio").visible_rows()[1], 1) \
        or window.timelines.timeline("audio").cursor()[0] != row
    assert window.player.current_segment() == 1  # Right reached the editor
    combos = window.queue.findChildren(QComboBox)
    assert combos and all(c.focusPolicy() == Qt.FocusPolicy.ClickFocus for c in combos)


def test_undo_of_an_edit_on_another_clip_brings_it_back_and_says_so(window, db):
    """Defect 2: edit A, PgDown to B, Ctrl+Z: A comes on screen first and the status bar names it."""
    ids = window.queue.visible_clip_ids()
    first = ids[0]
    window.queue.select_clip(first)
    window.session.set_cells("audio", [(0, 0)], 1)
    assert grid_of(db, first, "audio")[0, 0] == 1
    window.review_action("next_clip")
    assert window.session.view.clip.id != first
    window.actions["undo"].trigger()
    assert window.session.view.clip.id == first  # back on screen
    assert grid_of(db, first, "audio")[0, 0] == 0 or not LabelStore(open_database(db)).track(
        first, "audio", "manual").exists
    message = window.statusBar().currentMessage()
    assert message.startswith("Undid: ") and window.session.view.clip.filename in message


def test_no_sound_is_shown_beside_the_transport_and_stays_in_the_status_bar(window, qtbot):
    """Defect 3: the reason is an icon with a tooltip, and "opened in N ms" does not overwrite it."""
    assert window.player.sound_label.isVisible() and window.player.sound_label.toolTip() == NO_DEVICE
    assert window.statusBar().currentMessage() == NO_DEVICE
    window.review_action("next_clip")  # opens another clip: the timing message waits
    assert window.statusBar().currentMessage() == NO_DEVICE
    assert window.player.sound_label.isVisible()


def test_a_database_that_cannot_be_opened_is_explained_and_another_can_be_picked(tmp_path, db):
    """Defect 4: the reason goes to a dialog (here a stand-in) that offers another database."""
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"this is not a database" * 200)
    asked: list[tuple[str, str]] = []
    opened = open_or_choose(str(corrupt), ask=lambda database, reason: asked.append((database, reason)) or "open",
                            pick=lambda kind: db)
    assert opened is not None and opened[1] == db
    assert asked and asked[0][0] == str(corrupt) and "corrupt.sqlite" in asked[0][1]
    assert open_or_choose(str(corrupt), ask=lambda database, reason: None, pick=lambda kind: db) is None
    assert corrupt.read_bytes() == b"this is not a database" * 200  # nothing written to it


def test_audio_panel_says_why_there_is_no_sound_and_reads_the_file_again_when_it_returns(window, db):
    """Defect 5: a missing or unreadable video is not "No audio track", and a failure is not cached."""
    clip = window.session.view.clip
    path = Path(clip.video_path)
    hidden = path.with_suffix(".away")
    shutil.move(path, hidden)
    try:
        window.show_clip(clip.id)
        text = window.audio_view.message.textItem.toPlainText()
        assert text.startswith("Video file not found") and path.name in text
        assert window.audio_view.message.isVisible()
        path.write_bytes(b"not a video" * 500)  # there, but unreadable: a failure that could be cached
        window.show_clip(clip.id)
        assert window.audio_view.message.textItem.toPlainText().startswith("Cannot read the audio")
    finally:
        shutil.move(hidden, path)
    window.show_clip(clip.id)
    assert not window.audio_view.message.isVisible()  # the waveform is back


def test_stats_columns_are_aligned(db):
    store = LabelStore(open_database(db))
    store.save_track(store.clips()[0].id, "audio", "prediction:han5", np.ones((25, 10), np.uint8), 0, None)
    lines = format_stats(dataset_stats(store.engine)).splitlines()
    starts = {len(line) - len(line.split("  ", 1)[1].lstrip()) if "  " in line else -1 for line in lines}
    assert len(starts) == 1 and -1 not in starts, lines  # every value column starts at the same place
    assert any(line.startswith("tracks prediction:han5  ") for line in lines)  # was "prediction:han5audio: 1"


def test_segments_are_numbered_from_zero_everywhere(window):
    window.player.seek(3.5)
    assert "segment 3 · 3–4 s" in window.player.segment_label.text()
    assert window.timelines.timeline("audio").playhead_segment() == 3


def test_f1_lists_undo_redo_and_the_file_menu(window):
    rows = dict(window.shortcut_rows())
    for what in ("Undo", "Redo", "Open database", "Export labels", "Quit", "Edit history", "Loop selection"):
        assert what in rows, what
    assert "Ctrl+Z" in rows["Undo"]


def test_diff_view_marks_added_cells_with_a_pattern_not_only_a_hue(window):
    timeline = window.timelines.timeline("audio")
    window.timelines.set_view_mode("diff")
    pseudo = timeline.layers()["pseudo"]
    free = np.argwhere(pseudo[list(window.session.view.clip.weak)] == 0)
    cls, seg = list(window.session.view.clip.weak)[free[0][0]], int(free[0][1])
    window.session.set_cells("audio", [(cls, seg)], 1)
    added = timeline._scene._added_item
    assert added.brush() == QBrush(ADDED_PATTERN, Qt.BrushStyle.CrossPattern)  # a cross over the hue
    assert added.path().contains(QPointF(timeline.cell_rect(cls, seg).center()))


def test_all_three_tracks_fit_at_the_default_window_size(window):
    panel = window.timelines
    scroll = panel._scroll
    assert scroll.verticalScrollBar().maximum() == 0  # "Heard and seen" needs no scrolling
    av = panel.timeline("audio_visual")
    bottom = av.mapTo(scroll.viewport(), av.rect().bottomLeft()).y()
    assert bottom <= scroll.viewport().height()


# ---------------------------------------------------------------- habits


def test_speed_keys_loop_and_play_once(window, qtbot):
    press(window, Qt.Key.Key_BracketRight)
    assert window.player.speed() == 1.25
    press(window, Qt.Key.Key_BracketLeft)
    press(window, Qt.Key.Key_BracketLeft)
    assert window.player.speed() == 0.75
    window.keys.move_segment(1, False)
    window.keys.move_segment(1, True)  # segments 1-2 selected
    press(window, Qt.Key.Key_L)
    assert window.player.looping() and window.player.clock.range == (1.0, 3.0, True)
    qtbot.waitUntil(lambda: window.player.position() > 1.05, timeout=3000)
    press(window, Qt.Key.Key_L)  # again: stop looping
    assert not window.player.looping()
    window.player.pause()
    press(window, Qt.Key.Key_Space, Qt.KeyboardModifier.ShiftModifier)
    assert window.player.is_playing() and window.player.clock.range == (1.0, 3.0, False)
    window.player.pause()


def test_zoom_keys_narrow_and_restore_the_audio_window(window):
    whole = window.audio_view.window
    window.audio_view.set_position(5.0)
    press(window, Qt.Key.Key_Equal, Qt.KeyboardModifier.ControlModifier)
    press(window, Qt.Key.Key_Equal, Qt.KeyboardModifier.ControlModifier)
    narrow = window.audio_view.window
    assert narrow[1] - narrow[0] == pytest.approx((whole[1] - whole[0]) / 4)
    press(window, Qt.Key.Key_Minus, Qt.KeyboardModifier.ControlModifier)
    wider = window.audio_view.window
    assert wider[1] - wider[0] == pytest.approx((whole[1] - whole[0]) / 2)
    press(window, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert window.audio_view.window == whole


def test_the_window_fits_a_1280_pixel_screen(window):
    assert window.minimumSizeHint().width() <= 1260


def test_next_unreviewed_skips_reviewed_clips(window):
    from annotation.queue import QueueFilter

    window.queue.set_filter(QueueFilter(statuses=None, split=None, empty_visual=None))
    ids = window.queue.visible_clip_ids()
    window.queue.select_clip(ids[0])
    store = LabelStore(open_database(window.db_label.text()))
    store.set_review(ids[1], "annotated", "bob", store.review(ids[1]).version)
    window.queue.update_clip(window.engine, ids[1])
    press(window, Qt.Key.Key_PageDown, Qt.KeyboardModifier.ControlModifier)
    assert window.session.view.clip.id == ids[2]


def test_the_workspace_comes_back_as_it_was_left(qtbot, tmp_path, db):
    from annotation.queue import QueueFilter

    first = make_window(qtbot, tmp_path, db)
    first.queue.set_filter(QueueFilter(statuses=None, split="train", empty_visual=None))
    first.queue.set_sort("weak_count", True)
    target = first.queue.visible_clip_ids()[2]
    first.queue.select_clip(target)
    first.timelines.set_view_mode("diff")
    first.player.set_speed(0.5)
    first.queue.hide()
    screen = first.screen().availableGeometry()  # the offscreen screen is small: stay inside it
    first.resize(min(1200, screen.width() - 20), min(900, screen.height() - 40))
    QTest.qWait(10)
    size = first.size()
    sizes = first.media_splitter.sizes()
    first.media_splitter.setSizes([sizes[0] - 40, sizes[1] + 40, sizes[2]])
    moved = first.media_splitter.sizes()
    first.close()
    again = make_window(qtbot, tmp_path, db)
    assert again.height() == size.height() and not again.queue.isVisible()  # window and docks as left
    assert again.media_splitter.sizes() == moved  # splitters as left
    assert again.queue.filter() == QueueFilter(statuses=None, split="train", empty_visual=None)
    assert again.queue.sort() == ("weak_count", True)
    assert again.session.view.clip.id == target
    assert again.timelines.view_mode() == "diff" and again.player.speed() == 0.5


def test_a_finished_queue_says_what_to_do_next(window):
    pending = len(window.queue.visible_clip_ids())
    for _ in range(pending):
        window.review_action("accept")
        QTest.qWait(1)
    assert window.queue.visible_clip_ids() == [] and window.session.view is None
    assert window.clip_panel.meta.text().startswith(f"All {pending} clips of this list are reviewed. Next: export")


def test_clicking_a_cell_is_announced(window):
    assert window.timelines.edit_hint.isVisible() and "Click a cell" in window.timelines.edit_hint.text()
    assert window.timelines.edit_hint.width() >= window.timelines.edit_hint.sizeHint().width()  # not cut
    assert "Click a cell to toggle it" in window.clip_panel.help.text()


def test_history_lists_who_changed_what_and_restores_a_version_as_an_undoable_edit(window, db, qtbot):
    clip = window.session.view.clip
    pseudo = window.session.current("audio").copy()
    cls = next(c for c in range(25) if pseudo[c].sum() == 0)
    window.session.set_cells("audio", [(cls, 1), (cls, 2)], 1)
    first_version = window.session.current("audio").copy()
    window.session.set_cells("audio", [(cls, 1)], 0)
    window.session.set_review("annotated")
    dialog = HistoryDialog(window.store, clip, window._restore, window)
    qtbot.addWidget(dialog)
    assert dialog.table.rowCount() == 3
    assert dialog.table.item(0, 2).text() == "review pending → annotated" and dialog.table.item(0, 1).text() == "ann"
    assert dialog.table.item(1, 2).text().startswith("audio cells −1 (")
    assert dialog.table.item(2, 2).text().startswith("audio cells +2 (")  # against the pseudo-label shown
    assert dialog.table.item(2, 2).text().endswith(" from the pseudo-label")
    dialog.table.selectRow(2)
    assert dialog.previews["audio"].isVisibleTo(dialog) and not dialog.previews["visual"].isVisibleTo(dialog)
    dialog.restore_button.click()
    np.testing.assert_array_equal(grid_of(db, clip.id, "audio"), first_version)
    assert "Restored the version of" in window.statusBar().currentMessage()
    window.actions["undo"].trigger()  # the restore is an edit like any other
    assert grid_of(db, clip.id, "audio")[cls].sum() == 1
    assert len(window.store.history(clip.id)) == 5  # nothing rewritten: restore and undo are new rows


def test_conflict_dialog_links_to_the_history(window, monkeypatch):
    clip = window.session.view.clip
    window.session.set_cells("audio", [(0, 0)], 1)
    other = LabelStore(open_database(window.db_label.text()))
    other.save_track(clip.id, "audio", "manual", np.ones((25, 10), np.uint8), 1, "bob")
    opened: list[bool] = []
    monkeypatch.setattr(MainWindow, "show_history", lambda self, restore=True: opened.append(restore))

    def run(dialog):
        dialog.history_button.click()
        return ConflictDialog.DialogCode.Rejected

    monkeypatch.setattr(ConflictDialog, "exec", run)
    window.session.set_cells("audio", [(1, 1)], 1)
    QTest.qWait(20)
    assert opened == [False]  # view only while the choice is pending


def test_another_annotators_save_appears_without_reopening_and_presence_is_shown(window, db, qtbot, monkeypatch):
    clip = window.session.view.clip
    window.session.set_cells("visual", [(0, 0)], 1)  # my edit, before theirs
    theirs = np.zeros((25, 10), np.uint8)
    theirs[3, 4:7] = 1
    other = LabelStore(open_database(db))
    other.save_track(clip.id, "visual", "manual", theirs, 1, "bob")
    heartbeat(other.engine, "bob-window", "bob", clip.id)
    frame = window.player.current_frame_index()
    poll_now(qtbot, window)
    np.testing.assert_array_equal(window.timelines.timeline("visual").current(), theirs)
    assert "bob" in window.clip_panel.presence.text()
    assert window.statusBar().currentMessage().startswith("bob saved visual labels of this clip at ")
    assert window.player.current_frame_index() == frame  # the video was not reloaded
    # my older edit cannot be undone over theirs without asking
    asked: list = []
    window.session.conflict.connect(asked.append)
    monkeypatch.setattr(ConflictDialog, "exec", lambda dialog: ConflictDialog.DialogCode.Rejected)  # "use theirs"
    window.actions["undo"].trigger()
    QTest.qWait(20)
    assert asked and asked[0].track == "visual" and "bob" in asked[0].message
    np.testing.assert_array_equal(grid_of(db, clip.id, "visual"), theirs)


def test_a_poll_that_raced_an_own_save_is_dropped(window, db, qtbot):
    clip = window.session.view.clip
    poll = poll_now(qtbot, window)
    window.session.set_cells("audio", [(0, 0)], 1)
    window._on_poll(poll)  # older than my save: it must not reload the clip
    assert window.session.current("audio")[0, 0] == 1
    assert window.statusBar().currentMessage() == "" or "saved" not in window.statusBar().currentMessage()
    assert window.session.view.clip.id == clip.id


def test_presence_fades_when_a_window_closes(qtbot, tmp_path, db):
    first = make_window(qtbot, tmp_path, db, "a.ini")
    second = make_window(qtbot, tmp_path, db, "b.ini")
    clip_id = first.session.view.clip.id
    second.queue.select_clip(clip_id)
    for window in (second, first):
        poll_now(qtbot, window)
    assert "ann" in first.clip_panel.presence.text()  # the other window (same name, other session)
    second.close()
    poll_now(qtbot, first)
    assert first.clip_panel.presence.text() == ""


# ---------------------------------------------------------------- agreement


def labelled_by_two(db: str) -> tuple[LabelStore, list[int]]:
    store = LabelStore(open_database(db))
    ids = [c.id for c in store.clips()][:3]
    rng = np.random.default_rng(0)
    for clip_id in ids:
        a = (rng.random((25, 10)) < 0.2).astype(np.uint8)
        b = a.copy()
        b[rng.integers(0, 25, 5), rng.integers(0, 10, 5)] ^= 1
        store.save_track(clip_id, "audio", "manual", a, 0, "ann")
        store.save_track(clip_id, "audio", "manual", b, 1, "bob")
    return store, ids


def test_agreement_is_cohens_kappa_per_class_from_each_ones_last_save(db):
    store, ids = labelled_by_two(db)
    reports = agreement(store.engine, ("audio",))
    assert len(reports) == 1 and reports[0].annotators == ("ann", "bob") and reports[0].clips == 3
    from annotation.history import labels_by_annotator

    by = labels_by_annotator(store.engine, "audio")
    a = np.stack([by[i]["ann"] for i in ids])
    b = np.stack([by[i]["bob"] for i in ids])
    for c in range(25):
        expected, _ = cohen_kappa(a[:, c], b[:, c])
        assert reports[0].kappa[list(reports[0].kappa)[c]] == expected
    # kappa by hand on a small case
    k, po = cohen_kappa(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
    assert po == 0.75 and k == pytest.approx(0.5)  # p_e = .5 * .25 + .5 * .75 = .5
    assert cohen_kappa(np.zeros(5), np.zeros(5)) == (None, 1.0)  # undefined, not a perfect 1


def test_accepting_a_clip_unchanged_labels_it_and_unnamed_edits_are_left_out(db):
    store = LabelStore(open_database(db))
    clip = store.clips()[0].id
    pseudo = store.track(clip, "audio", "pseudo").grid
    store.set_review(clip, "annotated", "carol", store.review(clip).version)  # accepted as the pseudo-label shows it
    changed = pseudo.copy()
    changed[0, :3] = 1 - changed[0, :3]
    store.save_track(clip, "audio", "manual", changed, 0, "dave")
    store.save_track(clip, "audio", "manual", changed, 1, None)  # nobody's
    from annotation.history import labels_by_annotator

    grids = labels_by_annotator(store.engine, "audio")[clip]
    assert sorted(grids) == ["carol", "dave"]
    np.testing.assert_array_equal(grids["carol"], pseudo)
    np.testing.assert_array_equal(grids["dave"], changed)
    [report] = agreement(store.engine, ("audio",))
    assert report.annotators == ("carol", "dave") and report.clips == 1


def test_agreement_from_the_cli_and_the_dialog(db, qtbot, capsys):
    store, _ = labelled_by_two(db)
    assert run_cli(["agreement", "--db", db, "--track", "audio"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("note: ") and "upper bounds of independent agreement" in out.splitlines()[0]
    assert "ann vs bob, audio: 3 clip(s) both labelled" in out
    overall = agreement(store.engine, ("audio",))[0].kappa["all"]
    assert f"{overall:.3f}" in out.splitlines()[-1]
    dialog = AgreementDialog(store.engine)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.pair.count() == 1, timeout=5000)
    dialog.track.setCurrentIndex(0)
    assert dialog.table.item(25, 1).text() == f"{overall:.3f}"
    assert run_cli(["agreement", "--db", db, "--between", "ann", "nobody"]) == 0
    assert capsys.readouterr().out.startswith("no clip was labelled by two annotators")
    assert run_cli(["agreement", "--db", db, "--between", "ann", "ann"]) == 2
    assert "two different annotators" in capsys.readouterr().err


def test_undo_after_a_colleague_saved_the_clip_meanwhile_asks_even_without_a_poll(window, db, monkeypatch):
    """Edit A, move to B, a colleague saves A, Ctrl+Z: A comes back and the undo asks instead of
    deleting the colleague's labels (the poll never saw their save)."""
    first = window.session.view.clip.id
    window.session.set_cells("audio", [(0, 0)], 1)
    window.review_action("next_clip")
    theirs = np.zeros((25, 10), np.uint8)
    theirs[5, 5] = 1
    LabelStore(open_database(db)).save_track(first, "audio", "manual", theirs, 1, "bob")
    asked: list = []
    window.session.conflict.connect(asked.append)
    monkeypatch.setattr(ConflictDialog, "exec", lambda dialog: ConflictDialog.DialogCode.Rejected)
    window.actions["undo"].trigger()
    QTest.qWait(20)
    assert window.session.view.clip.id == first and asked and "bob" in asked[0].message
    np.testing.assert_array_equal(grid_of(db, first, "audio"), theirs)


def test_undoing_an_accept_lists_the_clip_again_while_it_is_on_screen(window):
    clip = window.session.view.clip.id
    window.review_action("accept")
    QTest.qWait(1)
    assert clip not in window.queue.visible_clip_ids()
    window.actions["undo"].trigger()
    assert window.session.view.clip.id == clip and window.queue.current_clip_id() == clip
    window.review_action("next_clip")  # moving on: the list is the filter's again
    QTest.qWait(1)
    assert window.session.view.clip.id != clip


def test_a_loop_ends_with_its_clip(window):
    window.keys.move_segment(1, False)
    press(window, Qt.Key.Key_L)
    assert window.player.looping()
    window.review_action("next_clip")
    assert not window.player.looping() and window.player.clock.range is None
    assert not window.player.loop_button.isChecked()


def test_a_list_refilled_after_it_was_finished_opens_its_first_clip(window):
    from annotation.queue import QueueFilter

    for _ in range(len(window.queue.visible_clip_ids())):
        window.review_action("accept")
        QTest.qWait(1)
    assert window.session.view is None
    window.queue.set_filter(QueueFilter(statuses=None))
    assert window.session.view is not None and window.session.view.clip.id == window.queue.visible_clip_ids()[0]


def test_a_colleagues_save_keeps_my_selection(window, db, qtbot):
    clip = window.session.view.clip
    window.keys.move_segment(1, False)
    window.keys.move_segment(1, True)
    selection = window.timelines.timeline("audio").selection()
    LabelStore(open_database(db)).save_track(clip.id, "visual", "manual", np.ones((25, 10), np.uint8), 0, "bob")
    poll_now(qtbot, window)
    assert window.timelines.timeline("visual").current().all()
    assert window.timelines.timeline("audio").selection() == selection
