"""The annotation session: the clip on screen, its label layers, and undoable, autosaved edits.

Every edit is a QUndoCommand whose redo/undo commit to the label store at once
(optimistic concurrency: the version last seen is sent along). When another
annotator changed the same track meanwhile, the command is dropped from the
undo stack and a `Conflict` is emitted so the window can show both versions and
let the person choose; nothing is overwritten silently.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from annotation import editing
from annotation.history import grid_of
from annotation.predictions import ClipScores, clip_scores
from annotation.store import TRACKS, ClipRecord, ConflictError, EditRecord, LabelStore, ReviewState, TrackState

LAYERS = ("pseudo", "truth", "prediction")
IMPORTED_PSEUDO = "pseudo"  # the imported pseudo-labels (VALOR's files); generated sets are 'pseudo:<name>'


def is_pseudo_source(source: str) -> bool:
    return source == IMPORTED_PSEUDO or source.startswith(IMPORTED_PSEUDO + ":")


def pseudo_sources_of(stored) -> list[str]:
    """The pseudo-label sources among a clip's stored (track, source) keys: the imported one first, then the
    generated sets by name."""
    found = {source for _, source in stored if is_pseudo_source(source)}
    return sorted(found, key=lambda s: (s != IMPORTED_PSEUDO, s))


@dataclass
class ClipView:
    """What the window shows of one clip."""

    clip: ClipRecord
    current: dict[str, np.ndarray]  # track -> grid being edited (manual, else pseudo)
    edited: dict[str, bool]  # track -> a manual track exists
    layers: dict[str, dict[str, np.ndarray | None]]  # track -> layer -> grid
    review: ReviewState
    prediction_source: str | None = None
    scores: ClipScores | None = None  # the probabilities behind the prediction layer, when the run kept them
    pseudo_source: str = IMPORTED_PSEUDO  # the pseudo source the 'pseudo' layer shows (chosen in the window)
    pseudo_sources: list[str] = field(default_factory=list)  # the clip's pseudo sources (pseudo_sources_of)
    pseudo_grids: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (track, source) -> grid

    def show_pseudo(self, source: str) -> None:
        """Let the 'pseudo' layer show `source` (None on this clip when it lacks it; never another source's),
        from the grids read with the clip: no database round trip, so switching is instant."""
        self.pseudo_source = source
        for track, layers in self.layers.items():
            layers["pseudo"] = self.pseudo_grids.get((track, source))


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


class _ClipCommand(QUndoCommand):
    """An edit of one clip: `write(value)` stores `before` (undo) or `after` (redo). Undo and redo
    of an edit of another clip than the one on screen bring that clip back first
    (`show_requested`), then say what changed where (`applied`): a change is never made out of
    sight. The first redo is the edit itself."""

    def __init__(self, session: "ClipSession", clip_id: int, part: str, text: str, before, after,
                 write: Callable[[object], bool]):
        super().__init__(text)
        self.session, self.clip_id, self.before, self.after, self.write = session, clip_id, before, after, write
        self.key = (clip_id, part)  # part: "audio", "visual" or "review"
        self.generation = session.generation(self.key)
        self._done_once = False

    def _apply(self, value, verb: str) -> None:
        replay = self._done_once or verb == "Undid"
        if replay:
            self.session.bring_on_screen(self.clip_id)
            if self.session.generation(self.key) != self.generation:
                # someone else saved this part since: undoing would silently drop their change
                self.session.stale_replay(self.key, value, self.text())
                self.setObsolete(True)
                return
        if not self.write(value):
            self.setObsolete(True)
        elif replay:
            self.session.applied.emit(f"{verb}: {self.text()} · {self.session.clip_name(self.clip_id)}")
        self._done_once = True

    def redo(self) -> None:
        self._apply(self.after, "Redid")

    def undo(self) -> None:
        self._apply(self.before, "Undid")


def _grid_command(session: "ClipSession", clip_id: int, track: str, before: np.ndarray | None,
                 after: np.ndarray | None, text: str) -> _ClipCommand:
    return _ClipCommand(session, clip_id, track, text, before, after,
                        lambda grid: session._write_grid(clip_id, track, grid))


def _review_command(session: "ClipSession", clip_id: int, before: tuple[str, str | None],
                   after: tuple[str, str | None], text: str) -> _ClipCommand:
    return _ClipCommand(session, clip_id, "review", text, before, after,
                        lambda value: session._write_review(clip_id, *value))


class ClipSession(QObject):
    clip_loaded = Signal(object)  # ClipView
    grid_changed = Signal(int, str, object)  # clip_id, track, current grid
    review_changed = Signal(int, object)  # clip_id, ReviewState
    saved = Signal(str)  # status-bar text
    conflict = Signal(object)  # Conflict
    show_requested = Signal(int)  # clip_id: an undo/redo touches a clip that is not on screen
    applied = Signal(str)  # status-bar text: what an undo/redo changed, and on which clip

    def __init__(self, store: LabelStore, annotator: str, parent: QObject | None = None):
        super().__init__(parent)
        self.store = store
        self.annotator = annotator
        self.undo_stack = QUndoStack(self)
        self.view: ClipView | None = None
        self._known = _Known()
        self.last_commit_ms: float | None = None
        self._seen: dict[str, int] = {}  # stored versions of the clip on screen, as last shown or written
        self._generations: dict[tuple[int, str], int] = {}  # bumped when another window saved that part
        self.writes = 0  # own commits so far: a poll that raced one of them is dropped
        self.prediction_run: str | None = None  # the prediction source to show (None: the newest one)
        # the pseudo source the 'pseudo' layer shows on every clip; the grid being edited stays manual, else the
        # imported pseudo-labels (what the store's `best`, the queue and the export use)
        self.pseudo_choice: str = IMPORTED_PSEUDO

    # ---- loading -----------------------------------------------------------------------
    def open_clip(self, clip_id: int) -> ClipView:
        clip = self.store.clip(clip_id)
        stored = self.store.tracks(clip_id)
        review = self.store.review(clip_id)
        prediction = self._chosen_prediction(stored)
        current, edited, layers = {}, {}, {}
        for track in TRACKS:
            manual = stored.get((track, "manual"))
            pseudo = stored.get((track, "pseudo"))
            self._note_version((clip_id, track), self._known.tracks, manual.version if manual else 0)
            edited[track] = manual is not None
            base = manual or pseudo
            current[track] = base.grid.copy() if base else np.zeros((25, 10), np.uint8)
            layers[track] = {
                "pseudo": None,  # the chosen pseudo source's: show_pseudo below
                "truth": stored[(track, "truth")].grid if (track, "truth") in stored else None,
                "prediction": stored[(track, prediction)].grid if prediction and (track, prediction) in stored else None,
            }
        self._note_version((clip_id, "review"), self._known.reviews, review.version, key=clip_id)
        self._seen = {**{f"{t}/{src}": state.version for (t, src), state in stored.items()}, "review": review.version}
        scores = clip_scores(self.store.engine, clip_id, prediction) if prediction else None
        pseudo_grids = {key: state.grid for key, state in stored.items() if is_pseudo_source(key[1])}
        self.view = ClipView(clip, current, edited, layers, review, prediction, scores,
                             pseudo_sources=pseudo_sources_of(stored), pseudo_grids=pseudo_grids)
        self.view.show_pseudo(self.pseudo_choice)
        self.clip_loaded.emit(self.view)
        return self.view

    def _chosen_prediction(self, stored: dict[tuple[str, str], TrackState]) -> str | None:
        """The run picked in the window if this clip has it; else none when one was picked (another
        run's layer must not pass for it), the newest run when none was."""
        if self.prediction_run is not None:
            return self.prediction_run if any(src == self.prediction_run for _, src in stored) else None
        return self._latest_prediction(stored)

    @staticmethod
    def _latest_prediction(stored: dict[tuple[str, str], TrackState]) -> str | None:
        runs = [(state.updated_at, source) for (track, source), state in stored.items() if source.startswith("prediction:")]
        return max(runs, key=lambda r: (r[0] is not None, r[0]))[1] if runs else None

    def choose_pseudo(self, source: str) -> ClipView | None:
        """Show `source` as the 'pseudo' layer from now on (this clip and the next ones); the clip on screen,
        switched in memory (None: no clip on screen)."""
        self.pseudo_choice = source
        if self.view is not None:
            self.view.show_pseudo(source)
        return self.view

    def close_clip(self) -> None:
        """Nothing on screen (the list shows no clip); the undo history stays."""
        self.view = None

    def _note_version(self, part: tuple[int, str], known: dict, version: int, key=None) -> None:
        """Remember the stored version of a part; if it moved since this window last knew it, someone
        else saved it: this window's undo entries of that part become conflicts, never overwrites."""
        key = part if key is None else key
        if key in known and known[key] != version:
            self._generations[part] = self.generation(part) + 1
        known[key] = version

    # ---- other annotators' saves ---------------------------------------------------------
    def generation(self, key: tuple[int, str]) -> int:
        return self._generations.get(key, 0)

    def changed_elsewhere(self, clip_id: int, versions: dict[str, int]) -> list[str]:
        """Which stored parts of the clip on screen ("audio/manual", "review", "visual/prediction:x", ...)
        differ from what this window last showed or wrote."""
        if self.view is None or self.view.clip.id != clip_id:
            return []
        return sorted(k for k in set(versions) | set(self._seen) if versions.get(k, 0) != self._seen.get(k, 0))

    def reload_changed(self, clip_id: int) -> ClipView | None:
        """Show what another window saved: the clip is read again, and this window's undo entries of
        the parts that changed become conflicts instead of silent overwrites."""
        return self.open_clip(clip_id) if self.view is not None and self.view.clip.id == clip_id else None

    def stale_replay(self, key: tuple[int, str], value, text: str) -> None:
        """An undo/redo of a part someone else saved since: show both versions, change nothing."""
        clip_id, part = key
        if part == "review":
            current = self.store.review(clip_id)
            self._known.reviews[clip_id] = current.version
            mine = value
        else:
            current = self.store.track(clip_id, part, "manual")
            self._known.tracks[key] = current.version
            mine = None if value is None else np.array(value, copy=True)
        who = current.updated_by if isinstance(current, TrackState) else current.annotator
        self.conflict.emit(Conflict(clip_id, None if part == "review" else part, mine, current,
                                    f"{text}: {who or 'another annotator'} saved this clip's {part} since"))

    def bring_on_screen(self, clip_id: int) -> None:
        """Ask the window to show `clip_id` (synchronously) unless it is on screen."""
        if self.view is None or self.view.clip.id != clip_id:
            self.show_requested.emit(clip_id)

    def clip_name(self, clip_id: int) -> str:
        if self.view is not None and self.view.clip.id == clip_id:
            return self.view.clip.filename
        return self.store.clip(clip_id).filename

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
        self.undo_stack.push(_grid_command(self, self.view.clip.id, track, before, after.copy(), text))
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

    def set_review(self, status: str, note: str | None = None, keep_note: bool = True,
                   text: str | None = None) -> bool:
        """The clip's status (and note; `keep_note`: an omitted note stays), as one undoable edit named
        `text` (default: "Mark <status>"); False when nothing changes."""
        if self.view is None:
            return False
        review = self.view.review
        new_note = review.note if keep_note and note is None else note
        if (status, new_note) == (review.status, review.note):
            return False
        self.undo_stack.push(_review_command(self, self.view.clip.id, (review.status, review.note),
                                            (status, new_note), text or f"Mark {status.replace('_', ' ')}"))
        return True

    def restore(self, edit: EditRecord) -> bool:
        """Make the version an edit left current again, as a new undoable edit of the clip on
        screen (the history keeps both): the grid after a cells edit (None: the pseudo-label),
        or the status and note after a review edit."""
        if self.view is None or edit.source not in (None, "manual"):
            return False
        when = f"{edit.at.astimezone():%H:%M:%S}" + (f" by {edit.annotator}" if edit.annotator else "")
        if edit.kind == "review":
            after = json.loads(edit.after or "{}")
            return self.set_review(after.get("status", "pending"), after.get("note"), keep_note=False,
                                   text=f"Restore review of {when}")
        track = edit.track
        grid = grid_of(edit.after)
        before = self.view.current[track].copy() if self.view.edited[track] else None
        if (grid is None and before is None) or (grid is not None and before is not None
                                                 and np.array_equal(grid, before)):
            return False
        self.undo_stack.push(_grid_command(self, self.view.clip.id, track, before, grid,
                                           f"Restore {track} labels of {when}"))
        return True

    # ---- conflicts ---------------------------------------------------------------------
    def resolve(self, conflict: Conflict, keep_mine: bool) -> None:
        """The person chose: keep their own version (a new, undoable edit over theirs) or take the other one."""
        if conflict.track is None:
            self._known.reviews[conflict.clip_id] = conflict.theirs.version
            if self.view is not None and self.view.clip.id == conflict.clip_id:
                self._seen["review"] = conflict.theirs.version
            if keep_mine:
                status, note = conflict.mine
                self.undo_stack.push(_review_command(self, conflict.clip_id, (conflict.theirs.status, conflict.theirs.note),
                                                    (status, note), f"Keep my review ({status})"))
            else:
                self._adopt_review(conflict.clip_id, conflict.theirs)
            return
        theirs: TrackState = conflict.theirs
        self._known.tracks[(conflict.clip_id, conflict.track)] = theirs.version
        if keep_mine:
            command = _grid_command(self, conflict.clip_id, conflict.track,
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
        self.writes += 1
        if self.view is not None and self.view.clip.id == clip_id:
            if grid is None:
                self._seen.pop(f"{track}/manual", None)
            else:
                self._seen[f"{track}/manual"] = self._known.tracks[key]
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
        self.writes += 1
        if self.view is not None and self.view.clip.id == clip_id:
            self._seen["review"] = state.version
        self._adopt_review(clip_id, state)
        self.saved.emit(f"Saved {time.strftime('%H:%M:%S')}")
        return True

    def _adopt_review(self, clip_id: int, state: ReviewState) -> None:
        if self.view is not None and self.view.clip.id == clip_id:
            self.view.review = state
        self.review_changed.emit(clip_id, state)
