"""The fused CPU scan of `kernel/scan.c`: compiled on first use, called through ctypes.

Why a C kernel: at the lengths AVVP models scan (10 to a few hundred steps), a PyTorch
scan pays a fixed cost per tensor op per step that dwarfs its arithmetic (the chunked
backend gets ~5x over the sequential reference at L=100 and no more); the kernel runs
one row's N states in vector registers and is ~10x faster again. It needs only a C
compiler (no Python or torch headers), so it builds in under a second wherever gcc or
clang is installed; where none is, or the build fails, `native_unavailable_reason` says
why and `selective_scan` uses the chunked backend instead. The shared library is cached
per source, compiler and CPU under the user cache directory (`AVVP_KERNEL_CACHE` moves
it; `AVVP_NATIVE_SCAN=0` turns the kernel off).

Around the kernel, in PyTorch: B/C layouts and the sums of per-row (and per-thread)
gradient parts; softplus, the gate and every gradient are computed in the kernel.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import platformdirs
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .checks import kernel_inputs

__all__ = ["KernelBuildError", "native_kernel", "native_unavailable_reason", "selective_scan_native"]

log = logging.getLogger(__name__)

KERNEL_DIR = Path(__file__).with_name("kernel")
SOURCES = ("scan.c", "scan_impl.h", "scan_vec16.h")
ABI_VERSION = 3
#: The kernel's cap on workers (scan.c MAX_WORKERS): per-worker gradient buffers are sized by it.
MAX_WORKERS = 256
#: Below this many state updates (batch * dim * L * N) one thread does the work: starting
#: another costs more than it saves.
MIN_PARALLEL_WORK = 1 << 16
#: -ffp-contract=fast: fused multiply-adds (ISO C mode turns them off); no -ffast-math, which
#: would also set flush-to-zero for the whole process when the library loads (GCC < 13).
_COMMON_FLAGS = ["-O3", "-std=c11", "-ffp-contract=fast", "-fno-math-errno", "-fno-trapping-math",
                 "-fopenmp-simd", "-fPIC", "-shared", "-pthread", "-Wno-psabi"]
_NATIVE, _OPENMP = ["-march=native"], ["-fopenmp"]
#: Most wanted first: OpenMP (the threads torch uses, see scan_impl.h) with this CPU's vectors,
#: OpenMP alone, this CPU's vectors with threads of its own, the portable build.
_FLAG_SETS = (
    _COMMON_FLAGS + _NATIVE + _OPENMP,
    _COMMON_FLAGS + _OPENMP,
    _COMMON_FLAGS + _NATIVE,
    _COMMON_FLAGS,
)
_OPENMP_RUNTIME = re.compile(r"lib(gomp|iomp5|omp)\b")


class KernelBuildError(RuntimeError):
    """The C kernel could not be compiled or loaded."""


_lock = threading.Lock()
_loaded: dict[str, object] = {}


def native_kernel() -> ctypes.CDLL | None:
    """The loaded kernel library, building it the first time; None when it is unavailable."""
    with _lock:
        if "lib" not in _loaded:
            try:
                _loaded["lib"], _loaded["reason"] = _load(), None
            except Exception as exc:  # noqa: BLE001  (any failure means: use the PyTorch scan)
                _loaded["lib"], _loaded["reason"] = None, str(exc) or type(exc).__name__
                log.warning("native selective scan unavailable, using the chunked PyTorch scan: %s", exc)
        return _loaded["lib"]  # type: ignore[return-value]


def native_unavailable_reason() -> str | None:
    """Why the kernel cannot be used (None when it can)."""
    native_kernel()
    return _loaded.get("reason")  # type: ignore[return-value]


def _load() -> ctypes.CDLL:
    """Build and load the first flag set that works (a build may compile but not load)."""
    if os.environ.get("AVVP_NATIVE_SCAN", "1").strip().lower() in {"0", "false", "no", "off"}:
        raise KernelBuildError("turned off by AVVP_NATIVE_SCAN")
    _compiler()  # no compiler: one clear message rather than one per flag set
    shared = _shares_torch_openmp()
    errors = []
    for flags in _FLAG_SETS:
        if "-fopenmp" in flags and not shared:
            continue
        try:
            return _open(build_kernel(flags=flags))
        except KernelBuildError as exc:
            errors.append(str(exc))
    raise KernelBuildError("\n".join(errors))


def _shares_torch_openmp() -> bool:
    """Whether an OpenMP build would run on torch's own OpenMP threads: torch's runtime must be
    GNU libgomp under its plain soname, which the kernel's libgomp.so.1 then resolves to. Any
    other runtime (a renamed libgomp, LLVM's, Intel's) would be a second thread pool competing
    for the cores, so the kernel uses threads of its own instead."""
    if "OpenMP" not in torch.__config__.parallel_info():
        return False
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:  # not Linux: no way to tell which runtime is loaded
        return False
    runtimes = {os.path.basename(line.split()[-1]) for line in maps if "/" in line}
    return {name for name in runtimes if _OPENMP_RUNTIME.match(name)} == {"libgomp.so.1"}


def _open(path: Path) -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(str(path))
        abi, workers = lib.scan_abi_version(), lib.scan_max_workers()
    except (OSError, AttributeError) as exc:
        raise KernelBuildError(f"cannot load {path}: {exc}") from exc
    if (abi, workers) != (ABI_VERSION, MAX_WORKERS):
        raise KernelBuildError(f"{path} has ABI {abi} with {workers} workers; expected {ABI_VERSION}, {MAX_WORKERS}")
    for name in ("scan_forward_f32", "scan_forward_f64", "scan_backward_f32", "scan_backward_f64"):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
        fn.restype = ctypes.c_int
    log.info("native selective scan: %s (%s)", path, "OpenMP" if lib.scan_uses_openmp() else "own threads")
    return lib


def _compiler() -> list[str]:
    """The C compiler command: $CC (which may carry arguments, e.g. "ccache gcc"), else cc, gcc, clang."""
    configured = shlex.split(os.environ.get("CC", ""))
    for command in ([configured] if configured else []) + [["cc"], ["gcc"], ["clang"]]:
        if shutil.which(command[0]):
            return command
    raise KernelBuildError("no C compiler found (install gcc or clang, or set CC)")


def _cpu_signature() -> str:
    """What -march=native depends on: a library built for one CPU must not load on another."""
    text = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            text += "".join(line for line in f if line.startswith(("flags", "Features", "model name")))
    except OSError:
        text += platform.processor()
    return text


@functools.lru_cache(maxsize=4)
def _build_identity(cc: tuple[str, ...], kernel_dir: Path) -> bytes:
    """What a build depends on besides its flags: the sources, the compiler and its version, the
    CPU. Found once per process, not once per flag set tried."""
    try:
        version = subprocess.run([*cc, "--version"], capture_output=True, timeout=30).stdout
        sources = b"".join((kernel_dir / name).read_bytes() for name in SOURCES)
    except (OSError, subprocess.SubprocessError) as exc:
        raise KernelBuildError(f"cannot run the C compiler {' '.join(cc)!r} or read the kernel: {exc}") from exc
    return b"\0".join([sources, version, " ".join([*cc, _cpu_signature()]).encode()])


def _cache_dir() -> Path:
    configured = os.environ.get("AVVP_KERNEL_CACHE")
    return Path(configured) if configured else Path(platformdirs.user_cache_dir("avvp-studio")) / "kernels"


def build_kernel(cache_dir: Path | None = None, flags: list[str] = _FLAG_SETS[0]) -> Path:
    """Compile kernel/scan.c with these flags into a shared library, once per source, flags,
    compiler and CPU; its path. A failed build is remembered too (scan-KEY.failed holds the
    compiler's message), so that every new process does not compile in vain again."""
    cc = _compiler()
    key = hashlib.sha256(b"\0".join([_build_identity(tuple(cc), KERNEL_DIR), " ".join(flags).encode()]))
    cache_dir = cache_dir or _cache_dir()
    target = cache_dir / f"scan-{key.hexdigest()[:20]}.so"
    failed = target.with_suffix(".failed")
    if target.exists():
        return target
    if failed.exists():
        raise KernelBuildError(f"{failed.read_text(errors='replace')}\n(remembered from an earlier try; delete "
                               f"{failed} to try again)")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(cache_dir)
        work = Path(tempfile.mkdtemp(prefix="building-", dir=cache_dir))
    except OSError as exc:
        raise KernelBuildError(f"cannot write the kernel cache {cache_dir}: {exc}") from exc
    command = [*cc, *flags, "-o", str(work / "scan.so"), str(KERNEL_DIR / "scan.c"), "-lm"]
    try:
        done = subprocess.run(command, capture_output=True, timeout=120)
        if done.returncode != 0:
            message = f"compiling kernel/scan.c failed: {' '.join(command)}\n" + \
                done.stderr.decode(errors="replace").strip()
            failed.write_text(message)
            raise KernelBuildError(message)
        os.replace(work / "scan.so", target)  # atomic: concurrent builders each publish a whole file
    except (OSError, subprocess.SubprocessError) as exc:
        raise KernelBuildError(f"compiling kernel/scan.c failed: {' '.join(command)}: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("built the native selective scan: %s", target)
    return target


def _remove_stale_builds(cache_dir: Path, age_s: float = 24 * 3600) -> None:
    """Build folders left by killed processes (a build takes seconds, not a day)."""
    now = time.time()
    for folder in cache_dir.glob("building-*"):
        try:
            if now - folder.stat().st_mtime > age_s:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass


def _bc_layout(X: Tensor) -> tuple[Tensor, list[int]]:
    """B or C (dim, N) or (batch, G, N, L) as the kernel reads it, with [groups, sb, sg, sl]."""
    if X.dim() == 2:
        dim, dstate = X.shape
        return X.contiguous(), [dim, 0, dstate, 0]
    Xl = X.transpose(-1, -2).contiguous()  # (batch, G, L, N)
    _, groups, length, dstate = Xl.shape
    return Xl, [groups, groups * length * dstate, length * dstate, dstate]


def _from_layout(grad: Tensor, X: Tensor) -> Tensor:
    return grad if X.dim() == 2 else grad.transpose(-1, -2).contiguous()


def _workers(batch: int, dim: int, dstate: int, length: int) -> int:
    if batch * dim * dstate * length < MIN_PARALLEL_WORK:
        return 1
    return max(1, min(torch.get_num_threads(), batch * dim, MAX_WORKERS))


def _call(name: str, dtype: torch.dtype, sizes: list[int], tensors: list[Tensor | None], workers: int) -> None:
    fn = getattr(native_kernel(), f"{name}_{'f64' if dtype == torch.float64 else 'f32'}")
    c_sizes = (ctypes.c_int64 * len(sizes))(*sizes)
    c_ptrs = (ctypes.c_void_p * len(tensors))(*(None if t is None else t.data_ptr() for t in tensors))
    if fn(c_sizes, c_ptrs, workers) != 0:
        raise MemoryError("native selective scan: out of memory for its per-thread buffers")


class _NativeScan(torch.autograd.Function):
    """(out, h_L) of the scan; inputs contiguous, on the CPU, float32 or float64, B/C (dim, N)
    or (batch, G, N, L). Differentiable once, like mamba_ssm's kernel."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus: bool):
        batch, dim, length = u.shape
        dstate = A.shape[1]
        (B_l, b_geo), (C_l, c_geo) = _bc_layout(B), _bc_layout(C)
        out, last = torch.empty_like(u), u.new_empty(batch, dim, dstate)
        sizes = [batch, dim, dstate, length, *b_geo, *c_geo, 0, 0, int(softplus)]
        _call("scan_forward", u.dtype, sizes, [u, delta, A, B_l, C_l, D, z, delta_bias, out, last],
              _workers(batch, dim, dstate, length))
        ctx.softplus = softplus
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias)
        return out, last

    @staticmethod
    @once_differentiable
    def backward(ctx, dout: Tensor | None, dlast: Tensor | None):
        u, delta, A, B, C, D, z, delta_bias = ctx.saved_tensors
        batch, dim, length = u.shape
        dstate = A.shape[1]
        (B_l, b_geo), (C_l, c_geo) = _bc_layout(B), _bc_layout(C)
        workers = _workers(batch, dim, dstate, length)
        dout = torch.zeros_like(u) if dout is None else dout.contiguous()
        dlast = None if dlast is None else dlast.contiguous()
        grad_u, grad_delta = torch.empty_like(u), torch.empty_like(u)
        grad_z = torch.empty_like(u) if ctx.needs_input_grad[6] else None
        dA_rows = u.new_empty(batch, dim, dstate)
        dD_rows = u.new_empty(batch, dim) if D is not None else None
        dbias_rows = u.new_empty(batch, dim) if delta_bias is not None else None
        dB_w, dC_w = B_l.new_zeros(workers, *B_l.shape), C_l.new_zeros(workers, *C_l.shape)
        sizes = [batch, dim, dstate, length, *b_geo, *c_geo, B_l.numel(), C_l.numel(), int(ctx.softplus)]
        _call("scan_backward", u.dtype, sizes,
              [u, delta, A, B_l, C_l, D, z, delta_bias, dout, dlast, grad_u, grad_delta, grad_z, dA_rows,
               dB_w, dC_w, dD_rows, dbias_rows], workers)
        return (
            grad_u,
            grad_delta,
            dA_rows.sum(0),
            _from_layout(dB_w.sum(0), B),
            _from_layout(dC_w.sum(0), C),
            None if dD_rows is None else dD_rows.sum(0),
            grad_z,
            None if dbias_rows is None else dbias_rows.sum(0),
            None,
        )


def selective_scan_native(
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
    """The C kernel; same arguments, shapes and dtypes as `inference.ssm.selective_scan`.
    CPU tensors only; raises RuntimeError (with the reason) when the kernel is unavailable."""
    _, inputs = kernel_inputs(u, delta, A, B, C, D, z, delta_bias)
    if u.device.type != "cpu":
        raise RuntimeError(f"the native scan runs on the CPU; the tensors are on {u.device}")
    if native_kernel() is None:
        raise RuntimeError(f"the native scan is unavailable: {native_unavailable_reason()}")
    out, last_state = _NativeScan.apply(*inputs, delta_softplus)
    out = out.to(u.dtype)
    return (out, last_state) if return_last_state else out
