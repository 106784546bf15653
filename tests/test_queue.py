"""The review queue (annotation/queue.py): filters, sorts, refresh after edits, progress. No Qt."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from annotation.db import open_database
from annotation.grid import pack, unpack
from annotation.importer import import_llp
from annotation.queue import DEFAULT_FILTER, QueueFilter, QueueProgress, ReviewQueue, unpack_many
from annotation.store import LabelStore
from annotation.taxonomy import CLASSES, NUM_CLASSES
from tests.llp_fixtures import WEAK_FILES, make_llp_dir, write_lines

ANY = QueueFilter(split=None, statuses=None, empty_visual=None)


def make_synthetic_llp(root: Path, clips: int = 200, seed: int = 1) -> Path:
    """An LLP folder of `clips` clips: 60/20/20 train/val/test, 1-3 weak classes,
    CLAP/CLIP pseudo-labels on the weak classes (~15% empty visual), a few files missing."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    splits = {"train": [], "val": [], "test": []}
    for sub in ("CLIP/segment_pseudo_labels", "CLAP/segment_pseudo_labels"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(clips):
        vid = f"syn{i:08d}"  # 11 characters, like a YouTube id
        split = "train" if i % 5 < 3 else ("val" if i % 5 == 3 else "test")
        weak = sorted(rng.choice(NUM_CLASSES, size=rng.integers(1, 4), replace=False).tolist())
        splits[split].append((f"{vid}_{i % 50}_{i % 50 + 10}", ",".join(CLASSES[c] for c in weak)))
        for sub, p_empty, p_missing in (("CLIP", 0.15, 0.03), ("CLAP", 0.05, 0.03)):
            if rng.random() < p_missing:
                continue
            pseudo = np.zeros((10, NUM_CLASSES), dtype=np.int64)
            if rng.random() >= p_empty:
                pseudo[:, weak] = rng.random((10, len(weak))) < 0.5
            np.save(root / sub / "segment_pseudo_labels" / f"{vid}.npy", pseudo)
    for split, rows in splits.items():
        write_lines(root / WEAK_FILES[split], "filename\tevent_labels", rows)
    return root


@pytest.fixture
def small(tmp_path):
    engine = open_database(str(tmp_path / "small.sqlite"))
    import_llp(engine, make_llp_dir(tmp_path / "data"))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    engine = open_database(str(root / "syn.sqlite"))
    import_llp(engine, make_synthetic_llp(root / "data"))
    yield engine
    engine.dispose()


def direct_view(engine) -> dict[int, dict]:
    """Everything the queue computes, recomputed clip by clip through the LabelStore."""
    store = LabelStore(engine)
    out = {}
    for clip in store.clips():
        tracks = store.tracks(clip.id)
        audio, visual = tracks.get(("audio", "pseudo")), tracks.get(("visual", "pseudo"))
        dis = 0.0
        if audio is not None and visual is not None and clip.weak:
            cells = [(c, t) for c in clip.weak for t in range(10)]
            dis = float(sum(audio.grid[c, t] != visual.grid[c, t] for c, t in cells) / len(cells))
        out[clip.id] = dict(
            filename=clip.filename, split=clip.split, weak=clip.weak, status=store.review(clip.id).status,
            empty_visual=None if visual is None else not visual.grid.any(), disagreement=dis,
            has_manual=("audio", "manual") in tracks or ("visual", "manual") in tracks,
        )
    return out


def test_unpack_many_matches_unpack():
    rng = np.random.default_rng(0)
    grids = (rng.random((7, 25, 10)) < 0.3).astype(np.uint8)
    blobs = [pack(g) for g in grids]
    assert (unpack_many(blobs) == np.stack([unpack(b) for b in blobs])).all()
    assert unpack_many([]).shape == (0, 25, 10)
    with pytest.raises(ValueError):
        unpack_many([b"\x00" * 31])


def test_default_filter_is_the_empty_visual_pending_train_clips(small):
    queue = ReviewQueue().load(small)
    rows = queue.rows(DEFAULT_FILTER)
    assert [r.filename for r in rows] == ["aaaaaaaaaaa_0_10"]
    row = rows[0]
    assert row.split == "train" and row.status == "pending" and row.empty_visual is True
    assert row.weak == (0, 3) and row.weak_count == 2 and not row.has_manual
    assert row.annotator is None and row.reviewed_at is None
    assert len(queue.rows(ANY)) == 7 and queue.rows(None) == queue.rows(ANY) and len(queue) == 7


def test_rows_agree_with_a_direct_computation(synthetic):
    queue = ReviewQueue().load(synthetic)
    direct = direct_view(synthetic)
    rows = queue.rows(ANY)
    assert len(rows) == 200 == len(direct)
    for row in rows:
        want = direct[row.clip_id]
        got = dict(filename=row.filename, split=row.split, weak=row.weak, status=row.status,
                   empty_visual=row.empty_visual, disagreement=row.disagreement, has_manual=row.has_manual)
        assert got.pop("disagreement") == pytest.approx(want["disagreement"]), row
        assert got == {k: v for k, v in want.items() if k != "disagreement"}
        assert 0.0 <= row.disagreement <= 1.0 and row.weak_count == len(row.weak)
    expected = sorted(i for i, d in direct.items() if d["split"] == "train" and d["empty_visual"] is True)
    assert [r.clip_id for r in queue.rows()] == expected and len(expected) >= 5
    assert any(d["empty_visual"] is None for d in direct.values())  # missing files occur


@pytest.mark.parametrize(
    "flt, keep",
    [
        (QueueFilter(split="val", statuses=None, empty_visual=None), lambda d: d["split"] == "val"),
        (QueueFilter(split="all", statuses=None, empty_visual=None), lambda d: True),
        (QueueFilter(split=None, statuses=None, empty_visual=False), lambda d: d["empty_visual"] is False),
        (QueueFilter(split=None, statuses=None, empty_visual=True), lambda d: d["empty_visual"] is True),
        (QueueFilter(split=None, statuses=frozenset({"annotated"}), empty_visual=None), lambda d: False),
        (QueueFilter(split="test", statuses=None, empty_visual=None, class_index=0),
         lambda d: d["split"] == "test" and 0 in d["weak"]),
        (QueueFilter(split=None, statuses=None, empty_visual=None, text="SYN000001"),
         lambda d: "syn000001" in d["filename"]),
        (QueueFilter(split="train", statuses=frozenset({"pending"}), empty_visual=None, class_index=5, text="_1"),
         lambda d: d["split"] == "train" and 5 in d["weak"] and "_1" in d["filename"]),
    ],
)
def test_each_filter(synthetic, flt, keep):
    queue = ReviewQueue().load(synthetic)
    direct = direct_view(synthetic)
    assert [r.clip_id for r in queue.rows(flt)] == sorted(i for i, d in direct.items() if keep(d))


def test_filter_validates():
    with pytest.raises(ValueError):
        QueueFilter(statuses=frozenset({"done"}))
    with pytest.raises(ValueError):
        QueueFilter(class_index=25)
    assert QueueFilter(statuses={"skipped"}).statuses == frozenset({"skipped"})  # sets are frozen


def test_sorts(synthetic):
    queue = ReviewQueue().load(synthetic)
    direct = direct_view(synthetic)
    ids = sorted(direct)
    assert [r.clip_id for r in queue.rows(ANY, "id")] == ids
    assert [r.clip_id for r in queue.rows(ANY, "id", descending=True)] == ids[::-1]
    by_count = [r.clip_id for r in queue.rows(ANY, "weak_count", descending=True)]
    assert by_count == sorted(ids, key=lambda i: (-len(direct[i]["weak"]), i))
    by_dis = [r.clip_id for r in queue.rows(ANY, "disagreement", descending=True)]
    dis = {i: direct[i]["disagreement"] for i in ids}
    assert [dis[i] for i in by_dis] == pytest.approx(sorted(dis.values(), reverse=True))
    assert by_dis == sorted(ids, key=lambda i: (-queue.row(i).disagreement, i))  # ties by id
    ascending = [r.clip_id for r in queue.rows(ANY, "disagreement")]
    assert [dis[i] for i in ascending] == pytest.approx(sorted(dis.values()))
    with pytest.raises(ValueError):
        queue.rows(ANY, "name")


def test_refresh_clip_after_review_and_manual_edit(small):
    queue = ReviewQueue().load(small)
    store = LabelStore(small)
    clip = store.clip("aaaaaaaaaaa_0_10")
    store.set_review(clip.id, "annotated", "alice", expected_version=1)
    assert [r.filename for r in queue.rows()] == ["aaaaaaaaaaa_0_10"]  # not re-read yet
    row = queue.refresh_clip(small, clip.id)
    assert row.status == "annotated" and row.annotator == "alice" and row.reviewed_at.tzinfo is not None
    assert queue.rows() == []
    assert [r.clip_id for r in queue.rows(replace(DEFAULT_FILTER, statuses=frozenset({"annotated"})))] == [clip.id]

    grid = np.zeros((25, 10), np.uint8)
    grid[3, 2:5] = 1
    store.save_track(clip.id, "visual", "manual", grid, 0, "alice")
    assert queue.refresh_clip(small, clip.id).has_manual
    store.save_track(clip.id, "visual", "pseudo", grid, 1, "import")  # a re-labelled pseudo track
    row = queue.refresh_clip(small, clip.id)
    assert row.empty_visual is False and row.disagreement == pytest.approx(direct_view(small)[clip.id]["disagreement"])
    with pytest.raises(KeyError):
        queue.refresh_clip(small, 99999)


def test_progress_counts_and_pace(synthetic, tmp_path):
    queue = ReviewQueue().load(synthetic)
    scope = [r.clip_id for r in queue.rows()]
    start = queue.progress()
    assert (start.reviewed, start.total, start.per_hour, start.recent) == (0, len(scope), None, 0)
    assert start.eta_seconds is None and start.summary() == f"0 / {len(scope)} reviewed"

    # fake review stamps: 4 clips by alice 10 minutes apart, one by bob, one long ago
    now = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)
    stamps = [(scope[0], "alice", 40), (scope[1], "alice", 30), (scope[2], "alice", 20), (scope[3], "alice", 10),
              (scope[4], "bob", 5), (scope[5], "alice", 300)]
    for clip_id, who, minutes_ago in stamps:
        pos = queue.position_of(clip_id)
        queue._status[pos] = queue._status_names.index("annotated")
        queue._annotator[pos] = who
        queue._reviewed_ts[pos] = (now - timedelta(minutes=minutes_ago)).timestamp()
    p = queue.progress(annotator="alice", now=now)
    assert (p.reviewed, p.total, p.recent) == (6, len(scope), 4)
    assert p.per_hour == pytest.approx(3 / 30 * 60)  # 3 intervals in 30 minutes -> 6 clips/h
    assert p.eta_seconds == pytest.approx((len(scope) - 6) / 6 * 3600)
    session = queue.progress(annotator="alice", now=now, since=now - timedelta(minutes=45))
    assert session.per_hour == pytest.approx(4 / 45 * 60)
    anyone = queue.progress(now=now, since=now - timedelta(minutes=45))
    assert anyone.recent == 5
    whole = queue.progress(QueueFilter(split=None, statuses=frozenset({"pending"}), empty_visual=None))
    assert whole.total == 200 and whole.reviewed == 6  # the status condition is ignored


def test_progress_summary_text():
    p = QueueProgress(reviewed=12, total=40, per_hour=35.0, recent=5)
    assert p.summary() == "12 / 40 reviewed · 35 clips/h · ~48 min left"
    assert QueueProgress(10, 100, 6.0, 3).summary().endswith("~15 h 00 min left")
    assert QueueProgress(40, 40, None, 0).summary() == "40 / 40 reviewed · done"
    assert QueueProgress(0, 0, None, 0).fraction == 1.0


def test_load_on_any_database(any_db_url, tmp_path):
    engine = open_database(any_db_url)
    import_llp(engine, make_llp_dir(tmp_path / "data"))
    queue = ReviewQueue().load(engine)
    assert [r.filename for r in queue.rows()] == ["aaaaaaaaaaa_0_10"]
    clip_id = queue.rows()[0].clip_id
    LabelStore(engine).set_review(clip_id, "out_of_taxonomy", "bob", 1)
    assert queue.refresh_clip(engine, clip_id).status == "out_of_taxonomy"
    assert queue.progress(annotator="bob", since=datetime.now(timezone.utc) - timedelta(minutes=1)).recent == 1
    engine.dispose()
