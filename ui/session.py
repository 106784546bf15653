"""The annotation session: the clip on screen, its label layers, and undoable, autosaved edits.

Every edit is a QUndoCommand whose redo/undo commit to the label store at once
(optimistic concurrency: the version last seen is sent along). When another
annotator changed the same track meanwhile, the command is dropped from the
undo stack and a `Conflict` is emitted so the window can show both versions and
let the person choose; nothing is overwritten silently.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from annotation import editing
from annotation.store import TRACKS, ClipRecord, ConflictError, LabelStore, ReviewState, TrackState

LAYERS = ("pseudo", "truth", "prediction")


@dataclass
class ClipView:
    """What the window shows of one clip."""

    clip: ClipRecord
    current: dict[str, np.ndarray]  # track -> grid being edited (manual, else pseudo)
    edited: dict[str, bool]  # track -> a manual track exists
    layers: dict[str, dict[str, np.ndarray | None]]  # track -> layer -> grid
    review: ReviewState
    prediction_source: str | None = None


@dataclass(frozen=True)
class Conflict:
    clip_id: int
    track: str | None  # None: the review, not a label track
    mine: object  # grid (np.ndarray) / None (unedited) / (status, note) for reviews
    theirs: TrackState | ReviewState
    message: str


@dataclass
class _Known:
    """Versions this session last saw, per (clip, track) manual track and per clip review."""

    tracks: dict[tuple[int, str], int] = field(default_factory=dict)
    reviews: dict[int, int] = field(default_factory=dict)


class _GridCommand(QUndoCommand):
    def __init__(self, session: "ClipSession", clip_id: int, track: str,
                 before: np.ndarray | None, after: np.ndarray | None, text: str):
        super().__init__(text)
        self.session, self.clip_id, self.track = session, clip_id, track
        self.before, self.after = before, after

    def redo(self) -> None:
        if not self.session._write_grid(self.clip_id, self.track, self.after):
            self.setObsolete(True)

    def undo(self) -> None:
        if not self.session._write_grid(self.clip_id, self.track, self.before):
            self.setObsolete(True)


class _ReviewCommand(QUndoCommand):
    def __init__(self, session: "ClipSession", clip_id: int, before: tuple[str, str | None],
                 after: tuple[str, str | None], text: str):
        super().__init__(text)
        self.session, self.clip_id, self.before, self.after = session, clip_id, before, after

    def redo(self) -> None:
        if not self.session._write_review(self.clip_id, *self.after):
            self.setObsolete(True)

    def undo(self) -> None:
        if not self.session._write_review(self.clip_id, *self.before):
            self.setObsolete(True)


class ClipSession(QObject):
    clip_loaded = Signal(object)  # ClipView
    grid_changed = Signal(int, str, object)  # clip_id, track, current grid
    review_changed = Signal(int, object)  # clip_id, ReviewState
    saved = Signal(str)  # status-bar text
    conflict = Signal(object)  # Conflict

    def __init__(self, store: LabelStore, annotator: str, parent: QObject | None = None):
        super().__init__(parent)
        self.store = store
        self.annotator = annotator
        self.undo_stack = QUndoStack(self)
        self.view: ClipView | None = None
        self._known = _Known()
        self.last_commit_ms: float | None = None

    # ---- loading -----------------------------------------------------------------------
    def open_clip(self, clip_id: int) -> ClipView:
        clip = self.store.clip(clip_id)
        stored = self.store.tracks(clip_id)
        review = self.store.review(clip_id)
        prediction = self._latest_prediction(stored)
        current, edited, layers = {}, {}, {}
        for track in TRACKS:
            manual = stored.get((track, "manual"))
            pseudo = stored.get((track, "pseudo"))
            self._known.tracks[(clip_id, track)] = manual.version if manual else 0
            edited[track] = manual is not None
            base = manual or pseudo
            current[track] = base.grid.copy() if base else np.zeros((25, 10), np.uint8)
            layers[track] = {
                "pseudo": pseudo.grid if pseudo else None,
                "truth": stored[(track, "truth")].grid if (track, "truth") in stored else None,
                "prediction": stored[(track, prediction)].grid if prediction and (track, prediction) in stored else None,
            }
        self._known.reviews[clip_id] = review.version
        self.view = ClipView(clip, current, edited, layers, review, prediction)
        self.clip_loaded.emit(self.view)
        return self.view

    @staticmethod
    def _latest_prediction(stored: dict[tuple[str, str], TrackState]) -> str | None:
        runs = [(state.updated_at, source) for (track, source), state in stored.items() if source.startswith("prediction:")]
        return max(runs, key=lambda r: (r[0] is not None, r[0]))[1] if runs else None

    def current(self, track: str) -> np.ndarray:
        assert self.view is not None, "no clip open"
        return self.view.current[track]

    # ---- edits (each one undoable and committed at once) -------------------------------
    def _push_grid(self, track: str, after: np.ndarray, text: str) -> bool:
        if self.view is None:
            return False
        before_grid = self.view.current[track]
        if np.array_equal(before_grid, after):
            return False
        before = before_grid.copy() if self.view.edited[track] else None
        self.undo_stack.push(_GridCommand(self, self.view.clip.id, track, before, after.copy(), text))
        return True

    def set_cells(self, track: str, cells: list[tuple[int, int]], value: int) -> bool:
        verb = "Set" if value else "Clear"
        return self._push_grid(track, editing.set_cells(self.current(track), cells, value),
                               f"{verb} {len(cells)} {track} cell(s)")

    def apply_class(self, track: str, cls: int, start: int, end: int) -> bool:
        return self._push_grid(track, editing.toggle_class(self.current(track), cls, start, end),
                               f"Toggle {track} class {cls} on segments {min(start, end)}–{max(start, end)}")

    def copy_track(self, source: str, target: str, classes: list[int] | None = None) -> bool:
        what = "labels" if classes is None else f"{len(classes)} row(s)"
        return self._push_grid(target, editing.copy_rows(self.current(source), self.current(target), classes),
                               f"Copy {source} {what} to {target}")

    def clear_track(self, track: str) -> bool:
        return self._push_grid(track, editing.clear(self.current(track)), f"Clear {track} labels")

    def set_review(self, status: str, note: str | None = None, keep_note: bool = True) -> bool:
        if self.view is None:
            return False
        review = self.view.review
        new_note = review.note if keep_note and note is None else note
        if (status, new_note) == (review.status, review.note):
            return False
        self.undo_stack.push(_ReviewCommand(self, self.view.clip.id, (review.status, review.note),
                                            (status, new_note), f"Mark {status.replace('_', ' ')}"))
        return True

    # ---- conflicts ---------------------------------------------------------------------
    def resolve(self, conflict: Conflict, keep_mine: bool) -> None:
        """The person chose: keep their own version (a new, undoable edit over theirs) or take the other one."""
        if conflict.track is None:
            self._known.reviews[conflict.clip_id] = conflict.theirs.version
            if keep_mine:
                status, note = conflict.mine
                self.undo_stack.push(_ReviewCommand(self, conflict.clip_id, (conflict.theirs.status, conflict.theirs.note),
                                                    (status, note), f"Keep my review ({status})"))
            else:
                self._adopt_review(conflict.clip_id, conflict.theirs)
            return
        theirs: TrackState = conflict.theirs
        self._known.tracks[(conflict.clip_id, conflict.track)] = theirs.version
        if keep_mine:
            command = _GridCommand(self, conflict.clip_id, conflict.track,
                                   theirs.grid.copy() if theirs.exists else None, conflict.mine,
                                   f"Keep my {conflict.track} labels")
            self.undo_stack.push(command)
        else:
            grid = theirs.grid if theirs.exists else self._pseudo_or_empty(conflict.clip_id, conflict.track)
            self._adopt_grid(conflict.clip_id, conflict.track, grid, theirs.exists)

    def _pseudo_or_empty(self, clip_id: int, track: str) -> np.ndarray:
        return self.store.track(clip_id, track, "pseudo").grid

    # ---- writes used by the commands ---------------------------------------------------
    def _write_grid(self, clip_id: int, track: str, grid: np.ndarray | None) -> bool:
        key = (clip_id, track)
        version = self._known.tracks.get(key)
        if version is None:
            version = self.store.track(clip_id, track, "manual").version
        started = time.perf_counter()
        try:
            if grid is None:
                if version:
                    self.store.delete_track(clip_id, track, "manual", version, self.annotator)
                self._known.tracks[key] = 0
                shown = self._pseudo_or_empty(clip_id, track)
            else:
                state = self.store.save_track(clip_id, track, "manual", grid, version, self.annotator)
                self._known.tracks[key] = state.version
                shown = grid
        except ConflictError as exc:
            self.conflict.emit(Conflict(clip_id, track, None if grid is None else grid.copy(), exc.current, str(exc)))
            return False
        self.last_commit_ms = (time.perf_counter() - started) * 1000
        self._adopt_grid(clip_id, track, shown, grid is not None)
        self.saved.emit(f"Saved {time.strftime('%H:%M:%S')}")
        return True

    def _adopt_grid(self, clip_id: int, track: str, grid: np.ndarray, edited: bool) -> None:
        if self.view is not None and self.view.clip.id == clip_id:
            self.view.current[track] = grid.copy()
            self.view.edited[track] = edited
        self.grid_changed.emit(clip_id, track, grid.copy())

    def _write_review(self, clip_id: int, status: str, note: str | None) -> bool:
        version = self._known.reviews.get(clip_id)
        if version is None:
            version = self.store.review(clip_id).version
        try:
            state = self.store.set_review(clip_id, status, self.annotator, version, note=note)
        except ConflictError as exc:
            self.conflict.emit(Conflict(clip_id, None, (status, note), exc.current, str(exc)))
            return False
        self._known.reviews[clip_id] = state.version
        self._adopt_review(clip_id, state)
        self.saved.emit(f"Saved {time.strftime('%H:%M:%S')}")
        return True

    def _adopt_review(self, clip_id: int, state: ReviewState) -> None:
        if self.view is not None and self.view.clip.id == clip_id:
            self.view.review = state
        self.review_changed.emit(clip_id, state)
