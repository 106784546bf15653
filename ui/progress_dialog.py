"""A modal-less progress dialog for a BackgroundTask: stage, bar, ETA, Cancel."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QMessageBox, QProgressBar, QVBoxLayout, QWidget

from ui.workers import BackgroundTask


class TaskProgressDialog(QDialog):
    def __init__(self, task: BackgroundTask, parent: QWidget | None = None):
        super().__init__(parent)
        self.task = task
        self.result = None
        self.outcome = "running"
        self.setWindowTitle(task.title)
        self.setMinimumWidth(420)
        self.stage = QLabel("Starting…")
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)
        self.eta = QLabel("")
        self.eta.setAlignment(Qt.AlignmentFlag.AlignRight)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        buttons.rejected.connect(self._cancel)
        layout = QVBoxLayout(self)
        layout.addWidget(self.stage)
        layout.addWidget(self.bar)
        layout.addWidget(self.eta)
        layout.addWidget(buttons)
        task.progressed.connect(self._on_progress)
        task.succeeded.connect(self._on_success)
        task.failed.connect(self._on_failure)
        task.cancelled.connect(self._on_cancelled)

    def start(self) -> None:
        self.task.start()

    def _on_progress(self, stage: str, done: int, total: int, eta: float) -> None:
        self.stage.setText(f"{stage}: {done:,} / {total:,}")
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(done)
        self.eta.setText(f"about {eta:.0f} s left" if eta >= 0 else "")

    def _cancel(self) -> None:
        self.stage.setText("Cancelling…")
        self.task.cancel()

    def _on_success(self, result) -> None:
        self.result, self.outcome = result, "done"
        self.accept()

    def _on_failure(self, message: str) -> None:
        self.outcome = "failed"
        QMessageBox.critical(self, f"{self.task.title} failed", message)
        self.reject()

    def _on_cancelled(self) -> None:
        self.outcome = "cancelled"
        self.reject()

    def done(self, result: int) -> None:
        # The task reports as its last act; let its thread end before this dialog (and, with it,
        # often the last reference to the task) goes away: destroying a running QThread aborts.
        if self.task.isRunning():
            self.task.wait(30000)
        super().done(result)

    def reject(self) -> None:
        if self.task.isRunning() and self.outcome == "running":
            self._cancel()  # closing the dialog cancels; the task reports back and closes it
            return
        super().reject()
