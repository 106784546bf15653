"""The training panel: retrain a parser on this database's labels while annotating, and watch it.

What to train (model family, feature set, caption embeddings, epochs, CMRC, seed, device, the
splits to predict afterwards) becomes one `avvp-studio train --db ... --events` process
(`ui.training_runner`); its events feed the curves (training loss per step, the ten val
numbers per epoch) and the status line (epoch, ETA, device, clips/s). Labels are the
database's best (manual where edited, else pseudo; out-of-taxonomy respected); features come
from the project's feature folder, remembered per database. When the run ends it has stored
its predictions, and `run_finished` tells the window to show them.
"""
from __future__ import annotations

import json
import re
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QProcess, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDockWidget, QFileDialog, QFormLayout, QFrame, QHBoxLayout, QLabel, QLineEdit,
    QPlainTextEdit, QPushButton, QScrollArea, QSpinBox, QToolButton, QVBoxLayout, QWidget,
)
from sqlalchemy import Engine

from annotation.files import present
from annotation.runs import RunRecord, check_run_name, finish_run, get_run, list_runs
from inference.callbacks import format_duration
from inference.cli_args import FEATURE_SET_NAMES, MODEL_NAMES
from inference.metrics import KEYS, LEVELS, SHORT_TITLES
from ui.training_runner import TrainingRunner, TrainRequest

READS_PRIORS = ("mug", "link")  # PLSIM: priors and caption embeddings
PRIOR_DIRS = ("CLAP/segment_prior_labels", "CLIP/segment_prior_labels")
REDRAW_MS = 100  # curves are redrawn at most this often, however fast events come
CURVE_COLOURS = ("#3d8bfd", "#f28e2b", "#59a14f", "#e15759", "#b07aa1")
_DEVICES: list[tuple[str, str]] = []  # found once per process


DETECT_DEVICES = """
import json, torch
choices = [["CPU", "cpu"]]
if torch.cuda.is_available():
    count = torch.cuda.device_count()
    choices += [[f"cuda:{i} · {torch.cuda.get_device_name(i)}", f"cuda:{i}"] for i in range(count)]
    if count > 1:
        choices.append([f"all {count} GPUs (torchrun DDP)", f"all:{count}"])
print(json.dumps(choices))
"""  # run in a child process: importing torch in this one would hold the GUI thread (the GIL) for 0.4 s


