"""AVS-Mamba (inference.models.avs_mamba / avs_blocks): shapes, gradients, the published losses by
hand, mask_valid masking, the silent-frame term, leak-freedom of forward, the scans against the
released code's sequence layout and across scan backends, the registry, overfitting, config errors."""
from __future__ import annotations

import math
import time

import pytest
import torch

from inference import ssm
from inference.models import create_model, get_entry, model_config, model_names
from inference.models.avs_blocks import (
    SPATIAL_ORDERS,
    TEMPORAL_ORDERS,
    AudioToVision,
    MultiDirectionSSM,
    TemporalMamba,
    VisionToAudio,
    cross_scan,
    deserialize,
    serialize,
)
from inference.models.avs_mamba import LOG_MEL_FLOOR, RECIPES, silent_frames

TINY = {"size": "tiny", "drop_path": 0.0, "backbone_drop_path": 0.0}
INPUT_KEYS = {"frames", "audio", "frame_valid"}


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these tiny networks gain nothing from more, and a shared two-core test
    machine running other suites turns OpenMP's spinning threads into 10x slowdowns."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_batch(b=2, t=5, h=64, w=64, classes=1, seed=0, audio=True):
    g = torch.Generator().manual_seed(seed)
    batch = {"frames": torch.randn(b, t, 3, h, w, generator=g), "frame_valid": torch.ones(b, t)}
    if audio:
        batch["audio"] = torch.randn(b, t, 1, 96, 64, generator=g)
    if classes == 1:
        batch["mask"] = (torch.rand(b, t, h, w, generator=g) > 0.5).float()
    else:
        batch["mask"] = torch.randint(0, classes, (b, t, h, w), generator=g)
    batch["mask_valid"] = torch.ones(b, t)
    return batch


class InputsOnly(dict):
    """A batch that refuses to hand out anything but the model inputs."""

    def __init__(self, data, allowed=INPUT_KEYS):
        super().__init__(data)
        self.allowed = allowed

    def __getitem__(self, key):
        if key not in self.allowed:
            raise AssertionError(f"forward read {key!r}")
        return super().__getitem__(key)

    def get(self, key, default=None):
        if key not in self.allowed:
            raise AssertionError(f"forward read {key!r}")
        return super().get(key, default)


def shapes(out):
    return {k: tuple(v.shape) if torch.is_tensor(v) else [tuple(a.shape) for a in v] for k, v in out.items()}


# ------------------------------------------------------------------ shapes

@pytest.mark.parametrize("backbone", ["pvt_v2_b5", "resnet50"])
def test_binary_shapes_square_and_non_square(backbone):
    torch.manual_seed(0)
    model = create_model("avs_mamba", backbone=backbone, **TINY).eval()
    with torch.no_grad():
        out = model(make_batch(2, 5, 64, 64))
        assert shapes(out) == {"logits": (2, 5, 1, 64, 64), "logits_net": (2, 5, 1, 64, 64),
                               "aux": [(2, 5, 1, 64, 64)]}
        out = model(make_batch(1, 5, 32, 96))
        assert shapes(out)["logits"] == (1, 5, 1, 32, 96) and shapes(out)["aux"] == [(1, 5, 1, 32, 96)]
        assert torch.isfinite(out["logits"]).all()


def test_avss_shapes_padding_and_upsampling():
    torch.manual_seed(0)
    model = create_model("avs_mamba", num_classes=71, frames=10, **TINY).eval()
    batch = make_batch(1, 10, 64, 96, classes=71)
    batch["frame_valid"][0, 5:] = 0
    batch["frames"][0, 5:] = 0
    with torch.no_grad():
        out = model(batch)
    assert shapes(out) == {"logits": (1, 10, 71, 64, 96), "logits_net": (1, 10, 71, 64, 96),
                           "aux": [(1, 10, 71, 64, 96)]}
    assert (out["logits"][0, 5:] == 0).all() and (out["logits"][0, :5] != 0).any()  # padded frames zeroed (code)
    # a network resolution other than the input's: logits come back at the input size
    model = create_model("avs_mamba", upsample_size=64, **TINY).eval()
    with torch.no_grad():
        out = model(make_batch(1, 5, 48, 40))
    assert shapes(out) == {"logits": (1, 5, 1, 48, 40), "logits_net": (1, 5, 1, 64, 64), "aux": [(1, 5, 1, 64, 64)]}


