"""Selective scan: every backend agrees with the sequential reference, values and gradients.

The reference is itself checked against a scalar loop written straight from the
mamba_ssm formulas, so the oracle does not only agree with itself.
"""
from __future__ import annotations

import math
import os

import pytest
import torch

from inference import ssm
from inference.ssm import (
    native, pick_backend, selective_scan, selective_scan_chunked, selective_scan_native, selective_scan_ref,
)

F64 = dict(rtol=1e-9, atol=1e-11)
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(
    batch=2, dim=4, dstate=8, length=13, b_kind="variable", c_kind=None, groups=2,
    dtype=torch.float64, seed=0, a_range=(-1.0, -0.05), delta_range=(0.0, 1.0),
) -> dict[str, torch.Tensor]:
    """Random inputs; b_kind/c_kind: "invariant" (dim, N), "variable" (batch, N, L), "grouped" (batch, G, N, L)."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, lo=-1.0, hi=1.0):
        return (torch.rand(*shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo).to(dtype)

    def bc(kind):
        shapes = {"invariant": (dim, dstate), "variable": (batch, dstate, length),
                  "grouped": (batch, groups, dstate, length)}
        shape = shapes[kind]
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)

    return {
        "u": torch.randn(batch, dim, length, generator=gen, dtype=torch.float64).to(dtype),
        "delta": rand(batch, dim, length, lo=delta_range[0], hi=delta_range[1]),
        "A": rand(dim, dstate, lo=a_range[0], hi=a_range[1]),
        "B": bc(b_kind),
        "C": bc(c_kind or b_kind),
        "D": torch.randn(dim, generator=gen, dtype=torch.float64).to(dtype),
        "z": torch.randn(batch, dim, length, generator=gen, dtype=torch.float64).to(dtype),
        "delta_bias": rand(dim, lo=-0.5, hi=0.5),
    }


def run(fn, inputs, options, **kwargs):
    """Call fn with grad-requiring leaves; return (outputs, grads of a random projection)."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
    args = {k: leaves[k] for k in ("u", "delta", "A", "B", "C")}
    args.update({k: leaves[k] for k in ("D", "z", "delta_bias") if options.get(k)})
    result = fn(**args, delta_softplus=options.get("softplus", False),
                return_last_state=options.get("last_state", False), **kwargs)
    outs = result if isinstance(result, tuple) else (result,)
    gen = torch.Generator().manual_seed(123)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype)).sum() for o in outs)
    used = [k for k in NAMES if k in args]
    grads = torch.autograd.grad(loss, [args[k] for k in used])
    return outs, dict(zip(used, grads))


def assert_agree(inputs, options, tol=F64, fn=selective_scan_chunked, **kwargs):
    ref_out, ref_grads = run(selective_scan_ref, inputs, options)
    out, grads = run(fn, inputs, options, **kwargs)
    assert len(out) == len(ref_out)
    for a, b in zip(out, ref_out):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, **tol)
    assert grads.keys() == ref_grads.keys()
    for k in grads:
        assert grads[k].shape == inputs[k].shape, k
        torch.testing.assert_close(grads[k], ref_grads[k], **tol, msg=lambda m, k=k: f"grad of {k}: {m}")


OPTIONS = {
    "plain": {},
    "D": {"D": True},
    "z": {"z": True},
    "bias+softplus": {"delta_bias": True, "softplus": True},
    "softplus": {"softplus": True},
    "bias": {"delta_bias": True},
    "all+last": {"D": True, "z": True, "delta_bias": True, "softplus": True, "last_state": True},
    "last": {"last_state": True},
}
KINDS = [("invariant", None), ("variable", None), ("grouped", None),
         ("variable", "invariant"), ("invariant", "grouped")]  # (B, C); None: C like B


@pytest.mark.parametrize("b_kind,c_kind", KINDS, ids=lambda k: str(k))
@pytest.mark.parametrize("options", list(OPTIONS.values()), ids=list(OPTIONS))
@pytest.mark.parametrize("length", [1, 13])
def test_chunked_matches_reference(b_kind, c_kind, options, length):
    # block_elements=192 with batch*dim*N = 64: 3-step blocks, 4 blocks a span, L=13 ends mid-block
    inputs = make_inputs(length=length, b_kind=b_kind, c_kind=c_kind)
    assert_agree(inputs, options, block_elements=192)
    assert_agree(inputs, options)  # one block


