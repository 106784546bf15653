"""EAR's pseudo-label generator: forward and loss by hand, pre-training through the CLI on a dense-event folder
and on corrected clips of a store, its pseudo-labels for LLP (stage 2), honesty, selection and errors."""
from __future__ import annotations

import copy
import io
import json
import math
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

from annotation.demo import build_demo, read_demo_truth
from annotation.dense_events import DenseClip, write_dense_events
from inference.checkpoint import RunError, load_checkpoint
from inference.data import labels_from_folder
from inference.models import create_model, get_entry
from inference.models.ear_generator import EARGenerator, EARGeneratorConfig
from inference.tasks.dense_events import average_precision, track_scores
from inference.train_config import TrainConfig

TINY = {"hidden": 16, "nhead": 2, "dim_feedforward": 32}
DA, DV = 512, 768  # the demo's CLAP and CLIP widths, so a generator pre-trained here applies to the demo


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from app.cli import run_cli as cli

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli(argv)
    return code, out.getvalue(), err.getvalue()


def make_dense(root: Path, classes: int = 7, seed: int = 0) -> None:
    """A dense-event folder of `classes` classes: 12 train, 4 val, 3 test clips of 5-24 one-second segments,
    features = active class rows + noise, captions = the class rows."""
    rng = np.random.default_rng(seed)
    clips = ([DenseClip(f"tr{i:02d}", "train", int(rng.integers(5, 25)), None) for i in range(12)]
             + [DenseClip(f"va{i:02d}", "val", int(rng.integers(5, 15)), None) for i in range(4)]
             + [DenseClip(f"te{i:02d}", "test", 8, None) for i in range(3)])
    tables = {"CLAP": rng.normal(size=(classes, DA)), "CLIP": rng.normal(size=(classes, DV))}
    labels = {}
    for clip in clips:
        grid = np.zeros((clip.segments, classes), np.uint8)
        for _ in range(2):
            k, a = rng.integers(classes), rng.integers(clip.segments)
            grid[a: rng.integers(a, clip.segments) + 1, k] = 1
        labels[clip.video_id] = grid
    write_dense_events(root, source="test", classes=[f"event {k}" for k in range(classes)], clips=clips,
                       labels=lambda c: {"av": labels[c.video_id]})
    for enc, table in tables.items():
        (root / enc / "features").mkdir(parents=True)
        for clip in clips:
            feat = labels[clip.video_id] @ table + rng.normal(0, 0.5, (clip.segments, table.shape[1]))
            np.save(root / enc / "features" / f"{clip.video_id}.npy", feat.astype(np.float32))
    (root / "text").mkdir()
    np.save(root / "text" / "clap_captions.npy", tables["CLAP"].astype(np.float32))
    np.save(root / "text" / "clip_captions.npy", tables["CLIP"].astype(np.float32))


def pretrain_args(out: Path, *data: str, epochs: int = 3) -> list[str]:
    return ["ear", "pretrain", *data, "--out", str(out), "--epochs", str(epochs), "--batch-size", "8",
            "--warmup-epochs", "1", "--lr", "3e-3", "--device", "cpu", "--model-config", json.dumps(TINY)]


@pytest.fixture(scope="module")
def dense(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dense") / "unav"
    make_dense(root)
    return root


@pytest.fixture(scope="module")
def pretrained(dense, tmp_path_factory) -> tuple[Path, str]:
    run = tmp_path_factory.mktemp("runs") / "gen"
    code, out, err = run_cli([*pretrain_args(run, "--dense", str(dense)), "--events"])
    assert code == 0, err
    return run, out


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "data"
    build_demo(out, clips=14, seed=5, videos=False)  # 8 train, 3 val, 3 test
    return out


def tiny_model(**options) -> EARGenerator:
    torch.manual_seed(0)
    return EARGenerator(EARGeneratorConfig(audio_dim=6, visual_dim=8, **{**TINY, **options}))


def tiny_batch(b: int = 2, t: int = 5, classes: int = 7) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"audio": torch.randn(b, t, 6, generator=g), "visual": torch.randn(b, t, 8, generator=g),
            "text_audio": torch.randn(classes, 6, generator=g), "text_visual": torch.randn(classes, 8, generator=g)}


