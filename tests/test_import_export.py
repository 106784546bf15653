from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event, select

from annotation.db import open_database
from annotation.errors import DataFileError
from annotation.exporter import export_labels
from annotation.importer import import_llp
from annotation.llp_csv import dense_grids, read_dense_csv, read_weak_csv
from annotation.models import Base
from annotation.stats import dataset_stats
from annotation.store import LabelStore
from tests.llp_fixtures import make_llp_dir, write_lines


def dump(engine) -> dict:
    """Every row of every table: the 'database unchanged' check."""
    with engine.connect() as conn:
        return {
            name: sorted(tuple(map(repr, row)) for row in conn.execute(select(table)))
            for name, table in Base.metadata.tables.items()
        }


@pytest.fixture
def engine(tmp_path):
    return open_database(str(tmp_path / "store.sqlite"))


def test_real_llp_import_counts(llp_dir, engine):
    report = import_llp(engine, llp_dir)
    assert report.clips == {"train": 10000, "val": 649, "test": 1200}
    stats = dataset_stats(engine)
    assert stats["clips"] == {"train": 10000, "val": 649, "test": 1200}
    assert stats["review"]["pending"] == 11849
    assert stats["tracks"]["truth"] == {"audio": 1849, "visual": 1849}
    assert report.orphan_rows == {"audio": 14, "visual": 11}
    store = LabelStore(engine)
    test_ids = [c.id for c in store.clips("test")]
    audio = np.stack([store.track(i, "audio", "truth").grid for i in test_ids])
    visual = np.stack([store.track(i, "visual", "truth").grid for i in test_ids])
    assert (audio.sum(), visual.sum(), (audio & visual).sum()) == (14576, 11789, 9592)
    assert int((audio.sum(axis=(1, 2)) == 0).sum()) == 6  # 5 without rows + 1 degenerate-only
    assert int((visual.sum(axis=(1, 2)) == 0).sum()) == 121
    decimal = store.clip("AP0061o0Nvk_101.8_111.8")
    assert decimal.video_id == "AP0061o0Nvk" and decimal.split == "train"


def test_reimport_is_idempotent(tmp_path, engine):
    data = make_llp_dir(tmp_path / "data")
    import_llp(engine, data)
    before = dump(engine)
    report = import_llp(engine, data)
    assert report.clips_added == report.clips_updated == report.tracks_added == report.tracks_updated == 0
    assert dump(engine) == before


def test_import_quirks_reproduced(tmp_path, engine):
    data = make_llp_dir(tmp_path / "data")
    report = import_llp(engine, data)
    store = LabelStore(engine)
    d = store.clip("ddddddddddd_0_10")
    assert store.track(d.id, "audio", "truth").grid[0].tolist() == [1] * 6 + [0] * 4
    e = store.clip("eeeeeeeeeee_30_40")
    grid = store.track(e.id, "audio", "truth").grid
    assert grid[10].sum() == 0 and grid[24].tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
    f = store.clip("fffffffffff_0_10")
    assert store.track(f.id, "audio", "truth").grid[4, 3] == 1  # Cat: outside the weak label, kept
    g = store.clip("ggggggggggg_20_30")
    assert store.track(g.id, "audio", "truth").exists and store.track(g.id, "audio", "truth").grid.sum() == 0
    assert not store.track(store.clip("aaaaaaaaaaa_0_10").id, "audio", "truth").exists  # train: no truth
    assert report.orphan_rows["audio"] == 1
    b = store.clip("b_b-b_b-b_b_5_15")
    assert b.video_id == "b_b-b_b-b_b"
    assert dataset_stats(engine)["empty_visual_pseudo"]["train"] == 1


