"""The synthetic demo dataset: layout, label consistency, media that follows the timelines, reuse."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from annotation.clipname import parse_clip_name
from annotation.demo import (
    FEATURES,
    PSEUDO_DIRS,
    DemoError,
    build_demo,
    plan_demo,
    read_demo_truth,
    read_pseudo,
    split_sizes,
)
from annotation.grid import GRID_SHAPE
from annotation.llp_csv import dense_grids, read_dense_csv, read_weak_csv
from annotation.media import FrameReader, decode_audio, probe, segment_to_frame_range
from annotation.taxonomy import COLOURS, hex_to_rgb
from app import cmd_demo

CLIPS, SEED = 8, 0


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "data"
    calls = []
    summary = build_demo(out, clips=CLIPS, seed=SEED, progress=lambda *a: calls.append(a))
    assert summary.built and summary.out_dir == out
    assert (summary.train, summary.val, summary.test) == (4, 2, 2)
    assert calls[-1][0] == calls[-1][1] == CLIPS + 1
    return out


@pytest.fixture(scope="module")
def weak(demo: Path) -> dict[str, dict[str, tuple[int, ...]]]:
    return {
        split: {row.filename: row.labels for row in read_weak_csv(demo / name)}
        for split, name in (("train", "AVVP_train.csv"), ("val", "AVVP_val_pd.csv"), ("test", "AVVP_test_pd.csv"))
    }


def _all(weak: dict[str, dict[str, tuple[int, ...]]]) -> dict[str, tuple[int, ...]]:
    return {name: labels for split in weak.values() for name, labels in split.items()}


def test_split_sizes_scale() -> None:
    assert split_sizes(32) == (20, 6, 6, 4)
    assert split_sizes(8) == (4, 2, 2, 1)
    assert split_sizes(64)[3] >= 8
    with pytest.raises(DemoError):
        split_sizes(2)


def test_layout_shapes_and_dtypes(demo: Path, weak) -> None:
    assert [len(weak[s]) for s in ("train", "val", "test")] == [4, 2, 2]
    assert "SYNTHETIC" in (demo / "README.txt").read_text()
    names = list(_all(weak))
    ids = [parse_clip_name(n).video_id for n in names]
    assert len(set(ids)) == CLIPS
    assert any("_" in i for i in ids) and any("-" in i for i in ids)
    for name in names:
        clip = parse_clip_name(name)
        assert clip.end - clip.start == 10
        assert (demo / "raw_videos" / f"{clip.video_id}.mp4").is_file()
        for folder, (rows, dim, _) in FEATURES.items():
            feat = np.load(demo / folder / f"{clip.video_id}.npy")
            assert feat.shape == (rows, dim) and feat.dtype == np.float32, folder
        clip_feat = np.load(demo / "CLIP/features" / f"{clip.video_id}.npy")
        np.testing.assert_allclose(np.linalg.norm(clip_feat, axis=1), 1.0, atol=1e-5)
        for folder in PSEUDO_DIRS.values():
            pseudo = np.load(demo / folder / f"{clip.video_id}.npy")
            assert pseudo.shape == (10, 25) and pseudo.dtype == np.int64
            assert set(np.unique(pseudo)) <= {0, 1}


def test_weak_label_is_union_of_truth(demo: Path, weak) -> None:
    audio, visual = read_demo_truth(demo)
    for name, labels in _all(weak).items():
        union = np.flatnonzero((audio[name] | visual[name]).any(axis=1))
        assert tuple(union) == labels
        for grid in (audio[name], visual[name]):
            assert 1 <= grid.any(axis=1).sum() <= 3
        assert not audio[name].any(axis=0).all(), "every clip has a silent stretch"


def test_pseudo_labels_follow_valor_rule_and_are_noisy(demo: Path, weak) -> None:
    audio, visual = read_demo_truth(demo)
    for name, labels in _all(weak).items():
        vid = name[:11]
        for track in ("audio", "visual"):
            pseudo = read_pseudo(demo, vid, track)
            assert pseudo.shape == GRID_SHAPE
            assert set(np.flatnonzero(pseudo.any(axis=1))) <= set(labels)
    empty = [n for n in weak["train"] if not read_pseudo(demo, n[:11], "visual").any()]
    assert len(empty) == split_sizes(CLIPS)[3] == 1
    for split in ("val", "test"):
        assert all(read_pseudo(demo, n[:11], "visual").any() for n in weak[split])
    # noisy but informative, on a bigger plan: worse than truth, better than the weak label
    plan = plan_demo(32, SEED)

    def f1(pred: np.ndarray, true: np.ndarray) -> float:
        tp, fp, fn = (pred & true).sum(), (pred & ~true).sum(), (~pred & true).sum()
        return 2 * tp / (2 * tp + fp + fn)

    for track in ("audio", "visual"):
        pairs = [(getattr(c, f"{track}_pseudo").astype(bool), getattr(c, track).astype(bool)) for c in plan]
        pseudo_f1 = np.mean([f1(p, t) for p, t in pairs if p.any()])
        weak_f1 = np.mean([f1(np.repeat((c.audio | c.visual).any(1, keepdims=True), 10, 1), getattr(c, track).astype(bool)) for c in plan])
        assert weak_f1 + 0.1 < pseudo_f1 < 0.9, track


def test_truth_csvs_only_for_held_out_clips(demo: Path, weak) -> None:
    audio, visual = read_demo_truth(demo)
    held_out = [*weak["val"], *weak["test"]]
    assert set(audio) == set(_all(weak))  # demo_truth covers every clip, train too
    for track, truth in (("audio", audio), ("visual", visual)):
        rows = read_dense_csv(demo / f"AVVP_eval_{track}.csv")
        assert {r.filename for r in rows} == set(held_out)
        grids = dense_grids(rows, held_out)
        for name, grid in zip(held_out, grids):
            np.testing.assert_array_equal(grid, truth[name])


def test_plan_is_deterministic_and_matches_files(demo: Path) -> None:
    first, second = plan_demo(CLIPS, SEED), plan_demo(CLIPS, SEED)
    for a, b in zip(first, second):
        assert a.filename == b.filename
        for field in ("audio", "visual", "audio_pseudo", "visual_pseudo"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    for clip in first:
        np.testing.assert_array_equal(read_pseudo(demo, clip.video_id, "audio"), clip.audio_pseudo)
        np.testing.assert_array_equal(read_pseudo(demo, clip.video_id, "visual"), clip.visual_pseudo)
    assert [c.filename for c in plan_demo(CLIPS, SEED + 1)] != [c.filename for c in first]


def _colour_pixels(frame: np.ndarray, colour: str, tolerance: int = 30) -> int:
    rgb = np.array(hex_to_rgb(colour), dtype=np.int16)
    return int((np.abs(frame[:-8].astype(np.int16) - rgb).max(axis=2) <= tolerance).sum())


def test_video_pictures_follow_visual_timeline(demo: Path) -> None:
    seen = empty = 0
    for clip in plan_demo(CLIPS, SEED):
        path = demo / "raw_videos" / f"{clip.video_id}.mp4"
        info = probe(path)
        assert info.duration == pytest.approx(10.0, abs=0.1) and info.has_audio
        with FrameReader(path) as reader:
            for seg in range(10):
                frames = segment_to_frame_range(seg, info.fps, info.frame_count)
                frame = reader.read(frames[len(frames) // 2])
                visible = np.flatnonzero(clip.visual[:, seg])
                for cls in visible:
                    assert _colour_pixels(frame, COLOURS[cls]) >= 60, (clip.filename, seg, cls)
                    seen += 1
                if not len(visible):
                    assert all(_colour_pixels(frame, colour) < 5 for colour in COLOURS), (clip.filename, seg)
                    empty += 1
    assert seen and empty


def test_audio_follows_audio_timeline(demo: Path) -> None:
    for clip in plan_demo(CLIPS, SEED):
        wave, rate = decode_audio(demo / "raw_videos" / f"{clip.video_id}.mp4", rate=16000)
        assert len(wave) / rate == pytest.approx(10.0, abs=0.1)
        rms = np.array([np.sqrt(np.mean(wave[int((s + 0.1) * rate) : int((s + 0.9) * rate)] ** 2)) for s in range(10)])
        sounding = clip.audio.any(axis=0).astype(bool)
        assert rms[sounding].min() > 5 * rms[~sounding].max(), clip.filename


def test_second_build_is_skipped(demo: Path) -> None:
    stamp = (demo / "raw_videos").stat().st_mtime_ns, (demo / "AVVP_train.csv").stat().st_mtime_ns
    summary = build_demo(demo, clips=CLIPS, seed=SEED)
    assert not summary.built
    assert ((demo / "raw_videos").stat().st_mtime_ns, (demo / "AVVP_train.csv").stat().st_mtime_ns) == stamp


def test_refuses_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "AVVP_train.csv").write_text("real data\n")
    with pytest.raises(DemoError, match="not empty"):
        build_demo(tmp_path, clips=3)
    assert (tmp_path / "AVVP_train.csv").read_text() == "real data\n"


def test_cli_command_reuses_demo(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cmd_demo.register(parser.add_subparsers())
    args = parser.parse_args(["demo", "--out", str(demo), "--clips", str(CLIPS), "--seed", str(SEED)])
    assert args.func is cmd_demo.run
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(demo)
    assert "reused" in err
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--clips", "2"])
    assert cmd_demo.default_demo_dir().name == "demo"


def test_other_parameters_rebuild_and_remove_old_files(tmp_path: Path) -> None:
    first = build_demo(tmp_path, clips=3, seed=1)
    old_ids = {c.video_id for c in plan_demo(3, 1)}
    second = build_demo(tmp_path, clips=3, seed=2)
    assert first.built and second.built
    left = {p.stem for p in (tmp_path / "raw_videos").iterdir()} | {p.stem for p in (tmp_path / "feats/res152").iterdir()}
    assert left == {c.video_id for c in plan_demo(3, 2)} and not left & old_ids
