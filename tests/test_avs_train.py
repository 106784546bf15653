"""`avvp-studio avs train / predict / eval / import / export / demo` on the synthetic demo, and the honesty
of the AVS task: predictions and the val-selected checkpoint never depend on val/test masks."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from annotation.avs_store import avs_clips, decide, load_masks, store_mask_predictions
from annotation.avsbench import read_avsbench
from annotation.db import open_database
from annotation.runs import list_runs
from app.cli import run_cli

TINY = ["--config", "tiny", "--image-size", "32", "--device", "cpu", "--batch-size", "4", "--seed", "3"]


@pytest.fixture(scope="module")
def s4(tmp_path_factory):
    root = tmp_path_factory.mktemp("avs") / "s4"
    assert run_cli(["avs", "demo", "--out", str(root), "--subset", "s4", "--clips", "10", "--size", "32"]) == 0
    return root


@pytest.fixture(scope="module")
def trained(s4, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "r"
    assert run_cli(["avs", "train", "--data", str(s4), "--subset", "s4", "--model", "avs_mamba", "--epochs", "2",
                    "--out", str(run), *TINY]) == 0
    return run


def _state(run):
    return torch.load(run / "checkpoint.pt", weights_only=True)


def test_train_writes_a_val_selected_run_with_avsbench_numbers(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["selection"] == "val mIoU"
    for split in ("val", "test"):
        assert set(metrics[split]) >= {"miou", "fscore", "group_videos"} and metrics[split]["group_videos"] == 1
        assert 0 <= metrics[split]["miou"] <= 100
    assert _state(trained)["task"] == "avs"


def test_predict_writes_the_gt_layout_and_eval_reproduces_the_run(trained, s4, tmp_path, capsys):
    pred = tmp_path / "pred"
    assert run_cli(["avs", "predict", "--run", str(trained), "--data", str(s4), "--subset", "s4", "--split", "test",
                    "--out", str(pred), "--device", "cpu"]) == 0
    data = read_avsbench(s4, "s4")
    clip = data.split("test")[0]
    files = sorted((pred / clip.category / clip.name).iterdir())
    assert [f.name for f in files] == [f"{clip.name}_{k}.png" for k in range(1, 6)]
    assert cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    capsys.readouterr()
    assert run_cli(["avs", "eval", "--data", str(s4), "--subset", "s4", "--split", "test", "--pred", str(pred),
                    "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    test = json.loads((trained / "metrics.json").read_text())["test"]
    assert scores["group_videos"] == 1 and scores["videos"] == 2 and scores["frames"] == 10
    assert scores["miou"] == pytest.approx(test["miou"], abs=0.5)  # same model; 8-bit files
    assert scores["fscore"] == pytest.approx(test["fscore"], abs=1.0)
    assert run_cli(["avs", "eval", "--data", str(s4), "--subset", "s4", "--split", "test", "--pred", str(pred),
                    "--group-videos", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["group_videos"] == 2


def test_predictions_and_selection_ignore_val_and_test_masks(s4, trained, tmp_path):
    """Changing every val/test ground-truth mask changes no prediction; changing test masks changes neither the
    selected epoch nor the selected weights (selection is on val)."""
    def flipped(name: str, splits: tuple[str, ...]):
        copy = tmp_path / name / "s4"
        shutil.copytree(s4, copy)
        for clip in read_avsbench(copy, "s4").clips:
            if clip.split in splits:
                for mask in clip.masks:
                    cv2.imwrite(str(mask), 255 - cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE))
        return copy

    every, altered = flipped("every", ("val", "test")), flipped("test", ("test",))
    for data, out in ((s4, tmp_path / "a"), (every, tmp_path / "b")):
        assert run_cli(["avs", "predict", "--run", str(trained), "--data", str(data), "--subset", "s4", "--out",
                        str(out), "--device", "cpu"]) == 0
    for a in sorted((tmp_path / "a").rglob("*.png")):
        assert np.array_equal(cv2.imread(str(a), 0), cv2.imread(str(tmp_path / "b" / a.relative_to(tmp_path / "a")), 0))
    again = tmp_path / "again"
    assert run_cli(["avs", "train", "--data", str(altered), "--subset", "s4", "--model", "avs_mamba", "--epochs", "2",
                    "--out", str(again), *TINY]) == 0
    first, second = _state(trained), _state(again)
    assert first["epoch"] == second["epoch"]
    assert all(torch.equal(first["state_dict"][k], second["state_dict"][k]) for k in first["state_dict"])
    assert json.loads((again / "metrics.json").read_text())["test"] != json.loads(
        (trained / "metrics.json").read_text())["test"]  # the changed masks were read, for scoring only


def test_database_run_records_predictions_and_learns_accepted_train_masks(s4, tmp_path, capsys):
    db = str(tmp_path / "db.sqlite")
    assert run_cli(["avs", "import", str(s4), "--subset", "s4", "--db", db]) == 0
    engine = open_database(db)
    train_clip = avs_clips(engine, "s4", "train")[0]
    val_clip = avs_clips(engine, "s4", "val")[0]
    probs = np.full((5, 32, 32), 0.9, np.float32)
    store_mask_predictions(engine, "seed", "s4", {train_clip.name: probs, val_clip.name: probs}, "probability")
    decide(engine, train_clip.id, 2, "accepted", "prediction:seed", 0, "ann")  # a train frame without truth
    decide(engine, val_clip.id, 2, "accepted", "prediction:seed", 0, "ann")  # never read by training
    run = tmp_path / "run"
    assert run_cli(["avs", "train", "--data", str(s4), "--subset", "s4", "--model", "avs_mamba", "--epochs", "1",
                    "--out", str(run), "--db", db, "--name", "tiny1", "--predict", "test", *TINY]) == 0
    log = (run / "train.log").read_text()
    assert "1 accepted predicted masks of 1 train clips added as ground truth" in log
    row = next(r for r in list_runs(engine) if r.name == "tiny1")
    assert row.status == "finished" and row.task == "avs"
    capsys.readouterr()
    assert run_cli(["runs", "--db", db]) == 0
    assert "tiny1" in (listed := capsys.readouterr().out) and "mIoU" in listed
    test_clip = avs_clips(engine, "s4", "test")[0]
    stored = load_masks(engine, test_clip.id)["prediction:tiny1"]
    assert sorted(stored) == [0, 1, 2, 3, 4] and stored[0].kind == "probability"
    out = tmp_path / "export"
    assert run_cli(["avs", "export", "--subset", "s4", "--source", "prediction:tiny1", "--split", "test", "--out",
                    str(out), "--db", db]) == 0
    assert (out / "test" / test_clip.category / test_clip.name / f"{test_clip.name}_1.png").exists()


def test_refusals_are_one_clear_line(s4, trained, tmp_path, capsys):
    assert run_cli(["avs", "train", "--data", str(s4), "--subset", "s4", "--model", "han", "--out",
                    str(tmp_path / "x"), "--epochs", "1"]) == 2
    assert "--model han is an AVVP model; the audio-visual segmentation models are avs_mamba, avs_visual_only" in capsys.readouterr().err
    assert run_cli(["avs", "predict", "--run", str(trained), "--data", str(s4), "--subset", "avss", "--out",
                    str(tmp_path / "p")]) == 2
    assert "trained for S4/MS3 masks, not AVSS" in capsys.readouterr().err
    assert run_cli(["avs", "eval", "--data", str(s4), "--subset", "s4", "--pred", str(tmp_path / "none")]) == 2
    assert "none: no such folder" in capsys.readouterr().err
    pred = tmp_path / "pred" / "test"
    assert run_cli(["avs", "predict", "--run", str(trained), "--data", str(s4), "--subset", "s4", "--out", str(pred),
                    "--device", "cpu"]) == 0
    next(pred.rglob("*_3.png")).unlink()
    capsys.readouterr()
    assert run_cli(["avs", "eval", "--data", str(s4), "--subset", "s4", "--pred", str(pred)]) == 2
    assert "missing predicted mask (1 of the 10 masks of the test split are missing)" in capsys.readouterr().err
    assert run_cli(["avs", "eval", "--data", str(s4), "--subset", "s4", "--pred", str(pred.parent)]) == 2
    assert f"one level down: --pred {pred}" in capsys.readouterr().err
    assert run_cli(["avs", "import", str(s4), "--subset", "ms3", "--db", str(tmp_path / "x.sqlite")]) == 2
    assert "it holds AVSBench S4: --subset s4?" in capsys.readouterr().err
    assert not (tmp_path / "x.sqlite").exists()  # refused before a database was made
    db = str(tmp_path / "db.sqlite")
    assert run_cli(["avs", "import", str(s4), "--subset", "s4", "--db", db]) == 0
    capsys.readouterr()
    assert run_cli(["avs", "export", "--subset", "s4", "--source", "prediction:nosuch", "--out", str(tmp_path / "e"),
                    "--db", db]) == 2
    assert "has no S4 masks of it; it has truth" in capsys.readouterr().err
    assert run_cli(["avs", "train", "--data", str(s4), "--subset", "s4", "--like", str(trained), "--config", "full",
                    "--out", str(tmp_path / "z")]) == 2
    assert "holds another model: --config full (it has tiny)" in capsys.readouterr().err
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"not a checkpoint")
    assert run_cli(["avs", "train", "--data", str(s4), "--subset", "s4", "--model", "avs_mamba", "--epochs", "1",
                    "--out", str(tmp_path / "y"), "--backbone-weights", str(bad), *TINY]) == 2
    assert "weights.pt" in capsys.readouterr().err


def test_pretrained_backbone_is_loaded_and_frozen_as_the_code_does(s4, tmp_path):
    """With --backbone-weights the S4 recipe's 20-epoch freeze holds (the trainer calls set_epoch); without
    weights files both freezes are dropped and train.log says so."""
    from inference.models import create_model

    backbone = create_model("avs_mamba", size="tiny", backbone="resnet50").visual_backbone
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(0.01)
    weights = tmp_path / "resnet50-tiny.pth"
    torch.save(backbone.state_dict(), weights)
    run = tmp_path / "frozen"
    assert run_cli(["avs", "train", "--data", str(s4), "--subset", "s4", "--model", "avs_mamba", "--epochs", "1",
                    "--backbone", "resnet50", "--backbone-weights", str(weights), "--out", str(run), *TINY]) == 0
    state = _state(run)["state_dict"]
    for key, value in backbone.named_parameters():  # BN running statistics move, as in the code's freeze
        assert torch.equal(state[f"visual_backbone.{key}"], value), key
    assert json.loads((run / "config.json").read_text())["train"]["model_config"]["visual_frozen_epochs"] == 20
    log = (run / "train.log").read_text()
    assert "visual_frozen_epochs 20 -> 0" not in log and "freeze_audio_backbone -> false" in log


def test_subset_recipes_and_dropped_freezes(trained):
    config = json.loads((trained / "config.json").read_text())["train"]
    assert config["optimizer"] == "adamw" and config["weight_decay"] == 0.01 and config["lr"] == 2e-5
    assert config["model_config"]["visual_frozen_epochs"] == 0  # no weights: dropped, and said
    assert "visual_frozen_epochs 20 -> 0" in (trained / "train.log").read_text()
    from inference.models import model_recipe

    assert (model_recipe("avs_mamba", "ms3")["epochs"], model_recipe("avs_mamba", "avss")["batch_size"]) == (120, 6)


def test_avss_trains_predicts_palette_masks_and_scores_them(tmp_path, capsys):
    root = tmp_path / "avss"
    assert run_cli(["avs", "demo", "--out", str(root), "--subset", "avss", "--clips", "8", "--size", "32"]) == 0
    run, pred = tmp_path / "run", tmp_path / "pred"
    assert run_cli(["avs", "train", "--data", str(root), "--subset", "avss", "--model", "avs_mamba", "--epochs", "1",
                    "--out", str(run), *TINY]) == 0
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert test["size"] == [32, 32] and 0 <= test["miou"] <= 100
    assert run_cli(["avs", "predict", "--run", str(run), "--data", str(root), "--subset", "avss", "--out", str(pred),
                    "--device", "cpu"]) == 0
    clip = read_avsbench(root, "avss").split("test")[0]
    written = sorted(p.name for p in (pred / clip.category / clip.name).iterdir())
    assert written == sorted(f"{k}.png" for k in range(len(clip.frames)))
    assert cv2.imread(str(pred / clip.category / clip.name / "0.png")).shape == (32, 32, 3)  # palette colours
    capsys.readouterr()
    assert run_cli(["avs", "eval", "--data", str(root), "--subset", "avss", "--pred", str(pred), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert "zero frames" in scores["note"] and scores["unknown_colour_pixels"] == 0
