"""Building blocks of the chunked scan: cached buffers, layouts, and the per-block steps.

Blocks are laid out (Lb, batch, N, dim): each step's state is one contiguous slice, and
the sums over N (y) and over channels (dB, dC) reduce a middle or the inner axis. B and C
are kept as (N, dim) when time-invariant, else (L, batch, N, G), so that one block of
them broadcasts against the (Lb, batch, N, G, dim // G) view of a block.
"""
from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

import torch
from torch import Tensor


class _Scratch(threading.local):
    """Block buffers kept between calls, one flat tensor per (device, dtype) and thread.

    Fresh memory is page-faulted on first touch (~2 ns per float on the project's VMs),
    which would cost more than the arithmetic done in it; a training loop calls the scan
    with the same shapes every step, so the buffers are worth keeping.
    """

    def __init__(self) -> None:
        self.flat: dict[tuple[torch.device, torch.dtype], Tensor] = {}
        self.busy = False


_SCRATCH = _Scratch()


def release_scratch() -> None:
    """Free this thread's cached block buffers."""
    _SCRATCH.flat.clear()


@contextlib.contextmanager
def scratch(like: Tensor, shapes: list[tuple[int, ...]]) -> Iterator[list[Tensor]]:
    """Uninitialised tensors of the given shapes, carved from the cached buffer when free."""
    sizes = [-(-math.prod(shape) // 16) * 16 for shape in shapes]  # 64-byte aligned views
    total = sum(sizes)
    key = (like.device, like.dtype)
    reuse = like.device.type == "cpu" and not _SCRATCH.busy
    flat = _SCRATCH.flat.get(key) if reuse else None
    if flat is None or flat.numel() < total:
        flat = like.new_empty(total)
        if reuse:
            _SCRATCH.flat[key] = flat
    _SCRATCH.busy = _SCRATCH.busy or reuse
    try:
        views, offset = [], 0
        for shape, size in zip(shapes, sizes):
            views.append(flat[offset : offset + math.prod(shape)].view(shape))
            offset += size
        yield views
    finally:
        if reuse:
            _SCRATCH.busy = False


def layout(X: Tensor) -> Tensor:
    """B or C in block-friendly layout: (N, dim) if time-invariant, else (L, batch, N, G)."""
    return X.t().contiguous() if X.dim() == 2 else X.permute(3, 0, 2, 1).contiguous()


def _groups(Xl: Tensor) -> int:
    return 1 if Xl.dim() == 2 else Xl.shape[-1]


def _operand(Xl: Tensor, l0: int, l1: int) -> Tensor:
    """B or C for steps l0:l1, broadcastable to (Lb, batch, N, G, dim // G)."""
    if Xl.dim() == 2:
        return Xl.view(1, 1, Xl.shape[0], 1, Xl.shape[1])
    return Xl[l0:l1].unsqueeze(-1)


def _split(t: Tensor, groups: int) -> Tensor:
    """(Lb, batch, N, dim) as (Lb, batch, N, G, dim // G): the channels of each group together,
    as mamba_ssm's `repeat(B, "B G N L -> B (G H) N L")` assigns them."""
    return t.unflatten(-1, (groups, t.shape[-1] // groups))


def _channels(per_channel: Tensor, groups: int) -> Tensor:
    """(Lb, batch, dim) as (Lb, batch, 1, G, dim // G)."""
    return _split(per_channel.unsqueeze(2), groups)


def outer(per_channel: Tensor, Xl: Tensor, l0: int, l1: int, out: Tensor) -> Tensor:
    """out[l, b, n, d] = per_channel[l, b, d] * X[., n, group of d]."""
    g = _groups(Xl)
    torch.mul(_channels(per_channel, g), _operand(Xl, l0, l1), out=_split(out, g))
    return out


def dot_n(full: Tensor, Xl: Tensor, l0: int, l1: int, tmp: Tensor, out: Tensor) -> Tensor:
    """out[l, b, d] = sum_n full[l, b, n, d] * X[., n, group of d]."""
    g = _groups(Xl)
    if Xl.dim() == 4 and g == 1:  # shared by all channels: a batched (1 x N) @ (N x dim) product
        torch.matmul(Xl[l0:l1].transpose(-1, -2), full, out=out.unsqueeze(2))
        return out
    prod = torch.mul(_split(full, g), _operand(Xl, l0, l1), out=_split(tmp, g))
    return torch.sum(prod, 2, out=out.unflatten(-1, (g, out.shape[-1] // g))).flatten(2)


def grad_operand(full: Tensor, per_channel: Tensor, Xl: Tensor, grad: Tensor, l0: int, l1: int, tmp: Tensor) -> None:
    """Gradient of B or C (in `layout`): sum of full[l, b, n, d] * per_channel[l, b, d] over
    the channels of each group, and over steps and batch too when X is time-invariant."""
    g = _groups(Xl)
    if Xl.dim() == 4 and g == 1:  # shared by all channels: a batched (1 x dim) @ (dim x N) product
        n, b, dstate = full.shape[:3]
        torch.matmul(per_channel.unsqueeze(2), full.transpose(-1, -2), out=grad[l0:l1].view(n, b, 1, dstate))
        return
    prod = torch.mul(_split(full, g), _channels(per_channel, g), out=_split(tmp, g))
    if Xl.dim() == 2:
        grad += prod.flatten(3).sum((0, 1))
    else:
        torch.sum(prod, -1, out=grad[l0:l1])


class Stager:
    """Moves steps l0:l1 between (batch, dim, L) tensors and (Lb, batch, dim) block buffers.

    Copying a column block of a (batch*dim, L) matrix straight into time-major order is a
    strided 3-D copy that runs ~5x slower than a contiguous row-block copy followed by
    torch's dedicated 2-D transpose copy, so it goes in those two steps.
    """

    def __init__(self, like: Tensor, stage: Tensor) -> None:
        self.rows = like.shape[0] * like.shape[1]
        self.stage = stage  # flat, rows * span_len

    def _staged(self, n: int) -> Tensor:
        return self.stage[: self.rows * n].view(self.rows, n)

    def load(self, x: Tensor, l0: int, l1: int, out: Tensor) -> Tensor:
        """x[:, :, l0:l1] as (Lb, batch, dim), written into out."""
        x2 = x.view(self.rows, -1)
        out = out[: l1 - l0]
        if l1 - l0 == x2.shape[1]:  # the whole of L: one transpose copy
            out.view(l1 - l0, self.rows).copy_(x2.t())
            return out
        staged = self._staged(l1 - l0)
        staged.copy_(x2[:, l0:l1])
        out.view(l1 - l0, self.rows).copy_(staged.t())
        return out

    def store(self, block: Tensor, x: Tensor, l0: int, l1: int) -> None:
        """x[:, :, l0:l1] = block (Lb, batch, dim)."""
        x2 = x.view(self.rows, -1)
        if l1 - l0 == x2.shape[1]:
            x2.copy_(block.view(l1 - l0, self.rows).t())
            return
        staged = self._staged(l1 - l0)
        staged.copy_(block.view(l1 - l0, self.rows).t())
        x2[:, l0:l1] = staged


class Steps:
    """A block buffer with its per-step views made once per call: building a view costs about
    as much as the step's arithmetic, and the buffers are reused by every block."""

    def __init__(self, buffer: Tensor) -> None:
        self.buffer = buffer
        self.steps = buffer.unbind(0)

    def first(self, n: int) -> Tensor:
        """The buffer's first n steps."""
        return self.buffer[:n]


def run_block(dl: Tensor, du: Tensor, A_t: Tensor, B_l: Tensor, l0: int, l1: int, h0: Tensor,
              buf_a: Steps, buf_h: Steps) -> tuple[Tensor, Tensor]:
    """deltaA and the states h of steps l0:l1 from h0, built in the block buffers; dl and du are
    delta and delta * u for those steps, (Lb, batch, dim), A_t is A^T * log2(e): exp2 is ~3x
    cheaper than exp in torch on CPU."""
    n = l1 - l0
    a = torch.mul(dl.unsqueeze(2), A_t, out=buf_a.first(n)).exp2_()
    h = outer(du, B_l, l0, l1, buf_h.first(n))
    prev = h0
    for a_t, h_t in zip(buf_a.steps[:n], buf_h.steps[:n]):
        prev = h_t.addcmul_(a_t, prev)
    return a, h


def softplus_(x: Tensor) -> Tensor:
    """x = softplus(x) in place: torch's own kernel (threshold 20), so values match F.softplus."""
    return torch.ops.aten.softplus.out(x, 1, 20, out=x)


def from_layout(grad: Tensor, X: Tensor) -> Tensor:
    """Undo `layout` for a gradient."""
    return grad.t().contiguous() if X.dim() == 2 else grad.permute(1, 3, 2, 0).contiguous()
