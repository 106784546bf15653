"""`avvp-studio stats [--db URL] [--json]`."""
from __future__ import annotations

import argparse
import json

from annotation.db import open_database
from annotation.stats import dataset_stats, format_stats
from app.settings import resolve_database


def register(subparsers) -> None:
    parser = subparsers.add_parser("stats", help="clips, empty visual pseudo-labels, review progress")
    parser.add_argument("--db", help="SQLAlchemy URL or SQLite file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    stats = dataset_stats(open_database(resolve_database(args.db), readonly=True))
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0