# ---------------------------------------------------------------- the network and its loss by hand

def test_forward_shapes_asymmetric_products_and_static_probability_by_hand():
    model = tiny_model().eval()
    batch = tiny_batch()
    with torch.no_grad():
        out = model(batch)
    for key in ("audio", "visual", "static_audio", "static_visual", "av_visual_driven", "av_audio_driven", "av"):
        assert out[key].shape == (2, 5, 7) and 0 <= float(out[key].min()) and float(out[key].max()) <= 1
    torch.testing.assert_close(out["av_visual_driven"], out["visual"] * out["static_audio"])  # Eq. 6
    torch.testing.assert_close(out["av_audio_driven"], out["audio"] * out["static_visual"])  # Eq. 7
    torch.testing.assert_close(out["av"], (out["av_visual_driven"] + out["av_audio_driven"]) / 2)
    # Eq. 5 by hand: sigmoid(10 * cos(raw feature, caption) - 5) at the initial scale and bias
    a, t = batch["audio"][1, 3].numpy(), batch["text_audio"][4].numpy()
    cos = a @ t / np.linalg.norm(a) / np.linalg.norm(t)
    assert float(out["static_audio"][1, 3, 4]) == pytest.approx(1 / (1 + math.exp(-(10 * cos - 5))), abs=1e-6)
    # class-agnostic: the same weights read 25 captions as well as 7, per-batch (B, C, d) captions too
    wide = tiny_batch(classes=25)
    assert model(wide)["audio"].shape == (2, 5, 25)
    per_batch = {**batch, "text_audio": batch["text_audio"].expand(2, -1, -1),
                 "text_visual": batch["text_visual"].expand(2, -1, -1)}
    torch.testing.assert_close(model(per_batch)["av"], out["av"])
    assert not any("7" in name for name, _ in model.named_parameters())
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in tiny_model().parameters())


def test_padding_changes_nothing_at_the_real_segments():
    model = tiny_model().eval()
    batch = tiny_batch()
    batch["valid"] = torch.tensor([[True] * 5, [True, True, True, False, False]])
    first = model(batch)
    batch["audio"][1, 3:] += 100.0
    batch["visual"][1, 3:] -= 50.0
    second = model(batch)
    for key in ("audio", "visual", "av"):
        torch.testing.assert_close(first[key][1, :3], second[key][1, :3])
        torch.testing.assert_close(first[key][0], second[key][0])


def test_loss_is_eq8_by_hand_and_migrates_when_no_uni_modal_labels_are_given():
    model = tiny_model()
    outputs = {"av_visual_driven": torch.tensor([[[0.8], [0.4], [0.01]]]),
               "av_audio_driven": torch.tensor([[[0.5], [0.5], [0.99]]]),
               "audio": torch.tensor([[[0.9], [0.2], [0.5]]]), "visual": torch.tensor([[[0.6], [0.3], [0.5]]])}
    batch = {"label_av": torch.tensor([[[1.0], [0.0], [1.0]]]), "label_audio": torch.tensor([[[1.0], [0.0], [1.0]]]),
             "label_visual": torch.tensor([[[1.0], [1.0], [0.0]]]), "valid": torch.tensor([[True, True, False]])}
    total, parts = model.loss(outputs, batch)
    av1 = (-math.log(0.8) - math.log(0.6)) / 2  # the third segment is padding: left out
    av2 = math.log(2)
    audio = (-math.log(0.9) - math.log(0.8)) / 2
    visual = (-math.log(0.6) - math.log(0.3)) / 2
    assert parts == pytest.approx({"av_visual_driven": av1, "av_audio_driven": av2, "audio": audio, "visual": visual})
    assert float(total) == pytest.approx(av1 + av2 + 0.05 * audio + 0.15 * visual, rel=1e-6)

    # no human uni-modal labels: the batch's AV labels are migrated on the raw features (tau 0.98 / 0.95)
    batch = {**tiny_batch(b=2, t=3, classes=2), "label_av": torch.tensor([[[1, 0], [0, 0], [0, 1]],
                                                                          [[0, 0], [0, 0], [0, 0]]]).float()}
    batch["audio"][1, 0] = 3 * batch["audio"][0, 0]  # same direction as a labelled segment: cos 1 > 0.98
    migrated_a, migrated_v = model.uni_modal_targets(batch)
    assert float(migrated_a[1, 0, 0]) == pytest.approx(1.0) and float(migrated_v[1, 0, 0]) == 0.0
    out = model(batch)
    total, _ = model.loss(out, batch)
    explicit, _ = model.loss(out, {**batch, "label_audio": migrated_a, "label_visual": migrated_v})
    assert float(total.detach()) == pytest.approx(float(explicit.detach()))


