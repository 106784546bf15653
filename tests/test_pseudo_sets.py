"""Pseudo-label sets: files written as one change, the store source 'pseudo:<name>', scores, training on a
set (folder and store), the pseudo-label command (zero-shot, ear through its entry point), Ctrl+C, and
honesty (a parser trained on a set ignores val/test weak labels and test truth)."""
from __future__ import annotations

import io
import json
import shutil
import sys
import types
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

from annotation.db import open_database
from annotation.demo import build_demo
from annotation.errors import DataFileError
from annotation.importer import PSEUDO_DIRS, import_llp
from annotation.predictions import run_scores
from annotation.store import LabelStore, validate_source
from inference.checkpoint import load_checkpoint
from inference.data import (
    PSEUDO_SCORE_DIRS,
    AVVPDataset,
    FeatureStore,
    feature_parts,
    labels_from_folder,
    labels_from_store,
)
from inference.metrics import evaluate
from inference.pseudo_sets import (
    PseudoSet,
    PseudoSetError,
    check_pseudo_set,
    list_sets,
    score_pseudo_set,
    store_pseudo_set,
    stored_sets,
    write_pseudo_set,
)
from inference.tasks.avvp import AVVPTask
from inference.train import train
from tests.test_honesty import config_for, tamper, tamper_truth


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pseudo_sets") / "data"
    build_demo(out, clips=40, seed=4, videos=False)
    return out


def cli(argv: list[str]) -> tuple[int, str, str]:
    from app.cli import run_cli

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run_cli(argv)
    return code, out.getvalue(), err.getvalue()


def random_set(labels, name: str = "r", seed: int = 0, scores: bool = False, method: str = "test") -> PseudoSet:
    """Random gated labels (and confidences) of every clip."""
    rng = np.random.default_rng(seed)
    audio, visual, sa, sv = {}, {}, {}, {}
    for vid, weak in zip(labels.video_ids, labels.weak):
        for grids, conf in ((audio, sa), (visual, sv)):
            p = rng.random((10, 25)).astype(np.float32) * (weak > 0)
            grids[vid], conf[vid] = (p > 0.5).astype(np.uint8), p
    return PseudoSet(name, method, audio, visual, sa if scores else None, sv if scores else None, {"note": "random"})


def read_set(root: Path, labels, track: str, sub: dict = PSEUDO_DIRS) -> np.ndarray:
    return np.stack([np.load(root / sub[track] / f"{vid}.npy") for vid in labels.video_ids])


def test_named_sources_are_valid_store_sources():
    assert validate_source("pseudo:zs-1.a") == "pseudo:zs-1.a" and validate_source("pseudo") == "pseudo"
    for bad in ("pseudo:", "pseudo:../x", "pseudo:a/b", "pseudo:-x", "pseudos:x"):
        with pytest.raises(ValueError, match="'pseudo:<set>'"):
            validate_source(bad)


