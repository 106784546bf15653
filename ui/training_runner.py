"""Long work from the window in a separate process: `avvp-studio train ... --events` (or torchrun for
every GPU), `avvp-studio avs train ... --events` for audio-visual segmentation, `avvp-studio pseudo-label
... --events` (ui/pseudo_dialog.py); its JSON-lines events read as they come, its stderr kept for when it
fails. One runner (`ProcessRunner`) serves every such command: a request only says its command line
(`CommandRequest.argv`) and how long a cancel may take.

The GUI process never imports torch for this and never does the work: a crash, a CUDA out-of-memory
or a kill of the process leaves the window as it was, and the window shows why with the tail of
the log. Cancel sends SIGINT, which the command turns into a clean stop (training: after the
current step, last.pt stays resumable; pseudo-labels: nothing half-written, nothing stored); a
process still there after the grace (CANCEL_GRACE_S, TORCHRUN_GRACE_S for torchrun) gets SIGTERM,
then SIGKILL.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal
from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

CANCEL_GRACE_S = 10.0
TORCHRUN_GRACE_S = 40.0  # torchrun waits up to 30 s for its workers after a signal
KILL_AFTER_TERM_S = 5.0
READ_BUDGET_S = 0.005  # about the longest the GUI thread spends on events at one go
EVENTS_PER_SIGNAL = 64
TRAINING_NICENESS = 10  # the worker process's nice value (Unix): training and pseudo-labelling alike
LOG_TAIL_LINES = 60


class CommandRequest:
    """What a `ProcessRunner` starts. Subclasses are dataclasses with at least `name` and `db` (a database
    URL or SQLite path) and say their command line in `argv`; the password of a server URL never goes on it."""

    what = "process"  # in messages: "could not start the <what> process"
    name: str
    db: str

    def argv(self, python: str = sys.executable) -> list[str]:
        raise NotImplementedError

    def cancel_grace_s(self) -> float:
        """How long after the SIGINT of a cancel the process may take to stop before it is terminated."""
        return CANCEL_GRACE_S

    def without_password(self) -> tuple[CommandRequest, str | None]:
        """(this request with the database URL's password taken out, the password): a password in a
        command line is readable by every local user (/proc/PID/cmdline) and would be echoed in the
        log; the runner hands it to the process as PGPASSWORD, which libpq reads."""
        try:
            url = make_url(self.db)
        except (ArgumentError, ValueError):  # a plain SQLite path
            return self, None
        if not url.password:
            return self, None
        bare = URL.create(url.drivername, url.username, None, url.host, url.port, url.database, url.query)
        return dataclasses.replace(self, db=bare.render_as_string(hide_password=False)), str(url.password)


@dataclass
class TrainRequest(CommandRequest):
    """What the panel asks for; `argv` is the command line it becomes."""

    task = "avvp"  # not a field: the kind of run (AVSTrainRequest: "avs")
    what = "training"

    data: str
    db: str
    out: str
    name: str
    model: str | None = None  # None with resume: the stored run's
    feature_set: str | None = None
    epochs: int | None = None
    seed: int | None = None
    cmrc: int | None = None
    text_audio: str | None = None
    text_visual: str | None = None
    random_text: bool = False
    device: str = "cpu"  # "cpu", "cuda:N", or "all" (every GPU, torchrun)
    gpus: int = 0  # with device "all"
    predict: tuple[str, ...] = ("val", "test")
    annotator: str | None = None
    resume: bool = False
    extra: list[str] = field(default_factory=list)  # more train options, as on the command line

    def argv(self, python: str = sys.executable) -> list[str]:
        args = ["train", "--data", self.data, "--db", self.db, "--out", self.out, "--name", self.name, "--events"]
        for flag, value in (("--model", self.model), ("--feature-set", self.feature_set), ("--epochs", self.epochs),
                            ("--seed", self.seed), ("--cmrc", self.cmrc), ("--text-audio", self.text_audio),
                            ("--text-visual", self.text_visual), ("--annotator", self.annotator)):
            if value is not None:
                args += [flag, str(value)]
        if self.random_text:
            args.append("--random-text")
        if self.predict:
            args += ["--predict", ",".join(self.predict)]
        if self.resume:
            args.append("--resume")
        args += self.extra
        if self.device == "all":  # one process per GPU; rank 0 speaks the events
            return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={max(self.gpus, 1)}",
                    "-m", "inference.train_ddp", *args[1:]]
        return [python, "-m", "app.main", *args, "--device", self.device]

    def cancel_grace_s(self) -> float:
        # torchrun gives its workers 30 s to stop once told; they must not be orphaned on the GPUs
        return TORCHRUN_GRACE_S if self.device == "all" else CANCEL_GRACE_S


@dataclass
class AVSTrainRequest(TrainRequest):
    """An audio-visual segmentation run: `avvp-studio avs train --data ROOT --subset S ...`. One device (the
    command has no torchrun mode); the fields of TrainRequest that only parsing reads (features, CMRC, caption
    embeddings) are not used."""

    task = "avs"

    subset: str = "s4"  # s4 | ms3 | avss
    size: str | None = None  # --config tiny|full (None: the recipe's)
    backbone: str | None = None  # resnet50 | pvt_v2_b5
    backbone_weights: str | None = None  # local checkpoint files
    vggish_weights: str | None = None
    image_size: int | None = None
    batch_size: int | None = None
    lr: float | None = None

    def argv(self, python: str = sys.executable) -> list[str]:
        if self.device == "all":
            raise ValueError("segmentation trains on one device (avs train has no torchrun mode): choose the CPU "
                             "or one GPU")
        args = ["avs", "train", "--data", self.data, "--subset", self.subset, "--db", self.db, "--out", self.out,
                "--name", self.name, "--events"]
        for flag, value in (("--model", self.model), ("--config", self.size), ("--backbone", self.backbone),
                            ("--backbone-weights", self.backbone_weights), ("--vggish-weights", self.vggish_weights),
                            ("--image-size", self.image_size), ("--epochs", self.epochs),
                            ("--batch-size", self.batch_size), ("--lr", self.lr), ("--seed", self.seed),
                            ("--annotator", self.annotator)):
            if value is not None:
                args += [flag, str(value)]
        if self.predict:
            args += ["--predict", ",".join(self.predict)]
        if self.resume:
            args.append("--resume")
        args += self.extra
        return [python, "-m", "app.main", *args, "--device", self.device]


class ProcessRunner(QObject):
    """One process at a time (a training run, a pseudo-label generation). Signals: `events` (the JSON events
    read in one go, a list of dicts), `log` (each stderr line), `finished` (status: finished | stopped |
    failed | crashed, exit code, the log's tail). The status is the "done" event's (finished when it names
    none), else stopped after a cancel, failed after an "error" event, crashed when the process ended
    otherwise with a non-zero code. `announced`: whether the process said its own verdict (a "done" event);
    when it did not (killed, crashed), the runs table may still say "running" and the panel fixes it."""

    events = Signal(list)  # the events read in one go (dicts, in order): one signal, not one per step
    log = Signal(str)
    started = Signal()
    finished = Signal(str, int, str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.process: QProcess | None = None
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._out = self._err = b""
        self._status: str | None = None  # from the "done" event
        self._said_error = False  # an "error" event came
        self._pending: deque[str] = deque()  # stdout lines read, not yet handled
        self._drain_scheduled = False
        self._exit: tuple[int, QProcess.ExitStatus] | None = None  # the process ended, its events still read
        self._cancelled = False
        self._grace_s = CANCEL_GRACE_S
        self._terminated = False
        self.announced = False
        self._what = "process"  # the request's `what`, for messages
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill)

    def running(self) -> bool:
        """True from start until `finished` is emitted (also while the last events are still being read)."""
        return self._exit is not None or (self.process is not None
                                          and self.process.state() != QProcess.ProcessState.NotRunning)

    def start(self, request: CommandRequest, cwd: str | Path | None = None) -> None:
        if self.running():
            raise RuntimeError(f"a {self._what} process is already going")
        self.tail.clear()
        self._pending.clear()
        self._out = self._err = b""
        self._status, self._cancelled, self.announced, self._terminated = None, False, False, False
        self._said_error = False
        self._what = request.what
        self._grace_s = request.cancel_grace_s()
        request, password = request.without_password()
        argv = request.argv()  # a request it cannot become (ValueError) leaves no process behind
        process = self.process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        if password is not None:
            env.insert("PGPASSWORD", password)
        env.insert("PYTHONUNBUFFERED", "1")
        root = str(Path(__file__).resolve().parents[1])  # the package, also when it is not installed
        env.insert("PYTHONPATH", os.pathsep.join(p for p in (root, env.value("PYTHONPATH")) if p))
        process.setProcessEnvironment(env)
        if cwd is not None:
            process.setWorkingDirectory(str(cwd))
        process.readyReadStandardOutput.connect(self._read_out)
        process.readyReadStandardError.connect(self._read_err)
        process.finished.connect(self._finished)
        process.errorOccurred.connect(self._error)
        process.started.connect(self._lower_priority)
        self.tail.append("$ " + " ".join(argv))
        process.start(argv[0], argv[1:])
        self.started.emit()

    def _lower_priority(self) -> None:
        """The worker process yields the CPU to the window: on a small machine its threads would
        otherwise take every core and the annotator's clicks would wait. Set as soon as the process
        exists, before torch starts its worker threads (Linux niceness is per thread, inherited)."""
        pid = self.process.processId() if self.process is not None else 0
        if pid and hasattr(os, "setpriority"):
            try:
                os.setpriority(os.PRIO_PROCESS, pid, TRAINING_NICENESS)
            except OSError:  # gone already, or not allowed: it simply runs at normal priority
                pass

    def cancel(self) -> None:
        """Stop cleanly (one SIGINT: the command's clean stop, training's after the current step; a second
        would abort it, so a second cancel does nothing); terminated, then killed, if it lingers."""
        if not self.running() or self._cancelled or self._exit is not None:
            return
        self._cancelled = True
        pid = self.process.processId()
        if pid:
            os.kill(pid, signal.SIGINT)
        self._kill_timer.start(int(self._grace_s * 1000))

    def stop_now(self) -> None:
        """For a window that is closing: the clean stop, waited for (the event loop is not coming back),
        then SIGTERM and SIGKILL as `cancel` would do on its timers."""
        process = self.process
        if process is None:
            return
        self.cancel()
        if not process.waitForFinished(int(self._grace_s * 1000)):
            process.terminate()
            if not process.waitForFinished(int(KILL_AFTER_TERM_S * 1000)):
                process.kill()
                process.waitForFinished(2000)
        while self._exit is not None:  # `finished` came inside the wait: read the rest and say the verdict now
            self._drain()

    def _kill(self) -> None:
        """SIGTERM first (torchrun passes it on to its workers), SIGKILL if even that is not enough."""
        if self.process is None or self.process.state() == QProcess.ProcessState.NotRunning:
            return
        if not self._terminated:
            self._terminated = True
            self.tail.append(f"(still running {self._grace_s:g} s after cancel: terminated)")
            self.process.terminate()
            self._kill_timer.start(int(KILL_AFTER_TERM_S * 1000))
        else:
            self.tail.append("(still running after SIGTERM: killed)")
            self.process.kill()

    def _lines(self, buffer: bytes, chunk: bytes) -> tuple[list[str], bytes]:
        buffer += chunk
        *complete, rest = buffer.split(b"\n")
        return [line.decode("utf-8", "replace") for line in complete], rest

    def _read_out(self) -> None:
        lines, self._out = self._lines(self._out, bytes(self.process.readAllStandardOutput()))
        self._pending.extend(lines)
        if not self._drain_scheduled:  # else the scheduled drain takes them, after other events had their turn
            self._drain()

    def _drain(self) -> None:
        """Handle the events read so far for about READ_BUDGET_S, then let the GUI breathe (the rest on a
        timer): a process that floods its pipe never holds the event loop for long; the verdict comes
        after the last event."""
        deadline = time.perf_counter() + READ_BUDGET_S
        while self._pending:
            batch = self._parse(EVENTS_PER_SIGNAL)
            if batch:  # handled here, so that the budget covers the panel's work too
                self.events.emit(batch)
            if self._pending and time.perf_counter() > deadline:  # at least one slice per turn: progress
                if not self._drain_scheduled:
                    self._drain_scheduled = True
                    QTimer.singleShot(1, self._scheduled_drain)  # a timer: input and paints go first
                return
        if self._exit is not None:
            self._conclude()

    def _parse(self, count: int) -> list[dict]:
        """Up to `count` lines of the backlog as events; other lines go to the log."""
        batch: list[dict] = []
        while self._pending and len(batch) < count:
            line = self._pending.popleft()
            try:
                event = json.loads(line)
            except json.JSONDecodeError:  # not ours (a library printing): keep it with the log
                self._keep(line)
                continue
            if isinstance(event, dict) and "event" in event:
                if event["event"] == "done":
                    self._status = event.get("status") or "finished"
                elif event["event"] == "error":
                    self._said_error = True
                    self._keep("error: " + str(event.get("message")))
                batch.append(event)
        return batch

    def _scheduled_drain(self) -> None:
        self._drain_scheduled = False
        self._drain()

    def _read_err(self) -> None:
        lines, self._err = self._lines(self._err, bytes(self.process.readAllStandardError()))
        for line in lines:
            self._keep(line)

    def _keep(self, line: str) -> None:
        self.tail.append(line)
        self.log.emit(line)

    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._keep(f"could not start the {self._what} process: {self.process.errorString()}")
            self._finish("crashed", -1)

    def _finished(self, code: int, exit_status: QProcess.ExitStatus) -> None:
        """The process is gone; the verdict follows its last event (`_drain` calls `_conclude`)."""
        self._read_err()
        if self._err:  # a last line without its newline
            self._keep(self._err.decode("utf-8", "replace"))
        lines, rest = self._lines(self._out, bytes(self.process.readAllStandardOutput()))
        self._pending.extend(lines + ([rest.decode("utf-8", "replace")] if rest else []))
        self._out = self._err = b""
        self._exit = (code, exit_status)
        self._drain()

    def _conclude(self) -> None:
        code, exit_status = self._exit
        self._exit = None
        self.announced = self._status is not None
        if self._status is not None:
            status = self._status
        elif self._cancelled:
            status = "stopped"
        elif self._said_error:
            status = "failed"  # it said why (kept in the tail) and ended without a verdict
        elif exit_status == QProcess.ExitStatus.CrashExit or code != 0:
            status = "crashed"  # no "done": killed, out of memory, an exception
        else:
            status = "finished"
        self._finish(status, code)

    def _finish(self, status: str, code: int) -> None:
        self._kill_timer.stop()
        if self.process is not None:
            self.process.deleteLater()  # one QProcess per run, not one more per run for the window's life
            self.process = None
        self.finished.emit(status, code, "\n".join(self.tail))


TrainingRunner = ProcessRunner  # the training panel's name for it
