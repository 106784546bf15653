"""Model > Generate pseudo-labels…: a named set of segment pseudo-labels for the database's clips, made in a
separate process and stored as the label source 'pseudo:<name>'.

The form (method, set name, thresholds or generator run, device, data folder) becomes one
`avvp-studio pseudo-label --data DIR --method M --name NAME ... --db URL --events` process, started by
the same runner as training (ui/training_runner.ProcessRunner: SIGINT on cancel, then SIGTERM and
SIGKILL after the grace; the log's tail when it fails). Its JSON-lines events drive the progress bar
(stage, done/total, an ETA from the stage's own rate) and, at the end, a summary: clips written and
stored, and the quality per split from the "done" event. Those quality figures score labels that are
gated by each clip's weak (video-level) label: training targets, not a parser's result; the summary
says so. `source_stored` tells the window, which shows the new source in the timelines' picker.

Closing the dialog while it works only hides it (Model > Generate pseudo-labels… brings it back);
Cancel stops the process, and the command stores nothing then.
"""
from __future__ import annotations

import html
import json
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QProcess, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from annotation.files import present
from annotation.importer import data_folders
from annotation.models import LabelTrack
from annotation.store import validate_source
from inference.callbacks import format_duration
from inference.metrics import KEYS, LEVELS, SHORT_TITLES
from ui import training_panel
from ui.training_runner import CommandRequest, ProcessRunner

METHODS = (("Zero-shot (VALOR: CLIP/CLAP caption similarity)", "zero-shot"), ("EAR generator", "ear"))
THRESHOLDS = (("automatic (VALOR's with real encoders, else val)", None), ("VALOR's per-class thresholds", "valor"),
              ("calibrated per class on val (val quality optimistic)", "val"), ("from a file…", "file"))
SOURCE_PREFIX = "pseudo:"
ERROR_COLOUR = "#e5534b"
GATED_NOTE = ("Quality of the labels against the dense truth, F1 %. They are gated by each clip's",
              "weak (video-level) label: training targets, not a parser's result (a parser never",
              "sees the weak label of a val/test clip).")  # lines: the summary label does not wrap


def check_set_name(name: str) -> str:
    """`name` if 'pseudo:<name>' is a source the store accepts (the run-name rule), else a ValueError saying the
    rule (the GUI process does not import inference.pseudo_sets: it brings torch)."""
    try:
        validate_source(SOURCE_PREFIX + name)
    except ValueError:
        raise ValueError(f"set name {name!r}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or "
                         "digit") from None
    return name


@dataclass
class PseudoRequest(CommandRequest):
    """One `avvp-studio pseudo-label` run; `program` is what runs avvp-studio (None: this Python's
    `-m app.main`; tests put a stand-in there)."""

    what = "pseudo-labelling"

    data: str
    db: str
    name: str
    method: str = "zero-shot"  # zero-shot | ear
    thresholds: str | None = None  # zero-shot: valor | val | a thresholds file (None: the command's automatic one)
    generator: str | None = None  # ear: the generator's run folder (avvp-studio ear pretrain --out)
    device: str = "auto"  # ear: auto | cpu | cuda | cuda:N (zero-shot is a few matrix products on the CPU)
    annotator: str | None = None
    program: tuple[str, ...] | None = None
    extra: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        return SOURCE_PREFIX + self.name

    def argv(self, python: str = sys.executable) -> list[str]:
        args = ["pseudo-label", "--data", self.data, "--method", self.method, "--name", check_set_name(self.name)]
        if self.method == "zero-shot":
            args += ["--thresholds", self.thresholds] if self.thresholds else []
        elif self.method == "ear":
            if not self.generator:
                raise ValueError("the EAR method needs the generator's run folder (avvp-studio ear pretrain --out)")
            args += ["--generator", self.generator, "--device", self.device]
        else:
            raise ValueError(f"method {self.method!r}; expected zero-shot or ear")
        args += ["--db", self.db, "--events"]
        if self.annotator:
            args += ["--annotator", self.annotator]
        program = list(self.program) if self.program else [python, "-m", "app.main"]
        return [*program, *args, *self.extra]


def stored_pseudo_sources(engine: Engine) -> set[str]:
    """The generated pseudo sources the database holds ('pseudo:<name>'); empty when it cannot be read."""
    t = LabelTrack.__table__
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(t.c.source).where(t.c.source.like(SOURCE_PREFIX + "%")).distinct()).all()
    except SQLAlchemyError:
        return set()
    return {r[0] for r in rows}


