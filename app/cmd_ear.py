"""`avvp-studio ear pretrain`: EAR stage 1, the pseudo-label generator pre-trained with the shared trainer.

Stage 2 (its pseudo-labels for LLP) is `avvp-studio pseudo-label --method ear --generator RUN_DIR`; stage 3
(the EAR parser) is `avvp-studio train --model ear`. Torch is imported only when the command runs.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import IO

from app.errors import UsageError
from inference.cli_args import device_name, json_object

GENERATOR = "ear_generator"
EXAMPLE = """\
examples:
  avvp-studio import unav unav100_annotations.json --videos VIDEOS --out unav --llp LLP_DIR  # dense events
  avvp-studio features --data unav --set clip_clap
  avvp-studio ear pretrain --dense unav --out runs/ear-gen            # the paper's recipe: 80 epochs, batch 64
  avvp-studio ear pretrain --db studio.sqlite --data LLP_DIR --out runs/ear-gen-corrected \\
      --model-config '{"hidden": 64}' --epochs 20     # the train clips a person corrected (both tracks)
  avvp-studio pseudo-label --data LLP_DIR --method ear --generator runs/ear-gen --name ear
"""

_OVERRIDES = ("epochs", "batch_size", "eval_batch_size", "lr", "lr_min", "warmup_epochs", "weight_decay", "device",
              "seed", "num_workers")


def register(subparsers) -> None:
    parser = subparsers.add_parser("ear", help="EAR: pre-train its pseudo-label generator (stage 1)", epilog=EXAMPLE,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = parser.add_subparsers(dest="ear_command", metavar="COMMAND", required=True)
    p = kinds.add_parser(
        "pretrain", help="pre-train EAR's pseudo-label generator on dense audio-visual events or corrected clips",
        description="Pre-train EAR's pseudo-label generator (asymmetric temporal modelling, uni-modal label "
        "migration) with the paper's recipe (AdamW, batch 64, 80 epochs, 10 warm-up, cosine 1e-4 -> 1e-5), on a "
        "dense-event folder (--dense, e.g. UnAV-100) or on the train clips whose audio and visual tracks a person "
        "corrected in a label store (--db with --data, the LLP folder of their features). The checkpoint is chosen "
        "on the val split's segment mAP (never on LLP test data). Writes RUN_DIR/config.json, train.log, "
        "checkpoint.pt, last.pt (resume) and metrics.json. Ctrl+C stops cleanly; --resume continues.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dense", metavar="DIR", help="a dense-event folder (avvp-studio import unav, then features)")
    p.add_argument("--db", metavar="URL", help="a label store: train on its corrected train clips (both tracks "
                   "'manual'); needs --data")
    p.add_argument("--data", metavar="LLP_DIR", help="with --db: the LLP folder with the clips' CLIP/CLAP features "
                   "and caption embeddings")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (config, log, checkpoints, metrics)")
    p.add_argument("--model-config", type=json_object, metavar="JSON",
                   help="generator options over the recipe's, e.g. '{\"num_layers\": 2, \"tau_visual\": 0.94}'")
    p.add_argument("--window", type=int, metavar="N", help="segments per training window (default 10, LLP's clip)")
    p.add_argument("--val-fraction", type=float, metavar="F",
                   help="with --db: corrected clips held out for validation (default 0.1, at least one)")
    for flag, kind, text in (("--epochs", int, "default 80"), ("--batch-size", int, "default 64"),
                             ("--eval-batch-size", int, "default 64"), ("--lr", float, "peak, default 1e-4"),
                             ("--lr-min", float, "cosine floor, default 1e-5"),
                             ("--warmup-epochs", int, "default 10"), ("--weight-decay", float, "default 0.01"),
                             ("--seed", int, "default 1 (also picks the held-out corrected clips)"),
                             ("--num-workers", int, "data loading processes (default 0)")):
        p.add_argument(flag, type=kind, help=text)
    p.add_argument("--device", type=device_name, help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last.pt")
    p.add_argument("--events", action="store_true",
                   help="JSON lines on stdout, one per event (start, step, epoch, end, error, done), for programs")
    p.add_argument("stray", nargs="?", help=argparse.SUPPRESS)  # catches `--events DIR` to say what to write
    p.set_defaults(func=run_pretrain)


def check_arguments(args: argparse.Namespace) -> None:
    if args.stray is not None:
        hint = f"; give the dense-event folder as --dense {args.stray}" if args.events else ""
        raise UsageError(f"unexpected argument {args.stray!r} (--events takes no value: it switches on JSON lines)"
                         f"{hint}")
    if args.dense and (args.db or args.data):
        raise UsageError("give either --dense DIR (a dense-event folder) or --db URL --data LLP_DIR (corrected clips)")
    if not args.dense and not (args.db and args.data):
        raise UsageError("the data: --dense DIR (a dense-event folder), or --db URL with --data LLP_DIR (the train "
                         "clips a person corrected, with the LLP folder of their features)")


def _llp_overlap_kept(folder: str) -> int:
    """How many videos the folder's import kept although they share a YouTube id with LLP val/test."""
    try:
        manifest = json.loads((Path(folder) / "dense_events.json").read_text(encoding="utf-8"))
        return len(manifest["import"]["llp_check"]["overlap_kept"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0  # a folder made otherwise: its own reader refuses it if it is not a dense-event folder


def config_from_args(args: argparse.Namespace):
    """The recipe with the options given; with --resume, RUN_DIR's stored config with them."""
    from annotation.files import present
    from inference.checkpoint import read_run_config
    from inference.train import RunDirError
    from inference.train_config import TrainConfig

    given = {k: getattr(args, k) for k in _OVERRIDES if getattr(args, k) is not None}
    model_options = dict(args.model_config or {})
    task_options = {"source": "dense" if args.dense else "store"}
    if args.dense:
        task_options["llp_overlap_kept"] = _llp_overlap_kept(args.dense)
    for key in ("window", "val_fraction"):
        if getattr(args, key) is not None:
            task_options[key] = getattr(args, key)
    if args.resume and present(Path(args.out) / "config.json"):
        stored = read_run_config(args.out, TrainConfig)
        if stored.model != GENERATOR:
            raise RunDirError(f"{args.out} holds a {stored.model} run, not EAR's generator")
        return TrainConfig.from_dict({**stored.to_dict(), **given,
                                      "model_config": {**stored.model_config, **model_options},
                                      "task_options": {**stored.task_options, **task_options}})
    return TrainConfig.for_model(GENERATOR, model_config=model_options, task_options=task_options, **given)


def run_pretrain(args: argparse.Namespace, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    check_arguments(args)
    from annotation.db import open_database
    from inference.callbacks import JsonEvents, PrintProgress
    from inference.commands import REFUSALS, _refused, _stop_on_interrupt
    from inference.tasks.dense_events import DenseEventOptions, DenseEventTask, dense_event_data, store_event_data
    from inference.train import train

    out, err = out or sys.stdout, err or sys.stderr
    events = JsonEvents(out) if args.events else None
    tables = err if events else out
    try:
        config = config_from_args(args)
        options = DenseEventOptions.from_dict(config.task_options)
        if args.dense:
            data = dense_event_data(args.dense)
        else:
            data = store_event_data(open_database(args.db, readonly=True), args.data, options.val_fraction,
                                    config.seed)
        task = DenseEventTask(data)
        stop = threading.Event()
        callbacks = [PrintProgress(err), *([events] if events else [])]
        with _stop_on_interrupt(stop, err):
            result = train(config, task, args.out, callbacks=callbacks, stop_event=stop, resume=args.resume)
    except REFUSALS as exc:
        return _refused(exc, err, events, None)
    except BaseException:
        if events is not None:
            events.flush()
        raise
    if not result.stopped:
        for title, scores in ((f"val (best epoch {result.best_epoch}, the selected checkpoint)", result.val),
                              ("test", result.test)):
            tables.write(f"{title}: {task.describe(scores) if scores else '(no clips in this split)'}\n")
        tables.write(f"run: {Path(args.out).resolve()}\n")
    code = 130 if result.stopped else 0
    if events is not None:
        events.emit("done", status="stopped" if result.stopped else "finished", code=code)
    return code
