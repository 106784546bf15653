"""The train and predict commands, shared by `avvp-studio train/predict` and `python -m inference.train_ddp`.

Lives in inference/ (not app/) so the torchrun entry can use it without the app
layer; the arguments are defined in `inference.cli_args` (no torch import, so
the CLI starts fast), `app.cmd_train` and `app.cmd_predict` only register them.
"""
from __future__ import annotations

import argparse
import dataclasses
import getpass
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
from annotation.runs import RunNameError, check_run_name, finish_run, start_run, update_run
from inference.callbacks import JsonEvents, PrintProgress, TrainCallback
from inference.checkpoint import RunError, read_run_config
from inference.data import LabelSet, check_same_clips, labels_from_folder, labels_from_store
from inference.metrics import binarize, format_table, per_class_f1
from inference.models import UnknownModelError, get_entry, model_names
from inference.predict import predict, predict_to_dir
from inference.pseudo_sets import SETS_DIR, PseudoSetError, check_set_name, list_sets, set_root, stored_sets
from inference.tasks.avvp import AVVPTask, truth_for
from inference.train import RunDirError, train
from inference.train_config import TrainConfig

REFUSALS = (RunError, UnknownModelError, DataFileError, DatabaseError, FolderBusyError)


def load_labels(data_dir: str | Path, db: str | None, pseudo: bool, pseudo_set: str | None = None) -> LabelSet:
    """Labels from the folder or the store (with the train clips' pseudo-labels when the model trains on them);
    the store's clips must be the folder's, by full name (features are read by video id). `pseudo_set`:
    the pseudo-labels of that named set (DIR/pseudo/NAME, or the store's source pseudo:NAME)."""
    if pseudo_set is not None:
        if not pseudo:
            raise RunError(f"--pseudo {pseudo_set}: this model trains on video-level labels only, not on segment "
                           "pseudo-labels")
        _check_pseudo_set(data_dir, db, pseudo_set)
    if db:
        engine = open_database(db, readonly=True)  # a typo in --db is an error
        source = "pseudo" if pseudo_set is None else f"pseudo:{pseudo_set}"
        labels = labels_from_store(engine, pseudo=pseudo, pseudo_source=source)
        check_same_clips(labels, data_dir)
        return labels
    return labels_from_folder(data_dir, pseudo=pseudo,
                              pseudo_root=None if pseudo_set is None else set_root(data_dir, pseudo_set))


def _check_pseudo_set(data_dir: str | Path, db: str | None, name: str) -> None:
    """A set that does not exist is named, with the sets that do."""
    try:
        check_set_name(name)
    except PseudoSetError as exc:
        raise RunError(f"--pseudo: {exc}") from None
    if db:
        found, where = stored_sets(open_database(db, readonly=True)), "the database (sources pseudo:NAME)"
    else:
        found, where = list_sets(data_dir), f"{Path(data_dir) / SETS_DIR}"
    if name not in found:
        raise RunError(f"--pseudo {name}: no pseudo-label set {name!r} in {where}; sets there: "
                       f"{', '.join(found) or 'none'} (make one with: avvp-studio pseudo-label --data DIR --method "
                       f"zero-shot --name {name}{' --db URL' if db else ''})")


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
    """The recipe of --model with the options given; with --resume (or --like), the stored config of RUN_DIR
    (or of the other run) with them."""
    given = {name: getattr(args, name) for name in _OVERRIDES if getattr(args, name) is not None}
    model_options = _model_options(args)
    task_options = dict(args.task_options or {})
    task_options.update({k: getattr(args, k) for k in ("cmrc", "cmrc_min_label_count") if getattr(args, k) is not None})
    like = getattr(args, "like", None)
    if like and args.resume:
        raise RunError("--like starts a new run from another run's config; --resume continues RUN_DIR's own")
    if like or (args.resume and present(Path(args.out) / "config.json")):
        source = Path(like or args.out)
        if not present(source / "config.json"):
            raise RunError(f"--like {source}: no training run there (config.json missing)")
        stored = read_run_config(source, TrainConfig)
        if args.model is not None and args.model != stored.model:
            raise RunDirError(f"{source} holds a {stored.model} run, not {args.model}")
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
    """Train as the arguments say; progress on `err`, the val and test tables on `out` (rank 0). With
    --events, `out` carries JSON lines instead (`inference.callbacks.JsonEvents`) and the tables go to
    `err`. With --db the run is a row of the store's runs table from start to end, and --predict
    stores its predictions of those splits (with probabilities) as `prediction:<name>`."""
    out, err = out or sys.stdout, err or sys.stderr
    events = JsonEvents(out) if args.events else None
    tables = err if events else out
    recorder: RunRecorder | None = None
    from inference.distributed import context

    main = context().is_main
    try:
        config = config_from_args(args)
        labels = load_labels(args.data, args.db, get_entry(config.model).model_cls.uses_pseudo_labels,
                             getattr(args, "pseudo", None))
        splits = parse_splits(args.predict)
        if splits and not args.db:
            raise RunError("--predict stores predictions in the database: give --db too")
        if args.db and main:
            recorder = RunRecorder(args, config)
        stop = threading.Event()
        callbacks = [PrintProgress(err)] + [c for c in (events, recorder) if c is not None] if main else []
        with _stop_on_interrupt(stop, err if main else None):
            result = train(config, AVVPTask(labels, args.data), args.out, callbacks=callbacks, stop_event=stop,
                           resume=args.resume, distributed=distributed)
            if main and recorder is not None and not result.stopped:
                recorder.finish(result, _predict_and_store(args, recorder, labels, splits, events, err, stop))
    except REFUSALS + (RunNameError,) as exc:
        return _refused(exc, err, events if main else None, recorder)
    except BaseException as exc:  # a crash (or a second Ctrl+C): the store says so, the traceback goes on
        if events is not None:
            events.flush()  # the last steps' lines, for the curves
        if recorder is not None:
            recorder.fail(f"{type(exc).__name__}: {exc}")
        raise
    if not main:
        return 130 if result.stopped else 0
    if result.stopped:
        if recorder is not None:
            recorder.stopped(result)
    else:
        print_scores(f"val (best epoch {result.best_epoch}, the selected checkpoint)", result.val, tables)
        print_scores("test", result.test, tables)
        tables.write(f"run: {Path(args.out).resolve()}\n")
    code = 130 if result.stopped else 0
    if events is not None:
        events.emit("done", status="stopped" if result.stopped else "finished", code=code)
    return code


