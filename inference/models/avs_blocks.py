"""The Mamba blocks of AVS-Mamba (Gong et al.), on the project's selective scan.

Every block here follows the released AVS-Mamba code (SitongGong/AVS-Mamba, `model/
cross_scale_temporal_v2.py`, `model/cross_modal_mamba.py`, `model/mamba_3d_.py`,
`model/mamba_cmfpn_.py`, `model/compformer_ablation.py`); where the paper says
otherwise, `inference.models.avs_mamba` documents it and offers the paper's choice as
an option. Shapes: visual features are channels-last (N, H, W, C) or (B, T, H, W, C)
where LayerNorm/Linear act and channels-first where a convolution does, as in the
code; audio is (B, T, C).

The scans are VMamba's multi-direction selective scan: K directions, each with its
own (dt, B, C) projection, dt_proj, A and D, run as ONE `inference.ssm.selective_scan`
call with grouped B/C (batch, K, N, L), channel block k scanning direction k. The scan
backend is looked up at call time, as in `inference.models.mamba`; `backend` on a
`MultiDirectionSSM` pins one (tests compare "reference" with "auto").
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from inference import ssm
from inference.models.mamba import init_dt_proj, resolve_dt_rank

# spatial orders of a (T, H, W) map, as permutations of its three axes (AVS-Mamba Eq. 8 / Table VII):
# thw and twh are spatial-first, hwt and wht temporal-first; each is scanned forwards and backwards
TEMPORAL_ORDERS: tuple[tuple[int, ...], ...] = ((0, 1, 2), (0, 2, 1), (1, 2, 0), (2, 1, 0))
SPATIAL_ORDERS: tuple[tuple[int, ...], ...] = ((0, 1), (1, 0))  # hw, wh (VMamba's cross-scan)


def group_count(channels: int, most: int = 32) -> int:
    """GroupNorm groups: 32 as the code (d_model 256), else the largest divisor of `channels` <= 32."""
    return max(g for g in range(1, most + 1) if channels % g == 0)


def c2_xavier_fill(conv: nn.Conv2d) -> None:
    """fvcore's `c2_xavier_fill` (what the code applies to the pyramid's convolutions)."""
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class DropPath(nn.Module):
    """Stochastic depth per sample (timm's DropPath, which the code uses with p = 0.1)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


# ------------------------------------------------------------------ the scan

class MultiDirectionSSM(nn.Module):
    """K selective SSMs of width `d_inner` (one per scan direction) run as one grouped scan.

    Parameters as VMamba/AVS-Mamba: x_proj (K, dt_rank + 2N, d_inner) without bias, dt_proj
    per direction with mamba_ssm's softplus-inverse bias init (`inference.models.mamba.
    init_dt_proj`), S4D-real A (`A_logs`) and skip D. forward: xs (B, K, d_inner, L) -> ys
    (B, K, d_inner, L) in float32 (float64 for float64 inputs).
    """

    def __init__(self, d_inner: int, directions: int, d_state: int = 16, dt_rank: int = 16,
                 dt_min: float = 0.001, dt_max: float = 0.1, dt_init_floor: float = 1e-4):
        super().__init__()
        self.d_inner, self.K, self.d_state, self.dt_rank = d_inner, directions, d_state, dt_rank
        self.backend = "auto"
        x_proj = [nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False) for _ in range(directions)]
        self.x_proj_weight = nn.Parameter(torch.stack([p.weight.detach() for p in x_proj]))
        dt_projs = []
        for _ in range(directions):
            proj = nn.Linear(dt_rank, d_inner)
            init_dt_proj(proj, dt_rank, dt_min, dt_max, dt_init_floor)
            dt_projs.append(proj)
        self.dt_projs_weight = nn.Parameter(torch.stack([p.weight.detach() for p in dt_projs]))
        self.dt_projs_bias = nn.Parameter(torch.stack([p.bias.detach() for p in dt_projs]))
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(directions * d_inner, 1)
        self.A_logs = nn.Parameter(torch.log(A))
        self.A_logs._no_weight_decay = True  # type: ignore[attr-defined]
        self.Ds = nn.Parameter(torch.ones(directions * d_inner))
        self.Ds._no_weight_decay = True  # type: ignore[attr-defined]

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        b, k, d, length = xs.shape
        if (k, d) != (self.K, self.d_inner):
            raise ValueError(f"scan input has {k} directions x {d} channels; expected {self.K} x {self.d_inner}")
        x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)
        dts, Bs, Cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)
        f = torch.promote_types(xs.dtype, torch.float32)  # float32 as the code (.float()), float64 stays
        out = ssm.selective_scan(
            xs.to(f).reshape(b, k * d, length), dts.to(f).reshape(b, k * d, length).contiguous(),
            -torch.exp(self.A_logs.to(f)), Bs.to(f).contiguous(), Cs.to(f).contiguous(),
            D=self.Ds.to(f), z=None, delta_bias=self.dt_projs_bias.to(f).reshape(-1), delta_softplus=True,
            backend=self.backend,
        )
        return out.view(b, k, d, length)


