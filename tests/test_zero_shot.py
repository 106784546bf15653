"""Zero-shot pseudo-labels: VALOR's strict rule, the weak-label gate, the ungated priors path shared with
`inference.priors`, thresholds (valor / val / file) and where each may be used, logit scales."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from annotation.demo import build_demo
from annotation.errors import DataFileError
from inference.data import PRIOR_DIRS, labels_from_folder
from inference.priors import best_threshold, choose_thresholds, compute_priors
from inference.zero_shot import (
    CAPTIONS_JSON,
    VALOR_THRESHOLDS,
    logit_scales,
    read_captions,
    resolve_thresholds,
    segment_logits,
    zero_shot_labels,
    zero_shot_set,
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zero_shot") / "data"
    build_demo(out, clips=40, seed=4, videos=False)
    return out


def hand_made() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two clips: logits equal to, just above and below the thresholds, in and outside the weak label."""
    thresholds = np.arange(25, dtype=np.float32) - 3.0
    logits = np.tile(thresholds, (2, 10, 1)).astype(np.float32)  # everything exactly at the threshold
    logits[0, 2, 5] += 0.001  # class 5 fires in segment 2 of clip 0
    logits[0, 4, 7] += 1.0  # class 7, outside clip 0's weak label
    logits[1, :, 0] += 2.0  # class 0, every segment of clip 1
    logits[1, 3, 1] -= 0.5  # class 1, below
    weak = np.zeros((2, 25), np.float32)
    weak[0, [5, 1]] = 1
    weak[1, [0, 1, 7]] = 1
    return logits, thresholds, weak


def test_the_rule_is_strict_and_the_gate_keeps_weak_label_classes_only():
    logits, thresholds, weak = hand_made()
    gated = zero_shot_labels(logits, thresholds, weak)
    assert gated.dtype == np.uint8 and gated.shape == (2, 10, 25)
    expected = np.zeros((2, 10, 25), np.uint8)
    expected[0, 2, 5] = 1
    expected[1, :, 0] = 1
    np.testing.assert_array_equal(gated, expected)  # equal to the threshold: 0; class 7 of clip 0: gated out
    ungated = zero_shot_labels(logits, thresholds)  # the priors' path: every class
    expected[0, 4, 7] = 1
    np.testing.assert_array_equal(ungated, expected)
    assert zero_shot_labels(logits, thresholds + 10).sum() == 0
    assert zero_shot_labels(np.nextafter(thresholds, np.float32(np.inf))[None, None], thresholds).all()


def test_priors_are_the_same_rule_ungated_and_pseudo_labels_the_gated_one(demo, tmp_path):
    labels = labels_from_folder(demo, pseudo=False)
    cosines = {"audio": [0.1] * 25, "visual": [0.05 + 0.01 * c for c in range(25)]}
    (tmp_path / "t.json").write_text(json.dumps(cosines))
    compute_priors(demo, labels, demo / "text/clap_captions.npy", demo / "text/clip_captions.npy",
                   thresholds=str(tmp_path / "t.json"), out_dir=tmp_path / "priors")
    logits = segment_logits(demo, labels, logit_scales(None))  # no captions.json: scale 1, logits = cosines
    pset = zero_shot_set(demo, labels, "zs", thresholds=str(tmp_path / "t.json"))
    assert pset.report["logit_scale"] == {"audio": 1.0, "visual": 1.0}
    assert "default 1.0" in pset.report["logit_scale_source"]
    for track, sub in PRIOR_DIRS.items():
        priors = np.stack([np.load(tmp_path / "priors" / sub / f"{vid}.npy") for vid in labels.video_ids])
        np.testing.assert_array_equal(priors, zero_shot_labels(logits[track], cosines[track]))
        grids = np.stack([getattr(pset, track)[vid] for vid in labels.video_ids])
        np.testing.assert_array_equal(grids, priors * (labels.weak[:, None, :] > 0))
        assert (priors.max(axis=1) > labels.weak).any()  # the gate removed something


