"""The train and predict commands, shared by `avvp-studio train/predict` and `python -m inference.train_ddp`.

Lives in inference/ (not app/) so the torchrun entry can use it without the app
layer; the arguments are defined in `inference.cli_args` (no torch import, so
the CLI starts fast), `app.cmd_train` and `app.cmd_predict` only register them.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import signal
import sys
import threading
from pathlib import Path
from typing import IO

from annotation.db import DatabaseError, open_database
from annotation.errors import DataFileError
from annotation.files import FolderBusyError, present
from annotation.importer import store_predictions
from annotation.npyfile import read_npy
from inference.callbacks import PrintProgress
from inference.checkpoint import RunError, read_run_config
from inference.data import LabelSet, labels_from_folder, labels_from_store
from inference.metrics import binarize, format_table
from inference.models import UnknownModelError, get_entry, model_names
from inference.predict import predict_to_dir
from inference.tasks.avvp import AVVPTask
from inference.train import RunDirError, train
from inference.train_config import TrainConfig

REFUSALS = (RunError, UnknownModelError, DataFileError, DatabaseError, FolderBusyError)


def load_labels(data_dir: str | Path, db: str | None, pseudo: bool) -> LabelSet:
    """Labels from the folder or the store (with the train clips' pseudo-labels when the model trains on them)."""
    if db:
        return labels_from_store(open_database(db, readonly=True), pseudo=pseudo)  # a typo in --db is an error
    return labels_from_folder(data_dir, pseudo=pseudo)


# TrainConfig fields set by an option of the same name (None: not given)
_OVERRIDES = ("epochs", "batch_size", "eval_batch_size", "lr", "lr_min", "weight_decay", "optimizer", "betas",
              "scheduler", "step_size", "gamma", "warmup_epochs", "grad_clip", "device", "seed", "num_workers")


def _model_options(args: argparse.Namespace) -> dict:
    options = dict(args.model_config or {})
    if args.feature_set is not None:
        options["feature_set"] = args.feature_set
    for track in ("audio", "visual"):
        path = getattr(args, f"text_{track}")
        if path is not None:
            options[f"text_{track}"] = str(Path(path).resolve())
    if args.random_text:
        options["random_text"] = True
    return options


def _refuse_caption_options(model: str, args: argparse.Namespace) -> None:
    given = [flag for flag, value in (("--text-audio", args.text_audio), ("--text-visual", args.text_visual),
                                      ("--random-text", args.random_text)) if value]
    try:
        fields = _fields(model)
    except UnknownModelError:
        return  # TrainConfig names the unknown model
    if given and "text_audio" not in fields:
        raise RunError(f"{', '.join(given)}: the {model} model reads no caption embeddings (only models with PLSIM do: "
                       f"{', '.join(m for m in model_names('avvp') if 'text_audio' in _fields(m))})")


def _fields(model: str) -> set[str]:
    return {f.name for f in dataclasses.fields(get_entry(model).config_cls)}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The recipe of --model with the options given; with --resume, the stored config with them."""
    given = {name: getattr(args, name) for name in _OVERRIDES if getattr(args, name) is not None}
    model_options = _model_options(args)
    task_options = dict(args.task_options or {})
    task_options.update({k: getattr(args, k) for k in ("cmrc", "cmrc_min_label_count") if getattr(args, k) is not None})
    if args.resume and present(Path(args.out) / "config.json"):
        stored = read_run_config(args.out, TrainConfig)
        if args.model is not None and args.model != stored.model:
            raise RunDirError(f"{args.out} holds a {stored.model} run, not {args.model}")
        _refuse_caption_options(stored.model, args)
        return TrainConfig.from_dict({**stored.to_dict(), **given,
                                      "model_config": {**stored.model_config, **model_options},
                                      "task_options": {**stored.task_options, **task_options}})
    if args.model is None:
        raise RunError(f"--model is required (available models: {', '.join(model_names('avvp'))})")
    _refuse_caption_options(args.model, args)
    return TrainConfig.for_model(args.model, model_config=model_options, task_options=task_options, **given)


def print_scores(title: str, scores: dict | None, stream: IO[str]) -> None:
    stream.write(f"{title}\n{format_table(scores) if scores else '(no truth for this split)'}\n")


class _stop_on_interrupt:
    """First Ctrl+C: stop cleanly after the current step (last.pt stays resumable); second: abort."""

    def __init__(self, event: threading.Event, err: IO[str] | None):
        self.event, self.err, self.previous = event, err, None

    def _handler(self, signum, frame) -> None:
        self.event.set()
        if self.err is not None:
            self.err.write("stopping after this step (Ctrl+C again aborts); resume later with --resume\n")
        signal.signal(signal.SIGINT, self.previous)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def run_train(args: argparse.Namespace, distributed: bool = False, out: IO[str] | None = None,
              err: IO[str] | None = None) -> int:
    """Train as the arguments say; progress on `err`, the val and test tables on `out` (rank 0)."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        config = config_from_args(args)
        labels = load_labels(args.data, args.db, get_entry(config.model).model_cls.uses_pseudo_labels)
        from inference.distributed import context

        main = context().is_main
        stop = threading.Event()
        with _stop_on_interrupt(stop, err if main else None):
            result = train(config, AVVPTask(labels, args.data), args.out,
                           callbacks=[PrintProgress(err)] if main else [], stop_event=stop, resume=args.resume,
                           distributed=distributed)
    except REFUSALS as exc:
        err.write(f"error: {exc}\n")
        return 2
    if main and not result.stopped:
        print_scores(f"val (best epoch {result.best_epoch}, the selected checkpoint)", result.val, out)
        print_scores("test", result.test, out)
        out.write(f"run: {Path(args.out).resolve()}\n")
    return 130 if result.stopped else 0


def store_in_database(args: argparse.Namespace) -> str:
    """The binary predictions just written to --out, as 'prediction:<name>' tracks of the --db clips."""
    out = Path(args.out)
    names = out.joinpath("filenames.txt").read_text(encoding="utf-8").split()
    v = len(names)
    probs = [read_npy(out / f"{name}.npy", shape=shape, kinds="f", expected=f"{shape} float probabilities")
             for name, shape in (("segment_probs_audio", (v, 25, 10)), ("segment_probs_visual", (v, 25, 10)),
                                 ("global_probs", (v, 25)))]
    pred_a, pred_v = binarize(*probs)
    name = args.name or re.sub(r"[^A-Za-z0-9._-]", "-", Path(args.run).resolve().name)
    store_predictions(open_database(args.db, create=False), name, dict(zip(names, pred_a)), dict(zip(names, pred_v)))
    return name


def run_predict(args: argparse.Namespace, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        if not present(Path(args.run) / "config.json"):
            raise RunError(f"{args.run} holds no training run (config.json missing)")
        read_run_config(args.run, TrainConfig)  # refuses a damaged config.json before any work
        labels = load_labels(args.data, args.db, pseudo=False)
        summary = predict_to_dir(args.run, labels, args.data, args.split, args.out, args.device,
                                 zero_priors=args.zero_priors, text_audio=args.text_audio,
                                 text_visual=args.text_visual)
    except REFUSALS as exc:
        err.write(f"error: {exc}\n")
        return 2
    err.write(f"predict: {summary['clips']} {args.split} clips -> {Path(args.out).resolve()} "
              f"({summary['rows']['audio']} audio, {summary['rows']['visual']} visual event rows)\n")
    if args.db:
        try:
            name = store_in_database(args)
        except (ValueError, DataFileError, DatabaseError) as exc:
            err.write(f"error: storing predictions in the database: {exc}\n")
            return 2
        err.write(f"predict: stored as label source 'prediction:{name}' (shown on the timelines)\n")
    print_scores(f"{args.split} (binary predictions: segment >= 0.5 and global >= 0.5)", summary["scores"], out)
    return 0
