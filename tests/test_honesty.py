"""Honest numbers: nothing a model reads at val/test time depends on a val/test clip's video-level
label, its truth, its weak-gated pseudo-labels or human edits of it (issue 9).

For every model family: a run trained on the demo predicts the val and test clips bit for bit the
same after those are changed in the data folder, and through the label store after manual edits;
and training itself, checkpoint selection on val included, is bit-identical when the val/test
clips' weak labels and pseudo-labels change (only val truth may move the selection).
"""
from __future__ import annotations

import io
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

from annotation.db import open_database
from annotation.demo import build_demo
from annotation.importer import import_llp
from annotation.store import LabelStore
from inference.checkpoint import load_checkpoint
from inference.data import labels_from_folder, labels_from_store
from inference.predict import predict
from inference.priors import compute_priors
from inference.tasks.avvp import AVVPTask
from inference.train import TrainConfig, train

SMALL = {"hidden": 32, "dim_feedforward": 32, "nhead": 1, "num_layers": 1}
MODELS = [("han", "vggish"), ("valor", "vggish"), ("mug", "vggish"), ("link", "clip_clap")]
HELD_OUT = ("val", "test")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("honest") / "data"
    build_demo(data, clips=20, seed=11, videos=False)
    compute_priors(data, labels_from_folder(data, pseudo=False), data / "text/clap_captions.npy",
                   data / "text/clip_captions.npy")
    return data


def tamper(source: Path, dest: Path) -> Path:
    """A copy of the folder whose val/test clips have other weak labels, other (weak-gated)
    pseudo-label files and, with `truth`, other dense truth."""
    shutil.copytree(source, dest)
    labels = labels_from_folder(source, pseudo=False)
    rng = np.random.default_rng(0)
    for name in ("AVVP_val_pd.csv", "AVVP_test_pd.csv"):
        lines = (dest / name).read_text().splitlines()
        (dest / name).write_text("\n".join([lines[0], *(f"{ln.split(chr(9))[0]}\tChainsaw,Banjo" for ln in lines[1:])])
                                 + "\n")
    for i in np.flatnonzero(np.isin(labels.splits, HELD_OUT)):
        for sub in ("CLAP/segment_pseudo_labels", "CLIP/segment_pseudo_labels"):
            np.save(dest / sub / f"{labels.video_ids[i]}.npy", (rng.random((10, 25)) < 0.3).astype(np.int64))
    return dest


def tamper_truth(folder: Path, labels) -> None:
    held_out = {labels.filenames[i] for i in labels.indices("test")}
    for name in ("AVVP_eval_audio.csv", "AVVP_eval_visual.csv"):
        lines = (folder / name).read_text().splitlines()
        kept = [ln for ln in lines[1:] if ln.split("\t")[0] not in held_out]
        (folder / name).write_text("\n".join([lines[0], *kept, *(f"{n}\t2\t7\tCello" for n in sorted(held_out))]) + "\n")


def config_for(model: str, feature_set: str, data: Path) -> TrainConfig:
    text = {"text_audio": str(data / "text/clap_captions.npy"), "text_visual": str(data / "text/clip_captions.npy")}
    model_config = {**SMALL, "feature_set": feature_set, **(text if model in ("mug", "link") else {})}
    return TrainConfig.for_model(model, model_config=model_config, epochs=2, batch_size=4, warmup_epochs=1,
                                 device="cpu", seed=3)


def by_name(labels, split: str, arrays) -> dict[str, tuple]:
    names = [labels.filenames[i] for i in labels.indices(split)]
    return {name: tuple(a[k] for a in arrays) for k, name in enumerate(names)}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        for x, y in zip(a[name], b[name]):
            assert np.array_equal(x, y), name


@pytest.mark.parametrize("model,feature_set", MODELS)
def test_predictions_ignore_held_out_labels_truth_pseudo_labels_and_edits(demo, tmp_path, model, feature_set):
    labels = labels_from_folder(demo, pseudo=True)
    run = tmp_path / "run"
    train(config_for(model, feature_set, demo), AVVPTask(labels, demo, cache=True), run)
    bad = tamper(demo, tmp_path / "tampered")
    tamper_truth(bad, labels)
    bad_labels = labels_from_folder(bad)
    for split in HELD_OUT:
        clean = by_name(labels, split, predict(run, labels, demo, split, device="cpu")[:3])
        assert_same(clean, by_name(bad_labels, split, predict(run, bad_labels, bad, split, device="cpu")[:3]))

    # through the label store: human edits of test clips and re-imported weak labels change nothing
    db = f"sqlite:///{tmp_path / 'store.sqlite'}"
    import_llp(open_database(db), demo)
    store = LabelStore(open_database(db))
    before = labels_from_store(open_database(db, readonly=True), pseudo=False)
    clean = by_name(before, "test", predict(run, before, demo, "test", device="cpu")[:3])
    for clip in store.clips("test") + store.clips("val"):
        for track in ("audio", "visual"):
            store.save_track(clip.id, track, "manual", np.ones((25, 10), np.uint8), 0, "mallory")
    import_llp(open_database(db), bad)  # other weak labels, pseudo-labels and truth of val/test
    after = labels_from_store(open_database(db, readonly=True), pseudo=True)
    assert not after.has_pseudo[after.indices("test")].any()  # manual labels of test clips are never targets
    assert_same(clean, by_name(after, "test", predict(run, after, demo, "test", device="cpu")[:3]))


