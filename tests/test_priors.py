"""Zero-shot priors: cosine rule, thresholds chosen on val only, files in the layout, bad inputs refused."""
from __future__ import annotations

import io
import json
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from annotation.demo import build_demo
from annotation.errors import DataFileError
from inference.data import PRIOR_DIRS, labels_from_folder
from inference.priors import best_threshold, compute_priors


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from app.cli import run_cli as cli

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("priors") / "data"
    build_demo(out, clips=40, seed=4, videos=False)
    return out


def text_args(data: Path) -> list[str]:
    return ["--text-audio", str(data / "text/clap_captions.npy"), "--text-visual", str(data / "text/clip_captions.npy")]


def read_priors(root: Path, labels) -> dict[str, np.ndarray]:
    return {track: np.stack([np.load(root / sub / f"{vid}.npy") for vid in labels.video_ids])
            for track, sub in PRIOR_DIRS.items()}


def test_prior_is_the_strict_cosine_rule_over_all_classes(demo, tmp_path):
    thresholds = {"audio": [0.1] * 25, "visual": [0.05] * 25}
    (tmp_path / "t.json").write_text(json.dumps(thresholds))
    code, out, err = run_cli(["prior", "--data", str(demo), *text_args(demo), "--thresholds", str(tmp_path / "t.json"),
                              "--out", str(tmp_path / "p")])
    assert code == 0, err
    labels = labels_from_folder(demo, pseudo=False)
    priors = read_priors(tmp_path / "p", labels)
    vid = labels.video_ids[0]
    feat = np.load(demo / "CLAP/features" / f"{vid}.npy")
    text = np.load(demo / "text/clap_captions.npy")
    cos = (feat / np.linalg.norm(feat, axis=1, keepdims=True)) @ (text / np.linalg.norm(text, axis=1, keepdims=True)).T
    assert priors["audio"].shape == (len(labels), 10, 25) and priors["audio"].dtype == np.int64
    np.testing.assert_array_equal(priors["audio"][0], (cos > 0.1).astype(np.int64))
    weak_only = priors["audio"].sum(axis=1) > 0
    assert (weak_only & (labels.weak == 0)).any()  # classes outside the video-level label fire too (no gate)
    assert json.loads((tmp_path / "p/segment_prior_labels.json").read_text())["source"] == str(tmp_path / "t.json")


def test_thresholds_chosen_on_val_depend_on_val_truth_only(demo, tmp_path):
    labels = labels_from_folder(demo, pseudo=False)
    first = compute_priors(demo, labels, demo / "text/clap_captions.npy", demo / "text/clip_captions.npy",
                           out_dir=tmp_path / "a")
    assert first.source == "val" and all(len(first.thresholds[t]) == 25 for t in ("audio", "visual"))
    assert np.mean([f for f in first.val_f1["audio"] if f is not None]) > 0.5
    # another test truth, other test (and train) weak labels and pseudo-labels: the same priors everywhere
    changed = tmp_path / "changed"
    shutil.copytree(demo, changed)
    for name in ("AVVP_eval_audio.csv", "AVVP_eval_visual.csv"):
        lines = (changed / name).read_text().splitlines()
        test_names = {n for n in labels.filenames if n in {labels.filenames[i] for i in labels.indices("test")}}
        kept = [ln for ln in lines[1:] if ln.split("\t")[0] not in test_names]
        (changed / name).write_text("\n".join([lines[0], *kept, f"{sorted(test_names)[0]}\t0\t10\tDog"]) + "\n")
    for name in ("AVVP_test_pd.csv", "AVVP_train.csv"):
        lines = (changed / name).read_text().splitlines()
        (changed / name).write_text("\n".join([lines[0], *(f"{ln.split(chr(9))[0]}\tBanjo" for ln in lines[1:])]) + "\n")
    for sub in ("CLAP/segment_pseudo_labels", "CLIP/segment_pseudo_labels"):
        for path in (changed / sub).glob("*.npy"):
            np.save(path, np.ones((10, 25), np.int64))
    other = labels_from_folder(changed, pseudo=False)
    second = compute_priors(changed, other, demo / "text/clap_captions.npy", demo / "text/clip_captions.npy",
                            out_dir=tmp_path / "b")
    assert second.thresholds == first.thresholds
    for track in ("audio", "visual"):
        np.testing.assert_array_equal(read_priors(tmp_path / "a", labels)[track], read_priors(tmp_path / "b", other)[track])