@pytest.mark.parametrize("b_kind,c_kind", KINDS, ids=lambda k: str(k))
@pytest.mark.parametrize("options", list(OPTIONS.values()), ids=list(OPTIONS))
@pytest.mark.parametrize("length", [1, 13])
def test_native_matches_reference(b_kind, c_kind, options, length):
    inputs = make_inputs(length=length, b_kind=b_kind, c_kind=c_kind)
    assert_agree(inputs, options, fn=selective_scan_native)


@pytest.mark.parametrize("dstate", [5, 16, 20, 32])
@pytest.mark.parametrize("b_kind,c_kind", KINDS, ids=lambda k: str(k))
def test_native_float32_tiles_agree_with_float64(dstate, b_kind, c_kind):
    # float32 runs whole 16-state tiles through hand-vectorised code and the rest lane by lane
    inp64 = make_inputs(batch=3, dim=8, dstate=dstate, length=37, b_kind=b_kind, c_kind=c_kind, seed=dstate)
    ref, ref_grads = run(selective_scan_ref, inp64, OPTIONS["all+last"])
    out, grads = run(selective_scan_native, {k: v.float() for k, v in inp64.items()}, OPTIONS["all+last"])
    for a, b in zip(out, ref):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5 * b.abs().max().item())
    for k in grads:
        scale = ref_grads[k].abs().max().item()
        torch.testing.assert_close(grads[k].double(), ref_grads[k], rtol=1e-4, atol=1e-5 * scale, msg=k)


@pytest.mark.parametrize("workers", [1, 3, 7])
@pytest.mark.parametrize("b_kind", ["variable", "grouped", "invariant"])
def test_native_threads_split_rows(monkeypatch, workers, b_kind):
    # rows split unevenly over workers, whose partial gradients of B and C are summed
    monkeypatch.setattr(native, "_workers", lambda *shape: workers)
    inputs = make_inputs(batch=3, dim=8, dstate=16, length=21, b_kind=b_kind, groups=4, seed=13)
    assert_agree(inputs, OPTIONS["all+last"], fn=selective_scan_native)


@pytest.mark.parametrize("block_elements", [1, 64, 500, 4096])
@pytest.mark.parametrize("b_kind", ["variable", "grouped", "invariant"])
def test_block_sizes_agree(block_elements, b_kind):
    inputs = make_inputs(length=41, b_kind=b_kind, groups=4, seed=3)
    assert_agree(inputs, OPTIONS["all+last"], block_elements=block_elements)


@pytest.mark.parametrize(
    "a_range,delta_range",
    [((-60.0, -10.0), (2.0, 6.0)), ((-1e-3, 0.0), (0.0, 1e-2)), ((0.0, 0.02), (0.0, 0.5))],
    ids=["strong-decay", "near-identity", "growing"],
)
def test_long_sequence_is_stable(a_range, delta_range):
    inputs = make_inputs(length=300, dstate=16, a_range=a_range, delta_range=delta_range, seed=5)
    options = {"D": True, "z": True, "last_state": True}
    out, grads = run(selective_scan_chunked, inputs, options, block_elements=2048)
    assert all(torch.isfinite(t).all() for t in (*out, *grads.values()))
    assert_agree(inputs, options, block_elements=2048)
    assert_agree(inputs, options, fn=selective_scan_native)
    out32, grads32 = run(selective_scan_native, {k: v.float() for k, v in inputs.items()}, options)
    assert all(torch.isfinite(t).all() for t in (*out32, *grads32.values()))


def test_softplus_threshold_both_sides():
    inputs = make_inputs(length=30, delta_range=(-30.0, 30.0), a_range=(-0.1, -0.01), seed=12)
    assert (inputs["delta"] > 21).any() and (inputs["delta"] < 19).any()
    assert_agree(inputs, OPTIONS["all+last"], block_elements=192)
    assert_agree(inputs, OPTIONS["all+last"], fn=selective_scan_native)


