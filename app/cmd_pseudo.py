"""`avvp-studio pseudo-label`: a named pseudo-label set (zero-shot or EAR) written, stored and scored.

Replacing: re-running a set's name with the same method replaces it (files as one change, store
tracks updated); a set of that name made by ANOTHER method is refused unless --force (one name,
one kind of labels: a reviewer comparing 'pseudo:ear' with 'pseudo:zs' must be able to trust it).
Ctrl+C (the window's Cancel) stops cleanly: nothing written, nothing stored, exit 130.
"""
from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from typing import IO

from app.errors import UsageError
from app.progress import StderrProgress

METHODS = ("zero-shot", "ear")


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a probability between 0 and 1 (exclusive), got {text}")
    return value


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "pseudo-label", help="make a named pseudo-label set (VALOR zero-shot or EAR), store and score it",
        description="Segment pseudo-labels of every clip (train, val, test), gated by each clip's video-level "
        "label (VALOR/EAR protocol), written to DIR/pseudo/NAME/ in the LLP layout (CLAP/ and CLIP/"
        "segment_pseudo_labels, pseudo_labels.json), stored as label source pseudo:NAME with --db, and scored "
        "against the val and test truth. Train on them with: avvp-studio train --pseudo NAME. "
        "zero-shot: logit_scale * cos(segment feature, caption embedding) > threshold (strict), from "
        "DIR/CLAP/features, DIR/CLIP/features and DIR/text/{clap,clip}_captions.npy (+ captions.json for the "
        "logit scales). ear: the pseudo-labels of an EAR generator run (avvp-studio ear pretrain).",
    )
    parser.add_argument("--data", required=True, metavar="DIR", help="LLP-layout data folder")
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("--name", required=True, metavar="NAME",
                        help="the set's name (letters, digits, '.', '_', '-'): DIR/pseudo/NAME, source pseudo:NAME")
    parser.add_argument("--thresholds", metavar="valor|val|FILE",
                        help="zero-shot: 'valor' (VALOR's published thresholds; needs real CLIP/CLAP features and "
                             "DIR/text/captions.json), 'val' (per class the best-F1 cut on the val truth; val quality "
                             "is then optimistic), or a JSON file {\"audio\": [25], \"visual\": [25]} in logit units. "
                             "Default: valor when captions.json names real encoders, else val")
    parser.add_argument("--calibrate", choices=("gated", "ungated"), default=None,
                        help="zero-shot with val thresholds: cut of the gated labels (default) or of the ungated "
                             "ones (as priors; reads no val weak label)")
    parser.add_argument("--audio-features", metavar="DIR", help="zero-shot: (10, d) CLAP segment embeddings "
                        "(default DIR/CLAP/features)")
    parser.add_argument("--visual-features", metavar="DIR", help="zero-shot: (10, d) CLIP segment embeddings "
                        "(default DIR/CLIP/features)")
    parser.add_argument("--generator", metavar="RUN_DIR", help="ear: the EAR generator run (avvp-studio ear pretrain)")
    parser.add_argument("--threshold", type=_probability, metavar="P",
                        help="ear: probability threshold of the generator's labels (default: the run's)")
    parser.add_argument("--device", metavar="D", help="ear: cpu, cuda, cuda:N, mps or auto (default auto)")
    parser.add_argument("--db", metavar="URL", help="also store the set as label source pseudo:NAME in this database")
    parser.add_argument("--annotator", metavar="WHO", help="with --db: who made the set (default: the login name)")
    parser.add_argument("--out", metavar="DIR", help="write the set here instead of DIR/pseudo/NAME (train --pseudo "
                        "reads DIR/pseudo/NAME)")
    parser.add_argument("--force", action="store_true", help="replace a set of this name made by another method")
    parser.add_argument("--events", action="store_true", help="JSON lines on stdout (start, progress, done, error) "
                        "for programs; the tables go to stderr")
    parser.add_argument("--json", action="store_true", help="print the set's report as JSON")
    parser.set_defaults(func=run)


class _Progress:
    """Progress lines on stderr and, with --events, progress events (at most every 0.25 s, and the last)."""

    def __init__(self, events, err: IO[str]):
        self.lines, self.events, self.last = StderrProgress(err), events, 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.lines(stage, done, total)
        now = time.monotonic()
        if self.events is not None and (done >= total or now - self.last >= 0.25):
            self.events.emit("progress", stage=stage, done=int(done), total=int(total))
            self.last = now