def read_report(out: str | None) -> dict:
    """The set's report (OUT/pseudo_labels.json, a few kB) for how its thresholds were chosen; {} if unreadable."""
    try:
        report = json.loads((Path(out) / "pseudo_labels.json").read_text(encoding="utf-8")) if out else {}
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def quality_html(quality: dict | None, optimistic: tuple[str, ...] = ()) -> str:
    """The "done" event's quality ({split: {level: {key: F1 %}}}) as a small table; splits without numbers
    are named as such, and the `optimistic` ones (they chose the thresholds) marked."""
    if not isinstance(quality, dict) or not quality:
        return "No quality figures (no dense truth for val or test in this data)."
    head = "".join(f"<th>&nbsp;{SHORT_TITLES[k]}&nbsp;</th>" for k in KEYS)
    rows = []
    order = ("train", "val", "test")
    for split, scores in sorted(quality.items(), key=lambda item: (order.index(item[0]) if item[0] in order else 3)):
        if not isinstance(scores, dict) or not any(isinstance(scores.get(level), dict) for level in LEVELS):
            if split in ("val", "test", "train"):
                rows.append(f"<tr><td>{html.escape(split)}</td><td colspan={len(KEYS)}>no truth</td></tr>")
            continue
        for level in LEVELS:
            values = scores.get(level) or {}
            cells = "".join(f"<td align=right>&nbsp;&nbsp;{values[k]:.2f}</td>"
                            if isinstance(values.get(k), (int, float)) else "<td align=right>–</td>" for k in KEYS)
            mark = "*" if split in optimistic else ""
            rows.append(f"<tr><td>{html.escape(split)}{mark} {level}&nbsp;</td>{cells}</tr>")
    if not rows:
        return "No quality figures (no dense truth for val or test in this data)."
    footnote = (f"* {', '.join(optimistic)} chose the thresholds: optimistic<br>" if optimistic else "")
    return f"<table cellspacing=0 cellpadding=2><tr><th></th>{head}</tr>{''.join(rows)}</table>{footnote}"


