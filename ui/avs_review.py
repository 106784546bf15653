"""Accepting and rejecting predicted masks, frame by frame: undoable, stored at once.

Every decision is a QUndoCommand whose redo/undo call `annotation.avs_store.decide` right away with the
version this window last saw of that frame's 'reviewed' row. A stale version (someone else decided on the
frame meanwhile) changes nothing: the command leaves the undo stack and `conflict` says what happened, so
the window can show the frame as stored. Undo and redo of a frame that is not on screen bring it on
screen first (`show_requested`): a change is never made out of sight.
"""
from __future__ import annotations

import time

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack
from sqlalchemy import Engine

from annotation.avs_store import REVIEWED, MaskConflictError, MaskRow, decide, load_masks

Decision = tuple[str, str] | None  # (accepted | rejected, origin prediction source), None: undecided
WORDS = {"accepted": "Accept", "rejected": "Reject", None: "Clear decision on"}


class _DecisionCommand(QUndoCommand):
    def __init__(self, review: "MaskReview", clip_id: int, frame: int, before: Decision, after: Decision,
                 text: str):
        super().__init__(text)
        self.review, self.clip_id, self.frame, self.before, self.after = review, clip_id, frame, before, after
        self.generation = review.generation(clip_id, frame)
        self._done_once = False

    def _apply(self, value: Decision, other: Decision, verb: str) -> None:
        replay = self._done_once or verb == "Undid"
        if replay:
            self.review.show_requested.emit(self.clip_id, self.frame)
            if self.review.generation(self.clip_id, self.frame) != self.generation:
                self.review.stale(self.clip_id, self.frame, self.text())
                self.setObsolete(True)
                return
        origin = (value or other)[1]
        if not self.review.write(self.clip_id, self.frame, value, origin):
            self.setObsolete(True)
        elif replay:
            self.review.applied.emit(f"{verb}: {self.text()}")
        self._done_once = True

    def redo(self) -> None:
        self._apply(self.after, self.before, "Redid")

    def undo(self) -> None:
        self._apply(self.before, self.after, "Undid")


class MaskReview(QObject):
    """The decisions of one annotator in one window, with their undo stack."""

    changed = Signal(int, int)  # clip id, frame: its stored decision changed (or was found changed)
    conflict = Signal(int, int, str)  # clip id, frame, what happened (shown; the frame is read again)
    failed = Signal(str)  # a decision that cannot be stored (e.g. no predicted mask to accept)
    saved = Signal(str)  # status-bar text
    applied = Signal(str)  # what an undo/redo changed
    show_requested = Signal(int, int)  # clip id, frame: an undo/redo touches a frame not on screen

    def __init__(self, engine: Engine, annotator: str, parent: QObject | None = None):
        super().__init__(parent)
        self.engine = engine
        self.annotator = annotator
        self.undo_stack = QUndoStack(self)
        self._versions: dict[tuple[int, int], int] = {}  # 'reviewed' row versions last seen or written
        self._decisions: dict[tuple[int, int], Decision] = {}
        self._generations: dict[tuple[int, int], int] = {}  # bumped when a frame changed elsewhere

    # ---- what is stored ------------------------------------------------------------------
    def note(self, clip_id: int, frames: int, reviewed: dict[int, MaskRow]) -> None:
        """The clip's 'reviewed' rows as just read: a version that moved since this window last knew it
        was changed by someone else, so this window's undo entries of that frame become conflicts."""
        for frame in range(frames):
            row = reviewed.get(frame)
            version = row.version if row is not None else 0
            key = (clip_id, frame)
            if key in self._versions and self._versions[key] != version:
                self._generations[key] = self.generation(clip_id, frame) + 1
            self._versions[key] = version
            self._decisions[key] = (row.status, row.origin) if row is not None and row.status else None

    def generation(self, clip_id: int, frame: int) -> int:
        return self._generations.get((clip_id, frame), 0)

    def decision(self, clip_id: int, frame: int) -> Decision:
        return self._decisions.get((clip_id, frame))

    def clips(self) -> set[int]:
        """The clips whose decisions this window has read or written."""
        return {clip_id for clip_id, _ in self._versions}

    def version(self, clip_id: int, frame: int) -> int:
        return self._versions.get((clip_id, frame), 0)

    # ---- decisions -------------------------------------------------------------------------
    def decide(self, clip_id: int, frame: int, status: str | None, origin: str) -> bool:
        """Push one undoable decision (None: clear it); False when it would change nothing."""
        before = self.decision(clip_id, frame)
        after = None if status is None else (status, origin)
        if before == after:
            return False
        what = WORDS[status] + (f" {origin.split(':', 1)[-1]}" if status else "")
        self.undo_stack.push(_DecisionCommand(self, clip_id, frame, before, after, f"{what} · frame {frame + 1}"))
        return self.decision(clip_id, frame) == after

    def write(self, clip_id: int, frame: int, value: Decision, origin: str) -> bool:
        """Store `value` now (the commands' redo/undo); False (and a signal) when it could not be."""
        key = (clip_id, frame)
        status = None if value is None else value[0]
        try:
            version = decide(self.engine, clip_id, frame, status, origin, self.version(clip_id, frame), self.annotator)
        except MaskConflictError as exc:
            self._reread(clip_id, frame)
            self.conflict.emit(clip_id, frame, f"Not saved: {exc}. The frame now shows what is stored; "
                                               "decide again if you still disagree.")
            return False
        except ValueError as exc:
            self.failed.emit(f"Not saved: {exc}")
            return False
        self._versions[key] = version
        self._decisions[key] = value
        self.saved.emit(f"Saved {time.strftime('%H:%M:%S')}")
        self.changed.emit(clip_id, frame)
        return True

    def stale(self, clip_id: int, frame: int, text: str) -> None:
        """An undo/redo of a frame someone else decided on since: nothing changes, the frame is re-read."""
        row = self._reread(clip_id, frame)
        who = f" ({row.updated_by})" if row is not None and row.updated_by else ""
        self.conflict.emit(clip_id, frame, f"Not undone: {text}: the decision on this frame was changed "
                                           f"elsewhere since{who}. The frame shows what is stored now.")

    def _reread(self, clip_id: int, frame: int) -> MaskRow | None:
        row = load_masks(self.engine, clip_id).get(REVIEWED, {}).get(frame)
        key, version = (clip_id, frame), row.version if row is not None else 0
        if self._versions.get(key, 0) != version:  # older undo entries of this frame must not overwrite it
            self._generations[key] = self.generation(clip_id, frame) + 1
        self._versions[key] = version
        self._decisions[key] = (row.status, row.origin) if row is not None and row.status else None
        self.changed.emit(clip_id, frame)
        return row
