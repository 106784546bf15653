"""HAN, the model registry, training (checkpoints, resume, stop), prediction + eval, the CLI and DDP."""
from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import threading
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

from annotation.demo import build_demo
from inference.callbacks import TrainCallback
from inference.data import FEATURE_SETS, AVVPDataset, FeatureStore, collate_items, feature_parts, labels_from_folder
from inference.models import UnknownModelError, check_outputs, create_model, model_names, register_model
from inference.models.base import segment_bce
from inference.models.han import HAN, VALOR, HANConfig, VALORConfig
from inference.checkpoint import load_checkpoint
from inference.predict import predict, write_predictions
from inference.tasks.avvp import AVVPTask
from inference.train import RunDirError, TrainConfig, train
from tests.synthetic import overfit, segment_f1, synthetic_batch

REPO = Path(__file__).resolve().parents[1]
SMALL = {"hidden": 64, "dim_feedforward": 64}  # fast runs; the full-size network is tested for shapes


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "data"
    build_demo(out, clips=14, seed=5)  # 8 train, 3 val, 3 test (ids with '_' and '-')
    return out


@pytest.fixture(scope="module")
def data(demo):
    labels = labels_from_folder(demo)
    return labels, AVVPTask(labels, demo, cache=True)


def small_config(model: str = "han", task_options: dict | None = None, **overrides) -> TrainConfig:
    return TrainConfig.for_model(model, model_config=dict(SMALL), task_options=task_options, batch_size=4,
                                 device="cpu", **{"epochs": 3, **overrides})


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from app.cli import run_cli as cli

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli(argv)
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------- HAN and the registry

@pytest.mark.parametrize("feature_set", ["vggish", "clip_clap"])
def test_han_follows_the_published_network_and_the_contract(demo, feature_set):
    labels = labels_from_folder(demo)
    features = FeatureStore(demo, feature_parts(feature_set, FEATURE_SETS[feature_set].shapes))
    dataset = AVVPDataset(labels, features, labels.indices("train")[:3])
    batch = collate_items([dataset[i] for i in range(3)])
    torch.manual_seed(0)
    model = create_model("han", feature_set=feature_set)
    vggish = feature_set == "vggish"
    assert (model.fc_a.in_features, model.fc_v.in_features) == ((128, 2048) if vggish else (512, 768))
    assert model.fc_a.out_features == model.fc_v.out_features == 512
    assert model.pool == (8 if vggish else 1)
    assert hasattr(model, "fc_fusion") == vggish and (not vggish or model.fc_fusion.in_features == 1024)
    (layer,) = model.hat_encoder.layers  # one hybrid-attention layer ...
    assert layer.self_attn.num_heads == 1 and layer.linear1.out_features == 512 and layer.dropout.p == 0.1
    calls = []
    layer.register_forward_hook(lambda m, args, out: calls.append(args[0].shape))
    out = model(batch)
    assert len(calls) == 2  # ... applied to both tracks with the same weights
    check_outputs(out, 3)
    assert out["logits_audio"].shape == (3, 10, 25) and out["feat_visual"].shape == (3, 10, 512)
    # attentive MMIL pooling as published: softmax over time x softmax over modalities x sigmoid
    x, head = torch.stack([out["feat_audio"], out["feat_visual"]], dim=2), model.head
    weighted = torch.softmax(head.fc_frame_att(x), dim=1) * torch.sigmoid(head.fc_prob(x))
    torch.testing.assert_close(out["global"], (weighted * torch.softmax(head.fc_av_att(x), dim=2)).sum((1, 2)))
    torch.testing.assert_close(out["audio"], weighted[:, :, 0].sum(1))
    total, parts = model.loss(out, batch)  # HAN's own objective: video-level labels only
    assert total.ndim == 0 and math.isfinite(total.item())
    assert set(parts) == {"video", "audio", "visual"}
    y, bce = batch["label"], torch.nn.functional.binary_cross_entropy
    expected = bce(out["global"], y) + bce(out["audio"], y) + bce(out["visual"], 0.9 * y + 0.05)
    torch.testing.assert_close(total, expected)
    total.backward()
    assert all(p.grad is not None for p in model.parameters())
    valor = create_model("valor", feature_set=feature_set)  # the same network on segment pseudo-labels
    assert set(valor.loss(valor(batch), batch)[1]) == {"video", "segment_audio", "segment_visual"}


