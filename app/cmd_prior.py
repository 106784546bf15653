"""`avvp-studio prior`: zero-shot segment priors (CLAP/CLIP features vs class caption embeddings)."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from app.progress import StderrProgress


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "prior", help="zero-shot segment priors from CLAP/CLIP features and class caption embeddings",
        description="Write CLAP/segment_prior_labels/<id>.npy and CLIP/segment_prior_labels/<id>.npy ((10, 25) 0/1) "
        "for every clip: cosine similarity of each segment's CLAP (audio) or CLIP (visual) embedding with the 25 "
        "class caption embeddings, above a per-class threshold, over all classes (never gated by a video-level "
        "label, so models may read them in every split: PLSIM of mug and link does).",
    )
    parser.add_argument("--data", required=True, metavar="DIR", help="LLP-layout data folder (CLAP/features, CLIP/features, CSVs)")
    parser.add_argument("--text-audio", required=True, metavar="NPY", help="(25, d) CLAP text embeddings of the captions")
    parser.add_argument("--text-visual", required=True, metavar="NPY", help="(25, d) CLIP text embeddings of the captions")
    parser.add_argument("--thresholds", default="val", metavar="val|FILE",
                        help="'val' (default): per class, the best F1 cut on the val split's truth; or a JSON file "
                             "{\"audio\": [25 cosines], \"visual\": [25 cosines]}")
    parser.add_argument("--audio-features", metavar="DIR",
                        help="(10, d) CLAP segment embeddings (default: DIR/CLAP/features; use this when that folder "
                             "holds VALOR's (64, 768) CLAP maps)")
    parser.add_argument("--visual-features", metavar="DIR", help="(10, d) CLIP segment embeddings (default: DIR/CLIP/features)")
    parser.add_argument("--out", metavar="DIR",
                        help="where the prior folders go (default: DIR itself, where train and predict read them; "
                             "another folder is for comparing sets and must be copied into DIR to be used)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inference.data import labels_from_folder
    from inference.priors import compute_priors

    labels = labels_from_folder(args.data, pseudo=False)
    report = compute_priors(args.data, labels, args.text_audio, args.text_visual, args.thresholds, args.out,
                            progress=StderrProgress(),
                            feature_dirs={"audio": args.audio_features, "visual": args.visual_features})
    if args.json:
        print(json.dumps(asdict(report), indent=1))
        return 0
    for track in ("audio", "visual"):
        print(f"{track}: {report.written[track]} priors written, {_threshold_text(report, track)}")
    if report.source == "val":
        print("note: the thresholds were fitted on the val truth, so val scores of a model reading these priors are "
              "slightly optimistic; test clips' priors depend on their features only", file=sys.stderr)
    return 0


def _threshold_text(report, track: str) -> str:
    if report.source != "val":
        return f"thresholds from {report.source}"
    f1 = [v for v in report.val_f1[track] if v is not None]
    fallback = report.fallback[track]
    extra = f"; {len(fallback)} class(es) without val positives took the mean threshold" if fallback else ""
    return f"thresholds chosen on val (mean per-class val F1 {100 * sum(f1) / len(f1):.1f}{extra})"