def test_write_read_and_score_a_set(demo, tmp_path):
    labels = labels_from_folder(demo, pseudo=False)
    pset = random_set(labels, scores=True)
    root = write_pseudo_set(demo, pset, out=tmp_path / "set")
    assert root == (tmp_path / "set").resolve() and list_sets(demo) == []
    for track in ("audio", "visual"):
        files = read_set(root, labels, track)
        assert files.dtype == np.int64 and files.shape == (40, 10, 25)
        np.testing.assert_array_equal(files, np.stack([getattr(pset, track)[v] for v in labels.video_ids]))
        confidences = read_set(root, labels, track, PSEUDO_SCORE_DIRS)
        assert confidences.dtype == np.float32
    report = json.loads((root / "pseudo_labels.json").read_text())
    assert report["method"] == "test" and report["clips"] == 40 and report["confidences"] and report["note"] == "random"
    assert report["gating"] == "gated by the weak label (VALOR/EAR protocol)"

    # training reads the train clips' labels and confidences only
    read = labels_from_folder(demo, pseudo_root=root)
    train_idx, held = read.indices("train"), np.flatnonzero(read.splits != "train")
    assert read.has_pseudo[train_idx].all() and not read.has_pseudo[held].any()
    assert not read.pseudo_audio[held].any() and not read.pseudo_score_visual[held].any()
    for i in train_idx:
        vid = read.video_ids[i]
        np.testing.assert_array_equal(read.pseudo_visual[i], pset.visual[vid])
        np.testing.assert_array_equal(read.pseudo_score_audio[i], pset.scores_audio[vid])
    # without confidence files the confidence is the 0/1 label; the folder's own labels by default
    shutil.rmtree(root / PSEUDO_SCORE_DIRS["audio"])
    read = labels_from_folder(demo, pseudo_root=root)
    np.testing.assert_array_equal(read.pseudo_score_audio, read.pseudo_audio)
    own = labels_from_folder(demo)
    assert not np.array_equal(own.pseudo_audio, read.pseudo_audio)
    np.testing.assert_array_equal(own.pseudo_score_visual, own.pseudo_visual)
    with pytest.raises(DataFileError, match="no pseudo-label set here"):
        labels_from_folder(demo, pseudo_root=tmp_path / "none")

    # items: confidences travel with the targets, the audio side from the audio clip (CMRC)
    features = FeatureStore(demo, feature_parts("clip_clap", {"audio": (10, 512), "visual": (10, 768)}))
    dataset = AVVPDataset(read, features, train_idx)
    i, j = int(train_idx[0]), int(train_idx[1])
    item = dataset.item(i, audio_from=j)
    assert torch.equal(item["pseudo_score_audio"], torch.from_numpy(read.pseudo_score_audio[j]))
    assert torch.equal(item["pseudo_score_visual"], torch.from_numpy(read.pseudo_score_visual[i]))
    assert "pseudo_score_audio" not in AVVPDataset(read, features, train_idx, targets=False)[0]

    # scored exactly as predictions; the truth itself as a set scores 100
    scores = score_pseudo_set(pset, labels)
    test = labels.indices("test")
    pred = [np.stack([getattr(pset, t)[labels.video_ids[i]].T for i in test]) for t in ("audio", "visual")]
    truth = [np.stack([getattr(labels, f"truth_{t}")[labels.filenames[i]] for i in test]) for t in ("audio", "visual")]
    assert scores["test"] == evaluate(*pred, *truth)
    zeros = np.zeros((25, 10), np.uint8)
    truth_sets = [{v: getattr(labels, f"truth_{t}").get(f, zeros).T for v, f in zip(labels.video_ids, labels.filenames)}
                  for t in ("audio", "visual")]
    perfect = PseudoSet("t", "truth", *truth_sets)
    assert all(v == 100 for split in ("val", "test") for level in score_pseudo_set(perfect, labels)[split].values()
               for v in level.values())


def test_a_set_that_breaks_the_contract_is_refused(demo):
    labels = labels_from_folder(demo, pseudo=False)
    pset = random_set(labels)
    vid = labels.video_ids[0]
    outside = int(np.flatnonzero(labels.weak[0] == 0)[0])
    pset.visual[vid] = pset.visual[vid].copy()
    pset.visual[vid][3, outside] = 1
    with pytest.raises(PseudoSetError, match=f"visual labels of {vid} hold a class outside the clip's weak label"):
        check_pseudo_set(pset, labels)
    pset = random_set(labels)
    del pset.audio[vid]
    with pytest.raises(PseudoSetError, match="must cover every clip.*1 missing"):
        check_pseudo_set(pset, labels)
    with pytest.raises(PseudoSetError, match="bad pseudo-label set name"):
        check_pseudo_set(random_set(labels, name="../x"), labels)