def test_han_pools_eight_frames_after_projection():
    torch.manual_seed(0)
    model = HAN(HANConfig(**SMALL)).eval()
    batch = synthetic_batch("vggish", clips=2)
    batch["visual"] = torch.randn(2, 80, 2048)
    audio, visual = model.embed(batch)
    pooled = model.fc_v(batch["visual"]).reshape(2, 10, 8, 64).mean(2)
    expected = model.fc_fusion(torch.cat([pooled, model.fc_st(batch["motion"])], -1))
    torch.testing.assert_close(visual, expected)


def test_registry_names_errors_and_config_round_trip():
    assert "han" in model_names()
    with pytest.raises(UnknownModelError, match=r"unknown model 'nope'.*available models: .*han"):
        create_model("nope")
    with pytest.raises(ValueError, match="no option"):
        create_model("han", hiden=3)
    with pytest.raises(TypeError):
        register_model("bad", dict)
    config = HANConfig(feature_set="clip_clap", hidden=32)
    assert HANConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="feature set"):
        create_model("han", feature_set="mfcc")
    assert TrainConfig.for_model("han", epochs=3).to_dict() == {
        **TrainConfig.for_model("han").to_dict(), "epochs": 3}


def test_cli_feature_set_names_match_the_data_module():
    from inference.cli_args import FEATURE_SET_NAMES, SPLITS
    from inference.predict import SPLITS as PREDICT_SPLITS

    assert FEATURE_SET_NAMES == tuple(sorted(FEATURE_SETS)) and SPLITS == PREDICT_SPLITS


def test_segment_loss_leaves_out_clips_without_pseudo_labels():
    logits, target = torch.randn(3, 10, 25), (torch.rand(3, 10, 25) > 0.5).float()
    full = segment_bce(logits, target)
    assert segment_bce(logits, target, torch.ones(3, dtype=torch.bool)) == full
    kept = segment_bce(logits, target, torch.tensor([True, False, True]))
    torch.testing.assert_close(kept, segment_bce(logits[[0, 2]], target[[0, 2]]))


def test_valor_overfits_segments_and_han_video_labels_of_a_tiny_synthetic_set():
    torch.manual_seed(0)
    model = VALOR(VALORConfig(feature_set="vggish", hidden=128, dim_feedforward=128))
    batch = synthetic_batch("vggish", clips=16, seed=1)
    losses = overfit(model, batch, steps=60, lr=1e-3)
    assert losses[-1] < 0.25 * losses[0]
    with torch.no_grad():
        f1_audio, f1_visual = segment_f1(model(batch), batch)
    assert f1_audio > 0.9 and f1_visual > 0.9, (f1_audio, f1_visual)
    torch.manual_seed(0)  # HAN sees video-level labels only: it must at least fit those
    han = HAN(HANConfig(feature_set="vggish", hidden=128, dim_feedforward=128))
    losses = overfit(han, batch, steps=60, lr=1e-3)
    assert losses[-1] < 0.25 * losses[0]
    with torch.no_grad():
        predicted = han(batch)["global"] >= 0.5
    assert torch.equal(predicted, batch["label"] > 0.5)


# ---------------------------------------------------------------- training, checkpoints, prediction

@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    labels, task = data
    run = tmp_path_factory.mktemp("runs") / "han"
    return train(small_config(), task, run), run


def test_run_folder_holds_config_log_checkpoints_and_metrics(trained):
    result, run = trained
    assert not result.stopped and result.epochs_done == 3 and 1 <= result.best_epoch <= 3
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["model"] == "han" and config["train"]["model_config"]["hidden"] == 64
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_epoch"] == result.best_epoch and len(metrics["history"]) == 3
    for split in ("val", "test"):
        assert set(metrics[split]) == {"segment", "event"}
        assert set(metrics[split]["segment"]) == {"audio", "visual", "audio_visual", "type", "event"}
    best_val = max(h["val"]["segment"]["type"] for h in metrics["history"])
    assert metrics["val"]["segment"]["type"] == best_val  # selection on val segment Type@AV
    best, last = load_checkpoint(run / "checkpoint.pt"), load_checkpoint(run / "last.pt")  # weights_only
    assert best["epoch"] == result.best_epoch and last["epoch"] == 3
    assert {"optimizer", "scheduler", "rng", "history"} <= set(last)
    log = (run / "train.log").read_text().splitlines()
    assert sum(" epoch " in line and "/3 loss" in line for line in log) == 3 and "done: best epoch" in log[-1]


