"""`avvp-studio runs [--db URL] [--json]`: the training runs recorded in the label store."""
from __future__ import annotations

import argparse
import json

from annotation.db import open_database
from annotation.runs import headline, list_runs
from app.settings import resolve_database


def register(subparsers) -> None:
    parser = subparsers.add_parser("runs", help="training runs recorded in the database (train --db, the window)")
    parser.add_argument("--db", help="SQLAlchemy URL or SQLite file")
    parser.add_argument("--json", action="store_true",
                        help="a JSON list of runs: name, model, status, metrics {val, test} (the ten numbers), "
                             "per_class, config, folders, times")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    runs = list_runs(open_database(resolve_database(args.db), readonly=True))
    if args.json:
        print(json.dumps([r.to_json() for r in runs], indent=1))
        return 0
    if not runs:
        print("no runs recorded (train with --db URL to record one)")
        return 0
    print(f"{'name':<24}{'model':<16}{'status':<10}{'best':>5}{'val':>16}{'test':>16}  started")
    for r in runs:
        val, test = (headline(r.task, (r.metrics or {}).get(split)) for split in ("val", "test"))
        print(f"{r.name:<24}{r.model:<16}{r.status:<10}{r.best_epoch or '—':>5}{val:>16}{test:>16}  "
              f"{r.started_at.astimezone():%Y-%m-%d %H:%M} by {r.started_by or '?'}")
    return 0