def serialize(maps: Sequence[torch.Tensor], order: Sequence[int]) -> torch.Tensor:
    """Maps (B, C, *S_i) -> one sequence (B, C, sum |S_i|): each map's axes permuted by `order`,
    flattened, and the maps concatenated (AVS-Mamba's multi-scale sequences)."""
    axes = [2 + a for a in order]
    return torch.cat([m.permute(0, 1, *axes).reshape(m.shape[0], m.shape[1], -1) for m in maps], dim=-1)


def deserialize(seq: torch.Tensor, shapes: Sequence[Sequence[int]], order: Sequence[int]) -> list[torch.Tensor]:
    """The inverse of `serialize`: (B, C, L) -> maps (B, C, *S_i) in their own axis order."""
    inverse = [2 + a for a in sorted(range(len(order)), key=lambda i: order[i])]
    out, start = [], 0
    for shape in shapes:
        n = math.prod(shape)
        piece = seq[..., start:start + n].reshape(*seq.shape[:2], *[shape[a] for a in order])
        out.append(piece.permute(0, 1, *inverse))
        start += n
    return out


def cross_scan(ssm_module: MultiDirectionSSM, maps: Sequence[torch.Tensor],
               orders: Sequence[Sequence[int]], layout: str = "pairs") -> list[torch.Tensor]:
    """Scan the maps jointly along each order forwards and backwards (2 x len(orders) directions)
    and sum the directions back onto each map: VMamba's SS2D (2-D orders) and AVS-Mamba's 3-D
    selective scan (Eqs. 8-10; 3-D orders). maps (B, C, *S_i) -> list of (B, C, *S_i) float32.

    `layout` places the directions as the code does, so that direction k uses the code's k-th
    parameters: "pairs" [o1, rev o1, o2, rev o2, ...] (the Temporal Mamba), "blocks"
    [o1, o2, ..., rev o1, rev o2, ...] (VMamba's SS2D in the VSS block).
    """
    forward = [serialize(maps, order) for order in orders]
    n = len(orders)
    if layout == "pairs":
        seqs = [s for f in forward for s in (f, f.flip(-1))]
        index = [(2 * i, 2 * i + 1) for i in range(n)]
    elif layout == "blocks":
        seqs = forward + [f.flip(-1) for f in forward]
        index = [(i, n + i) for i in range(n)]
    else:
        raise ValueError(f"unknown scan layout {layout!r}")
    ys = ssm_module(torch.stack(seqs, dim=1))
    shapes = [tuple(m.shape[2:]) for m in maps]
    total: list[torch.Tensor] | None = None
    for (fwd, bwd), order in zip(index, orders):
        parts = deserialize(ys[:, fwd] + ys[:, bwd].flip(-1), shapes, order)
        total = parts if total is None else [t + p for t, p in zip(total, parts)]
    assert total is not None
    return total


