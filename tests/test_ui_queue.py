"""The review-queue dock (ui/queue_dock.py), offscreen with pytest-qt."""
from __future__ import annotations

from dataclasses import replace

import pytest
from PySide6.QtCore import Qt

from annotation.db import open_database
from annotation.importer import import_llp
from annotation.queue import DEFAULT_FILTER, QueueFilter, ReviewQueue
from annotation.store import LabelStore
from tests.test_queue import make_synthetic_llp
from ui.queue_dock import CLIP, STATUS, WEAK, QueueDock

ANY = QueueFilter(split=None, statuses=None, empty_visual=None)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    root = tmp_path_factory.mktemp("uiqueue")
    engine = open_database(str(root / "q.sqlite"))
    import_llp(engine, make_synthetic_llp(root / "data", clips=120, seed=3))
    yield engine
    engine.dispose()


@pytest.fixture
def dock(qtbot, db):
    widget = QueueDock()
    qtbot.addWidget(widget)
    widget.set_queue(ReviewQueue().load(db))
    widget.resize(520, 600)
    widget.show()
    return widget


def cell(dock: QueueDock, row: int, col: int):
    return dock.model.data(dock.model.index(row, col))


def test_lists_the_default_queue(dock, db):
    expected = [r.clip_id for r in ReviewQueue().load(db).rows(DEFAULT_FILTER)]
    assert expected and dock.visible_clip_ids() == expected
    assert dock.windowTitle() == "Review queue" and dock.filter() == DEFAULT_FILTER
    assert cell(dock, 0, STATUS) == "pending" and cell(dock, 0, CLIP).startswith("syn")
    assert dock.count_label.text() == f"{len(expected)} clips"
    assert dock.progress_label.text() == f"0 / {len(expected)} reviewed"
    assert dock.current_clip_id() is None


def test_filter_controls_update_rows(dock, qtbot):
    queue = dock._queue
    with qtbot.waitSignal(dock.filter_changed):
        dock.split_combo.setCurrentIndex(3)  # all splits
    assert dock.filter().split is None
    assert dock.visible_clip_ids() == [r.clip_id for r in queue.rows(replace(DEFAULT_FILTER, split=None))]
    dock.empty_check.setChecked(False)
    dock.status_combo.setCurrentIndex(4)  # any status
    assert dock.visible_clip_ids() == [r.clip_id for r in queue.rows(ANY)]
    dock.class_combo.setCurrentIndex(1 + 11)  # Singing
    want = [r.clip_id for r in queue.rows(replace(ANY, class_index=11))]
    assert want and dock.visible_clip_ids() == want
    assert all("Singing" in cell(dock, r, WEAK) for r in range(dock.model.rowCount()))
    dock.class_combo.setCurrentIndex(0)
    dock.set_sort("disagreement", descending=True)
    assert dock.visible_clip_ids() == [r.clip_id for r in queue.rows(ANY, "disagreement", True)]
    assert dock.sort() == ("disagreement", True)


def test_search_filters_after_the_debounce(dock, qtbot):
    dock.set_filter(ANY)
    qtbot.keyClicks(dock.search_edit, "SYN0000001")
    assert dock.model.rowCount() == 120  # not yet: debounced
    qtbot.waitUntil(lambda: dock.model.rowCount() == 10, timeout=2000)  # syn00000010 .. syn00000019
    assert dock.filter().text == "SYN0000001"
    assert all("syn0000001" in cell(dock, r, CLIP) for r in range(10))


def test_set_filter_round_trips_through_the_controls(dock):
    odd = QueueFilter(split="val", statuses=frozenset({"annotated", "skipped"}), empty_visual=False,
                      class_index=3, text="_1")
    dock.set_filter(odd)
    assert dock.filter() == odd
    assert dock.empty_check.checkState() == Qt.CheckState.PartiallyChecked
    assert dock.status_combo.currentText() == "annotated, skipped"
    dock.split_combo.setCurrentIndex(1)  # the user edits one control; the rest of the filter stays
    assert dock.filter() == replace(odd, split="val")
    dock.set_filter(DEFAULT_FILTER)
    assert dock.status_combo.count() == 5 and dock.filter() == DEFAULT_FILTER
    assert not dock.empty_check.isTristate()