def test_full_config_resolves_code_widths():
    config = model_config("avs_mamba")
    assert (config.d_model, config.d_state, config.expand, config.encoder_layers, config.decoder_layers,
            config.head_hidden, config.upsample_size, config.image_size) == (256, 16, 2, 2, 2, 2048, 512, 224)
    assert model_config("avs_mamba", num_classes=71, frames=10).upsample_size == 0  # AVSS code: 224, no upsampling
    assert model_config("avs_mamba", size="tiny").upsample_size == 0
    again = model_config("avs_mamba", **config.to_dict())
    assert again == config


# ------------------------------------------------------------------ gradients and freezing

def test_gradients_reach_every_trainable_parameter_and_frozen_stay_frozen():
    torch.manual_seed(0)
    model = create_model("avs_mamba", silent_loss_weight=1.0, **TINY)
    batch = make_batch(2, 5, 64, 64)
    loss, _ = model.loss(model(batch), batch)
    loss.backward()
    for name, p in model.named_parameters():
        if name.startswith("audio_backbone."):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.requires_grad, name
            assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    # the audio backbone trains when asked to
    model = create_model("avs_mamba", freeze_audio_backbone=False, **TINY)
    loss, _ = model.loss(model(batch), batch)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.audio_backbone.parameters())


def test_visual_backbone_frozen_for_the_first_epochs():
    model = create_model("avs_mamba", visual_frozen_epochs=2, **TINY)
    assert not any(p.requires_grad for p in model.visual_backbone.parameters())
    model.set_epoch(2)
    assert not any(p.requires_grad for p in model.visual_backbone.parameters())
    model.set_epoch(3)
    assert all(p.requires_grad for p in model.visual_backbone.parameters())
    assert all(p.requires_grad for p in create_model("avs_mamba", **TINY).visual_backbone.parameters())


# ------------------------------------------------------------------ losses by hand

def test_dice_on_final_and_intermediate_masks_by_hand():
    model = create_model("avs_mamba", **TINY)
    t3 = math.log(3.0)  # sigmoid = 0.75
    final = torch.full((1, 2, 1, 2, 2), t3)
    aux = torch.zeros((1, 2, 1, 2, 2))  # sigmoid = 0.5
    mask = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]]])
    batch = {"mask": mask, "mask_valid": torch.ones(1, 2)}
    outputs = {"logits": final, "logits_net": final, "aux": [aux]}
    total, parts = model.loss(outputs, batch)
    # Dice = 1 - 2 sum(pg) / (sum p^2 + 0.001 + sum g^2 + 0.001), mean over the two frames
    final_f0 = 1 - 2 * 1.5 / (4 * 0.5625 + 0.001 + 2 + 0.001)
    final_f1 = 1 - 2 * 0.75 / (4 * 0.5625 + 0.001 + 1 + 0.001)
    aux_f0 = 1 - 2 * 1.0 / (4 * 0.25 + 0.001 + 2 + 0.001)
    aux_f1 = 1 - 2 * 0.5 / (4 * 0.25 + 0.001 + 1 + 0.001)
    dice, inter = (final_f0 + final_f1) / 2, (aux_f0 + aux_f1) / 2
    assert parts["dice"] == pytest.approx(dice, abs=1e-6) and parts["aux"] == pytest.approx(inter, abs=1e-6)
    assert float(total) == pytest.approx(dice + inter, abs=1e-6)
    assert set(parts) == {"dice", "aux"}  # BCE weight 0 as the code
    # BCE when weighted: per pixel -log 0.75 on foreground, -log 0.25 on background (frame 0: 2 + 2 pixels)
    model = create_model("avs_mamba", bce_weight=1.0, aux_weight=0.0, **TINY)
    total, parts = model.loss(outputs, {"mask": mask, "mask_valid": torch.tensor([[1.0, 0.0]])})
    assert parts["bce"] == pytest.approx((-2 * math.log(0.75) - 2 * math.log(0.25)) / 4, abs=1e-6)
    assert float(total) == pytest.approx(parts["bce"] + final_f0, abs=1e-6)