def test_native_float32_softplus_and_gate_match_torch():
    # the kernel's own float32 exp/log/sigmoid against torch's, over the whole useful range;
    # L = 1, u = B = C = 1: out = softplus(x), or with dt = 0, D = 1: out = silu(z)
    x = torch.linspace(-100, 100, 20001).view(-1, 1, 1)
    ones, zero_a = torch.ones(1, 1), torch.zeros(1, 1)
    u = torch.ones_like(x)
    # exp of a float32 x is only as exact as x: relative error up to |x| * eps (6e-6 at |x| = 100);
    # exponentials below 2^-125 are 0 in the kernel, subnormal or 0 in torch
    tiny = 2.0**-125
    dt = selective_scan_native(u, x, zero_a, ones, ones, delta_softplus=True)
    torch.testing.assert_close(dt, torch.nn.functional.softplus(x.double()).float(), rtol=1e-5, atol=tiny)
    gated = selective_scan_native(u, torch.zeros_like(x), zero_a, ones, ones, D=torch.ones(1), z=x)
    silu = torch.nn.functional.silu(x.double()).float()
    torch.testing.assert_close(gated, silu, rtol=1e-5, atol=100 * tiny)  # silu(x) = x e^x for x << 0


@pytest.mark.parametrize("backend", ["chunked", "native"])
def test_gradcheck_tiny(backend):
    inputs = make_inputs(batch=1, dim=2, dstate=2, length=5, b_kind="grouped", c_kind="variable", groups=2, seed=7)
    leaves = [inputs[k].clone().requires_grad_() for k in NAMES]
    extra = {"block_elements": 4} if backend == "chunked" else {}
    scan = selective_scan_chunked if backend == "chunked" else selective_scan_native

    def fn(u, delta, A, B, C, D, z, delta_bias):
        return scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True, return_last_state=True, **extra)

    assert torch.autograd.gradcheck(fn, leaves)


def scalar_loop(inp, softplus):
    """mamba_ssm's recurrence written element by element in Python floats."""
    u, delta, A, B, C, D, z, bias = (inp[k].tolist() for k in NAMES)
    batch, dim, length, dstate = len(u), len(u[0]), len(u[0][0]), len(A[0])
    groups = len(B[0])
    out = [[[0.0] * length for _ in range(dim)] for _ in range(batch)]
    for b in range(batch):
        for d in range(dim):
            g = d // (dim // groups)
            x = [0.0] * dstate
            for t in range(length):
                dt = delta[b][d][t] + bias[d]
                dt = math.log1p(math.exp(dt)) if softplus else dt
                x = [math.exp(dt * A[d][n]) * x[n] + dt * B[b][g][n][t] * u[b][d][t] for n in range(dstate)]
                y = sum(x[n] * C[b][g][n][t] for n in range(dstate)) + D[d] * u[b][d][t]
                out[b][d][t] = y * z[b][d][t] / (1 + math.exp(-z[b][d][t]))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("softplus", [False, True])
def test_reference_matches_scalar_formulas(softplus):
    inp = make_inputs(batch=2, dim=4, dstate=3, length=6, b_kind="grouped", groups=2, seed=11)
    expected = scalar_loop(inp, softplus)
    for fn in (selective_scan_ref, selective_scan_chunked, selective_scan_native):
        out = fn(*(inp[k] for k in NAMES), delta_softplus=softplus)
        torch.testing.assert_close(out, expected, **F64)


def test_variable_bc_is_grouped_bc_with_one_group():
    inp = make_inputs(b_kind="variable", seed=2)
    args = [inp[k] for k in ("u", "delta", "A")]
    three_d = selective_scan(*args, inp["B"], inp["C"])
    four_d = selective_scan(*args, inp["B"][:, None], inp["C"][:, None])
    torch.testing.assert_close(three_d, four_d, **F64)


@pytest.mark.parametrize("backend", ["chunked", "native"])
def test_float32_agrees_with_float64(backend):
    inp64 = make_inputs(batch=3, dim=16, dstate=8, length=70, b_kind="variable", seed=4)
    inp32 = {k: v.float() for k, v in inp64.items()}
    options = OPTIONS["all+last"]
    ref, ref_grads = run(selective_scan_ref, inp64, options)
    if backend == "chunked":
        out, grads = run(selective_scan_chunked, inp32, options, block_elements=512)
    else:
        out, grads = run(selective_scan_native, inp32, options)
    assert [o.dtype for o in out] == [torch.float32, torch.float32]
    for a, b in zip(out, ref):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4)
    for k in grads:
        assert grads[k].dtype == torch.float32
        torch.testing.assert_close(grads[k].double(), ref_grads[k], rtol=1e-4, atol=1e-4, msg=k)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_compute_in_float32(dtype):
    inp = make_inputs(batch=2, dim=8, dstate=4, length=20, seed=6)
    half = {k: v.to(dtype) for k, v in inp.items()}
    options = {"D": True, "z": True, "last_state": True}
    for fn in (selective_scan_ref, selective_scan_chunked, selective_scan_native):
        (out, last), grads = run(fn, half, options)
        assert out.dtype == dtype and last.dtype == torch.float32  # as mamba_ssm: output in u's dtype
        assert all(grads[k].dtype == dtype for k in grads)
        (expected, _), _ = run(selective_scan_ref, {k: v.float() for k, v in half.items()}, options)
        eps = torch.finfo(dtype).eps  # at most one rounding of the float32 result apart
        torch.testing.assert_close(out.float(), expected.float(), rtol=eps, atol=eps * 1e-3)


