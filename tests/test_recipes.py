"""Paper recipes, named honestly: what each model trains with by default, VALOR's schedule and CLAP
maps exactly as its public code, and every TrainConfig option reachable from the command line."""
from __future__ import annotations

import argparse
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inference.cli_args import FEATURE_SET_NAMES, MODEL_NAMES, add_train_arguments
from inference.commands import config_from_args
from inference.data import FEATURE_SETS, detect_shapes
from inference.models import create_model, model_names
from inference.train import _scheduler
from inference.train_config import TrainConfig


def test_cli_lists_match_the_registry_and_the_data_module():
    assert MODEL_NAMES == tuple(model_names("avvp")) and FEATURE_SET_NAMES == tuple(sorted(FEATURE_SETS))


def test_han_is_the_han_paper_recipe():
    config = TrainConfig.for_model("han")
    assert (config.optimizer, config.lr, config.scheduler, config.step_size, config.gamma, config.batch_size,
            config.epochs) == ("adam", 3e-4, "step", 10, 0.1, 16, 40)
    model = create_model("han", **config.model_config)
    assert not model.uses_pseudo_labels and (model.config.hidden, model.config.nhead) == (512, 1)


@pytest.mark.parametrize("feature_set,lr,lr_min,hidden,layers", [
    ("vggish", 1e-4, 1e-6, 512, 1),  # scripts/train_valor.sh
    ("clip_clap_r21d", 3e-4, 3e-6, 256, 4),  # scripts/train_valor++.sh
    ("clip_clap", 3e-4, 3e-6, 256, 4),
])
def test_valor_follows_its_public_scripts(feature_set, lr, lr_min, hidden, layers):
    config = TrainConfig.for_model("valor", model_config={"feature_set": feature_set})
    assert (config.optimizer, config.betas, config.weight_decay, config.scheduler, config.warmup_epochs,
            config.grad_clip, config.batch_size, config.epochs) == ("adamw", (0.5, 0.999), 1e-3, "warmup_cosine",
                                                                     10, 1.0, 64, 60)
    assert (config.lr, config.lr_min) == (lr, lr_min)
    mc = config.model_config
    assert (mc["hidden"], mc["num_layers"], mc["nhead"], mc["dim_feedforward"]) == (hidden, layers, 8, 1024)


def test_mug_and_link_recipes_build_on_valor_and_valor_plus_plus():
    mug = TrainConfig.for_model("mug")
    assert (mug.optimizer, mug.batch_size, mug.epochs, mug.lr, mug.warmup_epochs, mug.betas) == (
        "adamw", 64, 20, 1e-4, 3, (0.5, 0.999))  # MUG Sec. 4.1 + VALOR where the paper is silent
    link = TrainConfig.for_model("link")
    assert link.model_config["feature_set"] == "clip_clap_r21d" and link.model_config["hidden"] == 256
    assert (link.lr, link.epochs, link.model_config["num_layers"]) == (3e-4, 60, 4)
    assert TrainConfig.for_model("link", model_config={"feature_set": "vggish"}).model_config["hidden"] == 512
    assert TrainConfig.for_model("mug", model_config={"feature_set": "clip_clap"}).lr == 3e-4


def valor_lr(epoch: int, warm: int, total: int, lr_min: float, lr_max: float) -> float:
    """VALOR's lr_warm_up_cos_anneal (main_avvp.py), literally."""
    if epoch < warm:
        return epoch / warm * lr_max
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos((epoch - warm) / (total - warm) * math.pi))


def test_warmup_cosine_is_valors_schedule_epoch_by_epoch():
    config = TrainConfig.for_model("valor")
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    scheduler = _scheduler(config, optimizer)
    for epoch in range(1, config.epochs + 1):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(valor_lr(epoch, 10, 60, 1e-6, 1e-4), rel=1e-9)
        optimizer.step()
        scheduler.step()