def test_registry_entry_and_the_papers_recipe():
    entry = get_entry("ear_generator")
    assert entry.task == "dense_events" and entry.model_cls is EARGenerator
    config = TrainConfig.for_model("ear_generator")
    assert (config.optimizer, config.batch_size, config.epochs, config.warmup_epochs, config.scheduler) == (
        "adamw", 64, 80, 10, "warmup_cosine")
    assert (config.lr, config.lr_min) == (1e-4, 1e-5)
    with pytest.raises(ValueError, match="av_combine"):
        create_model("ear_generator", audio_dim=4, visual_dim=4, nhead=2, av_combine="sum")
    with pytest.raises(ValueError, match="divisible"):
        create_model("ear_generator", audio_dim=6, visual_dim=8, nhead=4)


def test_the_pseudo_label_rule_is_strict_and_gated_by_the_weak_label():
    from inference.ear_generate import gate

    prob = np.array([[0.5, 0.51, 0.9, 0.2]], np.float32)
    labels, scores = gate(prob, np.array([1, 1, 0, 1], np.float32), 0.5)
    np.testing.assert_array_equal(labels, [[0, 1, 0, 0]])  # 0.5 is not > 0.5; class 2 is outside the weak label
    np.testing.assert_array_equal(scores, np.array([[0.5, 0.51, 0.0, 0.2]], np.float32))
    assert labels.dtype == np.uint8 and scores.dtype == np.float32


def test_segment_average_precision_and_f1_by_hand():
    # scores 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.7 (neg): AP = 1/2 * 1 + 1/2 * (2/4) = 0.75 (the tie grouped)
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.7]), np.array([1, 0, 1, 0])) == pytest.approx(0.75)
    assert average_precision(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1])) == pytest.approx((1 + 2 / 3) / 2)
    prob = np.array([[0.9, 0.1], [0.6, 0.5], [0.2, 0.4]])
    truth = np.array([[1, 0], [0, 0], [1, 0]])
    s = track_scores(prob, truth, 0.5)  # class 1 has no positive: left out of the mean; 0.5 is not > 0.5
    assert s["classes_scored"] == 1 and s["map"] == pytest.approx((1 + 2 / 3) / 2)
    assert (s["precision"], s["recall"], s["f1"]) == pytest.approx((0.5, 0.5, 0.5)) and "f1_gated" not in s
    # the gate drops the false positive of segment 1 (its clip lacks class 0): 1 TP, 1 prediction, 2 true -> 2/3
    gated = track_scores(prob, truth, 0.5, allowed=np.array([[1, 0], [0, 0], [1, 0]], bool))
    assert gated["f1_gated"] == pytest.approx(2 / 3) and gated["f1"] == s["f1"]
    # the gate of a window is its whole clip's classes (any track, any segment), as an LLP weak label
    from inference.tasks.dense_events import EventClip, WindowDataset

    one = EventClip("a", "val", 3, {"av": np.array([[0, 0], [0, 0], [0, 0]], np.uint8),
                                    "audio": np.array([[0, 0], [0, 0], [1, 0]], np.uint8)})
    two = EventClip("b", "val", 1, {"av": np.array([[0, 1]], np.uint8)})
    windows = WindowDataset([one, two], None, window=2, targets=False)  # windows (a, 0-1), (a, 2), (b, 0)
    np.testing.assert_array_equal(windows.clip_classes(), [[1, 0], [1, 0], [1, 0], [0, 1]])