@pytest.mark.parametrize("use", ["out", "last_state"])
def test_gradient_of_one_output_only(use):
    inp = make_inputs(b_kind="grouped", length=20, seed=10)
    grads = []
    for fn in (selective_scan_ref, selective_scan_chunked, selective_scan_native):
        leaves = [inp[k].clone().requires_grad_() for k in NAMES]
        out, last = fn(*leaves, delta_softplus=True, return_last_state=True)
        loss = (out if use == "out" else last).square().sum()
        grads.append(torch.autograd.grad(loss, leaves, allow_unused=True))
    for name, a, *others in zip(NAMES, *grads):
        x = inp[name]
        zeros = torch.zeros_like(x)  # autograd says None where the fused backwards give zeros
        for b in others:
            torch.testing.assert_close(zeros if a is None else a, zeros if b is None else b, **F64, msg=name)


def test_float64_stays_float64():
    inp = make_inputs()
    out, last = selective_scan(*(inp[k] for k in ("u", "delta", "A", "B", "C")), return_last_state=True)
    assert out.dtype == last.dtype == torch.float64
    assert last.shape == (2, 4, 8)


def test_only_some_inputs_require_grad():
    inp = make_inputs(b_kind="grouped", seed=9)
    leaves = {k: inp[k].clone().requires_grad_(k in ("u", "C")) for k in NAMES}
    grads = []
    for fn in (selective_scan_ref, selective_scan_chunked, selective_scan_native):
        out = fn(*(leaves[k] for k in NAMES))
        grads.append(torch.autograd.grad(out.square().sum(), [leaves["u"], leaves["C"]]))
    for ref, *others in zip(*grads):
        for other in others:
            torch.testing.assert_close(other, ref, **F64)
    with torch.no_grad():
        for fn in (selective_scan_chunked, selective_scan_native):
            torch.testing.assert_close(fn(*(inp[k] for k in NAMES)), selective_scan_ref(*(inp[k] for k in NAMES)),
                                       **F64)


def test_non_contiguous_inputs():
    inp = make_inputs(b_kind="variable", seed=8)
    u = inp["u"].transpose(0, 1).contiguous().transpose(0, 1)  # same values, other strides
    B = inp["B"].transpose(1, 2).contiguous().transpose(1, 2)
    assert not u.is_contiguous() and not B.is_contiguous()
    a = selective_scan(u, inp["delta"], inp["A"], B, inp["C"], inp["D"])
    b = selective_scan_ref(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"])
    torch.testing.assert_close(a, b, **F64)


BAD = {
    "u 2-D": (dict(u=torch.zeros(4, 13)), "u must be"),
    "delta shape": (dict(delta=torch.zeros(2, 4, 12)), "delta must have"),
    "A dim": (dict(A=torch.zeros(5, 8)), "A must be"),
    "B 2-D shape": (dict(B=torch.zeros(4, 7)), "B is 2-D"),
    "B 3-D shape": (dict(B=torch.zeros(2, 8, 12)), "B is 3-D"),
    "C groups": (dict(C=torch.zeros(2, 3, 8, 13)), "C is 4-D"),
    "B 5-D": (dict(B=torch.zeros(2, 1, 1, 8, 13)), "B must be"),
    "D shape": (dict(D=torch.zeros(5)), "D must be"),
    "z shape": (dict(z=torch.zeros(2, 4, 12)), "z must have"),
    "delta_bias shape": (dict(delta_bias=torch.zeros(4, 1)), "delta_bias must be"),
    "integer u": (dict(u=torch.zeros(2, 4, 13, dtype=torch.int64)), "floating-point"),
    "complex A": (dict(A=torch.zeros(4, 8, dtype=torch.complex64)), "complex"),
    "empty L": (dict(u=torch.zeros(2, 4, 0), delta=torch.zeros(2, 4, 0), B=torch.zeros(2, 8, 0),
                     C=torch.zeros(2, 8, 0)), "at least 1"),
}


@pytest.mark.parametrize("backend", ["auto", "reference", "chunked", "native"])
@pytest.mark.parametrize("bad", list(BAD.values()), ids=list(BAD))
def test_shape_errors_are_clear(bad, backend):
    change, message = bad
    inp = {k: v.float() for k, v in make_inputs(length=13).items()}
    inp.update(change)
    with pytest.raises(ValueError, match=message):
        selective_scan(**inp, backend=backend)


def test_unknown_backend():
    inp = make_inputs()
    with pytest.raises(ValueError, match="backend must be one of"):
        selective_scan(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], backend="triton")


