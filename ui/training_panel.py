"""The training panel: retrain a parser on this database's labels while annotating, and watch it.

What to train (model family, feature set, caption embeddings, epochs, CMRC, seed, device, the
splits to predict afterwards) becomes one `avvp-studio train --db ... --events` process
(`ui.training_runner`); its events feed the curves (training loss per step, the ten val
numbers per epoch) and the status line (epoch, ETA, device, clips/s). Labels are the
database's best (manual where edited, else pseudo; out-of-taxonomy respected); features come
from the project's feature folder, remembered per database. When the run ends it has stored
its predictions, and `run_finished` tells the window to show them.

A database that holds AVSBench clips (`avvp-studio avs import`) also offers the task
"Segmentation (AVSBench)": subset, data folder (the subset's folder from the database, or the one
chosen before for this database), model, size, backbone, local weight files, image size become one
`avvp-studio avs train --db ... --events` process; its curves are val mIoU and F-score per epoch.
Its predicted masks are stored as prediction:<run> (table avs_masks): `masks_stored` says so, and
`run_finished` follows as for a parsing run. The training process reads the accepted masks (the
corrections) from the database itself.
"""
from __future__ import annotations

import html
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
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from annotation.avsbench import subset_root
from annotation.db import has_table
from annotation.files import present
from annotation.models import AVSClip
from annotation.runs import RunRecord, check_run_name, finish_run, get_run, list_runs
from inference.callbacks import format_duration
from inference.cli_args import FEATURE_SET_NAMES, MODEL_NAMES
from inference.metrics import KEYS, LEVELS, SHORT_TITLES
from ui.training_runner import AVSTrainRequest, TrainingRunner, TrainRequest

READS_PRIORS = ("mug", "link")  # PLSIM: priors and caption embeddings
PRIOR_DIRS = ("CLAP/segment_prior_labels", "CLIP/segment_prior_labels")
REDRAW_MS = 100  # curves are redrawn at most this often, however fast events come
CURVE_COLOURS = ("#3d8bfd", "#f28e2b", "#59a14f", "#e15759", "#b07aa1")
_DEVICES: list[tuple[str, str]] = []  # found once per process

TASKS = (("Parsing (LLP)", "avvp"), ("Segmentation (AVSBench)", "avs"))
AVS_SUBSETS = ("s4", "ms3", "avss")  # = annotation.avsbench.SUBSETS, tested
AVS_SUBSET_TITLES = {"s4": "S4 (single source)", "ms3": "MS3 (multiple sources)", "avss": "AVSS (semantic)"}
AVS_MODEL_NAMES = ("avs_mamba", "avs_visual_only")  # = inference.models.model_names("avs"), tested (no torch here)
AVS_BACKBONES = ("pvt_v2_b5", "resnet50")  # = inference.models.avs_mamba.BACKBONES, the recipe's first
AVS_CURVES = (("miou", "mIoU"), ("fscore", "F-score"))
MIN_IMAGE_SIZE = 16  # the AVS models' smallest frame size
TINY_LR = 1e-3  # the tiny model from random weights (the recipe's 2e-5 fine-tunes pretrained backbones: it learns nothing)


def avs_subsets(engine: Engine) -> dict[str, tuple[int, str]]:
    """subset -> (clips, the folder most of them were imported from) of the AVS clips in the database (one
    grouped query; none in a database without the table)."""
    if not has_table(engine, AVSClip.__tablename__):
        return {}
    c = AVSClip.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(c.c.subset, c.c.root, func.count()).group_by(c.c.subset, c.c.root)).all()
    out: dict[str, tuple[int, str]] = {}
    for subset, root, count in sorted(rows, key=lambda r: -r[2]):  # the biggest folder first: the default
        clips, first = out.get(subset, (0, root))
        out[subset] = (clips + count, first)
    return {s: out[s] for s in sorted(out, key=lambda s: (AVS_SUBSETS.index(s) if s in AVS_SUBSETS else 99, s))}


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


def _avs_scores(split: str, scores: dict, digits: int = 2) -> str:
    """'val mIoU 41.20, F-score 52.10' from an AVS event's numbers (either may be missing)."""
    parts = [f"{title} {scores[key]:.{digits}f}" for key, title in AVS_CURVES if scores.get(key) is not None]
    return f"{split} {', '.join(parts)}" if parts else f"no {split} numbers"


def browse_row(edit: QWidget, on_click) -> tuple[QHBoxLayout, QPushButton]:
    """A path field with its "…" button."""
    button = QPushButton("…")
    button.setFixedWidth(28)
    button.clicked.connect(on_click)
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    row.addWidget(button)
    return row, button


