"""`avvp-studio import llp DATA_DIR [--db URL]`."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from annotation.db import open_database
from annotation.importer import import_llp
from app.progress import StderrProgress
from app.settings import resolve_database


def register(subparsers) -> None:
    parser = subparsers.add_parser("import", help="import a dataset into the label store")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    llp = kinds.add_parser("llp", help="an LLP-layout data folder (weak/dense CSVs, pseudo-label .npy, features, videos)")
    llp.add_argument("data_dir", metavar="DATA_DIR", help="the LLP data/ folder (AVVP_*.csv, CLIP/, CLAP/, feats/, raw_videos/)")
    llp.add_argument("--db", help="SQLAlchemy URL or SQLite file (default: $AVVP_STUDIO_DB or the per-user database)")
    llp.add_argument("--json", action="store_true", help="print the import report as JSON")
    llp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    engine = open_database(resolve_database(args.db))
    report = import_llp(engine, args.data_dir, progress=StderrProgress())
    if args.json:
        print(json.dumps(asdict(report), indent=2))
        return 0
    total = sum(report.clips.values())
    print(f"imported {total} clip{'s' if total != 1 else ''} ({', '.join(f'{k} {v}' for k, v in report.clips.items())}): "
          f"{report.clips_added} new, {report.clips_updated} changed; label tracks {report.tracks_added} new, "
          f"{report.tracks_updated} changed")
    for track, n in report.orphan_rows.items():
        if n:
            print(f"note: {n} {track} truth row(s) name no imported clip and were kept out (LLP has such rows)",
                  file=sys.stderr)
    for track, n in report.unmatched_pseudo_files.items():
        if n:
            print(f"note: {n} {track} pseudo-label file(s) match no clip id", file=sys.stderr)
    return 0
