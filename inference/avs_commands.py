"""The torch side of `avvp-studio avs ...` (arguments and the other commands in `app.cmd_avs`): train, predict,
and the scoring of prediction files that `avs eval` and `avs predict` share."""
from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import IO

import cv2
import numpy as np
import platformdirs
import torch

from annotation.avs_store import REVIEWED, avs_clips, masks_of_source, store_mask_predictions, to_uint8
from annotation.avsbench import (
    AVSS_CLASSES, AVSClip, AVSData, class_mask_to_rgb, encode_png, image_size, read_avsbench, read_class_mask,
    read_truth,
)
from annotation.db import open_database
from annotation.errors import DataFileError
from annotation.files import child_path, present
from annotation.runs import RunNameError, check_run_name
from inference.callbacks import JsonEvents, PrintProgress
from inference.checkpoint import RunError, read_run_config
from inference.models import get_entry, model_names
from inference.commands import REFUSALS, RunRecorder, _refused, _stop_on_interrupt, parse_splits
from inference.train import RunDirError, train
from inference.train_config import TrainConfig


def cache_dir() -> Path:
    """Log-mel arrays read from .pkl/.wav files, kept as plain .npy (shared by every run of this user)."""
    return Path(platformdirs.user_cache_dir("avvp-studio")) / "log-mel"


# ---------------------------------------------------------------- eval

AVSS_EVAL_SIZE = 224  # the published AVSS test resizes every frame and mask to 224 x 224 (nearest for masks)


def read_prediction(path: Path, subset: str) -> tuple[np.ndarray, int]:
    """A predicted mask file: probabilities (v / 255) for S4/MS3, class indices for AVSS; and how many pixels
    had a colour outside the palette (AVSS; read as background)."""
    if not present(path):
        raise DataFileError(path, "missing predicted mask")
    if subset == "avss":
        return read_class_mask(path)
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise DataFileError(path, "not a readable 8-bit PNG")
    return mask.astype(np.float32) / 255.0, 0


def _at(mask: np.ndarray, size: int) -> np.ndarray:
    return mask if mask.shape == (size, size) else cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)


def evaluate_folder(data: AVSData, split: str, pred_dir: str | Path, group_videos: int = 1) -> dict:
    """The AVSBench numbers of the prediction files under PRED (the split's gt_masks layout) on the frames that
    have ground truth: S4/MS3 at the ground truth's size (224 x 224 in AVSBench; a prediction of another size is
    refused), AVSS with truth and predictions resized to 224 x 224 (nearest) as its published test does."""
    from inference.avs_metrics import binary_scores, color_scores

    clips = [c for c in data.split(split) if any(m is not None for m in c.masks)]
    if not clips:
        raise DataFileError(data.root, f"the {split} split has no clips with ground-truth masks")
    pred_root = Path(pred_dir)
    if not present(pred_root, "folder"):
        raise DataFileError(pred_root, "no such folder (the predicted masks, as avs predict --out writes them)")
    expected = [pred_root / c.relative_dir / c.mask_name(k) for c in clips for k, m in enumerate(c.masks)
                if m is not None]
    missing = [p for p in expected if not present(p)]
    if missing:
        hint = (f"; the split's files are one level down: --pred {pred_root / split}"
                if (pred_root / split / missing[0].relative_to(pred_root)).exists() else "")
        raise DataFileError(missing[0], f"missing predicted mask ({len(missing)} of the {len(expected)} masks of the "
                                        f"{split} split are missing){hint}")
    preds, truths, counts, unknown = [], [], [], 0
    for clip in clips:
        frames = [k for k, m in enumerate(clip.masks) if m is not None]
        for k in frames:
            path = pred_root / clip.relative_dir / clip.mask_name(k)
            pred, outside = read_prediction(path, data.subset)
            unknown += outside
            truth = read_truth(clip.masks[k], data.subset)[0]
            if data.subset == "avss":
                truth, pred = _at(truth, AVSS_EVAL_SIZE), _at(pred, AVSS_EVAL_SIZE)
            elif pred.shape != truth.shape:
                raise DataFileError(path, f"is {pred.shape[1]}x{pred.shape[0]}; its ground truth is "
                                          f"{truth.shape[1]}x{truth.shape[0]}")
            truths.append(truth)
            preds.append(pred)
        counts.append(len(frames))
    shapes = {t.shape for t in truths}
    if len(shapes) > 1:
        raise DataFileError(data.root, f"ground-truth masks of several sizes {sorted(shapes)}; S4/MS3 metrics are "
                                       "computed at one size (AVSBench's are all 224x224)")
    if data.subset != "avss":
        return {**binary_scores(np.stack(preds), np.stack(truths), counts, group_videos=group_videos),
                "size": list(truths[0].shape)}
    return {**color_scores(np.stack(preds), np.stack(truths), counts, group_videos=group_videos),
            "size": [AVSS_EVAL_SIZE, AVSS_EVAL_SIZE], "unknown_colour_pixels": unknown,
            "note": "real frames only: the published AVSS test also scores the model on the zero frames that pad "
                    "5-frame clips to 10 (avs train does), which have no prediction files"}


