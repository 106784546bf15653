"""Undoable, autosaved edits and conflict handling of the annotation session (Qt objects, no widgets)."""
from __future__ import annotations

import numpy as np
import pytest

from annotation.db import open_database
from annotation.importer import import_llp
from annotation.store import LabelStore
from tests.llp_fixtures import make_llp_dir
from ui.session import ClipSession


@pytest.fixture
def db(tmp_path):
    url = str(tmp_path / "s.sqlite")
    import_llp(open_database(url), make_llp_dir(tmp_path / "data"))
    return url


@pytest.fixture
def session(qapp, db):
    return ClipSession(LabelStore(open_database(db)), "alice")


def fresh(db) -> LabelStore:
    """Another connection, as a second process or annotator would have."""
    return LabelStore(open_database(db))


def flip(session: ClipSession, track: str, cls: int, seg: int) -> None:
    """An edit that surely changes something, whatever the random pseudo-label holds."""
    assert session.set_cells(track, [(cls, seg)], 1 - int(session.current(track)[cls, seg]))


def test_edit_is_committed_at_once_and_undo_redo_follow(session, db):
    clip = session.store.clip("aaaaaaaaaaa_0_10")
    view = session.open_clip(clip.id)
    pseudo = view.layers["visual"]["pseudo"].copy()
    assert pseudo.sum() == 0 and not view.edited["visual"]
    session.set_cells("visual", [(3, 0), (3, 1)], 1)
    stored = fresh(db).track(clip.id, "visual", "manual")
    assert stored.version == 1 and stored.grid[3, :2].tolist() == [1, 1] and stored.updated_by == "alice"
    session.apply_class("visual", 0, 5, 7)
    assert fresh(db).track(clip.id, "visual", "manual").grid[0, 5:8].sum() == 3
    session.undo_stack.undo()
    assert fresh(db).track(clip.id, "visual", "manual").grid[0].sum() == 0
    session.undo_stack.undo()  # back to unedited: the manual track is gone, pseudo shows again
    assert not fresh(db).track(clip.id, "visual", "manual").exists
    assert (session.current("visual") == pseudo).all() and not session.view.edited["visual"]
    session.undo_stack.redo()
    session.undo_stack.redo()
    assert fresh(db).track(clip.id, "visual", "manual").grid.sum() == 5
    assert [e.kind for e in fresh(db).history(clip.id)].count("cells") == 6
    assert session.last_commit_ms is not None


def test_copy_and_clear_track(session):
    clip = session.store.clip("ddddddddddd_0_10")
    session.open_clip(clip.id)
    audio = session.current("audio").copy()
    session.copy_track("audio", "visual")
    assert (session.current("visual") == audio).all()
    session.clear_track("audio")
    assert session.current("audio").sum() == 0
    assert not session.clear_track("audio")  # nothing changes: no command
    assert session.undo_stack.count() == 2


def test_review_actions_are_undoable(session, db):
    clip = session.store.clip("b_b-b_b-b_b_5_15")
    session.open_clip(clip.id)
    session.set_review("out_of_taxonomy", note="cartoon")
    review = fresh(db).review(clip.id)
    assert (review.status, review.note, review.annotator) == ("out_of_taxonomy", "cartoon", "alice")
    session.undo_stack.undo()
    assert fresh(db).review(clip.id).status == "pending"
    session.undo_stack.redo()
    assert fresh(db).review(clip.id).status == "out_of_taxonomy"


def test_concurrent_change_gives_a_conflict_not_an_overwrite(session, db):
    clip = session.store.clip("eeeeeeeeeee_30_40")
    session.open_clip(clip.id)
    conflicts = []
    session.conflict.connect(conflicts.append)
    flip(session, "audio", 10, 0)  # version 1
    other = fresh(db)
    theirs = np.zeros((25, 10), np.uint8)
    theirs[24, :] = 1
    other.save_track(clip.id, "audio", "manual", theirs, 1, "bob")  # version 2 by bob
    before_count = session.undo_stack.count()
    session.set_cells("audio", [(10, 1)], 1 - int(session.current("audio")[10, 1]))
    assert len(conflicts) == 1 and conflicts[0].theirs.version == 2 and "bob" in conflicts[0].message
    assert session.undo_stack.count() == before_count  # the refused edit is not on the stack
    assert (fresh(db).track(clip.id, "audio", "manual").grid == theirs).all()  # not overwritten

    session.resolve(conflicts[0], keep_mine=False)
    assert (session.current("audio") == theirs).all()
    session.set_cells("audio", [(0, 0)], 1)  # builds on theirs now
    assert fresh(db).track(clip.id, "audio", "manual").grid.sum() == 11


def test_keep_mine_after_conflict_is_an_explicit_new_version(session, db):
    clip = session.store.clip("fffffffffff_0_10")
    session.open_clip(clip.id)
    conflicts = []
    session.conflict.connect(conflicts.append)
    flip(session, "visual", 3, 3)
    fresh(db).save_track(clip.id, "visual", "manual", np.ones((25, 10), np.uint8), 1, "bob")
    session.set_cells("visual", [(3, 4)], 1 - int(session.current("visual")[3, 4]))
    mine = conflicts[0].mine
    session.resolve(conflicts[0], keep_mine=True)
    stored = fresh(db).track(clip.id, "visual", "manual")
    assert stored.version == 3 and (stored.grid == mine).all() and stored.updated_by == "alice"
    session.undo_stack.undo()  # undo of "keep mine" restores bob's version
    assert fresh(db).track(clip.id, "visual", "manual").grid.sum() == 250


def test_review_conflict(session, db):
    clip = session.store.clip("ggggggggggg_20_30")
    session.open_clip(clip.id)
    conflicts = []
    session.conflict.connect(conflicts.append)
    fresh(db).set_review(clip.id, "skipped", "bob", 1)
    session.set_review("annotated")
    assert conflicts and conflicts[0].track is None and conflicts[0].theirs.status == "skipped"
    assert fresh(db).review(clip.id).status == "skipped"
    session.resolve(conflicts[0], keep_mine=True)
    assert fresh(db).review(clip.id).status == "annotated"


def test_stored_predictions_are_a_layer_and_the_newest_run_wins(session):
    from annotation.importer import store_predictions

    clip = session.store.clip("fffffffffff_0_10")
    old, new = np.zeros((25, 10), np.uint8), np.zeros((25, 10), np.uint8)
    old[3, :2], new[3, 5:] = 1, 1
    store_predictions(session.store.engine, "run-a", {clip.filename: old}, {clip.filename: old})
    store_predictions(session.store.engine, "run-b", {clip.filename: new}, {clip.filename: new})
    view = session.open_clip(clip.id)
    assert view.prediction_source == "prediction:run-b"
    assert (view.layers["visual"]["prediction"] == new).all() and (view.layers["audio"]["prediction"] == new).all()
    with pytest.raises(Exception, match="not in the database"):
        store_predictions(session.store.engine, "run-c", {"zzzzzzzzzzz_0_10": new}, {"zzzzzzzzzzz_0_10": new})
