"""Keyboard editing on the timelines: cursor, segment selection, class keys, toggles.

Kept apart from the main window so its rules are testable and the window stays
wiring only. Edits go through the session (undoable, saved at once).
"""
from __future__ import annotations

from ui.session import ClipSession
from ui.timeline import TimelinePanel

EDIT_TRACKS = ("audio", "visual")


class EditorKeys:
    def __init__(self, session: ClipSession, panel: TimelinePanel, seek_segment):
        self.session = session
        self.panel = panel
        self.seek_segment = seek_segment  # callable(int): move the player to a segment start
        self.anchor: int | None = None  # selection anchor segment

    # ---- cursor ------------------------------------------------------------------------
    @property
    def track(self) -> str:
        track = self.panel.active_track()
        return track if track in EDIT_TRACKS else "audio"

    def timeline(self):
        return self.panel.timeline(self.track)

    def cursor(self) -> tuple[int, int]:
        return self.timeline().cursor()

    def reset(self) -> None:
        """A new clip: cursor on the first visible row, segment 0, no selection."""
        self.anchor = None
        for track in EDIT_TRACKS:
            timeline = self.panel.timeline(track)
            rows = timeline.visible_rows()
            timeline.clear_selection()
            timeline.set_cursor(rows[0] if rows else 0, 0)

    def move_segment(self, step: int, extend: bool = False) -> None:
        cls, seg = self.cursor()
        new = min(9, max(0, seg + step))
        timeline = self.timeline()
        if extend:
            self.anchor = seg if self.anchor is None else self.anchor
            timeline.set_selection(min(self.anchor, new), max(self.anchor, new))
        else:
            self.anchor = None
            timeline.clear_selection()
        timeline.set_cursor(cls, new)
        self.seek_segment(new)

    def move_row(self, step: int) -> None:
        cls, seg = self.cursor()
        rows = self.timeline().visible_rows()
        if not rows:
            return
        index = rows.index(cls) if cls in rows else 0
        self.timeline().set_cursor(rows[min(len(rows) - 1, max(0, index + step))], seg)

    def set_segment(self, seg: int) -> None:
        """The playhead entered a segment: the cursor follows (keeps the row)."""
        for track in EDIT_TRACKS:
            timeline = self.panel.timeline(track)
            cls, _ = timeline.cursor()
            timeline.set_cursor(cls, seg)

    def switch_track(self) -> None:
        other = "visual" if self.track == "audio" else "audio"
        cls, seg = self.cursor()
        self.panel.set_active_track(other)
        self.panel.timeline(other).set_cursor(cls, seg)

    # ---- edits -------------------------------------------------------------------------
    def _span(self) -> tuple[int, int]:
        selection = self.timeline().selection()
        if selection is not None:
            return selection
        _, seg = self.cursor()
        return seg, seg

    def toggle_class(self, cls: int) -> bool:
        """Class key: toggle `cls` over the selection, or the current segment."""
        if self.session.view is None:
            return False
        start, end = self._span()
        _, seg = self.cursor()
        self.timeline().set_cursor(cls, seg)
        return self.session.apply_class(self.track, cls, start, end)

    def toggle_cursor(self) -> bool:
        cls, _ = self.cursor()
        return self.toggle_class(cls)

    def copy_row(self) -> bool:
        if self.session.view is None:
            return False
        cls, _ = self.cursor()
        other = "visual" if self.track == "audio" else "audio"
        return self.session.copy_track(self.track, other, [cls])