def test_auto_picks_native_on_cpu(monkeypatch):
    inp = make_inputs()
    args = [inp[k] for k in ("u", "delta", "A", "B", "C")]
    assert pick_backend(*args) == "native"
    # even with mamba_ssm importable, CPU tensors never go to the CUDA kernel
    monkeypatch.setattr(ssm.dispatch, "mamba_selective_scan", lambda: (lambda *a: pytest.fail("kernel called")))
    assert pick_backend(*args) == "native"
    torch.testing.assert_close(selective_scan(*args), selective_scan_native(*args), rtol=0, atol=0)


@pytest.fixture
def fresh_kernel(monkeypatch, tmp_path):
    """The kernel loader with nothing loaded and its cache in tmp_path."""
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setenv("AVVP_KERNEL_CACHE", str(tmp_path / "kernels"))
    return tmp_path / "kernels"


def test_kernel_is_built_once_per_cache(fresh_kernel):
    first = native.build_kernel()
    assert first.parent == fresh_kernel and first.suffix == ".so"
    stamp = first.stat().st_mtime_ns
    assert native.build_kernel() == first and first.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert list(fresh_kernel.iterdir()) == [first]  # no temporary files left behind


@pytest.mark.parametrize("flags", native._FLAG_SETS, ids=["native+openmp", "openmp", "native+threads", "portable"])
def test_every_build_variant_agrees(fresh_kernel, monkeypatch, flags):
    # the loader takes the first variant that builds and loads; each must be right on its own
    if "-fopenmp" in flags and not native._shares_torch_openmp():
        pytest.skip("torch's OpenMP runtime is not GNU libgomp.so.1: OpenMP builds are not used")
    lib = native._open(native.build_kernel(flags=flags))
    assert lib.scan_uses_openmp() == ("-fopenmp" in flags)
    monkeypatch.setattr(native, "_loaded", {"lib": lib, "reason": None})
    monkeypatch.setattr(native, "_workers", lambda *shape: 3)
    for dtype in (torch.float64, torch.float32):
        inputs = {k: v.to(dtype) for k, v in make_inputs(dim=8, dstate=20, length=17, seed=14).items()}
        tol = F64 if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
        assert_agree(inputs, OPTIONS["all+last"], tol=tol, fn=selective_scan_native)


def test_kernel_builds_are_readable_by_others_and_take_a_compiler_with_arguments(fresh_kernel, monkeypatch):
    monkeypatch.setenv("CC", "env cc")  # a launcher with arguments, like "ccache gcc"
    old = os.umask(0o022)
    try:
        path = native.build_kernel(flags=native._FLAG_SETS[-1])
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o755 == 0o755  # a shared cache folder serves every user
    assert native._compiler() == ["env", "cc"]


def test_without_a_compiler_auto_falls_back_to_chunked(fresh_kernel, monkeypatch, caplog):
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    inp = make_inputs()
    args = [inp[k] for k in ("u", "delta", "A", "B", "C")]
    assert pick_backend(*args) == "chunked"
    assert "no C compiler found" in native.native_unavailable_reason()
    assert "using the chunked PyTorch scan" in caplog.text
    torch.testing.assert_close(selective_scan(*args), selective_scan_ref(*args), **F64)
    with pytest.raises(RuntimeError, match="backend='native' is unavailable: no C compiler"):
        selective_scan(*args, backend="native")


