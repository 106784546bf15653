"""`avvp-studio import llp DATA_DIR [--db URL]`, `avvp-studio import unav ANNOTATIONS.json --videos DIR --out OUT`."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from annotation.db import open_database
from annotation.importer import import_llp
from app.errors import UsageError
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
    _register_unav(kinds)


def _register_unav(kinds) -> None:
    unav = kinds.add_parser("unav", help="UnAV-100's annotation JSON into a dense-event folder (EAR generator data)")
    unav.add_argument("annotations", metavar="ANNOTATIONS.json", help="unav100_annotations.json")
    unav.add_argument("--videos", required=True, metavar="DIR", help="the folder of the <video_id>.mp4 files")
    unav.add_argument("--out", required=True, metavar="OUT_DIR", help="the dense-event folder to write (new, empty "
                      "or an earlier import)")
    unav.add_argument("--llp", metavar="LLP_DIR", help="LLP data folder whose val/test clips' videos are excluded")
    unav.add_argument("--db", metavar="URL", help="database whose val/test clips' videos are excluded (with or "
                      "instead of --llp; only an explicit --db is read, not $AVVP_STUDIO_DB)")
    unav.add_argument("--keep-llp-overlap", action="store_true",
                      help="keep videos that share a YouTube id with LLP val/test clips (reported)")
    unav.add_argument("--min-overlap", type=float, default=0.5, metavar="F",
                      help="fraction of a 1-s segment an event must cover to mark it (default 0.5)")
    unav.add_argument("--drop-short-events", action="store_true",
                      help="events covering no segment for --min-overlap mark nothing (default: their best segment)")
    unav.add_argument("--keep-missing-videos", action="store_true",
                      help="keep videos without a file, with \"video\": null (default: excluded and listed)")
    unav.add_argument("--classes", choices=("unav100", "json"), default="unav100",
                      help="UnAV-100's 100 classes (default) or the label/label_id table of the file")
    unav.add_argument("--json", action="store_true", help="print the import report as JSON")
    unav.set_defaults(func=run_unav)


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


def run_unav(args: argparse.Namespace) -> int:
    from annotation.unav import import_unav, llp_heldout_ids, store_heldout_ids

    if not 0.0 <= args.min_overlap <= 1.0:
        raise UsageError(f"--min-overlap {args.min_overlap}: expected a fraction of a second in [0, 1]")
    heldout, sources = None, []
    if args.llp or args.db:
        heldout = {}
        if args.llp:
            heldout.update(llp_heldout_ids(args.llp))
            sources.append(f"LLP folder {args.llp}")
        if args.db:
            engine = open_database(resolve_database(args.db), readonly=True)
            for vid, where in store_heldout_ids(engine).items():
                heldout.setdefault(vid, where)
            sources.append(f"database {args.db}")
        if not heldout and not args.keep_llp_overlap:
            raise UsageError(f"{' and '.join(sources)} hold no val/test clip, so no LLP evaluation video can be "
                             "kept out of UnAV-100; pass the LLP folder or database, or --keep-llp-overlap")
    elif not args.keep_llp_overlap:
        raise UsageError("import unav needs the LLP val/test clips to exclude (--llp LLP_DIR and/or --db URL): "
                         "a generator pre-trained on UnAV-100 videos that are also LLP val/test videos would have "
                         "seen the clips its pseudo-labels are scored on; --keep-llp-overlap imports them anyway")
    report = import_unav(args.annotations, args.videos, args.out, heldout=heldout, heldout_sources=sources,
                         keep_llp_overlap=args.keep_llp_overlap, min_overlap=args.min_overlap,
                         keep_short_events=not args.drop_short_events, keep_missing_videos=args.keep_missing_videos,
                         classes=args.classes, progress=StderrProgress())
    if args.json:
        print(json.dumps(asdict(report), indent=2))
        return 0
    total = sum(report.clips.values())
    print(f"imported {total} of {report.videos_in_file} UnAV videos into {report.out} "
          f"({', '.join(f'{k} {v}' for k, v in report.clips.items())}): {report.events} events, "
          f"{report.positives} positive segment labels, {report.classes_with_events} of {report.classes} classes")
    for reason, n in report.excluded.items():
        print(f"excluded {n} ({reason})")
    if report.llp_overlap_kept:
        print(f"note: kept {len(report.llp_overlap_kept)} video(s) that share a YouTube id with LLP val/test "
              f"clips (--keep-llp-overlap): {', '.join(report.llp_overlap_kept[:10])}", file=sys.stderr)
    if not sources:
        print("note: no LLP val/test ids were checked (--keep-llp-overlap without --llp/--db)", file=sys.stderr)
    if report.videos_missing:
        shown = ", ".join(report.missing_videos[:10]) + (", ..." if report.videos_missing > 10 else "")
        fate = ("kept with no video (no features can be extracted for them)" if args.keep_missing_videos
                else "excluded (--keep-missing-videos keeps them)")
        print(f"note: {report.videos_missing} video file(s) missing, {fate}: {shown}", file=sys.stderr)
    if report.events_best_segment or report.events_dropped:
        print(f"note: {report.events_best_segment} event(s) too short for --min-overlap marked only their best "
              f"segment; {report.events_dropped} marked none (dropped, or in a trailing part of a second that is "
              "no segment)", file=sys.stderr)
    return 0