def _refused(exc: Exception, err: IO[str], events: JsonEvents | None, recorder: "RunRecorder | None") -> int:
    err.write(f"error: {exc}\n")
    if recorder is not None:
        recorder.fail(str(exc))
    if events is not None:
        events.emit("error", message=str(exc))
        events.emit("done", status="failed", code=2)
    return 2


def parse_splits(text: str | None) -> list[str]:
    splits = [s for s in (text or "").split(",") if s]
    unknown = [s for s in splits if s not in ("train", "val", "test")]
    if unknown:
        raise RunError(f"--predict {text}: unknown split(s) {unknown}; expected a comma list of train, val, test")
    return list(dict.fromkeys(splits))


def run_name(args: argparse.Namespace) -> str:
    return args.name or re.sub(r"[^A-Za-z0-9._-]", "-", Path(args.out).resolve().name)


class RunRecorder(TrainCallback):
    """The run's row in the store (`annotation.runs`): running from the start, refreshed each epoch,
    finished / stopped / failed at the end with its numbers."""

    def __init__(self, args: argparse.Namespace, config: TrainConfig):
        self.engine = open_database(args.db)
        self.name = check_run_name(run_name(args))
        start_run(self.engine, self.name, config.model, config.task, config.to_dict(), str(Path(args.data).resolve()),
                  str(Path(args.out).resolve()), config.device, args.annotator or getpass.getuser())

    def on_train_start(self, info: dict) -> None:
        update_run(self.engine, self.name, device=str(info.get("device")))

    def on_epoch_end(self, epoch: int, metrics: dict, is_best: bool) -> None:
        update_run(self.engine, self.name)  # updated_at: still alive

    def finish(self, result, per_class: dict | None) -> None:
        finish_run(self.engine, self.name, "finished", best_epoch=result.best_epoch,
                   metrics={"val": result.val, "test": result.test, "per_class": per_class},
                   checkpoint=str(Path(result.run_dir).resolve() / "checkpoint.pt"))

    def stopped(self, result) -> None:
        finish_run(self.engine, self.name, "stopped", f"cancelled after epoch {result.epochs_done}; resume "
                   "continues it", best_epoch=result.best_epoch or None)

    def fail(self, message: str) -> None:
        try:
            finish_run(self.engine, self.name, "failed", message[:2000])
        except Exception:  # the store itself may be what failed; the error is reported anyway
            pass


def _predict_and_store(args: argparse.Namespace, recorder: "RunRecorder", labels: LabelSet, splits: list[str],
                       events: JsonEvents | None, err: IO[str], stop: threading.Event) -> dict | None:
    """Predict `splits` (and test, for the per-class F1 of the runs table) with the selected checkpoint,
    for the clips the run was trained and scored with (`labels`; prediction reads their inputs only);
    store `splits` as prediction:<run> with their probabilities. Returns the per-class F1 on test.
    A stop (Ctrl+C, the window's Cancel) ends it between splits: what was stored stays."""
    engine, name = recorder.engine, recorder.name
    per_class = None
    for split in dict.fromkeys([*splits, "test"]):
        if stop.is_set():
            err.write(f"predict: stopped before the {split} split; the splits before it are stored\n")
            break
        seg_a, seg_v, glob, names = predict(args.out, labels, args.data, split, args.device or "auto")
        if not names:
            continue
        pred_a, pred_v = binarize(seg_a, seg_v, glob)
        if split == "test":
            truth = truth_for(labels, labels.indices("test"))
            per_class = per_class_f1(pred_a, pred_v, *truth) if truth is not None else None
        if split in splits:
            store_predictions(engine, name, dict(zip(names, pred_a)), dict(zip(names, pred_v)),
                              {n: (a, v, g) for n, a, v, g in zip(names, seg_a, seg_v, glob)})
            err.write(f"predict: {len(names)} {split} clips stored as prediction:{name}\n")
            if events is not None:
                events.emit("predicted", split=split, clips=len(names), source=f"prediction:{name}")
    return per_class


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
    store_predictions(open_database(args.db, create=False), name, dict(zip(names, pred_a)), dict(zip(names, pred_v)),
                      {n: (a, v, g) for n, a, v, g in zip(names, *probs)})
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
