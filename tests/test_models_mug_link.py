"""MUG and LINK: output contract, MUG's shared B, PLSIM, CMIM, S-LOSS, overfitting a tiny set."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from annotation.errors import DataFileError
from inference.models import check_outputs, create_model, model_names
from inference.models.link import CrossModalInteraction, LINKConfig, SegmentSimilarityLoss
from inference.models.mamba import Mamba
from inference.models.mug import BRANCHES, MUGConfig
from inference.models.plsim import PLSIM, caption_embeddings
from inference.predict import model_from_checkpoint
from tests.synthetic import overfit, segment_f1, synthetic_batch

SMALL = dict(hidden=32, dim_feedforward=32, dropout=0.0, text_dim_audio=24, text_dim_visual=40, plsim_hidden=16,
             random_text=True)
SMALL_MUG = dict(SMALL, d_state=4)


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: intra-op threads gain nothing and cost a lot on a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small(name: str, feature_set: str, **extra):
    torch.manual_seed(0)
    return create_model(name, feature_set=feature_set, **{**(SMALL_MUG if name == "mug" else SMALL), **extra})


@pytest.mark.parametrize("feature_set", ["vggish", "clip_clap"])
@pytest.mark.parametrize("name", ["mug", "link"])
def test_outputs_follow_the_contract_and_train(name, feature_set):
    model = small(name, feature_set)
    batch = synthetic_batch(feature_set, clips=3)
    out = model(batch)
    check_outputs(out, 3)
    assert out["logits_audio"].shape == out["feat_audio"].shape[:2] + (25,)
    total, parts = model.loss(out, batch)
    assert total.ndim == 0 and math.isfinite(total.item())
    assert {"video", "segment_audio", "segment_visual", "label"} <= set(parts)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()  # an evaluation batch: inputs only (features and priors), no target of any kind
    bare = {k: v for k, v in batch.items() if k not in ("label", "pseudo_audio", "pseudo_visual", "has_pseudo")}
    check_outputs(model(bare), 3)


def test_registry_defaults_and_parameter_count():
    assert {"mug", "link"} <= set(model_names())
    assert MUGConfig().feature_set == "vggish" and LINKConfig().feature_set == "clip_clap"
    mug = create_model("mug", random_text=True)
    total = sum(p.numel() for p in mug.parameters())
    assert abs(total - 7.6e6) / 7.6e6 < 0.05, total  # paper: 7.6 M
    assert sum(mug.parameter_breakdown().values()) == total
    assert MUGConfig.from_dict(mug.config.to_dict()) == mug.config


def test_mug_fusion_shares_B_only():
    model = small("mug", "vggish")
    fusion = model.fusion
    for k in BRANCHES:
        a, v = fusion.audio.branches[k], fusion.visual.branches[k]
        assert a.B_proj.weight is v.B_proj.weight
        assert fusion.shared_B()[k] is a.B_proj
        for name in ("A_log", "D"):
            assert getattr(a, name) is not getattr(v, name)
        for name in ("C_proj", "dt_in", "dt_proj", "conv1d"):
            assert getattr(a, name).weight is not getattr(v, name).weight
    assert fusion.interaction.shape == (2, len(BRANCHES))
    # the shared tensor is one parameter: both streams' gradients accumulate into it
    batch = synthetic_batch("vggish", clips=2)
    model.loss(model(batch), batch)[0].backward()
    names = [n for n, p in model.named_parameters() if p is fusion.audio.branches["fwd"].B_proj.weight]
    assert len(names) == 1 and fusion.visual.branches["fwd"].B_proj.weight.grad is not None
    # a state-dict round trip keeps the sharing and the values
    clone = small("mug", "vggish")
    clone.load_state_dict(model.state_dict())
    assert clone.fusion.audio.branches["dyn"].B_proj.weight is clone.fusion.visual.branches["dyn"].B_proj.weight
    model.eval(), clone.eval()
    torch.testing.assert_close(clone(batch)["global"], model(batch)["global"])


def test_mamba_block_computes_mamba_simple():
    """The split x_proj (dt_in, B_proj, C_proj) is mamba_ssm's x_proj; the rest is its unfused forward."""
    from inference.ssm.reference import selective_scan_ref

    torch.manual_seed(0)
    block = Mamba(8, d_state=4, expand=2).double()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    s = block.ssm
    xz = (x @ block.in_proj.weight.T).transpose(1, 2)  # "b l d -> b d l" of in_proj
    u, z = xz.chunk(2, dim=1)
    u = torch.nn.functional.silu(s.conv1d(u)[..., :9])
    x_proj = torch.cat([s.dt_in.weight, s.B_proj.weight, s.C_proj.weight])  # mamba_ssm's x_proj weight
    x_dbl = u.transpose(1, 2).reshape(-1, block.d_inner) @ x_proj.T
    dt, B, C = torch.split(x_dbl, [s.dt_rank, 4, 4], dim=-1)
    dt = (s.dt_proj.weight @ dt.T).reshape(block.d_inner, 2, 9).transpose(0, 1)
    B = B.reshape(2, 9, 4).transpose(1, 2)
    C = C.reshape(2, 9, 4).transpose(1, 2)
    y = selective_scan_ref(u, dt, -torch.exp(s.A_log), B, C, s.D, z=z, delta_bias=s.dt_proj.bias,
                           delta_softplus=True)
    torch.testing.assert_close(block(x), block.out_proj(y.transpose(1, 2)))