def test_writes_are_one_change_and_refuse_foreign_folders(demo, tmp_path, monkeypatch):
    from inference import pseudo_sets as sets

    labels = labels_from_folder(demo, pseudo=False)
    data = tmp_path / "data"
    shutil.copytree(demo, data)
    first = random_set(labels, name="a", seed=1, scores=True)
    root = write_pseudo_set(data, first)
    assert root == (data / "pseudo" / "a").resolve() and list_sets(data) == ["a"]
    before = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    def interrupted_after(n: int):
        calls = {"n": 0}
        real = sets.write_new

        def write(path, data_bytes):
            calls["n"] += 1
            if calls["n"] > n:
                raise KeyboardInterrupt
            real(path, data_bytes)
        return write

    second = random_set(labels, name="a", seed=2)
    monkeypatch.setattr(sets, "write_new", interrupted_after(30))
    with pytest.raises(KeyboardInterrupt):
        write_pseudo_set(data, second)
    monkeypatch.undo()
    after = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before  # the previous set, whole; no work folder left

    def failing_store():
        raise RuntimeError("database went away")
    with pytest.raises(RuntimeError):
        write_pseudo_set(data, second, then=failing_store)
    assert {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()} == before

    write_pseudo_set(data, second)  # a set without confidences replaces one with them
    assert not (root / PSEUDO_SCORE_DIRS["audio"]).exists()
    np.testing.assert_array_equal(read_set(root, labels, "audio"),
                                  np.stack([second.audio[v] for v in labels.video_ids]))
    # a new set interrupted leaves no folder; a foreign folder or another method's set is refused
    monkeypatch.setattr(sets, "write_new", interrupted_after(3))
    with pytest.raises(KeyboardInterrupt):
        write_pseudo_set(data, random_set(labels, name="b"))
    monkeypatch.undo()
    assert not (data / "pseudo" / "b").exists()
    with pytest.raises(DataFileError, match="holds no pseudo-label set"):
        write_pseudo_set(data, random_set(labels), out=data)
    with pytest.raises(DataFileError, match="made by method 'test', not 'zero-shot'.*--force"):
        write_pseudo_set(data, random_set(labels, name="a", method="zero-shot"))
    write_pseudo_set(data, random_set(labels, name="a", method="zero-shot"), force=True)


def test_store_a_set_next_to_the_imported_pseudo_labels_and_human_edits(demo, tmp_path):
    labels = labels_from_folder(demo, pseudo=False)
    db = f"sqlite:///{tmp_path / 'store.sqlite'}"
    engine = open_database(db)
    import_llp(engine, demo)
    store = LabelStore(engine)
    train_clip = store.clips("train")[0]
    manual = np.zeros((25, 10), np.uint8)
    manual[0, :3] = 1
    store.save_track(train_clip.id, "audio", "manual", manual, 0, "ann")
    imported = {c.id: store.track(c.id, "visual", "pseudo") for c in store.clips()}

    first = random_set(labels, name="zs", seed=1, scores=True)
    result = store_pseudo_set(engine, first, labels, "tester")
    assert result == {"source": "pseudo:zs", "clips": 40, "added": 80, "updated": 0, "removed": 0, "scores": 40}
    assert stored_sets(engine) == ["zs"]
    for clip in store.clips():
        state = store.track(clip.id, "visual", "pseudo:zs")
        assert state.version == 1 and state.updated_by == "tester"
        np.testing.assert_array_equal(state.grid, first.visual[clip.video_id].T)
    scores = run_scores(engine, "pseudo:zs")
    np.testing.assert_allclose(scores[train_clip.id].audio, first.scores_audio[train_clip.video_id].T)

    # training labels from the store: manual where a human edited, else the chosen set, with its confidences
    read = labels_from_store(open_database(db, readonly=True), pseudo_source="pseudo:zs")
    i = read.filenames.index(train_clip.filename)
    np.testing.assert_array_equal(read.pseudo_audio[i], manual.T)
    np.testing.assert_array_equal(read.pseudo_score_audio[i], manual.T)  # a human's grid is its own confidence
    np.testing.assert_array_equal(read.pseudo_visual[i], first.visual[train_clip.video_id])
    np.testing.assert_allclose(read.pseudo_score_visual[i], first.scores_visual[train_clip.video_id])
    assert not read.has_pseudo[np.flatnonzero(read.splits != "train")].any()
    default = labels_from_store(open_database(db, readonly=True))
    np.testing.assert_array_equal(default.pseudo_visual[i], imported[train_clip.id].grid.T)
    np.testing.assert_array_equal(default.pseudo_score_visual, default.pseudo_visual)

    # re-running replaces: changed grids bump their version, unchanged ones stay; others untouched
    second = random_set(labels, name="zs", seed=1)
    changed_vid = labels.video_ids[5]
    second.visual[changed_vid] = np.zeros((10, 25), np.uint8)
    result = store_pseudo_set(engine, second, labels, "tester")
    assert result["added"] == 0 and result["updated"] == int(first.visual[changed_vid].any()) and result["scores"] == 0
    assert run_scores(engine, "pseudo:zs") == {}
    for clip in store.clips():
        state = store.track(clip.id, "visual", "pseudo:zs")
        assert state.version == (2 if clip.video_id == changed_vid and first.visual[changed_vid].any() else 1)
        kept = store.track(clip.id, "visual", "pseudo")
        assert kept.version == imported[clip.id].version and np.array_equal(kept.grid, imported[clip.id].grid)
    assert store.track(train_clip.id, "audio", "manual").version == 1
    smaller = random_set(labels, name="zs", seed=1)
    for vid in labels.video_ids[:2]:
        del smaller.audio[vid], smaller.visual[vid]
    assert store_pseudo_set(engine, smaller, labels, "tester")["removed"] == 4


