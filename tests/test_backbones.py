"""Backbones for audio-visual segmentation: shapes, published key formats, safe loading.

The published namings below are written out here from the public code (torchvision
resnet.py, whai362/PVT classification/pvt_v2.py, timm pvt_v2.py's
_checkpoint_filter_fn, torchvggish vggish.py / vggish_params.py), independently of
inference/backbones/weights.py.
"""

from __future__ import annotations

import math
import pickle
import re

import numpy as np
import pytest
import torch
from torch import nn

from inference.backbones import (
    FORMATS,
    UnsafeWeightsError,
    VGGish,
    WeightsFileError,
    build_visual_backbone,
    detect_format,
    load_backbone_weights,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread is faster than two, and steadier on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _seeded(builder, seed):
    torch.manual_seed(seed)
    return builder().eval()


def _randomize_bn_stats(module: nn.Module, seed: int = 7) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            m.num_batches_tracked.fill_(123)


@torch.no_grad()
def _run(module, x):
    module.eval()
    out = module(x)
    return [o.clone() for o in out] if isinstance(out, list) else out.clone()


def _same(a, b) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
    return torch.equal(a, b)


def _params_snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------- shapes

TINY_CHANNELS = {"resnet50": (32, 64, 128, 256), "pvt_v2_b5": (8, 16, 24, 32)}
FULL_CHANNELS = {"resnet50": (256, 512, 1024, 2048), "pvt_v2_b5": (64, 128, 320, 512)}
# parameter counts without the classifier: torchvision resnet50 25,557,032 - fc 2,049,000;
# PVT-v2-b5 82.0M in the paper = 81,443,008 + head 513,000
FULL_PARAMS = {"resnet50": 23_508_032, "pvt_v2_b5": 81_443_008}


@pytest.mark.parametrize("name", ["resnet50", "pvt_v2_b5"])
@pytest.mark.parametrize("hw", [(64, 64), (70, 50)])
def test_tiny_outputs_at_strides_4_to_32(name, hw):
    model = build_visual_backbone(name, size="tiny").eval()
    assert model.channels == TINY_CHANNELS[name]
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        outs = model(x)
    assert isinstance(outs, list) and len(outs) == 4
    for out, ch, stride in zip(outs, model.channels, (4, 8, 16, 32)):
        assert out.shape == (2, ch, math.ceil(hw[0] / stride), math.ceil(hw[1] / stride))
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["resnet50", "pvt_v2_b5"])
def test_full_size_shapes_and_parameter_count_on_meta(name):
    with torch.device("meta"):
        model = build_visual_backbone(name)
        outs = model(torch.empty(2, 3, 224, 224))
    assert model.channels == FULL_CHANNELS[name]
    assert [tuple(o.shape) for o in outs] == [(2, c, 224 // s, 224 // s)
                                             for c, s in zip(FULL_CHANNELS[name], (4, 8, 16, 32))]
    assert sum(p.numel() for p in model.parameters()) == FULL_PARAMS[name]


def test_pvt_v2_b5_published_configuration():
    with torch.device("meta"):
        m = build_visual_backbone("pvt_v2_b5")
    assert [len(getattr(m, f"block{i}")) for i in range(1, 5)] == [3, 6, 40, 3]
    for i, (dim, heads, sr) in enumerate(zip((64, 128, 320, 512), (1, 2, 5, 8), (8, 4, 2, 1)), start=1):
        pe = getattr(m, f"patch_embed{i}")
        assert pe.proj.kernel_size == ((7, 7) if i == 1 else (3, 3))
        assert pe.proj.stride == ((4, 4) if i == 1 else (2, 2))
        assert pe.proj.padding == ((3, 3) if i == 1 else (1, 1))
        blk = getattr(m, f"block{i}")[0]
        assert blk.attn.num_heads == heads and blk.attn.q.bias is not None and blk.attn.kv.bias is not None
        assert blk.attn.kv.out_features == 2 * dim
        assert blk.mlp.fc1.out_features == 4 * dim
        assert blk.mlp.dwconv.dwconv.groups == 4 * dim
        assert blk.norm1.eps == 1e-6 and blk.norm2.eps == 1e-6 and getattr(m, f"norm{i}").eps == 1e-6
        if sr > 1:
            assert blk.attn.sr.kernel_size == (sr, sr) and blk.attn.sr.stride == (sr, sr)
        else:
            assert not hasattr(blk.attn, "sr")
    # stochastic depth: linear from 0 to 0.1 over the 52 blocks
    assert isinstance(m.block1[0].drop_path, nn.Identity)
    assert m.block4[2].drop_path.drop_prob == pytest.approx(0.1)
    assert m.block3[0].drop_path.drop_prob == pytest.approx(0.1 * 9 / 51)
    with torch.device("meta"):
        m0 = build_visual_backbone("pvt_v2_b5", drop_path_rate=0.0)
    assert all(isinstance(b.drop_path, nn.Identity) for i in range(1, 5) for b in getattr(m0, f"block{i}"))


def test_resnet50_published_configuration():
    with torch.device("meta"):
        m = build_visual_backbone("resnet50")
    assert [len(getattr(m, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert m.conv1.kernel_size == (7, 7) and m.conv1.stride == (2, 2)
    # torchvision v1.5: the stride is on the 3x3 conv
    assert m.layer2[0].conv1.stride == (1, 1) and m.layer2[0].conv2.stride == (2, 2)
    assert m.layer2[0].downsample[0].stride == (2, 2)


def test_pvt_attention_matches_the_explicit_formula():
    """whai362's Attention.forward: softmax(q k^T * head_dim^-0.5) v over the sr-reduced tokens."""
    from inference.backbones.pvt_v2 import Attention

    torch.manual_seed(0)
    attn = Attention(16, num_heads=2, qkv_bias=True, sr_ratio=2).eval()
    B, H, W, C = 2, 4, 6, 16
    x = torch.randn(B, H * W, C)
    with torch.no_grad():
        q = attn.q(x).reshape(B, H * W, 2, C // 2).permute(0, 2, 1, 3)
        x_ = attn.sr(x.permute(0, 2, 1).reshape(B, C, H, W)).reshape(B, C, -1).permute(0, 2, 1)
        kv = attn.kv(attn.norm(x_)).reshape(B, -1, 2, 2, C // 2).permute(2, 0, 3, 1, 4)
        a = ((q @ kv[0].transpose(-2, -1)) * (C // 2) ** -0.5).softmax(dim=-1)
        ref = attn.proj((a @ kv[1]).transpose(1, 2).reshape(B, H * W, C))
        out = attn(x, H, W)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_drop_path_trains_and_backpropagates():
    model = build_visual_backbone("pvt_v2_b5", size="tiny", drop_path_rate=0.5).train()
    outs = model(torch.randn(2, 3, 32, 32))
    sum(o.mean() for o in outs).backward()
    assert model.patch_embed1.proj.weight.grad is not None


def test_build_visual_backbone_rejects_unknown_name_size_and_option():
    with pytest.raises(ValueError, match="resnet50"):
        build_visual_backbone("vit_b16")
    with pytest.raises(ValueError, match="tiny"):
        build_visual_backbone("resnet50", size="small")
    with pytest.raises(TypeError, match="drop_path_rate"):
        build_visual_backbone("resnet50", size="tiny", drop_path_rate=0.1)


def test_vggish_shapes_flatten_order_and_size():
    model = _seeded(lambda: VGGish(size="tiny"), 0)
    x = torch.randn(3, 1, 96, 64)
    with torch.no_grad():
        out = model(x)
        # torchvggish: features, then transpose(1, 3), transpose(1, 2), flatten, embeddings
        f = model.features(x)
        ref = model.embeddings(torch.transpose(torch.transpose(f, 1, 3), 1, 2).contiguous().view(3, -1))
    assert f.shape[2:] == (6, 4)
    assert out.shape == (3, 128) and torch.equal(out, ref)
    with pytest.raises(ValueError, match="96, 64"):
        model(torch.randn(3, 1, 64, 96))
    with torch.device("meta"):
        full = VGGish()
        assert full(torch.empty(2, 1, 96, 64)).shape == (2, 128)
    assert sum(p.numel() for p in full.parameters()) == 72_141_184
    convs = [i for i, m in enumerate(full.features) if isinstance(m, nn.Conv2d)]
    assert convs == [0, 3, 6, 8, 11, 13]
    assert [m.out_channels for m in full.features if isinstance(m, nn.Conv2d)] == [64, 128, 256, 256, 512, 512]
    assert [(m.in_features, m.out_features) for m in full.embeddings if isinstance(m, nn.Linear)] == [
        (512 * 4 * 6, 4096), (4096, 4096), (4096, 128)]


def test_vggish_pca_postprocess_as_torchvggish():
    model = _seeded(lambda: VGGish(size="tiny", postprocess=True), 0)
    gen = torch.Generator().manual_seed(3)
    eig = torch.randn(128, 128, generator=gen) * 0.3
    means = torch.randn(128, 1, generator=gen)
    model.pca_eigen_vectors.copy_(eig)
    model.pca_means.copy_(means)
    x = torch.randn(2, 1, 96, 64)
    with torch.no_grad():
        emb = model.embed(x)
        out = model(x)
    pca = (eig @ (emb.t() - means)).t()
    expected = torch.round((pca.clamp(-2.0, 2.0) + 2.0) * (255.0 / 4.0))
    assert out.shape == (2, 128) and torch.equal(out, expected)
    assert out.min() >= 0 and out.max() <= 255


# --------------------------------------------------------------------------- published key formats


def torchvision_names(state):
    """Our ResNet in torchvision's naming: same names, plus the classifier."""
    out = dict(state)
    width = state["layer4.0.conv3.weight"].shape[0]
    out["fc.weight"] = torch.randn(1000, width)
    out["fc.bias"] = torch.randn(1000)
    return out


def whai362_names(state):
    out = dict(state)
    dim = state["norm4.weight"].shape[0]
    out["head.weight"] = torch.randn(1000, dim)
    out["head.bias"] = torch.randn(1000)
    return out


def timm_names(whai_state):
    """timm's _checkpoint_filter_fn (original PVT-v2 -> timm), written as in timm."""
    out = {}
    for k, v in whai_state.items():
        if k.startswith("patch_embed"):
            k = k.replace("patch_embed1", "patch_embed")
            k = k.replace("patch_embed2", "stages.1.downsample")
            k = k.replace("patch_embed3", "stages.2.downsample")
            k = k.replace("patch_embed4", "stages.3.downsample")
        k = k.replace("dwconv.dwconv", "dwconv")
        k = re.sub(r"block(\d+).(\d+)", lambda x: f"stages.{int(x.group(1)) - 1}.blocks.{x.group(2)}", k)
        k = re.sub(r"^norm(\d+)", lambda x: f"stages.{int(x.group(1)) - 1}.norm", k)
        out[k] = v
    return out


def test_native_names_are_the_published_ones():
    with torch.device("meta"):
        resnet = build_visual_backbone("resnet50")
        pvt = build_visual_backbone("pvt_v2_b5")
    r = set(resnet.state_dict())
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer1.0.downsample.0.weight",
                "layer1.0.downsample.1.num_batches_tracked", "layer3.5.bn3.bias", "layer4.2.conv3.weight"):
        assert key in r, key
    assert len(r) == 318  # torchvision resnet50: 320 state keys, less fc.weight and fc.bias
    p = set(pvt.state_dict())
    for key in ("patch_embed1.proj.weight", "patch_embed1.norm.bias", "patch_embed4.proj.weight",
                "block1.0.attn.q.weight", "block1.0.attn.kv.bias", "block1.0.attn.sr.weight", "block1.0.attn.norm.weight",
                "block1.0.attn.proj.weight", "block1.0.mlp.fc1.weight", "block1.0.mlp.dwconv.dwconv.weight",
                "block3.39.mlp.fc2.bias", "block4.2.norm2.weight", "norm4.bias"):
        assert key in p, key
    assert not any(k.startswith("block4.") and ".attn.sr." in k for k in p)


def test_timm_names_look_like_timm():
    with torch.device("meta"):
        m = build_visual_backbone("pvt_v2_b5", size="tiny")
    names = set(timm_names(whai362_names(m.state_dict())))
    for key in ("patch_embed.proj.weight", "patch_embed.norm.weight", "stages.1.downsample.proj.weight",
                "stages.0.blocks.0.attn.q.weight", "stages.0.blocks.0.attn.kv.weight",
                "stages.0.blocks.0.attn.sr.weight", "stages.0.blocks.0.attn.norm.weight",
                "stages.0.blocks.0.mlp.dwconv.weight", "stages.3.norm.bias", "head.weight"):
        assert key in names, key
    assert not any("dwconv.dwconv" in k or k.startswith(("block", "norm1")) for k in names)


def _tiny_resnet(seed):
    m = _seeded(lambda: build_visual_backbone("resnet50", size="tiny"), seed)
    _randomize_bn_stats(m, seed)
    return m


def _tiny_pvt(seed):
    m = _seeded(lambda: build_visual_backbone("pvt_v2_b5", size="tiny"), seed)
    with torch.no_grad():  # LayerNorms start at 1/0: make them count
        for p in m.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return m


CASES = {
    "torchvision_resnet": (_tiny_resnet, torchvision_names),
    "pvt_v2": (_tiny_pvt, whai362_names),
    "timm_pvt_v2": (_tiny_pvt, lambda s: timm_names(whai362_names(s))),
}


@pytest.mark.parametrize(("fmt", "wrap"), [("torchvision_resnet", "plain"), ("pvt_v2", "plain"),
                                          ("timm_pvt_v2", "plain"), ("torchvision_resnet", "state_dict"),
                                          ("pvt_v2", "model"), ("timm_pvt_v2", "module.")])
def test_published_format_loads_and_reproduces_outputs(tmp_path, fmt, wrap):
    make, rename = CASES[fmt]
    source, target = make(0), make(1)
    x = torch.randn(2, 3, 64, 64)
    expected = _run(source, x)
    assert not _same(_run(target, x), expected)
    state = rename(source.state_dict())
    if wrap == "state_dict":
        obj = {"state_dict": state, "meta": {"epoch": 3}}
    elif wrap == "model":
        obj = {"model": state, "optimizer": {"lr": torch.tensor(0.1)}, "epoch": 300}
    elif wrap == "module.":
        obj = {f"module.{k}": v for k, v in state.items()}
    else:
        obj = state
    path = tmp_path / "w.pth"
    torch.save(obj, path)
    report = load_backbone_weights(target, path)
    assert report.format == fmt
    assert _same(_run(target, x), expected)
    assert set(report.ignored) <= {f"{p}.{s}" for p in ("fc", "head", "module.fc", "module.head")
                                   for s in ("weight", "bias")}
    assert len(report.ignored) == 2
    assert str(path) in report.path and fmt in str(report)


def test_torchvision_2017_file_without_num_batches_tracked(tmp_path):
    source, target = _tiny_resnet(0), _tiny_resnet(1)
    state = {k: v for k, v in torchvision_names(source.state_dict()).items() if "num_batches_tracked" not in k}
    torch.save(state, tmp_path / "resnet50-19c8e357.pth")
    report = load_backbone_weights(target, tmp_path / "resnet50-19c8e357.pth", fmt="torchvision_resnet")
    x = torch.randn(1, 3, 64, 64)
    assert _same(_run(target, x), _run(source, x))
    assert report.kept and all(k.endswith("num_batches_tracked") for k in report.kept)


def test_torchvggish_network_and_numpy_pca_files(tmp_path):
    source = _seeded(lambda: VGGish(size="tiny", postprocess=True), 0)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        source.pca_eigen_vectors.copy_(torch.randn(128, 128, generator=gen) * 0.2)
        source.pca_means.copy_(torch.randn(128, 1, generator=gen) * 0.01)
    target = _seeded(lambda: VGGish(size="tiny", postprocess=True), 1)
    net = {k: v for k, v in source.state_dict().items() if k.startswith(("features.", "embeddings."))}
    published = {f"{part}.{i}.{s}" for part, idx in (("features", (0, 3, 6, 8, 11, 13)), ("embeddings", (0, 2, 4)))
                 for i in idx for s in ("weight", "bias")}
    assert set(net) == published
    # as vggish_pca_params-970ea276.pth: numpy arrays, means of shape (128,)
    pca = {"pca_eigen_vectors": source.pca_eigen_vectors.double().numpy(),
           "pca_means": source.pca_means.reshape(-1).double().numpy()}
    torch.save(net, tmp_path / "vggish-10086976.pth")
    torch.save(pca, tmp_path / "vggish_pca_params-970ea276.pth")

    r1 = load_backbone_weights(target, tmp_path / "vggish-10086976.pth")
    assert r1.format == "torchvggish" and set(r1.kept) == {"pca_eigen_vectors", "pca_means"}
    r2 = load_backbone_weights(target, tmp_path / "vggish_pca_params-970ea276.pth")
    assert r2.format == "torchvggish" and set(r2.loaded) == {"pca_eigen_vectors", "pca_means"}
    x = torch.randn(2, 1, 96, 64)
    assert _same(_run(target, x), _run(source, x))

    # AVSBench: postprocess=False, network file only; a PCA file alone has nothing for it
    plain = _seeded(lambda: VGGish(size="tiny"), 2)
    load_backbone_weights(plain, tmp_path / "vggish-10086976.pth", fmt="torchvggish")
    with torch.no_grad():
        assert torch.equal(_run(plain, x), source.embed(x))
    with pytest.raises(ValueError, match="nothing in the file"):
        load_backbone_weights(plain, tmp_path / "vggish_pca_params-970ea276.pth")
    # a file missing one PCA tensor is incomplete
    torch.save({"pca_eigen_vectors": pca["pca_eigen_vectors"]}, tmp_path / "half.pth")
    with pytest.raises(ValueError, match=r"missing \(1\): pca_means"):
        load_backbone_weights(target, tmp_path / "half.pth")


def test_auto_detection_and_wrong_module(tmp_path):
    resnet, pvt = _tiny_resnet(0), _tiny_pvt(0)
    vgg = VGGish(size="tiny")
    states = {
        "torchvision_resnet": torchvision_names(resnet.state_dict()),
        "pvt_v2": whai362_names(pvt.state_dict()),
        "timm_pvt_v2": timm_names(whai362_names(pvt.state_dict())),
        "torchvggish": vgg.state_dict(),
    }
    assert set(states) == set(FORMATS)
    for fmt, state in states.items():
        assert detect_format(state) == fmt
    assert detect_format({"encoder.weight": None}) is None
    torch.save(states["pvt_v2"], tmp_path / "pvt.pth")
    with pytest.raises(ValueError, match=r"pvt\.pth.*'pvt_v2'.*PyramidVisionTransformerV2.*ResNet"):
        load_backbone_weights(resnet, tmp_path / "pvt.pth")
    with pytest.raises(ValueError, match="unknown weights format"):
        load_backbone_weights(resnet, tmp_path / "pvt.pth", fmt="mmseg")


# --------------------------------------------------------------------------- errors


def _error_for(module, tmp_path, state, fmt="auto", name="bad.pth"):
    path = tmp_path / name
    torch.save(state, path)
    before = _params_snapshot(module)
    with pytest.raises(ValueError) as info:
        load_backbone_weights(module, path, fmt=fmt)
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a failed load must change nothing"
    msg = str(info.value)
    assert str(path) in msg
    return msg


def test_missing_key_is_named_with_its_shape(tmp_path):
    model = _tiny_resnet(0)
    state = torchvision_names(model.state_dict())
    del state["layer2.0.conv2.weight"]
    msg = _error_for(model, tmp_path, state)
    assert "'torchvision_resnet'" in msg and "missing (1)" in msg
    assert "layer2.0.conv2.weight (expected (16, 16, 3, 3))" in msg


def test_unexpected_key_is_named(tmp_path):
    model = _tiny_pvt(0)
    state = whai362_names(model.state_dict())
    state["block1.0.attn.qkv.weight"] = torch.zeros(24, 8)
    msg = _error_for(model, tmp_path, state)
    assert "'pvt_v2'" in msg and "unexpected (1)" in msg and "block1.0.attn.qkv.weight (found (24, 8))" in msg


def test_shape_mismatch_names_expected_found_and_file_key(tmp_path):
    model = _tiny_pvt(0)
    state = timm_names(whai362_names(model.state_dict()))
    state["stages.2.blocks.0.mlp.dwconv.weight"] = torch.zeros(96, 1, 5, 5)
    state["stages.0.norm.weight"] = torch.zeros(9)
    msg = _error_for(model, tmp_path, state)
    assert "'timm_pvt_v2'" in msg and "shape mismatch (2)" in msg
    assert ("block3.0.mlp.dwconv.dwconv.weight: expected (96, 1, 3, 3), found (96, 1, 5, 5) "
            "(file key stages.2.blocks.0.mlp.dwconv.weight)") in msg
    assert "norm1.weight: expected (8,), found (9,)" in msg


def test_full_size_file_into_tiny_model_lists_only_a_few_keys(tmp_path):
    with torch.device("meta"):
        full = build_visual_backbone("resnet50")
    state = {k: torch.zeros(v.shape) for k, v in torchvision_names(full.state_dict()).items()
             if k.startswith(("conv1", "bn1", "layer1"))}
    msg = _error_for(_tiny_resnet(0), tmp_path, state)
    lines = msg.splitlines()
    assert len(lines) == 4  # header, missing, unexpected, shape mismatch: five keys each at most
    assert lines[1].startswith("  missing (60): layer2.0.conv1.weight (expected (16, 32, 1, 1))")
    assert lines[2].startswith("  unexpected (36): layer1.1.conv1.weight (found (64, 256, 1, 1))")
    assert lines[3].startswith("  shape mismatch (25): conv1.weight: expected (8, 3, 7, 7), found (64, 3, 7, 7);")
    assert all(line.count("expected") + line.count("found") <= 10 for line in lines)


def test_files_that_are_not_weights(tmp_path):
    model = _tiny_resnet(0)
    cases = {
        "notes.txt": lambda p: p.write_text("hello world\n" * 20),
        "empty.pth": lambda p: p.write_bytes(b""),
        "broken.pth": lambda p: p.write_bytes(b"PK\x03\x04" + b"\x00" * 64),
        "list.pth": lambda p: torch.save([torch.zeros(3)], p),
        "epoch.pth": lambda p: torch.save({"epoch": 3, "lr": 0.1}, p),
        "empty_dict.pth": lambda p: torch.save({}, p),
    }
    for name, write in cases.items():
        path = tmp_path / name
        write(path)
        with pytest.raises(WeightsFileError) as info:
            load_backbone_weights(model, path)
        assert str(path) in str(info.value), name
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(WeightsFileError, match="cannot tell the weights format"):
        load_backbone_weights(model, tmp_path / "other.pth")
    with pytest.raises(FileNotFoundError):
        load_backbone_weights(model, tmp_path / "absent.pth")


class _Payload:
    """Unpickled freely, this runs code: it writes a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def test_crafted_pickle_is_refused_and_does_not_run(tmp_path):
    # the payload is live: plain pickle runs it
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(_Payload(live)))
    assert live.exists()

    model = _tiny_resnet(0)
    marker = tmp_path / "marker"
    state = torchvision_names(model.state_dict())
    state["conv1.weight"] = _Payload(marker)
    torch.save(state, tmp_path / "evil.pth")
    with pytest.raises(UnsafeWeightsError, match=r"evil\.pth.*refused.*GLOBAL (builtins\.)?exec"):
        load_backbone_weights(model, tmp_path / "evil.pth")
    assert not marker.exists()

    # the numpy allowance (for torchvggish's PCA file) lets nothing else through
    torch.save({"pca_eigen_vectors": np.zeros((128, 128)), "pca_means": _Payload(marker)}, tmp_path / "evil_np.pth")
    with pytest.raises(UnsafeWeightsError, match=r"GLOBAL (builtins\.)?exec"):
        load_backbone_weights(VGGish(size="tiny", postprocess=True), tmp_path / "evil_np.pth")
    assert not marker.exists()

    # a raw pickle (not a torch file) with the payload
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"conv1.weight": _Payload(marker)}, protocol=2))
    with pytest.raises(UnsafeWeightsError):
        load_backbone_weights(model, tmp_path / "evil.pkl")
    assert not marker.exists()


def test_a_vggish_without_weights_still_tells_sounds_apart():
    """PyTorch's default init collapsed the nine ReLU layers: every clip got the same embedding (std across
    clips 6e-4 of a mean 0.05 on the AVS demo), so a model trained from scratch was deaf. He init keeps it."""
    torch.manual_seed(0)
    log_mel = torch.randn(16, 1, 96, 64) * 1.5 - 2.0  # the range of VGGish log-mel inputs
    for size in ("tiny", "full"):
        with torch.no_grad():
            out = VGGish(size)(log_mel)
        assert out.std(0).mean() > 0.05 * out.abs().mean(), size  # default init: 0.013