def test_next_previous_and_arrow_keys_activate_clips(dock, qtbot):
    ids = dock.visible_clip_ids()
    seen: list[int] = []
    dock.clip_activated.connect(seen.append)
    assert dock.select_previous() == ids[-1]
    assert dock.select_next() is None  # at the end
    assert dock.select_clip(ids[0])
    assert dock.select_previous() is None
    assert dock.select_next() == ids[1] and dock.select_next() == ids[2]
    assert dock.current_clip_id() == ids[2]
    assert dock.next_clip_id() == ids[3] and dock.previous_clip_id(ids[2]) == ids[1]
    assert dock.next_clip_id(ids[-1]) is None and dock.current_clip_id() == ids[2]  # peeking selects nothing
    dock.view.setFocus()
    qtbot.keyClick(dock.view, Qt.Key.Key_Down)
    qtbot.keyClick(dock.view, Qt.Key.Key_Up)
    qtbot.keyClick(dock.view, Qt.Key.Key_Up)
    assert seen == [ids[-1], ids[0], ids[1], ids[2], ids[3], ids[2], ids[1]]
    assert not dock.select_clip(-5)


def test_update_clip_keeps_the_row_and_the_selection(dock, db, qtbot):
    ids = dock.visible_clip_ids()
    dock.select_clip(ids[1])
    store = LabelStore(db)
    review = store.review(ids[1])
    store.set_review(ids[1], "annotated", "alice", review.version)
    dock.set_annotator("alice")
    with qtbot.assertNotEmitted(dock.clip_activated):
        dock.update_clip(db, ids[1])
    assert dock.current_clip_id() == ids[1] and dock.visible_clip_ids() == ids
    assert cell(dock, 1, STATUS) == "annotated"
    assert dock.progress_label.text().startswith(f"1 / {len(ids)} reviewed · ")
    assert dock.progress_bar.value() == 1
    with qtbot.waitSignal(dock.clip_activated) as activated:
        dock.refresh()  # the reviewed clip leaves the pending queue; the first listed clip replaces it
    assert ids[1] not in dock.visible_clip_ids() and dock.current_clip_id() == ids[0] == activated.args[0]
    store.set_review(ids[1], "pending", "alice", review.version + 1)  # leave the module database as it was
    dock.update_clip(db, ids[1])


def test_a_reviewed_clip_leaves_the_list_when_the_annotator_moves_on(dock, db, qtbot):
    ids = dock.visible_clip_ids()
    dock.select_clip(ids[0])
    store = LabelStore(db)
    review = store.review(ids[0])
    store.set_review(ids[0], "annotated", "alice", review.version)
    dock.update_clip(db, ids[0])
    assert dock.visible_clip_ids() == ids  # still listed while on screen
    dock.select_clip(ids[1])
    qtbot.waitUntil(lambda: ids[0] not in dock.visible_clip_ids())
    assert dock.current_clip_id() == ids[1] and dock.count_label.text() == f"{len(ids) - 1} clips"
    store.set_review(ids[0], "pending", "alice", review.version + 1)  # leave the module database as it was
    dock.update_clip(db, ids[0])


def test_a_filter_that_drops_the_clip_on_screen_opens_the_first_listed_one_or_says_empty(dock, qtbot):
    ids = dock.visible_clip_ids()
    dock.select_clip(ids[-1])
    with qtbot.waitSignal(dock.clip_activated) as activated:
        dock.set_filter(replace(DEFAULT_FILTER, text=dock.model.data(dock.model.index(0, CLIP))))
    assert activated.args[0] == ids[0] == dock.current_clip_id()
    with qtbot.waitSignal(dock.emptied):
        dock.set_filter(replace(DEFAULT_FILTER, text="no such clip"))
    assert dock.visible_clip_ids() == []


def test_queue_controls_take_keys_only_when_clicked(dock):
    for widget in (dock.split_combo, dock.status_combo, dock.class_combo, dock.sort_combo, dock.empty_check,
                   dock.search_edit, dock.view):
        assert widget.focusPolicy() == Qt.FocusPolicy.ClickFocus
