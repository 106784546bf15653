"""torch.distributed helpers for multi-GPU / multi-node training (launched by torchrun).

Launch (one process per GPU; on CPU, gloo processes):

    torchrun --nproc_per_node=N -m inference.train_ddp --data DIR --model han --out RUN_DIR [train options]
    torchrun --nnodes=2 --node_rank=R --master_addr=HOST --master_port=PORT --nproc_per_node=N \
        -m inference.train_ddp ...
    torchrun --nproc_per_node=N $(which avvp-studio) train --distributed ...   # the same, via the CLI

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; the
process group is initialised from them (env://) with NCCL on CUDA, gloo on CPU.
`inference.train.train(..., distributed=True)` then wraps the model in
DistributedDataParallel, shards the train split with a DistributedSampler
(set_epoch every epoch), averages the logged loss over ranks, and lets only
rank 0 evaluate, write files and call the callbacks. `--batch-size` is per process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1 or is_initialized()


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def context() -> DistContext:
    """Rank, world size and local rank of this process (0, 1, 0 outside torch.distributed)."""
    if not is_initialized():
        return DistContext()
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def init_from_env(device: str = "auto") -> DistContext:
    """Join the process group torchrun describes in the environment (env://)."""
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"distributed training needs the torchrun environment; {', '.join(missing)} not set "
                           "(launch with: torchrun --nproc_per_node=N -m inference.train_ddp ...)")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://")
    return context()


def cleanup() -> None:
    if is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def sum_across(values: torch.Tensor) -> torch.Tensor:
    """All-reduce SUM of a small tensor (on the collective's device); identity outside a group."""
    if not is_initialized():
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def parameters_identical(model: nn.Module) -> bool:
    """True when every rank holds bit-identical parameters (rank 0's are broadcast and compared)."""
    if not is_initialized():
        return True
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    mismatch = torch.tensor([0.0 if torch.equal(flat, reference) else 1.0], device=flat.device)
    dist.all_reduce(mismatch, op=dist.ReduceOp.SUM)
    return bool(mismatch.item() == 0)