def _ssm_module(d_model: int, d_inner: int, directions: int, d_state: int) -> MultiDirectionSSM:
    return MultiDirectionSSM(d_inner, directions, d_state, resolve_dt_rank(d_model))


def _causal_conv1d(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """Depth-wise causal conv1d + SiLU on (B, C, L) (the code's `causal_conv1d_fn`, activation silu)."""
    return F.silu(conv(x)[..., : x.shape[-1]])


# ------------------------------------------------------------------ Multi-scale Temporal Encoder

class MultiScaleVSS(nn.Module):
    """The VSS block across scales (code: `VMamba_Block`): one in_proj, 3x3 depth-wise conv and
    out_proj shared by the scales; the scales' hw and wh sequences are concatenated and scanned
    in four directions (paper Eqs. 5-7)."""

    def __init__(self, d_model: int, d_state: int = 16, expand: int = 2, d_conv: int = 3):
        super().__init__()
        d_inner = expand * d_model
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner)
        self.ssm = _ssm_module(d_model, d_inner, 4, d_state)
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """xs: per scale (N, H_i, W_i, d_model) -> same shapes."""
        xz = [self.in_proj(x).chunk(2, dim=-1) for x in xs]
        maps = [F.silu(self.conv2d(x.permute(0, 3, 1, 2).contiguous())) for x, _ in xz]
        ys = cross_scan(self.ssm, maps, SPATIAL_ORDERS, layout="blocks")
        return [self.out_proj(self.out_norm(y.permute(0, 2, 3, 1)).to(z.dtype) * F.silu(z))
                for y, (_, z) in zip(ys, xz)]