class PseudoLabelDialog(QDialog):
    """The form, the progress and the summary of one generation at a time."""

    source_stored = Signal(str)  # 'pseudo:<name>', once the process stored the set in this database

    def __init__(self, engine: Engine, db: str, annotator: str | None = None, parent: QWidget | None = None,
                 folders: list[str] | None = None):
        super().__init__(parent)
        self.setWindowTitle("Generate pseudo-labels")
        self.setMinimumWidth(560)
        self.engine, self.db, self.annotator = engine, db, annotator
        self.program: tuple[str, ...] | None = None  # what runs avvp-studio (None: this Python's -m app.main)
        self.current: PseudoRequest | None = None
        self.runner = ProcessRunner(self)
        self.runner.events.connect(self._on_events)
        self.runner.finished.connect(self._on_finished)
        self.last_done: dict | None = None
        self.last_status: str | None = None
        self._stage: tuple[str, float, int] | None = None  # (stage, its start time, done then)
        self._existing: set[str] = set()
        self._finder: QProcess | None = None
        self._build()
        self.set_database(engine, db, annotator, folders)

    # ---------------------------------------------------------------- layout
    def _build(self) -> None:
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.method = QComboBox()
        for title, method in METHODS:
            self.method.addItem(title, method)
        self.method.setToolTip("zero-shot: VALOR's labels from the CLIP/CLAP features and caption embeddings "
                               "(avvp-studio features) · ear: EAR's pseudo-label generator, pre-trained with "
                               "avvp-studio ear pretrain")
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. zs-valor")
        self.name.setToolTip("The set's name: stored as the label source pseudo:<name>; 1-64 letters, digits, "
                             "'.', '_' or '-'")
        self.name_note = QLabel("")
        self.thresholds = QComboBox()
        for title, value in THRESHOLDS:
            self.thresholds.addItem(title, value)
        self.thresholds.setToolTip("VALOR's thresholds as published (real CLIP/CLAP encoders), per-class thresholds "
                                   "calibrated on the val split (the report says so: val quality is then optimistic), "
                                   "or a JSON file {\"audio\": [25], \"visual\": [25]} in logit units")
        self.threshold_file = QLineEdit()
        self.threshold_file.setPlaceholderText("per-class thresholds file")
        file_row = training_panel.browse_row(self.threshold_file, self._browse_thresholds)[0]
        self.generator = QLineEdit()
        self.generator.setPlaceholderText("the run folder of avvp-studio ear pretrain --out RUN_DIR")
        generator_row = training_panel.browse_row(self.generator, self._browse_generator)[0]
        self.device = QComboBox()
        self.device.setToolTip("Where the EAR generator runs; auto: a GPU when the worker process finds one")
        self._set_devices([])
        self.folder = QComboBox()
        self.folder.setEditable(True)
        self.folder.setToolTip("The LLP-layout data folder with the features (the database's imported folders)")
        self.folder.lineEdit().setPlaceholderText("the LLP-layout folder with CLIP/ and CLAP/ features")
        folder_row = training_panel.browse_row(self.folder, self._browse_folder)[0]
        self._rows: dict[str, list[int]] = {"zero-shot": [], "ear": []}

        def add(title: str, widget, method: str | None = None) -> None:
            if method is not None:
                self._rows[method].append(form.rowCount())
            form.addRow(title, widget)

        add("Method", self.method)
        add("Set name", self.name)
        add("", self.name_note)
        add("Thresholds", self.thresholds, "zero-shot")
        add("Thresholds file", file_row, "zero-shot")
        self._file_row = form.rowCount() - 1
        add("Generator run", generator_row, "ear")
        add("Device", self.device, "ear")  # zero-shot runs on the CPU (a few matrix products)
        add("Data folder", folder_row)
        self.form = form

        self.stage = QLabel("")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.eta = QLabel("")
        self.eta.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.summary = QLabel("")  # not wrapped (its lines are set): the dialog's size follows it, nothing is clipped
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(400)
        self.log_view.setMinimumHeight(110)
        self.log_view.hide()
        self.start_button = QPushButton("Generate")
        self.start_button.setDefault(True)
        self.start_button.setToolTip("Start in a separate process; keep annotating meanwhile")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the process: nothing half-written, nothing stored")
        self.close_button = QPushButton("Close")
        self.close_button.setToolTip("Hide this dialog (a generation going on goes on; the menu brings it back)")
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for button in (self.start_button, self.cancel_button, self.close_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.stage)
        layout.addWidget(self.bar)
        layout.addWidget(self.eta)
        layout.addWidget(self.summary)
        layout.addWidget(self.log_view, 1)
        layout.addLayout(buttons)
        self.method.currentIndexChanged.connect(self._method_changed)
        self.thresholds.currentIndexChanged.connect(self._method_changed)
        self.name.textChanged.connect(self._name_changed)
        self._method_changed()
        self._set_running(False)

    def set_database(self, engine: Engine, db: str, annotator: str | None, folders: list[str] | None = None) -> None:
        """The database the set goes into, and its imported data folders to choose from (not while running)."""
        if self.runner.running():
            return
        self.engine, self.db, self.annotator = engine, db, annotator
        folders = data_folders(engine) if folders is None else folders
        keep = self.folder.currentText().strip()
        self.folder.clear()
        for folder in folders:
            self.folder.addItem(folder, folder)
        self.folder.setEditText(keep if keep and keep in folders else (folders[0] if folders else keep))
        self._existing = stored_pseudo_sources(engine)
        self._name_changed()

    # ---------------------------------------------------------------- form
    def _method_changed(self) -> None:
        method = self.method.currentData()
        for kind, rows in self._rows.items():
            for row in rows:
                self.form.setRowVisible(row, kind == method)
        if method == "zero-shot":
            self.form.setRowVisible(self._file_row, self.thresholds.currentData() == "file")
        if not self.name.text().strip():
            self.name.setPlaceholderText("e.g. zs-valor" if method == "zero-shot" else "e.g. ear")

    def _name_changed(self) -> None:
        name = self.name.text().strip()
        if not name:
            self.name_note.setText("")
            ok = False
        else:
            try:
                check_set_name(name)
                ok = True
            except ValueError as exc:
                self.name_note.setText(f"<span style='color:{ERROR_COLOUR}'>{html.escape(str(exc))}</span>")
                ok = False
            if ok:
                replaced = SOURCE_PREFIX + name in self._existing
                self.name_note.setText(f"stored as {SOURCE_PREFIX}{html.escape(name)}"
                                       + (" · replaces the stored set of that name" if replaced else ""))
        if not self.runner.running():
            self.start_button.setEnabled(ok and self.engine is not None)

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Data folder (LLP layout)", self.folder.currentText())
        if folder:
            self.folder.setEditText(folder)

    def _browse_generator(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "EAR generator run folder", self.generator.text())
        if folder:
            self.generator.setText(folder)

    def _browse_thresholds(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Per-class thresholds", self.threshold_file.text(),
                                              "Thresholds (*.json);;All files (*)")
        if path:
            self.threshold_file.setText(path)

    # ---------------------------------------------------------------- devices
    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.find_devices()

    def find_devices(self) -> None:
        """The CUDA devices of the worker's environment, asked of torch in a child process (importing torch
        here would hold the GUI thread), once per program: shared with the training panel's search."""
        if training_panel._DEVICES:
            self._set_devices(training_panel._DEVICES)
            return
        if self._finder is not None:
            return
        finder = self._finder = QProcess(self)
        finder.finished.connect(self._devices_found)
        finder.start(sys.executable, ["-c", training_panel.DETECT_DEVICES])

    def _devices_found(self, code: int, _status=None) -> None:
        finder, self._finder = self._finder, None
        try:
            out = bytes(finder.readAllStandardOutput()).decode("utf-8", "replace").strip()
        except RuntimeError:  # the dialog went first
            return
        try:
            choices = [tuple(c) for c in json.loads(out.splitlines()[-1])] if code == 0 and out else None
        except (json.JSONDecodeError, TypeError, ValueError, IndexError):
            choices = None
        finder.deleteLater()
        if choices is None:
            self.device.setToolTip("torch cannot load in this environment: the worker will fail the same way")
            return
        training_panel._DEVICES[:] = choices
        self._set_devices(choices)

    def _set_devices(self, choices) -> None:
        """auto and the CPU always; each CUDA device only when the search found one."""
        keep = self.device.currentData()
        self.device.clear()
        self.device.addItem("auto (a GPU when there is one)", "auto")
        self.device.addItem("CPU", "cpu")
        for label, device in choices:
            if str(device).startswith("cuda"):
                self.device.addItem(label, device)
        self.device.setCurrentIndex(max(self.device.findData(keep), 0))

    # ---------------------------------------------------------------- running
    def request(self) -> PseudoRequest:
        """What the form says, as a request; bad input is refused here, named (ValueError)."""
        name = check_set_name(self.name.text().strip())
        folder = self.folder.currentText().strip()
        if not folder:
            raise ValueError("choose the data folder (the LLP-layout folder with the CLIP/CLAP features)")
        if not present(Path(folder), "folder"):
            raise ValueError(f"data folder {folder}: no such folder")
        method = self.method.currentData()
        thresholds = generator = None
        if method == "zero-shot":
            thresholds = self.thresholds.currentData()
            if thresholds == "file":
                path = self.threshold_file.text().strip()
                if not path:
                    raise ValueError("choose the thresholds file, or VALOR's or val-calibrated thresholds")
                if not present(Path(path)):
                    raise ValueError(f"thresholds file {path}: no such file")
                thresholds = str(Path(path).resolve())
        else:
            path = self.generator.text().strip()
            if not path:
                raise ValueError("choose the EAR generator's run folder (avvp-studio ear pretrain --out RUN_DIR)")
            if not present(Path(path), "folder"):
                raise ValueError(f"generator run folder {path}: no such folder")
            generator = str(Path(path).resolve())
        return PseudoRequest(data=str(Path(folder).resolve()), db=self.db, name=name, method=method,
                             thresholds=thresholds, generator=generator, device=self.device.currentData() or "auto",
                             annotator=self.annotator, program=self.program)

    def start(self) -> bool:
        """Start what the form says; a refusal is shown in the dialog instead (False)."""
        try:
            self.launch(self.request())
        except ValueError as exc:
            self._say_error(str(exc))
            return False
        return True

    def launch(self, request: PseudoRequest) -> None:
        self.runner.start(request)  # raises when one is going: nothing of it is touched
        self.current, self.last_done, self.last_status, self._stage = request, None, None, None
        self.stage.setText(f"Starting {request.method} → {request.source}…")
        self.bar.setRange(0, 0)  # busy until the first progress event
        self.eta.setText("")
        self.summary.setText("")
        self.summary.setWordWrap(False)
        self.log_view.clear()
        self.log_view.hide()
        self._set_running(True)

    def cancel(self) -> None:
        if not self.runner.running():
            return
        self.runner.cancel()
        self.cancel_button.setEnabled(False)  # one SIGINT: a second one would abort instead of stopping
        self.stage.setText("Stopping… (nothing is stored)")

    def stop_for_quit(self) -> None:
        """The window is closing: stop the process, waited for."""
        self.runner.stop_now()

    def _set_running(self, running: bool) -> None:
        for widget in (self.method, self.name, self.thresholds, self.threshold_file, self.generator, self.device,
                       self.folder):
            widget.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.start_button.setEnabled(False)
        else:
            self._name_changed()

    def _say_error(self, text: str) -> None:
        self.summary.setWordWrap(True)  # a message of any length; the log below scrolls
        self.summary.setText(f"<span style='color:{ERROR_COLOUR}'>{html.escape(text)}</span>")

    # ---------------------------------------------------------------- events
    def _on_events(self, events: list[dict]) -> None:
        for event in events:
            kind = event.get("event")
            if kind == "start":
                self.stage.setText(f"{event.get('method', self.current.method)} → {self.current.source}: "
                                   f"{event.get('clips', '?')} clips")
            elif kind == "progress":
                self._progress(str(event.get("stage", "")), int(event.get("done") or 0), int(event.get("total") or 0))
            elif kind == "done":
                self.last_done = event
            elif kind == "error":
                self._say_error(str(event.get("message")))

    def _progress(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if self._stage is None or self._stage[0] != stage:
            self._stage = (stage, now, done)
        self.stage.setText(f"{stage}: {done:,} / {total:,}")
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(min(done, max(total, 1)))
        _, began, first = self._stage
        rate = (done - first) / (now - began) if now > began and done > first else 0.0
        self.eta.setText(f"about {format_duration((total - done) / rate)} left" if rate > 0 and total > done else "")

    def _on_finished(self, status: str, code: int, tail: str) -> None:
        request, self.current = self.current, None
        self.last_status = status
        self._set_running(False)
        self.eta.setText("")
        self._existing = stored_pseudo_sources(self.engine)
        self._name_changed()
        done = self.last_done
        if status == "finished" and done is not None:
            self.bar.setRange(0, 1)
            self.bar.setValue(1)
            self.stage.setText(f"{request.source} done")
            self.summary.setText(self._summary(request, done))
            if done.get("stored") is not None:
                self.source_stored.emit(request.source)
            return
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        if status == "stopped":
            self.stage.setText(f"{request.source}: stopped")
            self.summary.setText("Cancelled: nothing was stored (the command leaves no half-written set).")
            return
        said = self.summary.text()  # the process's own "error" message, when it gave one
        verdict = status if status != "finished" else "ended without a result"
        self.stage.setText(f"<span style='color:{ERROR_COLOUR}'><b>{html.escape(request.source)} {verdict}</b> "
                           f"(exit code {code})</span>")
        if not said:
            self.summary.setText(f"<span style='color:{ERROR_COLOUR}'>The process ended without a result; the "
                                 "log's last lines are below.</span>")
        self.log_view.setPlainText(tail)
        self.log_view.show()

    def _summary(self, request: PseudoRequest, done: dict) -> str:
        stored = done.get("stored")
        where = html.escape(str(done.get("out") or ""))
        report = read_report(done.get("out"))
        line = (f"<b>{done.get('written', '?')} clips written</b> to {where}<br>"
                + (f"<b>{stored} stored</b> as {html.escape(request.source)}: shown by the timelines' Pseudo layer "
                   "box" if stored is not None else "not stored in the database"))
        how = report.get("thresholds_note") or report.get("threshold_how")
        if how:  # the report's own words, in lines (the label does not wrap)
            line += "<br>" + "<br>".join(html.escape(part) for part in textwrap.wrap(f"thresholds: {how}", 84)[:4])
        optimistic = ("val",) if report.get("threshold_source") == "val" else ()
        note = "<br>".join(html.escape(part) for part in GATED_NOTE)
        return f"{line}<br>{quality_html(done.get('quality'), optimistic)}<i>{note}</i>"

    # ---------------------------------------------------------------- closing
    def reject(self) -> None:
        """Close hides the dialog; a generation going on goes on (its end still reaches the window)."""
        self.hide()
        super().reject()
