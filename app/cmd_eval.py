"""`avvp-studio eval`: score dense prediction CSVs with the AVVP protocol.

Same numbers as the published AVVP evaluation code (see inference.metrics);
the video list (a weak-label CSV such as AVVP_test_pd.csv) fixes which videos
count, so a split is evaluated exactly as in papers.
"""
from __future__ import annotations

import argparse
import json
import sys

from annotation.llp_csv import DenseTally, read_weak_csv
from inference.metrics import evaluate_csv, format_table


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate dense audio/visual predictions against dense truth (AVVP F-scores)",
        description=(
            "Evaluate dense prediction CSVs (filename, onset, offset, event_labels) against the "
            "dense truth with the published AVVP protocol: segment- and event-level F for audio, "
            "visual, audio-visual, Type@AV and Event@AV, in percent, over the videos of --videos."
        ),
    )
    parser.add_argument("--gt-audio", required=True, metavar="CSV", help="dense audio truth (AVVP_eval_audio.csv)")
    parser.add_argument("--gt-visual", required=True, metavar="CSV", help="dense visual truth (AVVP_eval_visual.csv)")
    parser.add_argument("--pred-audio", required=True, metavar="CSV", help="dense audio predictions")
    parser.add_argument("--pred-visual", required=True, metavar="CSV", help="dense visual predictions")
    parser.add_argument(
        "--videos", required=True, metavar="CSV",
        help="weak-label CSV whose filenames are the videos evaluated (AVVP_test_pd.csv, AVVP_val_pd.csv)",
    )
    parser.add_argument("--json", action="store_true", help="print the scores as JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the ten numbers; DataFileError propagates to the CLI, which reports it."""
    tallies: dict[str, DenseTally] = {}
    scores = evaluate_csv(args.gt_audio, args.gt_visual, args.pred_audio, args.pred_visual, args.videos, tallies)
    _notes(args, tallies)
    print(json.dumps(scores) if args.json else format_table(scores))
    return 0


def _notes(args: argparse.Namespace, tallies: dict[str, DenseTally]) -> None:
    """What the scores leave unsaid: videos without any prediction row score as predicting nothing
    (legitimate, but often a wrong file), and rows of clips outside --videos are not scored."""
    videos = len({row.filename for row in read_weak_csv(args.videos)})
    predicted = len(tallies["audio"].named | tallies["visual"].named)
    if predicted == 0:
        print(f"warning: no prediction row names any of the {videos} videos of {args.videos}; "
              "check that the predictions are for this split", file=sys.stderr)
    elif predicted < videos:
        print(f"note: {videos - predicted} of {videos} videos have no prediction row (scored as predicting nothing)",
              file=sys.stderr)
    extra = tallies["audio"].other_names | tallies["visual"].other_names
    if extra:
        rows = tallies["audio"].other_rows + tallies["visual"].other_rows
        capped = tallies["audio"].names_capped or tallies["visual"].names_capped
        print(f"note: {rows} prediction row(s) of {'more than ' if capped else ''}{len(extra)} clip(s) outside "
              f"{args.videos} were not scored (e.g. {min(extra)})", file=sys.stderr)
