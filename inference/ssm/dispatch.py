"""`selective_scan`: one entry point, four backends, mamba_ssm only ever optional.

mamba_ssm does not import without its compiled CUDA kernels (see docs/platform-notes:
nothing of it, not even its reference, loads on a CPU-only torch), so it is imported
lazily, once, and any failure just means "not available".
"""
from __future__ import annotations

import functools
from typing import Callable, Literal

import torch
from torch import Tensor

from .checks import check_inputs
from .chunked import selective_scan_chunked
from .native import native_kernel, native_unavailable_reason, selective_scan_native
from .reference import selective_scan_ref

Backend = Literal["auto", "reference", "chunked", "native", "cuda"]
BACKENDS: tuple[str, ...] = ("auto", "reference", "chunked", "native", "cuda")
_KERNEL_INPUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@functools.lru_cache(maxsize=1)
def mamba_selective_scan() -> Callable[..., object] | None:
    """mamba_ssm's `selective_scan_fn`, or None when mamba_ssm (or its kernel) does not import."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or OSError/RuntimeError from a kernel built for another torch
        return None
    return selective_scan_fn


def cuda_unsupported_reason(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Tensor | None = None, z: Tensor | None = None, delta_bias: Tensor | None = None,
) -> str | None:
    """Why mamba_ssm's kernel cannot take these inputs, or None if it can.

    The kernel wants CUDA tensors, float32 weights (A, D, delta_bias, time-invariant B/C)
    and float32/float16/bfloat16 activations, with variable B/C and z in u's dtype.
    """
    if not u.is_cuda:
        return "the tensors are not on a CUDA device"
    if mamba_selective_scan() is None:
        return "mamba_ssm (with its CUDA kernel) does not import"
    if u.dtype not in _KERNEL_INPUT_DTYPES:
        return f"the kernel takes float32/float16/bfloat16 inputs, u is {u.dtype}"
    activations = [("delta", delta), ("z", z)] + [(n, t) for n, t in (("B", B), ("C", C)) if t.dim() > 2]
    for name, t in activations:
        if t is not None and t.dtype != u.dtype:
            return f"the kernel needs {name} in u's dtype {u.dtype}, got {t.dtype}"
    weights = [("A", A), ("D", D), ("delta_bias", delta_bias)]
    weights += [(n, t) for n, t in (("B", B), ("C", C)) if t.dim() == 2]
    for name, t in weights:
        if t is not None and t.dtype != torch.float32:
            return f"the kernel needs {name} in float32, got {t.dtype}"
    return None


def pick_backend(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Tensor | None = None, z: Tensor | None = None, delta_bias: Tensor | None = None,
    backend: Backend = "auto",
) -> str:
    """The backend `selective_scan` will run: "auto" is "cuda" when mamba_ssm's kernel can
    take the inputs, else "native" for CPU tensors when the C kernel builds, else "chunked"
    (which runs on any device)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if cuda_unsupported_reason(u, delta, A, B, C, D, z, delta_bias) is None:
            return "cuda"
        return "native" if u.device.type == "cpu" and native_kernel() is not None else "chunked"
    if backend == "cuda":
        reason = cuda_unsupported_reason(u, delta, A, B, C, D, z, delta_bias)
        if reason is not None:
            raise RuntimeError(f"backend='cuda' is unavailable: {reason}; use backend='auto' or 'chunked'")
    if backend == "native":
        reason = native_unavailable_reason() if u.device.type == "cpu" else f"the tensors are on {u.device}"
        if reason is not None:
            raise RuntimeError(f"backend='native' is unavailable: {reason}; use backend='auto' or 'chunked'")
    return backend


def selective_scan(
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
    backend: Backend = "auto",
) -> Tensor | tuple[Tensor, Tensor]:
    """Mamba's selective scan with mamba_ssm's `selective_scan_fn` semantics.

    Shapes: u, delta, z (batch, dim, L); A (dim, N), real (complex A is not supported and
    raises ValueError); B, C each (dim, N) time-invariant, (batch, N, L) variable, or
    (batch, G, N, L) grouped, channel d using group d // (dim // G); D, delta_bias (dim,).

        delta = softplus(delta + delta_bias) (each part optional)
        x_t = exp(delta_t * A) * x_{t-1} + delta_t * B_t * u_t,  x_0 = 0   (per channel, N states)
        y_t = <x_t, C_t>;  out = (y + D * u) * silu(z)

    Returns out in u's dtype, or (out, last_state) with last_state = x_L (batch, dim, N).
    Computation is in float32 for float16/bfloat16/float32 inputs (as mamba_ssm), in
    float64 when any input is float64 (mamba_ssm's reference would drop to float32).
    Gradients flow to every tensor argument, through last_state too on this project's
    backends (mamba_ssm's kernel ignores last_state's gradient). The native and chunked
    backends are differentiable once (no double backward), like mamba_ssm's kernel.

    backend: "auto" (mamba_ssm's CUDA kernel when it imports, the tensors are on CUDA and
    the dtypes suit it; on the CPU the compiled C kernel when a C compiler built it; else
    "chunked"), "native" (the C kernel, CPU only), "chunked" (PyTorch, any device),
    "reference" (sequential, for tests), "cuda" (mamba_ssm's kernel). "native" and "cuda"
    raise RuntimeError saying why when they cannot run.
    """
    check_inputs(u, delta, A, B, C, D, z, delta_bias)
    chosen = pick_backend(u, delta, A, B, C, D, z, delta_bias, backend)
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if chosen == "cuda":
        return mamba_selective_scan()(*args)  # type: ignore[misc]
    if chosen == "reference":
        return selective_scan_ref(*args)
    if chosen == "native":
        return selective_scan_native(*args)
    return selective_scan_chunked(*args)
