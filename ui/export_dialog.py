"""Export dialog: the options of `avvp-studio export labels`, run in the background."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLineEdit, QPushButton, QWidget,
)
from sqlalchemy import Engine

from annotation.exporter import ExportReport, available_sources, export_labels
from ui.progress_dialog import TaskProgressDialog
from ui.workers import BackgroundTask


class ExportDialog(QDialog):
    def __init__(self, engine: Engine, default_dir: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.engine = engine
        self.report: ExportReport | None = None
        self.setWindowTitle("Export labels")
        self.setMinimumWidth(520)
        self.source = QComboBox()
        for source in available_sources(engine):
            label = "best (manual where edited, else pseudo)" if source == "best" else source
            self.source.addItem(label, source)
        self.source.setToolTip("Which labels to export; 'best' is what training should use")
        self.split = QComboBox()
        for split in ("all", "train", "val", "test"):
            self.split.addItem(split, split)
        self.out = QLineEdit(default_dir)
        self.out.setPlaceholderText("Output folder")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.out, 1)
        row.addWidget(browse)
        form = QFormLayout(self)
        form.addRow("Labels", self.source)
        form.addRow("Split", self.split)
        form.addRow("Folder", row)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        self.buttons.accepted.connect(self.run_export)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export to folder", self.out.text() or str(Path.home()))
        if folder:
            self.out.setText(folder)

    def options(self) -> tuple[str, str, str]:
        return self.source.currentData(), self.split.currentData(), self.out.text().strip()

    def make_task(self) -> BackgroundTask:
        source, split, out = self.options()
        return BackgroundTask(lambda progress: export_labels(self.engine, out, source, split, progress),
                              "Export labels", self)

    def run_export(self) -> None:
        if not self.options()[2]:
            self.out.setFocus()
            self.out.setPlaceholderText("Choose an output folder first")
            return
        dialog = TaskProgressDialog(self.make_task(), self)
        dialog.start()
        dialog.exec()
        if dialog.outcome == "done":
            self.report = dialog.result
            self.accept()
