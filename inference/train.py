"""The training engine: train split -> best checkpoint on the task's val selection -> test numbers.

Task-agnostic: the loop, callbacks, checkpoints, resume, cancellation, DDP and
devices live here; data, inputs checks, metrics and the selection number come from
a task (`inference.tasks`; AVVP: `inference.tasks.avvp.AVVPTask`), the loss from
the model. `train(config, task, run_dir)` writes into RUN_DIR:
    config.json    the TrainConfig (model config included) and what data it saw
    train.log      one text line per event (notes, epochs, losses, val scores, resume, stop)
    checkpoint.pt  the best model: {"model", "model_config", "task", "state_dict", "epoch", "val"}
    last.pt        everything to resume: model, optimizer, scheduler, epoch, best score, history, RNG
    metrics.json   {"val": metrics of the best epoch, "test": metrics, "best_epoch": n, "selection": ...}
Checkpoints hold only tensors, numbers, strings, lists and dicts and are read
with `torch.load(..., weights_only=True)`: loading never unpickles objects.
The files of one epoch are saved as one set (`inference.checkpoint.save_set`), and
the folder is locked while a run writes it: a second run into it is refused.
"""
from __future__ import annotations

import json
import math
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from annotation.errors import DataFileError
from annotation.files import FolderBusyError, folder_lock, present
from inference import distributed as ddp
from inference.callbacks import TrainCallback
from inference.checkpoint import FORMAT, LAST_KEYS, RunError, load_checkpoint, save_set
from inference.devices import check_device_name
from inference.tasks import Task
from inference.train_config import TrainConfig

# options that may differ when resuming; any other difference is refused
RESUMABLE_CHANGES = {"epochs", "device", "num_workers", "eval_batch_size"}


class RunDirError(RunError):
    """The run folder cannot be used as asked (holds another run, or nothing to resume)."""


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    try:
        check_device_name(name)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"device {name!r} asked for, but torch sees no CUDA device")
    if name == "cuda":
        return torch.device("cuda", local_rank)
    device = torch.device(name)
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        raise RunError(f"device {name!r} asked for, but torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int
    val: dict | None  # metrics of the best epoch on val (None without val truth)
    test: dict | None  # metrics of the best checkpoint on test (None if stopped or no truth)
    epochs_done: int
    stopped: bool
    history: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------- the run

class _Log:
    def __init__(self, path: Path | None):
        self.path = path

    def __call__(self, message: str) -> None:
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


def _optimizer(config: TrainConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=config.lr, weight_decay=config.weight_decay, betas=config.betas)


def _scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer):
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.lr_min)
    if config.scheduler == "warmup_cosine":  # VALOR: linear warm-up, then cosine to lr_min (epoch e from 1)
        warm, total, floor = config.warmup_epochs, config.epochs, config.lr_min / config.lr

        def factor(k: int) -> float:
            e = k + 1
            if e < warm:
                return e / warm
            span = max(total - warm, 1)
            return floor + 0.5 * (1 - floor) * (1 + math.cos(min(e - warm, span) / span * math.pi))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _check_resumable(stored: dict[str, Any], config: TrainConfig) -> None:
    stored = json.loads(json.dumps(TrainConfig.from_dict(stored).to_dict()))  # JSON turns tuples into lists
    current = json.loads(json.dumps(config.to_dict()))
    changed = []
    for key in sorted(current):
        if key in RESUMABLE_CHANGES or stored.get(key) == current[key]:
            continue
        if isinstance(current[key], dict) and isinstance(stored.get(key), dict):  # name the option inside
            inner = sorted(k for k in set(current[key]) | set(stored[key]) if current[key].get(k) != stored[key].get(k))
            changed += [f"{key}.{k} ({stored[key].get(k)!r} -> {current[key].get(k)!r})" for k in inner]
        else:
            changed.append(f"{key} ({stored.get(key)!r} -> {current[key]!r})")
    if stored.get("epochs") != current["epochs"] and current["scheduler"] in ("cosine", "warmup_cosine"):
        changed.append(f"epochs ({stored.get('epochs')} -> {current['epochs']}; a {current['scheduler']} "
                       "schedule is laid out over its epoch count, so changing it would jump the learning rate)")
    if changed:
        raise RunDirError(f"cannot resume with a different {'; '.join(changed)}; use a new run folder")