class TrainingPanel(QDockWidget):
    run_finished = Signal(str, str)  # status, source 'prediction:<name>' ('' when nothing was stored)

    def __init__(self, runs_root: Path, parent: QWidget | None = None):
        super().__init__("Training", parent)
        self.setObjectName("trainingDock")
        self.runs_root = Path(runs_root)
        self.engine: Engine | None = None
        self.db = ""
        self.annotator: str | None = None
        self.remember_folder = lambda db, folder: None  # set by the window (preferences)
        self.runner = TrainingRunner(self)
        self.runner.events.connect(self._on_events)
        self.runner.finished.connect(self._on_finished)
        self.current: TrainRequest | None = None
        self._run_engine: Engine | None = None
        self._epochs, self._run_device = 0, "?"  # from the run's start event
        self._loss = np.empty((2, 4096))  # (step, loss) columns, grown by doubling
        self._loss_count = 0
        self._val: dict[tuple[str, str], list[tuple[int, float]]] = {}
        self._dirty = False
        self._steps_per_epoch = 1
        self._batch = 0
        self._step_times: deque[tuple[float, int]] = deque(maxlen=50)  # for clips/s
        self._last_step: dict | None = None  # shown at the next redraw, not per event
        self._stored: list[str] = []
        self._build()
        self.redraw_timer = QTimer(self)
        self.redraw_timer.setInterval(REDRAW_MS)
        self.redraw_timer.timeout.connect(self._redraw)
        self.redraw_timer.start()
        self._finder: QProcess | None = None
        self.visibilityChanged.connect(lambda visible: visible and self.find_devices())

    # ---------------------------------------------------------------- layout
    def _build(self) -> None:
        body = QWidget(self)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.model = QComboBox()
        for name in MODEL_NAMES:
            self.model.addItem(name, name)
        self.model.setCurrentIndex(MODEL_NAMES.index("valor"))
        self.model.setToolTip("han: video-level labels only · valor: segment labels, VALOR's recipe · mug, link: "
                              "with priors and caption embeddings (PLSIM)")
        self.feature_set = QComboBox()
        self.feature_set.addItem("the model's own", None)
        for name in FEATURE_SET_NAMES:
            self.feature_set.addItem(name, name)
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("the LLP-layout folder with the features")
        browse = QPushButton("…")
        browse.setFixedWidth(28)
        browse.clicked.connect(self._browse_folder)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(browse)
        self.text_audio, self.text_visual = QLineEdit(), QLineEdit()
        self.text_audio.setPlaceholderText("(25, d) CLAP caption embeddings .npy")
        self.text_visual.setPlaceholderText("(25, d) CLIP caption embeddings .npy")
        self.random_text = QCheckBox("seeded random stand-in (no language prior)")
        self.priors = QLabel("")
        self.priors.setWordWrap(True)
        self.epochs = QSpinBox()
        self.epochs.setRange(0, 10000)
        self.epochs.setSpecialValueText("recipe")
        self.cmrc = QSpinBox()
        self.cmrc.setRange(0, 1_000_000)
        self.cmrc.setSpecialValueText("off")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(1)
        self.device = QComboBox()
        self.device.addItem("CPU", "cpu")
        self.predict = {split: QCheckBox(split) for split in ("val", "test", "train")}
        self.predict["val"].setChecked(True)
        self.predict["test"].setChecked(True)
        predict_row = QHBoxLayout()
        for box in self.predict.values():
            predict_row.addWidget(box)
        predict_row.addStretch(1)
        self.name = QLineEdit()
        self.name.setPlaceholderText("automatic: model-date-time")
        form.addRow("Model", self.model)
        form.addRow("Features", self.feature_set)
        form.addRow("Feature folder", folder_row)
        form.addRow("CLAP text", self.text_audio)
        form.addRow("CLIP text", self.text_visual)
        form.addRow("", self.random_text)
        form.addRow("Priors", self.priors)
        form.addRow("Epochs", self.epochs)
        form.addRow("CMRC clips", self.cmrc)
        form.addRow("Seed", self.seed)
        form.addRow("Device", self.device)
        form.addRow("Predict", predict_row)
        form.addRow("Run name", self.name)

        self.train_button = QPushButton("Train")
        self.train_button.setToolTip("Start training in a separate process; keep annotating")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the current step; the best checkpoint is kept, Resume continues")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the last stopped run of this database")
        self.retrain_button = QPushButton("Retrain with my corrections")
        self.retrain_button.setToolTip("The last finished run's config again, on the labels as they are now")
        self.train_button.clicked.connect(self.start_training)
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button.clicked.connect(self.resume_last)
        self.retrain_button.clicked.connect(self.retrain_last)
        buttons = QHBoxLayout()
        for button in (self.train_button, self.cancel_button, self.resume_button):
            buttons.addWidget(button)

        self.status = QLabel("No run yet")
        self.status.setWordWrap(True)
        self.loss_plot = pg.PlotWidget()
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.setLabel("left", "train loss")
        self.loss_plot.setMinimumHeight(110)
        self.loss_curve = self.loss_plot.plot(pen=pg.mkPen(CURVE_COLOURS[0], width=1))
        self.loss_curve.setDownsampling(auto=True, method="peak")  # a long run's steps: one point per pixel
        self.loss_curve.setClipToView(True)
        self.val_plot = pg.PlotWidget()
        self.val_plot.setLabel("bottom", "epoch")
        self.val_plot.setLabel("left", "val F1 %")
        self.val_plot.setMinimumHeight(130)
        self.val_plot.setTitle("val F1 %: segment solid, event dashed", size="8pt")
        legend = self.val_plot.addLegend(offset=(4, 4), labelTextSize="7pt")
        legend.setColumnCount(len(KEYS))
        self.val_curves = {}
        for level, style in zip(LEVELS, (Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine)):
            for key, colour in zip(KEYS, CURVE_COLOURS):
                pen = pg.mkPen(colour, width=2 if key == "type" else 1, style=style)
                name = SHORT_TITLES[key] if level == LEVELS[0] else None  # one legend entry per colour
                self.val_curves[(level, key)] = self.val_plot.plot(pen=pen, symbol="o", symbolSize=4,
                                                                   symbolBrush=colour, name=name)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(400)
        self.log_view.setPlaceholderText("The training process's messages")
        self.log_view.setMinimumHeight(70)

        self.settings_toggle = QToolButton(text="Run settings", checkable=True, checked=True)
        self.settings_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.settings_toggle.setArrowType(Qt.ArrowType.DownArrow)
        self.settings_toggle.setAutoRaise(True)
        self.settings_toggle.setToolTip("Show or hide the form (hidden while a run goes, to give the curves room)")
        self.settings = QWidget()
        self.settings.setLayout(form)
        form.setContentsMargins(0, 0, 0, 0)
        self.settings_toggle.toggled.connect(self._show_settings)
        layout = QVBoxLayout(body)
        layout.addWidget(self.settings_toggle)
        layout.addWidget(self.settings)
        layout.addLayout(buttons)
        layout.addWidget(self.retrain_button)
        layout.addWidget(self.status)
        layout.addWidget(self.loss_plot, 1)
        layout.addWidget(self.val_plot, 1)
        layout.addWidget(self.log_view, 1)
        scroll = QScrollArea()  # the form and curves scroll: the dock never sets the window's height
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(body)
        scroll.setMinimumWidth(body.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        self.setWidget(scroll)
        self.model.currentIndexChanged.connect(self._model_changed)
        self.folder.editingFinished.connect(self._folder_changed)
        self.random_text.toggled.connect(self._model_changed)
        self.runner.log.connect(self.log_view.appendPlainText)
        self._model_changed()
        self._set_running(False)

    def cancel(self) -> None:
        self.runner.cancel()
        self.cancel_button.setEnabled(False)  # one cancel: a second signal would abort instead of stopping
        self.status.setText(f"Stopping {self.current.name if self.current else ''} after the current step…")

    def stop_for_quit(self) -> None:
        """The window is closing: stop the run, waited for; `_on_finished` records it as it ends."""
        self.runner.stop_now()

    def _show_settings(self, shown: bool) -> None:
        self.settings.setVisible(shown)
        self.settings_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    def find_devices(self) -> None:
        """Ask torch which devices there are (CPU, each CUDA device, all of them through torchrun when
        there are two or more), once per program, in a child process, when the panel is first shown."""
        if _DEVICES:
            self._set_devices(_DEVICES)
            return
        if self._finder is not None:
            return
        finder = self._finder = QProcess(self)
        finder.finished.connect(self._devices_found)
        finder.start(sys.executable, ["-c", DETECT_DEVICES])

    def _devices_found(self, code: int, _status=None) -> None:
        try:
            out = bytes(self._finder.readAllStandardOutput()).decode("utf-8", "replace").strip()
            error = bytes(self._finder.readAllStandardError()).decode("utf-8", "replace").strip().splitlines()
        except RuntimeError:  # the panel (and the search with it) went first: the child was stopped
            return
        try:
            choices = [tuple(c) for c in json.loads(out.splitlines()[-1])] if code == 0 and out else None
        except (json.JSONDecodeError, TypeError, ValueError):
            choices = None
        if choices is None:
            self.status.setText(f"torch cannot load: {error[-1] if error else f'exit code {code}'} (CPU only)")
            return
        _DEVICES[:] = choices
        self._set_devices(choices)

    def _set_devices(self, choices: list[tuple[str, str]]) -> None:
        self.device.clear()
        for label, device in choices:
            self.device.addItem(label, device)

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Feature folder (LLP layout)", self.folder.text())
        if folder:
            self.folder.setText(folder)
            self._folder_changed()

    def _folder_changed(self) -> None:
        self.remember_folder(self.db, self.folder.text().strip())
        self._model_changed()

    def _model_changed(self) -> None:
        model = self.model.currentData()
        plsim = model in READS_PRIORS
        for widget in (self.text_audio, self.text_visual):
            widget.setEnabled(plsim and not self.random_text.isChecked())
        self.random_text.setEnabled(plsim)
        folder = Path(self.folder.text().strip()) if self.folder.text().strip() else None
        if not plsim:
            self.priors.setText(f"{model} reads no priors")
        elif folder is None:
            self.priors.setText("read from the feature folder")
        elif all(present(folder / sub, "folder") for sub in PRIOR_DIRS):
            self.priors.setText("found in the feature folder")
        else:
            self.priors.setText("<span style='color:#e5534b'>missing in the feature folder</span>: make them with "
                                "avvp-studio prior --data FOLDER --text-audio … --text-visual …")

    # ---------------------------------------------------------------- database
    def set_database(self, engine: Engine, db: str, annotator: str | None, folder: str) -> None:
        self.engine, self.db, self.annotator = engine, db, annotator
        self.folder.setText(folder)
        self._model_changed()
        self._set_running(self.runner.running())

    def _set_running(self, running: bool) -> None:
        has_db = self.engine is not None
        last = self._last_run() if has_db and not running else None
        self.train_button.setEnabled(has_db and not running)
        self.cancel_button.setEnabled(running)
        self.resume_button.setEnabled(not running and last is not None and last.status in ("stopped", "failed"))
        self.retrain_button.setEnabled(not running and last is not None and last.status == "finished")

    def _last_run(self) -> RunRecord | None:
        """The newest run this annotator started (Resume and Retrain act on it, never on a colleague's)."""
        return next((r for r in list_runs(self.engine) if r.started_by == self.annotator or self.annotator is None),
                    None)

    # ---------------------------------------------------------------- starting
    def request(self) -> TrainRequest:
        """What the form says, as a request (the run folder named after the run, under runs_root)."""
        folder = self.folder.text().strip()
        if not folder:
            raise ValueError("choose the feature folder (the LLP-layout folder the database was imported from)")
        model = self.model.currentData()
        name = check_run_name(self.name.text().strip() or f"{model}-{time.strftime('%Y%m%d-%H%M%S')}")
        device, gpus = self._device()
        plsim = model in READS_PRIORS
        random_text = plsim and self.random_text.isChecked()
        return TrainRequest(
            data=folder, db=self.db, out=str(self.runs_root / name), name=name, model=model,
            feature_set=self.feature_set.currentData(), epochs=self.epochs.value() or None,
            seed=self.seed.value(), cmrc=self.cmrc.value() or None,
            text_audio=(self.text_audio.text().strip() or None) if plsim and not random_text else None,
            text_visual=(self.text_visual.text().strip() or None) if plsim and not random_text else None,
            random_text=random_text, device=device, gpus=gpus,
            predict=self._predict_splits(), annotator=self.annotator)

    def start_training(self) -> bool:
        try:
            request = self.request()
        except ValueError as exc:
            self.status.setText(f"<span style='color:#e5534b'>{exc}</span>")
            return False
        self.launch(request)
        return True

    def _device(self) -> tuple[str, int]:
        """(device, GPUs) of the device choice: 'all' with the GPU count for torchrun."""
        device = self.device.currentData() or "cpu"
        return ("all", int(device.split(":")[1])) if device.startswith("all:") else (device, 0)

    def resume_last(self) -> None:
        last = self._last_run()
        if last is None:
            return
        device, gpus = self._device()
        self.launch(TrainRequest(data=last.data_dir, db=self.db, out=last.run_dir, name=last.name, resume=True,
                                 device=device, gpus=gpus, predict=self._predict_splits(), annotator=self.annotator))

    def retrain_last(self) -> None:
        """The last finished run's config, as a new run on the labels as they are now."""
        last = self._last_run()
        if last is None or last.status != "finished":
            return
        stem = re.sub(r"-r\d+$", "", last.name)
        taken = {r.name for r in list_runs(self.engine)}
        number = next(n for n in range(2, 10_000) if f"{stem}-r{n}" not in taken)
        name = f"{stem}-r{number}"
        device, gpus = self._device()
        self.launch(TrainRequest(data=last.data_dir, db=self.db, out=str(self.runs_root / name), name=name,
                                 device=device, gpus=gpus, predict=self._predict_splits(), annotator=self.annotator,
                                 extra=["--like", last.run_dir]))

    def _predict_splits(self) -> tuple[str, ...]:
        return tuple(s for s, box in self.predict.items() if box.isChecked())

    def launch(self, request: TrainRequest) -> None:
        self.runner.start(request)  # raises when a run is going: nothing of that run is touched
        self.current, self._run_engine = request, self.engine  # the run's database, whatever is opened meanwhile
        self._loss_count, self._val, self._stored = 0, {}, []
        self._step_times.clear()
        self._last_step = None
        self._dirty = True
        self.log_view.clear()
        self.status.setText(f"Starting {request.name}…")
        self.settings_toggle.setChecked(False)  # the curves get the room; the toggle brings the form back
        self._set_running(True)

    # ---------------------------------------------------------------- events
    def _on_events(self, events: list[dict]) -> None:
        for event in events:
            self._on_event(event)

    def _on_event(self, event: dict) -> None:
        kind = event["event"]
        if kind == "start":
            self._steps_per_epoch = max(int(event.get("steps_per_epoch") or 1), 1)
            self._epochs = int(event.get("epochs") or 0)
            self._run_device = event.get("device")
            clips = event.get("clips", {}).get("train", 0)
            self._batch = clips / self._steps_per_epoch
            self.status.setText(f"{self.current.name}: {event.get('model')} on {self._run_device}, "
                                f"{clips} train clips, {self._epochs} epochs")
        elif kind == "step":
            step = (int(event["epoch"]) - 1) * self._steps_per_epoch + int(event["step"])
            if event.get("loss") is not None:
                if self._loss_count == self._loss.shape[1]:
                    self._loss = np.concatenate([self._loss, np.empty_like(self._loss)], axis=1)
                self._loss[:, self._loss_count] = step, float(event["loss"])
                self._loss_count += 1
            self._step_times.append((float(event.get("t") or 0.0), step))
            self._last_step = event
            self._dirty = True
        elif kind == "epoch":
            val = event.get("val")
            if val:
                for level in LEVELS:
                    for key in KEYS:
                        self._val.setdefault((level, key), []).append((int(event["epoch"]), val[level][key]))
                self._dirty = True
        elif kind == "predicted":
            self._stored.append(event["split"])
        elif kind == "end" and not event.get("stopped"):
            test = event.get("test")
            score = f", test segment Type@AV {test['segment']['type']:.2f}" if test else ""
            self.status.setText(f"{self.current.name}: best epoch {event.get('best_epoch')}{score}; predicting…")

    def _progress_text(self, event: dict) -> None:
        (t0, s0), (t1, s1) = self._step_times[0], self._step_times[-1]
        rate = (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0
        self.status.setText(
            f"{self.current.name} on {self._run_device}: epoch {event['epoch']}/{self._epochs}, step "
            f"{event['step']}/{event['steps']}, loss {event.get('loss') or 0:.4f}, ETA {'?' if event.get('eta') is None else format_duration(float(event['eta']))}, "
            f"{rate * self._batch:.0f} clips/s")

    def _redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        if self._last_step is not None and self.current is not None:
            self._progress_text(self._last_step)
            self._last_step = None
        self.loss_curve.setData(self._loss[0, :self._loss_count], self._loss[1, :self._loss_count])
        for key, curve in self.val_curves.items():
            points = self._val.get(key, [])
            curve.setData([p[0] for p in points], [p[1] for p in points])

    def _on_finished(self, status: str, code: int, tail: str) -> None:
        request, self.current = self.current, None
        engine, self._run_engine = self._run_engine, None
        name = request.name if request else "?"
        self._redraw()
        if not self.runner.announced and engine is not None and request is not None:
            # killed after a cancel, crashed, out of memory: the process could not say so itself, and the
            # runs table must not claim it is running (a cancelled run keeps last.pt: Resume continues it)
            verdict, why = (("stopped", "cancelled; the process had to be killed; resume continues from the last "
                                        "finished epoch") if status == "stopped"
                            else ("failed", (tail.splitlines() or ["crashed"])[-1][:2000]))
            try:
                if get_run(engine, name).status == "running":
                    finish_run(engine, name, verdict, why)
            except LookupError:
                pass
        if status == "finished":
            stored = f"; predictions of {', '.join(self._stored)} stored as prediction:{name}" if self._stored else ""
            self.status.setText(f"<b>{name} finished</b>{stored}")
        elif status == "stopped":
            self.status.setText(f"<b>{name} stopped</b>: the best checkpoint so far is kept; Resume continues it")
        else:
            self.status.setText(f"<span style='color:#e5534b'><b>{name} {status}</b> (exit code {code})</span>; the "
                                "log's last lines are below")
            self.log_view.setPlainText(tail)
        self._set_running(False)
        shown_here = self._stored and engine is self.engine  # not when another database was opened meanwhile
        self.run_finished.emit(status, f"prediction:{name}" if shown_here else "")