# ---------------------------------------------------------------- stage 1 through the CLI

def test_pretrain_on_a_dense_event_folder_selects_the_best_val_epoch_and_resumes(pretrained, dense):
    run, out = pretrained
    for name in ("config.json", "train.log", "checkpoint.pt", "last.pt", "metrics.json"):
        assert (run / name).is_file(), name
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["event"] == "start" and events[0]["task"] == "dense_events"
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2, 3] and events[-1]["event"] == "done"
    metrics = json.loads((run / "metrics.json").read_text())
    scores = [h["val"]["score"] for h in metrics["history"]]
    assert scores == [h["val"]["tracks"]["av"]["map"] for h in metrics["history"]]  # dense data: AV mAP
    assert metrics["best_epoch"] == 1 + int(np.argmax(scores))  # the first epoch with the highest val score
    assert metrics["selection"] == "val segment AV mAP"
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == metrics["best_epoch"]
    assert set(metrics["val"]["tracks"]) == {"av"} and metrics["test"]["clips"] == 3
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["model_config"]["audio_dim"] == DA and config["train"]["task_options"] == {"source": "dense", "llp_overlap_kept": 0}
    log = (run / "train.log").read_text()
    assert "uni-modal labels migrated per batch (tau_audio 0.98, tau_visual 0.95)" in log and "7 classes" in log

    resume = ["ear", "pretrain", "--dense", str(dense), "--out", str(run), "--resume"]
    code, _, err = run_cli([*resume, "--window", "5"])
    assert code == 2 and "cannot resume with a different task_options.window (None -> 5)" in err
    code, _, err = run_cli(resume)  # the stored config: nothing left to train, the selection stays
    assert code == 0, err
    assert "resuming after epoch 3" in err and json.loads((run / "metrics.json").read_text())["best_epoch"] == (
        metrics["best_epoch"])


def test_a_generator_of_7_classes_labels_the_demos_25_with_the_weak_label_gate(pretrained, demo):
    from inference.ear_generate import clip_probabilities, ear_pseudo_set, load_generator
    from inference.pseudo_sets import check_pseudo_set

    run, _ = pretrained
    labels = labels_from_folder(demo)
    calls = []
    pset = ear_pseudo_set(run, demo, labels, "ear-test", device="cpu", progress=lambda *a: calls.append(a))
    assert calls[0] == ("EAR generator", 0, 14) and calls[-1] == ("EAR generator", 14, 14)
    check_pseudo_set(pset, labels)  # the contract of pseudo sets: every clip, 0/1, gated, scores in [0, 1]
    assert pset.method == "ear" and set(pset.audio) == set(labels.video_ids)
    model, _ = load_generator(run)
    probs = clip_probabilities(model, demo, labels.video_ids, torch.device("cpu"))
    for vid, weak in zip(labels.video_ids, labels.weak):
        p_a, p_v = probs[vid]
        assert p_a.shape == (10, 25) and p_v.shape == (10, 25)
        allowed = weak.astype(bool)[None, :]
        np.testing.assert_array_equal(pset.audio[vid], (p_a > 0.5) & allowed)  # Eq. 9, strict >
        np.testing.assert_array_equal(pset.visual[vid], (p_v > 0.5) & allowed)
        np.testing.assert_array_equal(pset.scores_audio[vid], np.where(allowed, p_a, 0).astype(np.float32))
    report = pset.report
    assert report["threshold"] == 0.5 and "pseudo_threshold" in report["threshold_how"]
    assert report["generator_data"] == "dense" and [report["counts"][s]["clips"] for s in ("train", "val", "test")] == [8, 3, 3]
    # an explicit threshold at the median probability: more labels than at 0.9, each still inside the weak label
    median = float(np.median([probs[v][0] for v in labels.video_ids]))
    low = ear_pseudo_set(run, demo, labels, "ear-low", device="cpu", threshold=median)
    assert low.report["threshold_how"] == "given (--threshold)" and low.report["threshold"] == median
    high = ear_pseudo_set(run, demo, labels, "ear-high", device="cpu", threshold=0.9999)
    assert sum(a.sum() for a in low.audio.values()) > sum(a.sum() for a in high.audio.values())
    with pytest.raises(RunError, match="expected a probability"):
        ear_pseudo_set(run, demo, labels, "x", device="cpu", threshold=1.5)