def _bad_cases():
    def weak_unknown_class(d: Path):
        write_lines(d / "AVVP_train.csv", "filename\tevent_labels", [("aaaaaaaaaaa_0_10", "Speech,Dogg")])
        return "AVVP_train.csv", "line 2", "unknown class 'Dogg'"

    def dense_missing_column(d: Path):
        (d / "AVVP_eval_visual.csv").write_text("filename\tonset\toffset\tevent_labels\nddddddddddd_0_10\t1\tSpeech\n")
        return "AVVP_eval_visual.csv", "line 2", "3 column(s)"

    def dense_bad_header(d: Path):
        (d / "AVVP_eval_audio.csv").write_text("filename\tonset\tevent_labels\n")
        return "AVVP_eval_audio.csv", "line 1", "expected the TAB-separated columns"

    def onset_out_of_range(d: Path):
        write_lines(d / "AVVP_eval_audio.csv", "filename\tonset\toffset\tevent_labels",
                    [("ddddddddddd_0_10", 0, 4, "Speech"), ("ddddddddddd_0_10", 11, 12, "Speech")])
        return "AVVP_eval_audio.csv", "line 3", "onset 11 outside 0..10"

    def offset_not_integer(d: Path):
        write_lines(d / "AVVP_eval_audio.csv", "filename\tonset\toffset\tevent_labels", [("ddddddddddd_0_10", 0, "4.5", "Speech")])
        return "AVVP_eval_audio.csv", "line 2", "offset '4.5' is not an integer"

    def npy_wrong_shape(d: Path):
        np.save(d / "CLAP/segment_pseudo_labels/fffffffffff.npy", np.zeros((25, 10), dtype=np.int64))
        return "fffffffffff.npy", "clip fffffffffff_0_10", "shape (25, 10); expected (10, 25)"

    def npy_wrong_dtype(d: Path):
        np.save(d / "CLIP/segment_pseudo_labels/ddddddddddd.npy", np.zeros((10, 25), dtype=np.float32))
        return "ddddddddddd.npy", "clip ddddddddddd_0_10", "dtype float32"

    def npy_not_binary(d: Path):
        np.save(d / "CLIP/segment_pseudo_labels/ddddddddddd.npy", np.full((10, 25), 2, dtype=np.int64))
        return "ddddddddddd.npy", "clip ddddddddddd_0_10", "values outside 0/1"

    def npy_garbage(d: Path):
        (d / "CLIP/segment_pseudo_labels/ddddddddddd.npy").write_bytes(b"not numpy")
        return "ddddddddddd.npy", "clip ddddddddddd_0_10", "not a .npy file (no NumPy header)"

    def npy_truncated(d: Path):
        path = d / "CLIP/segment_pseudo_labels/ddddddddddd.npy"
        path.write_bytes(path.read_bytes()[:100])
        return "ddddddddddd.npy", "clip ddddddddddd_0_10", "not a readable .npy"

    def duplicate_other_labels(d: Path):
        write_lines(d / "AVVP_test_pd.csv", "filename\tevent_labels",
                    [("fffffffffff_0_10", "Dog"), ("fffffffffff_0_10", "Cat")])
        return "AVVP_test_pd.csv", "line 3", "duplicate clip with other labels"

    def duplicate_across_splits(d: Path):
        write_lines(d / "AVVP_test_pd.csv", "filename\tevent_labels", [("aaaaaaaaaaa_0_10", "Speech,Dog")])
        return "AVVP_test_pd.csv", "line 2", "AVVP_train.csv line 2"

    def bad_filename(d: Path):
        write_lines(d / "AVVP_val_pd.csv", "filename\tevent_labels", [("short_0_10", "Speech")])
        return "AVVP_val_pd.csv", "line 2", "11-char"

    return [weak_unknown_class, dense_missing_column, dense_bad_header, onset_out_of_range, offset_not_integer,
            npy_wrong_shape, npy_wrong_dtype, npy_not_binary, npy_garbage, npy_truncated, duplicate_other_labels,
            duplicate_across_splits, bad_filename]