# ---------------------------------------------------------------- train

_OVERRIDES = ("epochs", "batch_size", "eval_batch_size", "lr", "weight_decay", "device", "seed", "num_workers")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    given = {k: getattr(args, k) for k in _OVERRIDES if getattr(args, k) is not None}
    model_options = dict(args.model_config or {})
    for option, value in (("size", args.config), ("backbone", args.backbone), ("image_size", args.image_size)):
        if value is not None:
            model_options[option] = value
    task_options = {k: str(Path(v).resolve()) for k, v in (("backbone_weights", args.backbone_weights),
                                                           ("vggish_weights", args.vggish_weights)) if v}
    if args.group_videos is not None:
        task_options["group_videos"] = args.group_videos
    task_options["subset"] = args.subset
    source = args.like or (args.out if args.resume and present(Path(args.out) / "config.json") else None)
    if args.like and args.resume:
        raise RunError("--like starts a new run from another run's config; --resume continues RUN_DIR's own")
    if source:
        if not present(Path(source) / "config.json"):
            raise RunError(f"--like {source}: no training run there (config.json missing)")
        stored = read_run_config(source, TrainConfig)
        if args.model is not None and args.model != stored.model:
            raise RunDirError(f"{source} holds a {stored.model} run, not {args.model}")
        _keep_the_model(stored, args, model_options, source)
        return TrainConfig.from_dict({**stored.to_dict(), **given,
                                      "model_config": {**stored.model_config, **model_options},
                                      "task_options": {**stored.task_options, **task_options}})
    avs_models = ", ".join(model_names("avs"))
    if args.model is None:
        raise RunError(f"--model is required (AVS models: {avs_models})")
    if args.model not in model_names("avs"):
        other = f" is an {get_entry(args.model).task.upper()} model" if args.model in model_names() else " is unknown"
        raise RunError(f"--model {args.model}{other}; the audio-visual segmentation models are {avs_models}")
    return TrainConfig.for_model(args.model, model_config=model_options, task_options=task_options,
                                 variant=args.subset, **given)


def _keep_the_model(stored: TrainConfig, args: argparse.Namespace, model_options: dict, source: str) -> None:
    """--like/--resume continue another run's model, whose config holds resolved widths: a different size,
    backbone or subset is refused (it needs a new run), and weight files given now bring back the freezes the
    code applies to pretrained backbones (dropped when that run had none)."""
    changed = [f"--{flag} {new} (it has {old})" for flag, new, old in (
        ("config", args.config, stored.model_config.get("size")),
        ("backbone", args.backbone, stored.model_config.get("backbone")),
        ("subset", args.subset, stored.task_options.get("subset"))) if new is not None and old is not None and new != old]
    if changed:
        raise RunError(f"{source} holds another model: {'; '.join(changed)}; train a new run (without --like or "
                       f"--resume) for that")
    recipe = get_entry(stored.model).recipe_for(args.subset).get("model_config", {})
    if args.backbone_weights and not stored.task_options.get("backbone_weights"):
        model_options.setdefault("visual_frozen_epochs", recipe.get("visual_frozen_epochs", 0))
    if args.vggish_weights and not stored.task_options.get("vggish_weights"):
        model_options.setdefault("freeze_audio_backbone", True)