class TrainingPanel(QDockWidget):
    run_finished = Signal(str, str)  # status, source 'prediction:<name>' ('' when nothing was stored)
    masks_stored = Signal(str, str)  # AVS: subset, source 'prediction:<name>' (before run_finished)

    def __init__(self, runs_root: Path, parent: QWidget | None = None):
        super().__init__("Training", parent)
        self.setObjectName("trainingDock")
        self.runs_root = Path(runs_root)
        self.engine: Engine | None = None
        self.db = ""
        self.annotator: str | None = None
        self.remember_folder = lambda db, folder: None  # set by the window (preferences)
        # the AVS data folder per database and subset: kept here for the session; the window may keep them longer
        self.remember_avs_folder = lambda db, subset, folder: None
        self.recall_avs_folder = lambda db, subset: ""
        self._avs_folders: dict[tuple[str, str], str] = {}
        self._avs_subsets: dict[str, tuple[int, str]] = {}
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
        self._val_text = ""  # segmentation: the last epoch's val numbers, shown with the progress
        self._stored: list[str] = []
        self._build()
        self.redraw_timer = QTimer(self)
        self.redraw_timer.setInterval(REDRAW_MS)
        self.redraw_timer.timeout.connect(self._redraw)
        self.redraw_timer.start()
        self._finder: QProcess | None = None
        self.visibilityChanged.connect(self._visibility_changed)

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
        folder_row, _ = browse_row(self.folder, self._browse_folder)
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

        # the task (shown when the database holds AVS clips) and segmentation's own fields
        self.task = QComboBox()
        for title, task in TASKS:
            self.task.addItem(title, task)
        self.task.setToolTip("Parsing: the LLP clips' event labels · Segmentation: the AVSBench clips' masks")
        self.subset = QComboBox()
        self.subset.setToolTip("The AVSBench subset to train on (the clips imported with avvp-studio avs import)")
        self.avs_folder = QLineEdit()
        self.avs_folder.setPlaceholderText("the AVSBench subset folder the clips were imported from")
        avs_folder_row, _ = browse_row(self.avs_folder, self._browse_avs_folder)
        self.avs_model = QComboBox()
        for name in AVS_MODEL_NAMES:
            self.avs_model.addItem(name, name)
        self.avs_model.setToolTip("avs_mamba: frames and sound · avs_visual_only: the audio-blind baseline")
        self.avs_size = QComboBox()
        self.avs_size.addItem("full (the recipe)", "full")
        self.avs_size.addItem("tiny (on the CPU; lr 1e-3 without weights)", "tiny")
        self.avs_size.setCurrentIndex(1)  # the full model needs a GPU
        self.backbone = QComboBox()
        for name in AVS_BACKBONES:
            self.backbone.addItem(name, name)
        self.backbone_weights, self.vggish_weights = QLineEdit(), QLineEdit()
        self.backbone_weights.setPlaceholderText("optional: local ResNet-50 / PVT-v2-b5 checkpoint")
        self.vggish_weights.setPlaceholderText("optional: local VGGish checkpoint (vggish-10086976.pth)")
        weight_rows = [browse_row(edit, lambda _=False, e=edit, t=title: self._browse_file(e, t))
                       for edit, title in ((self.backbone_weights, "Backbone weights"),
                                           (self.vggish_weights, "VGGish weights"))]
        self.vggish_pick = weight_rows[1][1]
        self.image_size = QSpinBox()
        self.image_size.setRange(0, 4096)
        self.image_size.setSingleStep(32)
        self.image_size.setSpecialValueText("the model's")
        self.image_size.setSuffix(" px")
        self.image_size.setToolTip("Frames are resized to this square size (the model's: 224 full, 64 tiny)")

        self._rows: dict[str, list[int]] = {"avvp": [], "avs": []}

        def add(title: str, field, task: str | None = None) -> None:
            if task is not None:
                self._rows[task].append(form.rowCount())
            form.addRow(title, field)

        add("Task", self.task)
        self._task_row = 0
        add("Subset", self.subset, "avs")
        add("Data folder", avs_folder_row, "avs")
        add("Model", self.model, "avvp")
        add("Model", self.avs_model, "avs")
        add("Size", self.avs_size, "avs")
        add("Backbone", self.backbone, "avs")
        add("Backbone weights", weight_rows[0][0], "avs")
        add("VGGish weights", weight_rows[1][0], "avs")
        add("Image size", self.image_size, "avs")
        add("Features", self.feature_set, "avvp")
        add("Feature folder", folder_row, "avvp")
        add("CLAP text", self.text_audio, "avvp")
        add("CLIP text", self.text_visual, "avvp")
        add("", self.random_text, "avvp")
        add("Priors", self.priors, "avvp")
        add("Epochs", self.epochs)
        add("CMRC clips", self.cmrc, "avvp")
        add("Seed", self.seed)
        add("Device", self.device)
        add("Predict", predict_row)
        add("Run name", self.name)
        self.form = form

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
        self.val_legend = legend
        self.val_curves = {}
        for level, style in zip(LEVELS, (Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine)):
            for key, colour in zip(KEYS, CURVE_COLOURS):
                pen = pg.mkPen(colour, width=2 if key == "type" else 1, style=style)
                name = SHORT_TITLES[key] if level == LEVELS[0] else None  # one legend entry per colour
                self.val_curves[(level, key)] = self.val_plot.plot(pen=pen, symbol="o", symbolSize=4,
                                                                   symbolBrush=colour, name=name)
        self.avs_curves = {}  # segmentation: val mIoU and F-score per epoch (in the legend while they are shown)
        for (key, _), colour in zip(AVS_CURVES, CURVE_COLOURS):
            self.avs_curves[key] = self.val_plot.plot(pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=5,
                                                      symbolBrush=colour)
        self._curves_task = ""
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
        self.task.currentIndexChanged.connect(self._task_changed)
        self.subset.currentIndexChanged.connect(self._subset_changed)
        self.avs_folder.editingFinished.connect(self._avs_folder_changed)
        self.avs_model.currentIndexChanged.connect(self._avs_model_changed)
        self.runner.log.connect(self.log_view.appendPlainText)
        self._model_changed()
        self._avs_model_changed()
        self._show_curves("avvp")
        self._task_changed()
        self._set_running(False)

    def cancel(self) -> None:
        self.runner.cancel()
        self.cancel_button.setEnabled(False)  # one cancel: a second signal would abort instead of stopping
        self.status.setText(f"Stopping {self.current.name if self.current else ''} after the current step…")

    def stop_for_quit(self) -> None:
        """The window is closing: stop the run, waited for; `_on_finished` records it as it ends."""
        self.runner.stop_now()

    def _visibility_changed(self, visible: bool) -> None:
        if visible:
            self.find_devices()
            self.refresh_tasks()  # AVS clips imported meanwhile (avvp-studio avs import) bring the task choice

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

    # ---------------------------------------------------------------- segmentation's form
    def task_choice(self) -> str:
        """'avvp' (parsing) or 'avs' (segmentation; only while the database holds AVS clips)."""
        return self.task.currentData() if self._avs_subsets else "avvp"

    def _task_changed(self) -> None:
        task = self.task_choice()
        self.form.setRowVisible(self._task_row, bool(self._avs_subsets))
        for kind, rows in self._rows.items():
            for row in rows:
                self.form.setRowVisible(row, kind == task)
        self.name.setPlaceholderText("automatic: model-date-time" if task == "avvp"
                                     else "automatic: model-subset-date-time")
        self.resume_button.setToolTip(f"Continue the last stopped {'segmentation' if task == 'avs' else 'parsing'} "
                                      "run of this database")
        self.retrain_button.setToolTip("The last finished run's config again, on the labels as they are now" if
                                       task == "avvp" else "The last finished segmentation run's config again, "
                                       "learning also from the predicted masks you accepted on train frames without "
                                       "ground truth (predict the train split to get some; decisions on val/test "
                                       "clips are never trained on)")
        if not self.runner.running():
            self._set_running(False)

    def refresh_tasks(self) -> None:
        """Which AVS subsets the database holds (the task choice is shown only when it holds some)."""
        try:
            subsets = avs_subsets(self.engine) if self.engine is not None else {}
        except SQLAlchemyError as exc:  # the form stays as it was for parsing; the reason is shown
            subsets = {}
            self.status.setText(f"could not read the database's AVS clips: {str(exc).splitlines()[0]}")
        if subsets == self._avs_subsets and self.subset.count() == len(subsets):
            return
        self._avs_subsets = subsets
        keep = self.subset.currentData()
        self.subset.blockSignals(True)
        self.subset.clear()
        for subset, (clips, _) in subsets.items():
            self.subset.addItem(f"{AVS_SUBSET_TITLES.get(subset, subset)} · {clips} clips", subset)
        index = self.subset.findData(keep)
        self.subset.setCurrentIndex(max(index, 0))
        self.subset.blockSignals(False)
        self._subset_changed()
        self._task_changed()

    def _subset_changed(self) -> None:
        """The data folder of this subset: the one chosen before for this database, else the database's."""
        subset = self.subset.currentData()
        if subset is None:
            self.avs_folder.setText("")
            return
        remembered = self._avs_folders.get((self.db, subset)) or self.recall_avs_folder(self.db, subset)
        self.avs_folder.setText(remembered or self._avs_subsets.get(subset, (0, ""))[1])

    def _avs_folder_changed(self) -> None:
        subset, folder = self.subset.currentData(), self.avs_folder.text().strip()
        if subset is None:
            return
        self._avs_folders[(self.db, subset)] = folder
        self.remember_avs_folder(self.db, subset, folder)

    def _browse_avs_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "AVSBench data folder", self.avs_folder.text())
        if folder:
            self.avs_folder.setText(folder)
            self._avs_folder_changed()

    def _browse_file(self, edit: QLineEdit, title: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, title, edit.text(),
                                              "Checkpoints (*.pth *.pt *.bin *.safetensors *.pkl);;All files (*)")
        if path:
            edit.setText(path)

    def _avs_model_changed(self) -> None:
        audio = self.avs_model.currentData() != "avs_visual_only"  # the audio-blind baseline has no VGGish
        self.vggish_weights.setEnabled(audio)
        self.vggish_pick.setEnabled(audio)
        self.vggish_weights.setToolTip("" if audio else "avs_visual_only has no audio backbone")

    # ---------------------------------------------------------------- database
    def set_database(self, engine: Engine, db: str, annotator: str | None, folder: str) -> None:
        self.engine, self.db, self.annotator = engine, db, annotator
        self.folder.setText(folder)
        self._model_changed()
        self._avs_subsets = {}
        self.subset.clear()  # another database's subsets and folders are not this one's
        self.refresh_tasks()
        if self._avs_subsets and not folder:  # AVS clips and no parsing project: segmentation it is
            self.task.setCurrentIndex(self.task.findData("avs"))
        self._task_changed()
        self._set_running(self.runner.running())

    def _set_running(self, running: bool) -> None:
        has_db = self.engine is not None
        last = self._last_run() if has_db and not running else None
        self.train_button.setEnabled(has_db and not running)
        self.cancel_button.setEnabled(running)
        self.resume_button.setEnabled(not running and last is not None and last.status in ("stopped", "failed"))
        self.retrain_button.setEnabled(not running and last is not None and last.status == "finished")

    def _last_run(self) -> RunRecord | None:
        """The newest run of the chosen task this annotator started (Resume and Retrain act on it, never on a
        colleague's)."""
        avs = self.task_choice() == "avs"
        return next((r for r in list_runs(self.engine) if (r.started_by == self.annotator or self.annotator is None)
                     and (r.task == "avs") == avs), None)

    # ---------------------------------------------------------------- starting
    def request(self) -> TrainRequest:
        """What the form says, as a request (the run folder named after the run, under runs_root)."""
        if self.task_choice() == "avs":
            return self.avs_request()
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

    def avs_request(self) -> AVSTrainRequest:
        """The segmentation form as a request; a missing folder or weight file is refused here, named."""
        subset = self.subset.currentData()
        if subset is None:
            raise ValueError("the database holds no AVS clips: import a subset with avvp-studio avs import ROOT "
                             "--subset s4|ms3|avss")
        folder = self.avs_folder.text().strip()
        if not folder:
            raise ValueError(f"choose the data folder (the AVSBench {subset.upper()} folder the clips were imported "
                             "from)")
        if not present(Path(folder), "folder"):  # DataFileError (a ValueError) for a file or an unreadable entry
            raise ValueError(f"data folder {folder}: no such folder")
        subset_root(folder, subset)  # DataFileError: not an AVSBench folder of this subset, with what was expected
        weights = {}
        for edit, what in ((self.backbone_weights, "backbone weights"), (self.vggish_weights, "VGGish weights")):
            path = edit.text().strip() if edit.isEnabled() else ""
            if path and not present(Path(path)):
                raise ValueError(f"{what} file {path}: no such file")
            weights[what] = str(Path(path).resolve()) if path else None
        image = self.image_size.value() or None
        if image is not None and image < MIN_IMAGE_SIZE:
            raise ValueError(f"image size {image} px: at least {MIN_IMAGE_SIZE} (or the model's own)")
        model = self.avs_model.currentData()
        name = check_run_name(self.name.text().strip() or f"{model}-{subset}-{time.strftime('%Y%m%d-%H%M%S')}")
        device = self._avs_device()
        size = self.avs_size.currentData()
        if size == "full" and device == "cpu":
            raise ValueError("the full model on the CPU needs more than 16 GB and about a minute per clip: choose Size "
                             "tiny, or a GPU (avvp-studio avs train still runs it from a terminal)")
        random_start = size == "tiny" and not weights["backbone weights"]
        return AVSTrainRequest(
            data=folder, db=self.db, out=str(self.runs_root / name), name=name, model=model,
            epochs=self.epochs.value() or None, seed=self.seed.value(), device=device,
            predict=self._predict_splits(), annotator=self.annotator, subset=subset,
            size=size, backbone=self.backbone.currentData(), lr=TINY_LR if random_start else None,
            backbone_weights=weights["backbone weights"], vggish_weights=weights["VGGish weights"], image_size=image)

    def _avs_device(self) -> str:
        device, _ = self._device()
        if device == "all":
            raise ValueError("segmentation trains on one device (avs train has no torchrun mode): choose the CPU "
                             "or one GPU")
        return device

    def start_training(self) -> bool:
        started = self._launch_checked(self.request)
        if started and isinstance(self.current, AVSTrainRequest):  # the folder that worked is this database's
            self._avs_folders[(self.db, self.current.subset)] = self.current.data
            self.remember_avs_folder(self.db, self.current.subset, self.current.data)
        return started

    def _launch_checked(self, build) -> bool:
        """Launch what `build` makes; a ValueError (bad input) is shown in the status line instead."""
        try:
            request = build()
            if request is None:
                return False
            self.launch(request)
        except ValueError as exc:
            self.status.setText(f"<span style='color:#e5534b'>{html.escape(str(exc))}</span>")
            return False
        return True

    def _device(self) -> tuple[str, int]:
        """(device, GPUs) of the device choice: 'all' with the GPU count for torchrun."""
        device = self.device.currentData() or "cpu"
        return ("all", int(device.split(":")[1])) if device.startswith("all:") else (device, 0)

    def resume_last(self) -> bool:
        return self._launch_checked(self.resume_request)

    def resume_request(self) -> TrainRequest | None:
        """The last stopped run of the chosen task, continued in its own folder (None: there is none)."""
        last = self._last_run()
        if last is None:
            return None
        return self._again(last, out=last.run_dir, name=last.name, resume=True)

    def retrain_last(self) -> bool:
        return self._launch_checked(self.retrain_request)

    def retrain_request(self) -> TrainRequest | None:
        """The last finished run's config, as a new run on the labels (segmentation: the masks) as they are now."""
        last = self._last_run()
        if last is None or last.status != "finished":
            return None
        stem = re.sub(r"-r\d+$", "", last.name)
        taken = {r.name for r in list_runs(self.engine)}
        number = next(n for n in range(2, 10_000) if f"{stem}-r{n}" not in taken)
        name = f"{stem}-r{number}"
        return self._again(last, out=str(self.runs_root / name), name=name, extra=["--like", last.run_dir])

    def _again(self, last: RunRecord, **fields) -> TrainRequest:
        """A request for a recorded run's data, with this form's device and splits to predict."""
        common = dict(data=last.data_dir, db=self.db, predict=self._predict_splits(), annotator=self.annotator,
                      **fields)
        if last.task == "avs":
            return AVSTrainRequest(subset=self._subset_of(last), device=self._avs_device(), **common)
        device, gpus = self._device()
        return TrainRequest(device=device, gpus=gpus, **common)

    def _subset_of(self, run: RunRecord) -> str:
        """The AVSBench subset a recorded segmentation run trained on (its config's task options say it)."""
        subset = (run.config.get("task_options") or {}).get("subset")
        if subset not in AVS_SUBSETS:
            raise ValueError(f"run {run.name}: its config names no AVSBench subset (recorded before subsets were)")
        return subset

    def _predict_splits(self) -> tuple[str, ...]:
        return tuple(s for s, box in self.predict.items() if box.isChecked())

    def launch(self, request: TrainRequest) -> None:
        self.runner.start(request)  # raises when a run is going: nothing of that run is touched
        self.current, self._run_engine = request, self.engine  # the run's database, whatever is opened meanwhile
        self._loss_count, self._val, self._stored, self._val_text = 0, {}, [], ""
        self._step_times.clear()
        self._last_step = None
        self._show_curves(self._task_of(request))
        self._dirty = True
        self.log_view.clear()
        self.status.setText(f"Starting {request.name}…")
        self.settings_toggle.setChecked(False)  # the curves get the room; the toggle brings the form back
        self._set_running(True)

    @staticmethod
    def _task_of(request: TrainRequest | None) -> str:
        return getattr(request, "task", "avvp") if request is not None else "avvp"

    def _show_curves(self, task: str) -> None:
        """The val plot for a task: parsing's ten F1 numbers, or segmentation's mIoU and F-score."""
        if task == self._curves_task:
            return
        self._curves_task = task
        avs = task == "avs"
        for curve in self.val_curves.values():
            curve.setVisible(not avs)
            curve.setData([], [])
        for curve in self.avs_curves.values():
            curve.setVisible(avs)
            curve.setData([], [])
        self.val_legend.clear()
        if avs:
            self.val_legend.setColumnCount(len(AVS_CURVES))
            for key, title in AVS_CURVES:
                self.val_legend.addItem(self.avs_curves[key], title)
            self.val_plot.setLabel("left", "val %")
            self.val_plot.setTitle("val mIoU and F-score %", size="8pt")
        else:
            self.val_legend.setColumnCount(len(KEYS))
            for key in KEYS:
                self.val_legend.addItem(self.val_curves[(LEVELS[0], key)], SHORT_TITLES[key])
            self.val_plot.setLabel("left", "val F1 %")
            self.val_plot.setTitle("val F1 %: segment solid, event dashed", size="8pt")

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
            if val and self._task_of(self.current) == "avs":
                for key, _ in AVS_CURVES:
                    if val.get(key) is not None:
                        self._val.setdefault(("avs", key), []).append((int(event["epoch"]), float(val[key])))
                self._val_text = event.get("val_text") or _avs_scores("val", val)
                self._dirty = True
            elif val:
                for level in LEVELS:
                    for key in KEYS:
                        self._val.setdefault((level, key), []).append((int(event["epoch"]), val[level][key]))
                self._dirty = True
        elif kind == "predicted":
            self._stored.append(event["split"])
        elif kind == "end" and not event.get("stopped"):
            test = event.get("test")
            if self._task_of(self.current) == "avs":
                score = f", {_avs_scores('test', test, 1)}" if test else ", no test ground truth"
            else:
                score = f", test segment Type@AV {test['segment']['type']:.2f}" if test else ""
            self.status.setText(f"{self.current.name}: best epoch {event.get('best_epoch')}{score}; predicting…")

    def _progress_text(self, event: dict) -> None:
        (t0, s0), (t1, s1) = self._step_times[0], self._step_times[-1]
        rate = (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0
        last_val = f"; {self._val_text}" if self._val_text else ""
        self.status.setText(
            f"{self.current.name} on {self._run_device}: epoch {event['epoch']}/{self._epochs}, step "
            f"{event['step']}/{event['steps']}, loss {event.get('loss') or 0:.4f}, ETA {'?' if event.get('eta') is None else format_duration(float(event['eta']))}, "
            f"{rate * self._batch:.0f} clips/s{last_val}")

    def _redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        if self._last_step is not None and self.current is not None:
            self._progress_text(self._last_step)
            self._last_step = None
        self.loss_curve.setData(self._loss[0, :self._loss_count], self._loss[1, :self._loss_count])
        curves = ({("avs", k): c for k, c in self.avs_curves.items()} if self._curves_task == "avs"
                  else self.val_curves)
        for key, curve in curves.items():
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
        avs = self._task_of(request) == "avs"
        if status == "finished":
            what = "masks" if avs else "predictions"
            stored = f"; {what} of {', '.join(self._stored)} stored as prediction:{name}" if self._stored else ""
            self.status.setText(f"<b>{name} finished</b>{stored}")
        elif status == "stopped":
            self.status.setText(f"<b>{name} stopped</b>: the best checkpoint so far is kept; Resume continues it")
        else:
            self.status.setText(f"<span style='color:#e5534b'><b>{name} {status}</b> (exit code {code})</span>; the "
                                "log's last lines are below")
            self.log_view.setPlainText(tail)
        self._set_running(False)
        shown_here = self._stored and engine is self.engine  # not when another database was opened meanwhile
        if avs and shown_here:
            self.masks_stored.emit(request.subset, f"prediction:{name}")
        self.run_finished.emit(status, f"prediction:{name}" if shown_here else "")
