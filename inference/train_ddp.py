"""Distributed training entry: `torchrun --nproc_per_node=N -m inference.train_ddp --data DIR --model han --out RUN_DIR`.

Takes the options of `avvp-studio train` (see `inference.commands`); each process
joins the group torchrun describes (NCCL on CUDA, gloo on CPU), trains its shard
with DistributedDataParallel, and rank 0 evaluates and writes the run folder.
See `inference.distributed` for multi-node launch lines.
"""
from __future__ import annotations

import argparse
import sys

from inference import distributed as ddp
from inference.cli_args import EXAMPLE, add_train_arguments
from inference.commands import run_train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference.train_ddp", epilog=EXAMPLE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Distributed AVVP training under torchrun.")
    add_train_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ddp.init_from_env(args.device or "auto")
    try:
        return run_train(args, distributed=True)
    finally:
        ddp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