def test_cross_entropy_by_hand():
    model = create_model("avs_mamba", num_classes=3, frames=2, **TINY)
    logits = torch.zeros(1, 2, 3, 1, 2)
    logits[0, 0, 1, 0, 0] = math.log(2.0)  # pixel (0, 0) of frame 0: softmax [1, 2, 1] / 4, truth 1
    mask = torch.tensor([[[[1, 0]], [[2, 2]]]])
    batch = {"mask": mask, "mask_valid": torch.tensor([[1.0, 1.0]])}
    total, parts = model.loss({"logits": logits, "logits_net": logits, "aux": []}, batch)
    frame0 = (-math.log(2 / 4) + math.log(3)) / 2
    frame1 = math.log(3)
    assert parts["ce"] == pytest.approx((frame0 + frame1) / 2, abs=1e-6) and "aux" not in parts
    assert float(total) == pytest.approx((frame0 + frame1) / 2, abs=1e-6)
    # the paper's words instead: one-vs-rest BCE over the class channels
    model = create_model("avs_mamba", num_classes=3, frames=2, semantic_loss="bce", **TINY)
    _, parts = model.loss({"logits": logits, "logits_net": logits, "aux": []},
                          {"mask": mask, "mask_valid": torch.tensor([[1.0, 0.0]])})
    s2 = 1 / (1 + 0.5)  # sigmoid(log 2)
    pixel0 = (math.log(2) + -math.log(s2) + math.log(2)) / 3  # truth 1: channels 0 and 2 negative at p 0.5
    pixel1 = (math.log(2) * 3) / 3  # truth 0, every logit 0
    assert parts["bce"] == pytest.approx((pixel0 + pixel1) / 2, abs=1e-6)


def test_loss_at_network_resolution_uses_bilinear_soft_masks():
    model = create_model("avs_mamba", upsample_size=64, **TINY)
    logits_net = torch.zeros(1, 1, 1, 4, 4)
    batch = {"mask": torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]), "mask_valid": torch.ones(1, 1)}
    _, parts = model.loss({"logits": torch.zeros(1, 1, 1, 2, 2), "logits_net": logits_net, "aux": []}, batch)
    soft = torch.nn.functional.interpolate(batch["mask"], size=(4, 4), mode="bilinear", align_corners=False)[0, 0]
    assert ((soft > 0) & (soft < 1)).any()  # soft values at the edge, as the code's PIL bilinear resize
    expected = 1 - 2 * (0.5 * soft).sum() / (16 * 0.25 + 0.001 + (soft * soft).sum() + 0.001)
    assert parts["dice"] == pytest.approx(float(expected), abs=1e-6)
    # "input": the same logits resized back compare with the given masks
    model = create_model("avs_mamba", upsample_size=64, loss_resolution="input", **TINY)
    _, parts = model.loss({"logits": torch.zeros(1, 1, 1, 2, 2), "logits_net": logits_net, "aux": []}, batch)
    assert parts["dice"] == pytest.approx(1 - 2 * 0.5 / (1 + 0.001 + 1 + 0.001), abs=1e-6)


def test_frames_without_ground_truth_do_not_change_the_loss():
    torch.manual_seed(0)
    model = create_model("avs_mamba", **TINY)
    batch = make_batch(2, 5, 32, 32)
    batch["mask_valid"] = torch.zeros(2, 5)
    batch["mask_valid"][:, 0] = 1  # S4 train: frame 0 only
    out = model(batch)
    base, _ = model.loss(out, batch)
    changed = {k: (v.clone() if torch.is_tensor(v) else [a.clone() for a in v]) for k, v in out.items()}
    changed["logits_net"][:, 1:] = torch.randn_like(changed["logits_net"][:, 1:]) * 5
    changed["aux"][0][:, 1:] = 7.0
    other = dict(batch, mask=batch["mask"].clone())
    other["mask"][:, 1:] = 1 - other["mask"][:, 1:]
    again, _ = model.loss(changed, other)
    assert float(again.detach()) == pytest.approx(float(base.detach()), abs=1e-6)
    # equal to the loss of the frames with truth alone
    only = {"mask": batch["mask"][:, :1], "mask_valid": torch.ones(2, 1)}
    first = {"logits_net": out["logits_net"][:, :1], "logits": out["logits"][:, :1], "aux": [out["aux"][0][:, :1]]}
    alone, _ = model.loss(first, only)
    assert float(alone.detach()) == pytest.approx(float(base.detach()), abs=1e-6)
    # no frame with truth: zero, not NaN
    empty, _ = model.loss(out, dict(batch, mask_valid=torch.zeros(2, 5)))
    assert float(empty.detach()) == 0.0


