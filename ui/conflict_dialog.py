"""Someone else changed what you just edited: show both versions, let the person choose."""
from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from annotation.store import ReviewState, TrackState
from ui.session import Conflict
from ui.timeline import TrackTimeline


class ConflictDialog(QDialog):
    """exec() returns Accepted for 'keep mine', Rejected for 'use theirs'."""

    def __init__(self, conflict: Conflict, weak: tuple[int, ...], fallback=None, parent: QWidget | None = None,
                 history: Callable[[], object] | None = None):
        super().__init__(parent)
        self.setWindowTitle("Changed by someone else")
        self.conflict = conflict
        intro = QLabel(
            f"<b>{conflict.message}.</b><br>Nothing was overwritten. Choose the version to keep; "
            "the other one stays in the edit history."
        )
        intro.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setSpacing(12)
        layout.addWidget(intro)
        if conflict.track is None:
            mine_status, mine_note = conflict.mine
            theirs: ReviewState = conflict.theirs
            layout.addWidget(QLabel(f"Yours: {mine_status.replace('_', ' ')}" + (f" — {mine_note}" if mine_note else "")))
            layout.addWidget(QLabel(f"Theirs ({theirs.annotator or 'unknown'}): {theirs.status.replace('_', ' ')}"
                                    + (f" — {theirs.note}" if theirs.note else "")))
        else:
            theirs_state: TrackState = conflict.theirs
            mine = conflict.mine if conflict.mine is not None else fallback
            theirs_grid = theirs_state.grid if theirs_state.exists else fallback
            row = QHBoxLayout()
            for title, grid in ((f"Yours ({conflict.track})", mine),
                                (f"Theirs: version {theirs_state.version} by {theirs_state.updated_by or 'unknown'}",
                                 theirs_grid)):
                column = QVBoxLayout()
                column.setAlignment(Qt.AlignmentFlag.AlignTop)
                column.addWidget(QLabel(f"<b>{title}</b>"))
                view = TrackTimeline(conflict.track, editable=False)
                view.set_clip(weak, grid, {})
                view.setMinimumWidth(380)
                column.addWidget(view)
                row.addLayout(column)
            layout.addLayout(row)
        layout.addStretch(1)
        buttons = QDialogButtonBox()
        self.keep_mine = buttons.addButton("Keep mine", QDialogButtonBox.ButtonRole.AcceptRole)
        self.use_theirs = buttons.addButton("Use theirs", QDialogButtonBox.ButtonRole.RejectRole)
        if history is not None:  # every version of the clip, who saved it and when (view only here)
            self.history_button = buttons.addButton("Edit history…", QDialogButtonBox.ButtonRole.HelpRole)
            self.history_button.clicked.connect(history)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
