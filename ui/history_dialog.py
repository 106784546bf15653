"""The edit history of one clip: who changed what when, each version previewed, and any one
restored as a new, undoable edit (the history itself is never rewritten)."""
from __future__ import annotations

import json
from typing import Callable

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView, QDialog, QDialogButtonBox, QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout,
    QWidget,
)

from annotation.history import describe, grid_of
from annotation.store import ClipRecord, EditRecord, LabelStore
from ui.timeline import TrackTimeline

Restore = Callable[[EditRecord], None]


class HistoryDialog(QDialog):
    """Newest edit first. `restore` (None: view only, e.g. from the conflict dialog while a choice
    is pending) is called with the chosen edit; the dialog then closes."""

    def __init__(self, store: LabelStore, clip: ClipRecord, restore: Restore | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(f"Edit history · {clip.filename}")
        self.store, self.clip, self._restore = store, clip, restore
        self.edits = list(reversed(store.history(clip.id)))
        self.table = QTableWidget(len(self.edits), 3)
        self.table.setHorizontalHeaderLabels(["When", "Who", "Change"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.pseudo = pseudo = {t: store.track(clip.id, t, "pseudo").grid for t in ("audio", "visual")}
        for row, edit in enumerate(self.edits):
            baseline = pseudo.get(edit.track) if edit.source == "manual" else None
            for col, text in enumerate((f"{edit.at.astimezone():%Y-%m-%d %H:%M:%S}", edit.annotator or "unknown",
                                        describe(edit, baseline=baseline))):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        self.caption = QLabel("" if self.edits else "No edit of this clip yet: it shows its pseudo-labels.")
        self.caption.setWordWrap(True)
        self.previews = {track: TrackTimeline(track, editable=False) for track in ("audio", "visual")}
        for preview in self.previews.values():
            preview.setMinimumHeight(160)
            preview.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.restore_button = buttons.addButton("Restore this version", QDialogButtonBox.ButtonRole.ActionRole)
        self.restore_button.setToolTip("Make the selected version current again (a new edit: Ctrl+Z takes it back)")
        self.restore_button.setVisible(restore is not None)
        self.restore_button.setEnabled(False)
        self.restore_button.clicked.connect(self._on_restore)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 2)
        layout.addWidget(self.caption)
        for preview in self.previews.values():
            layout.addWidget(preview, 1)
        layout.addWidget(buttons)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.resize(820, 560)
        if self.edits:
            self.table.selectRow(0)

    def selected(self) -> EditRecord | None:
        rows = self.table.selectionModel().selectedRows()
        return self.edits[rows[0].row()] if rows else None

    def _on_selection(self) -> None:
        edit = self.selected()
        if edit is None:
            self.restore_button.setEnabled(False)
            return
        if edit.kind == "review":
            after = json.loads(edit.after or "{}")
            self.caption.setText(f"Review set to <b>{after.get('status', '?').replace('_', ' ')}</b>"
                                 + (f" · note: {after['note']}" if after.get("note") else ""))
            for preview in self.previews.values():
                preview.hide()
        else:
            grid = self.version_grid(edit)
            shown = "the pseudo-label (no manual labels)" if edit.after is None else "this version"
            self.caption.setText(f"<b>{edit.track}</b> labels after this edit: {shown}")
            for track, preview in self.previews.items():
                preview.setVisible(track == edit.track)
            self.previews[edit.track].set_clip(self.clip.weak, grid, {})
        self.restore_button.setEnabled(edit.source in (None, "manual"))

    def version_grid(self, edit: EditRecord) -> np.ndarray:
        """The grid the clip showed on `edit.track` right after `edit`."""
        grid = grid_of(edit.after)
        return grid if grid is not None else self.pseudo[edit.track]

    def _on_restore(self) -> None:
        edit = self.selected()
        if edit is not None and self._restore is not None:
            self._restore(edit)
            self.accept()

    def keyPressEvent(self, event) -> None:  # noqa: N802 (Qt name): Return restores, as the button
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.restore_button.isEnabled() \
                and self.restore_button.isVisible():
            self._on_restore()
            return
        super().keyPressEvent(event)
