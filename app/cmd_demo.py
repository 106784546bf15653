"""`avvp-studio demo`: build the synthetic LLP-layout demo dataset (once; later calls reuse it)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from annotation.demo import DemoError, build_demo
from app.progress import int_at_least
from app.settings import default_demo_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="build a small synthetic dataset in the LLP layout",
        description="Build a synthetic LLP-layout dataset (videos, features, pseudo-labels, CSVs) to try "
        "AVVP Studio without LLP. An existing complete demo with the same parameters is reused.",
    )
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default: {default_demo_dir()})")
    parser.add_argument("--clips", type=int_at_least(3, " (one clip per split)"), default=32, help="number of clips (default: 32 = 20 train, 6 val, 6 test)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the folder already holds this demo")
    parser.add_argument("--no-videos", action="store_true",
                        help="skip the mp4 files: a training-sized demo (e.g. --clips 600) in seconds")
    parser.set_defaults(func=run)


def _progress(done: int, total: int, message: str) -> None:
    print(f"demo: [{done}/{total}] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    out = args.out if args.out is not None else default_demo_dir()
    try:
        summary = build_demo(out, clips=args.clips, seed=args.seed, progress=_progress, force=args.force,
                             videos=not args.no_videos)
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state = "built" if summary.built else "already complete, reused"
    print(
        f"demo: {state}: {summary.train} train, {summary.val} val, {summary.test} test clips; "
        f"{summary.empty_visual_train} train clips with an empty visual pseudo-label",
        file=sys.stderr,
    )
    print(summary.out_dir)
    return 0