def test_logit_scales_come_from_captions_json(demo, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo, data)
    labels = labels_from_folder(data, pseudo=False)
    plain = segment_logits(data, labels, logit_scales(None))
    (data / CAPTIONS_JSON).write_text(json.dumps({
        "visual": {"prompts": ["A photo of x."] * 25, "logit_scale": 100.0, "encoder": "open_clip ViT-L-14 (openai)"},
        "audio": {"prompts": ["This is a sound of x"] * 25, "logit_scale": 33.37, "encoder": "transformers ClapModel"},
    }))
    scales = logit_scales(read_captions(data))
    assert scales == {"visual": 100.0, "audio": 33.37}
    scaled = segment_logits(data, labels, scales)
    for track in ("audio", "visual"):
        np.testing.assert_allclose(scaled[track], scales[track] * plain[track], rtol=1e-5)
    # real encoders named: 'auto' is VALOR's thresholds
    chosen, info = resolve_thresholds("auto", data, labels, scaled, read_captions(data))
    assert info["threshold_source"] == "valor"
    assert chosen["visual"].tolist() == list(VALOR_THRESHOLDS["visual"])
    assert chosen["audio"].tolist() == [0, 0, 1, 4, 6, -2, 4, 4, 2, 2, 2, 1, 2, 3, 0, 2, 2, 2, 0, 2, -1, 2, 3, 3, 0]
    (data / CAPTIONS_JSON).write_text(json.dumps({"visual": {"logit_scale": -1}, "audio": {"logit_scale": 1}}))
    with pytest.raises(DataFileError, match="'visual' must be an object with a finite positive 'logit_scale'"):
        read_captions(data)


def test_valor_thresholds_are_refused_without_real_encoders(demo, tmp_path):
    labels = labels_from_folder(demo, pseudo=False)
    logits = segment_logits(demo, labels, logit_scales(None))
    with pytest.raises(DataFileError, match="captions.json: absent.*--thresholds val"):
        resolve_thresholds("valor", demo, labels, logits, None)
    tiny = {"visual": {"logit_scale": 100.0, "encoder": "tiny random CLIP (seed 0)"},
            "audio": {"logit_scale": 10.0, "encoder": "transformers ClapModel"}}
    with pytest.raises(DataFileError, match="random or tiny encoders .*visual: 'tiny random CLIP.*--thresholds val"):
        resolve_thresholds("valor", demo, labels, logits, tiny)
    _, info = resolve_thresholds("auto", demo, labels, logits, tiny)  # auto falls back to val, and says it
    assert info["threshold_source"] == "val" and "optimistic" in info["thresholds_note"]


@pytest.mark.parametrize("content,expected", [
    ({"audio": [1.0] * 24, "visual": [15.0] * 25}, (r"'audio' must be a list of 25 finite numbers \(logit "
                                                    r"thresholds.*found 24 values")),
    ({"audio": [1.0] * 25, "visual": [15.0] * 24 + [float("nan")]}, r"'visual' .*found nan at index 24 \(Clapping\)"),
    ({"audio": [1.0] * 25, "visual": [15.0] * 24 + ["15"]}, r"'visual' .*found '15' at index 24"),
    ({"audio": [1.0] * 25}, r"'visual' .*found no such key"),
])
def test_a_bad_thresholds_file_is_refused_naming_file_and_key(demo, tmp_path, content, expected):
    labels = labels_from_folder(demo, pseudo=False)
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DataFileError, match=expected) as caught:
        zero_shot_set(demo, labels, "zs", thresholds=str(path))
    assert str(path) in str(caught.value)


def test_non_finite_json_numbers_are_refused(demo, tmp_path):
    path = tmp_path / "thresholds.json"
    path.write_text('{"audio": [' + ", ".join(["1"] * 24 + ["Infinity"]) + '], "visual": [' + ", ".join(["2"] * 25)
                    + "]}")
    with pytest.raises(DataFileError, match=r"thresholds.json: 'audio' .*found inf at index 24"):
        zero_shot_set(demo, labels_from_folder(demo, pseudo=False), "zs", thresholds=str(path))