def test_mamba_block_is_causal():
    torch.manual_seed(0)
    block = Mamba(8, d_state=4, expand=2)
    x = torch.randn(2, 12, 8)
    y = block(x)
    x2 = x.clone()
    x2[:, 7:] += 1.0  # changing the future leaves the past unchanged
    y2 = block(x2)
    torch.testing.assert_close(y[:, :7], y2[:, :7])
    assert not torch.allclose(y[:, 7:], y2[:, 7:])


def _plsim(seed: int = 0) -> PLSIM:
    torch.manual_seed(seed)
    return PLSIM(16, caption_embeddings(None, 24, 0), caption_embeddings(None, 40, 1), hidden=8)


def test_plsim_only_touches_segments_and_classes_of_the_pseudo_label():
    plsim = _plsim()
    audio, visual = torch.randn(2, 10, 16), torch.randn(2, 10, 16)
    zeros = torch.zeros(2, 10, 25)
    fa, fv = plsim(audio, visual, zeros, zeros)
    assert torch.equal(fa, audio) and torch.equal(fv, visual)  # empty pseudo-label: identity

    pa = zeros.clone()
    pa[0, 3, 7] = 1  # one audio event: clip 0, segment 3, class 7
    fa, fv = plsim(audio, visual, pa, zeros)
    changed = (fa != audio).any(dim=-1)
    assert changed[0, 3] and changed.sum() == 1 and torch.equal(fv, visual)
    with torch.no_grad():  # Eq. 16 with the class-7 caption
        g1, g2 = plsim.gamma_a1(plsim.text_audio[7]), plsim.gamma_a2(plsim.text_audio[7])
    torch.testing.assert_close(fa[0, 3], audio[0, 3] * g1 + g2 + audio[0, 3])

    with torch.no_grad():  # captions of classes not in the pseudo-label play no part
        plsim.text_audio[8:] += 5.0
    torch.testing.assert_close(plsim(audio, visual, pa, zeros)[0], fa)

    pv = zeros.clone()
    pv[1, 0, [2, 4]] = 1  # two visual classes: the mean of their scale and bias
    fv = plsim(audio, visual, zeros, pv)[1]
    with torch.no_grad():
        s = (plsim.rho_v1(plsim.text_visual[2]) + plsim.rho_v1(plsim.text_visual[4])) / 2
        b = (plsim.rho_v2(plsim.text_visual[2]) + plsim.rho_v2(plsim.text_visual[4])) / 2
    torch.testing.assert_close(fv[1, 0], visual[1, 0] * s + b + visual[1, 0])
    assert torch.equal(fv[0], visual[0]) and torch.equal(fv[1, 1:], visual[1, 1:])


def test_caption_embeddings_file_and_fallback(tmp_path):
    table = np.random.default_rng(0).normal(size=(25, 12)).astype(np.float32)
    np.save(tmp_path / "clap.npy", table)
    np.save(tmp_path / "bad.npy", table[:24])
    assert torch.equal(caption_embeddings(tmp_path / "clap.npy", 99, 0), torch.from_numpy(table))
    with pytest.raises(DataFileError, match="25"):
        caption_embeddings(tmp_path / "bad.npy", 12, 0)
    with pytest.raises(DataFileError, match="not found"):
        caption_embeddings(tmp_path / "missing.npy", 12, 0)
    fallback = caption_embeddings(None, 30, 5)
    assert fallback.shape == (25, 30) and torch.equal(fallback, caption_embeddings(None, 30, 5))
    torch.testing.assert_close(fallback.norm(dim=1), torch.ones(25))
    model = create_model("link", **dict(SMALL, text_audio=str(tmp_path / "clap.npy")))
    assert torch.equal(model.plsim.text_audio, torch.from_numpy(table))
    assert "plsim.text_audio" in model.state_dict()  # checkpoints carry the embeddings


@pytest.mark.parametrize("name", ["mug", "link"])
def test_checkpoint_rebuilds_without_the_caption_files(tmp_path, name):
    table = np.random.default_rng(1).normal(size=(25, 12)).astype(np.float32)
    np.save(tmp_path / "clip.npy", table)
    config = dict(SMALL, text_visual=str(tmp_path / "clip.npy"))
    model = create_model(name, **config)
    checkpoint = {"model": name, "model_config": config, "state_dict": model.state_dict()}
    (tmp_path / "clip.npy").unlink()  # moved, or trained on another machine
    rebuilt = model_from_checkpoint(checkpoint)
    assert torch.equal(rebuilt.plsim.text_visual, torch.from_numpy(table))
    for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values()):
        assert torch.equal(a, b)