def test_pseudo_label_command_zero_shot_then_train_from_folder_and_store(demo, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo, data)
    db = f"sqlite:///{tmp_path / 'store.sqlite'}"
    import_llp(open_database(db), data)
    code, out, err = cli(["pseudo-label", "--data", str(data), "--method", "zero-shot", "--thresholds", "val",
                          "--name", "zs", "--db", db, "--annotator", "ann"])
    assert code == 0, err
    root = data / "pseudo" / "zs"
    assert "40 clips written" in out and "train: 24 clips" in out and "stored as label source 'pseudo:zs'" in out
    assert "gated by the weak label (VALOR/EAR protocol)" in out and "val (val chose the thresholds: optimistic)" in out
    assert out.count("Type@AV") == 2 and "logit scale: default 1.0" in out
    report = json.loads((root / "pseudo_labels.json").read_text())
    assert report["method"] == "zero-shot" and report["threshold_source"] == "val" and report["stored"]["clips"] == 40
    assert set(report["quality"]) == {"val", "test"} and report["quality"]["test"]["segment"]["type"] > 50
    store = LabelStore(open_database(db))
    labels = labels_from_folder(data, pseudo=False)
    for clip in store.clips():
        np.testing.assert_array_equal(store.track(clip.id, "audio", "pseudo:zs").grid,
                                      np.load(root / PSEUDO_DIRS["audio"] / f"{clip.video_id}.npy").T)
    assert len(store.clips()) == len(labels)

    common = ["--model", "valor", "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--model-config",
              '{"hidden": 32, "dim_feedforward": 32}']
    code, out, err = cli(["train", "--data", str(data), "--pseudo", "zs", *common, "--out", str(tmp_path / "a")])
    assert code == 0, err
    assert "Type@AV" in out
    code, out, err = cli(["train", "--data", str(data), "--db", db, "--pseudo", "zs", *common,
                          "--out", str(tmp_path / "b")])
    assert code == 0, err
    a, b = (load_checkpoint(tmp_path / r / "checkpoint.pt")["state_dict"] for r in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same labels from the folder and from the store
    code, _, err = cli(["train", "--data", str(data), "--pseudo", "nope", *common, "--out", str(tmp_path / "c")])
    assert code == 2 and "no pseudo-label set 'nope'" in err and "sets there: zs" in err
    code, _, err = cli(["train", "--data", str(data), "--db", db, "--pseudo", "nope", *common,
                        "--out", str(tmp_path / "c")])
    assert code == 2 and "in the database" in err and "sets there: zs" in err
    code, _, err = cli(["train", "--data", str(data), "--pseudo", "zs", "--model", "han", "--epochs", "1",
                        "--out", str(tmp_path / "d")])
    assert code == 2 and "video-level labels only" in err

    # --events: JSON lines for the window; a second run replaces the set (same method)
    code, out, err = cli(["pseudo-label", "--data", str(data), "--method", "zero-shot", "--thresholds", "val",
                          "--name", "zs", "--db", db, "--events"])
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0] == {"event": "start", "method": "zero-shot", "name": "zs", "clips": 40}
    assert {e["event"] for e in events[1:-1]} == {"progress"} and all({"stage", "done", "total"} <= set(e)
                                                                    for e in events[1:-1])
    done = events[-1]
    assert done["event"] == "done" and done["written"] == 40 and done["stored"] == 40
    assert done["out"] == str(root.resolve()) and set(done["quality"]) == {"val", "test"}
    assert "Type@AV" in err
    code, out, err = cli(["pseudo-label", "--data", str(data), "--method", "zero-shot", "--name", "zs", "--json"])
    assert code == 0, err
    assert json.loads(out)["threshold_source"] == "val"  # auto: no captions.json, so val
    code, out, err = cli(["pseudo-label", "--data", str(data), "--method", "zero-shot", "--thresholds", "valor",
                          "--name", "zs", "--events"])
    assert code == 2 and "captions.json" in err and "--thresholds val" in err
    assert json.loads(out.splitlines()[-1])["event"] == "error"
    code, _, err = cli(["pseudo-label", "--data", str(data), "--method", "zero-shot", "--name", "a/b"])
    assert code == 2 and "--name" in err
    code, _, err = cli(["pseudo-label", "--data", str(data), "--method", "ear", "--name", "e"])
    assert code == 2 and "--generator" in err


