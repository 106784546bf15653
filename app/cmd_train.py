"""`avvp-studio train`: train HAN / MUG / LINK on an LLP-layout folder (labels optionally from the store)."""
from __future__ import annotations

import argparse

from inference.cli_args import EXAMPLE, add_train_arguments


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a parser (han, valor, mug, link); checkpoint chosen on val segment Type@AV",
        description="Train an audio-visual video parser on the train split (han from the video-level labels, "
        "the others from the segment pseudo-labels) with its paper's recipe, keep the epoch with the best val "
        "segment Type@AV, and score it on test with the AVVP protocol. mug and link read zero-shot priors "
        "(avvp-studio prior) and caption embeddings. Writes "
        "RUN_DIR/config.json, train.log, checkpoint.pt, last.pt (resume) and metrics.json. Ctrl+C stops "
        "cleanly; --resume continues.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_train_arguments(parser)
    parser.add_argument("--distributed", action="store_true",
                        help="run under torchrun with DistributedDataParallel (see inference.distributed)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inference.commands import run_train  # torch is imported only when the command runs

    if not args.distributed:
        return run_train(args)
    from inference import distributed as ddp

    ddp.init_from_env(args.device or "auto")
    try:
        return run_train(args, distributed=True)
    finally:
        ddp.cleanup()
