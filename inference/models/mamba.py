"""Mamba blocks (selective state spaces) built on `inference.ssm.selective_scan`.

`Mamba` is mamba_ssm's simple Mamba module (`mamba_ssm/modules/mamba_simple.py`,
the unfused path): in_proj to (x, z), depthwise causal conv1d + SiLU on x,
x_proj to (dt, B, C), dt_proj with the softplus-inverse bias init, S4D-real
`A_log`, skip `D`, the selective scan gated by SiLU(z), out_proj.

One deliberate restructuring: mamba_ssm's `x_proj` (d_inner -> dt_rank + 2N, no
bias) is kept as its three row blocks `dt_in`, `B_proj` and `C_proj`. It is the
same linear map, but `B_proj` can then be ONE module handed to several SSMs,
which is how MUG's adaptive Mamba fusion shares B between the audio and the
visual stream while A, C and dt stay per modality (see `inference.models.mug`).

The scan itself is looked up at call time (`ssm.selective_scan`), so the
backend (sequential reference, C kernel on CPUs, chunked PyTorch scan, CUDA kernel) is whatever
`inference.ssm` picks for the tensors.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from inference import ssm


def resolve_dt_rank(d_model: int, dt_rank: int | str = "auto") -> int:
    """mamba_ssm's default: ceil(d_model / 16)."""
    return math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)


class SelectiveSSM(nn.Module):
    """The per-direction core of a Mamba block: conv1d, (dt, B, C) projections, A, D and the scan.

    Input x (B, d_inner, L) as produced by in_proj; output y (B, d_inner, L).
    Pass `B_proj` to share the input-to-state projection with another SSM.
    """

    def __init__(
        self, d_inner: int, d_state: int = 16, d_conv: int = 4, dt_rank: int = 16, dt_min: float = 0.001,
        dt_max: float = 0.1, dt_init_floor: float = 1e-4, dt_scale: float = 1.0, conv_bias: bool = True,
        B_proj: nn.Linear | None = None,
    ):
        super().__init__()
        self.d_inner, self.d_state, self.dt_rank = d_inner, d_state, dt_rank
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=conv_bias)
        self.dt_in = nn.Linear(d_inner, dt_rank, bias=False)  # x_proj rows [0, dt_rank)
        if B_proj is None:
            B_proj = nn.Linear(d_inner, d_state, bias=False)
        elif (B_proj.in_features, B_proj.out_features) != (d_inner, d_state):
            raise ValueError(f"shared B_proj maps {B_proj.in_features}->{B_proj.out_features}; "
                             f"expected {d_inner}->{d_state}")
        self.B_proj = B_proj  # x_proj rows [dt_rank, dt_rank + N)
        self.C_proj = nn.Linear(d_inner, d_state, bias=False)  # x_proj rows [dt_rank + N, dt_rank + 2N)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        init_dt_proj(self.dt_proj, dt_rank, dt_min, dt_max, dt_init_floor, dt_scale)
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)  # S4D real
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D = nn.Parameter(torch.ones(d_inner))
        self.D._no_weight_decay = True  # type: ignore[attr-defined]

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        length = x.shape[-1]
        x = F.silu(self.conv1d(x)[..., :length])  # causal: keep the first L outputs of the padded conv
        xt = x.transpose(1, 2)  # (B, L, d_inner)
        dt = F.linear(self.dt_in(xt), self.dt_proj.weight).transpose(1, 2).contiguous()  # bias added in the scan
        B = self.B_proj(xt).transpose(1, 2).contiguous()  # (B, N, L): input-dependent
        C = self.C_proj(xt).transpose(1, 2).contiguous()
        A = -torch.exp(self.A_log.float())
        return ssm.selective_scan(
            x.contiguous(), dt, A, B, C, D=self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
        )


def init_dt_proj(dt_proj: nn.Linear, dt_rank: int, dt_min: float, dt_max: float, floor: float,
                 scale: float = 1.0) -> None:
    """mamba_ssm's dt init: uniform weight, bias = softplus^-1 of a log-uniform dt in [dt_min, dt_max]."""
    std = dt_rank ** -0.5 * scale
    nn.init.uniform_(dt_proj.weight, -std, std)
    dt = torch.exp(torch.rand(dt_proj.out_features) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = dt.clamp(min=floor)
    with torch.no_grad():
        dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
    dt_proj.bias._no_reinit = True  # type: ignore[attr-defined]


class Mamba(nn.Module):
    """mamba_ssm's `Mamba` block: (B, L, d_model) -> (B, L, d_model), causal along L."""

    def __init__(
        self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_rank: int | str = "auto",
        dt_min: float = 0.001, dt_max: float = 0.1, dt_init_floor: float = 1e-4, conv_bias: bool = True,
        bias: bool = False,
    ):
        super().__init__()
        self.d_model, self.d_inner = d_model, int(expand * d_model)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.ssm = SelectiveSSM(self.d_inner, d_state, d_conv, resolve_dt_rank(d_model, dt_rank), dt_min, dt_max,
                                dt_init_floor, conv_bias=conv_bias)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)  # (B, d_inner, L) each
        y = self.ssm(x, z=z.contiguous())
        return self.out_proj(y.transpose(1, 2))