def fake_ear_module(calls: list) -> types.ModuleType:
    from inference.pseudo_sets import PseudoSet

    def ear_pseudo_set(run_dir, data_dir, labels, name, device="auto", threshold=None, progress=None):
        calls.append((run_dir, device, threshold))
        rng = np.random.default_rng(7)
        scores = {t: {v: (rng.random((10, 25)) * (w > 0)).astype(np.float32) for v, w in zip(labels.video_ids,
                                                                                                labels.weak)}
                  for t in ("audio", "visual")}
        if progress is not None:
            progress("generator", len(labels), len(labels))
        cut = 0.5 if threshold is None else threshold
        return PseudoSet(name, "ear", {v: (s > cut).astype(np.uint8) for v, s in scores["audio"].items()},
                         {v: (s > cut).astype(np.uint8) for v, s in scores["visual"].items()},
                         scores["audio"], scores["visual"], {"threshold": cut})

    module = types.ModuleType("inference.ear_generate")
    module.ear_pseudo_set = ear_pseudo_set
    return module


def test_ear_branch_ctrl_c_and_replacing_another_method(demo, tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(demo, data)
    db = f"sqlite:///{tmp_path / 'store.sqlite'}"
    import_llp(open_database(db), data)
    calls: list = []
    monkeypatch.setitem(sys.modules, "inference.ear_generate", fake_ear_module(calls))
    code, out, err = cli(["pseudo-label", "--data", str(data), "--method", "ear", "--name", "ear", "--generator",
                          str(tmp_path / "gen"), "--threshold", "0.7", "--device", "cpu", "--db", db])
    assert code == 0, err
    assert calls == [(str(tmp_path / "gen"), "cpu", 0.7)]
    root = data / "pseudo" / "ear"
    assert (root / PSEUDO_SCORE_DIRS["visual"]).is_dir() and "pseudo-label set ear (ear)" in out
    labels = labels_from_folder(data, pseudo_root=root)
    from_store = labels_from_store(open_database(db, readonly=True), pseudo_source="pseudo:ear")
    train_idx = labels.indices("train")
    np.testing.assert_allclose(from_store.pseudo_score_visual[train_idx], labels.pseudo_score_visual[train_idx],
                               atol=1e-7)
    assert (labels.pseudo_score_visual[train_idx] > 0).any() and (labels.pseudo_score_visual[train_idx] < 1).any()
    code, _, err = cli(["pseudo-label", "--data", str(data), "--method", "ear", "--name", "ear", "--thresholds", "val",
                        "--generator", "g"])
    assert code == 2 and "--thresholds: only for --method zero-shot" in err

    # another method under the same name: refused before any work, unless --force
    code, _, err = cli(["pseudo-label", "--data", str(data), "--method", "zero-shot", "--name", "ear"])
    assert code == 2 and "made by method 'ear'" in err and "--force" in err

    # Ctrl+C while storing: nothing written, nothing stored, exit 130
    from annotation import importer

    real = importer.upsert_tracks
    seen = {"n": 0}

    def upsert_then_interrupt(*args, **kwargs):
        seen["n"] += 1
        result = real(*args, **kwargs)
        if seen["n"] == 2:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr("inference.pseudo_sets.upsert_tracks", upsert_then_interrupt)
    files = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    versions = {c.id: LabelStore(open_database(db)).versions(c.id) for c in LabelStore(open_database(db)).clips()}
    code, out, err = cli(["pseudo-label", "--data", str(data), "--method", "zero-shot", "--name", "ear", "--force",
                          "--db", db, "--events"])
    assert code == 130 and "nothing was written or stored" in err
    assert json.loads(out.splitlines()[-1]) == {"event": "error",
                                                "message": "stopped (Ctrl+C): nothing was written or stored"}
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == files
    store = LabelStore(open_database(db))
    assert {c.id: store.versions(c.id) for c in store.clips()} == versions
    assert len(run_scores(open_database(db), "pseudo:ear")) == 40
    monkeypatch.setattr("inference.pseudo_sets.upsert_tracks", real)
    code, out, err = cli(["pseudo-label", "--data", str(data), "--method", "zero-shot", "--name", "ear", "--force",
                          "--db", db])
    assert code == 0, err
    assert not (root / PSEUDO_SCORE_DIRS["visual"]).exists() and run_scores(open_database(db), "pseudo:ear") == {}


def tamper_test_only(source: Path, dest: Path) -> Path:
    """A copy whose test clips have another weak label and (with tamper_truth) other truth."""
    shutil.copytree(source, dest)
    lines = (dest / "AVVP_test_pd.csv").read_text().splitlines()
    (dest / "AVVP_test_pd.csv").write_text("\n".join([lines[0], *(f"{ln.split(chr(9))[0]}\tChainsaw,Banjo"
                                                                   for ln in lines[1:])]) + "\n")
    return dest


def make_set(folder: Path, work: Path, thresholds: str) -> Path:
    shutil.copytree(folder, work)
    code, _, err = cli(["pseudo-label", "--data", str(work), "--method", "zero-shot", "--thresholds", thresholds,
                        "--name", "zs"])
    assert code == 0, err
    return work


def test_a_parser_trained_on_a_set_ignores_held_out_labels_and_truth(demo, tmp_path):
    """Fixed thresholds: val/test weak labels (and their pseudo-label files) and test truth change, the
    parser trained on the set (train --pseudo's labels) does not."""
    clean = labels_from_folder(demo, pseudo=False)
    thresholds = tmp_path / "t.json"
    thresholds.write_text(json.dumps({"audio": [0.15] * 25, "visual": [0.1] * 25}))
    bad = tamper(demo, tmp_path / "tampered")
    tamper_truth(bad, clean)
    runs = []
    for k, folder in enumerate((demo, bad)):
        work = make_set(folder, tmp_path / f"copy-{k}", str(thresholds))
        labels = labels_from_folder(work, pseudo_root=work / "pseudo" / "zs")
        assert labels.has_pseudo[labels.indices("train")].all()
        run = tmp_path / f"run-{k}"
        result = train(config_for("valor", "clip_clap", work), AVVPTask(labels, work, cache=True), run)
        runs.append((result, load_checkpoint(run / "checkpoint.pt")))
    (first, a), (second, b) = runs
    assert first.val == second.val and first.best_epoch == second.best_epoch
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert first.test != second.test  # the test truth did change (and only the scores on it moved)


def test_val_chosen_thresholds_give_train_labels_that_ignore_test_labels_and_truth(demo, tmp_path):
    """Val-chosen thresholds read the val weak labels and truth (the gated cut), nothing of test: with
    other test weak labels and test truth the train clips' labels, which are all a parser trained on the
    set reads of it (previous test), are the same files."""
    clean = labels_from_folder(demo, pseudo=False)
    bad = tamper_test_only(demo, tmp_path / "tampered")
    tamper_truth(bad, clean)
    first, second = (make_set(folder, tmp_path / f"copy-{k}", "val") for k, folder in enumerate((demo, bad)))
    reports = [json.loads((w / "pseudo" / "zs" / "pseudo_labels.json").read_text()) for w in (first, second)]
    assert reports[0]["thresholds"] == reports[1]["thresholds"]
    assert reports[0]["quality"]["val"] == reports[1]["quality"]["val"]
    assert reports[0]["quality"]["test"] != reports[1]["quality"]["test"]
    for i in clean.indices("train"):
        for sub in PSEUDO_DIRS.values():
            name = f"{clean.video_ids[i]}.npy"
            assert (first / "pseudo/zs" / sub / name).read_bytes() == (second / "pseudo/zs" / sub / name).read_bytes()
    a, b = (labels_from_folder(w, pseudo_root=w / "pseudo" / "zs") for w in (first, second))
    np.testing.assert_array_equal(a.pseudo_audio, b.pseudo_audio)
    np.testing.assert_array_equal(a.pseudo_visual, b.pseudo_visual)
