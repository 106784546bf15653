"""PVT-v2 (Pyramid Vision Transformer v2) feature pyramid, plain PyTorch.

Architecture as in whai362/PVT ``classification/pvt_v2.py`` (and AVSBench's copy,
``avs_scripts/*/model/pvt.py``), non-"linear" variant:

* stage i: overlapping patch embedding (conv 7x7 stride 4 for stage 1, 3x3
  stride 2 after, padding k // 2, then LayerNorm), ``depths[i]`` transformer
  blocks, a final per-stage norm; every stage output is returned as (N, C, H, W);
* block: ``x + drop_path(attn(norm1(x)))``, ``x + drop_path(mlp(norm2(x)))``;
* attention: ``q`` and ``kv`` linears (``qkv_bias``), spatial reduction of keys
  and values by a ``sr_ratio`` x ``sr_ratio`` conv with stride ``sr_ratio`` and a
  LayerNorm when ``sr_ratio > 1``, softmax(q k^T * head_dim^-0.5) v, ``proj``;
* MLP: fc1, 3x3 depthwise conv on the token grid (``mlp.dwconv.dwconv``), GELU,
  fc2.

``norm_layer`` (block norm1/norm2 and the stage norms) is LayerNorm with eps 1e-6,
as in the published ``pvt_v2_b*`` constructors; the patch-embedding norm and the
spatial-reduction norm are plain ``nn.LayerNorm`` (eps 1e-5) in whai362's code and
in timm's, and are kept so here. The module names are whai362's
(``patch_embed1``, ``block1.0.attn.q``, ``norm1``) so its checkpoints load by name;
the classifier head is left out. ``drop_path_rate`` defaults to 0.1 as in the
``pvt_v2_b5`` of the PVT detection/segmentation code and AVSBench's copy (the
classification constructor takes it from the command line).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DropPath", "DWConv", "Mlp", "Attention", "Block", "OverlapPatchEmbed",
    "PyramidVisionTransformerV2", "PVTv2Config", "PVT_V2_B5_CONFIGS", "pvt_v2_b5",
]


@dataclass(frozen=True)
class PVTv2Config:
    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int]
    mlp_ratios: tuple[float, float, float, float]
    sr_ratios: tuple[int, int, int, int]
    qkv_bias: bool = True
    norm_eps: float = 1e-6


PVT_V2_B5_CONFIGS: dict[str, PVTv2Config] = {
    "full": PVTv2Config(embed_dims=(64, 128, 320, 512), depths=(3, 6, 40, 3), num_heads=(1, 2, 5, 8),
                        mlp_ratios=(4, 4, 4, 4), sr_ratios=(8, 4, 2, 1)),
    "tiny": PVTv2Config(embed_dims=(8, 16, 24, 32), depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                        mlp_ratios=(4, 4, 4, 4), sr_ratios=(8, 4, 2, 1)),
}


class DropPath(nn.Module):
    """Stochastic depth per sample (drops the residual branch), as timm's DropPath."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


class DWConv(nn.Module):
    """3x3 depthwise conv over the token grid (whai362 keeps it under ``.dwconv``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, C = x.shape
        x = x.transpose(1, 2).reshape(B, C, H, W)
        x = self.dwconv(x)
        return x.flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.dwconv = DWConv(hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        x = self.fc1(x)
        x = self.act(self.dwconv(x, H, W))
        x = self.drop(x)
        x = self.fc2(x)
        return self.drop(x)


class Attention(nn.Module):
    """Spatial-reduction attention (SRA) of PVT-v2."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, sr_ratio: int = 1):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} should be divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.attn_drop = float(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.sr_ratio = int(sr_ratio)
        if self.sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=self.sr_ratio, stride=self.sr_ratio)
            self.norm = nn.LayerNorm(dim)  # default eps, as in whai362 and timm

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, C = x.shape
        q = self.q(x).reshape(B, N, self.num_heads, self.head_dim).permute(0, 2, 1, 3)
        if self.sr_ratio > 1:
            x_ = x.permute(0, 2, 1).reshape(B, C, H, W)
            x_ = self.sr(x_).reshape(B, C, -1).permute(0, 2, 1)
            x_ = self.norm(x_)
        else:
            x_ = x
        kv = self.kv(x_).reshape(B, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale)
        out = out.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(out))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 norm_eps: float = 1e-6, sr_ratio: int = 1):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                              proj_drop=drop, sr_ratio=sr_ratio)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), H, W))
        x = x + self.drop_path(self.mlp(self.norm2(x), H, W))
        return x


