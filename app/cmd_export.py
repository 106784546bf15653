"""`avvp-studio export labels --out DIR [--source ...] [--split ...] [--db URL]`."""
from __future__ import annotations

import argparse

from annotation.db import open_database
from annotation.exporter import EXPORT_SOURCES_HELP, ExportError, export_labels
from app.errors import UsageError
from app.progress import StderrProgress
from app.settings import resolve_database


def register(subparsers) -> None:
    parser = subparsers.add_parser("export", help="export labels")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    labels = kinds.add_parser("labels", help="dense CSVs, status.csv and the .npy pseudo-label layout")
    labels.add_argument("--out", required=True, help="output folder (created if needed)")
    labels.add_argument("--source", default="best", help=f"{EXPORT_SOURCES_HELP} (default best: manual where edited, else pseudo)")
    labels.add_argument("--split", default="all", choices=("train", "val", "test", "all"))
    labels.add_argument("--db", help="SQLAlchemy URL or SQLite file")
    labels.add_argument("--probabilities", action="store_true",
                        help="with --source prediction:RUN: also the float32 (10, 25) segment probabilities "
                             "(CLAP/ and CLIP/segment_probabilities/<id>.npy) and the (25,) video-level ones "
                             "(video_probabilities/<id>.npy)")
    labels.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    engine = open_database(resolve_database(args.db), readonly=True)
    try:
        report = export_labels(engine, args.out, source=args.source, split=args.split, progress=StderrProgress(),
                               probabilities=args.probabilities)
    except ExportError as exc:
        raise UsageError(str(exc)) from None
    for track in ("audio", "visual"):
        print(f"{track}: {report.exported[track]} of {report.clips} clips, {report.rows[track]} event rows"
              + (f" ({report.missing[track]} clips have no {args.source} labels)" if report.missing[track] else ""))
    if args.probabilities:
        print(f"probabilities: {report.probabilities} of {report.clips} clips")
    print(f"written to {args.out}")
    return 0