def test_best_threshold_maximises_f1_with_a_strict_cut():
    scores = np.array([0.9, 0.8, 0.8, 0.3, 0.1])
    threshold, f1 = best_threshold(scores, np.array([1, 1, 0, 0, 0]))
    assert threshold == pytest.approx(0.55) and f1 == pytest.approx(2 * 2 / (3 + 2))  # ties at 0.8 stay together
    assert ((scores > threshold) == np.array([1, 1, 1, 0, 0], bool)).all()
    threshold, f1 = best_threshold(scores, np.array([1, 1, 0, 0, 1]))  # best: everything positive
    assert (scores > threshold).all() and f1 == pytest.approx(2 * 3 / (5 + 3))
    assert best_threshold(scores, np.zeros(5)) is None


@pytest.mark.parametrize("bad,expected", [
    (np.zeros((24, 512), np.float32), r"shape \(24, 512\); expected audio caption embeddings"),
    (np.full((25, 512), np.nan, np.float32), "non-finite"),
    (np.zeros((25, 768), np.float32), "all-zero caption embedding"),
    (np.ones((25, 64), np.float32), r"priors need \(10, 64\) segment embeddings"),
])
def test_bad_caption_embeddings_are_refused(demo, tmp_path, bad, expected):
    np.save(tmp_path / "bad.npy", bad)
    code, _, err = run_cli(["prior", "--data", str(demo), "--text-audio", str(tmp_path / "bad.npy"), "--text-visual",
                            str(demo / "text/clip_captions.npy"), "--out", str(tmp_path / "p")])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    import re

    assert re.search(expected, err), err


def test_a_bad_thresholds_file_is_refused(demo, tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"audio": [0.1] * 24, "visual": [0.1] * 25}))
    with pytest.raises(DataFileError, match="'audio' must be a list of 25 finite numbers"):
        compute_priors(demo, labels_from_folder(demo, pseudo=False), demo / "text/clap_captions.npy",
                       demo / "text/clip_captions.npy", thresholds=str(tmp_path / "t.json"), out_dir=tmp_path / "p")


def test_priors_read_segment_embeddings_from_another_folder_when_clap_features_are_valors_maps(demo, tmp_path):
    data = tmp_path / "valor"
    shutil.copytree(demo, data)
    shutil.move(data / "CLAP/features", tmp_path / "clap_segments")
    (data / "CLAP/features").mkdir()
    labels = labels_from_folder(data, pseudo=False)
    for vid in labels.video_ids:
        np.save(data / "CLAP/features" / f"{vid}.npy", np.ones((64, 768), np.float32))
    code, _, err = run_cli(["prior", "--data", str(data), *text_args(data)])
    assert code == 2 and "--audio-features" in err and "(64, 768)" in err
    code, _, err = run_cli(["prior", "--data", str(data), *text_args(data), "--audio-features",
                            str(tmp_path / "clap_segments")])
    assert code == 0, err
    reference = tmp_path / "ref"
    compute_priors(demo, labels, demo / "text/clap_captions.npy", demo / "text/clip_captions.npy", out_dir=reference)
    for track, got in read_priors(data, labels).items():
        np.testing.assert_array_equal(got, read_priors(reference, labels)[track])


def test_zero_priors_ablation_needs_no_prior_files(demo, tmp_path):
    from inference.predict import predict
    from inference.tasks.avvp import AVVPTask
    from inference.train import train
    from inference.train_config import TrainConfig

    data = tmp_path / "d"
    shutil.copytree(demo, data)
    labels = labels_from_folder(data)
    compute_priors(data, labels, data / "text/clap_captions.npy", data / "text/clip_captions.npy")
    config = TrainConfig.for_model("mug", model_config={"hidden": 32, "dim_feedforward": 32, "random_text": True},
                                   epochs=1, batch_size=8, device="cpu")
    train(config, AVVPTask(labels, data), tmp_path / "run")
    with_priors = predict(tmp_path / "run", labels, data, zero_priors=True)
    for sub in PRIOR_DIRS.values():
        shutil.rmtree(data / sub)
    without_files = predict(tmp_path / "run", labels, data, zero_priors=True)
    for a, b in zip(with_priors[:3], without_files[:3]):
        np.testing.assert_array_equal(a, b)


def test_the_best_cut_between_adjacent_float32_scores_keeps_the_chosen_cell():
    from inference.priors import best_threshold

    high = np.float32(0.3)
    low = np.nextafter(high, np.float32(0))  # no float32 strictly between them
    scores, truth = np.array([high, low], np.float32), np.array([1, 0])
    threshold, f1 = best_threshold(scores, truth)
    assert f1 == 1.0
    assert (scores > np.float32(threshold)).tolist() == [True, False]
