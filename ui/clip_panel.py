"""Clip header: id, split, weak-label chips, review status, note, and the review buttons."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from annotation.presence import STALE_SECONDS
from annotation.store import ClipRecord, ReviewState
from annotation.taxonomy import COLOURS, DISPLAY_NAMES

STATUS_COLOURS = {"pending": "#8c959f", "annotated": "#2fbf71", "out_of_taxonomy": "#d98e04", "skipped": "#6e7bff"}


HELP = (
    "<b>Click a cell to toggle it, drag to paint.</b> <b>Keys</b> · Space play/pause · ←/→ segment · Shift+←/→ select · ↑/↓ class · Tab audio/visual · "
    "class keys (shown beside each row) toggle that class on the segment or selection · Return toggle cursor · "
    "Ctrl+D copy row to the other track · Ctrl+Z / Ctrl+Shift+Z undo/redo · F1 all shortcuts"
)


def chip_html(index: int) -> str:
    return (f"<span style='background:{COLOURS[index]};color:#111;border-radius:4px;padding:1px 6px'>"
            f"&nbsp;{DISPLAY_NAMES[index]}&nbsp;</span>")


class ClipPanel(QFrame):
    action_requested = Signal(str)  # accept | out_of_taxonomy | skip | note | history | prev_clip | next_clip

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel("No clip selected")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.25)
        font.setBold(True)
        self.title.setFont(font)
        self.meta = QLabel("")
        self.weak = QLabel("")
        self.weak.setWordWrap(True)
        self.status = QLabel("")
        self.presence = QLabel("")
        self.presence.setToolTip(f"Other windows with this clip open (seen in the last {STALE_SECONDS:g} s); saves "
                                 "are still checked: a change made meanwhile is shown, never overwritten")
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setEnabled(False)
        self.help = QLabel(HELP)
        self.help.setWordWrap(True)
        self.help.setEnabled(False)
        self.buttons: dict[str, QPushButton] = {}
        row, second = QHBoxLayout(), QHBoxLayout()  # two rows: the panel fits a 1280-pixel screen
        row.setSpacing(6)
        second.setSpacing(6)
        for action, text, tip in (
            ("prev_clip", "◀", "Previous clip (PgUp)"),
            ("accept", "✓ Accept", "Mark annotated and go to the next clip (Ctrl+Return)"),
            ("out_of_taxonomy", "⊘ Out of taxonomy", "The visual content is none of the 25 classes; excluded from CMRC (Ctrl+T)"),
            ("skip", "↷ Skip", "Mark skipped and go on (Ctrl+K)"),
            ("note", "✎ Note", "Write a note on this clip (Ctrl+N)"),
            ("history", "History", "Who changed this clip when; restore a version (Ctrl+Shift+H)"),
            ("next_clip", "▶", "Next clip (PgDown)"),
        ):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(lambda _=False, a=action: self.action_requested.emit(a))
            (second if action in ("skip", "note", "history") else row).addWidget(button)
            self.buttons[action] = button
        self.buttons["accept"].setDefault(True)
        row.addStretch(1)
        second.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.setSpacing(6)
        layout.addWidget(self.title)
        layout.addWidget(self.meta)
        layout.addWidget(self.weak)
        layout.addWidget(self.status)
        layout.addWidget(self.presence)
        layout.addWidget(self.note)
        layout.addStretch(1)
        layout.addWidget(self.help)
        layout.addLayout(row)
        layout.addLayout(second)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.set_enabled(False)

    def set_enabled(self, enabled: bool) -> None:
        for button in self.buttons.values():
            button.setEnabled(enabled)

    def show_clip(self, clip: ClipRecord, review: ReviewState, edited: dict[str, bool]) -> None:
        self.title.setText(clip.filename)
        changed = [t for t, e in edited.items() if e]
        self.meta.setText(f"{clip.split} · video id {clip.video_id} · "
                          + (f"edited: {', '.join(changed)}" if changed else "unedited (pseudo-labels shown)"))
        self.weak.setText("Weak label: " + " ".join(chip_html(i) for i in clip.weak))
        self.show_review(review)
        self.set_enabled(True)

    def show_empty(self, message: str) -> None:
        """No clip on screen: what the list says, and what to do next."""
        self.title.setText("No clip in this list")
        self.meta.setText(message)
        for label in (self.weak, self.status, self.presence, self.note):
            label.setText("")
        self.set_enabled(False)

    def show_presence(self, others: list[str]) -> None:
        self.presence.setText(f"<span style='color:#d98e04'>●</span> Also open by {', '.join(others)}"
                              if others else "")

    def show_review(self, review: ReviewState) -> None:
        colour = STATUS_COLOURS.get(review.status, "#8c959f")
        who = f" by {review.annotator}" if review.annotator else ""
        when = f" · {review.updated_at.astimezone():%Y-%m-%d %H:%M}" if review.updated_at else ""
        self.status.setText(f"<span style='color:{colour}'>●</span> {review.status.replace('_', ' ')}{who}{when}")
        self.note.setText(f"Note: {review.note}" if review.note else "")