def test_a_failing_build_reports_the_compiler_error_once(fresh_kernel, monkeypatch, tmp_path):
    broken = tmp_path / "src"
    broken.mkdir()
    for name in native.SOURCES:
        (broken / name).write_text("this is not C;\n")
    monkeypatch.setattr(native, "KERNEL_DIR", broken)
    with pytest.raises(native.KernelBuildError, match="compiling kernel/scan.c failed:(.|\n)*error"):
        native.build_kernel()
    assert not any(fresh_kernel.glob("*.so")) and not any(fresh_kernel.glob("building-*"))
    with monkeypatch.context() as patch:
        patch.setattr(native.subprocess, "run", _compiler_must_not_run(native.subprocess.run))
        with pytest.raises(native.KernelBuildError, match="remembered from an earlier try(.|\n)*delete"):
            native.build_kernel()  # the next process does not compile in vain again
    assert native.native_kernel() is None  # every other variant fails too and "error" in native.native_unavailable_reason()


def _compiler_must_not_run(run):
    def guarded(command, *args, **kwargs):
        if "-o" in command:
            pytest.fail("compiled again")
        return run(command, *args, **kwargs)
    return guarded


def test_unexpected_loader_failures_fall_back_too(fresh_kernel, monkeypatch):
    def broken(*args, **kwargs):
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    monkeypatch.setattr(native, "build_kernel", broken)
    inp = make_inputs()
    assert pick_backend(*(inp[k] for k in ("u", "delta", "A", "B", "C"))) == "chunked"
    assert "invalid start byte" in native.native_unavailable_reason()


def test_native_empty_batch_and_nan_inputs():
    inp = {k: v.float() for k, v in make_inputs(batch=2, dim=4, dstate=16, length=9, seed=15).items()}
    empty = {k: (v[:0] if k in ("u", "delta", "z", "B", "C") else v) for k, v in inp.items()}
    out, last = selective_scan_native(**empty, delta_softplus=True, return_last_state=True)
    assert out.shape == (0, 4, 9) and last.shape == (0, 4, 16)
    for name, index in (("delta", (1, 2, 3)), ("A", (2, 5)), ("u", (0, 1, 4))):
        bad = dict(inp)
        bad[name] = inp[name].clone()
        bad[name][index] = float("nan")
        out = selective_scan_native(**bad, delta_softplus=True)
        ref = selective_scan_ref(**bad, delta_softplus=True)
        assert torch.equal(out.isnan(), ref.isnan()) and out.isnan().any(), name  # NaN propagates as in torch


def test_native_can_be_turned_off(fresh_kernel, monkeypatch):
    monkeypatch.setenv("AVVP_NATIVE_SCAN", "0")
    inp = make_inputs()
    assert pick_backend(*(inp[k] for k in ("u", "delta", "A", "B", "C"))) == "chunked"
    assert native.native_unavailable_reason() == "turned off by AVVP_NATIVE_SCAN"


def test_cuda_backend_on_cpu_tensors_says_why():
    inp = make_inputs()
    with pytest.raises(RuntimeError, match="not on a CUDA device"):
        selective_scan(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], backend="cuda")


HAVE_CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="no CUDA device (torch.cuda.is_available() is False)")


@requires_cuda
def test_chunked_runs_on_cuda():
    inp = make_inputs(length=40, b_kind="grouped")
    cuda = {k: v.cuda() for k, v in inp.items()}
    options = OPTIONS["all+last"]
    out, grads = run(selective_scan_chunked, cuda, options, block_elements=192)
    ref, ref_grads = run(selective_scan_ref, inp, options)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a.cpu(), b, **F64)
    for k in grads:
        torch.testing.assert_close(grads[k].cpu(), ref_grads[k], **F64)


@requires_cuda
@pytest.mark.parametrize("b_kind", ["invariant", "variable", "grouped"])
def test_cuda_kernel_matches_reference(b_kind):
    if ssm.mamba_selective_scan() is None:
        pytest.skip("mamba_ssm with its CUDA kernel does not import (optional: pip install mamba-ssm)")
    inp = {k: v.float().cuda() for k, v in make_inputs(length=64, b_kind=b_kind).items()}
    options = {"D": True, "z": True, "delta_bias": True, "softplus": True}
    assert pick_backend(*(inp[k] for k in NAMES)) == "cuda"
    out, grads = run(lambda **kw: selective_scan(**kw, backend="cuda"), inp, options)
    ref, ref_grads = run(selective_scan_ref, {k: v.double().cpu() for k, v in inp.items()}, options)
    torch.testing.assert_close(out[0].double().cpu(), ref[0], rtol=1e-3, atol=1e-3)
    for k in grads:
        torch.testing.assert_close(grads[k].double().cpu(), ref_grads[k], rtol=2e-3, atol=2e-3, msg=k)