def _check_options(args: argparse.Namespace) -> None:
    from inference.pseudo_sets import PseudoSetError, check_set_name

    try:
        check_set_name(args.name)
    except PseudoSetError as exc:
        raise UsageError(f"--name: {exc}") from None
    if args.method == "zero-shot":
        given = [flag for flag, value in (("--generator", args.generator), ("--threshold", args.threshold))
                 if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only for --method ear")
    else:
        given = [flag for flag, value in (("--thresholds", args.thresholds), ("--calibrate", args.calibrate),
                                          ("--audio-features", args.audio_features),
                                          ("--visual-features", args.visual_features)) if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only for --method zero-shot")
        if not args.generator:
            raise UsageError("--method ear needs --generator RUN_DIR (a run of: avvp-studio ear pretrain)")


def run(args: argparse.Namespace, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    from annotation.db import DatabaseError
    from annotation.errors import DataFileError
    from annotation.files import FolderBusyError
    from inference.callbacks import JsonEvents
    from inference.checkpoint import RunError
    from inference.pseudo_sets import PseudoSetError

    out, err = out or sys.stdout, err or sys.stderr
    events = JsonEvents(out) if args.events else None
    try:
        return _run(args, events, out, err)
    except KeyboardInterrupt:
        message = "stopped (Ctrl+C): nothing was written or stored"
        err.write(f"{message}\n")
        if events is not None:
            events.emit("error", message=message)
        return 130
    except (DataFileError, DatabaseError, UsageError, FolderBusyError, RunError, PseudoSetError, OSError) as exc:
        if events is not None:
            events.emit("error", message=str(exc))
        if isinstance(exc, (PseudoSetError, RunError)):
            raise UsageError(str(exc)) from None  # one line, exit 2 (app.cli)
        raise


def _run(args: argparse.Namespace, events, out: IO[str], err: IO[str]) -> int:
    from annotation.db import open_database
    from inference.data import labels_from_folder
    from inference.pseudo_sets import (
        QUALITY_NOTE,
        check_pseudo_set,
        check_replace,
        check_store_clips,
        score_pseudo_set,
        set_root,
        store_pseudo_set,
        summarize,
        write_pseudo_set,
    )

    _check_options(args)
    labels = labels_from_folder(args.data, pseudo=False)  # weak labels (the gate) and truth (the scores)
    engine = open_database(args.db, create=False) if args.db else None
    if engine is not None:
        check_store_clips(engine, labels)
    root = args.out or set_root(args.data, args.name)
    check_replace(root, args.method, args.force)  # before the work, not after it
    if events is not None:
        events.emit("start", method=args.method, name=args.name, clips=len(labels))
    progress = _Progress(events, err)
    pset = _generate(args, labels, progress, err)
    check_pseudo_set(pset, labels)
    pset.report.update(counts=summarize(pset, labels), quality=score_pseudo_set(pset, labels),
                       quality_note=QUALITY_NOTE)
    annotator = args.annotator or getpass.getuser()
    store = (lambda: {**store_pseudo_set(engine, pset, labels, annotator),
                      "database": engine.url.render_as_string(hide_password=True)}) if engine is not None else None
    written = write_pseudo_set(args.data, pset, args.out, force=args.force, progress=progress, then=store)
    report = json.loads((written / "pseudo_labels.json").read_text(encoding="utf-8"))
    stored = report.get("stored")
    if events is not None:
        _print_summary(report, written, err)
        events.emit("done", written=len(pset.audio), stored=stored["clips"] if stored else None,
                    quality=report["quality"], out=str(written))
    elif args.json:
        out.write(json.dumps({**report, "out": str(written)}, indent=1) + "\n")
    else:
        _print_summary(report, written, out)
    return 0


def _generate(args: argparse.Namespace, labels, progress, err: IO[str]):
    if args.method == "zero-shot":
        from inference.zero_shot import zero_shot_set

        if args.device:
            err.write("note: --device is not used by the zero-shot method (a few matrix products on the CPU)\n")
        return zero_shot_set(args.data, labels, args.name, args.thresholds or "auto",
                             {"audio": args.audio_features, "visual": args.visual_features}, progress,
                             calibration=args.calibrate or "gated")
    from inference.ear_generate import ear_pseudo_set  # the EAR generator (torch, its model) only when asked

    pset = ear_pseudo_set(args.generator, args.data, labels, args.name, device=args.device or "auto",
                          threshold=args.threshold, progress=progress)
    if pset.method != args.method:  # one method name per set, whatever the generator calls itself
        pset.report.setdefault("generator_method", pset.method)
        pset.method = args.method
    return pset


def _print_summary(report: dict, root, stream: IO[str]) -> None:
    from inference.metrics import format_table
    from inference.pseudo_sets import GATING

    stream.write(f"pseudo-label set {report['name']} ({report['method']}): {report['clips']} clips written to "
                 f"{root}\n")
    for split, row in report["counts"].items():
        stream.write(f"  {split}: {row['clips']} clips; positive segments audio {row['audio_positives']}, visual "
                     f"{row['visual_positives']}; empty audio {row['audio_empty']}, empty visual "
                     f"{row['visual_empty']}\n")
    how = report.get("thresholds_note") or report.get("threshold_how")
    if how:
        stream.write(f"thresholds: {how}\n")
    if str(report.get("logit_scale_source", "")).startswith("default"):
        stream.write(f"logit scale: {report['logit_scale_source']}\n")
    stored = report.get("stored")
    if stored:
        stream.write(f"stored as label source '{stored['source']}' in {stored['database']}: {stored['clips']} clips "
                     f"({stored['added']} tracks added, {stored['updated']} updated, {stored['removed']} removed)\n")
    optimistic = report.get("threshold_source") == "val"
    stream.write(f"quality: the pseudo-labels scored against the truth; they are {GATING}\n")
    for split in ("val", "test"):
        scores = report["quality"].get(split)
        title = f"{split}" + (" (val chose the thresholds: optimistic)" if optimistic and split == "val" else "")
        stream.write(f"{title}\n{format_table(scores) if scores else '(no truth for this split)'}\n")