class OverlapPatchEmbed(nn.Module):
    """Conv patch embedding with overlap (kernel > stride, padding kernel // 2) + LayerNorm."""

    def __init__(self, patch_size: int = 7, stride: int = 4, in_chans: int = 3, embed_dim: int = 768):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=stride,
                              padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim)  # default eps, as in whai362 and timm

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        _, _, H, W = x.shape
        x = self.norm(x.flatten(2).transpose(1, 2))
        return x, H, W


class PyramidVisionTransformerV2(nn.Module):
    """PVT-v2 trunk returning the four stage outputs (strides 4, 8, 16, 32)."""

    def __init__(self, embed_dims=(64, 128, 320, 512), depths=(3, 6, 40, 3), num_heads=(1, 2, 5, 8),
                 mlp_ratios=(4, 4, 4, 4), sr_ratios=(8, 4, 2, 1), qkv_bias: bool = True,
                 norm_eps: float = 1e-6, in_chans: int = 3, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1):
        super().__init__()
        for name, seq in (("embed_dims", embed_dims), ("depths", depths), ("num_heads", num_heads),
                          ("mlp_ratios", mlp_ratios), ("sr_ratios", sr_ratios)):
            if len(seq) != 4:
                raise ValueError(f"PVT-v2 needs four {name}, got {seq!r}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.embed_dims = tuple(int(d) for d in embed_dims)
        self.depths = tuple(int(d) for d in depths)
        self.num_stages = 4
        self.channels: tuple[int, int, int, int] = self.embed_dims  # type: ignore[assignment]
        self.strides: tuple[int, int, int, int] = (4, 8, 16, 32)
        self.drop_path_rate = float(drop_path_rate)

        # stochastic depth decay rule: linear over all blocks of all stages
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(self.depths), device="cpu")]
        cur = 0
        for i in range(4):
            patch_embed = OverlapPatchEmbed(
                patch_size=7 if i == 0 else 3, stride=4 if i == 0 else 2,
                in_chans=in_chans if i == 0 else self.embed_dims[i - 1], embed_dim=self.embed_dims[i])
            block = nn.ModuleList([
                Block(self.embed_dims[i], num_heads=num_heads[i], mlp_ratio=mlp_ratios[i], qkv_bias=qkv_bias,
                      drop=drop_rate, attn_drop=attn_drop_rate, drop_path=dpr[cur + j], norm_eps=norm_eps,
                      sr_ratio=sr_ratios[i])
                for j in range(self.depths[i])])
            norm = nn.LayerNorm(self.embed_dims[i], eps=norm_eps)
            cur += self.depths[i]
            setattr(self, f"patch_embed{i + 1}", patch_embed)
            setattr(self, f"block{i + 1}", block)
            setattr(self, f"norm{i + 1}", norm)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                m.bias.data.zero_()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"PVT-v2 expects images (N, C, H, W), got shape {tuple(x.shape)}")
        B = x.shape[0]
        outs = []
        for i in range(1, 5):
            x, H, W = getattr(self, f"patch_embed{i}")(x)
            for blk in getattr(self, f"block{i}"):
                x = blk(x, H, W)
            x = getattr(self, f"norm{i}")(x)
            x = x.reshape(B, H, W, -1).permute(0, 3, 1, 2).contiguous()
            outs.append(x)
        return outs


def pvt_v2_b5(size: str = "full", **options) -> PyramidVisionTransformerV2:
    """PVT-v2-b5 ("full") or its tiny twin for tests ("tiny": dims 8..32, one block a stage)."""
    try:
        cfg = PVT_V2_B5_CONFIGS[size]
    except KeyError:
        raise ValueError(f"pvt_v2_b5: size must be one of {sorted(PVT_V2_B5_CONFIGS)}, got {size!r}") from None
    allowed = {"in_chans", "drop_rate", "attn_drop_rate", "drop_path_rate"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"pvt_v2_b5: unknown option(s) {unknown}; accepted: {sorted(allowed)}")
    return PyramidVisionTransformerV2(
        embed_dims=cfg.embed_dims, depths=cfg.depths, num_heads=cfg.num_heads, mlp_ratios=cfg.mlp_ratios,
        sr_ratios=cfg.sr_ratios, qkv_bias=cfg.qkv_bias, norm_eps=cfg.norm_eps, **options)
