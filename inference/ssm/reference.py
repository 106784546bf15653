"""The plain sequential selective scan: the oracle the fast backends are tested against.

It follows mamba_ssm's `selective_scan_ref` step by step (deltaA and deltaB_u built
for all steps, then one recurrence step per position) and is differentiated by
autograd. The loop walks `unbind` views rather than indexing `[:, :, i]`: same
values, but autograd then gathers the per-step gradients with one stack instead of
adding L full-size tensors (an O(L^2) backward), so the reference is slow only
because it is sequential, which keeps the benchmark honest.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import check_inputs, compute_dtype, transform_delta


def _per_channel(X: Tensor, dim: int) -> Tensor:
    """Grouped B/C (batch, G, N, L) as (batch, dim, N, L): group g serves the dim // G
    consecutive channels g * dim // G, ..., as mamba_ssm's `repeat(..., "B G N L -> B (G H) N L")`."""
    return X.repeat_interleave(dim // X.shape[1], dim=1)


def selective_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Sequential scan; same arguments, shapes and dtypes as `inference.ssm.selective_scan`."""
    check_inputs(u, delta, A, B, C, D, z, delta_bias)
    dtype_in = u.dtype
    dtype = compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    u = u.to(dtype)
    delta = transform_delta(delta, delta_bias, delta_softplus, dtype)
    A, B, C = A.to(dtype), B.to(dtype), C.to(dtype)
    batch, dim, dstate = u.shape[0], A.shape[0], A.shape[1]

    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    if B.dim() == 2:
        deltaB_u = torch.einsum("bdl,dn,bdl->bdln", delta, B, u)
    elif B.dim() == 3:
        deltaB_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    else:
        deltaB_u = torch.einsum("bdl,bdnl,bdl->bdln", delta, _per_channel(B, dim), u)
    if C.dim() == 2:  # time-invariant: the same (dim, N) at every step
        C_steps, pattern = [C] * u.shape[2], "bdn,dn->bd"
    elif C.dim() == 3:
        C_steps, pattern = C.unbind(-1), "bdn,bn->bd"
    else:
        C_steps, pattern = _per_channel(C, dim).unbind(-1), "bdn,bdn->bd"

    x = u.new_zeros((batch, dim, dstate))
    ys = []
    for dA, dBu, c in zip(deltaA.unbind(2), deltaB_u.unbind(2), C_steps):
        x = dA * x + dBu
        ys.append(torch.einsum(pattern, x, c))
    y = torch.stack(ys, dim=2)  # (batch, dim, L)
    out = y if D is None else y + u * D.to(dtype)[:, None]
    if z is not None:
        out = out * F.silu(z.to(dtype))
    out = out.to(dtype_in)
    return (out, x) if return_last_state else out