@pytest.mark.parametrize("corrupt", _bad_cases(), ids=lambda f: f.__name__)
def test_bad_input_aborts_and_leaves_database_unchanged(tmp_path, engine, corrupt):
    good = make_llp_dir(tmp_path / "good")
    import_llp(engine, good)
    store = LabelStore(engine)
    clip = store.clip("ddddddddddd_0_10")
    store.save_track(clip.id, "visual", "manual", np.ones((25, 10), np.uint8), 0, "ann")
    before = dump(engine)

    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    # make the bad folder otherwise different, so a partial write would show
    np.save(bad / "CLAP/segment_pseudo_labels/ggggggggggg.npy", np.ones((10, 25), dtype=np.int64))
    filename, where, what = corrupt(bad)
    with pytest.raises(DataFileError) as info:
        import_llp(engine, bad)
    message = str(info.value)
    assert filename in message and where in message and what in message, message
    assert dump(engine) == before


def test_missing_everything_is_a_clear_error(tmp_path, engine):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFileError, match="no weak-label file found"):
        import_llp(engine, tmp_path / "empty")
    with pytest.raises(DataFileError, match="not a directory"):
        import_llp(engine, tmp_path / "nope")


def test_absent_parts_are_simply_not_imported(tmp_path, engine):
    data = make_llp_dir(tmp_path / "data", pseudo=False)
    (data / "AVVP_eval_visual.csv").unlink()
    (data / "AVVP_train.csv").unlink()
    report = import_llp(engine, data)
    assert report.clips == {"val": 2, "test": 2}
    assert set(dataset_stats(engine)["tracks"]) == {"truth"}
    assert dataset_stats(engine)["tracks"]["truth"] == {"audio": 4}


def test_reimport_updates_pseudo_but_keeps_manual(tmp_path, engine):
    data = make_llp_dir(tmp_path / "data")
    import_llp(engine, data)
    store = LabelStore(engine)
    clip = store.clip("aaaaaaaaaaa_0_10")
    store.save_track(clip.id, "visual", "manual", np.eye(25, 10, dtype=np.uint8), 0, "ann")
    np.save(data / "CLIP/segment_pseudo_labels/aaaaaaaaaaa.npy", np.ones((10, 25), dtype=np.int64))
    report = import_llp(engine, data)
    assert report.tracks_updated == 1
    assert store.track(clip.id, "visual", "pseudo").version == 2
    assert store.track(clip.id, "visual", "pseudo").grid.sum() == 250
    manual = store.track(clip.id, "visual", "manual")
    assert manual.version == 1 and (manual.grid == np.eye(25, 10, dtype=np.uint8)).all()


def _reimport_dir(export: Path, source: Path, dest: Path) -> Path:
    """An LLP folder made of the exported dense CSVs (as truth) and the original weak CSVs."""
    dest.mkdir()
    for name in ("AVVP_train.csv", "AVVP_val_pd.csv", "AVVP_test_pd.csv"):
        shutil.copy(source / name, dest / name)
    shutil.copy(export / "audio.csv", dest / "AVVP_eval_audio.csv")
    shutil.copy(export / "visual.csv", dest / "AVVP_eval_visual.csv")
    return dest


def test_export_truth_reimports_identically_real(llp_dir, tmp_path, engine):
    import_llp(engine, llp_dir)
    out = tmp_path / "out"
    report = export_labels(engine, out, source="truth", split="all")
    assert report.exported == {"audio": 1849, "visual": 1849}
    assert (out / "CLAP/segment_pseudo_labels").is_dir()
    other = open_database(str(tmp_path / "other.sqlite"))
    import_llp(other, _reimport_dir(out, llp_dir, tmp_path / "again"))
    for split in ("val", "test"):
        names = [r.filename for r in read_weak_csv(llp_dir / ("AVVP_val_pd.csv" if split == "val" else "AVVP_test_pd.csv"))]
        for track, dense in (("audio", "AVVP_eval_audio.csv"), ("visual", "AVVP_eval_visual.csv")):
            original = dense_grids(read_dense_csv(llp_dir / dense), names)
            exported = dense_grids(read_dense_csv(out / f"{track}.csv"), names)
            assert (original == exported).all()
    a, b = LabelStore(engine), LabelStore(other)
    for clip in a.clips("test")[:200]:
        other_clip = b.clip(clip.filename)
        for track in ("audio", "visual"):
            assert (a.track(clip.id, track, "truth").grid == b.track(other_clip.id, track, "truth").grid).all()