class TemporalMamba(nn.Module):
    """The Temporal Mamba block (paper Fig. 3; code `TemporalMambaBlock` / `Mamba3D`).

    in_proj -> (x, z); x through a depth-wise 3-D conv of kernel (`conv_t`, 3, 3) + SiLU (the
    code's kernel is (1, 3, 3)); the 3-D selective scan over the frames' tokens in `directions`
    directions (orders thw, twh, hwt, wht, each forwards and backwards; 8 as the paper and
    code); out_norm, gate SiLU(z), out_proj. Given several scales, their sequences are
    concatenated into one per direction (the encoder's cross-scale temporal block); given one,
    it is the pyramid's per-scale block.
    """

    def __init__(self, d_model: int, d_state: int = 16, expand: int = 2, d_conv: int = 3,
                 directions: int = 8, conv_t: int = 1):
        super().__init__()
        if directions not in (2, 4, 6, 8):
            raise ValueError(f"temporal scan directions {directions}; expected 2, 4, 6 or 8")
        d_inner = expand * d_model
        self.orders = TEMPORAL_ORDERS[: directions // 2]
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv3d = nn.Conv3d(d_inner, d_inner, (conv_t, d_conv, d_conv), groups=d_inner,
                                padding=(conv_t // 2, (d_conv - 1) // 2, (d_conv - 1) // 2))
        self.ssm = _ssm_module(d_model, d_inner, directions, d_state)
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """xs: per scale (B, T, H_i, W_i, d_model) -> same shapes."""
        xz = [self.in_proj(x).chunk(2, dim=-1) for x in xs]
        maps = [F.silu(self.conv3d(x.permute(0, 4, 1, 2, 3).contiguous())) for x, _ in xz]  # (B, C, T, H, W)
        ys = cross_scan(self.ssm, maps, self.orders)
        return [self.out_proj(self.out_norm(y.permute(0, 2, 3, 4, 1)).to(z.dtype) * F.silu(z))
                for y, (_, z) in zip(ys, xz)]


class MixFFN(nn.Module):
    """The code's MixFFN after the VSS block: fc1, 3x3 depth-wise conv, GELU, fc2."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(d_model, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, d_model)
        for fc in (self.fc1, self.fc2):
            nn.init.trunc_normal_(fc.weight, std=0.02)
            nn.init.zeros_(fc.bias)
        nn.init.normal_(self.dwconv.weight, 0.0, math.sqrt(2.0 / 9))  # fan_out = 3 * 3 * hidden / hidden
        nn.init.zeros_(self.dwconv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(self.fc1(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.fc2(F.gelu(h))


class EncoderLayer(nn.Module):
    """One layer of the Multi-scale Temporal Encoder (code `cross_scale_temporal_v2.Layer`):
    x += VSS(LN x) over the scales of each frame, x += MixFFN(LN x) per scale, then
    x += TemporalMamba(LN x) over the scales of all frames; pre-norm residuals with drop path."""

    def __init__(self, d_model: int, d_state: int, expand: int, ffn_ratio: int, drop_path: float,
                 directions: int, conv_t: int, use_ffn: bool = True):
        super().__init__()
        self.ln_l = nn.LayerNorm(d_model, eps=1e-6)
        self.vss = MultiScaleVSS(d_model, d_state, expand)
        self.norm2 = nn.LayerNorm(d_model, eps=1e-6) if use_ffn else None
        self.mixffn = MixFFN(d_model, ffn_ratio * d_model) if use_ffn else None
        self.norm3 = nn.LayerNorm(d_model, eps=1e-6)
        self.temporal = TemporalMamba(d_model, d_state, expand, directions=directions, conv_t=conv_t)
        self.drop_path = DropPath(drop_path)

    def forward(self, xs: list[torch.Tensor], frames: int) -> list[torch.Tensor]:
        """xs: per scale (B*T, H_i, W_i, C)."""
        ys = self.vss([self.ln_l(x) for x in xs])
        xs = [x + self.drop_path(y) for x, y in zip(xs, ys)]
        if self.mixffn is not None:
            xs = [x + self.drop_path(self.mixffn(self.norm2(x))) for x in xs]
        video = [x.reshape(-1, frames, *x.shape[1:]) for x in xs]
        ys = self.temporal([self.norm3(v) for v in video])
        return [(v + self.drop_path(y)).flatten(0, 1) for v, y in zip(video, ys)]


# ------------------------------------------------------------------ Modality Aggregation Decoder

class VisionToAudio(nn.Module):
    """The V2A selective scan (paper Fig. 4, Eqs. 11-17; code `Vision_to_Audio_Fusion`).

    Visual: in_proj, 3x3 depth-wise conv + SiLU. Audio: in_proj to (a, z), causal conv1d + SiLU
    along the frames. Frame level (`temporal=False`): per frame, the hw / wh cross-scan and their
    reverses, each with the frame's audio token appended; the four final states (outputs at the
    audio position) are summed. Temporal level: the clip's thw / twh sequences with the T audio
    tokens appended, and both reversed (audio reversed too); the audio outputs of the reversed
    pair are flipped back and added. Then out_norm, gate SiLU(z), out_proj: (B, T, d_model).
    """

    def __init__(self, d_model: int, d_state: int = 16, expand: int = 2, temporal: bool = False,
                 d_conv: int = 3, d_conv_1d: int = 4):
        super().__init__()
        d_inner = expand * d_model
        self.temporal = temporal
        self.in_proj_vis = nn.Linear(d_model, d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner)
        self.in_proj_audio = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv_1d, padding=d_conv_1d - 1, groups=d_inner)
        self.ssm = _ssm_module(d_model, d_inner, 4, d_state)
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward(self, vis: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """vis (B*T, H, W, d_model), audio (B, T, d_model) -> (B, T, d_model)."""
        b, t, _ = audio.shape
        v = F.silu(self.conv2d(self.in_proj_vis(vis).permute(0, 3, 1, 2).contiguous()))  # (BT, D, H, W)
        a, z = self.in_proj_audio(audio).chunk(2, dim=-1)  # (B, T, D)
        if self.temporal:
            a = _causal_conv1d(self.conv1d, a.transpose(1, 2))  # (B, D, T)
            y = self._temporal(v.reshape(b, t, *v.shape[1:]).transpose(1, 2), a)
        else:
            tokens = _causal_conv1d(self.conv1d, a.reshape(b * t, -1, 1))  # a one-step sequence per frame
            y = self._frame(v, tokens).reshape(b, t, -1)
        return self.out_proj(self.out_norm(y).to(z.dtype) * F.silu(z))

    def _frame(self, v: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """v (BT, D, H, W), tokens (BT, D, 1) -> (BT, D)."""
        seqs = [serialize([v], order) for order in SPATIAL_ORDERS]  # hw, wh, then both reversed (code order)
        xs = [torch.cat([s, tokens], -1) for s in seqs + [s.flip(-1) for s in seqs]]
        ys = self.ssm(torch.stack(xs, dim=1))
        return ys[..., -1].sum(dim=1)

    def _temporal(self, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """v (B, D, T, H, W), a (B, D, T) -> (B, T, D)."""
        t = a.shape[-1]
        seqs = [serialize([v], order) for order in TEMPORAL_ORDERS[:2]]  # thw, twh
        xs = [torch.cat([s, a], -1) for s in seqs] + [torch.cat([s.flip(-1), a.flip(-1)], -1) for s in seqs]
        ys = self.ssm(torch.stack(xs, dim=1))[..., -t:]
        y = ys[:, 0] + ys[:, 1] + (ys[:, 2] + ys[:, 3]).flip(-1)
        return y.transpose(1, 2)


class AudioToVision(nn.Module):
    """The A2V selective scan of the pyramid (paper Fig. 5c, Eqs. 18-19; code `Audio_to_Vision_Fusion`).

    Visual: in_proj to (x, z), 3x3 depth-wise conv + SiLU. Audio: in_proj, causal conv1d + SiLU.
    Sequences: the T audio tokens placed BEFORE the clip's thw / twh visual sequences, and the
    reversed audio before the reversed visual ones; the visual outputs of the reversed pair are
    flipped back; the two orders summed. out_norm, gate SiLU(z), out_proj: (B*T, H, W, d_model).
    """

    def __init__(self, d_model: int, d_state: int = 16, expand: int = 2, d_conv: int = 3, d_conv_1d: int = 4):
        super().__init__()
        d_inner = expand * d_model
        self.in_proj_vis = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner)
        self.in_proj_audio = nn.Linear(d_model, d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv_1d, padding=d_conv_1d - 1, groups=d_inner)
        self.ssm = _ssm_module(d_model, d_inner, 4, d_state)
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward(self, vis: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """vis (B*T, H, W, d_model), audio (B, T, d_model) -> (B*T, H, W, d_model)."""
        b, t, _ = audio.shape
        x, z = self.in_proj_vis(vis).chunk(2, dim=-1)
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2).contiguous()))  # (BT, D, H, W)
        v = x.reshape(b, t, *x.shape[1:]).transpose(1, 2)  # (B, D, T, H, W)
        a = _causal_conv1d(self.conv1d, self.in_proj_audio(audio).transpose(1, 2))  # (B, D, T)
        y = self._scan(v, a).transpose(1, 2).flatten(0, 1).permute(0, 2, 3, 1)  # (BT, H, W, D)
        return self.out_proj(self.out_norm(y).to(z.dtype) * F.silu(z))

    def _scan(self, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """v (B, D, T, H, W), a (B, D, T) -> visual outputs (B, D, T, H, W)."""
        t = a.shape[-1]
        orders = TEMPORAL_ORDERS[:2]  # thw, twh
        seqs = [serialize([v], order) for order in orders]
        xs = [torch.cat([a, s], -1) for s in seqs] + [torch.cat([a.flip(-1), s.flip(-1)], -1) for s in seqs]
        ys = self.ssm(torch.stack(xs, dim=1))[..., t:]
        shape = [tuple(v.shape[2:])]
        parts = [deserialize(ys[:, i] + ys[:, i + 2].flip(-1), shape, order)[0] for i, order in enumerate(orders)]
        return parts[0] + parts[1]


class FusionBlock(nn.Module):
    """Pre-norm residual wrapper of a V2A or A2V scan (code `AudioVisionFusion`): the output is
    added to the audio (V2A) or to the visual features (A2V), through drop path."""

    def __init__(self, d_model: int, d_state: int, expand: int, drop_path: float, kind: str):
        super().__init__()
        self.norm_v = nn.LayerNorm(d_model, eps=1e-6)
        self.norm_a = nn.LayerNorm(d_model, eps=1e-6)
        self.kind = kind
        if kind == "a2v":
            self.scan: nn.Module = AudioToVision(d_model, d_state, expand)
        elif kind in ("v2a_frame", "v2a_temporal"):
            self.scan = VisionToAudio(d_model, d_state, expand, temporal=kind == "v2a_temporal")
        else:
            raise ValueError(f"unknown fusion kind {kind!r}")
        self.drop_path = DropPath(drop_path)

    def forward(self, vis: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        out = self.scan(self.norm_v(vis), self.norm_a(audio))
        return (vis if self.kind == "a2v" else audio) + self.drop_path(out)


class ModalityAggregationDecoder(nn.Module):
    """MAD (paper IV-C): `layers` x (for each encoder scale, stride 8 -> 32: frame-level V2A then
    temporal-level V2A) on the audio queries; returns the audio queries after each layer."""

    def __init__(self, d_model: int, d_state: int, expand: int, drop_path: float, layers: int = 2,
                 scales: int = 3, frame_level: bool = True, temporal_level: bool = True):
        super().__init__()
        kinds = [k for k, on in (("v2a_frame", frame_level), ("v2a_temporal", temporal_level)) if on]
        self.layers = nn.ModuleList(
            nn.ModuleList(nn.ModuleList(FusionBlock(d_model, d_state, expand, drop_path, k) for k in kinds)
                          for _ in range(scales))
            for _ in range(layers))

    def forward(self, srcs: Sequence[torch.Tensor], audio: torch.Tensor) -> list[torch.Tensor]:
        """srcs: per scale (B*T, H_i, W_i, C); audio (B, T, C) -> [audio queries after layer l]."""
        out = []
        for layer in self.layers:
            for src, blocks in zip(srcs, layer):
                for block in blocks:
                    audio = block(src, audio)
            out.append(audio)
        return out


# ------------------------------------------------------------------ Contextual Integration Pyramid

class TemporalLayer(nn.Module):
    """x + drop_path(TemporalMamba(LN x)) on one scale (code `mamba_3d_.Layer`)."""

    def __init__(self, d_model: int, d_state: int, expand: int, drop_path: float, directions: int, conv_t: int):
        super().__init__()
        self.ln_l = nn.LayerNorm(d_model, eps=1e-6)
        self.mamba = TemporalMamba(d_model, d_state, expand, directions=directions, conv_t=conv_t)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, H, W, C)."""
        return x + self.drop_path(self.mamba([self.ln_l(x)])[0])


class ContextualIntegrationPyramid(nn.Module):
    """CIP (paper IV-D; code `CrossModalFPN`): an FPN whose every level is a Context Fusion Block.

    Per level from stride 32 down to 4: 1x1 lateral conv (no bias), Temporal Mamba (cross-frame),
    A2V fusion with the projected audio, then the FPN sum with the nearest-upsampled coarser
    output and a 3x3 conv + ReLU; the mask features are a 3x3 conv of the stride-4 result.
    `own_stride4_temporal=False` is the code: the stride-4 level reuses the stride-8 level's
    Temporal Mamba (the loop variable left over), and no stride-4 block is built.
    """

    def __init__(self, d_model: int, d_state: int, expand: int, drop_path: float, directions: int, conv_t: int,
                 own_stride4_temporal: bool = False, temporal: bool = True, a2v: bool = True):
        super().__init__()
        levels = 4  # strides 32, 16, 8, 4 (top-down order)
        self.lateral = nn.ModuleList(nn.Conv2d(d_model, d_model, 1, bias=False) for _ in range(levels))
        self.output = nn.ModuleList(nn.Conv2d(d_model, d_model, 3, padding=1, bias=False) for _ in range(levels))
        n_temporal = (levels if own_stride4_temporal else levels - 1) if temporal else 0
        self.temporal = nn.ModuleList(TemporalLayer(d_model, d_state, expand, drop_path, directions, conv_t)
                                      for _ in range(n_temporal))
        self.fusion = nn.ModuleList(FusionBlock(d_model, d_state, expand, drop_path, "a2v")
                                    for _ in range(levels if a2v else 0))
        self.mask_features = nn.Conv2d(d_model, d_model, 3, padding=1)
        for conv in [*self.lateral, *self.output, self.mask_features]:
            c2_xavier_fill(conv)

    def forward(self, audio: torch.Tensor, memory: Sequence[torch.Tensor], stride4: torch.Tensor) -> torch.Tensor:
        """audio (B, T, C); memory: (B*T, C, H_i, W_i) at strides 8, 16, 32; stride4 (B*T, C, H, W)
        -> mask features (B*T, C, H, W)."""
        b, t, _ = audio.shape
        y = None
        for level, feat in enumerate([*reversed(list(memory)), stride4]):
            x = self.lateral[level](feat).permute(0, 2, 3, 1)  # (BT, H, W, C)
            if len(self.temporal):
                block = self.temporal[min(level, len(self.temporal) - 1)]
                x = block(x.reshape(b, t, *x.shape[1:])).flatten(0, 1)
            if len(self.fusion):
                x = self.fusion[level](x, audio)
            x = x.permute(0, 3, 1, 2)
            if y is not None:
                x = x + F.interpolate(y, size=x.shape[-2:], mode="nearest")
            y = F.relu(self.output[level](x))
        return self.mask_features(y)


# ------------------------------------------------------------------ heads

class PointwiseMLP(nn.Module):
    """The code's `FFN`: 1x1 convs with ReLU between (input_dim -> hidden ... -> output_dim)."""

    def __init__(self, input_dim: int, hidden: int, output_dim: int, layers: int = 3):
        super().__init__()
        dims = [input_dim] + [hidden] * (layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Conv2d(i, o, 1) for i, o in pairwise(dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskHead(nn.Module):
    """The code's `fc`: 3x3 conv -> bilinear upsampling (x4 in the code: stride 4 to the network's
    input size; here to an explicit size) -> 3x3 conv -> ReLU -> 1x1 conv to the classes (no bias)."""

    def __init__(self, d_model: int, mid: int, low: int, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(d_model, mid, 3, padding=1)
        self.conv2 = nn.Conv2d(mid, low, 3, padding=1)
        self.conv3 = nn.Conv2d(low, num_classes, 1, bias=False)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = F.interpolate(self.conv1(x), size=size, mode="bilinear", align_corners=False)
        return self.conv3(F.relu(self.conv2(x)))


class SegmentationHead(nn.Module):
    """Paper IV-D end / code `CompFormer.forward` tail: for each decoder layer's audio query q,
    m = <mask features, q> per pixel (the intermediate mask), refined m' = MLP(m) + mask features,
    logits = MaskHead(m')."""

    def __init__(self, d_model: int, hidden: int, mid: int, low: int, num_classes: int):
        super().__init__()
        self.mlp = PointwiseMLP(1, hidden, d_model, 3)
        self.fc = MaskHead(d_model, mid, low, num_classes)

    def forward(self, mask_features: torch.Tensor, query: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """mask_features (B*T, C, h, w), query (B*T, C) -> logits (B*T, K, *size)."""
        m = torch.einsum("bchw,bc->bhw", mask_features, query).unsqueeze(1)
        return self.fc(self.mlp(m) + mask_features, size)
