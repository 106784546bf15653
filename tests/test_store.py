from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from annotation.db import open_database
from annotation.importer import import_llp
from annotation.models import Base
from annotation.store import ConflictError, LabelStore
from tests.llp_fixtures import make_llp_dir


@pytest.fixture
def store(any_db_url, tmp_path):
    engine = open_database(any_db_url)
    import_llp(engine, make_llp_dir(tmp_path / "data"))
    yield LabelStore(engine)
    engine.dispose()


def test_migrations_create_exactly_the_models(any_db_url):
    engine = open_database(any_db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_save_and_read_back_with_versions(store):
    clip = store.clip("aaaaaaaaaaa_0_10")
    assert store.track(clip.id, "visual", "manual").version == 0
    grid = np.zeros((25, 10), np.uint8)
    grid[3, :4] = 1
    first = store.save_track(clip.id, "visual", "manual", grid, 0, "alice")
    assert first.version == 1
    grid[3, 9] = 1
    second = store.save_track(clip.id, "visual", "manual", grid, 1, "alice")
    assert second.version == 2
    back = store.track(clip.id, "visual", "manual")
    assert back.version == 2 and (back.grid == grid).all() and back.updated_by == "alice"
    assert back.updated_at.tzinfo is not None
    kinds = [(e.kind, e.track, e.source, e.before is None) for e in store.history(clip.id)]
    assert kinds == [("cells", "visual", "manual", True), ("cells", "visual", "manual", False)]


def test_stale_write_is_refused_not_overwritten(store):
    clip = store.clip("ddddddddddd_0_10")
    mine, theirs = np.zeros((25, 10), np.uint8), np.ones((25, 10), np.uint8)
    store.save_track(clip.id, "audio", "manual", mine, 0, "alice")
    store.save_track(clip.id, "audio", "manual", theirs, 1, "bob")
    with pytest.raises(ConflictError) as info:
        store.save_track(clip.id, "audio", "manual", mine, 1, "alice")
    assert info.value.current.version == 2 and (info.value.current.grid == theirs).all()
    assert "bob" in str(info.value)
    assert (store.track(clip.id, "audio", "manual").grid == theirs).all()
    with pytest.raises(ConflictError):  # creating what already exists is a conflict too
        store.save_track(clip.id, "audio", "manual", mine, 0, "carol")


def test_concurrent_writers_exactly_one_wins(store):
    clip = store.clip("eeeeeeeeeee_30_40")
    store.save_track(clip.id, "visual", "manual", np.zeros((25, 10), np.uint8), 0, "seed")
    results: list[str] = []

    def write(i: int) -> None:
        grid = np.zeros((25, 10), np.uint8)
        grid[i, 0] = 1
        try:
            store.save_track(clip.id, "visual", "manual", grid, 1, f"w{i}")
            results.append("ok")
        except ConflictError:
            results.append("conflict")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 5 + ["ok"]
    final = store.track(clip.id, "visual", "manual")
    assert final.version == 2 and final.grid.sum() == 1


def test_review_status_and_conflict(store):
    clip = store.clip("b_b-b_b-b_b_5_15")
    review = store.review(clip.id)
    assert review.status == "pending" and review.version == 1
    done = store.set_review(clip.id, "out_of_taxonomy", "alice", review.version, note="cartoon")
    assert (done.status, done.version, done.note) == ("out_of_taxonomy", 2, "cartoon")
    with pytest.raises(ConflictError):
        store.set_review(clip.id, "annotated", "bob", review.version)
    with pytest.raises(ValueError, match="unknown review status"):
        store.set_review(clip.id, "finished", "bob", 2)
    assert store.history(clip.id)[-1].kind == "review"


def test_bad_arguments(store):
    clip = store.clip("aaaaaaaaaaa_0_10")
    with pytest.raises(ValueError, match="unknown track"):
        store.track(clip.id, "video", "manual")
    with pytest.raises(ValueError, match="unknown label source"):
        store.track(clip.id, "audio", "guess")
    with pytest.raises(ValueError, match="weak labels are video-level"):
        store.save_track(clip.id, "audio", "weak", np.zeros((25, 10), np.uint8), 0, "a")
    with pytest.raises(ValueError, match="shape"):
        store.save_track(clip.id, "audio", "manual", np.zeros((10, 25), np.uint8), 0, "a")
    assert store.track(clip.id, "audio", "weak").grid[[0, 3]].sum() == 20
    assert store.track(clip.id, "audio", "prediction:run-1").version == 0


def test_best_prefers_manual(store):
    clip = store.clip("aaaaaaaaaaa_0_10")
    pseudo = store.track(clip.id, "visual", "pseudo")
    assert (store.best(clip.id, "visual").grid == pseudo.grid).all()
    store.save_track(clip.id, "visual", "manual", np.ones((25, 10), np.uint8), 0, "a")
    assert store.best(clip.id, "visual").grid.sum() == 250


def test_edits_survive_a_killed_process(tmp_path):
    """A writer process is killed right after save_track returns; a new process finds the edit."""
    db = tmp_path / "kill.sqlite"
    engine = open_database(str(db))
    import_llp(engine, make_llp_dir(tmp_path / "data"))
    engine.dispose()
    script = (
        "import os, numpy as np\n"
        "from annotation.db import open_database\nfrom annotation.store import LabelStore\n"
        f"s = LabelStore(open_database({str(db)!r}))\n"
        "c = s.clip('fffffffffff_0_10')\n"
        "g = np.zeros((25, 10), np.uint8); g[5, 2:7] = 1\n"
        "s.save_track(c.id, 'audio', 'manual', g, 0, 'killed')\n"
        "print('saved', flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9 and "saved" in proc.stdout
    store = LabelStore(open_database(str(db)))
    back = store.track(store.clip("fffffffffff_0_10").id, "audio", "manual")
    assert back.version == 1 and back.grid[5].tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0, 0]


def test_delete_track_with_version_check(store):
    clip = store.clip("aaaaaaaaaaa_0_10")
    store.save_track(clip.id, "audio", "manual", np.ones((25, 10), np.uint8), 0, "a")
    with pytest.raises(ConflictError):
        store.delete_track(clip.id, "audio", "manual", 5, "a")
    store.delete_track(clip.id, "audio", "manual", 1, "a")
    assert not store.track(clip.id, "audio", "manual").exists
    assert store.history(clip.id)[-1].after is None
    with pytest.raises(ConflictError):
        store.delete_track(clip.id, "audio", "manual", 1, "a")


def test_versions_last_edit_presence_and_agreement_on_both_backends(store):
    """What the window polls for team use, on SQLite and PostgreSQL alike."""
    import time

    from annotation import presence
    from annotation.agreement import agreement

    clip = store.clips()[0].id
    before = store.versions(clip)
    grid = np.zeros((25, 10), np.uint8)
    grid[2, 1:4] = 1
    store.save_track(clip, "audio", "manual", grid, 0, "ann")
    after = store.versions(clip)
    assert after["audio/manual"] == 1 and "audio/manual" not in before and after["review"] == before["review"]
    assert store.last_edit(clip).annotator == "ann" and store.last_edit(clip).track == "audio"
    other = grid.copy()
    other[2, 4] = 1
    store.save_track(clip, "audio", "manual", other, 1, "bob")
    [report] = agreement(store.engine, ("audio",))
    assert report.annotators == ("ann", "bob") and report.clips == 1
    assert report.kappa["Cheering"] == pytest.approx((0.9 - 0.54) / 0.46)  # 3 vs 4 of 10 segments

    presence.heartbeat(store.engine, "s-ann", "ann", clip)
    presence.heartbeat(store.engine, "s-bob", "bob", clip)
    presence.heartbeat(store.engine, "s-bob", "bob", clip)  # an update, not a second row
    assert presence.others_on_clip(store.engine, clip, "s-ann") == ["bob"]
    time.sleep(0.3)
    assert presence.others_on_clip(store.engine, clip, "s-ann", stale=0.2) == []  # a silent window fades
    presence.leave(store.engine, "s-bob")
    assert presence.others_on_clip(store.engine, clip, "s-ann") == []


def test_opening_a_database_twice_keeps_the_first_connections_locks(tmp_path):
    """POSIX drops every lock a process holds on a file when any descriptor of it closes: a second
    open of a busy database must not read its header with a plain open(), or another process that
    closes its last connection takes itself for the last user, removes the -shm under ours and
    leaves our connection reading a malformed database."""
    url = str(tmp_path / "studio.sqlite")
    import_llp(open_database(url), make_llp_dir(tmp_path / "llp"))
    first = open_database(url)
    with first.connect() as conn:  # the pool keeps this connection (and its shared lock) open
        conn.exec_driver_sql("SELECT count(*) FROM clips").scalar()
    for readonly in (False, True):
        open_database(url, readonly=readonly)
        writer = ("from annotation.db import open_database\n"
                  "from annotation.store import LabelStore\n"
                  f"store = LabelStore(open_database({url!r}))\n"
                  "print(len(store.clips()))\n"
                  "store.engine.dispose()\n")
        subprocess.run([sys.executable, "-c", writer], check=True, timeout=120)
        assert (tmp_path / "studio.sqlite-shm").exists(), "the other process removed the -shm we still map"
        with first.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM clips").scalar() > 0
