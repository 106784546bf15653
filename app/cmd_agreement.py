"""`avvp-studio agreement [--db URL] [--track T] [--between A B] [--json]`: Cohen's kappa per class."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from annotation.agreement import agreement, format_agreement
from annotation.db import open_database
from annotation.store import TRACKS
from app.errors import UsageError
from app.settings import resolve_database


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "agreement", help="inter-annotator agreement (Cohen's kappa per class) on clips two people labelled",
        description="For every pair of annotators who both saved manual labels of a clip: Cohen's kappa per class "
        "over the (clip, segment) cells of those clips, from each one's last save or acceptance (the edit history). "
        "Whoever came second started from the first one's labels: the kappas are upper bounds of independent "
        "agreement.")
    parser.add_argument("--db", help="SQLAlchemy URL or SQLite file")
    parser.add_argument("--track", choices=("audio", "visual", "both"), default="both")
    parser.add_argument("--between", nargs=2, metavar=("A", "B"), help="only this pair of annotators")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    tracks = TRACKS if args.track == "both" else (args.track,)
    try:
        reports = agreement(open_database(resolve_database(args.db), readonly=True), tracks,
                            tuple(args.between) if args.between else None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps([asdict(r) for r in reports], indent=1) if args.json else format_agreement(reports))
    return 0