def test_probabilities_of_a_val_clip_ignore_its_weak_label_and_truth(pretrained, demo):
    from inference.ear_generate import clip_probabilities, ear_pseudo_set, load_generator

    run, _ = pretrained
    labels = labels_from_folder(demo)
    before = ear_pseudo_set(run, demo, labels, "a", device="cpu")
    i = int(labels.indices("val")[0])
    vid, name = labels.video_ids[i], labels.filenames[i]
    changed = copy.deepcopy(labels)
    changed.weak[i] = 1.0 - changed.weak[i]  # every other class
    changed.truth_audio[name] = 1 - changed.truth_audio[name]
    changed.truth_visual[name] = 1 - changed.truth_visual[name]
    after = ear_pseudo_set(run, demo, changed, "a", device="cpu")
    p_a, p_v = clip_probabilities(load_generator(run)[0], demo, [vid], torch.device("cpu"))[vid]
    close = {"rtol": 1e-5, "atol": 1e-7}  # one clip alone vs in a batch of 14: float rounding only
    np.testing.assert_allclose(after.scores_audio[vid], np.where(changed.weak[i][None, :] > 0, p_a, 0), **close)
    np.testing.assert_allclose(after.scores_visual[vid], np.where(changed.weak[i][None, :] > 0, p_v, 0), **close)
    np.testing.assert_allclose(before.scores_audio[vid], np.where(labels.weak[i][None, :] > 0, p_a, 0), **close)
    both = (labels.weak[i] * changed.weak[i]) > 0  # classes allowed before and after: the same scores
    np.testing.assert_array_equal(before.scores_audio[vid][:, both], after.scores_audio[vid][:, both])
    for other in labels.video_ids:
        if other != vid:
            np.testing.assert_array_equal(before.scores_audio[other], after.scores_audio[other])
            np.testing.assert_array_equal(before.visual[other], after.visual[other])
    truth_only = copy.deepcopy(labels)
    truth_only.truth_visual[name] = 1 - truth_only.truth_visual[name]
    same = ear_pseudo_set(run, demo, truth_only, "a", device="cpu")
    for v in labels.video_ids:
        np.testing.assert_array_equal(same.scores_visual[v], before.scores_visual[v])


def test_pretrain_on_the_train_clips_a_person_corrected(demo, tmp_path):
    from annotation.db import open_database
    from annotation.importer import import_llp
    from annotation.store import LabelStore
    from inference.tasks.dense_events import store_event_data

    db = f"sqlite:///{tmp_path / 'store.sqlite'}"
    engine = open_database(db)
    import_llp(engine, demo)
    store = LabelStore(engine)
    truth_a, truth_v = read_demo_truth(demo)
    train, val = store.clips("train"), store.clips("val")

    def edit(clip, tracks=("audio", "visual")):
        for track in tracks:
            store.save_track(clip.id, track, "manual", (truth_a if track == "audio" else truth_v)[clip.filename], 0,
                             "tester")

    run = tmp_path / "corrected"
    args = pretrain_args(run, "--db", db, "--data", str(demo))
    code, _, err = run_cli(args)
    assert code == 2 and "has 0 corrected train clip(s)" in err and "Clips with manual tracks: 0" in err
    edit(train[0])
    edit(train[1], ("audio",))
    edit(val[0])  # a val clip's edit: never a training or validation label
    code, _, err = run_cli(args)
    assert code == 2 and "has 1 corrected train clip(s)" in err and "BOTH its audio and its visual track" in err
    assert "Clips with manual tracks: 3 (train: 1 both, 1 audio only, 0 visual only; 1 val/test" in err
    for clip in train[2:6]:
        edit(clip)
    data = store_event_data(engine, demo, 0.1, seed=1)
    assert {c.key for c in data.clips} == {c.video_id for c in [train[0], *train[2:6]]}
    assert len(data.split("val")) == 1 and len(data.split("train")) == 4
    clip = data.clips[0]
    record = next(c for c in train if c.video_id == clip.key)
    np.testing.assert_array_equal(clip.labels["audio"], truth_a[record.filename].T)
    np.testing.assert_array_equal(clip.labels["av"], truth_a[record.filename].T & truth_v[record.filename].T)

    code, out, err = run_cli(args)
    assert code == 0, err
    log = (run / "train.log").read_text()
    assert "5 corrected train clips" in log and "4 train, 1 held out for validation (seed 1)" in log
    assert "uni-modal labels from the human tracks" in log
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["val"]["tracks"]) == {"audio", "visual", "av"} and metrics["test"] is None
    val = metrics["val"]["tracks"]
    assert metrics["val"]["score"] == pytest.approx((val["audio"]["f1_gated"] + val["visual"]["f1_gated"]) / 2)
    scores = [h["val"]["score"] for h in metrics["history"]]
    assert metrics["best_epoch"] == 1 + int(np.argmax(scores)) and "gated pseudo-label rule" in metrics["selection"]
    assert "val (best epoch" in out and "test: (no clips in this split)" in out