def test_checkpoint_round_trip_gives_identical_predictions(data, tmp_path):
    labels, task = data
    torch.manual_seed(3)
    model = create_model("han", **SMALL).eval()
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": 1, "model": "han", "model_config": model.config.to_dict(), "epoch": 1,
                "state_dict": model.state_dict()}, path)
    loaded = load_checkpoint(path)  # weights_only=True: no object is unpickled
    again = create_model(loaded["model"], **loaded["model_config"]).eval()
    again.load_state_dict(loaded["state_dict"])
    task.attach(model)
    batch = collate_items([AVVPDataset(labels, task.features)[i] for i in range(4)])
    with torch.no_grad():
        a, b = model(batch), again(batch)
    for key in ("global", "segment_audio", "segment_visual"):
        assert torch.equal(a[key], b[key])


def test_predict_and_eval_reproduce_the_test_numbers(trained, data, demo, tmp_path):
    (result, run), (labels, _) = trained, data
    seg_a, seg_v, glob, names = predict(run, labels, demo, "test", device="cpu")
    assert seg_a.shape == seg_v.shape == (3, 25, 10) and glob.shape == (3, 25)
    assert names == [labels.filenames[i] for i in labels.indices("test")]
    write_predictions(tmp_path, seg_a, seg_v, glob, names)
    assert np.array_equal(np.load(tmp_path / "segment_probs_audio.npy"), seg_a)
    assert (tmp_path / "filenames.txt").read_text().split() == names
    code, out, _ = run_cli(["eval", "--gt-audio", str(demo / "AVVP_eval_audio.csv"),
                            "--gt-visual", str(demo / "AVVP_eval_visual.csv"),
                            "--pred-audio", str(tmp_path / "audio.csv"), "--pred-visual", str(tmp_path / "visual.csv"),
                            "--videos", str(demo / "AVVP_test_pd.csv"), "--json"])
    assert code == 0
    assert json.loads(out) == json.loads((run / "metrics.json").read_text())["test"] == result.test


class StopAt(TrainCallback):
    def __init__(self, epoch: int, step: int):
        self.at, self.now = (epoch, step), (0, 0)

    def on_step(self, epoch, step, steps, loss, eta_seconds):
        self.now = (epoch, step)

    def should_stop(self) -> bool:
        return self.now == self.at


