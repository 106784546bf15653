"""`avvp-studio avs import|demo|eval|train|predict|export`: audio-visual segmentation on AVSBench-layout data."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from annotation.avs_demo import build_avs_demo
from annotation.avs_store import export_masks, import_avsbench, mask_sources, validate_mask_source
from annotation.avsbench import SPLITS, SUBSETS, read_avsbench, subset_root
from annotation.db import open_database
from annotation.errors import DataFileError
from app.errors import UsageError
from app.progress import StderrProgress, int_at_least
from app.settings import resolve_database
from inference.cli_args import device_name, json_object

EXAMPLE = """\
example (the synthetic demo; numbers on it are synthetic and never comparable with AVSBench):
  avvp-studio avs demo --out avsdemo --subset s4 --clips 60 --size 96
  avvp-studio avs train --data avsdemo --subset s4 --model avs_mamba --config tiny --lr 1e-3 --epochs 8 --device cpu \\
      --out runs/s4   # lr 1e-3: the tiny model starts from random weights (the recipe fine-tunes at 2e-5)
  avvp-studio avs predict --run runs/s4 --data avsdemo --subset s4 --split test --out runs/s4/test
  avvp-studio avs eval --data avsdemo --subset s4 --split test --pred runs/s4/test --json
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser("avs", help="audio-visual segmentation (AVSBench S4/MS3/AVSS, AVS-Mamba)",
                                   epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = parser.add_subparsers(dest="avs_command", metavar="COMMAND", required=True)

    p = kinds.add_parser("import", help="import an AVSBench subset (clips and ground-truth masks) into the label store")
    p.add_argument("root", metavar="ROOT", help="the AVSBench data folder or the subset's own folder")
    p.add_argument("--subset", required=True, choices=SUBSETS)
    p.add_argument("--db", help="SQLAlchemy URL or SQLite file (default: $AVVP_STUDIO_DB or the per-user database)")
    p.add_argument("--json", action="store_true", help="print the import report as JSON")
    p.set_defaults(func=run_import)

    p = kinds.add_parser("demo", help="write a synthetic AVSBench-layout project (moving objects whose sound is known)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--subset", default="s4", choices=SUBSETS)
    p.add_argument("--clips", type=int, default=40)
    p.add_argument("--size", type=int, default=224, help="frame width and height in pixels (AVSBench: 224)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_demo)

    p = kinds.add_parser("eval", help="score predicted masks with the exact AVSBench metrics")
    p.add_argument("--data", required=True, metavar="ROOT")
    p.add_argument("--subset", required=True, choices=SUBSETS)
    p.add_argument("--split", default="test", choices=SPLITS)
    p.add_argument("--pred", required=True, metavar="PRED", help="predicted masks in the split's gt_masks layout "
                   "(S4/MS3: 8-bit probability PNGs, value = round(255 p); AVSS: palette colour PNGs)")
    p.add_argument("--group-videos", type=int_at_least(1), default=1, metavar="N",
                   help="videos per F-score batch (AVSBench's test loop: 1); printed with every number")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_eval)

    p = kinds.add_parser("train", help="train an AVS model; checkpoint chosen on val mIoU, scored once on test",
                         epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, metavar="ROOT")
    p.add_argument("--subset", required=True, choices=SUBSETS)
    p.add_argument("--model", metavar="NAME", help="avs_mamba or avs_visual_only (required unless --resume/--like)")
    p.add_argument("--config", choices=("tiny", "full"), help="model size (default: the recipe's, full)")
    p.add_argument("--backbone", choices=("resnet50", "pvt_v2_b5"))
    p.add_argument("--backbone-weights", metavar="FILE", help="local ResNet-50 / PVT-v2-b5 checkpoint "
                   "(torchvision, whai362 or timm keys)")
    p.add_argument("--vggish-weights", metavar="FILE", help="local torchvggish checkpoint (vggish-10086976.pth)")
    p.add_argument("--image-size", type=int, metavar="PX", help="frames are resized to PX x PX (default: the model's)")
    p.add_argument("--model-config", type=json_object, metavar="JSON", help="more model options as JSON")
    p.add_argument("--group-videos", type=int_at_least(1), metavar="N",
                   help="videos per F-score batch in val/test (default 1)")
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    for flag, kind in (("--epochs", int), ("--batch-size", int), ("--eval-batch-size", int), ("--lr", float),
                       ("--weight-decay", float), ("--seed", int), ("--num-workers", int)):
        p.add_argument(flag, type=kind)
    p.add_argument("--device", type=device_name, help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last.pt")
    p.add_argument("--like", metavar="OTHER_RUN_DIR", help="a new run with another run's config")
    p.add_argument("--db", metavar="URL", help="record the run in this label store's runs table (and train on the "
                   "predicted masks a person accepted on train frames without ground truth)")
    p.add_argument("--name", metavar="RUN", help="with --db: the run's name (default: the run folder's name)")
    p.add_argument("--predict", metavar="SPLITS", help="with --db: predict these splits after training and store "
                   "the masks as prediction:RUN")
    p.add_argument("--annotator", metavar="NAME")
    p.add_argument("--events", action="store_true", help="JSON lines on stdout, one per event, for programs")
    p.set_defaults(func=_run("run_train"))

    p = kinds.add_parser("predict", help="predict masks of a split with a trained AVS run")
    p.add_argument("--run", required=True, metavar="RUN_DIR")
    p.add_argument("--data", required=True, metavar="ROOT")
    p.add_argument("--subset", required=True, choices=SUBSETS)
    p.add_argument("--split", default="test", choices=SPLITS)
    p.add_argument("--out", required=True, metavar="PRED", help="PRED/<category>/<name>/<name>_<k>.png (S4; the "
                   "split's gt_masks layout)")
    p.add_argument("--device", default="auto", type=device_name)
    p.add_argument("--db", metavar="URL", help="also store the masks as prediction:NAME in this label store")
    p.add_argument("--name", metavar="RUN")
    p.set_defaults(func=_run("run_predict"))

    p = kinds.add_parser("export", help="write masks of a source from the label store in the AVSBench layout")
    p.add_argument("--subset", required=True, choices=SUBSETS)
    p.add_argument("--source", default="reviewed", help="truth, reviewed or prediction:RUN (default reviewed)")
    p.add_argument("--split", default="all", choices=(*SPLITS, "all"))
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--db")
    p.set_defaults(func=run_export)


def run_import(args: argparse.Namespace) -> int:
    subset_root(args.root, args.subset)  # a wrong folder is refused before any database is created
    engine = open_database(resolve_database(args.db))
    report = import_avsbench(engine, args.root, args.subset, progress=StderrProgress())
    if args.json:
        print(json.dumps(asdict(report), indent=2))
        return 0
    total = sum(report.clips.values())
    print(f"imported {total} {args.subset.upper()} clips ({', '.join(f'{k} {v}' for k, v in report.clips.items())}): "
          f"{report.clips_added} new, {report.clips_updated} changed; ground-truth masks {report.masks_added} new, "
          f"{report.masks_updated} changed")
    if report.truth_removed:
        print(f"note: {report.truth_removed} ground-truth mask(s) of frames the folder no longer annotates were removed",
              file=sys.stderr)
    if report.clips_not_in_folder:
        print(f"note: {len(report.clips_not_in_folder)} stored {args.subset.upper()} clip(s) are no longer listed in the "
              f"folder's metadata (e.g. {report.clips_not_in_folder[0]}); they and their masks are kept", file=sys.stderr)
    if report.unknown_colour_pixels:
        print(f"note: {report.unknown_colour_pixels} mask pixel(s) have a colour outside the 71-class palette and were "
              "read as background (as the official loader reads them)", file=sys.stderr)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    try:
        folder = build_avs_demo(args.out, args.subset, args.clips, args.size, args.seed,
                                progress=lambda done, total: StderrProgress()("writing clips", done, total))
    except ValueError as exc:
        raise DataFileError(args.out, str(exc)) from None
    print(f"wrote a synthetic AVSBench {args.subset.upper()} project ({args.clips} clips) to {folder}")
    print(f"next: avvp-studio avs import {args.out} --subset {args.subset}   or   avvp-studio avs train --data "
          f"{args.out} --subset {args.subset} --model avs_mamba --config tiny --lr 1e-3 --out RUN_DIR")
    return 0


def run_export(args: argparse.Namespace) -> int:
    try:
        validate_mask_source(args.source)
    except ValueError as exc:
        raise UsageError(f"--source: {exc}") from None
    engine = open_database(resolve_database(args.db), create=False)
    sources = mask_sources(engine, args.subset)
    if args.source not in sources:
        raise UsageError(f"--source {args.source}: the database has no {args.subset.upper()} masks of it; it has "
                         f"{', '.join(sources) or 'no ' + args.subset.upper() + ' masks at all'}")
    counts = export_masks(engine, args.out, args.subset, args.source, args.split)
    note = f"; {counts['rejected']} rejected frame(s) not written" if counts["rejected"] else ""
    print(f"exported {counts['masks']} {args.source} masks of {counts['clips']} clips to {Path(args.out).resolve()}"
          f"{note}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    data = read_avsbench(args.data, args.subset)
    from inference.avs_commands import describe_scores, evaluate_folder  # torch only when the command runs

    scores = evaluate_folder(data, args.split, args.pred, args.group_videos)
    scores = {"subset": args.subset, "split": args.split, **scores}
    if args.json:
        print(json.dumps(scores, indent=2))
    else:
        print(f"{args.subset.upper()} {args.split}:\n{describe_scores(scores)}")
    return 0


def _run(name: str):
    def call(args: argparse.Namespace) -> int:
        from inference import avs_commands  # torch only when a command runs

        return getattr(avs_commands, name)(args)

    return call