def test_cmim_has_four_weights_and_reduces_to_eq6_without_interaction():
    cmim = CrossModalInteraction(alpha_init=0.0)
    assert sum(p.numel() for p in cmim.parameters()) == 4
    a, v = torch.randn(2, 10, 8), torch.randn(2, 10, 8)
    fa, fv = cmim(a, v)
    torch.testing.assert_close(fa, 2 * a)  # f_aout = f_a + f_ac, f_ac = f_a when alpha_2 = 0
    torch.testing.assert_close(fv, 2 * v)
    with torch.no_grad():
        cmim.alpha.fill_(1.0)
    fa, _ = cmim(a, v)
    att = torch.softmax(a @ v.transpose(1, 2) / math.sqrt(8), dim=-1)
    torch.testing.assert_close(fa, 2 * a + att @ v)


def test_sloss_weight_follows_eq11():
    loss = SegmentSimilarityLoss(mu_init=0.0)
    peak = math.e  # e^|1 - 0|
    s = torch.tensor([-1.0, -0.2, -0.1, 0.0, 0.5, 1.0])
    expected = torch.tensor([1.0, 1.0, peak, peak, peak + (1 - peak) * 0.5, 1.0])
    torch.testing.assert_close(loss.weight(s), expected)
    assert torch.allclose(SegmentSimilarityLoss(mu_init=1.0).weight(s), torch.ones(6))
    frozen = SegmentSimilarityLoss(mu_init=0.5, trainable=False)
    assert not frozen.mu.requires_grad and float(frozen.mu) == 0.5


def test_sloss_targets_and_simple_cases():
    loss = SegmentSimilarityLoss(mu_init=0.0)
    eye = torch.eye(10).unsqueeze(0)
    pa = torch.zeros(1, 10, 25)
    pa[0, :, 0] = 1
    pa[0, :5, 1] = 1
    pv = torch.zeros(1, 10, 25)
    pv[0, :, 0] = 1
    r, valid = loss.targets(pa, pv)
    assert valid.all()
    torch.testing.assert_close(r[0, :5], torch.full((5, 10), 0.5))  # {0,1} vs {0}
    torch.testing.assert_close(r[0, 5:], torch.ones(5, 10))
    # similarity equal to the IoU target: zero loss
    feats = torch.eye(10).unsqueeze(0)
    same = torch.zeros(1, 10, 25)
    same[0, torch.arange(10), torch.arange(10)] = 1  # segment t holds class t on both tracks
    assert torch.equal(loss.targets(same, same)[0], eye)
    assert loss(feats, feats, same, same).item() == pytest.approx(0.0, abs=1e-6)
    # no events anywhere: no pair has a target, the loss is 0
    empty = torch.zeros(1, 10, 25)
    assert loss(torch.randn(1, 10, 4), torch.randn(1, 10, 4), empty, empty).item() == 0.0
    # a dissimilar pair costs (s - r)^2 times its weight; mu gets a gradient towards 1
    a, v = torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[-0.1, 1.0]]])
    one = torch.zeros(1, 1, 25)
    one[0, 0, 3] = 1
    value = loss(a, v, one, one)
    s = -0.1 / math.hypot(0.1, 1.0)
    assert value.item() == pytest.approx(math.e * (s - 1.0) ** 2, rel=1e-5)
    value.backward()
    assert loss.mu.grad < 0


def test_sloss_leaves_out_clips_without_both_pseudo_labels():
    """A clip lacking one pseudo-label file carries zeros for it: not a label of 'nothing happens'."""
    loss = SegmentSimilarityLoss(mu_init=0.0)
    pa = torch.zeros(2, 10, 25)
    pa[:, :, 2] = 1
    a, v = torch.randn(2, 10, 8), torch.randn(2, 10, 8)
    only_first = loss(a[:1], v[:1], pa[:1], pa[:1])
    masked = loss(a, v, pa, torch.stack([pa[0], torch.zeros(10, 25)]), torch.tensor([True, False]))
    assert masked.item() == pytest.approx(only_first.item(), rel=1e-6)
    unmasked = loss(a, v, pa, torch.stack([pa[0], torch.zeros(10, 25)]))
    assert unmasked.item() != pytest.approx(only_first.item(), rel=1e-3)


@pytest.mark.parametrize("name,feature_set", [("mug", "vggish"), ("link", "clip_clap")])
def test_overfits_a_tiny_synthetic_set(name, feature_set):
    model = small(name, feature_set, hidden=64, dim_feedforward=64)
    batch = synthetic_batch(feature_set, clips=16, seed=1)
    losses = overfit(model, batch, steps=60)
    assert losses[-1] < 0.25 * losses[0]
    with torch.no_grad():
        f1_audio, f1_visual = segment_f1(model(batch), batch)
    assert f1_audio > 0.9 and f1_visual > 0.9, (f1_audio, f1_visual)