class _Run:
    """One call of `train`: the objects of the run and the steps of the loop."""

    def __init__(self, config: TrainConfig, task: Task, run_dir: Path, callbacks: Sequence[TrainCallback],
                 stop_event: threading.Event | None, distributed: bool):
        self.config, self.task, self.run_dir = config, task, run_dir
        self.callbacks, self.stop_event, self.distributed = list(callbacks), stop_event, distributed
        self.ctx = ddp.context()
        self.main = self.ctx.is_main
        self.device = resolve_device(config.device, self.ctx.local_rank)
        self.last_path, self.best_path = run_dir / "last.pt", run_dir / "checkpoint.pt"
        self.log = _Log(run_dir / "train.log" if self.main else None)

        torch.manual_seed(config.seed)
        self.core = task.build_model(config)
        self.core.to(self.device)
        config.model_config = self.core.config.to_dict()  # the full model config goes into every file
        self.model = self.core
        if distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.core, device_ids=ids)
        began = time.monotonic()  # refusals and every input file the run reads, before the first epoch
        self.notes = task.prepare(self.core)
        if config.scheduler == "warmup_cosine" and config.warmup_epochs >= config.epochs:
            self.notes.append(f"warmup_epochs {config.warmup_epochs} >= epochs {config.epochs}: the whole run is "
                              f"warm-up (the learning rate never reaches {config.lr:g})")
        for note in self.notes:
            self.log(note)
        self.log(f"prepared in {time.monotonic() - began:.1f}s")
        self.train_set = task.train_dataset(config)
        self.sampler = DistributedSampler(self.train_set, num_replicas=self.ctx.world_size, rank=self.ctx.rank,
                                          shuffle=True, seed=config.seed)
        self.loader = DataLoader(self.train_set, batch_size=config.batch_size, sampler=self.sampler,
                                 num_workers=config.num_workers, collate_fn=task.collate,
                                 pin_memory=self.device.type == "cuda", persistent_workers=config.num_workers > 0)
        self.optimizer = _optimizer(config, self.core.parameters())
        self.scheduler = _scheduler(config, self.optimizer)
        self.start_epoch, self.best_score, self.best_epoch, self.history = 1, -math.inf, 0, []

    # ------------------------------------------------------------ state

    def restore(self) -> bool:
        """Load last.pt if there is one; True when the run continues from it."""
        if not present(self.last_path):
            return False
        state = load_checkpoint(self.last_path, LAST_KEYS)
        _check_resumable(state["train_config"], self.config)
        try:
            self.core.load_state_dict(state["state_dict"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.start_epoch, self.best_epoch = state["epoch"] + 1, state["best_epoch"]
            self.history = list(state["history"])
            self.best_score = -math.inf if state.get("best_score") is None else float(state["best_score"])
            _set_rng_state(state["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise RunError(f"{self.last_path}: cannot resume from it ({reason}); expected the last.pt of "
                           "this run") from None
        self.log(f"resumed from last.pt after epoch {state['epoch']}")
        return True

    def last_state(self, epoch: int) -> dict[str, Any]:
        return {"format": FORMAT, "model": self.config.model, "model_config": self.config.model_config,
                "train_config": self.config.to_dict(), "state_dict": self.core.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "epoch": epoch, "best_score": None if self.best_score == -math.inf else self.best_score,
                "best_epoch": self.best_epoch, "history": self.history, "rng": _rng_state()}

    def best_state(self, epoch: int, val: dict | None) -> dict[str, Any]:
        return {"format": FORMAT, "model": self.config.model, "model_config": self.config.model_config,
                "task": self.task.name, "state_dict": self.core.state_dict(), "epoch": epoch, "val": val}

    # ------------------------------------------------------------ loop pieces

    def stop_requested(self) -> bool:
        """Any rank's stop event or rank 0's callbacks; every rank gets the same answer."""
        flag = (self.stop_event is not None and self.stop_event.is_set()) or (
            self.main and any(cb.should_stop() for cb in self.callbacks))
        if self.distributed:
            flag = bool(ddp.sum_across(torch.tensor([float(flag)], device=self.device)).item() > 0)
        return flag

    def train_epoch(self, epoch: int, clock: dict[str, float]) -> tuple[dict[str, float], bool]:
        """One pass over the train split; (mean loss terms, stopped)."""
        self.sampler.set_epoch(epoch)
        if hasattr(self.core, "set_epoch"):  # models with an epoch schedule of their own (AVS-Mamba's backbone freeze)
            self.core.set_epoch(epoch)
        self.model.train()
        steps, sums, seen = len(self.loader), {}, 0
        began = time.monotonic()
        for step, batch in enumerate(self.loader, 1):
            batch = to_device(batch, self.device)
            outputs = self.model(batch)
            loss, parts = self.core.loss(outputs, batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.core.parameters(), self.config.grad_clip)
            self.optimizer.step()
            loss_value = float(loss.detach())
            if self.distributed:  # mean loss over ranks for the log
                loss_value = float(ddp.sum_across(loss.detach().reshape(1))[0]) / self.ctx.world_size
            n = len(next(iter(batch.values())))
            seen += n
            for key, value in {"total": loss_value, **parts}.items():
                sums[key] = sums.get(key, 0.0) + value * n
            clock["steps"] += 1
            elapsed = clock["seconds"] + time.monotonic() - began
            eta = elapsed / clock["steps"] * (clock["total"] - clock["steps"])
            if self.main:
                for cb in self.callbacks:
                    cb.on_step(epoch, step, steps, loss_value, eta)
            if self.stop_requested():
                self.log(f"stopped during epoch {epoch} at step {step}/{steps}; last.pt holds epoch {epoch - 1}")
                return {}, True
        clock["seconds"] += time.monotonic() - began
        return {k: v / max(seen, 1) for k, v in sums.items()}, False

    def evaluate(self, split: str) -> dict | None:
        return self.task.evaluate(self.core, split, self.device, self.config.eval_batch_size)

    def end_epoch(self, epoch: int, means: dict[str, float], lr: float, seconds: float) -> None:
        """Rank 0: val scores, best checkpoint, last.pt, log line, callbacks."""
        val = self.evaluate("val")
        current = self.task.selection_score(val) if val is not None else math.inf  # no truth: keep the latest
        is_best = self.best_epoch == 0 or current > self.best_score or val is None
        files = {}
        if is_best:
            self.best_score, self.best_epoch = current, epoch
            files[self.best_path] = self.best_state(epoch, val)
        val_text = f"val {self.task.describe(val)}" if val else "no val truth"
        record = {"epoch": epoch, "train_loss": means.pop("total", 0.0), "parts": means, "lr": lr,
                  "seconds": seconds, "val": val, "val_text": val_text}
        self.history.append(record)
        files[self.last_path] = self.last_state(epoch)
        save_set(files, f"the checkpoints of epoch {epoch} (last.pt holds epoch {epoch - 1}; --resume continues)")
        self.log(f"epoch {epoch}/{self.config.epochs} loss {record['train_loss']:.5f} lr {lr:.3g} "
                 f"{val_text}{' best' if is_best else ''}")
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, record, is_best)

    def finish(self, result: TrainResult) -> None:
        """Rank 0: the best checkpoint on test, metrics.json."""
        best = load_checkpoint(self.best_path)
        self.core.load_state_dict(best["state_dict"])
        result.val, result.test = best["val"], self.evaluate("test")
        metrics = {"val": result.val, "test": result.test, "best_epoch": result.best_epoch,
                   "epochs": result.epochs_done, "selection": self.task.selection, "history": self.history}
        if self.distributed:
            metrics["distributed"] = {"world_size": self.ctx.world_size, "parameters_identical": self.consistent}
            self.log(f"distributed: {self.ctx.world_size} ranks, parameters identical: {self.consistent}")
        save_set({self.run_dir / "metrics.json": metrics}, "metrics.json")
        test_text = f"test {self.task.describe(result.test)}" if result.test else "no test truth"
        self.log(f"done: best epoch {result.best_epoch}, {test_text}")

    # ------------------------------------------------------------ the whole run

    def run(self, resume: bool) -> TrainResult:
        config = self.config
        resumed = self.restore() if resume else False
        info = {"model": config.model, "run_dir": str(self.run_dir), "device": str(self.device),
                "epochs": config.epochs, "start_epoch": self.start_epoch, "steps_per_epoch": len(self.loader),
                "world_size": self.ctx.world_size, "task": self.task.name, "selection": self.task.selection,
                "clips": {"train": len(self.train_set), **self.task.split_sizes()}, "notes": self.notes,
                "parameters": sum(p.numel() for p in self.core.parameters())}
        if self.main:
            files = {self.run_dir / "config.json": {"format": FORMAT, "train": config.to_dict(), "data": info}}
            if not resumed:
                files[self.last_path] = self.last_state(0)  # a stop before the first epoch ends can resume too
            save_set(files, "config.json and last.pt")
            if not resumed:
                self.log(f"start: {json.dumps(config.to_dict())}")
            for cb in self.callbacks:
                cb.on_train_start(info)

        remaining = max(config.epochs - self.start_epoch + 1, 0)
        clock = {"steps": 0, "seconds": 0.0, "total": max(remaining * len(self.loader), 1)}
        stopped, epochs_done = False, self.start_epoch - 1
        for epoch in range(self.start_epoch, config.epochs + 1):
            if self.stop_requested():
                self.log(f"stopped before epoch {epoch}")
                stopped = True
                break
            began = time.monotonic()
            lr = self.optimizer.param_groups[0]["lr"]
            means, stopped = self.train_epoch(epoch, clock)
            if stopped:
                break
            self.scheduler.step()
            if self.main:
                self.end_epoch(epoch, means, lr, time.monotonic() - began)
            epochs_done = epoch
            if self.distributed:
                ddp.barrier()

        result = TrainResult(self.run_dir, self.best_epoch, None, None, epochs_done, stopped, self.history)
        self.consistent = ddp.parameters_identical(self.core) if self.distributed else True
        if self.main:
            if not stopped:
                self.finish(result)
            for cb in self.callbacks:
                cb.on_train_end(result)
        if self.distributed:
            ddp.barrier()
        return result


def train(
    config: TrainConfig,
    task: Task,
    out_dir: str | Path,
    callbacks: Sequence[TrainCallback] = (),
    stop_event: threading.Event | None = None,
    resume: bool = False,
    distributed: bool = False,
) -> TrainResult:
    """Train `config.model` on `task`'s train split; see the module docstring for what is written.

    `resume=True` continues from RUN_DIR/last.pt (a fresh start if there is none);
    a stop (a callback's `should_stop()` or `stop_event`) ends the run between steps
    and leaves last.pt at the last finished epoch. `distributed=True` needs an
    initialised torch.distributed process group (see `inference.distributed`).
    Note: `config.model_config` is completed with the model's defaults.
    """
    config.validate()
    if config.task != task.name:
        raise RunError(f"the run is a {config.task} run, but the data is for the {task.name} task")
    if distributed and not ddp.is_initialized():
        raise RuntimeError("distributed=True needs torch.distributed initialised (inference.distributed.init_from_env)")
    run_dir = Path(out_dir)
    with ExitStack() as held:
        problem = ""
        if ddp.context().is_main:  # rank 0 writes the folder and holds its lock for the whole run
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
                held.enter_context(folder_lock(run_dir, "training run"))
                if not resume and (present(run_dir / "last.pt") or present(run_dir / "checkpoint.pt")):
                    problem = f"{run_dir} already holds a training run; resume it or choose another folder"
            except FolderBusyError as exc:
                problem = str(exc)
            except OSError as exc:
                problem = f"{run_dir}: cannot use it as the run folder: {exc.strerror or exc}"
            except DataFileError as exc:  # a checkpoint entry that exists but cannot be read
                problem = str(exc)
        if distributed:  # every rank learns of rank 0's refusal (no rank may wait for the others)
            device = resolve_device(config.device, ddp.context().local_rank)
            if ddp.sum_across(torch.tensor([float(bool(problem))], device=device)).item() and not problem:
                problem = "rank 0 refused the run folder"
        if problem:
            raise RunDirError(problem)
        try:
            return _Run(config, task, run_dir, callbacks, stop_event, distributed).run(resume)
        except OSError as exc:  # the log, a DataLoader pipe, a vanished folder: one line, not a traceback
            where = f" ({exc.filename})" if exc.filename else ""
            raise RunError(f"{run_dir}: training stopped: {exc.strerror or exc}{where}; "
                           "last.pt holds the last finished epoch (--resume continues)") from None
