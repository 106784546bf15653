"""Mamba's selective scan (S6) in PyTorch, with mamba_ssm's CUDA kernel as an optional fast path.

`selective_scan` has the arguments, shapes and dtype behaviour of mamba_ssm's
`selective_scan_fn`; see its docstring. Backends: `selective_scan_ref` (sequential, the
test oracle), `selective_scan_native` (a C kernel compiled on first use; the CPU default),
`selective_scan_chunked` (PyTorch, blocked, hand-written backward; the fallback on any
device) and mamba_ssm's kernel when it imports and the tensors are on CUDA.
"""
from .checks import check_inputs, compute_dtype
from .chunked import release_scratch, selective_scan_chunked
from .dispatch import BACKENDS, cuda_unsupported_reason, mamba_selective_scan, pick_backend, selective_scan
from .native import native_unavailable_reason, selective_scan_native
from .reference import selective_scan_ref

__all__ = [
    "BACKENDS",
    "check_inputs",
    "compute_dtype",
    "cuda_unsupported_reason",
    "mamba_selective_scan",
    "native_unavailable_reason",
    "pick_backend",
    "release_scratch",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_native",
    "selective_scan_ref",
]