def accepted_train_masks(db: str, data: AVSData) -> dict[str, dict[int, np.ndarray]]:
    """Predicted masks a person accepted on train frames without ground truth: name -> frame -> mask. Only
    train clips: val/test decisions never reach a model (they would leak human judgement into its scores)."""
    engine = open_database(db, readonly=True)
    train = {c.name: c for c in data.split("train")}
    records = [r for r in avs_clips(engine, data.subset, "train") if r.name in train]
    rows = masks_of_source(engine, REVIEWED, [r.id for r in records])
    out: dict[str, dict[int, np.ndarray]] = {}
    for record in records:
        clip = train[record.name]
        for frame, row in rows.get(record.id, {}).items():
            if row.status == "accepted" and frame < len(clip.masks) and clip.masks[frame] is None:
                out.setdefault(record.name, {})[frame] = row.array()
    return out


def run_train(args: argparse.Namespace, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    from inference.tasks.avs import AVSTask

    out, err = out or sys.stdout, err or sys.stderr
    events = JsonEvents(out) if args.events else None
    tables = err if events else out
    recorder = None
    try:
        config = config_from_args(args)
        data = read_avsbench(args.data, args.subset)
        splits = parse_splits(args.predict)
        if splits and not args.db:
            raise RunError("--predict stores predictions in the database: give --db too")
        extra = accepted_train_masks(args.db, data) if args.db else None
        if args.db:
            recorder = RunRecorder(args, config)
        stop = threading.Event()
        callbacks = [PrintProgress(err)] + [c for c in (events, recorder) if c is not None]
        task = AVSTask(data, cache_dir(), extra)
        with _stop_on_interrupt(stop, err):
            result = train(config, task, args.out, callbacks=callbacks, stop_event=stop, resume=args.resume)
            if recorder is not None and not result.stopped:
                if splits:
                    _predict_store(args, recorder.name, data, splits, stop, events, err)
                recorder.finish(result, None)
    except REFUSALS + (RunNameError,) as exc:
        return _refused(exc, err, events, recorder)
    except BaseException as exc:
        if events is not None:
            events.flush()
        if recorder is not None:
            recorder.fail(f"{type(exc).__name__}: {exc}")
        raise
    if result.stopped:
        if recorder is not None:
            recorder.stopped(result)
    else:
        for title, scores in ((f"val (best epoch {result.best_epoch}, the selected checkpoint)", result.val),
                              ("test", result.test)):
            tables.write(f"{title}\n{describe_scores(scores)}\n")
        tables.write(f"run: {Path(args.out).resolve()}\n")
    code = 130 if result.stopped else 0
    if events is not None:
        events.emit("done", status="stopped" if result.stopped else "finished", code=code)
    return code


def describe_scores(scores: dict | None) -> str:
    """One line of AVSBench numbers with what they depend on (F-score grouping, resolution), and the note."""
    if not scores:
        return "  (no ground truth for this split)"
    size = "x".join(map(str, scores["size"])) if "size" in scores else "?"
    line = (f"  mIoU {scores['miou']:.2f}  F-score {scores['fscore']:.2f}  ({scores['videos']} videos, "
            f"{scores['frames']} frames at {size}; F-score batches of {scores['group_videos']} video(s))")
    extra = [scores["note"]] if scores.get("note") else []
    if scores.get("unknown_colour_pixels"):
        extra.append(f"{scores['unknown_colour_pixels']} predicted pixel(s) had a colour outside the palette "
                     "(read as background)")
    return "\n".join([line, *(f"  note: {e}" for e in extra)])


def _predict_store(args: argparse.Namespace, name: str, data: AVSData, splits: list[str], stop: threading.Event,
                   events: JsonEvents | None, err: IO[str]) -> None:
    """The selected checkpoint's masks of `splits`, stored as prediction:<name> (a stop ends it between splits)."""
    from inference.predict import load_run
    from inference.train import resolve_device

    model, _ = load_run(args.out)
    device = resolve_device(args.device or "auto")
    engine = open_database(args.db)
    for split in splits:
        if stop.is_set():
            break
        masks = predict_masks(model, data.split(split), data.subset, device)
        store_mask_predictions(engine, name, data.subset, masks, mask_kind(data.subset))
        err.write(f"predict: {len(masks)} {split} clips stored as prediction:{name}\n")
        if events is not None:
            events.emit("predicted", split=split, clips=len(masks), source=f"prediction:{name}")


# ---------------------------------------------------------------- predict

def mask_kind(subset: str) -> str:
    """How a subset's predicted masks are stored: class indices (AVSS) or probabilities."""
    return "classes" if subset == "avss" else "probability"


def predict_masks(model: torch.nn.Module, clips: list[AVSClip], subset: str, device) -> dict[str, np.ndarray]:
    """name -> the real frames' predictions at the clip's frame size (probabilities, or AVSS classes)."""
    from inference.tasks.avs import AVSDataset, infer

    model.to(device)
    dataset = AVSDataset(clips, subset, int(model.config.image_size), False, cache_dir())
    return {c.name: _at_frame_size(c, p, subset) for c, p in zip(clips, infer(model, dataset, device, 8))}

def _at_frame_size(clip: AVSClip, pred: np.ndarray, subset: str) -> np.ndarray:
    """The real frames' predictions (T', H, W) resized to the clip's frame size (bilinear probabilities,
    nearest classes)."""
    height, width = image_size(clip.frames[0])
    frames = pred[: len(clip.frames)]
    if frames.shape[1:] == (height, width):
        return frames
    mode = cv2.INTER_NEAREST if subset == "avss" else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (width, height), interpolation=mode) for f in frames])


