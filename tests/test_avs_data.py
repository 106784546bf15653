"""AVSBench layouts, the synthetic AVS demo, masks in the label store (import, decisions, export)."""
from __future__ import annotations

import pickle
import shutil

import cv2
import numpy as np
import pytest

from annotation.avs_demo import build_avs_demo
from annotation.avs_store import (
    MaskConflictError, avs_clips, decide, export_masks, import_avsbench, load_masks, mask_sources, masks_of_source,
    store_mask_predictions,
)
from annotation.avsbench import (
    class_mask_to_rgb, decode_png, encode_png, palette, read_avsbench, read_binary_mask, read_class_mask,
)
from annotation.db import open_database
from annotation.errors import DataFileError


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    root = tmp_path_factory.mktemp("avsdemo")
    out = {}
    for subset in ("s4", "ms3", "avss"):
        build_avs_demo(root / subset, subset, clips=10, size=48, seed=3)
        out[subset] = root / subset
    return out


def _copy(demos, subset, tmp_path):
    target = tmp_path / subset
    shutil.copytree(demos[subset], target)
    return target


def test_palette_is_avsbench_bit_interleaved_colour_map():
    colours = palette()
    assert colours.shape == (71, 3)
    assert colours[0].tolist() == [0, 0, 0]
    assert colours[1].tolist() == [128, 0, 0] and colours[2].tolist() == [0, 128, 0]
    assert colours[3].tolist() == [128, 128, 0] and colours[4].tolist() == [0, 0, 128]
    assert colours[8].tolist() == [64, 0, 0]  # index 8 = bit 0 of the second triple: 1 << 6 in red
    assert len({tuple(c) for c in colours}) == 71


def test_layouts_read_exactly(demos):
    s4 = read_avsbench(demos["s4"], "s4")
    assert s4.root.name == "Single-source" and len(s4.clips) == 10
    train = s4.split("train")[0]
    assert train.frames[0].name == f"{train.name}_1.png" and train.frames[0].parent.parent.parent.name == "train"
    assert train.masks[0] is not None and train.masks[1:] == (None,) * 4  # S4 train: frame 1 only
    test = s4.split("test")[0]
    assert all(m is not None for m in test.masks) and test.audio_pkl.suffix == ".pkl"
    ms3 = read_avsbench(demos["ms3"] / "Multi-sources", "ms3")  # the subset folder itself works too
    clip = ms3.clips[0]
    assert clip.frames[2].name == f"{clip.name}.mp4_3.png" and clip.frames[2].parent.name == clip.name
    assert all(m is not None for m in clip.masks)
    avss = read_avsbench(demos["avss"], "avss")
    assert len(avss.classes) == 71 and avss.classes[0] == "background"
    lengths = {c.category: len(c.frames) for c in avss.clips}
    assert lengths == {"v1m": 5, "v2": 10}
    assert avss.clips[0].frames[0].name == "0.jpg" and avss.clips[0].audio_wav.name == "audio.wav"


def test_avss_one_folder_deeper_is_read(demos, tmp_path):
    target = tmp_path / "root" / "AVSBench-semantic"
    shutil.copytree(demos["avss"], target)
    assert len(read_avsbench(tmp_path / "root", "avss").clips) == 10


def test_demo_masks_follow_the_sounding_objects(demos):
    data = read_avsbench(demos["ms3"], "ms3")
    empties = sum(int(read_binary_mask(m).sum() == 0) for c in data.clips for m in c.masks)
    fulls = sum(int(read_binary_mask(m).sum() > 0) for c in data.clips for m in c.masks)
    assert empties > 0 and fulls > 0  # MS3/AVSS: sounds switch on and off per second
    avss = read_avsbench(demos["avss"], "avss")
    classes, unknown = read_class_mask(next(m for c in avss.clips for m in c.masks if m is not None))
    assert unknown == 0 and set(np.unique(classes)) <= set(range(7))


def test_binary_mask_rule_and_png_round_trip(tmp_path):
    grey = np.array([[0, 127], [128, 255]], np.uint8)
    path = tmp_path / "m.png"
    path.write_bytes(encode_png(grey))
    assert read_binary_mask(path).tolist() == [[0, 0], [1, 1]]
    classes = np.array([[0, 1], [70, 3]], np.uint8)
    path.write_bytes(encode_png(class_mask_to_rgb(classes)))
    assert read_class_mask(path)[0].tolist() == classes.tolist()
    assert decode_png(encode_png(classes)).tolist() == classes.tolist()


