"""UnAV-100 import and dense-event folders: hand-worked label grids, LLP exclusion, errors, re-import."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from annotation.db import open_database
from annotation.demo import build_demo
from annotation.dense_events import DenseClip, label_path, load_event_labels, read_dense_events, write_dense_events
from annotation.errors import DataFileError
from annotation.importer import import_llp
from annotation.llp_csv import read_weak_csv
from annotation.npyfile import npy_bytes
from annotation.unav import (
    UNAV_CLASSES,
    UnavVideo,
    event_labels,
    import_unav,
    llp_heldout_ids,
    read_unav_json,
    segment_count,
)
from app.cli import run_cli

A, B, C = "aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc"


def ev(start: float, end: float, cid: int, label: str | None = None) -> dict:
    return {"segment": [start, end], "label": UNAV_CLASSES[cid] if label is None else label, "label_id": cid}


def sample_db() -> dict:
    return {
        A: {"duration": 6.3, "subset": "train", "annotations": [
            ev(1.4, 3.6, 12),   # segments 1, 2, 3 (0.6, 1.0, 0.6 of each)
            ev(0.0, 0.5, 0),    # segment 0: exactly half
            ev(0.6, 1.0, 36),   # 0.4 s: too short, marks its best segment 0
            ev(4.6, 5.4, 55),   # 0.4 + 0.4: a tie, marks the first (4)
            ev(6.0, 6.3, 0),    # in the 0.3-s tail that is no segment: marks nothing
            ev(2.49, 4.51, 0),  # 0.51, 1, 0.51: segments 2, 3, 4
        ]},
        B: {"duration": 10, "subset": "validation", "annotations": [ev(0, 10, 55)]},
        C: {"duration": 3.7, "subset": "Test", "annotations": []},
    }


def expected_a(keep_short: bool = True) -> np.ndarray:
    grid = np.zeros((6, 100), dtype=np.uint8)
    grid[[1, 2, 3], 12] = 1
    grid[[0, 2, 3, 4], 0] = 1
    if keep_short:
        grid[0, 36] = grid[4, 55] = 1
    return grid


def write_json(path: Path, database: dict, version: str = "unav100") -> Path:
    path.write_text(json.dumps({"version": version, "database": database}), encoding="utf-8")
    return path


def video_from(database: dict, vid: str) -> UnavVideo:
    entry = database[vid]
    return UnavVideo(vid, "train", float(entry["duration"]), tuple(e["segment"][0] for e in entry["annotations"]),
                     tuple(e["segment"][1] for e in entry["annotations"]),
                     tuple(e["label_id"] for e in entry["annotations"]))


@pytest.fixture
def inputs(tmp_path):
    """(annotations, videos folder): A as .mp4, B as .mkv only, C without a file."""
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / f"{A}.mp4").write_bytes(b"")  # the importer checks presence, never decodes
    (videos / f"{A}.webm").write_bytes(b"")
    (videos / f"{B}.mkv").write_bytes(b"")
    (videos / "notes.txt").write_text("x")
    return write_json(tmp_path / "unav.json", sample_db()), videos


@pytest.fixture(scope="module")
def demo_llp(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """An LLP folder (the 8-clip demo) and {split: one YouTube id of that split}."""
    root = tmp_path_factory.mktemp("llp") / "data"
    build_demo(root, clips=8, videos=False)
    ids = {split: read_weak_csv(root / name)[0].filename[:11]
           for split, name in (("train", "AVVP_train.csv"), ("val", "AVVP_val_pd.csv"), ("test", "AVVP_test_pd.csv"))}
    return root, ids


# ------------------------------------------------------------------------------------ label grids


@pytest.mark.parametrize("duration,min_overlap,segments", [
    (10, 0.5, 10), (47.68, 0.5, 48), (38.04, 0.5, 38), (10.5, 0.5, 11), (10.49, 0.5, 10), (0.3, 0.5, 1),
    (10.3, 0.3, 11), (10.0, 0.0, 10), (10.01, 0.0, 11), (9.9999999, 0.5, 10),
])
def test_segment_count(duration, min_overlap, segments):
    assert segment_count(duration, min_overlap) == segments


def test_hand_worked_grid():
    video = video_from(sample_db(), A)
    grid, best, dropped = event_labels(video, 100)
    assert grid.dtype == np.uint8 and (best, dropped) == (2, 1)
    np.testing.assert_array_equal(grid, expected_a())
    grid, best, dropped = event_labels(video, 100, keep_short_events=False)
    np.testing.assert_array_equal(grid, expected_a(keep_short=False))
    assert (best, dropped) == (0, 3)


def test_any_overlap_rule_also_keeps_the_tail():
    grid, best, dropped = event_labels(video_from(sample_db(), A), 100, min_overlap=0.0)
    assert grid.shape == (7, 100) and (best, dropped) == (0, 0)  # 6.3 s: the 0.3-s tail is a segment
    assert np.flatnonzero(grid[:, 55]).tolist() == [4, 5]
    assert np.flatnonzero(grid[:, 0]).tolist() == [0, 2, 3, 4, 6]
    assert np.flatnonzero(grid[:, 12]).tolist() == [1, 2, 3]


def test_embedded_class_table():
    assert len(UNAV_CLASSES) == len(set(UNAV_CLASSES)) == 100
    assert UNAV_CLASSES[0] == "man speaking" and UNAV_CLASSES[36] == "skateboarding"
    assert UNAV_CLASSES[99] == "hair dryer drying"


# ------------------------------------------------------------------------------------ import end to end


def test_cli_import_exclusion_and_folder(tmp_path, inputs, demo_llp, capsys):
    ann, videos = inputs
    llp, ids = demo_llp
    db = sample_db()
    db[ids["val"]] = {"duration": 10, "subset": "train", "annotations": [ev(0, 10, 12)]}
    db[ids["test"]] = {"duration": 12, "subset": "test", "annotations": [ev(0, 2, 0)]}
    db[ids["train"]] = {"duration": 11, "subset": "train", "annotations": [ev(3, 4, 0)]}  # LLP train: kept
    write_json(ann, db)
    out = tmp_path / "dense"
    assert run_cli(["import", "unav", str(ann), "--videos", str(videos), "--out", str(out), "--llp", str(llp),
                    "--keep-missing-videos", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clips"] == {"train": 2, "val": 1, "test": 1}
    assert report["excluded"] == {"llp_overlap": 2}
    assert set(report["excluded_videos"]) == {ids["val"], ids["test"]}
    assert "AVVP_val_pd.csv line 2" in report["excluded_videos"][ids["val"]]
    assert report["videos_found"] == 2 and report["videos_missing"] == 2
    assert sorted(report["missing_videos"]) == sorted([C, ids["train"]])
    assert (report["events"], report["events_best_segment"], report["events_dropped"]) == (8, 2, 1)
    assert report["classes"] == 100 and report["classes_with_events"] == 4

    events = read_dense_events(out)
    assert events.source == "UnAV-100" and events.tracks == "av" and events.classes == list(UNAV_CLASSES)
    clips = {c.video_id: c for c in events.clips}
    assert set(clips) == {A, B, C, ids["train"]}
    assert clips[A] == DenseClip(A, "train", 6, str((videos / f"{A}.mp4").resolve()))  # .mp4 before .webm
    assert clips[B] == DenseClip(B, "val", 10, str((videos / f"{B}.mkv").resolve()))
    assert clips[C] == DenseClip(C, "test", 4, None)
    assert events.excluded["llp_overlap"]["count"] == 2
    np.testing.assert_array_equal(load_event_labels(out, clips[A])["av"], expected_a())
    assert load_event_labels(events, clips[B])["av"][:, 55].tolist() == [1] * 10
    assert load_event_labels(out, clips[C])["av"].sum() == 0
    assert sorted(p.name for p in (out / "labels" / "av").iterdir()) == sorted(f"{v}.npy" for v in clips)

    # the same LLP ids from a database, given instead of the folder; videos without a file excluded (the default)
    dbfile = tmp_path / "store.sqlite"
    import_llp(open_database(str(dbfile)), llp)
    out2 = tmp_path / "dense2"
    assert run_cli(["--db", str(dbfile), "import", "unav", str(ann), "--videos", str(videos), "--out", str(out2)]) == 0
    captured = capsys.readouterr()
    assert "excluded 2 (llp_overlap)" in captured.out and "excluded 2 (video_missing)" in captured.out
    assert "2 video file(s) missing, excluded" in captured.err
    events = read_dense_events(out2)
    assert [c.video_id for c in events.clips] == [A, B] and all(c.video for c in events.clips)
    assert events.excluded["llp_overlap"]["videos"][ids["test"]].endswith("(database)")
    assert sorted(events.excluded["video_missing"]["videos"]) == sorted([C, ids["train"]])

    # kept on request, and said so
    out3 = tmp_path / "dense3"
    assert run_cli(["import", "unav", str(ann), "--videos", str(videos), "--out", str(out3), "--keep-llp-overlap",
                    "--keep-missing-videos"]) == 0
    err = capsys.readouterr().err
    assert "no LLP val/test ids were checked" in err
    assert {c.video_id for c in read_dense_events(out3).clips} >= {ids["val"], ids["test"]}
    assert run_cli(["import", "unav", str(ann), "--videos", str(videos), "--out", str(out3), "--llp", str(llp),
                    "--keep-llp-overlap", "--keep-missing-videos"]) == 0
    assert "kept 2 video(s) that share a YouTube id" in capsys.readouterr().err


def test_refused_without_llp_ids(tmp_path, inputs, capsys):
    ann, videos = inputs
    assert run_cli(["import", "unav", str(ann), "--videos", str(videos), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--llp LLP_DIR" in err and "--keep-llp-overlap" in err and "scored on" in err
    assert not (tmp_path / "o").exists()
    empty_llp = tmp_path / "llp"
    empty_llp.mkdir()
    assert run_cli(["import", "unav", str(ann), "--videos", str(videos), "--out", str(tmp_path / "o"),
                    "--llp", str(empty_llp)]) == 2
    assert "holds none of" in capsys.readouterr().err
    assert run_cli(["import", "unav", str(ann), "--videos", str(videos), "--out", str(tmp_path / "o"),
                    "--keep-llp-overlap", "--min-overlap", "1.5"]) == 2
    assert "--min-overlap 1.5" in capsys.readouterr().err


def test_llp_ids_include_evaluation_files(demo_llp):
    llp, ids = demo_llp
    found = llp_heldout_ids(llp)
    assert ids["val"] in found and ids["test"] in found and ids["train"] not in found


def test_reimport_is_idempotent_and_removes_stale_labels(tmp_path, inputs):
    ann, videos = inputs
    out = tmp_path / "dense"
    import_unav(ann, videos, out, heldout={})
    (out / "CLIP" / "features").mkdir(parents=True)  # what `features` adds: never the importer's
    (out / "CLIP" / "features" / f"{A}.npy").write_bytes(b"kept")
    snapshot = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    import_unav(ann, videos, out, heldout={})
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == snapshot

    db = sample_db()
    del db[B]
    write_json(ann, db)
    report = import_unav(ann, videos, out, heldout={})  # C has no video file: excluded
    assert report.excluded == {"video_missing": 1} and report.clips == {"train": 1, "val": 0, "test": 0}
    assert [p.name for p in (out / "labels" / "av").iterdir()] == [f"{A}.npy"]
    assert (out / "CLIP" / "features" / f"{A}.npy").read_bytes() == b"kept"
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no work folder left behind


def test_refuses_a_foreign_folder(tmp_path, inputs):
    ann, videos = inputs
    foreign = tmp_path / "data"
    foreign.mkdir()
    (foreign / "AVVP_train.csv").write_text("x\n")
    with pytest.raises(DataFileError, match="not a dense-event folder"):
        import_unav(ann, videos, foreign, heldout={})
    (foreign / "dense_events.json").write_text("{broken")
    with pytest.raises(DataFileError, match="refusing to replace it"):
        import_unav(ann, videos, foreign, heldout={})
    assert sorted(p.name for p in foreign.iterdir()) == ["AVVP_train.csv", "dense_events.json"]


def test_failed_write_keeps_the_previous_folder(tmp_path):
    out = tmp_path / "dense"
    clips = [DenseClip("x1", "train", 2, None), DenseClip("x2", "val", 3, None)]
    write_dense_events(out, source="t", classes=["a", "b"], clips=clips,
                       labels=lambda c: {"av": np.ones((c.segments, 2), dtype=np.uint8)})
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(clip):
        if clip.video_id == "x2":
            raise RuntimeError("disk full")
        return {"av": np.zeros((clip.segments, 2), dtype=np.uint8)}

    with pytest.raises(RuntimeError):
        write_dense_events(out, source="t", classes=["a", "b"], clips=clips, labels=broken)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    with pytest.raises(ValueError, match="shape"):
        write_dense_events(out, source="t", classes=["a", "b"], clips=clips,
                           labels=lambda c: {"av": np.zeros((10, 2), dtype=np.uint8)})


def test_classes_from_the_file(tmp_path, inputs):
    ann, videos = inputs
    custom = {A: {"duration": 3, "subset": "train", "annotations": [ev(0, 1, 0, "barking"), ev(1, 3, 1, "rain")]}}
    write_json(ann, custom)
    with pytest.raises(DataFileError, match="UnAV-100's class 0 is 'man speaking'"):
        read_unav_json(ann)
    report = import_unav(ann, videos, tmp_path / "o", heldout={}, classes="json")
    events = read_dense_events(tmp_path / "o")
    assert events.classes == ["barking", "rain"] and events.source == "UnAV-100 layout" and report.classes == 2
    assert load_event_labels(events, events.clips[0])["av"].tolist() == [[1, 0], [0, 1], [0, 1]]
    custom[A]["annotations"][1] = ev(1, 3, 2, "rain")
    write_json(ann, custom)
    with pytest.raises(DataFileError, match=r"missing: \[1\]"):
        read_unav_json(ann, classes="json")
    custom[A]["annotations"][1] = ev(1, 3, 10**12, "rain")  # no range of 10^12 ids is ever built
    write_json(ann, custom)
    with pytest.raises(DataFileError, match=r"ids 0..1000000000000 \(2 distinct\).*missing: \[1, 2, 3"):
        read_unav_json(ann, classes="json")


# ------------------------------------------------------------------------------------ bad input


def _mutate(db: dict, how: str) -> None:
    a = db[A]
    if how == "end_before_start":
        a["annotations"][0]["segment"] = [3.6, 1.4]
    elif how == "id_out_of_range":
        a["annotations"][0]["label_id"] = 100
    elif how == "name_disagrees":
        a["annotations"][0]["label"] = "cat meowing"
    elif how == "missing_duration":
        del a["duration"]
    elif how == "past_the_end":
        a["annotations"][0]["segment"] = [1.0, 7.0]
    elif how == "bad_subset":
        a["subset"] = "training"
    elif how == "bad_id":
        db["../evil"] = db.pop(A)
    elif how == "huge_duration":
        a["duration"] = 1e12
    elif how == "two_names_one_id":
        db[B]["annotations"].append(ev(1, 2, 55, "playing harp"))


@pytest.mark.parametrize("how,expected", [
    ("end_before_start", 'database["aaaaaaaaaaa"].annotations[0].segment: found [3.6, 1.4]; expected 0 <= start < end'),
    ("id_out_of_range", "label_id: 100 is outside 0..99"),
    ("name_disagrees", "label 'cat meowing' with label_id 12, but UnAV-100's class 12 is 'dog barking'"),
    ("missing_duration", 'database["aaaaaaaaaaa"].duration: found None (missing)'),
    ("past_the_end", "ends at 7.0 s, past the video's duration 6.3 s"),
    ("bad_subset", "subset: found 'training'; expected 'train', 'validation' or 'test'"),
    ("bad_id", "bad video id '../evil'"),
    ("huge_duration", "duration: found 1000000000000.0; expected the video's length in seconds (0 < d <= 86400.0)"),
    ("two_names_one_id", "label_id 55 is 'playing harp' here but 'sailing' at database"),
])
def test_bad_annotations_name_the_key(tmp_path, how, expected):
    db = sample_db()
    _mutate(db, how)
    path = write_json(tmp_path / "unav.json", db)
    with pytest.raises(DataFileError) as info:
        read_unav_json(path)
    assert expected in str(info.value) and str(path) in str(info.value)


def test_bad_json_names_the_line(tmp_path, inputs, capsys):
    ann, videos = inputs
    ann.write_text('{\n "database": {\n  "aaaaaaaaaaa": {"duration": 3,, }\n }\n}\n')
    out = tmp_path / "o"
    assert run_cli(["import", "unav", str(ann), "--videos", str(videos), "--out", str(out), "--keep-llp-overlap"]) == 2
    err = capsys.readouterr().err
    assert f"{ann}, line 3: not valid JSON" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    ann.write_text('{"database": {"aaaaaaaaaaa": {"duration": 3, "subset": "train"}, '
                   '"aaaaaaaaaaa": {"duration": 4, "subset": "test"}}}')
    with pytest.raises(DataFileError, match="'aaaaaaaaaaa' appears twice"):
        read_unav_json(ann)
    ann.write_text('{"version": "unav100", "videos": {}}')
    with pytest.raises(DataFileError, match="database: found NoneType; expected UnAV-100's layout"):
        read_unav_json(ann)
    (videos / f"{B}.mp4").symlink_to(videos / "nowhere.mp4")
    write_json(ann, sample_db())
    with pytest.raises(DataFileError, match="symbolic link whose target does not exist"):
        import_unav(ann, videos, out, heldout={})


# ------------------------------------------------------------------------------------ reading folders


def test_reader_checks_labels_and_optional_tracks(tmp_path):
    out = tmp_path / "dense"
    clips = [DenseClip("x1", "train", 2, None), DenseClip("x2", "test", 3, "/v/x2.mp4")]
    write_dense_events(out, source="t", classes=["a", "b", "c"], clips=clips,
                       labels=lambda c: {"av": np.eye(c.segments, 3, dtype=np.uint8)})
    events = read_dense_events(out)
    assert events.clip("x2").video == "/v/x2.mp4" and events.track_names == ("av",)
    assert set(load_event_labels(out, clips[0])) == {"av"}
    (out / "labels" / "audio").mkdir()
    label_path(out, "audio", "x1").write_bytes(npy_bytes(np.ones((2, 3), dtype=np.int64)))
    loaded = load_event_labels(out, clips[0])
    assert set(loaded) == {"av", "audio"} and loaded["audio"].dtype == np.uint8 and loaded["audio"].sum() == 6
    label_path(out, "av", "x2").write_bytes(npy_bytes(np.zeros((10, 3), dtype=np.uint8)))
    with pytest.raises(DataFileError, match=r"shape \(10, 3\); expected \(3, 3\)"):
        load_event_labels(out, clips[1])
    label_path(out, "av", "x2").write_bytes(npy_bytes(np.full((3, 3), 2, dtype=np.uint8)))
    with pytest.raises(DataFileError, match="values outside 0/1"):
        load_event_labels(out, clips[1])
    label_path(out, "av", "x2").unlink()
    with pytest.raises(DataFileError, match="x2.npy, clip x2: not found"):
        load_event_labels(out, clips[1])

    index = out / "dense_events.json"
    good = json.loads(index.read_text())
    for change, expected in [
        (lambda d: d["clips"][1].update(segments=0), r"clips\[1\].segments: found 0"),
        (lambda d: d["clips"][1].update(video_id="x1"), r"'x1' also at clips\[0\]"),
        (lambda d: d["clips"][0].update(split="validation"), r"clips\[0\].split: found 'validation'"),
        (lambda d: d.update(tracks="av,sound"), "tracks: found 'av,sound'"),
        (lambda d: d.update(format=2), "format: found 2"),
        (lambda d: d["clips"][0].update(video="relative.mp4"), "expected an absolute path or null"),
        (lambda d: d["clips"][0].update(video_id="a/b"), r"clips\[0\].video_id: found 'a/b'"),
    ]:
        bad = json.loads(json.dumps(good))
        change(bad)
        index.write_text(json.dumps(bad))
        with pytest.raises(DataFileError, match=expected):
            read_dense_events(out)
