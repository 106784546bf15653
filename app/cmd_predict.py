"""`avvp-studio predict`: a trained run's probabilities and binary predictions for a split."""
from __future__ import annotations

import argparse

from inference.cli_args import add_predict_arguments


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="predict a split with a trained run (npy probabilities + dense CSVs for eval)",
        description="Run the best checkpoint of RUN_DIR on a split and write segment_probs_audio.npy, "
        "segment_probs_visual.npy (V, 25, 10), global_probs.npy (V, 25), filenames.txt and the binary "
        "predictions (segment >= 0.5 and global >= 0.5) as dense audio.csv / visual.csv, which "
        "`avvp-studio eval` scores to the numbers of RUN_DIR/metrics.json.",
    )
    add_predict_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inference.commands import run_predict  # torch is imported only when the command runs

    return run_predict(args)
