"""Input checks and dtype rules shared by every selective-scan backend.

Kept apart from the backends so that all of them reject the same bad inputs with
the same messages, and agree on the computation dtype.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

import torch
from torch import Tensor


@dataclass(frozen=True)
class ScanShape:
    """Sizes of one call: batch, dim (channels), N (state size), L (length)."""

    batch: int
    dim: int
    dstate: int
    length: int


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def _check_bc(name: str, t: Tensor, s: ScanShape) -> None:
    """B and C: (dim, N) time-invariant, (batch, N, L) variable, or (batch, G, N, L) grouped."""
    if t.dim() == 2:
        if tuple(t.shape) != (s.dim, s.dstate):
            raise ValueError(
                f"{name} is 2-D (time-invariant) so it must be (dim, N) = ({s.dim}, {s.dstate}), got {_shape(t)}"
            )
    elif t.dim() == 3:
        if tuple(t.shape) != (s.batch, s.dstate, s.length):
            raise ValueError(
                f"{name} is 3-D (variable) so it must be (batch, N, L) = ({s.batch}, {s.dstate}, {s.length}), "
                f"got {_shape(t)}"
            )
    elif t.dim() == 4:
        b, g, n, length = t.shape
        if (b, n, length) != (s.batch, s.dstate, s.length) or g < 1 or s.dim % g:
            raise ValueError(
                f"{name} is 4-D (grouped) so it must be (batch, G, N, L) = ({s.batch}, G, {s.dstate}, {s.length}) "
                f"with dim {s.dim} divisible by G, got {_shape(t)}"
            )
    else:
        raise ValueError(f"{name} must be (dim, N), (batch, N, L) or (batch, G, N, L), got {t.dim()}-D {_shape(t)}")


def check_inputs(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
) -> ScanShape:
    """Raise a ValueError naming the first argument whose shape or dtype is wrong."""
    tensors = {"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z, "delta_bias": delta_bias}
    for name, t in tensors.items():
        if t is None:
            continue
        if not isinstance(t, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.is_complex():
            raise ValueError(f"{name} is complex: only the real selective scan is implemented (no complex A, B or C)")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, dim, L), got {u.dim()}-D {_shape(u)}")
    if delta.shape != u.shape:
        raise ValueError(f"delta must have u's shape {_shape(u)}, got {_shape(delta)}")
    if A.dim() != 2 or A.shape[0] != u.shape[1]:
        raise ValueError(f"A must be (dim, N) with dim = {u.shape[1]}, got {_shape(A)}")
    s = ScanShape(batch=u.shape[0], dim=u.shape[1], dstate=A.shape[1], length=u.shape[2])
    if s.length < 1:
        raise ValueError("the sequence length L (u.shape[2]) must be at least 1")
    _check_bc("B", B, s)
    _check_bc("C", C, s)
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (s.dim,):
            raise ValueError(f"{name} must be (dim,) = ({s.dim},), got {_shape(t)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must have u's shape {_shape(u)}, got {_shape(z)}")
    devices = {t.device for t in tensors.values() if t is not None}
    if len(devices) > 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(str(d) for d in devices)}")
    return s


def compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs (as mamba_ssm computes), float64 if any input is float64.

    mamba_ssm's reference casts everything to float32; keeping float64 here lets the
    tests compare backends to 1e-9, and changes nothing for the float32/half paths.
    """
    return reduce(torch.promote_types, (t.dtype for t in tensors if t is not None), torch.float32)


def transform_delta(delta: Tensor, delta_bias: Tensor | None, softplus: bool, dtype: torch.dtype) -> Tensor:
    """delta (+ delta_bias per channel), then softplus if asked: the order mamba_ssm uses."""
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if softplus:
        delta = torch.nn.functional.softplus(delta)
    return delta


def kernel_inputs(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Tensor | None = None, z: Tensor | None = None, delta_bias: Tensor | None = None,
) -> tuple[ScanShape, list[Tensor | None]]:
    """Checked inputs as the fused backends take them: contiguous, in the computation dtype,
    variable B/C (batch, N, L) as one group (batch, 1, N, L); absent optional ones stay None."""
    shape = check_inputs(u, delta, A, B, C, D, z, delta_bias)
    dtype = compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    B, C = (X.unsqueeze(1) if X.dim() == 3 else X for X in (B, C))
    return shape, [None if t is None else t.to(dtype).contiguous() for t in (u, delta, A, B, C, D, z, delta_bias)]