def test_import_is_one_transaction_and_idempotent(demos, tmp_path):
    engine = open_database(str(tmp_path / "db.sqlite"))
    report = import_avsbench(engine, demos["s4"], "s4")
    assert report.clips == {"train": 6, "val": 2, "test": 2} and report.clips_added == 10
    assert report.masks_added == 6 * 1 + 4 * 5
    again = import_avsbench(engine, demos["s4"], "s4")
    assert (again.clips_added, again.clips_updated, again.masks_added, again.masks_updated) == (0, 0, 0, 0)
    clip = avs_clips(engine, "s4", "test")[0]
    masks = load_masks(engine, clip.id)["truth"]
    assert sorted(masks) == [0, 1, 2, 3, 4]
    root = _copy(demos, "s4", tmp_path)  # the folder changes: a clip leaves the metadata, a val clip goes to train
    meta = root / "Single-source" / "s4_meta_data.csv"
    lines = meta.read_text().splitlines()
    dropped = lines.pop(1).split(",")[0]
    meta.write_text("\n".join(lines) + "\n")
    moved = import_avsbench(engine, root, "s4")
    assert moved.clips_not_in_folder == [dropped] and moved.truth_removed == 0
    assert [c.name for c in avs_clips(engine, "s4")].count(dropped) == 1  # kept, with whatever people decided
    assert np.array_equal(masks[2].array(), read_binary_mask(clip.mask_paths[2]))
    assert mask_sources(engine, "s4") == ["truth"]


def test_bad_files_abort_the_import_naming_them(demos, tmp_path):
    root = _copy(demos, "s4", tmp_path)
    engine = open_database(str(tmp_path / "db.sqlite"))
    data = read_avsbench(root, "s4")
    victim = data.split("test")[0]
    cv2.imwrite(str(victim.masks[3]), np.zeros((20, 20), np.uint8))  # wrong size
    with pytest.raises(DataFileError, match=rf"{victim.name}_4.png.*mask is 20x20 but its frame"):
        import_avsbench(engine, root, "s4")
    assert avs_clips(engine) == []  # nothing half-imported
    victim.frames[1].unlink()
    with pytest.raises(DataFileError, match=rf"{victim.name}_2.png: missing frame 2 of clip {victim.name} "
                                            r"\(listed in s4_meta_data.csv line \d+\)"):
        read_avsbench(root, "s4")


def test_metadata_errors_name_the_line(demos, tmp_path):
    root = _copy(demos, "ms3", tmp_path)
    meta = root / "Multi-sources" / "ms3_meta_data.csv"
    lines = meta.read_text().splitlines()
    meta.write_text("\n".join([lines[0], lines[1].replace(",train", ",training"), *lines[2:]]) + "\n")
    with pytest.raises(DataFileError, match=r"line 2: split 'training'; expected one of train, val, test"):
        read_avsbench(root, "ms3")
    meta.write_text("\n".join([lines[0], lines[1], lines[1], *lines[2:]]) + "\n")
    with pytest.raises(DataFileError, match=r"line 3: clip .* listed twice \(first on line 2\)"):
        read_avsbench(root, "ms3")
    meta.write_text("\n".join([lines[0], "../../etc,0,train"]) + "\n")
    with pytest.raises(DataFileError, match="not a plain file name"):
        read_avsbench(root, "ms3")
    with pytest.raises(DataFileError, match="not an AVSBench S4 folder"):
        read_avsbench(root, "s4")