def test_the_gated_val_cut_counts_gated_out_positives_as_misses():
    scores = np.array([0.9, 0.8, 0.3])
    truth = np.array([1, 0, 1])
    threshold, f1 = best_threshold(scores, truth)
    assert f1 == pytest.approx(2 * 2 / (3 + 2)) and (scores > threshold).all()
    threshold, f1 = best_threshold(scores, truth, missed=2)  # two positives no cut can reach
    assert f1 == pytest.approx(2 * 2 / (3 + 4))
    # class 0: clip 0 has it in its weak label (true segments at 0.5 and 0.35, false at 0.2); clip 1 does
    # not, and scores 0.4 everywhere: only the gated cut reaches clip 0's weaker true segments
    sim = np.zeros((2, 10, 25))
    sim[0, :, 0] = [0.5, 0.5, 0.5, 0.35, 0.35, 0.2, 0.2, 0.2, 0.2, 0.2]
    sim[1, :, 0] = 0.4
    truth = np.zeros((2, 25, 10), np.uint8)
    truth[0, 0, :5] = 1
    weak = np.zeros((2, 25))
    weak[0, 0] = 1
    ungated, f1_ungated, _ = choose_thresholds(sim, truth)
    gated, f1_gated, fallback = choose_thresholds(sim, truth, weak)
    assert ungated[0] == pytest.approx(0.45) and f1_ungated[0] == pytest.approx(0.75)
    assert gated[0] == pytest.approx(0.275) and f1_gated[0] == 1.0
    assert len(fallback) == 24 and (gated[1:] == gated[0]).all()  # classes without val positives: the mean


def test_val_thresholds_depend_on_val_only_and_logits_on_features_only(demo, tmp_path):
    """Honesty: a test clip's zero-shot logits (before the gate) do not move when its weak label or
    truth changes, nor do val-chosen thresholds when train/test labels or test truth change."""
    labels = labels_from_folder(demo, pseudo=False)
    first = zero_shot_set(demo, labels, "zs", thresholds="val")
    logits = segment_logits(demo, labels, logit_scales(None))
    changed = tmp_path / "changed"
    shutil.copytree(demo, changed)
    test_names = {labels.filenames[i] for i in labels.indices("test")}
    for name in ("AVVP_eval_audio.csv", "AVVP_eval_visual.csv"):
        lines = (changed / name).read_text().splitlines()
        kept = [ln for ln in lines[1:] if ln.split("\t")[0] not in test_names]
        (changed / name).write_text("\n".join([lines[0], *kept, *(f"{n}\t0\t10\tCello" for n in sorted(test_names))])
                                    + "\n")
    for name in ("AVVP_test_pd.csv", "AVVP_train.csv"):
        lines = (changed / name).read_text().splitlines()
        rows = [f"{ln.split(chr(9))[0]}\tBanjo" for ln in lines[1:]]
        (changed / name).write_text("\n".join([lines[0], *rows]) + "\n")
    other = labels_from_folder(changed, pseudo=False)
    assert other.filenames == labels.filenames and not np.array_equal(other.weak, labels.weak)
    second = zero_shot_set(changed, other, "zs", thresholds="val")
    assert second.report["thresholds"] == first.report["thresholds"]
    again = segment_logits(changed, other, logit_scales(None))
    for track in ("audio", "visual"):
        np.testing.assert_array_equal(again[track], logits[track])
    for i in labels.indices("val"):  # val clips: same labels (their weak label and truth did not change)
        vid = labels.video_ids[i]
        assert np.array_equal(first.audio[vid], second.audio[vid]) and np.array_equal(first.visual[vid],
                                                                                      second.visual[vid])
    banjo = 10
    for i in labels.indices("test"):  # test clips: the same logits gated by their new label (Banjo) only
        vid = labels.video_ids[i]
        assert not second.audio[vid][:, [c for c in range(25) if c != banjo]].any()
        np.testing.assert_array_equal(second.visual[vid][:, banjo],
                                      (logits["visual"][i, :, banjo] > first.report["thresholds"]["visual"][banjo]))