def test_clap_maps_take_valors_upsampling_path(tmp_path):
    """VALOR's released CLAP features are (64, 768) maps; the shapes come from the data folder."""
    rng = np.random.default_rng(0)
    for sub, shape in (("CLAP/features", (64, 768)), ("CLIP/features", (10, 768)), ("feats/r2plus1d_18", (10, 512))):
        (tmp_path / sub).mkdir(parents=True)
        np.save(tmp_path / sub / "abcdefghijk.npy", rng.normal(size=shape).astype(np.float32))
    shapes = detect_shapes(tmp_path, "clip_clap_r21d")
    assert shapes == {"audio": (64, 768), "visual": (10, 768), "motion": (10, 512)}
    torch.manual_seed(0)
    model = create_model("valor", feature_set="clip_clap_r21d", audio_shape=shapes["audio"], hidden=16,
                         dim_feedforward=16)
    audio = torch.randn(2, 64, 768)
    # main_network.py, MMIL_Net.forward, for audio.size(1) == 64
    x1 = audio.permute(0, 2, 1).contiguous().view(-1, 768, 2, 32)
    upsampled = F.interpolate(x1, size=(2, 1024), mode="bicubic")
    upsampled = model.fc_a(upsampled.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).mean(dim=2)
    expected = F.adaptive_avg_pool1d(upsampled, 10).view(-1, 16, 10).permute(0, 2, 1)
    torch.testing.assert_close(model.embed_audio(audio), expected)
    batch = {"audio": audio, "visual": torch.randn(2, 10, 768), "motion": torch.randn(2, 10, 512)}
    assert model(batch)["segment_audio"].shape == (2, 10, 25)
    with pytest.raises(ValueError, match="expected 10 .* or 64"):
        create_model("valor", feature_set="clip_clap", audio_shape=(32, 768))


def test_every_train_config_option_is_reachable_from_the_command_line():
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    values = {"epochs": 7, "batch_size": 5, "eval_batch_size": 9, "lr": 0.002, "lr_min": 1e-5, "weight_decay": 0.25,
              "optimizer": "adamw", "betas": (0.6, 0.98), "scheduler": "cosine", "step_size": 4, "gamma": 0.5,
              "warmup_epochs": 2, "grad_clip": 0.7, "device": "cpu", "seed": 42, "num_workers": 1}
    argv = ["--data", "D", "--out", "O", "--model", "valor", "--model-config", '{"hidden": 64, "dropout": 0.2}',
            "--feature-set", "clip_clap", "--cmrc", "3", "--task-options", '{"cmrc_min_label_count": 2}']
    for name, value in values.items():
        argv += [f"--{name.replace('_', '-')}", *([str(v) for v in value] if isinstance(value, tuple) else [str(value)])]
    config = config_from_args(parser.parse_args(argv))
    for name, value in values.items():
        assert getattr(config, name) == value, name
    assert config.model_config["hidden"] == 64 and config.model_config["dropout"] == 0.2
    assert config.model_config["feature_set"] == "clip_clap"
    assert config.task_options == {"cmrc": 3, "cmrc_min_label_count": 2}
    covered = set(values) | {"model", "model_config", "task_options", "task"}  # task: the model's own
    assert covered == {f.name for f in dataclasses.fields(TrainConfig)}


def valor_encoder_reference(layer, audio, visual, num_layers):
    """VALOR's Encoder.forward (main_network.py), post-norm: audio first, then visual against the new audio."""
    for _ in range(num_layers):
        audio = layer(audio, visual)
        visual = layer(visual, audio)
    return audio, visual


@pytest.mark.parametrize("model,sequential", [("han", False), ("valor", True), ("mug", True), ("link", True)])
def test_layer_order_is_hans_for_han_and_valors_for_the_models_built_on_valor(model, sequential):
    torch.manual_seed(0)
    config = TrainConfig.for_model(model, model_config={"hidden": 32, "dim_feedforward": 32, "nhead": 2,
                                                        "num_layers": 2, "feature_set": "vggish",
                                                        **({"random_text": True} if model in ("mug", "link") else {})})
    net = create_model(model, **config.model_config)
    encoder = net.hat_encoder if model in ("han", "valor") else net.han.hat_encoder
    assert encoder.sequential is sequential
    encoder.eval()
    audio, visual = torch.randn(2, 10, 32), torch.randn(2, 10, 32)
    got = encoder(audio, visual)
    a, v = audio, visual
    for layer in encoder.layers:
        if sequential:
            a, v = valor_encoder_reference(layer, a, v, 1)
        else:
            a, v = layer(a, v), layer(v, a)
    torch.testing.assert_close(got[0], a)
    torch.testing.assert_close(got[1], v)
    other = type(encoder)(encoder.layers[0], 2, not sequential)
    other.layers = encoder.layers
    other.eval()
    assert not torch.allclose(other(audio, visual)[1], got[1])  # the order matters to the visual track