def test_silent_frame_term():
    audio = torch.randn(1, 4, 1, 96, 64)
    audio[0, 0] = LOG_MEL_FLOOR  # digital silence
    audio[0, 1] = LOG_MEL_FLOOR + 0.05  # near silence, within the margin
    audio[0, 2] = LOG_MEL_FLOOR + 0.2  # quiet but audible
    audio[0, 3] = 0.0  # AVSS zero padding is not silence
    assert silent_frames(audio, 0.1).tolist() == [[1.0, 1.0, 0.0, 0.0]]
    logits = torch.zeros(1, 4, 1, 2, 2)
    logits[0, 1] = 2.0
    mask = torch.zeros(1, 4, 2, 2)
    batch = {"audio": audio, "frame_valid": torch.ones(1, 4), "mask": mask,
             "mask_valid": torch.tensor([[0.0, 1, 1, 1]])}
    outputs = {"logits": logits, "logits_net": logits, "aux": []}
    base, parts = create_model("avs_mamba", frames=4, **TINY).loss(outputs, batch)
    assert "silent" not in parts  # off by default (the published loss)
    model = create_model("avs_mamba", frames=4, silent_loss_weight=2.0, **TINY)
    total, parts = model.loss(outputs, batch)
    def softplus(x):  # BCE of logit x against an empty mask
        return math.log1p(math.exp(x))

    assert parts["silent"] == pytest.approx((softplus(0.0) + softplus(2.0)) / 2, abs=1e-6)
    assert float(total) == pytest.approx(float(base) + 2.0 * parts["silent"], abs=1e-5)
    # only frames with truth when asked; a padded frame never counts
    model = create_model("avs_mamba", frames=4, silent_loss_weight=1.0, silent_on_unlabelled=False, **TINY)
    assert model.loss(outputs, batch)[1]["silent"] == pytest.approx(softplus(2.0), abs=1e-6)
    model = create_model("avs_mamba", frames=4, silent_loss_weight=1.0, **TINY)
    assert model.loss(outputs, dict(batch, frame_valid=torch.tensor([[1.0, 0, 1, 1]])))[1]["silent"] == \
        pytest.approx(softplus(0.0), abs=1e-6)
    # semantic: cross-entropy towards background (class 0)
    model = create_model("avs_mamba", num_classes=3, frames=4, silent_loss_weight=1.0, **TINY)
    sem = torch.zeros(1, 4, 3, 2, 2)
    _, parts = model.loss({"logits": sem, "logits_net": sem, "aux": []},
                          dict(batch, mask=torch.zeros(1, 4, 2, 2, dtype=torch.long)))
    assert parts["silent"] == pytest.approx(math.log(3), abs=1e-6)


# ------------------------------------------------------------------ forward reads inputs only

@pytest.mark.parametrize("name", ["avs_mamba", "avs_visual_only"])
def test_predictions_do_not_depend_on_masks(name):
    torch.manual_seed(0)
    model = create_model(name, **({"size": "tiny"} if name == "avs_visual_only" else TINY)).eval()
    batch = make_batch(2, 5, 32, 32)
    with torch.no_grad():
        ref = model(batch)["logits"]
        changed = dict(batch, mask=1 - batch["mask"], mask_valid=torch.zeros(2, 5))
        assert torch.equal(model(changed)["logits"], ref)
        inputs = {k: batch[k] for k in INPUT_KEYS}
        assert torch.equal(model(InputsOnly(inputs))["logits"], ref)
        if name == "avs_visual_only":  # audio-blind: never reads audio at all
            assert model.audio_backbone is None
            blind = InputsOnly({k: batch[k] for k in ("frames", "frame_valid")}, {"frames", "frame_valid"})
            assert torch.equal(model(blind)["logits"], ref)


# ------------------------------------------------------------------ scans