# ---------------------------------------------------------------- errors

def test_clear_errors_for_missing_files_mismatches_and_misuse(dense, pretrained, demo, tmp_path):
    from inference.ear_generate import ear_pseudo_set

    broken = tmp_path / "broken"
    shutil.copytree(dense, broken)
    (broken / "CLAP" / "features" / "va01.npy").unlink()
    code, _, err = run_cli(pretrain_args(tmp_path / "r1", "--dense", str(broken)))
    assert code == 2 and "va01.npy" in err and f"avvp-studio features --data {broken} --set clip_clap" in err
    shutil.copy(dense / "CLAP" / "features" / "va01.npy", broken / "CLAP" / "features" / "va01.npy")
    np.save(broken / "text" / "clip_captions.npy", np.zeros((6, DV), np.float32))
    code, _, err = run_cli(pretrain_args(tmp_path / "r2", "--dense", str(broken)))
    assert code == 2 and "clip_captions.npy" in err and "6 caption rows, but the labels have 7 classes" in err
    (broken / "text" / "clip_captions.npy").unlink()
    code, _, err = run_cli(pretrain_args(tmp_path / "r3", "--dense", str(broken)))
    assert code == 2 and "missing visual caption embeddings" in err

    code, _, err = run_cli(["ear", "pretrain", "--events", str(dense), "--out", str(tmp_path / "r4")])
    assert code == 2 and f"--dense {dense}" in err
    code, _, err = run_cli(["ear", "pretrain", "--dense", str(dense), "--db", "x.sqlite", "--out", str(tmp_path / "r")])
    assert code == 2 and "either --dense" in err
    code, _, err = run_cli(["ear", "pretrain", "--db", "x.sqlite", "--out", str(tmp_path / "r")])
    assert code == 2 and "--data LLP_DIR" in err

    labels = labels_from_folder(demo)
    with pytest.raises(RunError, match="not a finished EAR generator run"):
        ear_pseudo_set(tmp_path, demo, labels, "x", device="cpu")
    lacking = tmp_path / "demo"
    shutil.copytree(demo, lacking)
    (lacking / "CLIP" / "features" / f"{labels.video_ids[-1]}.npy").unlink()
    with pytest.raises(ValueError, match=f"{labels.video_ids[-1]}.npy: missing visual features .*--set clip_clap"):
        ear_pseudo_set(pretrained[0], lacking, labels, "x", device="cpu")


def test_the_llp_overlap_an_import_kept_is_counted_for_the_run(tmp_path):
    from app.cmd_ear import _llp_overlap_kept

    manifest = {"format": 1, "import": {"llp_check": {"overlap_kept": ["abcdefghijk", "bcdefghijkl"]}}}
    (tmp_path / "dense_events.json").write_text(json.dumps(manifest))
    assert _llp_overlap_kept(str(tmp_path)) == 2
    (tmp_path / "dense_events.json").write_text(json.dumps({"format": 1}))
    assert _llp_overlap_kept(str(tmp_path)) == 0