def write_prediction_files(out_dir: Path, clip: AVSClip, masks: np.ndarray, subset: str) -> int:
    folder = clip.folder_in(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for k, mask in enumerate(masks):
        image = class_mask_to_rgb(mask) if subset == "avss" else to_uint8(mask)
        child_path(folder, clip.mask_name(k)).write_bytes(encode_png(image))
    return len(masks)


def run_predict(args: argparse.Namespace, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    from inference.predict import load_run
    from inference.train import resolve_device

    out, err = out or sys.stdout, err or sys.stderr
    try:
        if not present(Path(args.run) / "config.json"):
            raise RunError(f"{args.run} holds no training run (config.json missing)")
        config = read_run_config(args.run, TrainConfig)
        if config.task != "avs":
            raise RunError(f"{args.run} is a {config.task} run, not an audio-visual segmentation run")
        model, _ = load_run(args.run)
        if (model.config.num_classes == AVSS_CLASSES) != (args.subset == "avss"):
            raise RunError(f"{args.run} was trained for {'AVSS' if model.config.num_classes == AVSS_CLASSES else 'S4/MS3'} "
                           f"masks, not {args.subset.upper()}")
        data = read_avsbench(args.data, args.subset)
        clips = data.split(args.split)
        if not clips:
            raise RunError(f"no {args.split} clips in {data.root}")
        masks = predict_masks(model, clips, args.subset, resolve_device(args.device))
        out_dir = Path(args.out)
        files = sum(write_prediction_files(out_dir, c, masks[c.name], args.subset) for c in clips)
        stored = None
        if args.db:
            stored = check_run_name(args.name or Path(args.run).resolve().name)
            store_mask_predictions(open_database(args.db), stored, args.subset, masks, mask_kind(args.subset))
    except REFUSALS + (RunNameError,) as exc:
        err.write(f"error: {exc}\n")
        return 2
    err.write(f"predict: {len(clips)} {args.split} clips, {files} masks -> {out_dir.resolve()}\n")
    if stored:
        err.write(f"predict: stored as mask source 'prediction:{stored}'\n")
    if any(m is not None for c in clips for m in c.masks):
        scores = evaluate_folder(data, args.split, out_dir, int(config.task_options.get("group_videos", 1)))
        out.write(f"{args.split} (from the written files)\n{describe_scores(scores)}\n")
    return 0