@pytest.mark.parametrize("model,feature_set", MODELS)
def test_training_and_val_selection_ignore_held_out_labels_and_pseudo_labels(demo, tmp_path, model, feature_set):
    runs = []
    for folder in (demo, tamper(demo, tmp_path / "tampered")):
        labels = labels_from_folder(folder)
        run = tmp_path / f"run-{len(runs)}"
        result = train(config_for(model, feature_set, demo), AVVPTask(labels, folder, cache=True), run)
        runs.append((result, load_checkpoint(run / "checkpoint.pt")))
    (first, a), (second, b) = runs
    assert first.val == second.val and first.test == second.test and first.best_epoch == second.best_epoch
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_han_reads_no_pseudo_label_file_and_valor_needs_them(demo, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo, data)
    for sub in ("CLAP/segment_pseudo_labels", "CLIP/segment_pseudo_labels"):
        for path in (data / sub).glob("*.npy"):
            path.write_bytes(b"garbage that no .npy reader accepts")
    code, _, err = cli(["train", "--data", str(data), "--model", "han", "--epochs", "1", "--device", "cpu",
                        "--model-config", '{"hidden": 32, "dim_feedforward": 32}', "--out", str(tmp_path / "han")])
    assert code == 0, err
    code, _, err = cli(["train", "--data", str(data), "--model", "valor", "--epochs", "1", "--device", "cpu",
                        "--out", str(tmp_path / "valor")])
    assert code == 2 and "segment_pseudo_labels" in err and "not a .npy file" in err
    for sub in ("CLAP/segment_pseudo_labels", "CLIP/segment_pseudo_labels"):
        shutil.rmtree(data / sub)
    code, _, err = cli(["train", "--data", str(data), "--model", "valor", "--epochs", "1", "--device", "cpu",
                        "--out", str(tmp_path / "valor2")])
    assert code == 2 and "none of the 12 train clips has segment pseudo-labels" in err
    shutil.copytree(demo / "CLAP/segment_pseudo_labels", data / "CLAP/segment_pseudo_labels")
    shutil.copytree(demo / "CLIP/segment_pseudo_labels", data / "CLIP/segment_pseudo_labels")
    labels = labels_from_folder(data)
    for vid in labels.video_ids[:3]:
        (data / "CLIP/segment_pseudo_labels" / f"{vid}.npy").unlink()
    code, _, err = cli(["train", "--data", str(data), "--model", "valor", "--epochs", "1", "--device", "cpu",
                        "--model-config", '{"hidden": 32, "dim_feedforward": 32}', "--out", str(tmp_path / "valor3")])
    assert code == 0, err
    assert "note: 3 of 12 train clips have no segment pseudo-labels" in err


def test_models_reading_priors_refuse_without_them_or_without_captions(demo, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo, data)
    common = ["--data", str(data), "--epochs", "1", "--device", "cpu", "--out"]
    code, _, err = cli(["train", "--model", "mug", *common, str(tmp_path / "a")])
    assert code == 2 and "--text-audio" in err and "--random-text" in err
    shutil.rmtree(data / "CLAP/segment_prior_labels")
    code, _, err = cli(["train", "--model", "link", "--random-text", *common, str(tmp_path / "b")])
    assert code == 2 and "avvp-studio prior --data" in err and "audio prior" in err
    code, _, err = cli(["train", "--model", "link", "--random-text", "--model-config", '{"use_plsim": false}',
                        "--feature-set", "clip_clap", "--epochs", "1", "--device", "cpu", "--data", str(data),
                        "--out", str(tmp_path / "c")])
    assert code == 0, err  # without PLSIM nothing reads priors


def cli(argv: list[str]) -> tuple[int, str, str]:
    from app.cli import run_cli

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run_cli(argv)
    return code, out.getvalue(), err.getvalue()