def _code_scan(mod: MultiDirectionSSM, xs: torch.Tensor) -> torch.Tensor:
    """The released code's einsum + selective_scan_fn call (cross_scale_temporal_v2 / mamba_3d_), on
    the reference scan."""
    b, k, _, length = xs.shape
    x_dbl = torch.einsum("b k d l, k c d -> b k c l", xs, mod.x_proj_weight)
    dts, Bs, Cs = torch.split(x_dbl, [mod.dt_rank, mod.d_state, mod.d_state], dim=2)
    dts = torch.einsum("b k r l, k d r -> b k d l", dts, mod.dt_projs_weight)
    out = ssm.selective_scan_ref(xs.reshape(b, -1, length), dts.reshape(b, -1, length), -torch.exp(mod.A_logs),
                                 Bs.contiguous(), Cs.contiguous(), mod.Ds, None, mod.dt_projs_bias.reshape(-1), True)
    return out.view(b, k, -1, length)


def _code_temporal_core(mod, xs):
    """cross_scale_temporal_v2.TemporalMambaBlock.forward_core (mamba_3d_.Mamba3D's for one scale)."""
    B, C = xs[0].shape[:2]

    def order(perm):
        flat = torch.cat([x.permute(0, 1, *perm).reshape(B, C, -1) for x in xs], dim=-1)
        return torch.stack([flat, torch.flip(flat, dims=[-1])], dim=1)

    seq = torch.cat([order((2, 3, 4)), order((2, 4, 3)), order((3, 4, 2)), order((4, 3, 2))], dim=1)
    out_y = _code_scan(mod, seq)
    sizes = [x.shape[2] * x.shape[3] * x.shape[4] for x in xs]
    outs = [0] * len(xs)
    for k, undo in enumerate([lambda y, T, H, W: y.reshape(B, C, T, H, W),
                              lambda y, T, H, W: y.reshape(B, C, T, W, H).permute(0, 1, 2, 4, 3),
                              lambda y, T, H, W: y.reshape(B, C, H, W, T).permute(0, 1, 4, 2, 3),
                              lambda y, T, H, W: y.reshape(B, C, W, H, T).permute(0, 1, 4, 3, 2)]):
        y = out_y[:, 2 * k] + torch.flip(out_y[:, 2 * k + 1], dims=[-1])
        pieces = torch.split(y, sizes, dim=-1)
        outs = [o + undo(p, *x.shape[2:]) for o, p, x in zip(outs, pieces, xs)]
    return outs


def test_serialize_round_trip():
    maps = [torch.randn(2, 3, 4, 5, 6), torch.randn(2, 3, 4, 2, 3)]
    for order in TEMPORAL_ORDERS:
        back = deserialize(serialize(maps, order), [m.shape[2:] for m in maps], order)
        assert all(torch.equal(a, b) for a, b in zip(back, maps))


def test_temporal_scan_matches_the_released_code_layout():
    torch.manual_seed(0)
    mod = MultiDirectionSSM(8, 8, d_state=4, dt_rank=2).double()
    mod.backend = "reference"
    xs = [torch.randn(2, 8, 3, 4, 5, dtype=torch.float64), torch.randn(2, 8, 3, 2, 3, dtype=torch.float64)]
    ours = cross_scan(mod, xs, TEMPORAL_ORDERS)
    for a, b in zip(ours, _code_temporal_core(mod, xs)):
        torch.testing.assert_close(a, b)
    one = [xs[0]]  # the pyramid's single-scale Mamba3D
    torch.testing.assert_close(cross_scan(mod, one, TEMPORAL_ORDERS)[0], _code_temporal_core(mod, one)[0])