def test_export_layout_best_and_status(tmp_path, engine):
    data = make_llp_dir(tmp_path / "data")
    import_llp(engine, data)
    store = LabelStore(engine)
    clip = store.clip("aaaaaaaaaaa_0_10")
    manual = np.zeros((25, 10), np.uint8)
    manual[3, 2:5] = 1
    store.save_track(clip.id, "visual", "manual", manual, 0, "alice")
    store.set_review(clip.id, "annotated", "alice", store.review(clip.id).version)
    out = tmp_path / "out"
    report = export_labels(engine, out, source="best", split="train")
    assert report.clips == 3 and report.exported == {"audio": 3, "visual": 3}
    arr = np.load(out / "CLIP/segment_pseudo_labels/aaaaaaaaaaa.npy")
    assert arr.shape == (10, 25) and arr.dtype == np.int64 and (arr.T == manual).all()
    pseudo_b = np.load(data / "CLIP/segment_pseudo_labels/b_b-b_b-b_b.npy")
    assert (np.load(out / "CLIP/segment_pseudo_labels/b_b-b_b-b_b.npy") == pseudo_b).all()
    assert (out / "visual.csv").read_text().splitlines()[:2] == [
        "filename\tonset\toffset\tevent_labels", "aaaaaaaaaaa_0_10\t2\t5\tDog"]
    status = (out / "status.csv").read_text().splitlines()
    assert status[0] == "filename\tstatus\tannotator\ttime"
    assert status[1].startswith("aaaaaaaaaaa_0_10\tannotated\talice\t20")
    assert status[2] == "b_b-b_b-b_b_5_15\tpending\t\t"
    assert (out / "AVVP_train.csv").read_text().splitlines()[1] == "aaaaaaaaaaa_0_10\tSpeech,Dog"
    assert not (out / "AVVP_test_pd.csv").exists()


def test_export_reads_one_snapshot_while_annotators_save(tmp_path, any_db_url):
    # an edit and a review committed by another connection between the export's queries
    # (after it read the clips, before the tracks) must not show up in it: one moment's state
    engine = open_database(any_db_url)
    import_llp(engine, make_llp_dir(tmp_path / "data"))
    other = LabelStore(open_database(any_db_url))
    clip = other.clip("aaaaaaaaaaa_0_10")
    before = other.best(clip.id, "visual").grid.copy()
    edited = np.zeros((25, 10), np.uint8)
    edited[7, :] = 1
    fired = []

    def edit_once(conn, clause, *args):
        if not fired and "FROM clips" in str(clause):
            fired.append(True)
            other.save_track(clip.id, "visual", "manual", edited, 0, "bob")
            other.set_review(clip.id, "annotated", "bob", other.review(clip.id).version)

    event.listen(engine, "after_execute", edit_once)
    try:
        export_labels(engine, tmp_path / "out", source="best", split="train")
    finally:
        event.remove(engine, "after_execute", edit_once)
    assert fired
    exported = np.load(tmp_path / "out/CLIP/segment_pseudo_labels/aaaaaaaaaaa.npy").T
    assert (exported == before).all() and not (exported == edited).all()
    assert (tmp_path / "out/status.csv").read_text().splitlines()[1] == "aaaaaaaaaaa_0_10\tpending\t\t"
    export_labels(engine, tmp_path / "again", source="best", split="train")  # the next export sees the edit
    assert (np.load(tmp_path / "again/CLIP/segment_pseudo_labels/aaaaaaaaaaa.npy").T == edited).all()


