"""Runs side by side: the ten AVVP numbers of every recorded run (val or test), and per-class
segment F1 bars of the runs selected in the table (test split, audio or visual)."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QTableWidget, QTableWidgetItem,
    QVBoxLayout, QWidget,
)

from annotation.runs import RunRecord
from annotation.taxonomy import DISPLAY_NAMES, NUM_CLASSES
from inference.metrics import KEYS, LEVELS, SHORT_TITLES

BAR_COLOURS = ("#3d8bfd", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2")


class RunsDialog(QDialog):
    def __init__(self, runs: list[RunRecord], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Training runs")
        self.runs = [r for r in runs if r.task == "avvp"]  # the ten AVVP numbers; `avvp-studio runs` lists all
        self.others = len(runs) - len(self.runs)
        self.split = QComboBox()
        self.split.addItem("test", "test")
        self.split.addItem("val (selected the checkpoint)", "val")
        self.track = QComboBox()
        self.track.addItem("audio", "audio")
        self.track.addItem("visual", "visual")
        head = ["run", "model", "status", "best"] + [f"{lv[:3]} {SHORT_TITLES[k]}" for lv in LEVELS for k in KEYS]
        self.table = QTableWidget(len(self.runs), len(head))
        self.table.setHorizontalHeaderLabels(head)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.bars = pg.PlotWidget()
        self.bars.setLabel("left", "segment F1 %")
        self.bars.setMinimumHeight(220)
        self.legend = self.bars.addLegend(offset=(4, 4))
        self.note = QLabel("")
        self.note.setWordWrap(True)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Numbers of"))
        controls.addWidget(self.split)
        controls.addSpacing(12)
        controls.addWidget(QLabel("Per-class bars (test), track"))
        controls.addWidget(self.track)
        controls.addStretch(1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.note)
        layout.addWidget(self.bars, 1)
        layout.addWidget(buttons)
        self.resize(1100, 640)
        self.split.currentIndexChanged.connect(self._fill)
        self.track.currentIndexChanged.connect(self._draw_bars)
        self.table.itemSelectionChanged.connect(self._draw_bars)
        self._fill()
        if self.runs:
            self.table.selectRow(0)

    def _fill(self) -> None:
        split = self.split.currentData()
        for row, run in enumerate(self.runs):
            scores = (run.metrics or {}).get(split)
            cells = [run.name, run.model, run.status, str(run.best_epoch or "—")]
            cells += [f"{scores[lv][k]:.2f}" if scores else "—" for lv in LEVELS for k in KEYS]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col >= 3:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if col == 0:
                    item.setToolTip(f"{run.run_dir}\nstarted {run.started_at.astimezone():%Y-%m-%d %H:%M} by "
                                    f"{run.started_by or '?'}" + (f"\n{run.message}" if run.message else ""))
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()

    def selected_runs(self) -> list[RunRecord]:
        return [self.runs[i.row()] for i in self.table.selectionModel().selectedRows()]

    def _draw_bars(self) -> None:
        self.bars.clear()
        self.legend.clear()
        track = self.track.currentData()
        chosen = [r for r in self.selected_runs() if ((r.metrics or {}).get("per_class") or {}).get(track)]
        chosen = chosen[:len(BAR_COLOURS)]
        if not chosen:
            others = (f" ({self.others} segmentation run(s) not shown: `avvp-studio runs` lists them with their mIoU)"
                      if self.others else "")
            self.note.setText(f"Select runs with a test split scored to compare their per-class F1.{others}")
            return
        width = 0.8 / len(chosen)
        x = np.arange(NUM_CLASSES, dtype=float)
        for k, run in enumerate(chosen):
            values = np.array([v if v is not None else 0.0 for v in run.metrics["per_class"][track]], float)
            bars = pg.BarGraphItem(x=x - 0.4 + width * (k + 0.5), height=values, width=width,
                                   brush=BAR_COLOURS[k], pen=pg.mkPen(None), name=run.name)
            self.bars.addItem(bars)
            self.legend.addItem(bars, run.name)
        axis = self.bars.getAxis("bottom")
        axis.setTicks([[(i, DISPLAY_NAMES[i][:10]) for i in range(NUM_CLASSES)]])
        self.note.setText(f"Per-class segment F1 on test, {track}: {', '.join(r.name for r in chosen)} "
                          "(classes neither in the truth nor predicted show 0).")