def test_crafted_pkl_is_refused_at_import_and_runs_nothing(demos, tmp_path):
    root = _copy(demos, "s4", tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    victim = read_avsbench(root, "s4").clips[0]
    victim.audio_pkl.write_bytes(pickle.dumps(Evil()))
    engine = open_database(str(tmp_path / "db.sqlite"))
    with pytest.raises(DataFileError, match=victim.audio_pkl.name):
        import_avsbench(engine, root, "s4")
    assert not marker.exists() and avs_clips(engine) == []


def test_avss_import_stores_class_masks(demos, tmp_path):
    engine = open_database(str(tmp_path / "db.sqlite"))
    report = import_avsbench(engine, demos["avss"], "avss")
    assert report.unknown_colour_pixels == 0
    clip = next(c for c in avs_clips(engine, "avss", "test") if c.category == "v2")
    truth = load_masks(engine, clip.id)["truth"]
    assert len(truth) == 10 and truth[0].kind == "classes"
    assert np.array_equal(truth[4].array(), read_class_mask(clip.mask_paths[4])[0])


def test_predictions_decisions_undo_and_conflicts(demos, tmp_path):
    engine = open_database(str(tmp_path / "db.sqlite"))
    import_avsbench(engine, demos["s4"], "s4")
    clip = avs_clips(engine, "s4", "test")[0]
    probs = np.zeros((5, 48, 48), np.float32)
    probs[:, 10:20, 10:20] = 0.8
    probs[:, 0, 0] = 0.5
    store_mask_predictions(engine, "r1", "s4", {clip.name: probs}, "probability")
    pred = load_masks(engine, clip.id)["prediction:r1"]
    assert pred[0].array()[15, 15] == round(255 * 0.8) and pred[0].array()[0, 0] == 128
    with pytest.raises(DataFileError, match="not s4 clips of the database"):
        store_mask_predictions(engine, "r1", "s4", {"nope": probs}, "probability")

    v1 = decide(engine, clip.id, 2, "accepted", "prediction:r1", 0, "ann")
    reviewed = load_masks(engine, clip.id)["reviewed"][2]
    assert v1 == 1 and reviewed.status == "accepted" and reviewed.kind == "binary"
    assert reviewed.array().sum() == 100 + 1  # thresholded at 0.5 as stored (128 >= 128)
    with pytest.raises(MaskConflictError, match="you saw version 0, the database holds version 1 by ann"):
        decide(engine, clip.id, 2, "rejected", "prediction:r1", 0, "other")
    v2 = decide(engine, clip.id, 2, "rejected", "prediction:r1", 1, "ann")
    assert v2 == 2 and load_masks(engine, clip.id)["reviewed"][2].png is None
    assert decide(engine, clip.id, 2, None, "prediction:r1", 2, "ann") == 3  # undo to "no decision"
    withdrawn = load_masks(engine, clip.id)["reviewed"][2]
    assert (withdrawn.status, withdrawn.png, withdrawn.version) == (None, None, 3)
    with pytest.raises(MaskConflictError):  # a stale undo (of version 1) after ours is refused, not taken for new
        decide(engine, clip.id, 2, None, "prediction:r1", 1, "other")
    assert decide(engine, clip.id, 2, "accepted", "prediction:r1", 3, "ann") == 4
    with pytest.raises(ValueError, match="not 'prediction:<run>'"):
        decide(engine, clip.id, 2, "accepted", "manual", 4, "ann")
    with pytest.raises(ValueError, match="no mask from prediction:r2"):
        decide(engine, clip.id, 1, "accepted", "prediction:r2", 0, "ann")


def test_export_in_the_avsbench_layout(demos, tmp_path):
    engine = open_database(str(tmp_path / "db.sqlite"))
    import_avsbench(engine, demos["s4"], "s4")
    counts = export_masks(engine, tmp_path / "out", "s4", "truth", "test")
    assert counts == {"clips": 2, "masks": 10, "rejected": 0}
    clip = avs_clips(engine, "s4", "test")[0]
    written = tmp_path / "out" / "test" / clip.category / clip.name / f"{clip.name}_3.png"
    assert np.array_equal(cv2.imread(str(written), cv2.IMREAD_GRAYSCALE), cv2.imread(str(clip.mask_paths[2]), 0))
    store_mask_predictions(engine, "r1", "s4", {clip.name: np.full((5, 48, 48), 0.9, np.float32)}, "probability")
    decide(engine, clip.id, 0, "accepted", "prediction:r1", 0, "ann")
    decide(engine, clip.id, 1, "rejected", "prediction:r1", 0, "ann")
    counts = export_masks(engine, tmp_path / "rev", "s4", "reviewed")
    assert counts == {"clips": 1, "masks": 1, "rejected": 1}
    assert masks_of_source(engine, "reviewed")[clip.id][0].status == "accepted"


def test_avss_training_frames_are_centre_cropped_as_the_official_loader(tmp_path):
    from inference.tasks.avs import AVSDataset

    image = np.zeros((40, 80), np.uint8)
    image[:, 30:50] = 1  # a band in the middle third: kept by the centre crop, squeezed by a plain resize
    crop = AVSDataset([], "avss", 20, True, None, crop=True).resize_mask(image)
    plain = AVSDataset([], "avss", 20, True, None).resize_mask(image)
    assert crop.shape == plain.shape == (20, 20)
    assert crop[:, 5:15].all() and not crop[:, :5].any() and not crop[:, 15:].any()  # (80 -> 40 wide, cut 10..30)
    assert plain[:, 8:12].all() and not plain[:, :7].any()