def test_import_holds_the_write_lock_from_its_first_read(tmp_path, engine):
    # SQLite: an import compares with what is stored, then writes; no other writer may slip in
    # between (BEGIN IMMEDIATE), while readers go on
    import sqlite3

    attempts = []

    def write_meanwhile(conn, clause, *args):
        if not attempts and "FROM clips" in str(clause):
            other = sqlite3.connect(engine.url.database, timeout=0.05)
            try:
                other.execute("SELECT count(*) FROM clips").fetchone()  # reading is fine
                other.execute("UPDATE reviews SET note = 'x'")
                attempts.append("wrote")
            except sqlite3.OperationalError as exc:
                attempts.append(str(exc))
            finally:
                other.close()

    event.listen(engine, "after_execute", write_meanwhile)
    try:
        import_llp(engine, make_llp_dir(tmp_path / "data"))
    finally:
        event.remove(engine, "after_execute", write_meanwhile)
    assert attempts == ["database is locked"]
    assert dataset_stats(engine)["clips"]["train"] == 3  # and the import itself went through


def test_export_rejects_bad_source(tmp_path, engine):
    with pytest.raises(ValueError, match="unknown label source"):
        export_labels(engine, tmp_path / "o", source="handmade")
    with pytest.raises(ValueError, match="unknown split"):
        export_labels(engine, tmp_path / "o", split="dev")


def test_truth_rows_for_a_train_clip_do_not_invent_truth_for_the_whole_split(tmp_path, engine):
    data = make_llp_dir(tmp_path / "data")
    with open(data / "AVVP_eval_audio.csv", "a") as handle:
        handle.write("aaaaaaaaaaa_0_10\t0\t3\tSpeech\n")
    import_llp(engine, data)
    store = LabelStore(engine)
    assert store.track(store.clip("aaaaaaaaaaa_0_10").id, "audio", "truth").grid[0, :3].sum() == 3
    assert not store.track(store.clip("b_b-b_b-b_b_5_15").id, "audio", "truth").exists
    assert dataset_stats(engine)["tracks"]["truth"]["audio"] == 5  # 4 val/test + the named train clip


def test_video_id_clash_across_imports_is_refused(tmp_path, engine):
    import_llp(engine, make_llp_dir(tmp_path / "one"))
    other = tmp_path / "two"
    other.mkdir()
    write_lines(other / "AVVP_train.csv", "filename\tevent_labels", [("aaaaaaaaaaa_50_60", "Dog")])
    before = dump(engine)
    with pytest.raises(DataFileError, match="already used by stored clip aaaaaaaaaaa_0_10"):
        import_llp(engine, other)
    assert dump(engine) == before


def test_non_utf8_line_is_named_exactly(tmp_path, engine):
    data = make_llp_dir(tmp_path / "data", pseudo=False)
    lines = ["filename\tevent_labels"] + [f"{i:011d}_0_10\tSpeech" for i in range(900)]
    raw = ("\n".join(lines) + "\n").encode().replace(b"00000000799_0_10\tSpeech", b"00000000799_0_10\tSp\xe9ech")
    (data / "AVVP_train.csv").write_bytes(raw)
    with pytest.raises(DataFileError, match="line 801: not UTF-8"):
        import_llp(engine, data)


def test_export_refuses_absent_sources_and_foreign_folders(tmp_path, engine):
    from annotation.exporter import ExportError

    import_llp(engine, make_llp_dir(tmp_path / "data"))
    with pytest.raises(ExportError, match="no 'prediction:nope' labels in this database; available: best, pseudo, truth"):
        export_labels(engine, tmp_path / "a", source="prediction:nope")
    assert not (tmp_path / "a").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(ExportError, match="not empty"):
        export_labels(engine, foreign, source="pseudo")
    assert (foreign / "thesis.tex").read_text() == "keep me"


def test_export_into_an_earlier_export_replaces_it_and_files_are_readable(tmp_path, engine):
    import os
    import stat

    import_llp(engine, make_llp_dir(tmp_path / "data"))
    out = tmp_path / "out"
    export_labels(engine, out, source="pseudo", split="all")
    assert len(list((out / "CLIP/segment_pseudo_labels").glob("*.npy"))) == 7
    export_labels(engine, out, source="pseudo", split="test")
    assert len(list((out / "CLIP/segment_pseudo_labels").glob("*.npy"))) == 2
    assert not (out / "AVVP_train.csv").exists()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((out / "audio.csv").stat().st_mode) == 0o666 & ~umask