def test_vss_and_fusion_scans_match_the_released_code_layout():
    torch.manual_seed(0)
    # VMamba_Block.forward_core over three scales: [hw, wh, rev hw, rev wh] of the concatenated scales
    mod = MultiDirectionSSM(6, 4, d_state=3, dt_rank=2).double()
    mod.backend = "reference"
    xs = [torch.randn(2, 6, h, w, dtype=torch.float64) for h, w in ((4, 5), (2, 3), (1, 2))]
    hw = torch.cat([x.reshape(2, 6, -1) for x in xs], -1)
    wh = torch.cat([x.transpose(2, 3).reshape(2, 6, -1) for x in xs], -1)
    out_y = _code_scan(mod, torch.stack([hw, wh, hw.flip(-1), wh.flip(-1)], 1))
    out_y = out_y[:, 0:2] + out_y[:, 2:4].flip(-1)
    start = 0
    for x, ours in zip(xs, cross_scan(mod, xs, SPATIAL_ORDERS, layout="blocks")):
        n, (h, w) = x.shape[2] * x.shape[3], x.shape[2:]
        code = out_y[:, 0, :, start:start + n].reshape(2, 6, h, w) + \
            out_y[:, 1, :, start:start + n].reshape(2, 6, w, h).transpose(2, 3)
        torch.testing.assert_close(ours, code)
        start += n
    # Vision_to_Audio_Fusion.intra_frame_interaction: audio token after each of the four sequences
    v2a = VisionToAudio(4, d_state=3, expand=2).double()
    v2a.ssm.backend = "reference"
    vis, tok = torch.randn(3, 8, 4, 5, dtype=torch.float64), torch.randn(3, 8, 1, dtype=torch.float64)
    x_hwwh = torch.stack([vis.reshape(3, 8, -1), vis.transpose(2, 3).reshape(3, 8, -1)], 1)
    seq = torch.cat([torch.cat([x_hwwh, x_hwwh.flip(-1)], 1), tok.unsqueeze(1).expand(-1, 4, -1, -1)], -1)
    torch.testing.assert_close(v2a._frame(vis, tok), _code_scan(v2a.ssm, seq)[..., -1].sum(1))
    # inter_frame_interaction: audio after the thw / twh sequences, then both reversed
    v, a = torch.randn(2, 8, 3, 4, 5, dtype=torch.float64), torch.randn(2, 8, 3, dtype=torch.float64)
    x_hwwh = torch.stack([v.reshape(2, 8, -1), v.transpose(3, 4).reshape(2, 8, -1)], 1)
    rep = a.unsqueeze(1).expand(-1, 2, -1, -1)
    seq = torch.cat([torch.cat([x_hwwh, rep], -1), torch.cat([x_hwwh.flip(-1), rep.flip(-1)], -1)], 1)
    out = _code_scan(v2a.ssm, seq)[..., -3:]
    code = out[:, 0] + out[:, 1] + (out[:, 2] + out[:, 3]).flip(-1)
    torch.testing.assert_close(v2a._temporal(v, a), code.transpose(1, 2))
    # Audio_to_Vision_Fusion.audio_to_vision_fusion: audio BEFORE the visual sequences
    a2v = AudioToVision(4, d_state=3, expand=2).double()
    a2v.ssm.backend = "reference"
    seq = torch.cat([torch.cat([rep, x_hwwh], -1), torch.cat([rep.flip(-1), x_hwwh.flip(-1)], -1)], 1)
    out = _code_scan(a2v.ssm, seq)[..., 3:]
    out = out[:, 0:2] + out[:, 2:4].flip(-1)
    code = out[:, 0].reshape(2, 8, 3, 4, 5) + out[:, 1].reshape(2, 8, 3, 5, 4).transpose(3, 4)
    torch.testing.assert_close(a2v._scan(v, a), code)