def test_stop_then_resume_equals_an_uninterrupted_run(trained, data, tmp_path):
    (result, run), (_, task) = trained, data
    stopped = train(small_config(), task, tmp_path, callbacks=[StopAt(2, 1)])
    assert stopped.stopped and stopped.epochs_done == 1 and stopped.test is None
    assert not (tmp_path / "metrics.json").exists() and load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    with pytest.raises(RunDirError, match="already holds"):
        train(small_config(), task, tmp_path)
    with pytest.raises(RunDirError, match=r"different lr \(0.0003 -> 0.001\)"):
        train(small_config(lr=1e-3), task, tmp_path, resume=True)
    changed = small_config()
    changed.model_config["dropout"] = 0.3
    with pytest.raises(RunDirError, match=r"model_config.dropout \(0.1 -> 0.3\)"):  # the option inside is named
        train(changed, task, tmp_path, resume=True)
    resumed = train(small_config(), task, tmp_path, resume=True)
    assert not resumed.stopped and resumed.best_epoch == result.best_epoch
    assert resumed.test == result.test and resumed.val == result.val
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in result.history]
    a, b = load_checkpoint(run / "last.pt")["state_dict"], load_checkpoint(tmp_path / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_stop_event_before_the_first_step_leaves_a_resumable_run(data, tmp_path):
    labels, task = data
    event = threading.Event()
    event.set()
    result = train(small_config(epochs=1), task, tmp_path, stop_event=event)
    assert result.stopped and result.epochs_done == 0 and load_checkpoint(tmp_path / "last.pt")["epoch"] == 0


def test_cmrc_clips_join_the_train_split(data, tmp_path):
    labels, task = data
    with pytest.raises(ValueError, match="--cmrc 4"):  # an 8-clip demo has no label set seen 50 times
        train(small_config("valor", task_options={"cmrc": 4}, epochs=1), task, tmp_path / "a")
    seen = []

    class Info(TrainCallback):
        def on_train_start(self, info):
            seen.append(info["clips"]["train"])

    train(small_config("valor", task_options={"cmrc": 4, "cmrc_min_label_count": 0}, epochs=1), task, tmp_path / "b",
          callbacks=[Info()])
    assert seen == [8 + 4]


# ---------------------------------------------------------------- command line and DDP

def test_cli_train_predict_from_folder_and_store(demo, tmp_path):
    code, _, err = run_cli(["train", "--data", str(demo), "--model", "link2", "--out", str(tmp_path / "x")])
    assert code == 2 and "available models:" in err and "han" in err
    run = tmp_path / "folder"
    code, out, err = run_cli(["train", "--data", str(demo), "--model", "han", "--epochs", "1", "--batch-size", "4",
                              "--device", "cpu", "--out", str(run)])
    assert code == 0, err
    assert "epoch 1/1 step 2/2 loss" in err and "ETA" in err
    assert "test" in out and "Type@AV" in out
    code, out, err = run_cli(["train", "--data", str(demo), "--resume", "--epochs", "2", "--out", str(run)])
    assert code == 0, err
    assert "resuming after epoch 1" in err and json.loads((run / "metrics.json").read_text())["epochs"] == 2
    code, out, err = run_cli(["predict", "--run", str(run), "--data", str(demo), "--out", str(tmp_path / "p")])
    assert code == 0, err
    assert (tmp_path / "p" / "audio.csv").exists() and "Type@AV" in out

    from annotation.db import open_database
    from annotation.importer import import_llp

    db = f"sqlite:///{tmp_path / 'store.sqlite'}"
    import_llp(open_database(db), demo)
    code, out, err = run_cli(["train", "--data", str(demo), "--db", db, "--model", "han", "--epochs", "1",
                              "--feature-set", "clip_clap", "--device", "cpu", "--out", str(tmp_path / "store")])
    assert code == 0, err
    config = json.loads((tmp_path / "store" / "config.json").read_text())
    assert config["train"]["model_config"]["feature_set"] == "clip_clap" and config["data"]["clips"]["train"] == 8

    # predictions stored in the database become a timeline layer of the window
    code, out, err = run_cli(["predict", "--run", str(tmp_path / "store"), "--data", str(demo), "--db", db,
                              "--name", "han-1", "--out", str(tmp_path / "p2")])
    assert code == 0, err
    assert "prediction:han-1" in err
    from annotation.llp_csv import dense_grids, read_dense_csv
    from annotation.store import LabelStore

    store = LabelStore(open_database(db))
    test_clips = store.clips("test")
    expected = dense_grids(read_dense_csv(tmp_path / "p2" / "visual.csv"), [c.filename for c in test_clips])
    for clip, grid in zip(test_clips, expected):
        assert (store.track(clip.id, "visual", "prediction:han-1").grid == grid).all()
    assert not store.track(store.clips("train")[0].id, "visual", "prediction:han-1").exists


def test_ddp_two_gloo_processes_train_one_epoch(demo, tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "inference.train_ddp", "--data", str(demo), "--model", "han", "--epochs", "1",
           "--batch-size", "4", "--device", "cpu", "--out", str(run)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["distributed"] == {"world_size": 2, "parameters_identical": True}
    assert (run / "checkpoint.pt").exists() and (run / "last.pt").exists()
    assert proc.stdout.count("F1 (%)") == 2  # val and test tables, from rank 0 alone
    assert "distributed: 2 ranks, parameters identical: True" in (run / "train.log").read_text()


def test_demo_predictions_beat_its_pseudo_labels(tmp_path):
    """Issue 4, item 5: a training-sized demo (no videos, 376 train clips): VALOR's objective (the
    segment pseudo-labels) with HAN's short CPU schedule (Adam 3e-4, step decay, batch 16) for 10
    epochs scores above the demo's own pseudo-labels on the demo truth (test split)."""
    from annotation.demo import build_demo, read_pseudo
    from inference.metrics import evaluate

    data = build_demo(tmp_path / "demo", clips=600, seed=0, videos=False).out_dir
    labels = labels_from_folder(data)
    han_schedule = dict(optimizer="adam", lr=3e-4, weight_decay=0.0, betas=(0.9, 0.999), scheduler="step",
                        step_size=10, gamma=0.1, grad_clip=0.0, warmup_epochs=0, lr_min=0.0, batch_size=16)
    config = TrainConfig.for_model("valor", model_config={"nhead": 1, "dim_feedforward": 512}, epochs=10, seed=1,
                                   **han_schedule)
    result = train(config, AVVPTask(labels, data, cache=True), tmp_path / "run")
    test = labels.indices("test")
    names, ids = [labels.filenames[i] for i in test], [labels.video_ids[i] for i in test]
    pseudo = evaluate(np.stack([read_pseudo(data, v, "audio") for v in ids]),
                      np.stack([read_pseudo(data, v, "visual") for v in ids]),
                      np.stack([labels.truth_audio[n] for n in names]),
                      np.stack([labels.truth_visual[n] for n in names]))
    assert result.test["segment"]["type"] > pseudo["segment"]["type"] + 5
    assert result.test["event"]["type"] > pseudo["event"]["type"]


def test_a_run_that_is_all_warm_up_says_so_and_a_cosine_run_keeps_its_epoch_count(data, tmp_path):
    _, task = data
    train(small_config(scheduler="warmup_cosine", warmup_epochs=5, epochs=1), task, tmp_path)
    assert "warmup_epochs 5 >= epochs 1: the whole run is warm-up" in (tmp_path / "train.log").read_text()
    with pytest.raises(RunDirError, match="epochs \\(1 -> 2; a warmup_cosine schedule is laid out over its epoch"):
        train(small_config(scheduler="warmup_cosine", warmup_epochs=5, epochs=2), task, tmp_path, resume=True)


def test_caption_and_prior_options_are_refused_for_models_that_read_none(demo, tmp_path):
    code, _, err = run_cli(["train", "--data", str(demo), "--model", "han", "--random-text", "--out", str(tmp_path / "r")])
    assert code == 2 and "--random-text: the han model reads no caption embeddings (only models with PLSIM do: " \
        in err and "Traceback" not in err
    code, _, err = run_cli(["train", "--data", str(demo), "--model", "han", "--epochs", "1", "--batch-size", "4",
                            "--model-config", json.dumps(SMALL), "--device", "cpu", "--out", str(tmp_path / "h")])
    assert code == 0, err
    code, _, err = run_cli(["predict", "--run", str(tmp_path / "h"), "--data", str(demo), "--zero-priors",
                            "--out", str(tmp_path / "p")])
    assert code == 2 and "--zero-priors: the han model reads no priors" in err


class _ScriptedTask:
    """A task whose val and test scores are scripted per epoch (val best at epoch 2, test best at epoch 3), to
    prove the engine picks the checkpoint by val alone, whatever the task."""

    name, selection = "avs", "val mIoU"
    VAL, TEST = {1: 10.0, 2: 30.0, 3: 20.0}, {1: 10.0, 2: 20.0, 3: 90.0}

    def __init__(self):
        self.epoch, self.calls = 0, []

    def build_model(self, config):
        from inference.models import create_model as create

        return create("avs_visual_only", size="tiny", image_size=32)

    def prepare(self, model):
        return []

    def train_dataset(self, config):
        item = {"frames": torch.zeros(5, 3, 32, 32), "audio": torch.zeros(5, 1, 96, 64), "frame_valid": torch.ones(5),
                "mask": torch.zeros(5, 32, 32), "mask_valid": torch.ones(5)}
        return [item, item]

    @staticmethod
    def collate(items):
        return {k: torch.stack([i[k] for i in items]) for k in items[0]}

    def split_sizes(self):
        return {"val": 1, "test": 1}

    def evaluate(self, model, split, device, batch_size):
        if split == "val":
            self.epoch += 1
        self.calls.append(split)
        return {"miou": (self.VAL if split == "val" else self.TEST)[self.epoch], "fscore": 0.0, "group_videos": 1}

    @staticmethod
    def selection_score(metrics):
        return metrics["miou"]

    @staticmethod
    def describe(metrics):
        return f"mIoU {metrics['miou']:.2f}"


def test_the_engine_selects_on_val_and_scores_test_once(tmp_path):
    task = _ScriptedTask()
    config = TrainConfig.for_model("avs_visual_only", model_config={"size": "tiny", "image_size": 32}, epochs=3,
                                   device="cpu", batch_size=2)
    result = train(config, task, tmp_path / "run")
    assert result.best_epoch == 2 and result.val["miou"] == 30.0
    assert task.calls == ["val", "val", "val", "test"]  # test never seen before the choice, and only once
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 2
