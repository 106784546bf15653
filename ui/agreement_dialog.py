"""Inter-annotator agreement in the window: Cohen's kappa per class for one pair and track, the
same numbers as `avvp-studio agreement` (computed off the GUI thread: it reads the edit history)."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QDialog, QDialogButtonBox, QHBoxLayout, QHeaderView, QLabel, QTableWidget,
    QTableWidgetItem, QVBoxLayout, QWidget,
)
from sqlalchemy import Engine

from annotation.agreement import PairAgreement, agreement
from annotation.store import TRACKS
from annotation.taxonomy import CLASSES, DISPLAY_NAMES
from ui.workers import BackgroundTask


class AgreementDialog(QDialog):
    def __init__(self, engine: Engine, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Inter-annotator agreement")
        self.reports: list[PairAgreement] = []
        self.pair = QComboBox()
        self.track = QComboBox()
        for track in TRACKS:
            self.track.addItem(track, track)
        self.summary = QLabel("Reading the edit history…")
        self.summary.setWordWrap(True)
        self.table = QTableWidget(len(CLASSES) + 1, 5)
        self.table.setHorizontalHeaderLabels(["Class", "Kappa", "Agreement", "Cells A", "Cells B"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        row = QHBoxLayout()
        row.addWidget(QLabel("Pair"))
        row.addWidget(self.pair, 1)
        row.addWidget(QLabel("Track"))
        row.addWidget(self.track)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self.resize(620, 720)
        self.pair.currentIndexChanged.connect(self._show)
        self.track.currentIndexChanged.connect(self._show)
        self.task = BackgroundTask(lambda _progress: agreement(engine), "agreement", self)
        self.task.succeeded.connect(self._loaded)
        self.task.failed.connect(lambda text: self.summary.setText(f"Could not read the edit history: {text}"))
        self.task.start()

    def done(self, result: int) -> None:  # closing while the history is read: let the read end first
        self.task.wait()
        super().done(result)

    def _loaded(self, reports: list[PairAgreement]) -> None:
        self.reports = reports
        pairs = sorted({r.annotators for r in reports})
        self.pair.blockSignals(True)
        for first, second in pairs:
            self.pair.addItem(f"{first} vs {second}", (first, second))
        self.pair.blockSignals(False)
        if not pairs:
            self.summary.setText("No clip was labelled by two annotators yet: agreement needs clips that two "
                                 "people saved manual labels for.")
            return
        self._show()

    def _show(self) -> None:
        pair, track = self.pair.currentData(), self.track.currentData()
        if pair is None:  # no pair at all: the explanation stays
            return
        report = next((r for r in self.reports if r.annotators == pair and r.track == track), None)
        if report is None:
            self.summary.setText(f"{pair[0]} and {pair[1]} share no clip with {track} labels." if pair else "")
            self.table.clearContents()
            return
        overall = report.kappa["all"]
        self.summary.setText(f"<b>{report.clips}</b> clip(s) both labelled · kappa over all classes "
                             f"<b>{'—' if overall is None else f'{overall:.3f}'}</b> · per class below (— : "
                             "undefined, both marked the class the same way everywhere). Whoever came second "
                             "started from the first one's labels: these are upper bounds of independent agreement.")
        for row, name in enumerate((*CLASSES, "all")):
            kappa = report.kappa[name]
            cells = (DISPLAY_NAMES[row] if name != "all" else "All classes",
                     "—" if kappa is None else f"{kappa:.3f}", f"{100 * report.observed[name]:.1f}%",
                     str(report.positives[name][0]), str(report.positives[name][1]))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)