def test_temporal_mamba_backends_agree_on_the_models_scan_shapes():
    """reference (sequential) vs auto (the C kernel on a CPU, else chunked) on the tiny model's
    encoder Temporal Mamba (strides 8/16/32 of 64x64 frames, 5 frames, one sequence per direction)
    and the pyramid's stride-4 one; outputs and gradients."""
    torch.manual_seed(0)
    model = create_model("avs_mamba", **TINY)
    d = model.config.d_model
    cases = [(model.encoder[0].temporal, [torch.randn(2, 5, s, s, d) for s in (8, 4, 2)]),
             (model.pyramid.temporal[-1].mamba, [torch.randn(2, 5, 16, 16, d)])]
    for block, xs in cases:
        results = []
        for backend in ("reference", "auto"):
            for m in block.modules():
                if isinstance(m, MultiDirectionSSM):
                    m.backend = backend
            inputs = [x.clone().requires_grad_() for x in xs]
            block.zero_grad()
            outs = block(inputs)
            sum((o * torch.linspace(-1, 1, o.shape[-1])).sum() for o in outs).backward()
            results.append((outs, [x.grad for x in inputs], block.ssm.x_proj_weight.grad.clone()))
        (ref_out, ref_gx, ref_gw), (auto_out, auto_gx, auto_gw) = results
        for a, b in zip(ref_out + ref_gx + [ref_gw], auto_out + auto_gx + [auto_gw]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    length = 5 * (64 + 16 + 4)
    u = torch.randn(2, 8 * d, length)
    assert ssm.pick_backend(u, u, torch.randn(8 * d, 4), torch.randn(2, 8, 4, length),
                            torch.randn(2, 8, 4, length)) != "reference"


# ------------------------------------------------------------------ registry and training

def test_registry_entries_and_recipes():
    assert {"avs_mamba", "avs_visual_only"} <= set(model_names(task="avs"))
    assert not {"avs_mamba", "avs_visual_only"} & set(model_names(task="avvp"))
    entry = get_entry("avs_mamba")
    assert entry.task == "avs"
    recipe = entry.recipe_for(None)
    assert (recipe["optimizer"], recipe["lr"], recipe["weight_decay"], recipe["scheduler"]) == ("adamw", 2e-5, 0.01,
                                                                                                  "none")
    assert (recipe["epochs"], recipe["batch_size"]) == (60, 2)
    assert (RECIPES["ms3"]["epochs"], RECIPES["avss"]["epochs"], RECIPES["avss"]["batch_size"]) == (120, 50, 6)
    model = create_model("avs_mamba", size="tiny")
    assert model.model_name == "avs_mamba" and model.config.size == "tiny"
    assert hasattr(model, "visual_backbone") and hasattr(model, "audio_backbone")
    assert get_entry("avs_visual_only").task == "avs"
    from inference.train_config import TrainConfig
    config = TrainConfig.for_model("avs_mamba", {"size": "tiny"})
    assert config.task == "avs" and config.optimizer == "adamw" and config.model_config["size"] == "tiny"
    # the recipe leaves num_classes and frames to the AVS task (it sets them per subset)
    assert not {"num_classes", "frames"} & set(config.model_config)


def test_tiny_step_is_fast():
    """2 clips x 5 frames x 64x64, forward + backward: well under a second. Measured as the CPU time
    of one thread (~0.18 s), which other processes on a shared test machine do not inflate."""
    torch.manual_seed(0)
    model = create_model("avs_mamba", size="tiny")
    batch = make_batch(2, 5, 64, 64)
    times = []
    for _ in range(3):
        began = time.process_time()
        loss, _ = model.loss(model(batch), batch)
        loss.backward()
        times.append(time.process_time() - began)
    assert min(times) < 0.6, times


def test_tiny_model_overfits_one_clip():
    torch.manual_seed(0)
    model = create_model("avs_mamba", **TINY)
    t, s = 5, 32
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    mask = torch.stack([((yy - 8 - 2 * k) ** 2 + (xx - 14) ** 2 < 40).float() for k in range(t)])[None]
    batch = dict(make_batch(1, t, s, s), mask=mask)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(20):
        loss, _ = model.loss(model(batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("options, words", [
    ({"size": "huge"}, "size"), ({"backbone": "vgg16"}, "backbone"), ({"num_classes": 0}, "num_classes"),
    ({"num_classes": 2}, "num_classes"), ({"upsample_size": 100}, "upsample_size"),
    ({"temporal_directions": 5}, "temporal_directions"), ({"temporal_conv_t": 2}, "temporal_conv_t"),
    ({"loss_resolution": "pixels"}, "loss_resolution"), ({"semantic_loss": "focal"}, "semantic_loss"),
    ({"frames": 0}, "frames"), ({"d_model": "wide"}, "d_model"), ({"colour": 1}, "colour"),
    ({"silent_loss_weight": -1.0}, "silent_loss_weight"),
    ({"use_frame_level": False, "use_temporal_level": False}, "use_frame_level"),
])
def test_config_errors(options, words):
    with pytest.raises(ValueError, match=words):
        model_config("avs_mamba", **options)


def test_visual_only_config_has_no_mamba_options():
    with pytest.raises(ValueError, match="temporal_directions"):
        model_config("avs_visual_only", temporal_directions=8)
    model = create_model("avs_visual_only", size="tiny")
    assert not any(isinstance(m, (MultiDirectionSSM, TemporalMamba)) for m in model.modules())
